//! etcd's v3 key-value API through its JSON gateway (etcd 3.4 and later):
//! ranges, transactions and watches. A request goes to the endpoint that
//! answered last and moves on to the next when one cannot be reached or
//! has no leader, until a deadline; what then fails is reported with the
//! errno a caller can act on. A refusal that waiting cannot mend (a TLS
//! handshake every member fails, a wrong password) is reported at once.
//! With a user, requests carry etcd's auth token, fetched again once when
//! etcd no longer takes it.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use log::{debug, info};
use serde_json::{Value as Json, json};

use super::auth::Auth;
use super::http::{Fault, Lines, Member};
use super::url::EtcdUrl;

/// Why a request failed.
#[derive(Debug)]
pub enum Error {
    /// No endpoint answered, or none had a quorum, before the deadline.
    Unavailable(String),
    /// The cluster's database reached its quota.
    NoSpace,
    /// A request over the cluster's size or operation limits.
    TooLarge(String),
    /// Access refused: a TLS handshake, the user's password, its
    /// permissions. Waiting does not help.
    Refused(String),
    /// etcd no longer takes the auth token sent (or wants one): the
    /// client authenticates again and retries once, so a caller sees it
    /// only as `Refused`.
    BadToken(String),
    /// Anything else etcd refused or sent that made no sense.
    Failed(String),
}

impl Error {
    /// The error as member `name` gave it: its words say which member.
    fn at(self, name: &str) -> Error {
        match self {
            Error::Refused(m) => Error::Refused(format!("{name}: {m}")),
            Error::BadToken(m) => Error::BadToken(format!("{name}: {m}")),
            Error::Failed(m) => Error::Failed(format!("{name}: {m}")),
            e => e,
        }
    }

    pub fn errno(&self) -> i32 {
        match self {
            Error::Unavailable(_) => libc::ETIMEDOUT,
            Error::NoSpace => libc::ENOSPC,
            Error::TooLarge(_) => libc::EFBIG,
            Error::Refused(_) | Error::BadToken(_) => libc::EACCES,
            Error::Failed(_) => libc::EIO,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Unavailable(m) => write!(f, "etcd unavailable: {m}"),
            Error::NoSpace => write!(f, "etcd database space exceeded (its quota)"),
            Error::TooLarge(m) => write!(f, "request too large for etcd: {m}"),
            Error::Refused(m) | Error::BadToken(m) => write!(f, "etcd refused: {m}"),
            Error::Failed(m) => write!(f, "etcd: {m}"),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// A watch that reports nothing for this long is opened anew.
const WATCH_QUIET: Duration = Duration::from_secs(10);

/// One stored key as a range or a watch returns it.
#[derive(Clone, Debug)]
pub struct Kv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub mod_rev: i64,
}

/// One operation of a transaction.
pub enum Op {
    Put(Vec<u8>, Vec<u8>),
    Get(Vec<u8>),
    Delete(Vec<u8>),
    /// Every key that starts with this.
    DeletePrefix(Vec<u8>),
}

/// A transaction's condition: `key`'s last change was at revision `rev`
/// (0: the key does not exist).
pub struct ModRev(pub Vec<u8>, pub i64);

/// What a transaction did.
pub struct Txn {
    pub succeeded: bool,
    /// The revision the transaction ran at (the puts' revision).
    pub revision: i64,
    /// For each `Get` of the branch that ran, in order: the key, if it
    /// existed (before the operations after it).
    pub got: Vec<Option<Kv>>,
}

pub struct Client {
    members: Vec<Member>,
    /// The endpoint that answered last.
    preferred: AtomicUsize,
    /// The user and its token, if the URL names a user.
    auth: Option<Arc<Auth>>,
    /// How long one attempt may wait.
    timeout: Duration,
    /// How long a request keeps trying other endpoints.
    deadline: Duration,
}

impl Client {
    /// A client of the members `url` names, over TLS and as its user if it
    /// says so; no request is made yet. Fails if a certificate file cannot
    /// be read or the password is not in the environment.
    pub fn new(url: &EtcdUrl, timeout: Duration, deadline: Duration) -> Result<Client> {
        let tls = match &url.tls {
            Some(files) => Some(super::tls::config(files).map_err(Error::Refused)?),
            None => None,
        };
        let server_name = url.tls.as_ref().and_then(|t| t.server_name.as_deref());
        let members = url
            .endpoints
            .iter()
            .map(|e| Member::new(e, tls.as_ref(), server_name, timeout))
            .collect();
        let auth = match &url.user {
            Some(user) => Some(Arc::new(Auth::from_env(user).map_err(Error::Refused)?)),
            None => None,
        };
        Ok(Client {
            members,
            preferred: AtomicUsize::new(0),
            auth,
            timeout,
            deadline,
        })
    }

    /// The value of `key`, with the store's revision.
    pub fn get(&self, key: &[u8]) -> Result<(Option<Kv>, i64)> {
        let reply = self.call("/v3/kv/range", &json!({ "key": enc(key) }))?;
        let kvs = kvs(&reply)?;
        Ok((kvs.into_iter().next(), revision(&reply)?))
    }

    /// Every key starting with `prefix` as of one revision (which is
    /// returned), read in pages of `page` keys; without values if
    /// `keys_only`.
    pub fn get_prefix(
        &self,
        prefix: &[u8],
        page: usize,
        keys_only: bool,
    ) -> Result<(Vec<Kv>, i64)> {
        let end = prefix_end(prefix);
        let mut out = Vec::new();
        let mut from = prefix.to_vec();
        let mut at = 0;
        loop {
            let mut req = json!({
                "key": enc(&from),
                "range_end": enc(&end),
                "limit": page,
                "keys_only": keys_only,
            });
            if at != 0 {
                req["revision"] = json!(at.to_string());
            }
            let reply = self.call("/v3/kv/range", &req)?;
            if at == 0 {
                at = revision(&reply)?;
            }
            let got = kvs(&reply)?;
            let more = reply["more"].as_bool().unwrap_or(false);
            match got.last() {
                Some(last) if more => {
                    from = last.key.clone();
                    from.push(0);
                }
                _ => {
                    out.extend(got);
                    return Ok((out, at));
                }
            }
            out.extend(got);
        }
    }

    /// The value of `key` as it was at revision `rev`.
    pub fn get_at(&self, key: &[u8], rev: i64) -> Result<Option<Kv>> {
        let req = json!({ "key": enc(key), "revision": rev.to_string() });
        let reply = self.call("/v3/kv/range", &req)?;
        Ok(kvs(&reply)?.into_iter().next())
    }

    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<i64> {
        let reply = self.call(
            "/v3/kv/put",
            &json!({ "key": enc(key), "value": enc(value) }),
        )?;
        revision(&reply)
    }

    /// Deletes `key`; whether it existed.
    pub fn delete(&self, key: &[u8]) -> Result<bool> {
        let reply = self.call("/v3/kv/deleterange", &json!({ "key": enc(key) }))?;
        Ok(int(&reply["deleted"])? > 0)
    }

    /// Runs `then` if every condition holds, else `otherwise`, as one
    /// atomic step.
    pub fn txn(&self, when: &[ModRev], then: &[Op], otherwise: &[Op]) -> Result<Txn> {
        let compare: Vec<Json> = when
            .iter()
            .map(|ModRev(key, rev)| {
                json!({
                    "key": enc(key),
                    "target": "MOD",
                    "result": "EQUAL",
                    "mod_revision": rev.to_string(),
                })
            })
            .collect();
        let ops = |ops: &[Op]| -> Vec<Json> { ops.iter().map(op_json).collect() };
        let req = json!({
            "compare": compare,
            "success": ops(then),
            "failure": ops(otherwise),
        });
        let reply = self.call("/v3/kv/txn", &req)?;
        let mut got = Vec::new();
        if let Some(responses) = reply["responses"].as_array() {
            for r in responses {
                if let Some(range) = r.get("response_range") {
                    got.push(kvs(range)?.into_iter().next());
                }
            }
        }
        Ok(Txn {
            succeeded: reply["succeeded"].as_bool().unwrap_or(false),
            revision: revision(&reply)?,
            got,
        })
    }

    /// Opens a watch of every key starting with `prefix`, from revision
    /// `from` on.
    pub fn watch(&self, prefix: &[u8], from: i64) -> Result<Watch> {
        let req = json!({ "create_request": {
            "key": enc(prefix),
            "range_end": enc(&prefix_end(prefix)),
            "start_revision": from.to_string(),
        }});
        let body = req.to_string();
        let token = self.token()?;
        let mut last = String::from("no endpoint");
        let mut refused = true;
        for i in self.order() {
            let m = &self.members[i];
            let opened = m.stream(
                "/v3/watch",
                body.as_bytes(),
                token.as_deref(),
                self.timeout,
                WATCH_QUIET,
            );
            match opened {
                Ok((200, lines)) => {
                    return Ok(Watch {
                        lines,
                        stale: self.auth.clone().zip(token),
                    });
                }
                Ok((status, _)) => {
                    last = format!("{}: HTTP {status}", m.name);
                    refused = false;
                }
                Err(Fault::Down(e)) => {
                    last = format!("{}: {e}", m.name);
                    refused = false;
                }
                Err(Fault::Refused(e)) => last = format!("{}: {e}", m.name),
            }
        }
        Err(match refused {
            true => Error::Refused(last),
            false => Error::Unavailable(last),
        })
    }

    /// The auth token to send, if the URL names a user: the one in use,
    /// or a new one.
    fn token(&self) -> Result<Option<String>> {
        let Some(auth) = &self.auth else {
            return Ok(None);
        };
        auth.token(|| {
            let reply = self
                .send("/v3/auth/authenticate", &auth.request().to_string(), None)
                .map_err(|e| match e {
                    // What etcd says of a wrong password or an unknown user
                    // (the same, so as not to tell which).
                    Error::Failed(m) | Error::Refused(m) if m.contains("authentication failed") => {
                        Error::Refused(format!(
                            "user {}: wrong password or no such user ({m})",
                            auth.user()
                        ))
                    }
                    Error::Failed(m) => Error::Refused(format!("user {}: {m}", auth.user())),
                    other => other,
                })?;
            info!("etcd: authenticated as {}", auth.user());
            reply["token"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| Error::Failed("authenticate: a reply without a token".into()))
        })
        .map(Some)
    }

    /// POSTs `req` to `path`, on the preferred endpoint first, retrying
    /// what certainly did not reach the cluster or found no leader.
    pub(super) fn call(&self, path: &str, req: &Json) -> Result<Json> {
        let body = req.to_string();
        let token = self.token()?;
        match self.send(path, &body, token.as_deref()) {
            Err(Error::BadToken(m)) if let (Some(auth), Some(stale)) = (&self.auth, token) => {
                debug!("etcd {path}: {m}; authenticating again");
                auth.forget(&stale);
                let token = self.token()?;
                self.send(path, &body, token.as_deref())
                    .map_err(|e| match e {
                        Error::BadToken(m) => Error::Refused(m),
                        e => e,
                    })
            }
            Err(Error::BadToken(m)) => Err(Error::Refused(format!(
                "{m} (the cluster has auth on: give USER@ in the URL and set {})",
                super::url::PASSWORD_VAR
            ))),
            r => r,
        }
    }

    /// POSTs `body` to `path` with `token`, failing over between members.
    fn send(&self, path: &str, body: &str, token: Option<&str>) -> Result<Json> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(20);
        loop {
            let mut last = String::new();
            // Whether every member refused (TLS): waiting would not help.
            let mut refused = true;
            for i in self.order() {
                let name = &self.members[i].name;
                match self.attempt(i, path, body.as_bytes(), token) {
                    Ok(reply) => match reply_error(&reply) {
                        None => {
                            self.preferred.store(i, Ordering::Relaxed);
                            return Ok(reply);
                        }
                        Some(Retry::No(e)) => return Err(e.at(name)),
                        Some(Retry::Elsewhere(m)) => {
                            last = format!("{name}: {m}");
                            refused = false;
                        }
                    },
                    Err(Fault::Down(e)) => {
                        last = format!("{name}: {e}");
                        refused = false;
                    }
                    Err(Fault::Refused(e)) => last = format!("{name}: {e}"),
                }
                debug!("etcd {path}: {last}");
            }
            if refused {
                return Err(Error::Refused(last));
            }
            // The caller reports what failed; a mount also logs it there.
            if start.elapsed() + pause > self.deadline {
                debug!("etcd {path} failed for {:?}: {last}", start.elapsed());
                return Err(Error::Unavailable(last));
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// One request to member `i` (on a connection kept from before, if
    /// it has one).
    fn attempt(
        &self,
        i: usize,
        path: &str,
        body: &[u8],
        token: Option<&str>,
    ) -> std::result::Result<Json, Fault> {
        let (status, reply) = self.members[i].post(path, body, token)?;
        serde_json::from_slice(&reply).map_err(|e| {
            // Plain HTTP to a member that serves TLS: etcd says so in
            // words, and asking again will not change it.
            if String::from_utf8_lossy(&reply).contains("HTTPS server") {
                return Fault::Refused(
                    "the member speaks TLS on this port: give cacert= in the URL".into(),
                );
            }
            let text = String::from_utf8_lossy(&reply[..reply.len().min(200)]).into_owned();
            // etcd's JSON gateway cannot pass a certificate's CommonName
            // on as the user, so with auth on it refuses one that has it.
            if text.contains("CommonName of client") {
                return Fault::Refused(
                    "with auth on, etcd's JSON gateway refuses a client certificate that has \
                     a CommonName: give cert= one without a CN (its SANs are enough)"
                        .into(),
                );
            }
            Fault::Down(format!(
                "HTTP {status}, reply is not JSON ({e}): {:?}",
                text.trim()
            ))
        })
    }

    /// Endpoint indexes, the preferred one first.
    fn order(&self) -> impl Iterator<Item = usize> {
        let n = self.members.len();
        let first = self.preferred.load(Ordering::Relaxed) % n.max(1);
        (0..n).map(move |k| (first + k) % n)
    }
}

enum Retry {
    /// Try another endpoint, or the same later.
    Elsewhere(String),
    No(Error),
}

/// The error a gateway reply carries, if any (gRPC status codes): as
/// `code` and `message`, or in a stream as an `error` object.
fn reply_error(reply: &Json) -> Option<Retry> {
    let (code, message) = match reply.get("error") {
        Some(e) if e.is_object() => (&e["grpc_code"], &e["message"]),
        _ => (reply.get("code")?, &reply["message"]),
    };
    let code = code.as_i64().unwrap_or(2);
    let message = message
        .as_str()
        .or(reply["error"].as_str())
        .unwrap_or("")
        .to_string();
    Some(match code {
        0 => return None,
        _ if bad_token(&message) => Retry::No(Error::BadToken(message)),
        7 | 16 => Retry::No(Error::Refused(message)),
        8 if message.contains("space exceeded") => Retry::No(Error::NoSpace),
        3 if message.contains("too large") || message.contains("too many") => {
            Retry::No(Error::TooLarge(message))
        }
        // UNAVAILABLE: no leader, or the member is stopping.
        14 => Retry::Elsewhere(message),
        _ if message.contains("no leader") || message.contains("leader changed") => {
            Retry::Elsewhere(message)
        }
        _ => Retry::No(Error::Failed(message)),
    })
}

/// Whether etcd's words mean that the auth token sent will not do: one
/// that lapsed or that a restarted member forgot, one older than a change
/// of users, or none where auth is on.
fn bad_token(message: &str) -> bool {
    message.contains("invalid auth token")
        || message.contains("revision of auth store is old")
        || message.contains("user name is empty")
}

fn op_json(op: &Op) -> Json {
    match op {
        Op::Put(k, v) => json!({ "request_put": { "key": enc(k), "value": enc(v) } }),
        Op::Get(k) => json!({ "request_range": { "key": enc(k) } }),
        Op::Delete(k) => json!({ "request_delete_range": { "key": enc(k) } }),
        Op::DeletePrefix(p) => json!({ "request_delete_range": {
            "key": enc(p),
            "range_end": enc(&prefix_end(p)),
        }}),
    }
}

/// A watch's stream of changes.
pub struct Watch {
    lines: Lines,
    /// The auth and the token the watch was opened with: forgotten if
    /// etcd refuses it, so that the next watch authenticates again.
    stale: Option<(Arc<Auth>, String)>,
}

/// One change a watch reports.
pub enum Event {
    Put(Kv),
    Delete(Vec<u8>, i64),
}

impl Watch {
    /// The next batch of changes, with the revision it brings the watcher
    /// to; an error or `None` when the stream ended (the caller opens a
    /// new watch from the last revision it saw).
    pub fn next(&mut self) -> Result<Option<(Vec<Event>, i64)>> {
        let line = match self.lines.next_line() {
            Ok(Some(line)) => line,
            Ok(None) => return Ok(None),
            // Quiet for long: the member may be cut off without the
            // connection breaking, so the caller watches anew.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(Error::Unavailable(e.to_string())),
        };
        let msg: Json =
            serde_json::from_slice(&line).map_err(|e| Error::Failed(format!("watch: {e}")))?;
        match reply_error(&msg) {
            None => {}
            Some(Retry::No(Error::BadToken(m))) => {
                if let Some((auth, token)) = &self.stale {
                    auth.forget(token);
                }
                return Err(Error::Unavailable(m));
            }
            Some(Retry::No(e)) => return Err(e),
            Some(Retry::Elsewhere(m)) => return Err(Error::Unavailable(m)),
        }
        let result = &msg["result"];
        if result["canceled"].as_bool() == Some(true) {
            let why = result["cancel_reason"].as_str().unwrap_or("canceled");
            // A watch opened again after a quiet spell carries the token
            // of its day, which may have lapsed since: etcd cancels it.
            if bad_token(why)
                && let Some((auth, token)) = &self.stale
            {
                auth.forget(token);
                debug!("etcd watch: {why}; authenticating again");
                return Ok(None);
            }
            return Err(Error::Failed(format!("watch canceled: {why}")));
        }
        let mut events = Vec::new();
        for e in result["events"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            let kv = kv(&e["kv"])?;
            events.push(match e["type"].as_str() {
                Some("DELETE") => Event::Delete(kv.key, kv.mod_rev),
                _ => Event::Put(kv),
            });
        }
        Ok(Some((events, revision(result)?)))
    }
}

/// The first key after every key that starts with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every key: etcd's "\0" range end.
    vec![0]
}

pub(super) fn enc(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

fn dec(field: &Json) -> Result<Vec<u8>> {
    match field.as_str() {
        None => Ok(Vec::new()),
        Some(s) => B64
            .decode(s)
            .map_err(|e| Error::Failed(format!("bad base64 from etcd: {e}"))),
    }
}

/// etcd's JSON gives 64-bit numbers as strings, and leaves out zeros.
pub(super) fn int(field: &Json) -> Result<i64> {
    match field {
        Json::Null => Ok(0),
        Json::String(s) => s
            .parse()
            .map_err(|_| Error::Failed(format!("bad number from etcd: {s:?}"))),
        Json::Number(n) => n
            .as_i64()
            .ok_or_else(|| Error::Failed(format!("bad number from etcd: {n}"))),
        other => Err(Error::Failed(format!("bad number from etcd: {other}"))),
    }
}

pub(super) fn revision(reply: &Json) -> Result<i64> {
    int(&reply["header"]["revision"])
}

fn kv(j: &Json) -> Result<Kv> {
    Ok(Kv {
        key: dec(&j["key"])?,
        value: dec(&j["value"])?,
        mod_rev: int(&j["mod_revision"])?,
    })
}

pub(super) fn kvs(reply: &Json) -> Result<Vec<Kv>> {
    reply["kvs"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .map(kv)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"ab"), b"ac");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    }

    #[test]
    fn gateway_errors_map_to_what_a_caller_can_do() {
        let quota = json!({"code": 8, "message": "etcdserver: mvcc: database space exceeded"});
        assert!(matches!(
            reply_error(&quota),
            Some(Retry::No(Error::NoSpace))
        ));
        let no_leader = json!({"code": 14, "message": "etcdserver: no leader"});
        assert!(matches!(reply_error(&no_leader), Some(Retry::Elsewhere(_))));
        let big = json!({"code": 3, "message": "etcdserver: request is too large"});
        assert!(matches!(
            reply_error(&big),
            Some(Retry::No(Error::TooLarge(_)))
        ));
        assert!(reply_error(&json!({"header": {"revision": "3"}})).is_none());
        // A lapsed token, as a reply and as a stream's error object.
        let lapsed = json!({"code": 16, "message": "etcdserver: invalid auth token"});
        assert!(matches!(
            reply_error(&lapsed),
            Some(Retry::No(Error::BadToken(_)))
        ));
        let streamed =
            json!({"error": {"grpc_code": 16, "message": "etcdserver: invalid auth token"}});
        assert!(matches!(
            reply_error(&streamed),
            Some(Retry::No(Error::BadToken(_)))
        ));
        let denied = json!({"code": 7, "message": "etcdserver: permission denied"});
        assert!(matches!(
            reply_error(&denied),
            Some(Retry::No(Error::Refused(_)))
        ));
    }
}
