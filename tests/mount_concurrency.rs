//! Several processes writing and reading different keys and the same key
//! at once: no errors, no torn values, last close wins.

mod common;

use std::process::Command;
use std::thread;

use common::Mount;

/// A writer loop in its own shell: writes `rounds` values made of one
/// repeated letter to `key`.
fn writer(m: &Mount, key: &str, letter: char, len: usize, rounds: usize) -> std::process::Child {
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "set -e; for i in $(seq 1 {rounds}); do \
               head -c {len} /dev/zero | tr '\\0' '{letter}' > mnt/{key}; done"
        ))
        .current_dir(m.root.path())
        .spawn()
        .unwrap()
}

/// Every read of `key` is one whole value: `len` copies of one letter.
fn check_reads(m: &Mount, key: &str, len: usize, reads: usize) {
    for _ in 0..reads {
        let out = Command::new("cat").arg(m.path(key)).output().unwrap();
        assert!(
            out.status.success(),
            "cat: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v = out.stdout;
        assert_eq!(v.len(), len, "torn value: wrong length");
        assert!(v.iter().all(|&b| b == v[0]), "torn value: mixed bytes");
    }
}

#[test]
fn writers_and_readers_on_same_and_different_keys() {
    require_fuse!();
    let m = Mount::start(&["--threads", "4"]);
    let len = 200_000;
    m.ok(&format!(
        "head -c {len} /dev/zero | tr '\\0' Z > mnt/shared"
    ));
    let mut writers = Vec::new();
    for (i, letter) in ['a', 'b', 'c', 'd'].into_iter().enumerate() {
        writers.push(writer(&m, "shared", letter, len, 30));
        writers.push(writer(&m, &format!("own{i}"), letter, 5000 + i, 30));
    }
    thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| check_reads(&m, "shared", len, 40));
        }
    });
    for mut w in writers {
        assert!(w.wait().unwrap().success(), "a writer failed:\n{}", m.log());
    }
    check_reads(&m, "shared", len, 1);
    for i in 0..4 {
        let v = std::fs::read(m.path(&format!("own{i}"))).unwrap();
        assert_eq!(v.len(), 5000 + i);
    }
    // Last close wins: one more writer, alone, decides the value.
    m.ok(&format!(
        "head -c {len} /dev/zero | tr '\\0' L > mnt/shared"
    ));
    let v = std::fs::read(m.path("shared")).unwrap();
    assert!(v.iter().all(|&b| b == b'L'));
    assert!(!m.log().contains("panicked"), "{}", m.log());
}

/// Values above the snapshot size are read in ranges; a replacement in
/// the middle of a read fails that read (ESTALE) instead of mixing.
#[test]
fn large_value_readers_never_see_a_mix() {
    require_fuse!();
    let m = Mount::start(&["--threads", "4"]);
    let len = 3 << 20;
    m.ok(&format!("head -c {len} /dev/zero | tr '\\0' Z > mnt/big"));
    let mut w = writer(&m, "big", 'q', len, 15);
    let mut w2 = writer(&m, "big", 'r', len, 15);
    for _ in 0..30 {
        let out = Command::new("cat").arg(m.path("big")).output().unwrap();
        if out.status.success() {
            let v = out.stdout;
            assert_eq!(v.len(), len, "torn value: wrong length");
            assert!(v.iter().all(|&b| b == v[0]), "torn value: mixed bytes");
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("Stale"), "unexpected read error: {err}");
        }
    }
    assert!(w.wait().unwrap().success());
    assert!(w2.wait().unwrap().success());
}

/// A commit at a flush raced the kernel's readahead on the same
/// descriptor: a read that came in between loaded the version before the
/// commit, and the writer's next change was made on top of it, so the
/// write the flush had just stored was lost. python's mmap closes a
/// duplicate of the descriptor (a flush) while the pages it faulted in
/// are still being read ahead.
#[test]
fn a_write_survives_a_flush_racing_the_readahead_of_its_mapping() {
    require_fuse!();
    let m = Mount::start(&[]);
    let script = r#"
import mmap, os
N = 1 << 20
p = "mnt/f"
lost = 0
for i in range(150):
    with open(p, "wb") as f:
        f.write(b"A" * 0x10000 + b"C" * 0x4000 + b"A" * (N - 0x14000))
    fd = os.open(p, os.O_RDWR)
    os.pwrite(fd, b"B" * 0x4000, 0x10000)
    m = mmap.mmap(fd, N, mmap.MAP_SHARED, mmap.PROT_READ)
    m[0x70000:0x80000]
    m.close()
    seen = os.pread(fd, 0x4000, 0x10000)
    os.copy_file_range(fd, fd, 0x4000, 0x30000, 0x76000)
    os.close(fd)
    with open(p, "rb") as f:
        f.seek(0x10000)
        kept = f.read(0x4000)
    lost += seen != b"B" * 0x4000 or kept != b"B" * 0x4000
print(lost)
"#;
    let out = m.ok(&format!("python3 -c '{script}'"));
    assert_eq!(out.trim(), "0", "iterations that lost the write");
}
