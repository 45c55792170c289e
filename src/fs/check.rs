//! The filesystem's own check, after the engine's: every name leads to an
//! inode record, every tree to its nodes and extents, every inode with
//! links has a name, and link counts match the names. `caskfs check`
//! reports what is wrong by path; `--repair` makes the tree whole again,
//! losing no more than the damage took (names with no file go, bytes in
//! lost extents read as zeros, files with no name go to `/lost+found`).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::time::SystemTime;

use super::commit;
use super::dirs::Entry;
use super::errno::Result;
use super::fs::CaskFs;
use crate::backend::Batch;
use crate::schema::tree::{self, Node, Nodes, Span};
use crate::schema::{Data, Inode, entry, extent, keys};
use crate::vocab::{FileType, to_ns};

/// Where files that lost their names are linked, in the root folder.
pub const LOST_AND_FOUND: &[u8] = b"lost+found";

/// What is wrong, by path.
#[derive(Debug, PartialEq, Eq)]
pub enum Problem {
    /// A name whose file's record is gone: the file is lost.
    Lost {
        path: String,
        parent: u64,
        name: Vec<u8>,
    },
    /// A folder whose record is gone; its names are intact.
    Folder { path: String, ino: u64, parent: u64 },
    /// A file whose tree reaches nodes or extents that are gone.
    Holes {
        path: String,
        ino: u64,
        ranges: Vec<(u64, u64)>,
    },
    /// An inode no name reaches: its own name was lost.
    Unnamed { ino: u64, kind: FileType },
    /// A link count that is not the number of names (or subfolders).
    Links {
        path: String,
        ino: u64,
        counted: u32,
        stored: u32,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Lost { path, .. } => write!(
                f,
                "LOST: \"{path}\": its file's record was damaged; the name goes"
            ),
            Problem::Folder { path, .. } => write!(
                f,
                "folder \"{path}\": its record was damaged; it is made anew (mode 755), its names kept"
            ),
            Problem::Holes { path, ranges, .. } => {
                write!(f, "DAMAGED: \"{path}\": bytes")?;
                for (a, b) in ranges {
                    write!(f, " {a}..{b}")?;
                }
                write!(f, " were in damaged records; they read as zeros")
            }
            Problem::Unnamed { ino, kind } => write!(
                f,
                "{} {ino} lost its name: linked as /{}/#{ino}",
                match kind {
                    FileType::Directory => "folder",
                    _ => "file",
                },
                String::from_utf8_lossy(LOST_AND_FOUND)
            ),
            Problem::Links {
                path,
                counted,
                stored,
                ..
            } => write!(f, "\"{path}\": {stored} links recorded, {counted} counted"),
        }
    }
}

/// A walk's findings: the problems, and how much it looked at.
#[derive(Debug, Default)]
pub struct Findings {
    pub problems: Vec<Problem>,
    pub files: u64,
    pub folders: u64,
}

impl fmt::Display for Findings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.problems {
            writeln!(f, "{p}")?;
        }
        write!(
            f,
            "filesystem: {} folders, {} other files; {}",
            self.folders,
            self.files,
            match self.problems.len() {
                0 => "clean".to_string(),
                n => format!("{n} problems"),
            }
        )
    }
}

fn shown(path: &[u8]) -> String {
    String::from_utf8_lossy(path).escape_debug().to_string()
}

impl CaskFs {
    /// Walks the tree from the root and every inode record.
    pub fn check(&self) -> Result<Findings> {
        let dirs = self.dirs.read();
        let mut found = Findings::default();
        // Every inode a name reaches, with its first path and its names.
        let mut reached: BTreeMap<u64, (Vec<u8>, u32)> = BTreeMap::new();
        let mut subdirs: HashMap<u64, u32> = HashMap::new();
        let mut parents: HashMap<u64, u64> = HashMap::new();
        reached.insert(keys::ROOT, (Vec::new(), 0));
        let mut queue = VecDeque::from([(keys::ROOT, Vec::new())]);
        while let Some((dir, path)) = queue.pop_front() {
            for (name, e) in dirs.list(dir) {
                if e.pending {
                    continue;
                }
                let mut p = path.clone();
                if !p.is_empty() {
                    p.push(b'/');
                }
                p.extend_from_slice(&name);
                let seen = reached.contains_key(&e.ino);
                reached.entry(e.ino).or_insert((p.clone(), 0)).1 += 1;
                if e.kind == FileType::Directory {
                    *subdirs.entry(dir).or_default() += 1;
                    if !seen {
                        parents.insert(e.ino, dir);
                        queue.push_back((e.ino, p));
                    }
                }
            }
        }
        let ids = |prefix, of: fn(&[u8]) -> Option<u64>| -> Result<BTreeSet<u64>> {
            Ok(self
                .store
                .kv
                .keys(prefix)?
                .iter()
                .filter_map(|k| of(k))
                .collect())
        };
        let records = ids(keys::inode_prefix(), keys::inode_of)?;
        let orphans = ids(keys::orphan_prefix(), keys::orphan_of)?;
        for (&ino, (path, names)) in &reached {
            let folder = ino == keys::ROOT || parents.contains_key(&ino);
            let inode = match self.store.inode(ino) {
                Ok(Some(i)) => i,
                _ if folder => {
                    found.problems.push(Problem::Folder {
                        path: shown(path),
                        ino,
                        parent: parents.get(&ino).copied().unwrap_or(keys::ROOT),
                    });
                    continue;
                }
                _ => {
                    for (parent, name, e) in dirs.all() {
                        if e.ino == ino {
                            let mut p = reached.get(&parent).map_or_else(Vec::new, |r| r.0.clone());
                            if !p.is_empty() {
                                p.push(b'/');
                            }
                            p.extend_from_slice(name);
                            found.problems.push(Problem::Lost {
                                path: shown(&p),
                                parent,
                                name: name.to_vec(),
                            });
                        }
                    }
                    continue;
                }
            };
            let counted = match folder {
                true => 2 + subdirs.get(&ino).copied().unwrap_or(0),
                false => *names,
            };
            if inode.nlink != counted {
                found.problems.push(Problem::Links {
                    path: shown(path),
                    ino,
                    counted,
                    stored: inode.nlink,
                });
            }
            match folder {
                true => found.folders += 1,
                false => found.files += 1,
            }
            if let Data::Tree(root) = &inode.data {
                let mut ranges = Vec::new();
                self.holes(&root.node, 0, inode.size, &mut ranges);
                if !ranges.is_empty() {
                    found.problems.push(Problem::Holes {
                        path: shown(path),
                        ino,
                        ranges,
                    });
                }
            }
        }
        // Inodes with no name, and folders that hold names but are
        // reached by none: only the top of each such subtree is linked.
        // A store a crash left open, looked at read-only (so not swept),
        // may hold a file's inode whose create or unlink the crash cut in
        // two: garbage the next open removes (`mark_open`) as it removes
        // extents, not damage.
        let crashed = self.opts.read_only && self.store.kv.get(&keys::open_mark())?.is_some();
        let mut unnamed: BTreeMap<u64, FileType> = BTreeMap::new();
        for &ino in records.iter().filter(|i| !orphans.contains(i)) {
            if !reached.contains_key(&ino) {
                let kind = self.store.inode(ino).ok().flatten().map(|i| i.kind);
                let kind = kind.unwrap_or(FileType::Regular);
                if !(crashed && kind != FileType::Directory) {
                    unnamed.insert(ino, kind);
                }
            }
        }
        for (parent, _, _) in dirs.all() {
            if !reached.contains_key(&parent) {
                unnamed.insert(parent, FileType::Directory);
            }
        }
        let below: BTreeSet<u64> = dirs
            .all()
            .filter(|(parent, _, _)| unnamed.contains_key(parent))
            .map(|(_, _, e)| e.ino)
            .collect();
        for (ino, kind) in unnamed {
            if !below.contains(&ino) {
                found.problems.push(Problem::Unnamed { ino, kind });
            }
        }
        Ok(found)
    }

    /// The path of folder `ino` from the root, by its parents' entries;
    /// `None` if a link of the chain is missing.
    pub fn folder_path(&self, ino: u64) -> Option<Vec<u8>> {
        let dirs = self.dirs.read();
        let mut names = Vec::new();
        let mut at = ino;
        while at != keys::ROOT {
            let parent = self.store.inode(at).ok()??.parent;
            let (name, _) = dirs.list(parent).into_iter().find(|(_, e)| e.ino == at)?;
            names.push(name);
            if names.len() > 4096 {
                return None;
            }
            at = parent;
        }
        names.reverse();
        Some(names.join(&b'/'))
    }

    /// The ranges of `[lo, hi)` under `node` whose nodes or extents are
    /// gone or too short.
    fn holes(&self, node: &Node, lo: u64, hi: u64, out: &mut Vec<(u64, u64)>) {
        match node {
            Node::Leaf(entries) => {
                for e in entries {
                    let whole = self
                        .store
                        .kv
                        .get(&keys::extent(e.id))
                        .ok()
                        .flatten()
                        .is_some_and(|v| v.len() >= extent::HEADER_LEN + e.at + e.len);
                    if !whole {
                        out.push((e.off, e.end()));
                    }
                }
            }
            Node::Inner(children) => {
                for (i, c) in children.iter().enumerate() {
                    let end = children.get(i + 1).map_or(hi, |n| n.off);
                    match self.store.node(c.id) {
                        Ok(n) => self.holes(&n, c.off.max(lo), end, out),
                        Err(_) => out.push((c.off.max(lo), end)),
                    }
                }
            }
        }
    }

    /// Mends what `check` found. The filesystem must be opened anew to
    /// see the result.
    pub fn repair(&self, found: &Findings) -> Result<()> {
        let now = to_ns(SystemTime::now());
        let owner = self.opts.owner;
        let kv = &*self.store.kv;
        let mut lost_and_found = None;
        for p in &found.problems {
            let mut b = Batch::default();
            match p {
                Problem::Lost { parent, name, .. } => {
                    b.delete(keys::entry(*parent, name));
                }
                Problem::Folder { ino, parent, .. } => {
                    let mut i = Inode::new(FileType::Directory, 0o755, owner.uid, owner.gid, now);
                    i.parent = *parent;
                    i.nlink = self.folder_links(*ino);
                    b.put(keys::inode(*ino).to_vec(), i.encode());
                }
                Problem::Holes { ino, ranges, .. } => {
                    let Some(mut i) = self.store.inode(*ino)? else {
                        continue;
                    };
                    let Data::Tree(root) = &i.data else { continue };
                    // What is left, in a tree of its own: the old one may
                    // not be readable.
                    let mut kept = Vec::new();
                    self.survivors(&root.node, ranges, &mut kept);
                    let mut alloc_err = None;
                    let mut alloc = || {
                        self.store.new_block().unwrap_or_else(|e| {
                            alloc_err = Some(e);
                            0
                        })
                    };
                    let span = Span {
                        a: 0,
                        b: u64::MAX,
                        new: kept,
                    };
                    let (root, change) =
                        tree::replace(&self.store, *ino, &Default::default(), &[span], &mut alloc)?;
                    if let Some(e) = alloc_err {
                        return Err(e);
                    }
                    for (id, rec) in change.writes {
                        b.put(keys::node(id).to_vec(), rec);
                    }
                    i.data = Data::Tree(root);
                    b.put(keys::inode(*ino).to_vec(), i.encode());
                }
                Problem::Links { ino, counted, .. } => {
                    let Some(mut i) = self.store.inode(*ino)? else {
                        continue;
                    };
                    i.nlink = *counted;
                    b.put(keys::inode(*ino).to_vec(), i.encode());
                }
                Problem::Unnamed { ino, kind } => {
                    let home = match lost_and_found {
                        Some(h) => h,
                        None => {
                            let h = self.lost_and_found(now)?;
                            lost_and_found = Some(h);
                            h
                        }
                    };
                    let mut i = match self.store.inode(*ino).ok().flatten() {
                        Some(i) => i,
                        None => Inode::new(*kind, 0o755, owner.uid, owner.gid, now),
                    };
                    if *kind == FileType::Directory {
                        i.parent = home;
                        i.nlink = self.folder_links(*ino);
                    } else {
                        i.nlink = 1;
                    }
                    b.put(keys::inode(*ino).to_vec(), i.encode());
                    let name = format!("#{ino}");
                    b.put(
                        keys::entry(home, name.as_bytes()),
                        entry::encode(i.kind, *ino),
                    );
                }
            }
            kv.write(b)?;
        }
        if let Some(home) = lost_and_found {
            self.count_subfolders(home)?;
        }
        // The keys the repair left unreached (the damaged files' old
        // trees, and what they alone reached) go.
        let reach = self.reachable_after_repair()?;
        let mut dead = Vec::new();
        for prefix in [keys::extent_prefix(), keys::node_prefix()] {
            dead.extend(kv.keys(prefix)?.into_iter().filter(|k| !reach.contains(k)));
        }
        commit::delete(kv, dead)
    }

    /// The entries of `node` outside the damaged `ranges`.
    fn survivors(&self, node: &Node, ranges: &[(u64, u64)], out: &mut Vec<tree::Extent>) {
        match node {
            Node::Leaf(entries) => {
                for e in entries {
                    let mut rest = vec![*e];
                    for &(a, b) in ranges {
                        rest = rest
                            .into_iter()
                            .flat_map(|r| [r.clip(0, a), r.clip(b, u64::MAX)])
                            .flatten()
                            .collect();
                    }
                    out.extend(rest);
                }
            }
            Node::Inner(children) => {
                for c in children {
                    if let Ok(n) = self.store.node(c.id) {
                        self.survivors(&n, ranges, out);
                    }
                }
            }
        }
    }

    /// 2 and a link for each subfolder, from the entries.
    fn folder_links(&self, ino: u64) -> u32 {
        let dirs = self.dirs.read();
        let subdirs = dirs
            .list(ino)
            .iter()
            .filter(|(_, e)| e.kind == FileType::Directory)
            .count();
        2 + subdirs as u32
    }

    /// Sets folder `ino`'s link count from its entries in the backend.
    fn count_subfolders(&self, ino: u64) -> Result<()> {
        let Some(mut i) = self.store.inode(ino)? else {
            return Ok(());
        };
        // A key may come several times; the last counts.
        let mut entries = HashMap::new();
        self.store.kv.scan(&keys::entry(ino, b""), &mut |k, v| {
            let folder = matches!(v.map(entry::decode), Some(Ok((FileType::Directory, _))));
            entries.insert(k.to_vec(), folder);
        })?;
        i.nlink = 2 + entries.values().filter(|&&f| f).count() as u32;
        let mut b = Batch::default();
        b.put(keys::inode(ino).to_vec(), i.encode());
        self.store.kv.write(b)?;
        Ok(())
    }

    /// `/lost+found`, made if it is not there.
    fn lost_and_found(&self, now: i64) -> Result<u64> {
        if let Some(Entry { ino, .. }) = self.dirs.read().get(keys::ROOT, LOST_AND_FOUND) {
            return Ok(ino);
        }
        let ino = self.store.new_ino()?;
        let mut i = Inode::new(FileType::Directory, 0o700, 0, 0, now);
        i.parent = keys::ROOT;
        i.nlink = 2;
        let mut b = Batch::default();
        b.put(keys::inode(ino).to_vec(), i.encode());
        b.put(
            keys::entry(keys::ROOT, LOST_AND_FOUND),
            entry::encode(FileType::Directory, ino),
        );
        if let Some(mut root) = self.store.inode(keys::ROOT)? {
            root.nlink += 1;
            b.put(keys::inode(keys::ROOT).to_vec(), root.encode());
        }
        self.store.kv.write(b)?;
        Ok(ino)
    }

    /// Every node and extent that a tree reaches, read from the backend
    /// (the repair changed it under the directory map).
    fn reachable_after_repair(&self) -> Result<BTreeSet<Vec<u8>>> {
        let mut reach = BTreeSet::new();
        let inos = self.store.kv.keys(keys::inode_prefix())?;
        for ino in inos.iter().filter_map(|k| keys::inode_of(k)) {
            let Ok(Some(i)) = self.store.inode(ino) else {
                continue;
            };
            if let Data::Tree(root) = &i.data {
                let (mut nodes, mut entries) = (Vec::new(), Vec::new());
                // A tree the check found whole: walking it fails only if
                // it changed since, and then nothing of it is freed.
                if tree::walk(&self.store, root, &mut nodes, &mut entries).is_err() {
                    return Ok(self.store.kv.keys(b"")?.into_iter().collect());
                }
                reach.extend(nodes.into_iter().map(|id| keys::node(id).to_vec()));
                reach.extend(entries.into_iter().map(|e| keys::extent(e.id).to_vec()));
            }
        }
        Ok(reach)
    }
}
