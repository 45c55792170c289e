//! Open files: each handle reads and writes through a draft (`draft.rs`),
//! shared with the other writing handles its process has open on the
//! file.

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
    /// O_APPEND: every write goes to the end of the draft.
    pub append: bool,
    /// O_TRUNC or a fresh create: the draft starts from an empty file, to
    /// be committed even if nothing is written.
    pub truncate: bool,
}

impl OpenMode {
    /// The mode open(2)'s `flags` ask for.
    pub fn of(flags: i32) -> OpenMode {
        let write = flags & libc::O_ACCMODE != libc::O_RDONLY;
        OpenMode {
            write,
            append: write && flags & libc::O_APPEND != 0,
            truncate: write && flags & libc::O_TRUNC != 0,
        }
    }
}

pub struct Handle {
    /// The node id the kernel opened (`nodeids.rs`).
    pub node: u64,
    pub ino: u64,
    pub mode: OpenMode,
    pub draft: Arc<Draft>,
    /// A reader reading through the kernel's page cache.
    pub cached: bool,
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

    /// The extents open drafts wrote behind, which no tree reaches yet.
    pub fn drafts_written(&self) -> Vec<u64> {
        let drafts: Vec<Arc<Draft>> = self.map.lock().values().map(|h| h.draft.clone()).collect();
        drafts.iter().flat_map(|d| d.written()).collect()
    }

    pub fn get(&self, fh: u64) -> Result<Arc<Handle>> {
        self.map.lock().get(&fh).cloned().ok_or(Error::BadHandle)
    }

    /// Takes handle `fh` out, and says whether it was the last handle on
    /// its draft; that draft is then closing: an open from now on starts a
    /// new one instead of sharing a draft being committed, and it leaves
    /// the table with `forget_draft`, after its commit.
    pub fn remove(&self, fh: u64) -> Result<(Arc<Handle>, bool)> {
        let mut drafts = self.drafts.lock();
        let mut map = self.map.lock();
        let h = map.remove(&fh).ok_or(Error::BadHandle)?;
        let last = !map.values().any(|o| Arc::ptr_eq(&o.draft, &h.draft));
        if last {
            h.draft.close();
        }
        if let Some(list) = drafts.get_mut(&h.ino) {
            list.retain(|d| d.strong_count() > 0);
        }
        Ok((h, last))
    }

    /// Takes the draft of `h`, a last handle removed, off its file's list.
    pub fn forget_draft(&self, h: &Handle) {
        if let Some(list) = self.drafts.lock().get_mut(&h.ino) {
            list.retain(|d| d.strong_count() > 0 && !std::ptr::eq(d.as_ptr(), &*h.draft));
        }
    }

    /// The handles open on kernel node `node`.
    pub fn on_node(&self, node: u64) -> Vec<Arc<Handle>> {
        self.map
            .lock()
            .values()
            .filter(|h| h.node == node)
            .cloned()
            .collect()
    }

    /// Whether a handle on node `node` matching `f` is open (no copy of
    /// them).
    pub fn any_on(&self, node: u64, f: impl Fn(&Handle) -> bool) -> bool {
        self.map.lock().values().any(|h| h.node == node && f(h))
    }

    /// Whether any handle on inode `ino` is open, through any node.
    pub fn any_of(&self, ino: u64) -> bool {
        self.map.lock().values().any(|h| h.ino == ino)
    }

    /// Opens a handle with `mode` on inode `ino` (as kernel node `node`)
    /// that writes through the draft of thread `tid`'s process, made with
    /// `make` if it has none. Both happen under the drafts lock, so a
    /// release (`remove`) sees the new handle share the draft before it
    /// could commit and drop it.
    pub fn insert_writer(
        &self,
        node: u64,
        ino: u64,
        mode: OpenMode,
        tid: u32,
        make: impl FnOnce(Opener) -> Draft,
    ) -> (u64, Arc<Handle>) {
        let mut drafts = self.drafts.lock();
        let list = drafts.entry(ino).or_default();
        list.retain(|d| d.strong_count() > 0);
        let found = list
            .iter()
            .filter_map(Weak::upgrade)
            .find(|d| d.opener.is(tid) && !d.closing());
        let draft = found.unwrap_or_else(|| {
            let d = Arc::new(make(Opener::new(tid)));
            list.push(Arc::downgrade(&d));
            d
        });
        self.insert(Handle {
            node,
            ino,
            mode,
            draft,
            cached: false,
        })
    }

    /// The live drafts of inode `ino`.
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

    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    pub fn drain(&self) -> Vec<Arc<Handle>> {
        self.map.lock().drain().map(|(_, h)| h).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A release that found its handle the last on a draft commits that
    /// draft after `remove` returns; an open meanwhile must not adopt it
    /// (an `O_TRUNC` would empty it just before the release stores it).
    #[test]
    fn an_open_never_shares_a_draft_being_released() {
        let t = HandleTable::default();
        let mode = OpenMode {
            write: true,
            ..OpenMode::default()
        };
        let (a, ha) = t.insert_writer(5, 5, mode, 1, |o| Draft::writer(5, o));
        let (b, hb) = t.insert_writer(5, 5, mode, 1, |o| Draft::writer(5, o));
        assert!(Arc::ptr_eq(&ha.draft, &hb.draft), "one process, one draft");
        assert!(!t.remove(a).unwrap().1);
        let (_, last) = t.remove(b).unwrap();
        assert!(last);
        // `hb` is still held, as by the release committing it.
        let (_, hc) = t.insert_writer(5, 5, mode, 1, |o| Draft::writer(5, o));
        assert!(!Arc::ptr_eq(&hb.draft, &hc.draft));
    }
}
