//! The engine's one error type. Every variant names the key or file it is
//! about, so a message read in a log or on stderr says where to look.

use std::fmt;
use std::io;
use std::path::PathBuf;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug)]
pub enum Error {
    /// An operating-system call failed; `context` says which and on what.
    Io { context: String, source: io::Error },
    /// The key cannot be stored (see `key::check_key`); nothing was
    /// written.
    InvalidKey { key: String, reason: &'static str },
    /// The value is larger than the configured maximum; nothing was written.
    ValueTooLarge { key: String, len: u64, max: u64 },
    /// A batch's changes together (one record: their values, keys and
    /// headers) are larger than the maximum for one value; nothing was
    /// written.
    BatchTooLarge { changes: usize, len: u64, max: u64 },
    /// No live value for the key.
    NotFound { key: String },
    /// Bytes on disk fail their checksum or do not parse.
    Corrupt {
        path: PathBuf,
        offset: u64,
        detail: String,
    },
    /// Another process holds the data directory.
    Locked { dir: PathBuf, holder: String },
    /// The directory is not a caskfs data directory, or one of an unknown version.
    NotADataDir { dir: PathBuf, detail: String },
    /// The store was opened read-only.
    ReadOnly,
    /// A bad option value.
    InvalidOption(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        offset: u64,
        detail: impl Into<String>,
    ) -> Self {
        Error::Corrupt {
            path: path.into(),
            offset,
            detail: detail.into(),
        }
    }

    /// The OS error code behind an I/O error, if there is one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// Keys are bytes; show them as text where they are text, escaped otherwise.
pub(crate) fn show_key(key: &[u8]) -> String {
    String::from_utf8_lossy(key).escape_debug().to_string()
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { context, source } => write!(f, "{context}: {source}"),
            Error::InvalidKey { key, reason } => write!(f, "invalid key \"{key}\": {reason}"),
            Error::ValueTooLarge { key, len, max } => write!(
                f,
                "value for key \"{key}\" is {len} bytes, over the maximum of {max} bytes"
            ),
            Error::BatchTooLarge { changes, len, max } => write!(
                f,
                "a batch of {changes} changes takes {len} bytes, over the maximum of {max} bytes for one value"
            ),
            Error::NotFound { key } => write!(f, "key \"{key}\" not found"),
            Error::Corrupt {
                path,
                offset,
                detail,
            } => write!(
                f,
                "corrupt data in {} at offset {offset}: {detail}",
                path.display()
            ),
            Error::Locked { dir, holder } => write!(
                f,
                "data directory {} is in use by another caskfs process ({holder})",
                dir.display()
            ),
            Error::NotADataDir { dir, detail } => {
                write!(
                    f,
                    "{} is not a usable caskfs data directory: {detail}",
                    dir.display()
                )
            }
            Error::ReadOnly => write!(f, "the store is open read-only"),
            Error::InvalidOption(msg) => write!(f, "invalid option: {msg}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
