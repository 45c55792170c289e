//! The embedded default behind `Storage`: the Bitcask log (`engine::Store`)
//! in a local data directory, whose disk's free space bounds what a write
//! may add.

use std::borrow::Cow;
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::errno::{Error, Result};
use super::fs::StatFs;
use super::storage::{
    EntryKind, Listing, Meta, Metadata, Pinned, Staged, Storage, Value, disk_space, statvfs,
};
use crate::engine::{self, MAX_KEY_LEN, RECORD_HEADER_LEN, Store};

/// Bytes a record adds to its value at most: header and the longest key.
const RECORD_OVERHEAD: u64 = (RECORD_HEADER_LEN + MAX_KEY_LEN) as u64;

pub struct Bitcask {
    store: Arc<Store>,
    /// When the data disk's free bytes were last asked, and the answer.
    free_space: Mutex<(Instant, u64)>,
}

impl Bitcask {
    pub fn new(store: Arc<Store>) -> Bitcask {
        Bitcask {
            store,
            free_space: Mutex::new((Instant::now(), 0)),
        }
    }
}

impl Pinned for engine::Value {
    fn metadata(&self) -> Metadata {
        engine::Value::metadata(self)
    }

    fn bytes(&self, offset: u64, len: usize) -> Result<Cow<'_, [u8]>> {
        Ok(engine::Value::bytes(self, offset, len)?)
    }
}

impl Storage for Bitcask {
    fn value(&self, key: &[u8]) -> Result<Option<Value>> {
        Ok(self.store.value(key)?.map(Value::new))
    }

    fn metadata(&self, key: &[u8]) -> Result<Option<Metadata>> {
        Ok(self.store.metadata(key)?)
    }

    fn contains(&self, key: &[u8]) -> Result<bool> {
        Ok(self.store.contains(key))
    }

    fn put(&self, key: &[u8], value: &[u8], meta: &Meta) -> Result<()> {
        Ok(self.store.put_with(key, value, meta)?)
    }

    fn put_from(&self, key: &[u8], len: u64, reader: &mut dyn Read, meta: &Meta) -> Result<()> {
        Ok(self.store.put_from_with(key, len, reader, meta)?)
    }

    fn set_meta(&self, key: &[u8], meta: &Meta) -> Result<()> {
        Ok(self.store.set_meta(key, meta)?)
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        Ok(self.store.delete(key)?)
    }

    fn rename(&self, from: &[u8], to: &[u8]) -> Result<()> {
        Ok(self.store.rename(from, to)?)
    }

    fn rename_folder(&self, from: &[u8], to: &[u8], folder: &Meta) -> Result<usize> {
        Ok(self.store.rename_folder(from, to, folder)?)
    }

    fn list(&self, dir: &[u8]) -> Result<Option<Listing>> {
        Ok(self.store.list(dir))
    }

    fn kind(&self, key: &[u8]) -> Result<Option<EntryKind>> {
        Ok(self.store.kind(key))
    }

    fn folder_counts(&self, dir: &[u8]) -> Result<(usize, u32)> {
        Ok(self.store.folder_counts(dir))
    }

    fn sync(&self) -> Result<()> {
        Ok(self.store.sync()?)
    }

    fn max_value_size(&self) -> u64 {
        self.store.options().max_value_size
    }

    /// Checked at write, not only at the commit at close: some writers
    /// (shell builtins restoring their descriptors) never look at close's
    /// result. The disk is asked only when the last answer is old or was
    /// close.
    fn room(&self, len: u64) -> Result<()> {
        let needed = len + RECORD_OVERHEAD;
        let mut known = self.free_space.lock();
        let plenty = known.1 > needed.saturating_mul(2) + (64 << 20);
        if !plenty || known.0.elapsed() > Duration::from_millis(500) {
            let s = statvfs(self.store.dir())?;
            #[allow(clippy::useless_conversion)]
            let free = u64::from(s.f_bavail).saturating_mul(u64::from(s.f_frsize));
            *known = (Instant::now(), free);
        }
        if known.1 < needed {
            return Err(Error::Io(std::io::Error::from_raw_os_error(libc::ENOSPC)));
        }
        Ok(())
    }

    /// The data directory's disk, so `df` on the mount shows real space.
    fn space(&self) -> Result<StatFs> {
        disk_space(self.store.dir())
    }

    fn stage(&self, key_len: usize) -> Result<Staged> {
        Ok(self.store.stage(key_len)?)
    }

    fn put_staged(&self, key: &[u8], staged: Staged, meta: &Meta) -> Result<Option<Staged>> {
        Ok(self.store.put_staged(key, staged, meta)?)
    }
}
