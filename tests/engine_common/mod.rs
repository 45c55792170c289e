//! Helpers shared by the engine's integration tests: a seeded RNG, data-dir
//! file access, an independent decoder and encoder of the record format
//! (written from `docs/FORMAT.md`/`record.rs`'s byte table, not from the
//! engine's code), and a watchdog for tests that could hang.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use caskfs::engine::{Options, Store};

pub const SEGMENT_HEADER_LEN: usize = 24;
/// A version-3 record header (what this build writes): CRC, seq, flags,
/// key length, value length.
pub const RECORD_HEADER_LEN: usize = caskfs::engine::RECORD_HEADER_LEN;
/// A version-2 record header (segments written before version 3).
pub const V2_RECORD_HEADER_LEN: usize = 47;
/// A version-1 record header (segments written before version 2).
pub const V1_RECORD_HEADER_LEN: usize = 26;
/// The mode and owner a version-1 record, or a plain `put`, reads as.
pub const DEFAULT_MODE: u32 = 0o100_644;
pub const OWNER_UNSET: u32 = u32::MAX;
const KIND_PUT: u8 = 0;
const KIND_TOMBSTONE: u8 = 1;
const KIND_BATCH: u8 = 2;
const IN_BATCH: u8 = 0x80;

/// splitmix64: tiny, seeded, reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(len);
        v
    }
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("caskfs-engine-test")
        .tempdir()
        .expect("creating a temporary directory")
}

/// Options with the smallest segment size, so that tests cross many rolls,
/// and no background compaction, so that the files a test damages stay put
/// (compaction has its own tests; the model test also runs with it on).
pub fn small_opts() -> Options {
    Options {
        max_segment_size: 4096,
        compaction: false,
        ..Options::default()
    }
}

pub fn open(dir: &Path) -> Store {
    Store::open(dir, small_opts()).expect("opening the store")
}

pub fn seg_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016}.seg"))
}

pub fn hint_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016}.hint"))
}

/// Ids of the segment files in `dir`, oldest first.
pub fn segment_ids(dir: &Path) -> Vec<u64> {
    let mut ids: Vec<u64> = fs::read_dir(dir)
        .expect("listing the data directory")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".seg")
                .filter(|stem| stem.len() == 16)
                .and_then(|stem| stem.parse().ok())
        })
        .collect();
    ids.sort_unstable();
    ids
}

/// Copies every regular file of `src` into `dst` (created), except LOCK.
pub fn copy_dir(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).expect("creating the copy");
    for e in fs::read_dir(src).expect("listing the data directory") {
        let e = e.expect("directory entry");
        if e.file_name() == "LOCK" || !e.file_type().expect("file type").is_file() {
            continue;
        }
        fs::copy(e.path(), dst.join(e.file_name())).expect("copying a file");
    }
}

/// The metadata fields of a record header (for a version-1 put, the
/// defaults it reads as; for a version-3 put, which holds none, the
/// defaults at time 0; zeros but the mtime for a tombstone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecMeta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u64,
    pub ctime: u64,
}

impl RecMeta {
    pub fn default_at(ns: u64) -> RecMeta {
        RecMeta {
            mode: DEFAULT_MODE,
            uid: OWNER_UNSET,
            gid: OWNER_UNSET,
            mtime: ns,
            ctime: ns,
        }
    }
}

/// One put or tombstone found in a segment (an inner record of a batch
/// included): its byte range and what it says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub start: usize,
    pub end: usize,
    pub key: Vec<u8>,
    /// `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    pub meta: RecMeta,
}

/// One top-level record: its byte range and the changes it makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rec {
    pub start: usize,
    pub end: usize,
    pub seq: u64,
    pub batch: bool,
    pub items: Vec<Item>,
}

fn le_u16(b: &[u8]) -> u16 {
    u16::from_le_bytes(b[..2].try_into().expect("2 bytes"))
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes(b[..4].try_into().expect("4 bytes"))
}

fn le_u64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
}

/// One record header as decoded.
struct Parsed {
    flags: u8,
    seq: u64,
    key: Vec<u8>,
    end: usize,
    meta: RecMeta,
}

/// Parses one record at `off` of a segment of format `version` (not
/// checking `in_batch`); None when it is not whole and valid.
fn parse_one(data: &[u8], off: usize, version: u32) -> Option<Parsed> {
    let head_len = header_len(version);
    let h = data.get(off..off + head_len)?;
    let seq = le_u64(&h[4..]);
    // Version 3: no mtime; flags at 12, key length u16 at 13, value length
    // u32 at 15.
    let mtime = if version == 3 { 0 } else { le_u64(&h[12..]) };
    let flags = if version == 3 { h[12] } else { h[20] };
    let (key_len, value_len, mut meta) = match version {
        1 => {
            let meta = RecMeta::default_at(mtime);
            (h[21] as usize, le_u32(&h[22..]) as usize, meta)
        }
        3 => {
            let meta = RecMeta::default_at(0);
            (le_u16(&h[13..]) as usize, le_u32(&h[15..]) as usize, meta)
        }
        _ => {
            let meta = RecMeta {
                mode: le_u32(&h[27..]),
                uid: le_u32(&h[31..]),
                gid: le_u32(&h[35..]),
                mtime,
                ctime: le_u64(&h[39..]),
            };
            (le_u16(&h[21..]) as usize, le_u32(&h[23..]) as usize, meta)
        }
    };
    if flags & 0b11 != KIND_PUT && version != 2 {
        meta = RecMeta {
            mode: 0,
            uid: 0,
            gid: 0,
            mtime,
            ctime: 0,
        };
    }
    let end = off + head_len + key_len + value_len;
    let rec = data.get(off..end)?;
    if crc32fast::hash(&rec[4..]) != le_u32(rec) {
        return None;
    }
    let key = rec[head_len..head_len + key_len].to_vec();
    Some(Parsed {
        flags,
        seq,
        key,
        end,
        meta,
    })
}

/// The record header length of segments of format `version`.
fn header_len(version: u32) -> usize {
    match version {
        1 => V1_RECORD_HEADER_LEN,
        2 => V2_RECORD_HEADER_LEN,
        _ => RECORD_HEADER_LEN,
    }
}

/// The format version in a segment file's header.
pub fn segment_version(data: &[u8]) -> u32 {
    data.get(8..12).map_or(0, le_u32)
}

/// Decodes a whole segment file (of any format version) up to the first
/// bad record; returns the records and the offset where decoding stopped.
pub fn parse_segment(data: &[u8]) -> (Vec<Rec>, usize) {
    let version = segment_version(data);
    let head_len = header_len(version);
    let mut recs = Vec::new();
    let mut off = SEGMENT_HEADER_LEN;
    while off < data.len() {
        let Some(p) = parse_one(data, off, version) else {
            break;
        };
        if p.flags & IN_BATCH != 0 {
            break;
        }
        let (flags, seq, end) = (p.flags, p.seq, p.end);
        let item = |start: usize, p: Parsed| {
            let value_at = start + head_len + p.key.len();
            Item {
                start,
                end: p.end,
                value: (p.flags & 0b11 == KIND_PUT).then(|| data[value_at..p.end].to_vec()),
                key: p.key,
                meta: p.meta,
            }
        };
        let mut items = Vec::new();
        let batch = flags & 0b11 == KIND_BATCH;
        if batch {
            let mut inner = off + head_len;
            while inner < end {
                let Some(ip) = parse_one(&data[..end], inner, version) else {
                    panic!("bad inner record at {inner} of a batch whose CRC is good");
                };
                let iend = ip.end;
                items.push(item(inner, ip));
                inner = iend;
            }
        } else {
            items.push(item(off, p));
        }
        recs.push(Rec {
            start: off,
            end,
            seq,
            batch,
            items,
        });
        off = end;
    }
    (recs, off)
}

/// Encodes one version-3 record (what this build writes) the way the
/// format describes it: a put, or a tombstone for `None`.
pub fn encode_record(seq: u64, key: &[u8], value: Option<&[u8]>) -> Vec<u8> {
    let value_bytes = value.unwrap_or(b"");
    let mut buf = vec![0u8; RECORD_HEADER_LEN];
    buf[4..12].copy_from_slice(&seq.to_le_bytes());
    buf[12] = if value.is_some() {
        KIND_PUT
    } else {
        KIND_TOMBSTONE
    };
    buf[13..15].copy_from_slice(&(key.len() as u16).to_le_bytes());
    buf[15..19].copy_from_slice(&(value_bytes.len() as u32).to_le_bytes());
    buf.extend_from_slice(key);
    buf.extend_from_slice(value_bytes);
    let crc = crc32fast::hash(&buf[4..]);
    buf[..4].copy_from_slice(&crc.to_le_bytes());
    buf
}

/// The state a sequence of records leaves behind.
pub fn apply(state: &mut BTreeMap<Vec<u8>, Vec<u8>>, rec: &Rec) {
    for it in &rec.items {
        match &it.value {
            Some(v) => state.insert(it.key.clone(), v.clone()),
            None => state.remove(&it.key),
        };
    }
}

/// Runs `f` on its own thread and fails the test if it takes longer than
/// `secs` (a deadlock), instead of hanging `cargo test`.
pub fn with_timeout<F>(secs: u64, what: &str, f: F)
where
    F: FnOnce() + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(()) => handle.join().expect("worker thread"),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            // The worker panicked: re-raise its panic here.
            if let Err(p) = handle.join() {
                std::panic::resume_unwind(p);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: still running after {secs} s, most likely a deadlock")
        }
    }
}

/// The live contents of a store, read through the public API.
pub fn contents(store: &Store) -> BTreeMap<Vec<u8>, Vec<u8>> {
    store
        .keys()
        .into_iter()
        .map(|k| {
            let v = store
                .get(&k)
                .unwrap_or_else(|e| panic!("get {:?}: {e}", String::from_utf8_lossy(&k)))
                .unwrap_or_else(|| panic!("listed key {:?} has no value", k));
            (k, v)
        })
        .collect()
}
