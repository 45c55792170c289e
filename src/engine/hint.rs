//! Hint files: a closed segment's index on disk, so that opening a store
//! reads a few bytes per key instead of every record.
//!
//! Layout (little-endian): header of 48 bytes — magic, format version,
//! reserved (zero), segment id, segment length the hint describes, highest
//! sequence number in the segment, entry count — then per entry: flags (bit 0
//! = tombstone), key length (u16; one byte in version 1), record offset
//! u32, value length u32 (then an mtime u64 in versions 1 and 2, read and
//! ignored), key bytes; then a CRC32 of everything before it. A hint of any
//! version may describe a segment of any version: it holds index entries,
//! not records.
//!
//! Hints are written off the write path (by the background thread, after a
//! roll) and made durable; even so, a damaged hint only fails its checksum
//! and the segment is scanned instead, so a hint can never mislead.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use super::error::{Error, Result};
use super::format::{self, FORMAT_VERSION, HINT_MAGIC};
use super::index::{Entry, Index};
use super::key::MAX_KEY_LEN;
use super::le::{le_u16, le_u32, le_u64};
use super::manifest::sync_dir;

const HEADER_LEN: usize = 8 + 4 + 4 + 8 + 8 + 8 + 8;
/// An entry's bytes before its key, in version 3.
const ENTRY_FIXED_LEN: usize = 1 + 2 + 4 + 4;

/// Where an entry's fields sit, by hint version.
struct EntryLayout {
    key_len_size: usize,
    /// Bytes of an mtime that versions 1 and 2 kept after the value length.
    mtime_size: usize,
}

impl EntryLayout {
    fn of(version: u32) -> Option<EntryLayout> {
        let (key_len_size, mtime_size) = match version {
            1 => (1, 8),
            2 => (2, 8),
            FORMAT_VERSION => (2, 0),
            _ => return None,
        };
        Some(EntryLayout {
            key_len_size,
            mtime_size,
        })
    }

    fn fixed_len(&self) -> usize {
        1 + self.key_len_size + 4 + 4 + self.mtime_size
    }
}

pub struct Hint {
    pub index: Index,
    pub max_seq: u64,
    /// Length of the segment file the hint was written for.
    pub segment_len: u64,
}

pub fn encode(id: u64, segment_len: u64, max_seq: u64, index: &Index) -> Vec<u8> {
    let mut buf =
        Vec::with_capacity(HEADER_LEN + index.len() * ENTRY_FIXED_LEN + index.key_bytes() + 4);
    buf.extend_from_slice(&HINT_MAGIC);
    buf.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    buf.extend_from_slice(&0u32.to_le_bytes());
    buf.extend_from_slice(&id.to_le_bytes());
    buf.extend_from_slice(&segment_len.to_le_bytes());
    buf.extend_from_slice(&max_seq.to_le_bytes());
    buf.extend_from_slice(&(index.len() as u64).to_le_bytes());
    for (key, e) in index.iter() {
        buf.push(u8::from(e.tombstone));
        buf.extend_from_slice(&(key.len() as u16).to_le_bytes());
        buf.extend_from_slice(&e.offset.to_le_bytes());
        buf.extend_from_slice(&e.value_len.to_le_bytes());
        buf.extend_from_slice(key);
    }
    let crc = crc32fast::hash(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    buf
}

/// Parses a hint, checking it describes segment `id`. The caller compares
/// `segment_len` with the file.
pub fn decode(bytes: &[u8], id: u64) -> std::result::Result<Hint, String> {
    if bytes.len() < HEADER_LEN + 4 {
        return Err("too short".into());
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body) != le_u32(crc) {
        return Err("checksum mismatch".into());
    }
    if body[0..8] != HINT_MAGIC {
        return Err("wrong magic number".into());
    }
    let version = le_u32(&body[8..]);
    let Some(layout) = EntryLayout::of(version) else {
        return Err(format!(
            "format version {version}, this build reads versions 1 to {FORMAT_VERSION}"
        ));
    };
    let fixed_len = layout.fixed_len();
    if le_u64(&body[16..]) != id {
        return Err("describes another segment".into());
    }
    let segment_len = le_u64(&body[24..]);
    let max_seq = le_u64(&body[32..]);
    let count = le_u64(&body[40..]);
    let max_count = (body.len() - HEADER_LEN) / (fixed_len + 1);
    if count > max_count as u64 {
        return Err("entry count larger than the file".into());
    }
    let mut index = Index::with_capacity(
        count as usize,
        body.len() - HEADER_LEN - count as usize * fixed_len,
    );
    let mut bulk = index.bulk_insert();
    let mut pos = HEADER_LEN;
    for _ in 0..count {
        let fixed = body.get(pos..pos + fixed_len).ok_or("entry cut short")?;
        let (key_len, rest) = match layout.key_len_size {
            1 => (usize::from(fixed[1]), &fixed[2..]),
            _ => (usize::from(le_u16(&fixed[1..])), &fixed[3..]),
        };
        let key = body
            .get(pos + fixed_len..pos + fixed_len + key_len)
            .ok_or("entry cut short")?;
        if fixed[0] > 1 || key.is_empty() || key_len > MAX_KEY_LEN {
            return Err("malformed entry".into());
        }
        let entry = Entry {
            tombstone: fixed[0] == 1,
            offset: le_u32(rest),
            value_len: le_u32(&rest[4..]),
        };
        if u64::from(entry.offset) >= segment_len {
            return Err("entry points past the end of the segment".into());
        }
        bulk.insert(key, entry);
        pos += fixed_len + key_len;
    }
    drop(bulk);
    if pos != body.len() {
        return Err("trailing bytes after the entries".into());
    }
    Ok(Hint {
        index,
        max_seq,
        segment_len,
    })
}

/// Writes the hint for segment `id` under a temporary name, syncs it, then
/// renames it into place.
pub fn write(dir: &Path, id: u64, segment_len: u64, max_seq: u64, index: &Index) -> Result<()> {
    let path = format::hint_path(dir, id);
    let tmp = format::temp_path(&path);
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(&encode(id, segment_len, max_seq, index))?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        sync_dir(dir)
    };
    write().map_err(|e| Error::io(format!("writing hint {}", path.display()), e))
}

/// Loads the hint for segment `id`; `Ok(None)` when there is none,
/// `Err(reason)` when it is there but unusable.
pub fn load(dir: &Path, id: u64) -> std::result::Result<Option<Hint>, String> {
    let path = format::hint_path(dir, id);
    match fs::read(&path) {
        Ok(bytes) => decode(&bytes, id).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::index::hash_key;

    fn sample() -> Index {
        let mut ix = Index::default();
        for i in 0..50u32 {
            let k = match i {
                7 => "a/b/c".to_string(),
                8 => "p/".repeat(1000) + "end",
                _ => format!("k{i}"),
            };
            let e = Entry {
                offset: 24 + i * 40,
                value_len: i,
                tombstone: i % 7 == 0,
            };
            ix.insert(hash_key(k.as_bytes()), k.as_bytes(), e);
        }
        ix
    }

    #[test]
    fn round_trip() {
        let ix = sample();
        let bytes = encode(3, 5000, 77, &ix);
        let h = decode(&bytes, 3).unwrap();
        assert_eq!((h.max_seq, h.segment_len), (77, 5000));
        let mut a: Vec<_> = ix.iter().map(|(k, e)| (k.to_vec(), e)).collect();
        let mut b: Vec<_> = h.index.iter().map(|(k, e)| (k.to_vec(), e)).collect();
        a.sort_by(|x, y| x.0.cmp(&y.0));
        b.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(a, b);
        assert!(decode(&bytes, 4).is_err());
    }

    /// A hint of version 1 or 2, as the builds before version 3 wrote it:
    /// key lengths of one byte in version 1, and an mtime in each entry.
    fn encode_old(version: u32, id: u64, segment_len: u64, max_seq: u64, index: &Index) -> Vec<u8> {
        let mut buf = Vec::new();
        buf.extend_from_slice(&HINT_MAGIC);
        buf.extend_from_slice(&version.to_le_bytes());
        buf.extend_from_slice(&0u32.to_le_bytes());
        buf.extend_from_slice(&id.to_le_bytes());
        buf.extend_from_slice(&segment_len.to_le_bytes());
        buf.extend_from_slice(&max_seq.to_le_bytes());
        buf.extend_from_slice(&(index.len() as u64).to_le_bytes());
        for (key, e) in index.iter() {
            buf.push(u8::from(e.tombstone));
            match version {
                1 => buf.push(key.len() as u8),
                _ => buf.extend_from_slice(&(key.len() as u16).to_le_bytes()),
            }
            buf.extend_from_slice(&e.offset.to_le_bytes());
            buf.extend_from_slice(&e.value_len.to_le_bytes());
            buf.extend_from_slice(&77u64.to_le_bytes());
            buf.extend_from_slice(key);
        }
        let crc = crc32fast::hash(&buf);
        buf.extend_from_slice(&crc.to_le_bytes());
        buf
    }

    #[test]
    fn version_1_hints_load() {
        let mut ix = Index::default();
        for i in 0..20u32 {
            let k = format!("v1-{i}");
            let e = Entry {
                offset: 24 + i * 30,
                value_len: i,
                tombstone: i == 3,
            };
            ix.insert(hash_key(k.as_bytes()), k.as_bytes(), e);
        }
        for version in [2, 1] {
            let bytes = encode_old(version, 2, 1000, 20, &ix);
            let h = decode(&bytes, 2).unwrap();
            assert_eq!((h.max_seq, h.segment_len), (20, 1000));
            assert!(h.index.same_as(&ix), "version {version}");
        }
        let bytes = encode_old(1, 2, 1000, 20, &ix);
        let mut future = bytes.clone();
        future[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        let body = future.len() - 4;
        let crc = crc32fast::hash(&future[..body]);
        future[body..].copy_from_slice(&crc.to_le_bytes());
        match decode(&future, 2) {
            Err(why) => assert!(why.contains("version 4"), "{why}"),
            Ok(_) => panic!("a hint of version 4 was read"),
        }
    }

    #[test]
    fn any_flip_or_cut_is_refused() {
        let bytes = encode(3, 5000, 77, &sample());
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad, 3).is_err(), "flip at {i}");
        }
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut], 3).is_err(), "cut at {cut}");
        }
    }
}
