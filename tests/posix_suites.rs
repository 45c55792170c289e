//! Others' conformance suites against a real mount: pjdfstest (the Rust
//! port of the POSIX filesystem test suite) beside the same run on a
//! plain directory of the same disk, and fsx (the file system exerciser)
//! with every operation it has on a 1 MiB file, three seeds of 30,000
//! operations.
//!
//! Both install with cargo; `scripts/test.sh` installs them, and the user
//! `tests` pjdfstest switches to, when missing. Without them the tests
//! skip, saying so, except under `CI=true`. pjdfstest needs root.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::{Mount, have, is_root};

const PJDFSTEST_CONFIG: &str = r#"
[features]
posix_fallocate = {}
utime_now = {}
utimensat = {}
rename_ctime = {}

[settings]
naptime = 0.01
allow_remount = false

[dummy_auth]
entries = [
  ["nobody", "nogroup"],
  ["tests", "tests"],
]
"#;

const FSX_CONFIG: &str = r#"
flen = 1048576

[opsize]
max = 65536
min = 1
align = 1

[weights]
close_open = 2
read = 10
write = 10
mapread = 10
mapwrite = 10
invalidate = 1
truncate = 2
fsync = 1
fdatasync = 1
posix_fallocate = 2
punch_hole = 2
sendfile = 2
posix_fadvise = 1
copy_file_range = 2
"#;

/// (failed, skipped, passed) from pjdfstest's summary line.
fn summary(out: &str) -> (u32, u32, u32) {
    let line = out
        .lines()
        .find(|l| l.starts_with("Summary:"))
        .unwrap_or_else(|| panic!("no summary from pjdfstest:\n{out}"));
    let n = |what: &str| {
        line.split(',')
            .find(|p| p.trim_end().ends_with(what))
            .and_then(|p| p.split_whitespace().rev().nth(1)?.parse().ok())
            .unwrap_or_else(|| panic!("no {what} count in {line:?}"))
    };
    (n("failed"), n("skipped"), n("passed"))
}

#[test]
fn pjdfstest_passes_on_the_mount_what_it_passes_on_the_disk() {
    require_fuse!();
    if !is_root() {
        eprintln!("skipping: pjdfstest needs root");
        return;
    }
    let m = Mount::start(&["--allow-other"]);
    if !have(&m, "pjdfstest", "command -v pjdfstest")
        || !have(&m, "the user tests", "id tests && getent group nogroup")
    {
        return;
    }
    // pjdfstest acts as other users too: they must reach the mount.
    fs::set_permissions(m.root.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::set_permissions(&m.mnt, fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::write(m.scratch("pjdfstest.toml"), PJDFSTEST_CONFIG).expect("config");
    m.ok("mkdir -m 755 plain");
    let run = |dir: &str| {
        let out = m.sh(&format!(
            "cd {dir} && pjdfstest -c ../pjdfstest.toml -p \"$PWD\" 2>&1"
        ));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let on_mount = run("mnt");
    let on_disk = run("plain");
    let (mount, disk) = (summary(&on_mount), summary(&on_disk));
    eprintln!("pjdfstest on the mount: {mount:?}, on the disk: {disk:?} (failed, skipped, passed)");
    let failed: Vec<&str> = on_mount.lines().filter(|l| l.contains("FAILED")).collect();
    assert_eq!(mount.0, 0, "failed on the mount: {failed:#?}");
    // The one test it skips on FUSE: the link limit cannot be read there.
    assert!(
        mount.2 + 1 >= disk.2,
        "passed {} on the mount, {} on the disk",
        mount.2,
        disk.2
    );
}

#[test]
fn fsx_with_every_operation_finds_nothing() {
    require_fuse!();
    let m = Mount::start(&[]);
    if !have(&m, "fsx", "command -v fsx") {
        return;
    }
    fs::write(m.scratch("fsx.toml"), FSX_CONFIG).expect("config");
    m.ok("mkdir artifacts");
    for seed in 1..=3 {
        let out = m.sh(&format!(
            "fsx -N 30000 -S {seed} -f fsx.toml -P artifacts mnt/fsx-{seed} 2>&1"
        ));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("All operations completed A-OK!"),
            "fsx seed {seed}:\n{}\nthe daemon's log:\n{}",
            common::tail(&text, 6000),
            common::tail(&m.log(), 4000)
        );
    }
}
