//! File locks that every host mounting a shared namespace sees (`flock`
//! and POSIX `fcntl` locks), behind a small interface so that neither the
//! request layer nor the filesystem knows which backend keeps them. A
//! backend that is not shared has none: the kernel keeps locks itself.
//!
//! Here too, the rules every backend shares: how one owner's ranges
//! change when it locks or unlocks part of a file (POSIX: a new lock
//! replaces what the owner held over its range, an unlock may split a
//! range in two), when two locks conflict, and how an owner's locks are
//! written down as a value.

use super::{Error, Result, Revision};

/// A shared (read) or exclusive (write) lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockKind {
    Read,
    Write,
}

/// One range an owner holds, `start..=end` in bytes (FUSE's inclusive
/// end; `i64::MAX` means "to the end of the file, however long").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    pub kind: LockKind,
    pub start: u64,
    pub end: u64,
    /// The process that took it, for `F_GETLK`'s answer.
    pub pid: u32,
}

impl Held {
    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.start <= end && start <= self.end
    }

    /// Whether this lock (another owner's) keeps `kind` over
    /// `start..=end` from being taken: they overlap and one of them is
    /// exclusive.
    pub fn conflicts(&self, kind: LockKind, start: u64, end: u64) -> bool {
        self.overlaps(start, end) && (self.kind == LockKind::Write || kind == LockKind::Write)
    }
}

/// Locks that hosts sharing a backend all see. `owner` is the kernel's
/// lock owner (a process's file table for `fcntl`, an open file
/// description for `flock`): locks of one owner never conflict with each
/// other.
pub trait Locks: Send + Sync {
    /// A lock of another owner that `kind` over `start..=end` of `ino`
    /// would conflict with (what `F_GETLK` reports), if any.
    fn conflicting(
        &self,
        ino: u64,
        owner: u64,
        kind: LockKind,
        start: u64,
        end: u64,
    ) -> Result<Option<Held>>;

    /// Sets what `owner` holds over `start..=end` of `ino` to `kind`, or
    /// releases it (`None`). Without waiting: `None`, and nothing
    /// changed, if another owner's lock conflicts; else the revision the
    /// change was made at (0 if nothing needed changing), which follows
    /// every change the previous holder made before it unlocked.
    fn set(
        &self,
        ino: u64,
        owner: u64,
        kind: Option<LockKind>,
        start: u64,
        end: u64,
        pid: u32,
    ) -> Result<Option<Revision>>;

    /// Releases every lock `owner` holds on `ino` (a close).
    fn release(&self, ino: u64, owner: u64) -> Result<()>;
}

/// What an owner holds after setting `start..=end` to `kind` (`None`:
/// unlocking it): the part of each old range outside it stays, the new
/// lock goes in, and touching ranges of one kind become one.
pub fn apply(held: &[Held], kind: Option<LockKind>, start: u64, end: u64, pid: u32) -> Vec<Held> {
    let mut out = Vec::with_capacity(held.len() + 2);
    for h in held {
        if !h.overlaps(start, end) {
            out.push(*h);
            continue;
        }
        if h.start < start {
            out.push(Held {
                end: start - 1,
                ..*h
            });
        }
        if h.end > end {
            out.push(Held {
                start: end + 1,
                ..*h
            });
        }
    }
    if let Some(kind) = kind {
        out.push(Held {
            kind,
            start,
            end,
            pid,
        });
    }
    out.sort_by_key(|h| h.start);
    let mut merged: Vec<Held> = Vec::with_capacity(out.len());
    for h in out {
        match merged.last_mut() {
            // One owner's ranges are disjoint, so only a range right after
            // another can touch it.
            Some(m) if m.kind == h.kind && h.start.saturating_sub(1) <= m.end => {
                m.end = m.end.max(h.end);
            }
            _ => merged.push(h),
        }
    }
    merged
}

/// An owner's locks as a value: one line a range, `r|w START END PID`,
/// readable with `etcdctl get`.
pub fn encode(held: &[Held]) -> Vec<u8> {
    let mut out = String::new();
    for h in held {
        let kind = match h.kind {
            LockKind::Read => 'r',
            LockKind::Write => 'w',
        };
        out.push_str(&format!("{kind} {} {} {}\n", h.start, h.end, h.pid));
    }
    out.into_bytes()
}

/// The locks `encode` wrote.
pub fn decode(value: &[u8]) -> Result<Vec<Held>> {
    let bad = || {
        Error::Corrupt(format!(
            "a lock record: {:?}",
            String::from_utf8_lossy(value)
        ))
    };
    let text = std::str::from_utf8(value).map_err(|_| bad())?;
    text.lines()
        .map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            let [kind, start, end, pid] = f.as_slice() else {
                return Err(bad());
            };
            Ok(Held {
                kind: match *kind {
                    "r" => LockKind::Read,
                    "w" => LockKind::Write,
                    _ => return Err(bad()),
                },
                start: start.parse().map_err(|_| bad())?,
                end: end.parse().map_err(|_| bad())?,
                pid: pid.parse().map_err(|_| bad())?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use LockKind::{Read, Write};

    fn h(kind: LockKind, start: u64, end: u64) -> Held {
        Held {
            kind,
            start,
            end,
            pid: 7,
        }
    }

    #[test]
    fn an_unlock_in_the_middle_splits_a_range() {
        let out = apply(&[h(Write, 0, 99)], None, 10, 19, 7);
        assert_eq!(out, vec![h(Write, 0, 9), h(Write, 20, 99)]);
    }

    #[test]
    fn a_lock_of_the_same_owner_replaces_and_merges() {
        let out = apply(&[h(Write, 0, 9), h(Write, 20, 29)], Some(Write), 10, 19, 7);
        assert_eq!(out, vec![h(Write, 0, 29)]);
        let out = apply(&[h(Write, 0, 29)], Some(Read), 10, 19, 7);
        assert_eq!(out, vec![h(Write, 0, 9), h(Read, 10, 19), h(Write, 20, 29)]);
    }

    #[test]
    fn unlocking_everything_leaves_nothing() {
        let end = i64::MAX as u64;
        let out = apply(&[h(Read, 0, 9), h(Write, 50, end)], None, 0, end, 7);
        assert!(out.is_empty());
    }

    #[test]
    fn only_overlaps_with_a_writer_conflict() {
        assert!(h(Write, 0, 9).conflicts(Read, 9, 20));
        assert!(h(Read, 0, 9).conflicts(Write, 5, 5));
        assert!(!h(Read, 0, 9).conflicts(Read, 0, 9));
        assert!(!h(Write, 0, 9).conflicts(Write, 10, 20));
    }

    #[test]
    fn records_read_back_as_written() {
        let held = vec![h(Read, 0, 9), h(Write, 10, i64::MAX as u64)];
        assert_eq!(decode(&encode(&held)).ok(), Some(held));
        assert!(decode(b"x 1 2 3\n").is_err());
        assert!(decode(b"w 1 2\n").is_err());
    }
}
