//! The MANIFEST names the live segments, oldest first, and the next segment
//! id. It is the one commit point for changes to the segment set (a roll, a
//! merge): written to a temporary file, synced, renamed over the old one,
//! and the directory synced.
//!
//! Layout (little-endian): magic, format version, segment count u32, next
//! segment id u64, the ids (u64 each), then a CRC32 of everything before it.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use super::error::{Error, Result};
use super::format::{self, MANIFEST_FILE, MANIFEST_MAGIC, MANIFEST_VERSION};
use super::le::{le_u32, le_u64};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Live segment ids, oldest first; the last one is the active segment.
    pub segments: Vec<u64>,
    pub next_id: u64,
}

impl Manifest {
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(28 + 8 * self.segments.len());
        buf.extend_from_slice(&MANIFEST_MAGIC);
        buf.extend_from_slice(&MANIFEST_VERSION.to_le_bytes());
        buf.extend_from_slice(&(self.segments.len() as u32).to_le_bytes());
        buf.extend_from_slice(&self.next_id.to_le_bytes());
        for id in &self.segments {
            buf.extend_from_slice(&id.to_le_bytes());
        }
        let crc = crc32fast::hash(&buf);
        buf.extend_from_slice(&crc.to_le_bytes());
        buf
    }

    pub fn decode(bytes: &[u8]) -> std::result::Result<Manifest, String> {
        if bytes.len() < 28 {
            return Err("too short".into());
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if body[0..8] != MANIFEST_MAGIC {
            return Err("wrong magic number".into());
        }
        let version = le_u32(&body[8..]);
        if version != MANIFEST_VERSION {
            return Err(format!(
                "format version {version}, this build reads {MANIFEST_VERSION}"
            ));
        }
        if crc32fast::hash(body) != le_u32(crc) {
            return Err("checksum mismatch".into());
        }
        let count = le_u32(&body[12..]) as usize;
        let next_id = le_u64(&body[16..]);
        if body.len() != 24 + 8 * count {
            return Err("length does not match the segment count".into());
        }
        let segments: Vec<u64> = body[24..].chunks_exact(8).map(le_u64).collect();
        if segments.is_empty() || segments.iter().any(|&id| id >= next_id) {
            return Err("segment list is empty or names an id not yet allocated".into());
        }
        Ok(Manifest { segments, next_id })
    }

    pub fn load(dir: &Path) -> Result<Option<Manifest>> {
        let path = dir.join(MANIFEST_FILE);
        match fs::read(&path) {
            Ok(bytes) => Manifest::decode(&bytes)
                .map(Some)
                .map_err(|detail| Error::NotADataDir {
                    dir: dir.to_path_buf(),
                    detail: format!("{MANIFEST_FILE}: {detail}"),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    /// The bytes of the segment files it names in `dir`, as they are now.
    pub fn segment_bytes(&self, dir: &Path) -> u64 {
        self.segments
            .iter()
            .map(|&id| fs::metadata(format::segment_path(dir, id)).map_or(0, |m| m.len()))
            .sum()
    }

    /// Replaces the MANIFEST atomically and durably.
    pub fn store(&self, dir: &Path) -> Result<()> {
        let path = dir.join(MANIFEST_FILE);
        let tmp = format::temp_path(&path);
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&self.encode())?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            sync_dir(dir)
        };
        write().map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }
}

/// Makes renames and creations in `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let m = Manifest {
            segments: vec![1, 5, 3],
            next_id: 6,
        };
        let bytes = m.encode();
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 4;
            assert!(Manifest::decode(&bad).is_err(), "flip at {i}");
        }
        for cut in 0..bytes.len() {
            assert!(Manifest::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn store_then_load() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Manifest::load(dir.path()).unwrap(), None);
        let m = Manifest {
            segments: vec![1, 2],
            next_id: 3,
        };
        m.store(dir.path()).unwrap();
        assert_eq!(Manifest::load(dir.path()).unwrap(), Some(m));
    }
}
