//! The everyday rows of the contract, driven with shell tools through a
//! real mount: ls/stat, cat and range reads, writes, append, truncate and
//! offsets, rm, mv, sed -i, touch, fsync, df.

mod common;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};

use common::{Mount, check_clean, pattern};

#[test]
fn ls_and_stat_show_live_keys_as_regular_files() {
    require_fuse!();
    let m = Mount::start(&[]);
    m.ok("echo hello > mnt/a && echo gone > mnt/b && printf 12345 > mnt/c && rm mnt/b");
    assert_eq!(m.ok("ls mnt"), "a\nc\n");
    let uid = m.ok("id -u");
    let gid = m.ok("id -g");
    let stat = m.ok("stat -c '%s %a %h %F %u %g' mnt/a");
    assert_eq!(
        stat.trim(),
        format!("6 644 1 regular file {} {}", uid.trim(), gid.trim())
    );
    assert_eq!(m.ok("wc -c < mnt/c").trim(), "5");
    let long = m.ok("ls -l mnt");
    assert!(long.contains("-rw-r--r-- 1 "), "{long}");
    assert_eq!(m.ok("stat -c %F mnt").trim(), "directory");
    assert!(m.fails("stat mnt/b").contains("No such file"));
}

#[test]
fn mtime_is_the_latest_write_and_inodes_stay() {
    require_fuse!();
    let m = Mount::start(&[]);
    m.ok("echo one > mnt/k");
    let ino = m.ok("stat -c %i mnt/k");
    let before: f64 = m.ok("stat -c %.9Y mnt/k").trim().parse().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    m.ok("echo two > mnt/k");
    let after: f64 = m.ok("stat -c %.9Y mnt/k").trim().parse().unwrap();
    assert!(after > before + 1.0, "{before} -> {after}");
    assert_eq!(m.ok("stat -c %i mnt/k"), ino, "inode changed by a write");
    m.ok("mv mnt/k mnt/k2");
    assert_eq!(
        m.ok("stat -c %i mnt/k2"),
        ino,
        "inode did not follow the rename"
    );
}

#[test]
fn cat_and_range_reads_give_the_committed_bytes() {
    require_fuse!();
    let m = Mount::start(&[]);
    let value = pattern(3 << 20, 1);
    fs::write(m.scratch("src"), &value).unwrap();
    m.ok("cp src mnt/big && cmp src mnt/big");
    assert_eq!(m.ok("wc -c < mnt/big").trim(), value.len().to_string());
    m.ok("head -c 1000 mnt/big > head.out && head -c 1000 src | cmp - head.out");
    m.ok(
        "dd if=mnt/big bs=4096 skip=300 count=3 status=none > a.out && \
         dd if=src bs=4096 skip=300 count=3 status=none | cmp - a.out",
    );
    m.ok("tail -c 777 mnt/big > t.out && tail -c 777 src | cmp - t.out");
    // Reading past the end gives nothing.
    assert_eq!(
        m.ok("dd if=mnt/big bs=1M skip=10 status=none | wc -c")
            .trim(),
        "0"
    );
}

#[test]
fn echo_printf_cp_dd_store_values() {
    require_fuse!();
    let m = Mount::start(&[]);
    m.ok("echo v > mnt/e && printf 'x\\ny' > mnt/p && cp /etc/hostname mnt/h");
    m.ok("head -c 300000 /dev/urandom > r && dd if=r of=mnt/d bs=64k status=none");
    assert_eq!(m.ok("cat mnt/e"), "v\n");
    assert_eq!(m.ok("cat mnt/p"), "x\ny");
    m.ok("cmp /etc/hostname mnt/h && cmp r mnt/d");
}

#[test]
fn append_and_empty() {
    require_fuse!();
    let m = Mount::start(&[]);
    m.ok("echo a > mnt/k && echo b >> mnt/k && printf c >> mnt/k");
    assert_eq!(m.ok("cat mnt/k"), "a\nb\nc");
    m.ok(": > mnt/k");
    assert_eq!(m.ok("wc -c < mnt/k").trim(), "0");
    m.ok("echo new >> mnt/fresh");
    assert_eq!(m.ok("cat mnt/fresh"), "new\n");
}

/// The same edits on the mount and on a real directory end in the same
/// bytes.
#[test]
fn truncate_and_offset_writes_match_a_real_directory() {
    require_fuse!();
    let m = Mount::start(&[]);
    fs::create_dir(m.scratch("ref")).unwrap();
    let script = |d: &str| {
        format!(
            "set -e; cd {d}
             printf 0123456789 > f
             truncate -s 4 f
             truncate -s 8 f
             printf AB | dd of=f bs=1 seek=2 conv=notrunc status=none
             printf Z | dd of=f bs=1 seek=20 conv=notrunc status=none
             truncate -s +3 f
             printf 0123456789 > g
             dd if=/dev/zero of=g bs=1 seek=5 count=0 status=none
             head -c 100000 /dev/zero | tr '\\0' q > h
             printf MID | dd of=h bs=1 seek=50000 conv=notrunc status=none
             truncate -s 60000 h"
        )
    };
    m.ok(&script("mnt"));
    m.ok(&script("ref"));
    for f in ["f", "g", "h"] {
        m.ok(&format!("cmp ref/{f} mnt/{f}"));
    }
}

#[test]
fn rm_tombstones_and_missing_is_enoent() {
    require_fuse!();
    let m = Mount::start(&[]);
    m.ok("echo x > mnt/k && rm mnt/k");
    assert_eq!(m.ok("ls mnt"), "");
    assert!(m.fails("rm mnt/k").contains("No such file"));
    assert!(m.fails("cat mnt/k").contains("No such file"));
    m.ok("echo back > mnt/k");
    assert_eq!(m.ok("cat mnt/k"), "back\n");
}

#[test]
fn mv_renames_and_overwrites() {
    require_fuse!();
    let m = Mount::start(&[]);
    m.ok("echo A > mnt/a && echo B > mnt/b && mv mnt/a mnt/b");
    assert_eq!(m.ok("ls mnt"), "b\n");
    assert_eq!(m.ok("cat mnt/b"), "A\n");
    m.ok("mv mnt/b mnt/c");
    assert_eq!(m.ok("ls mnt"), "c\n");
    assert!(m.fails("mv mnt/nope mnt/x").contains("No such file"));
    assert!(
        m.fails("mv -T --no-clobber mnt/c mnt/c 2>&1; mv mnt/c mnt/c")
            .contains("same file")
    );
}

/// A file renamed while a writer has it open: the committed value moves,
/// the writes follow the open file and show under the new name at close.
/// Neither name ever shows part of the writes (on a local filesystem both
/// would, as they are made).
#[test]
fn a_file_renamed_while_written_shows_the_writes_whole_at_close() {
    require_fuse!();
    let mut m = Mount::start(&[]);
    m.ok("echo old > mnt/a && echo target > mnt/b");
    let mut f = fs::File::create(m.path("a")).unwrap();
    f.write_all(b"first half, ").unwrap();
    m.ok("mv mnt/a mnt/b");
    assert_eq!(m.ok("ls mnt"), "b\n");
    assert_eq!(m.ok("cat mnt/b"), "old\n", "half the writes are visible");
    f.write_all(b"second half").unwrap();
    drop(f);
    assert_eq!(m.ok("cat mnt/b"), "first half, second half");

    // A file still being created moves too, replacing the target.
    let mut f = fs::File::create_new(m.path("new")).unwrap();
    f.write_all(b"created").unwrap();
    m.ok("mv mnt/new mnt/b");
    assert_eq!(m.ok("ls mnt"), "b\n");
    assert_eq!(m.ok("stat -c %s mnt/b"), "0\n", "as any file being created");
    drop(f);
    assert_eq!(m.ok("cat mnt/b"), "created");
    m.unmount();
    m.mount();
    assert_eq!(m.ok("ls mnt; cat mnt/b"), "b\ncreated");
}

#[test]
fn sed_in_place_and_touch() {
    require_fuse!();
    let m = Mount::start(&[]);
    m.ok("printf 'one\\ntwo\\n' > mnt/k && sed -i 's/two/three/' mnt/k");
    assert_eq!(m.ok("cat mnt/k"), "one\nthree\n");
    assert_eq!(m.ok("ls mnt"), "k\n", "sed left its temporary file");
    m.ok("touch mnt/new");
    assert_eq!(m.ok("wc -c < mnt/new").trim(), "0");
    m.ok("touch -d '2001-01-01 00:00:00 UTC' mnt/k");
    assert_eq!(m.ok("stat -c %Y mnt/k").trim(), "978307200");
    assert_eq!(m.ok("cat mnt/k"), "one\nthree\n", "touch changed the value");
    m.ok("touch mnt/k");
    let now: u64 = m.ok("date +%s").trim().parse().unwrap();
    let mtime: u64 = m.ok("stat -c %Y mnt/k").trim().parse().unwrap();
    assert!(mtime + 5 >= now, "touch did not set mtime to now");
}

/// While a writer has the file open, others see the old value; the writer
/// sees its own writes; at close everyone sees the new value. (Readers
/// here open the file in-process: spawning a process would fork the open
/// descriptor, and its close at exec is a close(2) that commits.)
#[test]
fn writes_become_visible_at_close_and_writer_reads_its_own() {
    require_fuse!();
    let m = Mount::start(&[]);
    m.ok("echo old > mnt/k");
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.path("k"))
        .unwrap();
    f.write_all(b"NEW").unwrap();
    let other = fs::read(m.path("k")).unwrap();
    assert_eq!(other, b"old\n", "uncommitted write visible");
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut buf = String::new();
    f.read_to_string(&mut buf).unwrap();
    assert_eq!(buf, "NEW\n", "writer does not see its own write");
    f.write_all(b"tail").unwrap();
    f.sync_all().unwrap();
    assert_eq!(
        fs::read(m.path("k")).unwrap(),
        b"NEW\ntail",
        "fsync did not commit"
    );
    f.write_all(b"!").unwrap();
    drop(f);
    assert_eq!(m.ok("cat mnt/k"), "NEW\ntail!");
}

#[test]
fn fsync_and_sync_succeed() {
    require_fuse!();
    let m = Mount::start(&[]);
    m.ok("head -c 100000 /dev/urandom > r && dd if=r of=mnt/k bs=8k conv=fsync status=none");
    m.ok("sync mnt/k && sync && cmp r mnt/k");
}

#[test]
fn df_reports_the_data_disk() {
    require_fuse!();
    let m = Mount::start(&[]);
    let on_mount = m.ok("df -k --output=size,avail mnt | tail -1");
    let size = |s: &str| s.split_whitespace().next().unwrap_or("").to_string();
    if !m.local() {
        // On etcd, the cluster's quota: `--etcd-quota`, 2 GiB by default.
        assert_eq!(size(&on_mount), (2u64 << 20).to_string());
        return;
    }
    let on_disk = m.ok("df -k --output=size,avail data | tail -1");
    assert_eq!(size(&on_mount), size(&on_disk));
    assert_ne!(size(&on_mount), "0");
}

#[test]
fn large_values_spill_and_come_back_whole() {
    require_fuse!();
    let m = Mount::start(&[]);
    let value = pattern(20 << 20, 7);
    fs::write(m.scratch("src"), &value).unwrap();
    m.ok("dd if=src of=mnt/big bs=1M status=none && cmp src mnt/big");
    // Append to a large value (loaded into a spill file), then check.
    m.ok("echo end >> mnt/big && echo end >> src && cmp src mnt/big");
    let strays = m.ok("ls data | grep -c 'tmp$' || true");
    assert_eq!(strays.trim(), "0", "spill files left behind");
}

/// A large file is written to the log once, as it comes (extents of at
/// most 1 MiB before the commit), and what is written later costs what it
/// writes: an append adds its bytes, not the file's. Everything a user
/// sees stays whole: a reader open across a rewrite keeps its version,
/// appends and a rename while open work, `caskfs check` passes.
#[test]
fn a_file_written_in_pieces_is_written_again_before_a_merge() {
    require_fuse!();
    let m = Mount::start(&[]);
    if !m.local() {
        return; // etcd compacts by itself; nothing is rewritten there
    }
    let keys = |m: &Mount| {
        let out = m.ok(&format!("{} stats --json mnt", common::BIN));
        let at = out.find("\"live_keys\":").expect("live_keys") + 12;
        out[at..]
            .split([',', '}'])
            .next()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    // 300 pieces of 4 KiB, each committed by an fsync: 300 extents. A
    // reader holds the file open across the rewrite, and reads it after.
    m.ok("python3 -c \"
import os
data = os.urandom(300 * 4096)
open('expect', 'wb').write(data)
fd = os.open('mnt/db', os.O_WRONLY | os.O_CREAT, 0o644)
for i in range(300):
    os.pwrite(fd, data[i * 4096:(i + 1) * 4096], i * 4096)
    os.fsync(fd)
os.close(fd)
\"");
    let before = keys(&m);
    assert!(before >= 300, "{before} keys");
    let mut reader = fs::File::open(m.path("db")).unwrap();
    m.ok(&format!("{} compact mnt", common::BIN));
    m.ok("cmp expect mnt/db && test $(stat -c %s mnt/db) = 1228800");
    let mut held = Vec::new();
    reader.read_to_end(&mut held).unwrap();
    assert!(
        held == fs::read(m.scratch("expect")).unwrap(),
        "the reader's bytes"
    );
    // The pieces the reader's version reached go once it is closed.
    // Its release reaches the daemon after close returns: looked again.
    drop(reader);
    let mut after = before;
    for _ in 0..50 {
        m.ok(&format!("{} compact mnt", common::BIN));
        after = keys(&m);
        if after + 280 < before {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(after + 280 < before, "{before} keys, {after} after");
    m.ok("cmp expect mnt/db");
}

#[test]
fn cp_shares_a_large_files_extents_instead_of_copying_them() {
    require_fuse!();
    let mut m = Mount::start(&[]);
    let a = pattern(8 << 20, 3);
    fs::write(m.scratch("a"), &a).unwrap();
    m.ok("cp a mnt/a && echo small > mnt/small");
    let used = |m: &Mount| m.ok("du -sb data | cut -f1").trim().parse::<u64>().unwrap();
    let before = m.local().then(|| used(&m));
    // cp asks copy_file_range, which shares the extents (here on the log;
    // on etcd the daemon copies the bytes).
    m.ok("cp mnt/a mnt/b && cmp a mnt/b && cp mnt/small mnt/small2 && cmp mnt/small mnt/small2");
    if let Some(before) = before {
        let grew = used(&m).saturating_sub(before);
        assert!(grew < 256 << 10, "cp of 8 MiB grew the log by {grew} bytes");
    }
    // A range into the middle of another file, and past its end.
    m.ok("python3 -c \"
import os
src = os.open('mnt/a', os.O_RDONLY)
dst = os.open('mnt/c', os.O_WRONLY | os.O_CREAT, 0o644)
os.write(dst, b'x' * 100)
assert os.copy_file_range(src, dst, 3 << 20, 1 << 20, 50) == 3 << 20
os.close(dst)
data = open('a', 'rb').read()
assert open('mnt/c', 'rb').read() == b'x' * 50 + data[1 << 20:4 << 20]
\"");
    // Each copy changes on its own; the source loses nothing when a copy
    // changes, or goes.
    m.ok("printf X | dd of=mnt/b bs=1 seek=4096 conv=notrunc status=none");
    m.ok("cmp a mnt/a && ! cmp -s a mnt/b && rm mnt/a && cmp -n 4096 a mnt/b");
    m.ok("cmp -i 4097 a mnt/b");
    m.unmount();
    if m.local() {
        check_clean(&m.data);
    }
    m.mount();
    m.ok("cmp -i 4097 a mnt/b && test $(stat -c %s mnt/c) = 3145778");
    // With the last file that reaches them gone, the extents go too.
    m.ok("rm mnt/b mnt/c");
    m.unmount();
    if m.local() {
        let out = std::process::Command::new(common::BIN)
            .arg("compact")
            .arg(&m.data)
            .output()
            .unwrap();
        assert!(out.status.success());
        let left = used(&m);
        assert!(left < 1 << 20, "{left} bytes left after every copy went");
        check_clean(&m.data);
    }
}

#[test]
fn large_files_cost_what_is_written_and_survive_a_remount() {
    require_fuse!();
    let mut m = Mount::start(&["--max-segment-size", "4M"]);
    let (a, b) = (pattern(6 << 20, 1), pattern(3 << 20, 2));
    fs::write(m.scratch("a"), &a).unwrap();
    fs::write(m.scratch("b"), &b).unwrap();
    m.ok("dd if=a of=mnt/big bs=1M status=none && cmp a mnt/big");
    m.ok("echo small > mnt/small");

    // A reader of the first version keeps it across a rewrite.
    let mut reader = fs::File::open(m.path("big")).unwrap();
    m.ok("cp b mnt/big && cmp b mnt/big");
    let mut held = Vec::new();
    reader.read_to_end(&mut held).unwrap();
    assert!(
        held == a,
        "a reader open across the rewrite saw other bytes"
    );
    drop(reader);

    // Appends add their own bytes to the log, not the file's.
    let used = || m.ok("du -sb data | cut -f1").trim().parse::<u64>().unwrap();
    let before = m.local().then(used);
    m.ok("for i in $(seq 20); do echo end >> mnt/big; done");
    m.ok("cat b > expect && for i in $(seq 20); do echo end >> expect; done && cmp expect mnt/big");
    if let Some(before) = before {
        let grew = used().saturating_sub(before);
        assert!(
            grew < 256 << 10,
            "20 appends of 4 bytes grew the log by {grew} bytes"
        );
    }

    // Renamed while written.
    let mut f = fs::File::create(m.path("moving")).unwrap();
    f.write_all(&a[..3 << 20]).unwrap();
    m.ok("mv mnt/moving mnt/moved-to-a-longer-name");
    f.write_all(&a[3 << 20..]).unwrap();
    drop(f);
    m.ok("cmp a mnt/moved-to-a-longer-name");

    m.unmount();
    if m.local() {
        check_clean(&m.data);
    }
    m.mount();
    m.ok("cmp expect mnt/big && cmp a mnt/moved-to-a-longer-name");
    assert_eq!(m.ok("cat mnt/small"), "small\n");
}

#[test]
fn many_keys_list_fully() {
    require_fuse!();
    let m = Mount::start(&[]);
    m.ok("for i in $(seq 1 600); do echo $i > mnt/key-$i; done");
    assert_eq!(m.ok("ls mnt | wc -l").trim(), "600");
    assert_eq!(m.ok("cat mnt/key-599"), "599\n");
    m.ok("rm mnt/key-1*");
    assert_eq!(m.ok("ls mnt | wc -l").trim(), "489");
}

/// A reader follows a file that grew, also when the writer wrote the
/// bytes it had already committed again (a mapping's page written back
/// holds them): the bytes decide, not which records hold them.
#[test]
fn a_reader_follows_growth_written_through_a_mapping() {
    require_fuse!();
    let m = Mount::start(&[]);
    let script = r#"
import mmap, os
w = os.open("mnt/f", os.O_RDWR | os.O_CREAT, 0o644)
os.pwrite(w, b"x" * 5000, 1000)
os.fsync(w)
r = os.open("mnt/f", os.O_RDONLY)
assert len(os.pread(r, 100000, 0)) == 6000
os.ftruncate(w, 13000)
mm = mmap.mmap(w, 13000)
mm[7000:9000] = b"z" * 2000
mm.flush()
os.fsync(w)
got = os.pread(r, 100000, 0)
print(len(got), got[6999:7001], got[5999:6001])
"#;
    assert_eq!(
        m.ok(&format!("python3 -c '{script}'")),
        "13000 b'\\x00z' b'x\\x00'\n"
    );
}
