//! Filesystem benchmark (a plain program, `harness = false`): two
//! workloads, each run on a caskfs mount (the real binary, `--daemon`) and
//! on a plain directory on the same disk, in the same run; a table of
//! medians over several runs for each, beside the targets of issue 12
//! (ratios caskfs/plain, and a few absolute times).
//!
//!     cargo bench --bench fs -- [--keys N] [--runs R] [--large-mib M]
//!                               [--clients C] [--quick] [--dir PATH]
//!                               [--only caskfs|plain]
//!                               [--no-in-place | --only-in-place]
//!                               [-- MOUNT ARGS...]
//!
//! The small-file workload's phases, each timed on both targets, in this
//! order:
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
//! The second workload, files changed in place, on a fresh mount and a
//! fresh plain directory; each file is made untimed (and synced) first,
//! and removed after its phase (sizes with `--quick` in brackets):
//! - append: 200 [50] × open O_APPEND + 10 bytes + close on a 50 [8] MB
//!   file, in ops/s;
//! - sqlite WAL commits: a python3 sqlite3 database in WAL mode (its
//!   default `synchronous`, FULL), 1,000 [200] inserts each its own
//!   committed transaction, timed inside python around the loop (skipped
//!   on both targets without python3 or its sqlite3 module), in ops/s;
//! - 4 KiB random fsync writes: 500 [100] × pwrite of 4 KiB at a seeded
//!   random 4 KiB-aligned offset of a 256 [64] MiB file + fdatasync, in
//!   ops/s, verified after;
//! - mv and chmod of a 1 GiB [128 MiB] file: 5 renames back and forth, 5
//!   chmods between two modes, the median of each in ms, against < 1 ms
//!   on caskfs;
//! - mv of a folder of 100,000 [10,000] empty files: 3 renames back and
//!   forth, the median in s, against < 0.5 s on caskfs;
//! - disk use (caskfs only, on a mount of its own): a 50 [8] MB file,
//!   1,000 [200] appends of 10 bytes, `caskfs compact` on the mountpoint,
//!   then the data directory's allocated bytes (once they stop changing)
//!   over the file's size, against ≤ 1.2.
//!
//! Everything lives under `--dir` (default `target/bench-fs`); every mount
//! is unmounted and the directory removed on the way out, also on failure.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
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

/// The sqlite loop: argv is the database's path and the number of
/// commits; a WAL database with one table, each insert its own committed
/// transaction, `synchronous` left at its default. Prints the seconds the
/// loop alone took, then the `synchronous` setting it ran with (0 OFF,
/// 1 NORMAL, 2 FULL, 3 EXTRA).
const PY_SQLITE: &str = r#"import sys, time, sqlite3
path, n = sys.argv[1], int(sys.argv[2])
db = sqlite3.connect(path, isolation_level=None)
mode = db.execute("pragma journal_mode=wal").fetchone()[0]
if mode != "wal":
    sys.exit(f"journal_mode is {mode}, not wal")
sync = db.execute("pragma synchronous").fetchone()[0]
db.execute("create table t (id integer primary key, v blob not null)")
v = bytes(i % 256 for i in range(100))
t = time.perf_counter()
for i in range(n):
    db.execute("begin")
    db.execute("insert into t values (?, ?)", (i, v))
    db.execute("commit")
took = time.perf_counter() - t
count = db.execute("select count(*) from t").fetchone()[0]
if count != n:
    sys.exit(f"{count} rows after {n} commits")
db.close()
print(took, sync)
"#;

/// The sizes of the in-place workload (`--quick` makes them smaller).
struct InPlace {
    /// The file appended to, in MB (10^6 bytes).
    append_mb: usize,
    appends: usize,
    commits: usize,
    /// The file written at random, in MiB.
    random_mib: usize,
    random_writes: usize,
    /// The file renamed and chmodded, in MiB.
    big_mib: usize,
    /// Renames, and chmods, of the big file.
    meta_ops: usize,
    folder_files: usize,
    folder_renames: usize,
    /// Appends before the merge of the disk-use row.
    space_appends: usize,
}

impl InPlace {
    const FULL: InPlace = InPlace {
        append_mb: 50,
        appends: 200,
        commits: 1000,
        random_mib: 256,
        random_writes: 500,
        big_mib: 1024,
        meta_ops: 5,
        folder_files: 100_000,
        folder_renames: 3,
        space_appends: 1000,
    };
    const QUICK: InPlace = InPlace {
        append_mb: 8,
        appends: 50,
        commits: 200,
        random_mib: 64,
        random_writes: 100,
        big_mib: 128,
        meta_ops: 5,
        folder_files: 10_000,
        folder_renames: 3,
        space_appends: 200,
    };
}

/// The block of the random writes.
const BLOCK: usize = 4096;

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
    /// Whether python3 can import sqlite3: without it the sqlite row is
    /// skipped.
    sqlite3: bool,
    /// Which workloads run: the small-file one, the in-place one.
    small: bool,
    in_place: bool,
    sizes: InPlace,
}

fn usage() -> ! {
    eprintln!(
        "usage: fs [--keys N] [--runs R] [--large-mib M] [--clients C] [--quick] \
         [--dir PATH] [--only caskfs|plain] [--no-in-place | --only-in-place] \
         [-- MOUNT ARGS...]"
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
        sqlite3: false,
        small: true,
        in_place: true,
        sizes: InPlace::FULL,
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
                a.sizes = InPlace::QUICK;
            }
            "--no-in-place" => a.in_place = false,
            "--only-in-place" => a.small = false,
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
    if !a.small && !a.in_place {
        eprintln!("--no-in-place and --only-in-place leave nothing to run");
        usage()
    }
    a.sqlite3 = a.python3 && a.in_place && python_has_sqlite3();
    a
}

/// Whether python3 imports its sqlite3 module.
fn python_has_sqlite3() -> bool {
    Command::new("python3")
        .args(["-c", "import sqlite3"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
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

/// Keys of the in-place workload's figures.
const IP_APPEND: &str = "in place: append";
const IP_SQLITE: &str = "in place: sqlite";
const IP_RANDOM: &str = "in place: random writes";
const IP_MV: &str = "in place: mv ms";
const IP_CHMOD: &str = "in place: chmod ms";
const IP_FOLDER: &str = "in place: mv folder s";
const IP_SPACE: &str = "in place: space";

/// Writes a fresh file of `len` bytes in 1 MiB requests and syncs it: the
/// untimed start of an in-place phase.
fn make_file(path: &Path, len: u64, seed: u64) {
    let chunk = value(3, seed, CHUNK);
    let mut file = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut left = len;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        file.write_all(&chunk[..n])
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        left -= n as u64;
    }
    file.sync_all()
        .unwrap_or_else(|e| panic!("fsync {}: {e}", path.display()));
}

/// `n` × open O_APPEND + `APPEND_LEN` bytes + close on `path`.
fn append_to(path: &Path, n: usize) -> Duration {
    let t = Instant::now();
    for j in 0..n {
        let mut file = OpenOptions::new()
            .append(true)
            .open(path)
            .unwrap_or_else(|e| panic!("open O_APPEND {}: {e}", path.display()));
        let piece = [b'a' + (j % 26) as u8; APPEND_LEN];
        file.write_all(&piece)
            .unwrap_or_else(|e| panic!("append to {}: {e}", path.display()));
    }
    t.elapsed()
}

/// python3's sqlite3 makes `n` commits to a fresh WAL database at `db`:
/// the time its loop took, as python measured it, and the `synchronous`
/// setting it ran with.
fn python_sqlite(db: &Path, n: usize) -> (Duration, String) {
    let out = Command::new("python3")
        .arg("-c")
        .arg(PY_SQLITE)
        .arg(db)
        .arg(n.to_string())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running python3: {e}"));
    assert!(
        out.status.success(),
        "sqlite commits in {}: {}: {}",
        db.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim_end()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (secs, sync) = stdout
        .trim()
        .split_once(' ')
        .and_then(|(s, m)| Some((s.parse::<f64>().ok()?, m)))
        .unwrap_or_else(|| panic!("sqlite commits printed {stdout:?}, not seconds and a mode"));
    let sync = match sync {
        "0" => "OFF",
        "1" => "NORMAL",
        "2" => "FULL",
        "3" => "EXTRA",
        other => other,
    };
    (Duration::from_secs_f64(secs.max(0.0)), sync.to_string())
}

/// A fresh file of `mib` MiB (untimed), then `n` × pwrite of one block at
/// a random block-aligned offset (seeded) + fdatasync, timed; every block
/// written is read back after and must hold its last write.
fn random_writes(path: &Path, mib: usize, n: usize, seed: u64) -> Duration {
    let len = (mib * CHUNK) as u64;
    make_file(path, len, seed);
    let blocks = len / BLOCK as u64;
    let offsets: Vec<u64> = (0..n)
        .map(|j| mix(seed << 32 ^ j as u64) % blocks * BLOCK as u64)
        .collect();
    let data: Vec<Vec<u8>> = (0..n).map(|j| value(j, seed ^ 0xb10c, BLOCK)).collect();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let t = Instant::now();
    for (off, bytes) in offsets.iter().zip(&data) {
        file.write_all_at(bytes, *off)
            .unwrap_or_else(|e| panic!("pwrite {} at {off}: {e}", path.display()));
        file.sync_data()
            .unwrap_or_else(|e| panic!("fdatasync {}: {e}", path.display()));
    }
    let took = t.elapsed();
    let mut seen = std::collections::HashSet::new();
    let mut back = vec![0u8; BLOCK];
    for (off, bytes) in offsets.iter().zip(&data).rev() {
        if seen.insert(*off) {
            file.read_exact_at(&mut back, *off)
                .unwrap_or_else(|e| panic!("pread {} at {off}: {e}", path.display()));
            assert!(back == *bytes, "random writes: wrong block at {off}");
        }
    }
    let m = file.metadata().expect("fstat after random writes");
    assert_eq!(m.len(), len, "random writes: the size changed");
    took
}

/// A fresh file of `mib` MiB (untimed), then `ops` renames back and
/// forth and `ops` chmods between two modes, each timed alone: the
/// medians in milliseconds (rename, chmod). The file is removed after.
fn big_file_meta(root: &Path, mib: usize, ops: usize, seed: u64) -> (f64, f64) {
    let len = (mib * CHUNK) as u64;
    let names = [root.join("big-a"), root.join("big-b")];
    make_file(&names[0], len, seed);
    let mut renames = Vec::with_capacity(ops);
    for j in 0..ops {
        let (from, to) = (&names[j % 2], &names[(j + 1) % 2]);
        let t = Instant::now();
        fs::rename(from, to).unwrap_or_else(|e| panic!("mv {}: {e}", from.display()));
        renames.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let now = &names[ops % 2];
    let mut chmods = Vec::with_capacity(ops);
    let mut mode = 0;
    for j in 0..ops {
        mode = if j % 2 == 0 { 0o600 } else { 0o644 };
        let t = Instant::now();
        fs::set_permissions(now, fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", now.display()));
        chmods.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let m = fs::metadata(now).unwrap_or_else(|e| panic!("stat {}: {e}", now.display()));
    assert_eq!(m.len(), len, "mv/chmod: the size changed");
    if ops > 0 {
        assert_eq!(m.mode() & 0o7777, mode, "chmod: wrong mode");
    }
    assert!(
        !names[(ops + 1) % 2].exists(),
        "mv: the old name is still there"
    );
    fs::remove_file(now).unwrap_or_else(|e| panic!("rm {}: {e}", now.display()));
    (median(renames), median(chmods))
}

/// A folder of `files` empty files (untimed), then `renames` renames of
/// it back and forth, each timed alone: their median in seconds. The
/// folder is removed after.
fn folder_rename(root: &Path, files: usize, renames: usize) -> f64 {
    let names = [root.join("tree-a"), root.join("tree-b")];
    fs::create_dir(&names[0]).unwrap_or_else(|e| panic!("mkdir {}: {e}", names[0].display()));
    for i in 0..files {
        let p = names[0].join(format!("f{i:06}"));
        File::create(&p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
    }
    let mut took = Vec::with_capacity(renames);
    for j in 0..renames {
        let (from, to) = (&names[j % 2], &names[(j + 1) % 2]);
        let t = Instant::now();
        fs::rename(from, to).unwrap_or_else(|e| panic!("mv {}: {e}", from.display()));
        took.push(t.elapsed().as_secs_f64());
    }
    let now = &names[renames % 2];
    assert_eq!(
        fs::read_dir(now).expect("readdir moved folder").count(),
        files,
        "mv folder: wrong number of names after the renames"
    );
    assert!(
        !names[(renames + 1) % 2].exists(),
        "mv folder: the old name is still there"
    );
    fs::remove_dir_all(now).unwrap_or_else(|e| panic!("rm -r {}: {e}", now.display()));
    median(took)
}

/// The in-place workload on one directory (everything but the disk-use
/// row); `sync_mode` gets the `synchronous` setting sqlite ran with.
fn in_place(a: &Args, root: &Path, run: usize, sync_mode: &mut Option<String>) -> Figures {
    let s = &a.sizes;
    let seed = 0x1dea ^ run as u64;
    let mut f = Figures::default();

    let ap = root.join("appended");
    let len = (s.append_mb * 1_000_000) as u64;
    make_file(&ap, len, seed);
    f.add(IP_APPEND, s.appends, append_to(&ap, s.appends));
    assert_eq!(
        fs::metadata(&ap).expect("stat appended").len(),
        len + (s.appends * APPEND_LEN) as u64,
        "append: wrong size after"
    );
    fs::remove_file(&ap).expect("rm appended");

    if a.sqlite3 {
        let dir = root.join("sqlite");
        fs::create_dir(&dir).expect("mkdir sqlite");
        let (took, sync) = python_sqlite(&dir.join("bench.db"), s.commits);
        f.add(IP_SQLITE, s.commits, took);
        *sync_mode = Some(sync);
        fs::remove_dir_all(&dir).expect("rm -r sqlite");
    }

    let rf = root.join("random");
    f.add(
        IP_RANDOM,
        s.random_writes,
        random_writes(&rf, s.random_mib, s.random_writes, seed),
    );
    fs::remove_file(&rf).expect("rm random");

    let (mv, chmod) = big_file_meta(root, s.big_mib, s.meta_ops, seed);
    f.set(IP_MV, mv);
    f.set(IP_CHMOD, chmod);
    f.set(
        IP_FOLDER,
        folder_rename(root, s.folder_files, s.folder_renames),
    );
    assert_eq!(
        fs::read_dir(root).expect("readdir").count(),
        0,
        "in place: files left behind"
    );
    f
}

/// The disk-use row, on a fresh mount: a file, appends to it, a merge
/// (`caskfs compact` on the mountpoint, which returns when it is done),
/// then the data directory's allocated bytes, once they stop changing,
/// over the file's size.
fn space_after_merge(a: &Args, mnt: &Path, data: &Path, run: usize) -> f64 {
    let s = &a.sizes;
    let p = mnt.join("appended");
    let len = (s.append_mb * 1_000_000) as u64;
    make_file(&p, len, 0x5ace ^ run as u64);
    append_to(&p, s.space_appends);
    let size = fs::metadata(&p).expect("stat appended").len();
    assert_eq!(size, len + (s.space_appends * APPEND_LEN) as u64);
    let out = Command::new(env!("CARGO_BIN_EXE_caskfs"))
        .arg("compact")
        .arg(mnt)
        .stdin(Stdio::null())
        .output()
        .expect("running caskfs compact");
    assert!(
        out.status.success(),
        "caskfs compact {}: {}: {}",
        mnt.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim_end()
    );
    eprintln!(
        "run {run}: caskfs compact: {}",
        String::from_utf8_lossy(&out.stdout).trim_end()
    );
    settled_allocation(data) as f64 / size as f64
}

/// The bytes allocated below `dir` once five looks 100 ms apart agree (a
/// merged segment may go a little after the merge returns); after 30 s,
/// the last look, with a warning.
fn settled_allocation(dir: &Path) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = allocated(dir);
    let mut same = 0;
    while same < 5 {
        if Instant::now() >= deadline {
            eprintln!(
                "the allocation of {} still changed after 30 s: taking the last look",
                dir.display()
            );
            break;
        }
        thread::sleep(Duration::from_millis(100));
        let now = allocated(dir);
        if now == last {
            same += 1;
        } else {
            same = 0;
            last = now;
        }
    }
    last
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

/// How a row of the in-place table is judged.
#[derive(Clone, Copy)]
enum Goal {
    /// The ratio caskfs/plain at least this.
    RatioAtLeast(f64),
    /// caskfs's own figure below this, in the row's unit.
    Below(f64),
    /// caskfs's own figure at most this (a row measured on caskfs only).
    AtMost(f64),
}

/// The median of a phase over the runs that have it (NaN if none).
fn med(runs: &[Figures], phase: &str) -> f64 {
    median(runs.iter().filter_map(|f| f.get(phase)).collect())
}

/// A figure with `prec` decimals; nothing for a phase that did not run
/// (no python3, `--only`).
fn cell(v: f64, prec: usize) -> String {
    if v.is_nan() {
        String::new()
    } else {
        format!("{v:.prec$}")
    }
}

/// `mib` MiB as the table names it: "1 GiB", "128 MiB".
fn size_name(mib: usize) -> String {
    if mib >= 1024 && mib.is_multiple_of(1024) {
        format!("{} GiB", mib / 1024)
    } else {
        format!("{mib} MiB")
    }
}

/// 1000 as "1,000".
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A count of files as the table names it: "100k", "2,500".
fn count_name(n: usize) -> String {
    if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        thousands(n)
    }
}

/// Mounts a fresh caskfs on `dir/mnt` with the data directory `dir/name`
/// and the log `dir/caskfs-name.log`; says which transport it uses the
/// first time.
fn mount(a: &Args, dir: &Path, name: &str, said_transport: &mut bool) -> (Mounted, PathBuf) {
    let data = dir.join(name);
    let m = Mounted::start(
        &data,
        &dir.join("mnt"),
        &dir.join(format!("caskfs-{name}.log")),
        &a.mount_args,
    );
    if !*said_transport {
        println!("transport: {}", transport(&m.mnt));
        *said_transport = true;
    }
    (m, data)
}

fn main() {
    let a = parse_args();
    let base = a.dir.clone();
    let _ = fs::remove_dir_all(&base);
    fs::create_dir_all(&base).expect("bench directory");
    let _cleanup = Cleanup(base.clone());
    let base = fs::canonicalize(&base).expect("canonical bench directory");
    if a.small {
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
    } else {
        println!(
            "caskfs fs bench: {} run(s), mount args {:?}, in {}",
            a.runs,
            a.mount_args,
            base.display()
        );
    }
    let s = &a.sizes;
    if a.in_place {
        println!(
            "files changed in place: {} appends to a {} MB file, {} sqlite commits, {} random \
             4 KiB writes to a {} file, {} renames and chmods of a {} file, {} renames of a \
             folder of {} files, {} appends before the merge",
            s.appends,
            s.append_mb,
            s.commits,
            s.random_writes,
            size_name(s.random_mib),
            s.meta_ops,
            size_name(s.big_mib),
            s.folder_renames,
            thousands(s.folder_files),
            s.space_appends
        );
        if !a.sqlite3 {
            let why = if a.python3 {
                "python3 cannot import sqlite3"
            } else {
                "python3 is not on PATH"
            };
            println!("{why}: sqlite WAL commits is skipped on both targets");
        }
    }
    let on_caskfs = a.only.as_deref() != Some("plain");
    let on_plain = a.only.as_deref() != Some("caskfs");
    let mut said_transport = false;
    let mut cask_runs = Vec::new();
    let mut plain_runs = Vec::new();
    let mut cask_ip = Vec::new();
    let mut plain_ip = Vec::new();
    let mut sync_mode = None;
    let mut rss: [Vec<f64>; 3] = Default::default();
    for run in 0..a.runs {
        let dir = base.join(format!("run{run}"));
        if a.small && on_caskfs {
            let (mut m, data) = mount(&a, &dir, "data", &mut said_transport);
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
        if a.small && on_plain {
            let plain = dir.join("plain");
            fs::create_dir_all(&plain).expect("plain directory");
            let t = Instant::now();
            plain_runs.push(workload(&a, &plain, &plain, run));
            eprintln!("run {run}: plain  {:.1}s", t.elapsed().as_secs_f64());
        }
        if a.in_place && on_caskfs {
            let t = Instant::now();
            let (mut m, data) = mount(&a, &dir, "data-in-place", &mut said_transport);
            let mut f = in_place(&a, &m.mnt, run, &mut sync_mode);
            m.unmount();
            let _ = fs::remove_dir_all(&data);
            // Disk use on a mount of its own: its data directory holds
            // that one file and nothing the other phases left.
            let (mut m, data) = mount(&a, &dir, "data-space", &mut said_transport);
            f.set(IP_SPACE, space_after_merge(&a, &m.mnt, &data, run));
            m.unmount();
            let _ = fs::remove_dir_all(&data);
            eprintln!(
                "run {run}: caskfs in place {:.1}s",
                t.elapsed().as_secs_f64()
            );
            cask_ip.push(f);
        }
        if a.in_place && on_plain {
            let plain = dir.join("plain-in-place");
            fs::create_dir_all(&plain).expect("plain directory");
            let t = Instant::now();
            plain_ip.push(in_place(&a, &plain, run, &mut sync_mode));
            eprintln!(
                "run {run}: plain  in place {:.1}s",
                t.elapsed().as_secs_f64()
            );
        }
        let _ = fs::remove_dir_all(&dir);
    }
    if a.small {
        small_table(&cask_runs, &plain_runs, rss);
    }
    if a.in_place {
        in_place_table(&a, &cask_ip, &plain_ip, sync_mode.as_deref());
    }
}

fn small_table(cask_runs: &[Figures], plain_runs: &[Figures], rss: [Vec<f64>; 3]) {
    println!();
    println!(
        "{:<18} {:>12} {:>12} {:>8} {:>9}",
        "phase (ops/s)", "caskfs", "plain", "ratio", "target"
    );
    for &(phase, target, higher) in TABLE {
        let c = med(cask_runs, phase);
        let p = med(plain_runs, phase);
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

fn in_place_table(a: &Args, cask: &[Figures], plain: &[Figures], sync_mode: Option<&str>) {
    let s = &a.sizes;
    let rows = [
        (
            IP_APPEND,
            format!("append 10 B to {} MB", s.append_mb),
            "ops/s",
            Goal::RatioAtLeast(0.3),
        ),
        (
            IP_SQLITE,
            "sqlite WAL commits".into(),
            "ops/s",
            Goal::RatioAtLeast(0.3),
        ),
        (
            IP_RANDOM,
            "4 KiB random fsync writes".into(),
            "ops/s",
            Goal::RatioAtLeast(0.3),
        ),
        (
            IP_MV,
            format!("mv {} file", size_name(s.big_mib)),
            "ms",
            Goal::Below(1.0),
        ),
        (
            IP_CHMOD,
            format!("chmod {} file", size_name(s.big_mib)),
            "ms",
            Goal::Below(1.0),
        ),
        (
            IP_FOLDER,
            format!("mv folder of {} files", count_name(s.folder_files)),
            "s",
            Goal::Below(0.5),
        ),
        (
            IP_SPACE,
            format!(
                "disk use after {} appends + merge",
                thousands(s.space_appends)
            ),
            "×size",
            Goal::AtMost(1.2),
        ),
    ];
    println!();
    println!(
        "{:<38} {:>6} {:>12} {:>12} {:>8} {:>9}",
        "files changed in place", "unit", "caskfs", "plain", "ratio", "target"
    );
    for (phase, label, unit, goal) in rows {
        let c = med(cask, phase);
        let p = med(plain, phase);
        let ratio = c / p;
        let (met, target) = match goal {
            Goal::RatioAtLeast(t) => (ratio >= t, format!("≥ {t:.2}")),
            Goal::Below(t) => (c < t, format!("< {t} {unit}")),
            Goal::AtMost(t) => (c <= t, format!("≤ {t:.2}")),
        };
        let judged = match goal {
            Goal::RatioAtLeast(_) => ratio,
            Goal::Below(_) | Goal::AtMost(_) => c,
        };
        let verdict = match (judged.is_nan(), met) {
            (true, _) => "",
            (false, true) => "ok",
            (false, false) => "MISSED",
        };
        let prec = match unit {
            "ops/s" if c.abs() < 100.0 || p.abs() < 100.0 => 1,
            "ops/s" => 0,
            // Times: three significant digits of the smaller one at least.
            _ => {
                let least = c.abs().min(p.abs());
                if least > 0.0 && least.is_finite() {
                    (2 - least.log10().floor() as i32).clamp(3, 9) as usize
                } else {
                    3
                }
            }
        };
        println!(
            "{label:<38} {unit:>6} {:>12} {:>12} {:>8} {target:>9}  {verdict}",
            cell(c, prec),
            cell(p, prec),
            cell(ratio, 3)
        );
    }
    let sqlite = match sync_mode {
        Some(m) => format!("journal_mode=WAL, synchronous={m} (left at its default)"),
        None => "did not run".into(),
    };
    println!(
        "(sqlite: {sqlite}; mv, chmod: the median of one rename or chmod; mv folder: the \
         median of one rename; disk use: caskfs only, the data directory's allocated bytes \
         over the file's size after `caskfs compact`)"
    );
}
