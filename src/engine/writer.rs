//! The single appender to the active segment. A change is one record, or one
//! batch record holding several; it is written at the end of the good log,
//! and a failed write is cut back off before anything else is appended.

use std::io::Read;
use std::sync::Arc;

use log::error;

use super::error::{Error, Result, show_key};
use super::format::SEGMENT_HEADER_LEN;
use super::index::Entry;
use super::meta::Meta;
use super::record::{self, CRC_FIELD, HEADER_LEN, Header, Kind};
use super::segment::{CHUNK, PWRITE_FROM, Segment};

/// Where a put's value comes from.
pub enum Source<'a> {
    Bytes(&'a [u8]),
    /// Exactly `len` bytes read from a reader.
    Reader(&'a mut dyn Read, u64),
}

impl Source<'_> {
    pub fn len(&self) -> u64 {
        match self {
            Source::Bytes(b) => b.len() as u64,
            Source::Reader(_, len) => *len,
        }
    }

    /// Fills `buf` with the value's bytes from `at`, where a reader must
    /// be: right after the bytes read before.
    fn read_at(&mut self, at: usize, buf: &mut [u8], key: &[u8]) -> Result<()> {
        match self {
            Source::Bytes(b) => buf.copy_from_slice(&b[at..at + buf.len()]),
            Source::Reader(r, _) => r.read_exact(buf).map_err(|e| {
                Error::io(format!("reading the value for \"{}\"", show_key(key)), e)
            })?,
        }
        Ok(())
    }
}

pub enum Change<'a> {
    Put { value: Source<'a> },
    Delete,
}

pub struct Op<'a> {
    pub key: &'a [u8],
    pub change: Change<'a>,
}

impl Op<'_> {
    fn value_len(&self) -> u64 {
        match &self.change {
            Change::Put { value, .. } => value.len(),
            Change::Delete => 0,
        }
    }

    fn record_len(&self) -> u64 {
        HEADER_LEN as u64 + self.key.len() as u64 + self.value_len()
    }

    /// Keys are at most 4095 bytes and values at most
    /// `MAX_VALUE_SIZE_LIMIT` (checked by the store), so both lengths fit.
    /// Version 3 stores no metadata nor time: a put's is what such a
    /// record reads as, a tombstone's time zero.
    fn header(&self, seq: u64, in_batch: bool) -> Header {
        let key_len = self.key.len() as u16;
        let value_len = self.value_len() as u32;
        match &self.change {
            Change::Put { .. } => Header::put(seq, in_batch, key_len, value_len, Meta::file(0)),
            Change::Delete => Header::tombstone(seq, 0, in_batch, key_len),
        }
    }
}

/// Bytes a change of these ops takes in the log, as one batch record or
/// (`atomic` false) as records of their own.
pub fn encoded_len(ops: &[Op], atomic: bool) -> u64 {
    let inner: u64 = ops.iter().map(Op::record_len).sum();
    if ops.len() == 1 || !atomic {
        inner
    } else {
        HEADER_LEN as u64 + inner
    }
}

/// Bytes appended between starts of writeback.
const WRITE_BACK_STEP: u64 = 8 << 20;

pub struct Writer {
    /// Always a segment of the current layout: `Store::open` closes an
    /// older build's active segment before anything is appended.
    pub seg: Arc<Segment>,
    /// End of the last whole record in the active segment.
    pub len: u64,
    pub next_seq: u64,
    /// Set when a failed append could not be cut back; cleared by the next cut.
    dirty_tail: bool,
    buf: Vec<u8>,
    /// Where the disk's writeback was last started: the segment's bytes
    /// are sent to the disk as they pile up, so syncing it at its roll
    /// does not wait for all of them at once.
    written_back: u64,
}

impl Writer {
    pub fn new(seg: Arc<Segment>, len: u64, next_seq: u64) -> Writer {
        Writer {
            seg,
            len,
            next_seq,
            dirty_tail: false,
            buf: Vec::new(),
            written_back: len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len <= SEGMENT_HEADER_LEN as u64
    }

    /// Appends `ops` as one record (a batch when there are several), or
    /// with `atomic` false as records of their own one after another (a
    /// crash may keep the first ones only), and returns each op's index
    /// entry. On failure nothing of it stays in the log.
    pub fn append(&mut self, ops: &mut [Op], atomic: bool) -> Result<Vec<Entry>> {
        if self.dirty_tail {
            self.cut_back()?;
        }
        let seq = self.next_seq;
        let batch = atomic && ops.len() > 1;
        let result = if ops.iter().all(|op| {
            op.value_len() <= CHUNK as u64
                || matches!(
                    op.change,
                    Change::Put {
                        value: Source::Bytes(_)
                    }
                )
        }) {
            self.append_in_memory(ops, seq, batch)
        } else {
            self.append_streamed(ops, seq, batch)
        };
        let last_seq = match batch {
            true => seq,
            false => seq + ops.len() as u64 - 1,
        };
        match result {
            Ok(entries) => {
                self.len += encoded_len(ops, batch);
                if self.len - self.written_back >= WRITE_BACK_STEP {
                    self.seg.start_writeback(self.written_back, self.len);
                    self.written_back = self.len;
                }
                self.next_seq = last_seq + 1;
                self.seg.set_max_seq(last_seq);
                Ok(entries)
            }
            Err(e) => {
                self.dirty_tail = true;
                if let Err(cut) = self.cut_back() {
                    error!("{cut}; the next append will try again");
                }
                Err(e)
            }
        }
    }

    /// Truncates the active file to the last whole record.
    fn cut_back(&mut self) -> Result<()> {
        self.seg.truncate(self.len).map_err(|e| {
            Error::io(
                format!(
                    "cutting {} back to {} bytes after a failed append",
                    self.seg.path.display(),
                    self.len
                ),
                e,
            )
        })?;
        self.dirty_tail = false;
        Ok(())
    }

    fn append_in_memory(&mut self, ops: &mut [Op], seq: u64, batch: bool) -> Result<Vec<Entry>> {
        let single = ops.len() == 1;
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        if batch {
            buf.resize(HEADER_LEN, 0);
        }
        let mut entries = Vec::with_capacity(ops.len());
        let mut owned = Vec::new();
        for (i, op) in ops.iter_mut().enumerate() {
            let h = op.header(record_seq(seq, i, batch), batch);
            entries.push(entry_for(&h, self.len + buf.len() as u64));
            let value: &[u8] = match &mut op.change {
                Change::Delete => &[],
                Change::Put {
                    value: Source::Bytes(b),
                } => b,
                Change::Put {
                    value: Source::Reader(r, len),
                } => {
                    owned.resize(*len as usize, 0);
                    r.read_exact(&mut owned).map_err(|e| {
                        Error::io(format!("reading the value for \"{}\"", show_key(op.key)), e)
                    })?;
                    &owned
                }
            };
            if single && value.len() >= PWRITE_FROM {
                // Not copied into `buf`: written from where it lies.
                record::encode_head(&mut buf, h, op.key, value);
                let head = self.seg.write_at(&buf, self.len);
                let at = self.len + buf.len() as u64;
                self.buf = buf;
                return head
                    .and_then(|()| self.seg.write_at(value, at))
                    .map(|()| entries)
                    .map_err(|e| {
                        Error::io(format!("appending to {}", self.seg.path.display()), e)
                    });
            }
            record::encode(&mut buf, h, op.key, value);
        }
        if batch {
            // Zero time: version 3 keeps none.
            let h = Header::batch(seq, 0, (buf.len() - HEADER_LEN) as u32);
            buf[..HEADER_LEN].copy_from_slice(&h.encode());
            let crc = crc32fast::hash(&buf[CRC_FIELD.end..]);
            buf[CRC_FIELD].copy_from_slice(&crc.to_le_bytes());
        }
        let written = self.seg.write_at(&buf, self.len);
        self.buf = buf;
        written.map_err(|e| Error::io(format!("appending to {}", self.seg.path.display()), e))?;
        Ok(entries)
    }

    /// For values too large to hold in memory: each record is written with a
    /// placeholder CRC, its value streamed in chunks, then the CRC patched.
    fn append_streamed(&mut self, ops: &mut [Op], seq: u64, batch: bool) -> Result<Vec<Entry>> {
        let seg = &self.seg;
        let write = |bytes: &[u8], at: u64| {
            seg.write_at(bytes, at)
                .map_err(|e| Error::io(format!("appending to {}", seg.path.display()), e))
        };
        let start = self.len;
        let mut pos = start;
        let mut outer = None;
        if batch {
            let h = Header::batch(
                seq,
                0, // no time, as above
                (encoded_len(ops, true) - HEADER_LEN as u64) as u32,
            );
            let hb = h.encode();
            write(&hb, pos)?;
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(&hb[CRC_FIELD.end..]);
            outer = Some(hasher);
            pos += HEADER_LEN as u64;
        }
        let mut entries = Vec::with_capacity(ops.len());
        let mut chunk = vec![0u8; CHUNK];
        for (i, op) in ops.iter_mut().enumerate() {
            let h = op.header(record_seq(seq, i, batch), batch);
            let rec_start = pos;
            entries.push(entry_for(&h, rec_start));
            let mut head = h.encode().to_vec();
            head.extend_from_slice(op.key);
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(&head[CRC_FIELD.end..]);
            write(&head, pos)?;
            pos += head.len() as u64;
            if let Change::Put { value } = &mut op.change {
                let mut done = 0;
                while done < h.value_len as usize {
                    let n = (h.value_len as usize - done).min(CHUNK);
                    value.read_at(done, &mut chunk[..n], op.key)?;
                    hasher.update(&chunk[..n]);
                    write(&chunk[..n], pos)?;
                    pos += n as u64;
                    done += n;
                }
            }
            let crc = hasher.clone().finalize();
            write(&crc.to_le_bytes(), rec_start)?;
            if let Some(o) = outer.as_mut() {
                o.update(&crc.to_le_bytes());
                o.combine(&hasher);
            }
        }
        if let Some(o) = outer {
            write(&o.finalize().to_le_bytes(), start)?;
        }
        Ok(entries)
    }
}

/// The sequence number of the `i`th of several ops appended from `seq`:
/// a batch's records share its number, records of their own have one each.
fn record_seq(seq: u64, i: usize, batch: bool) -> u64 {
    match batch {
        true => seq,
        false => seq + i as u64,
    }
}

fn entry_for(h: &Header, offset: u64) -> Entry {
    Entry {
        offset: offset as u32,
        value_len: h.value_len,
        tombstone: h.kind == Kind::Tombstone,
    }
}
