//! Files as inodes and extents under kill -9: a shell appends numbered
//! lines to a 20 MB file, or moves a folder of 20,000 files around, while
//! the daemon is killed at seeded random moments. After each restart the
//! file's first 20 MB are as written and what follows is whole lines,
//! every acknowledged one there, in order, none torn; the folder is whole
//! at exactly one of its paths, never behind an acknowledged move.
//! `CASKFS_SEED=N` replays the delays of one run.

mod common;

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::Mount;

/// A small xorshift: the kill delays, from a seed printed at the start.
struct Rng(u64);

impl Rng {
    fn seeded(test: &str) -> Rng {
        let seed = std::env::var("CASKFS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("{test}: seed {seed} (replay with CASKFS_SEED={seed})");
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// A shell loop working in the mount, in a process group of its own; the
/// whole group is killed if it is still running when this is dropped (a
/// failed test).
struct ShellLoop {
    child: Child,
    errors: PathBuf,
}

impl ShellLoop {
    fn start(m: &Mount, script: &str) -> ShellLoop {
        let errors = m.scratch("loop.err");
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(m.root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&errors).expect("create loop.err"))
            .process_group(0)
            .spawn()
            .expect("start the shell loop");
        ShellLoop { child, errors }
    }

    /// Waits for the loop to stop by itself, once its next step in the
    /// dead mount has failed. It must be gone before the dead mount is
    /// detached: after that, its writes would land in the empty
    /// mountpoint beneath.
    fn wait_stopped(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.child.try_wait().expect("wait for the shell loop") {
                Some(_) => return,
                None if Instant::now() < deadline => sleep(Duration::from_millis(10)),
                None => panic!(
                    "the shell loop still runs 30 s after the daemon's kill -9 (a step on the \
                     dead mount hangs); its stderr:\n{}",
                    fs::read_to_string(&self.errors).unwrap_or_default()
                ),
            }
        }
    }
}

impl Drop for ShellLoop {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // SAFETY: kill(2) of the process group our own child leads.
            unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
            let _ = self.child.wait();
        }
    }
}

/// Kills the daemon with SIGKILL while `work` runs, lets `work` stop on
/// the dead mount, clears the mount and mounts the data directory again.
fn crash_under(m: &mut Mount, mut work: ShellLoop) {
    m.signal(libc::SIGKILL);
    assert!(
        m.wait_exit(Duration::from_secs(30)).is_some(),
        "the daemon did not die of SIGKILL"
    );
    work.wait_stopped();
    drop(work);
    common::detach(&m.mnt);
    m.mount();
}

/// Reads an integer a shell loop keeps in a file outside the mount; `None`
/// while missing or half written.
fn read_counter(m: &Mount, name: &str) -> Option<u64> {
    fs::read_to_string(m.scratch(name))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// Waits until the loop has acknowledged a step (`name` holds more than
/// `start`), then a seeded random 20 to 300 ms more.
fn wait_then_sleep(m: &Mount, name: &str, start: u64, rng: &mut Rng, cycle: usize) {
    let since = Instant::now();
    while read_counter(m, name).is_none_or(|n| n <= start) {
        assert!(
            since.elapsed() < Duration::from_secs(30),
            "cycle {cycle}: the loop acknowledged nothing in 30 s; its stderr:\n{}",
            fs::read_to_string(m.scratch("loop.err")).unwrap_or_default()
        );
        sleep(Duration::from_millis(2));
    }
    sleep(Duration::from_millis(rng.range(20, 300)));
}

const PREFIX: usize = 20 * 1024 * 1024;

/// Appends `line{i}` to `mnt/big` for `i` from `argv[1]` on, each by open,
/// write, close (which raises if the commit failed), then writes `i` to
/// `progress`; stops at the first error.
const PY_APPENDS: &str = r#"
import os, sys
i = int(sys.argv[1])
progress = os.open("progress", os.O_WRONLY)
while True:
    fd = os.open("mnt/big", os.O_WRONLY | os.O_APPEND)
    os.write(fd, f"line{i}\n".encode())
    os.close(fd)
    os.pwrite(progress, f"{i}\n".encode().ljust(24), 0)
    i += 1
"#;

/// Moves the folder round PLACES by rename(2), starting from move
/// `argv[1]`, writing the count of moves done to `moves` after each.
const PY_MOVES: &str = r#"
import os, sys
k = int(sys.argv[1])
places = ["mnt/p/a", "mnt/q/b", "mnt/r/c"]
moves = os.open("moves", os.O_WRONLY)
while True:
    os.rename(places[k % 3], places[(k + 1) % 3])
    k += 1
    os.pwrite(moves, f"{k}\n".encode().ljust(24), 0)
"#;

/// The numbered lines after the 20 MB prefix of `mnt/big`: how many, after
/// checking the prefix is unchanged and the lines are `line1` to `lineN`,
/// in order, whole.
fn appended_lines(m: &Mount, prefix_sum: &str, what: &str) -> u64 {
    let sum = m.ok(&format!("head -c {PREFIX} mnt/big | sha256sum"));
    assert_eq!(sum, prefix_sum, "{what}: the first 20 MB changed");
    let tail = m.ok(&format!("tail -c +{} mnt/big", PREFIX + 1));
    assert!(
        tail.is_empty() || tail.ends_with('\n'),
        "{what}: a torn last line: {:?}",
        common::tail(&tail, 200)
    );
    let mut n = 0u64;
    for line in tail.lines() {
        n += 1;
        assert_eq!(
            line,
            format!("line{n}"),
            "{what}: line {n} after the prefix is wrong (a gap, a reorder or a torn line)"
        );
    }
    n
}

#[test]
fn kill_9_during_appends_keeps_the_prefix_and_every_acknowledged_line() {
    require_fuse!();
    let mut rng = Rng::seeded("appends");
    let mut m = Mount::start(&[]);
    m.ok(&format!(
        "head -c {PREFIX} /dev/urandom > prefix && cp prefix mnt/big && cmp prefix mnt/big"
    ));
    let prefix_sum = m.ok("sha256sum < prefix");
    let ino = m.ok("stat -c %i mnt/big");
    let mut lines = 0u64;
    for cycle in 0..8 {
        // The loop counts on from the lines there are; `progress`, outside
        // the mount, holds the last line whose append (open, write, close)
        // returned success. caskfs commits at close, so that is the
        // acknowledgement: `tee -a` checks close's result, where the
        // shell's own `echo >> f` would not (it closes the file by dup2,
        // which drops the error of a commit the kill cut short). Every
        // other cycle appends from python, without a process per line, so
        // that the kill more often falls inside a commit.
        fs::write(m.scratch("progress"), format!("{lines}\n")).expect("write progress");
        let next = lines + 1;
        let script = if cycle % 2 == 0 {
            format!(
                "i={next}; while :; do echo line$i | tee -a mnt/big >/dev/null || exit 1; \
                 echo $i > progress; i=$((i + 1)); done"
            )
        } else {
            format!("exec python3 -c '{PY_APPENDS}' {next}")
        };
        let work = ShellLoop::start(&m, &script);
        wait_then_sleep(&m, "progress", lines, &mut rng, cycle);
        crash_under(&mut m, work);
        let acked = read_counter(&m, "progress").expect("the loop's progress");
        let what = format!("cycle {cycle} (acknowledged up to line{acked})");
        lines = appended_lines(&m, &prefix_sum, &what);
        assert!(lines >= acked, "{what}: only {lines} lines");
        // One append at a time: at most the one in flight is there besides.
        assert!(lines <= acked + 1, "{what}: {lines} lines");
        assert_eq!(m.ok("stat -c %i mnt/big"), ino, "{what}: a new inode");
        eprintln!("appends: {what}: {lines} lines");
    }
    assert!(lines >= 8, "only {lines} lines in 8 cycles");
    m.unmount();
    if m.local() {
        common::check_clean(&m.data);
    }
    m.mount();
    assert_eq!(appended_lines(&m, &prefix_sum, "at the end"), lines);
}

const FILES: usize = 20_000;

/// Where the moving folder can be: `mv` takes it from each to the next,
/// round, across parent folders. Three places, not two, so that a lost
/// acknowledged move shows (the folder would be a step behind).
const PLACES: [&str; 3] = ["p/a", "q/b", "r/c"];

#[test]
fn kill_9_during_folder_moves_leaves_the_folder_whole_at_one_path() {
    require_fuse!();
    let mut rng = Rng::seeded("folder moves");
    let mut m = Mount::start(&[]);
    m.ok(&format!(
        "python3 -c 'import os\n\
         os.makedirs(\"mnt/p/a\"); os.mkdir(\"mnt/q\"); os.mkdir(\"mnt/r\")\n\
         for i in range({FILES}):\n\
         \x20   with open(f\"mnt/p/a/f{{i:05}}\", \"w\") as f: f.write(f\"{{i}}\\n\")'"
    ));
    let names: String = (0..FILES).map(|i| format!("f{i:05}\n")).collect();
    let folder_ino = m.ok("stat -c %i mnt/p/a");
    // `moves` (outside the mount) counts the moves that returned: the
    // folder is at PLACES[moves % 3], or one further if a move was in
    // flight at the kill.
    let mut moves = 0u64;
    for cycle in 0..6 {
        fs::write(m.scratch("moves"), format!("{moves}\n")).expect("write moves");
        // Every other cycle moves it from python, without a process per
        // move, so that the kill more often falls inside a rename.
        let script = if cycle % 2 == 0 {
            format!(
                "k={moves}; while :; do \
                 case $((k % 3)) in 0) f=p/a t=q/b;; 1) f=q/b t=r/c;; *) f=r/c t=p/a;; esac; \
                 mv mnt/$f mnt/$t || exit 1; k=$((k + 1)); echo $k > moves; done"
            )
        } else {
            format!("exec python3 -c '{PY_MOVES}' {moves}")
        };
        let work = ShellLoop::start(&m, &script);
        wait_then_sleep(&m, "moves", moves, &mut rng, cycle);
        crash_under(&mut m, work);
        let acked = read_counter(&m, "moves").expect("the loop's count of moves");
        let present: Vec<usize> = (0..3).filter(|&p| m.path(PLACES[p]).exists()).collect();
        let what = format!("cycle {cycle} ({acked} moves acknowledged)");
        assert_eq!(present.len(), 1, "{what}: the folder is at {present:?}");
        let at = present[0];
        let (was, next) = ((acked % 3) as usize, ((acked + 1) % 3) as usize);
        assert!(
            at == was || at == next,
            "{what}: the folder is at {}, not {} or {}: an acknowledged move was lost",
            PLACES[at],
            PLACES[was],
            PLACES[next]
        );
        moves = if at == was { acked } else { acked + 1 };
        let in_flight = if at == was { "not done" } else { "done" };
        eprintln!("folder moves: {what}: the move in flight {in_flight}");
        let place = PLACES[at];
        assert_eq!(
            m.ok(&format!("LC_ALL=C ls mnt/{place}")),
            names,
            "{what}: the names in mnt/{place}"
        );
        let sample: Vec<usize> = (0..40)
            .map(|_| rng.range(0, FILES as u64 - 1) as usize)
            .collect();
        let paths: String = sample.iter().map(|i| format!(" f{i:05}")).collect();
        let want: String = sample.iter().map(|i| format!("{i}\n")).collect();
        assert_eq!(
            m.ok(&format!("cd mnt/{place} && cat{paths}")),
            want,
            "{what}: contents"
        );
        // Nothing else anywhere, and the link counts of the parents say
        // where the folder is.
        assert_eq!(
            m.ok("find mnt | wc -l").trim(),
            (FILES + 5).to_string(),
            "{what}: entries in the mount"
        );
        let counts: String = (0..3)
            .map(|p| if p == at { "3\n" } else { "2\n" })
            .collect();
        assert_eq!(m.ok("stat -c %h mnt/p mnt/q mnt/r"), counts, "{what}");
        assert_eq!(
            m.ok(&format!("stat -c %i mnt/{place}")),
            folder_ino,
            "{what}: the folder's inode"
        );
    }
    assert!(moves >= 6, "only {moves} moves in 6 cycles");
    m.unmount();
    if m.local() {
        common::check_clean(&m.data);
    }
    m.mount();
    let place = PLACES[(moves % 3) as usize];
    assert_eq!(
        m.ok(&format!("LC_ALL=C ls mnt/{place} | wc -l")).trim(),
        FILES.to_string()
    );
}
