//! The store's tree of folders against a model: seeded random puts of
//! files, folders and symlinks at path keys, deletes and renames, checked
//! after every step by listing every folder, and across reopens (from
//! hints and by scanning) and merges.

use std::collections::{BTreeMap, BTreeSet};

use caskfs::engine::{EntryKind, Meta, Options, S_IFDIR, S_IFLNK, Store};

/// A small xorshift generator: the same seed, the same run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn kind_of(meta: &Meta) -> EntryKind {
    EntryKind::of_mode(meta.mode)
}

/// The listing of every folder the live records imply.
fn listings(model: &BTreeMap<Vec<u8>, EntryKind>) -> BTreeMap<Vec<u8>, Vec<(Vec<u8>, EntryKind)>> {
    let mut out: BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, EntryKind>> = BTreeMap::new();
    out.insert(Vec::new(), BTreeMap::new());
    for (key, kind) in model {
        if *kind == EntryKind::Folder {
            out.entry(key.clone()).or_default();
        }
        // Every folder above the key holds the next component.
        let mut at = 0;
        let mut dir: Vec<u8> = Vec::new();
        loop {
            let rest = &key[at..];
            match rest.iter().position(|&b| b == b'/') {
                Some(i) => {
                    let name = rest[..i].to_vec();
                    out.entry(dir.clone())
                        .or_default()
                        .insert(name, EntryKind::Folder);
                    dir = key[..at + i].to_vec();
                    at += i + 1;
                }
                None => {
                    out.entry(dir.clone())
                        .or_default()
                        .insert(rest.to_vec(), *kind);
                    break;
                }
            }
        }
    }
    out.into_iter()
        .map(|(d, e)| (d, e.into_iter().collect()))
        .collect()
}

fn check(store: &Store, model: &BTreeMap<Vec<u8>, EntryKind>, step: usize) {
    let want = listings(model);
    for (dir, entries) in &want {
        let got = store.list(dir).unwrap_or_else(|| {
            panic!(
                "step {step}: {} is not a folder",
                String::from_utf8_lossy(dir)
            )
        });
        assert_eq!(
            &got,
            entries,
            "step {step}: folder {}",
            String::from_utf8_lossy(dir)
        );
        let folders = entries.iter().filter(|e| e.1 == EntryKind::Folder).count() as u32;
        assert_eq!(store.folder_counts(dir), (entries.len(), folders));
    }
    // Keys that are no folder list as none.
    for (key, kind) in model {
        if *kind != EntryKind::Folder && !want.contains_key(key) {
            assert!(store.list(key).is_none(), "step {step}");
            assert_eq!(store.kind(key), Some(*kind), "step {step}");
        }
    }
}

/// Whether `key` may hold a file: no record or implied folder is at it or
/// below it, and no file is above it.
fn free_for_file(model: &BTreeMap<Vec<u8>, EntryKind>, key: &[u8]) -> bool {
    let below = |k: &Vec<u8>| k.len() > key.len() && k.starts_with(key) && k[key.len()] == b'/';
    let above = |k: &Vec<u8>, kind: &EntryKind| {
        *kind != EntryKind::Folder
            && key.len() > k.len()
            && key.starts_with(k)
            && key[k.len()] == b'/'
    };
    !model
        .iter()
        .any(|(k, kind)| k.as_slice() == key || below(k) || above(k, kind))
}

#[test]
fn folders_follow_every_change_and_survive_reopens_and_merges() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        max_segment_size: 16 << 10,
        ..Options::default()
    };
    let mut store = Store::open(dir.path(), opts.clone()).unwrap();
    let mut model: BTreeMap<Vec<u8>, EntryKind> = BTreeMap::new();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let names = ["a", "b", "c"];
    let path = |rng: &mut Rng| {
        let depth = 1 + rng.below(3) as usize;
        (0..depth)
            .map(|_| names[rng.below(3) as usize])
            .collect::<Vec<_>>()
            .join("/")
            .into_bytes()
    };
    for step in 0..3000 {
        let key = path(&mut rng);
        match rng.below(10) {
            0..=3 if free_for_file(&model, &key) => {
                let mode = if rng.below(4) == 0 {
                    S_IFLNK | 0o777
                } else {
                    0o100_600
                };
                let meta = Meta {
                    mode,
                    ..Meta::file(1)
                };
                store.put_with(&key, b"v", &meta).unwrap();
                model.insert(key, kind_of(&meta));
            }
            4..=5 if free_for_file(&model, &key) || model.get(&key) == Some(&EntryKind::Folder) => {
                let meta = Meta {
                    mode: S_IFDIR | 0o755,
                    ..Meta::file(1)
                };
                store.put_with(&key, b"", &meta).unwrap();
                model.insert(key, EntryKind::Folder);
            }
            6..=7 if model.contains_key(&key) => {
                store.delete(&key).unwrap();
                model.remove(&key);
            }
            8 if model.get(&key).is_some_and(|k| *k != EntryKind::Folder) => {
                let to = path(&mut rng);
                if free_for_file(&model, &to) {
                    store.rename(&key, &to).unwrap();
                    let kind = model.remove(&key).unwrap();
                    model.insert(to, kind);
                }
            }
            9 => {
                if rng.below(20) == 0 {
                    store.compact().unwrap();
                } else if rng.below(20) == 0 {
                    store.close().unwrap();
                    store = Store::open(dir.path(), opts.clone()).unwrap();
                }
            }
            _ => {}
        }
        check(&store, &model, step);
    }
    // By scanning: without hints.
    store.close().unwrap();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "hint") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let store = Store::open(dir.path(), opts).unwrap();
    check(&store, &model, usize::MAX);
}

#[test]
fn a_subtree_is_listed_within_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    for key in ["d/x", "d/e/y", "d/e/f/z", "other"] {
        store.put(key.as_bytes(), b"v").unwrap();
    }
    let mut below: Vec<_> = store
        .below(b"d", 10)
        .unwrap()
        .into_iter()
        .map(|e| e.0)
        .collect();
    below.sort();
    let want: BTreeSet<&[u8]> = [&b"d/e"[..], b"d/e/f", b"d/e/f/z", b"d/e/y", b"d/x"].into();
    assert_eq!(
        below,
        want.into_iter().map(|k| k.to_vec()).collect::<Vec<_>>()
    );
    assert!(store.below(b"d", 4).is_none());
}
