//! An etcd mount is as observable as a local one: `caskfs stats MNT`
//! (and `--json`) asks its daemon for what it served, its watch and the
//! cluster; `df` shows the cluster's quota; and only root and the mount's
//! owner may ask.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::etcd::Cluster;
use common::{BIN, Mount};
use serde_json::Value as Json;

fn caskfs(m: &Mount, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(m.root.path())
        .output()
        .expect("running caskfs")
}

/// `caskfs stats [--json] mnt`, which must succeed within a few seconds.
fn stats(m: &Mount, json: bool) -> String {
    let args: &[&str] = if json {
        &["stats", "--json", "mnt"]
    } else {
        &["stats", "mnt"]
    };
    let started = Instant::now();
    let out = caskfs(m, args);
    assert!(
        out.status.success(),
        "caskfs {args:?}: {}{}",
        String::from_utf8_lossy(&out.stderr),
        m.log()
    );
    assert!(started.elapsed() < Duration::from_secs(5), "stats was slow");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stats_json(m: &Mount) -> Json {
    let text = stats(m, true);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// `df -B1 mnt`: total, used and available bytes.
fn df(m: &Mount) -> (u64, u64, u64) {
    let out = m.ok("df -B1 --output=size,used,avail mnt | tail -1");
    let n: Vec<u64> = out
        .split_whitespace()
        .map(|w| w.parse().unwrap_or_else(|_| panic!("df said {out:?}")))
        .collect();
    (n[0], n[1], n[2])
}

fn num(v: &Json) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn stats_of_an_etcd_mount_show_requests_the_watch_and_the_cluster() {
    require_etcd!();
    let mut cluster = Cluster::start(3, &[]);
    let m = Mount::start_backend(&cluster.url("stats"), &["--etcd-quota", "1G"]);
    m.ok("mkdir mnt/d && echo one > mnt/d/a && seq 1 500 > mnt/d/b && cp mnt/d/b mnt/c");

    let first = stats_json(&m);
    assert_eq!(first["backend"], "etcd", "{first}");
    assert_eq!(first["mounted"], true);
    assert!(num(&first["requests"]["create"]) >= 3, "{first}");
    assert!(num(&first["requests"]["mkdir"]) >= 1, "{first}");
    assert!(num(&first["bytes_written"]) > 0, "{first}");
    let c = &first["cluster"];
    let members = c["members"].as_array().expect("members");
    assert_eq!(members.len(), 3, "{first}");
    let names: Vec<&str> = members.iter().filter_map(|m| m["name"].as_str()).collect();
    let ids: Vec<&str> = members.iter().filter_map(|m| m["id"].as_str()).collect();
    let leader = &c["leader"];
    let leader_name = leader["name"].as_str().expect("a leader");
    assert!(names.contains(&leader_name), "{first}");
    assert!(ids.contains(&leader["id"].as_str().expect("an id")));
    assert!(
        members.iter().all(|m| m["client_urls"][0]
            .as_str()
            .is_some_and(|u| u.starts_with("http://127.0.0.1:"))),
        "{first}"
    );
    // The harness's member named so leads too.
    let led_by = cluster.wait_for_leader(Duration::from_secs(5));
    assert_eq!(leader_name, format!("m{led_by}"));
    // etcd 3.4 does not report its quota: the option's figure is shown.
    if c["quota_from"] == "--etcd-quota" {
        assert_eq!(num(&c["quota"]), 1 << 30, "{first}");
    }
    assert!(num(&c["db_size"]) >= num(&c["db_size_in_use"]));
    assert!(num(&c["prefix_keys"]) > 0, "{first}");

    // The writes were the cluster's last changes: the watch reports them
    // (its own host's too), so it catches up with the cluster's revision.
    let written = num(&c["revision"]);
    let mut w = first["watch"].clone();
    let start = Instant::now();
    while num(&w["seen_revision"]) < written && start.elapsed() < Duration::from_secs(3) {
        sleep(Duration::from_millis(100));
        w = stats_json(&m)["watch"].clone();
    }
    assert_eq!(w["state"], "running", "{w}");
    assert!(num(&w["seen_revision"]) >= written, "{w} behind {written}");
    assert!(w["since_last_event_secs"].as_f64().is_some(), "{w}");

    // A file held open shows as an open file while it is.
    let mut holder = Command::new("sleep")
        .arg("30")
        .stdin(fs::File::open(m.path("d/a")).expect("open d/a"))
        .stdout(Stdio::null())
        .spawn()
        .expect("sleep");
    let held = stats_json(&m);
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(num(&held["open_handles"]) >= 1, "{held}");

    // The table says the same.
    let table = stats(&m, false);
    for fact in [
        &format!("leader {leader_name} ("),
        "watch: running, seen revision ",
        "open files",
        "requests: ",
        "create ",
        "3 members",
        "quota ",
    ] {
        assert!(table.contains(fact), "no {fact:?} in:\n{table}");
    }

    // Every endpoint answers, each as its own member.
    let endpoints = first["endpoints"].as_array().expect("endpoints");
    assert_eq!(endpoints.len(), 3, "{first}");
    assert!(endpoints.iter().all(|e| e["ok"] == true), "{first}");

    // The daemon does no etcd's work: a clear usage error.
    let compact = caskfs(&m, &["compact", "mnt"]);
    assert_eq!(compact.status.code(), Some(2));

    // A member that is down shows as such; the others still answer.
    let down = (led_by + 1) % 3;
    cluster.kill(down);
    let after = stats_json(&m);
    let endpoints = after["endpoints"].as_array().expect("endpoints");
    assert_eq!(endpoints[down]["ok"], false, "{after}");
    assert_eq!(
        endpoints.iter().filter(|e| e["ok"] == true).count(),
        2,
        "{after}"
    );
    assert!(after["cluster"]["leader"]["name"].is_string(), "{after}");
    let table = stats(&m, false);
    assert!(table.contains("not answering"), "{table}");
}

#[test]
fn df_on_an_etcd_mount_shows_the_quota_and_what_the_cluster_holds() {
    require_etcd!();
    let cluster = Cluster::start(3, &[]);
    let m = Mount::start_backend(&cluster.url("df"), &[]);
    m.ok("echo small > mnt/s");
    let (total, used, avail) = df(&m);
    let reported = stats_json(&m)["cluster"]["quota_from"].clone();
    if reported == "--etcd-quota" {
        assert_eq!(total, 2 << 30, "etcd's default quota");
    }
    assert!(used > 0 && avail < total, "{total} {used} {avail}");
    assert_eq!(
        m.ok("df --output=fstype mnt | tail -1").trim(),
        "fuse.caskfs"
    );
    fs::write(m.scratch("mb"), common::pattern(1 << 20, 5)).unwrap();
    m.ok("cp mb mnt/mb");
    // statfs answers from a status at most a second old.
    let start = Instant::now();
    let mut now = df(&m);
    while now.1 < used + (1 << 19) && start.elapsed() < Duration::from_secs(5) {
        sleep(Duration::from_millis(200));
        now = df(&m);
    }
    assert!(
        now.1 >= used + (1 << 19),
        "used went from {used} to {} after a 1 MiB file",
        now.1
    );
    assert_eq!(now.0, total);
}

#[test]
fn only_root_and_the_mounts_owner_may_ask_its_daemon() {
    require_etcd!();
    if !common::is_root() {
        eprintln!("skipping: asking as another user needs root to switch users");
        return;
    }
    let cluster = Cluster::start(1, &[]);
    let m = Mount::start_backend(&cluster.url("who"), &[]);
    // The other user must reach the mountpoint to name it.
    fs::set_permissions(m.root.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("setpriv")
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            BIN,
        ])
        .args(["stats", "--json"])
        .arg(&m.mnt)
        .output()
        .expect("setpriv");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "nobody was answered: {err}");
    assert!(err.contains("may not ask"), "{err}");
    assert!(out.stdout.is_empty());
    // Root still is.
    assert!(stats(&m, false).contains("watch: "));
}
