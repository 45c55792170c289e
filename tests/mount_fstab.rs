//! caskfs as mount(8) knows filesystems: `mount -t fuse.caskfs DATA MNT -o
//! ...` and an fstab line (`mount -T FILE MNT`), through the helper
//! `/sbin/mount.fuse.caskfs` (a link to `caskfs`), with `caskfs mount`
//! options as `-o` options; `umount` ends the daemon.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{BIN, is_mounted, is_root};

const HELPER: &str = "/sbin/mount.fuse.caskfs";

/// Points the helper at this build for the test's length, and puts back
/// whatever was there before.
struct Helper {
    before: Option<std::path::PathBuf>,
}

impl Helper {
    fn install() -> Helper {
        let before = std::fs::read_link(HELPER).ok();
        let _ = std::fs::remove_file(HELPER);
        std::os::unix::fs::symlink(BIN, HELPER).expect("linking the mount helper");
        Helper { before }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(HELPER);
        if let Some(old) = &self.before {
            let _ = std::os::unix::fs::symlink(old, HELPER);
        }
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("running a command");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until no process serves `data` (the daemon exited).
fn daemon_gone(data: &Path) -> bool {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let out = Command::new("pgrep").arg("-f").arg(data).output().unwrap();
        if !out.status.success() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn mount_t_and_an_fstab_line_mount_and_umount_ends_the_daemon() {
    require_fuse!();
    if !is_root() {
        eprintln!("skipping: installing the mount helper and mount(8) of fuse.caskfs need root");
        return;
    }
    let _helper = Helper::install();
    let root = common::temp_root();
    let data = root.path().join("data");
    let mnt = root.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let _cleanup = common::DetachOnDrop(mnt.clone());

    run(Command::new("mount")
        .args(["-t", "fuse.caskfs", "-o", "sync=always,max_segment_size=1M"])
        .arg(&data)
        .arg(&mnt));
    assert!(is_mounted(&mnt));
    std::fs::write(mnt.join("k"), b"v\n").unwrap();
    let stats = run(Command::new(BIN).args(["stats", "--json"]).arg(&mnt));
    assert!(stats.contains("\"sync\":\"always\""), "{stats}");
    run(Command::new("umount").arg(&mnt));
    assert!(daemon_gone(&data), "the daemon outlived umount");

    let fstab = root.path().join("fstab");
    let line = format!(
        "{} {} fuse.caskfs defaults,noauto,ro,threads=2,x-systemd.automount 0 0\n",
        data.display(),
        mnt.display()
    );
    std::fs::write(&fstab, line).unwrap();
    run(Command::new("mount").arg("-T").arg(&fstab).arg(&mnt));
    assert_eq!(std::fs::read(mnt.join("k")).unwrap(), b"v\n");
    let err = std::fs::write(mnt.join("new"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "ro from fstab");
    run(Command::new("umount").arg(&mnt));
    assert!(daemon_gone(&data), "the daemon outlived umount");
}
