//! The store's background threads: the periodic flush of the `interval`
//! sync policy, and the merge thread.

use std::time::{Duration, Instant};

use log::warn;

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
            if let Err(e) = self.sync_all() {
                warn!("periodic sync failed: {e}");
            }
        }
    }

    /// The merge thread: looks after every roll, on request, and on a timer,
    /// but judges at most once per `min_gap` however fast segments roll,
    /// since judging walks every index.
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
            let worth = forced
                || self.opts.compaction
                    && compaction::worth_merging(self).unwrap_or_else(|e| {
                        warn!("cannot judge whether to merge: {e}");
                        false
                    });
            if worth && let Err(e) = self.compact_all() {
                warn!("background merge failed: {e}");
            }
            let until = Instant::now() + min_gap;
            let mut signals = self.signals.lock();
            while !signals.stop && !signals.compact_requested && Instant::now() < until {
                self.compact_wake.wait_until(&mut signals, until);
            }
        }
    }
}
