//! A folder's mtime and ctime change with every name created in it or
//! removed from it. Storing the folder's inode with each such change would
//! make a create or an unlink three records instead of two (and leave the
//! older copies as dead bytes), so the new times are only made current in
//! memory (`Live::set_unstored`) and stored here: within a second, at
//! `fsync` of anything or `sync`, and at unmount. A crash may leave a
//! folder's times up to a second old; its names are never behind.

use std::sync::Arc;
use std::time::Duration;

use log::warn;

use super::errno::Result;
use super::fs::CaskFs;

/// How long a folder's new times may stay in memory only.
const STORE_EVERY: Duration = Duration::from_secs(1);

impl CaskFs {
    /// Stores every folder's times that are newer than its record.
    pub(super) fn store_folder_times(&self) -> Result<()> {
        let inos: Vec<u64> = self.unstored.lock().drain().collect();
        let mut failed = None;
        for (n, &ino) in inos.iter().enumerate() {
            let live = self.lives.get(ino);
            let _lock = live.lock();
            let Some(v) = live.unstored() else {
                continue;
            };
            if let Err(e) = self.put_inode(&live, v.inode.clone()) {
                // Kept to be tried again, with those not tried yet.
                self.unstored.lock().extend(&inos[n..]);
                failed = Some(e);
                break;
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// Stores folders' times every `STORE_EVERY`, for as long as the
    /// filesystem lives. Not needed on a shared backend, which stores them
    /// with each change.
    pub fn store_folder_times_in_background(self: &Arc<Self>) {
        if self.opts.shared || self.opts.read_only {
            return;
        }
        let tick = |fs: &CaskFs| {
            if !fs.unstored.lock().is_empty()
                && let Err(e) = fs.store_folder_times()
            {
                warn!("storing folders' times: {e}");
            }
        };
        self.every(
            ("caskfs-times", STORE_EVERY),
            "folders' times are stored only at sync and unmount",
            tick,
        );
    }
}
