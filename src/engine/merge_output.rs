//! A merge's output: one new segment file written under a temporary name,
//! with the survivors copied into it (CRC-checked on the way) and its index
//! built as it goes. Outputs are written in the current layout, so merges
//! are what upgrade a store's segments; in version 2 instead while records
//! of an older build may still hold metadata nothing else keeps (a store
//! not yet carried over into the schema, `Store::metadata_carried_over`).

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::{Error, Result};
use super::format::{self, SEGMENT_HEADER_LEN};
use super::hint;
use super::index::{Entry, Index, hash_key};
use super::record::{self, CRC_FIELD, Header, Layout};
use super::segment::{CHUNK, Segment};

/// A record chosen to survive, in the order it is copied. Its key is read
/// from the record itself when copied (and checked against `hash`), so the
/// selection allocates nothing per key.
pub struct Survivor {
    pub offset: u32,
    pub key_len: u16,
    pub hash: u64,
    pub entry: Entry,
}

impl Survivor {
    /// Its length in a merge output of the current layout.
    pub fn record_len(&self) -> u64 {
        self.len_in(Layout::CURRENT)
    }

    /// Its length in a segment of `layout`.
    fn len_in(&self, layout: Layout) -> u64 {
        (layout.header_len() + usize::from(self.key_len)) as u64 + u64::from(self.entry.value_len)
    }

    /// The record's key, if the record is the one the index described.
    fn key_in<'r>(&self, seg: &Segment, head: &'r [u8], old: &Header) -> Result<&'r [u8]> {
        let at = seg.layout.header_len();
        let key = &head[at..at + usize::from(self.key_len)];
        if old.key_len != self.key_len
            || old.value_len != self.entry.value_len
            || hash_key(key) != self.hash
        {
            return Err(Error::corrupt(
                &seg.path,
                u64::from(self.offset),
                "record does not match the index",
            ));
        }
        Ok(key)
    }
}

/// Whether a record of `len` bytes starts a new output rather than going
/// into the one that holds `out_len` bytes: outputs are cut at the segment
/// size, but each takes at least one record.
pub fn output_full(out_len: u64, len: u64, max_segment_size: u64) -> bool {
    out_len > SEGMENT_HEADER_LEN as u64 && out_len + len > max_segment_size
}

/// An output segment being written under its temporary name.
pub struct Output {
    pub id: u64,
    pub path: PathBuf,
    pub tmp: PathBuf,
    pub out: BufWriter<File>,
    pub len: u64,
    layout: Layout,
    index: Index,
    max_seq: u64,
}

impl Output {
    /// Starts output segment `id` of `layout` under its temporary name,
    /// with an index sized for `entries`.
    pub fn create(dir: &Path, id: u64, layout: Layout, entries: usize) -> Result<Output> {
        let path = format::segment_path(dir, id);
        let tmp = format::temp_path(&path);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
        let mut out = Output {
            id,
            path,
            tmp,
            out: BufWriter::with_capacity(CHUNK, file),
            len: 0,
            layout,
            index: Index::with_capacity(entries, entries * 16),
            max_seq: 0,
        };
        out.write(&format::encode_segment_header(id, layout))?;
        Ok(out)
    }

    pub fn io_err(&self, e: std::io::Error) -> Error {
        Error::io(format!("writing merge output {}", self.tmp.display()), e)
    }

    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).map_err(|e| self.io_err(e))?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Copies one record, checking its CRC on the way. A record that was part
    /// of a batch is written as a record of its own: its batch is no longer
    /// needed once its partner is superseded or merged beside it.
    pub fn copy(&mut self, seg: &Segment, s: &Survivor) -> Result<()> {
        let at = u64::from(s.offset);
        if s.len_in(seg.layout) <= CHUNK as u64 {
            return self.copy_small(seg, s);
        }
        let head_len = seg.layout.header_len();
        let head = seg.read_at(at, head_len + usize::from(s.key_len))?;
        let old = Header::parse(&head, seg.layout).map_err(|d| Error::corrupt(&seg.path, at, d))?;
        let key = s.key_in(seg, &head, &old)?;
        let value_at = at + head.len() as u64;
        let value_end = value_at + u64::from(old.value_len);

        // One pass to check the old CRC and compute the new one, both from
        // the CRC of the value; a second to copy the value.
        let value_crc = seg.crc_hasher(value_at, value_end)?;
        let with_value = |header_rest: &[u8]| {
            let mut h = crc32fast::Hasher::new();
            h.update(header_rest);
            h.update(key);
            h.combine(&value_crc);
            h.finalize()
        };
        if with_value(&head[CRC_FIELD.end..head_len]) != old.crc {
            return Err(Error::corrupt(&seg.path, at, "checksum mismatch"));
        }
        let mut new = Header {
            layout: self.layout,
            in_batch: false,
            crc: 0,
            ..old
        };
        new.crc = with_value(&new.encode()[CRC_FIELD.end..]);

        let offset = self.len;
        self.write(&new.encode())?;
        self.write(key)?;
        let mut pos = value_at;
        while pos < value_end {
            let n = ((value_end - pos) as usize).min(CHUNK);
            self.write(&seg.bytes(pos, n)?)?;
            pos += n as u64;
        }
        self.indexed(s, key, offset, old.seq);
        Ok(())
    }

    /// `copy` for a record that fits in memory: checked and copied in one
    /// read (from the mapping, usually without a copy of its own).
    fn copy_small(&mut self, seg: &Segment, s: &Survivor) -> Result<()> {
        let at = u64::from(s.offset);
        let rec = seg.bytes(at, s.len_in(seg.layout) as usize)?;
        let old = Header::parse(&rec, seg.layout).map_err(|d| Error::corrupt(&seg.path, at, d))?;
        let key = s.key_in(seg, &rec, &old)?;
        if !record::crc_ok(&rec) {
            return Err(Error::corrupt(&seg.path, at, "checksum mismatch"));
        }
        let offset = self.len;
        if old.in_batch || old.layout != self.layout {
            let mut new = Header {
                layout: self.layout,
                in_batch: false,
                crc: 0,
                ..old
            };
            let key_and_value = &rec[old.header_len()..];
            let mut h = crc32fast::Hasher::new();
            h.update(&new.encode()[CRC_FIELD.end..]);
            h.update(key_and_value);
            new.crc = h.finalize();
            self.write(&new.encode())?;
            self.write(key_and_value)?;
        } else {
            self.write(&rec)?;
        }
        self.indexed(s, key, offset, old.seq);
        Ok(())
    }

    /// Records a survivor copied to `offset` in this output's index.
    fn indexed(&mut self, s: &Survivor, key: &[u8], offset: u64, seq: u64) {
        let entry = Entry {
            offset: offset as u32,
            ..s.entry
        };
        self.index.insert_new(s.hash, key, entry);
        self.max_seq = self.max_seq.max(seq);
    }

    /// Syncs the file, renames it into place and writes its hint.
    pub fn finish(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| self.io_err(e))?;
        self.out.get_ref().sync_all().map_err(|e| self.io_err(e))?;
        fs::rename(&self.tmp, &self.path)
            .map_err(|e| Error::io(format!("renaming {} into place", self.tmp.display()), e))?;
        let dir = self.path.parent().unwrap_or(std::path::Path::new("."));
        hint::write(dir, self.id, self.len, self.max_seq, &self.index)
    }

    pub fn into_segment(self) -> Result<Arc<Segment>> {
        let Output {
            id,
            path,
            layout,
            index,
            max_seq,
            ..
        } = self;
        let file =
            File::open(&path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let seg = Segment::with_file(id, path, file, index, layout)?;
        seg.set_max_seq(max_seq);
        seg.freeze();
        Ok(Arc::new(seg))
    }
}
