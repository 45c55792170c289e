//! The embedded default behind `Storage`: the Bitcask log (`engine::Store`)
//! in a local data directory, whose disk's free space bounds what a write
//! may add.

use std::borrow::Cow;
use std::io::Read;
use std::sync::Arc;

use super::errno::Result;
use super::fs::StatFs;
use super::storage::{EntryKind, Listing, Meta, Metadata, Pinned, Staged, Storage, Value};
use crate::backend::{Kv, Log};
use crate::engine::{self, Store};

pub struct Bitcask {
    store: Arc<Store>,
    /// The same store through the key-value interface, which knows its
    /// disk's free space.
    log: Log,
}

impl Bitcask {
    pub fn new(store: Arc<Store>) -> Bitcask {
        Bitcask {
            log: Log::new(store.clone()),
            store,
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

    fn room(&self, len: u64) -> Result<()> {
        Ok(self.log.room(len)?)
    }

    fn space(&self) -> Result<StatFs> {
        Ok(self.log.space()?)
    }

    fn stage(&self, key_len: usize) -> Result<Staged> {
        Ok(self.store.stage(key_len)?)
    }

    fn put_staged(&self, key: &[u8], staged: Staged, meta: &Meta) -> Result<Option<Staged>> {
        Ok(self.store.put_staged(key, staged, meta)?)
    }
}
