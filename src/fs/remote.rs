//! Another host's changes, on a backend several hosts share: the
//! directory map takes their entries, the committed versions kept in
//! memory are dropped, and the kernel forgets what it had of them. And
//! what nothing reaches any more, which a shared backend's commits leave
//! (another host may still read or commit on it), goes after a while.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};

use super::errno::Result;
use super::fs::CaskFs;
use crate::backend::{Batch, Change, Revision};
use crate::schema::keys;

/// How long what nothing reaches stays on a shared backend: a reader on
/// another host, or a writer whose draft started from an older version,
/// may still need it.
const GRACE: Duration = Duration::from_secs(3600);

impl CaskFs {
    /// Has the kernel forget what it holds of what other hosts change (a
    /// shared backend).
    pub fn follow_remote_changes(self: &Arc<Self>) {
        if !self.opts.shared {
            return;
        }
        let fs = Arc::downgrade(self);
        self.store.kv.watch(Box::new(move |c| {
            if let Some(fs) = fs.upgrade() {
                fs.changed_elsewhere(c);
            }
        }));
    }

    /// Waits up to `within` until this host has taken in every other
    /// host's change up to `revision` (a lock granted at it guards what
    /// they wrote before); whether it has.
    pub fn catch_up(&self, revision: Revision, within: Duration) -> bool {
        !self.opts.shared || self.store.kv.wait_seen(revision, within)
    }

    /// A lock on `ino` was granted: this host's writers that have not
    /// changed the file read it anew, so that they see what another
    /// host's holder committed before it unlocked, as NFS revalidates at
    /// a lock. Readers keep the version they opened.
    pub fn lock_granted(&self, ino: u64) {
        if self.opts.shared {
            for d in self.handles.drafts_of(ino) {
                d.reload_if_unchanged();
            }
        }
    }

    /// On a shared backend, collects garbage now and then in the background
    /// (`collect_garbage`), for as long as the filesystem lives.
    pub fn collect_garbage_in_background(self: &Arc<Self>) {
        if !self.opts.shared || self.opts.read_only {
            return;
        }
        let fs = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("caskfs-gc".into())
            .spawn(move || {
                loop {
                    match fs.upgrade().map(|fs| fs.collect_garbage(GRACE)) {
                        None => return,
                        Some(Err(e)) => warn!("collecting garbage: {e}"),
                        Some(Ok(_)) => {}
                    }
                    // Looked at again often enough that the thread ends soon
                    // after the filesystem.
                    for _ in 0..GRACE.as_secs() / 10 {
                        std::thread::sleep(Duration::from_secs(10));
                        if fs.strong_count() == 0 {
                            return;
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            warn!("no garbage collection: {e}");
        }
    }

    /// Entry keys this mount wrote, at the revision it wrote them: the
    /// watch brings them back, and must not undo a later change of ours.
    pub(super) fn note_own(&self, batch: &Batch, revision: Revision) {
        if !self.opts.shared {
            return;
        }
        let mut own = self.own.lock();
        for op in &batch.ops {
            if keys::entry_of(op.key()).is_some() {
                own.insert(op.key().to_vec(), revision);
            }
        }
    }

    /// The entry `name` of folder `parent` as the shared backend has it
    /// now, taken into the directory map ahead of the watch, which then
    /// does not undo it with an older change of the key.
    pub(super) fn refresh_entry(&self, parent: u64, name: &[u8]) -> Result<()> {
        let key = keys::entry(parent, name);
        let value = self.store.kv.get(&key)?;
        let record = match &value {
            Some(v) => Some(v.bytes(0, v.len() as usize)?.to_vec()),
            None => None,
        };
        let mut dirs = self.dirs.write();
        if let Some(v) = &value {
            self.own.lock().insert(key, v.revision());
        }
        dirs.apply(parent, name, record.as_deref())?;
        Ok(())
    }

    fn changed_elsewhere(&self, c: Change) {
        let kernel = self.kernel.get();
        if let Some((parent, name)) = keys::entry_of(c.key) {
            let mut dirs = self.dirs.write();
            {
                let mut own = self.own.lock();
                match own.get(c.key) {
                    Some(&mine) if c.revision <= mine => {
                        if c.revision == mine {
                            own.remove(c.key);
                        }
                        return;
                    }
                    Some(_) => {
                        own.remove(c.key);
                    }
                    None => {}
                }
            }
            if let Err(e) = dirs.apply(parent, name, c.value) {
                warn!("another host's entry: {e}");
            }
            drop(dirs);
            if let Some(k) = kernel {
                k.name_changed(self.nodeids.node_of(parent), name);
            }
        } else if let Some(ino) = keys::inode_of(c.key) {
            if let Some(l) = self.lives.find(ino) {
                l.changed_elsewhere(c.revision);
            }
            if let Some(k) = kernel {
                k.attrs_changed(self.nodeids.node_of(ino));
            }
        }
    }

    /// Deletes the extents and nodes that nothing reached at the last
    /// collection, at least `grace` ago, and still reaches now: each was
    /// unreached for `grace` at least, however its id was handed out.
    /// The first call only looks. Returns how many went.
    pub fn collect_garbage(&self, grace: Duration) -> Result<usize> {
        let mut last = self.unreached_seen.lock();
        if last.as_ref().is_some_and(|(at, _)| at.elapsed() < grace) {
            return Ok(0);
        }
        let reach = self.reachable_keys()?;
        let mut unreached = HashSet::new();
        for prefix in [keys::extent_prefix(), keys::node_prefix()] {
            unreached.extend(
                self.store
                    .kv
                    .keys(prefix)?
                    .into_iter()
                    .filter(|k| !reach.contains(k)),
            );
        }
        let dead: Vec<Vec<u8>> = match last.take() {
            Some((_, before)) => unreached
                .iter()
                .filter(|k| before.contains(*k))
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        for k in &dead {
            unreached.remove(k);
        }
        *last = Some((Instant::now(), unreached));
        let gone = dead.len();
        super::commit::delete(&*self.store.kv, dead)?;
        if gone > 0 {
            info!(
                "removed {gone} extents and nodes nothing reached for {} s",
                grace.as_secs()
            );
        }
        Ok(gone)
    }
}
