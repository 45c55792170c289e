//! Holes through a real mount: util-linux's `fallocate` in each mode,
//! `SEEK_DATA`/`SEEK_HOLE` as python sees them, `du` (holes take no
//! blocks), `cp --sparse=always`, and the space a punched hole gives back
//! once the log is merged.

mod common;

use common::{BIN, Mount};

/// (SEEK_DATA, SEEK_HOLE) from each of `offsets` of `path`, or the errno's
/// name.
fn seeks(m: &Mount, path: &str, offsets: &[u64]) -> String {
    let script = format!(
        "import errno, os\n\
         fd = os.open('{path}', os.O_RDONLY)\n\
         for o in {offsets:?}:\n\
         \x20   out = []\n\
         \x20   for w in (os.SEEK_DATA, os.SEEK_HOLE):\n\
         \x20       try:\n\
         \x20           out.append(str(os.lseek(fd, o, w)))\n\
         \x20       except OSError as e:\n\
         \x20           out.append(errno.errorcode[e.errno])\n\
         \x20   print(o, ' '.join(out))\n"
    );
    m.ok(&format!("python3 -c \"{script}\""))
}

fn du_k(m: &Mount, path: &str) -> u64 {
    let out = m.ok(&format!("du -k {path}"));
    out.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("du's figure")
}

#[test]
fn fallocate_modes_change_bytes_and_length_as_on_ext4() {
    require_fuse!();
    let mut m = Mount::start(&[]);
    // The same operations on a file of the real disk and on the mount:
    // the bytes must match (ext4 punches whole blocks only and zeros the
    // rest; the result reads the same).
    let ops = [
        "fallocate -p -o 1000000 -l 1048576",
        "fallocate -z -o 10 -l 20",
        "fallocate -z -n -o 2999990 -l 100",
        "fallocate -z -o 2999990 -l 100",
        "fallocate -o 3000090 -l 5000",
        "fallocate -n -o 9000000 -l 4096",
        "fallocate -p -o 7000 -l 3",
    ];
    m.ok("head -c 3000000 /dev/urandom > disk && cp disk mnt/f");
    m.ok("head -c 3000 disk > disk-small && cp disk-small mnt/small");
    for op in ops {
        m.ok(&format!("{op} disk && {op} mnt/f"));
        m.ok("cmp disk mnt/f && [ $(stat -c %s disk) = $(stat -c %s mnt/f) ]");
    }
    // A small file (its bytes in the inode) too.
    m.ok("fallocate -p -o 100 -l 200 disk-small && fallocate -p -o 100 -l 200 mnt/small");
    m.ok("cmp disk-small mnt/small");
    // Kept as such across a remount.
    m.unmount();
    m.mount();
    m.ok("cmp disk mnt/f && cmp disk-small mnt/small");
    // What the kernel passes through and a log cannot do.
    for (op, what) in [("-c", "collapse"), ("-i", "insert")] {
        let e = m.fails(&format!("fallocate {op} -o 0 -l 4096 mnt/f"));
        assert!(e.contains("Operation not supported"), "{what}: {e}");
    }
    m.ok("cmp disk mnt/f");
}

#[test]
fn holes_are_found_by_seek_take_no_blocks_and_stay_holes_when_copied() {
    require_fuse!();
    let m = Mount::start(&[]);
    // 4 MiB written in one go, a hole punched in its middle, grown to
    // 1 GiB, and 4 KiB written near the end.
    m.ok("head -c 4194304 /dev/urandom > mnt/f && fallocate -p -o 1048576 -l 2097152 mnt/f");
    m.ok("truncate -s 1G mnt/f && printf 'tail' | dd of=mnt/f bs=1 seek=1000000000 conv=notrunc status=none");
    assert_eq!(
        seeks(
            &m,
            "mnt/f",
            &[0, 1048576, 2000000, 3145728, 5000000, 1000000002, 1 << 30]
        ),
        "0 0 1048576\n\
         1048576 3145728 1048576\n\
         2000000 3145728 2000000\n\
         3145728 3145728 4194304\n\
         5000000 1000000000 5000000\n\
         1000000002 1000000002 1000000004\n\
         1073741824 ENXIO ENXIO\n"
    );
    // 2 MiB of bytes and 4 of the tail: du counts those, not the length.
    let du = du_k(&m, "mnt/f");
    assert!((2048..2100).contains(&du), "du -k of the sparse file: {du}");
    // cp --sparse=always keeps the holes, a plain cp (which shares the
    // extents) too; the bytes are the same.
    m.ok("cp --sparse=always mnt/f mnt/g && cp mnt/f mnt/h && cmp mnt/f mnt/g && cmp mnt/f mnt/h");
    for copy in ["mnt/g", "mnt/h"] {
        let du = du_k(&m, copy);
        assert!((2048..2100).contains(&du), "du -k {copy}: {du}");
    }
    // Out of the mount onto the real disk, the holes stay holes.
    m.ok("cp --sparse=always mnt/f out && cmp mnt/f out");
    let du = du_k(&m, "out");
    assert!(du < 4096, "du -k of the copy on the disk: {du}");
}

#[test]
fn a_punched_hole_gives_its_space_back_at_the_merge() {
    require_fuse!();
    let mut m = Mount::start(&[]);
    if !m.local() {
        return;
    }
    // 16 MiB in extents of 1 MiB; all but the first and last 400 KiB
    // punched, so two extents stay reached in part: the merge's rewrite
    // keeps only that part of them.
    m.ok("head -c 16777216 /dev/urandom > mnt/f && sync");
    m.ok("fallocate -p -o 409600 -l 15958016 mnt/f");
    m.ok(&format!("{BIN} compact mnt"));
    m.unmount();
    let used: u64 = std::fs::read_dir(&m.data)
        .expect("the data directory")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|md| md.len())
        .sum();
    assert!(
        used < 1200 << 10,
        "the data directory holds {used} bytes after the merge"
    );
    m.mount();
    assert_eq!(du_k(&m, "mnt/f"), 800);
    let zeros = m.ok("tail -c +409601 mnt/f | head -c 15958016 | tr -d '\\0' | wc -c");
    assert_eq!(zeros.trim(), "0", "the hole reads as zeros");
}
