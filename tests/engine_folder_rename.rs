//! `Store::rename_folder`: everything below a folder moves in one batch
//! record, keeping values and metadata; a crash at any byte of that record
//! leaves the whole old tree or the whole new one; beyond its bounds it
//! moves nothing.

mod engine_common;

use std::collections::BTreeMap;
use std::fs::OpenOptions;

use caskfs::engine::{
    EntryKind, Error, MAX_RENAME_ENTRIES, Meta, Options, S_IFDIR, S_IFLNK, Store,
};
use engine_common::{contents, copy_dir, open, parse_segment, seg_path, segment_ids, tempdir};

fn folder(mode: u32) -> Meta {
    Meta {
        mode: S_IFDIR | mode,
        ..Meta::file(1)
    }
}

/// `a` (a folder with a record, mode 0700) holding files, a symlink and
/// an implied folder `a/b`; and `ab/k` beside it, which must not move.
fn fill(store: &Store) {
    store.put_with(b"a", b"", &folder(0o700)).unwrap();
    store.put(b"a/x", b"x value").unwrap();
    store.put(b"a/b/y", b"y value").unwrap();
    let link = Meta {
        mode: S_IFLNK | 0o777,
        ..Meta::file(2)
    };
    store.put_with(b"a/l", b"x", &link).unwrap();
    store.put(b"ab/k", b"stays").unwrap();
}

fn renamed(old: &BTreeMap<Vec<u8>, Vec<u8>>) -> BTreeMap<Vec<u8>, Vec<u8>> {
    old.iter()
        .map(|(k, v)| {
            let k = match k.strip_prefix(b"a") {
                Some(rest) if rest.is_empty() || rest[0] == b'/' => [b"z", rest].concat(),
                _ => k.clone(),
            };
            (k, v.clone())
        })
        .collect()
}

#[test]
fn a_folder_moves_with_everything_below_and_keeps_metadata() {
    let dir = tempdir();
    let store = open(dir.path());
    fill(&store);
    let before = contents(&store);
    let link_meta = store.metadata(b"a/l").unwrap().unwrap();
    let moved = store.rename_folder(b"a", b"z", &folder(0o755)).unwrap();
    assert_eq!(moved, 4, "x, l, b and b/y");
    let expect = renamed(&before);
    assert_eq!(contents(&store), expect);
    assert_eq!(store.list(b"a"), None);
    assert_eq!(
        store.list(b"z").unwrap(),
        vec![
            (b"b".to_vec(), EntryKind::Folder),
            (b"l".to_vec(), EntryKind::Symlink),
            (b"x".to_vec(), EntryKind::File),
        ]
    );
    let z = store.metadata(b"z").unwrap().unwrap();
    assert_eq!(z.mode, S_IFDIR | 0o700, "the folder keeps its own mode");
    assert!(z.ctime > z.mtime, "its ctime is the rename's");
    let l = store.metadata(b"z/l").unwrap().unwrap();
    assert_eq!((l.mode, l.mtime), (link_meta.mode, link_meta.mtime));
    drop(store);
    let store = open(dir.path());
    assert_eq!(contents(&store), expect, "after reopening");
    store.compact().unwrap();
    assert_eq!(contents(&store), expect, "after a merge");
    assert_eq!(store.kind(b"z/b"), Some(EntryKind::Folder));
}

#[test]
fn an_implied_folder_gets_a_record_of_its_own() {
    let dir = tempdir();
    let store = open(dir.path());
    store.put(b"c/k", b"v").unwrap();
    store.put_with(b"d", b"", &folder(0o755)).unwrap();
    // Onto an empty folder: it is replaced.
    store.rename_folder(b"c", b"d", &folder(0o751)).unwrap();
    assert_eq!(store.get(b"d/k").unwrap().unwrap(), b"v");
    assert_eq!(store.metadata(b"d").unwrap().unwrap().mode, S_IFDIR | 0o751);
    assert_eq!(store.kind(b"c"), None);
    let missing = store.rename_folder(b"nothing", b"e", &folder(0o755));
    assert!(
        matches!(missing, Err(Error::NotFound { .. })),
        "{missing:?}"
    );
}

#[test]
fn beyond_the_bounds_nothing_moves() {
    let dir = tempdir();
    let opts = Options {
        max_value_size: 4096,
        compaction: false,
        ..Options::default()
    };
    let store = Store::open(dir.path(), opts).unwrap();
    for i in 0..3 {
        store
            .put(format!("big/{i}").as_bytes(), &[7; 2000])
            .unwrap();
    }
    let before = contents(&store);
    let r = store.rename_folder(b"big", b"moved", &folder(0o755));
    assert!(matches!(r, Err(Error::FolderTooLarge { .. })), "{r:?}");
    assert_eq!(contents(&store), before);

    for i in 0..=MAX_RENAME_ENTRIES {
        store.put(format!("many/{i}").as_bytes(), b"").unwrap();
    }
    let r = store.rename_folder(b"many", b"moved", &folder(0o755));
    assert!(matches!(r, Err(Error::FolderTooLarge { .. })), "{r:?}");
    assert_eq!(store.kind(b"moved"), None);
    assert_eq!(store.folder_counts(b"many").0, MAX_RENAME_ENTRIES + 1);
}

#[test]
fn a_crash_inside_the_rename_leaves_the_old_tree_or_the_new() {
    let dir = tempdir();
    let opts = Options {
        compaction: false,
        ..Options::default()
    };
    let store = Store::open(dir.path(), opts.clone()).unwrap();
    fill(&store);
    for i in 0..20 {
        store.put(format!("a/b/{i}").as_bytes(), &[i; 300]).unwrap();
    }
    store.sync().unwrap();
    let old = contents(&store);
    let id = *segment_ids(dir.path()).last().unwrap();
    let log_end = || {
        let data = std::fs::read(seg_path(dir.path(), id)).unwrap();
        parse_segment(&data).1 as u64
    };
    let start = log_end();
    store.rename_folder(b"a", b"z", &folder(0o755)).unwrap();
    store.sync().unwrap();
    let new = contents(&store);
    let end = log_end();
    drop(store);
    assert!(
        end > start + 6000,
        "the batch is in the same segment: {start}..{end}"
    );
    let (mut olds, mut news) = (0, 0);
    for cut in (start..=end).step_by(97).chain([end - 1, end]) {
        let copy = tempdir();
        copy_dir(dir.path(), copy.path());
        for stale in segment_ids(copy.path()).into_iter().filter(|&s| s > id) {
            std::fs::remove_file(seg_path(copy.path(), stale)).unwrap();
        }
        let _ = std::fs::remove_file(copy.path().join(format!("{id:016}.hint")));
        OpenOptions::new()
            .write(true)
            .open(seg_path(copy.path(), id))
            .and_then(|f| f.set_len(cut))
            .unwrap();
        let store = Store::open(copy.path(), opts.clone()).unwrap();
        let now = contents(&store);
        if now == old {
            olds += 1;
        } else if now == new {
            news += 1;
        } else {
            panic!("cut at {cut} of {start}..{end}: a mix of the old and new trees");
        }
    }
    assert!(olds > 0 && news > 0, "{olds} old, {news} new");
}
