//! `etcd://[USER@]HOST:PORT[,HOST:PORT...]/PREFIX[?OPTIONS]`: the members
//! to ask, the prefix under which the namespace's keys lie, and how to
//! reach them, in the form JuiceFS users know for etcd:
//!
//! - `cacert=FILE`: TLS to every member, trusting only that CA;
//! - `cert=FILE&key=FILE`: a client certificate (both or neither);
//! - `server-name=NAME`: the name the members' certificates must carry
//!   (by default each endpoint's host; an IP address means an IP SAN);
//! - `USER@`: etcd's own auth, with the password from the environment
//!   (`CASKFS_ETCD_PASSWORD`), so that it shows in no process list.
//!
//! Relative file names are taken from where the command ran: they are made
//! absolute here, since a daemon changes directory to `/`.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where the password of `USER@` comes from.
pub const PASSWORD_VAR: &str = "CASKFS_ETCD_PASSWORD";

const FORM: &str = "etcd://[USER@]HOST:PORT[,HOST:PORT...]/PREFIX\
                    [?cacert=FILE[&cert=FILE&key=FILE][&server-name=NAME]]";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdUrl {
    /// `host:port` of each member's client URL.
    pub endpoints: Vec<String>,
    pub prefix: Vec<u8>,
    /// The etcd user to authenticate as.
    pub user: Option<String>,
    /// TLS to the members, if `cacert` was given (boxed: a URL is one of
    /// the command line's arguments, kept small).
    pub tls: Option<Box<TlsFiles>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA the members' certificates must be signed by (PEM).
    pub cacert: PathBuf,
    /// The client's certificate chain and its private key (PEM).
    pub client: Option<(PathBuf, PathBuf)>,
    /// The name to verify instead of each endpoint's host.
    pub server_name: Option<String>,
}

impl std::str::FromStr for EtcdUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<EtcdUrl, String> {
        let usage = || format!("{s:?}: expected {FORM}");
        let rest = s.strip_prefix("etcd://").ok_or_else(usage)?;
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, prefix) = rest.split_once('/').ok_or_else(usage)?;
        let prefix = prefix.trim_end_matches('/');
        if prefix.is_empty() {
            return Err(format!(
                "{}: a prefix is needed, so that the namespace's keys stay apart from others",
                usage()
            ));
        }
        let (user, hosts) = match authority.rsplit_once('@') {
            Some((user, hosts)) => (Some(parse_user(user, &usage)?), hosts),
            None => (None, authority),
        };
        let endpoints: Vec<String> = hosts.split(',').map(str::to_string).collect();
        for e in &endpoints {
            match e.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
                _ => return Err(format!("{}: {e:?} is not HOST:PORT", usage())),
            }
        }
        let tls = match query {
            Some(q) => parse_options(q, &usage)?,
            None => None,
        };
        Ok(EtcdUrl {
            endpoints,
            prefix: prefix.as_bytes().to_vec(),
            user,
            tls,
        })
    }
}

fn parse_user(user: &str, usage: &dyn Fn() -> String) -> Result<String, String> {
    if user.contains(':') {
        // Not the URL itself in the message: it holds the password.
        return Err(format!(
            "an etcd URL with USER:PASSWORD@: a password is never taken from the URL \
             (it would show in process lists and /proc/mounts); give USER@ and set \
             {PASSWORD_VAR}"
        ));
    }
    if user.is_empty() {
        return Err(format!("{}: an empty user before '@'", usage()));
    }
    Ok(user.to_string())
}

/// The query's options: TLS files and the server name.
fn parse_options(query: &str, usage: &dyn Fn() -> String) -> Result<Option<Box<TlsFiles>>, String> {
    let (mut cacert, mut cert, mut key, mut server_name) = (None, None, None, None);
    let mut unknown = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match name {
            "cacert" => &mut cacert,
            "cert" => &mut cert,
            "key" => &mut key,
            "server-name" => &mut server_name,
            _ => {
                unknown.push(name.to_string());
                continue;
            }
        };
        if value.is_empty() {
            return Err(format!("{}: {name}= needs a value", usage()));
        }
        if slot.replace(value.to_string()).is_some() {
            return Err(format!("{}: {name}= given twice", usage()));
        }
    }
    if !unknown.is_empty() {
        return Err(format!(
            "{}: unknown option{} {} (known: cacert, cert, key, server-name)",
            usage(),
            if unknown.len() > 1 { "s" } else { "" },
            unknown.join(", ")
        ));
    }
    let client = match (cert, key) {
        (Some(c), Some(k)) => Some((absolute(&c)?, absolute(&k)?)),
        (None, None) => None,
        _ => {
            return Err(format!(
                "{}: cert= and key= go together (a client certificate and its key)",
                usage()
            ));
        }
    };
    let Some(cacert) = cacert else {
        if client.is_some() || server_name.is_some() {
            return Err(format!(
                "{}: TLS is on only with cacert= (the CA the members' certificates are \
                 signed by); cert=, key= and server-name= need it",
                usage()
            ));
        }
        return Ok(None);
    };
    Ok(Some(Box::new(TlsFiles {
        cacert: absolute(&cacert)?,
        client,
        server_name,
    })))
}

/// `file` taken from the directory the command runs in: its canonical
/// path if it exists (no `..` left to show), else as given, made absolute
/// (reading it then fails naming it).
fn absolute(file: &str) -> Result<PathBuf, String> {
    std::fs::canonicalize(file)
        .or_else(|_| std::path::absolute(Path::new(file)))
        .map_err(|e| format!("{file}: {e}"))
}

impl EtcdUrl {
    /// Whether the members are reached over TLS.
    pub fn https(&self) -> bool {
        self.tls.is_some()
    }
}

/// The URL as given (files made absolute); a password is never in it.
impl fmt::Display for EtcdUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = String::from_utf8_lossy(&self.prefix);
        let user = self
            .user
            .as_ref()
            .map_or(String::new(), |u| format!("{u}@"));
        write!(f, "etcd://{user}{}/{prefix}", self.endpoints.join(","))?;
        if let Some(t) = &self.tls {
            write!(f, "?cacert={}", t.cacert.display())?;
            if let Some((cert, key)) = &t.client {
                write!(f, "&cert={}&key={}", cert.display(), key.display())?;
            }
            if let Some(name) = &t.server_name {
                write!(f, "&server-name={name}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_bad_ones_say_why() {
        let u: EtcdUrl = "etcd://127.0.0.1:2379,h2:2379/shop/".parse().unwrap();
        assert_eq!(u.endpoints, ["127.0.0.1:2379", "h2:2379"]);
        assert_eq!(u.prefix, b"shop");
        assert_eq!((&u.user, &u.tls), (&None, &None));
        assert_eq!(u.to_string(), "etcd://127.0.0.1:2379,h2:2379/shop");
        for bad in [
            "http://h:1/p",
            "etcd://h:1",
            "etcd://h:1/",
            "etcd://h/p",
            "etcd://:1/p",
            "etcd://@h:1/p",
            "etcd://h:1/p?cacert=",
        ] {
            assert!(bad.parse::<EtcdUrl>().is_err(), "{bad}");
        }
    }

    #[test]
    fn tls_options_and_a_user() {
        let u: EtcdUrl = "etcd://root@a:1,b:2/p?cacert=/c/ca.pem&cert=/c/me.pem&key=/c/me.key\
                          &server-name=etcd.example"
            .parse()
            .unwrap();
        assert_eq!(u.user.as_deref(), Some("root"));
        assert_eq!(u.endpoints, ["a:1", "b:2"]);
        let tls = u.tls.clone().unwrap();
        assert_eq!(tls.cacert, Path::new("/c/ca.pem"));
        assert_eq!(tls.client, Some(("/c/me.pem".into(), "/c/me.key".into())));
        assert_eq!(tls.server_name.as_deref(), Some("etcd.example"));
        // Shown in full, and read back the same (a mount's source is read
        // back by `caskfs stats MOUNTPOINT`).
        let shown = u.to_string();
        assert_eq!(
            shown,
            "etcd://root@a:1,b:2/p?cacert=/c/ca.pem&cert=/c/me.pem&key=/c/me.key\
             &server-name=etcd.example"
        );
        assert_eq!(shown.parse::<EtcdUrl>().unwrap(), u);
        // A CA alone: TLS without a client certificate.
        let u: EtcdUrl = "etcd://h:1/p?cacert=/ca.pem".parse().unwrap();
        assert!(u.https() && u.tls.unwrap().client.is_none());
    }

    #[test]
    fn relative_files_are_taken_from_the_current_directory() {
        let u: EtcdUrl = "etcd://h:1/p?cacert=certs/ca.pem".parse().unwrap();
        let here = std::env::current_dir().unwrap();
        assert_eq!(u.tls.unwrap().cacert, here.join("certs/ca.pem"));
    }

    #[test]
    fn options_that_do_not_fit_are_usage_errors_that_say_why() {
        let err = |s: &str| s.parse::<EtcdUrl>().unwrap_err();
        assert!(err("etcd://h:1/p?cacert=/a&cert=/b").contains("cert= and key= go together"));
        assert!(err("etcd://h:1/p?cacert=/a&key=/b").contains("cert= and key= go together"));
        assert!(err("etcd://h:1/p?cert=/b&key=/c").contains("TLS is on only with cacert="));
        assert!(err("etcd://h:1/p?server-name=x").contains("need it"));
        let e = err("etcd://h:1/p?cacert=/a&colour=red&size=1");
        assert!(e.contains("unknown options colour, size"), "{e}");
        assert!(err("etcd://h:1/p?cacert=/a&cacert=/b").contains("given twice"));
        let e = err("etcd://root:secret@h:1/p");
        assert!(
            e.contains("CASKFS_ETCD_PASSWORD") && !e.contains("secret"),
            "{e}"
        );
    }
}
