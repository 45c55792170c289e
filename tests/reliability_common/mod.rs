//! Shared by the `reliability_*` tests and the long run behind
//! `scripts/torture.sh`: the mount harness of `tests/common`, a tmpfs
//! guard, a seeded RNG, self-checking values, and the workloads themselves,
//! each taking a budget so the long run can reuse them with more.

#![allow(dead_code)]

pub mod crash;
pub mod power;
pub mod random_io;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::Duration;

use tempfile::TempDir;

#[path = "../common/mod.rs"]
mod harness;
pub use harness::*;

/// A small tmpfs mounted on a temporary directory of its own (root only);
/// unmounted, and the directory removed, on drop.
pub struct Tmpfs {
    pub dir: PathBuf,
    _holder: TempDir,
}

impl Tmpfs {
    pub fn mount(size: &str) -> Tmpfs {
        let holder = tempfile::Builder::new()
            .prefix("caskfs-tmpfs-")
            .tempdir()
            .expect("temp dir");
        let dir = fs::canonicalize(holder.path()).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(st.success(), "mounting a tmpfs on {} failed", dir.display());
        Tmpfs {
            dir,
            _holder: holder,
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        for _ in 0..3 {
            if !is_mounted(&self.dir) {
                return;
            }
            let _ = Command::new("umount").arg(&self.dir).status();
            if is_mounted(&self.dir) {
                let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
            }
        }
    }
}

/// Opens a store in this process, retrying while a process spawned by a
/// test thread running beside this one still holds an inherited descriptor
/// of the LOCK file (between its fork and its exec).
pub fn open_store(
    dir: &Path,
    o: caskfs::engine::Options,
) -> caskfs::engine::Result<caskfs::engine::Store> {
    let mut tries = 0;
    loop {
        match caskfs::engine::Store::open(dir, o.clone()) {
            Err(caskfs::engine::Error::Locked { .. }) if tries < 300 => {
                tries += 1;
                sleep(Duration::from_millis(10));
            }
            r => return r,
        }
    }
}

/// `caskfs check DATA_DIR`: (clean, printed report).
pub fn check(data: &Path) -> (bool, String) {
    let out = Command::new(BIN).arg("check").arg(data).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// close(2) with its result: dropping a `File` ignores the error close
/// returns, and on caskfs that error is the commit's.
pub fn close(f: fs::File) -> std::io::Result<()> {
    use std::os::fd::IntoRawFd;
    // SAFETY: we own the descriptor and close it exactly once.
    if unsafe { libc::close(f.into_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Writes `bytes` to a new value of `path` and closes it, reporting the
/// close's error.
pub fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = fs::File::create(path)?;
    f.write_all(bytes)?;
    close(f)
}

/// A seeded xorshift64* generator: small, reproducible, no dependency.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

/// A seed from the environment (`CASKFS_SEED`) or the clock.
pub fn seed() -> u64 {
    std::env::var("CASKFS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

/// A piece of a self-checking value: `len` (u32), CRC32 of the payload
/// (u32), payload. A value is one or more pieces back to back (appends add
/// pieces), so any reader can tell a whole value from a torn or mixed one.
pub fn piece(rng: &mut Rng, payload_len: usize) -> Vec<u8> {
    let payload = rng.bytes(payload_len);
    let mut v = Vec::with_capacity(payload_len + 8);
    v.extend_from_slice(&(payload_len as u32).to_le_bytes());
    v.extend_from_slice(&crc32(&payload).to_le_bytes());
    v.extend_from_slice(&payload);
    v
}

/// Whether `v` is a sequence of whole, intact pieces.
pub fn pieces_ok(v: &[u8]) -> bool {
    let mut at = 0;
    while at < v.len() {
        let Some(head) = v.get(at..at + 8) else {
            return false;
        };
        let len = u32::from_le_bytes(head[..4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(head[4..].try_into().unwrap());
        let Some(payload) = v.get(at + 8..at + 8 + len) else {
            return false;
        };
        if crc32(payload) != crc {
            return false;
        }
        at += 8 + len;
    }
    true
}

pub fn crc32(b: &[u8]) -> u32 {
    crc32fast::hash(b)
}

/// Deterministic bytes: not compressible, easy to compare.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    Rng::new(seed).bytes(len)
}

/// Figures a workload reports, summed up by the long run.
#[derive(Debug, Default, Clone)]
pub struct Figures {
    pub crash_cycles: u64,
    pub acked_verified: u64,
    pub random_ops: u64,
    pub bad_inputs: u64,
    pub damage_bytes: u64,
    pub lost: u64,
}

impl Figures {
    pub fn add(&mut self, o: &Figures) {
        self.crash_cycles += o.crash_cycles;
        self.acked_verified += o.acked_verified;
        self.random_ops += o.random_ops;
        self.bad_inputs += o.bad_inputs;
        self.damage_bytes += o.damage_bytes;
        self.lost += o.lost;
    }

    /// One machine-readable line for scripts/torture.sh.
    pub fn line(&self, what: &str) -> String {
        format!(
            "FIGURES {what} crash_cycles={} acked_verified={} random_ops={} bad_inputs={} damage_bytes={} lost={}",
            self.crash_cycles,
            self.acked_verified,
            self.random_ops,
            self.bad_inputs,
            self.damage_bytes,
            self.lost
        )
    }
}
