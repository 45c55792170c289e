//! The store's background threads: the periodic flush of the `interval`
//! sync policy, and the merge thread.

use std::time::{Duration, Instant};

use log::warn;
use parking_lot::MutexGuard;

use super::compaction;
use super::store::Inner;

#[derive(Default)]
pub struct Signals {
    pub stop: bool,
    /// Merge now, whatever the thresholds say.
    pub compact_requested: bool,
    /// A segment was closed since the merge thread last looked.
    pub rolled: bool,
}

impl Inner {
    pub fn flush_every(&self, every: Duration) {
        let mut signals = self.signals.lock();
        while !signals.stop {
            self.flush_wake.wait_for(&mut signals, every);
            // Not under the signals lock: a roll takes it while holding the
            // writer, which the sync takes.
            MutexGuard::unlocked(&mut signals, || {
                if let Err(e) = self.sync_all() {
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

    /// The merge thread: looks after every roll, on request, and every
    /// `compact_interval` (a store whose writes only supersede records of
    /// closed segments, without rolling, is judged then), but judges at
    /// most once per `min_gap` however fast segments roll, since judging
    /// walks every index: on a large store it can take a while, so the gap
    /// also grows to ten times the last judgement (a tenth of a core at
    /// most), up to `compact_interval`. A roll during the gap is looked at
    /// when it ends.
    pub fn merge_when_worth_it(&self) {
        let min_gap = self.opts.compact_interval.min(Duration::from_secs(1));
        loop {
            let forced = {
                let mut signals = self.signals.lock();
                if !signals.stop && !signals.compact_requested && !signals.rolled {
                    self.compact_wake
                        .wait_for(&mut signals, self.opts.compact_interval);
                }
                if signals.stop {
                    return;
                }
                signals.rolled = false;
                std::mem::take(&mut signals.compact_requested)
            };
            self.write_pending_hints();
            let judging = Instant::now();
            let worth = forced || self.opts.compaction && compaction::worth_merging(self);
            let gap = (judging.elapsed() * 10).clamp(min_gap, self.opts.compact_interval);
            if worth && let Err(e) = self.compact_all() {
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
