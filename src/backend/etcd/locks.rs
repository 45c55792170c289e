//! File locks in etcd, which every mount of the prefix sees. Each daemon
//! and lock owner has one record per inode, `PREFIX/<locks(ino)><daemon><owner>`
//! (ids big-endian), whose value is the owner's ranges
//! (`backend::locks::encode`), attached to the daemon's lease: when the
//! daemon dies its records go when the lease lapses.
//!
//! Taking a lock reads the inode's records, checks for conflicts, and
//! writes the owner's record in a transaction that holds only if no
//! record of the inode changed since that read (a compare on the mod
//! revision of the whole range): two hosts racing for one lock cannot
//! both get it; the loser reads again.

use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{Value as Json, json};

use super::client::{self, Client, prefix_end};
use super::fail;
use super::lease::Lease;
use crate::backend::locks::{self, Held, LockKind, Locks};
use crate::backend::{Error, Result, Revision};
use crate::schema::keys;

/// Records of one inode read in one request.
const PAGE: usize = 1000;
/// How often a lock is tried again when the inode's records keep changing
/// under it before giving up with a timeout.
const RACES: usize = 100;

pub struct EtcdLocks {
    client: Arc<Client>,
    /// The namespace's prefix, ending in `/`.
    prefix: Vec<u8>,
    lease: Lease,
    /// This daemon's id in its records: the first lease's, kept when a
    /// lost lease is replaced.
    daemon: u64,
    /// The (inode, owner) pairs this daemon has a record of: every close
    /// releases its owner's locks, and most hold none, which then costs no
    /// request. Only this daemon writes its records, so this is exact.
    held: Mutex<HashSet<(u64, u64)>>,
}

/// One owner's record as read.
struct Record {
    key: Vec<u8>,
    held: Vec<Held>,
}

impl EtcdLocks {
    pub fn new(client: Arc<Client>, prefix: Vec<u8>, lease: Lease) -> EtcdLocks {
        EtcdLocks {
            daemon: lease.id() as u64,
            client,
            prefix,
            lease,
            held: Mutex::default(),
        }
    }

    fn inode_prefix(&self, ino: u64) -> Vec<u8> {
        [self.prefix.as_slice(), &keys::locks(ino)].concat()
    }

    fn key(&self, ino: u64, owner: u64) -> Vec<u8> {
        [
            self.inode_prefix(ino).as_slice(),
            &self.daemon.to_be_bytes(),
            &owner.to_be_bytes(),
        ]
        .concat()
    }

    /// What this daemon held under a lease that lapsed is gone.
    fn forget_if_lost(&self) {
        if self.lease.take_lost() {
            self.held.lock().clear();
        }
    }

    /// Every record of `ino`, and the revision they were read at.
    fn read(&self, ino: u64) -> Result<(Vec<Record>, i64)> {
        let (kvs, revision) = self
            .client
            .get_prefix(&self.inode_prefix(ino), PAGE, false)
            .map_err(fail)?;
        let records = kvs
            .into_iter()
            .map(|kv| {
                Ok(Record {
                    held: locks::decode(&kv.value)?,
                    key: kv.key,
                })
            })
            .collect::<Result<_>>()?;
        Ok((records, revision))
    }

    /// Writes `held` as `key`'s record (deleting it when empty) if no
    /// record of `ino` changed after `revision`; the revision it was
    /// written at, if it was.
    fn write_if_unchanged(
        &self,
        ino: u64,
        key: &[u8],
        held: &[Held],
        revision: i64,
    ) -> Result<Option<Revision>> {
        let range = self.inode_prefix(ino);
        let op = match held.is_empty() {
            true => json!({ "request_delete_range": { "key": client::enc(key) } }),
            false => json!({ "request_put": {
                "key": client::enc(key),
                "value": client::enc(&locks::encode(held)),
                "lease": self.lease.id().to_string(),
            }}),
        };
        let req = json!({
            "compare": [{
                "key": client::enc(&range),
                "range_end": client::enc(&prefix_end(&range)),
                "target": "MOD",
                "result": "LESS",
                "mod_revision": (revision + 1).to_string(),
            }],
            "success": [op],
        });
        let reply: Json = self.client.call("/v3/kv/txn", &req).map_err(fail)?;
        match reply["succeeded"].as_bool().unwrap_or(false) {
            true => Ok(Some(client::revision(&reply).map_err(fail)? as Revision)),
            false => Ok(None),
        }
    }
}

impl Locks for EtcdLocks {
    fn conflicting(
        &self,
        ino: u64,
        owner: u64,
        kind: LockKind,
        start: u64,
        end: u64,
    ) -> Result<Option<Held>> {
        let mine = self.key(ino, owner);
        let (records, _) = self.read(ino)?;
        Ok(records
            .iter()
            .filter(|r| r.key != mine)
            .flat_map(|r| r.held.iter())
            .find(|h| h.conflicts(kind, start, end))
            .copied())
    }

    fn set(
        &self,
        ino: u64,
        owner: u64,
        kind: Option<LockKind>,
        start: u64,
        end: u64,
        pid: u32,
    ) -> Result<Option<Revision>> {
        self.forget_if_lost();
        if kind.is_none() && !self.held.lock().contains(&(ino, owner)) {
            return Ok(Some(0));
        }
        let key = self.key(ino, owner);
        for _ in 0..RACES {
            let (records, revision) = self.read(ino)?;
            let mut mine: &[Held] = &[];
            for r in &records {
                if r.key == key {
                    mine = &r.held;
                } else if let Some(kind) = kind
                    && r.held.iter().any(|h| h.conflicts(kind, start, end))
                {
                    return Ok(None);
                }
            }
            let new = locks::apply(mine, kind, start, end, pid);
            let written = match new == mine {
                true => Some(0),
                false => self.write_if_unchanged(ino, &key, &new, revision)?,
            };
            if let Some(at) = written {
                let mut held = self.held.lock();
                match new.is_empty() {
                    true => held.remove(&(ino, owner)),
                    false => held.insert((ino, owner)),
                };
                return Ok(Some(at));
            }
        }
        Err(Error::TimedOut(format!(
            "the locks of inode {ino} kept changing for {RACES} tries"
        )))
    }

    fn release(&self, ino: u64, owner: u64) -> Result<()> {
        self.forget_if_lost();
        if !self.held.lock().contains(&(ino, owner)) {
            return Ok(());
        }
        self.client.delete(&self.key(ino, owner)).map_err(fail)?;
        self.held.lock().remove(&(ino, owner));
        Ok(())
    }
}
