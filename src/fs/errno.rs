//! The filesystem layer's error type and the one function that turns any
//! error into the errno a caller of the mount sees.

use std::fmt;

use log::warn;

use crate::engine;

pub type Result<T> = std::result::Result<T, Error>;

/// Why a filesystem operation failed.
#[derive(Debug)]
pub enum Error {
    /// The engine refused or failed.
    Engine(engine::Error),
    /// An I/O error outside the engine (spill files, statvfs).
    Io(std::io::Error),
    /// Another storage backend failed: the errno it chose, and why.
    Backend {
        errno: i32,
        why: String,
    },
    /// No such key or inode.
    NotFound,
    /// A name over 255 bytes.
    NameTooLong,
    /// A name the store cannot hold (empty, `.`, `..`, NUL, '/').
    InvalidName,
    /// Something caskfs cannot be: a directory, link, device node, another
    /// mode or owner. `what` is logged.
    NotSupported(&'static str),
    /// The name exists and the caller asked for exclusive creation.
    Exists,
    /// A directory operation on a key, or a file operation on the root.
    NotADirectory,
    /// rmdir or rename onto a folder that still has entries.
    NotEmpty,
    IsADirectory,
    /// A value would grow past the configured maximum.
    TooBig,
    /// The mount is read-only.
    ReadOnly,
    /// An unknown or closed file handle.
    BadHandle,
    /// A flag combination caskfs does not implement (e.g. RENAME_EXCHANGE).
    InvalidArgument(&'static str),
    /// The inode lost its key (an rm or mv) between the kernel's lookup
    /// and this request: the kernel looks the name up again.
    Stale,
}

impl From<engine::Error> for Error {
    fn from(e: engine::Error) -> Self {
        Error::Engine(e)
    }
}

impl From<crate::backend::Error> for Error {
    fn from(e: crate::backend::Error) -> Self {
        Error::Backend {
            errno: e.errno(),
            why: e.to_string(),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Engine(e) => write!(f, "{e}"),
            Error::Io(e) => write!(f, "{e}"),
            Error::Backend { why, .. } => write!(f, "{why}"),
            Error::NotFound => write!(f, "no such key"),
            Error::NameTooLong => write!(f, "name longer than 255 bytes"),
            Error::InvalidName => write!(f, "name is not a valid key"),
            Error::NotSupported(what) => write!(f, "caskfs does not support {what}"),
            Error::Exists => write!(f, "key exists"),
            Error::NotADirectory => write!(f, "not a directory"),
            Error::NotEmpty => write!(f, "folder not empty"),
            Error::IsADirectory => write!(f, "is a directory"),
            Error::TooBig => write!(f, "value over the maximum size"),
            Error::ReadOnly => write!(f, "mounted read-only"),
            Error::BadHandle => write!(f, "unknown file handle"),
            Error::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
            Error::Stale => write!(f, "the name was removed or renamed meanwhile"),
        }
    }
}

/// The errno for `e`. Every variant of both layers is listed, so a new
/// error cannot reach the kernel without a decision about its errno.
pub fn errno(e: &Error) -> i32 {
    match e {
        Error::Engine(inner) => engine_errno(inner),
        Error::Io(io) => io.raw_os_error().unwrap_or(libc::EIO),
        Error::Backend { errno, .. } => *errno,
        Error::NotFound => libc::ENOENT,
        Error::NameTooLong => libc::ENAMETOOLONG,
        Error::InvalidName => libc::EINVAL,
        Error::NotSupported(_) => libc::EPERM,
        Error::Exists => libc::EEXIST,
        Error::NotADirectory => libc::ENOTDIR,
        Error::NotEmpty => libc::ENOTEMPTY,
        Error::IsADirectory => libc::EISDIR,
        Error::TooBig => libc::EFBIG,
        Error::ReadOnly => libc::EROFS,
        Error::BadHandle => libc::EBADF,
        Error::InvalidArgument(_) => libc::EINVAL,
        Error::Stale => libc::ESTALE,
    }
}

fn engine_errno(e: &engine::Error) -> i32 {
    use engine::Error as E;
    match e {
        E::Io { .. } => e.raw_os_error().unwrap_or(libc::EIO),
        E::InvalidKey { too_long: true, .. } => libc::ENAMETOOLONG,
        E::InvalidKey {
            too_long: false, ..
        } => libc::EINVAL,
        E::InvalidMeta { .. } => libc::EINVAL,
        E::ValueTooLarge { .. } => libc::EFBIG,
        E::BatchTooLarge { .. } => libc::EFBIG,
        // `mv` then copies the folder instead.
        E::FolderTooLarge { .. } => libc::EXDEV,
        E::NotFound { .. } => libc::ENOENT,
        E::Corrupt { .. } => libc::EIO,
        E::Locked { .. } => libc::EBUSY,
        E::NotADataDir { .. } => libc::EIO,
        E::ReadOnly => libc::EROFS,
        E::InvalidOption(_) => libc::EINVAL,
    }
}

/// Logs `e` at a level that fits it: expected outcomes (ENOENT, EEXIST)
/// quietly, refusals and failures loudly, and returns its errno.
pub fn log_and_errno(op: &str, e: &Error) -> i32 {
    let code = errno(e);
    match code {
        // What races and the callers' own mistakes give: no fault of
        // caskfs's (the kernel retries ESTALE itself).
        libc::ENOENT
        | libc::EEXIST
        | libc::ENOTDIR
        | libc::EISDIR
        | libc::ENOTEMPTY
        | libc::ESTALE => {
            log::debug!("{op}: {e}")
        }
        _ => warn!("{op}: {e} (errno {code})"),
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_mapping() {
        assert_eq!(errno(&Error::NotSupported("mkdir")), libc::EPERM);
        assert_eq!(errno(&Error::NameTooLong), libc::ENAMETOOLONG);
        assert_eq!(errno(&Error::TooBig), libc::EFBIG);
        let too_large = engine::Error::ValueTooLarge {
            key: "k".into(),
            len: 2,
            max: 1,
        };
        assert_eq!(errno(&Error::Engine(too_large)), libc::EFBIG);
        let nospc = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(errno(&Error::Io(nospc)), libc::ENOSPC);
        let not_found = engine::Error::NotFound { key: "k".into() };
        assert_eq!(errno(&Error::Engine(not_found)), libc::ENOENT);
        for (key, code) in [
            (vec![b'x'; 256], libc::ENAMETOOLONG),
            (vec![b'x'; 4096], libc::ENAMETOOLONG),
            (b"a//b".to_vec(), libc::EINVAL),
            (b"..".to_vec(), libc::EINVAL),
        ] {
            let invalid = engine::validate_key(&key).unwrap_err();
            assert_eq!(errno(&Error::Engine(invalid)), code, "{} bytes", key.len());
        }
    }
}
