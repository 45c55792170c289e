//! Listing a folder: one snapshot of its entries per open stream, from the
//! engine's tree of folders, so a listing costs the folder's entries and
//! returns each entry that existed throughout it exactly once.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::attr::{Kind, ROOT_INO};
use super::errno::{Error, Result};
use super::fs::{CaskFs, DirEntry};
use super::storage::EntryKind;
use crate::engine::tree;

impl CaskFs {
    /// Opens folder `ino` for listing; the names are read at the first
    /// `readdir`.
    pub fn opendir(&self, ino: u64) -> Result<u64> {
        self.folder(ino)?;
        let fh = self.next_dir.fetch_add(1, Ordering::Relaxed) + 1;
        self.dirs.lock().insert(fh, None);
        Ok(fh)
    }

    /// The entries of folder `dir` (inode `ino`) and the files being
    /// created in it, as they are now.
    fn listing(&self, ino: u64, dir: &[u8]) -> Result<Vec<DirEntry>> {
        let mut names = self.store.list(dir)?.unwrap_or_default();
        names.extend(
            self.inodes
                .pending_in(dir)
                .into_iter()
                .map(|n| (n, EntryKind::File)),
        );
        names.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        names.dedup_by(|a, b| a.0 == b.0);
        let keys: Vec<Vec<u8>> = names.iter().map(|(n, _)| tree::join(dir, n)).collect();
        let inos = self.inodes.inos_for(&keys);
        let parent = match dir.is_empty() {
            true => ROOT_INO,
            false => self.inodes.ino_for(tree::split(dir).0),
        };
        let dots = [(ino, &b"."[..]), (parent, b"..")]
            .map(|(ino, name)| (ino, Kind::Directory, name.to_vec()));
        let entries = inos
            .into_iter()
            .zip(names)
            .map(|(ino, (name, kind))| (ino, Kind::from(kind), name));
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
    /// the rest: a listing of N keys takes N/k requests of k entries).
    pub fn readdir(&self, ino: u64, fh: u64, offset: u64) -> Result<(Arc<Vec<DirEntry>>, usize)> {
        let taken = self.dirs.lock().get(&fh).cloned().ok_or(Error::BadHandle)?;
        let all = match taken {
            Some(all) => all,
            None => {
                // The folder's key now: it may have moved since opendir.
                let dir = self.inodes.key_of(ino).unwrap_or_default();
                let all = Arc::new(self.listing(ino, &dir)?);
                if let Some(slot) = self.dirs.lock().get_mut(&fh) {
                    *slot = Some(all.clone());
                }
                all
            }
        };
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(all.len());
        Ok((all, start))
    }

    pub fn releasedir(&self, fh: u64) {
        self.dirs.lock().remove(&fh);
    }
}
