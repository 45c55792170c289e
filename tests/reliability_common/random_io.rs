//! Randomized file I/O through the mount against a model of the contract:
//! several descriptors open at once on a handful of keys (`O_RDONLY`,
//! `O_WRONLY`, `O_RDWR`, with `O_TRUNC` or `O_APPEND`), reads and writes
//! at random offsets and sizes, through the descriptor and through `mmap`,
//! `ftruncate` up and down, fallocate's holes, zeroed ranges and
//! allocation, fsyncs, closes, renames and unlinks. After
//! every operation the data read and the sizes seen (`fstat` of each
//! descriptor of the key, `stat` by path, `SEEK_END`) are checked.
//!
//! The model (docs/SEMANTICS.md): all the descriptors this process has
//! open for writing on a key share one draft, loaded from the value it
//! pinned at its first read or, if it never read, from the committed value
//! at its first write or truncate (`O_TRUNC` and a create start it empty);
//! close and fsync commit the draft if it holds changes (a first close
//! that finds only the empty start leaves it to the draft's last release);
//! `fstat`, `stat` and `SEEK_END` show the draft's length once it differs
//! from the store, else the committed one. A read-only descriptor pins the
//! committed value at open (or none: empty, for a key being created), and
//! moves on to a longer committed value that begins with every byte of its
//! own when a read reaches its end. Renames
//! and unlinks are chosen only for keys no descriptor has open: what a
//! descriptor sees after its key is moved or removed under it is not part
//! of the model. Nor, when reads go through the page cache, is a writer
//! opening a key this process has read-only descriptors of (it moves the
//! key to a new inode; `tests/mount_cache.rs` checks what follows).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use super::{Rng, close, mmap_read};

/// A pinned value, or a buffer of changes.
enum Body {
    /// Not loaded; `Some` once pinned by a read.
    Committed(Option<Vec<u8>>),
    Buf(Vec<u8>),
}

/// What this process's writing descriptors of one key share.
struct Draft {
    body: Body,
    dirty: bool,
    /// A write or truncate happened since the last commit (not only the
    /// empty start of `O_TRUNC` or a create).
    written: bool,
    /// Closes that found only the empty start.
    empty_flushes: u32,
}

struct Handle {
    file: File,
    key: String,
    /// Names the descriptor in the log of operations.
    id: u64,
    read: bool,
    write: bool,
    /// A reader's pinned value (writers read the draft); empty for a key
    /// being created, which every committed value begins with.
    pin: Vec<u8>,
}

#[derive(Default)]
struct Model {
    committed: BTreeMap<String, Vec<u8>>,
    /// Keys created by a descriptor and not committed yet.
    pending: BTreeSet<String>,
    drafts: BTreeMap<String, Draft>,
}

fn slice(v: &[u8], off: u64, len: usize) -> Vec<u8> {
    let start = (off as usize).min(v.len());
    let end = start.saturating_add(len).min(v.len());
    v[start..end].to_vec()
}

/// A pinned value after a read of `len` at `off`: the committed value if
/// the read reached the end and that one grew from it.
fn follow(pin: &mut Vec<u8>, committed: Option<&Vec<u8>>, off: u64, len: usize) {
    if off + len as u64 > pin.len() as u64
        && let Some(c) = committed
        && c.len() > pin.len()
        && c.starts_with(pin)
    {
        *pin = c.clone();
    }
}

impl Model {
    /// The bytes a read through `h` returns.
    fn read(&mut self, h: &mut Handle, off: u64, len: usize) -> Vec<u8> {
        let committed = self.committed.get(&h.key);
        if !h.write {
            follow(&mut h.pin, committed, off, len);
            return slice(&h.pin, off, len);
        }
        let d = self.drafts.get_mut(&h.key).expect("a writer has a draft");
        match &mut d.body {
            Body::Buf(b) => slice(b, off, len),
            Body::Committed(pin) => {
                let pin = pin.get_or_insert_with(|| committed.cloned().unwrap_or_default());
                follow(pin, committed, off, len);
                slice(pin, off, len)
            }
        }
    }

    /// The length of what `h` reads now, as it stands (no read has moved
    /// it on).
    fn len_read(&self, h: &Handle) -> u64 {
        if !h.write {
            return h.pin.len() as u64;
        }
        let committed = self.committed.get(&h.key).map_or(0, Vec::len);
        match &self.drafts[&h.key].body {
            Body::Buf(b) => b.len() as u64,
            Body::Committed(pin) => pin.as_ref().map_or(committed, Vec::len) as u64,
        }
    }

    /// The draft of `key` as a buffer, loaded if it was not.
    fn buf(&mut self, key: &str) -> &mut Vec<u8> {
        let committed = self.committed.get(key).cloned().unwrap_or_default();
        let d = self.drafts.get_mut(key).expect("a writer has a draft");
        if let Body::Committed(pin) = &mut d.body {
            d.body = Body::Buf(pin.take().unwrap_or(committed));
        }
        d.dirty = true;
        d.written = true;
        match &mut d.body {
            Body::Buf(b) => b,
            Body::Committed(_) => unreachable!(),
        }
    }

    /// Commits `key`'s draft as a close (`last` false) or a release or
    /// fsync would; says whether it stored.
    fn commit(&mut self, key: &str, last: bool) -> bool {
        let Some(d) = self.drafts.get_mut(key) else {
            return false;
        };
        if !d.dirty {
            return false;
        }
        if !d.written && !last {
            d.empty_flushes += 1;
            if d.empty_flushes < 2 {
                return false;
            }
        }
        if let Body::Buf(b) = &d.body {
            self.committed.insert(key.to_string(), b.clone());
        }
        self.pending.remove(key);
        d.dirty = false;
        d.written = false;
        true
    }

    /// The size `fstat`, `stat` and `SEEK_END` show for `key` here.
    fn size(&self, key: &str) -> Option<u64> {
        if let Some(Draft {
            body: Body::Buf(b), ..
        }) = self.drafts.get(key)
        {
            return Some(b.len() as u64);
        }
        match self.committed.get(key) {
            Some(v) => Some(v.len() as u64),
            None if self.pending.contains(key) => Some(0),
            None => None,
        }
    }
}

/// Runs `ops` random operations with `seed` on the mount at `mnt`, which
/// reads through the page cache if `cached`; returns the number checked.
/// Panics with the seed and the last operations on the first difference.
pub fn run(mnt: &Path, seed: u64, ops: u64, cached: bool) -> u64 {
    let keys: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
    let mut rng = Rng::new(seed);
    let mut m = Model::default();
    let mut handles: Vec<Handle> = Vec::new();
    let mut next_id = 0;
    let mut log: Vec<String> = Vec::new();
    let fail = |log: &[String], i: u64, what: String| -> ! {
        let from = log.len().saturating_sub(80);
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
        // The key whose sizes are checked after the operation.
        let mut touched = key.clone();
        match choice {
            // open (read-only, write-only or read-write; O_TRUNC, O_APPEND)
            // or create
            0..=14 if nh < 6 => {
                let exists = m.committed.contains_key(&key);
                let pending = m.pending.contains(&key);
                if !exists && !pending {
                    next_id += 1;
                    log.push(format!("create {key}#{next_id}"));
                    let f = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create_new(true)
                        .open(&path)
                        .unwrap_or_else(|e| fail(&log, i, format!("create {key}: {e}")));
                    m.pending.insert(key.clone());
                    m.drafts.insert(
                        key.clone(),
                        Draft {
                            body: Body::Buf(Vec::new()),
                            dirty: true,
                            written: false,
                            empty_flushes: 0,
                        },
                    );
                    handles.push(Handle {
                        file: f,
                        key,
                        id: next_id,
                        read: true,
                        write: true,
                        pin: Vec::new(),
                    });
                } else {
                    // Through the page cache, a writer's open moves the key
                    // away from the inode its cached readers keep, and
                    // `fstat` through those shows what they read, not this
                    // process's draft (docs/SEMANTICS.md): outside the
                    // model, so no writer joins readers of this process.
                    let reading = handles.iter().any(|h| h.key == key && !h.write);
                    let write = rng.chance(60) && !(cached && reading);
                    let read = !write || rng.chance(70);
                    let trunc = write && rng.chance(25);
                    let append = write && !trunc && rng.chance(25);
                    next_id += 1;
                    log.push(format!(
                        "open {key}#{next_id} read={read} write={write} trunc={trunc} append={append}"
                    ));
                    let mut o = OpenOptions::new();
                    o.read(read).write(write).append(append);
                    if trunc {
                        o.custom_flags(libc::O_TRUNC);
                    }
                    let f = o
                        .open(&path)
                        .unwrap_or_else(|e| fail(&log, i, format!("open {key}: {e}")));
                    if write {
                        let d = m.drafts.entry(key.clone()).or_insert(Draft {
                            body: if exists {
                                Body::Committed(None)
                            } else {
                                Body::Buf(Vec::new())
                            },
                            dirty: false,
                            written: false,
                            empty_flushes: 0,
                        });
                        if trunc {
                            d.body = Body::Buf(Vec::new());
                            d.dirty = true;
                            d.empty_flushes = 0;
                        }
                    }
                    handles.push(Handle {
                        file: f,
                        key: key.clone(),
                        id: next_id,
                        read,
                        write,
                        pin: m.committed.get(&key).cloned().unwrap_or_default(),
                    });
                }
            }
            // read through a descriptor
            15..=29 if nh > 0 => {
                let idx = rng.below(nh as u64) as usize;
                if !handles[idx].read {
                    continue;
                }
                let h = &mut handles[idx];
                touched = h.key.clone();
                let size = m.size(&h.key).unwrap_or(0).max(h.pin.len() as u64);
                let off = rng.below(size + 4096);
                let len = rng.range(1, 16384) as usize;
                let mut buf = vec![0u8; len];
                log.push(format!("read {}#{} at {off} len {len}", h.key, h.id));
                let n = read_full(&h.file, &mut buf, off)
                    .unwrap_or_else(|e| fail(&log, i, format!("read: {e}")));
                let want = m.read(h, off, len);
                if buf[..n] != want[..] {
                    let at = buf[..n].iter().zip(&want).position(|(a, b)| a != b);
                    fail(
                        &log,
                        i,
                        format!(
                            "read {n} bytes, expected {}; first difference at {at:?}",
                            want.len()
                        ),
                    );
                }
            }
            // read through mmap (of what the descriptor reads now)
            30..=33 if nh > 0 => {
                let idx = rng.below(nh as u64) as usize;
                if !handles[idx].read {
                    continue;
                }
                let h = &mut handles[idx];
                touched = h.key.clone();
                let len = m.len_read(h);
                if len == 0 || Some(len) != m.size(&h.key) {
                    // Nothing to map; or the kernel's size is not what
                    // this descriptor reads (a reader's older value, or
                    // its process's draft): a mapping past the kernel's
                    // size faults.
                    continue;
                }
                let want = m.read(h, 0, len as usize);
                log.push(format!("mmap read {}#{} len {len}", h.key, h.id));
                let got = mmap_read(&h.file, want.len())
                    .unwrap_or_else(|e| fail(&log, i, format!("mmap read: {e}")));
                if got != want {
                    fail(&log, i, "mmap read differs".into());
                }
            }
            // write through a descriptor
            34..=51 if nh > 0 => {
                let idx = rng.below(nh as u64) as usize;
                if !handles[idx].write {
                    continue;
                }
                let len = rng.range(1, 8192) as usize;
                let data = rng.bytes(len);
                let (hkey, append) = (handles[idx].key.clone(), is_append(&handles[idx].file));
                touched = hkey.clone();
                let buf = m.buf(&hkey);
                let off = if append {
                    buf.len() as u64
                } else {
                    rng.below(buf.len() as u64 + 2048).min(40_000)
                };
                log.push(format!(
                    "write {hkey}#{} at {off} len {len} (append {append})",
                    handles[idx].id
                ));
                let end = off as usize + len;
                if buf.len() < end {
                    buf.resize(end, 0);
                }
                buf[off as usize..end].copy_from_slice(&data);
                handles[idx]
                    .file
                    .write_all_at(&data, off)
                    .unwrap_or_else(|e| fail(&log, i, format!("write: {e}")));
            }
            // write through mmap, within the current size
            52..=54 if nh > 0 => {
                let idx = rng.below(nh as u64) as usize;
                let h = &handles[idx];
                let size = m.size(&h.key).unwrap_or(0);
                if !(h.read && h.write) || size == 0 {
                    continue;
                }
                let hkey = h.key.clone();
                touched = hkey.clone();
                let off = rng.below(size);
                let len = rng.range(1, 5000).min(size - off) as usize;
                let data = rng.bytes(len);
                log.push(format!(
                    "mmap write {hkey}#{} at {off} len {len}",
                    handles[idx].id
                ));
                mmap_write(&handles[idx].file, size as usize, off as usize, &data)
                    .unwrap_or_else(|e| fail(&log, i, format!("mmap write: {e}")));
                let buf = m.buf(&hkey);
                buf[off as usize..off as usize + len].copy_from_slice(&data);
                // msync(MS_SYNC) is an fsync of the mapped file.
                m.commit(&hkey, true);
            }
            // fallocate: punch a hole, zero a range (growing the file or
            // not), or allocate (growing it)
            59..=61 if nh > 0 => {
                let idx = rng.below(nh as u64) as usize;
                if !handles[idx].write {
                    continue;
                }
                let hkey = handles[idx].key.clone();
                touched = hkey.clone();
                let buf = m.buf(&hkey);
                let off = rng.below(buf.len() as u64 + 4096).min(60_000);
                let len = rng.range(1, 70_000);
                let end = (off + len) as usize;
                let (mode, what) = match rng.below(4) {
                    0 => (
                        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                        "punch",
                    ),
                    1 => (libc::FALLOC_FL_ZERO_RANGE, "zero"),
                    2 => (
                        libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
                        "zero, keep size",
                    ),
                    _ => (0, "allocate"),
                };
                log.push(format!(
                    "fallocate {what} {hkey}#{} at {off} len {len}",
                    handles[idx].id
                ));
                if mode & libc::FALLOC_FL_KEEP_SIZE == 0 && buf.len() < end {
                    buf.resize(end, 0);
                }
                if mode != 0 {
                    let upto = end.min(buf.len());
                    if (off as usize) < upto {
                        buf[off as usize..upto].fill(0);
                    }
                }
                // SAFETY: fallocate on a descriptor this test owns.
                let r = unsafe {
                    libc::fallocate(handles[idx].file.as_raw_fd(), mode, off as i64, len as i64)
                };
                if r != 0 {
                    let e = std::io::Error::last_os_error();
                    fail(&log, i, format!("fallocate: {e}"));
                }
            }
            // ftruncate (grow or shrink)
            55..=58 if nh > 0 => {
                let idx = rng.below(nh as u64) as usize;
                if !handles[idx].write {
                    continue;
                }
                let len = if rng.chance(20) {
                    0
                } else {
                    rng.below(160_000)
                };
                let hkey = handles[idx].key.clone();
                touched = hkey.clone();
                log.push(format!("ftruncate {hkey}#{} to {len}", handles[idx].id));
                m.buf(&hkey).resize(len as usize, 0);
                handles[idx]
                    .file
                    .set_len(len)
                    .unwrap_or_else(|e| fail(&log, i, format!("ftruncate: {e}")));
            }
            // fsync
            62..=66 if nh > 0 => {
                let h = &handles[rng.below(nh as u64) as usize];
                touched = h.key.clone();
                log.push(format!("fsync {}#{}", h.key, h.id));
                h.file
                    .sync_all()
                    .unwrap_or_else(|e| fail(&log, i, format!("fsync: {e}")));
                if h.write {
                    m.commit(&h.key, true);
                }
            }
            // close
            67..=79 if nh > 0 => {
                let h = handles.swap_remove(rng.below(nh as u64) as usize);
                touched = h.key.clone();
                log.push(format!("close {}#{}", h.key, h.id));
                if let Err(what) = close_one(mnt, &mut m, &handles, h) {
                    fail(&log, i, what);
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
                m.committed.insert(to.clone(), v);
                touched = to;
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
            // a fresh reader of the whole value
            91..=96 => {
                log.push(format!("cat {key}"));
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
            }
            // ls
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
            _ => continue,
        }
        if let Err(what) = check_sizes(mnt, &m, &mut handles, &touched) {
            fail(&log, i, what);
        }
    }
    while let Some(h) = handles.pop() {
        if let Err(what) = close_one(mnt, &mut m, &handles, h) {
            fail(&log, ops, format!("final close: {what}"));
        }
    }
    for (k, v) in &m.committed {
        let got = fs::read(mnt.join(k)).unwrap_or_else(|e| fail(&log, ops, format!("{k}: {e}")));
        if got != *v {
            fail(&log, ops, format!("final value of {k} differs"));
        }
    }
    ops
}

/// Closes `h` (the others still open are `open`) and commits in the
/// model what the close and, for a draft's last descriptor, the release
/// commit.
fn close_one(mnt: &Path, m: &mut Model, open: &[Handle], h: Handle) -> Result<(), String> {
    let key = h.key.clone();
    if h.write {
        m.commit(&key, false);
    }
    close(h.file).map_err(|e| format!("close: {e}"))?;
    if h.write && !open.iter().any(|o| o.write && o.key == key) {
        // The draft's last release commits what the close left (an empty
        // start); the kernel sends it after close returned, so wait for it
        // to keep the model exact.
        if m.commit(&key, true) {
            wait_until_empty(&mnt.join(&key))
                .ok_or_else(|| format!("the truncation of {key} never committed"))?;
        }
        m.drafts.remove(&key);
    }
    Ok(())
}

/// `stat` of `key` by path, `fstat` of each of its descriptors, and
/// `SEEK_END` on each writing one all show the model's size.
fn check_sizes(mnt: &Path, m: &Model, handles: &mut [Handle], key: &str) -> Result<(), String> {
    let want = m.size(key);
    let by_path = match fs::metadata(mnt.join(key)) {
        Ok(md) => Some(md.len()),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
        Err(e) => return Err(format!("stat {key}: {e}")),
    };
    if by_path != want {
        return Err(format!("stat {key}: size {by_path:?}, expected {want:?}"));
    }
    for h in handles.iter_mut().filter(|h| h.key == key) {
        let f = h.file.metadata().map_err(|e| format!("fstat {key}: {e}"))?;
        if Some(f.len()) != want {
            return Err(format!("fstat {key}: size {}, expected {want:?}", f.len()));
        }
        if h.write {
            let end = h
                .file
                .seek(SeekFrom::End(0))
                .map_err(|e| format!("lseek {key}: {e}"))?;
            if Some(end) != want {
                return Err(format!("SEEK_END {key}: {end}, expected {want:?}"));
            }
        }
    }
    Ok(())
}

fn is_append(f: &File) -> bool {
    // SAFETY: F_GETFL on a descriptor we own.
    let flags = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFL) };
    flags & libc::O_APPEND != 0
}

/// Maps the first `len` bytes of `f` shared and writable, copies `data`
/// in at `off`, and syncs the mapping back (WRITE requests, then FSYNC).
fn mmap_write(f: &File, len: usize, off: usize, data: &[u8]) -> std::io::Result<()> {
    assert!(off + data.len() <= len);
    // SAFETY: a fresh shared mapping of `len` bytes of a file open for
    // reading and writing, written within bounds, synced and unmapped
    // before returning.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        std::ptr::copy_nonoverlapping(data.as_ptr(), (p as *mut u8).add(off), data.len());
        let rc = libc::msync(p, len, libc::MS_SYNC);
        let err = std::io::Error::last_os_error();
        libc::munmap(p, len);
        if rc != 0 {
            return Err(err);
        }
        Ok(())
    }
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

/// Waits (up to 5 s) until a fresh reader of `path` finds it empty (the
/// committed value, whatever drafts show).
fn wait_until_empty(path: &Path) -> Option<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if fs::read(path).is_ok_and(|v| v.is_empty()) {
            return Some(());
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    None
}
