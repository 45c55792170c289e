//! The filesystem layer's error type and the one function that turns any
//! error into the errno a caller of the mount sees.

use std::fmt;

use log::warn;

use crate::backend;

pub type Result<T> = std::result::Result<T, Error>;

/// Why a filesystem operation failed.
#[derive(Debug)]
pub enum Error {
    /// The backend refused or failed.
    Backend(backend::Error),
    /// No such name or inode.
    NotFound,
    /// A name over 255 bytes, or a path over 4095.
    NameTooLong,
    /// A name no folder can hold (empty, `.`, `..`, NUL, '/').
    InvalidName,
    /// Something caskfs cannot do. `what` is logged.
    NotSupported(&'static str),
    /// The name exists and the caller asked for a new one.
    Exists,
    NotADirectory,
    /// rmdir or rename onto a folder that still has entries.
    NotEmpty,
    IsADirectory,
    /// A file would grow past the configured maximum.
    TooBig,
    /// The mount is read-only.
    ReadOnly,
    /// An unknown or closed file handle.
    BadHandle,
    /// Arguments that make no sense here (a folder into itself, a flag).
    InvalidArgument(&'static str),
    /// The operation is not permitted (a hard link to a folder).
    NotPermitted(&'static str),
    /// The kernel's name or node is out of date: it looks the name up
    /// again.
    Stale,
    /// SEEK_DATA past the last data, or either past the end: ENXIO.
    NoSuchOffset,
    /// No extended attribute of that name.
    NoAttribute,
    /// An inode's extended attributes would outgrow `xattrs::ROOM`.
    NoRoomForAttributes,
    /// The store is laid out as before the schema (or was left half
    /// carried over): `crate::upgrade` carries it over.
    OldLayout(&'static str),
}

impl From<backend::Error> for Error {
    fn from(e: backend::Error) -> Self {
        Error::Backend(e)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Backend(backend::Error::io("I/O", &e))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Backend(e) => write!(f, "{e}"),
            Error::NotFound => write!(f, "no such file or folder"),
            Error::NameTooLong => write!(f, "name longer than 255 bytes, or path than 4095"),
            Error::InvalidName => write!(f, "not a name a folder can hold"),
            Error::NotSupported(what) => write!(f, "caskfs does not support {what}"),
            Error::Exists => write!(f, "the name exists"),
            Error::NotADirectory => write!(f, "not a folder"),
            Error::NotEmpty => write!(f, "folder not empty"),
            Error::IsADirectory => write!(f, "is a folder"),
            Error::TooBig => write!(f, "file over the maximum size"),
            Error::ReadOnly => write!(f, "mounted read-only"),
            Error::BadHandle => write!(f, "unknown file handle"),
            Error::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
            Error::NotPermitted(what) => write!(f, "not permitted: {what}"),
            Error::Stale => write!(f, "the name was removed or renamed meanwhile"),
            Error::NoSuchOffset => write!(f, "no data or hole there"),
            Error::NoAttribute => write!(f, "no such extended attribute"),
            Error::NoRoomForAttributes => {
                write!(f, "no room for more extended attributes on the inode")
            }
            Error::OldLayout(what) => write!(f, "the store {what}: it needs carrying over"),
        }
    }
}

impl std::error::Error for Error {}

/// The errno for `e`. Every variant is listed, so a new error cannot
/// reach the kernel without a decision about its errno.
pub fn errno(e: &Error) -> i32 {
    match e {
        Error::Backend(b) => b.errno(),
        Error::NotFound => libc::ENOENT,
        Error::NameTooLong => libc::ENAMETOOLONG,
        Error::InvalidName => libc::EINVAL,
        Error::NotSupported(_) => libc::EOPNOTSUPP,
        Error::Exists => libc::EEXIST,
        Error::NotADirectory => libc::ENOTDIR,
        Error::NotEmpty => libc::ENOTEMPTY,
        Error::IsADirectory => libc::EISDIR,
        Error::TooBig => libc::EFBIG,
        Error::ReadOnly => libc::EROFS,
        Error::BadHandle => libc::EBADF,
        Error::InvalidArgument(_) => libc::EINVAL,
        Error::NotPermitted(_) => libc::EPERM,
        Error::Stale => libc::ESTALE,
        Error::NoSuchOffset => libc::ENXIO,
        Error::NoAttribute => libc::ENODATA,
        Error::NoRoomForAttributes => libc::ENOSPC,
        Error::OldLayout(_) => libc::EPROTO,
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
        | libc::ESTALE
        | libc::EPERM
        | libc::EINVAL
        | libc::ENODATA
        | libc::ENXIO => {
            log::debug!("{op}: {e}")
        }
        _ => warn!("{op}: {e} (errno {code})"),
    }
    code
}
