//! `caskfs check --repair`: damaged hints are rewritten, damaged byte
//! ranges of segments are moved aside into `lost+found/`, the rest is
//! served again, and the keys that lost their latest value are named.

mod reliability_common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use caskfs::engine::{LOST_AND_FOUND, Options, Store};
use reliability_common::{BIN, Mount, check, fuse_available};

fn opts() -> Options {
    Options {
        max_segment_size: 4096,
        compaction: false,
        ..Options::default()
    }
}

fn value(key: &str, version: u32) -> Vec<u8> {
    format!("<{key}@{version}>").repeat(30).into_bytes()
}

/// Keys written once, beside `k7` (in the segment the first test
/// damages, but not in its damaged range).
const KEPT: [&str; 2] = ["kept/mode", "kept"];

/// Keys k0..k19 written twice (the second time in later segments), k5
/// deleted at the end (its older value is in an earlier segment), and a
/// last segment with a few more writes. Every segment is 4 KiB.
fn build(dir: &Path) {
    let s = Store::open(dir, opts()).unwrap();
    for v in 1..=2 {
        for i in 0..20 {
            let k = format!("k{i}");
            if v == 2 && i == 7 {
                for key in KEPT {
                    s.put(key.as_bytes(), b"kept").unwrap();
                }
            }
            s.put(k.as_bytes(), &value(&k, v)).unwrap();
        }
    }
    s.put(b"only-once", &value("only-once", 1)).unwrap();
    s.delete(b"k5").unwrap();
    s.roll().unwrap();
    s.put(b"tail", &value("tail", 1)).unwrap();
    s.close().unwrap();
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

/// (segment, offset) of the newest record holding `needle`.
fn find(dir: &Path, needle: &[u8]) -> (PathBuf, usize) {
    let mut found = None;
    for seg in segments(dir) {
        let bytes = fs::read(&seg).unwrap();
        if let Some(at) = bytes.windows(needle.len()).rposition(|w| w == needle) {
            found = Some((seg, at));
        }
    }
    found.expect("needle not found")
}

fn flip(path: &Path, at: usize) {
    let mut b = fs::read(path).unwrap();
    b[at] ^= 0x5a;
    fs::write(path, b).unwrap();
}

fn repair(dir: &Path) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["check", "--repair"])
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn open(dir: &Path, o: Options) -> Store {
    reliability_common::open_store(dir, o).unwrap()
}

fn get(dir: &Path, key: &str) -> Result<Option<Vec<u8>>, String> {
    let s = open(
        dir,
        Options {
            read_only: true,
            create_if_missing: false,
            ..opts()
        },
    );
    s.get(key.as_bytes()).map_err(|e| e.to_string())
}

fn lost_and_found(dir: &Path) -> Vec<Vec<u8>> {
    fs::read_dir(dir.join(LOST_AND_FOUND))
        .map(|d| d.map(|e| fs::read(e.unwrap().path()).unwrap()).collect())
        .unwrap_or_default()
}

/// Everything but `lost` reads as built; `lost` reads as absent.
fn assert_served(dir: &Path, lost: &[&str]) {
    for i in 0..20 {
        let k = format!("k{i}");
        let want = if i == 5 || lost.contains(&k.as_str()) {
            None
        } else {
            Some(value(&k, 2))
        };
        assert_eq!(get(dir, &k).unwrap(), want, "{k}");
    }
    for k in ["only-once", "tail"] {
        let want = (!lost.contains(&k)).then(|| value(k, 1));
        assert_eq!(get(dir, k).unwrap(), want, "{k}");
    }
    let s = open(
        dir,
        Options {
            read_only: true,
            ..opts()
        },
    );
    for key in KEPT {
        let v = s.get(key.as_bytes()).unwrap();
        assert_eq!(
            v.as_deref(),
            Some(&b"kept"[..]),
            "{key}: kept through the repair"
        );
    }
}

/// After a repair: check is clean, opening (writable) keeps lost+found,
/// the store takes writes, and a second repair has nothing to do.
fn assert_repaired_and_stable(dir: &Path) {
    let (clean, report) = check(dir);
    assert!(clean, "{report}");
    let kept = lost_and_found(dir);
    let s = open(dir, opts());
    s.put(b"after-repair", b"works").unwrap();
    s.close().unwrap();
    assert_eq!(lost_and_found(dir), kept, "lost+found changed by an open");
    assert_eq!(
        get(dir, "after-repair").unwrap().as_deref(),
        Some(&b"works"[..])
    );
    let (ok, out) = repair(dir);
    assert!(ok && out.contains("nothing to repair"), "{out}");
}

#[test]
fn a_damaged_value_in_a_closed_segment_is_moved_aside_and_its_key_named() {
    let d = tempfile::tempdir().unwrap();
    build(d.path());
    let needle = value("k7", 2);
    let (seg, at) = find(d.path(), &needle);
    assert_eq!(
        find(d.path(), b"kept/mode").0,
        seg,
        "rewritten by the repair"
    );
    flip(&seg, at + 30);
    let (clean, report) = check(d.path());
    assert!(!clean, "{report}");
    assert!(get(d.path(), "k7").is_err(), "damage must read as an error");
    let (ok, out) = repair(d.path());
    assert!(ok, "{out}");
    assert!(out.contains("LOST: key \"k7\""), "{out}");
    assert_eq!(out.matches("LOST").count(), 1, "{out}");
    assert!(out.contains("moved aside"), "{out}");
    let saved = lost_and_found(d.path());
    assert_eq!(saved.len(), 1);
    assert!(
        saved[0].len() > needle.len(),
        "the whole damaged record is kept"
    );
    assert_served(d.path(), &["k7"]);
    assert_repaired_and_stable(d.path());
}

#[test]
fn an_unreadable_header_is_named_through_the_hint() {
    let d = tempfile::tempdir().unwrap();
    build(d.path());
    let needle = value("k3", 2);
    let (seg, at) = find(d.path(), &needle);
    // The flags byte of the record (at 12 of a version-3 header): the
    // header and 2 key bytes before the value.
    let record = at - caskfs::engine::RECORD_HEADER_LEN - 2;
    flip(&seg, record + 12);
    let (ok, out) = repair(d.path());
    assert!(ok, "{out}");
    assert!(out.contains("LOST: key \"k3\""), "{out}");
    assert_served(d.path(), &["k3"]);
    assert_repaired_and_stable(d.path());
}

#[test]
fn a_damaged_deletion_keeps_its_key_deleted() {
    let d = tempfile::tempdir().unwrap();
    build(d.path());
    // k5's tombstone: the last record of the next-to-last segment.
    let segs = segments(d.path());
    let seg = &segs[segs.len() - 2];
    let len = fs::metadata(seg).unwrap().len() as usize;
    flip(seg, len - 1);
    let (ok, out) = repair(d.path());
    assert!(ok, "{out}");
    assert!(out.contains("key \"k5\": its deletion"), "{out}");
    assert!(!out.contains("LOST: key"), "{out}");
    assert_served(d.path(), &[]);
    assert_repaired_and_stable(d.path());
}

#[test]
fn damage_to_a_superseded_record_loses_nothing() {
    let d = tempfile::tempdir().unwrap();
    build(d.path());
    let needle = value("k9", 1);
    let (seg, at) = find(d.path(), &needle);
    flip(&seg, at + 40);
    let (ok, out) = repair(d.path());
    assert!(ok, "{out}");
    assert!(!out.contains("LOST"), "{out}");
    assert!(out.contains("moved aside"), "{out}");
    assert_served(d.path(), &[]);
    assert_repaired_and_stable(d.path());
}

#[test]
fn bad_missing_and_mismatched_hints_are_rewritten() {
    let d = tempfile::tempdir().unwrap();
    build(d.path());
    let mut hints: Vec<PathBuf> = fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "hint"))
        .collect();
    hints.sort();
    assert!(hints.len() >= 3);
    // A valid hint of another segment in place of the third: wrong id inside.
    fs::copy(&hints[0], &hints[2]).unwrap();
    flip(&hints[0], 10);
    fs::remove_file(&hints[1]).unwrap();
    let (ok, out) = repair(d.path());
    assert!(ok, "{out}");
    assert!(out.contains("3 hints rewritten"), "{out}");
    assert!(
        !out.contains("LOST:") && !out.contains("moved aside:"),
        "{out}"
    );
    assert_served(d.path(), &[]);
    assert_repaired_and_stable(d.path());
}

#[test]
fn a_closed_segment_cut_short_names_the_keys_past_the_cut() {
    let d = tempfile::tempdir().unwrap();
    build(d.path());
    let needle = value("only-once", 1);
    let (seg, at) = find(d.path(), &needle);
    let f = fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(at as u64 + 5).unwrap();
    drop(f);
    let (ok, out) = repair(d.path());
    assert!(ok, "{out}");
    assert!(out.contains("LOST: key \"only-once\""), "{out}");
    // k5's deletion came after it in the same segment: kept deleted.
    assert!(out.contains("key \"k5\": its deletion"), "{out}");
    assert_served(d.path(), &["only-once"]);
    assert_repaired_and_stable(d.path());
}

#[test]
fn a_repaired_store_mounts_and_serves_the_rest() {
    if !fuse_available() {
        return;
    }
    let mut m = Mount::start(&["--max-segment-size", "4096"]);
    m.ok("for i in $(seq 1 60); do printf 'value-%s-%0200d' $i 0 > mnt/k$i; done");
    m.unmount();
    let (seg, at) = find(&m.data, b"value-17-0000");
    flip(&seg, at + 50);
    let (ok, out) = repair(&m.data);
    assert!(ok, "{out}");
    // The engine names the damaged record; the filesystem, the file.
    assert!(out.contains("LOST: \"k17\""), "{out}");
    m.mount();
    assert!(m.fails("cat mnt/k17").contains("No such file"));
    assert_eq!(m.ok("ls mnt | wc -l").trim(), "59");
    assert!(m.ok("cat mnt/k18").starts_with("value-18-"));
    m.ok("echo again > mnt/k17");
    m.unmount();
    let (clean, report) = check(&m.data);
    assert!(clean, "{report}");
    assert_eq!(lost_and_found(&m.data).len(), 1);
}
