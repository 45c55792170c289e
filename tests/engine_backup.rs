//! `Store::backup` against the store it copies: a backup opens as a data
//! directory of its own holding exactly the source's live keys and values,
//! also when merges have given segments ids out of their age order.

mod engine_common;

use std::collections::BTreeSet;

use engine_common::{Rng, contents, open, tempdir};

/// A merge's output takes an id newer than the active segment's, yet its
/// records are older than those written to that segment afterwards: a
/// backup that ordered segments by id restored the older value.
#[test]
fn a_key_written_after_a_merge_keeps_its_new_value_in_the_backup() {
    let dir = tempdir();
    let (src, dest) = (dir.path().join("src"), dir.path().join("dest"));
    let store = open(&src);
    store.put(b"k", b"old").unwrap();
    store.roll().unwrap();
    store.put(b"other", b"1").unwrap();
    store.roll().unwrap();
    let merge = store.compact().unwrap().expect("two closed segments merge");
    let active = merge.inputs.iter().max().unwrap() + 1;
    assert!(
        merge.outputs.iter().all(|&o| o > active),
        "the test needs an output id above the active segment's: {merge:?}"
    );
    store.put(b"k", b"new").unwrap();
    store.backup(&dest).unwrap();
    assert_eq!(store.get(b"k").unwrap().as_deref(), Some(&b"new"[..]));
    drop(store);
    let copy = open(&dest);
    assert_eq!(copy.get(b"k").unwrap().as_deref(), Some(&b"new"[..]));
    assert_eq!(copy.get(b"other").unwrap().as_deref(), Some(&b"1"[..]));
}

/// Random puts (some larger than a segment), deletes, rolls and merges,
/// with a backup into the same directory now and then (each one
/// incremental over the last): every backup opens with the source's
/// contents at that moment.
#[test]
fn every_backup_holds_the_contents_of_its_moment() {
    for seed in 1..=4u64 {
        let mut rng = Rng::new(seed);
        let dir = tempdir();
        let (src, dest) = (dir.path().join("src"), dir.path().join("dest"));
        let store = open(&src);
        for step in 0..600 {
            let key = format!("k{}", rng.below(40));
            match rng.below(20) {
                0 => store.roll().unwrap(),
                1 => {
                    store.compact().unwrap();
                }
                2 => {
                    let _ = store.delete(key.as_bytes());
                }
                3 if step > 100 => {
                    store.backup(&dest).unwrap();
                    let want = contents(&store);
                    let got = contents(&open(&dest));
                    let wrong: BTreeSet<String> = want
                        .keys()
                        .chain(got.keys())
                        .filter(|k| want.get(*k) != got.get(*k))
                        .map(|k| String::from_utf8_lossy(k).into_owned())
                        .collect();
                    assert!(
                        wrong.is_empty(),
                        "seed {seed}, step {step}: {wrong:?} differ"
                    );
                }
                // Often too large to share a segment.
                4 => {
                    let len = 2048 + rng.below(4000) as usize;
                    store.put(key.as_bytes(), &rng.bytes(len)).unwrap();
                }
                _ => {
                    let len = rng.below(300) as usize;
                    store.put(key.as_bytes(), &rng.bytes(len)).unwrap();
                }
            }
        }
    }
}
