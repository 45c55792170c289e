//! How the `caskfs` command ends when it fails: one line on stderr and an
//! exit code that says what kind of failure it was, the same for every
//! subcommand (listed in `caskfs --help` and the README).

use std::fmt;

use crate::engine;

/// Exit codes besides 0 (success).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// `check` found damage (or `check --repair` could not remove it).
    Damage = 1,
    /// Bad arguments (clap's own code).
    Usage = 2,
    /// The data directory is in use by another caskfs process.
    InUse = 3,
    /// The key asked for does not exist.
    NotFound = 4,
    /// Anything else: I/O errors, an unusable data directory or
    /// mountpoint, a failed mount, an etcd cluster that cannot be reached
    /// or refuses the connection (TLS) or the user.
    Failed = 5,
}

impl Code {
    /// The code numbered `n`; an unknown number is `Failed`.
    pub fn from_u8(n: u8) -> Code {
        match n {
            1 => Code::Damage,
            2 => Code::Usage,
            3 => Code::InUse,
            4 => Code::NotFound,
            _ => Code::Failed,
        }
    }
}

/// The text `caskfs --help` ends with.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  check found damage (or check --repair could not remove it)
  2  usage error
  3  the data directory is in use by another caskfs process
  4  no such key
  5  any other failure (I/O, an unusable data directory or mountpoint, an
     etcd cluster that cannot be reached or refuses the TLS certificate,
     user or password)";

/// A failed command: its exit code and the line that says why.
#[derive(Debug)]
pub struct Failure {
    pub code: Code,
    pub msg: String,
}

impl Failure {
    pub fn new(code: Code, msg: impl Into<String>) -> Failure {
        Failure {
            code,
            msg: msg.into(),
        }
    }

    /// An engine error (whose message names the path or key).
    pub fn engine(e: &engine::Error) -> Failure {
        let code = match e {
            engine::Error::Locked { .. } => Code::InUse,
            engine::Error::NotFound { .. } => Code::NotFound,
            _ => Code::Failed,
        };
        Failure::new(code, e.to_string())
    }

    /// The form a daemon sends its parent through a pipe (`daemonize`).
    pub fn encode(&self) -> String {
        format!("{}:{}", self.code as u8, self.msg)
    }

    /// Reads what `encode` wrote; a message without a code is `Failed`.
    pub fn decode(s: &str) -> Failure {
        match s.split_once(':') {
            Some((n, msg)) if let Ok(n) = n.parse::<u8>() => Failure::new(Code::from_u8(n), msg),
            _ => Failure::new(Code::Failed, s),
        }
    }
}

impl From<String> for Failure {
    fn from(msg: String) -> Failure {
        Failure::new(Code::Failed, msg)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_cross_the_daemon_pipe() {
        let f = Failure::new(Code::InUse, "data directory d: in use: pid 7");
        let back = Failure::decode(&f.encode());
        assert_eq!(
            (back.code, back.msg.as_str()),
            (Code::InUse, f.msg.as_str())
        );
        assert_eq!(Failure::decode("plain words").code, Code::Failed);
    }
}
