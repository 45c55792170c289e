//! What a store is opened with.

use std::str::FromStr;
use std::time::Duration;

use super::crash_points::CrashPoint;
use super::error::{Error, Result};
use super::key::MAX_KEY_LEN;
use super::record::{HEADER_LEN, Layout};

/// When appended data is forced to disk, as in Bitcask's `sync_strategy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Every append reaches the OS; `sync()` forces it to disk.
    None,
    /// An append returns after fdatasync; concurrent appenders share one.
    Always,
    /// A background thread syncs at this interval.
    Interval(Duration),
}

impl FromStr for SyncPolicy {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "none" => Ok(SyncPolicy::None),
            "always" => Ok(SyncPolicy::Always),
            _ => s
                .strip_prefix("interval=")
                .and_then(|ms| ms.parse::<u64>().ok())
                .filter(|&ms| ms > 0)
                .map(|ms| SyncPolicy::Interval(Duration::from_millis(ms)))
                .ok_or_else(|| {
                    format!("unknown sync policy \"{s}\": use none, always or interval=MS")
                }),
        }
    }
}

/// Limits that keep every record offset within a segment inside a u32: a
/// segment holds at most `max_segment_size` bytes plus one record (a batch
/// is held to the value size for all its changes).
pub const MAX_SEGMENT_SIZE_LIMIT: u64 = 2 << 30;
pub const MAX_VALUE_SIZE_LIMIT: u64 = (2 << 30) - (1 << 20);

// The last record of a segment starts below the segment size limit; with
// the largest value and key under the longest header (version 2's, which a
// merge may write), or as a batch (its changes held to the value size,
// plus a header of its own), it still ends within a u32.
const _: () = assert!(
    MAX_SEGMENT_SIZE_LIMIT + (Layout::V2.header_len() + MAX_KEY_LEN) as u64 + MAX_VALUE_SIZE_LIMIT
        <= u32::MAX as u64
);
const _: () = assert!(Layout::V2.header_len() >= HEADER_LEN);

#[derive(Clone, Debug)]
pub struct Options {
    /// A segment is closed once the next record would take it past this size.
    pub max_segment_size: u64,
    /// Values above this many bytes are refused.
    pub max_value_size: u64,
    pub sync: SyncPolicy,
    /// Open without writing anything: no tail cut, no hint rewrite.
    pub read_only: bool,
    /// Create the directory and an empty store when missing.
    pub create_if_missing: bool,
    /// Merge in the background when the thresholds below are met (when
    /// off, merges happen only when asked for). A background merge takes
    /// every closed segment; the thresholds are judged on what it would
    /// drop and write, so that they scale with the store (see
    /// `MergeOutlook::worth_merging`).
    pub compaction: bool,
    /// Merge when at least this share of the closed segments' bytes is dead
    /// (superseded values, deleted keys, tombstones)…
    pub compact_dead_ratio: f64,
    /// …and at least this many bytes are dead; `None`: one segment's worth,
    /// at most 16 MiB (see [`Options::min_dead_bytes`]);
    pub compact_min_dead_bytes: Option<u64>,
    /// or when a merge would leave more than this many fewer closed
    /// segments: more closed segments than this beyond the ones their live
    /// data fills.
    pub compact_max_segments: usize,
    /// How often the merge thread looks, besides after every segment roll.
    pub compact_interval: Duration,
    /// Test hook: stop a merge there as a crash would (see `crash_points`).
    #[doc(hidden)]
    pub crash_point: Option<CrashPoint>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_segment_size: 64 << 20,
            max_value_size: 1 << 30,
            sync: SyncPolicy::None,
            read_only: false,
            create_if_missing: true,
            compaction: true,
            compact_dead_ratio: 0.5,
            compact_min_dead_bytes: None,
            compact_max_segments: 16,
            compact_interval: Duration::from_secs(60),
            crash_point: None,
        }
    }
}

/// The most dead bytes a background merge waits for by default, whatever
/// the segment size (Bitcask's `dead_bytes_merge_trigger` is 512 MiB, for
/// 2 GiB files).
pub const DEFAULT_MIN_DEAD_BYTES_CAP: u64 = 16 << 20;

impl Options {
    /// The dead bytes a background merge waits for: the option, or by
    /// default one segment's worth, at most 16 MiB.
    ///
    /// One segment, not a fixed amount, so that a small store is merged as
    /// soon as it has a segment's worth of garbage (with the dead-ratio
    /// test, at least as many dead bytes as live ones): at rest, the
    /// segments then hold at most twice the live data plus the active
    /// segment plus one segment of garbage. A merge writes the live data
    /// again, so with the ratio at 1/2 it never writes more than it frees.
    /// Capped, so that a store with large segments does not keep up to a
    /// whole 2 GiB segment of garbage.
    pub fn min_dead_bytes(&self) -> u64 {
        self.compact_min_dead_bytes
            .unwrap_or_else(|| self.max_segment_size.min(DEFAULT_MIN_DEAD_BYTES_CAP))
    }

    pub fn validate(&self) -> Result<()> {
        if !(4096..=MAX_SEGMENT_SIZE_LIMIT).contains(&self.max_segment_size) {
            return Err(Error::InvalidOption(format!(
                "max segment size {} is outside 4096..={MAX_SEGMENT_SIZE_LIMIT}",
                self.max_segment_size
            )));
        }
        if self.max_value_size > MAX_VALUE_SIZE_LIMIT {
            return Err(Error::InvalidOption(format!(
                "max value size {} is over the limit of {MAX_VALUE_SIZE_LIMIT}",
                self.max_value_size
            )));
        }
        if !(0.0..=1.0).contains(&self.compact_dead_ratio) {
            return Err(Error::InvalidOption(format!(
                "compaction dead ratio {} is outside 0..=1",
                self.compact_dead_ratio
            )));
        }
        if self.compact_interval.is_zero() {
            return Err(Error::InvalidOption(
                "the merge interval must be longer than zero".into(),
            ));
        }
        Ok(())
    }
}

/// Parses a size such as `4096`, `64K`, `16M` or `1G` (powers of 1024).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let s = s.trim();
    let (digits, shift) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 10),
        Some((i, 'm' | 'M')) => (&s[..i], 20),
        Some((i, 'g' | 'G')) => (&s[..i], 30),
        Some((i, 't' | 'T')) => (&s[..i], 40),
        _ => (s, 0),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| {
            format!("bad size \"{s}\": use a number with an optional K, M, G or T suffix")
        })
}

/// Parses a share such as `0.5` (0 to 1).
pub fn parse_ratio(s: &str) -> std::result::Result<f64, String> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|r| (0.0..=1.0).contains(r))
        .ok_or_else(|| format!("bad ratio \"{s}\": use a number from 0 to 1, such as 0.5"))
}

/// Parses a number of seconds such as `60` or `0.5` (more than zero).
pub fn parse_secs(s: &str) -> std::result::Result<Duration, String> {
    s.trim()
        .parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            format!("bad duration \"{s}\": use a number of seconds above 0, such as 60 or 0.5")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_policies_parse() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("16m"), Ok(16 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("x").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999G").is_err());
        assert_eq!("always".parse(), Ok(SyncPolicy::Always));
        assert_eq!(
            "interval=50".parse(),
            Ok(SyncPolicy::Interval(Duration::from_millis(50)))
        );
        assert!("interval=0".parse::<SyncPolicy>().is_err());
        assert!("sometimes".parse::<SyncPolicy>().is_err());
        assert_eq!(parse_ratio("0.5"), Ok(0.5));
        assert_eq!(parse_ratio("1"), Ok(1.0));
        assert!(parse_ratio("1.5").is_err());
        assert!(parse_ratio("-0.1").is_err());
        assert!(parse_ratio("NaN").is_err());
        assert_eq!(parse_secs("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_secs("0.25"), Ok(Duration::from_millis(250)));
        assert!(parse_secs("0").is_err());
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("inf").is_err());
        assert!(parse_secs("soon").is_err());
    }

    #[test]
    fn the_dead_bytes_trigger_scales_with_the_segment_size() {
        let with = |seg: u64, min: Option<u64>| Options {
            max_segment_size: seg,
            compact_min_dead_bytes: min,
            ..Options::default()
        };
        assert_eq!(with(1 << 20, None).min_dead_bytes(), 1 << 20);
        assert_eq!(with(4096, None).min_dead_bytes(), 4096);
        assert_eq!(with(64 << 20, None).min_dead_bytes(), 16 << 20);
        assert_eq!(with(64 << 20, Some(0)).min_dead_bytes(), 0);
        assert_eq!(with(4096, Some(1 << 30)).min_dead_bytes(), 1 << 30);
        let zero = Options {
            compact_interval: Duration::ZERO,
            ..Options::default()
        };
        assert!(zero.validate().is_err());
        assert!(Options::default().validate().is_ok());
    }
}
