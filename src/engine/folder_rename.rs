//! Renaming a folder: the folder's record and every key below it move in
//! one batch record, so after a crash the whole old tree or the whole new
//! one exists, never part of each. Values are copied record to record,
//! under the writer lock, so one rename is bounded: at most
//! `MAX_RENAME_ENTRIES` keys and `MAX_RENAME_BYTES` of records (or the
//! maximum value size, if smaller, since the batch is one record).

use std::sync::Arc;

use super::error::{Error, Result, show_key};
use super::index::Entry;
use super::inner::Inner;
use super::key::validate_key;
use super::meta::{Meta, now_ns};
use super::record::HEADER_LEN;
use super::segment::Segment;
use super::store::{Store, check_meta, live};
use super::tree::EntryKind;
use super::writer::{self, Change, Op, Source};

/// The most keys below a folder that one rename moves.
pub const MAX_RENAME_ENTRIES: usize = 10_000;
/// The most bytes of records (keys, values, headers) one rename writes.
pub const MAX_RENAME_BYTES: u64 = 64 << 20;

/// A live record to move: its key, where it goes, and where it lies.
struct Move {
    from: Vec<u8>,
    to: Vec<u8>,
    seg: Arc<Segment>,
    entry: Entry,
}

impl Store {
    /// Moves folder `from`, with everything below it, to `to`, replacing
    /// `to` if that is an empty folder (the caller checks the rules of
    /// rename(2): `to` not inside `from`, not a file, not a folder with
    /// entries). The folder keeps its record's metadata, ctime now; an
    /// implied folder (one with no record) gets a record with `folder`.
    /// Returns how many keys below it moved. `FolderTooLarge` beyond the
    /// bounds above, with nothing written.
    pub fn rename_folder(&self, from: &[u8], to: &[u8], folder: &Meta) -> Result<usize> {
        validate_key(from)?;
        validate_key(to)?;
        check_meta(to, folder)?;
        let max_bytes = MAX_RENAME_BYTES.min(self.inner.opts.max_value_size);
        loop {
            if self.kind(from) != Some(EntryKind::Folder) {
                return Err(Error::NotFound {
                    key: show_key(from),
                });
            }
            let too_large = |entries, bytes| Error::FolderTooLarge {
                key: show_key(from),
                entries,
                bytes,
            };
            let below = self
                .below(from, MAX_RENAME_ENTRIES)
                .ok_or_else(|| too_large(MAX_RENAME_ENTRIES + 1, 0))?;
            let version = self.inner.version();
            let own = live(&version, from).ok().map(|(s, e)| (s.clone(), e));
            let mut moves = Vec::with_capacity(below.len());
            for (key, _) in &below {
                // Implied folders have no record: their entries imply them.
                if let Ok((seg, entry)) = live(&version, key) {
                    moves.push(Move {
                        to: [to, &key[from.len()..]].concat(),
                        from: key.clone(),
                        seg: seg.clone(),
                        entry,
                    });
                }
            }
            let mut ops = Vec::with_capacity(2 * moves.len() + 2);
            let folder_meta = match &own {
                Some((seg, e)) => seg.meta(from, e)?,
                None => *folder,
            };
            if own.is_some() {
                ops.push(delete(from));
            }
            ops.push(Op {
                key: to,
                change: Change::Put {
                    value: match &own {
                        Some((seg, e)) => Source::Stored(seg.clone(), *e, from),
                        None => Source::Bytes(b""),
                    },
                    meta: Meta {
                        ctime: now_ns(),
                        ..folder_meta
                    },
                },
            });
            for m in &moves {
                ops.push(delete(&m.from));
                ops.push(Op {
                    key: &m.to,
                    change: Change::Put {
                        value: Source::Stored(m.seg.clone(), m.entry, &m.from),
                        meta: m.seg.meta(&m.from, &m.entry)?,
                    },
                });
            }
            let bytes = writer::encoded_len(&ops, true) - HEADER_LEN as u64;
            if bytes > max_bytes {
                return Err(too_large(below.len(), bytes));
            }
            let unchanged = |i: &Inner| {
                let v = i.version();
                let same = |key: &[u8], seg: &Arc<Segment>, e: &Entry| {
                    live(&v, key).is_ok_and(|(s, now)| Arc::ptr_eq(s, seg) && now == *e)
                };
                let own_same = match &own {
                    Some((seg, e)) => same(from, seg, e),
                    None => live(&v, from).is_err(),
                };
                let count = i.tree.read().as_ref().map(|t| t.below(from, below.len()));
                Ok(own_same
                    && matches!(count, Some(Some(now)) if now.len() == below.len())
                    && moves.iter().all(|m| same(&m.from, &m.seg, &m.entry)))
            };
            if self.inner.commit(&mut ops, unchanged)? {
                return Ok(below.len());
            }
        }
    }
}

fn delete(key: &[u8]) -> Op<'_> {
    Op {
        key,
        change: Change::Delete,
    }
}
