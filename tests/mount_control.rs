//! A mounted store is not a black box: `caskfs stats`, `compact` and
//! `check` given its mountpoint or data directory ask the daemon, while a
//! writer goes on; `caskfs backup` copies it online, and again only what
//! changed.

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Mount};

fn caskfs(m: &Mount, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(m.root.path())
        .output()
        .expect("running caskfs")
}

/// Runs `caskfs ARGS`, which must succeed within `limit`; its stdout.
fn quick(m: &Mount, args: &[&str], limit: Duration) -> String {
    let started = Instant::now();
    let out = caskfs(m, args);
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "caskfs {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(took < limit, "caskfs {args:?} took {took:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Kills the writer and the commands of its pipeline, which would
/// otherwise finish their write after it.
fn stop(mut w: Child) {
    let group = i32::try_from(w.id()).expect("a pid");
    assert!(group > 1);
    // SAFETY: kill(2) touches no memory; the group is the writer's own.
    unsafe { libc::kill(-group, libc::SIGKILL) };
    let _ = w.wait();
}

/// A shell loop writing `mnt/w/kN` = 200 times the digit N % 10, N = 1, 2, ...,
/// appending N to `acked` after each write returned.
fn writer(m: &Mount) -> Child {
    m.ok("mkdir -p mnt/w && : > acked");
    Command::new("sh")
        .arg("-c")
        .arg(
            "i=1; while :; do head -c 200 /dev/zero | tr '\\0' $((i % 10)) > mnt/w/k$i || exit 1; \
             echo $i >> acked; i=$((i+1)); done",
        )
        .current_dir(m.root.path())
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("writer")
}

fn acked(m: &Mount) -> usize {
    std::fs::read_to_string(m.scratch("acked"))
        .unwrap()
        .lines()
        .count()
}

/// A JSON number field of a flat object, as python reads it.
fn field(json: &str, path: &str) -> f64 {
    let script = format!("import json, sys; d = json.load(sys.stdin); print(float(d{path}))");
    let mut child = Command::new("python3")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(json.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "not JSON, or no {path}: {json}");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn stats_compact_and_check_ask_the_live_daemon() {
    require_fuse!();
    let m = Mount::start(&["--max-segment-size", "64K"]);
    let w = writer(&m);
    std::thread::sleep(Duration::from_millis(300));
    let limit = Duration::from_secs(10);
    let first = quick(&m, &["stats", "--json", "mnt"], limit);
    assert_eq!(field(&first, "['mounted']"), 1.0);
    std::thread::sleep(Duration::from_millis(300));
    let data = m.data.to_str().unwrap();
    let second = quick(&m, &["stats", "--json", data], limit);
    for counter in [
        "['requests']['create']",
        "['bytes_written']",
        "['live_keys']",
    ] {
        assert!(
            field(&second, counter) > field(&first, counter),
            "{counter} did not move:\n{first}\n{second}"
        );
    }
    let table = quick(&m, &["stats", "mnt"], limit);
    assert!(
        table.contains("mounted on") && table.contains("requests: "),
        "{table}"
    );
    let merged = quick(&m, &["compact", "mnt"], limit);
    assert!(
        merged.contains("merged") || merged.contains("nothing"),
        "{merged}"
    );
    let checked = quick(&m, &["check", "mnt"], limit);
    assert!(checked.contains("ok: no damage found"), "{checked}");
    let before = acked(&m);
    std::thread::sleep(Duration::from_millis(300));
    assert!(acked(&m) > before, "the writer was blocked");
    let repair = caskfs(&m, &["check", "--repair", "mnt"]);
    assert_eq!(
        repair.status.code(),
        Some(3),
        "a repair needs the store unmounted"
    );
    stop(w);
    let after = quick(&m, &["stats", "--json", "mnt"], limit);
    assert!(field(&after, "['merges_done']") >= 1.0, "{after}");
}

#[test]
fn backup_under_load_holds_what_was_acknowledged_and_only_whole_values() {
    require_fuse!();
    // No background merges: the later backups' figures stay exact.
    let m = Mount::start(&["--max-segment-size", "64K", "--no-compaction"]);
    let w = writer(&m);
    std::thread::sleep(Duration::from_millis(500));
    let before = acked(&m);
    let out = quick(&m, &["backup", "mnt", "bk"], Duration::from_secs(30));
    assert!(out.contains("copied"), "{out}");
    std::thread::sleep(Duration::from_millis(300));
    stop(w);
    assert!(before > 10, "only {before} writes before the backup");

    let check = caskfs(&m, &["check", "bk"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    // The copy, read offline through the library.
    let copy = common::Library::open(&m.scratch("bk")).unwrap();
    for n in 1..=before {
        let v = copy
            .read(&format!("w/k{n}"))
            .unwrap()
            .unwrap_or_else(|| panic!("k{n} was acknowledged before the backup"));
        assert_eq!(v, vec![b'0' + (n % 10) as u8; 200], "k{n}");
    }
    for path in copy.files() {
        let v = copy.read(&path).unwrap().unwrap();
        assert!(
            v.len() == 200 && v.iter().all(|&b| b == v[0]),
            "a half value: {v:?}"
        );
    }
    copy.close();

    // Again: only what changed is copied; with nothing new, nothing.
    m.ok("echo more > mnt/more");
    let again = quick(
        &m,
        &["backup", m.data.to_str().unwrap(), "bk"],
        Duration::from_secs(30),
    );
    // "S segments, B bytes; copied F files, C bytes; ...": the number
    // after `word`.
    let figure = |report: &str, word: &str| -> u64 {
        let at = report.find(word).unwrap() + word.len();
        report[at..].split(' ').next().unwrap().parse().unwrap()
    };
    // The segments sealed since (the writer's last ones and the one sealed
    // for this backup) with their hints, and the MANIFEST; not the store's
    // every segment and hint, as the first one copied.
    let (total, copied) = (figure(&again, "segments, "), figure(&again, "files, "));
    assert!(
        copied > 0 && copied < 2 * total + 1,
        "{again} (first: {out})"
    );
    let nothing = quick(&m, &["backup", "mnt", "bk"], Duration::from_secs(30));
    assert!(nothing.contains("copied 0 files, 0 bytes"), "{nothing}");
    // The copy mounts, and holds what the last backup saw.
    let copy = Mount::start_with(common::temp_root(), m.scratch("bk"), &[]);
    assert_eq!(std::fs::read(copy.path("more")).unwrap(), b"more\n");
}
