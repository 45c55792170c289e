//! Data directories written before format version 3, whose records carry
//! a file's mode, owner and times (the fixtures in `tests/fixtures/`,
//! described in `tests/fixtures/README.md`): they open and read as they
//! did, metadata included; new writes go into version-3 segments beside
//! the old ones; merges keep the old records' metadata in version-2
//! output until the store says it is carried over
//! (`Store::metadata_carried_over`), and write version 3 from then on;
//! `check` is clean at every step.

mod engine_common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use caskfs::engine::{
    BatchOp, Meta, OWNER_UNSET, Options, S_IFDIR, S_IFLNK, S_IFREG, Store, check,
};
use engine_common::{
    RecMeta, contents, copy_dir, hint_path, parse_segment, seg_path, segment_ids, small_opts,
    tempdir,
};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/v1-store");
const V2_FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/v2-store");

const UNICODE_KEY: &str = "with space \u{e9}t\u{e9} \u{1f600}";

/// The fixture's live keys and values (see the README).
fn fixture_contents() -> BTreeMap<Vec<u8>, Vec<u8>> {
    [
        (&b"alpha"[..], &b"second alpha"[..]),
        (b"beta", b"beta value"),
        (b"binary", &[0, 1, 2, 255, 254, b'\n']),
        (b"empty", b""),
        (b"late", b"in the active segment"),
        (b"new-name", b"renamed value"),
        (UNICODE_KEY.as_bytes(), "unicode value \u{2713}".as_bytes()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_vec(), v.to_vec()))
    .collect()
}

fn ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// What a version-3 record's metadata reads as: it stores none.
const NONE: Meta = Meta::file(0);

/// Each key's value and the metadata it must read as.
type Want = BTreeMap<Vec<u8>, (Vec<u8>, Meta)>;

/// Every key reads back its value, and its metadata as expected, through
/// `metadata` and through a pinned `Value`.
fn verify(s: &Store, want: &Want, what: &str) {
    let values: BTreeMap<Vec<u8>, Vec<u8>> = want
        .iter()
        .map(|(k, (v, _))| (k.clone(), v.clone()))
        .collect();
    assert_eq!(contents(s), values, "{what}: contents");
    for (key, (value, meta)) in want {
        let name = String::from_utf8_lossy(key);
        let m = s.metadata(key).expect("metadata").expect("live key");
        assert_eq!(m.len, value.len() as u64, "{what}: {name}: length");
        assert_eq!(m.meta(), *meta, "{what}: {name}: metadata");
        let pinned = s.value(key).expect("value").expect("live key");
        assert_eq!(
            pinned.metadata(),
            m,
            "{what}: {name}: a pinned value's metadata"
        );
        assert_eq!(pinned.read(0, value.len() + 1).expect("read"), *value);
    }
}

/// Every key's value and metadata as `s` has them now.
fn snapshot(s: &Store) -> Want {
    contents(s)
        .into_iter()
        .map(|(k, v)| {
            let m = s.metadata(&k).expect("metadata").expect("live key");
            (k, (v, m.meta()))
        })
        .collect()
}

/// `want` as it reads once nothing keeps metadata any more.
fn without_metadata(want: &Want) -> Want {
    want.iter()
        .map(|(k, (v, _))| (k.clone(), (v.clone(), NONE)))
        .collect()
}

/// Moves the value of `from` to `to` in one batch (what a rename was).
fn move_value(s: &Store, want: &mut Want, from: &[u8], to: &[u8]) {
    let (value, meta) = want.remove(from).expect("a live key to move");
    s.write_batch(&[BatchOp::Delete(from), BatchOp::Put(to, &value)])
        .expect("batch");
    // The value moves, its metadata does not: a new record has none.
    assert_ne!(meta, NONE, "an old record's metadata");
    want.insert(to.to_vec(), (value, NONE));
}

/// The format version in the header of a segment or hint file (bytes 8
/// to 12, after the magic number).
fn file_version(path: &Path) -> u32 {
    let bytes = fs::read(path).expect("read");
    u32::from_le_bytes(bytes[8..12].try_into().expect("a header"))
}

fn assert_check_clean(dir: &Path, what: &str) {
    let report = check(dir).expect("check");
    assert!(report.is_clean(), "{what}: check found damage:\n{report}");
}

/// After a merge that keeps metadata: the active segment is version 3,
/// the merge's outputs (by id after it, whose order is the MANIFEST's)
/// version 2.
fn assert_merged_beside_the_active(segs: &[u32]) {
    let current = segs.iter().filter(|&&v| v == 3).count();
    let legacy = segs.iter().filter(|&&v| v == 2).count();
    assert_eq!(
        (current, legacy),
        (1, segs.len() - 1),
        "segment versions {segs:?}"
    );
}

/// The format versions in the headers of the segment files and hint files.
fn versions(dir: &Path) -> (Vec<u32>, Vec<u32>) {
    let ids = segment_ids(dir);
    let segs = ids
        .iter()
        .map(|&id| file_version(&seg_path(dir, id)))
        .collect();
    let hints = ids
        .iter()
        .map(|&id| hint_path(dir, id))
        .filter(|p| p.exists())
        .map(|p| file_version(&p))
        .collect();
    (segs, hints)
}

#[test]
fn the_fixture_is_a_version_1_store() {
    let dir = Path::new(FIXTURE);
    assert_eq!(segment_ids(dir), vec![1, 2]);
    assert_eq!(versions(dir), (vec![1, 1], vec![1]));
    // Its records, decoded from the version-1 table: an overwrite, a
    // deletion and a rename (a batch) among them.
    let (recs, end) = parse_segment(&fs::read(seg_path(dir, 2)).expect("segment"));
    assert_eq!(
        end as u64,
        fs::metadata(seg_path(dir, 2)).expect("stat").len()
    );
    let items: Vec<_> = recs.iter().flat_map(|r| &r.items).collect();
    assert!(items.iter().any(|i| i.key == b"gone" && i.value.is_none()));
    assert!(recs.iter().any(|r| r.batch));
    for i in items.iter().filter(|i| i.value.is_some()) {
        assert_eq!(i.meta, RecMeta::default_at(i.meta.mtime));
    }
}

#[test]
fn opening_read_only_changes_nothing() {
    let tmp = tempdir();
    let dir = tmp.path().join("data");
    copy_dir(Path::new(FIXTURE), &dir);
    let opts = Options {
        read_only: true,
        ..small_opts()
    };
    let s = Store::open(&dir, opts).expect("open read-only");
    assert_eq!(contents(&s), fixture_contents());
    drop(s);
    for name in ["0000000000000001.seg", "0000000000000002.seg", "MANIFEST"] {
        assert_eq!(
            fs::read(dir.join(name)).expect("read"),
            fs::read(Path::new(FIXTURE).join(name)).expect("read"),
            "{name} changed"
        );
    }
    assert_eq!(segment_ids(&dir), vec![1, 2]);
}

#[test]
fn a_version_1_store_reads_takes_version_3_writes_and_merges_keep_its_metadata() {
    let tmp = tempdir();
    let dir = tmp.path().join("data");
    copy_dir(Path::new(FIXTURE), &dir);
    assert_check_clean(&dir, "the fixture as it is");

    // 1. It opens; every key reads back with the version-1 defaults.
    let s = Store::open(&dir, small_opts()).expect("open the fixture");
    let mut want = Want::new();
    for (key, value) in fixture_contents() {
        let m = s.metadata(&key).expect("metadata").expect("live key");
        assert_eq!(m.mode, S_IFREG | 0o644);
        assert_eq!((m.uid, m.gid), (OWNER_UNSET, OWNER_UNSET));
        assert_eq!(m.ctime, m.mtime);
        assert!(
            ns(m.mtime) > 1_700_000_000_000_000_000,
            "mtime {:?}",
            m.mtime
        );
        want.insert(key, (value, Meta::file(ns(m.mtime))));
    }
    verify(&s, &want, "opened");
    for gone in [&b"gone"[..], b"old-name"] {
        assert_eq!(s.get(gone).expect("get"), None);
    }

    // 2. New writes go to a new version-3 segment, and keep no metadata.
    s.put(b"a/b/c", b"target/of/link").expect("put");
    want.insert(b"a/b/c".to_vec(), (b"target/of/link".to_vec(), NONE));
    s.put_from(b"\0not a path//", 5, &mut &b"bytes"[..])
        .expect("put_from");
    want.insert(b"\0not a path//".to_vec(), (b"bytes".to_vec(), NONE));
    s.write_batch(&[BatchOp::Put(b"a/b", b""), BatchOp::Delete(b"late")])
        .expect("batch");
    want.insert(b"a/b".to_vec(), (Vec::new(), NONE));
    want.remove(&b"late"[..]);
    // A version-1 value rewritten, and one moved: their new records have
    // no metadata.
    s.put(b"alpha", b"third alpha").expect("put");
    want.insert(b"alpha".to_vec(), (b"third alpha".to_vec(), NONE));
    move_value(&s, &mut want, b"beta", b"moved/beta");
    s.delete(b"empty").expect("delete");
    want.remove(&b"empty"[..]);
    verify(&s, &want, "after the writes");
    s.close().expect("close");

    assert_eq!(
        segment_ids(&dir),
        vec![1, 2, 3],
        "the version-1 active segment was closed"
    );
    assert_eq!(versions(&dir), (vec![1, 1, 3], vec![1, 3]));
    for id in [1, 2] {
        assert_eq!(
            fs::read(seg_path(&dir, id)).expect("segment"),
            fs::read(seg_path(Path::new(FIXTURE), id)).expect("fixture"),
            "version-1 segment {id} was changed"
        );
    }
    assert_check_clean(&dir, "after the writes");

    // 3. Reopened: the same.
    let s = Store::open(&dir, small_opts()).expect("reopen");
    verify(&s, &want, "reopened");

    // 4. A merge of everything while the old metadata is needed: the
    // version-1 records are rewritten as version 2, their metadata spelt
    // out, and the version-3 ones too (as what they read as).
    s.roll().expect("roll");
    let report = s.compact().expect("compact").expect("something to merge");
    assert_eq!(report.inputs, vec![1, 2, 3]);
    verify(&s, &want, "merged");
    s.close().expect("close");
    let (segs, hints) = versions(&dir);
    assert_merged_beside_the_active(&segs);
    assert!(hints.iter().all(|&v| v == 3), "hint versions {hints:?}");
    assert_check_clean(&dir, "after the merge");

    // 5. Reopened after the merge: the same again, from the new hints and
    // from a scan.
    let s = Store::open(&dir, small_opts()).expect("reopen after the merge");
    verify(&s, &want, "reopened after the merge");
    s.close().expect("close");
    for id in segment_ids(&dir) {
        let _ = fs::remove_file(hint_path(&dir, id));
    }
    let s = Store::open(&dir, small_opts()).expect("reopen by scan");
    verify(&s, &want, "reopened by scan");

    // 6. Carried over: the next merge writes version 3, and the metadata
    // is gone with the old records.
    merged_once_carried_over(&dir, s, &want);
}

/// Says `s` is carried over, merges everything, and checks that every
/// segment is then version 3 and every key reads as `want` without
/// metadata, before and after a reopen; `check` clean.
fn merged_once_carried_over(dir: &Path, s: Store, want: &Want) {
    s.metadata_carried_over();
    s.roll().expect("roll");
    s.compact().expect("compact").expect("something to merge");
    let want = without_metadata(want);
    verify(&s, &want, "merged after the carry-over");
    s.close().expect("close");
    let (segs, hints) = versions(dir);
    assert!(segs.iter().all(|&v| v == 3), "segment versions {segs:?}");
    assert!(hints.iter().all(|&v| v == 3), "hint versions {hints:?}");
    assert_check_clean(dir, "after the last merge");
    for id in segment_ids(dir) {
        let _ = fs::remove_file(hint_path(dir, id));
    }
    let s = Store::open(dir, small_opts()).expect("reopen by scan");
    verify(&s, &want, "reopened by scan after the carry-over");
    s.close().expect("close");
    assert_check_clean(dir, "at the end");
}

/// The version-2 fixture (a mount's files, folders and symlinks, with
/// their own modes, owners and times) reads with each record's metadata,
/// and merges keep it until the store is carried over.
#[test]
fn a_version_2_store_reads_with_its_metadata_and_merges_keep_it() {
    let tmp = tempdir();
    let dir = tmp.path().join("data");
    copy_dir(Path::new(V2_FIXTURE), &dir);
    assert_eq!(versions(&dir), (vec![2, 2, 2], vec![2, 2]));
    assert_check_clean(&dir, "the fixture as it is");

    let s = Store::open(&dir, small_opts()).expect("open the fixture");
    let mut want = snapshot(&s);
    // Some of what the fixture's README says each path was.
    let secs = |t: u64| t * 1_000_000_000;
    for (key, mode, uid, gid) in [
        (&b"private/key"[..], S_IFREG | 0o644, 1000, 100),
        (b"private", S_IFDIR | 0o700, 0, 0),
        (b"setgid", S_IFDIR | 0o2775, 0, 0),
        (b"shop/products/42", S_IFREG | 0o600, 0, 0),
        (b"link-to-greeting", S_IFLNK | 0o777, 0, 0),
    ] {
        let (_, m) = &want[key];
        let name = String::from_utf8_lossy(key);
        assert_eq!((m.mode, m.uid, m.gid), (mode, uid, gid), "{name}");
    }
    assert_eq!(want[&b"link-to-greeting"[..]].0, b"greeting");
    let greeting = want[&b"greeting"[..]].1;
    assert_eq!(
        greeting.mtime / secs(1),
        981_173_106,
        "touch -d of greeting"
    );
    assert!(greeting.ctime > greeting.mtime);
    verify(&s, &want, "opened");

    // Writes beside the old records; the version-2 active segment was
    // closed at the open.
    s.put(b"new", b"written after").expect("put");
    want.insert(b"new".to_vec(), (b"written after".to_vec(), NONE));
    move_value(&s, &mut want, b"rewritten", b"moved");
    s.close().expect("close");
    assert_eq!(versions(&dir).0, vec![2, 2, 2, 3]);

    // A merge while the metadata is needed writes version 2 and keeps it.
    let s = Store::open(&dir, small_opts()).expect("reopen");
    verify(&s, &want, "reopened");
    s.roll().expect("roll");
    s.compact().expect("compact").expect("something to merge");
    verify(&s, &want, "merged");
    s.close().expect("close");
    let (segs, _) = versions(&dir);
    assert_merged_beside_the_active(&segs);
    assert_check_clean(&dir, "after the merge");

    // Still needed after a reopen (the merged segments are version 2).
    let s = Store::open(&dir, small_opts()).expect("reopen after the merge");
    verify(&s, &want, "reopened after the merge");
    merged_once_carried_over(&dir, s, &want);
}

/// `check --repair` of damage in a version-1 segment: the damaged record
/// goes, a tombstone (in that segment's own layout) takes its place, and
/// the rest of the store reads as before.
#[test]
fn a_damaged_version_1_segment_is_repaired_in_its_own_version() {
    let tmp = tempdir();
    let dir = tmp.path().join("data");
    copy_dir(Path::new(FIXTURE), &dir);
    let seg1 = seg_path(&dir, 1);
    let mut bytes = fs::read(&seg1).expect("segment");
    let at = bytes
        .windows(10)
        .position(|w| w == b"beta value")
        .expect("the value of beta");
    bytes[at + 3] ^= 0x20;
    fs::write(&seg1, &bytes).expect("write");
    assert!(!check(&dir).expect("check").is_clean(), "damage not found");

    let report = caskfs::engine::repair(&dir).expect("repair");
    assert_eq!(report.lost_values, vec![b"beta".to_vec()], "{report}");
    assert_check_clean(&dir, "after the repair");
    assert_eq!(file_version(&seg1), 1);
    let (recs, end) = parse_segment(&fs::read(&seg1).expect("segment"));
    assert_eq!(end as u64, fs::metadata(&seg1).expect("stat").len());
    assert!(
        recs.iter()
            .flat_map(|r| &r.items)
            .any(|i| i.key == b"beta" && i.value.is_none()),
        "no tombstone for the lost key"
    );

    let mut want = fixture_contents();
    want.remove(&b"beta"[..]);
    let s = Store::open(&dir, small_opts()).expect("open");
    assert_eq!(contents(&s), want);
    s.roll().expect("roll");
    s.compact().expect("compact");
    assert_eq!(contents(&s), want);
    s.close().expect("close");
    assert_check_clean(&dir, "after a merge");
}
