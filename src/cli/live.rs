//! The subcommands that work on a mounted store too: given a mountpoint or
//! a data directory that a running daemon serves, they ask the daemon on
//! its control socket; otherwise they open the data directory themselves.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use caskfs::engine::MANIFEST_FILE;
use caskfs::exit::{Code, Failure};
use caskfs::{control, mountinfo};

use super::offline;

/// The data directory `path` names: `path` itself, or the data directory
/// mounted there if `path` is a caskfs mountpoint (a FUSE mount whose
/// source in /proc/self/mountinfo is a data directory: the type is
/// `fuse.caskfs`, or `fuse` for a daemon of a build before it told the
/// kernel its subtype when root mounts).
fn data_dir_of(path: &Path) -> PathBuf {
    match mounted_source(path) {
        Some(s) if Path::new(&s).join(MANIFEST_FILE).exists() => PathBuf::from(s),
        _ => path.to_path_buf(),
    }
}

/// The etcd prefix mounted on `path`, if `path` is the mountpoint of one.
pub fn etcd_mounted_on(path: &Path) -> Option<std::ffi::OsString> {
    mounted_source(path).filter(|s| s.as_encoded_bytes().starts_with(b"etcd://"))
}

/// The source of the FUSE mount on `path`, if it is one.
fn mounted_source(path: &Path) -> Option<std::ffi::OsString> {
    mounted_on(path).map(|m| m.source)
}

/// The FUSE mount on `path`, if it is one.
fn mounted_on(path: &Path) -> Option<mountinfo::Mount> {
    let canon = std::fs::canonicalize(path).ok()?;
    mountinfo::mounts().into_iter().find(|m| {
        matches!(m.fstype.as_str(), "fuse" | "fuse.caskfs") && m.mountpoint == canon.as_os_str()
    })
}

/// `caskfs stats` of the etcd mount on `path`, asked of its daemon:
/// `None` if `path` is no etcd mount or no daemon answers for it (one of
/// a build before etcd mounts had a control socket).
pub fn etcd_stats(path: &Path, json: bool) -> Option<Result<ExitCode, Failure>> {
    let m = mounted_on(path).filter(|m| m.source.as_encoded_bytes().starts_with(b"etcd://"))?;
    let request = if json { "stats json" } else { "stats" };
    let reply = control::ask_mount(Path::new(&m.mountpoint), m.owner, request)?;
    let socket =
        String::from_utf8_lossy(&control::socket_name(Path::new(&m.mountpoint))).into_owned();
    Some(print_reply(path, &format!("@{socket}"), reply))
}

/// Asks the daemon serving `dir`, printing its answer: `None` if no
/// daemon answers there.
fn ask(dir: &Path, request: &str) -> Option<Result<ExitCode, Failure>> {
    let reply = control::ask(dir, request)?;
    let socket = control::socket_path(dir).display().to_string();
    Some(print_reply(dir, &socket, reply))
}

/// Prints a daemon's answer about `shown`, asked on `socket`: a report on
/// stdout, a failure as one line.
fn print_reply(
    shown: &Path,
    socket: &str,
    reply: std::io::Result<(u8, String)>,
) -> Result<ExitCode, Failure> {
    match reply {
        // A report (damage found included) goes to stdout; a failure is
        // one line on stderr, as for every command.
        Ok((code, text)) if code == 0 || code == Code::Damage as u8 => std::io::stdout()
            .write_all(text.as_bytes())
            .map(|()| ExitCode::from(code))
            .map_err(|e| Failure::from(format!("writing stdout: {e}"))),
        Ok((code, text)) => Err(Failure::new(
            Code::from_u8(code),
            format!("{}: {}", shown.display(), text.trim_end()),
        )),
        Err(e) => Err(Failure::from(format!("{socket}: asking the daemon: {e}"))),
    }
}

pub fn stats(path: &Path, json: bool) -> Result<ExitCode, Failure> {
    let dir = data_dir_of(path);
    let request = if json { "stats json" } else { "stats" };
    if let Some(r) = ask(&dir, request) {
        return r;
    }
    offline::stats(&dir, json).map(|()| ExitCode::SUCCESS)
}

pub fn compact(path: &Path) -> Result<ExitCode, Failure> {
    let dir = data_dir_of(path);
    if let Some(r) = ask(&dir, "compact") {
        return r;
    }
    offline::compact(&dir).map(|()| ExitCode::SUCCESS)
}

/// A mounted store is checked read-only by its daemon; a repair needs it
/// unmounted.
pub fn check(path: &Path, repair: bool) -> Result<ExitCode, Failure> {
    let dir = data_dir_of(path);
    if repair {
        if control::ask(&dir, "stats").is_some() {
            return Err(Failure::new(
                Code::InUse,
                format!("{}: mounted; unmount it to repair", dir.display()),
            ));
        }
        return offline::check(&dir, true);
    }
    if let Some(r) = ask(&dir, "check") {
        return r;
    }
    offline::check(&dir, false)
}

pub fn backup(source: &Path, dest: &Path) -> Result<ExitCode, Failure> {
    let dir = data_dir_of(source);
    let dest =
        std::path::absolute(dest).map_err(|e| Failure::from(format!("{}: {e}", dest.display())))?;
    if let Some(r) = ask(&dir, &format!("backup {}", dest.display())) {
        return r;
    }
    offline::backup(&dir, &dest).map(|()| ExitCode::SUCCESS)
}
