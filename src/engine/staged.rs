//! A value too large to buffer in memory, written to a file of its own
//! before it is stored. A store's staged file leaves room in front of the
//! value for a segment header, a record header and the key, so that a
//! value of half a segment or more is stored by writing those few bytes
//! and renaming the file into a segment: no copy. Copying a 512 MiB value
//! into the active segment took 1.3 to 2.4 s on a 2-vCPU VM, the whole
//! time spent filling fresh page-cache pages once more.
//!
//! Crash safety: the file's segment header is written when it is made and
//! synced once the value reaches the size that will be adopted, so a
//! MANIFEST can never name a segment whose header is not on disk. The
//! record header written at adoption is not synced (unless the sync policy
//! says so): torn, it is a torn tail of the active segment, which opening
//! cuts, as for any record not yet synced.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use log::debug;

use super::format::{self, SEGMENT_HEADER_LEN};
use super::record::Layout;
use super::segment::CHUNK;

static PLAIN_SEQ: AtomicU64 = AtomicU64::new(0);

pub struct Staged {
    file: File,
    /// Its name while it is not a segment, to remove if it never becomes
    /// one; `None` for a plain file (unlinked at once).
    path: Option<PathBuf>,
    /// For a store's file: the segment id it was made for, the key length
    /// it has room for, and from which value length it may be adopted.
    adoptable: Option<Adoptable>,
    /// Where the value starts in the file.
    value_at: u64,
    len: u64,
    /// The segment header has been synced.
    synced: bool,
    /// The CRC of the value's first bytes, up to where it was written in
    /// order from the start (as nearly every large file is), so that
    /// storing it need not read those bytes back.
    crc: Option<(u64, crc32fast::Hasher)>,
}

#[derive(Clone, Copy)]
pub(super) struct Adoptable {
    pub id: u64,
    pub key_len: usize,
    pub from_len: u64,
}

impl Staged {
    /// An unlinked temporary file in `dir`, holding the value from its
    /// first byte, for a storage that copies it when storing it.
    pub fn plain(dir: &Path) -> io::Result<Staged> {
        let n = PLAIN_SEQ.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("spill-{}-{n}.tmp", std::process::id()));
        let file = create(&path)?;
        fs::remove_file(&path)?;
        Ok(Staged {
            file,
            path: None,
            adoptable: None,
            value_at: 0,
            len: 0,
            synced: false,
            crc: None,
        })
    }

    /// A file for segment `id` of `dir`, named as a temporary file (so an
    /// open after a crash removes it), with room for a key of `key_len`.
    pub(super) fn for_segment(
        dir: &Path,
        id: u64,
        key_len: usize,
        from_len: u64,
    ) -> io::Result<Staged> {
        let path = format::temp_path(&format::segment_path(dir, id));
        let file = create(&path)?;
        let staged = Staged {
            file,
            path: Some(path),
            adoptable: Some(Adoptable {
                id,
                key_len,
                from_len,
            }),
            value_at: (SEGMENT_HEADER_LEN + Layout::V2.header_len() + key_len) as u64,
            len: 0,
            synced: false,
            crc: Some((0, crc32fast::Hasher::new())),
        };
        staged
            .file
            .write_all_at(&format::encode_segment_header(id, Layout::V2), 0)?;
        staged.file.set_len(staged.value_at)?;
        Ok(staged)
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        // Bytes already hashed change, or a gap opens: hashed at the end.
        self.crc = self.crc.take().and_then(|(upto, mut h)| {
            (offset == upto).then(|| {
                h.update(data);
                (upto + data.len() as u64, h)
            })
        });
        self.file.write_all_at(data, self.value_at + offset)?;
        self.len = self.len.max(offset + data.len() as u64);
        self.sync_header_once_adoptable()
    }

    pub fn set_len(&mut self, len: u64) -> io::Result<()> {
        if self.crc.as_ref().is_some_and(|(upto, _)| *upto > len) {
            self.crc = None;
        }
        self.file.set_len(self.value_at + len)?;
        self.len = len;
        self.sync_header_once_adoptable()
    }

    /// Up to `size` bytes of the value from `offset` (fewer at its end).
    pub fn read_at(&self, offset: u64, size: usize) -> io::Result<Vec<u8>> {
        let end = self.len.min(offset.saturating_add(size as u64));
        let mut buf = vec![0; end.saturating_sub(offset) as usize];
        self.file.read_exact_at(&mut buf, self.value_at + offset)?;
        Ok(buf)
    }

    /// The value from its start, for a storage that copies it.
    pub fn reader(&self) -> impl Read + '_ {
        StagedReader {
            staged: self,
            pos: 0,
        }
    }

    /// Whether a value of `len` bytes in this file would be stored in
    /// place (for a key of the length it was made for), needing no more
    /// room than the file already takes.
    pub fn stored_in_place(&self, len: u64) -> bool {
        self.adoptable.is_some_and(|a| len >= a.from_len)
    }

    /// Whether the store may take the file over as the value of a key of
    /// `key_len` bytes; synced far enough for that if so.
    pub(super) fn adoptable_for(&self, key_len: usize) -> Option<Adoptable> {
        self.adoptable
            .filter(|a| a.key_len == key_len && self.len >= a.from_len && self.synced)
    }

    /// The CRC of the value alone, to be combined with its record header's.
    pub(super) fn value_crc(&self) -> io::Result<crc32fast::Hasher> {
        let (mut at, mut hasher) = self.crc.clone().unwrap_or_default();
        let mut buf = vec![0; CHUNK.min((self.len - at) as usize)];
        while at < self.len {
            let n = CHUNK.min((self.len - at) as usize);
            self.file.read_exact_at(&mut buf[..n], self.value_at + at)?;
            hasher.update(&buf[..n]);
            at += n as u64;
        }
        Ok(hasher)
    }

    /// Writes the record header `head` (with the key) in front of the
    /// value and gives the file its segment name; the file is the caller's
    /// from then on.
    pub(super) fn into_segment_file(mut self, head: &[u8], to: &Path) -> io::Result<File> {
        let head_at = SEGMENT_HEADER_LEN as u64;
        if head_at + head.len() as u64 != self.value_at {
            return Err(io::Error::other("record header does not fit the room left"));
        }
        self.file.write_all_at(head, head_at)?;
        let from = self
            .path
            .take()
            .ok_or_else(|| io::Error::other("not a store's file"))?;
        if let Err(e) = fs::rename(&from, to) {
            self.path = Some(from);
            return Err(e);
        }
        self.file.try_clone()
    }

    /// The segment header becomes durable before the file may be named by
    /// a MANIFEST, and only for a value that will be adopted: syncing
    /// every draft past the memory limit would cost each file of a few
    /// MiB a sync.
    fn sync_header_once_adoptable(&mut self) -> io::Result<()> {
        if let Some(a) = self.adoptable
            && !self.synced
            && self.len >= a.from_len
        {
            self.file.sync_data()?;
            self.synced = true;
        }
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(path) = &self.path
            && let Err(e) = fs::remove_file(path)
        {
            debug!("removing {}: {e}", path.display());
        }
    }
}

fn create(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
}

struct StagedReader<'a> {
    staged: &'a Staged,
    pos: u64,
}

impl Read for StagedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.staged.len - self.pos;
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self
            .staged
            .file
            .read_at(&mut buf[..n], self.staged.value_at + self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}
