//! Values staged in a file of their own (`Store::stage`, `put_staged`): one
//! of half a segment or more becomes the active segment whole; a smaller
//! one, or one staged for a key of another length, is copied. Either way
//! the value reads back, survives a reopen and passes `check`; an adopted
//! value cut short by a power loss is a torn tail that opening cuts, and a
//! staged file left by a crash is removed.

mod engine_common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use caskfs::engine::{Meta, Staged, Store, check};
use engine_common::{Rng, copy_dir, open, seg_path, segment_ids, small_opts, tempdir};

/// `small_opts` segments are 4096 bytes: values of 2048 or more are adopted.
const ADOPTED_LEN: usize = 10_000;

const MTIME_NS: u64 = 1_700_000_000_000_000_000;

fn meta() -> Meta {
    Meta::file(MTIME_NS)
}

/// Stages `value` for a key of `key_len` bytes, written in uneven pieces
/// out of order (the last piece first, so the file has its length early).
fn staged(store: &Store, key_len: usize, value: &[u8]) -> Staged {
    let mut s = store.stage(key_len).unwrap();
    let cut = value.len() * 2 / 3;
    s.write_at(cut as u64, &value[cut..]).unwrap();
    for (i, piece) in value[..cut].chunks(777).enumerate() {
        s.write_at((i * 777) as u64, piece).unwrap();
    }
    assert_eq!(s.len(), value.len() as u64);
    s
}

/// Stages `value` written in order from the start, as `cp` writes.
fn staged_in_order(store: &Store, key_len: usize, value: &[u8]) -> Staged {
    let mut s = store.stage(key_len).unwrap();
    for (i, piece) in value.chunks(4096).enumerate() {
        s.write_at((i * 4096) as u64, piece).unwrap();
    }
    s
}

/// Staged files not (yet) segments: named after the segment they would be.
fn staged_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".seg.tmp"))
        .collect()
}

fn assert_checks_clean(dir: &Path) {
    let report = check(dir).unwrap();
    assert!(report.is_clean(), "check: {report:?}");
}

#[test]
fn a_value_of_half_a_segment_becomes_the_active_segment_whole() {
    let dir = tempdir();
    let store = open(dir.path());
    store.put(b"big", b"old").unwrap();
    store.put(b"small", b"s").unwrap();
    let value = Rng::new(1).bytes(ADOPTED_LEN);
    let before = segment_ids(dir.path());
    let s = staged_in_order(&store, 3, &value);
    let staged_name = staged_files(dir.path()).pop().expect("the staged file");
    let staged_ino = fs::metadata(dir.path().join(&staged_name)).unwrap().ino();
    assert!(
        store.put_staged(b"big", s, &meta()).unwrap().is_none(),
        "copied"
    );
    assert_eq!(store.get(b"big").unwrap().as_deref(), Some(&value[..]));
    assert_eq!(store.get(b"small").unwrap().as_deref(), Some(&b"s"[..]));
    let mtime = store.metadata(b"big").unwrap().unwrap().mtime;
    assert_eq!(
        mtime,
        std::time::UNIX_EPOCH + std::time::Duration::from_nanos(MTIME_NS)
    );

    // The new segment is the staged file itself (not a copy), holding its
    // header, the record and nothing else.
    let ids = segment_ids(dir.path());
    let new: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|i| !before.contains(i))
        .collect();
    assert_eq!(new.len(), 1, "{before:?} -> {ids:?}");
    let seg = fs::metadata(seg_path(dir.path(), new[0])).unwrap();
    assert_eq!(seg.ino(), staged_ino, "{staged_name} was copied");
    let len = seg.len();
    let record = engine_common::RECORD_HEADER_LEN + 3 + ADOPTED_LEN;
    assert_eq!(len as usize, engine_common::SEGMENT_HEADER_LEN + record);
    assert_eq!(staged_files(dir.path()), Vec::<String>::new());

    // Writes go on (the next one rolls past the adopted segment).
    store.put(b"after", b"a").unwrap();
    assert_eq!(store.get(b"big").unwrap().as_deref(), Some(&value[..]));
    store.close().unwrap();
    assert_checks_clean(dir.path());
    let store = open(dir.path());
    assert_eq!(store.get(b"big").unwrap().as_deref(), Some(&value[..]));
    assert_eq!(store.get(b"after").unwrap().as_deref(), Some(&b"a"[..]));
}

#[test]
fn a_smaller_value_is_copied_and_its_file_comes_back_for_more_writes() {
    let dir = tempdir();
    let store = open(dir.path());
    let mut value = Rng::new(2).bytes(1000);
    let s = staged(&store, 3, &value);
    let mut s = store
        .put_staged(b"key", s, &meta())
        .unwrap()
        .expect("a value under half a segment is copied");
    assert_eq!(store.get(b"key").unwrap().as_deref(), Some(&value[..]));

    // The same file grows past half a segment: now it is adopted.
    let more = Rng::new(3).bytes(ADOPTED_LEN);
    s.write_at(value.len() as u64, &more).unwrap();
    value.extend_from_slice(&more);
    assert!(store.put_staged(b"key", s, &meta()).unwrap().is_none());
    assert_eq!(store.get(b"key").unwrap().as_deref(), Some(&value[..]));

    // Written in order, then partly rewritten, or extended by set_len:
    // the record's CRC still covers the bytes as they are.
    let mut value = Rng::new(7).bytes(ADOPTED_LEN);
    let mut s = staged_in_order(&store, 3, &value);
    s.write_at(5000, b"rewritten").unwrap();
    value[5000..5009].copy_from_slice(b"rewritten");
    assert!(store.put_staged(b"key", s, &meta()).unwrap().is_none());
    assert_eq!(store.get(b"key").unwrap().as_deref(), Some(&value[..]));
    let mut s = staged_in_order(&store, 3, &value);
    s.set_len(value.len() as u64 + 300).unwrap();
    value.resize(value.len() + 300, 0);
    assert!(store.put_staged(b"key", s, &meta()).unwrap().is_none());
    assert_eq!(store.get(b"key").unwrap().as_deref(), Some(&value[..]));

    // Cut back below the mark, it is copied again.
    let mut s = staged(&store, 3, &value);
    s.set_len(100).unwrap();
    assert!(store.put_staged(b"key", s, &meta()).unwrap().is_some());
    assert_eq!(store.get(b"key").unwrap().as_deref(), Some(&value[..100]));
    store.close().unwrap();
    assert_checks_clean(dir.path());
    assert!(staged_files(dir.path()).is_empty());
}

/// A key renamed while its writer had it open commits under a name of
/// another length: the room left in front of the value does not fit it.
#[test]
fn a_value_staged_for_another_key_length_is_copied() {
    let dir = tempdir();
    let store = open(dir.path());
    let value = Rng::new(4).bytes(ADOPTED_LEN);
    let s = staged(&store, 3, &value);
    assert!(store.put_staged(b"renamed", s, &meta()).unwrap().is_some());
    assert_eq!(store.get(b"renamed").unwrap().as_deref(), Some(&value[..]));
    store.close().unwrap();
    assert_checks_clean(dir.path());
}

/// The adopted segment is the active one until the next write rolls it,
/// and it is not synced: a power loss may leave any prefix of it past its
/// header (synced before the MANIFEST named the file). Each such prefix,
/// and a flipped byte in the value, opens as a torn tail: the key keeps
/// its older value and every other key is whole.
#[test]
fn an_adopted_value_cut_by_a_power_loss_is_a_torn_tail() {
    let dir = tempdir();
    let src = dir.path().join("src");
    let store = open(&src);
    store.put(b"big", b"older").unwrap();
    store.put(b"other", b"kept").unwrap();
    store.roll().unwrap();
    let value = Rng::new(5).bytes(ADOPTED_LEN);
    let s = staged(&store, 3, &value);
    assert!(store.put_staged(b"big", s, &meta()).unwrap().is_none());
    let active = *segment_ids(&src).iter().max().unwrap();
    // The state on disk had the daemon died here.
    let crashed = dir.path().join("crashed");
    copy_dir(&src, &crashed);
    drop(store);

    let full = fs::metadata(seg_path(&crashed, active)).unwrap().len();
    let header = engine_common::SEGMENT_HEADER_LEN as u64;
    for keep in [header, header + 10, header + 60, full / 2, full - 1] {
        let case = dir.path().join(format!("cut{keep}"));
        copy_dir(&crashed, &case);
        let seg = fs::OpenOptions::new()
            .write(true)
            .open(seg_path(&case, active))
            .unwrap();
        seg.set_len(keep).unwrap();
        let store = open(&case);
        assert_eq!(store.get(b"big").unwrap().as_deref(), Some(&b"older"[..]));
        assert_eq!(store.get(b"other").unwrap().as_deref(), Some(&b"kept"[..]));
    }
    let case = dir.path().join("flipped");
    copy_dir(&crashed, &case);
    let path = seg_path(&case, active);
    let mut bytes = fs::read(&path).unwrap();
    bytes[full as usize - 5000] ^= 0x10;
    fs::write(&path, bytes).unwrap();
    let store = open(&case);
    assert_eq!(store.get(b"big").unwrap().as_deref(), Some(&b"older"[..]));

    let store = open(&crashed);
    assert_eq!(store.get(b"big").unwrap().as_deref(), Some(&value[..]));
}

/// The daemon dies with a staged file still being written: the next open
/// removes it, and the store holds what it held.
#[test]
fn a_staged_file_left_by_a_crash_is_removed_at_open() {
    let dir = tempdir();
    let store = open(dir.path());
    store.put(b"k", b"v").unwrap();
    let s = staged(&store, 1, &Rng::new(6).bytes(ADOPTED_LEN));
    std::mem::forget(s);
    drop(store);
    assert_eq!(staged_files(dir.path()).len(), 1);
    let store = Store::open(dir.path(), small_opts()).unwrap();
    assert!(staged_files(dir.path()).is_empty());
    assert_eq!(store.keys(), vec![b"k".to_vec()]);
    assert_eq!(store.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
}
