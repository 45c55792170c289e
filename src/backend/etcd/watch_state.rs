//! How the etcd watch is doing, for `caskfs stats`: the watch thread
//! writes it, the control socket reads it. Atomics only, so that the
//! watch never waits on a reader.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

pub struct WatchState {
    /// The revision every change under the prefix is seen up to: a watch
    /// (re)starts after it. Also moved by scans.
    pub seen: AtomicI64,
    /// Whether a watch stream is open now.
    open: AtomicBool,
    /// Whether the watch thread was started at all.
    started: AtomicBool,
    /// Times (ms since `epoch`, 0: never) of the last change the watch
    /// reported, and of the last message of any kind (a change, or the
    /// header of a stream opened again after a quiet spell).
    last_event_ms: AtomicU64,
    last_progress_ms: AtomicU64,
    /// Streams opened after the first.
    reopened: AtomicU64,
    /// Why the stream last ended in an error.
    last_error: Mutex<Option<String>>,
    epoch: Instant,
}

/// A copy of the state at one moment.
#[derive(Clone, Debug)]
pub struct WatchView {
    /// "running", "reconnecting", or "not started" (an offline command).
    pub state: &'static str,
    pub seen: i64,
    pub since_last_event_secs: Option<f64>,
    pub since_last_progress_secs: Option<f64>,
    pub reopened: u64,
    pub last_error: Option<String>,
}

impl WatchState {
    pub fn new(seen: i64) -> WatchState {
        WatchState {
            seen: AtomicI64::new(seen),
            open: AtomicBool::new(false),
            started: AtomicBool::new(false),
            last_event_ms: AtomicU64::new(0),
            last_progress_ms: AtomicU64::new(0),
            reopened: AtomicU64::new(0),
            last_error: Mutex::new(None),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        // At least 1, as 0 stands for never.
        (self.epoch.elapsed().as_millis() as u64).max(1)
    }

    pub fn started(&self) {
        self.started.store(true, Ordering::Relaxed);
    }

    /// A stream opened; the first does not count as a reconnection.
    pub fn opened(&self) {
        if self.last_progress_ms.load(Ordering::Relaxed) != 0 {
            self.reopened.fetch_add(1, Ordering::Relaxed);
        }
        self.open.store(true, Ordering::Relaxed);
        self.last_progress_ms
            .store(self.now_ms(), Ordering::Relaxed);
    }

    /// A message at revision `rev`, with `events` changes in it.
    pub fn message(&self, rev: Option<i64>, events: usize) {
        let now = self.now_ms();
        if let Some(rev) = rev {
            self.seen.fetch_max(rev, Ordering::Relaxed);
        }
        self.last_progress_ms.store(now, Ordering::Relaxed);
        if events > 0 {
            self.last_event_ms.store(now, Ordering::Relaxed);
        }
    }

    /// The stream ended: quietly (`None`, opened again at once) or with
    /// an error (opened again after a pause).
    pub fn closed(&self, error: Option<String>) {
        self.open.store(false, Ordering::Relaxed);
        if let Some(e) = error {
            *self.last_error.lock() = Some(e);
        }
    }

    pub fn view(&self) -> WatchView {
        let now = self.now_ms();
        let since = |at: &AtomicU64| match at.load(Ordering::Relaxed) {
            0 => None,
            t => Some(now.saturating_sub(t) as f64 / 1000.0),
        };
        WatchView {
            state: match (
                self.started.load(Ordering::Relaxed),
                self.open.load(Ordering::Relaxed),
            ) {
                (false, _) => "not started",
                (true, true) => "running",
                (true, false) => "reconnecting",
            },
            seen: self.seen.load(Ordering::Relaxed),
            since_last_event_secs: since(&self.last_event_ms),
            since_last_progress_secs: since(&self.last_progress_ms),
            reopened: self.reopened.load(Ordering::Relaxed),
            last_error: self.last_error.lock().clone(),
        }
    }
}
