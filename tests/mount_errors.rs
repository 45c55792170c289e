//! What caskfs cannot be (hard links, FIFOs, devices), bad names, and values over the maximum: each a
//! clear errno, with nothing stored.

mod common;

use common::Mount;

#[test]
fn unsupported_kinds_are_eperm_and_store_nothing() {
    require_fuse!();
    let m = Mount::start(&[]);
    m.ok("echo x > mnt/a");
    for (cmd, what) in [
        ("ln mnt/a mnt/h", "ln"),
        ("mkfifo mnt/f", "mkfifo"),
        ("mknod mnt/n c 1 3", "mknod"),
    ] {
        let err = m.fails(cmd);
        assert!(err.contains("Operation not permitted"), "{what}: {err}");
    }
    assert_eq!(m.ok("ls mnt"), "a\n");
    assert!(
        m.log().contains("does not support"),
        "no log line:\n{}",
        m.log()
    );
}

#[test]
fn bad_names() {
    require_fuse!();
    let m = Mount::start(&[]);
    let long = "x".repeat(256);
    let err = m.fails(&format!("echo v > mnt/{long}"));
    assert!(err.contains("File name too long"), "{err}");
    let max = "y".repeat(255);
    m.ok(&format!("echo v > mnt/{max} && cat mnt/{max}"));
    assert_eq!(m.ok("ls mnt").trim(), max);
    assert!(m.fails("rmdir mnt/nothing").contains("No such file"));
    assert!(
        m.fails(&format!("rmdir mnt/{max}"))
            .contains("Not a directory")
    );
    assert!(
        m.fails(&format!("cat mnt/{max}/x"))
            .contains("Not a directory")
    );
}

#[test]
fn over_max_value_size_is_efbig_and_stores_nothing() {
    require_fuse!();
    let m = Mount::start(&["--max-value-size", "64K"]);
    m.ok("head -c 100000 /dev/zero > big && head -c 1000 /dev/zero > small");
    let err = m.fails("cat big > mnt/k");
    assert!(err.contains("File too large"), "{err}");
    assert!(m.fails("stat mnt/k").contains("No such file"));
    assert_eq!(m.ok("ls mnt"), "");
    // An existing value is left as it was.
    m.ok("cat small > mnt/k");
    assert!(m.fails("cat big > mnt/k").contains("File too large"));
    m.ok("cmp small mnt/k");
    assert!(m.fails("truncate -s 1M mnt/k").contains("File too large"));
    m.ok("cmp small mnt/k");
    m.ok("head -c 65536 /dev/zero > mnt/exact");
}

#[test]
fn read_only_mount_refuses_changes() {
    require_fuse!();
    let mut m = Mount::start(&[]);
    m.ok("echo keep > mnt/k");
    m.unmount();
    m.args = vec!["--read-only".into()];
    m.mount();
    assert_eq!(m.ok("cat mnt/k"), "keep\n");
    for cmd in [
        "echo x > mnt/k",
        "echo x > mnt/new",
        "rm mnt/k",
        "mv mnt/k mnt/j",
        "touch mnt/k",
        "mkdir mnt/d",
        "chmod 600 mnt/k",
        "ln -s k mnt/s",
    ] {
        assert!(m.fails(cmd).contains("Read-only file system"), "{cmd}");
    }
    assert_eq!(m.ok("cat mnt/k"), "keep\n");
}
