//! What caskfs cannot be (hard links, FIFOs, devices), bad names, and values over the maximum: each a
//! clear errno, with nothing stored.

mod common;

use common::Mount;

/// Hard links, FIFOs, sockets and device nodes are inodes like any other:
/// they work, show as they are, and survive a remount; a hard link to a
/// folder is refused as everywhere.
#[test]
fn hard_links_and_special_files_work_and_persist() {
    require_fuse!();
    let mut m = Mount::start(&[]);
    m.ok("echo x > mnt/a && ln mnt/a mnt/h && mkdir mnt/d && ln mnt/a mnt/d/h2");
    m.ok("mkfifo mnt/f && mknod mnt/c c 1 3 && mknod mnt/b b 7 0");
    m.ok("python3 -c \"import socket; socket.socket(socket.AF_UNIX).bind('mnt/s')\"");
    let shown = "stat -c '%n %F %h %t:%T' mnt/a mnt/h mnt/d/h2 mnt/f mnt/c mnt/b mnt/s";
    let want = "mnt/a regular file 3 0:0\nmnt/h regular file 3 0:0\nmnt/d/h2 regular file 3 0:0\n\
                mnt/f fifo 1 0:0\nmnt/c character special file 1 1:3\n\
                mnt/b block special file 1 7:0\nmnt/s socket 1 0:0\n";
    assert_eq!(m.ok(shown), want);
    let inos = m.ok("stat -c %i mnt/a mnt/h mnt/d/h2");
    let first = inos.lines().next().unwrap();
    assert!(inos.lines().all(|l| l == first), "one inode: {inos}");
    // A write through one name shows through the others.
    m.ok("echo y >> mnt/h");
    assert_eq!(m.ok("cat mnt/d/h2"), "x\ny\n");
    // A FIFO passes bytes between processes (the kernel runs it).
    assert_eq!(
        m.ok("(echo through > mnt/f) >/dev/null 2>&1 & timeout 5 cat mnt/f"),
        "through\n"
    );
    assert!(
        m.fails("link mnt/d mnt/d2")
            .contains("Operation not permitted")
    );
    // Removing one name keeps the others.
    m.ok("rm mnt/a");
    assert_eq!(m.ok("stat -c %h mnt/h && cat mnt/h"), "2\nx\ny\n");
    m.unmount();
    m.mount();
    assert_eq!(
        m.ok("stat -c '%h %i' mnt/h mnt/d/h2"),
        format!("2 {first}\n2 {first}\n")
    );
    assert_eq!(
        m.ok("stat -c '%F %t:%T' mnt/c mnt/f"),
        "character special file 1:3\nfifo 0:0\n"
    );
    m.ok("rm mnt/h mnt/d/h2");
    assert_eq!(m.ok("ls mnt"), "b\nc\nd\nf\ns\n");
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
