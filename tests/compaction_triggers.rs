//! Background merges are triggered by thresholds that scale with the store:
//! a small store that overwrites its keys is merged soon, not only once
//! 16 MiB are dead (issue 10, item 4).

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use caskfs::engine::{Options, Store};
use common::{BIN, Mount, tail};

const KEYS: usize = 250;
const ROUNDS: usize = 40;
const VALUE_LEN: usize = 1000;
const SEGMENT: u64 = 1 << 20;

fn value(key: usize, round: usize) -> Vec<u8> {
    let mut v = format!("key {key} round {round} ").into_bytes();
    v.resize(VALUE_LEN, b'a' + (round % 26) as u8);
    v
}

/// The bytes of the data directory's segment files.
fn segment_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .expect("data directory")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

#[test]
fn a_small_store_that_overwrites_its_keys_is_merged_soon() {
    require_fuse!();
    let mut m = Mount::start(&["--max-segment-size", "1M"]);
    let started = Instant::now();
    for round in 0..ROUNDS {
        for k in 0..KEYS {
            fs::write(m.mnt.join(format!("k{k:03}")), value(k, round)).expect("write");
        }
    }
    let written = started.elapsed();
    let live = (KEYS * VALUE_LEN) as u64;
    let limit = 2 * live + 2 * SEGMENT;
    let after_writes = segment_bytes(&m.data);
    let deadline = Instant::now() + Duration::from_secs(30);
    let settle = Instant::now();
    let mut used = after_writes;
    while used > limit && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        used = segment_bytes(&m.data);
    }
    let settled = settle.elapsed();
    eprintln!(
        "wrote {} bytes in {:.1} s; {after_writes} segment bytes after the writes, \
         {used} after {:.1} s (limit {limit})",
        KEYS * VALUE_LEN * ROUNDS,
        written.as_secs_f64(),
        settled.as_secs_f64()
    );
    assert!(
        used <= limit,
        "{used} bytes of segments for {live} live bytes after {:.1} s ({:.1}x); daemon log:\n{}",
        settled.as_secs_f64(),
        used as f64 / live as f64,
        tail(&m.log(), 4000)
    );
    m.unmount();

    // Offline, every key reads back its last value.
    let last = ROUNDS - 1;
    for k in 0..KEYS {
        let out = Command::new(BIN)
            .arg("get")
            .arg(&m.data)
            .arg(format!("k{k:03}"))
            .output()
            .expect("run caskfs get");
        assert!(
            out.status.success(),
            "caskfs get k{k:03}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout == value(k, last), "k{k:03}: wrong value");
    }
    // And through the mount again.
    m.mount();
    for k in 0..KEYS {
        let v = fs::read(m.mnt.join(format!("k{k:03}"))).expect("read");
        assert!(v == value(k, last), "k{k:03}: wrong value after remount");
    }
    m.unmount();
}

/// A store of `keys` values of `len` bytes written `rounds` times, with
/// background merges off unless `opts` turns them on.
fn filled(dir: &Path, opts: Options, keys: usize, len: usize, rounds: usize) -> Store {
    let store = Store::open(dir, opts).unwrap();
    for round in 0..rounds {
        for k in 0..keys {
            let mut v = value(k, round);
            v.resize(len, b'.');
            store.put(format!("k{k:03}").as_bytes(), &v).unwrap();
        }
    }
    store
}

#[test]
fn the_merge_rule_merges_a_small_fragmented_store_and_not_a_compact_one() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        max_segment_size: 64 << 10,
        compaction: false,
        ..Options::default()
    };
    // 25 KB live, 500 KB written: far less than the old 16 MiB floor.
    let store = filled(dir.path(), opts, 50, 500, 20);
    let before = store.merge_outlook();
    assert!(before.segments >= 5, "{before:?}");
    assert!(before.dead_bytes > 8 * 50 * 500, "{before:?}");
    assert!(before.worth_merging(store.options()), "{before:?}");
    let old_floor = Options {
        compact_min_dead_bytes: Some(16 << 20),
        ..store.options().clone()
    };
    assert!(!before.worth_merging(&old_floor), "{before:?}");

    store.compact().unwrap().unwrap();
    let after = store.merge_outlook();
    assert_eq!(after.dead_bytes, 0, "{after:?}");
    assert!(!after.worth_merging(store.options()), "{after:?}");
    // Not even when any dead byte or any extra segment would do.
    let eager = Options {
        compact_dead_ratio: 0.0,
        compact_min_dead_bytes: Some(0),
        compact_max_segments: 0,
        ..store.options().clone()
    };
    assert!(!after.worth_merging(&eager), "{after:?}");
    // A segment's worth of new garbage makes it due again.
    for k in 0..50 {
        for round in 0..3 {
            store
                .put(format!("k{k:03}").as_bytes(), &value(k, round))
                .unwrap();
        }
    }
    store.roll().unwrap();
    assert!(store.merge_outlook().worth_merging(store.options()));
}

#[test]
fn a_store_whose_live_data_fills_many_segments_is_not_merged_again_and_again() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        max_segment_size: 4096,
        compaction: false,
        compact_max_segments: 2,
        ..Options::default()
    };
    // Values of a little over half a segment: one per merged segment, so
    // the live data fills twice the segments its size alone suggests.
    let store = filled(dir.path(), opts, 30, 2100, 2);
    store.roll().unwrap();
    let before = store.merge_outlook();
    assert!(before.worth_merging(store.options()), "{before:?}");
    let report = store.compact().unwrap().unwrap();
    assert_eq!(report.outputs.len(), 30);
    let after = store.merge_outlook();
    // The outlook packs as the merge does: it would write the same 30.
    assert_eq!(after.segments, 30, "{after:?}");
    assert_eq!(after.outputs, Some(30), "{after:?}");
    assert!(!after.worth_merging(store.options()), "{after:?}");
    // New segments each as full as the merged ones: no gain, not due.
    for k in 0..3 {
        store
            .put(format!("big{k}").as_bytes(), &[b'n'; 2100])
            .unwrap();
    }
    store.roll().unwrap();
    let big = store.merge_outlook();
    assert_eq!((big.segments, big.outputs), (33, Some(33)), "{big:?}");
    assert!(!big.worth_merging(store.options()), "{big:?}");
    // Three more holding one small value each fit beside a big one: a
    // merge would leave 3 fewer segments, more than 2, so it is due.
    for k in 0..3 {
        store.put(format!("small{k}").as_bytes(), b"s").unwrap();
        store.roll().unwrap();
    }
    let small = store.merge_outlook();
    assert_eq!((small.segments, small.outputs), (36, Some(33)), "{small:?}");
    assert!(small.worth_merging(store.options()), "{small:?}");
    assert_eq!(store.compact().unwrap().unwrap().outputs.len(), 33);
}

#[test]
fn the_merge_thread_follows_rolls_and_then_rests() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        max_segment_size: 64 << 10,
        compaction: true,
        // Rolls must wake it, not this timer.
        compact_interval: Duration::from_secs(600),
        ..Options::default()
    };
    let store = filled(dir.path(), opts, 50, 500, 40);
    let deadline = Instant::now() + Duration::from_secs(20);
    let small_enough = || segment_bytes(dir.path()) <= 2 * 50 * 500 + 2 * (64 << 10);
    // (The report is set a moment after the merge is installed, and a
    // merge's inputs are deleted a moment after that: on a busy machine a
    // later merge may still be deleting them.)
    while (store.last_merge().is_none()
        || store.merge_outlook().worth_merging(store.options())
        || !small_enough())
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(store.last_merge().is_some(), "no merge after the rolls");
    let outlook = store.merge_outlook();
    assert!(!outlook.worth_merging(store.options()), "{outlook:?}");
    assert!(
        small_enough(),
        "{} bytes of segments",
        segment_bytes(dir.path())
    );

    // With eager thresholds and a fast timer, a compact store is judged
    // every few milliseconds and left alone.
    let eager = Options {
        max_segment_size: 64 << 10,
        compaction: true,
        compact_dead_ratio: 0.0,
        compact_min_dead_bytes: Some(0),
        compact_max_segments: 0,
        compact_interval: Duration::from_millis(5),
        ..Options::default()
    };
    // (Another directory: a test running beside this one may fork while
    // the first store's lock is open, and hold a copy of it for a moment.)
    let dir = tempfile::tempdir().unwrap();
    let store = filled(dir.path(), eager, 50, 500, 40);
    let deadline = Instant::now() + Duration::from_secs(20);
    while (store.last_merge().is_none() || store.merge_outlook().dead_bytes > 0)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    let settled = store.last_merge();
    assert!(settled.is_some(), "no merge");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(store.last_merge(), settled, "merged a compact store again");
    for k in 0..50 {
        let mut v = value(k, 39);
        v.resize(500, b'.');
        assert_eq!(store.get(format!("k{k:03}").as_bytes()).unwrap(), Some(v));
    }
}
