//! Crash-shaped and damaged data directories: torn tails, bad hints, bad
//! headers, damage in closed segments, stray files.

mod engine_common;

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use caskfs::engine::{Error, Meta, Store, check};
use engine_common::{
    Rng, contents, copy_dir, encode_record, hint_path, open, parse_segment, seg_path, segment_ids,
    small_opts, tempdir,
};

type State = BTreeMap<Vec<u8>, Vec<u8>>;

/// A closed store with several segments (overwrites and deletes across
/// them, names and paths); returns its contents.
fn build(dir: &Path, seed: u64, puts: usize) -> State {
    let mut rng = Rng::new(seed);
    let s = open(dir);
    for i in 0..puts {
        let n = rng.below(40);
        let key = match n % 3 {
            0 => format!("key{n}"),
            1 => format!("dir/key{n}"),
            _ => format!("dir/sub/key{n}"),
        }
        .into_bytes();
        if i % 7 == 3 && s.contains(&key) {
            s.delete(&key).expect("delete");
        } else {
            let len = rng.below(200) as usize;
            let value = rng.bytes(len);
            s.put(&key, &value).expect("put");
        }
    }
    let state = contents(&s);
    s.close().expect("close");
    state
}

fn last_segment(dir: &Path) -> PathBuf {
    let id = *segment_ids(dir).last().expect("a segment");
    seg_path(dir, id)
}

fn append(path: &Path, bytes: &[u8]) {
    OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .expect("appending to a segment");
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).expect("stat").len()
}

/// Opens `dir` with a torn tail on its last segment: everything before it
/// is intact, the file is cut back to `good_len`, the store takes writes,
/// and the next open is clean.
fn assert_tail_recovered(dir: &Path, expect: &State, good_len: u64, what: &str) {
    let s = open(dir);
    assert_eq!(&contents(&s), expect, "{what}: contents after recovery");
    let last = last_segment(dir);
    // Cut back to the last whole record; zeros after it may stay, as space
    // allocated ahead for appends, but no byte of the torn tail.
    let bytes = fs::read(&last).expect("segment");
    assert!(
        bytes.len() as u64 >= good_len && bytes[good_len as usize..].iter().all(|&b| b == 0),
        "{what}: tail not cut back: {} bytes, last whole record ends at {good_len}",
        bytes.len()
    );
    s.put(b"written-after", b"recovery")
        .expect("put after recovery");
    s.close().expect("close");
    let s = open(dir);
    let mut expect = expect.clone();
    expect.insert(b"written-after".to_vec(), b"recovery".to_vec());
    assert_eq!(contents(&s), expect, "{what}: contents at the next open");
    s.close().expect("close");
    let r = check(dir).expect("check");
    assert!(
        r.is_clean() && r.notes.is_empty(),
        "{what}: next open not clean:\n{r}"
    );
}

#[test]
fn garbage_appended_to_the_last_segment_is_cut() {
    let base = tempdir();
    let state = build(base.path(), 1, 120);
    let good_len = file_len(&last_segment(base.path()));
    let mut rng = Rng::new(5);
    let garbage: Vec<(&str, Vec<u8>)> = vec![
        ("one byte", vec![0x42]),
        ("random bytes", rng.bytes(100)),
        ("zeros (a file extended by a crash)", vec![0; 4096]),
        ("0xff", vec![0xff; 50]),
        (
            "a record header alone",
            encode_record(9999, b"x", Some(b"v"))[..engine_common::RECORD_HEADER_LEN].to_vec(),
        ),
    ];
    let scratch = tempdir();
    for (what, bytes) in garbage {
        let d = scratch.path().join(what.replace(' ', "_"));
        copy_dir(base.path(), &d);
        append(&last_segment(&d), &bytes);
        assert_tail_recovered(&d, &state, good_len, what);
    }
}

#[test]
fn half_a_record_appended_is_cut_at_every_length() {
    let base = tempdir();
    let state = build(base.path(), 2, 60);
    let good_len = file_len(&last_segment(base.path()));
    let rec = encode_record(1_000_000, b"half/written", Some(&Rng::new(3).bytes(150)));
    let scratch = tempdir();
    for n in 1..rec.len() {
        let d = scratch.path().join(format!("half{n}"));
        copy_dir(base.path(), &d);
        append(&last_segment(&d), &rec[..n]);
        assert_tail_recovered(&d, &state, good_len, &format!("{n} of {} bytes", rec.len()));
        fs::remove_dir_all(&d).expect("cleanup");
    }
    // The whole record is a record: it is kept.
    let d = scratch.path().join("whole");
    copy_dir(base.path(), &d);
    append(&last_segment(&d), &rec);
    let s = open(&d);
    assert_eq!(
        s.get(b"half/written").expect("get").map(|v| v.len()),
        Some(150)
    );
    let m = s
        .metadata(b"half/written")
        .expect("metadata")
        .expect("live");
    // A version-3 record holds no metadata: it reads as a plain file's.
    assert_eq!((m.len, m.meta()), (150, Meta::file(0)));
}

/// Hints of every closed segment valid, nothing damaged.
fn assert_hints_rewritten(dir: &Path, what: &str) {
    let r = check(dir).expect("check");
    let closed = segment_ids(dir).len() as u64 - 1;
    assert!(
        r.is_clean() && r.hints_ok == closed,
        "{what}: hints not rewritten ({} of {closed} valid):\n{r}",
        r.hints_ok
    );
}

#[test]
fn corrupt_hint_falls_back_to_a_scan_and_is_rewritten() {
    let base = tempdir();
    let state = build(base.path(), 4, 150);
    let ids = segment_ids(base.path());
    assert!(ids.len() >= 4, "want several closed segments, got {ids:?}");
    let victim = ids[1];
    let hint = fs::read(hint_path(base.path(), victim)).expect("hint");
    let other_hint = fs::read(hint_path(base.path(), ids[2])).expect("hint");
    let mut cases: Vec<(String, Option<Vec<u8>>)> = Vec::new();
    for at in 0..hint.len() {
        let mut bad = hint.clone();
        bad[at] ^= 1 << (at % 8);
        cases.push((format!("hint bit flip at {at}"), Some(bad)));
    }
    for cut in [0, 1, 47, 48, hint.len() / 2, hint.len() - 4, hint.len() - 1] {
        cases.push((format!("hint cut at {cut}"), Some(hint[..cut].to_vec())));
    }
    cases.push(("hint deleted".into(), None));
    cases.push(("another segment's hint".into(), Some(other_hint)));
    let scratch = tempdir();
    for (what, bytes) in cases {
        let d = scratch.path().join("copy");
        let _ = fs::remove_dir_all(&d);
        copy_dir(base.path(), &d);
        let hp = hint_path(&d, victim);
        match &bytes {
            Some(b) => fs::write(&hp, b).expect("writing the bad hint"),
            None => fs::remove_file(&hp).expect("removing the hint"),
        }
        let s = open(&d);
        assert_eq!(contents(&s), state, "{what}: contents");
        s.close().expect("close");
        assert_ne!(
            fs::read(&hp).ok(),
            bytes,
            "{what}: the bad hint was left in place"
        );
        assert_hints_rewritten(&d, &what);
    }
}

#[test]
fn a_stale_hint_for_the_last_segment_is_ignored() {
    let d = tempdir();
    let state = build(d.path(), 6, 100);
    let ids = segment_ids(d.path());
    let last = *ids.last().expect("segment");
    // A hint that names the active segment, describing the wrong contents.
    fs::copy(hint_path(d.path(), ids[0]), hint_path(d.path(), last)).expect("copy");
    let s = open(d.path());
    assert_eq!(contents(&s), state);
}

#[test]
fn wrong_magic_or_future_version_is_a_clear_error() {
    let base = tempdir();
    build(base.path(), 7, 80);
    let ids = segment_ids(base.path());
    let scratch = tempdir();
    for id in [ids[0], *ids.last().expect("segment")] {
        let name = format!("{id:016}.seg");
        for (what, at, byte, says) in [
            ("wrong magic", 0usize, b'X', "magic"),
            ("future version", 8, 4u8, "version 4"),
        ] {
            let d = scratch.path().join(format!("{id}-{at}"));
            copy_dir(base.path(), &d);
            let p = seg_path(&d, id);
            let mut bytes = fs::read(&p).expect("segment");
            bytes[at] = byte;
            fs::write(&p, bytes).expect("write");
            let err = match Store::open(&d, small_opts()) {
                Ok(_) => panic!("{what} in {name}: opened"),
                Err(e) => e.to_string(),
            };
            assert!(
                err.contains(says) && err.contains(&name),
                "{what} in {name}: unclear error: {err}"
            );
            let r = check(&d).expect("check");
            assert!(!r.is_clean(), "{what} in {name}: check says clean");
        }
    }
    // A damaged MANIFEST: the store refuses to open and says which file.
    let d = scratch.path().join("manifest");
    copy_dir(base.path(), &d);
    let m = d.join("MANIFEST");
    let mut bytes = fs::read(&m).expect("manifest");
    bytes[9] ^= 0x40;
    fs::write(&m, bytes).expect("write");
    match Store::open(&d, small_opts()) {
        Ok(_) => panic!("damaged MANIFEST: opened"),
        Err(e) => assert!(e.to_string().contains("MANIFEST"), "unclear error: {e}"),
    }
}

/// The byte ranges of each key's newest record in segment `id`.
fn record_ranges(dir: &Path, id: u64) -> BTreeMap<Vec<u8>, (usize, usize)> {
    let bytes = fs::read(seg_path(dir, id)).expect("segment");
    let (recs, _) = parse_segment(&bytes);
    recs.iter()
        .flat_map(|r| &r.items)
        .map(|it| (it.key.clone(), (it.start, it.end)))
        .collect()
}

fn flip(path: &Path, at: usize) {
    let mut bytes = fs::read(path).expect("read");
    bytes[at] ^= 0x20;
    fs::write(path, bytes).expect("write");
}

#[test]
fn damage_in_a_closed_segment_with_a_good_hint_fails_reads_of_that_key_only() {
    let d = tempdir();
    let mut rng = Rng::new(8);
    let small = rng.bytes(100);
    let large = rng.bytes(400 << 10); // over the whole-record check limit
    let other = rng.bytes(77);
    let s = Store::open(d.path(), small_opts()).expect("open");
    s.put(b"small", &small).expect("put");
    s.put(b"other", &other).expect("put");
    s.put(b"large", &large).expect("put");
    s.roll().expect("roll");
    s.put(b"later", b"fine").expect("put");
    s.close().expect("close");
    let ids = segment_ids(d.path());
    // Where each key's record is: (segment, start, end).
    let find = |key: &[u8]| {
        ids.iter()
            .find_map(|&id| {
                record_ranges(d.path(), id)
                    .get(key)
                    .map(|&(a, b)| (id, a, b))
            })
            .expect("record found")
    };
    let (small_seg, a, b) = find(b"small");
    let (large_seg, _, lb) = find(b"large");
    let last = *ids.last().expect("segment");
    assert!(
        small_seg != last && large_seg != last,
        "want closed segments"
    );
    flip(&seg_path(d.path(), small_seg), (a + b) / 2);
    flip(&seg_path(d.path(), large_seg), lb - 1000);

    let s = Store::open(d.path(), small_opts()).expect("open with damage");
    for key in [&b"small"[..], b"large"] {
        let name = String::from_utf8_lossy(key);
        match s.get(key) {
            Err(Error::Corrupt { path, .. }) => {
                assert!(path.extension().is_some_and(|e| e == "seg"), "{path:?}")
            }
            other => panic!(
                "get {name}: expected Corrupt, got {:?}",
                other.map(|v| v.map(|v| v.len()))
            ),
        }
        for off in [0u64, 50, 300_000] {
            assert!(
                s.read(key, off, 10).is_err(),
                "read({name}, {off}) of a damaged record gave bytes"
            );
        }
        assert!(
            s.metadata(key).expect("metadata").is_some(),
            "{name}: metadata still known"
        );
    }
    let msg = s.get(b"small").expect_err("damaged").to_string();
    assert!(
        msg.contains(&format!("{small_seg:016}.seg")),
        "error does not name the file: {msg}"
    );
    assert_eq!(s.get(b"other").expect("get"), Some(other));
    assert_eq!(s.get(b"later").expect("get"), Some(b"fine".to_vec()));
    s.close().expect("close");

    let out = Command::new(env!("CARGO_BIN_EXE_caskfs"))
        .arg("check")
        .arg(d.path())
        .output()
        .expect("running caskfs check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "caskfs check exited 0 on damage:\n{stdout}"
    );
    assert!(
        stdout.contains("DAMAGE") && stdout.contains(&format!("{small_seg:016}.seg")),
        "caskfs check output does not report the damage:\n{stdout}"
    );
}

/// A value may hold bytes shaped like a record (a segment file copied into
/// the store, say). When the write of that value is torn, recovery must cut
/// the log at the torn record, not resynchronise inside its value and take
/// the embedded bytes for a record of their own.
#[test]
fn a_torn_value_that_holds_a_record_is_not_taken_for_one() {
    let d = tempdir();
    let s = open(d.path());
    s.put(b"victim", b"good").expect("put");
    s.close().expect("close");
    let mut payload = Rng::new(9).bytes(10);
    let embedded = encode_record(5, b"victim", Some(b"evil"));
    payload.extend(&embedded);
    payload.extend(Rng::new(10).bytes(300));
    let s = open(d.path());
    s.put(b"blob", &payload).expect("put");
    s.close().expect("close");

    let last = last_segment(d.path());
    let (recs, _) = parse_segment(&fs::read(&last).expect("segment"));
    let blob = recs.last().expect("blob record");
    // Torn: the blob record's first part reached the disk, the rest did not.
    // Past the embedded record, so that a scan could find it whole.
    let cut = blob.start + engine_common::RECORD_HEADER_LEN + 4 + 10 + embedded.len() + 5;
    OpenOptions::new()
        .write(true)
        .open(&last)
        .and_then(|f| f.set_len(cut as u64))
        .expect("truncate");
    let s = open(d.path());
    let victim = s.get(b"victim").map_err(|e| e.to_string());
    assert_eq!(
        victim,
        Ok(Some(b"good".to_vec())),
        "bytes inside a torn value were taken for a record"
    );
    assert_eq!(s.get(b"blob").ok(), Some(None));
    assert_eq!(file_len(&last), blob.start as u64, "torn record not cut");
}

/// Same, with the record's header damaged instead of torn: the record is
/// lost, but what its value holds must not become a key's value.
#[test]
fn a_damaged_record_whose_value_holds_a_record_is_not_resynchronised_into() {
    let d = tempdir();
    let s = open(d.path());
    s.put(b"victim", b"good").expect("put");
    let mut payload = Rng::new(11).bytes(10);
    payload.extend(encode_record(5, b"victim", Some(b"evil")));
    s.put(b"blob", &payload).expect("put");
    s.put(b"after", b"x").expect("put");
    s.close().expect("close");
    let last = last_segment(d.path());
    let (recs, _) = parse_segment(&fs::read(&last).expect("segment"));
    let blob = &recs[recs.len() - 2];
    flip(&last, blob.start); // its CRC
    let s = open(d.path());
    let victim = s.get(b"victim").map_err(|e| e.to_string());
    assert!(
        victim != Ok(Some(b"evil".to_vec())),
        "bytes inside a damaged record's value were taken for a record"
    );
}

/// Records are ordered by sequence number; one at the very top of the range
/// is valid input from disk: open must not panic (overflow) and writes made
/// after it must still be found at the next open.
#[test]
fn a_record_with_the_largest_sequence_number_does_not_break_open() {
    let d = tempdir();
    let s = open(d.path());
    s.put(b"a", b"1").expect("put");
    s.close().expect("close");
    append(
        &last_segment(d.path()),
        &encode_record(u64::MAX, b"b", Some(b"2")),
    );
    let opened = std::panic::catch_unwind(|| Store::open(d.path(), small_opts()));
    let s = match opened {
        Err(_) => panic!("Store::open panicked on a record with sequence u64::MAX"),
        Ok(Err(e)) => {
            // Refusing is acceptable if it says why.
            assert!(!e.to_string().is_empty());
            return;
        }
        Ok(Ok(s)) => s,
    };
    s.put(b"c", b"3").expect("put");
    s.close().expect("close");
    let s = open(d.path());
    assert_eq!(
        s.get(b"c").map_err(|e| e.to_string()),
        Ok(Some(b"3".to_vec())),
        "a write after a sequence-u64::MAX record was lost at the next open"
    );
}

#[test]
fn strays_are_removed_at_open_and_foreign_files_left_alone() {
    let d = tempdir();
    let state = build(d.path(), 12, 60);
    let strays = [
        "MANIFEST.tmp",
        "0000000000000099.seg",
        "0000000000000099.hint",
        "0000000000000001.hint.tmp",
    ];
    for name in strays {
        fs::write(d.path().join(name), b"junk").expect("write");
    }
    fs::write(d.path().join("notes.txt"), b"mine").expect("write");
    let r = check(d.path()).expect("check");
    assert!(r.is_clean(), "strays are not damage:\n{r}");
    assert!(r.notes.len() >= strays.len(), "strays not noted:\n{r}");
    let s = open(d.path());
    assert_eq!(contents(&s), state);
    for name in strays {
        assert!(!d.path().join(name).exists(), "{name} not removed");
    }
    assert!(
        d.path().join("notes.txt").exists(),
        "a foreign file was removed"
    );
}

#[test]
fn a_directory_with_foreign_files_and_no_manifest_is_refused() {
    let d = tempdir();
    fs::write(d.path().join("precious.txt"), b"mine").expect("write");
    match Store::open(d.path(), small_opts()) {
        Ok(_) => panic!("opened a foreign directory"),
        Err(e) => assert!(matches!(e, Error::NotADataDir { .. }), "{e}"),
    }
    assert_eq!(
        fs::read(d.path().join("precious.txt")).expect("read"),
        b"mine"
    );
}
