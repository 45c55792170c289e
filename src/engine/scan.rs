//! Reading a segment's records in order from its bytes: used by recovery
//! (to rebuild an index without a hint) and by `check`. A record that fails
//! to parse or to match its CRC is damage; the scan then looks for the next
//! whole record so that one bad record does not hide the ones after it.

use super::format::SEGMENT_HEADER_LEN;
use super::index::Entry;
use super::record::{self, Header, Kind, Layout};

/// One put or tombstone found by a scan (records inside a batch included).
pub struct Scanned<'a> {
    pub key: &'a [u8],
    pub offset: u64,
    pub value_len: u32,
    pub tombstone: bool,
}

impl Scanned<'_> {
    /// The index entry for this record.
    pub fn entry(&self) -> Entry {
        Entry {
            offset: self.offset as u32,
            value_len: self.value_len,
            tombstone: self.tombstone,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub start: u64,
    pub end: u64,
    pub detail: String,
}

#[derive(Debug, Default)]
pub struct ScanReport {
    /// Where appending may continue: just past the last whole record, or
    /// past damage the scan stepped over (a torn tail is not stepped over).
    pub end: u64,
    pub records: u64,
    pub max_seq: u64,
    /// Bad ranges followed by whole records again.
    pub damage: Vec<Damage>,
    /// A bad range running to the end of the file: a torn write when it is
    /// the last segment's tail.
    pub bad_tail: Option<Damage>,
}

/// Scans `data` (a whole segment file, header included, its records laid
/// out as `layout`), calling `visit` for every put and tombstone in file
/// order.
///
/// A record whose header reads well but whose bytes fail the CRC is damage;
/// its entry is still visited, so that reads of it fail loudly instead of
/// finding an older value, and the scan goes on after it. The exception is
/// the end of the last segment (`tail_may_be_torn`): a bad record with
/// nothing written after it is a write cut short by a crash, and it is
/// reported as `bad_tail`, not visited. Only where a header cannot be read
/// does the scan search byte by byte for the next whole record.
pub fn scan<'d>(
    data: &'d [u8],
    layout: Layout,
    tail_may_be_torn: bool,
    mut visit: impl FnMut(Scanned<'d>),
) -> ScanReport {
    let mut report = ScanReport {
        end: SEGMENT_HEADER_LEN as u64,
        ..Default::default()
    };
    let mut off = SEGMENT_HEADER_LEN;
    let mut last_seq = 0;
    let nothing_after = |from: usize| {
        data.get(from..)
            .is_none_or(|rest| rest.iter().all(|&b| b == 0))
    };
    while off < data.len() {
        let why = match validate(data, off, last_seq, layout) {
            Ok(h) => {
                emit(data, off, &h, &mut visit);
                last_seq = h.seq;
                report.max_seq = report.max_seq.max(h.seq);
                report.records += 1;
                off += h.record_len() as usize;
                report.end = off as u64;
                continue;
            }
            // The active file is allocated ahead of its records: zeros after
            // the last record are unused space, not damage.
            Err(_) if nothing_after(off) => break,
            Err(why) => why,
        };
        let garbage_end = data.iter().rposition(|&b| b != 0).map_or(off, |p| p + 1);
        let tail = Damage {
            start: off as u64,
            end: garbage_end as u64,
            detail: why.to_string(),
        };
        let header = Header::parse(&data[off..], layout)
            .ok()
            .filter(|h| !h.in_batch);
        let next = match header {
            Some(h) => {
                let end = off + h.record_len() as usize;
                if end > data.len() || (tail_may_be_torn && nothing_after(end)) {
                    report.bad_tail = Some(tail);
                    break;
                }
                // Its sequence number may be the damaged part: not trusted.
                emit(data, off, &h, &mut visit);
                end
            }
            None => match resync(data, off + 1, last_seq, layout) {
                Some(next) => next,
                None => {
                    report.bad_tail = Some(tail);
                    break;
                }
            },
        };
        report.damage.push(Damage {
            start: off as u64,
            end: next as u64,
            detail: why.to_string(),
        });
        // Appends go after the damage, never over it.
        report.end = next as u64;
        off = next;
    }
    report
}

/// Checks that a whole, top-level record starts at `off`, batch contents included.
pub fn validate(
    data: &[u8],
    off: usize,
    last_seq: u64,
    layout: Layout,
) -> Result<Header, &'static str> {
    let h = Header::parse(&data[off..], layout)?;
    if h.in_batch {
        return Err("record from inside a batch found on its own");
    }
    if h.seq < last_seq {
        return Err("sequence number goes backwards");
    }
    let end = off as u64 + h.record_len();
    if end > data.len() as u64 {
        return Err("record runs past the end of the file");
    }
    let rec = &data[off..end as usize];
    if !record::crc_ok(rec) {
        return Err("checksum mismatch");
    }
    if h.kind == Kind::Batch {
        let mut inner = layout.header_len();
        while inner < rec.len() {
            let ih =
                Header::parse(&rec[inner..], layout).map_err(|_| "bad record inside a batch")?;
            let iend = inner as u64 + ih.record_len();
            if !ih.in_batch || ih.kind == Kind::Batch || iend > rec.len() as u64 {
                return Err("bad record inside a batch");
            }
            if !record::crc_ok(&rec[inner..iend as usize]) {
                return Err("checksum mismatch inside a batch");
            }
            inner = iend as usize;
        }
    }
    Ok(h)
}

/// Visits the entries of the record at `off`. The record may be damaged
/// (its extent is within `data`, its CRC unchecked), so every inner record
/// and key is bounds-checked (a key's length was checked with its header).
fn emit<'d>(data: &'d [u8], off: usize, h: &Header, visit: &mut impl FnMut(Scanned<'d>)) {
    let head_len = h.header_len();
    let mut one = |at: usize, h: &Header| {
        let key = &data[at + head_len..at + head_len + h.key_len as usize];
        visit(Scanned {
            key,
            offset: at as u64,
            value_len: h.value_len,
            tombstone: h.kind == Kind::Tombstone,
        });
    };
    let end = off + h.record_len() as usize;
    if h.kind != Kind::Batch {
        one(off, h);
        return;
    }
    let mut inner = off + head_len;
    while inner < end {
        let Ok(ih) = Header::parse(&data[inner..end], h.layout) else {
            return;
        };
        let inner_end = inner + ih.record_len() as usize;
        if !ih.in_batch || ih.kind == Kind::Batch || inner_end > end {
            return;
        }
        one(inner, &ih);
        inner = inner_end;
    }
}

/// The first offset at or after `from` where a whole record starts. A
/// record's flags and key length are never both zero, so none starts in
/// the zeros at the end of the file.
fn resync(data: &[u8], from: usize, last_seq: u64, layout: Layout) -> Option<usize> {
    let last_nonzero = data.iter().rposition(|&b| b != 0)?;
    let end = last_nonzero.min(data.len().saturating_sub(layout.header_len() - 1));
    (from..end).find(|&o| validate(data, o, last_seq, layout).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::format::encode_segment_header;
    use crate::engine::meta::{Meta, S_IFDIR};
    use crate::engine::record::HEADER_LEN;

    fn meta() -> Meta {
        Meta {
            mode: S_IFDIR | 0o750,
            uid: 1,
            gid: 2,
            mtime: 3,
            ctime: 4,
        }
    }

    fn segment(records: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut data = encode_segment_header(1, Layout::CURRENT).to_vec();
        for (i, (k, v)) in records.iter().enumerate() {
            let h = Header::put(i as u64 + 1, false, k.len() as u16, v.len() as u32, meta());
            record::encode(&mut data, h, k, v);
        }
        data
    }

    fn keys(data: &[u8]) -> (Vec<Vec<u8>>, ScanReport) {
        let mut seen = Vec::new();
        let r = scan(data, Layout::CURRENT, true, |s| seen.push(s.key.to_vec()));
        (seen, r)
    }

    #[test]
    fn clean_segment() {
        let data = segment(&[(b"a", b"1"), (b"b/c", b"22")]);
        let (seen, r) = keys(&data);
        assert_eq!(seen, vec![b"a".to_vec(), b"b/c".to_vec()]);
        assert_eq!(r.end, data.len() as u64);
        assert!(r.damage.is_empty() && r.bad_tail.is_none());
        assert_eq!(r.max_seq, 2);
    }

    #[test]
    fn version_1_segment() {
        let mut data = encode_segment_header(1, Layout::V1).to_vec();
        for (seq, k, v) in [(1, &b"a"[..], &b"1"[..]), (2, b"bb", b"")] {
            let h = Header {
                layout: Layout::V1,
                ..Header::put(seq, false, k.len() as u16, v.len() as u32, Meta::v1(9))
            };
            record::encode(&mut data, h, k, v);
        }
        let mut seen = Vec::new();
        let r = scan(&data, Layout::V1, true, |s| {
            seen.push((s.key.to_vec(), s.offset, s.value_len))
        });
        assert_eq!(
            seen,
            vec![(b"a".to_vec(), 24, 1), (b"bb".to_vec(), 24 + 26 + 2, 0)]
        );
        assert_eq!(r.end, data.len() as u64);
    }

    #[test]
    fn torn_tail_is_reported_not_indexed() {
        let data = segment(&[(b"a", b"1"), (b"b", b"22")]);
        let first_end = segment(&[(b"a", b"1")]).len();
        for cut in first_end + 1..data.len() {
            let (seen, r) = keys(&data[..cut]);
            assert_eq!(seen, vec![b"a".to_vec()], "cut at {cut}");
            assert_eq!(r.end, first_end as u64);
            assert!(r.bad_tail.is_some());
        }
    }

    #[test]
    fn damage_in_the_middle_is_reported_and_scanning_goes_on() {
        let data = segment(&[(b"a", b"1"), (b"b", b"22"), (b"c", b"333")]);
        let second = segment(&[(b"a", b"1")]).len();
        // A damaged value: the entry is still visited, so its reads fail.
        let mut bad = data.clone();
        bad[second + HEADER_LEN + 1] ^= 0xff;
        let (seen, r) = keys(&bad);
        assert_eq!(seen, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        assert_eq!(r.damage.len(), 1);
        assert_eq!(r.damage[0].start, second as u64);
        assert!(r.bad_tail.is_none());
        // A header that cannot be read: skipped up to the next good record.
        for (at, byte) in [(12, 0x40), (14, 0xff)] {
            let mut bad = data.clone();
            bad[second + at] = byte; // unknown flags; a key longer than any
            let (seen, r) = keys(&bad);
            assert_eq!(seen, vec![b"a".to_vec(), b"c".to_vec()], "byte {at}");
            assert_eq!(r.damage.len(), 1);
            assert!(r.bad_tail.is_none());
        }
    }

    #[test]
    fn half_a_batch_never_counts() {
        let mut data = encode_segment_header(1, Layout::CURRENT).to_vec();
        let mut inner = Vec::new();
        record::encode(&mut inner, Header::tombstone(5, 0, true, 1), b"a", b"");
        record::encode(
            &mut inner,
            Header::put(5, true, 3, 3, meta()),
            b"b/c",
            b"xyz",
        );
        let outer = Header::batch(5, 0, inner.len() as u32);
        record::encode(&mut data, outer, b"", &inner);
        let (seen, r) = keys(&data);
        assert_eq!(seen, vec![b"a".to_vec(), b"b/c".to_vec()]);
        assert_eq!(r.end, data.len() as u64);
        for cut in SEGMENT_HEADER_LEN + 1..data.len() {
            let (seen, r) = keys(&data[..cut]);
            assert!(seen.is_empty(), "cut at {cut} exposed half a batch");
            assert_eq!(r.end, SEGMENT_HEADER_LEN as u64);
        }
    }
}
