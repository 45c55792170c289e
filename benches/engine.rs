//! Engine benchmark (a plain program, `harness = false`): load N keys with
//! `put` (spread over `FOLDERS` folders: `123/0123456789ab`), N random
//! `get`s on one thread and N on each of two threads at once, then reopen with hints and without them (scan),
//! and print a table of medians over several runs beside the targets of
//! issues 2, 11 and 12.
//!
//!     cargo bench --bench engine -- [--keys N] [--gets N] [--value-size B]
//!                                   [--runs R] [--dir PATH]
//!
//! Reopens run in a fresh child process (this program with `--child-reopen`),
//! so that their time and memory are measured from a clean start: the RSS
//! per key is the child's RssAnon after `Store::open` minus its RssAnon
//! before, over the keys, minus the 16 key bytes. VmRSS would also count
//! the mapped segment files (file pages); RssAnon does not.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use caskfs::engine::{Options, Store};

mod common;
use common::{Flags, median, mix, status_bytes};
const KEY_LEN: usize = 16;
/// Keys are spread over this many folders.
const FOLDERS: u64 = 1000;

struct Args {
    keys: u64,
    gets: u64,
    value_size: usize,
    runs: usize,
    dir: PathBuf,
    child_reopen: Option<PathBuf>,
}

fn parse_args() -> Args {
    let mut a = Args {
        keys: 1_000_000,
        gets: 0,
        value_size: 100,
        runs: 3,
        dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-engine"),
        child_reopen: None,
    };
    let mut f =
        Flags::new("engine [--keys N] [--gets N] [--value-size BYTES] [--runs R] [--dir PATH]");
    while let Some(flag) = f.next_flag() {
        match flag.as_str() {
            "--keys" => a.keys = f.num(),
            "--gets" => a.gets = f.num(),
            "--value-size" => a.value_size = f.num() as usize,
            "--runs" => a.runs = f.num().max(1) as usize,
            "--dir" => a.dir = PathBuf::from(f.value()),
            "--child-reopen" => a.child_reopen = Some(PathBuf::from(f.value())),
            _ => f.unknown(&flag),
        }
    }
    if a.gets == 0 {
        a.gets = a.keys;
    }
    a
}

fn key(i: u64) -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    let h = mix(i);
    let name = format!("{:03}/{:012x}", h % FOLDERS, h >> 16);
    k.copy_from_slice(name.as_bytes());
    k
}

fn opts() -> Options {
    Options {
        compaction: false,
        ..Options::default()
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Child mode: open the store and read a few keys; print "secs
/// anon_delta hwm rss_file".
fn child_reopen(dir: &Path, keys: u64) {
    let anon_before = status_bytes("RssAnon");
    let t = Instant::now();
    let store = Store::open(dir, opts()).expect("reopen");
    let secs = t.elapsed().as_secs_f64();
    let anon_after = status_bytes("RssAnon");
    let hwm = status_bytes("VmHWM");
    let file = status_bytes("RssFile");
    for i in [0, keys / 2, keys - 1] {
        let v = store.get(&key(i)).expect("get").expect("key present");
        assert!(!v.is_empty() || keys == 0);
    }
    println!(
        "{secs} {} {hwm} {file}",
        anon_after.saturating_sub(anon_before)
    );
    drop(store);
}

struct Reopen {
    secs: f64,
    anon_delta: u64,
    hwm: u64,
}

fn reopen_in_child(dir: &Path, keys: u64) -> Reopen {
    let exe = std::env::current_exe().expect("current exe");
    let out = Command::new(exe)
        .arg("--child-reopen")
        .arg(dir)
        .arg("--keys")
        .arg(keys.to_string())
        .output()
        .expect("running the reopen child");
    assert!(
        out.status.success(),
        "reopen child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let f: Vec<f64> = text
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    assert_eq!(f.len(), 4, "bad child output: {text}");
    Reopen {
        secs: f[0],
        anon_delta: f[1] as u64,
        hwm: f[2] as u64,
    }
}

struct Run {
    puts_per_sec: f64,
    gets_per_sec: f64,
    /// Gets of both threads together, over the time both took.
    gets_per_sec_2: f64,
    reopen_hint: Reopen,
    reopen_scan: Reopen,
    disk_bytes: u64,
    load_hwm: u64,
}

fn one_run(a: &Args, dir: &Path) -> Run {
    let _ = fs::remove_dir_all(dir);
    let store = Store::open(dir, opts()).expect("open");
    let mut value = vec![0u8; a.value_size];
    for (i, b) in value.iter_mut().enumerate() {
        *b = mix(i as u64) as u8;
    }

    // Keys and read order are made before the clock starts.
    let keys: Vec<[u8; KEY_LEN]> = (0..a.keys).map(key).collect();
    let order: Vec<u32> = (0..a.gets)
        .map(|j| (mix(j ^ 0xDEAD_BEEF) % a.keys) as u32)
        .collect();

    let t = Instant::now();
    for (i, k) in keys.iter().enumerate() {
        let n = a.value_size.min(8);
        value[..n].copy_from_slice(&(i as u64).to_le_bytes()[..n]);
        store.put(k, &value).expect("put");
    }
    let puts_per_sec = a.keys as f64 / t.elapsed().as_secs_f64();

    let mut found = 0u64;
    let t = Instant::now();
    for &i in &order {
        if let Some(v) = store.get(&keys[i as usize]).expect("get") {
            found += (v.len() == a.value_size) as u64;
        }
    }
    let gets_per_sec = a.gets as f64 / t.elapsed().as_secs_f64();
    assert_eq!(found, a.gets, "a get missed");

    // The same gets on two threads, each in its own order.
    let orders: Vec<Vec<u32>> = (0..2u64)
        .map(|t| {
            (0..a.gets)
                .map(|j| (mix(j ^ ((t + 1) << 40)) % a.keys) as u32)
                .collect()
        })
        .collect();
    let t = Instant::now();
    let found: u64 = std::thread::scope(|s| {
        let threads: Vec<_> = orders
            .iter()
            .map(|order| {
                let (store, keys) = (&store, &keys);
                s.spawn(move || {
                    let mut found = 0u64;
                    for &i in order {
                        if let Some(v) = store.get(&keys[i as usize]).expect("get") {
                            found += (v.len() == a.value_size) as u64;
                        }
                    }
                    found
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("a get thread"))
            .sum()
    });
    let gets_per_sec_2 = 2.0 * a.gets as f64 / t.elapsed().as_secs_f64();
    assert_eq!(found, 2 * a.gets, "a get missed");
    let load_hwm = status_bytes("VmHWM");
    store.close().expect("close");

    let reopen_hint = reopen_in_child(dir, a.keys);
    let disk_bytes = dir_bytes(dir);
    for e in fs::read_dir(dir).expect("list").filter_map(|e| e.ok()) {
        if e.path().extension().is_some_and(|x| x == "hint") {
            fs::remove_file(e.path()).expect("removing a hint");
        }
    }
    let reopen_scan = reopen_in_child(dir, a.keys);
    let _ = fs::remove_dir_all(dir);
    Run {
        puts_per_sec,
        gets_per_sec,
        gets_per_sec_2,
        reopen_hint,
        reopen_scan,
        disk_bytes,
        load_hwm,
    }
}

fn mib(b: f64) -> String {
    format!("{:.1} MiB", b / (1 << 20) as f64)
}

fn main() {
    let a = parse_args();
    if let Some(dir) = &a.child_reopen {
        child_reopen(dir, a.keys);
        return;
    }
    fs::create_dir_all(&a.dir).expect("creating the bench directory");
    println!(
        "caskfs engine bench: {} keys ({KEY_LEN}-byte keys, {}-byte values), {} random gets, \
         {} runs, release build, in {}",
        a.keys,
        a.value_size,
        a.gets,
        a.runs,
        a.dir.display()
    );
    let mut runs = Vec::new();
    for r in 0..a.runs {
        let run = one_run(&a, &a.dir.join(format!("run{r}")));
        println!(
            "  run {}: {:.0} puts/s, {:.0} gets/s, {:.0} gets/s on 2 threads, reopen {:.3} s with \
             hints, {:.3} s by scan",
            r + 1,
            run.puts_per_sec,
            run.gets_per_sec,
            run.gets_per_sec_2,
            run.reopen_hint.secs,
            run.reopen_scan.secs
        );
        runs.push(run);
    }
    let _ = fs::remove_dir(&a.dir);
    let m = |f: &dyn Fn(&Run) -> f64| median(runs.iter().map(f).collect());
    let keys = a.keys.max(1) as f64;
    let per_key = |d: f64| d / keys - KEY_LEN as f64;
    let rows: Vec<(&str, String, &str)> = vec![
        (
            "puts/s",
            format!("{:.0}", m(&|r| r.puts_per_sec)),
            ">= 1,000,000",
        ),
        (
            "gets/s (1 thread)",
            format!("{:.0}", m(&|r| r.gets_per_sec)),
            ">= 1,500,000",
        ),
        (
            "gets/s (2 threads)",
            format!("{:.0}", m(&|r| r.gets_per_sec_2)),
            ">= 2,500,000",
        ),
        (
            "reopen with hints (s)",
            format!("{:.3}", m(&|r| r.reopen_hint.secs)),
            "<= 0.5",
        ),
        (
            "reopen by scan, hints deleted (s)",
            format!("{:.3}", m(&|r| r.reopen_scan.secs)),
            "-",
        ),
        (
            "bytes on disk",
            format!(
                "{:.0} ({})",
                m(&|r| r.disk_bytes as f64),
                mib(m(&|r| r.disk_bytes as f64))
            ),
            "-",
        ),
        (
            "peak RSS, load + gets (VmHWM)",
            mib(m(&|r| r.load_hwm as f64)),
            "-",
        ),
        (
            "peak RSS, reopen with hints (VmHWM)",
            mib(m(&|r| r.reopen_hint.hwm as f64)),
            "-",
        ),
        (
            "peak RSS, reopen by scan (VmHWM)",
            mib(m(&|r| r.reopen_scan.hwm as f64)),
            "-",
        ),
        (
            "index RSS after reopen w/ hints (RssAnon delta)",
            mib(m(&|r| r.reopen_hint.anon_delta as f64)),
            "-",
        ),
        (
            "  per key beyond the 16 key bytes",
            format!("{:.1} B", per_key(m(&|r| r.reopen_hint.anon_delta as f64))),
            "<= 64 B",
        ),
        (
            "index RSS after reopen by scan (RssAnon delta)",
            mib(m(&|r| r.reopen_scan.anon_delta as f64)),
            "-",
        ),
        (
            "  per key beyond the 16 key bytes",
            format!("{:.1} B", per_key(m(&|r| r.reopen_scan.anon_delta as f64))),
            "<= 64 B",
        ),
    ];
    println!();
    println!(
        "{:<50} {:>26}   target",
        format!("median of {} runs", a.runs),
        "measured"
    );
    println!("{}", "-".repeat(90));
    for (name, value, target) in rows {
        println!("{name:<50} {value:>26}   {target}");
    }
    println!(
        "\nRssAnon is the index (anonymous memory); VmRSS/VmHWM also count mapped segment \
         file pages (RssFile). Reopens run in a fresh child process with a warm page cache."
    );
}
