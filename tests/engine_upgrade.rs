//! A data directory written before format version 2 (the fixture in
//! `tests/fixtures/v1-store`, described in `tests/fixtures/README.md`)
//! opens and reads as it did, with the metadata a version-1 record stands
//! for; new writes go into version-2 segments beside the old ones; a merge
//! rewrites everything as version 2; `check` is clean at every step.

mod engine_common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use caskfs::engine::{
    BatchOp, DEFAULT_MODE, Meta, Metadata, OWNER_UNSET, Options, S_IFDIR, S_IFLNK, S_IFREG, Store,
    check,
};
use engine_common::{
    RecMeta, contents, copy_dir, hint_path, parse_segment, seg_path, segment_ids, segment_version,
    small_opts, tempdir,
};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/v1-store");

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

/// What a key's metadata must be.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// A version-1 record (or a plain put): default mode and owner, and
    /// ctime equal to this mtime.
    Default(u64),
    Exactly(Meta),
    /// Renamed: all kept but the ctime, which is the rename's.
    Moved(Meta),
}

fn assert_meta(key: &[u8], m: &Metadata, want: Expect, what: &str) {
    let name = String::from_utf8_lossy(key);
    let got = m.meta();
    match want {
        Expect::Default(mtime) => assert_eq!(got, Meta::file(mtime), "{what}: {name}"),
        Expect::Exactly(meta) => assert_eq!(got, meta, "{what}: {name}"),
        Expect::Moved(meta) => {
            assert_eq!(
                Meta {
                    ctime: meta.ctime,
                    ..got
                },
                meta,
                "{what}: {name}"
            );
            assert!(got.ctime > meta.ctime, "{what}: {name}: ctime not moved on");
        }
    }
}

/// Every key reads back its value, and its metadata as expected, through
/// `metadata` and through a pinned `Value`.
fn verify(s: &Store, want: &BTreeMap<Vec<u8>, (Vec<u8>, Expect)>, what: &str) {
    let values: BTreeMap<Vec<u8>, Vec<u8>> = want
        .iter()
        .map(|(k, (v, _))| (k.clone(), v.clone()))
        .collect();
    assert_eq!(contents(s), values, "{what}: contents");
    for (key, (value, expect)) in want {
        let m = s.metadata(key).expect("metadata").expect("live key");
        assert_eq!(m.len, value.len() as u64, "{what}: length");
        assert_meta(key, &m, *expect, what);
        let pinned = s.value(key).expect("value").expect("live key");
        assert_eq!(pinned.metadata(), m, "{what}: a pinned value's metadata");
        assert_eq!(pinned.read(0, value.len() + 1).expect("read"), *value);
    }
}

fn assert_check_clean(dir: &Path, what: &str) {
    let report = check(dir).expect("check");
    assert!(report.is_clean(), "{what}: check found damage:\n{report}");
}

/// The format versions in the headers of the segment files and hint files.
fn versions(dir: &Path) -> (Vec<u32>, Vec<u32>) {
    let ids = segment_ids(dir);
    let segs = ids
        .iter()
        .map(|&id| segment_version(&fs::read(seg_path(dir, id)).expect("segment")))
        .collect();
    let hints = ids
        .iter()
        .filter_map(|&id| fs::read(hint_path(dir, id)).ok())
        .map(|h| segment_version(&h))
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
fn a_version_1_store_reads_takes_version_2_writes_and_is_merged_into_version_2() {
    let tmp = tempdir();
    let dir = tmp.path().join("data");
    copy_dir(Path::new(FIXTURE), &dir);
    assert_check_clean(&dir, "the fixture as it is");

    // 1. It opens; every key reads back with the version-1 defaults.
    let s = Store::open(&dir, small_opts()).expect("open the fixture");
    let mut want: BTreeMap<Vec<u8>, (Vec<u8>, Expect)> = BTreeMap::new();
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
        want.insert(key, (value, Expect::Default(ns(m.mtime))));
    }
    verify(&s, &want, "opened");
    for gone in [&b"gone"[..], b"old-name"] {
        assert_eq!(s.get(gone).expect("get"), None);
    }

    // 2. New writes, with paths and metadata, go to a new version-2 segment.
    let link = Meta {
        mode: S_IFLNK | 0o777,
        uid: 1000,
        gid: 100,
        mtime: 1_600_000_000_123_456_789,
        ctime: 1_600_000_001_000_000_000,
    };
    let folder = Meta {
        mode: S_IFDIR | 0o1755,
        uid: 0,
        gid: 0,
        mtime: 1_500_000_000_000_000_000,
        ctime: 1_500_000_000_000_000_001,
    };
    s.put_with(b"a/b/c", b"target/of/link", &link)
        .expect("put_with");
    want.insert(
        b"a/b/c".to_vec(),
        (b"target/of/link".to_vec(), Expect::Exactly(link)),
    );
    s.put(b"dir/plain", b"plain").expect("put");
    let plain = s.metadata(b"dir/plain").expect("metadata").expect("live");
    want.insert(
        b"dir/plain".to_vec(),
        (b"plain".to_vec(), Expect::Default(ns(plain.mtime))),
    );
    s.write_batch(&[
        BatchOp::PutWith(b"a/b", b"", folder),
        BatchOp::Delete(b"late"),
    ])
    .expect("batch");
    want.insert(b"a/b".to_vec(), (Vec::new(), Expect::Exactly(folder)));
    want.remove(&b"late"[..]);
    // A version-1 record's metadata changed: rewritten as version 2.
    let owned = Meta {
        mode: S_IFREG | 0o600,
        uid: 42,
        gid: 43,
        ..Meta::file(1_650_000_000_000_000_000)
    };
    s.set_meta(b"alpha", &owned).expect("set_meta");
    want.get_mut(&b"alpha"[..]).expect("alpha").1 = Expect::Exactly(owned);
    // A version-1 value renamed: it keeps what it read as, but its ctime.
    let (value, Expect::Default(mtime)) = want.remove(&b"beta"[..]).expect("beta") else {
        panic!("beta has the defaults");
    };
    s.rename(b"beta", b"moved/beta").expect("rename");
    want.insert(
        b"moved/beta".to_vec(),
        (value, Expect::Moved(Meta::file(mtime))),
    );
    s.delete(b"empty").expect("delete");
    want.remove(&b"empty"[..]);
    verify(&s, &want, "after the writes");
    s.close().expect("close");

    let ids = segment_ids(&dir);
    assert_eq!(
        ids,
        vec![1, 2, 3],
        "the version-1 active segment was closed"
    );
    assert_eq!(versions(&dir), (vec![1, 1, 2], vec![1, 2]));
    for id in [1, 2] {
        assert_eq!(
            fs::read(seg_path(&dir, id)).expect("segment"),
            fs::read(seg_path(Path::new(FIXTURE), id)).expect("fixture"),
            "version-1 segment {id} was changed"
        );
    }
    let (recs, _) = parse_segment(&fs::read(seg_path(&dir, 3)).expect("segment"));
    let link_rec = recs
        .iter()
        .flat_map(|r| &r.items)
        .find(|i| i.key == b"a/b/c")
        .expect("the new record");
    assert_eq!(
        (link_rec.meta.mode, link_rec.meta.uid, link_rec.meta.ctime),
        (link.mode, link.uid, link.ctime)
    );
    assert_check_clean(&dir, "after the writes");

    // 3. Reopened: the same.
    let s = Store::open(&dir, small_opts()).expect("reopen");
    verify(&s, &want, "reopened");

    // 4. A merge of everything rewrites the version-1 records as version 2.
    s.roll().expect("roll");
    let report = s.compact().expect("compact").expect("something to merge");
    assert_eq!(report.inputs, vec![1, 2, 3]);
    verify(&s, &want, "merged");
    s.close().expect("close");
    let (segs, hints) = versions(&dir);
    assert!(segs.iter().all(|&v| v == 2), "segment versions {segs:?}");
    assert!(hints.iter().all(|&v| v == 2), "hint versions {hints:?}");
    assert_check_clean(&dir, "after the merge");
    // The former version-1 records now spell their metadata out.
    let merged: Vec<_> = segment_ids(&dir)
        .into_iter()
        .flat_map(|id| parse_segment(&fs::read(seg_path(&dir, id)).expect("segment")).0)
        .flat_map(|r| r.items)
        .collect();
    for key in [&b"binary"[..], b"new-name", UNICODE_KEY.as_bytes()] {
        let item = merged.iter().find(|i| i.key == key).expect("merged record");
        let Expect::Default(mtime) = want[key].1 else {
            panic!("default metadata expected");
        };
        assert_eq!(item.meta, RecMeta::default_at(mtime));
        assert_eq!(item.meta.mode, DEFAULT_MODE);
    }

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
    s.close().expect("close");
    assert_check_clean(&dir, "at the end");
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
    assert_eq!(segment_version(&fs::read(&seg1).expect("segment")), 1);
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
