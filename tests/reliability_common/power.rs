//! Power-loss-shaped damage: after writes made durable (`--sync always`, or
//! fsync), the last segment is cut at every byte position of its last few
//! records, and bytes of its last record are flipped; each damaged copy is
//! reopened and checked: everything before the damage intact, the torn
//! tail cut back to a whole record, the store writable.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::{Figures, Library, Mount, close, tail};

type State = BTreeMap<String, Vec<u8>>;

/// One record of a segment file: [start, end).
struct Rec {
    start: usize,
    end: usize,
}

/// The records of a segment file (format version 3), walked by their
/// headers (CRC, seq, flags at 12, key length u16 at 13, value length u32
/// at 15).
fn records(data: &[u8]) -> Vec<Rec> {
    const HEADER: usize = caskfs::engine::RECORD_HEADER_LEN;
    let version = u32::from_le_bytes(data[8..12].try_into().unwrap());
    assert_eq!(version, 3, "segment format version");
    let mut out = Vec::new();
    let mut at = 24;
    while at + HEADER <= data.len() {
        let flags = data[at + 12];
        let key_len = u16::from_le_bytes(data[at + 13..at + 15].try_into().unwrap()) as usize;
        if flags == 0 && key_len == 0 {
            break; // zeros allocated ahead
        }
        let vlen = u32::from_le_bytes(data[at + 15..at + 19].try_into().unwrap()) as usize;
        let end = at + HEADER + key_len + vlen;
        if end > data.len() {
            break;
        }
        out.push(Rec { start: at, end });
        at = end;
    }
    out
}

fn last_segment(dir: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    segs.pop().unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = fs::remove_dir_all(to);
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        // Not LOCK, and not the control socket of the running daemon.
        if e.file_name() != "LOCK" && e.file_type().unwrap().is_file() {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn write(m: &Mount, key: &str, value: &[u8], fsync: bool) {
    let mut f = fs::File::create(m.path(key)).unwrap();
    std::io::Write::write_all(&mut f, value).unwrap();
    if fsync {
        f.sync_all().unwrap();
    }
    close(f).unwrap();
}

fn value(key: &str, n: u32) -> Vec<u8> {
    format!("{key}:{n}:").repeat(6).into_bytes()
}

/// Opens `dir` with the library and compares every file with `want`;
/// `either` may also read as an error or as `alt`. Then writes a file and
/// reopens to read it back.
fn check_lib(dir: &Path, want: &State, either: Option<(&str, Option<&[u8]>)>, what: &str) {
    let lib = Library::open(dir).unwrap_or_else(|e| panic!("{what}: open: {e}"));
    let mut keys = lib.files();
    keys.extend(want.keys().cloned());
    keys.sort();
    keys.dedup();
    for ks in keys {
        let got = lib.read(&ks);
        let exp = want.get(&ks).cloned();
        if let Some((ek, alt)) = either
            && ek == ks
        {
            let ok = match &got {
                Err(_) => true,
                Ok(v) => *v == exp || v.as_deref() == alt,
            };
            assert!(ok, "{what}: {ks} read {got:?}");
            continue;
        }
        assert_eq!(
            got.unwrap_or_else(|e| panic!("{what}: {ks}: {e}")),
            exp,
            "{what}: {ks}"
        );
    }
    lib.write("written-after", b"yes").unwrap();
    lib.close();
    let lib = Library::open(dir).unwrap();
    assert_eq!(
        lib.read("written-after").unwrap().as_deref(),
        Some(&b"yes"[..]),
        "{what}"
    );
    lib.close();
}

/// Runs the scenario with durable writes made by `args` (e.g. `--sync
/// always`) or by fsync; every `mount_every`-th damaged copy is also
/// mounted and read through the mount.
pub fn scenario(args: &[&str], fsync: bool, mount_every: usize) -> Figures {
    let mut figures = Figures::default();
    let mut m = Mount::start(args);
    let mut state = State::new();
    for i in 0..30 {
        let k = format!("k{i}");
        write(&m, &k, &value(&k, 1), fsync);
        state.insert(k.clone(), value(&k, 1));
    }
    m.ok("rm mnt/k7 && mv mnt/k8 mnt/moved");
    state.remove("k7");
    let v8 = state.remove("k8").unwrap();
    state.insert("moved".into(), v8);
    if fsync {
        m.ok("sync");
    }
    // The last steps, each a state of its own: overwrite, delete, create,
    // overwrite. A step is one record or two (a create writes the inode and
    // then the name, an unlink the other way round); `ends` counts the
    // segment's records after each, read back as the step returns (it is
    // durable by then).
    let counted = |m: &Mount| records(&fs::read(last_segment(&m.data)).unwrap()).len();
    let mut ends = vec![counted(&m)];
    let mut states = vec![state.clone()];
    let steps: Vec<(&str, Option<Vec<u8>>)> = vec![
        ("k1", Some(value("k1", 2))),
        ("k3", None),
        ("t1", Some(value("t1", 1))),
        ("k2", Some(value("k2", 2))),
    ];
    for (k, v) in &steps {
        match v {
            Some(v) => {
                write(&m, k, v, fsync);
                state.insert(k.to_string(), v.clone());
            }
            None => {
                fs::remove_file(m.path(k)).unwrap();
                state.remove(*k);
            }
        }
        states.push(state.clone());
        ends.push(counted(&m));
    }
    // A power loss keeps what was made durable: a crash leaves exactly that.
    m.crash();
    let pristine = m.scratch("pristine");
    copy_dir(&m.data, &pristine);
    let seg_name = last_segment(&pristine).file_name().unwrap().to_owned();
    let mut data = fs::read(pristine.join(&seg_name)).unwrap();
    let mut recs = records(&data);
    // A folder's new times stored in the background after the last step
    // (within a second): the power loss came just before them.
    assert!(
        recs.len() >= ends[steps.len()],
        "records in the last segment"
    );
    if recs.len() > ends[steps.len()] {
        recs.truncate(ends[steps.len()]);
        data.truncate(recs[recs.len() - 1].end);
        fs::write(pristine.join(&seg_name), &data).unwrap();
    }
    let n = recs.len();
    assert!(
        ends[0] > 0 && ends.windows(2).all(|w| w[0] < w[1]),
        "{ends:?}"
    );
    let first = &recs[ends[0]];
    let end = recs[n - 1].end;
    let mut mounted = 0;
    for cut in first.start + 1..=end {
        // Records wholly before the cut survive: the steps they complete,
        // and maybe the first record of the next, whose file may then read
        // as before the step or after it.
        let whole = recs.iter().filter(|r| r.end <= cut).count();
        let kept = ends.iter().rposition(|&e| e <= whole).unwrap_or(0);
        let either = (whole > ends[kept]).then(|| {
            let (k, _) = steps[kept];
            (k, states[kept + 1].get(k).map(|v| v.as_slice()))
        });
        let good_len = recs[whole - 1].end;
        let what = format!("cut at {cut} (record boundary {good_len})");
        copy_dir(&pristine, &m.data);
        let f = fs::OpenOptions::new()
            .write(true)
            .open(m.data.join(&seg_name))
            .unwrap();
        f.set_len(cut as u64).unwrap();
        drop(f);
        figures.damage_bytes += (end - cut) as u64;
        // Zeros after the last whole record are the file's space allocated
        // ahead, not a torn record: a cut that keeps only zeros of the next
        // record (its CRC's first byte is 0 one time in 256) is no tear.
        let torn = data[good_len..cut].iter().any(|&b| b != 0);
        if (cut - first.start).is_multiple_of(mount_every) || cut == end {
            m.take_log();
            m.mount();
            // What the mount shows, where a half step may show either way.
            let shown = |k: &str| fs::read(m.path(k)).ok();
            let mut listed = states[kept].clone();
            if let Some((k, after)) = either
                && shown(k).as_deref() == after
            {
                match after {
                    Some(v) => listed.insert(k.to_string(), v.to_vec()),
                    None => listed.remove(k),
                };
            }
            for (k, v) in &listed {
                assert_eq!(shown(k).as_ref(), Some(v), "{what}: {k} via the mount");
            }
            let count = fs::read_dir(&m.mnt).unwrap().count();
            assert_eq!(count, listed.len(), "{what}: ls");
            m.ok("echo more > mnt/after-cut");
            m.unmount();
            let log = m.log();
            if torn {
                // The count in the warning leaves out zero bytes at its end.
                let warn = format!("bytes of torn tail at offset {good_len}");
                assert!(
                    log.contains(&warn),
                    "{what}: no warning `{warn}`:\n{}",
                    tail(&log, 2000)
                );
            }
            let mut want = listed;
            want.insert("after-cut".into(), b"more\n".to_vec());
            check_lib(&m.data, &want, None, &what);
            mounted += 1;
        } else {
            check_lib(&m.data, &states[kept], either, &what);
            let len = fs::metadata(m.data.join(&seg_name)).unwrap().len();
            assert!(
                len > good_len as u64,
                "{what}: the new record follows the cut"
            );
        }
        figures.acked_verified += states[kept].len() as u64;
    }
    // Flips in the last record (the last step's only one): its key shows
    // its old value or an error, everything else is exact.
    assert_eq!(
        ends[steps.len()] - ends[steps.len() - 1],
        1,
        "the last step"
    );
    let last = &recs[n - 1];
    let (last_key, _) = steps[steps.len() - 1];
    for at in last.start..last.end {
        copy_dir(&pristine, &m.data);
        let mut bytes = data.clone();
        bytes[at] ^= 0x41;
        fs::write(m.data.join(&seg_name), &bytes).unwrap();
        figures.damage_bytes += 1;
        let before = &states[steps.len() - 1];
        check_lib(
            &m.data,
            before,
            Some((last_key, before.get(last_key).map(|v| v.as_slice()))),
            &format!("flip at {at}"),
        );
    }
    assert!(mounted > 0);
    figures
}
