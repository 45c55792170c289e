//! Rename is one batch record: cut the log at every byte inside it and
//! reopen; the result is either the old names (source present, destination
//! with its old value or absent) or the new state — never both or neither.

mod engine_common;

use std::fs::{self, OpenOptions};
use std::path::Path;

use engine_common::{Rng, copy_dir, open, parse_segment, seg_path, segment_ids, tempdir};

/// Builds a store, renames `src` to `dst` as its last change, and checks
/// every cut inside the rename's record (or every `step`-th one).
fn rename_cut_everywhere(src_len: usize, dst_old: Option<usize>, step: usize) {
    let base = tempdir();
    let mut rng = Rng::new(src_len as u64);
    let src_value = rng.bytes(src_len);
    let dst_value = dst_old.map(|n| rng.bytes(n));
    let s = open(base.path());
    s.put(b"bystander", b"unchanged").expect("put");
    s.put(b"source", &src_value).expect("put");
    if let Some(v) = &dst_value {
        s.put(b"destination-with-a-longer-name", v).expect("put");
    }
    s.roll().expect("roll"); // the rename copies from a closed segment
    s.put(b"before", b"rename").expect("put");
    s.rename(b"source", b"destination-with-a-longer-name")
        .expect("rename");
    s.close().expect("close");

    let id = *segment_ids(base.path()).last().expect("segment");
    let seg = fs::read(seg_path(base.path(), id)).expect("segment");
    let (recs, end) = parse_segment(&seg);
    assert_eq!(end, seg.len());
    let rename = recs.last().expect("rename record");
    assert!(rename.batch, "a rename is one batch record");
    assert_eq!(rename.items.len(), 2);

    let scratch = tempdir();
    let mut cuts: Vec<usize> = (rename.start..rename.end).step_by(step).collect();
    // Always the edges of the inner records too.
    for it in &rename.items {
        cuts.extend([it.start, it.start + 1, it.end - 1, it.end]);
    }
    cuts.push(rename.end - 1);
    cuts.retain(|&c| c < rename.end);
    cuts.sort_unstable();
    cuts.dedup();
    for cut in cuts.into_iter().chain([rename.end]) {
        let d = scratch.path().join("copy");
        let _ = fs::remove_dir_all(&d);
        copy_dir(base.path(), &d);
        OpenOptions::new()
            .write(true)
            .open(seg_path(&d, id))
            .and_then(|f| f.set_len(cut as u64))
            .expect("truncate");
        check_state(&d, cut == rename.end, &src_value, dst_value.as_deref(), cut);
    }
}

fn check_state(d: &Path, done: bool, src: &[u8], dst_old: Option<&[u8]>, cut: usize) {
    let s = open(d);
    let got_src = s.get(b"source").expect("get source");
    let got_dst = s
        .get(b"destination-with-a-longer-name")
        .expect("get destination");
    let what = format!("log cut at {cut} ({})", if done { "whole" } else { "torn" });
    if done {
        assert!(
            got_src.is_none() && got_dst.as_deref() == Some(src),
            "{what}: the rename is whole but not applied"
        );
    } else {
        assert!(
            got_src.as_deref() == Some(src) && got_dst.as_deref() == dst_old,
            "{what}: source {:?} bytes, destination {:?} bytes: half a rename",
            got_src.map(|v| v.len()),
            got_dst.map(|v| v.len())
        );
    }
    assert_eq!(
        s.get(b"bystander").expect("get"),
        Some(b"unchanged".to_vec())
    );
    assert_eq!(s.get(b"before").expect("get"), Some(b"rename".to_vec()));
}

#[test]
fn torn_rename_over_an_existing_key_is_all_or_nothing() {
    rename_cut_everywhere(150, Some(40), 1);
}

#[test]
fn torn_rename_to_a_new_name_is_all_or_nothing() {
    rename_cut_everywhere(1, None, 1);
}

#[test]
fn torn_rename_of_a_large_streamed_value_is_all_or_nothing() {
    rename_cut_everywhere((1 << 20) + 4321, Some(10), 9973);
}

#[test]
fn rename_errors_leave_everything_in_place() {
    let d = tempdir();
    let s = open(d.path());
    s.put(b"a", b"1").expect("put");
    assert!(matches!(
        s.rename(b"missing", b"a"),
        Err(caskfs::engine::Error::NotFound { .. })
    ));
    assert!(matches!(
        s.rename(b"a", b"bad//name"),
        Err(caskfs::engine::Error::InvalidKey { .. })
    ));
    s.rename(b"a", b"a").expect("rename onto itself");
    assert_eq!(s.get(b"a").expect("get"), Some(b"1".to_vec()));
    assert_eq!(s.keys(), vec![b"a".to_vec()]);
}
