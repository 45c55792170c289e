//! Hard links, stable inode numbers and special files through a real
//! mount, with the tools that rely on them: `cp -a` and `cp -al`, `rsync
//! -aH`, git's local clone (it hard-links objects), sqlite in both journal
//! modes, `find -inum` and `tar` across remounts, FIFOs and device nodes.
//!
//! rsync, git and python3's sqlite3 module are optional here: without one
//! its test skips, saying so, except under `CI=true`, where that is a
//! failure (as for etcd in `tests/common/etcd.rs`).

mod common;

use std::collections::BTreeMap;

use common::{Mount, have, is_root};

/// A tree with hard links inside it: `a/one` has three names, `a/b/big`
/// (2 MB, so its bytes are extents) two, and a plain file, a symlink and
/// an old mtime beside them.
const SRC_TREE: &str = "mkdir -p src/a/b src/c/deep && echo one > src/a/one \
     && ln src/a/one src/a/one-again && ln src/a/one src/c/deep/one-third \
     && head -c 2000000 /dev/urandom > src/a/b/big && ln src/a/b/big src/c/big-link \
     && echo plain > src/c/plain && ln -s ../a/one src/c/sym && chmod 640 src/a/one \
     && touch -d 2001-02-03 src/c/plain";

/// The hard-link structure of the files below `dir` (relative to the temp
/// root), whatever their inode numbers: each group of names that share an
/// inode, sorted, with that inode's link count.
fn link_groups(m: &Mount, dir: &str) -> Vec<(Vec<String>, u64)> {
    let out = m.ok(&format!(
        "cd {dir} && find . ! -type d -printf '%i %n %P\\n'"
    ));
    let mut by_ino: BTreeMap<u64, (Vec<String>, u64)> = BTreeMap::new();
    for line in out.lines() {
        let mut w = line.splitn(3, ' ');
        let (ino, links, name) = (w.next(), w.next(), w.next());
        let (Some(ino), Some(links), Some(name)) = (ino, links, name) else {
            panic!("bad find line {line:?}");
        };
        let ino: u64 = ino.parse().expect("inode number from find");
        let links: u64 = links.parse().expect("link count from find");
        let entry = by_ino.entry(ino).or_insert((Vec::new(), links));
        assert_eq!(entry.1, links, "{dir}: one inode, two link counts: {out}");
        entry.0.push(name.to_string());
    }
    let mut groups: Vec<(Vec<String>, u64)> = by_ino
        .into_values()
        .map(|(mut names, links)| {
            names.sort();
            (names, links)
        })
        .collect();
    groups.sort();
    groups
}

/// `stat -c FORMAT` of each path (relative to the temp root), one line each.
fn stat(m: &Mount, format: &str, paths: &str) -> String {
    m.ok(&format!("stat -c '{format}' {paths}"))
}

#[test]
fn cp_a_and_cp_al_share_inodes_and_a_write_shows_through_every_name() {
    require_fuse!();
    let mut m = Mount::start(&[]);
    m.ok(SRC_TREE);
    let src_groups = link_groups(&m, "src");
    assert_eq!(
        src_groups.iter().map(|g| g.1).collect::<Vec<_>>(),
        [2, 3, 1, 1],
        "the source tree: {src_groups:?}"
    );
    // Into the mount: cp -a keeps the links inside the tree it copies.
    m.ok("cp -a src mnt/tree && diff -r src mnt/tree");
    assert_eq!(link_groups(&m, "mnt/tree"), src_groups);
    // A hard link cannot cross filesystems, so cp -al from outside fails.
    let e = m.fails("cp -al src mnt/cross");
    assert!(e.contains("Invalid cross-device link"), "{e}");
    m.ok("rm -rf mnt/cross");
    // Within the mount: every name below `linked` is a second name of the
    // one below `tree`, symlinks too; folders are new.
    m.ok("cp -al mnt/tree mnt/linked && diff -r src mnt/linked");
    let names_inos = |dir: &str| {
        m.ok(&format!(
            "cd {dir} && find . ! -type d -printf '%P %i\\n' | sort"
        ))
    };
    assert_eq!(names_inos("mnt/tree"), names_inos("mnt/linked"));
    assert_eq!(
        stat(
            &m,
            "%h",
            "mnt/linked/a/one mnt/linked/a/b/big mnt/linked/c/plain mnt/linked/c/sym"
        ),
        "6\n4\n2\n2\n"
    );
    let dirs = stat(&m, "%i", "mnt/tree/a mnt/linked/a");
    let dirs: Vec<&str> = dirs.lines().collect();
    assert_ne!(dirs[0], dirs[1], "cp -al makes new folders");
    assert_eq!(
        m.ok("cd mnt && find . -samefile linked/a/one | sort"),
        "./linked/a/one\n./linked/a/one-again\n./linked/c/deep/one-third\n\
         ./tree/a/one\n./tree/a/one-again\n./tree/c/deep/one-third\n"
    );
    // A write through one name shows through every other.
    m.ok("echo more >> mnt/linked/a/b/big && echo again >> mnt/tree/a/one-again");
    assert_eq!(m.ok("tail -c 5 mnt/tree/c/big-link"), "more\n");
    m.ok("cmp mnt/tree/a/b/big mnt/linked/c/big-link && head -c 2000000 mnt/tree/a/b/big | cmp - src/a/b/big");
    assert_eq!(stat(&m, "%s", "mnt/tree/a/b/big"), "2000005\n");
    assert_eq!(m.ok("cat mnt/linked/c/deep/one-third"), "one\nagain\n");
    assert_eq!(m.ok("cat src/a/one"), "one\n", "the source is another file");
    // rm of one name keeps the others, with one link fewer.
    m.ok("rm mnt/tree/a/b/big");
    assert_eq!(
        stat(&m, "%h", "mnt/tree/c/big-link mnt/linked/a/b/big"),
        "3\n3\n"
    );
    m.ok("rm -r mnt/tree");
    let want =
        "a/b/big 2\na/one 3\na/one-again 3\nc/big-link 2\nc/deep/one-third 3\nc/plain 1\nc/sym 1\n";
    let left = |m: &Mount| m.ok("cd mnt/linked && find . ! -type d -printf '%P %n\\n' | sort");
    assert_eq!(left(&m), want);
    let sums = m.ok("cd mnt/linked && sha256sum a/b/big c/big-link a/one c/deep/one-third");
    let inos = names_inos("mnt/linked");
    m.ok("head -c 2000000 mnt/linked/c/big-link | cmp - src/a/b/big");
    // All of it survives a remount, inode numbers too.
    m.unmount();
    m.mount();
    assert_eq!(left(&m), want, "after a remount");
    assert_eq!(
        m.ok("cd mnt/linked && find . ! -type d -printf '%P %i\\n' | sort"),
        inos
    );
    assert_eq!(
        m.ok("cd mnt/linked && sha256sum a/b/big c/big-link a/one c/deep/one-third"),
        sums
    );
    assert_eq!(m.ok("cat mnt/linked/a/one"), "one\nagain\n");
    assert_eq!(m.ok("readlink mnt/linked/c/sym"), "../a/one\n");
}

#[test]
fn rsync_ah_keeps_hard_links_into_the_mount_and_back_out() {
    require_fuse!();
    let mut m = Mount::start(&[]);
    if !have(&m, "rsync", "command -v rsync") {
        return;
    }
    m.ok(SRC_TREE);
    let src_groups = link_groups(&m, "src");
    m.ok("rsync -aH src/ mnt/rs/ && diff -r src mnt/rs");
    assert_eq!(link_groups(&m, "mnt/rs"), src_groups, "into the mount");
    assert_eq!(
        m.ok("cd mnt/rs && find . -samefile a/one | sort"),
        "./a/one\n./a/one-again\n./c/deep/one-third\n"
    );
    // Modes and times were kept: a second run finds nothing to do.
    assert_eq!(m.ok("rsync -aHn --itemize-changes src/ mnt/rs/"), "");
    m.ok("rsync -aH mnt/rs/ back/ && diff -r src back");
    assert_eq!(link_groups(&m, "back"), src_groups, "back out of the mount");
    // Break one link and grow a linked file at the source: rsync writes
    // temporary files and renames them over names of linked files.
    m.ok(
        "rm src/c/deep/one-third && echo a new file > src/c/deep/one-third \
         && echo grown >> src/a/b/big && rm src/c/plain",
    );
    let changed = link_groups(&m, "src");
    assert_ne!(changed, src_groups);
    m.ok("rsync -aH --delete src/ mnt/rs/ && diff -r src mnt/rs");
    assert_eq!(link_groups(&m, "mnt/rs"), changed, "after the second run");
    assert_eq!(
        m.ok("rsync -aHn --itemize-changes --delete src/ mnt/rs/"),
        ""
    );
    m.unmount();
    m.mount();
    assert_eq!(link_groups(&m, "mnt/rs"), changed, "after a remount");
    m.ok("diff -r src mnt/rs && rsync -aH --delete mnt/rs/ back/ && diff -r src back");
    assert_eq!(link_groups(&m, "back"), changed);
}

#[test]
fn git_local_clone_in_the_mount_hard_links_objects() {
    require_fuse!();
    let mut m = Mount::start(&[]);
    if !have(&m, "git", "command -v git") {
        return;
    }
    let git =
        "git -c user.name=t -c user.email=t@example.com -c init.defaultBranch=main -c gc.auto=0";
    m.ok(&format!(
        "cd mnt && {git} init -q origin && cd origin && mkdir src \
         && for i in 1 2 3 4 5; do echo v$i > src/f$i && head -c 200000 /dev/urandom > blob$i \
         && {git} add . && {git} commit -qm c$i || exit 1; done && {git} fsck --strict"
    ));
    let head = m.ok("git -C mnt/origin rev-parse HEAD");
    let head = head.trim();
    // A local clone hard-links every object file.
    m.ok(&format!(
        "cd mnt && {git} clone -q origin clone && cd clone && {git} fsck --strict"
    ));
    let obj = format!(".git/objects/{}/{}", &head[..2], &head[2..]);
    let both = stat(&m, "%i %h", &format!("mnt/origin/{obj} mnt/clone/{obj}"));
    let both: Vec<&str> = both.lines().collect();
    assert_eq!(
        both[0], both[1],
        "one inode for the commit object: {both:?}"
    );
    assert!(both[0].ends_with(" 2"), "two links: {both:?}");
    let objects = "find mnt/clone/.git/objects -path '*/objects/[0-9a-f][0-9a-f]/*' -type f";
    let linked: usize = m
        .ok(&format!("{objects} -links 2 | wc -l"))
        .trim()
        .parse()
        .expect("a count");
    assert!(linked >= 20, "only {linked} objects hard-linked");
    assert_eq!(
        m.ok(&format!("{objects} -links 1")),
        "",
        "every object linked"
    );
    // A commit in the clone, pulled into the origin.
    m.ok(&format!(
        "cd mnt/clone && echo w > src/new && {git} add . && {git} commit -qm in-clone \
         && cd ../origin && {git} pull -q --ff-only ../clone main && {git} fsck --strict"
    ));
    // gc in the origin packs its objects and unlinks the loose ones: the
    // clone keeps its names of them.
    m.ok(&format!(
        "cd mnt/origin && {git} gc -q --prune=now && {git} fsck --strict"
    ));
    assert_eq!(stat(&m, "%h", &format!("mnt/clone/{obj}")), "1\n");
    m.ok(&format!("cd mnt/clone && {git} fsck --strict && {git} update-index --refresh && {git} diff-files --quiet"));
    let log = m.ok("git -C mnt/clone log --format=%s");
    assert_eq!(log, "in-clone\nc5\nc4\nc3\nc2\nc1\n");
    // Out of the mount (a copy: links cannot cross filesystems).
    m.ok(&format!(
        "{git} clone -q mnt/clone out && cd out && {git} fsck --strict && cd .. \
         && diff -r --exclude=.git mnt/clone out && {git} clone -q mnt/origin out2 \
         && cd out2 && {git} fsck --strict"
    ));
    assert_eq!(m.ok("git -C out log --format=%s"), log);
    assert_eq!(m.ok("git -C out2 log --format=%s"), log);
    // After a remount the index's stat data still matches (same inode
    // numbers, times and sizes), and both repositories are whole.
    m.unmount();
    m.mount();
    m.ok(&format!(
        "cd mnt/clone && {git} diff-files --quiet && {git} fsck --strict \
         && cd ../origin && {git} fsck --strict && {git} status --porcelain"
    ));
}

/// Creates a table and inserts 300 rows, each in a transaction of its
/// own, in journal mode `argv[2]`; prints the journal mode, the integrity
/// check and `count sum(i) sum(length(v))`. `argv[3] == "exit"` leaves
/// without closing (as a killed program would), after turning off
/// checkpoints, so that in WAL mode every commit is still in the `-wal`.
const SQLITE_WRITE: &str = r#"
import os, sqlite3, sys
path, mode, end = sys.argv[1], sys.argv[2], sys.argv[3]
db = sqlite3.connect(path, isolation_level=None)
print(db.execute(f"PRAGMA journal_mode={mode}").fetchone()[0])
if end == "exit":
    db.execute("PRAGMA wal_autocheckpoint=0")
db.execute("CREATE TABLE t (i INTEGER PRIMARY KEY, v TEXT NOT NULL)")
for i in range(300):
    db.execute("BEGIN")
    db.execute("INSERT INTO t (i, v) VALUES (?, ?)", (i, f"value {i} " + "x" * (i % 97)))
    db.execute("COMMIT")
print(db.execute("PRAGMA integrity_check").fetchone()[0])
print(*db.execute("SELECT count(*), sum(i), sum(length(v)) FROM t").fetchone())
sys.stdout.flush()
if end == "exit":
    os._exit(0)
db.close()
"#;

/// Opens the database `argv[1]` and prints what SQLITE_WRITE prints.
const SQLITE_CHECK: &str = r#"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
print(db.execute("PRAGMA journal_mode").fetchone()[0])
print(db.execute("PRAGMA integrity_check").fetchone()[0])
print(*db.execute("SELECT count(*), sum(i), sum(length(v)) FROM t").fetchone())
db.close()
"#;

#[test]
fn sqlite_in_delete_and_wal_modes_survives_a_remount() {
    require_fuse!();
    let mut m = Mount::start(&[]);
    if !have(
        &m,
        "python3 with its sqlite3 module",
        "python3 -c 'import sqlite3'",
    ) {
        return;
    }
    std::fs::write(m.scratch("write.py"), SQLITE_WRITE).expect("write write.py");
    std::fs::write(m.scratch("check.py"), SQLITE_CHECK).expect("write check.py");
    let lengths: usize = (0..300usize)
        .map(|i| format!("value {i} ").len() + i % 97)
        .sum();
    let rows = format!("ok\n300 44850 {lengths}\n");
    m.ok("mkdir mnt/delete mnt/wal mnt/walexit");
    assert_eq!(
        m.ok("python3 write.py mnt/delete/db DELETE close"),
        format!("delete\n{rows}")
    );
    assert_eq!(
        m.ok("python3 write.py mnt/wal/db WAL close"),
        format!("wal\n{rows}")
    );
    // The journals are gone with the last connection.
    assert_eq!(
        m.ok("ls -A mnt/delete mnt/wal"),
        "mnt/delete:\ndb\n\nmnt/wal:\ndb\n"
    );
    // A program that dies with the WAL unmerged leaves it for the next.
    assert_eq!(
        m.ok("python3 write.py mnt/walexit/db WAL exit"),
        format!("wal\n{rows}")
    );
    assert_eq!(m.ok("ls -A mnt/walexit"), "db\ndb-shm\ndb-wal\n");
    let wal: u64 = stat(&m, "%s", "mnt/walexit/db-wal")
        .trim()
        .parse()
        .expect("size of the WAL");
    assert!(wal > 300 * 4096, "the WAL holds every commit: {wal} bytes");
    let sums = m.ok("cd mnt && sha256sum delete/db wal/db walexit/db walexit/db-wal");
    m.unmount();
    m.mount();
    assert_eq!(
        m.ok("cd mnt && sha256sum delete/db wal/db walexit/db walexit/db-wal"),
        sums,
        "the bytes after a remount"
    );
    assert_eq!(
        m.ok("python3 check.py mnt/delete/db"),
        format!("delete\n{rows}")
    );
    assert_eq!(m.ok("python3 check.py mnt/wal/db"), format!("wal\n{rows}"));
    assert_eq!(
        m.ok("python3 check.py mnt/walexit/db"),
        format!("wal\n{rows}"),
        "recovered from the WAL after a remount"
    );
    // And once more, after the recovery's checkpoint.
    m.unmount();
    m.mount();
    for db in ["delete", "wal", "walexit"] {
        let mode = if db == "delete" { "delete" } else { "wal" };
        assert_eq!(
            m.ok(&format!("python3 check.py mnt/{db}/db")),
            format!("{mode}\n{rows}"),
            "{db}"
        );
    }
}

/// `name → "inode links type"` for everything in the mount, by `stat -c`.
fn inode_listing(m: &Mount) -> BTreeMap<String, String> {
    let out = m.ok("cd mnt && find . | xargs stat -c '%n %i %h %F'");
    out.lines()
        .map(|l| {
            let (name, rest) = l.split_once(' ').expect("a stat line");
            (name.to_string(), rest.to_string())
        })
        .collect()
}

/// The inode number of `name` in an `inode_listing`.
fn ino_of(listing: &BTreeMap<String, String>, name: &str) -> u64 {
    listing
        .get(name)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|i| i.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in {listing:#?}"))
}

#[test]
fn inode_numbers_survive_remounts_renames_and_a_crash() {
    require_fuse!();
    let mut m = Mount::start(&[]);
    m.ok(
        "mkdir -p mnt/d/sub mnt/empty && echo f > mnt/d/sub/f && head -c 3000000 /dev/urandom > mnt/d/big \
         && echo t > mnt/top && ln mnt/top mnt/d/sub/top-link && ln -s d/sub/f mnt/sym && mkfifo mnt/fifo",
    );
    let before = inode_listing(&m);
    assert_eq!(before.len(), 10, "{before:#?}");
    // Every inode is its own, but the two names of `top`.
    let mut inos: Vec<u64> = before.keys().map(|n| ino_of(&before, n)).collect();
    inos.sort_unstable();
    inos.dedup();
    assert_eq!(inos.len(), before.len() - 1, "{before:#?}");
    assert_eq!(
        ino_of(&before, "./top"),
        ino_of(&before, "./d/sub/top-link")
    );
    assert!(before["./top"].ends_with(" 2 regular file"), "{before:#?}");
    // A rename keeps the inode, of a file and of a folder with all below.
    m.ok("mv mnt/d/big mnt/big-moved && mv mnt/d mnt/d2");
    let after_mv = inode_listing(&m);
    let renamed: BTreeMap<String, String> = before
        .iter()
        .map(|(name, rest)| {
            let name = if name == "./d/big" {
                "./big-moved".to_string()
            } else if name == "./d" || name.starts_with("./d/") {
                name.replacen("./d", "./d2", 1)
            } else {
                name.clone()
            };
            (name, rest.clone())
        })
        .collect();
    assert_eq!(after_mv, renamed, "after mv");
    m.unmount();
    m.mount();
    assert_eq!(inode_listing(&m), after_mv, "after a remount");
    let f = ino_of(&after_mv, "./d2/sub/f");
    assert_eq!(m.ok(&format!("find mnt -inum {f}")), "mnt/d2/sub/f\n");
    let top = ino_of(&after_mv, "./top");
    assert_eq!(
        m.ok(&format!("find mnt -inum {top} | sort")),
        "mnt/d2/sub/top-link\nmnt/top\n"
    );
    let big = ino_of(&after_mv, "./big-moved");
    assert_eq!(m.ok(&format!("find mnt -inum {big}")), "mnt/big-moved\n");
    // A new file gets a number no other file has, also after a crash.
    m.ok("echo n > mnt/new");
    let new = ino_of(&inode_listing(&m), "./new");
    assert!(inos.binary_search(&new).is_err(), "new file took {new}");
    inos.push(new);
    inos.sort_unstable();
    m.crash();
    m.mount();
    let after_crash = inode_listing(&m);
    assert_eq!(ino_of(&after_crash, "./new"), new, "after kill -9");
    let mut expect = after_mv.clone();
    expect.insert("./new".into(), after_crash["./new"].clone());
    assert_eq!(after_crash, expect, "after kill -9");
    m.ok("echo n > mnt/newer && mkdir mnt/newdir");
    let after_crash = inode_listing(&m);
    for name in ["./newer", "./newdir"] {
        let ino = ino_of(&after_crash, name);
        assert!(
            inos.binary_search(&ino).is_err(),
            "{name} took {ino}, which another file had: {after_crash:#?}"
        );
    }
}

#[test]
fn tar_lists_the_second_name_as_a_link_in_and_out_of_the_mount() {
    require_fuse!();
    let m = Mount::start(&[]);
    m.ok(
        "mkdir -p mnt/t/sub && head -c 1500000 /dev/urandom > mnt/t/big && ln mnt/t/big mnt/t/sub/big-link \
         && echo small > mnt/t/small && ln mnt/t/small mnt/t/small-link && echo alone > mnt/t/alone",
    );
    m.ok("tar cf t.tar -C mnt t");
    let listed = m.ok("tar tvf t.tar");
    let links: Vec<&str> = listed.lines().filter(|l| l.contains(" link to ")).collect();
    assert_eq!(links.len(), 2, "one 'link to' per pair:\n{listed}");
    for (a, b) in [("t/big", "t/sub/big-link"), ("t/small", "t/small-link")] {
        assert!(
            links
                .iter()
                .any(|l| l.ends_with(&format!("{a} link to {b}"))
                    || l.ends_with(&format!("{b} link to {a}"))),
            "{a} and {b} not linked in:\n{listed}"
        );
    }
    // Extracted outside the mount and into it, the pairs are pairs again.
    m.ok("mkdir out mnt/untar && tar xf t.tar -C out && tar xf t.tar -C mnt/untar");
    for dir in ["out/t", "mnt/untar/t"] {
        let pairs = stat(
            &m,
            "%i %h",
            &format!("{dir}/big {dir}/sub/big-link {dir}/small {dir}/small-link {dir}/alone"),
        );
        let pairs: Vec<&str> = pairs.lines().collect();
        assert_eq!(pairs[0], pairs[1], "{dir}: {pairs:?}");
        assert_eq!(pairs[2], pairs[3], "{dir}: {pairs:?}");
        assert_ne!(pairs[0], pairs[2], "{dir}: {pairs:?}");
        assert!(
            pairs[0].ends_with(" 2") && pairs[2].ends_with(" 2"),
            "{dir}: {pairs:?}"
        );
        assert!(pairs[4].ends_with(" 1"), "{dir}: {pairs:?}");
        m.ok(&format!("diff -r mnt/t {dir}"));
    }
    // tar of the extracted copy in the mount lists its links too.
    let again = m.ok("tar cf - -C mnt/untar t | tar tvf -");
    assert_eq!(again.matches(" link to ").count(), 2, "{again}");
}

#[test]
fn fifos_and_device_nodes_work_and_keep_their_type() {
    require_fuse!();
    let mut m = Mount::start(&[]);
    m.ok("umask 022 && mkfifo mnt/fifo && ln mnt/fifo mnt/fifo-link && mkdir mnt/d && mkfifo -m 600 mnt/d/private");
    let types = "mnt/fifo mnt/fifo-link mnt/d/private";
    let want = "fifo 644 2 0\nfifo 644 2 0\nfifo 600 1 0\n";
    assert_eq!(stat(&m, "%F %a %h %s", types), want);
    // The kernel passes the bytes; both names are the one FIFO.
    let through = "(echo hi > mnt/fifo) >/dev/null 2>&1 & timeout 20 cat mnt/fifo";
    assert_eq!(m.ok(through), "hi\n");
    let big = "head -c 1000000 /dev/urandom > bytes; (cat bytes > mnt/fifo-link) >/dev/null 2>&1 & \
               timeout 20 cat mnt/fifo | cmp - bytes";
    m.ok(big);
    assert_eq!(stat(&m, "%s", "mnt/fifo"), "0\n", "a FIFO stores nothing");
    let devices = is_root() && m.sh("mknod mnt/null c 1 3").status.success();
    if devices {
        assert_eq!(
            stat(&m, "%F %t:%T", "mnt/null"),
            "character special file 1:3\n"
        );
        // The mount is nodev (docs/SEMANTICS.md): the node does not open
        // the device there.
        let e = m.fails("echo x > mnt/null");
        assert!(e.contains("Permission denied"), "{e}");
        // But it is /dev/null's node: tar takes it out of the mount, and
        // where devices open it swallows writes and reads empty.
        m.ok("mkdir devs && tar cf - -C mnt null | tar xf - -C devs");
        assert_eq!(
            stat(&m, "%F %t:%T", "devs/null"),
            "character special file 1:3\n"
        );
        let nodev = m.ok("findmnt -n -o OPTIONS -T devs");
        if nodev.split(',').any(|o| o.trim() == "nodev") {
            eprintln!("the temp dir is on a nodev filesystem: the copied node was not opened");
        } else {
            assert_eq!(
                m.ok("echo x > devs/null && head -c 10 devs/null | wc -c")
                    .trim(),
                "0"
            );
        }
    } else {
        eprintln!("skipping device nodes: mknod needs root (and CAP_MKNOD)");
    }
    m.unmount();
    m.mount();
    assert_eq!(stat(&m, "%F %a %h %s", types), want, "after a remount");
    if devices {
        assert_eq!(
            stat(&m, "%F %t:%T", "mnt/null"),
            "character special file 1:3\n"
        );
    }
    assert_eq!(
        m.ok("(echo again > mnt/fifo-link) >/dev/null 2>&1 & timeout 20 cat mnt/fifo"),
        "again\n"
    );
    m.ok("rm mnt/fifo");
    assert_eq!(stat(&m, "%F %h", "mnt/fifo-link"), "fifo 1\n");
}
