//! The key-value interface on the embedded Bitcask log (`engine::Store`)
//! in a local data directory: the default backend. One process owns the
//! log and the filesystem's locks order its changes, so of the compares
//! only "absent" needs checking, and revisions are not kept.

use std::borrow::Cow;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};
use parking_lot::Mutex;

use super::{Batch, Compare, Error, Kv, Op, Pinned, Result, Revision, ScanVisit, Value};
use crate::engine::{self, BatchOp, MAX_KEY_LEN, RECORD_HEADER_LEN, Store};
use crate::vocab::StatFs;

/// Bytes a record adds to its value at most: header and the longest key.
const RECORD_OVERHEAD: u64 = (RECORD_HEADER_LEN + MAX_KEY_LEN) as u64;

/// Disk bytes that writes leave free, for the deletions that free space.
const DELETE_RESERVE: u64 = 1 << 20;

pub struct Log {
    store: Arc<Store>,
    /// When the data disk's free bytes were last asked, and the answer.
    free_space: Mutex<(Instant, u64)>,
}

impl Log {
    pub fn new(store: Arc<Store>) -> Log {
        Log {
            store,
            free_space: Mutex::new((Instant::now(), 0)),
        }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }
}

fn err(e: engine::Error) -> Error {
    use engine::Error as E;
    match e {
        E::ReadOnly => Error::ReadOnly,
        E::ValueTooLarge { .. } | E::BatchTooLarge { .. } => Error::TooBig(e.to_string()),
        E::Corrupt { .. } => Error::Corrupt(e.to_string()),
        e => match e.raw_os_error() {
            Some(libc::ENOSPC | libc::EDQUOT) => Error::NoSpace(e.to_string()),
            errno => Error::Other {
                errno: errno.unwrap_or(libc::EIO),
                why: e.to_string(),
            },
        },
    }
}

struct LogValue(engine::Value);

impl Pinned for LogValue {
    fn len(&self) -> u64 {
        self.0.metadata().len
    }

    fn bytes(&self, offset: u64, len: usize) -> Result<Cow<'_, [u8]>> {
        self.0.bytes(offset, len).map_err(err)
    }
}

impl Kv for Log {
    fn get(&self, key: &[u8]) -> Result<Option<Value>> {
        Ok(self
            .store
            .value(key)
            .map_err(err)?
            .map(|v| Value::new(LogValue(v))))
    }

    fn write(&self, batch: Batch) -> Result<Revision> {
        // The only writer: what is absent now stays absent until this
        // batch, which the caller's locks keep from racing another.
        for c in &batch.compares {
            if let Compare::Absent(key) = c
                && self.store.contains(key)
            {
                return Err(Error::Conflict);
            }
        }
        let ops: Vec<BatchOp> = batch
            .ops
            .iter()
            .map(|op| match op {
                Op::Put { key, value } => BatchOp::Put(key, value),
                Op::Delete { key } => BatchOp::Delete(key),
            })
            .collect();
        match batch.in_order {
            true => self.store.apply_in_order(&ops),
            false => self.store.write_batch(&ops),
        }
        .map_err(err)?;
        Ok(0)
    }

    fn scan(&self, prefix: &[u8], each: &mut ScanVisit) -> Result<()> {
        self.store.scan_prefix(prefix, each).map_err(err)
    }

    fn keys(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
        Ok(self.store.keys_with_prefix(prefix))
    }

    fn sync(&self) -> Result<()> {
        self.store.sync().map_err(err)
    }

    fn max_value_len(&self) -> u64 {
        self.store.options().max_value_size
    }

    /// Checked at write, not only at the commit at close: some writers
    /// (shell builtins restoring their descriptors) never look at close's
    /// result. The disk is asked only when the last answer is old or was
    /// close.
    ///
    /// `DELETE_RESERVE` stays free for deletions, which free space only
    /// once written (a failed large write's extents must go). Short of
    /// room, and with enough dead bytes in the log, the log is compacted
    /// first, as a full disk's cleaner.
    fn room(&self, len: u64) -> Result<()> {
        let needed = len + RECORD_OVERHEAD + DELETE_RESERVE;
        let mut known = self.free_space.lock();
        let plenty = known.1 > needed.saturating_mul(2) + (64 << 20);
        if !plenty || known.0.elapsed() > Duration::from_millis(500) {
            *known = (Instant::now(), free_bytes(self.store.dir())?);
        }
        if known.1 < needed && self.reclaim(needed) {
            *known = (Instant::now(), free_bytes(self.store.dir())?);
        }
        if known.1 < needed {
            return Err(Error::NoSpace(format!(
                "{} bytes do not fit in {}",
                len,
                self.store.dir().display()
            )));
        }
        Ok(())
    }

    fn compactions(&self) -> u64 {
        self.store.merges_done()
    }

    /// The data directory's disk, so `df` on the mount shows real space.
    fn space(&self) -> Result<StatFs> {
        disk_space(self.store.dir())
    }
}

impl Log {
    /// Compacts the log when its dead bytes would make `needed` room;
    /// whether it did.
    fn reclaim(&self, needed: u64) -> bool {
        let dead = match self.store.stats() {
            Ok(s) => s.segments.iter().map(|g| g.dead_bytes).sum::<u64>(),
            Err(_) => 0,
        };
        if dead < needed {
            return false;
        }
        info!("short of disk space: compacting to reclaim {dead} dead bytes");
        match self.store.roll().and_then(|()| self.store.compact()) {
            Ok(_) => true,
            Err(e) => {
                warn!("compacting for room: {e}");
                false
            }
        }
    }
}

/// Free bytes on the disk that holds `dir`.
fn free_bytes(dir: &Path) -> Result<u64> {
    let s = statvfs(dir)?;
    #[allow(clippy::useless_conversion)]
    Ok(u64::from(s.f_bavail).saturating_mul(u64::from(s.f_frsize)))
}

/// The disk that holds `dir`, as `df` shows it.
pub fn disk_space(dir: &Path) -> Result<StatFs> {
    let s = statvfs(dir)?;
    #[allow(clippy::useless_conversion)]
    Ok(StatFs {
        blocks: u64::from(s.f_blocks),
        bfree: u64::from(s.f_bfree),
        bavail: u64::from(s.f_bavail),
        files: u64::from(s.f_files),
        ffree: u64::from(s.f_ffree),
        bsize: s.f_bsize as u32,
        namelen: 0,
        frsize: s.f_frsize as u32,
    })
}

/// statvfs(2) of `dir`'s filesystem.
fn statvfs(dir: &Path) -> Result<libc::statvfs> {
    let path = CString::new(dir.as_os_str().as_bytes()).map_err(|_| Error::Other {
        errno: libc::EINVAL,
        why: "data directory path contains NUL".into(),
    })?;
    // SAFETY: statvfs is plain old data; all-zero is a valid value.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid C string and `s` a valid out-pointer.
    if unsafe { libc::statvfs(path.as_ptr(), &mut s) } != 0 {
        return Err(Error::io(
            format!("statvfs {}", dir.display()),
            &io::Error::last_os_error(),
        ));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_keys_survive_a_reopen_and_scan_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            let store = Store::open(dir.path(), engine::Options::default()).unwrap();
            Log::new(Arc::new(store))
        };
        let log = open();
        let mut b = Batch::default();
        b.put(b"d\0\0\x01a".to_vec(), b"1".to_vec())
            .put(b"d\0\0\x01b".to_vec(), b"2".to_vec())
            .put(b"i\0\0\x01".to_vec(), vec![0; 100]);
        log.write(b).unwrap();
        log.store().roll().unwrap();
        let mut b = Batch::default();
        b.delete(b"d\0\0\x01a".to_vec())
            .expect(Compare::Absent(b"d\0\0\x01c".to_vec()));
        log.write(b).unwrap();
        let mut b = Batch::default();
        b.put(b"x".to_vec(), b"y".to_vec())
            .expect(Compare::Absent(b"d\0\0\x01b".to_vec()));
        assert!(matches!(log.write(b), Err(Error::Conflict)));
        drop(log);
        let log = open();
        let mut seen = std::collections::BTreeMap::new();
        log.scan(b"d\0", &mut |k, v| {
            seen.insert(k.to_vec(), v.map(<[u8]>::to_vec));
        })
        .unwrap();
        assert_eq!(seen.get(&b"d\0\0\x01a"[..]), Some(&None));
        assert_eq!(seen.get(&b"d\0\0\x01b"[..]), Some(&Some(b"2".to_vec())));
        assert_eq!(seen.len(), 2);
        assert_eq!(log.get(b"i\0\0\x01").unwrap().unwrap().len(), 100);
        assert!(log.get(b"x").unwrap().is_none());
    }
}
