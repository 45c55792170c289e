//! The one interface between the filesystem and what holds its keys: the
//! embedded Bitcask log (`bitcask.rs`) or a backend on a replicated engine. Only plain data crosses it (keys, bytes, metadata,
//! the layer's `Error`), so the filesystem knows nothing of how or where a
//! backend stores them, and a backend nothing of FUSE.

use std::borrow::Cow;
use std::io::Read;

use super::errno::Result;
use super::fs::StatFs;
pub use crate::engine::{EntryKind, Meta, Metadata, Staged};

/// Keys (paths such as `a/b/c`), their values and metadata, and the folders
/// the keys imply. A key's value becomes visible to every later call at
/// once and whole (never a mix of two values).
pub trait Storage: Send + Sync {
    /// The current value of `key`, pinned: it reads the same bytes for as
    /// long as it lives, whatever is stored later.
    fn value(&self, key: &[u8]) -> Result<Option<Value>>;
    /// The current value's metadata, without pinning it.
    fn metadata(&self, key: &[u8]) -> Result<Option<Metadata>>;
    fn contains(&self, key: &[u8]) -> Result<bool>;
    /// Stores `value` with `meta` as the value of `key`.
    fn put(&self, key: &[u8], value: &[u8], meta: &Meta) -> Result<()>;
    /// Stores exactly `len` bytes read from `reader`, for values too large
    /// to hold in memory.
    fn put_from(&self, key: &[u8], len: u64, reader: &mut dyn Read, meta: &Meta) -> Result<()>;
    /// Gives the current value new metadata.
    fn set_meta(&self, key: &[u8], meta: &Meta) -> Result<()>;
    fn delete(&self, key: &[u8]) -> Result<()>;
    /// Moves the value of `from` to `to` in one step, replacing `to`.
    fn rename(&self, from: &[u8], to: &[u8]) -> Result<()>;
    /// Moves every key below folder `from` below `to` in one step, giving
    /// `to` the metadata `folder`; returns how many keys moved.
    fn rename_folder(&self, from: &[u8], to: &[u8], folder: &Meta) -> Result<usize>;
    /// The names in folder `dir` (`b""` is the root) and what each is, or
    /// `None` when `dir` is no folder.
    fn list(&self, dir: &[u8]) -> Result<Option<Listing>>;
    /// What `key` is, if anything: a key, or a folder that keys imply.
    fn kind(&self, key: &[u8]) -> Result<Option<EntryKind>>;
    /// How many entries folder `dir` holds, and how many of them are folders.
    fn folder_counts(&self, dir: &[u8]) -> Result<(usize, u32)>;
    /// Makes every change made so far durable.
    fn sync(&self) -> Result<()>;
    /// The largest value a key may hold.
    fn max_value_size(&self) -> u64;
    /// ENOSPC when a value of `len` bytes cannot be stored now.
    fn room(&self, len: u64) -> Result<()>;
    /// What `df` on the mount shows (`namelen` is the filesystem's).
    fn space(&self) -> Result<StatFs>;
    /// A local file for a draft too large for memory, to be stored with
    /// `put_staged` as the value of a key of `key_len` bytes.
    fn stage(&self, key_len: usize) -> Result<Staged>;
    /// Stores the value in `staged` as the value of `key`. The storage may
    /// take the file over, so that a large value costs no copy; it hands
    /// the file back when it copied it instead (as this default does).
    fn put_staged(&self, key: &[u8], staged: Staged, meta: &Meta) -> Result<Option<Staged>> {
        self.put_from(key, staged.len(), &mut staged.reader(), meta)?;
        Ok(Some(staged))
    }
    /// Has `tell` called with each key that another host changes, once
    /// this storage answers with the change (a shared backend; a local
    /// store has no other host).
    fn on_remote_change(&self, _tell: RemoteChange) {}
}

/// Told the key another host changed (`Storage::on_remote_change`).
pub type RemoteChange = Box<dyn Fn(&[u8]) + Send + Sync>;

/// The names in a folder, and what each is.
pub type Listing = Vec<(Vec<u8>, EntryKind)>;

/// What a pinned value reads from.
pub trait Pinned: Send + Sync {
    /// The value's metadata, as it was when pinned.
    fn metadata(&self) -> Metadata;
    /// Up to `len` bytes from `offset` (fewer at the end), borrowed where
    /// the backend can.
    fn bytes(&self, offset: u64, len: usize) -> Result<Cow<'_, [u8]>>;
}

/// A committed value pinned where it lies (see `Storage::value`).
pub struct Value(Box<dyn Pinned>);

impl Value {
    pub fn new(pinned: impl Pinned + 'static) -> Value {
        Value(Box::new(pinned))
    }

    pub fn metadata(&self) -> Metadata {
        self.0.metadata()
    }

    pub fn bytes(&self, offset: u64, len: usize) -> Result<Cow<'_, [u8]>> {
        self.0.bytes(offset, len)
    }

    pub fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.bytes(offset, len).map(Cow::into_owned)
    }
}
