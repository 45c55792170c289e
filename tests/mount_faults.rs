//! Damaged records and a full disk, seen through the mount.

mod common;

use std::fs;
use std::process::Command;

use common::{Mount, is_root};

/// A record whose bytes were damaged on disk reads as EIO, never as
/// wrong bytes; other keys still read.
#[test]
fn damaged_record_reads_as_eio() {
    require_fuse!();
    let mut m = Mount::start(&["--max-segment-size", "4096"]);
    let victim = "VICTIM-".repeat(20);
    m.ok(&format!("printf '{victim}' > mnt/victim"));
    m.ok("for i in 1 2 3 4; do head -c 3000 /dev/zero | tr '\\0' o > mnt/other$i; done");
    m.unmount();
    let mut damaged = false;
    for entry in fs::read_dir(&m.data).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = fs::read(&path).unwrap();
        if let Some(at) = bytes.windows(14).position(|w| w == b"VICTIM-VICTIM-") {
            bytes[at + 20] ^= 0x20;
            fs::write(&path, &bytes).unwrap();
            damaged = true;
        }
    }
    assert!(damaged, "value not found in the data directory");
    m.mount();
    let err = m.fails("cat mnt/victim");
    assert!(err.contains("Input/output error"), "{err}");
    assert_eq!(m.ok("wc -c < mnt/other2").trim(), "3000");
}

/// On a full disk the writer gets ENOSPC at close, earlier data stays,
/// and the store keeps working once space is freed.
#[test]
fn full_disk_is_enospc_and_keeps_the_log_valid() {
    require_fuse!();
    if !is_root() {
        eprintln!("skipping full-disk test: mounting a small tmpfs needs root");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    fs::create_dir(&data).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(&data)
        .status()
        .unwrap();
    assert!(st.success(), "mounting tmpfs failed");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _tmpfs = Unmount(data.clone());
    let mut m = Mount::start_in(root, &[]);
    m.ok("echo keep > mnt/early");
    let err = m.fails("head -c 5000000 /dev/zero > mnt/huge");
    assert!(err.contains("No space left"), "{err}");
    assert_eq!(m.ok("cat mnt/early"), "keep\n");
    m.ok("echo after > mnt/small");
    m.unmount();
    m.mount();
    assert_eq!(m.ok("cat mnt/early"), "keep\n");
    assert_eq!(m.ok("cat mnt/small"), "after\n");
    m.unmount();
}
