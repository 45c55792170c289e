//! Folder renames under kill -9: a writer keeps making folders of files
//! and renaming them whole (`d7` → `e7`, a rename across folders too);
//! the daemon is killed at random moments. After each restart every
//! folder whose rename was acknowledged is whole under its new name, and
//! every other folder is whole under exactly one of its names, never split
//! between the two.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Mount;

const FILES: usize = 30;

/// Makes folders `mnt/d{i}` of `FILES` files from `start` on, renaming each
/// to `mnt/moved/e{i}` once written; prints `made i` and `moved i` as each
/// step returns.
const WRITER: &str = r#"
import os, sys
start = int(sys.argv[1])
for i in range(start, start + 100000):
    d = f"mnt/d{i}"
    os.mkdir(d)
    os.mkdir(f"{d}/sub")
    for j in range(30):
        with open(f"{d}/sub/f{j}" if j % 3 == 0 else f"{d}/f{j}", "w") as f:
            f.write(f"{i}/{j}\n" * (j + 1))
    print("made", i, flush=True)
    os.rename(d, f"mnt/moved/e{i}")
    print("moved", i, flush=True)
"#;

/// Whether `dir` holds exactly the folder the writer made for `i`.
fn whole(dir: &std::path::Path, i: u64) -> bool {
    (0..FILES).all(|j| {
        let path = if j % 3 == 0 {
            dir.join(format!("sub/f{j}"))
        } else {
            dir.join(format!("f{j}"))
        };
        fs::read_to_string(path).is_ok_and(|v| v == format!("{i}/{j}\n").repeat(j + 1))
    }) && fs::read_dir(dir).map(|d| d.count()).ok() == Some(FILES - FILES / 3 + 1)
}

#[test]
fn kill_9_during_folder_renames_leaves_each_folder_whole() {
    require_fuse!();
    let mut m = Mount::start(&[]);
    m.ok("mkdir mnt/moved");
    let rng = common::pattern(64, 7);
    let mut next = 0u64;
    let mut acked_moves = BTreeSet::new();
    for (cycle, &r) in rng.iter().take(6).enumerate() {
        let acks = m.scratch(&format!("acks{cycle}"));
        let mut writer = Command::new("python3")
            .arg("-c")
            .arg(WRITER)
            .arg(next.to_string())
            .current_dir(m.root.path())
            .stdout(fs::File::create(&acks).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        // Python's start takes a while, and longer on a loaded machine:
        // the kill falls at a random moment after the first ack.
        let started = std::time::Instant::now();
        while fs::metadata(&acks).map_or(0, |a| a.len()) == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "cycle {cycle}: the writer acknowledged nothing in 30 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(50 + u64::from(r) * 3));
        // The writer goes before the dead mount is detached: after that,
        // what it still made would land in the empty mountpoint beneath.
        m.signal(libc::SIGKILL);
        let _ = m.wait_exit(Duration::from_secs(30));
        let _ = writer.kill();
        let _ = writer.wait();
        common::detach(&m.mnt);
        m.mount();
        let log = fs::read_to_string(&acks).unwrap();
        let mut made = BTreeSet::new();
        for line in log.lines() {
            let mut w = line.split(' ');
            let (step, i) = (w.next(), w.next().and_then(|i| i.parse::<u64>().ok()));
            match (step, i) {
                (Some("made"), Some(i)) => {
                    made.insert(i);
                }
                (Some("moved"), Some(i)) => {
                    acked_moves.insert(i);
                }
                _ => panic!("bad ack line {line:?}"),
            }
        }
        for &i in &acked_moves {
            let e = m.path(&format!("moved/e{i}"));
            assert!(
                whole(&e, i),
                "cycle {cycle}: acknowledged move e{i} not whole"
            );
            assert!(!m.path(&format!("d{i}")).exists(), "d{i} still there");
        }
        let unacked: Vec<u64> = made.difference(&acked_moves).copied().collect();
        for i in unacked {
            let (d, e) = (m.path(&format!("d{i}")), m.path(&format!("moved/e{i}")));
            match (d.exists(), e.exists()) {
                (true, false) => assert!(whole(&d, i), "cycle {cycle}: d{i} not whole"),
                (false, true) => {
                    assert!(whole(&e, i), "cycle {cycle}: e{i} not whole");
                    acked_moves.insert(i);
                }
                both => panic!("cycle {cycle}: folder {i} split or lost: {both:?}"),
            }
            // Out of the writer's way: the next cycle starts afresh.
            if d.exists() {
                m.ok(&format!("mv mnt/d{i} mnt/moved/e{i}"));
                acked_moves.insert(i);
            }
        }
        next = made.last().map_or(next, |&i| i + 1);
        // A folder made only partly before the crash is removed.
        m.ok(&format!("rm -rf mnt/d{next}"));
        next += 1;
    }
    assert!(acked_moves.len() >= 6, "{} moves", acked_moves.len());
    let (clean, report) = {
        m.unmount();
        let out = Command::new(common::BIN)
            .arg("check")
            .arg(&m.data)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    assert!(clean, "caskfs check after the crashes:\n{report}");
    m.mount();
}
