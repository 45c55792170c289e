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
pub const RECORD_HEADER_LEN: usize = 26;
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

/// One put or tombstone found in a segment (an inner record of a batch
/// included): its byte range and what it says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub start: usize,
    pub end: usize,
    pub key: Vec<u8>,
    /// `None` for a tombstone.
    pub value: Option<Vec<u8>>,
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

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes(b[..4].try_into().expect("4 bytes"))
}

fn le_u64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
}

/// Parses one record at `off` (not checking `in_batch`); None when it is not whole and valid.
fn parse_one(data: &[u8], off: usize) -> Option<(u8, bool, u64, Vec<u8>, usize, usize)> {
    let h = data.get(off..off + RECORD_HEADER_LEN)?;
    let seq = le_u64(&h[4..]);
    let flags = h[20];
    let key_len = h[21] as usize;
    let value_len = le_u32(&h[22..]) as usize;
    let end = off + RECORD_HEADER_LEN + key_len + value_len;
    let rec = data.get(off..end)?;
    if crc32fast::hash(&rec[4..]) != le_u32(rec) {
        return None;
    }
    let key = rec[RECORD_HEADER_LEN..RECORD_HEADER_LEN + key_len].to_vec();
    Some((flags, flags & IN_BATCH != 0, seq, key, end, value_len))
}

/// Decodes a whole segment file up to the first bad record; returns the
/// records and the offset where decoding stopped.
pub fn parse_segment(data: &[u8]) -> (Vec<Rec>, usize) {
    let mut recs = Vec::new();
    let mut off = SEGMENT_HEADER_LEN;
    while off < data.len() {
        let Some((flags, in_batch, seq, key, end, _)) = parse_one(data, off) else {
            break;
        };
        if in_batch {
            break;
        }
        let item = |start: usize, end: usize, flags: u8, key: Vec<u8>| {
            let value_at = start + RECORD_HEADER_LEN + key.len();
            Item {
                start,
                end,
                value: (flags & 0b11 == KIND_PUT).then(|| data[value_at..end].to_vec()),
                key,
            }
        };
        let mut items = Vec::new();
        let batch = flags & 0b11 == KIND_BATCH;
        if batch {
            let mut inner = off + RECORD_HEADER_LEN;
            while inner < end {
                let Some((iflags, _, _, ikey, iend, _)) = parse_one(&data[..end], inner) else {
                    panic!("bad inner record at {inner} of a batch whose CRC is good");
                };
                items.push(item(inner, iend, iflags, ikey));
                inner = iend;
            }
        } else {
            items.push(item(off, end, flags, key));
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

/// Encodes one record the way the format describes it.
pub fn encode_record(seq: u64, key: &[u8], value: Option<&[u8]>) -> Vec<u8> {
    let value_bytes = value.unwrap_or(b"");
    let mut buf = vec![0u8; RECORD_HEADER_LEN];
    buf[4..12].copy_from_slice(&seq.to_le_bytes());
    buf[12..20].copy_from_slice(&1_000_000_000u64.to_le_bytes());
    buf[20] = if value.is_some() {
        KIND_PUT
    } else {
        KIND_TOMBSTONE
    };
    buf[21] = key.len() as u8;
    buf[22..26].copy_from_slice(&(value_bytes.len() as u32).to_le_bytes());
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
