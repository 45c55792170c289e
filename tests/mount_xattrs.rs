//! Extended attributes through a real mount, with the tools that set and
//! read them: attr's `setfattr` and `getfattr`, python's `os.*xattr` for
//! the flags and errnos, `cp -a` and `rsync -X` in and out. They are kept
//! with the inode: across remounts, a kill -9, a merge and hard links.
//!
//! setfattr and rsync are optional here: without them the test skips,
//! saying so, except under `CI=true` (scripts/test.sh installs them).

mod common;

use common::{BIN, Mount, have, is_root};

fn getfattr(m: &Mount, name: &str, path: &str) -> String {
    m.ok(&format!("getfattr --only-values -n {name} {path}"))
}

/// The `user.` attributes of `path` as `getfattr -d` prints them, without
/// its `# file:` line (which names the path).
fn dump(m: &Mount, path: &str) -> String {
    let out = m.ok(&format!("getfattr -d --absolute-names {path}"));
    out.lines()
        .filter(|l| !l.starts_with("# file:") && !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn set_get_list_remove_with_setfattr_and_getfattr() {
    require_fuse!();
    let mut m = Mount::start(&[]);
    if !have(
        &m,
        "attr (setfattr)",
        "command -v setfattr && command -v getfattr",
    ) {
        return;
    }
    m.ok("echo hello > mnt/f && mkdir mnt/d");
    m.ok("setfattr -n user.color -v blue mnt/f && setfattr -n user.empty mnt/f");
    m.ok("setfattr -n user.tag -v 0x00ff10 mnt/d");
    assert_eq!(getfattr(&m, "user.color", "mnt/f"), "blue");
    assert_eq!(dump(&m, "mnt/f"), "user.color=\"blue\"\nuser.empty=\"\"");
    assert_eq!(dump(&m, "mnt/d"), "user.tag=0sAP8Q");
    // Replacing keeps one name; removing leaves the rest.
    m.ok("setfattr -n user.color -v green mnt/f && setfattr -x user.empty mnt/f");
    assert_eq!(dump(&m, "mnt/f"), "user.color=\"green\"");
    let e = m.fails("getfattr -n user.empty mnt/f");
    assert!(e.contains("No such attribute"), "{e}");
    let e = m.fails("setfattr -x user.never mnt/f");
    assert!(e.contains("No such attribute"), "{e}");
    // The file's bytes are untouched; a write keeps the attributes.
    m.ok("echo more >> mnt/f");
    assert_eq!(m.ok("cat mnt/f"), "hello\nmore\n");
    assert_eq!(getfattr(&m, "user.color", "mnt/f"), "green");
    // Set while a writer holds the file open, or while it is still being
    // created: the writer's commit at close keeps them.
    m.ok("exec 3>>mnt/f; echo a >&3; setfattr -n user.mid -v 1 mnt/f; echo b >&3; exec 3>&-");
    m.ok("exec 3>mnt/new; setfattr -n user.early -v 2 mnt/new; echo c >&3; exec 3>&-");
    assert_eq!(getfattr(&m, "user.mid", "mnt/f"), "1");
    assert_eq!(getfattr(&m, "user.early", "mnt/new"), "2");
    assert_eq!(m.ok("cat mnt/f mnt/new"), "hello\nmore\na\nb\nc\n");
    m.ok("setfattr -x user.mid mnt/f");
    // A hard link is the same inode: the same attributes.
    m.ok("ln mnt/f mnt/g && setfattr -n user.via-link -v 1 mnt/g");
    assert_eq!(getfattr(&m, "user.via-link", "mnt/f"), "1");
    // Kept across a remount.
    m.unmount();
    m.mount();
    assert_eq!(
        dump(&m, "mnt/f"),
        "user.color=\"green\"\nuser.via-link=\"1\""
    );
    assert_eq!(dump(&m, "mnt/d"), "user.tag=0sAP8Q");
    // rm of the last name takes them along: a new file has none.
    m.ok("rm mnt/f mnt/g && touch mnt/f");
    assert_eq!(dump(&m, "mnt/f"), "");
}

#[test]
fn flags_errors_limits_and_namespaces_answer_as_on_ext4() {
    require_fuse!();
    let m = Mount::start(&[]);
    m.ok("echo x > mnt/f && mkfifo mnt/fifo");
    let script = r#"
import ctypes, errno, os
def err(f, *a):
    try:
        f(*a)
        return 'ok'
    except OSError as e:
        return errno.errorcode[e.errno]
f = 'mnt/f'
print(err(os.setxattr, f, 'user.a', b'1', os.XATTR_CREATE))
print(err(os.setxattr, f, 'user.a', b'2', os.XATTR_CREATE))
print(err(os.setxattr, f, 'user.b', b'2', os.XATTR_REPLACE))
print(err(os.setxattr, f, 'user.a', b'3', os.XATTR_REPLACE), os.getxattr(f, 'user.a'))
print(err(os.removexattr, f, 'user.b'))
# A buffer too short for the value: ERANGE; a size of 0 asks the size.
libc = ctypes.CDLL(None, use_errno=True)
buf = ctypes.create_string_buffer(64)
n0 = libc.getxattr(f.encode(), b'user.a', None, 0)
os.setxattr(f, 'user.long', b'v' * 100)
r = libc.getxattr(f.encode(), b'user.long', buf, 64)
print(n0, r, errno.errorcode[ctypes.get_errno()])
r = libc.listxattr(f.encode(), buf, 4)
print(libc.listxattr(f.encode(), None, 0), r, errno.errorcode[ctypes.get_errno()])
# Values up to 64 KiB; the kernel refuses longer ones.
print(err(os.setxattr, f, 'user.big', b'b' * 65536), len(os.getxattr(f, 'user.big')))
print(err(os.setxattr, f, 'user.huge', b'b' * 65537))
# Namespaces: trusted. and security. are kept (as root), others are not.
print(err(os.setxattr, f, 'trusted.t', b'1'), err(os.setxattr, f, 'security.s', b'1'))
print(err(os.setxattr, f, 'system.other', b'1'), err(os.getxattr, f, 'system.posix_acl_access'))
print(err(os.setxattr, f, 'nonamespace', b'1'))
# user. only on files and folders.
print(err(os.setxattr, 'mnt/fifo', 'user.x', b'1'))
# An inode holds at most 256 KiB of them.
os.removexattr(f, 'user.big')
for i in range(3):
    os.setxattr(f, 'user.fill%d' % i, b'f' * 65536)
print(err(os.setxattr, f, 'user.fill3', b'f' * 65536))
print(sorted(os.listxattr(f)))
"#;
    let out = m.ok(&format!("python3 -c '{}'", script.replace('\'', "'\\''")));
    let lines: Vec<&str> = out.lines().collect();
    let root = is_root();
    let mut want = vec![
        "ok",
        "EEXIST",
        "ENODATA",
        "ok b'3'",
        "ENODATA",
        "1 -1 ERANGE",
        "17 -1 ERANGE",
        "ok 65536",
        "E2BIG",
    ];
    let ns = if root { "ok ok" } else { "EPERM ok" };
    want.extend([ns, "ENOTSUP ENOTSUP", "ENOTSUP", "EPERM", "ENOSPC"]);
    assert_eq!(&lines[..want.len()], &want[..], "{out}");
    let names = lines[want.len()];
    assert!(
        names.contains("'user.fill2'") && !names.contains("fill3"),
        "{names}"
    );
}

#[test]
fn a_change_sets_the_ctime_and_is_kept_through_kill_9_and_a_merge() {
    require_fuse!();
    let mut m = Mount::start(&[]);
    if !have(&m, "attr (setfattr)", "command -v setfattr") {
        return;
    }
    m.ok("echo x > mnt/f && touch -d 2001-01-01 mnt/f");
    let before = m.ok("stat -c '%y|%z' mnt/f");
    std::thread::sleep(std::time::Duration::from_millis(20));
    m.ok("setfattr -n user.k -v 1 mnt/f");
    let after = m.ok("stat -c '%y|%z' mnt/f");
    let (mtime0, ctime0) = before.trim().split_once('|').expect("stat");
    let (mtime1, ctime1) = after.trim().split_once('|').expect("stat");
    assert_eq!(mtime0, mtime1, "the mtime stays");
    assert_ne!(ctime0, ctime1, "the ctime moves");
    // Many changes, then the daemon killed: every acknowledged one holds.
    m.ok("i=0; while [ $i -lt 200 ]; do setfattr -n user.n$i -v v$i mnt/f; i=$((i+1)); done");
    m.ok("i=0; while [ $i -lt 200 ]; do setfattr -n user.n$i -v w$i mnt/f; i=$((i+2)); done");
    m.crash();
    m.mount();
    assert_eq!(getfattr(&m, "user.n10", "mnt/f"), "w10");
    assert_eq!(getfattr(&m, "user.n11", "mnt/f"), "v11");
    let names = m.ok("getfattr -d mnt/f | grep -c '^user.n'");
    assert_eq!(names.trim(), "200");
    // A merge rewrites the records; the attributes stay.
    if m.local() {
        m.ok(&format!("{BIN} compact mnt"));
        m.unmount();
        m.mount();
        assert_eq!(getfattr(&m, "user.n199", "mnt/f"), "v199");
    }
}

/// Whether setfattr and rsync are here, and the disk beside the mount,
/// where the sources live, keeps user xattrs.
fn can_copy_xattrs_in(m: &Mount) -> bool {
    if !have(m, "attr (setfattr)", "command -v setfattr") || !have(m, "rsync", "command -v rsync") {
        return false;
    }
    let probe = "touch probe && setfattr -n user.probe -v 1 probe && rm probe";
    let keeps = m.sh(probe).status.success();
    if !keeps {
        eprintln!("skipping: the disk under the test's temp dir keeps no user xattrs");
    }
    keeps
}

#[test]
fn cp_a_and_rsync_x_carry_them_in_and_out() {
    require_fuse!();
    let m = Mount::start(&[]);
    if !can_copy_xattrs_in(&m) {
        return;
    }
    m.ok("mkdir -p src/sub && echo a > src/a && echo b > src/sub/b && ln -s a src/link");
    m.ok("setfattr -n user.origin -v disk src/a && setfattr -n user.dir -v 1 src/sub");
    m.ok("setfattr -n user.bin -v 0x0001ff src/sub/b");
    // Every path's attributes, in path order (symlinks not followed:
    // they hold none).
    let want = |root: &str| {
        m.ok(&format!(
            "cd {root} && find . | sort | while read -r p; do \
             echo \"$p\"; getfattr -h -d --absolute-names \"$p\" | grep -v '^# file'; done"
        ))
    };
    let src = want("src");
    m.ok("cp -a src mnt/copied && diff -r src mnt/copied");
    assert_eq!(want("mnt/copied"), src, "cp -a into the mount");
    m.ok("rsync -aX src/ mnt/synced/ && diff -r src mnt/synced");
    assert_eq!(want("mnt/synced"), src, "rsync -aX into the mount");
    m.ok("rsync -aX mnt/synced/ back/ && diff -r src back");
    assert_eq!(want("back"), src, "rsync -aX out of the mount");
}

/// What `rsync -aHXS` has to carry, into the mount and back out: hard
/// links, extended attributes, a FIFO, symlinks and a sparse 1 GiB file.
#[test]
fn rsync_ahxs_round_trip_keeps_links_xattrs_fifos_and_holes() {
    require_fuse!();
    let m = Mount::start(&[]);
    if !can_copy_xattrs_in(&m) {
        return;
    }
    m.ok("mkdir -p src/d && echo one > src/one && ln src/one src/d/one-again");
    m.ok("setfattr -n user.tag -v linked src/one && setfattr -n user.dir -v 1 src/d");
    m.ok("mkfifo src/fifo && ln -s one src/link && ln -s d src/dirlink");
    m.ok("truncate -s 1G src/sparse && printf middle | dd of=src/sparse bs=1 seek=500000000 conv=notrunc status=none");
    m.ok("rsync -aHXS src/ mnt/tree/ && rsync -aHXS mnt/tree/ back/");
    for copy in ["mnt/tree", "back"] {
        // diff calls two FIFOs different; `shape` compares their kind.
        m.ok(&format!("diff -r --no-dereference -x fifo src {copy}"));
        let shape = |dir: &str| {
            m.ok(&format!(
                "cd {dir} && find . -printf '%y %n %P -> %l\\n' | sort \
                 && getfattr -R -h -d --absolute-names . 2>/dev/null | grep -v '^# file' | sort \
                 && [ $(stat -c %i one) = $(stat -c %i d/one-again) ] && echo linked"
            ))
        };
        assert_eq!(shape(copy), shape("src"), "{copy}");
        let du = m.ok(&format!("du -k {copy}/sparse | cut -f1"));
        let du: u64 = du.trim().parse().expect("du");
        assert!(du < 1024, "{copy}/sparse takes {du} KiB");
    }
}
