//! Open files: each handle reads and writes through a draft (`draft.rs`),
//! shared with the other writing handles its process has open on the key.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use super::draft::Draft;
use super::errno::{Error, Result};
use super::process::Opener;

/// How a file was opened.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenMode {
    pub write: bool,
    /// O_APPEND: every write goes to the end of the draft's value.
    pub append: bool,
    /// O_TRUNC or a fresh create: the draft starts from an empty value, to
    /// be committed even if nothing is written.
    pub truncate: bool,
}

pub struct Handle {
    pub ino: u64,
    pub mode: OpenMode,
    pub draft: Arc<Draft>,
}

/// Open handles by number, and the writers' drafts by inode.
#[derive(Default)]
pub struct HandleTable {
    map: Mutex<HashMap<u64, Arc<Handle>>>,
    /// Each inode's drafts, one per process writing it; a draft lives as
    /// long as a handle holds it.
    drafts: Mutex<HashMap<u64, Vec<Weak<Draft>>>>,
    next: AtomicU64,
}

impl HandleTable {
    pub fn insert(&self, h: Handle) -> (u64, Arc<Handle>) {
        let fh = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let h = Arc::new(h);
        self.map.lock().insert(fh, h.clone());
        (fh, h)
    }

    pub fn get(&self, fh: u64) -> Result<Arc<Handle>> {
        self.map.lock().get(&fh).cloned().ok_or(Error::BadHandle)
    }

    /// Takes handle `fh` out; its draft goes when the last handle holding
    /// it is dropped.
    pub fn remove(&self, fh: u64) -> Result<Arc<Handle>> {
        self.map.lock().remove(&fh).ok_or(Error::BadHandle)
    }

    /// Whether a handle in the table writes through `draft`.
    pub fn shares(&self, draft: &Arc<Draft>) -> bool {
        self.map
            .lock()
            .values()
            .any(|h| Arc::ptr_eq(&h.draft, draft))
    }

    pub fn for_ino(&self, ino: u64) -> Vec<Arc<Handle>> {
        self.map
            .lock()
            .values()
            .filter(|h| h.ino == ino)
            .cloned()
            .collect()
    }

    /// The draft that thread `tid`'s process writes `ino` through, made
    /// with `make` if it has none.
    pub fn draft_for(&self, ino: u64, tid: u32, make: impl FnOnce(Opener) -> Draft) -> Arc<Draft> {
        let mut drafts = self.drafts.lock();
        let list = drafts.entry(ino).or_default();
        list.retain(|d| d.strong_count() > 0);
        if let Some(d) = list
            .iter()
            .filter_map(Weak::upgrade)
            .find(|d| d.opener.is(tid))
        {
            return d;
        }
        let d = Arc::new(make(Opener::new(tid)));
        list.push(Arc::downgrade(&d));
        d
    }

    /// The live drafts of `ino`.
    pub fn drafts_of(&self, ino: u64) -> Vec<Arc<Draft>> {
        let mut drafts = self.drafts.lock();
        let Some(list) = drafts.get_mut(&ino) else {
            return Vec::new();
        };
        let live: Vec<_> = list.iter().filter_map(Weak::upgrade).collect();
        if live.is_empty() {
            drafts.remove(&ino);
        } else if live.len() < list.len() {
            list.retain(|d| d.strong_count() > 0);
        }
        live
    }

    pub fn drain(&self) -> Vec<Arc<Handle>> {
        self.map.lock().drain().map(|(_, h)| h).collect()
    }
}
