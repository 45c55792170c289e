//! Filesystem benchmark (a plain program, `harness = false`): the same
//! small-file workload on a caskfs mount (the real binary, `--daemon`) and
//! on a plain directory on the same disk, in the same run; one table of
//! medians over several runs, beside the targets of issue 12 (ratios
//! caskfs/plain).
//!
//!     cargo bench --bench fs -- [--keys N] [--runs R] [--large-mib M]
//!                               [--clients C] [--quick] [--dir PATH]
//!                               [--only caskfs|plain] [-- MOUNT ARGS...]
//!
//! Phases, each timed on both targets, in this order:
//! - create: open O_CREAT|O_TRUNC + write + close of N keys;
//! - stat: stat right after create, shuffled; stat again: a second
//!   shuffled pass over the same unchanged keys;
//! - read: open + read to EOF + close + verify, shuffled; read again: a
//!   second shuffled pass over the same unchanged keys, verified too;
//! - overwrite (N random keys), list (readdir of all keys), append
//!   (1,000 × open O_APPEND + 10 bytes + close on one key);
//! - create ×2, stat ×2, read ×2: the same with 2 client threads on other
//!   keys, removed again;
//! - python create: a python3 loop creating N fresh keys, timed inside
//!   python around the loop only (skipped on both targets without python3);
//! - grep -r, cat all, tar c, sha256sum: real commands (`sh -c` in the
//!   target's root) over the N keys, the only files there, timed around the
//!   whole command, in keys per second;
//! - delete (unlink all), and a large value written and read back in 1 MiB
//!   requests.
//!
//! The table lists delete beside the other single-client phases. Space is
//! the bytes allocated after create: caskfs's data directory against the
//! plain one. The daemon's peak RSS is its VmHWM just before unmounting,
//! beside how much of its RSS is then its own memory and how much mapped
//! segment pages. The header says which FUSE transport the mount used, as
//! `caskfs stats --json` reports it.
//!
//! Everything lives under `--dir` (default `target/bench-fs`); every mount
//! is unmounted and the directory removed on the way out, also on failure.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

mod common;

use common::{is_mounted, median, mix, shuffled, value};

const VALUE_LEN: usize = 100;
const APPENDS: usize = 1000;
const APPEND_LEN: usize = 10;
const CHUNK: usize = 1 << 20;

/// The tools run over all keys: (row, `sh -c` script, exit codes that mean
/// success). grep exits 1 when nothing matches, which is what we expect.
/// GNU tar skips reading the files when its archive is /dev/null, so its
/// archive goes through a pipe.
const TOOLS: &[(&str, &str, &[i32])] = &[
    ("grep -r", "grep -rl caskfs-no-such-pattern .", &[0, 1]),
    ("cat all", "ls | xargs cat", &[0]),
    ("tar c", "tar cf - . | cat", &[0]),
    ("sha256sum", "ls | xargs sha256sum", &[0]),
];

/// The python create loop: argv is the directory, the number of keys and
/// the value length; prints the seconds the loop alone took.
const PY_CREATE: &str = r#"import sys, time
d, n = sys.argv[1], int(sys.argv[2])
v = bytes(i % 256 for i in range(int(sys.argv[3])))
t = time.perf_counter()
for i in range(n): open(f"{d}/p{i:08x}", "wb").write(v)
print(time.perf_counter() - t)
"#;

struct Args {
    keys: usize,
    runs: usize,
    large_mib: usize,
    clients: usize,
    dir: PathBuf,
    only: Option<String>,
    mount_args: Vec<String>,
    /// Whether python3 is on PATH: without it python create is skipped.
    python3: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: fs [--keys N] [--runs R] [--large-mib M] [--clients C] [--quick] \
         [--dir PATH] [--only caskfs|plain] [-- MOUNT ARGS...]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        keys: 20_000,
        runs: 3,
        large_mib: 512,
        clients: 2,
        dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-fs"),
        only: None,
        mount_args: Vec::new(),
        python3: on_path("python3"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        let num = |s: String| {
            s.replace('_', "")
                .parse::<usize>()
                .unwrap_or_else(|_| usage())
        };
        match arg.as_str() {
            "--keys" => a.keys = num(val()).max(1),
            "--runs" => a.runs = num(val()).max(1),
            "--large-mib" => a.large_mib = num(val()),
            "--clients" => a.clients = num(val()).max(1),
            "--quick" => {
                a.keys = 2000;
                a.runs = 1;
                a.large_mib = 64;
            }
            "--dir" => a.dir = PathBuf::from(val()),
            "--only" => a.only = Some(val()),
            // `cargo bench` appends its own `--bench` after everything.
            "--" => a.mount_args = it.by_ref().filter(|s| s != "--bench").collect(),
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

/// Whether an executable `name` is in a directory of PATH.
fn on_path(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .any(|d| fs::metadata(d.join(name)).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0))
    })
}

fn key(prefix: &str, i: usize) -> String {
    format!("{prefix}{:016x}", mix(i as u64))
}

fn put(path: &Path, data: &[u8]) {
    let mut f = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(data)
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn get(path: &Path, buf: &mut Vec<u8>) {
    buf.clear();
    let mut f = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut chunk = [0u8; 4096];
    loop {
        match f.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("read {}: {e}", path.display()),
        }
    }
}

/// Runs `f(client, share)` on `clients` threads, each with its share of
/// `items`, and returns the elapsed time.
fn parallel<F>(clients: usize, items: &[usize], f: F) -> Duration
where
    F: Fn(&[usize]) + Sync,
{
    let per = items.len().div_ceil(clients);
    let start = Instant::now();
    thread::scope(|s| {
        for share in items.chunks(per) {
            let f = &f;
            s.spawn(move || f(share));
        }
    });
    start.elapsed()
}

/// Runs `script` with `sh -c` in `dir`, stdout discarded, and returns how
/// long the whole command took; an exit code not in `ok` is a failure.
fn shell(dir: &Path, script: &str, ok: &[i32]) -> Duration {
    let t = Instant::now();
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("running sh -c {script:?}: {e}"));
    let took = t.elapsed();
    assert!(
        out.status.code().is_some_and(|c| ok.contains(&c)),
        "sh -c {script:?} in {}: {}: {}",
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim_end()
    );
    took
}

/// python3 creates `n` fresh keys `p%08x` in `dir`; the time its loop took,
/// as python measured it, so the interpreter's start-up is not counted.
fn python_create(dir: &Path, n: usize) -> Duration {
    let out = Command::new("python3")
        .arg("-c")
        .arg(PY_CREATE)
        .arg(dir)
        .arg(n.to_string())
        .arg(VALUE_LEN.to_string())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running python3: {e}"));
    assert!(
        out.status.success(),
        "python create in {}: {}: {}",
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim_end()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let secs: f64 = stdout
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("python create printed {stdout:?}, not seconds: {e}"));
    Duration::from_secs_f64(secs.max(0.0))
}

/// Bytes allocated on disk by the files below `dir` (what `du` counts).
fn allocated(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if let Ok(m) = fs::symlink_metadata(e.path()) {
                total += m.blocks() * 512;
                if m.is_dir() {
                    total += allocated(&e.path());
                }
            }
        }
    }
    total + fs::metadata(dir).map(|m| m.blocks() * 512).unwrap_or(0)
}

/// Figures of one run on one target, by phase.
#[derive(Default, Clone)]
struct Figures {
    rates: Vec<(&'static str, f64)>,
}

impl Figures {
    fn add(&mut self, phase: &'static str, ops: usize, took: Duration) {
        self.rates
            .push((phase, ops as f64 / took.as_secs_f64().max(1e-9)));
    }
    fn set(&mut self, phase: &'static str, v: f64) {
        self.rates.push((phase, v));
    }
    fn get(&self, phase: &str) -> Option<f64> {
        self.rates.iter().find(|(p, _)| *p == phase).map(|r| r.1)
    }
}

/// The workload on one directory; `space_of` is what to measure as space
/// used after create (caskfs: its data directory).
fn workload(a: &Args, root: &Path, space_of: &Path, run: usize) -> Figures {
    let n = a.keys;
    let mut f = Figures::default();
    let paths: Vec<PathBuf> = (0..n).map(|i| root.join(key("k", i))).collect();
    let mut gen_of = vec![0u64; n];
    let mut buf = Vec::with_capacity(4096);

    let t = Instant::now();
    for (i, p) in paths.iter().enumerate() {
        put(p, &value(i, 0, VALUE_LEN));
    }
    f.add("create", n, t.elapsed());
    f.set("space MiB", allocated(space_of) as f64 / (1 << 20) as f64);

    // Each pass twice over the unchanged keys: right after create, then
    // again, for what warm caches of attributes and contents give.
    for (phase, seed) in [("stat", 1), ("stat again", 6)] {
        let order = shuffled(n, seed + run as u64);
        let t = Instant::now();
        for &i in &order {
            let m = fs::metadata(&paths[i]).unwrap_or_else(|e| panic!("{phase}: {e}"));
            assert_eq!(m.len(), VALUE_LEN as u64);
        }
        f.add(phase, n, t.elapsed());
    }
    for (phase, seed) in [("read", 2), ("read again", 7)] {
        let order = shuffled(n, seed + run as u64);
        let t = Instant::now();
        for &i in &order {
            get(&paths[i], &mut buf);
            assert!(
                buf == value(i, 0, VALUE_LEN),
                "{phase}: wrong value for key {i}"
            );
        }
        f.add(phase, n, t.elapsed());
    }

    let t = Instant::now();
    for j in 0..n {
        let i = (mix(0x5eed ^ j as u64) % n as u64) as usize;
        gen_of[i] += 1;
        put(&paths[i], &value(i, gen_of[i], VALUE_LEN));
    }
    f.add("overwrite", n, t.elapsed());
    // The overwrites must be what a later open reads.
    for &i in shuffled(n, 3).iter().take(200) {
        get(&paths[i], &mut buf);
        assert!(
            buf == value(i, gen_of[i], VALUE_LEN),
            "after overwrite: key {i}"
        );
    }

    let listings = 5;
    let t = Instant::now();
    for _ in 0..listings {
        let count = fs::read_dir(root).expect("readdir").count();
        assert_eq!(count, n, "list: wrong number of names");
    }
    f.add("list", listings, t.elapsed());

    let ap = root.join("appended");
    put(&ap, b"");
    let t = Instant::now();
    for j in 0..APPENDS {
        let mut file = OpenOptions::new()
            .append(true)
            .open(&ap)
            .expect("open O_APPEND");
        let piece = [b'a' + (j % 26) as u8; APPEND_LEN];
        file.write_all(&piece).expect("append");
    }
    f.add("append", APPENDS, t.elapsed());
    assert_eq!(
        fs::metadata(&ap).expect("stat appended").len(),
        (APPENDS * APPEND_LEN) as u64
    );
    fs::remove_file(&ap).expect("rm appended");

    // The same create/stat/read with several clients, on other keys.
    let tpaths: Vec<PathBuf> = (0..n).map(|i| root.join(key("t", i))).collect();
    let all: Vec<usize> = (0..n).collect();
    let took = parallel(a.clients, &all, |share| {
        for &i in share {
            put(&tpaths[i], &value(i, 7, VALUE_LEN));
        }
    });
    f.add("create ×2", n, took);
    let order = shuffled(n, 4 + run as u64);
    let took = parallel(a.clients, &order, |share| {
        for &i in share {
            let m = fs::metadata(&tpaths[i]).unwrap_or_else(|e| panic!("stat: {e}"));
            assert_eq!(m.len(), VALUE_LEN as u64);
        }
    });
    f.add("stat ×2", n, took);
    let order = shuffled(n, 5 + run as u64);
    let took = parallel(a.clients, &order, |share| {
        let mut buf = Vec::with_capacity(4096);
        for &i in share {
            get(&tpaths[i], &mut buf);
            assert!(buf == value(i, 7, VALUE_LEN), "read ×2: key {i}");
        }
    });
    f.add("read ×2", n, took);
    for p in &tpaths {
        fs::remove_file(p).expect("rm");
    }

    // A script's loop of creates, beside the main keys; removed untimed.
    if a.python3 {
        f.add("python create", n, python_create(root, n));
        let first = root.join("p00000000");
        let len = fs::metadata(&first)
            .unwrap_or_else(|e| panic!("stat {}: {e}", first.display()))
            .len();
        assert_eq!(len, VALUE_LEN as u64, "python create: value length");
        for i in 0..n {
            let p = root.join(format!("p{i:08x}"));
            fs::remove_file(&p).unwrap_or_else(|e| panic!("unlink {}: {e}", p.display()));
        }
    }

    // Tools over the main keys while they all exist: both targets must hold
    // exactly the same tree, so nothing else may be left beside them.
    assert_eq!(
        fs::read_dir(root).expect("readdir").count(),
        n,
        "tools: the root must hold only the {n} keys"
    );
    for &(phase, script, ok) in TOOLS {
        f.add(phase, n, shell(root, script, ok));
    }

    let t = Instant::now();
    for p in &paths {
        fs::remove_file(p).unwrap_or_else(|e| panic!("unlink {}: {e}", p.display()));
    }
    f.add("delete", n, t.elapsed());
    assert_eq!(fs::read_dir(root).expect("readdir").count(), 0);

    if a.large_mib > 0 {
        let big = root.join("large");
        let chunk = value(1, 99, CHUNK);
        let t = Instant::now();
        {
            let mut file = File::create(&big).expect("create large");
            for _ in 0..a.large_mib {
                file.write_all(&chunk).expect("write large");
            }
        }
        f.set(
            "large write MB/s",
            (a.large_mib * CHUNK) as f64 / 1e6 / t.elapsed().as_secs_f64(),
        );
        let t = Instant::now();
        {
            let mut file = File::open(&big).expect("open large");
            let mut rb = vec![0u8; CHUNK];
            let mut total = 0;
            loop {
                let got = file.read(&mut rb).expect("read large");
                if got == 0 {
                    break;
                }
                total += got;
            }
            assert_eq!(total, a.large_mib * CHUNK);
        }
        f.set(
            "large read MB/s",
            (a.large_mib * CHUNK) as f64 / 1e6 / t.elapsed().as_secs_f64(),
        );
        fs::remove_file(&big).expect("rm large");
    }
    f
}

/// The FUSE transport the daemon serving `mnt` reports: the top-level
/// string `transport` of `caskfs stats --json`; a daemon that reports none
/// speaks only the classic protocol over /dev/fuse.
fn transport(mnt: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_caskfs"))
        .args(["stats", "--json"])
        .arg(mnt)
        .stdin(Stdio::null())
        .output();
    let json = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        // Say so rather than guess the classic transport.
        Ok(o) => {
            return format!(
                "unknown (caskfs stats --json: {}: {})",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim_end()
            );
        }
        Err(e) => return format!("unknown (caskfs stats --json: {e})"),
    };
    ["\"transport\":\"", "\"transport\": \""]
        .iter()
        .find_map(|pat| {
            let rest = &json[json.find(pat)? + pat.len()..];
            Some(rest[..rest.find('"')?].to_string())
        })
        .unwrap_or_else(|| "classic (/dev/fuse)".into())
}

/// A mounted caskfs; unmounted (lazily if it must) when dropped.
struct Mounted {
    mnt: PathBuf,
    data: PathBuf,
}

impl Mounted {
    fn start(data: &Path, mnt: &Path, log: &Path, extra: &[String]) -> Mounted {
        fs::create_dir_all(mnt).expect("mountpoint");
        let out = Command::new(env!("CARGO_BIN_EXE_caskfs"))
            .arg("mount")
            .arg("--daemon")
            .arg("--log-file")
            .arg(log)
            .args(extra)
            .arg(data)
            .arg(mnt)
            .stdin(Stdio::null())
            .output()
            .expect("starting caskfs");
        assert!(
            out.status.success(),
            "caskfs mount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Mounted {
            mnt: mnt.to_path_buf(),
            data: data.to_path_buf(),
        }
    }

    /// The daemon's pid, from the data directory's LOCK file.
    fn pid(&self) -> Option<u32> {
        fs::read_to_string(self.data.join("LOCK"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// A figure in kB from the daemon's /proc status (`VmHWM`, `RssAnon`…).
    fn status_kib(&self, field: &str) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    fn unmount(&mut self) {
        if !is_mounted(&self.mnt) {
            return;
        }
        let pid = self.pid();
        let ok = Command::new("fusermount3")
            .arg("-u")
            .arg(&self.mnt)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            for (cmd, args) in [("fusermount3", &["-u", "-z"][..]), ("umount", &["-l"][..])] {
                if is_mounted(&self.mnt) {
                    let _ = Command::new(cmd)
                        .args(args)
                        .arg(&self.mnt)
                        .stderr(Stdio::null())
                        .status();
                }
            }
        }
        // Wait for the daemon to close the store and exit.
        if let Some(pid) = pid {
            let deadline = Instant::now() + Duration::from_secs(30);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        self.unmount();
    }
}

/// Removes the bench directory when dropped (after the mounts are gone).
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Phases in table order with their targets: (phase, target, higher is
/// better). The space target is a ceiling on the ratio.
const TABLE: &[(&str, f64, bool)] = &[
    ("create", 1.5, true),
    ("stat", 0.5, true),
    ("stat again", 0.9, true),
    ("read", 0.3, true),
    ("read again", 0.5, true),
    ("overwrite", 0.7, true),
    ("list", 1.0, true),
    ("append", 0.1, true),
    ("delete", 1.0, true),
    ("create ×2", 1.0, true),
    ("stat ×2", 0.5, true),
    ("read ×2", 0.3, true),
    ("python create", 0.8, true),
    ("grep -r", 0.3, true),
    ("cat all", 0.3, true),
    ("tar c", 0.3, true),
    ("sha256sum", 0.3, true),
    ("large write MB/s", 0.8, true),
    ("large read MB/s", 0.8, true),
    ("space MiB", 1.0 / 20.0, false),
];

fn main() {
    let a = parse_args();
    let base = a.dir.clone();
    let _ = fs::remove_dir_all(&base);
    fs::create_dir_all(&base).expect("bench directory");
    let _cleanup = Cleanup(base.clone());
    let base = fs::canonicalize(&base).expect("canonical bench directory");
    println!(
        "caskfs fs bench: {} keys of {VALUE_LEN} bytes, {} run(s), {} client threads, \
         large value {} MiB, mount args {:?}, in {}",
        a.keys,
        a.runs,
        a.clients,
        a.large_mib,
        a.mount_args,
        base.display()
    );
    if !a.python3 {
        println!("python3 is not on PATH: python create is skipped on both targets");
    }
    let mut cask_runs = Vec::new();
    let mut plain_runs = Vec::new();
    let mut rss: [Vec<f64>; 3] = Default::default();
    for run in 0..a.runs {
        let dir = base.join(format!("run{run}"));
        if a.only.as_deref() != Some("plain") {
            let data = dir.join("data");
            let mut m = Mounted::start(
                &data,
                &dir.join("mnt"),
                &dir.join("caskfs.log"),
                &a.mount_args,
            );
            if run == 0 {
                println!("transport: {}", transport(&m.mnt));
            }
            let t = Instant::now();
            let f = workload(&a, &m.mnt, &data, run);
            for (i, field) in ["VmHWM", "RssAnon", "RssFile"].into_iter().enumerate() {
                if let Some(kib) = m.status_kib(field) {
                    rss[i].push(kib as f64);
                }
            }
            m.unmount();
            eprintln!("run {run}: caskfs {:.1}s", t.elapsed().as_secs_f64());
            cask_runs.push(f);
        }
        if a.only.as_deref() != Some("caskfs") {
            let plain = dir.join("plain");
            fs::create_dir_all(&plain).expect("plain directory");
            let t = Instant::now();
            plain_runs.push(workload(&a, &plain, &plain, run));
            eprintln!("run {run}: plain  {:.1}s", t.elapsed().as_secs_f64());
        }
        let _ = fs::remove_dir_all(&dir);
    }

    let med =
        |runs: &[Figures], phase: &str| median(runs.iter().filter_map(|f| f.get(phase)).collect());
    println!();
    println!(
        "{:<18} {:>12} {:>12} {:>8} {:>9}",
        "phase (ops/s)", "caskfs", "plain", "ratio", "target"
    );
    for &(phase, target, higher) in TABLE {
        let c = med(&cask_runs, phase);
        let p = med(&plain_runs, phase);
        let ratio = c / p;
        let verdict = if ratio.is_nan() {
            ""
        } else if (higher && ratio >= target) || (!higher && ratio <= target) {
            "ok"
        } else {
            "MISSED"
        };
        let target = if higher {
            format!("≥ {target:.2}")
        } else {
            format!("≤ {target:.2}")
        };
        let prec = if c.abs() < 100.0 || p.abs() < 100.0 {
            1
        } else {
            0
        };
        // A phase that did not run (no python3, `--only`) shows nothing.
        let cell = |v: f64, prec: usize| {
            if v.is_nan() {
                String::new()
            } else {
                format!("{v:.prec$}")
            }
        };
        println!(
            "{phase:<18} {:>12} {:>12} {:>8} {target:>9}  {verdict}",
            cell(c, prec),
            cell(p, prec),
            cell(ratio, 3)
        );
    }
    if rss.iter().all(|r| !r.is_empty()) {
        let [peak, anon, file] = rss.map(|r| median(r) / 1024.0);
        println!(
            "daemon peak RSS (VmHWM): {peak:.1} MiB; at the end {anon:.1} MiB its own \
             (RssAnon) and {file:.1} MiB mapped files, mostly segment pages (RssFile)"
        );
    }
    println!(
        "(list: listings of all keys per second; grep -r, cat all, tar c, sha256sum: keys \
         per second over the whole command; space: MiB allocated after create)"
    );
}
