//! Shared by the `reliability_*` tests and the long run behind
//! `scripts/torture.sh`: a mount harness (adapted from `tests/common`, with
//! a data directory that may live anywhere, e.g. on a small tmpfs), a
//! seeded RNG, self-checking values, and the workloads themselves, each
//! taking a budget so the long run can reuse them with more.

#![allow(dead_code)]

pub mod crash;
pub mod power;
pub mod random_io;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_caskfs");

/// Whether mount tests can run here (skip with a note, but fail under CI=true).
pub fn fuse_available() -> bool {
    if Path::new("/dev/fuse").exists() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("/dev/fuse is missing and CI=true: mount tests must run in CI");
    }
    eprintln!("skipping mount test: /dev/fuse is missing");
    false
}

pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

pub fn is_mounted(path: &Path) -> bool {
    let want = path.to_string_lossy().replace(' ', "\\040");
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

/// Clears a mount, dead or alive, without waiting for its users.
pub fn detach(mnt: &Path) {
    for (cmd, args) in [("fusermount3", &["-u", "-z"][..]), ("umount", &["-l"][..])] {
        if !is_mounted(mnt) {
            return;
        }
        let _ = Command::new(cmd)
            .args(args)
            .arg(mnt)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// One `caskfs mount` in the foreground, as a child process; always
/// unmounted and reaped on drop.
pub struct Mount {
    pub root: TempDir,
    pub data: PathBuf,
    pub mnt: PathBuf,
    pub args: Vec<String>,
    child: Option<Child>,
}

impl Mount {
    pub fn start(args: &[&str]) -> Mount {
        let root = temp_root();
        let data = fs::canonicalize(root.path()).unwrap().join("data");
        Mount::start_with(root, data, args)
    }

    /// Mounts `data` (anywhere) on `root/mnt`.
    pub fn start_with(root: TempDir, data: PathBuf, args: &[&str]) -> Mount {
        let mnt = fs::canonicalize(root.path()).unwrap().join("mnt");
        fs::create_dir_all(&mnt).expect("mountpoint");
        let mut m = Mount {
            root,
            data,
            mnt,
            args: args.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        m.mount();
        m
    }

    fn log_path(&self) -> PathBuf {
        self.root.path().join("daemon.log")
    }

    pub fn mount(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let child = Command::new(BIN)
            .arg("mount")
            .args(&self.args)
            .arg(&self.data)
            .arg(&self.mnt)
            .env("RUST_LOG", "caskfs=info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("start caskfs");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !is_mounted(&self.mnt) {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!(
                    "caskfs exited with {status} before mounting:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "mount did not appear:\n{}",
                self.log()
            );
            sleep(Duration::from_millis(5));
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The log, and then a fresh (empty) log file.
    pub fn take_log(&self) -> String {
        let log = self.log();
        let _ = fs::write(self.log_path(), b"");
        log
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    pub fn path(&self, key: &str) -> PathBuf {
        self.mnt.join(key)
    }

    pub fn scratch(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// `sh -c script` in the temp root (`mnt` is the mount, `data` the
    /// data directory when it is under the root).
    pub fn sh(&self, script: &str) -> Output {
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(self.root.path())
            .output()
            .expect("run sh")
    }

    pub fn ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "`{script}` failed ({}):\nstdout: {}\nstderr: {}\ndaemon log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log(), 4000)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn fails(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            !out.status.success(),
            "`{script}` succeeded but should fail:\nstdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn unmount(&mut self) {
        let out = Command::new("fusermount3")
            .arg("-u")
            .arg(&self.mnt)
            .output();
        if !out.as_ref().is_ok_and(|o| o.status.success()) {
            let status = Command::new("umount").arg(&self.mnt).status();
            assert!(status.is_ok_and(|s| s.success()), "umount failed");
        }
        let status = self.wait_exit(Duration::from_secs(60));
        assert!(
            status.is_some_and(|s| s.success()),
            "daemon did not exit cleanly: {status:?}\n{}",
            tail(&self.log(), 4000)
        );
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.child = None;
                    return Some(status);
                }
                Ok(None) if Instant::now() < deadline => sleep(Duration::from_millis(10)),
                _ => return None,
            }
        }
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.pid() as i32, signal) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// kill -9, reap, clear the dead mount.
    pub fn crash(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.wait_exit(Duration::from_secs(30));
        detach(&self.mnt);
    }

    /// The daemon's resident set size in bytes.
    pub fn rss(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if is_mounted(&self.mnt) {
            let ok = Command::new("fusermount3")
                .arg("-u")
                .arg(&self.mnt)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                detach(&self.mnt);
            }
        }
        if self.wait_exit(Duration::from_secs(20)).is_none()
            && let Some(mut child) = self.child.take()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
        detach(&self.mnt);
    }
}

pub fn temp_root() -> TempDir {
    tempfile::Builder::new()
        .prefix("caskfs-rel-")
        .tempdir()
        .expect("temp dir")
}

pub fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

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
