//! Values much larger than a segment, whose records reach past the mapping
//! a segment is given for appends: read whole and by ranges while their
//! segment still takes appends, once it is closed, and after a reopen; a
//! flipped byte in one is an error for that key only.

mod engine_common;

use std::fs;

use caskfs::engine::Store;
use engine_common::{Rng, open, seg_path, segment_ids, tempdir};

fn keys() -> [&'static [u8]; 3] {
    [b"big0", b"big1", b"big2"]
}

fn check(store: &Store, values: &[Vec<u8>], what: &str) {
    for (key, v) in keys().into_iter().zip(values) {
        let name = String::from_utf8_lossy(key);
        let got = store.get(key).unwrap();
        assert!(got.as_deref() == Some(&v[..]), "{what}: {name} differs");
        let value = store.value(key).unwrap().unwrap();
        let last = v.len() as u64 - 7;
        for (off, len) in [(0, 10), (4095, 4098), (last, 100)] {
            let end = (off as usize + len).min(v.len());
            let got = value.bytes(off, len).unwrap();
            assert!(*got == v[off as usize..end], "{what}: {name} at {off}");
        }
    }
}

#[test]
fn values_larger_than_a_segment_read_back_whole_and_by_ranges() {
    let dir = tempdir();
    let mut rng = Rng::new(7);
    let values: Vec<Vec<u8>> = [300_000, 1 << 20, 5000].map(|n| rng.bytes(n)).into();
    {
        let store = open(dir.path());
        for (key, v) in keys().into_iter().zip(&values) {
            store.put(key, v).unwrap();
        }
        check(&store, &values, "while appending");
        store.roll().unwrap();
        check(&store, &values, "closed");
        store.close().unwrap();
    }
    check(&open(dir.path()), &values, "reopened");

    // Damage the middle of the 1 MiB value: the largest segment holds it.
    let biggest = segment_ids(dir.path())
        .into_iter()
        .max_by_key(|&id| fs::metadata(seg_path(dir.path(), id)).unwrap().len())
        .unwrap();
    let path = seg_path(dir.path(), biggest);
    let mut bytes = fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    fs::write(&path, &bytes).unwrap();
    let store = open(dir.path());
    assert!(store.get(b"big1").is_err(), "a damaged value must not read");
    assert!(store.value(b"big1").unwrap().unwrap().bytes(0, 10).is_err());
    assert_eq!(store.get(b"big0").unwrap().as_deref(), Some(&values[0][..]));
    assert_eq!(store.get(b"big2").unwrap().as_deref(), Some(&values[2][..]));
}
