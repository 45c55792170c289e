//! The etcd backend on clusters an operator would run: clients over TLS
//! with certificates the test makes (openssl), and etcd's user and
//! password auth. Real mounts driven by shell tools, a leader killed under
//! load over TLS, a token that lapses under a mount, the offline commands
//! and backups with the same URL, and the failures an operator meets
//! (unknown CA, a client certificate of another CA, a wrong or missing
//! password): one line naming the member and the reason, exit code 5,
//! nothing mounted.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::certs::{self, Certs};
use common::etcd::{Cluster, ServerTls};
use common::{Mount, is_mounted};

const PASSWORD_VAR: &str = "CASKFS_ETCD_PASSWORD";

/// Returns early (a skip, said) without FUSE, etcd or openssl.
macro_rules! require_tls_tools {
    () => {
        if !common::fuse_available()
            || !common::etcd::etcd_available()
            || !certs::openssl_available()
        {
            return;
        }
    };
}

fn server_tls(c: &Certs) -> ServerTls {
    let server = c.server();
    ServerTls {
        ca: c.ca(),
        cert: server.cert,
        key: server.key,
    }
}

/// `url` with a query of TLS files.
fn with_tls(url: &str, ca: &Path, client: Option<&certs::Pair>) -> String {
    let mut u = format!("{url}?cacert={}", ca.display());
    if let Some(p) = client {
        u += &format!("&cert={}&key={}", p.cert.display(), p.key.display());
    }
    u
}

/// `caskfs ARGS` with the password variable set to `password` (or unset).
fn caskfs(args: &[&str], password: Option<&str>) -> Output {
    let mut cmd = Command::new(common::BIN);
    cmd.args(args).env_remove(PASSWORD_VAR).stdin(Stdio::null());
    if let Some(p) = password {
        cmd.env(PASSWORD_VAR, p);
    }
    cmd.output().expect("run caskfs")
}

fn ok(args: &[&str], password: Option<&str>) -> String {
    let out = caskfs(args, password);
    assert!(
        out.status.success(),
        "caskfs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `caskfs mount --backend URL` fails: exit code 5, one line on stderr
/// that names one of `endpoints` and says `says`, and nothing is mounted.
fn mount_refused(url: &str, password: Option<&str>, endpoints: &[String], says: &str) {
    let root = common::temp_root();
    let mnt = root.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let out = caskfs(
        &["mount", "--backend", url, mnt.to_str().unwrap()],
        password,
    );
    let mounted = is_mounted(&mnt);
    if mounted {
        common::unmount_cmd(&mnt);
    }
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("refused as expected: {}", err.trim_end());
    assert!(!mounted, "{url}: mounted although it should fail: {err}");
    assert_eq!(out.status.code(), Some(5), "{url}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    // The URL names every member: the member is named after it.
    let after_url = err.split_once(url).map_or("", |(_, rest)| rest);
    assert!(
        endpoints.iter().any(|e| after_url.contains(e.as_str())) && err.contains(says),
        "{url}: expected one of {endpoints:?} and {says:?} in: {err}"
    );
    if let Some(p) = password {
        assert!(!err.contains(p), "the password shows: {err}");
    }
}

#[test]
fn tls_with_client_certificates_serves_tools_and_loses_no_write_with_its_leader() {
    require_tls_tools!();
    let c = Certs::make();
    let mut cluster = Cluster::start_tls(3, &server_tls(&c), &[]);
    let members = cluster.endpoints();
    // The CA given relative to where the command runs.
    let url = with_tls(
        &cluster.url("tls"),
        &certs::relative_to_cwd(&c.ca()),
        Some(&c.client()),
    );

    // The refusals first, on the healthy cluster.
    let plain = cluster.url("tls");
    mount_refused(
        &plain,
        None,
        &members,
        "if the cluster serves TLS, give cacert=",
    );
    let unknown_ca = with_tls(&plain, &c.other_ca(), Some(&c.client()));
    mount_refused(
        &unknown_ca,
        None,
        &members,
        "not signed by the CA of cacert=",
    );
    let other_key = with_tls(&plain, &c.ca(), Some(&c.other_client()));
    mount_refused(&other_key, None, &members, "refused our client certificate");
    let no_cert = with_tls(&plain, &c.ca(), None);
    mount_refused(&no_cert, None, &members, "give cert= and key=");

    let m = Mount::start_backend(&url, &[]);
    m.ok("echo hello > mnt/k && echo more >> mnt/k && mkdir mnt/d && cp mnt/k mnt/d/copy");
    assert_eq!(m.ok("cat mnt/k mnt/d/copy"), "hello\nmore\nhello\nmore\n");
    m.ok("mv mnt/d/copy mnt/moved && rm mnt/k");
    assert_eq!(m.ok("ls mnt"), "d\nmoved\n");
    // The source of the mount is the URL, files made absolute, and the
    // daemon's `caskfs stats MOUNTPOINT` reaches the cluster through it.
    let stats = ok(&["stats", m.mnt.to_str().unwrap()], None);
    assert!(
        stats.contains(&format!("?cacert={}", c.ca().display()))
            && stats.contains("cluster: 3 members, leader"),
        "{stats}"
    );

    // Kill the leader under a write load, as tests/etcd_mount.rs does
    // without TLS: every acknowledged write is there afterwards.
    let mut acked = Vec::new();
    let mut killed = None;
    for i in 0..300 {
        if i == 80 {
            let leader = cluster.wait_for_leader(Duration::from_secs(10));
            cluster.kill(leader);
            killed = Some(leader);
        }
        if i == 220
            && let Some(l) = killed.take()
        {
            cluster.restart(l);
        }
        let v = format!("value {i}\n");
        if fs::write(m.path(&format!("w{i}")), &v).is_ok() {
            acked.push((i, v));
        }
    }
    assert!(acked.len() >= 200, "only {} of 300 writes", acked.len());
    drop(m);
    let check = Mount::start_backend(&url, &[]);
    for (i, v) in &acked {
        let got = fs::read_to_string(check.path(&format!("w{i}")));
        assert_eq!(
            got.ok().as_deref(),
            Some(v.as_str()),
            "acknowledged w{i} lost"
        );
    }
    eprintln!(
        "{} of 300 writes acknowledged over TLS, none lost",
        acked.len()
    );
    drop(check);

    // The offline commands and backups in both directions, same URL.
    let url2 = with_tls(&cluster.url("tls2"), &c.ca(), Some(&c.client()));
    ok(&["put", &url2, "a/b", "seven"], None);
    assert_eq!(ok(&["get", &url2, "a/b"], None), "seven");
    assert_eq!(ok(&["ls", "-r", &url2], None), "a/\na/b\n");
    let root = common::temp_root();
    let local = root.path().join("local");
    let local = local.to_str().unwrap();
    assert!(ok(&["backup", &url2, local], None).contains("copied"));
    let url3 = with_tls(&cluster.url("tls3"), &c.ca(), Some(&c.client()));
    assert!(ok(&["backup", local, &url3], None).contains("copied"));
    assert_eq!(ok(&["get", &url3, "a/b"], None), "seven");
    ok(&["rm", &url3, "a/b"], None);
    // server-name= verifies another name than the endpoint's host: one
    // the members' certificate carries (localhost), and one it does not.
    let named = format!("{url2}&server-name=localhost");
    assert_eq!(ok(&["get", &named, "a/b"], None), "seven");
    let misnamed = format!("{url2}&server-name=etcd.example");
    let out = caskfs(&["get", &misnamed, "a/b"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains("not for the name asked"), "{err}");
    let bad = caskfs(&["get", &unknown_ca, "a/b"], None);
    assert_eq!(bad.status.code(), Some(5));
}

/// A user and password (etcd's simple tokens, which lapse after
/// `--auth-token-ttl` seconds unused, here 2): a mount writes and reads,
/// and keeps working across several lapses, authenticating again; wrong
/// and missing passwords are refused.
#[test]
fn a_user_and_password_mount_and_their_token_is_renewed_as_it_lapses() {
    require_tls_tools!();
    let cluster = Cluster::start(1, &["--auth-token-ttl", "2"]);
    cluster.enable_auth("cask", "s3cret pass", "auth");
    let members = cluster.endpoints();
    let host = cluster.url("auth");
    let url = host.replacen("etcd://", "etcd://cask@", 1);

    mount_refused(
        &url,
        Some("Xyzzy-not-it"),
        &members,
        "wrong password or no such user",
    );
    let variable = [PASSWORD_VAR.to_string()];
    mount_refused(&url, None, &variable, "which is not set");
    mount_refused(&host, None, &members, "give USER@ in the URL");

    let m = Mount::start_backend_env(&url, &[], &[(PASSWORD_VAR, "s3cret pass")]);
    m.ok("echo one > mnt/k && mkdir mnt/d && cp mnt/k mnt/d/k2");
    for round in 0..3 {
        // Longer than the token's time to live, with nothing asked.
        std::thread::sleep(Duration::from_secs(3));
        m.ok(&format!("echo {round} >> mnt/k && ls mnt/d"));
    }
    assert_eq!(m.ok("cat mnt/k mnt/d/k2"), "one\n0\n1\n2\none\n");
    let authenticated = m.log().matches("authenticated as cask").count();
    assert!(
        authenticated >= 2,
        "the token was fetched {authenticated} times; expected again after it lapsed:\n{}",
        m.log()
    );
    eprintln!("authenticated {authenticated} times over 9 s with a 2 s token");

    // A mount left idle: its watch, quiet for 10 s, is opened again
    // with a token that lapsed long ago. It must still learn of another
    // mount's new file (a name it has not seen is listed only if the watch
    // told it).
    let other = Mount::start_backend_env(&url, &[], &[(PASSWORD_VAR, "s3cret pass")]);
    std::thread::sleep(Duration::from_secs(12));
    other.ok("echo from-other > mnt/d/new");
    let mut listed = String::new();
    for _ in 0..100 {
        listed = m.ok("ls mnt/d");
        if listed.contains("new") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        listed,
        "k2\nnew\n",
        "the idle mount's watch did not follow the other mount:\n{}",
        m.log()
    );
    drop(other);
    drop(m);

    // Offline commands with the same URL.
    let pw = Some("s3cret pass");
    ok(&["put", &url, "p/q", "v"], pw);
    assert_eq!(ok(&["get", &url, "p/q"], pw), "v");
    let out = caskfs(&["get", &url, "p/q"], Some("nope"));
    assert_eq!(out.status.code(), Some(5));
    // The user may not read outside its prefix.
    let outside = cluster
        .url("elsewhere")
        .replacen("etcd://", "etcd://cask@", 1);
    let out = caskfs(&["ls", &outside], pw);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains("permission denied"), "{err}");
}
