//! Compaction: merges keep exactly the live data, never resurrect a
//! deleted key, survive a crash at every step, and run beside readers and a
//! writer.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use caskfs::engine::{BatchOp, CrashPoint, Options, Store};

fn opts() -> Options {
    Options {
        max_segment_size: 4096,
        compaction: false,
        ..Options::default()
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn closed_ids(dir: &Path) -> Vec<u64> {
    let mut ids: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".seg")?.parse().ok()
        })
        .collect();
    ids.sort_unstable();
    ids
}

fn assert_matches(store: &Store, model: &BTreeMap<Vec<u8>, Vec<u8>>, context: &str) {
    let keys: Vec<Vec<u8>> = model.keys().cloned().collect();
    assert_eq!(store.keys(), keys, "{context}: key set");
    for (k, v) in model {
        assert_eq!(
            store.get(k).unwrap().as_ref(),
            Some(v),
            "{context}: value of {k:?}"
        );
    }
}

/// Every file in the directory is one the MANIFEST names, or LOCK/MANIFEST.
fn assert_no_strays(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        assert!(!name.ends_with(".tmp"), "stray temporary file {name}");
    }
    let segs = closed_ids(dir);
    let hints: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .into_string()
                .ok()?
                .strip_suffix(".hint")?
                .parse()
                .ok()
        })
        .collect();
    for h in hints {
        assert!(segs.contains(&h), "hint {h} without its segment");
    }
}

#[test]
fn a_tombstone_outside_the_merge_keeps_its_key_deleted() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), opts()).unwrap();
        store.put(b"k", b"old value").unwrap();
        store.roll().unwrap(); // segment 1: k
        store.put(b"x", b"1").unwrap();
        store.roll().unwrap(); // segment 2: x
        store.delete(b"k").unwrap();
        store.roll().unwrap(); // segment 3: tombstone for k
        let report = store.compact_segments(&[2, 3]).unwrap();
        assert_eq!(report.inputs, vec![2, 3]);
        assert_eq!(store.get(b"k").unwrap(), None);
        store.close().unwrap();
    }
    let store = Store::open(dir.path(), opts()).unwrap();
    assert_eq!(store.get(b"k").unwrap(), None, "k came back to life");
    assert_eq!(store.get(b"x").unwrap().as_deref(), Some(&b"1"[..]));
    assert!(!store.keys().contains(&b"k".to_vec()));
    // Merging everything may now drop the tombstone and the old value together.
    store.compact().unwrap();
    assert_eq!(store.get(b"k").unwrap(), None);
    drop(store);
    let store = Store::open(dir.path(), opts()).unwrap();
    assert_eq!(store.get(b"k").unwrap(), None);
}

#[test]
fn a_merge_keeps_newest_values_and_drops_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let mut model = BTreeMap::new();
    for round in 0..20u32 {
        for k in 0..30u32 {
            let key = format!("key{k}").into_bytes();
            let value = format!("{round}-{k}-{}", "v".repeat((k * 7 % 50) as usize)).into_bytes();
            store.put(&key, &value).unwrap();
            model.insert(key, value);
        }
        store.delete(format!("key{round}").as_bytes()).unwrap();
        model.remove(format!("key{round}").as_bytes());
    }
    // A value larger than a segment and a batch (a value moved to another
    // key) among the inputs.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    store.put(b"big", &big).unwrap();
    model.insert(b"big".to_vec(), big);
    let v = model.remove(&b"key25"[..]).unwrap();
    store
        .write_batch(&[BatchOp::Delete(b"key25"), BatchOp::Put(b"moved", &v)])
        .unwrap();
    model.insert(b"moved".to_vec(), v);
    store.roll().unwrap();
    let before = store.stats().unwrap();
    let report = store.compact().unwrap().unwrap();
    assert!(report.bytes_after < report.bytes_before);
    assert!(report.records_dropped > 0);
    assert_matches(&store, &model, "after merge");
    let after = store.stats().unwrap();
    assert_eq!(after.live_keys, before.live_keys);
    for s in after.segments.iter().filter(|s| !s.active) {
        assert_eq!(
            s.dead_bytes, 0,
            "a merged segment holds only live records: {s:?}"
        );
    }
    drop(store);
    let store = Store::open(dir.path(), opts()).unwrap();
    assert_matches(&store, &model, "after reopen");
    assert!(
        caskfs::engine::check(dir.path()).is_err(),
        "check needs the lock"
    );
    drop(store);
    let report = caskfs::engine::check(dir.path()).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_no_strays(dir.path());
}

fn build(dir: &Path, o: Options) -> (Store, BTreeMap<Vec<u8>, Vec<u8>>) {
    let store = Store::open(dir, o).unwrap();
    let mut model = BTreeMap::new();
    let mut rng = Rng(7);
    for i in 0..600u32 {
        let key = format!("k{}", rng.below(40)).into_bytes();
        if i % 9 == 0 {
            if store.delete(&key).is_ok() {
                model.remove(&key);
            }
        } else {
            let value = format!("value {i} {}", "x".repeat(rng.below(120) as usize)).into_bytes();
            store.put(&key, &value).unwrap();
            model.insert(key, value);
        }
    }
    store.roll().unwrap();
    (store, model)
}

#[test]
fn a_crash_at_any_step_of_a_merge_leaves_old_or_new_never_a_mix() {
    for point in [
        CrashPoint::OutputHalfWritten,
        CrashPoint::BeforeInstall,
        CrashPoint::BeforeDelete,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (store, model) = build(
            dir.path(),
            Options {
                crash_point: Some(point),
                ..opts()
            },
        );
        assert!(
            store.compact().is_err(),
            "{point:?}: the crash point was not reached"
        );
        drop(store); // the process "dies" here, with the merge half done
        let store = Store::open(dir.path(), opts()).unwrap();
        assert_matches(&store, &model, &format!("reopen after {point:?}"));
        drop(store);
        assert_no_strays(dir.path());
        let report = caskfs::engine::check(dir.path()).unwrap();
        assert!(report.is_clean(), "{point:?}: {report}");
        // And the store merges fine afterwards.
        let store = Store::open(dir.path(), opts()).unwrap();
        store.compact().unwrap();
        assert_matches(&store, &model, &format!("merge after {point:?}"));
    }
}

#[test]
fn random_operations_with_merges_and_reopens_match_a_model() {
    for seed in [1u64, 2, 3] {
        let dir = tempfile::tempdir().unwrap();
        let background = seed == 3;
        let o = Options {
            compaction: background,
            compact_max_segments: 4,
            compact_min_dead_bytes: Some(0),
            compact_interval: Duration::from_millis(5),
            ..opts()
        };
        let mut store = Store::open(dir.path(), o.clone()).unwrap();
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut rng = Rng(seed);
        let mut merges = 0;
        for step in 0..3000 {
            let key = format!("key{}", rng.below(25)).into_bytes();
            let ctx = format!("seed {seed} step {step}");
            match rng.below(100) {
                0..=49 => {
                    let value = vec![(step % 256) as u8; rng.below(400) as usize];
                    store.put(&key, &value).unwrap();
                    model.insert(key, value);
                }
                50..=64 => {
                    let r = store.delete(&key);
                    assert_eq!(r.is_ok(), model.remove(&key).is_some(), "{ctx}: delete");
                }
                65..=74 => {
                    // A batch moving the value (or an empty one) to another key.
                    let to = format!("key{}", rng.below(25)).into_bytes();
                    let v = model.remove(&key).unwrap_or_default();
                    store
                        .write_batch(&[BatchOp::Delete(&key), BatchOp::Put(&to, &v)])
                        .unwrap();
                    model.insert(to, v);
                }
                75..=84 => assert_eq!(
                    store.get(&key).unwrap(),
                    model.get(&key).cloned(),
                    "{ctx}: get"
                ),
                85..=92 => {
                    store.compact().unwrap();
                    merges += 1;
                    if merges % 3 == 0 {
                        drop(store);
                        store = Store::open(dir.path(), o.clone()).unwrap();
                    }
                }
                93..=96 => store.request_compaction(),
                _ => store.roll().unwrap(),
            }
            if step % 100 == 0 {
                assert_matches(&store, &model, &ctx);
            }
        }
        assert_matches(&store, &model, &format!("seed {seed} end"));
        drop(store);
        let store = Store::open(dir.path(), o).unwrap();
        assert_matches(&store, &model, &format!("seed {seed} final reopen"));
    }
}

/// Values name their key and carry their own checksum, so a reader can tell
/// a torn or misplaced value from a real one.
fn make_value(key: u32, version: u32) -> Vec<u8> {
    let mut v = format!("{key}:{version}:").into_bytes();
    v.resize(64 + (version % 300) as usize, b'a' + (version % 26) as u8);
    let crc = crc32fast::hash(&v);
    v.extend_from_slice(&crc.to_le_bytes());
    v
}

fn value_ok(key: u32, v: &[u8]) -> bool {
    let (body, crc) = v.split_at(v.len() - 4);
    crc32fast::hash(body).to_le_bytes() == crc && body.starts_with(format!("{key}:").as_bytes())
}

#[test]
fn readers_and_a_writer_carry_on_while_merges_run() {
    let dir = tempfile::tempdir().unwrap();
    let o = Options {
        compaction: true,
        compact_max_segments: 3,
        compact_min_dead_bytes: Some(0),
        compact_interval: Duration::from_millis(1),
        ..opts()
    };
    let store = Arc::new(Store::open(dir.path(), o).unwrap());
    for k in 0..200 {
        store
            .put(k.to_string().as_bytes(), &make_value(k, 0))
            .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for t in 0..3u64 {
        let (store, stop) = (store.clone(), stop.clone());
        readers.push(std::thread::spawn(move || {
            let mut rng = Rng(t);
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let k = rng.below(200) as u32;
                let v = store
                    .get(k.to_string().as_bytes())
                    .unwrap()
                    .expect("key vanished");
                assert!(value_ok(k, &v), "torn or misplaced value for {k}");
                reads += 1;
            }
            reads
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut version = 1;
    while Instant::now() < deadline {
        for k in 0..200 {
            store
                .put(k.to_string().as_bytes(), &make_value(k, version))
                .unwrap();
        }
        version += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let reads: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(reads > 1000);
    assert!(store.last_merge().is_some(), "no background merge ran");
    for k in 0..200 {
        let v = store.get(k.to_string().as_bytes()).unwrap().unwrap();
        assert_eq!(v, make_value(k, version - 1));
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum()
}

#[test]
fn overwriting_the_same_keys_keeps_disk_use_near_the_live_data() {
    let dir = tempfile::tempdir().unwrap();
    let o = Options {
        max_segment_size: 64 * 1024,
        compaction: true,
        compact_min_dead_bytes: Some(64 * 1024),
        compact_interval: Duration::from_millis(10),
        ..Options::default()
    };
    let store = Store::open(dir.path(), o).unwrap();
    for round in 0..200u32 {
        for k in 0..1000u32 {
            store
                .put(format!("key{k:04}").as_bytes(), &make_value(k, round))
                .unwrap();
        }
    }
    let live: u64 = {
        let s = store.stats().unwrap();
        s.segments.iter().map(|s| s.live_bytes).sum()
    };
    // Let the merge thread settle: it runs after rolls and on its timer.
    let deadline = Instant::now() + Duration::from_secs(20);
    while dir_bytes(dir.path()) > 2 * live && Instant::now() < deadline {
        store.request_compaction();
        std::thread::sleep(Duration::from_millis(50));
    }
    let used = dir_bytes(dir.path());
    assert!(
        used <= 2 * live,
        "{used} bytes on disk for {live} live bytes"
    );
    for k in 0..1000u32 {
        assert_eq!(
            store.get(format!("key{k:04}").as_bytes()).unwrap().unwrap(),
            make_value(k, 199)
        );
    }
}
