//! `copy_file_range` by reference: the bytes of a large committed file
//! are not copied, the destination's draft reaches the source's extents
//! (so `cp` of a 1 GiB file takes a few records, and no space). Anything
//! else (a small file, a source with uncommitted writes, a copy within
//! one file) is copied by the daemon, still in one request.
//!
//! An extent is then reached by several files' trees, so a file that no
//! longer reaches it may not delete it. A holders record (`r` key) lists
//! the inodes that may reach it; it is written before any destination
//! reaches the extent. Freeing an extent that has one looks at each
//! holder's current version, the versions pinned and the drafts open, and
//! deletes the extent only when none reaches it. Nothing is counted, so a
//! free done twice, or a crash between two writes, keeps an extent too
//! long at worst (the next open after a crash removes what nothing
//! reaches), never deletes one that is read.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use log::debug;

use super::commit;
use super::errno::{Error, Result};
use super::fs::CaskFs;
use crate::backend::Batch;
use crate::schema::tree::{self, Extent};
use crate::schema::{Data, holders, keys};

/// Ranges smaller than this are copied: a few records would cost more
/// than the bytes.
const SHARE_FROM: u64 = 64 << 10;
/// Bytes a copy moves through memory at a time.
const COPY_STEP: u64 = 1 << 20;

impl CaskFs {
    /// Copies `len` bytes at `off_in` of the file open as `fh_in` to
    /// `off_out` of the one open for writing as `fh_out`, for thread
    /// `tid`; returns how many (fewer at the source's end).
    pub fn copy_range(
        &self,
        (fh_in, off_in): (u64, u64),
        (fh_out, off_out): (u64, u64),
        len: u64,
        tid: u32,
    ) -> Result<u64> {
        self.writable()?;
        let src = self.handles.get(fh_in)?;
        let dst = self.handles.get(fh_out)?;
        if !dst.mode.write {
            return Err(Error::BadHandle);
        }
        let live = self.lives.get(src.ino);
        // The version the source's descriptor reads, when it has no
        // changes of its own.
        let pin = match src.draft.local() {
            Some(_) => None,
            None => match src.draft.pinned() {
                Some(p) => Some(p),
                None => self.pin_current(&live)?,
            },
        };
        let size = match (&pin, src.draft.local()) {
            (_, Some((size, _, _))) => size,
            (Some(p), None) => p.inode().size,
            (None, None) => 0,
        };
        let n = len.min(size.saturating_sub(off_in));
        if n == 0 {
            return Ok(0);
        }
        let copy = self.opts.shared || src.ino == dst.ino || n < SHARE_FROM;
        let root = match pin.as_ref().map(|p| &p.inode().data) {
            Some(Data::Tree(root)) if !copy => root.clone(),
            _ => return self.copy_bytes(&src, off_in, (fh_out, off_out), n),
        };
        let pieces: Vec<Extent> = tree::read(&self.store, &root, off_in, off_in + n)?
            .into_iter()
            .map(|p| Extent {
                off: off_out + (p.off - off_in),
                ..p
            })
            .collect();
        let _sharing = self.sharing.lock();
        let ids: HashSet<u64> = pieces.iter().map(|p| p.id).collect();
        self.any_shared.store(true, Ordering::Relaxed);
        let mut b = Batch::default();
        for &id in &ids {
            let mut inos = self.holders(id)?;
            inos.extend([src.ino, dst.ino]);
            inos.sort_unstable();
            inos.dedup();
            b.put(keys::holders(id).to_vec(), holders::encode(&inos));
        }
        self.store.kv.write(b)?;
        let dst_live = self.lives.get(dst.ino);
        let r = dst.draft.reshape(
            off_out.saturating_add(n),
            tid,
            self.opts.max_file_size,
            || self.pin_current(&dst_live),
            &self.frees,
            |o| o.share(off_out, n, pieces),
        );
        debug!(
            "copy_file_range: {n} bytes of inode {} shared with inode {} ({} extents)",
            src.ino,
            dst.ino,
            ids.len()
        );
        self.change(dst.node, r.map(|b| (n, b)))
    }

    /// The copy of `n` bytes at `off` of `src` that is not shared: read
    /// and written through the drafts, a step at a time.
    fn copy_bytes(
        &self,
        src: &super::handle::Handle,
        off: u64,
        (fh_out, off_out): (u64, u64),
        n: u64,
    ) -> Result<u64> {
        let live = self.lives.get(src.ino);
        let mut done = 0;
        while done < n {
            let step = (n - done).min(COPY_STEP) as usize;
            let bytes = src.draft.read(
                &self.store,
                off + done,
                step,
                || self.pin_current(&live),
                <[u8]>::to_vec,
            )?;
            if bytes.is_empty() {
                break;
            }
            self.write(fh_out, off_out + done, &bytes, false, None)?;
            done += bytes.len() as u64;
        }
        Ok(done)
    }

    /// The inodes extent `id`'s holders record names (none without one).
    fn holders(&self, id: u64) -> Result<Vec<u64>> {
        match self.store.kv.get(&keys::holders(id))? {
            Some(v) => Ok(holders::decode(&v.to_vec()?)?),
            None => Ok(Vec::new()),
        }
    }

    /// Deletes `keys`, which the file that freed them reaches no more; an
    /// extent that other files may reach (it has holders) only once none
    /// does.
    pub(super) fn delete_freed(&self, keys: Vec<Vec<u8>>) -> Result<()> {
        if !self.any_shared.load(Ordering::Relaxed) {
            return commit::delete(&*self.store.kv, keys);
        }
        let mut plain = Vec::with_capacity(keys.len());
        let mut held = Vec::new();
        for k in keys {
            match k
                .starts_with(keys::extent_prefix())
                .then(|| keys::block_of(&k))
            {
                Some(Some(id)) if self.store.kv.get(&keys::holders(id))?.is_some() => held.push(id),
                _ => plain.push(k),
            }
        }
        commit::delete(&*self.store.kv, plain)?;
        if held.is_empty() {
            return Ok(());
        }
        let _sharing = self.sharing.lock();
        // Read by a pinned version, or reached by an open draft.
        let mut busy: HashSet<Vec<u8>> = self.lives.waiting().into_iter().collect();
        busy.extend(
            self.handles
                .drafts_written()
                .into_iter()
                .map(|id| keys::extent(id).to_vec()),
        );
        let mut reached: HashMap<u64, HashSet<u64>> = HashMap::new();
        for id in held {
            if busy.contains(keys::extent(id).as_slice()) {
                continue;
            }
            let mut still = Vec::new();
            for ino in self.holders(id)? {
                let ids = match reached.get(&ino) {
                    Some(ids) => ids,
                    None => reached.entry(ino).or_insert(self.extents_of(ino)?),
                };
                if ids.contains(&id) {
                    still.push(ino);
                }
            }
            let key = keys::holders(id).to_vec();
            let mut b = Batch::default();
            if still.is_empty() {
                b.delete(keys::extent(id).to_vec()).delete(key);
            } else {
                b.put(key, holders::encode(&still));
            }
            self.store.kv.write(b)?;
        }
        Ok(())
    }

    /// The extents inode `ino`'s current version reaches.
    fn extents_of(&self, ino: u64) -> Result<HashSet<u64>> {
        let Some(inode) = self.inode(ino)? else {
            return Ok(HashSet::new());
        };
        let Data::Tree(root) = &inode.data else {
            return Ok(HashSet::new());
        };
        let (mut nodes, mut entries) = (Vec::new(), Vec::new());
        tree::walk(&self.store, root, &mut nodes, &mut entries)?;
        Ok(entries.into_iter().map(|e| e.id).collect())
    }
}
