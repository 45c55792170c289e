//! One record: a put, a tombstone, or a batch of puts and tombstones that
//! must be applied together (a rename). Layout (little-endian):
//!
//! | offset | size | field                                          |
//! |-------:|-----:|------------------------------------------------|
//! |      0 |    4 | CRC32 of every byte after this field           |
//! |      4 |    8 | sequence number (orders records; never time)   |
//! |     12 |    8 | wall-clock time in ns since the epoch (mtime)  |
//! |     20 |    1 | flags: kind in bits 0-1, IN_BATCH in bit 7     |
//! |     21 |    1 | key length (0 for a batch, else 1..=255)       |
//! |     22 |    4 | value length                                   |
//! |     26 |    k | key                                            |
//! |   26+k |    v | value (a batch: its inner records back to back)|

use super::format::{le_u32, le_u64};

const CRC_OFFSET: usize = 0;
const SEQ_OFFSET: usize = CRC_OFFSET + 4;
const MTIME_OFFSET: usize = SEQ_OFFSET + 8;
const FLAGS_OFFSET: usize = MTIME_OFFSET + 8;
pub const KEY_LEN_OFFSET: usize = FLAGS_OFFSET + 1;
const VALUE_LEN_OFFSET: usize = KEY_LEN_OFFSET + 1;
pub const HEADER_LEN: usize = VALUE_LEN_OFFSET + 4;

const KIND_MASK: u8 = 0b11;
/// Marks a record inside a batch, so that a resynchronising scan never takes
/// one half of a torn batch for a record of its own.
const IN_BATCH: u8 = 0x80;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Put,
    Tombstone,
    Batch,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub crc: u32,
    pub seq: u64,
    pub mtime: u64,
    pub kind: Kind,
    pub in_batch: bool,
    pub key_len: u8,
    pub value_len: u32,
}

impl Header {
    pub fn new(
        seq: u64,
        mtime: u64,
        kind: Kind,
        in_batch: bool,
        key_len: u8,
        value_len: u32,
    ) -> Self {
        Header {
            crc: 0,
            seq,
            mtime,
            kind,
            in_batch,
            key_len,
            value_len,
        }
    }

    /// Parses and sanity-checks a header; `b` must hold at least HEADER_LEN bytes.
    pub fn parse(b: &[u8]) -> Result<Header, &'static str> {
        if b.len() < HEADER_LEN {
            return Err("record header cut short");
        }
        let flags = b[FLAGS_OFFSET];
        if flags & !(KIND_MASK | IN_BATCH) != 0 {
            return Err("unknown record flags");
        }
        let kind = match flags & KIND_MASK {
            0 => Kind::Put,
            1 => Kind::Tombstone,
            2 => Kind::Batch,
            _ => return Err("unknown record kind"),
        };
        let h = Header {
            crc: le_u32(&b[CRC_OFFSET..]),
            seq: le_u64(&b[SEQ_OFFSET..]),
            mtime: le_u64(&b[MTIME_OFFSET..]),
            kind,
            in_batch: flags & IN_BATCH != 0,
            key_len: b[KEY_LEN_OFFSET],
            value_len: le_u32(&b[VALUE_LEN_OFFSET..]),
        };
        match kind {
            Kind::Batch if h.key_len != 0 || h.in_batch => Err("malformed batch header"),
            Kind::Put | Kind::Tombstone if h.key_len == 0 => Err("record with an empty key"),
            Kind::Tombstone if h.value_len != 0 => Err("tombstone with a value"),
            _ => Ok(h),
        }
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[CRC_OFFSET..SEQ_OFFSET].copy_from_slice(&self.crc.to_le_bytes());
        b[SEQ_OFFSET..MTIME_OFFSET].copy_from_slice(&self.seq.to_le_bytes());
        b[MTIME_OFFSET..FLAGS_OFFSET].copy_from_slice(&self.mtime.to_le_bytes());
        let kind = match self.kind {
            Kind::Put => 0,
            Kind::Tombstone => 1,
            Kind::Batch => 2,
        };
        b[FLAGS_OFFSET] = kind | if self.in_batch { IN_BATCH } else { 0 };
        b[KEY_LEN_OFFSET] = self.key_len;
        b[VALUE_LEN_OFFSET..HEADER_LEN].copy_from_slice(&self.value_len.to_le_bytes());
        b
    }

    pub fn record_len(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.key_len) + u64::from(self.value_len)
    }
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

/// True when `record` (exactly one whole record) matches its CRC.
pub fn crc_ok(record: &[u8]) -> bool {
    record.len() >= HEADER_LEN && crc32fast::hash(&record[SEQ_OFFSET..]) == le_u32(record)
}

/// Where the CRC field sits relative to the record start: a streamed record
/// is written with a placeholder and patched here once its bytes are known.
pub const CRC_FIELD: std::ops::Range<usize> = CRC_OFFSET..SEQ_OFFSET;

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut buf = Vec::new();
        encode(
            &mut buf,
            Header::new(9, 1234, Kind::Put, false, 3, 5),
            b"key",
            b"value",
        );
        buf
    }

    #[test]
    fn round_trip() {
        let buf = sample();
        let h = Header::parse(&buf).unwrap();
        assert_eq!(
            (h.seq, h.mtime, h.kind, h.key_len, h.value_len),
            (9, 1234, Kind::Put, 3, 5)
        );
        assert!(!h.in_batch);
        assert_eq!(h.record_len() as usize, buf.len());
        assert_eq!(&buf[HEADER_LEN + 3..], b"value");
        assert!(crc_ok(&buf));
    }

    #[test]
    fn every_bit_flip_is_caught() {
        let buf = sample();
        for i in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[i] ^= 1 << bit;
                let parsed = Header::parse(&bad);
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
        let mut empty_key = Vec::new();
        encode(
            &mut empty_key,
            Header::new(1, 0, Kind::Put, false, 0, 1),
            b"",
            b"v",
        );
        assert!(Header::parse(&empty_key).is_err());
        let mut tomb_value = Vec::new();
        encode(
            &mut tomb_value,
            Header::new(1, 0, Kind::Tombstone, false, 1, 1),
            b"k",
            b"v",
        );
        assert!(Header::parse(&tomb_value).is_err());
        assert!(Header::parse(&[0u8; 10]).is_err());
    }
}
