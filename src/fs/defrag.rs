//! Rewriting fragmented files. A file written in small pieces that were
//! committed one by one (4 KiB writes each followed by an fsync, a log
//! appended to line by line) is as many small extents, and reading it
//! back costs a record per piece. And an extent a file reaches only in
//! small part (the rest overwritten, or punched out as a hole) keeps all
//! its bytes on disk. Before the log merges its segments (a merge asked
//! for, `caskfs compact`, SIGUSR1) and after it merges on its own, the
//! files committed since are looked at: every run of small extents next
//! to each other, and what the file reaches of an extent it reaches less
//! than half of, is written again as extents of up to 1 MiB: a new
//! version with the same bytes and times, freeing the old extents, whose
//! bytes the merge then drops.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use log::{debug, warn};

use super::commit;
use super::draft::Overlay;
use super::errno::Result;
use super::fs::CaskFs;
use crate::backend::Batch;
use crate::schema::tree::{self, Extent};
use crate::schema::{Data, extent, keys};

/// An extent shorter than this is a piece.
const PIECE: u64 = 64 << 10;
/// Pieces next to each other that are rewritten as one run.
const MIN_RUN: usize = 4;
/// Files remembered as changed between two passes, at most.
const CHANGED_KEPT: usize = 65_536;
/// Bytes read and written again at a time.
const STEP: u64 = 1 << 20;
/// How often the background looks whether the backend merged.
const LOOK_EVERY: Duration = Duration::from_secs(2);

impl CaskFs {
    /// A file with an extent tree was committed: looked at by the next pass.
    pub(super) fn note_changed(&self, ino: u64) {
        let mut changed = self.changed.lock();
        if changed.len() < CHANGED_KEPT {
            changed.insert(ino);
        }
    }

    /// Rewrites the runs of pieces of every file committed since the last
    /// pass; returns how many files it rewrote. Not on a shared backend,
    /// where another host may be writing the file.
    pub fn defragment(&self) -> Result<usize> {
        if self.opts.shared || self.opts.read_only {
            return Ok(0);
        }
        let inos: HashSet<u64> = std::mem::take(&mut *self.changed.lock());
        let mut rewritten = 0;
        for ino in inos {
            match self.defragment_file(ino) {
                Ok(true) => rewritten += 1,
                Ok(false) => {}
                Err(e) => warn!("rewriting the pieces of inode {ino}: {e}"),
            }
        }
        self.flush_frees();
        Ok(rewritten)
    }

    /// After every merge the backend makes on its own, rewrites the files
    /// committed since (the pieces it frees go at the next merge), for as
    /// long as the filesystem lives.
    pub fn defragment_after_merges(self: &Arc<Self>) {
        if self.opts.shared || self.opts.read_only {
            return;
        }
        let mut seen = self.store.kv.compactions();
        let tick = move |fs: &CaskFs| {
            let now = fs.store.kv.compactions();
            if now != seen {
                seen = now;
                if let Err(e) = fs.defragment() {
                    warn!("rewriting fragmented files after a merge: {e}");
                }
            }
        };
        self.every(
            ("caskfs-defrag", LOOK_EVERY),
            "fragmented files are rewritten only before merges asked for",
            tick,
        );
    }

    /// Rewrites `ino`'s runs of pieces, if it has any, under the inode's
    /// lock, so that no commit comes in between: a draft begun before
    /// commits on top of the new version as on any other's.
    fn defragment_file(&self, ino: u64) -> Result<bool> {
        let live = self.lives.get(ino);
        let lock = live.lock();
        let Some(current) = self.inode(ino)? else {
            return Ok(false);
        };
        let Data::Tree(root) = &current.data else {
            return Ok(false);
        };
        let (mut nodes, mut entries) = (Vec::new(), Vec::new());
        tree::walk(&self.store, root, &mut nodes, &mut entries)?;
        let mut runs = runs_of_pieces(&entries);
        runs.extend(self.partly_reached(&entries)?);
        let runs = super::store::merge_ranges(runs);
        if runs.is_empty() {
            return Ok(false);
        }
        let Some(base) = self.pin_current(&live)? else {
            return Ok(false);
        };
        let mut o = Overlay::new(ino, Some(base), self.frees.clone());
        for &(a, b) in &runs {
            let mut at = a;
            while at < b {
                let n = (b - at).min(STEP);
                let bytes = self.store.read(&current, at, n as usize, <[u8]>::to_vec)?;
                o.write(&self.store, at, &bytes)?;
                at += n;
            }
        }
        let made = commit::make(&self.store, ino, &current, o, current.mtime, current.ctime)?;
        let mut b = Batch::default();
        for (k, v) in made.nodes {
            b.put(k, v);
        }
        live.keep(&made.keeps);
        b.put(keys::inode(ino).to_vec(), made.inode.encode());
        let revision = self.store.kv.write(b)?;
        self.set_current_and_free(&live, made.inode, revision, made.frees);
        drop(lock);
        drop(made.draft);
        debug!(
            "inode {ino}: {} runs of pieces ({} extents) written again",
            runs.len(),
            entries.len()
        );
        Ok(true)
    }
}

impl CaskFs {
    /// The entries of extents the file reaches less than half of (by
    /// bytes), where no other file shares them: rewritten, they free the
    /// rest.
    fn partly_reached(&self, entries: &[Extent]) -> Result<Vec<(u64, u64)>> {
        let mut reached: HashMap<u64, u64> = HashMap::new();
        for e in entries {
            *reached.entry(e.id).or_default() += e.len;
        }
        let mut wasteful = HashSet::new();
        for (id, n) in reached {
            let stored = match self.store.kv.get(&keys::extent(id))? {
                Some(v) => v.len().saturating_sub(extent::HEADER_LEN),
                None => continue,
            };
            if n * 2 < stored && self.store.kv.get(&keys::holders(id))?.is_none() {
                wasteful.insert(id);
            }
        }
        Ok(entries
            .iter()
            .filter(|e| wasteful.contains(&e.id))
            .map(|e| (e.off, e.end()))
            .collect())
    }
}

/// The byte ranges of runs of at least `MIN_RUN` pieces next to each
/// other (no hole between them), in a file's entries in order.
fn runs_of_pieces(entries: &[Extent]) -> Vec<(u64, u64)> {
    let mut runs = Vec::new();
    let mut run: Option<(u64, u64, usize)> = None;
    for e in entries {
        let piece = e.len < PIECE;
        run = match run {
            Some((a, b, n)) if piece && e.off == b => Some((a, e.end(), n + 1)),
            done => {
                if let Some((a, b, n)) = done
                    && n >= MIN_RUN
                {
                    runs.push((a, b));
                }
                piece.then(|| (e.off, e.end(), 1))
            }
        };
    }
    if let Some((a, b, n)) = run
        && n >= MIN_RUN
    {
        runs.push((a, b));
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(off: u64, len: u64) -> Extent {
        Extent {
            off,
            len,
            id: off + 1,
            at: 0,
        }
    }

    #[test]
    fn runs_are_pieces_next_to_each_other() {
        let big = 1 << 20;
        // Four pieces, a big extent, three pieces, a hole, five pieces.
        let mut v = vec![e(0, 10), e(10, 20), e(30, 5), e(35, 100), e(135, big)];
        let at = 135 + big;
        v.extend([e(at, 7), e(at + 7, 7), e(at + 14, 7)]);
        let at = at + 21 + 1000;
        v.extend((0..5).map(|i| e(at + i * 4096, 4096)));
        assert_eq!(runs_of_pieces(&v), vec![(0, 135), (at, at + 5 * 4096)]);
        assert!(runs_of_pieces(&[]).is_empty());
    }
}
