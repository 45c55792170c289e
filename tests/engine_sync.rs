//! Sync policies (`always` with group commit, `interval=MS`) under
//! concurrent writers, and readers running beside a writer that overwrites
//! and rolls: every read returns a value that was written, never an error.

mod engine_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use caskfs::engine::{Options, Store, SyncPolicy};
use engine_common::{Rng, small_opts, tempdir, with_timeout};

/// A value that says which key and which write it belongs to, and carries
/// its own checksum: `key:counter:` + payload + crc32 (LE) of all before.
fn make_value(key: &[u8], counter: u64, len: usize) -> Vec<u8> {
    let mut v = key.to_vec();
    v.extend_from_slice(format!(":{counter}:").as_bytes());
    v.extend(Rng::new(counter ^ key.len() as u64).bytes(len));
    let crc = crc32fast::hash(&v);
    v.extend_from_slice(&crc.to_le_bytes());
    v
}

/// The write counter of a well-formed value of `key`, or why it is not one.
fn check_value(key: &[u8], v: &[u8]) -> Result<u64, String> {
    if v.len() < 4 {
        return Err(format!("{} bytes: too short", v.len()));
    }
    let (body, crc) = v.split_at(v.len() - 4);
    if crc32fast::hash(body).to_le_bytes() != crc {
        return Err(format!(
            "{} bytes: checksum mismatch (torn or mixed)",
            v.len()
        ));
    }
    let rest = body
        .strip_prefix(key)
        .and_then(|r| r.strip_prefix(b":"))
        .ok_or("a value of another key")?;
    let end = rest.iter().position(|&b| b == b':').ok_or("no counter")?;
    std::str::from_utf8(&rest[..end])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| "bad counter".to_string())
}

/// `threads` writers, each putting `per_thread` values to its own 5 keys;
/// then the store is reopened and holds each key's last value.
fn concurrent_writers(opts: Options, threads: usize, per_thread: u64) {
    let dir = tempdir();
    let path = dir.path().to_path_buf();
    let store = Arc::new(Store::open(&path, opts.clone()).expect("open"));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = store.clone();
            thread::spawn(move || {
                for c in 0..per_thread {
                    let key = format!("t{t}-k{}", c % 5).into_bytes();
                    store
                        .put(&key, &make_value(&key, c, (c as usize * 37) % 300))
                        .expect("put");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("writer thread");
    }
    Arc::into_inner(store)
        .expect("writers are done")
        .close()
        .expect("close");
    let store = Store::open(&path, opts).expect("reopen");
    for t in 0..threads {
        for k in 0..5u64 {
            let key = format!("t{t}-k{k}").into_bytes();
            let v = store.get(&key).expect("get").expect("present");
            let last = (0..per_thread)
                .filter(|c| c % 5 == k)
                .max()
                .expect("a write");
            assert_eq!(check_value(&key, &v), Ok(last), "key t{t}-k{k}");
        }
    }
}

#[test]
fn sync_always_with_concurrent_writers_crossing_rolls() {
    let opts = Options {
        sync: SyncPolicy::Always,
        ..small_opts()
    };
    with_timeout(20, "4 writers with sync=always", move || {
        concurrent_writers(opts, 4, 150)
    });
}

#[test]
fn sync_interval_with_concurrent_writers_crossing_rolls() {
    let opts = Options {
        sync: "interval=1".parse().expect("policy"),
        ..small_opts()
    };
    assert_eq!(opts.sync, SyncPolicy::Interval(Duration::from_millis(1)));
    with_timeout(20, "2 writers with sync=interval=1", move || {
        concurrent_writers(opts, 2, 1500)
    });
}

#[test]
fn sync_interval_keeps_data_and_stops_on_close() {
    let dir = tempdir();
    let opts = Options {
        sync: SyncPolicy::Interval(Duration::from_millis(20)),
        ..Options::default()
    };
    let s = Store::open(dir.path(), opts.clone()).expect("open");
    s.put(b"a", b"1").expect("put");
    thread::sleep(Duration::from_millis(60));
    s.put(b"b", b"2").expect("put");
    with_timeout(10, "close with an interval flusher", move || {
        s.close().expect("close")
    });
    let s = Store::open(dir.path(), opts).expect("reopen");
    assert_eq!(s.get(b"a").expect("get"), Some(b"1".to_vec()));
    assert_eq!(s.get(b"b").expect("get"), Some(b"2".to_vec()));
}

#[test]
fn sync_none_and_explicit_sync() {
    let dir = tempdir();
    let s = Store::open(dir.path(), small_opts()).expect("open");
    for i in 0..100u64 {
        let key = format!("k{}", i % 7).into_bytes();
        s.put(&key, &make_value(&key, i, 100)).expect("put");
        if i % 10 == 0 {
            s.sync().expect("sync");
        }
    }
    s.sync().expect("sync");
    drop(s);
    let s = Store::open(dir.path(), small_opts()).expect("reopen");
    assert_eq!(s.keys().len(), 7);
}

#[test]
fn readers_beside_a_writer_that_overwrites_and_rolls_see_only_written_values() {
    with_timeout(120, "readers beside a writer", || {
        let dir = tempdir();
        let store = Arc::new(Store::open(dir.path(), small_opts()).expect("open"));
        let keys: Vec<Vec<u8>> = (0..16).map(|i| format!("key{i}").into_bytes()).collect();
        for k in &keys {
            store.put(k, &make_value(k, 0, 10)).expect("put");
        }
        let done = Arc::new(AtomicBool::new(false));
        let reads = Arc::new(AtomicU64::new(0));
        let readers: Vec<_> = (0..3u64)
            .map(|r| {
                let (store, keys, done, reads) =
                    (store.clone(), keys.clone(), done.clone(), reads.clone());
                thread::spawn(move || {
                    let mut rng = Rng::new(r + 100);
                    let mut last_seen = vec![0u64; keys.len()];
                    while !done.load(Ordering::Relaxed) {
                        let i = rng.below(keys.len() as u64) as usize;
                        let k = &keys[i];
                        match store.get(k) {
                            Ok(Some(v)) => {
                                let c = check_value(k, &v).unwrap_or_else(|e| {
                                    panic!("get {}: {e}", String::from_utf8_lossy(k))
                                });
                                assert!(c >= last_seen[i], "a read went back in time");
                                last_seen[i] = c;
                            }
                            other => panic!(
                                "get {}: {:?}",
                                String::from_utf8_lossy(k),
                                other.map(|v| v.map(|v| v.len()))
                            ),
                        }
                        match store.read(k, 0, 40) {
                            Ok(head) => assert!(head.starts_with(k), "range read of another key"),
                            Err(e) => panic!("read {}: {e}", String::from_utf8_lossy(k)),
                        }
                        if rng.chance(1, 50) {
                            assert_eq!(store.keys().len(), keys.len(), "keys() lost a key");
                        }
                        if store.metadata(k).expect("metadata").is_none() {
                            panic!("metadata of a live key is missing");
                        }
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let mut rng = Rng::new(1);
        for c in 1..=3000u64 {
            let k = &keys[rng.below(keys.len() as u64) as usize];
            let len = if c % 500 == 0 {
                300 << 10 // a large record: checked once, then read by range
            } else {
                rng.below(600) as usize
            };
            store.put(k, &make_value(k, c, len)).expect("put");
            if c % 97 == 0 {
                store.roll().expect("roll");
            }
        }
        done.store(true, Ordering::Relaxed);
        for r in readers {
            r.join().expect("reader thread");
        }
        assert!(reads.load(Ordering::Relaxed) > 100, "readers barely ran");
    });
}
