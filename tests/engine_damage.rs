//! Codec-level damage through the public API: every single-byte flip and
//! every truncation point of a small closed segment and of the last
//! segment, reopened on a damaged copy. Never a panic, never a wrong value:
//! a key gives its true value or an error, or — only for records at or
//! after the damage in the LAST segment (a torn tail) — an earlier value.
//! `check` flags every damage in a closed segment.

mod engine_common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use caskfs::engine::{BatchOp, Store, check};
use engine_common::{Rec, RecMeta, Rng, apply, copy_dir, open, parse_segment, seg_path, tempdir};

type State = BTreeMap<Vec<u8>, Vec<u8>>;

/// The segment header's reserved field (written as zero); its own test below.
const RESERVED: std::ops::Range<usize> = 12..16;

/// Names and paths: version-2 keys of one, two and three components.
fn k(i: usize) -> Vec<u8> {
    match i % 3 {
        0 => format!("k{i}"),
        1 => format!("d/k{i}"),
        _ => format!("d/e/k{i}"),
    }
    .into_bytes()
}

/// Moves the value of `from` to `to` in one batch record (a tombstone and
/// a put).
fn move_value(s: &Store, from: &[u8], to: &[u8]) {
    let v = s.get(from).expect("get").expect("a live value to move");
    s.write_batch(&[BatchOp::Delete(from), BatchOp::Put(to, &v)])
        .expect("move");
}

/// Every key the fixture touches, plus one it never does.
fn universe() -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = (0..14).map(k).collect();
    keys.push(b"never-written".to_vec());
    keys
}

/// Two segments: 1 closed (with its hint), 2 the last one. Each holds
/// puts, overwrites, tombstones and batches.
fn build_fixture(dir: &Path) {
    let mut rng = Rng::new(99);
    let s = open(dir);
    for i in 0..9 {
        s.put(&k(i), &rng.bytes(20 + i * 13)).expect("put");
    }
    s.put(&k(0), &rng.bytes(25)).expect("put");
    s.put(&k(8), &rng.bytes(15)).expect("put");
    s.put(&k(1), &rng.bytes(40)).expect("overwrite");
    s.delete(&k(2)).expect("delete");
    move_value(&s, &k(3), &k(9));
    move_value(&s, &k(4), &k(5));
    let v6 = rng.bytes(33);
    let v10 = rng.bytes(0);
    s.write_batch(&[
        BatchOp::Put(&k(6), &v6),
        BatchOp::Delete(&k(7)),
        BatchOp::Put(&k(10), &v10),
    ])
    .expect("batch");
    s.roll().expect("roll");
    s.put(&k(0), &rng.bytes(50)).expect("put");
    s.put(&k(1), &rng.bytes(60)).expect("put");
    s.delete(&k(5)).expect("delete");
    move_value(&s, &k(6), &k(11));
    let v12 = rng.bytes(44);
    s.write_batch(&[BatchOp::Put(&k(12), &v12), BatchOp::Delete(&k(2))])
        .expect("batch");
    s.put(&k(13), &rng.bytes(70)).expect("put");
    let v8 = s.get(&k(8)).expect("get").expect("live");
    s.put(&k(8), &v8).expect("rewrite");
    s.close().expect("close");
}

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    seg1: Vec<u8>,
    seg2: Vec<u8>,
    recs1: Vec<Rec>,
    recs2: Vec<Rec>,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempdir();
        let dir = tmp.path().join("data");
        build_fixture(&dir);
        assert_eq!(engine_common::segment_ids(&dir), vec![1, 2]);
        let seg1 = fs::read(seg_path(&dir, 1)).expect("segment 1");
        let seg2 = fs::read(seg_path(&dir, 2)).expect("segment 2");
        let (recs1, end1) = parse_segment(&seg1);
        let (recs2, end2) = parse_segment(&seg2);
        assert_eq!(end1, seg1.len(), "segment 1 decodes to its end");
        assert_eq!(end2, seg2.len(), "segment 2 decodes to its end");
        let f = Fixture {
            _tmp: tmp,
            dir,
            seg1,
            seg2,
            recs1,
            recs2,
        };
        // The independent decoder agrees with the engine.
        let s = open(&f.dir);
        assert_eq!(engine_common::contents(&s), f.state_after(usize::MAX));
        let metas = f.metas();
        for (key, m) in &metas {
            assert_meta(&s, key, m, "undamaged");
        }
        // Version-3 records hold no metadata (what `put_with` and `set_meta`
        // gave is not kept): the segments are in the layout this build
        // writes, and every key reads as a plain file.
        for (id, seg) in [(1, &f.seg1), (2, &f.seg2)] {
            assert_eq!(engine_common::segment_version(seg), 3, "segment {id}");
        }
        f
    }

    /// State after segment 1 and the first `n` records of segment 2.
    fn state_after(&self, n: usize) -> State {
        let mut st = State::new();
        self.recs1.iter().for_each(|r| apply(&mut st, r));
        self.recs2.iter().take(n).for_each(|r| apply(&mut st, r));
        st
    }

    /// The metadata of every live key, as the independent decoder reads it.
    fn metas(&self) -> BTreeMap<Vec<u8>, RecMeta> {
        let mut m = BTreeMap::new();
        for it in self.recs1.iter().chain(&self.recs2).flat_map(|r| &r.items) {
            match it.value {
                Some(_) => m.insert(it.key.clone(), it.meta),
                None => m.remove(&it.key),
            };
        }
        m
    }

    /// A copy of the data directory with segment `id` replaced by `bytes`.
    fn damaged_copy(&self, scratch: &Path, id: u64, bytes: &[u8]) -> std::path::PathBuf {
        let d = scratch.join("copy");
        let _ = fs::remove_dir_all(&d);
        copy_dir(&self.dir, &d);
        fs::write(seg_path(&d, id), bytes).expect("writing the damaged segment");
        d
    }
}

/// The engine reports the metadata the record holds.
fn assert_meta(s: &Store, key: &[u8], want: &RecMeta, what: &str) {
    let name = String::from_utf8_lossy(key);
    let m = s
        .metadata(key)
        .unwrap_or_else(|e| panic!("{what}: metadata of {name}: {e}"))
        .unwrap_or_else(|| panic!("{what}: {name} has no metadata"));
    let got = m.meta();
    let got = RecMeta {
        mode: got.mode,
        uid: got.uid,
        gid: got.gid,
        mtime: got.mtime,
        ctime: got.ctime,
    };
    assert_eq!(&got, want, "{what}: metadata of {name}");
}

fn show(v: &Option<Vec<u8>>) -> String {
    match v {
        None => "absent".into(),
        Some(v) => format!("{} bytes", v.len()),
    }
}

/// Checks damage in the LAST segment at `at`: records wholly before `at`
/// are intact; a key touched at or after it may show any state it had from
/// there on, or an error. Returns what every key read as.
fn check_last_segment_reads(
    f: &Fixture,
    s: &Store,
    at: usize,
    what: &str,
) -> BTreeMap<Vec<u8>, Result<Option<Vec<u8>>, String>> {
    let whole = f.recs2.iter().take_while(|r| r.end <= at).count();
    let allowed: Vec<State> = (whole..=f.recs2.len()).map(|n| f.state_after(n)).collect();
    let mut seen = BTreeMap::new();
    for key in universe() {
        let got = s.get(&key).map_err(|e| e.to_string());
        if let Ok(v) = &got {
            let ok = allowed.iter().any(|st| st.get(&key) == v.as_ref());
            assert!(
                ok,
                "{what}: key {} reads as {}, a value it never had at or after the damage",
                String::from_utf8_lossy(&key),
                show(v)
            );
        }
        seen.insert(key, got);
    }
    seen
}

#[test]
fn every_byte_flip_in_a_closed_segment_is_an_error_for_its_key_only() {
    let f = Fixture::new();
    let scratch = tempdir();
    let truth = f.state_after(usize::MAX);
    let metas = f.metas();
    // Where each key's live value is read from, when it is in segment 1.
    let mut source: BTreeMap<Vec<u8>, (usize, usize)> = BTreeMap::new();
    for it in f.recs1.iter().flat_map(|r| &r.items) {
        source.insert(it.key.clone(), (it.start, it.end));
    }
    for it in f.recs2.iter().flat_map(|r| &r.items) {
        source.remove(&it.key);
    }
    for at in (0..f.seg1.len()).filter(|at| !RESERVED.contains(at)) {
        let mut bad = f.seg1.clone();
        bad[at] ^= 0xff;
        let d = f.damaged_copy(scratch.path(), 1, &bad);
        let what = format!("byte {at} of closed segment 1 flipped");
        match Store::open(&d, engine_common::small_opts()) {
            Err(e) => assert!(
                at < engine_common::SEGMENT_HEADER_LEN,
                "{what}: open failed: {e}"
            ),
            Ok(s) => {
                assert!(
                    at >= engine_common::SEGMENT_HEADER_LEN,
                    "{what}: a damaged segment header was accepted"
                );
                assert_eq!(
                    s.keys(),
                    truth.keys().cloned().collect::<Vec<_>>(),
                    "{what}: keys()"
                );
                for key in universe() {
                    let got = s.get(&key);
                    let hit = source.get(&key).is_some_and(|&(a, b)| (a..b).contains(&at));
                    let name = String::from_utf8_lossy(&key);
                    match (got, truth.get(&key)) {
                        (Err(_), Some(_)) if hit => {}
                        (Ok(v), Some(t)) if hit => panic!(
                            "{what}: key {name} sits on the damage but read as {} (true {} bytes)",
                            show(&v),
                            t.len()
                        ),
                        (Ok(v), t) => {
                            assert_eq!(
                                v.as_ref(),
                                t,
                                "{what}: key {name} read as {}, true {}",
                                show(&v),
                                show(&t.cloned())
                            );
                            if let Some(m) = metas.get(&key) {
                                assert_meta(&s, &key, m, &what);
                            }
                        }
                        (Err(e), _) => panic!("{what}: key {name} is not damaged but: {e}"),
                    }
                }
                s.close().expect("close");
            }
        }
        let flagged = match check(&d) {
            Ok(r) => !r.is_clean(),
            Err(_) => true,
        };
        assert!(flagged, "{what}: check found nothing");
    }
}

#[test]
fn every_byte_flip_in_the_last_segment_never_gives_a_wrong_value() {
    let f = Fixture::new();
    let scratch = tempdir();
    for at in (0..f.seg2.len()).filter(|at| !RESERVED.contains(at)) {
        let mut bad = f.seg2.clone();
        bad[at] ^= 0xff;
        let d = f.damaged_copy(scratch.path(), 2, &bad);
        let what = format!("byte {at} of last segment 2 flipped");
        let s = match Store::open(&d, engine_common::small_opts()) {
            Err(e) => {
                assert!(
                    at < engine_common::SEGMENT_HEADER_LEN,
                    "{what}: open failed: {e}"
                );
                continue;
            }
            Ok(s) => s,
        };
        assert!(
            at >= engine_common::SEGMENT_HEADER_LEN,
            "{what}: a damaged segment header was accepted"
        );
        let first = check_last_segment_reads(&f, &s, at, &what);
        // Writable after the damage, and what it shows is stable.
        s.put(b"after", b"damage").expect("put after the damage");
        s.close().expect("close");
        let s = Store::open(&d, engine_common::small_opts()).expect("second open");
        assert_eq!(
            s.get(b"after").expect("get"),
            Some(b"damage".to_vec()),
            "{what}: a write after recovery was lost at the next open"
        );
        for (key, before) in first {
            let now = s.get(&key).map_err(|e| e.to_string());
            assert_eq!(
                now.as_ref().ok(),
                before.as_ref().ok(),
                "{what}: key {} changed between two opens",
                String::from_utf8_lossy(&key)
            );
        }
    }
}

#[test]
fn every_truncation_of_the_last_segment_cuts_back_to_a_whole_record() {
    let f = Fixture::new();
    let scratch = tempdir();
    for cut in 0..f.seg2.len() {
        let d = f.damaged_copy(scratch.path(), 2, &f.seg2[..cut]);
        let what = format!("last segment 2 cut at {cut}");
        let s = match Store::open(&d, engine_common::small_opts()) {
            Err(e) => {
                assert!(
                    cut < engine_common::SEGMENT_HEADER_LEN,
                    "{what}: open failed: {e}"
                );
                continue;
            }
            Ok(s) => s,
        };
        let whole = f.recs2.iter().take_while(|r| r.end <= cut).count();
        let expect = f.state_after(whole);
        assert_eq!(engine_common::contents(&s), expect, "{what}: contents");
        let good_end = f.recs2[..whole]
            .last()
            .map_or(engine_common::SEGMENT_HEADER_LEN, |r| r.end);
        // Cut back to the last whole record; zeros after it may stay, as
        // space allocated ahead for appends (a torn record whose first
        // bytes, its CRC, happen to be zero looks like that).
        let bytes = fs::read(seg_path(&d, 2)).expect("segment");
        assert!(
            bytes.len() >= good_end && bytes[good_end..].iter().all(|&b| b == 0),
            "{what}: torn tail not cut back: {} bytes, last whole record ends at {good_end}",
            bytes.len()
        );
        s.put(b"after", b"cut").expect("put after the cut");
        s.close().expect("close");
        let s = Store::open(&d, engine_common::small_opts()).expect("second open");
        let mut expect = expect;
        expect.insert(b"after".to_vec(), b"cut".to_vec());
        assert_eq!(engine_common::contents(&s), expect, "{what}: second open");
        s.close().expect("close");
        let r = check(&d).expect("check");
        assert!(
            r.is_clean() && r.notes.is_empty(),
            "{what}: not clean after recovery:\n{r}"
        );
    }
}

/// A closed segment is never a torn tail: a shorter file than its hint
/// describes is damage, and the keys whose records were cut off must not
/// silently fall back to older values (or vanish).
#[test]
fn every_truncation_of_a_closed_segment_gives_true_values_or_errors() {
    let f = Fixture::new();
    let scratch = tempdir();
    let truth = f.state_after(usize::MAX);
    for cut in engine_common::SEGMENT_HEADER_LEN..f.seg1.len() {
        let d = f.damaged_copy(scratch.path(), 1, &f.seg1[..cut]);
        let what = format!("closed segment 1 cut at {cut} of {}", f.seg1.len());
        if let Ok(s) = Store::open(&d, engine_common::small_opts()) {
            for key in universe() {
                if let Ok(v) = s.get(&key) {
                    assert!(
                        v.as_ref() == truth.get(&key),
                        "{what}: key {} reads as {}, true value {} (and no error)",
                        String::from_utf8_lossy(&key),
                        show(&v),
                        show(&truth.get(&key).cloned())
                    );
                }
            }
            s.close().expect("close");
        }
        let flagged = check(&d).map_or(true, |r| !r.is_clean());
        assert!(flagged, "{what}: check found nothing");
    }
}

/// Without a hint a closed segment is scanned; a record whose header and
/// key are intact but whose value is damaged still names its key, so reads
/// of that key must fail rather than fall back to an older value.
#[test]
fn value_damage_in_a_closed_segment_without_hint_is_an_error() {
    let f = Fixture::new();
    let scratch = tempdir();
    let truth = f.state_after(usize::MAX);
    // The live keys whose (non-empty) value is read from segment 1.
    let mut live_in_1: BTreeMap<Vec<u8>, (usize, usize)> = BTreeMap::new();
    for it in f.recs1.iter().flat_map(|r| &r.items) {
        if it.value.as_ref().is_some_and(|v| !v.is_empty()) {
            live_in_1.insert(it.key.clone(), (it.start, it.end));
        } else {
            live_in_1.remove(&it.key);
        }
    }
    for it in f.recs2.iter().flat_map(|r| &r.items) {
        live_in_1.remove(&it.key);
    }
    assert!(!live_in_1.is_empty());
    for (key, (_, end)) in live_in_1 {
        let mut bad = f.seg1.clone();
        bad[end - 1] ^= 0xff; // last value byte
        let d = f.damaged_copy(scratch.path(), 1, &bad);
        fs::remove_file(engine_common::hint_path(&d, 1)).expect("removing the hint");
        let s = Store::open(&d, engine_common::small_opts()).expect("open");
        let name = String::from_utf8_lossy(&key);
        match s.get(&key) {
            Err(_) => {}
            Ok(v) => panic!(
                "value of {name} damaged in hint-less closed segment 1: read as {} \
                 without an error (true value {} bytes)",
                show(&v),
                truth[&key].len()
            ),
        }
    }
}

/// The segment header is not covered by a checksum, so each of its fields
/// must be checked on its own: the reserved field is written as zero, and a
/// non-zero one is damage (or a writer from the future), not to be accepted
/// silently by open or by `check`.
#[test]
fn damage_to_the_reserved_segment_header_field_is_detected() {
    let f = Fixture::new();
    let scratch = tempdir();
    for (id, bytes) in [(1, &f.seg1), (2, &f.seg2)] {
        for at in RESERVED {
            let mut bad = bytes.clone();
            bad[at] ^= 0xff;
            let d = f.damaged_copy(scratch.path(), id, &bad);
            let what = format!("byte {at} (reserved) of segment {id} flipped");
            if let Ok(s) = Store::open(&d, engine_common::small_opts()) {
                assert_eq!(
                    engine_common::contents(&s),
                    f.state_after(usize::MAX),
                    "{what}"
                );
                s.close().expect("close");
                let r = check(&d).expect("check");
                assert!(!r.is_clean(), "{what}: accepted by open and by check:\n{r}");
            }
        }
    }
}
