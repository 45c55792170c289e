//! Compaction benchmark: how fast a merge runs, next to how fast this disk
//! takes a plain sequential write, and how much a running merge slows puts
//! and gets. Run with `scripts/bench.sh compaction`.
//!
//! Flags: --keys N (default 1,000,000), --runs N (default 3), --dir PATH
//! (default: a fresh directory under target/).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use caskfs::engine::{Options, Store};

mod common;
use common::median;
const VALUE_LEN: usize = 100;

struct Args {
    keys: u64,
    runs: usize,
    dir: PathBuf,
}

fn args() -> Args {
    let mut a = Args {
        keys: 1_000_000,
        runs: 3,
        dir: PathBuf::from("target/bench-compaction"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--keys" => a.keys = value().parse().expect("--keys N"),
            "--runs" => a.runs = value().parse().expect("--runs N"),
            "--dir" => a.dir = PathBuf::from(value()),
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k.copy_from_slice(format!("{:016x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).as_bytes());
    k
}

fn value(i: u64, version: u8) -> [u8; VALUE_LEN] {
    let mut v = [version; VALUE_LEN];
    v[..8].copy_from_slice(&i.to_le_bytes());
    v
}

/// Sequential write rate of the disk under `dir`: 256 MiB in 1 MiB writes,
/// then fdatasync, as MB/s.
fn disk_write_rate(dir: &Path) -> f64 {
    let path = dir.join("seq-write-probe");
    let chunk = vec![0x5au8; 1 << 20];
    let started = Instant::now();
    let mut f = File::create(&path).expect("create probe file");
    for _ in 0..256 {
        f.write_all(&chunk).expect("write probe file");
    }
    f.sync_data().expect("sync probe file");
    let secs = started.elapsed().as_secs_f64();
    drop(f);
    let _ = std::fs::remove_file(&path);
    256.0 * 1.048_576 / secs
}

/// Runs `op` over and over for `for_at_least` (or until `stop`), returning ops/s.
fn rate(for_at_least: Duration, stop: Option<&AtomicBool>, mut op: impl FnMut(u64)) -> f64 {
    let started = Instant::now();
    let mut n = 0u64;
    loop {
        for _ in 0..1000 {
            op(n);
            n += 1;
        }
        let done = match stop {
            Some(s) => s.load(Ordering::Relaxed),
            None => started.elapsed() >= for_at_least,
        };
        if done {
            break;
        }
    }
    n as f64 / started.elapsed().as_secs_f64()
}

struct Run {
    disk_mb_s: f64,
    merge_in_mb_s: f64,
    merge_out_mb_s: f64,
    merge_secs: f64,
    puts_alone: f64,
    puts_merging: f64,
    gets_alone: f64,
    gets_merging: f64,
}

fn open(dir: &Path) -> Store {
    let opts = Options {
        compaction: false,
        ..Options::default()
    };
    Store::open(dir, opts).expect("open store")
}

/// Loads `keys` keys and overwrites every other one, so the closed
/// segments hold about a third dead records.
fn load(store: &Store, keys: u64) {
    for i in 0..keys {
        store.put(&key(i), &value(i, 1)).expect("put");
    }
    for i in (0..keys).step_by(2) {
        store.put(&key(i), &value(i, 2)).expect("put");
    }
    store.roll().expect("roll");
}

fn one_run(a: &Args) -> Run {
    let _ = std::fs::remove_dir_all(&a.dir);
    std::fs::create_dir_all(&a.dir).expect("create bench dir");
    let disk_mb_s = disk_write_rate(&a.dir);
    let measure = Duration::from_secs(2);
    let keys = a.keys;

    // Serving rates with no merge, on a loaded store.
    let base = a.dir.join("base");
    let store = open(&base);
    load(&store, keys);
    let mut x = 1u64;
    let mut next = move || {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (x >> 33) % keys
    };
    let gets_alone = rate(measure, None, |_| {
        store.get(&key(next())).expect("get");
    });
    let puts_alone = rate(measure, None, |n| {
        store.put(&key(keys + n), &value(n, 3)).expect("put")
    });
    drop(store);
    let _ = std::fs::remove_dir_all(&base);

    // The same, while a merge of the loaded store runs beside it.
    let merging_dir = a.dir.join("merging");
    let store = Arc::new(open(&merging_dir));
    load(&store, keys);
    let bytes_before: u64 = store
        .stats()
        .expect("stats")
        .segments
        .iter()
        .filter(|s| !s.active)
        .map(|s| s.file_bytes)
        .sum();
    let running = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let merger = {
        let (store, running, finished) = (store.clone(), running.clone(), finished.clone());
        std::thread::spawn(move || {
            running.store(true, Ordering::Relaxed);
            let report = store.compact().expect("merge").expect("something to merge");
            finished.store(true, Ordering::Relaxed);
            report
        })
    };
    while !running.load(Ordering::Relaxed) {
        std::hint::spin_loop();
    }
    let gets_merging = rate(measure, Some(&finished), |_| {
        store.get(&key(next())).expect("get");
    });
    let report = merger.join().expect("merge thread");
    // Puts during a second merge (the first left little to do, so reload).
    load(&store, keys / 2);
    let finished = Arc::new(AtomicBool::new(false));
    let merger = {
        let (store, finished) = (store.clone(), finished.clone());
        std::thread::spawn(move || {
            let _ = store.compact();
            finished.store(true, Ordering::Relaxed);
        })
    };
    let puts_merging = rate(measure, Some(&finished), |n| {
        store.put(&key(2 * keys + n), &value(n, 4)).expect("put")
    });
    merger.join().expect("merge thread");
    drop(store);
    let _ = std::fs::remove_dir_all(&merging_dir);

    let secs = report.duration.as_secs_f64();
    Run {
        disk_mb_s,
        merge_in_mb_s: bytes_before as f64 / 1e6 / secs,
        merge_out_mb_s: report.bytes_after as f64 / 1e6 / secs,
        merge_secs: secs,
        puts_alone,
        puts_merging,
        gets_alone,
        gets_merging,
    }
}

fn main() {
    let a = args();
    let runs: Vec<Run> = (0..a.runs)
        .map(|i| {
            eprintln!("run {} of {} ({} keys)…", i + 1, a.runs, a.keys);
            one_run(&a)
        })
        .collect();
    let _ = std::fs::remove_dir_all(&a.dir);
    let m = |f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
    let disk = m(|r| r.disk_mb_s);
    let merge_out = m(|r| r.merge_out_mb_s);
    println!(
        "compaction benchmark: {} keys of 16 bytes, 100-byte values, half overwritten; median of {} runs",
        a.keys, a.runs
    );
    println!("{:<34} {:>14} {:>14}", "figure", "value", "target");
    println!(
        "{:<34} {:>14.0} {:>14}",
        "disk sequential write (MB/s)", disk, ""
    );
    println!(
        "{:<34} {:>14.0} {:>14}",
        "merge, input read (MB/s)",
        m(|r| r.merge_in_mb_s),
        ""
    );
    println!(
        "{:<34} {:>14.0} {:>14}",
        "merge, output written (MB/s)", merge_out, ""
    );
    println!(
        "{:<34} {:>14.2} {:>14}",
        "merge output / disk write",
        merge_out / disk,
        ">= 0.50"
    );
    println!(
        "{:<34} {:>14.2} {:>14}",
        "merge duration (s)",
        m(|r| r.merge_secs),
        ""
    );
    let pa = m(|r| r.puts_alone);
    let pm = m(|r| r.puts_merging);
    let ga = m(|r| r.gets_alone);
    let gm = m(|r| r.gets_merging);
    println!("{:<34} {:>14.0} {:>14}", "puts/s, no merge", pa, "");
    println!("{:<34} {:>14.0} {:>14}", "puts/s, during a merge", pm, "");
    println!(
        "{:<34} {:>14.2} {:>14}",
        "puts during / alone",
        pm / pa,
        ">= 0.70"
    );
    println!("{:<34} {:>14.0} {:>14}", "gets/s, no merge", ga, "");
    println!("{:<34} {:>14.0} {:>14}", "gets/s, during a merge", gm, "");
    println!(
        "{:<34} {:>14.2} {:>14}",
        "gets during / alone",
        gm / ga,
        ">= 0.70"
    );
}
