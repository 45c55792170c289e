//! The store's background threads: the periodic flush of the `interval`
//! sync policy, and the merge thread. They only wait and decide when; what
//! they do (sync, write hints, judge, merge) the store hands them.

use std::time::{Duration, Instant};

use log::warn;
use parking_lot::{Condvar, Mutex, MutexGuard};

use super::error::Result;
use super::merge_install::MergeReport;
use super::options::Options;

#[derive(Default)]
struct Signals {
    stop: bool,
    /// Merge now, whatever the thresholds say.
    compact_requested: bool,
    /// A segment was closed since the merge thread last looked.
    rolled: bool,
}

/// What the store tells its background threads, and how they wake.
#[derive(Default)]
pub struct Background {
    signals: Mutex<Signals>,
    /// Wakes the merge thread: a roll, a request, or the store closing.
    compact_wake: Condvar,
    /// Wakes the flush thread when the store closes.
    flush_wake: Condvar,
}

impl Background {
    /// Runs `sync` every `every` until the store closes.
    pub fn flush_every(&self, every: Duration, sync: impl Fn() -> Result<()>) {
        let mut signals = self.signals.lock();
        while !signals.stop {
            self.flush_wake.wait_for(&mut signals, every);
            // Not under the signals lock: a roll takes it while holding the
            // writer, which the sync takes.
            MutexGuard::unlocked(&mut signals, || {
                if let Err(e) = sync() {
                    warn!("periodic sync failed: {e}");
                }
            });
        }
    }

    /// Tells the merge thread a segment was closed. Called by a roll, with
    /// the writer held (so the signals lock is never held while taking the
    /// writer).
    pub fn note_roll(&self) {
        self.signals.lock().rolled = true;
        self.compact_wake.notify_all();
    }

    /// Asks the merge thread to merge now, without waiting for it.
    pub fn request_merge(&self) {
        self.signals.lock().compact_requested = true;
        self.compact_wake.notify_all();
    }

    /// Tells both threads to return.
    pub fn stop(&self) {
        self.signals.lock().stop = true;
        self.compact_wake.notify_all();
        self.flush_wake.notify_all();
    }

    /// The merge thread: looks after every roll, on request, and every
    /// `compact_interval` (a store whose writes only supersede records of
    /// closed segments, without rolling, is judged then), but judges at
    /// most once per `min_gap` however fast segments roll, since judging
    /// walks every index: on a large store it can take a while, so the gap
    /// also grows to ten times the last judgement (a tenth of a core at
    /// most), up to `compact_interval`. A roll during the gap is looked at
    /// when it ends.
    ///
    /// Each look writes the pending hints, then merges with `merge` when
    /// asked to, or when compaction is on and `worth_merging` says so.
    pub fn merge_when_worth_it(
        &self,
        opts: &Options,
        write_pending_hints: impl Fn(),
        worth_merging: impl Fn() -> bool,
        merge: impl Fn() -> Result<Option<MergeReport>>,
    ) {
        let min_gap = opts.compact_interval.min(Duration::from_secs(1));
        loop {
            let forced = {
                let mut signals = self.signals.lock();
                if !signals.stop && !signals.compact_requested && !signals.rolled {
                    self.compact_wake
                        .wait_for(&mut signals, opts.compact_interval);
                }
                if signals.stop {
                    return;
                }
                signals.rolled = false;
                std::mem::take(&mut signals.compact_requested)
            };
            write_pending_hints();
            let judging = Instant::now();
            let worth = forced || opts.compaction && worth_merging();
            let gap = (judging.elapsed() * 10).clamp(min_gap, opts.compact_interval);
            if worth && let Err(e) = merge() {
                warn!("background merge failed: {e}");
            }
            let until = Instant::now() + gap;
            let mut signals = self.signals.lock();
            while !signals.stop && !signals.compact_requested && Instant::now() < until {
                self.compact_wake.wait_until(&mut signals, until);
            }
        }
    }
}
