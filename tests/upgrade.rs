//! A data directory from before files became inodes, names and extents
//! (keys that were paths) is carried over at its first open: the fixture
//! an old build wrote mounts with every file, folder, link, mode, owner
//! and time as that build listed them, and a carry-over killed at any
//! moment finishes at the next open with nothing lost.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use caskfs::engine::{Options, Store};
use common::{BIN, Library, Mount};

/// What `tests/fixtures/README.md` says the old build printed of its
/// mount, run again in `mnt`.
const LISTING: &str = r#"cd mnt && find . -mindepth 1 | LC_ALL=C sort | while IFS= read -r p; do
  if [ -L "$p" ]; then echo "$p link $(stat -c '%a %u %g' "$p") -> $(readlink "$p")";
  elif [ -d "$p" ]; then echo "$p dir $(stat -c '%a %u %g' "$p")";
  else echo "$p file $(stat -c '%a %u %g %s %Y' "$p") $(sha256sum < "$p" | cut -c1-16)"; fi
done"#;

fn copy_fixture(to: &Path) {
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v2-store"),
        to,
    );
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn check(data: &Path) -> String {
    let out = Command::new(BIN).arg("check").arg(data).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "check: {text}");
    text
}

#[test]
fn a_store_from_before_the_schema_mounts_with_every_file_as_it_was() {
    require_fuse!();
    let root = common::temp_root();
    let data = fs::canonicalize(root.path()).unwrap().join("data");
    copy_fixture(&data);
    let want = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v2-store.expected"),
    )
    .unwrap();
    let mut m = Mount::start_with(root, data.clone(), &[]);
    assert_eq!(m.ok(LISTING), want);
    assert!(m.log().contains("is carried over"), "{}", m.log());
    // It takes changes as any store does, also to what was carried over.
    m.ok("echo more >> mnt/notes.txt && mv mnt/shop mnt/store && ln mnt/greeting mnt/hard");
    assert_eq!(m.ok("cat mnt/store/products/42 mnt/hard"), "7\nhello\n");
    m.unmount();
    m.take_log();
    let report = check(&data);
    assert!(
        report.contains("filesystem: 9 folders, 14 other files; clean"),
        "{report}"
    );
    // Once carried over, a mount opens it as it is.
    m.mount();
    assert!(!m.log().contains("carrying"), "{}", m.log());
    assert_eq!(m.ok("tail -n 1 mnt/notes.txt"), "more\n");
    m.unmount();
}

/// The bytes of old key `i`.
fn value(i: usize) -> Vec<u8> {
    let len = [5, 300, 5000, 70_000][i % 4];
    (0..len).map(|j| (i * 31 + j) as u8).collect()
}

fn key(i: usize) -> String {
    format!("d{}/sub{}/f{i}", i % 7, i % 3)
}

const FILES: usize = 3000;

#[test]
fn a_carry_over_killed_at_any_moment_finishes_at_the_next_open() {
    let root = common::temp_root();
    let data = root.path().join("data");
    let opts = Options {
        max_segment_size: 1 << 20,
        compaction: false,
        ..Options::default()
    };
    let s = Store::open(&data, opts).unwrap();
    for i in 0..FILES {
        s.put(key(i).as_bytes(), &value(i)).unwrap();
    }
    s.close().unwrap();

    // `caskfs ls` carries the store over too. How long that takes, on a
    // copy; then tries killed at a tenth of it, two tenths, and so on, in
    // the copy or the clearing that follows.
    let ls = |dir: &Path| {
        Command::new(BIN)
            .args(["ls", "-r"])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let probe = root.path().join("probe");
    copy_dir(&data, &probe);
    let started = Instant::now();
    assert!(ls(&probe).wait().unwrap().success());
    let whole = started.elapsed();
    let mut killed = 0;
    for tenth in 1..=9 {
        let mut child = ls(&data);
        std::thread::sleep(whole * tenth / 10);
        let _ = child.kill();
        killed += usize::from(!child.wait().unwrap().success());
    }
    eprintln!("a carry-over takes {whole:?}; {killed} of 9 tries were killed");
    assert!(killed > 0);
    let lib = Library::open(&data).unwrap();
    assert_eq!(lib.files().len(), FILES);
    for i in 0..FILES {
        assert_eq!(lib.read(&key(i)).unwrap(), Some(value(i)), "{}", key(i));
    }
    lib.close();
    let report = check(&data);
    assert!(
        report.contains(&format!(
            "filesystem: 29 folders, {FILES} other files; clean"
        )),
        "{report}"
    );
}
