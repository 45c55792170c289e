//! HTTP to one member's JSON gateway, through `ureq`: POST a JSON body and
//! read the whole reply, or read a chunked reply as a stream of lines (a
//! watch). Each member has an agent of its own, so that its connections
//! are kept alive and reused, and so that with `server-name=` every member
//! can be asked for the same name while connecting to its own address.
//! Every wait is bounded: a request's connect, and each of its reads and
//! writes, by the attempt's timeout; a stream by the quiet time between
//! two of its reads.

use std::io::{self, BufRead, BufReader, Read};
use std::time::Duration;

use ureq::config::Config;
use ureq::http::Uri;
use ureq::typestate::WithBody;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};
use ureq::{Agent, BodyReader, RequestBuilder};

/// Replies larger than this are refused: etcd's own limit on a request is
/// 1.5 MiB by default, and a range reply of many keys stays far below.
const MAX_REPLY: u64 = 64 << 20;
/// Requests that may wait at once on one member (the FUSE threads and
/// the background ones); connections beyond are closed after use.
const IDLE_PER_MEMBER: usize = 16;

/// Why a request to a member failed.
#[derive(Debug)]
pub enum Fault {
    /// It may work later or on another member: not reached, timed out,
    /// cut off.
    Down(String),
    /// It will not work until the configuration changes: the TLS
    /// handshake failed (a certificate, a CA).
    Refused(String),
}

/// One member's client URL.
pub struct Member {
    /// `host:port`, as the URL gave it: how errors name the member.
    pub name: String,
    agent: Agent,
    /// `http://host:port` or `https://NAME:port`.
    base: String,
    tls: bool,
    /// Whether a client certificate is offered.
    with_cert: bool,
}

impl Member {
    /// A member at `name` (`host:port`), over TLS if `tls` is given, its
    /// certificate verified for `server_name` if given (else its host);
    /// each step of a request may take `timeout`.
    pub fn new(
        name: &str,
        tls: Option<&ureq::tls::TlsConfig>,
        server_name: Option<&str>,
        timeout: Duration,
    ) -> Member {
        let port = name.rsplit_once(':').map_or("", |(_, p)| p);
        let (scheme, host) = match (tls, server_name) {
            (None, _) => ("http", None),
            (Some(_), name) => ("https", name),
        };
        let mut config = Config::builder()
            // etcd's errors come as JSON bodies with 4xx/5xx statuses.
            .http_status_as_error(false)
            // A cluster on the LAN is reached directly, whatever
            // HTTP_PROXY says for the web.
            .proxy(None)
            // Each step waits at most `timeout`, as a request of any
            // size may take several reads.
            .timeout_connect(Some(timeout))
            .timeout_per_read(Some(timeout))
            .timeout_per_write(Some(timeout))
            .max_idle_connections(IDLE_PER_MEMBER)
            .max_idle_connections_per_host(IDLE_PER_MEMBER)
            .max_redirects(0);
        if let Some(tls) = tls {
            config = config.tls_config(tls.clone());
        }
        let config = config.build();
        let base = match host {
            Some(h) => format!("{scheme}://{h}:{port}"),
            None => format!("{scheme}://{name}"),
        };
        let agent = Agent::with_parts(
            config,
            DefaultConnector::default(),
            Pinned {
                to: format!("http://{name}"),
            },
        );
        Member {
            name: name.to_string(),
            agent,
            base,
            tls: tls.is_some(),
            with_cert: tls.is_some_and(|t| t.client_cert().is_some()),
        }
    }

    /// POSTs `body` to `path` (with etcd's auth `token`): the status and
    /// the whole reply.
    pub fn post(
        &self,
        path: &str,
        body: &[u8],
        token: Option<&str>,
    ) -> Result<(u16, Vec<u8>), Fault> {
        let mut reply = self
            .request(path, token)
            .send(body)
            .map_err(|e| self.fault(e))?;
        let status = reply.status().as_u16();
        let bytes = reply
            .body_mut()
            .with_config()
            .limit(MAX_REPLY)
            .read_to_vec()
            .map_err(|e| self.fault(e))?;
        Ok((status, bytes))
    }

    /// A JSON POST to `path`, with etcd's auth `token` if there is one.
    fn request(&self, path: &str, token: Option<&str>) -> RequestBuilder<WithBody> {
        let req = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/json");
        match token {
            Some(t) => req.header("Authorization", t),
            None => req,
        }
    }

    /// POSTs `body` to `path` and returns the status and the reply as it
    /// streams in; a read that waits longer than `quiet` fails (timed
    /// out), so that a member cut off without a broken connection is
    /// noticed.
    pub fn stream(
        &self,
        path: &str,
        body: &[u8],
        token: Option<&str>,
        timeout: Duration,
        quiet: Duration,
    ) -> Result<(u16, Lines), Fault> {
        let reply = self
            .request(path, token)
            .config()
            // The stream lasts as long as the watch: its head comes at
            // once, then each read waits until the stream is quiet.
            .timeout_recv_response(Some(timeout))
            .timeout_per_read(Some(quiet))
            .build()
            .send(body)
            .map_err(|e| self.fault(e))?;
        let status = reply.status().as_u16();
        let reader = reply.into_body().into_reader();
        Ok((
            status,
            Lines {
                reader: BufReader::new(reader),
            },
        ))
    }
}

/// A streamed reply, line by line.
pub struct Lines {
    reader: BufReader<BodyReader<'static>>,
}

impl Lines {
    /// The next newline-terminated line, without the newline; `None` at
    /// the stream's end. A read that waited too long is `TimedOut`.
    pub fn next_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut line = Vec::new();
        let read = (&mut self.reader)
            .take(MAX_REPLY + 1)
            .read_until(b'\n', &mut line)
            .map_err(timed_out)?;
        if read as u64 > MAX_REPLY {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a streamed line too large",
            ));
        }
        if read == 0 {
            return Ok(None);
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        Ok(Some(line))
    }
}

/// A read timeout as `TimedOut`, however ureq wraps it.
fn timed_out(e: io::Error) -> io::Error {
    match ureq::Error::from(e) {
        ureq::Error::Timeout(t) => io::Error::new(io::ErrorKind::TimedOut, t.to_string()),
        other => other.into_io(),
    }
}

impl Member {
    /// What a failed request means.
    fn fault(&self, e: ureq::Error) -> Fault {
        match e {
            // etcd closes a plain connection to a port that serves TLS
            // without a word, as a member going away would.
            ureq::Error::Io(io) if !self.tls && io.kind() == io::ErrorKind::UnexpectedEof => {
                Fault::Down(format!(
                    "{io} (if the cluster serves TLS, give cacert= in the URL)"
                ))
            }
            ureq::Error::Rustls(r) => Fault::Refused(super::tls::reason(&r, self.with_cert)),
            ureq::Error::Io(io) => {
                match io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                    Some(r) => Fault::Refused(super::tls::reason(r, self.with_cert)),
                    None => Fault::Down(io.to_string()),
                }
            }
            ureq::Error::Timeout(t) => Fault::Down(format!("timed out ({t})")),
            other => Fault::Down(other.to_string()),
        }
    }
}

/// Connects to the member's own address, whatever name the URL asks its
/// certificate for (`server-name=`).
#[derive(Debug)]
struct Pinned {
    /// `http://host:port` of the member.
    to: String,
}

impl Resolver for Pinned {
    fn resolve(
        &self,
        _uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let uri: Uri = self
            .to
            .parse()
            .map_err(|_| ureq::Error::BadUri(self.to.clone()))?;
        DefaultResolver::default().resolve(&uri, config, timeout)
    }
}
