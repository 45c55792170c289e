//! How a namespace lay in etcd before the schema (docs/SCHEMA.md), under
//! the mount's prefix P; `caskfs backup` still reads it, to carry such a
//! namespace over:
//!
//! - `P/m/KEY`: the key's record: its metadata, length, and where its bytes
//!   are (a few dozen bytes, so the whole tree of names loads quickly);
//! - `P/d/KEY`: the bytes of a value up to `INLINE_MAX`, beside it;
//! - `P/c/GEN/N`: chunk N of a larger value, written under a generation of
//!   its own before the one small transaction that points the record at
//!   it; a generation no record points to is garbage.
//!
//! A record is `ck1`, a body tag (0 inline, 1 chunks), then little-endian
//! length, mode, uid, gid, mtime and ctime (ns), and for chunks the
//! generation.

use super::Client;
use crate::backend::{Error, Result};

/// What a record said of its key besides its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// `st_mode`: a regular file, a folder or a symlink, and its
    /// permissions.
    pub mode: u32,
    /// 0xFFFF_FFFF: whoever mounts it.
    pub uid: u32,
    pub gid: u32,
    /// Nanoseconds since the epoch.
    pub mtime: u64,
    pub ctime: u64,
}

/// Values up to this many bytes are stored in one etcd key; etcd takes
/// requests up to 1.5 MiB by default.
pub const INLINE_MAX: u64 = 1 << 20;
/// The size of each chunk of a larger value.
pub const CHUNK: u64 = 1 << 20;

const MAGIC: &[u8; 3] = b"ck1";
const FIXED: usize = 3 + 1 + 8 + 4 + 4 + 4 + 8 + 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    Inline,
    Chunks { generation: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub meta: Meta,
    pub len: u64,
    pub body: Body,
}

impl Record {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(FIXED + 8);
        v.extend_from_slice(MAGIC);
        v.push(match self.body {
            Body::Inline => 0,
            Body::Chunks { .. } => 1,
        });
        v.extend_from_slice(&self.len.to_le_bytes());
        let m = &self.meta;
        v.extend_from_slice(&m.mode.to_le_bytes());
        v.extend_from_slice(&m.uid.to_le_bytes());
        v.extend_from_slice(&m.gid.to_le_bytes());
        v.extend_from_slice(&m.mtime.to_le_bytes());
        v.extend_from_slice(&m.ctime.to_le_bytes());
        if let Body::Chunks { generation } = self.body {
            v.extend_from_slice(&generation.to_le_bytes());
        }
        v
    }

    /// `None` for bytes that are no record of ours.
    pub fn decode(b: &[u8]) -> Option<Record> {
        if b.len() < FIXED || &b[..3] != MAGIC {
            return None;
        }
        let u32_at = |i: usize| Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?));
        let u64_at = |i: usize| Some(u64::from_le_bytes(b.get(i..i + 8)?.try_into().ok()?));
        let body = match b[3] {
            0 if b.len() == FIXED => Body::Inline,
            1 if b.len() == FIXED + 8 => Body::Chunks {
                generation: u64_at(FIXED)?,
            },
            _ => return None,
        };
        Some(Record {
            len: u64_at(4)?,
            meta: Meta {
                mode: u32_at(12)?,
                uid: u32_at(16)?,
                gid: u32_at(20)?,
                mtime: u64_at(24)?,
                ctime: u64_at(32)?,
            },
            body,
        })
    }
}

/// Where a namespace's keys lie in etcd.
#[derive(Clone, Debug)]
pub struct Layout {
    /// The prefix, ending in `/`.
    prefix: Vec<u8>,
}

impl Layout {
    /// `prefix` is the mount's prefix, with or without a final `/`.
    pub fn new(prefix: &[u8]) -> Layout {
        let mut prefix = prefix.to_vec();
        if prefix.last() != Some(&b'/') {
            prefix.push(b'/');
        }
        Layout { prefix }
    }

    fn under(&self, part: &[u8], rest: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + part.len() + rest.len());
        k.extend_from_slice(&self.prefix);
        k.extend_from_slice(part);
        k.extend_from_slice(rest);
        k
    }

    pub fn records(&self) -> Vec<u8> {
        self.under(b"m/", b"")
    }

    pub fn record(&self, key: &[u8]) -> Vec<u8> {
        self.under(b"m/", key)
    }

    pub fn data(&self, key: &[u8]) -> Vec<u8> {
        self.under(b"d/", key)
    }

    /// The key a record's etcd key names, if it is one.
    pub fn key_of_record<'a>(&self, etcd_key: &'a [u8]) -> Option<&'a [u8]> {
        etcd_key.strip_prefix(self.records().as_slice())
    }

    pub fn chunks(&self) -> Vec<u8> {
        self.under(b"c/", b"")
    }

    pub fn generation(&self, generation: u64) -> Vec<u8> {
        self.under(b"c/", format!("{generation:016x}/").as_bytes())
    }

    pub fn chunk(&self, generation: u64, n: u64) -> Vec<u8> {
        self.under(b"c/", format!("{generation:016x}/{n:08x}").as_bytes())
    }

    /// The generation a chunk's etcd key names, if it is one.
    pub fn generation_of(&self, etcd_key: &[u8]) -> Option<u64> {
        let rest = etcd_key.strip_prefix(self.chunks().as_slice())?;
        let hex = std::str::from_utf8(rest.get(..16)?).ok()?;
        u64::from_str_radix(hex, 16).ok()
    }
}

/// Every key of the old layout under `layout`, with its record.
pub fn records(client: &Client, layout: &Layout) -> Result<Vec<(Vec<u8>, Record)>> {
    let (kvs, _) = client
        .get_prefix(&layout.records(), 1000, false)
        .map_err(super::fail)?;
    Ok(kvs
        .into_iter()
        .filter_map(|kv| {
            let key = layout.key_of_record(&kv.key)?.to_vec();
            Some((key, Record::decode(&kv.value)?))
        })
        .collect())
}

/// The bytes of `key`, whose record is `r`, handed to `each` in pieces
/// (a large value's chunks one at a time).
pub fn read(
    client: &Client,
    layout: &Layout,
    key: &[u8],
    r: &Record,
    each: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let damaged = || Error::Corrupt(format!("{}: bytes missing", String::from_utf8_lossy(key)));
    match r.body {
        Body::Inline => {
            let (kv, _) = client.get(&layout.data(key)).map_err(super::fail)?;
            let data = kv.map(|kv| kv.value).unwrap_or_default();
            if data.len() as u64 != r.len {
                return Err(damaged());
            }
            each(&data)
        }
        Body::Chunks { generation } => {
            let mut left = r.len;
            let mut n = 0;
            while left > 0 {
                let (kv, _) = client
                    .get(&layout.chunk(generation, n))
                    .map_err(super::fail)?;
                let chunk = kv.ok_or_else(damaged)?.value;
                if chunk.is_empty() || chunk.len() as u64 > left {
                    return Err(damaged());
                }
                left -= chunk.len() as u64;
                each(&chunk)?;
                n += 1;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_garbage_is_refused() {
        let meta = Meta {
            mode: 0o100644,
            uid: 1000,
            gid: 100,
            mtime: 1_700_000_000_000_000_000,
            ctime: 1_700_000_000_000_000_001,
        };
        for body in [Body::Inline, Body::Chunks { generation: 42 }] {
            let r = Record {
                meta,
                len: 5 << 20,
                body,
            };
            let bytes = r.encode();
            assert_eq!(Record::decode(&bytes), Some(r));
            assert_eq!(Record::decode(&bytes[..bytes.len() - 1]), None);
        }
        assert_eq!(
            Record::decode(b"hello, this is not a record of ours!!!!!"),
            None
        );
    }

    #[test]
    fn layout_names_and_parses_its_keys() {
        let l = Layout::new(b"/shop");
        assert_eq!(l.record(b"a/b"), b"/shop/m/a/b");
        assert_eq!(l.key_of_record(b"/shop/m/a/b"), Some(&b"a/b"[..]));
        assert_eq!(l.key_of_record(b"/shop/d/a/b"), None);
        assert_eq!(l.generation_of(&l.chunk(0xabc, 7)), Some(0xabc));
        assert!(l.chunk(1, 0).starts_with(&l.generation(1)));
    }
}
