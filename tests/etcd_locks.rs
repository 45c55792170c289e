//! File locks across hosts: two mounts of one etcd prefix (two daemons, as
//! two hosts would run) see each other's `flock` and `fcntl` locks; a
//! daemon killed with its locks loses them when its lease lapses; SQLite
//! from both mounts keeps one database whole. A local mount keeps the
//! kernel's locks.

mod common;

use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::Mount;
use common::etcd::Cluster;

/// A background `sh -c script`, killed (with its group) on drop.
struct Background(Child);

impl Background {
    fn start(script: &str) -> Background {
        use std::os::unix::process::CommandExt;
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn sh");
        Background(child)
    }

    /// Waits for it to end; whether it succeeded, or `None` on timeout.
    fn wait(&mut self, timeout: Duration) -> Option<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.0.try_wait() {
                Ok(Some(s)) => return Some(s.success()),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                _ => return None,
            }
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // SAFETY: kill(2) of our own child's process group.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// Whether `flock -n` on `path` gets the lock at once (exit 0) or finds
/// it held (exit 1).
fn flock_free(m: &Mount, path: &str) -> bool {
    let out = m.sh(&format!("flock -n {path} -c true"));
    match out.status.code() {
        Some(0) => true,
        Some(1) => false,
        other => panic!(
            "flock -n {path}: {other:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            common::tail(&m.log(), 3000)
        ),
    }
}

/// Starts a background `flock PATH sleep 600` and waits until it holds.
fn hold(m: &Mount, path: &std::path::Path) -> Background {
    let ready = m.scratch(&format!("held-{}", std::process::id()));
    let _ = std::fs::remove_file(&ready);
    let b = Background::start(&format!(
        "exec flock {} -c 'touch {}; exec sleep 600'",
        path.display(),
        ready.display()
    ));
    assert!(
        common::within(Duration::from_secs(10), || ready.exists()).is_some(),
        "the holder never got the lock\n{}",
        common::tail(&m.log(), 3000)
    );
    b
}

#[test]
fn flock_on_one_mount_holds_off_the_other_until_released() {
    require_etcd!();
    let cluster = Cluster::start(1, &[]);
    let url = cluster.url("flock");
    let m1 = Mount::start_backend(&url, &[]);
    let m2 = Mount::start_backend(&url, &[]);
    m1.ok("echo x > mnt/f");
    let f2 = m2.path("f");
    let f2 = f2.to_str().unwrap();

    assert!(flock_free(&m2, f2), "nobody holds it yet");
    let holder = hold(&m1, &m1.path("f"));
    assert!(!flock_free(&m2, f2), "mount 2 got a lock mount 1 holds");
    // Shared locks are refused too while the other holds it exclusive.
    assert_eq!(
        m2.sh(&format!("flock -s -n {f2} -c true")).status.code(),
        Some(1)
    );

    // A blocking flock on mount 2 waits, and gets the lock once mount 1's
    // holder ends.
    let mut waiter = Background::start(&format!("flock {f2} -c true"));
    assert_eq!(
        waiter.wait(Duration::from_millis(800)),
        None,
        "did not wait"
    );
    // The wait holds one of the daemon's threads, not the mount.
    assert_eq!(m2.ok("cat mnt/f"), "x\n");
    // A waiter killed with -9 ends (the daemon sees its SIGKILL), though
    // the kernel cannot interrupt the request itself.
    let mut killed = Background::start(&format!("exec flock {f2} -c true"));
    thread::sleep(Duration::from_millis(300));
    // SAFETY: kill(2) of our own child.
    unsafe { libc::kill(killed.0.id() as i32, libc::SIGKILL) };
    assert_eq!(
        killed.wait(Duration::from_secs(3)),
        Some(false),
        "a killed waiter hung"
    );
    drop(holder);
    let took = waiter.wait(Duration::from_secs(10));
    assert_eq!(took, Some(true), "the waiter never got the lock");
    assert!(flock_free(&m2, f2));
    assert!(flock_free(&m1, m1.path("f").to_str().unwrap()));

    // Shared locks from both mounts coexist.
    let _shared = Background::start(&format!(
        "exec flock -s {} -c 'exec sleep 600'",
        m1.path("f").display()
    ));
    thread::sleep(Duration::from_millis(500));
    assert_eq!(
        m2.sh(&format!("flock -s -n {f2} -c true")).status.code(),
        Some(0)
    );
    assert!(!flock_free(&m2, f2));
}

#[test]
fn a_killed_daemon_loses_its_locks_when_its_lease_lapses() {
    require_etcd!();
    let cluster = Cluster::start(1, &[]);
    let url = cluster.url("lease");
    let mut m1 = Mount::start_backend(&url, &["--lock-lease", "3s"]);
    let m2 = Mount::start_backend(&url, &["--lock-lease", "3s"]);
    m1.ok("echo x > mnt/f");
    let f2 = m2.path("f");
    let f2 = f2.to_str().unwrap();
    let _holder = hold(&m1, &m1.path("f"));
    assert!(!flock_free(&m2, f2));
    // Kept alive past its TTL while the daemon lives.
    thread::sleep(Duration::from_secs(5));
    assert!(!flock_free(&m2, f2), "the lock went while its daemon lived");

    m1.signal(libc::SIGKILL);
    let _ = m1.wait_exit(Duration::from_secs(30));
    let freed = common::within(Duration::from_secs(10), || flock_free(&m2, f2));
    common::detach(&m1.mnt);
    let freed = freed.expect("the dead daemon's lock was never released");
    assert!(freed < Duration::from_secs(6), "released after {freed:?}");
    eprintln!("lock of a killed daemon released after {freed:?} (lease 3 s)");
}

#[test]
fn unmounting_releases_locks_at_once() {
    require_etcd!();
    let cluster = Cluster::start(1, &[]);
    let url = cluster.url("unmount");
    let m2 = Mount::start_backend(&url, &[]);
    let mut m1 = Mount::start_backend(&url, &[]);
    m1.ok("echo x > mnt/f");
    let f2 = m2.path("f");
    {
        // Killed before the unmount: it keeps the mount busy.
        let _holder = hold(&m1, &m1.path("f"));
        assert!(!flock_free(&m2, f2.to_str().unwrap()));
    }
    m1.unmount();
    assert!(flock_free(&m2, f2.to_str().unwrap()));
}

/// A python3 one-liner that takes `lockf(kind, len, start)` on `path`
/// without waiting: prints `ok` or `busy`, then (with `hold`) keeps it
/// until killed.
fn lockf(path: &std::path::Path, kind: &str, start: u64, len: u64, hold: bool) -> String {
    format!(
        "python3 -c '
import fcntl, sys, time
f = open(\"{}\", \"r+\")
try:
    fcntl.lockf(f, fcntl.{kind} | fcntl.LOCK_NB, {len}, {start})
except OSError:
    print(\"busy\", flush=True); sys.exit(0)
print(\"ok\", flush=True)
while {}: time.sleep(1)
'",
        path.display(),
        if hold { "True" } else { "False" }
    )
}

#[test]
fn fcntl_byte_ranges_conflict_only_where_they_overlap() {
    require_etcd!();
    let cluster = Cluster::start(1, &[]);
    let url = cluster.url("fcntl");
    let m1 = Mount::start_backend(&url, &[]);
    let m2 = Mount::start_backend(&url, &[]);
    m1.ok("head -c 1000 /dev/zero > mnt/db");
    if !common::have(&m1, "python3", "python3 -c 'import fcntl'") {
        return;
    }
    let (p1, p2) = (m1.path("db"), m2.path("db"));

    // Mount 1 holds bytes 0..100 exclusive and 200..300 shared.
    let ready = m1.scratch("ready");
    let _w = Background::start(&format!(
        "{} > {}",
        lockf(&p1, "LOCK_EX", 0, 100, true),
        ready.display()
    ));
    let ready2 = m1.scratch("ready2");
    let _r = Background::start(&format!(
        "{} > {}",
        lockf(&p1, "LOCK_SH", 200, 100, true),
        ready2.display()
    ));
    let said = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    assert!(common::within(Duration::from_secs(10), || said(&ready) == "ok\n").is_some());
    assert!(common::within(Duration::from_secs(10), || said(&ready2) == "ok\n").is_some());

    let try2 = |kind: &str, start: u64, len: u64| m2.ok(&lockf(&p2, kind, start, len, false));
    assert_eq!(
        try2("LOCK_EX", 50, 100),
        "busy\n",
        "overlapping write locks"
    );
    assert_eq!(
        try2("LOCK_SH", 99, 1),
        "busy\n",
        "a read lock over a write lock"
    );
    assert_eq!(try2("LOCK_EX", 100, 100), "ok\n", "next to it");
    assert_eq!(try2("LOCK_SH", 250, 10), "ok\n", "shared locks coexist");
    assert_eq!(
        try2("LOCK_EX", 250, 10),
        "busy\n",
        "a write lock over a read lock"
    );
    assert_eq!(try2("LOCK_EX", 300, 0), "ok\n", "from 300 to the end");

    // F_GETLK sees the other mount's lock, with its range.
    let getlk = format!(
        "python3 -c '
import fcntl, struct
f = open(\"{}\", \"r+\")
l = struct.pack(\"hhqqi\", fcntl.F_WRLCK, 0, 10, 5, 0)
t, w, s, n, pid = struct.unpack(\"hhqqi\", fcntl.fcntl(f, fcntl.F_GETLK, l))
print(t == fcntl.F_WRLCK, s, n)
'",
        p2.display()
    );
    assert_eq!(m2.ok(&getlk), "True 0 100\n");

    // A close releases the process's locks: lockf held by a process that
    // exited is gone.
    drop(_w);
    assert!(
        common::within(Duration::from_secs(5), || try2("LOCK_EX", 0, 100) == "ok\n").is_some(),
        "the write lock outlived its process"
    );
}

/// Two processes, one on each mount, each inserting `N` rows in
/// transactions of their own, with SQLite's default locking (a rollback
/// journal and fcntl locks) and a busy timeout; then `integrity_check`
/// and the row count on both mounts. With `reconnect`, each transaction
/// opens the database anew.
fn sqlite_from_two_mounts(prefix: &str, reconnect: bool) {
    let cluster = Cluster::start(1, &[]);
    let url = cluster.url(prefix);
    let m1 = Mount::start_backend(&url, &[]);
    let m2 = Mount::start_backend(&url, &[]);
    if !common::have(&m1, "python3's sqlite3", "python3 -c 'import sqlite3'") {
        return;
    }
    const N: usize = 100;
    let db1 = m1.path("app.db");
    m1.ok(&format!(
        "python3 -c 'import sqlite3; c = sqlite3.connect(\"{}\"); \
         c.execute(\"create table t (who text, n int)\"); c.commit()'",
        db1.display()
    ));
    let writer = |db: &std::path::Path, who: &str| {
        Background::start(&format!(
            "python3 -c '
import sqlite3
c = None
for i in range({N}):
    if c is None or {reconnect}:
        c = sqlite3.connect(\"{}\", timeout=60)
    c.execute(\"insert into t values (?, ?)\", (\"{who}\", i))
    c.commit()
    if {reconnect}: c.close()
'",
            db.display(),
            reconnect = if reconnect { "True" } else { "False" },
        ))
    };
    let mut a = writer(&db1, "a");
    let mut b = writer(&m2.path("app.db"), "b");
    let (ra, rb) = (
        a.wait(Duration::from_secs(300)),
        b.wait(Duration::from_secs(300)),
    );
    let errs = |bg: &mut Background| {
        let mut s = String::new();
        if let Some(e) = bg.0.stderr.as_mut() {
            use std::io::Read;
            let _ = e.read_to_string(&mut s);
        }
        s
    };
    let (ea, eb) = (errs(&mut a), errs(&mut b));
    assert_eq!((ra, rb), (Some(true), Some(true)), "writers: {ea}\n{eb}");
    for m in [&m1, &m2] {
        let out = m.ok(&format!(
            "python3 -c 'import sqlite3; c = sqlite3.connect(\"{}\"); \
             print(c.execute(\"pragma integrity_check\").fetchone()[0]); \
             print(c.execute(\"select count(*) from t\").fetchone()[0])'",
            m.path("app.db").display()
        ));
        assert_eq!(out, format!("ok\n{}\n", 2 * N), "on {}", m.mnt.display());
    }
}

#[test]
fn sqlite_from_two_mounts_keeps_one_database_whole() {
    require_etcd!();
    sqlite_from_two_mounts("sqlite", true);
}

/// The same with each process keeping its connection (and its open
/// file) across transactions: a lock granted makes the writer's open file
/// read what the other host committed before it unlocked.
#[test]
fn sqlite_connections_kept_open_on_two_mounts() {
    require_etcd!();
    sqlite_from_two_mounts("sqlite-open", false);
}

#[test]
fn a_local_mount_keeps_the_kernels_locks() {
    if !common::fuse_available() {
        return;
    }
    let m = Mount::start(&[]);
    m.ok("echo x > mnt/f");
    let f = m.path("f");
    let _holder = hold(&m, &f);
    assert!(!flock_free(&m, f.to_str().unwrap()));
}
