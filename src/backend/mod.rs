//! The one key-value interface the filesystem's schema is stored through,
//! and the backends behind it. Only plain data crosses it (keys, bytes,
//! this module's types); each backend turns its own errors into `Error`.
//!
//! - `log`: the embedded Bitcask log (`crate::engine`)
//! - `memory`: a map in memory, for tests of the filesystem without a
//!   disk or a mount
//! - `etcd`: an etcd cluster, shared by several hosts
//! - `locks`: file locks that every host of a shared backend sees

pub mod etcd;
pub mod locks;
mod log;
mod memory;

use std::borrow::Cow;
use std::fmt;

pub use locks::{Held, LockKind, Locks};
pub use log::{Log, disk_space};
pub use memory::Memory;

use crate::vocab::StatFs;

pub type Result<T> = std::result::Result<T, Error>;

/// Why a backend could not do what was asked.
#[derive(Debug)]
pub enum Error {
    /// A compare of the batch failed: another writer changed a key first.
    /// Nothing was written.
    Conflict,
    /// No room left (the disk, or a cluster's quota).
    NoSpace(String),
    /// A value or batch larger than the backend takes.
    TooBig(String),
    /// Stored bytes failed their check: never handed out as data.
    Corrupt(String),
    /// The backend did not answer in time.
    TimedOut(String),
    /// Writes are refused (a read-only store).
    ReadOnly,
    /// Anything else, with the errno a caller of the mount sees.
    Other { errno: i32, why: String },
}

impl Error {
    /// The errno this error means to a caller of the mount.
    pub fn errno(&self) -> i32 {
        match self {
            Error::Conflict => libc::EAGAIN,
            Error::NoSpace(_) => libc::ENOSPC,
            Error::TooBig(_) => libc::EFBIG,
            Error::Corrupt(_) => libc::EIO,
            Error::TimedOut(_) => libc::ETIMEDOUT,
            Error::ReadOnly => libc::EROFS,
            Error::Other { errno, .. } => *errno,
        }
    }

    pub fn io(context: impl fmt::Display, e: &std::io::Error) -> Error {
        let errno = e.raw_os_error().unwrap_or(libc::EIO);
        match errno {
            libc::ENOSPC | libc::EDQUOT => Error::NoSpace(format!("{context}: {e}")),
            _ => Error::Other {
                errno,
                why: format!("{context}: {e}"),
            },
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Conflict => write!(f, "another writer changed a key first"),
            Error::NoSpace(why)
            | Error::TooBig(why)
            | Error::Corrupt(why)
            | Error::TimedOut(why) => write!(f, "{why}"),
            Error::ReadOnly => write!(f, "the store is read-only"),
            Error::Other { why, .. } => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for Error {}

/// Which version of a key a compare expects: what `Value::revision` said
/// when it was read. Backends that order all writes themselves (the log)
/// give 0 and need not check it.
pub type Revision = u64;

/// One change of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put { key: Vec<u8>, value: Vec<u8> },
    Delete { key: Vec<u8> },
}

impl Op {
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }
}

/// What must still hold for a batch to apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compare {
    /// The key has no value.
    Absent(Vec<u8>),
    /// The key has the value it had at this revision.
    Unchanged(Vec<u8>, Revision),
}

/// Changes applied together or not at all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    pub ops: Vec<Op>,
    pub compares: Vec<Compare>,
    /// The changes may as well be applied one after another, in order: a
    /// crash that keeps only the first ones leaves nothing wrong that the
    /// next open does not clear (`CaskFs::mark_open`). The log then spares
    /// the record that would hold them together.
    pub in_order: bool,
}

impl Batch {
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> &mut Self {
        self.ops.push(Op::Put { key, value });
        self
    }

    pub fn delete(&mut self, key: Vec<u8>) -> &mut Self {
        self.ops.push(Op::Delete { key });
        self
    }

    pub fn expect(&mut self, c: Compare) -> &mut Self {
        self.compares.push(c);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// What a pinned value reads from.
pub trait Pinned: Send + Sync {
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Up to `len` bytes from `offset` (fewer at the end), borrowed where
    /// the backend can.
    fn bytes(&self, offset: u64, len: usize) -> Result<Cow<'_, [u8]>>;
    fn revision(&self) -> Revision {
        0
    }
}

/// A stored value, pinned where it lies: it reads the same bytes for as
/// long as it is kept, whatever is written later.
pub struct Value(Box<dyn Pinned>);

impl Value {
    pub fn new(pinned: impl Pinned + 'static) -> Value {
        Value(Box::new(pinned))
    }

    pub fn len(&self) -> u64 {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn bytes(&self, offset: u64, len: usize) -> Result<Cow<'_, [u8]>> {
        self.0.bytes(offset, len)
    }

    /// The whole value, copied.
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        let len = usize::try_from(self.len()).map_err(|_| Error::TooBig("a value".into()))?;
        Ok(self.bytes(0, len)?.into_owned())
    }

    pub fn revision(&self) -> Revision {
        self.0.revision()
    }
}

/// What `Kv::scan` hands each key to: its value, or `None` for a key
/// deleted since.
pub type ScanVisit<'a> = dyn FnMut(&[u8], Option<&[u8]>) + 'a;

/// A key another host (or this one) changed, as a watch sees it.
#[derive(Clone, Copy, Debug)]
pub struct Change<'a> {
    pub key: &'a [u8],
    /// Its value now; `None`: deleted.
    pub value: Option<&'a [u8]>,
    pub revision: Revision,
}

/// Told each change of a shared backend (`Kv::watch`).
pub type Changed = Box<dyn Fn(Change) + Send + Sync>;

/// Keys and their values; see the module's doc and docs/SCHEMA.md.
pub trait Kv: Send + Sync {
    /// The current value of `key`, pinned.
    fn get(&self, key: &[u8]) -> Result<Option<Value>>;
    /// Applies `batch` whole, or fails (`Conflict` when a compare does not
    /// hold) having applied none of it. Deleting an absent key is no error.
    /// Returns the revision the batch made (0 where there are none).
    fn write(&self, batch: Batch) -> Result<Revision>;
    /// Calls `each` with every key starting with `prefix` and its value;
    /// `None` for a key deleted since an earlier call gave it (a backend
    /// may hand a key several times, the last one counts).
    fn scan(&self, prefix: &[u8], each: &mut ScanVisit) -> Result<()>;
    /// Every live key starting with `prefix`, without the values.
    fn keys(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>>;
    /// Makes every change written so far durable.
    fn sync(&self) -> Result<()>;
    /// The largest value one put may hold.
    fn max_value_len(&self) -> u64;
    /// The most changes one batch may hold.
    fn max_batch_ops(&self) -> usize {
        usize::MAX
    }
    /// `NoSpace` when `len` more bytes cannot be stored now.
    fn room(&self, len: u64) -> Result<()>;
    /// What `df` shows of where the keys live.
    fn space(&self) -> Result<StatFs>;
    /// Whether other hosts change the keys too: then the caller is told of
    /// every change (`watch`), and must not delete what it thinks nothing
    /// reaches (another host may be reading or committing it).
    fn shared(&self) -> bool {
        false
    }
    /// Has `tell` called with every change from now on, its own included
    /// (a shared backend; the others never call it).
    fn watch(&self, _tell: Changed) {}
    /// Waits up to `within` until `watch` has told every change up to
    /// `revision`; whether it has. A backend without others' changes has
    /// nothing to wait for.
    fn wait_seen(&self, _revision: Revision, _within: std::time::Duration) -> bool {
        true
    }
    /// How many times the backend has compacted what it holds: the
    /// filesystem rewrites fragmented files after each (0 for a backend
    /// that does so out of sight).
    fn compactions(&self) -> u64 {
        0
    }
}
