//! Test hook: where a test may stop a merge as a crash would, through
//! `Options::crash_point`. Integration tests link the normal library, so
//! this is built into every binary; with `crash_point` unset (always, but
//! in those tests) nothing here changes what a merge does.

use super::error::{Error, Result};

/// Where a test may stop a merge as a crash would: nothing after that point
/// happens, not even the clean-up of temporary files.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashPoint {
    /// Part of the first output written, under its temporary name.
    OutputHalfWritten,
    /// Outputs complete and renamed into place, MANIFEST not yet replaced.
    BeforeInstall,
    /// MANIFEST replaced, inputs not yet deleted.
    BeforeDelete,
}

/// Whether the options' crash point `set` is `here`.
pub fn reached(set: Option<CrashPoint>, here: CrashPoint) -> bool {
    set == Some(here)
}

/// A simulated crash at `here` if `set` asks for one there.
pub fn stop_at(set: Option<CrashPoint>, here: CrashPoint) -> Result<()> {
    if reached(set, here) {
        return Err(crash());
    }
    Ok(())
}

/// Whether a failure should leave files as a crash would (no clean-up):
/// any crash point is set.
pub fn armed(set: Option<CrashPoint>) -> bool {
    set.is_some()
}

/// The error a merge stopped at a crash point returns.
pub fn crash() -> Error {
    Error::io(
        "simulated crash",
        std::io::Error::other("crash point reached"),
    )
}
