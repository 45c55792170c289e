//! etcd backend benchmark (a plain program, `harness = false`): the same
//! small-file workload three ways, in the same run, against an etcd
//! cluster of its own:
//!
//! 1. the cluster driven directly through `caskfs::backend::etcd::Client` (put of a
//!    new key, get, put over an existing key, delete): what etcd costs;
//! 2. an etcd-backed mount of the real binary (`--backend etcd://...`):
//!    create (open O_CREAT|O_TRUNC + write + close), stat, read (open +
//!    read to EOF + close), overwrite, delete;
//! 3. the same on a mount of a local data directory (the default backend),
//!    and on a plain directory on the same disk, for reference;
//! 4. ways 1 and 2 again on a second cluster that serves its clients over
//!    TLS and wants a client certificate (made with `openssl`; skipped,
//!    saying so, without it), each rate as a ratio to the same way over
//!    plain HTTP: what TLS costs per operation;
//! 5. file locks across two etcd mounts of one prefix (as two hosts would
//!    mount it): `flock` taken and released alternately through each
//!    mount, and an `fcntl` byte-range lock taken and released through one
//!    while the other is mounted, beside `flock` on a local mount (whose
//!    locks the kernel keeps) and on a plain directory, on the same disk.
//!
//!     cargo bench --bench etcd -- [--keys N] [--runs R] [--members M] [--dir PATH]
//!
//! Every operation is timed on its own: the table gives, per operation and
//! way, the rate (ops/s) and the p50 and p99 latency in µs, medians over
//! the runs, and two ratios of rates: etcd mount ÷ direct client (what the
//! filesystem layer costs on etcd) and etcd mount ÷ local mount.
//!
//! The cluster (`--members`, default 1) runs on free 127.0.0.1 ports with
//! its data under `--dir` (default `target/bench-etcd`), on the same disk
//! as the local mount and the plain directory; it is killed, every mount
//! unmounted and the directory removed on the way out, also on failure.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use caskfs::backend::etcd::Client;

mod common;

use common::{is_mounted, median, mix, shuffled, value};

#[allow(dead_code)]
#[path = "../tests/common/etcd.rs"]
mod etcd;

#[allow(dead_code)]
#[path = "../tests/common/certs.rs"]
mod certs;

const VALUE_LEN: usize = 100;
const BIN: &str = env!("CARGO_BIN_EXE_caskfs");
/// The backend's own limits on one request (src/etcd/backend.rs).
const ATTEMPT: Duration = Duration::from_secs(2);
const DEADLINE: Duration = Duration::from_secs(10);

/// Operations in table order.
const OPS: [&str; 5] = ["create", "stat", "read", "overwrite", "delete"];
/// The ways, in table order.
const WAYS: [&str; 4] = ["client", "etcd mount", "local mount", "plain dir"];
/// The ways over TLS, after `WAYS` in the figures: each beside way 0 and 1.
const TLS_WAYS: [&str; 2] = ["client TLS", "etcd mount TLS"];

struct Args {
    keys: usize,
    runs: usize,
    members: usize,
    dir: PathBuf,
}

fn usage() -> ! {
    eprintln!("usage: etcd [--keys N] [--runs R] [--members M] [--dir PATH]");
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        keys: 2000,
        runs: 3,
        members: 1,
        dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-etcd"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        let mut num = || {
            val()
                .replace('_', "")
                .parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .unwrap_or_else(|| usage())
        };
        match arg.as_str() {
            "--keys" => a.keys = num(),
            "--runs" => a.runs = num(),
            "--members" => a.members = num(),
            "--dir" => a.dir = PathBuf::from(val()),
            "--bench" => {} // passed by `cargo bench`
            "-h" | "--help" => usage(),
            _ => {
                eprintln!("unknown argument {arg}");
                usage()
            }
        }
    }
    a
}

fn key(i: usize) -> String {
    format!("k{:016x}", mix(i as u64))
}

/// One operation over all its keys: rate, p50 and p99 latency in µs.
#[derive(Clone, Copy)]
struct Figure {
    rate: f64,
    p50: f64,
    p99: f64,
}

/// Times `op(i)` for every `i` of `order`, each on its own.
fn timed(order: &[usize], mut op: impl FnMut(usize)) -> Figure {
    let mut lat = Vec::with_capacity(order.len());
    let start = Instant::now();
    for &i in order {
        let t = Instant::now();
        op(i);
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let total = start.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let at = |q: f64| lat[((lat.len() as f64 * q).ceil() as usize).clamp(1, lat.len()) - 1];
    Figure {
        rate: order.len() as f64 / total.max(1e-9),
        p50: at(0.50),
        p99: at(0.99),
    }
}

/// Lock and unlock pairs timed per way of the lock table.
const LOCK_PAIRS: usize = 300;

/// Takes and releases an exclusive `flock` on `f`.
fn flock_pair(f: &File) {
    use std::os::fd::AsRawFd;
    for op in [libc::LOCK_EX, libc::LOCK_UN] {
        // SAFETY: flock(2) on a descriptor `f` keeps open.
        let rc = unsafe { libc::flock(f.as_raw_fd(), op) };
        assert_eq!(rc, 0, "flock: {}", std::io::Error::last_os_error());
    }
}

/// Takes and releases a write lock on byte `at` of `f` (F_SETLK).
fn fcntl_pair(f: &File, at: i64) {
    use std::os::fd::AsRawFd;
    for typ in [libc::F_WRLCK, libc::F_UNLCK] {
        // SAFETY: a zeroed `struct flock` is valid; the fields that matter
        // are set below.
        let mut l: libc::flock = unsafe { std::mem::zeroed() };
        l.l_type = typ as i16;
        l.l_whence = libc::SEEK_SET as i16;
        l.l_start = at;
        l.l_len = 1;
        // SAFETY: fcntl(2) F_SETLK with a valid `struct flock` on an open
        // descriptor.
        let rc = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLK, &l) };
        assert_eq!(rc, 0, "fcntl: {}", std::io::Error::last_os_error());
    }
}

fn open_rw(path: &Path) -> File {
    File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .expect("lock file")
}

/// The lock table's rows: the way, and its figure of lock+unlock pairs.
fn lock_rows(cluster: &etcd::Cluster, base: &Path) -> Vec<(&'static str, Figure)> {
    let dir = base.join("locks");
    let order: Vec<usize> = (0..LOCK_PAIRS).collect();
    let mut rows = Vec::new();
    {
        let url = cluster.url("locks");
        let source = ["--backend".as_ref(), url.as_ref()];
        let m1 = Mounted::start(&source, &dir.join("mnt1"), &dir.join("mount1.log"));
        let m2 = Mounted::start(&source, &dir.join("mnt2"), &dir.join("mount2.log"));
        let f1 = open_rw(&m1.mnt.join("f"));
        let f2 = open_rw(&m2.mnt.join("f"));
        let both = [&f1, &f2];
        rows.push((
            "flock, alternating mounts",
            timed(&order, |i| flock_pair(both[i % 2])),
        ));
        rows.push(("flock, one mount", timed(&order, |_| flock_pair(&f1))));
        rows.push((
            "fcntl byte, one mount",
            timed(&order, |i| fcntl_pair(&f1, i as i64)),
        ));
    }
    {
        let data = dir.join("data");
        let m = Mounted::start(
            &[data.as_os_str()],
            &dir.join("local-mnt"),
            &dir.join("local.log"),
        );
        let f = open_rw(&m.mnt.join("f"));
        rows.push(("flock, local mount", timed(&order, |_| flock_pair(&f))));
    }
    fs::create_dir_all(dir.join("plain")).expect("plain directory");
    let f = open_rw(&dir.join("plain/f"));
    rows.push(("flock, plain dir", timed(&order, |_| flock_pair(&f))));
    rows
}

/// The overwrite order: N random keys (some twice, some not at all).
fn overwrites(n: usize) -> Vec<usize> {
    (0..n)
        .map(|j| (mix(0x5eed ^ j as u64) % n as u64) as usize)
        .collect()
}

/// The workload on a directory: one figure per operation of `OPS`.
fn on_dir(root: &Path, n: usize, run: usize) -> Vec<Option<Figure>> {
    let paths: Vec<PathBuf> = (0..n).map(|i| root.join(key(i))).collect();
    let all: Vec<usize> = (0..n).collect();
    let mut gen_of = vec![0u64; n];
    let mut buf = Vec::with_capacity(4096);
    let write = |p: &Path, v: &[u8]| {
        let mut f = File::create(p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
        f.write_all(v)
            .unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    };
    let create = timed(&all, |i| write(&paths[i], &value(i, 0, VALUE_LEN)));
    let stat = timed(&shuffled(n, 1 + run as u64), |i| {
        let m =
            fs::metadata(&paths[i]).unwrap_or_else(|e| panic!("stat {}: {e}", paths[i].display()));
        assert_eq!(m.len(), VALUE_LEN as u64, "stat: size of key {i}");
    });
    let read_into = |p: &Path, buf: &mut Vec<u8>| {
        buf.clear();
        File::open(p)
            .and_then(|mut f| f.read_to_end(buf))
            .unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    };
    let mut wrong = 0;
    let read = timed(&shuffled(n, 2 + run as u64), |i| {
        read_into(&paths[i], &mut buf);
        wrong += usize::from(buf != value(i, 0, VALUE_LEN));
    });
    assert_eq!(wrong, 0, "read: wrong values");
    let overwrite = timed(&overwrites(n), |i| {
        gen_of[i] += 1;
        write(&paths[i], &value(i, gen_of[i], VALUE_LEN));
    });
    for &i in shuffled(n, 3).iter().take(200) {
        read_into(&paths[i], &mut buf);
        assert!(
            buf == value(i, gen_of[i], VALUE_LEN),
            "after overwrite: key {i}"
        );
    }
    let delete = timed(&all, |i| {
        fs::remove_file(&paths[i]).unwrap_or_else(|e| panic!("unlink: {e}"))
    });
    assert_eq!(fs::read_dir(root).expect("readdir").count(), 0);
    [create, stat, read, overwrite, delete].map(Some).to_vec()
}

/// The workload on the cluster directly, under `prefix`: put of new keys
/// (create), get (read), put over existing keys (overwrite), delete; etcd
/// has nothing to stat.
fn on_client(c: &Client, prefix: &str, n: usize, run: usize) -> Vec<Option<Figure>> {
    let keys: Vec<Vec<u8>> = (0..n)
        .map(|i| format!("{prefix}{}", key(i)).into_bytes())
        .collect();
    let all: Vec<usize> = (0..n).collect();
    let mut gen_of = vec![0u64; n];
    let create = timed(&all, |i| {
        c.put(&keys[i], &value(i, 0, VALUE_LEN)).expect("put");
    });
    let mut wrong = 0;
    let read = timed(&shuffled(n, 2 + run as u64), |i| {
        let (kv, _) = c.get(&keys[i]).expect("get");
        wrong += usize::from(kv.is_none_or(|kv| kv.value != value(i, 0, VALUE_LEN)));
    });
    assert_eq!(wrong, 0, "get: wrong values");
    let overwrite = timed(&overwrites(n), |i| {
        gen_of[i] += 1;
        c.put(&keys[i], &value(i, gen_of[i], VALUE_LEN))
            .expect("put");
    });
    let delete = timed(&all, |i| {
        assert!(c.delete(&keys[i]).expect("delete"), "delete: no such key");
    });
    vec![
        Some(create),
        None,
        Some(read),
        Some(overwrite),
        Some(delete),
    ]
}

/// The real binary serving `mnt` in the foreground as our child;
/// unmounted (lazily if it must) and reaped when dropped.
struct Mounted {
    mnt: PathBuf,
    child: Child,
    log: PathBuf,
}

impl Mounted {
    /// `caskfs mount SOURCE... MNT`: a data directory, or `--backend URL`.
    fn start(source: &[&std::ffi::OsStr], mnt: &Path, log: &Path) -> Mounted {
        fs::create_dir_all(mnt).expect("mountpoint");
        let out = File::create(log).expect("mount log");
        let child = Command::new(BIN)
            .arg("mount")
            .args(source)
            .arg(mnt)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log fd"))
            .stderr(out)
            .spawn()
            .expect("starting caskfs");
        let mut m = Mounted {
            mnt: mnt.to_path_buf(),
            child,
            log: log.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !is_mounted(&m.mnt) {
            let exited = m.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let log = fs::read_to_string(&m.log).unwrap_or_default();
                panic!("caskfs mount did not come up ({exited:?}):\n{log}");
            }
            thread::sleep(Duration::from_millis(10));
        }
        m
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        // fusermount3 as a user, umount as root; lazily if it must.
        for (cmd, args) in [
            ("fusermount3", &["-u"][..]),
            ("umount", &[][..]),
            ("fusermount3", &["-u", "-z"][..]),
            ("umount", &["-l"][..]),
        ] {
            if is_mounted(&self.mnt) {
                let _ = Command::new(cmd)
                    .args(args)
                    .arg(&self.mnt)
                    .stderr(Stdio::null())
                    .status();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Removes the bench directory when dropped (after the mounts are gone).
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn main() {
    let a = parse_args();
    let _ = fs::remove_dir_all(&a.dir);
    fs::create_dir_all(&a.dir).expect("bench directory");
    // Dropped last: after the cluster and the mounts.
    let _cleanup = Cleanup(a.dir.clone());
    let base = fs::canonicalize(&a.dir).expect("canonical bench directory");
    let cluster = etcd::Cluster::start_in(&base.join("etcd"), a.members, &[]);
    let version = Command::new("etcd").arg("--version").output();
    let version = version.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let version = version.unwrap_or_default();
    let version = version
        .lines()
        .find_map(|l| l.strip_prefix("etcd Version: "))
        .unwrap_or("unknown")
        .to_string();
    let url: caskfs::backend::etcd::EtcdUrl = cluster.url("bench-client").parse().expect("url");
    let client = Client::new(&url, ATTEMPT, DEADLINE).expect("etcd client");
    // The TLS cluster: same members, same disk, certificates of its own.
    let certs = certs::openssl_available().then(certs::Certs::make);
    let tls = certs.as_ref().map(|c| {
        let server = c.server();
        let files = etcd::ServerTls {
            ca: c.ca(),
            cert: server.cert,
            key: server.key,
        };
        let cluster = etcd::Cluster::start_tls_in(&base.join("etcd-tls"), a.members, &files, &[]);
        let client = c.client();
        let query = format!(
            "?cacert={}&cert={}&key={}",
            c.ca().display(),
            client.cert.display(),
            client.key.display()
        );
        let url: caskfs::backend::etcd::EtcdUrl = format!("{}{query}", cluster.url("bench-client"))
            .parse()
            .expect("TLS url");
        let client = Client::new(&url, ATTEMPT, DEADLINE).expect("etcd TLS client");
        (cluster, client, query)
    });
    println!(
        "caskfs etcd bench: etcd {version}, {} member(s); {} keys of {VALUE_LEN} bytes, \
         {} run(s), one client thread, in {}",
        a.members,
        a.keys,
        a.runs,
        base.display()
    );

    // runs[way][run][op]
    let mut runs: Vec<Vec<Vec<Option<Figure>>>> = vec![Vec::new(); WAYS.len() + TLS_WAYS.len()];
    for run in 0..a.runs {
        let dir = base.join(format!("run{run}"));
        let t = Instant::now();
        runs[0].push(on_client(&client, &format!("direct{run}/"), a.keys, run));
        let took_client = t.elapsed();
        let t = Instant::now();
        let url = cluster.url(&format!("mount{run}"));
        {
            let m = Mounted::start(
                &["--backend".as_ref(), url.as_ref()],
                &dir.join("etcd-mnt"),
                &dir.join("etcd-mount.log"),
            );
            runs[1].push(on_dir(&m.mnt, a.keys, run));
        }
        let took_etcd = t.elapsed();
        let t = Instant::now();
        {
            let data = dir.join("data");
            let m = Mounted::start(
                &[data.as_os_str()],
                &dir.join("local-mnt"),
                &dir.join("local-mount.log"),
            );
            runs[2].push(on_dir(&m.mnt, a.keys, run));
        }
        let took_local = t.elapsed();
        let t = Instant::now();
        let plain = dir.join("plain");
        fs::create_dir_all(&plain).expect("plain directory");
        runs[3].push(on_dir(&plain, a.keys, run));
        let took_plain = t.elapsed();
        let t = Instant::now();
        if let Some((tls_cluster, tls_client, query)) = &tls {
            runs[4].push(on_client(tls_client, &format!("direct{run}/"), a.keys, run));
            let url = format!("{}{query}", tls_cluster.url(&format!("mount{run}")));
            let m = Mounted::start(
                &["--backend".as_ref(), url.as_ref()],
                &dir.join("tls-mnt"),
                &dir.join("tls-mount.log"),
            );
            runs[5].push(on_dir(&m.mnt, a.keys, run));
        }
        eprintln!(
            "run {run}: client {:.1}s, etcd mount {:.1}s, local mount {:.1}s, plain {:.1}s, \
             TLS client and mount {:.1}s",
            took_client.as_secs_f64(),
            took_etcd.as_secs_f64(),
            took_local.as_secs_f64(),
            took_plain.as_secs_f64(),
            t.elapsed().as_secs_f64()
        );
        let _ = fs::remove_dir_all(&dir);
    }

    let t = Instant::now();
    let locks = lock_rows(&cluster, &base);
    eprintln!("locks: {:.1}s", t.elapsed().as_secs_f64());

    // Medians over the runs, per way and operation.
    let med = |way: usize, op: usize| -> Option<Figure> {
        let figs: Vec<Figure> = runs[way].iter().filter_map(|r| r[op]).collect();
        let of = |f: fn(&Figure) -> f64| median(figs.iter().map(f).collect());
        (!figs.is_empty()).then(|| Figure {
            rate: of(|f| f.rate),
            p50: of(|f| f.p50),
            p99: of(|f| f.p99),
        })
    };
    println!();
    print!("{:<10}", "");
    for w in WAYS {
        print!(" {w:^22}");
    }
    println!(" {:>9} {:>9}", "etcd mnt", "etcd mnt");
    print!("{:<10}", "operation");
    for _ in WAYS {
        print!(" {:>8} {:>6} {:>6}", "ops/s", "p50", "p99");
    }
    println!(" {:>9} {:>9}", "÷ client", "÷ local");
    for (op, name) in OPS.iter().enumerate() {
        print!("{name:<10}");
        for w in 0..WAYS.len() {
            match med(w, op) {
                Some(f) => print!(" {:>8.0} {:>6.0} {:>6.0}", f.rate, f.p50, f.p99),
                None => print!(" {:>8} {:>6} {:>6}", "-", "", ""),
            }
        }
        let ratio = |w: usize| match (med(1, op), med(w, op)) {
            (Some(e), Some(o)) => format!("{:.3}", e.rate / o.rate),
            _ => "-".into(),
        };
        println!(" {:>9} {:>9}", ratio(0), ratio(2));
    }
    println!(
        "(p50/p99: latency of one operation in µs; ratios of ops/s. client: create and \
         overwrite = put, read = get, delete = DeleteRange on the gateway; etcd has no stat. \
         The local mount runs with its default --sync none; etcd syncs its log at every commit.)"
    );
    println!(
        "\nfile locks, {LOCK_PAIRS} lock+unlock pairs (two etcd mounts of one prefix, one \
         daemon each, as two hosts):"
    );
    println!(
        "{:<28} {:>9} {:>7} {:>7} {:>13}",
        "way", "pairs/s", "p50", "p99", "÷ local flock"
    );
    let local = locks
        .iter()
        .find(|(w, _)| *w == "flock, local mount")
        .map_or(f64::NAN, |(_, f)| f.rate);
    for (way, f) in &locks {
        println!(
            "{way:<28} {:>9.0} {:>7.0} {:>7.0} {:>13.4}",
            f.rate,
            f.p50,
            f.p99,
            f.rate / local
        );
    }
    println!(
        "(a pair: LOCK_EX then LOCK_UN, or F_SETLK F_WRLCK then F_UNLCK on one byte; p50/p99 \
         in µs. On etcd a lock is a range read and a transaction, an unlock a delete; the \
         local mount's and the plain directory's locks are the kernel's.)"
    );
    if tls.is_none() {
        println!("\nno TLS rows: openssl is not installed");
        return;
    }
    println!(
        "\nover TLS (cacert, client certificate, --client-cert-auth), beside the same way \
         over plain HTTP:"
    );
    print!("{:<10}", "operation");
    for w in TLS_WAYS {
        print!(" {w:>16} {:>6} {:>6} {:>8}", "p50", "p99", "÷ plain");
    }
    println!();
    for (op, name) in OPS.iter().enumerate() {
        print!("{name:<10}");
        for (k, way) in [4, 5].into_iter().enumerate() {
            match (med(way, op), med(k, op)) {
                (Some(t), Some(p)) => print!(
                    " {:>16.0} {:>6.0} {:>6.0} {:>8.3}",
                    t.rate,
                    t.p50,
                    t.p99,
                    t.rate / p.rate
                ),
                _ => print!(" {:>16} {:>6} {:>6} {:>8}", "-", "", "", ""),
            }
        }
        println!();
    }
    println!("(ops/s, p50/p99 in µs; ÷ plain: ops/s over TLS ÷ ops/s over plain HTTP.)");
}
