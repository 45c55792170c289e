//! Listing a folder: one snapshot of its entries per open stream, from the
//! directory map, so a listing costs the folder's entries and returns each
//! entry that existed throughout it exactly once.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::errno::{Error, Result};
use super::fs::{CaskFs, DirEntry};
use crate::vocab::FileType;

impl CaskFs {
    /// Opens folder `node` for listing; the names are read at the first
    /// `readdir`.
    pub fn opendir(&self, node: u64) -> Result<u64> {
        self.folder(self.nodeids.ino_of(node))?;
        let fh = self.next_listing.fetch_add(1, Ordering::Relaxed) + 1;
        self.listings.lock().insert(fh, None);
        Ok(fh)
    }

    /// The entries of folder `ino`, as they are now.
    fn listing(&self, ino: u64) -> Result<Vec<DirEntry>> {
        let parent = self.folder(ino)?.parent;
        let names = self.dirs.read().list(ino);
        let dots = [(ino, &b"."[..]), (parent, b"..")]
            .map(|(ino, name)| (ino, FileType::Directory, name.to_vec()));
        let entries = names
            .into_iter()
            .map(|(name, e)| (self.nodeids.node_of(e.ino), e.kind, name));
        Ok(dots
            .into_iter()
            .chain(entries)
            .enumerate()
            .map(|(i, (ino, kind, name))| DirEntry {
                ino,
                offset: i as u64 + 1,
                kind,
                name,
            })
            .collect())
    }

    /// An open listing, and where in it `offset` continues (no copy of
    /// the rest: a listing of N names takes N/k requests of k entries).
    pub fn readdir(&self, node: u64, fh: u64, offset: u64) -> Result<(Arc<Vec<DirEntry>>, usize)> {
        let taken = self
            .listings
            .lock()
            .get(&fh)
            .cloned()
            .ok_or(Error::BadHandle)?;
        let all = match taken {
            Some(all) => all,
            None => {
                let all = Arc::new(self.listing(self.nodeids.ino_of(node))?);
                if let Some(slot) = self.listings.lock().get_mut(&fh) {
                    *slot = Some(all.clone());
                }
                all
            }
        };
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(all.len());
        Ok((all, start))
    }

    pub fn releasedir(&self, fh: u64) {
        self.listings.lock().remove(&fh);
    }
}
