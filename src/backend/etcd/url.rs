//! `etcd://HOST:PORT[,HOST:PORT...]/PREFIX`: the members to ask and the
//! prefix under which the namespace's keys lie.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdUrl {
    /// `host:port` of each member's client URL (plain HTTP).
    pub endpoints: Vec<String>,
    pub prefix: Vec<u8>,
}

impl std::str::FromStr for EtcdUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<EtcdUrl, String> {
        let usage = || format!("{s:?}: expected etcd://HOST:PORT[,HOST:PORT...]/PREFIX");
        let rest = s.strip_prefix("etcd://").ok_or_else(usage)?;
        let (hosts, prefix) = rest.split_once('/').ok_or_else(usage)?;
        let prefix = prefix.trim_end_matches('/');
        if prefix.is_empty() {
            return Err(format!(
                "{}: a prefix is needed, so that the namespace's keys stay apart from others",
                usage()
            ));
        }
        let endpoints: Vec<String> = hosts.split(',').map(str::to_string).collect();
        for e in &endpoints {
            match e.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
                _ => return Err(format!("{}: {e:?} is not HOST:PORT", usage())),
            }
        }
        Ok(EtcdUrl {
            endpoints,
            prefix: prefix.as_bytes().to_vec(),
        })
    }
}

impl fmt::Display for EtcdUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = String::from_utf8_lossy(&self.prefix);
        write!(f, "etcd://{}/{prefix}", self.endpoints.join(","))
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
        assert_eq!(u.to_string(), "etcd://127.0.0.1:2379,h2:2379/shop");
        for bad in [
            "http://h:1/p",
            "etcd://h:1",
            "etcd://h:1/",
            "etcd://h/p",
            "etcd://:1/p",
        ] {
            assert!(bad.parse::<EtcdUrl>().is_err(), "{bad}");
        }
    }
}
