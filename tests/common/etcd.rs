//! etcd clusters for the etcd backend's tests and its benchmark
//! (`benches/etcd.rs` includes this file): members on 127.0.0.1 with free
//! ports and their own data directories, run as our own processes (ended
//! by pid when the `Cluster` drops, or by the kernel should the test
//! process die first), killed and restarted at will.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Whether etcd is installed (Debian's etcd-server).
pub fn etcd_available() -> bool {
    tool_available("etcd", "--version", "etcd-server", "etcd")
}

/// Whether `cmd ARG` runs (a tool some tests need). Without it the test
/// is skipped with a note naming Debian's `package`, except under
/// `CI=true`, where that is a failure: `scripts/test.sh` installs it.
pub fn tool_available(cmd: &str, arg: &str, package: &str, tests: &str) -> bool {
    let found = Command::new(cmd)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return true;
    }
    let missing =
        format!("{cmd} is not installed (Debian's {package}; scripts/test.sh installs it)");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{missing}, and CI=true: the {tests} tests must run in CI");
    }
    eprintln!("skipping {tests} test: {missing}");
    false
}

/// Returns from the test early (a skip) when etcd or FUSE is missing.
#[macro_export]
macro_rules! require_etcd {
    () => {
        if !common::fuse_available() || !common::etcd::etcd_available() {
            return;
        }
    };
}

struct Member {
    name: String,
    client: u16,
    /// With TLS, a plain-HTTP client URL besides, which only this harness
    /// uses (to find the leader, count keys): caskfs is given `client`.
    harness: Option<u16>,
    peer: u16,
    child: Option<Child>,
}

impl Member {
    /// The port this harness asks the member on.
    fn gateway(&self) -> u16 {
        self.harness.unwrap_or(self.client)
    }
}

/// The files of a cluster that serves its clients over TLS and asks them
/// for a certificate its CA signed.
#[derive(Clone)]
pub struct ServerTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub struct Cluster {
    dir: PathBuf,
    /// Removes `dir` when the cluster goes, if it is a temporary one.
    _temp: Option<TempDir>,
    members: Vec<Member>,
    /// Extra flags every member gets.
    flags: Vec<String>,
    tls: Option<ServerTls>,
}

impl Cluster {
    /// Starts `n` members in a temporary directory and waits until they
    /// have a leader.
    pub fn start(n: usize, flags: &[&str]) -> Cluster {
        let temp = tempfile::Builder::new()
            .prefix("caskfs-etcd-")
            .tempdir()
            .expect("temp dir");
        let mut c = Cluster::start_in(temp.path(), n, flags);
        c._temp = Some(temp);
        c
    }

    /// Starts `n` members that serve clients over TLS only (`https://`,
    /// `--client-cert-auth`); peers talk plain HTTP among themselves.
    pub fn start_tls(n: usize, tls: &ServerTls, flags: &[&str]) -> Cluster {
        let temp = tempfile::Builder::new()
            .prefix("caskfs-etcd-tls-")
            .tempdir()
            .expect("temp dir");
        let mut c = Cluster::start_tls_in(temp.path(), n, tls, flags);
        c._temp = Some(temp);
        c
    }

    /// The same with the members' data and logs in `dir` (created).
    pub fn start_tls_in(dir: &Path, n: usize, tls: &ServerTls, flags: &[&str]) -> Cluster {
        Cluster::start_with(dir, n, flags, Some(tls.clone()))
    }

    /// The same with the members' data and logs in `dir` (created).
    pub fn start_in(dir: &Path, n: usize, flags: &[&str]) -> Cluster {
        Cluster::start_with(dir, n, flags, None)
    }

    fn start_with(dir: &Path, n: usize, flags: &[&str], tls: Option<ServerTls>) -> Cluster {
        std::fs::create_dir_all(dir).expect("etcd directory");
        let members = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client: free_port(),
                harness: tls.as_ref().map(|_| free_port()),
                peer: free_port(),
                child: None,
            })
            .collect();
        let mut c = Cluster {
            dir: dir.to_path_buf(),
            _temp: None,
            members,
            flags: flags.iter().map(|s| s.to_string()).collect(),
            tls,
        };
        for i in 0..n {
            c.spawn(i, "new");
        }
        c.wait_for_leader(Duration::from_secs(30));
        c
    }

    fn spawn(&mut self, i: usize, state: &str) {
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect();
        let m = &self.members[i];
        let data: PathBuf = self.dir.join(&m.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{}.log", m.name)))
            .expect("etcd log");
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let client = format!("{scheme}://127.0.0.1:{}", m.client);
        let listen = match m.harness {
            Some(h) => format!("{client},http://127.0.0.1:{h}"),
            None => client.clone(),
        };
        let peer = format!("http://127.0.0.1:{}", m.peer);
        let mut cmd = Command::new("etcd");
        if let Some(t) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&t.cert)
                .arg("--key-file")
                .arg(&t.key)
                .arg("--trusted-ca-file")
                .arg(&t.ca)
                .arg("--client-cert-auth");
        }
        cmd.args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &listen])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial.join(",")])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", &self.token()])
            // Quick elections, so a killed leader is replaced in a second.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(&self.flags)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log);
        // SAFETY: prctl in the child before exec; it only sets the signal
        // the child gets when the thread that spawned it ends.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start etcd");
        self.members[i].child = Some(child);
    }

    fn token(&self) -> String {
        self.dir
            .file_name()
            .map_or("caskfs".into(), |n| n.to_string_lossy().into_owned())
    }

    /// `host:port` of every member's client URL (`https://` with TLS).
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client))
            .collect()
    }

    /// `etcd://` URL of every member, for keys under `prefix`.
    pub fn url(&self, prefix: &str) -> String {
        format!("etcd://{}/{prefix}", self.endpoints().join(","))
    }

    /// kill -9 member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts member `i` again on its data directory.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i, "existing");
    }

    /// The index of the member that leads now, if one answers so.
    pub fn leader(&self) -> Option<usize> {
        for m in self.members.iter().filter(|m| m.child.is_some()) {
            let Some(reply) = post(m.gateway(), "/v3/maintenance/status", "{}") else {
                continue;
            };
            let own = field(&reply, "member_id");
            let leader = field(&reply, "leader");
            if own.is_some() && own == leader {
                return self.members.iter().position(|x| x.client == m.client);
            }
        }
        None
    }

    pub fn wait_for_leader(&self, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            if let Some(l) = self.leader() {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "etcd has no leader after {within:?}:\n{}",
                self.logs()
            );
            sleep(Duration::from_millis(50));
        }
    }

    /// How many etcd keys start with `prefix`, asked of a live member.
    pub fn count(&self, prefix: &str) -> usize {
        let end = {
            let mut e = prefix.as_bytes().to_vec();
            if let Some(last) = e.last_mut() {
                *last += 1;
            }
            e
        };
        let body = format!(
            r#"{{"key":"{}","range_end":"{}","count_only":true}}"#,
            b64(prefix.as_bytes()),
            b64(&end)
        );
        for m in self.members.iter().filter(|m| m.child.is_some()) {
            if let Some(reply) = post(m.gateway(), "/v3/kv/range", &body) {
                return field(&reply, "count").map_or(0, |c| c.parse().unwrap_or(0));
            }
        }
        panic!("no etcd member answered:\n{}", self.logs());
    }

    /// Stores `value` at etcd key `key` directly, through a live member.
    pub fn put(&self, key: &str, value: &[u8]) {
        let body = format!(
            r#"{{"key":"{}","value":"{}"}}"#,
            b64(key.as_bytes()),
            b64(value)
        );
        let put = self
            .members
            .iter()
            .filter(|m| m.child.is_some())
            .find_map(|m| post(m.gateway(), "/v3/kv/put", &body));
        assert!(put.is_some(), "no etcd member took a put:\n{}", self.logs());
    }

    /// Turns etcd's auth on: a root user (which etcd needs first) with
    /// `password`, and `user` with `password`, who may read and write the
    /// keys under `prefix/` only. Through the JSON gateway, as Debian's
    /// etcd-server has no etcdctl.
    pub fn enable_auth(&self, user: &str, password: &str, prefix: &str) {
        let under = format!("{prefix}/");
        let mut end = under.clone().into_bytes();
        *end.last_mut().expect("a prefix") += 1;
        for (path, body) in [
            (
                "/v3/auth/user/add",
                format!(r#"{{"name":"root","password":"{password}"}}"#),
            ),
            ("/v3/auth/role/add", r#"{"name":"root"}"#.to_string()),
            (
                "/v3/auth/user/grant",
                r#"{"user":"root","role":"root"}"#.to_string(),
            ),
            (
                "/v3/auth/user/add",
                format!(r#"{{"name":"{user}","password":"{password}"}}"#),
            ),
            ("/v3/auth/role/add", r#"{"name":"caskfs"}"#.to_string()),
            (
                "/v3/auth/role/grant",
                format!(
                    r#"{{"name":"caskfs","perm":{{"permType":"READWRITE","key":"{}","range_end":"{}"}}}}"#,
                    b64(under.as_bytes()),
                    b64(&end)
                ),
            ),
            (
                "/v3/auth/user/grant",
                format!(r#"{{"user":"{user}","role":"caskfs"}}"#),
            ),
            ("/v3/auth/enable", "{}".to_string()),
        ] {
            let done = self
                .members
                .iter()
                .filter(|m| m.child.is_some())
                .find_map(|m| post(m.gateway(), path, &body));
            assert!(
                done.is_some(),
                "etcd refused {path} {body}:\n{}",
                self.logs()
            );
        }
    }

    /// The members' logs, for a failure message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for m in &self.members {
            let log = std::fs::read_to_string(self.dir.join(format!("{}.log", m.name)));
            let log = log.unwrap_or_default();
            let tail = log.char_indices().rev().nth(1500).map_or(0, |(i, _)| i);
            out += &format!("--- {}:\n{}\n", m.name, &log[tail..]);
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// POSTs `body` to a member's gateway; the reply body, or `None` if it
/// does not answer (within a second).
fn post(port: u16, path: &str, body: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    let (head, body) = reply.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// The string value of `"name":"..."` in a flat reading of JSON (etcd
/// writes its 64-bit numbers as strings).
fn field(json: &str, name: &str) -> Option<String> {
    let at = json.find(&format!("\"{name}\":\""))? + name.len() + 4;
    let rest = &json[at..];
    Some(rest[..rest.find('"')?].to_string())
}

fn b64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = c.iter().fold(0u32, |n, &b| n << 8 | u32::from(b)) << (8 * (3 - c.len()));
        for i in 0..4 {
            if i <= c.len() {
                out.push(ABC[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
