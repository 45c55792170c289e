//! `Storage` on an etcd cluster: every change is one etcd transaction, so
//! it is atomic and, once acknowledged, committed by a quorum. Reads of
//! values go to the cluster (linearizable); names and metadata come from
//! the mirror, which a watch keeps current.

use std::borrow::Cow;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log::{info, warn};
use parking_lot::{Mutex, RwLock};

use super::client::{self, Client, Event, Kv, ModRev, Op};
use super::mirror::Mirror;
use super::record::{Body, CHUNK, INLINE_MAX, Layout, Record};
use super::url::EtcdUrl;
use crate::engine::Staged;
use crate::engine::{self, EntryKind, Meta, Metadata, tree};
use crate::fs::{Error, Listing, Pinned, RemoteChange, Result, StatFs, Storage, Value};

/// How long one request to one member may take.
const ATTEMPT: Duration = Duration::from_secs(2);
/// How long a request keeps trying members before it fails (ETIMEDOUT).
const DEADLINE: Duration = Duration::from_secs(10);
/// Keys per page when loading the records.
const PAGE: usize = 1000;
/// A change that keeps meeting another host's changes gives up after
/// this many tries (EAGAIN).
const TRIES: usize = 8;
/// Chunks of generations no record points to are removed at mount once
/// they are this old (a younger one may be a commit in progress).
const GARBAGE_AGE: Duration = Duration::from_secs(3600);

pub struct Etcd {
    client: Arc<Client>,
    layout: Layout,
    mirror: Arc<RwLock<Mirror>>,
    /// Told of each key another host changed.
    remote: Arc<OnceLock<RemoteChange>>,
    spill: PathBuf,
    max_value_size: u64,
}

impl Etcd {
    /// Connects, loads the namespace's records and starts watching them.
    pub fn open(url: &EtcdUrl, max_value_size: u64) -> Result<Etcd> {
        let client = Arc::new(Client::new(url.endpoints.clone(), ATTEMPT, DEADLINE));
        let layout = Layout::new(&url.prefix);
        let mirror = Arc::new(RwLock::new(Mirror::default()));
        load(&client, &layout, &mirror)?;
        let spill = spill_dir()?;
        let etcd = Etcd {
            client,
            layout,
            mirror,
            remote: Arc::default(),
            spill,
            max_value_size,
        };
        etcd.collect_garbage();
        etcd.watch();
        info!(
            "etcd backend on {} under {:?}: {} records",
            url.endpoints.join(","),
            String::from_utf8_lossy(&url.prefix),
            etcd.mirror.read().records().count()
        );
        Ok(etcd)
    }

    /// Follows everyone's changes to the records from where the load
    /// left off; reloads should etcd have compacted that history away.
    fn watch(&self) {
        let (client, layout, mirror, remote) = (
            self.client.clone(),
            self.layout.clone(),
            self.mirror.clone(),
            self.remote.clone(),
        );
        let spawned = thread::Builder::new()
            .name("etcd-watch".into())
            .spawn(move || {
                let mut pause = Duration::from_millis(50);
                loop {
                    let from = mirror.read().seen_revision() + 1;
                    match follow(&client, &layout, &mirror, &remote, from) {
                        Ok(()) => pause = Duration::from_millis(50),
                        Err(e) if e.to_string().contains("compacted") => {
                            warn!("etcd watch: {e}; reloading the records");
                            if let Err(e) = load(&client, &layout, &mirror) {
                                warn!("etcd reload: {e}");
                            }
                        }
                        Err(e) => {
                            warn!("etcd watch: {e}; watching again");
                            thread::sleep(pause);
                            pause = (pause * 2).min(Duration::from_secs(1));
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            warn!("cannot start the etcd watch, changes by other hosts go unseen: {e}");
        }
    }

    /// Removes chunks that no record points to and that are old enough
    /// not to be a commit in progress: left by a crash between writing a
    /// large value's chunks and its commit, or before old chunks went.
    fn collect_garbage(&self) {
        let chunks = match self.client.get_prefix(&self.layout.chunks(), PAGE, true) {
            Ok((kvs, _)) => kvs,
            Err(e) => return warn!("listing chunks: {e}"),
        };
        let mut generations: Vec<u64> = chunks
            .iter()
            .filter_map(|kv| self.layout.generation_of(&kv.key))
            .collect();
        generations.dedup();
        let used: std::collections::HashSet<u64> = self
            .mirror
            .read()
            .records()
            .filter_map(|(_, r)| match r.body {
                Body::Chunks { generation } => Some(generation),
                Body::Inline => None,
            })
            .collect();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        for g in generations {
            let born = Duration::from_secs(g >> 32);
            if !used.contains(&g) && now.saturating_sub(born) > GARBAGE_AGE {
                info!("removing chunks of generation {g:016x}, which no key uses");
                self.drop_generation(g);
            }
        }
    }

    fn drop_generation(&self, g: u64) {
        let gone = self
            .client
            .txn(&[], &[Op::DeletePrefix(self.layout.generation(g))], &[]);
        if let Err(e) = gone {
            warn!("removing chunks of generation {g:016x} (left for a later mount): {e}");
        }
    }

    /// After a commit replaced `old`: its chunks, unless the new record
    /// uses the same.
    fn drop_replaced(&self, old: Option<&Kv>, new: Option<Body>) {
        let old = old.and_then(|kv| Record::decode(&kv.value));
        if let Some(Record {
            body: Body::Chunks { generation },
            ..
        }) = old
            && new != Some(Body::Chunks { generation })
        {
            self.drop_generation(generation);
        }
    }

    /// Stores `record` (and inline `data`) as `key`'s, replacing whatever
    /// was there.
    fn commit(&self, key: &[u8], record: Record, data: Option<&[u8]>) -> Result<()> {
        let _own = Own::new(&self.mirror, vec![key.to_vec()]);
        let rk = self.layout.record(key);
        let dk = self.layout.data(key);
        let data_op = match data {
            Some(d) => Op::Put(dk, d.to_vec()),
            None => Op::Delete(dk),
        };
        let ops = [Op::Get(rk.clone()), Op::Put(rk, record.encode()), data_op];
        let t = self.client.txn(&[], &ops, &[]).map_err(fail)?;
        self.mirror.write().put(key, record, t.revision);
        self.drop_replaced(t.got.first().and_then(Option::as_ref), Some(record.body));
        Ok(())
    }

    /// Writes a large value's chunks under a new generation.
    fn write_chunks(&self, len: u64, reader: &mut dyn Read) -> Result<u64> {
        let generation = new_generation();
        let mut buf = vec![0; CHUNK as usize];
        let mut n = 0;
        let mut left = len;
        while left > 0 {
            let want = left.min(CHUNK) as usize;
            let written = reader
                .read_exact(&mut buf[..want])
                .map_err(Error::Io)
                .and_then(|()| {
                    let key = self.layout.chunk(generation, n);
                    self.client.put(&key, &buf[..want]).map_err(fail)
                });
            if let Err(e) = written {
                self.drop_generation(generation);
                return Err(e);
            }
            left -= want as u64;
            n += 1;
        }
        Ok(generation)
    }

    /// The current record of `key` and its revision, from the cluster.
    fn current(&self, key: &[u8]) -> Result<Option<(Record, i64)>> {
        let (kv, _) = self.client.get(&self.layout.record(key)).map_err(fail)?;
        kv.map(|kv| Ok((decode(key, &kv.value)?, kv.mod_rev)))
            .transpose()
    }
}

impl Storage for Etcd {
    fn value(&self, key: &[u8]) -> Result<Option<Value>> {
        let (rk, dk) = (self.layout.record(key), self.layout.data(key));
        let t = self
            .client
            .txn(&[], &[Op::Get(rk), Op::Get(dk)], &[])
            .map_err(fail)?;
        // The mirror learns of what this finds from the watch, which
        // also has the kernel forget what it changed.
        let Some(Some(kv)) = t.got.first() else {
            return Ok(None);
        };
        let record = decode(key, &kv.value)?;
        let body = match record.body {
            Body::Inline => {
                let data = t.got.get(1).cloned().flatten().map(|d| d.value);
                let data = data.unwrap_or_default();
                if data.len() as u64 != record.len {
                    return Err(damaged(key, "its record and its bytes differ in length"));
                }
                Pin::Inline(data)
            }
            Body::Chunks { generation } => Pin::Chunks {
                client: self.client.clone(),
                layout: self.layout.clone(),
                generation,
                at: t.revision,
                last: Mutex::new(None),
            },
        };
        Ok(Some(Value::new(EtcdValue {
            meta: record.metadata(),
            body,
        })))
    }

    fn metadata(&self, key: &[u8]) -> Result<Option<Metadata>> {
        Ok(self.mirror.read().get(key).map(|r| r.metadata()))
    }

    fn contains(&self, key: &[u8]) -> Result<bool> {
        Ok(self.mirror.read().get(key).is_some())
    }

    fn put(&self, key: &[u8], value: &[u8], meta: &Meta) -> Result<()> {
        if value.len() as u64 > INLINE_MAX {
            return self.put_from(key, value.len() as u64, &mut &value[..], meta);
        }
        let record = Record {
            meta: *meta,
            len: value.len() as u64,
            body: Body::Inline,
        };
        self.commit(key, record, Some(value))
    }

    fn put_from(&self, key: &[u8], len: u64, reader: &mut dyn Read, meta: &Meta) -> Result<()> {
        if len <= INLINE_MAX {
            let mut v = vec![0; len as usize];
            reader.read_exact(&mut v)?;
            return self.put(key, &v, meta);
        }
        let generation = self.write_chunks(len, reader)?;
        let record = Record {
            meta: *meta,
            len,
            body: Body::Chunks { generation },
        };
        let done = self.commit(key, record, None);
        if done.is_err() {
            self.drop_generation(generation);
        }
        done
    }

    fn set_meta(&self, key: &[u8], meta: &Meta) -> Result<()> {
        let _own = Own::new(&self.mirror, vec![key.to_vec()]);
        for _ in 0..TRIES {
            let Some((record, rev)) = self.current(key)? else {
                return Err(Error::NotFound);
            };
            let record = Record {
                meta: *meta,
                ..record
            };
            let rk = self.layout.record(key);
            let when = [ModRev(rk.clone(), rev)];
            let t = self
                .client
                .txn(&when, &[Op::Put(rk, record.encode())], &[])
                .map_err(fail)?;
            if t.succeeded {
                self.mirror.write().put(key, record, t.revision);
                return Ok(());
            }
        }
        Err(busy(key))
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        let _own = Own::new(&self.mirror, vec![key.to_vec()]);
        let rk = self.layout.record(key);
        let ops = [
            Op::Get(rk.clone()),
            Op::Delete(rk),
            Op::Delete(self.layout.data(key)),
        ];
        let t = self.client.txn(&[], &ops, &[]).map_err(fail)?;
        self.mirror.write().delete(key, t.revision);
        match t.got.first().and_then(Option::as_ref) {
            None => Err(Error::NotFound),
            old => {
                self.drop_replaced(old, None);
                Ok(())
            }
        }
    }

    fn rename(&self, from: &[u8], to: &[u8]) -> Result<()> {
        let _own = Own::new(&self.mirror, vec![from.to_vec(), to.to_vec()]);
        for _ in 0..TRIES {
            let (rf, df) = (self.layout.record(from), self.layout.data(from));
            let (rt, dt) = (self.layout.record(to), self.layout.data(to));
            let t = self
                .client
                .txn(&[], &[Op::Get(rf.clone()), Op::Get(df.clone())], &[])
                .map_err(fail)?;
            let Some(Some(kv)) = t.got.first() else {
                return Err(Error::NotFound);
            };
            let record = decode(from, &kv.value)?;
            let data = match record.body {
                Body::Inline => {
                    let d = t.got.get(1).cloned().flatten().map(|d| d.value);
                    Op::Put(dt, d.unwrap_or_default())
                }
                Body::Chunks { .. } => Op::Delete(dt),
            };
            let ops = [
                Op::Get(rt.clone()),
                Op::Put(rt, kv.value.clone()),
                data,
                Op::Delete(rf.clone()),
                Op::Delete(df),
            ];
            let moved = self
                .client
                .txn(&[ModRev(rf, kv.mod_rev)], &ops, &[])
                .map_err(fail)?;
            if moved.succeeded {
                let mut m = self.mirror.write();
                m.delete(from, moved.revision);
                m.put(to, record, moved.revision);
                drop(m);
                self.drop_replaced(
                    moved.got.first().and_then(Option::as_ref),
                    Some(record.body),
                );
                return Ok(());
            }
        }
        Err(busy(from))
    }

    /// One transaction: every record below `from` (and its own) moved,
    /// each on condition that it has not changed since it was read. etcd
    /// takes 128 operations and 1.5 MiB per transaction by default: a
    /// folder beyond that fails with EXDEV, as `mv` then copies.
    fn rename_folder(&self, from: &[u8], to: &[u8], folder: &Meta) -> Result<usize> {
        let below: Vec<Vec<u8>> = {
            let m = self.mirror.read();
            let tree = m.tree();
            if tree.kind(from) != Some(EntryKind::Folder) {
                return Err(Error::NotFound);
            }
            // None: more than that.
            let Some(keys) = tree.below(from, MAX_FOLDER_KEYS) else {
                return Err(too_large(from, MAX_FOLDER_KEYS + 1, 0));
            };
            keys.into_iter()
                .map(|(k, _)| k)
                .filter(|k| tree.has_record(k))
                .collect()
        };
        let mut keys = vec![from.to_vec(), to.to_vec()];
        for k in &below {
            keys.push(k.clone());
            keys.push(tree::join(to, &k[from.len() + 1..]));
        }
        let _own = Own::new(&self.mirror, keys);
        for _ in 0..TRIES {
            let mut reads = vec![Op::Get(self.layout.record(from))];
            for k in &below {
                reads.push(Op::Get(self.layout.record(k)));
                reads.push(Op::Get(self.layout.data(k)));
            }
            let t = self.client.txn(&[], &reads, &[]).map_err(fail)?;
            let mut when = vec![ModRev(
                self.layout.record(from),
                t.got.first().cloned().flatten().map_or(0, |kv| kv.mod_rev),
            )];
            let folder_record = Record {
                meta: *folder,
                len: 0,
                body: Body::Inline,
            };
            let mut ops = vec![
                Op::Put(self.layout.record(to), folder_record.encode()),
                Op::Put(self.layout.data(to), Vec::new()),
                Op::Delete(self.layout.record(from)),
                Op::Delete(self.layout.data(from)),
            ];
            let mut moved = Vec::new();
            let mut bytes = 0;
            for (i, k) in below.iter().enumerate() {
                let rec = t.got.get(1 + 2 * i).cloned().flatten();
                let data = t.got.get(2 + 2 * i).cloned().flatten();
                let rk = self.layout.record(k);
                when.push(ModRev(rk.clone(), rec.as_ref().map_or(0, |kv| kv.mod_rev)));
                let Some(rec) = rec else { continue };
                let record = decode(k, &rec.value)?;
                let new = tree::join(to, &k[from.len() + 1..]);
                let data = data.map(|d| d.value);
                bytes += rec.value.len() + data.as_ref().map_or(0, Vec::len);
                ops.push(Op::Put(self.layout.record(&new), rec.value));
                ops.push(match (record.body, data) {
                    (Body::Inline, d) => Op::Put(self.layout.data(&new), d.unwrap_or_default()),
                    (Body::Chunks { .. }, _) => Op::Delete(self.layout.data(&new)),
                });
                ops.push(Op::Delete(rk));
                ops.push(Op::Delete(self.layout.data(k)));
                moved.push((k.clone(), new, record));
            }
            if ops.len() > MAX_TXN_OPS || bytes as u64 > INLINE_MAX {
                return Err(too_large(from, moved.len(), bytes as u64));
            }
            let done = match self.client.txn(&when, &ops, &[]) {
                Err(client::Error::TooLarge(_)) => {
                    return Err(too_large(from, moved.len(), bytes as u64));
                }
                r => r.map_err(fail)?,
            };
            if done.succeeded {
                let mut m = self.mirror.write();
                m.delete(from, done.revision);
                m.put(to, folder_record, done.revision);
                for (old, new, record) in &moved {
                    m.delete(old, done.revision);
                    m.put(new, *record, done.revision);
                }
                return Ok(moved.len());
            }
        }
        Err(busy(from))
    }

    fn list(&self, dir: &[u8]) -> Result<Option<Listing>> {
        Ok(self.mirror.read().tree().list(dir))
    }

    fn kind(&self, key: &[u8]) -> Result<Option<EntryKind>> {
        Ok(self.mirror.read().tree().kind(key))
    }

    fn folder_counts(&self, dir: &[u8]) -> Result<(usize, u32)> {
        Ok(self.mirror.read().tree().counts(dir))
    }

    /// A transaction returns once a quorum has it on disk.
    fn sync(&self) -> Result<()> {
        Ok(())
    }

    fn max_value_size(&self) -> u64 {
        self.max_value_size
    }

    /// The cluster's quota is met at commit (ENOSPC then).
    fn room(&self, _len: u64) -> Result<()> {
        Ok(())
    }

    fn space(&self) -> Result<StatFs> {
        Ok(crate::backend::disk_space(&self.spill)?)
    }

    /// Copied into chunks when stored (`put_staged`'s default).
    fn stage(&self, _key_len: usize) -> Result<Staged> {
        Ok(Staged::plain(&self.spill)?)
    }

    fn on_remote_change(&self, tell: RemoteChange) {
        let _ = self.remote.set(tell);
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.spill);
    }
}

/// etcd's default limit of operations in one transaction.
const MAX_TXN_OPS: usize = 128;
/// The most keys a folder rename can move in one transaction (four
/// operations each, beside the folder's own four).
const MAX_FOLDER_KEYS: usize = (MAX_TXN_OPS - 4) / 4;

/// Reads the namespace's records into `mirror` (replacing what it held).
fn load(client: &Client, layout: &Layout, mirror: &RwLock<Mirror>) -> Result<()> {
    let (kvs, rev) = client
        .get_prefix(&layout.records(), PAGE, false)
        .map_err(fail)?;
    let mut fresh = Mirror::default();
    for kv in kvs {
        let Some(key) = layout.key_of_record(&kv.key) else {
            continue;
        };
        match Record::decode(&kv.value) {
            Some(r) => {
                fresh.put(key, r, kv.mod_rev);
            }
            None => warn!("{}: not a caskfs record, skipped", show(&kv.key)),
        }
    }
    fresh.seen(rev);
    mirror.write().replace(fresh);
    Ok(())
}

/// Applies the changes a watch from revision `from` reports until it
/// ends, telling `remote` of each key another host changed.
fn follow(
    client: &Client,
    layout: &Layout,
    mirror: &RwLock<Mirror>,
    remote: &OnceLock<RemoteChange>,
    from: i64,
) -> client::Result<()> {
    let mut w = client.watch(&layout.records(), from)?;
    while let Some((events, rev)) = w.next()? {
        let mut changed: Vec<Vec<u8>> = Vec::new();
        let mut m = mirror.write();
        for e in events {
            // This mount's own changes are in the mirror already, or under
            // way (`Own`).
            match e {
                Event::Put(kv) => {
                    if let (Some(key), Some(r)) =
                        (layout.key_of_record(&kv.key), Record::decode(&kv.value))
                        && m.put(key, r, kv.mod_rev)
                        && !m.is_own(key)
                    {
                        changed.push(key.to_vec());
                    }
                }
                Event::Delete(k, rev) => {
                    if let Some(key) = layout.key_of_record(&k)
                        && m.delete(key, rev)
                        && !m.is_own(key)
                    {
                        changed.push(key.to_vec());
                    }
                }
            }
        }
        m.seen(rev);
        drop(m);
        if let Some(tell) = remote.get() {
            for key in &changed {
                tell(key);
            }
        }
    }
    Ok(())
}

/// Marks keys as this mount's own change while it is under way, so that
/// the watch does not take it for another host's.
struct Own<'a> {
    mirror: &'a RwLock<Mirror>,
    keys: Vec<Vec<u8>>,
}

impl<'a> Own<'a> {
    fn new(mirror: &'a RwLock<Mirror>, keys: Vec<Vec<u8>>) -> Own<'a> {
        let mut m = mirror.write();
        for k in &keys {
            m.begin_own(k);
        }
        Own { mirror, keys }
    }
}

impl Drop for Own<'_> {
    fn drop(&mut self) {
        let mut m = self.mirror.write();
        for k in &self.keys {
            m.end_own(k);
        }
    }
}

/// A value pinned at one revision.
struct EtcdValue {
    meta: Metadata,
    body: Pin,
}

enum Pin {
    Inline(Vec<u8>),
    /// Chunks are read as they were at revision `at`, which etcd keeps
    /// even once a later commit has removed them (until etcd compacts its
    /// history).
    Chunks {
        client: Arc<Client>,
        layout: Layout,
        generation: u64,
        at: i64,
        /// The chunk read last, for the sequential reads that follow.
        last: Mutex<Option<(u64, Arc<Vec<u8>>)>>,
    },
}

impl Pinned for EtcdValue {
    fn metadata(&self) -> Metadata {
        self.meta
    }

    fn bytes(&self, offset: u64, len: usize) -> Result<Cow<'_, [u8]>> {
        let end = self.meta.len.min(offset.saturating_add(len as u64));
        if offset >= end {
            return Ok(Cow::Borrowed(&[]));
        }
        match &self.body {
            Pin::Inline(d) => Ok(Cow::Borrowed(&d[offset as usize..end as usize])),
            Pin::Chunks {
                client,
                layout,
                generation,
                at,
                last,
            } => {
                let mut out = Vec::with_capacity((end - offset) as usize);
                let mut pos = offset;
                while pos < end {
                    let n = pos / CHUNK;
                    let cached = last.lock().clone().filter(|(i, _)| *i == n);
                    let chunk = match cached {
                        Some((_, c)) => c,
                        None => {
                            let key = layout.chunk(*generation, n);
                            let kv = client.get_at(&key, *at).map_err(fail)?;
                            let c = Arc::new(kv.map(|kv| kv.value).unwrap_or_default());
                            *last.lock() = Some((n, c.clone()));
                            c
                        }
                    };
                    let from = (pos - n * CHUNK) as usize;
                    let to = ((end - n * CHUNK).min(CHUNK) as usize).min(chunk.len());
                    if from >= to {
                        let what = format!("chunk {n} of generation {generation:016x} is missing");
                        return Err(Error::Io(io::Error::other(what)));
                    }
                    out.extend_from_slice(&chunk[from..to]);
                    pos += (to - from) as u64;
                }
                Ok(Cow::Owned(out))
            }
        }
    }
}

/// A generation unique across hosts: its creation second above (for
/// collecting garbage by age), random bits below.
fn new_generation() -> u64 {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNT.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.write_u128(now.as_nanos());
    (now.as_secs() << 32) | (h.finish() & 0xffff_ffff)
}

/// A directory of this process's own for spilled drafts.
fn spill_dir() -> Result<PathBuf> {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "caskfs-spill-{}-{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn show(key: &[u8]) -> String {
    String::from_utf8_lossy(key).escape_debug().to_string()
}

fn decode(key: &[u8], bytes: &[u8]) -> Result<Record> {
    Record::decode(bytes).ok_or_else(|| damaged(key, "its record is not one of caskfs's"))
}

fn damaged(key: &[u8], why: &str) -> Error {
    Error::Backend {
        errno: libc::EIO,
        why: format!("key {}: {why}", show(key)),
    }
}

/// A failed request, with the errno it gives.
fn fail(e: client::Error) -> Error {
    Error::Backend {
        errno: e.errno(),
        why: e.to_string(),
    }
}

fn busy(key: &[u8]) -> Error {
    Error::Backend {
        errno: libc::EAGAIN,
        why: format!(
            "key {}: other hosts kept changing it; gave up after {TRIES} tries",
            show(key)
        ),
    }
}

fn too_large(from: &[u8], entries: usize, bytes: u64) -> Error {
    Error::Engine(engine::Error::FolderTooLarge {
        key: show(from),
        entries,
        bytes,
    })
}
