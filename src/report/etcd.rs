//! `caskfs stats` of an etcd mount: the figures every mount has (`Live`),
//! then the watch and the cluster, as a table for people and as JSON for
//! scripts (the common figures under the same names as a local mount's).

use std::fmt::Write;

use serde_json::{Value as Json, json};

use super::Live;
use crate::backend::etcd::EtcdView;
use crate::backend::etcd::status::ClusterView;

pub fn table(e: &EtcdView, l: &Live) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "etcd {}", e.url);
    let _ = writeln!(
        out,
        "mounted on {} by pid {} for {:.0} s; transport {}; reads {}",
        l.mountpoint, l.pid, l.uptime_secs, l.transport, l.reads
    );
    let _ = writeln!(
        out,
        "{} open files; {} bytes read, {} written",
        l.open_handles, l.bytes_read, l.bytes_written
    );
    let requests: Vec<String> = l.requests.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let _ = writeln!(out, "requests: {}", requests.join(", "));
    let w = &e.watch;
    let ago = |s: Option<f64>| s.map_or("never".into(), |s| format!("{s:.1} s ago"));
    let lag = match &e.cluster {
        Ok(c) => format!("lag {} revisions", lag(c, w.seen)),
        Err(_) => "lag unknown".into(),
    };
    let _ = writeln!(
        out,
        "watch: {}, seen revision {}, {lag}; last event {}, last progress {}; reopened {} times",
        w.state,
        w.seen,
        ago(w.since_last_event_secs),
        ago(w.since_last_progress_secs),
        w.reopened
    );
    if let Some(err) = &w.last_error {
        let _ = writeln!(out, "watch: last error: {err}");
    }
    match &e.cluster {
        Err(why) => {
            let _ = writeln!(out, "cluster: not answering: {why}");
        }
        Ok(c) => cluster_table(&mut out, c),
    }
    let name = |id: u64| match &e.cluster {
        Ok(c) => c.name_of(id),
        Err(_) => format!("{id:x}"),
    };
    for (endpoint, answer) in &e.endpoints {
        let _ = match answer {
            Ok(s) => writeln!(
                out,
                "endpoint {endpoint}: member {}, revision {}, database {} bytes ({} in use), leader {}",
                name(s.member_id),
                s.revision,
                s.db_size,
                s.db_size_in_use,
                if s.leader_id == 0 {
                    "none".into()
                } else {
                    name(s.leader_id)
                },
            ),
            Err(why) => writeln!(out, "endpoint {endpoint}: not answering: {why}"),
        };
    }
    out
}

fn cluster_table(out: &mut String, c: &ClusterView) {
    let s = &c.status;
    let leader = match s.leader_id {
        0 => "none".to_string(),
        id => format!("{} ({id:x})", c.name_of(id)),
    };
    let _ = writeln!(
        out,
        "cluster: {} members, leader {leader}, revision {}, raft term {}, etcd {} (as {} says)",
        c.members.len(),
        s.revision,
        s.raft_term,
        s.version,
        c.name_of(s.member_id)
    );
    for m in &c.members {
        let _ = writeln!(
            out,
            "  member {} {:x} {}{}{}",
            if m.name.is_empty() {
                "(unstarted)"
            } else {
                &m.name
            },
            m.id,
            m.client_urls.join(","),
            if m.id == s.leader_id { " leader" } else { "" },
            if m.learner { " learner" } else { "" },
        );
    }
    let used = 100.0 * s.db_size as f64 / c.quota.max(1) as f64;
    let keys = c
        .prefix_keys
        .map_or("an unknown number of".into(), |n| n.to_string());
    let _ = writeln!(
        out,
        "database: {} bytes, {} in use; quota {} ({}), {used:.1}% reached; the prefix holds {keys} keys",
        s.db_size, s.db_size_in_use, c.quota, c.quota_from
    );
}

/// Revisions the cluster has that the watch has not reported (changes
/// outside the prefix count too until the watch's next message).
fn lag(c: &ClusterView, seen: i64) -> i64 {
    (c.status.revision - seen).max(0)
}

pub fn json(e: &EtcdView, l: &Live) -> String {
    let requests: serde_json::Map<String, Json> = l
        .requests
        .iter()
        .map(|(k, n)| ((*k).to_string(), json!(n)))
        .collect();
    let w = &e.watch;
    let cluster = match &e.cluster {
        Err(why) => json!({ "error": why }),
        Ok(c) => {
            let s = &c.status;
            json!({
                "member_id": format!("{:x}", s.member_id),
                "member": c.name_of(s.member_id),
                "leader": if s.leader_id == 0 { Json::Null } else {
                    json!({ "id": format!("{:x}", s.leader_id), "name": c.name_of(s.leader_id) })
                },
                "revision": s.revision,
                "raft_term": s.raft_term,
                "version": s.version,
                "db_size": s.db_size,
                "db_size_in_use": s.db_size_in_use,
                "quota": c.quota,
                "quota_from": c.quota_from,
                "prefix_keys": c.prefix_keys,
                "members": c.members.iter().map(|m| json!({
                    "id": format!("{:x}", m.id),
                    "name": m.name,
                    "client_urls": m.client_urls,
                    "learner": m.learner,
                })).collect::<Vec<_>>(),
            })
        }
    };
    let name = |id: u64| match &e.cluster {
        Ok(c) => c.name_of(id),
        Err(_) => format!("{id:x}"),
    };
    let endpoints: Vec<Json> = e
        .endpoints
        .iter()
        .map(|(endpoint, answer)| match answer {
            Ok(s) => json!({
                "endpoint": endpoint,
                "ok": true,
                "member": name(s.member_id),
                "member_id": format!("{:x}", s.member_id),
                "leader_id": format!("{:x}", s.leader_id),
                "revision": s.revision,
                "db_size": s.db_size,
                "db_size_in_use": s.db_size_in_use,
            }),
            Err(why) => json!({ "endpoint": endpoint, "ok": false, "error": why }),
        })
        .collect();
    let watch = json!({
        "state": w.state,
        "seen_revision": w.seen,
        "lag_revisions": e.cluster.as_ref().ok().map(|c| lag(c, w.seen)),
        "since_last_event_secs": w.since_last_event_secs,
        "since_last_progress_secs": w.since_last_progress_secs,
        "reopened": w.reopened,
        "last_error": w.last_error,
    });
    json!({
        "backend": "etcd",
        "url": e.url,
        "mounted": true,
        "pid": l.pid,
        "mountpoint": l.mountpoint,
        "uptime_secs": (l.uptime_secs * 1000.0).round() / 1000.0,
        "transport": l.transport,
        "reads": l.reads,
        "open_handles": l.open_handles,
        "bytes_read": l.bytes_read,
        "bytes_written": l.bytes_written,
        "requests": requests,
        "watch": watch,
        "cluster": cluster,
        "endpoints": endpoints,
    })
    .to_string()
        + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::etcd::status::{Member, Status};
    use crate::backend::etcd::watch_state::WatchView;

    fn view(cluster: Result<ClusterView, String>) -> (EtcdView, Live) {
        let watch = WatchView {
            state: "running",
            seen: 40,
            since_last_event_secs: Some(0.5),
            since_last_progress_secs: Some(0.5),
            reopened: 0,
            last_error: None,
        };
        let live = Live {
            pid: 7,
            mountpoint: "/m \"x\"".into(),
            uptime_secs: 1.0,
            transport: "/dev/fuse",
            reads: "direct",
            sync: String::new(),
            open_handles: 2,
            bytes_read: 0,
            bytes_written: 5,
            requests: vec![("create", 3)],
        };
        let url = "etcd://h:1/p".to_string();
        (
            EtcdView {
                url,
                watch,
                cluster,
                endpoints: vec![("h:2".into(), Err("refused".into()))],
            },
            live,
        )
    }

    #[test]
    fn json_parses_and_names_the_leader_among_the_members() {
        let members = [(1, "a"), (u64::MAX, "b")]
            .map(|(id, name)| Member {
                id,
                name: name.into(),
                client_urls: vec![format!("http://{name}:2379")],
                learner: false,
            })
            .to_vec();
        let cluster = ClusterView {
            status: Status {
                member_id: 1,
                leader_id: u64::MAX,
                revision: 42,
                raft_term: 2,
                version: "3.4.23".into(),
                db_size: 100,
                db_size_in_use: 80,
                db_size_quota: None,
            },
            members,
            prefix_keys: Some(9),
            quota: 1000,
            quota_from: "--etcd-quota",
        };
        let (e, l) = view(Ok(cluster));
        let j: Json = serde_json::from_str(&json(&e, &l)).unwrap();
        assert_eq!(j["cluster"]["leader"]["name"], "b");
        assert_eq!(j["cluster"]["leader"]["id"], "ffffffffffffffff");
        assert_eq!(j["watch"]["lag_revisions"], 2);
        assert_eq!(j["requests"]["create"], 3);
        assert_eq!(j["mountpoint"], "/m \"x\"");
        assert_eq!(j["endpoints"][0]["ok"], false);
        let t = table(&e, &l);
        assert!(t.contains("leader b (ffffffffffffffff)"), "{t}");
        assert!(t.contains("lag 2 revisions"), "{t}");
    }

    #[test]
    fn a_cluster_that_does_not_answer_says_why() {
        let (e, l) = view(Err("etcd unavailable: h:1: refused".into()));
        let j: Json = serde_json::from_str(&json(&e, &l)).unwrap();
        assert_eq!(j["cluster"]["error"], "etcd unavailable: h:1: refused");
        assert!(j["watch"]["lag_revisions"].is_null());
        assert!(table(&e, &l).contains("cluster: not answering: etcd unavailable"));
    }
}
