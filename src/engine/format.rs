//! Names and fixed headers of every file in a data directory, in one place.
//! `docs/FORMAT.md` has the byte tables.

use std::path::{Path, PathBuf};

use super::le::{le_u32, le_u64};
use super::record::Layout;

/// Format version of the segments and hints this build writes; bumped on
/// any incompatible change. Segments and hints of versions 1 and 2 are still read
/// (see `record::Layout` and `hint`).
pub const FORMAT_VERSION: u32 = 3;
/// The MANIFEST's layout has not changed since version 1.
pub const MANIFEST_VERSION: u32 = 1;

pub const SEGMENT_MAGIC: [u8; 8] = *b"CASKSEG\0";
pub const HINT_MAGIC: [u8; 8] = *b"CASKHNT\0";
pub const MANIFEST_MAGIC: [u8; 8] = *b"CASKMAN\0";

/// Segment header: magic, version, reserved (zero), segment id.
pub const SEGMENT_HEADER_LEN: usize = 8 + 4 + 4 + 8;

pub const LOCK_FILE: &str = "LOCK";
pub const MANIFEST_FILE: &str = "MANIFEST";
/// One line about the last merge, for `caskfs stats`.
pub const LAST_MERGE_FILE: &str = "LAST_MERGE";
/// The unix socket a mounted store's daemon answers on (`src/control.rs`).
pub const CONTROL_FILE: &str = "control.sock";
const SEGMENT_EXT: &str = "seg";
const HINT_EXT: &str = "hint";
pub const TEMP_SUFFIX: &str = ".tmp";

/// What a file in the data directory is, judged by its name.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum FileKind {
    Segment(u64),
    Hint(u64),
    Manifest,
    Lock,
    LastMerge,
    Control,
    /// Left behind by an interrupted write; removed at open.
    Temp,
    /// Not ours.
    Other,
}

pub fn segment_file_name(id: u64) -> String {
    format!("{id:016}.{SEGMENT_EXT}")
}

pub fn hint_file_name(id: u64) -> String {
    format!("{id:016}.{HINT_EXT}")
}

pub fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(segment_file_name(id))
}

pub fn hint_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(hint_file_name(id))
}

/// `path` with `.tmp` appended: where a file is written before it is renamed
/// into place.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(TEMP_SUFFIX);
    PathBuf::from(name)
}

pub fn parse_file_name(name: &str) -> FileKind {
    if name == LOCK_FILE {
        return FileKind::Lock;
    }
    if name == MANIFEST_FILE {
        return FileKind::Manifest;
    }
    if name == LAST_MERGE_FILE {
        return FileKind::LastMerge;
    }
    if name == CONTROL_FILE {
        return FileKind::Control;
    }
    if name.ends_with(TEMP_SUFFIX) {
        return FileKind::Temp;
    }
    let Some((stem, ext)) = name.split_once('.') else {
        return FileKind::Other;
    };
    if stem.len() != 16 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return FileKind::Other;
    }
    let Ok(id) = stem.parse::<u64>() else {
        return FileKind::Other;
    };
    match ext {
        SEGMENT_EXT => FileKind::Segment(id),
        HINT_EXT => FileKind::Hint(id),
        _ => FileKind::Other,
    }
}

/// The header of segment `id` whose records are laid out as `layout`
/// (always the current one, except when a repair rewrites an old segment).
pub fn encode_segment_header(id: u64, layout: Layout) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&layout.version().to_le_bytes());
    h[16..24].copy_from_slice(&id.to_le_bytes());
    h
}

/// Checks a segment header and returns the layout of the segment's
/// records; the error says what is wrong with it.
pub fn check_segment_header(bytes: &[u8], expected_id: u64) -> Result<Layout, String> {
    if bytes.len() < SEGMENT_HEADER_LEN {
        return Err(format!(
            "file is {} bytes, shorter than its header",
            bytes.len()
        ));
    }
    if bytes[0..8] != SEGMENT_MAGIC {
        return Err("wrong magic number: not a caskfs segment".into());
    }
    let version = le_u32(&bytes[8..12]);
    let Some(layout) = Layout::from_version(version) else {
        return Err(format!(
            "format version {version}, this build reads versions 1 to {FORMAT_VERSION}"
        ));
    };
    if le_u32(&bytes[12..16]) != 0 {
        return Err("reserved header field is not zero".into());
    }
    let id = le_u64(&bytes[16..24]);
    if id != expected_id {
        return Err(format!(
            "header names segment {id}, file name says {expected_id}"
        ));
    }
    Ok(layout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for id in [0, 1, 42, 9_999_999_999_999_999] {
            assert_eq!(
                parse_file_name(&segment_file_name(id)),
                FileKind::Segment(id)
            );
            assert_eq!(parse_file_name(&hint_file_name(id)), FileKind::Hint(id));
        }
        assert_eq!(parse_file_name("LOCK"), FileKind::Lock);
        assert_eq!(parse_file_name("MANIFEST"), FileKind::Manifest);
        assert_eq!(parse_file_name("0000000000000001.seg.tmp"), FileKind::Temp);
        assert_eq!(parse_file_name("notes.txt"), FileKind::Other);
        assert_eq!(parse_file_name("1.seg"), FileKind::Other);
        assert_eq!(parse_file_name("000000000000000x.seg"), FileKind::Other);
    }

    #[test]
    fn segment_header_round_trip_and_rejects() {
        let h = encode_segment_header(7, Layout::V2);
        assert_eq!(check_segment_header(&h, 7), Ok(Layout::V2));
        let old = encode_segment_header(7, Layout::V1);
        assert_eq!(check_segment_header(&old, 7), Ok(Layout::V1));
        assert!(check_segment_header(&h, 8).is_err());
        assert!(check_segment_header(&h[..10], 7).is_err());
        let mut bad = h;
        bad[0] ^= 1;
        assert!(check_segment_header(&bad, 7).unwrap_err().contains("magic"));
        let mut future = h;
        future[8] = 9;
        assert!(
            check_segment_header(&future, 7)
                .unwrap_err()
                .contains("version")
        );
    }
}
