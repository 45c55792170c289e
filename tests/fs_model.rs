//! The filesystem over the schema, without a kernel or a disk: its
//! operations on the in-memory backend against a model of a filesystem
//! (inodes, names, bytes), compared after every step and after every
//! reopen, and on the log too; then the same with the backend "crashing"
//! at every step of an operation, where the reopened tree must be the one
//! from before the operation or the one after it, with nothing left that
//! it does not reach.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use caskfs::backend::{Kv, Log, Memory};
use caskfs::fs::{Caller, CaskFs, Error, FsOptions, Owner};
use caskfs::vocab::FileType;

const ROOT: u64 = 1;
const ME: Caller = Caller {
    tid: 1,
    uid: 0,
    gid: 0,
};

fn opts() -> FsOptions {
    FsOptions {
        owner: Owner { uid: 0, gid: 0 },
        read_only: false,
        cache_reads: false,
        shared: false,
        max_file_size: 1 << 40,
    }
}

/// xorshift64*: the same randomness every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let seed = self.below(256) as u8;
        (0..n)
            .map(|i| seed.wrapping_add((i * 7 % 251) as u8))
            .collect()
    }
}

/// What a filesystem holds: inodes by the model's own numbers, and the
/// names in each folder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Model {
    files: BTreeMap<u64, Vec<u8>>,
    links: BTreeMap<u64, (FileType, Vec<u8>)>,
    dirs: BTreeMap<u64, BTreeMap<Vec<u8>, u64>>,
    next: u64,
}

/// What a tree looks like from its root, by path: kind, bytes or target,
/// and which paths are one inode (hard links).
type Tree = BTreeMap<String, (FileType, Vec<u8>, usize)>;

impl Model {
    fn new() -> Model {
        let mut m = Model {
            next: 2,
            ..Model::default()
        };
        m.dirs.insert(ROOT, BTreeMap::new());
        m
    }

    fn tree(&self) -> Tree {
        let mut out = Tree::new();
        let mut firsts: BTreeMap<u64, usize> = BTreeMap::new();
        self.walk(ROOT, "", &mut out, &mut firsts);
        out
    }

    fn walk(&self, dir: u64, at: &str, out: &mut Tree, firsts: &mut BTreeMap<u64, usize>) {
        for (name, &id) in &self.dirs[&dir] {
            let path = format!("{at}/{}", String::from_utf8_lossy(name));
            let n = firsts.len();
            let group = *firsts.entry(id).or_insert(n);
            if self.dirs.contains_key(&id) {
                out.insert(path.clone(), (FileType::Directory, Vec::new(), group));
                self.walk(id, &path, out, firsts);
            } else if let Some(data) = self.files.get(&id) {
                out.insert(path, (FileType::Regular, data.clone(), group));
            } else {
                let (kind, target) = self.links[&id].clone();
                out.insert(path, (kind, target, group));
            }
        }
    }
}

/// How two trees differ, briefly: paths only one has, and for the others
/// kind, length and the first byte that differs.
fn diff(a: &Tree, b: &Tree) -> String {
    let mut out = Vec::new();
    for (path, x) in a {
        match b.get(path) {
            None => out.push(format!(
                "{path}: only left ({:?}, {} bytes)",
                x.0,
                x.1.len()
            )),
            Some(y) if x != y => {
                let at = x.1.iter().zip(&y.1).position(|(p, q)| p != q);
                out.push(format!(
                    "{path}: {:?}/{:?}, {}/{} bytes, groups {}/{}, first difference at {at:?}",
                    x.0,
                    y.0,
                    x.1.len(),
                    y.1.len(),
                    x.2,
                    y.2
                ));
            }
            _ => {}
        }
    }
    for (path, y) in b {
        if !a.contains_key(path) {
            out.push(format!(
                "{path}: only right ({:?}, {} bytes)",
                y.0,
                y.1.len()
            ));
        }
    }
    out.join("\n")
}

/// The filesystem on its backend (the memory one, unless said), with
/// the helpers a test needs.
struct Fs<K: Kv + 'static = Memory> {
    kv: Arc<K>,
    fs: CaskFs,
}

impl Fs {
    /// After a crash: a new process on what was written.
    fn restart(&self) -> Fs {
        Fs::new(Arc::new(self.kv.restart())).expect("reopening after a crash")
    }
}

impl<K: Kv + 'static> Fs<K> {
    fn new(kv: Arc<K>) -> Result<Fs<K>, Error> {
        let fs = CaskFs::load(kv.clone() as Arc<dyn Kv>, opts())?;
        Ok(Fs { kv, fs })
    }

    fn tree(&self) -> Tree {
        let mut out = Tree::new();
        let mut firsts = BTreeMap::new();
        self.walk(ROOT, "", &mut out, &mut firsts);
        out
    }

    fn walk(&self, dir: u64, at: &str, out: &mut Tree, firsts: &mut BTreeMap<u64, usize>) {
        let fh = self.fs.opendir(dir).expect("opendir");
        let (entries, _) = self.fs.readdir(dir, fh, 0).expect("readdir");
        self.fs.releasedir(fh);
        for e in entries.iter().skip(2) {
            let path = format!("{at}/{}", String::from_utf8_lossy(&e.name));
            let a = self.fs.lookup(dir, &e.name, 1).expect("lookup");
            assert_eq!((a.ino, a.kind), (e.ino, e.kind), "{path}: entry and inode");
            let n = firsts.len();
            let group = *firsts.entry(a.ino).or_insert(n);
            match a.kind {
                FileType::Directory => {
                    out.insert(path.clone(), (a.kind, Vec::new(), group));
                    self.walk(a.ino, &path, out, firsts);
                }
                FileType::Symlink => {
                    let target = self.fs.readlink(a.node).expect("readlink");
                    out.insert(path, (a.kind, target, group));
                }
                FileType::Regular => {
                    let data = self.read_all(a.node, a.size);
                    assert_eq!(data.len() as u64, a.size, "{path}: size");
                    out.insert(path, (a.kind, data, group));
                }
                k => out.insert(path, (k, Vec::new(), group)).map_or((), |_| ()),
            }
        }
    }

    fn read_all(&self, node: u64, size: u64) -> Vec<u8> {
        let fh = self.fs.open(node, libc::O_RDONLY, 1).expect("open").fh;
        let mut out = Vec::new();
        loop {
            let chunk = self
                .fs
                .read(fh, out.len() as u64, 300_000, <[u8]>::to_vec)
                .expect("read");
            if chunk.is_empty() {
                break;
            }
            out.extend(chunk);
        }
        self.fs.release(fh).expect("release");
        assert!(out.len() as u64 >= size.min(out.len() as u64));
        out
    }

    /// Creates or rewrites `name` in `dir` with `data`, written in pieces.
    fn put(&self, dir: u64, name: &[u8], data: &[u8], pieces: usize) -> Result<(), Error> {
        let (_, o) = self
            .fs
            .create(dir, name, 0o644, 0, libc::O_WRONLY | libc::O_TRUNC, &ME)?;
        let r = self.write_pieces(o.fh, 0, data, pieces);
        let closed = self.fs.flush(o.fh, 1, 1);
        let released = self.fs.release(o.fh);
        r.and(closed).and(released)
    }

    fn write_pieces(&self, fh: u64, at: u64, data: &[u8], pieces: usize) -> Result<(), Error> {
        let per = data.len().div_ceil(pieces.max(1)).max(1);
        for (i, piece) in data.chunks(per).enumerate() {
            self.fs
                .write(fh, at + (i * per) as u64, piece, false, Some(1))?;
        }
        Ok(())
    }

    /// Writes `data` at `at` into the existing file of node `node`.
    fn pwrite(&self, node: u64, at: u64, data: &[u8]) -> Result<(), Error> {
        let fh = self.fs.open(node, libc::O_WRONLY, 1)?.fh;
        let r = self.write_pieces(fh, at, data, 3);
        let f = self.fs.fsync(fh);
        let rel = self.fs.release(fh);
        r.and(f).and(rel)
    }

    /// fallocate of `[at, at + n)` of node `node` in `mode`, then a close
    /// that commits it.
    fn fallocate(&self, node: u64, at: u64, n: u64, mode: i32) -> Result<(), Error> {
        let fh = self.fs.open(node, libc::O_WRONLY, 1)?.fh;
        let r = self.fs.fallocate(fh, at, n, mode, 1);
        let closed = self.fs.flush(fh, 1, 1);
        let released = self.fs.release(fh);
        r.and(closed).and(released)
    }

    /// copy_file_range of `n` bytes at `off_in` of node `src` to
    /// `off_out` of node `dst`, then a close that commits it.
    fn copy(&self, src: u64, off_in: u64, dst: u64, off_out: u64, n: u64) -> Result<u64, Error> {
        let fh_in = self.fs.open(src, libc::O_RDONLY, 1)?.fh;
        let fh_out = self.fs.open(dst, libc::O_WRONLY, 1)?.fh;
        let r = self.fs.copy_range((fh_in, off_in), (fh_out, off_out), n, 1);
        let closed = self.fs.flush(fh_out, 1, 1);
        let released = self.fs.release(fh_out);
        let _ = self.fs.release(fh_in);
        let n = r?;
        closed.and(released).map(|()| n)
    }

    /// Every key the backend holds that the tree does not reach.
    fn garbage(&self) -> BTreeSet<Vec<u8>> {
        let reach = self.fs.reachable_keys().expect("reachable keys");
        let keys = self.kv.keys(b"").expect("keys");
        keys.into_iter().filter(|k| !reach.contains(k)).collect()
    }
}

#[test]
fn operations_match_a_model_and_survive_a_reopen() {
    for seed in 1..=4u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let kv = Arc::new(Memory::default());
        let mut fs = Fs::new(kv).unwrap();
        let mut m = Model::new();
        for step in 0..300 {
            let op = apply_random(&fs, &mut m, &mut rng, true).unwrap_or_default();
            let (got, want) = (fs.tree(), m.tree());
            assert!(
                got == want,
                "seed {seed} step {step}: {op}\n{}",
                diff(&got, &want)
            );
            if step % 50 == 49 {
                fs = Fs::new(fs.kv.clone()).unwrap();
                let (got, want) = (fs.tree(), m.tree());
                assert!(
                    got == want,
                    "seed {seed} step {step}: reopened\n{}",
                    diff(&got, &want)
                );
                let garbage = fs.garbage();
                assert!(
                    garbage.is_empty(),
                    "seed {seed} step {step}: garbage {garbage:?}"
                );
            }
        }
    }
}

/// The same on the log in a data directory of 1 MiB segments: every 50
/// operations the store is closed (or, every other time, dropped as a
/// crash leaves it) and opened again, and every 100 its segments merge.
#[test]
fn operations_match_a_model_on_the_log() {
    let options = || caskfs::engine::Options {
        max_segment_size: 1 << 20,
        compaction: false,
        ..caskfs::engine::Options::default()
    };
    for seed in 1..=2u64 {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let open = || {
            let store = caskfs::engine::Store::open(dir.path(), options()).expect("open");
            Fs::new(Arc::new(Log::new(Arc::new(store)))).expect("load")
        };
        let mut rng = Rng(seed.wrapping_mul(0xD1B5_4A32_D192_ED03));
        let mut fs = open();
        let mut m = Model::new();
        for step in 0..300 {
            let op = apply_random(&fs, &mut m, &mut rng, true).unwrap_or_default();
            let (got, want) = (fs.tree(), m.tree());
            assert!(
                got == want,
                "seed {seed} step {step}: {op}\n{}",
                diff(&got, &want)
            );
            if step % 100 == 99 {
                fs.kv.store().roll().expect("roll");
                fs.kv.store().compact().expect("merge");
            }
            if step % 50 == 49 {
                if step % 100 == 49 {
                    fs.fs.shutdown();
                }
                drop(fs);
                fs = open();
                let (got, want) = (fs.tree(), m.tree());
                assert!(
                    got == want,
                    "seed {seed} step {step}: reopened\n{}",
                    diff(&got, &want)
                );
                let garbage = fs.garbage();
                assert!(
                    garbage.is_empty(),
                    "seed {seed} step {step}: garbage {garbage:?}"
                );
            }
        }
    }
}

#[test]
fn a_crash_at_any_step_of_an_operation_leaves_it_done_or_undone() {
    for seed in 1..=3u64 {
        let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D));
        let mut fs = Fs::new(Arc::new(Memory::default())).unwrap();
        let mut m = Model::new();
        for step in 0..120 {
            let before = m.tree();
            let saved = rng.0;
            // How many writes the operation makes, done once for real.
            let (kv_before, model_before) = (Arc::new(fs.kv.restart()), m.clone());
            let op = apply_random(&fs, &mut m, &mut rng, true).unwrap_or_default();
            let after = m.tree();
            let writes = fs.kv.writes() - kv_before.writes();
            for cut in 0..writes {
                let crashed = Fs::new(Arc::new(kv_before.restart())).unwrap();
                crashed.kv.crash_after(cut);
                let mut again = model_before.clone();
                let mut r = Rng(saved);
                apply_random(&crashed, &mut again, &mut r, false);
                let reopened = crashed.restart();
                let back = reopened.tree();
                let garbage = reopened.garbage();
                assert!(
                    garbage.is_empty(),
                    "seed {seed} step {step}: {op} cut after {cut}: left {garbage:?}"
                );
                assert!(
                    back == before || back == after,
                    "seed {seed} step {step}: {op} cut after {cut} of {writes} writes:\n\
                     against before:\n{}\nagainst after:\n{}",
                    diff(&back, &before),
                    diff(&back, &after)
                );
            }
            if step % 40 == 39 {
                fs = Fs::new(fs.kv.clone()).unwrap();
            }
        }
    }
}

/// A file whose bytes were committed 4 KiB at a time: one extent each.
fn written_in_pieces(fs: &Fs, name: &[u8], data: &[u8]) -> u64 {
    let node = {
        fs.put(ROOT, name, &data[..4096], 1).expect("put");
        fs.fs.lookup(ROOT, name, 1).expect("lookup").node
    };
    for (i, piece) in data.chunks(4096).enumerate().skip(1) {
        fs.pwrite(node, (i * 4096) as u64, piece).expect("pwrite");
    }
    node
}

fn extents(fs: &Fs) -> usize {
    fs.kv.dump().keys().filter(|k| k[0] == b'x').count()
}

#[test]
fn a_file_written_in_pieces_is_written_again_in_large_extents() {
    let mut rng = Rng(7);
    let fs = Fs::new(Arc::new(Memory::default())).unwrap();
    let data = rng.bytes(100 * 4096 + 123);
    let node = written_in_pieces(&fs, b"db", &data);
    let before = extents(&fs);
    assert!(before > 90, "{before} extents");
    assert_eq!(fs.fs.defragment().expect("defragment"), 1);
    assert!(extents(&fs) <= 2, "{} extents after", extents(&fs));
    assert_eq!(fs.read_all(node, data.len() as u64), data);
    assert!(fs.garbage().is_empty());
    // Nothing changed since: nothing to do.
    assert_eq!(fs.fs.defragment().expect("defragment"), 0);
    let again = fs.restart();
    let node = again.fs.lookup(ROOT, b"db", 1).expect("lookup").node;
    assert_eq!(again.read_all(node, data.len() as u64), data);

    // A crash at every write of the rewrite leaves the same bytes, and
    // nothing that nothing reaches.
    let empty = Memory::default();
    let pieces = || {
        let fs = Fs::new(Arc::new(empty.restart())).unwrap();
        written_in_pieces(&fs, b"db", &data);
        fs
    };
    let writes = {
        let fs = pieces();
        let before = fs.kv.writes();
        assert_eq!(fs.fs.defragment().expect("defragment"), 1);
        fs.kv.writes() - before
    };
    assert!(writes > 2, "{writes} writes");
    for cut in 0..writes {
        let crashed = pieces();
        crashed.kv.crash_after(cut);
        // Fails somewhere (logged), or frees nothing at the end.
        let _ = crashed.fs.defragment();
        let back = crashed.restart();
        let node = back.fs.lookup(ROOT, b"db", 1).expect("lookup").node;
        assert_eq!(back.read_all(node, data.len() as u64), data, "cut {cut}");
        assert!(back.garbage().is_empty(), "cut {cut}: {:?}", back.garbage());
    }
}

/// The names from the root to folder `id` of the model.
fn path_of(m: &Model, id: u64) -> Vec<Vec<u8>> {
    let mut path = Vec::new();
    let mut at = id;
    while at != ROOT {
        let (&parent, names) = m
            .dirs
            .iter()
            .find(|(_, e)| e.values().any(|&v| v == at))
            .expect("a folder in a folder");
        let name = names.iter().find(|(_, v)| **v == at).unwrap().0;
        path.push(name.clone());
        at = parent;
    }
    path.reverse();
    path
}

/// The inode of the folder at `path`.
fn resolve<K: Kv>(fs: &Fs<K>, path: &[Vec<u8>]) -> u64 {
    path.iter().fold(ROOT, |dir, name| {
        fs.fs
            .lookup(dir, name, 1)
            .expect("a folder on the path")
            .ino
    })
}

/// What an operation that must work gave: with `strict` off (a crash is
/// on its way), a failure ends the operation instead.
fn must<T>(r: Result<T, Error>, strict: bool, what: &str) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(_) if !strict => None,
        Err(e) => panic!("{what}: {e}"),
    }
}

/// One operation at random, on both; says what it did. Not `strict`: the
/// backend may crash under it, and what it meant to do is all that counts.
fn apply_random<K: Kv>(fs: &Fs<K>, m: &mut Model, rng: &mut Rng, strict: bool) -> Option<String> {
    let dirs: Vec<u64> = m.dirs.keys().copied().collect();
    let mdir = dirs[rng.below(dirs.len() as u64) as usize];
    let mto = dirs[rng.below(dirs.len() as u64) as usize];
    let dir = resolve(fs, &path_of(m, mdir));
    let to_dir = resolve(fs, &path_of(m, mto));
    let name = format!("n{}", rng.below(6)).into_bytes();
    let existing = m.dirs[&mdir].get(&name).copied();
    let shown = format!("{mdir}/{}", String::from_utf8_lossy(&name));
    match rng.below(17) {
        0..=2 => {
            let big = [10, 3_000, 5_000, 70_000, 1_500_000][rng.below(5) as usize];
            let n = rng.below(big) as usize;
            let data = rng.bytes(n);
            let pieces = 1 + rng.below(8) as usize;
            let r = fs.put(dir, &name, &data, pieces);
            match existing {
                // The kernel follows a symlink before it creates or opens.
                Some(id) if m.dirs.contains_key(&id) || m.links.contains_key(&id) => {
                    assert!(r.is_err())
                }
                Some(id) => {
                    must(r, strict, "put")?;
                    m.files.insert(id, data);
                }
                None => {
                    must(r, strict, "put")?;
                    let id = m.next;
                    m.next += 1;
                    m.files.insert(id, data);
                    m.dirs.get_mut(&mdir).unwrap().insert(name.clone(), id);
                }
            }
            Some(format!("put {shown}"))
        }
        3..=4 => {
            let Some(id) = existing.filter(|id| m.files.contains_key(id)) else {
                return Some("nothing".into());
            };
            let node = fs.fs.lookup(dir, &name, 1).unwrap().node;
            let len = m.files[&id].len() as u64;
            let at = rng.below(len + 10);
            let n = rng.below(9_000) as usize;
            let data = rng.bytes(n);
            must(fs.pwrite(node, at, &data), strict, "pwrite")?;
            let f = m.files.get_mut(&id).unwrap();
            let end = at as usize + data.len();
            if f.len() < end {
                f.resize(end, 0);
            }
            f[at as usize..end].copy_from_slice(&data);
            Some(format!("pwrite {shown} at {at}"))
        }
        5 => {
            let Some(id) = existing.filter(|id| m.files.contains_key(id)) else {
                return Some("nothing".into());
            };
            let node = fs.fs.lookup(dir, &name, 1).unwrap().node;
            let len = rng.below(m.files[&id].len() as u64 + 6_000);
            let change = caskfs::fs::SetAttr {
                size: Some(len),
                ..Default::default()
            };
            must(fs.fs.setattr(node, change, 1), strict, "truncate")?;
            m.files.get_mut(&id).unwrap().resize(len as usize, 0);
            Some(format!("truncate {shown} to {len}"))
        }
        6 => {
            let r = fs.fs.mkdir(dir, &name, 0o755, 0, &ME);
            if existing.is_some() {
                assert!(r.is_err());
            } else {
                must(r, strict, "mkdir")?;
                let id = m.next;
                m.next += 1;
                m.dirs.insert(id, BTreeMap::new());
                m.dirs.get_mut(&mdir).unwrap().insert(name.clone(), id);
            }
            Some(format!("mkdir {shown}"))
        }
        7 => {
            let r = match existing {
                Some(id) if m.dirs.contains_key(&id) => fs.fs.rmdir(dir, &name),
                _ => fs.fs.unlink(dir, &name),
            };
            match existing {
                None => assert!(r.is_err()),
                Some(id) if m.dirs.contains_key(&id) && !m.dirs[&id].is_empty() => {
                    assert!(r.is_err())
                }
                Some(id) => {
                    must(r, strict, "remove")?;
                    m.dirs.get_mut(&mdir).unwrap().remove(&name);
                    if !m.dirs.values().any(|d| d.values().any(|&v| v == id)) {
                        m.files.remove(&id);
                        m.links.remove(&id);
                        m.dirs.remove(&id);
                    }
                }
            }
            Some(format!("remove {shown}"))
        }
        8..=9 => {
            let to = format!("n{}", rng.below(6)).into_bytes();
            let r = fs.fs.rename(dir, &name, to_dir, &to, 0);
            let mut after = m.clone();
            let ok = model_rename(&mut after, mdir, &name, mto, &to);
            if strict || r.is_ok() {
                assert_eq!(r.is_ok(), ok, "rename {shown} -> {to_dir}: {r:?}");
            }
            if r.is_ok() {
                *m = after;
            }
            Some(format!(
                "rename {shown} -> {mto}/{}",
                String::from_utf8_lossy(&to)
            ))
        }
        10 => {
            let Some(id) = existing.filter(|id| m.files.contains_key(id)) else {
                return Some("nothing".into());
            };
            let node = fs.fs.lookup(dir, &name, 1).unwrap().node;
            let to = format!("n{}", rng.below(6)).into_bytes();
            let r = fs.fs.link(node, to_dir, &to);
            match m.dirs[&mto].contains_key(&to) {
                true => assert!(r.is_err()),
                false => {
                    must(r, strict, "link")?;
                    m.dirs.get_mut(&mto).unwrap().insert(to, id);
                }
            }
            Some(format!("link {shown}"))
        }
        15 => {
            // fallocate: a hole punched, a range zeroed (growing the file
            // or not), or the file grown.
            let Some(id) = existing.filter(|id| m.files.contains_key(id)) else {
                return Some("nothing".into());
            };
            let node = fs.fs.lookup(dir, &name, 1).unwrap().node;
            let len = m.files[&id].len() as u64;
            let at = rng.below(len + 10);
            let n = 1 + rng.below(len.max(1) + 200_000);
            let keep = libc::FALLOC_FL_KEEP_SIZE;
            let mode = [
                libc::FALLOC_FL_PUNCH_HOLE | keep,
                libc::FALLOC_FL_ZERO_RANGE,
                libc::FALLOC_FL_ZERO_RANGE | keep,
                0,
            ][rng.below(4) as usize];
            must(fs.fallocate(node, at, n, mode), strict, "fallocate")?;
            let f = m.files.get_mut(&id).unwrap();
            let end = (at + n) as usize;
            if mode & keep == 0 && f.len() < end {
                f.resize(end, 0);
            }
            if mode != 0 {
                let upto = end.min(f.len());
                if (at as usize) < upto {
                    f[at as usize..upto].fill(0);
                }
            }
            Some(format!("fallocate {mode:#x} {shown} at {at} len {n}"))
        }
        14 => {
            // Files written in pieces written again: the same bytes.
            must(fs.fs.defragment(), strict, "defragment")?;
            Some("defragment".into())
        }
        12..=13 => {
            // copy_file_range, which shares a large file's extents.
            let Some(src) = existing.filter(|id| m.files.contains_key(id)) else {
                return Some("nothing".into());
            };
            // Into any other file of the tree.
            let files: Vec<(u64, Vec<u8>, u64)> = m
                .dirs
                .iter()
                .flat_map(|(d, names)| names.iter().map(move |(n, id)| (*d, n.clone(), *id)))
                .filter(|(_, _, id)| m.files.contains_key(id) && *id != src)
                .collect();
            if files.is_empty() {
                return Some("nothing".into());
            }
            let (mto, to, dst) = files[rng.below(files.len() as u64) as usize].clone();
            let to_dir = resolve(fs, &path_of(m, mto));
            let src_node = fs.fs.lookup(dir, &name, 1).unwrap().node;
            let dst_node = fs.fs.lookup(to_dir, &to, 1).unwrap().node;
            let len = m.files[&src].len() as u64;
            let off_in = rng.below(len + 1) / 3;
            let n = rng.below(len + 50_000);
            let off_out = rng.below(m.files[&dst].len() as u64 + 10_000);
            let copied = must(
                fs.copy(src_node, off_in, dst_node, off_out, n),
                strict,
                "copy",
            )?;
            assert_eq!(copied, n.min(len - off_in), "bytes copied");
            let bytes = m.files[&src][off_in as usize..(off_in + copied) as usize].to_vec();
            let f = m.files.get_mut(&dst).unwrap();
            let end = off_out as usize + bytes.len();
            if f.len() < end && !bytes.is_empty() {
                f.resize(end, 0);
            }
            f[off_out as usize..end].copy_from_slice(&bytes);
            Some(format!(
                "copy {shown} at {off_in} to {mto}/{} at {off_out}",
                String::from_utf8_lossy(&to)
            ))
        }
        _ => {
            let n = 1 + rng.below(40) as usize;
            let target = rng.bytes(n);
            let target: Vec<u8> = target.iter().map(|b| b'a' + b % 26).collect();
            let r = fs.fs.symlink(dir, &name, &target, &ME);
            match existing {
                Some(_) => assert!(r.is_err()),
                None => {
                    must(r, strict, "symlink")?;
                    let id = m.next;
                    m.next += 1;
                    m.links.insert(id, (FileType::Symlink, target));
                    m.dirs.get_mut(&mdir).unwrap().insert(name.clone(), id);
                }
            }
            Some(format!("symlink {shown}"))
        }
    }
}

/// rename(2) in the model; false where POSIX says it fails.
fn model_rename(m: &mut Model, from: u64, name: &[u8], to: u64, to_name: &[u8]) -> bool {
    let Some(src) = m.dirs[&from].get(name).copied() else {
        return false;
    };
    let dst = m.dirs[&to].get(to_name).copied();
    if dst == Some(src) {
        return true;
    }
    let src_dir = m.dirs.contains_key(&src);
    if src_dir {
        // Not into itself or below.
        let mut d = to;
        loop {
            if d == src {
                return false;
            }
            match m.dirs.iter().find(|(_, e)| e.values().any(|&v| v == d)) {
                Some((&p, _)) => d = p,
                None => break,
            }
        }
    }
    if let Some(d) = dst {
        let dst_dir = m.dirs.contains_key(&d);
        if src_dir != dst_dir || (dst_dir && !m.dirs[&d].is_empty()) {
            return false;
        }
        if dst_dir {
            m.dirs.remove(&d);
        }
    }
    m.dirs.get_mut(&from).unwrap().remove(name);
    m.dirs.get_mut(&to).unwrap().insert(to_name.to_vec(), src);
    if let Some(d) = dst
        && !m.dirs.values().any(|e| e.values().any(|&v| v == d))
    {
        m.files.remove(&d);
        m.links.remove(&d);
    }
    true
}
