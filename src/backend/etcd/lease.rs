//! The daemon's etcd lease, which its lock records are attached to: kept
//! alive from a background thread every third of its TTL, so that the
//! locks of a host that dies (or loses the cluster for longer than the
//! TTL) go with the lease, and revoked at unmount so that they go at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use log::{error, info, warn};
use serde_json::json;

use super::client::{self, Client};

pub struct Lease {
    client: Arc<Client>,
    /// The lease's id; a new one after the old one was lost.
    id: Arc<AtomicI64>,
    /// Raised when a lease was lost, for the lock table to forget what it
    /// held under it; lowered by whoever took note.
    lost: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

fn grant(client: &Client, ttl: Duration) -> client::Result<i64> {
    let reply = client.call("/v3/lease/grant", &json!({ "TTL": ttl.as_secs().max(1) }))?;
    match client::int(&reply["ID"])? {
        0 => Err(client::Error::Failed(format!(
            "lease grant answered without an id: {}",
            reply["error"]
        ))),
        id => Ok(id),
    }
}

/// The TTL left after a keepalive: 0 when etcd no longer knows the lease.
fn keep_alive(client: &Client, id: i64) -> client::Result<i64> {
    let reply = client.call("/v3/lease/keepalive", &json!({ "ID": id.to_string() }))?;
    client::int(&reply["result"]["TTL"])
}

impl Lease {
    /// Grants a lease of `ttl` and starts keeping it alive.
    pub fn grant(client: Arc<Client>, ttl: Duration) -> client::Result<Lease> {
        let id = Arc::new(AtomicI64::new(grant(&client, ttl)?));
        info!(
            "etcd lease {:x} for locks, TTL {}s",
            id.load(Ordering::Relaxed),
            ttl.as_secs()
        );
        let lease = Lease {
            client,
            id,
            lost: Arc::default(),
            stop: Arc::default(),
        };
        let (c, id, lost, stop) = (
            lease.client.clone(),
            lease.id.clone(),
            lease.lost.clone(),
            lease.stop.clone(),
        );
        let every = (ttl / 3).max(Duration::from_millis(300));
        let spawned = thread::Builder::new()
            .name("etcd-lease".into())
            .spawn(move || keep(&c, &id, &lost, &stop, ttl, every));
        if let Err(e) = spawned {
            warn!("cannot keep the etcd lease alive; locks go after {ttl:?}: {e}");
        }
        Ok(lease)
    }

    pub fn id(&self) -> i64 {
        self.id.load(Ordering::Acquire)
    }

    /// Whether the lease was lost since the last call (locks held under
    /// it are gone).
    pub fn take_lost(&self) -> bool {
        self.lost.swap(false, Ordering::AcqRel)
    }
}

/// Renews the lease until `stop`; when etcd has let it lapse (the host was
/// cut off for longer than the TTL), says so and takes a new one.
fn keep(
    client: &Client,
    id: &AtomicI64,
    lost: &AtomicBool,
    stop: &AtomicBool,
    ttl: Duration,
    every: Duration,
) {
    let mut renewed = Instant::now();
    while !stop.load(Ordering::Acquire) {
        thread::sleep(every);
        if stop.load(Ordering::Acquire) {
            return;
        }
        let current = id.load(Ordering::Acquire);
        let lapsed = match keep_alive(client, current) {
            Ok(left) if left > 0 => {
                renewed = Instant::now();
                false
            }
            Ok(_) => true,
            Err(e) => {
                warn!("renewing etcd lease {current:x}: {e}");
                renewed.elapsed() >= ttl
            }
        };
        if lapsed {
            error!(
                "etcd lease {current:x} lapsed: the file locks this host held are gone \
                 (other hosts may take them now)"
            );
            lost.store(true, Ordering::Release);
            match grant(client, ttl) {
                Ok(new) => {
                    id.store(new, Ordering::Release);
                    renewed = Instant::now();
                    info!("etcd lease {new:x} for locks from now on");
                }
                Err(e) => warn!("granting a new etcd lease: {e}"),
            }
        }
    }
}

impl Drop for Lease {
    /// At unmount: the locks go with the lease at once, not after its TTL.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let id = self.id();
        if let Err(e) = self
            .client
            .call("/v3/lease/revoke", &json!({ "ID": id.to_string() }))
        {
            warn!("revoking etcd lease {id:x}: {e}; its locks go when it lapses");
        }
    }
}
