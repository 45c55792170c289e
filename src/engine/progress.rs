//! Progress of long work (opening a store by scanning, check, repair, a
//! merge, a backup), for a front end that shows it. The engine reports to
//! the one reporter a program may install (the `caskfs` command draws a
//! bar when stderr is a terminal); without one, reporting costs nothing.

use std::sync::OnceLock;

/// What a front end is told.
pub trait Progress: Send + Sync {
    /// Work named `what`, of `total` bytes, begins.
    fn begin(&self, what: &str, total: u64);
    /// `bytes` more of it are done.
    fn advance(&self, bytes: u64);
    fn end(&self);
}

static REPORTER: OnceLock<Box<dyn Progress>> = OnceLock::new();

/// Installs the reporter, once per process.
pub fn set_reporter(p: Box<dyn Progress>) {
    let _ = REPORTER.set(p);
}

/// One piece of work being reported: begun when made, ended when dropped.
pub(crate) struct Task {
    reporter: Option<&'static dyn Progress>,
}

impl Task {
    pub fn begin(what: &str, total: u64) -> Task {
        let reporter = REPORTER.get().map(|r| &**r);
        if let Some(r) = reporter {
            r.begin(what, total);
        }
        Task { reporter }
    }

    pub fn advance(&self, bytes: u64) {
        if let Some(r) = self.reporter {
            r.advance(bytes);
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        if let Some(r) = self.reporter {
            r.end();
        }
    }
}
