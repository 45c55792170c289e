//! How requests reach the daemon: FUSE over io_uring when the kernel has it
//! on (`--transport auto`, the default, or `uring`), /dev/fuse otherwise
//! or with `--transport classic`; `caskfs stats` says which. The rest of
//! the suite runs on whichever `auto` picks, and `scripts/test.sh` runs
//! the mount suites again on the other.

mod common;

use std::process::Command;

use common::{BIN, Mount};

const PARAMETER: &str = "/sys/module/fuse/parameters/enable_uring";

fn uring_on() -> bool {
    std::fs::read_to_string(PARAMETER).is_ok_and(|v| v.trim() == "Y")
}

/// The transport `caskfs stats --json` reports for `m`.
fn transport(m: &Mount) -> String {
    let out = Command::new(BIN)
        .args(["stats", "--json"])
        .arg(&m.mnt)
        .output()
        .unwrap();
    let json = String::from_utf8_lossy(&out.stdout);
    json.split("\"transport\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no transport in {json}"))
        .to_string()
}

/// Files, folders, a large value, renames and removals through `m`.
fn everyday_work(m: &Mount) {
    m.ok("mkdir -p mnt/a/b && echo hello > mnt/a/b/k && cat mnt/a/b/k | grep -qx hello");
    m.ok("head -c 3000000 /dev/urandom > big && cp big mnt/a/big && cmp big mnt/a/big");
    m.ok("echo more >> mnt/a/b/k && test \"$(cat mnt/a/b/k)\" = \"$(printf 'hello\\nmore')\"");
    m.ok("mv mnt/a/b mnt/c && test -f mnt/c/k && ! test -e mnt/a/b");
    m.ok("ln -s c/k mnt/link && test \"$(readlink mnt/link)\" = c/k && chmod 600 mnt/c/k");
    m.ok("truncate -s 2 mnt/c/k && test \"$(cat mnt/c/k)\" = he && stat -c %a mnt/c/k | grep -qx 600");
    m.ok("test \"$(ls mnt | tr '\\n' ' ')\" = 'a c link ' && rm -r mnt/c mnt/link && ls mnt | grep -qx a");
    m.ok("df mnt > /dev/null && sync mnt/a/big");
}

#[test]
fn auto_serves_through_io_uring_when_the_kernel_has_it_on() {
    require_fuse!();
    let m = Mount::start(&["--transport", "auto"]);
    everyday_work(&m);
    let want = if uring_on() { "io_uring" } else { "/dev/fuse" };
    assert_eq!(transport(&m), want);
}

#[test]
fn classic_serves_through_dev_fuse() {
    require_fuse!();
    let m = Mount::start(&["--transport", "classic"]);
    everyday_work(&m);
    assert_eq!(transport(&m), "/dev/fuse");
}

/// `--transport uring` serves through io_uring, or, where the kernel has it
/// off, refuses to mount and says how to turn it on.
#[test]
fn uring_is_used_or_refused_with_the_reason() {
    require_fuse!();
    if uring_on() {
        let m = Mount::start(&["--transport", "uring"]);
        everyday_work(&m);
        assert_eq!(transport(&m), "io_uring");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("mnt")).unwrap();
    let out = Command::new(BIN)
        .args(["mount", "--transport", "uring", "data", "mnt"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains("enable_uring"), "{err}");
    assert!(!common::is_mounted(&dir.path().join("mnt")));
}
