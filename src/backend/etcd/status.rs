//! What an etcd mount tells about its cluster, for `caskfs stats` and
//! `df`: the members, the leader, the revision, the database's size and
//! its quota (`/v3/maintenance/status`, `/v3/cluster/member/list`), and
//! how the watch is doing. Status and the member list are answered by a
//! member on its own, without a quorum, so they still answer when writes
//! cannot.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value as Json, json};

use super::client::{self, Client, int, prefix_end};
use super::watch_state::{WatchState, WatchView};
use crate::vocab::StatFs;

/// etcd's own default for `--quota-backend-bytes`.
pub const DEFAULT_QUOTA: u64 = 2 << 30;
/// How long a status answers `statfs`: `df` and file managers ask often.
const FRESH: Duration = Duration::from_secs(1);
/// The block size `df` counts the quota in.
const BLOCK: u64 = 4096;

/// One member's `/v3/maintenance/status`.
#[derive(Clone, Debug)]
pub struct Status {
    /// The member that answered, and the leader it knows (0: none).
    pub member_id: u64,
    pub leader_id: u64,
    /// The cluster's revision as that member has applied it.
    pub revision: i64,
    pub raft_term: u64,
    pub version: String,
    /// The database file's size (what etcd's quota is checked against),
    /// and the part of it that holds data (the rest is free pages that
    /// a defragmentation gives back).
    pub db_size: u64,
    pub db_size_in_use: u64,
    /// The quota, if the member says (etcd 3.6 and later).
    pub db_size_quota: Option<u64>,
}

#[derive(Clone, Debug)]
pub struct Member {
    pub id: u64,
    /// Empty for a member added but not started yet.
    pub name: String,
    pub client_urls: Vec<String>,
    pub learner: bool,
}

/// The cluster as one request saw it, or why it could not be seen.
#[derive(Clone, Debug)]
pub struct ClusterView {
    pub status: Status,
    pub members: Vec<Member>,
    /// The keys under the prefix (all of the namespace's records), if
    /// the count (a read that needs a quorum) answered.
    pub prefix_keys: Option<u64>,
    pub quota: u64,
    /// Where `quota` comes from: "etcd" or "--etcd-quota".
    pub quota_from: &'static str,
}

impl ClusterView {
    /// The name of member `id`, or its id in hex (as etcdctl shows ids).
    pub fn name_of(&self, id: u64) -> String {
        match self.members.iter().find(|m| m.id == id) {
            Some(m) if !m.name.is_empty() => m.name.clone(),
            _ => format!("{id:x}"),
        }
    }
}

/// What `caskfs stats` shows of an etcd mount beyond the common figures.
#[derive(Clone, Debug)]
pub struct EtcdView {
    /// The URL as given (it never holds a password).
    pub url: String,
    pub watch: WatchView,
    pub cluster: Result<ClusterView, String>,
    /// Each endpoint of the URL, asked on its own: which member answers
    /// there and what it says, or why it does not.
    pub endpoints: Vec<(String, Result<Status, String>)>,
}

/// Answers for the cluster of one mount.
pub struct Observer {
    /// A client of its own, with a short deadline: `df` and `stats` on a
    /// cluster that is down answer in seconds, and wait for no write.
    client: Client,
    /// Each endpoint of the URL with a client of its own.
    endpoints: Vec<(String, Client)>,
    url: String,
    prefix: Vec<u8>,
    /// `--etcd-quota`, for an etcd that does not report its quota.
    quota: u64,
    watch: Arc<WatchState>,
    /// The last status, or why there was none, and when: a cluster that
    /// is down is not asked again by every statfs for its deadline.
    cached: Mutex<Option<(Instant, client::Result<Status>)>>,
}

impl Observer {
    pub fn new(
        client: Client,
        endpoints: Vec<(String, Client)>,
        url: String,
        prefix: Vec<u8>,
        quota: u64,
        watch: Arc<WatchState>,
    ) -> Observer {
        Observer {
            client,
            endpoints,
            url,
            prefix,
            quota,
            watch,
            cached: Mutex::new(None),
        }
    }

    /// The quota and where it comes from.
    fn quota(&self, s: &Status) -> (u64, &'static str) {
        match s.db_size_quota {
            Some(q) if q > 0 => (q, "etcd"),
            _ => (self.quota, "--etcd-quota"),
        }
    }

    /// A status (or its failure) at most `FRESH` old.
    fn status(&self) -> client::Result<Status> {
        let mut cached = self.cached.lock();
        if let Some((at, s)) = cached.as_ref()
            && at.elapsed() < FRESH
        {
            return again(s);
        }
        let s = status(&self.client);
        let answer = again(&s);
        *cached = Some((Instant::now(), s));
        answer
    }

    /// The quota as `df` shows it: total the quota; used what the
    /// database holds (`dbSizeInUse`); available what is left before
    /// etcd's space alarm, which counts the file's whole size. The pages
    /// between the two are like a disk's reserved blocks: free, but not
    /// to be written until etcd is defragmented.
    pub fn space(&self) -> client::Result<StatFs> {
        let s = self.status()?;
        let (quota, _) = self.quota(&s);
        let blocks = |bytes: u64| bytes / BLOCK;
        Ok(StatFs {
            blocks: blocks(quota),
            bfree: blocks(quota.saturating_sub(s.db_size_in_use)),
            bavail: blocks(quota.saturating_sub(s.db_size)),
            files: 0,
            ffree: 0,
            bsize: BLOCK as u32,
            namelen: 0,
            frsize: BLOCK as u32,
        })
    }

    /// Everything `caskfs stats` shows of the cluster and the watch, asked
    /// afresh.
    pub fn view(&self) -> EtcdView {
        // The endpoints at once, beside the cluster's view: a member that
        // does not answer costs its deadline once, not once per member.
        thread::scope(|s| {
            let asked: Vec<_> = self
                .endpoints
                .iter()
                .map(|(name, c)| (name, s.spawn(|| status(c).map_err(|e| e.to_string()))))
                .collect();
            let mut view = self.cluster_view();
            view.endpoints = asked
                .into_iter()
                .map(|(name, h)| {
                    let answer = h
                        .join()
                        .unwrap_or_else(|_| Err("the status request panicked".into()));
                    (name.clone(), answer)
                })
                .collect();
            view
        })
    }

    fn cluster_view(&self) -> EtcdView {
        let cluster = (|| -> client::Result<ClusterView> {
            let status = status(&self.client)?;
            *self.cached.lock() = Some((Instant::now(), Ok(status.clone())));
            let members = members(&self.client)?;
            let prefix_keys = count(&self.client, &self.prefix).ok();
            let (quota, quota_from) = self.quota(&status);
            Ok(ClusterView {
                status,
                members,
                prefix_keys,
                quota,
                quota_from,
            })
        })();
        EtcdView {
            url: self.url.clone(),
            watch: self.watch.view(),
            cluster: cluster.map_err(|e| e.to_string()),
            endpoints: Vec::new(),
        }
    }
}

/// A cached answer again.
fn again(s: &client::Result<Status>) -> client::Result<Status> {
    match s {
        Ok(s) => Ok(s.clone()),
        Err(e) => Err(copy(e)),
    }
}

/// The same error again, for a second caller of a cached failure.
fn copy(e: &client::Error) -> client::Error {
    use client::Error as E;
    match e {
        E::Unavailable(m) => E::Unavailable(m.clone()),
        E::NoSpace => E::NoSpace,
        E::TooLarge(m) => E::TooLarge(m.clone()),
        E::Refused(m) => E::Refused(m.clone()),
        E::BadToken(m) => E::BadToken(m.clone()),
        E::Failed(m) => E::Failed(m.clone()),
    }
}

fn uint(field: &Json) -> client::Result<u64> {
    // etcd's ids are unsigned 64-bit numbers, which `int` would refuse
    // above 2^63: read them as written.
    match field {
        Json::String(s) => s
            .parse()
            .map_err(|_| client::Error::Failed(format!("bad number from etcd: {s:?}"))),
        other => int(other).map(|n| n as u64),
    }
}

/// The status of whichever member answers first.
pub fn status(c: &Client) -> client::Result<Status> {
    let r = c.call("/v3/maintenance/status", &json!({}))?;
    let quota = uint(&r["dbSizeQuota"])?;
    Ok(Status {
        member_id: uint(&r["header"]["member_id"])?,
        leader_id: uint(&r["leader"])?,
        revision: int(&r["header"]["revision"])?,
        raft_term: uint(&r["raftTerm"])?,
        version: r["version"].as_str().unwrap_or("").to_string(),
        db_size: uint(&r["dbSize"])?,
        db_size_in_use: uint(&r["dbSizeInUse"])?,
        db_size_quota: (quota > 0).then_some(quota),
    })
}

pub fn members(c: &Client) -> client::Result<Vec<Member>> {
    let r = c.call("/v3/cluster/member/list", &json!({}))?;
    let mut out = Vec::new();
    for m in r["members"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let urls = m["clientURLs"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .filter_map(|u| u.as_str().map(str::to_string))
            .collect();
        out.push(Member {
            id: uint(&m["ID"])?,
            name: m["name"].as_str().unwrap_or("").to_string(),
            client_urls: urls,
            learner: m["isLearner"].as_bool().unwrap_or(false),
        });
    }
    Ok(out)
}

/// How many keys start with `prefix` (etcd counts them in its index,
/// reading no values).
fn count(c: &Client, prefix: &[u8]) -> client::Result<u64> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let r = c.call(
        "/v3/kv/range",
        &json!({
            "key": b64.encode(prefix),
            "range_end": b64.encode(prefix_end(prefix)),
            "count_only": true,
        }),
    )?;
    uint(&r["count"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_above_two_to_the_63_are_read() {
        assert_eq!(
            uint(&json!("13668033151171901709")).ok(),
            Some(13668033151171901709)
        );
        assert_eq!(uint(&Json::Null).ok(), Some(0));
        assert!(uint(&json!("x")).is_err());
    }
}
