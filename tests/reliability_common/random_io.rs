//! Randomized file I/O through the mount against a model of the contract:
//! several handles open at once on a handful of keys; reads and writes at
//! random offsets and sizes, truncates (grow and shrink), fsyncs, closes,
//! renames and unlinks; checked after every operation.
//!
//! The model (docs/SEMANTICS.md): a handle's writes go to its own buffer,
//! loaded from the value it pinned at its first read or, if it never read,
//! from the committed value at its first write or truncate (`O_TRUNC` and a
//! create start empty); close and fsync commit the buffer if it holds
//! changes; a read-only handle pins the committed value at open; a handle
//! opened on a key that another handle is still creating starts empty.
//! Renames and unlinks are chosen only for keys no handle has open: what a
//! handle sees after its key is moved or removed under it is not part of
//! the model.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use super::{Rng, close};

enum Body {
    /// Not loaded; `Some` once pinned (at open for a reader, by the first
    /// read for a writer).
    Committed(Option<Vec<u8>>),
    Buf(Vec<u8>),
}

struct Handle {
    file: File,
    key: String,
    write: bool,
    append: bool,
    body: Body,
    dirty: bool,
    /// A write or truncate happened since the last commit (not only the
    /// empty start of `O_TRUNC` or a create).
    written: bool,
}

#[derive(Default)]
struct Model {
    committed: BTreeMap<String, Vec<u8>>,
    /// Keys created by a handle and not committed yet.
    pending: BTreeSet<String>,
}

fn slice(v: &[u8], off: u64, len: usize) -> Vec<u8> {
    let start = (off as usize).min(v.len());
    let end = start.saturating_add(len).min(v.len());
    v[start..end].to_vec()
}

impl Handle {
    fn view(&mut self, m: &Model) -> Vec<u8> {
        match &mut self.body {
            Body::Buf(b) => b.clone(),
            Body::Committed(pin) => pin
                .get_or_insert_with(|| m.committed.get(&self.key).cloned().unwrap_or_default())
                .clone(),
        }
    }

    fn materialize(&mut self, m: &Model) -> &mut Vec<u8> {
        if let Body::Committed(pin) = &mut self.body {
            let v = pin
                .take()
                .unwrap_or_else(|| m.committed.get(&self.key).cloned().unwrap_or_default());
            self.body = Body::Buf(v);
        }
        match &mut self.body {
            Body::Buf(b) => b,
            Body::Committed(_) => unreachable!(),
        }
    }

    fn commit(&mut self, m: &mut Model) {
        if self.dirty {
            if let Body::Buf(b) = &self.body {
                m.committed.insert(self.key.clone(), b.clone());
            }
            m.pending.remove(&self.key);
            self.dirty = false;
            self.written = false;
        }
    }
}

/// Runs `ops` random operations with `seed` on the mount at `mnt`; returns
/// the number checked. Panics with the seed and the last operations on
/// the first difference.
pub fn run(mnt: &Path, seed: u64, ops: u64) -> u64 {
    let keys: Vec<String> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut rng = Rng::new(seed);
    let mut m = Model::default();
    let mut handles: Vec<Handle> = Vec::new();
    let mut log: Vec<String> = Vec::new();
    let fail = |log: &[String], i: u64, what: String| -> ! {
        let from = log.len().saturating_sub(30);
        panic!(
            "random I/O seed {seed} (replay with CASKFS_SEED={seed}), op {i}: {what}\nlast operations:\n{}",
            log[from..].join("\n")
        );
    };
    for i in 0..ops {
        let key = keys[rng.below(keys.len() as u64) as usize].clone();
        let path = mnt.join(&key);
        let open_on = |k: &str, hs: &[Handle]| hs.iter().any(|h| h.key == k);
        let choice = rng.below(100);
        let nh = handles.len();
        match choice {
            // open (read-only, read-write, O_TRUNC, O_APPEND) or create
            0..=14 if nh < 5 => {
                let exists = m.committed.contains_key(&key);
                let pending = m.pending.contains(&key);
                if !exists && !pending {
                    log.push(format!("create {key}"));
                    let f = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create_new(true)
                        .open(&path)
                        .unwrap_or_else(|e| fail(&log, i, format!("create {key}: {e}")));
                    m.pending.insert(key.clone());
                    handles.push(Handle {
                        file: f,
                        key,
                        write: true,
                        append: false,
                        body: Body::Buf(Vec::new()),
                        dirty: true,
                        written: false,
                    });
                    continue;
                }
                let write = rng.chance(60);
                let trunc = write && rng.chance(25);
                let append = write && !trunc && rng.chance(25);
                log.push(format!(
                    "open {key} write={write} trunc={trunc} append={append}"
                ));
                let mut o = OpenOptions::new();
                o.read(true).write(write).append(append);
                if trunc {
                    o.custom_flags(libc::O_TRUNC);
                }
                let f = o
                    .open(&path)
                    .unwrap_or_else(|e| fail(&log, i, format!("open {key}: {e}")));
                let body = if trunc || !exists {
                    Body::Buf(Vec::new())
                } else if write {
                    Body::Committed(None)
                } else {
                    // A reader keeps the value it opened.
                    Body::Committed(m.committed.get(&key).cloned())
                };
                handles.push(Handle {
                    file: f,
                    key,
                    write,
                    append,
                    body,
                    dirty: trunc,
                    written: false,
                });
            }
            // read through a handle
            15..=34 if nh > 0 => {
                let h = &mut handles[rng.below(nh as u64) as usize];
                let view = h.view(&m);
                let off = rng.below(view.len() as u64 + 4096);
                let len = rng.range(1, 16384) as usize;
                let mut buf = vec![0u8; len];
                log.push(format!("read {} at {off} len {len}", h.key));
                let n = read_full(&h.file, &mut buf, off)
                    .unwrap_or_else(|e| fail(&log, i, format!("read: {e}")));
                let want = slice(&view, off, len);
                if buf[..n] != want[..] {
                    fail(
                        &log,
                        i,
                        format!(
                            "read {} bytes, expected {} (or bytes differ)",
                            n,
                            want.len()
                        ),
                    );
                }
            }
            // write through a handle
            35..=54 if nh > 0 => {
                let idx = rng.below(nh as u64) as usize;
                if !handles[idx].write {
                    continue;
                }
                let len = rng.range(1, 8192) as usize;
                let data = rng.bytes(len);
                let h = &mut handles[idx];
                let (append, hkey) = (h.append, h.key.clone());
                let buf = h.materialize(&m);
                let off = if append {
                    buf.len() as u64
                } else {
                    rng.below(buf.len() as u64 + 2048).min(40_000)
                };
                log.push(format!("write {hkey} at {off} len {len} (append {append})"));
                let end = off as usize + len;
                if buf.len() < end {
                    buf.resize(end, 0);
                }
                buf[off as usize..end].copy_from_slice(&data);
                h.dirty = true;
                h.written = true;
                h.file
                    .write_all_at(&data, off)
                    .unwrap_or_else(|e| fail(&log, i, format!("write: {e}")));
            }
            // ftruncate (grow or shrink)
            55..=61 if nh > 0 => {
                let idx = rng.below(nh as u64) as usize;
                if !handles[idx].write {
                    continue;
                }
                let len = if rng.chance(20) { 0 } else { rng.below(30_000) };
                let h = &mut handles[idx];
                log.push(format!("ftruncate {} to {len}", h.key));
                if len == 0 {
                    h.body = Body::Buf(Vec::new());
                } else {
                    h.materialize(&m).resize(len as usize, 0);
                }
                h.dirty = true;
                h.written = true;
                h.file
                    .set_len(len)
                    .unwrap_or_else(|e| fail(&log, i, format!("ftruncate: {e}")));
            }
            // fsync
            62..=66 if nh > 0 => {
                let h = &mut handles[rng.below(nh as u64) as usize];
                log.push(format!("fsync {}", h.key));
                h.file
                    .sync_all()
                    .unwrap_or_else(|e| fail(&log, i, format!("fsync: {e}")));
                h.commit(&mut m);
            }
            // close
            67..=79 if nh > 0 => {
                let mut h = handles.swap_remove(rng.below(nh as u64) as usize);
                log.push(format!("close {}", h.key));
                let empty_start_only = h.dirty && !h.written;
                let (hkey, hpath) = (h.key.clone(), mnt.join(&h.key));
                h.commit(&mut m);
                close(h.file).unwrap_or_else(|e| fail(&log, i, format!("close: {e}")));
                if empty_start_only {
                    // docs/SEMANTICS.md: a close that finds only the empty
                    // start of O_TRUNC does not commit it; the release
                    // does, and the kernel sends the release after close
                    // has returned. Wait for it, so the model stays exact.
                    wait_until_empty(&hpath).unwrap_or_else(|| {
                        fail(&log, i, format!("the truncation of {hkey} never committed"))
                    });
                }
            }
            // rename, on keys nobody has open
            80..=85 => {
                let to = keys[rng.below(keys.len() as u64) as usize].clone();
                if open_on(&key, &handles)
                    || open_on(&to, &handles)
                    || m.pending.contains(&key)
                    || m.pending.contains(&to)
                    || !m.committed.contains_key(&key)
                {
                    continue;
                }
                log.push(format!("rename {key} -> {to}"));
                fs::rename(&path, mnt.join(&to))
                    .unwrap_or_else(|e| fail(&log, i, format!("rename: {e}")));
                let v = m.committed.remove(&key).unwrap_or_default();
                m.committed.insert(to, v);
            }
            // unlink, on a key nobody has open
            86..=90 => {
                if open_on(&key, &handles) || m.pending.contains(&key) {
                    continue;
                }
                log.push(format!("unlink {key}"));
                match (fs::remove_file(&path), m.committed.remove(&key)) {
                    (Ok(()), Some(_)) => {}
                    (Err(e), None) if e.raw_os_error() == Some(libc::ENOENT) => {}
                    (r, had) => fail(
                        &log,
                        i,
                        format!("unlink gave {r:?}, the key was there: {}", had.is_some()),
                    ),
                }
            }
            // a fresh reader of the whole value, and stat
            91..=96 => {
                log.push(format!("cat+stat {key}"));
                let want: Option<Vec<u8>> = match m.committed.get(&key) {
                    Some(v) => Some(v.clone()),
                    None if m.pending.contains(&key) => Some(Vec::new()),
                    None => None,
                };
                let got = match fs::read(&path) {
                    Ok(v) => Some(v),
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
                    Err(e) => fail(&log, i, format!("cat: {e}")),
                };
                if got != want {
                    fail(
                        &log,
                        i,
                        format!(
                            "cat {key}: got {:?} bytes, expected {:?}",
                            got.map(|v| v.len()),
                            want.map(|v| v.len())
                        ),
                    );
                }
                if let Some(v) = m.committed.get(&key) {
                    let len = fs::metadata(&path)
                        .unwrap_or_else(|e| fail(&log, i, format!("stat: {e}")))
                        .len();
                    if len != v.len() as u64 {
                        fail(
                            &log,
                            i,
                            format!("stat {key}: size {len}, expected {}", v.len()),
                        );
                    }
                }
            }
            // ls, and read past the end
            97..=99 => {
                log.push("ls".into());
                let got: BTreeSet<String> = fs::read_dir(mnt)
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect();
                let want: BTreeSet<String> = m
                    .committed
                    .keys()
                    .chain(m.pending.iter())
                    .cloned()
                    .collect();
                if got != want {
                    fail(&log, i, format!("ls: got {got:?}, expected {want:?}"));
                }
            }
            _ => {}
        }
    }
    for mut h in handles.drain(..) {
        h.commit(&mut m);
        close(h.file).unwrap_or_else(|e| fail(&log, ops, format!("final close: {e}")));
    }
    for (k, v) in &m.committed {
        let got = fs::read(mnt.join(k)).unwrap_or_else(|e| fail(&log, ops, format!("{k}: {e}")));
        if got != *v {
            fail(&log, ops, format!("final value of {k} differs"));
        }
    }
    ops
}

/// pread until `buf` is full or the end of the value.
fn read_full(f: &File, buf: &mut [u8], off: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], off + n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Waits (up to 5 s) until `path` reads as empty.
fn wait_until_empty(path: &Path) -> Option<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if fs::metadata(path).is_ok_and(|md| md.len() == 0) {
            return Some(());
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    None
}
