//! The filesystem's check and repair, and a shared backend's garbage
//! collection, on the in-memory backend: records are removed by hand, as
//! damage that the engine's repair moved aside would remove them.

use std::sync::Arc;
use std::time::Duration;

use caskfs::backend::{Batch, Kv, Memory};
use caskfs::fs::{CaskFs, FsOptions, Owner, Problem};
use caskfs::schema::keys;
use caskfs::vocab::FileType;

fn opts(shared: bool) -> FsOptions {
    FsOptions {
        owner: Owner { uid: 0, gid: 0 },
        read_only: false,
        cache_reads: false,
        shared,
        max_file_size: 1 << 40,
    }
}

fn open(kv: &Arc<Memory>, shared: bool) -> CaskFs {
    CaskFs::load(kv.clone() as Arc<dyn Kv>, opts(shared)).expect("open")
}

fn read(fs: &CaskFs, path: &str) -> Vec<u8> {
    let mut out = Vec::new();
    fs.read_path(path.as_bytes(), &mut |b| {
        out.extend_from_slice(b);
        Ok(())
    })
    .unwrap_or_else(|e| panic!("{path}: {e}"));
    out
}

fn ino(fs: &CaskFs, path: &str) -> u64 {
    fs.resolve(path.as_bytes()).expect(path).0
}

fn remove(kv: &Memory, key: Vec<u8>) {
    let mut b = Batch::default();
    b.delete(key);
    kv.write(b).unwrap();
}

/// Ones, a megabyte and more: a file with a tree of several extents.
fn big() -> Vec<u8> {
    (0..3_000_000u32).map(|i| (i % 251) as u8 + 1).collect()
}

#[test]
fn check_names_damage_by_path_and_repair_leaves_a_whole_tree() {
    let kv = Arc::new(Memory::default());
    let fs = open(&kv, false);
    fs.write_path(b"a", &mut &b"small"[..]).unwrap();
    fs.write_path(b"big", &mut big().as_slice()).unwrap();
    fs.write_path(b"d/x", &mut &b"in d"[..]).unwrap();
    fs.write_path(b"d/e/y", &mut &b"deeper"[..]).unwrap();
    fs.write_path(b"gone/z", &mut &b"z"[..]).unwrap();
    let found = fs.check().unwrap();
    assert!(found.problems.is_empty(), "{found}");
    assert_eq!((found.folders, found.files), (4, 5), "{found}");

    // One file's record, one extent, a folder's record, the name of a
    // folder's entry, and a link count.
    let (a, d, gone) = (ino(&fs, "a"), ino(&fs, "d"), ino(&fs, "gone"));
    let extent = kv
        .keys(keys::extent_prefix())
        .unwrap()
        .into_iter()
        .nth(1)
        .expect("big has extents");
    remove(&kv, keys::inode(a).to_vec());
    remove(&kv, extent);
    remove(&kv, keys::inode(d).to_vec());
    remove(&kv, keys::entry(keys::ROOT, b"gone"));
    drop(fs);

    let fs = open(&kv, false);
    let found = fs.check().unwrap();
    let shown = found.to_string();
    assert!(shown.contains("LOST: \"a\""), "{shown}");
    assert!(shown.contains("DAMAGED: \"big\": bytes "), "{shown}");
    assert!(
        shown.contains("folder \"d\": its record was damaged"),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("folder {gone} lost its name")),
        "{shown}"
    );
    assert!(
        found
            .problems
            .iter()
            .any(|p| matches!(p, Problem::Links { .. })),
        "the root counts one subfolder less: {shown}"
    );
    fs.repair(&found).unwrap();
    drop(fs);

    let fs = open(&kv, false);
    let after = fs.check().unwrap();
    assert!(after.problems.is_empty(), "{after}");
    assert!(fs.resolve(b"a").is_err(), "the lost file's name went");
    assert_eq!(read(&fs, "d/x"), b"in d");
    assert_eq!(read(&fs, "d/e/y"), b"deeper");
    assert_eq!(fs.resolve(b"d").unwrap().1, FileType::Directory);
    assert_eq!(read(&fs, &format!("lost+found/#{gone}/z")), b"z");
    // The bytes of the lost extent read as zeros, the rest as written.
    let (want, got) = (big(), read(&fs, "big"));
    assert_eq!(got.len(), want.len());
    let zeros = got.iter().zip(&want).filter(|(g, w)| g != w).count();
    assert!(zeros > 0 && got.iter().filter(|&&b| b == 0).count() == zeros);
    // What only the damaged tree reached went with the repair.
    let reach = fs.reachable_keys().unwrap();
    let left: Vec<_> = kv
        .dump()
        .into_keys()
        .filter(|k| !reach.contains(k))
        .collect();
    assert!(left.is_empty(), "unreached after the repair: {left:?}");
}

/// What nothing reaches on a shared backend (another host may still read
/// it) goes once two collections a grace apart both found it unreached.
#[test]
fn a_shared_backend_collects_what_stayed_unreached_for_a_grace() {
    let kv = Arc::new(Memory::default());
    let fs = open(&kv, true);
    let unreached = || {
        let reach = fs.reachable_keys().unwrap();
        let mut keys = kv.keys(keys::extent_prefix()).unwrap();
        keys.extend(kv.keys(keys::node_prefix()).unwrap());
        keys.retain(|k| !reach.contains(k));
        keys
    };
    fs.write_path(b"f", &mut big().as_slice()).unwrap();
    fs.write_path(b"f", &mut &b"short"[..]).unwrap();
    let old = unreached();
    assert!(
        !old.is_empty(),
        "a rewrite on a shared backend frees nothing"
    );
    let hour = Duration::from_secs(3600);
    assert_eq!(fs.collect_garbage(hour).unwrap(), 0, "the first only looks");
    assert_eq!(
        fs.collect_garbage(hour).unwrap(),
        0,
        "an hour has not passed"
    );
    assert_eq!(unreached(), old);

    // A grace of nothing stands for an hour later: what the first look
    // saw goes, what became garbage after it waits for the next.
    let mut w = fs.writer(b"open").unwrap();
    w.write(&big()).unwrap();
    fs.write_path(b"g", &mut big().as_slice()).unwrap();
    fs.remove_path(b"g").unwrap();
    let young: Vec<_> = unreached()
        .into_iter()
        .filter(|k| !old.contains(k))
        .collect();
    assert!(!young.is_empty());
    assert_eq!(fs.collect_garbage(Duration::ZERO).unwrap(), old.len());
    assert_eq!(unreached(), young);
    assert_eq!(fs.collect_garbage(Duration::ZERO).unwrap(), young.len());
    assert!(unreached().is_empty());
    // A draft's extents, written behind before its commit, are kept.
    w.finish().unwrap();
    assert_eq!(read(&fs, "open"), big());
    assert_eq!(read(&fs, "f"), b"short");
}
