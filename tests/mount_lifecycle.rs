//! Mounting, unmounting, remounting, signals, crashes, and the errors of
//! the mount command itself.

mod common;

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{BIN, Mount, check_clean, is_mounted, pattern};

fn write_some(m: &Mount) -> Vec<u8> {
    let big = pattern(5 << 20, 3);
    fs::write(m.scratch("big"), &big).unwrap();
    m.ok("for i in $(seq 1 50); do echo value-$i > mnt/k$i; done; cp big mnt/big");
    m.ok("echo x > mnt/gone && rm mnt/gone && echo a > mnt/from && mv mnt/from mnt/to");
    big
}

fn check_some(m: &Mount) {
    assert_eq!(m.ok("cat mnt/k17"), "value-17\n");
    assert_eq!(m.ok("ls mnt | wc -l").trim(), "52");
    m.ok("cmp big mnt/big");
    assert!(m.fails("cat mnt/gone").contains("No such file"));
    assert!(m.fails("cat mnt/from").contains("No such file"));
    assert_eq!(m.ok("cat mnt/to"), "a\n");
}

#[test]
fn remount_keeps_everything() {
    require_fuse!();
    let mut m = Mount::start(&[]);
    write_some(&m);
    m.unmount();
    assert!(!is_mounted(&m.mnt));
    // A clean unmount closes the store: the active segment gives back the
    // space allocated ahead of its records, and the store checks clean.
    let log = m.log();
    assert!(!log.contains("still in use"), "{log}");
    check_clean(&m.data);
    let on_disk: u64 = fs::read_dir(&m.data)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|md| md.len())
        .sum();
    // write_some stores 5 MiB and a few small values.
    assert!(
        on_disk < (5 << 20) + (64 << 10),
        "{on_disk} bytes in the data directory after a clean unmount"
    );
    m.mount();
    check_some(&m);
}

#[test]
fn kill_9_keeps_acknowledged_writes() {
    require_fuse!();
    for args in [&[][..], &["--sync", "always"][..]] {
        let mut m = Mount::start(args);
        write_some(&m);
        m.crash();
        assert!(!is_mounted(&m.mnt), "dead mount not cleared");
        m.mount();
        check_some(&m);
    }
}

#[test]
fn sigterm_and_sigint_unmount_cleanly() {
    require_fuse!();
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let mut m = Mount::start(&[]);
        m.ok("echo kept > mnt/k");
        m.signal(sig);
        let status = m.wait_exit(Duration::from_secs(20));
        assert!(
            status.is_some_and(|s| s.success()),
            "{status:?}\n{}",
            m.log()
        );
        assert!(!is_mounted(&m.mnt));
        m.mount();
        assert_eq!(m.ok("cat mnt/k"), "kept\n");
    }
}

#[test]
fn daemon_returns_when_ready_and_exits_at_umount() {
    require_fuse!();
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let mnt = root.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    // Paths relative to where the command runs, the log file's too,
    // although the daemon leaves that directory.
    assert!(data.ends_with("data") && mnt.ends_with("mnt"));
    let daemon = || {
        Command::new(BIN)
            .args([
                "mount",
                "--daemon",
                "--log-file",
                "caskfs.log",
                "data",
                "mnt",
            ])
            .current_dir(root.path())
            .output()
            .unwrap()
    };
    let out = daemon();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let guard = common::DetachOnDrop(mnt.clone());
    // Ready means usable at once.
    fs::write(mnt.join("k"), b"v").unwrap();
    assert_eq!(fs::read(mnt.join("k")).unwrap(), b"v");
    assert!(
        root.path().join("caskfs.log").exists(),
        "the log file is where the command ran"
    );
    // mount(8), /proc/mounts and `df -T` name the filesystem.
    let mounts = fs::read_to_string("/proc/mounts").unwrap();
    let line = mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == Some(mnt.to_str().unwrap()))
        .unwrap_or_else(|| panic!("{} not in /proc/mounts", mnt.display()));
    assert_eq!(line.split(' ').nth(2), Some("fuse.caskfs"), "{line}");
    assert!(common::unmount_cmd(&mnt), "unmount failed");
    // The daemon closes the store and releases the directory: mount again.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = daemon();
        if out.status.success() {
            break;
        }
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(err.contains("in use"), "{err}");
        assert!(Instant::now() < deadline, "data directory never released");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(fs::read(mnt.join("k")).unwrap(), b"v");
    assert!(common::unmount_cmd(&mnt), "unmount failed");
    drop(guard);
}

fn mount_fails(data: &std::path::Path, mnt: &std::path::Path, daemon: bool) -> String {
    let mut cmd = Command::new(BIN);
    cmd.arg("mount");
    if daemon {
        cmd.arg("--daemon");
    }
    let out = cmd.arg(data).arg(mnt).output().unwrap();
    assert!(!out.status.success(), "mount should fail");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(err.trim().lines().count(), 1, "want one line: {err}");
    err
}

#[test]
fn mount_command_errors_are_one_clear_line() {
    require_fuse!();
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let full = root.path().join("full");
    fs::create_dir(&full).unwrap();
    fs::write(full.join("x"), b"").unwrap();
    assert!(mount_fails(&data, &full, false).contains("not empty"));
    assert!(mount_fails(&data, &full, true).contains("not empty"));
    let missing = root.path().join("missing");
    assert!(mount_fails(&data, &missing, true).contains("No such file"));
    let file_as_parent = full.join("x").join("data");
    let empty = root.path().join("empty");
    fs::create_dir(&empty).unwrap();
    assert!(mount_fails(&file_as_parent, &empty, true).contains("data directory"));

    let m = Mount::start(&[]);
    let other = m.scratch("other");
    fs::create_dir(&other).unwrap();
    assert!(mount_fails(&m.data, &other, true).contains("in use"));
    assert!(mount_fails(&m.data, &m.mnt, true).contains("already a mount point"));
}

#[test]
fn sigusr1_merges_a_mounted_store_and_no_compaction_waits_for_it() {
    require_fuse!();
    let mut m = Mount::start(&["--max-segment-size", "4K", "--no-compaction"]);
    for round in 0..30 {
        m.ok(&format!(
            "for k in a b c d e; do printf '%0200d\\n' {round} > mnt/$k; done"
        ));
    }
    let segments = |m: &Mount| {
        fs::read_dir(&m.data)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".seg")
            })
            .count()
    };
    let before = segments(&m);
    assert!(before > 3, "expected several segments, found {before}");
    // --no-compaction: nothing merges by itself.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !m.data.join("LAST_MERGE").exists(),
        "merged despite --no-compaction"
    );
    m.signal(libc::SIGUSR1);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !m.data.join("LAST_MERGE").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        m.data.join("LAST_MERGE").exists(),
        "no merge after SIGUSR1\n{}",
        m.log()
    );
    assert!(
        segments(&m) < before,
        "{} segments after the merge, {before} before",
        segments(&m)
    );
    let last = format!("{:0200}\n", 29);
    for k in ["a", "b", "c", "d", "e"] {
        assert_eq!(m.ok(&format!("cat mnt/{k}")), last);
    }
    m.unmount();
    m.mount();
    assert_eq!(m.ok("cat mnt/c"), last);
}
