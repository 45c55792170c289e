//! The storage engine: a Bitcask-style log of checksummed records in
//! segment files, with one in-memory hash index per segment. Keys and
//! values are bytes; nothing here knows about files, folders or FUSE
//! (the filesystem is src/fs over src/schema).

mod background;
mod backup;
mod check;
mod crash_points;
mod error;
mod format;
mod hint;
mod huge_pages;
mod index;
mod inner;
mod key;
mod le;
mod lock;
mod manifest;
mod merge;
mod merge_install;
mod merge_output;
mod merge_policy;
mod meta;
mod options;
pub mod progress;
mod record;
mod recovery;
mod repair;
mod scan;
mod segment;
mod stats;
mod store;
mod table;
mod version;
mod writer;

pub use backup::BackupReport;
pub use check::{CheckReport, check};
pub use crash_points::CrashPoint;
pub use error::{Error, Result};
pub use format::{CONTROL_FILE, MANIFEST_FILE};
pub use key::MAX_KEY_LEN;
pub use merge_install::MergeReport;
pub use merge_policy::MergeOutlook;
pub use meta::{DEFAULT_MODE, Meta, OWNER_UNSET, PERM_BITS, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};
pub use options::{Options, SyncPolicy, parse_ratio, parse_secs, parse_size};
/// Bytes a record's header takes, besides its key and value.
pub use record::HEADER_LEN as RECORD_HEADER_LEN;
pub use repair::{LOST_AND_FOUND, RepairReport, repair};
pub use stats::{SegmentStats, Stats};
pub use store::{BatchOp, Metadata, Store, Value};
