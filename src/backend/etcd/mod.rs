//! The key-value interface on an etcd cluster, for a namespace that
//! several hosts mount at once or that must outlive a machine: every
//! batch is one etcd transaction (its compares as etcd compares), so it is
//! atomic and, once acknowledged, committed by a quorum. It speaks etcd's
//! JSON gateway over HTTP or HTTPS, so it needs no generated code and no
//! async runtime. The schema's keys lie under `PREFIX/`.
//!
//! - `url`: `etcd://[USER@]HOST:PORT,.../PREFIX[?cacert=...]`
//! - `http`: requests and streams to one member (ureq)
//! - `tls`: the rustls configuration, and what a failed handshake means
//! - `auth`: the user's password and etcd's auth token
//! - `client`: ranges, transactions and watches; failover and errors
//! - `legacy`: how the layout before the schema lay (`m/`, `d/`, `c/`),
//!   which `caskfs backup` still reads
//! - `status`: the cluster's members, leader, revision and quota, for
//!   `caskfs stats` and `df`
//! - `watch_state`: how the watch is doing, for `caskfs stats`
//! - `lease`: the daemon's lease, which its locks live as long as
//! - `locks`: `flock` and `fcntl` locks that every mount of the prefix sees

mod auth;
mod client;
mod http;
mod lease;
pub mod legacy;
mod locks;
pub mod status;
mod tls;
mod url;
pub mod watch_state;

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::thread;
use std::time::Duration;

use log::{info, warn};

pub use client::{Client, Error as ClientError};
pub use status::{DEFAULT_QUOTA, EtcdView, Observer};
pub use url::{EtcdUrl, PASSWORD_VAR, TlsFiles};
use watch_state::WatchState;

use super::{
    Batch, Change, Changed, Compare, Error, Kv, Op, Pinned, Result, Revision, ScanVisit, Value,
};
use crate::vocab::StatFs;

/// How long one request to one member may take.
const ATTEMPT: Duration = Duration::from_secs(2);
/// How long a request keeps trying members before it fails (ETIMEDOUT).
const DEADLINE: Duration = Duration::from_secs(10);
/// Keys per page of a range.
const PAGE: usize = 1000;
/// What etcd takes in one request by default (1.5 MiB), less room for a
/// transaction's other keys.
const MAX_VALUE: u64 = 1 << 20;
/// etcd's default `--max-txn-ops`.
const MAX_OPS: usize = 128;
/// How long `df` and `caskfs stats` keep trying members.
const STATUS_DEADLINE: Duration = Duration::from_secs(3);
/// How long `caskfs stats` waits for each endpoint's own status.
const ENDPOINT_DEADLINE: Duration = Duration::from_secs(1);

/// What to do with a prefix an older caskfs wrote (keys that were paths),
/// which is not mounted or carried over in place.
pub fn old_layout_advice(url: &str) -> String {
    format!(
        "{url}: written by an older caskfs (keys that are paths); copy it with \
         `caskfs backup {url} DIR`, which reads that layout, then `caskfs backup DIR \
         etcd://HOSTS/NEW-PREFIX`"
    )
}

pub struct Etcd {
    client: Arc<Client>,
    /// The namespace's prefix, ending in `/`.
    prefix: Vec<u8>,
    /// The revision the last scan or watch message brought us to (a
    /// watch starts after it), and how the watch is doing.
    watch: Arc<WatchState>,
    /// The cluster's status for `df` and `caskfs stats`.
    observer: Arc<Observer>,
    /// The revision up to which the watch has told every change (a scan
    /// moves `seen` on without telling).
    told: Arc<AtomicI64>,
}

fn fail(e: ClientError) -> Error {
    match e {
        ClientError::Unavailable(m) => Error::TimedOut(format!("etcd unavailable: {m}")),
        ClientError::NoSpace => Error::NoSpace("etcd database space exceeded (its quota)".into()),
        ClientError::TooLarge(m) => Error::TooBig(format!("request too large for etcd: {m}")),
        e @ (ClientError::Refused(_) | ClientError::BadToken(_)) => Error::Other {
            errno: libc::EACCES,
            why: e.to_string(),
        },
        ClientError::Failed(m) => Error::Other {
            errno: libc::EIO,
            why: format!("etcd: {m}"),
        },
    }
}

impl Etcd {
    /// Connects to the members `url` names: one request, so that an
    /// unreachable cluster is one clear error.
    pub fn open(url: &EtcdUrl) -> Result<Etcd> {
        Etcd::open_with_quota(url, DEFAULT_QUOTA)
    }

    /// The same, with `quota` as the cluster's `--quota-backend-bytes`
    /// where etcd does not report it (before 3.6).
    pub fn open_with_quota(url: &EtcdUrl, quota: u64) -> Result<Etcd> {
        let client = Arc::new(Client::new(url, ATTEMPT, DEADLINE).map_err(fail)?);
        let status_client = Client::new(url, ATTEMPT, STATUS_DEADLINE).map_err(fail)?;
        // One client per endpoint, so that stats can say which is down.
        let mut endpoints = Vec::new();
        for e in &url.endpoints {
            let one = EtcdUrl {
                endpoints: vec![e.clone()],
                ..url.clone()
            };
            let c = Client::new(&one, ENDPOINT_DEADLINE, ENDPOINT_DEADLINE).map_err(fail)?;
            endpoints.push((e.clone(), c));
        }
        let mut prefix = url.prefix.clone();
        if prefix.last() != Some(&b'/') {
            prefix.push(b'/');
        }
        let (_, revision) = client.get(&prefix).map_err(fail)?;
        info!(
            "etcd on {} under {:?}",
            url.endpoints.join(","),
            String::from_utf8_lossy(&prefix)
        );
        let watch = Arc::new(WatchState::new(revision));
        let observer = Arc::new(Observer::new(
            status_client,
            endpoints,
            url.to_string(),
            prefix.clone(),
            quota,
            watch.clone(),
        ));
        Ok(Etcd {
            client,
            prefix,
            watch,
            observer,
            told: Arc::new(AtomicI64::new(revision)),
        })
    }

    fn key(&self, key: &[u8]) -> Vec<u8> {
        [&self.prefix, key].concat()
    }

    /// The client, for reading what lies under the prefix another way
    /// (`legacy`).
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// What answers `caskfs stats` for this mount.
    pub fn observer(&self) -> Arc<Observer> {
        self.observer.clone()
    }

    /// File locks that every mount of the prefix sees, held under a lease
    /// of `ttl` that this daemon keeps alive: a host that dies loses its
    /// locks when the lease lapses.
    pub fn locks(&self, ttl: Duration) -> Result<Arc<dyn super::Locks>> {
        let lease = lease::Lease::grant(self.client.clone(), ttl).map_err(fail)?;
        Ok(Arc::new(locks::EtcdLocks::new(
            self.client.clone(),
            self.prefix.clone(),
            lease,
        )))
    }
}

struct EtcdValue {
    bytes: Vec<u8>,
    revision: Revision,
}

impl Pinned for EtcdValue {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn bytes(&self, offset: u64, len: usize) -> Result<Cow<'_, [u8]>> {
        let start = offset.min(self.len()) as usize;
        let end = start.saturating_add(len).min(self.bytes.len());
        Ok(Cow::Borrowed(&self.bytes[start..end]))
    }

    fn revision(&self) -> Revision {
        self.revision
    }
}

impl Kv for Etcd {
    fn get(&self, key: &[u8]) -> Result<Option<Value>> {
        let (kv, _) = self.client.get(&self.key(key)).map_err(fail)?;
        Ok(kv.map(|kv| {
            Value::new(EtcdValue {
                bytes: kv.value,
                revision: kv.mod_rev as Revision,
            })
        }))
    }

    fn write(&self, batch: Batch) -> Result<Revision> {
        if batch.ops.len() > MAX_OPS {
            return Err(Error::TooBig(format!(
                "a transaction of {} changes (etcd takes {MAX_OPS})",
                batch.ops.len()
            )));
        }
        let when: Vec<client::ModRev> = batch
            .compares
            .iter()
            .map(|c| match c {
                Compare::Absent(k) => client::ModRev(self.key(k), 0),
                Compare::Unchanged(k, rev) => client::ModRev(self.key(k), *rev as i64),
            })
            .collect();
        let then: Vec<client::Op> = batch
            .ops
            .into_iter()
            .map(|op| match op {
                Op::Put { key, value } => client::Op::Put(self.key(&key), value),
                Op::Delete { key } => client::Op::Delete(self.key(&key)),
            })
            .collect();
        let t = self.client.txn(&when, &then, &[]).map_err(fail)?;
        match t.succeeded {
            true => Ok(t.revision as Revision),
            false => Err(Error::Conflict),
        }
    }

    fn scan(&self, prefix: &[u8], each: &mut ScanVisit) -> Result<()> {
        let (kvs, revision) = self
            .client
            .get_prefix(&self.key(prefix), PAGE, false)
            .map_err(fail)?;
        self.watch.seen.fetch_max(revision, Ordering::Relaxed);
        for kv in kvs {
            if let Some(k) = kv.key.strip_prefix(self.prefix.as_slice()) {
                each(k, Some(&kv.value));
            }
        }
        Ok(())
    }

    fn keys(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
        let (kvs, _) = self
            .client
            .get_prefix(&self.key(prefix), PAGE, true)
            .map_err(fail)?;
        Ok(kvs
            .into_iter()
            .filter_map(|kv| {
                kv.key
                    .strip_prefix(self.prefix.as_slice())
                    .map(<[u8]>::to_vec)
            })
            .collect())
    }

    /// A transaction is on a quorum's disks when it is acknowledged.
    fn sync(&self) -> Result<()> {
        Ok(())
    }

    fn max_value_len(&self) -> u64 {
        MAX_VALUE
    }

    fn max_batch_ops(&self) -> usize {
        MAX_OPS
    }

    /// The cluster says when its quota is reached, at the write.
    fn room(&self, _len: u64) -> Result<()> {
        Ok(())
    }

    /// The cluster's quota and database size (see `Observer::space`).
    fn space(&self) -> Result<StatFs> {
        self.observer.space().map_err(fail)
    }

    fn shared(&self) -> bool {
        true
    }

    /// The watch moves `told` on after it has told a response's changes.
    fn wait_seen(&self, revision: Revision, within: Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        while (self.told.load(Ordering::Acquire) as Revision) < revision {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(1));
        }
        true
    }

    /// Follows every change under the prefix from the last scan on, and
    /// watches again (from where it left off) whenever the stream ends.
    fn watch(&self, tell: Changed) {
        let (client, prefix, state) =
            (self.client.clone(), self.prefix.clone(), self.watch.clone());
        let told = self.told.clone();
        state.started();
        let spawned = thread::Builder::new()
            .name("etcd-watch".into())
            .spawn(move || {
                let mut pause = Duration::from_millis(50);
                loop {
                    let from = state.seen.load(Ordering::Relaxed) + 1;
                    let followed = follow(&client, &prefix, (&state, &told), &tell, from);
                    state.closed(followed.as_ref().err().map(ToString::to_string));
                    match followed {
                        Ok(()) => pause = Duration::from_millis(50),
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
}

fn follow(
    client: &Client,
    prefix: &[u8],
    (state, told): (&WatchState, &AtomicI64),
    tell: &Changed,
    from: i64,
) -> client::Result<()> {
    let mut w = client.watch(prefix, from)?;
    state.opened();
    while let Some((events, _)) = w.next()? {
        // Seen is the last event's revision, not the message's: the first
        // message of a watch carries the cluster's revision before the
        // events that catch up, and a stream cut off then would be opened
        // again past events it never brought.
        let mut last = None;
        for e in &events {
            let (key, value, revision) = match e {
                client::Event::Put(kv) => (&kv.key, Some(kv.value.as_slice()), kv.mod_rev),
                client::Event::Delete(k, rev) => (k, None, *rev),
            };
            if let Some(key) = key.strip_prefix(prefix) {
                tell(Change {
                    key,
                    value,
                    revision: revision as Revision,
                });
            }
            last = last.max(Some(revision));
        }
        state.message(last, events.len());
        if let Some(last) = last {
            told.fetch_max(last, Ordering::Release);
        }
    }
    Ok(())
}
