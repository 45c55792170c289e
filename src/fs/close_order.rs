//! The order of closes, driven without a kernel: the kernel sends a
//! release after close(2) has returned, so it may arrive after another
//! handle's close.

use std::sync::Arc;

use super::attr::{Owner, ROOT_INO};
use super::bitcask::Bitcask;
use super::fs::{CaskFs, FsOptions};
use crate::engine::{self, Store};

fn mounted() -> (tempfile::TempDir, Arc<Store>, CaskFs) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), engine::Options::default()).unwrap());
    let opts = FsOptions {
        owner: Owner::current(),
        read_only: false,
        cache_reads: false,
        shared: false,
    };
    let fs = CaskFs::new(Arc::new(Bitcask::new(store.clone())), opts);
    (dir, store, fs)
}

/// `k` holding "old", a writer with "newer" not yet closed, and an
/// `O_TRUNC` open that writes nothing, closed first.
fn writer_and_truncation(store: &Store, fs: &CaskFs) -> (u64, u64) {
    store.put(b"k", b"old").unwrap();
    let ino = fs.lookup(ROOT_INO, b"k", 0).unwrap().ino;
    // Two processes: the writer, and the one truncating.
    let writer = fs.open(ino, libc::O_WRONLY, 1).unwrap().fh;
    fs.write(writer, 0, b"newer", false, Some(1)).unwrap();
    let trunc = fs.open(ino, libc::O_WRONLY | libc::O_TRUNC, 2).unwrap().fh;
    fs.flush(trunc, 2, 2).unwrap();
    (writer, trunc)
}

#[test]
fn a_late_release_does_not_undo_a_later_close() {
    let (_dir, store, fs) = mounted();
    let (writer, trunc) = writer_and_truncation(&store, &fs);
    fs.flush(writer, 1, 1).unwrap();
    fs.release(writer).unwrap();
    fs.release(trunc).unwrap();
    assert_eq!(store.get(b"k").unwrap().unwrap(), b"newer");
}

#[test]
fn a_release_before_the_other_close_truncates_first() {
    let (_dir, store, fs) = mounted();
    let (writer, trunc) = writer_and_truncation(&store, &fs);
    fs.release(trunc).unwrap();
    assert_eq!(store.get(b"k").unwrap().unwrap(), b"");
    fs.flush(writer, 1, 1).unwrap();
    fs.release(writer).unwrap();
    assert_eq!(store.get(b"k").unwrap().unwrap(), b"newer");
}

/// A shell's `: > k` closes a dup first: its second flush is the close
/// the user sees, and here it is the latest.
#[test]
fn a_second_flush_commits_the_truncation_after_another_close() {
    let (_dir, store, fs) = mounted();
    let (writer, trunc) = writer_and_truncation(&store, &fs);
    fs.flush(writer, 1, 1).unwrap();
    fs.release(writer).unwrap();
    fs.flush(trunc, 2, 2).unwrap();
    assert_eq!(store.get(b"k").unwrap().unwrap(), b"");
    fs.release(trunc).unwrap();
    assert_eq!(store.get(b"k").unwrap().unwrap(), b"");
}

/// A child that inherited the writer's descriptor closes it (at exec
/// or exit) without having written: the writer's changes stay its own.
#[test]
fn a_close_by_a_process_that_never_wrote_does_not_commit() {
    let (_dir, store, fs) = mounted();
    store.put(b"k", b"old").unwrap();
    let ino = fs.lookup(ROOT_INO, b"k", 0).unwrap().ino;
    let fh = fs.open(ino, libc::O_WRONLY, 1).unwrap().fh;
    fs.write(fh, 0, b"new", false, Some(10)).unwrap();
    fs.flush(fh, 20, 20).unwrap();
    assert_eq!(store.get(b"k").unwrap().unwrap(), b"old");
    fs.flush(fh, 10, 1).unwrap();
    assert_eq!(store.get(b"k").unwrap().unwrap(), b"new");
    // An empty start flushed once by each of two tables stays
    // uncommitted; the second flush of one table commits it.
    let t = fs.open(ino, libc::O_WRONLY | libc::O_TRUNC, 1).unwrap().fh;
    fs.flush(t, 20, 20).unwrap();
    fs.flush(t, 30, 30).unwrap();
    assert_eq!(store.get(b"k").unwrap().unwrap(), b"new");
    fs.flush(t, 20, 20).unwrap();
    assert_eq!(store.get(b"k").unwrap().unwrap(), b"");
    fs.release(t).unwrap();
    fs.release(fh).unwrap();
}

/// rsync's way: write, close, then set the time by path. The release the
/// kernel sends after that close may come after the time was set; the
/// time must stay.
#[test]
fn a_time_set_after_close_survives_a_late_release() {
    let (_dir, store, fs) = mounted();
    store.put(b"k", b"old").unwrap();
    let ino = fs.lookup(ROOT_INO, b"k", 0).unwrap().ino;
    let fh = fs.open(ino, libc::O_WRONLY | libc::O_TRUNC, 1).unwrap().fh;
    fs.write(fh, 0, b"new", false, Some(1)).unwrap();
    fs.flush(fh, 1, 1).unwrap();
    let then = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    let touch = super::fs::SetAttr {
        mtime: Some(then),
        ..Default::default()
    };
    fs.setattr(ino, touch, 1).unwrap();
    fs.release(fh).unwrap();
    assert_eq!(store.get(b"k").unwrap().unwrap(), b"new");
    assert_eq!(fs.getattr(ino, None, 1).unwrap().mtime, then);
}

/// An open that an rm raced gets ESTALE, which the kernel retries once
/// after looking the name up again; should the retry meet the same race, a
/// reader gets ENOENT, never a second ESTALE, and a writer opens the removed
/// file, whose writes go with it (`echo v > k` must not fail). Another
/// thread's race is its own.
#[test]
fn an_open_raced_twice_by_removals_gets_enoent_or_the_removed_file() {
    let (_dir, store, fs) = mounted();
    let removed = || {
        store.put(b"k", b"v").unwrap();
        let ino = fs.lookup(ROOT_INO, b"k", 0).unwrap().ino;
        fs.unlink(ROOT_INO, b"k").unwrap();
        ino
    };
    let inos: Vec<u64> = (0..5).map(|_| removed()).collect();
    let errno =
        |r: crate::fs::Result<super::fs::Opened>| r.map(|o| o.fh).map_err(|e| crate::fs::errno(&e));
    assert_eq!(
        errno(fs.open(inos[0], libc::O_RDONLY, 7)),
        Err(libc::ESTALE)
    );
    assert_eq!(
        errno(fs.open(inos[1], libc::O_WRONLY, 8)),
        Err(libc::ESTALE)
    );
    assert_eq!(
        errno(fs.open(inos[2], libc::O_RDONLY, 7)),
        Err(libc::ENOENT)
    );
    let fh = errno(fs.open(inos[3], libc::O_WRONLY | libc::O_TRUNC, 8)).unwrap();
    fs.write(fh, 0, b"lost", false, Some(8)).unwrap();
    fs.flush(fh, 8, 8).unwrap();
    fs.release(fh).unwrap();
    assert_eq!(
        store.get(b"k").unwrap(),
        None,
        "the writes went with the key"
    );
    store.put(b"k", b"v").unwrap();
    let ino = fs.lookup(ROOT_INO, b"k", 0).unwrap().ino;
    assert!(fs.open(ino, libc::O_RDONLY, 7).is_ok());
    assert_eq!(
        errno(fs.open(inos[4], libc::O_RDONLY, 7)),
        Err(libc::ESTALE),
        "a success ends the retry"
    );
}

/// A stat through a name the kernel looked up before an rm shows the file
/// as it was, with no link left, as a local filesystem may; the kernel's
/// permission check of an open racing the rm gets the same, so the open
/// itself meets the race (and a writer's `>` never fails for it).
#[test]
fn a_removed_file_keeps_its_last_attributes() {
    let (_dir, store, fs) = mounted();
    store.put(b"k", b"value").unwrap();
    let ino = fs.lookup(ROOT_INO, b"k", 0).unwrap().ino;
    fs.unlink(ROOT_INO, b"k").unwrap();
    let a = fs.getattr(ino, None, 1).unwrap();
    assert_eq!((a.size, a.nlink), (5, 0));
    store.put(b"j", b"v").unwrap();
    let j = fs.lookup(ROOT_INO, b"j", 0).unwrap().ino;
    store.put(b"k2", b"new").unwrap();
    fs.rename(ROOT_INO, b"k2", ROOT_INO, b"j", 0).unwrap();
    let replaced = fs.getattr(j, None, 1).unwrap();
    assert_eq!((replaced.size, replaced.nlink), (1, 0), "mv over it");
}
