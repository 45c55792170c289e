//! The mount harness shared by the `mount_*` and `reliability_*` tests:
//! starts the real `caskfs` binary on a data directory and a temporary
//! mountpoint, waits until the mount is live, and always unmounts and reaps
//! the daemon when the `Mount` is dropped, also when a test fails.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub mod certs;
pub mod etcd;
mod library;

#[allow(unused_imports, reason = "not every test binary reads a store")]
pub use library::Library;

pub const BIN: &str = env!("CARGO_BIN_EXE_caskfs");

/// Whether mount tests can run here: /dev/fuse, and as a user other than
/// root `fusermount3` (root mounts and unmounts without it). Without them
/// the tests are skipped with a note, except under `CI=true`, where that
/// is a failure.
pub fn fuse_available() -> bool {
    let missing = if !Path::new("/dev/fuse").exists() {
        "/dev/fuse is missing (load the fuse module or run with FUSE)"
    } else if !is_root() && !has_fusermount() {
        "mounting as a user other than root needs fusermount3 (Debian's fuse3 package)"
    } else {
        return true;
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{missing}, and CI=true: mount tests must run in CI");
    }
    eprintln!("skipping mount test: {missing}");
    false
}

fn has_fusermount() -> bool {
    Command::new("fusermount3")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Unmounts `mnt` as its user would: `umount` as root, `fusermount3 -u`
/// otherwise. True if it worked.
pub fn unmount_cmd(mnt: &Path) -> bool {
    let mut cmd = if is_root() {
        Command::new("umount")
    } else {
        let mut c = Command::new("fusermount3");
        c.arg("-u");
        c
    };
    cmd.arg(mnt)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Returns from the test early (a skip) when FUSE is not available.
#[macro_export]
macro_rules! require_fuse {
    () => {
        if !common::fuse_available() {
            return;
        }
    };
}

pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether `path` is a mount point now.
pub fn is_mounted(path: &Path) -> bool {
    let want = path.to_string_lossy().replace(' ', "\\040");
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

/// One running `caskfs mount` in the foreground, as a child process.
pub struct Mount {
    /// Holds `data/`, `mnt/`, `daemon.log` and any scratch files.
    pub root: TempDir,
    pub data: PathBuf,
    pub mnt: PathBuf,
    pub args: Vec<String>,
    /// `--backend` URL: the keys live there, and `data` is unused.
    pub backend: Option<String>,
    /// The cluster `CASKFS_TEST_BACKEND=etcd` started for this mount.
    cluster: Option<etcd::Cluster>,
    /// The certificates of `CASKFS_TEST_BACKEND=etcd-secure`'s cluster.
    _certs: Option<certs::Certs>,
    /// Environment variables the daemon gets besides the test's.
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Mount {
    /// A fresh data directory, mounted with `args` added to the command.
    pub fn start(args: &[&str]) -> Mount {
        Mount::start_in(temp_root(), args)
    }

    /// Mounts `root/data` on `root/mnt` (both created if missing).
    pub fn start_in(root: TempDir, args: &[&str]) -> Mount {
        let data = fs::canonicalize(root.path())
            .expect("canonical temp dir")
            .join("data");
        Mount::start_with(root, data, args)
    }

    /// Mounts `data` (anywhere, e.g. on a small tmpfs) on `root/mnt`.
    pub fn start_with(root: TempDir, data: PathBuf, args: &[&str]) -> Mount {
        let mnt = fs::canonicalize(root.path())
            .expect("canonical temp dir")
            .join("mnt");
        fs::create_dir_all(&mnt).expect("mountpoint");
        // CASKFS_TEST_BACKEND=etcd runs a test on a one-member etcd
        // cluster of its own instead of `data` (tests that look into the
        // data directory then fail: they are about the local log);
        // `etcd-secure`, on one that serves TLS only, asks for a client
        // certificate and has a user and password.
        let (mut cluster, mut certs, mut backend, mut env) = (None, None, None, Vec::new());
        match std::env::var("CASKFS_TEST_BACKEND").as_deref() {
            Ok("etcd") => {
                let c = etcd::Cluster::start(1, &[]);
                backend = Some(c.url("test"));
                cluster = Some(c);
            }
            Ok("etcd-secure") => {
                let made = certs::Certs::make();
                let server = made.server();
                let tls = etcd::ServerTls {
                    ca: made.ca(),
                    cert: server.cert,
                    key: server.key,
                };
                let c = etcd::Cluster::start_tls(1, &tls, &[]);
                c.enable_auth("cask", "secret", "test");
                // With auth on, etcd's JSON gateway refuses a client
                // certificate that has a CommonName.
                let client = made.client_without_cn();
                let url = c.url("test").replacen("etcd://", "etcd://cask@", 1);
                backend = Some(format!(
                    "{url}?cacert={}&cert={}&key={}",
                    made.ca().display(),
                    client.cert.display(),
                    client.key.display()
                ));
                env.push(("CASKFS_ETCD_PASSWORD".to_string(), "secret".to_string()));
                (cluster, certs) = (Some(c), Some(made));
            }
            _ => {}
        }
        let mut m = Mount {
            root,
            data,
            mnt,
            args: args.iter().map(|s| s.to_string()).collect(),
            backend,
            cluster,
            _certs: certs,
            env,
            child: None,
        };
        m.mount();
        m
    }

    /// Mounts the etcd prefix `url` (`etcd://.../PREFIX`) on a fresh
    /// temporary mountpoint.
    pub fn start_backend(url: &str, args: &[&str]) -> Mount {
        Mount::start_backend_env(url, args, &[])
    }

    /// The same with environment variables `env` set for the daemon (a
    /// password, say).
    pub fn start_backend_env(url: &str, args: &[&str], env: &[(&str, &str)]) -> Mount {
        let root = temp_root();
        let mnt = fs::canonicalize(root.path())
            .expect("canonical temp dir")
            .join("mnt");
        fs::create_dir_all(&mnt).expect("mountpoint");
        let mut m = Mount {
            data: root.path().join("unused"),
            root,
            mnt,
            args: args.iter().map(|s| s.to_string()).collect(),
            backend: Some(url.to_string()),
            cluster: None,
            _certs: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
        };
        m.mount();
        m
    }

    /// Whether this mount reads through the page cache: the default
    /// without a backend, unless the last of `--cache-reads` and
    /// `--no-cache-reads` (CASKFS_MOUNT_ARGS first, then the test's) says
    /// otherwise.
    pub fn reads_cached(&self) -> bool {
        let extra = std::env::var("CASKFS_MOUNT_ARGS").unwrap_or_default();
        let last = extra
            .split_whitespace()
            .chain(self.args.iter().map(String::as_str))
            .rfind(|a| matches!(*a, "--cache-reads" | "--no-cache-reads"));
        self.backend.is_none() && last != Some("--no-cache-reads")
    }

    fn log_path(&self) -> PathBuf {
        self.root.path().join("daemon.log")
    }

    /// Starts the daemon and waits until the mount is live.
    pub fn mount(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        // CASKFS_MOUNT_ARGS: options every test's mount gets (to run the
        // suite with `--no-cache-reads`, say), before the test's own, so
        // that a test that asks for one of them gets it.
        let extra = std::env::var("CASKFS_MOUNT_ARGS").unwrap_or_default();
        let mut cmd = Command::new(BIN);
        cmd.arg("mount");
        match &self.backend {
            Some(url) => cmd
                .args(without_local_only(&self.args))
                .arg("--backend")
                .arg(url),
            None => cmd
                .args(extra.split_whitespace())
                .args(&self.args)
                .arg(&self.data),
        };
        let child = cmd
            .arg(&self.mnt)
            .env("RUST_LOG", "caskfs=info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
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
                    tail(&self.log(), 4000)
                );
            }
            assert!(
                Instant::now() < deadline,
                "mount did not appear:\n{}",
                tail(&self.log(), 4000)
            );
            sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    /// The log, and then a fresh (empty) log file.
    pub fn take_log(&self) -> String {
        let log = self.log();
        let _ = fs::write(self.log_path(), b"");
        log
    }

    /// Whether the daemon is still running.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// The daemon's resident set size in bytes.
    pub fn rss(&self) -> u64 {
        self.status_bytes("VmRSS:")
    }

    /// What the daemon's own memory (not mapped files) takes.
    pub fn anon(&self) -> u64 {
        self.status_bytes("RssAnon:")
    }

    fn status_bytes(&self, field: &str) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// Whether the keys live in a local data directory (`data`), as
    /// opposed to an etcd cluster (`CASKFS_TEST_BACKEND=etcd`): steps that
    /// look into the data directory run only then.
    pub fn local(&self) -> bool {
        self.backend.is_none()
    }

    /// A path inside the mount.
    pub fn path(&self, key: &str) -> PathBuf {
        self.mnt.join(key)
    }

    /// A scratch path beside the mount, on the real disk.
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// Runs `sh -c script` in the temp root, where the mount is `mnt`
    /// and the data directory `data`.
    pub fn sh(&self, script: &str) -> Output {
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(self.root.path())
            .output()
            .expect("run sh")
    }

    /// Runs `script`, asserting success; returns stdout.
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

    /// Runs `script`, asserting failure; returns stderr.
    pub fn fails(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            !out.status.success(),
            "`{script}` succeeded but should fail:\nstdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Unmounts the way a user would and waits for the daemon to exit
    /// cleanly (status 0).
    pub fn unmount(&mut self) {
        assert!(
            unmount_cmd(&self.mnt),
            "unmounting {} failed",
            self.mnt.display()
        );
        let status = self.wait_exit(Duration::from_secs(60));
        assert!(
            status.is_some_and(|s| s.success()),
            "daemon did not exit cleanly: {status:?}\n{}",
            tail(&self.log(), 4000)
        );
    }

    /// Waits for the daemon to exit by itself; `None` on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.child = None;
                    return Some(status);
                }
                Ok(None) if Instant::now() < deadline => sleep(Duration::from_millis(20)),
                _ => return None,
            }
        }
    }

    /// Sends `signal` to the daemon.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.pid() as i32, signal) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// kill -9 the daemon, reap it, and clear the dead mount lazily.
    pub fn crash(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.wait_exit(Duration::from_secs(30));
        detach(&self.mnt);
    }
}

/// `caskfs check` of an unmounted data directory, which must pass; its
/// report.
/// `args` without the options of a local data directory's log, which a
/// mount with `--backend` refuses: a test written for the log runs on
/// etcd without them.
fn without_local_only(args: &[String]) -> Vec<String> {
    const FLAGS: [&str; 2] = ["--no-compaction", "--cache-reads"];
    const WITH_VALUE: [&str; 6] = [
        "--max-segment-size",
        "--sync",
        "--merge-dead-ratio",
        "--merge-min-dead-bytes",
        "--merge-max-segments",
        "--merge-interval",
    ];
    let mut out = Vec::new();
    let mut skip = false;
    for a in args {
        if std::mem::take(&mut skip) || FLAGS.contains(&a.as_str()) {
            continue;
        }
        if WITH_VALUE.contains(&a.as_str()) {
            skip = true;
            continue;
        }
        out.push(a.clone());
    }
    out
}

/// Whether `what` is installed (`probe` succeeds in `m`'s temp root).
/// Without it the test is skipped with a note, except under `CI=true`,
/// where that is a failure.
pub fn have(m: &Mount, what: &str, probe: &str) -> bool {
    if m.sh(probe).status.success() {
        return true;
    }
    let missing = format!("{what} is not installed");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{missing}, and CI=true: this test must run in CI");
    }
    eprintln!("skipping: {missing}");
    false
}

pub fn check_clean(data: &Path) -> String {
    let out = Command::new(BIN).arg("check").arg(data).output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "caskfs check failed:\n{report}");
    report
}

/// Clears a mount, dead or alive, without waiting for its users.
pub fn detach(mnt: &Path) {
    for (cmd, args) in [("umount", &["-l"][..]), ("fusermount3", &["-u", "-z"][..])] {
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

impl Drop for Mount {
    fn drop(&mut self) {
        if is_mounted(&self.mnt) && !unmount_cmd(&self.mnt) {
            detach(&self.mnt);
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
        .prefix("caskfs-test-")
        .tempdir()
        .expect("temp dir")
}

/// The last `n` bytes of `s` (or a little fewer, at a character boundary).
pub fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// Deterministic bytes for values: not compressible, easy to compare.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 8) as u8
        })
        .collect()
}

/// Detaches a mount made outside `Mount` (e.g. by `--daemon`) on drop.
pub struct DetachOnDrop(pub PathBuf);

impl Drop for DetachOnDrop {
    fn drop(&mut self) {
        if is_mounted(&self.0) && !unmount_cmd(&self.0) {
            detach(&self.0);
        }
    }
}

/// Maps the first `len` bytes of `f` shared and copies them out.
pub fn mmap_read(f: &fs::File, len: usize) -> std::io::Result<Vec<u8>> {
    // SAFETY: a fresh shared read-only mapping of `len` bytes of an open
    // file, read within bounds and unmapped before returning.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            std::os::fd::AsRawFd::as_raw_fd(f),
            0,
        );
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let out = std::slice::from_raw_parts(p as *const u8, len).to_vec();
        libc::munmap(p, len);
        Ok(out)
    }
}

/// Polls `check` until it holds or `within` passes; how long it took.
pub fn within(within: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if check() {
            return Some(start.elapsed());
        }
        if start.elapsed() > within {
            return None;
        }
        sleep(Duration::from_millis(10));
    }
}
