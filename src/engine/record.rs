//! One record: a put, a tombstone, or a batch of puts and tombstones that
//! must be applied together. A segment's header says which layout its
//! records use; this build writes version 3 and reads all three.
//!
//! Version 3 (little-endian), keys and values and nothing else:
//!
//! | offset | size | field                                            |
//! |-------:|-----:|--------------------------------------------------|
//! |      0 |    4 | CRC32 of every byte after this field             |
//! |      4 |    8 | sequence number (orders records; never time)     |
//! |     12 |    1 | flags: kind in bits 0-1, IN_BATCH in bit 7       |
//! |     13 |    2 | key length (0 for a batch, else 1..=4095)        |
//! |     15 |    4 | value length                                     |
//! |     19 |    k | key                                              |
//! |   19+k |    v | value (a batch: its inner records back to back)  |
//!
//! Version 2, written by builds before it, has the same first 12 bytes,
//! then an mtime (8 bytes, at 12), the flags (at 20), the key length (at
//! 21), the value length (at 23) and a file's mode, uid, gid (4 bytes
//! each) and ctime (8) before the key at 47: what the layout of files as
//! paths kept in each record. Tombstones and batch headers carry zeros
//! there. Version 1 has version 2's first 21 bytes, then a key length of
//! 1 byte (at 21, keys of 1..=255 bytes), the value length (at 22) and the
//! key (at 26): no mode, owner or ctime. Its puts read as
//! `Meta::v1(mtime)`, version 3's as `Meta::file(0)`.

use std::ops::Deref;

use super::key::MAX_KEY_LEN;
use super::le::{le_u16, le_u32, le_u64};
use super::meta::Meta;

const CRC_OFFSET: usize = 0;
const SEQ_OFFSET: usize = CRC_OFFSET + 4;
const FLAGS_OFFSET: usize = SEQ_OFFSET + 8;
const KEY_LEN_OFFSET: usize = FLAGS_OFFSET + 1;
const VALUE_LEN_OFFSET: usize = KEY_LEN_OFFSET + 2;
/// Length of a version-3 record header, the layout every write uses.
pub const HEADER_LEN: usize = VALUE_LEN_OFFSET + 4;

// Versions 1 and 2, read only.
const MTIME_OFFSET: usize = SEQ_OFFSET + 8;
const V2_FLAGS_OFFSET: usize = MTIME_OFFSET + 8;
const V2_KEY_LEN_OFFSET: usize = V2_FLAGS_OFFSET + 1;
const V2_VALUE_LEN_OFFSET: usize = V2_KEY_LEN_OFFSET + 2;
const MODE_OFFSET: usize = V2_VALUE_LEN_OFFSET + 4;
const UID_OFFSET: usize = MODE_OFFSET + 4;
const GID_OFFSET: usize = UID_OFFSET + 4;
const CTIME_OFFSET: usize = GID_OFFSET + 4;
const V2_HEADER_LEN: usize = CTIME_OFFSET + 8;
const V1_KEY_LEN_OFFSET: usize = V2_FLAGS_OFFSET + 1;
const V1_VALUE_LEN_OFFSET: usize = V1_KEY_LEN_OFFSET + 1;
const V1_HEADER_LEN: usize = V1_VALUE_LEN_OFFSET + 4;
/// The longest header of any layout.
const MAX_HEADER_LEN: usize = V2_HEADER_LEN;

const KIND_MASK: u8 = 0b11;
/// Marks a record inside a batch, so that a resynchronising scan never takes
/// one half of a torn batch for a record of its own.
const IN_BATCH: u8 = 0x80;

/// Where the CRC field sits relative to the record start: a streamed record
/// is written with a placeholder and patched here once its bytes are known.
pub const CRC_FIELD: std::ops::Range<usize> = CRC_OFFSET..SEQ_OFFSET;

/// The record layout of a segment, from the format version in its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    V1,
    V2,
    V3,
}

impl Layout {
    /// The layout this build writes.
    pub const CURRENT: Layout = Layout::V3;

    pub fn from_version(version: u32) -> Option<Layout> {
        match version {
            1 => Some(Layout::V1),
            2 => Some(Layout::V2),
            3 => Some(Layout::V3),
            _ => None,
        }
    }

    pub fn version(self) -> u32 {
        match self {
            Layout::V1 => 1,
            Layout::V2 => 2,
            Layout::V3 => 3,
        }
    }

    pub const fn header_len(self) -> usize {
        match self {
            Layout::V1 => V1_HEADER_LEN,
            Layout::V2 => V2_HEADER_LEN,
            Layout::V3 => HEADER_LEN,
        }
    }

    const fn flags_offset(self) -> usize {
        match self {
            Layout::V1 | Layout::V2 => V2_FLAGS_OFFSET,
            Layout::V3 => FLAGS_OFFSET,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Put,
    Tombstone,
    Batch,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub layout: Layout,
    pub crc: u32,
    pub seq: u64,
    pub kind: Kind,
    pub in_batch: bool,
    pub key_len: u16,
    pub value_len: u32,
    /// A put's metadata; for a tombstone or a batch only `mtime` (the time
    /// of the change), the rest zero.
    pub meta: Meta,
}

/// The metadata of a tombstone or batch header: its time, nothing else.
const fn time_only(mtime: u64) -> Meta {
    Meta {
        mode: 0,
        uid: 0,
        gid: 0,
        mtime,
        ctime: 0,
    }
}

impl Header {
    pub fn put(seq: u64, in_batch: bool, key_len: u16, value_len: u32, meta: Meta) -> Header {
        Header {
            layout: Layout::CURRENT,
            crc: 0,
            seq,
            kind: Kind::Put,
            in_batch,
            key_len,
            value_len,
            meta,
        }
    }

    pub fn tombstone(seq: u64, mtime: u64, in_batch: bool, key_len: u16) -> Header {
        Header {
            kind: Kind::Tombstone,
            ..Header::put(seq, in_batch, key_len, 0, time_only(mtime))
        }
    }

    pub fn batch(seq: u64, mtime: u64, value_len: u32) -> Header {
        Header {
            kind: Kind::Batch,
            ..Header::put(seq, false, 0, value_len, time_only(mtime))
        }
    }

    /// Parses and sanity-checks a header laid out as `layout`.
    pub fn parse(b: &[u8], layout: Layout) -> Result<Header, &'static str> {
        if b.len() < layout.header_len() {
            return Err("record header cut short");
        }
        let flags = b[layout.flags_offset()];
        if flags & !(KIND_MASK | IN_BATCH) != 0 {
            return Err("unknown record flags");
        }
        let kind = match flags & KIND_MASK {
            0 => Kind::Put,
            1 => Kind::Tombstone,
            2 => Kind::Batch,
            _ => return Err("unknown record kind"),
        };
        let mtime = match layout {
            Layout::V3 => 0,
            Layout::V1 | Layout::V2 => le_u64(&b[MTIME_OFFSET..]),
        };
        let (key_len, value_len, meta) = match layout {
            Layout::V1 => (
                u16::from(b[V1_KEY_LEN_OFFSET]),
                le_u32(&b[V1_VALUE_LEN_OFFSET..]),
                if kind == Kind::Put {
                    Meta::v1(mtime)
                } else {
                    time_only(mtime)
                },
            ),
            Layout::V3 => (
                le_u16(&b[KEY_LEN_OFFSET..]),
                le_u32(&b[VALUE_LEN_OFFSET..]),
                if kind == Kind::Put {
                    Meta::file(0)
                } else {
                    time_only(0)
                },
            ),
            Layout::V2 => (
                le_u16(&b[V2_KEY_LEN_OFFSET..]),
                le_u32(&b[V2_VALUE_LEN_OFFSET..]),
                Meta {
                    mode: le_u32(&b[MODE_OFFSET..]),
                    uid: le_u32(&b[UID_OFFSET..]),
                    gid: le_u32(&b[GID_OFFSET..]),
                    mtime,
                    ctime: le_u64(&b[CTIME_OFFSET..]),
                },
            ),
        };
        let h = Header {
            layout,
            crc: le_u32(&b[CRC_OFFSET..]),
            seq: le_u64(&b[SEQ_OFFSET..]),
            kind,
            in_batch: flags & IN_BATCH != 0,
            key_len,
            value_len,
            meta,
        };
        match kind {
            Kind::Batch if h.key_len != 0 || h.in_batch => Err("malformed batch header"),
            Kind::Put | Kind::Tombstone if h.key_len == 0 => Err("record with an empty key"),
            _ if usize::from(h.key_len) > MAX_KEY_LEN => Err("key longer than 4095 bytes"),
            Kind::Tombstone if h.value_len != 0 => Err("tombstone with a value"),
            Kind::Put if meta.invalid().is_some() => Err("record with an invalid mode"),
            Kind::Tombstone | Kind::Batch if meta != time_only(mtime) => {
                Err("metadata on a tombstone or batch")
            }
            _ => Ok(h),
        }
    }

    /// The header's bytes in its layout, CRC field as set.
    ///
    /// A version-1 header is only ever encoded for a record of a version-1
    /// segment (a repair's tombstone for a key found there), whose key
    /// length fits its one byte.
    pub fn encode(&self) -> Encoded {
        let mut b = [0u8; MAX_HEADER_LEN];
        b[CRC_OFFSET..SEQ_OFFSET].copy_from_slice(&self.crc.to_le_bytes());
        b[SEQ_OFFSET..SEQ_OFFSET + 8].copy_from_slice(&self.seq.to_le_bytes());
        let kind = match self.kind {
            Kind::Put => 0,
            Kind::Tombstone => 1,
            Kind::Batch => 2,
        };
        b[self.layout.flags_offset()] = kind | if self.in_batch { IN_BATCH } else { 0 };
        match self.layout {
            Layout::V3 => {
                b[KEY_LEN_OFFSET..VALUE_LEN_OFFSET].copy_from_slice(&self.key_len.to_le_bytes());
                b[VALUE_LEN_OFFSET..HEADER_LEN].copy_from_slice(&self.value_len.to_le_bytes());
            }
            Layout::V1 => {
                b[MTIME_OFFSET..V2_FLAGS_OFFSET].copy_from_slice(&self.meta.mtime.to_le_bytes());
                b[V1_KEY_LEN_OFFSET] = self.key_len as u8;
                b[V1_VALUE_LEN_OFFSET..V1_HEADER_LEN]
                    .copy_from_slice(&self.value_len.to_le_bytes());
            }
            Layout::V2 => {
                let m = &self.meta;
                b[MTIME_OFFSET..V2_FLAGS_OFFSET].copy_from_slice(&m.mtime.to_le_bytes());
                b[V2_KEY_LEN_OFFSET..V2_VALUE_LEN_OFFSET]
                    .copy_from_slice(&self.key_len.to_le_bytes());
                b[V2_VALUE_LEN_OFFSET..MODE_OFFSET].copy_from_slice(&self.value_len.to_le_bytes());
                b[MODE_OFFSET..UID_OFFSET].copy_from_slice(&m.mode.to_le_bytes());
                b[UID_OFFSET..GID_OFFSET].copy_from_slice(&m.uid.to_le_bytes());
                b[GID_OFFSET..CTIME_OFFSET].copy_from_slice(&m.gid.to_le_bytes());
                b[CTIME_OFFSET..V2_HEADER_LEN].copy_from_slice(&m.ctime.to_le_bytes());
            }
        }
        Encoded {
            bytes: b,
            len: self.layout.header_len(),
        }
    }

    pub fn header_len(&self) -> usize {
        self.layout.header_len()
    }

    pub fn record_len(&self) -> u64 {
        self.header_len() as u64 + u64::from(self.key_len) + u64::from(self.value_len)
    }
}

/// A header's bytes: as long as its layout's header.
pub struct Encoded {
    bytes: [u8; MAX_HEADER_LEN],
    len: usize,
}

impl Deref for Encoded {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The key of the record that `b` begins with, if `b` holds it: a cheap
/// look without parsing (or trusting) the rest of the header.
pub fn key_at(b: &[u8], layout: Layout) -> Option<&[u8]> {
    let len = match layout {
        Layout::V1 => usize::from(*b.get(V1_KEY_LEN_OFFSET)?),
        Layout::V2 => usize::from(le_u16(b.get(V2_KEY_LEN_OFFSET..V2_VALUE_LEN_OFFSET)?)),
        Layout::V3 => usize::from(le_u16(b.get(KEY_LEN_OFFSET..VALUE_LEN_OFFSET)?)),
    };
    let at = layout.header_len();
    b.get(at..at + len)
}

/// Appends one whole record, CRC included, to `buf`.
pub fn encode(buf: &mut Vec<u8>, header: Header, key: &[u8], value: &[u8]) {
    let start = buf.len();
    buf.extend_from_slice(&header.encode());
    buf.extend_from_slice(key);
    buf.extend_from_slice(value);
    let crc = crc32fast::hash(&buf[start + SEQ_OFFSET..]);
    buf[start..start + SEQ_OFFSET].copy_from_slice(&crc.to_le_bytes());
}

/// Like `encode`, but leaves `value` out of `buf`: it is to be written
/// right after what `buf` gets, from where it lies. The CRC covers it.
pub fn encode_head(buf: &mut Vec<u8>, header: Header, key: &[u8], value: &[u8]) {
    let start = buf.len();
    buf.extend_from_slice(&header.encode());
    buf.extend_from_slice(key);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&buf[start + SEQ_OFFSET..]);
    crc.update(value);
    buf[start..start + SEQ_OFFSET].copy_from_slice(&crc.finalize().to_le_bytes());
}

/// True when `record` (exactly one whole record) matches its CRC.
pub fn crc_ok(record: &[u8]) -> bool {
    record.len() >= SEQ_OFFSET && crc32fast::hash(&record[SEQ_OFFSET..]) == le_u32(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::meta::{OWNER_UNSET, S_IFLNK, S_IFREG};

    const META: Meta = Meta {
        mode: S_IFLNK | 0o777,
        uid: 1000,
        gid: 100,
        mtime: 1234,
        ctime: 5678,
    };

    /// `h` laid out as version 2, which older builds wrote.
    fn v2(h: Header) -> Header {
        Header {
            layout: Layout::V2,
            ..h
        }
    }

    fn sample() -> Vec<u8> {
        let mut buf = Vec::new();
        encode(
            &mut buf,
            Header::put(9, false, 7, 5, Meta::file(0)),
            b"dir/key",
            b"value",
        );
        buf
    }

    #[test]
    fn v3_round_trip() {
        let buf = sample();
        assert_eq!(HEADER_LEN, 19);
        let h = Header::parse(&buf, Layout::V3).unwrap();
        assert_eq!(
            (h.seq, h.kind, h.key_len, h.value_len, h.meta, h.layout),
            (9, Kind::Put, 7, 5, Meta::file(0), Layout::V3)
        );
        assert_eq!(h.record_len() as usize, buf.len());
        assert_eq!(key_at(&buf, Layout::V3), Some(&b"dir/key"[..]));
        assert!(crc_ok(&buf));
        // Byte positions as the table gives them.
        assert_eq!(le_u64(&buf[4..]), 9);
        assert_eq!(buf[12], 0);
        assert_eq!(le_u16(&buf[13..]), 7);
        assert_eq!(le_u32(&buf[15..]), 5);
        assert_eq!(&buf[19..26], b"dir/key");

        let mut batch = Vec::new();
        encode(&mut batch, Header::tombstone(4, 99, true, 1), b"t", b"");
        let t = Header::parse(&batch, Layout::V3).unwrap();
        assert_eq!(
            (t.kind, t.in_batch, t.meta.mtime),
            (Kind::Tombstone, true, 0)
        );
        assert_eq!(batch[12], 1 | IN_BATCH);
    }

    #[test]
    fn v2_round_trip() {
        let mut buf = Vec::new();
        encode(
            &mut buf,
            v2(Header::put(9, false, 7, 5, META)),
            b"dir/key",
            b"value",
        );
        assert_eq!(Layout::V2.header_len(), 47);
        let h = Header::parse(&buf, Layout::V2).unwrap();
        assert_eq!(
            (h.seq, h.kind, h.key_len, h.value_len, h.meta, h.layout),
            (9, Kind::Put, 7, 5, META, Layout::V2)
        );
        assert!(!h.in_batch);
        assert_eq!(h.record_len() as usize, buf.len());
        assert_eq!(key_at(&buf, Layout::V2), Some(&b"dir/key"[..]));
        assert_eq!(&buf[47 + 7..], b"value");
        assert!(crc_ok(&buf));
        // Byte positions as the table gives them.
        assert_eq!(le_u16(&buf[21..]), 7);
        assert_eq!(le_u32(&buf[23..]), 5);
        assert_eq!(le_u32(&buf[27..]), S_IFLNK | 0o777);
        assert_eq!(le_u32(&buf[31..]), 1000);
        assert_eq!(le_u32(&buf[35..]), 100);
        assert_eq!(le_u64(&buf[39..]), 5678);

        let long_key = vec![b'k'; MAX_KEY_LEN];
        let mut big = Vec::new();
        let h = v2(Header::put(1, true, MAX_KEY_LEN as u16, 0, Meta::file(3)));
        encode(&mut big, h, &long_key, b"");
        let back = Header::parse(&big, Layout::V2).unwrap();
        assert_eq!(back, Header { crc: back.crc, ..h });
        assert_eq!(key_at(&big, Layout::V2), Some(&long_key[..]));

        let mut tomb = Vec::new();
        encode(&mut tomb, v2(Header::tombstone(4, 99, false, 1)), b"t", b"");
        let t = Header::parse(&tomb, Layout::V2).unwrap();
        assert_eq!(
            (t.kind, t.meta.mtime, t.meta.mode, t.meta.ctime),
            (Kind::Tombstone, 99, 0, 0)
        );
    }

    #[test]
    fn v1_records_read_with_default_metadata() {
        // Written byte by byte from the version-1 table.
        let mut rec = vec![0u8; 26];
        rec[4..12].copy_from_slice(&3u64.to_le_bytes());
        rec[12..20].copy_from_slice(&777u64.to_le_bytes());
        rec[21] = 3;
        rec[22..26].copy_from_slice(&2u32.to_le_bytes());
        rec.extend_from_slice(b"keyv!");
        let crc = crc32fast::hash(&rec[4..]);
        rec[..4].copy_from_slice(&crc.to_le_bytes());
        let h = Header::parse(&rec, Layout::V1).unwrap();
        assert_eq!(
            (h.seq, h.key_len, h.value_len, h.kind),
            (3, 3, 2, Kind::Put)
        );
        assert_eq!(h.meta, Meta::v1(777));
        assert_eq!(h.meta.mode, S_IFREG | 0o644);
        assert_eq!(
            (h.meta.uid, h.meta.gid, h.meta.ctime),
            (OWNER_UNSET, OWNER_UNSET, 777)
        );
        assert_eq!(h.record_len() as usize, rec.len());
        assert_eq!(key_at(&rec, Layout::V1), Some(&b"key"[..]));
        assert!(crc_ok(&rec));
        // Encoding it again in its own layout gives the same bytes.
        let mut again = Vec::new();
        encode(&mut again, h, b"key", b"v!");
        assert_eq!(again, rec);
        // And in version 2, the same record with its metadata spelled out.
        let mut v2 = Vec::new();
        encode(
            &mut v2,
            Header {
                layout: Layout::V2,
                ..h
            },
            b"key",
            b"v!",
        );
        assert_eq!(Header::parse(&v2, Layout::V2).unwrap().meta, Meta::v1(777));
    }

    #[test]
    fn every_bit_flip_is_caught() {
        let buf = sample();
        for i in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[i] ^= 1 << bit;
                let parsed = Header::parse(&bad, Layout::V3);
                let caught = match parsed {
                    Err(_) => true,
                    Ok(h) => h.record_len() as usize != bad.len() || !crc_ok(&bad),
                };
                assert!(caught, "flip of bit {bit} in byte {i} went unnoticed");
            }
        }
    }

    #[test]
    fn malformed_headers_are_refused() {
        let refused = |h: Header, key: &[u8], value: &[u8]| {
            let mut b = Vec::new();
            encode(&mut b, h, key, value);
            Header::parse(&b, h.layout).is_err()
        };
        assert!(refused(Header::put(1, false, 0, 1, META), b"", b"v"));
        let mut tomb = Header::tombstone(1, 0, false, 1);
        tomb.value_len = 1;
        assert!(refused(tomb, b"k", b"v"));
        let mode_on_tomb = Header {
            meta: Meta {
                mode: S_IFREG,
                ..tomb.meta
            },
            value_len: 0,
            ..v2(tomb)
        };
        assert!(refused(mode_on_tomb, b"k", b""));
        let ctime_on_batch = Header {
            meta: Meta {
                ctime: 1,
                ..time_only(0)
            },
            ..v2(Header::batch(1, 0, 0))
        };
        assert!(refused(ctime_on_batch, b"", b""));
        for mode in [0o644, 0o200_755, 0o010_644] {
            assert!(refused(
                v2(Header::put(1, false, 1, 0, Meta { mode, ..META })),
                b"k",
                b""
            ));
        }
        let too_long = vec![b'k'; MAX_KEY_LEN + 1];
        assert!(refused(
            Header::put(1, false, too_long.len() as u16, 0, META),
            &too_long,
            b""
        ));
        assert!(Header::parse(&[0u8; 30], Layout::V2).is_err());
        assert!(Header::parse(&[0u8; 10], Layout::V1).is_err());
    }
}
