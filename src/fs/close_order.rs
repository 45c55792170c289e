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
/// after looking the name up again; should the retry meet the same race,
/// it gets ENOENT, never a second ESTALE. Another thread's race is its own.
#[test]
fn an_open_raced_twice_by_removals_gets_enoent() {
    let (_dir, store, fs) = mounted();
    let removed = || {
        store.put(b"k", b"v").unwrap();
        let ino = fs.lookup(ROOT_INO, b"k", 0).unwrap().ino;
        fs.unlink(ROOT_INO, b"k").unwrap();
        ino
    };
    let (first, retry, other) = (removed(), removed(), removed());
    let errno = |r: crate::fs::Result<_>| {
        r.map(|_: super::fs::Opened| ())
            .map_err(|e| crate::fs::errno(&e))
    };
    assert_eq!(errno(fs.open(first, libc::O_RDONLY, 7)), Err(libc::ESTALE));
    assert_eq!(errno(fs.open(other, libc::O_WRONLY, 8)), Err(libc::ESTALE));
    assert_eq!(errno(fs.open(retry, libc::O_WRONLY, 7)), Err(libc::ENOENT));
    store.put(b"k", b"v").unwrap();
    let ino = fs.lookup(ROOT_INO, b"k", 0).unwrap().ino;
    assert!(fs.open(ino, libc::O_RDONLY, 8).is_ok());
    assert_eq!(
        errno(fs.open(first, libc::O_RDONLY, 8)),
        Err(libc::ESTALE),
        "a success ends the retry"
    );
}
