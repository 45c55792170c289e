//! The control socket of a mounted store: `control.sock` in the data
//! directory, readable and writable by its owner only, on which the daemon
//! answers `caskfs stats`, `compact`, `check` and `backup`. One request per
//! connection: the client writes a line (`stats`, `stats json`, `compact`,
//! `check`, `backup DEST`), the daemon answers with a line holding the
//! exit code, then the text to print.
//!
//! An etcd mount has no data directory: its socket is in the abstract
//! namespace, named after the mountpoint (`socket_name`), which leaves no
//! file behind a killed daemon. Anyone may connect to such a socket, so
//! the daemon asks the kernel who connected (SO_PEERCRED) and answers only
//! root and its own user, on either kind of socket; the client, likewise,
//! believes only a daemon of root, its own user, or the mount's owner.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use log::{info, warn};

use crate::backend::etcd::Observer;
use crate::engine::{CONTROL_FILE, Store};
use crate::exit::Code;
use crate::fs::{CaskFs, Findings};
use crate::report::{self, Live};
use crate::transport::Counters;

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(CONTROL_FILE)
}

/// The abstract socket name of the etcd mount on `mountpoint`
/// (canonical): the path itself when it fits in a socket address, else
/// its start and a hash of the whole.
pub fn socket_name(mountpoint: &Path) -> Vec<u8> {
    const ROOM: usize = 100;
    let path = mountpoint.as_os_str().as_bytes();
    let mut name = b"caskfs-control:".to_vec();
    if name.len() + path.len() <= ROOM {
        name.extend_from_slice(path);
    } else {
        // FNV-1a: stable across builds, so that client and daemon agree.
        let hash = path.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let tail = format!("...{hash:016x}");
        name.extend_from_slice(&path[..ROOM - name.len() - tail.len()]);
        name.extend_from_slice(tail.as_bytes());
    }
    name
}

/// What the daemon serves: a local store, or a prefix of an etcd cluster.
pub enum Served {
    Local(Arc<Store>),
    Etcd(Arc<Observer>),
}

/// What the daemon answers from.
pub struct Daemon {
    pub served: Served,
    pub fs: Arc<CaskFs>,
    pub counters: Arc<Counters>,
    pub mountpoint: PathBuf,
    pub started: Instant,
    /// Whether requests come through io_uring rather than /dev/fuse.
    pub uring: Arc<AtomicBool>,
}

/// The serving thread; `stop` ends it and removes the socket.
pub struct Server {
    /// The socket's file, if it has one (a local store's).
    path: Option<PathBuf>,
    stop: Arc<AtomicBool>,
    /// The listening socket, shut down to wake the accept at stop.
    listener: UnixListener,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds the socket (replacing one a dead daemon left) and answers on
    /// a thread of its own, one request at a time.
    pub fn start(d: Daemon) -> io::Result<Server> {
        let (listener, path, shown) = match &d.served {
            Served::Local(store) => {
                let path = socket_path(store.dir());
                match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
                let listener = UnixListener::bind(&path)?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
                let shown = path.display().to_string();
                (listener, Some(path), shown)
            }
            Served::Etcd(_) => {
                let name = socket_name(&d.mountpoint);
                let addr = SocketAddr::from_abstract_name(&name)?;
                let listener = UnixListener::bind_addr(&addr)?;
                (
                    listener,
                    None,
                    format!("@{}", String::from_utf8_lossy(&name)),
                )
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let kept = listener.try_clone()?;
        let thread = std::thread::Builder::new()
            .name("caskfs-control".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stopping.load(Ordering::Acquire) {
                        break;
                    }
                    match conn {
                        Ok(c) => {
                            let answered = match allowed(&c) {
                                Ok(()) => answer(&d, c),
                                Err(why) => refuse(c, &why),
                            };
                            if let Err(e) = answered {
                                warn!("control socket: {e}");
                            }
                        }
                        Err(e) => warn!("control socket: {e}"),
                    }
                }
            })?;
        info!("answering on {shown}");
        Ok(Server {
            path,
            stop,
            listener: kept,
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        // Wakes the accept, also when the socket's file is gone (a
        // connect would not reach it then).
        // SAFETY: shutdown on a descriptor this owns; no memory involved.
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The uid of the process at the other end of `conn`.
fn peer_uid(conn: &UnixStream) -> io::Result<u32> {
    // SAFETY: ucred is plain data; all-zero is a valid value.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid out-pointers of the size given.
    let rc = unsafe {
        libc::getsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    };
    match rc {
        0 => Ok(cred.uid),
        _ => Err(io::Error::last_os_error()),
    }
}

fn own_uid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// Only root and the daemon's own user may ask: stats show what files
/// are open and the cluster's layout, and compact and backup do work.
fn allowed(conn: &UnixStream) -> Result<(), String> {
    let uid = peer_uid(conn).map_err(|e| format!("who is asking: {e}"))?;
    match uid == 0 || uid == own_uid() {
        true => Ok(()),
        false => Err(format!(
            "uid {uid} may not ask: only root and the mount's owner (uid {}) may",
            own_uid()
        )),
    }
}

fn refuse(conn: UnixStream, why: &str) -> io::Result<()> {
    info!("control socket: refused {why}");
    // The request is read first, so that the client's write does not
    // fail on a closed socket before it reads why.
    BufReader::new(&conn)
        .take(4096)
        .read_line(&mut String::new())?;
    let mut w = &conn;
    w.write_all(
        format!(
            "{}
{why}
",
            Code::Failed as u8
        )
        .as_bytes(),
    )
}

fn answer(d: &Daemon, conn: UnixStream) -> io::Result<()> {
    let mut line = String::new();
    BufReader::new(&conn).take(4096).read_line(&mut line)?;
    let (code, text) = reply(d, line.trim_end_matches('\n'));
    let mut w = &conn;
    w.write_all(format!("{code}\n{text}").as_bytes())
}

/// Code 0 stands for success.
fn reply(d: &Daemon, request: &str) -> (u8, String) {
    let failed = |e: &dyn std::fmt::Display| (Code::Failed as u8, format!("{e}"));
    let store = match &d.served {
        Served::Local(store) => store,
        Served::Etcd(observer) => return etcd_reply(d, observer, request),
    };
    match request.split_once(' ').unwrap_or((request, "")) {
        ("stats", form) => match store.stats() {
            Ok(stats) => {
                let sync = format!("{:?}", store.options().sync).to_lowercase();
                let live = live(d, sync);
                match form {
                    "json" => (0, report::json(&stats, Some(&live))),
                    _ => (0, report::table(&stats, Some(&live))),
                }
            }
            Err(e) => failed(&e),
        },
        ("compact", _) => match defragment(d)
            .and_then(|()| store.roll())
            .and_then(|()| store.compact())
        {
            Ok(Some(r)) => (0, format!("merged {r}\n")),
            Ok(None) => (0, "nothing to merge\n".into()),
            Err(e) => failed(&e),
        },
        ("check", _) => match (store.check_live(), live_tree_check(d)) {
            (Ok(r), Ok(t)) if r.is_clean() && t.problems.is_empty() => (0, format!("{r}\n{t}\n")),
            (Ok(r), Ok(t)) => (Code::Damage as u8, format!("{r}\n{t}\n")),
            (Err(e), _) => failed(&e),
            (_, Err(e)) => failed(&e),
        },
        ("backup", dest) if Path::new(dest).is_absolute() => match store.backup(Path::new(dest)) {
            Ok(r) => (0, format!("{r}\n")),
            Err(e) => failed(&e),
        },
        _ => (Code::Usage as u8, format!("unknown request {request:?}\n")),
    }
}

/// What the daemon of an etcd mount answers: stats; the rest is etcd's
/// own work, or done from the prefix's URL.
fn etcd_reply(d: &Daemon, observer: &Observer, request: &str) -> (u8, String) {
    let not_here = |why: &str| (Code::Usage as u8, format!("{why}\n"));
    match request.split_once(' ').unwrap_or((request, "")) {
        ("stats", form) => {
            let view = observer.view();
            let live = live(d, "quorum (etcd)".into());
            match form {
                "json" => (0, report::etcd::json(&view, &live)),
                _ => (0, report::etcd::table(&view, &live)),
            }
        }
        ("compact", _) => not_here("compact: not on an etcd mount (etcd compacts its own history)"),
        ("check", _) => not_here("check: not on an etcd mount (etcd checks its own data)"),
        ("backup", _) => not_here(
            "backup: an etcd mount is backed up from its URL: caskfs backup etcd://.../PREFIX DIR",
        ),
        _ => (Code::Usage as u8, format!("unknown request {request:?}\n")),
    }
}

/// The filesystem's check while it serves: a problem counts only if a
/// second walk finds it too, as a file changed between the walk's reads
/// can look damaged for a moment.
fn live_tree_check(d: &Daemon) -> crate::fs::Result<Findings> {
    let first = d.fs.check()?;
    if first.problems.is_empty() {
        return Ok(first);
    }
    let mut second = d.fs.check()?;
    second.problems.retain(|p| first.problems.contains(p));
    Ok(second)
}

/// How requests reach the daemon, as the log and `caskfs stats` say it.
pub fn transport(uring: &AtomicBool) -> &'static str {
    match uring.load(Ordering::Acquire) {
        true => "io_uring",
        false => "/dev/fuse",
    }
}

fn live(d: &Daemon, sync: String) -> Live {
    Live {
        pid: std::process::id(),
        mountpoint: d.mountpoint.display().to_string(),
        uptime_secs: d.started.elapsed().as_secs_f64(),
        transport: transport(&d.uring),
        reads: d.fs.read_mode(),
        sync,
        open_handles: d.fs.open_handles(),
        bytes_read: d.counters.bytes_read(),
        bytes_written: d.counters.bytes_written(),
        requests: d.counters.requests(),
    }
}

/// Asks the daemon serving `data_dir`: its exit code and text, or `None`
/// when no daemon answers there (no socket, or one a dead daemon left).
pub fn ask(data_dir: &Path, request: &str) -> Option<io::Result<(u8, String)>> {
    // The socket's file is its owner's alone: whoever answers on it is.
    ask_at(
        UnixStream::connect(socket_path(data_dir)),
        &|_| true,
        request,
    )
}

/// Asks the daemon of the etcd mount on `mountpoint` (canonical), whose
/// owner is `owner` (as mountinfo says): `None` if none answers.
pub fn ask_mount(
    mountpoint: &Path,
    owner: Option<u32>,
    request: &str,
) -> Option<io::Result<(u8, String)>> {
    let conn = SocketAddr::from_abstract_name(socket_name(mountpoint))
        .and_then(|a| UnixStream::connect_addr(&a));
    // Anyone may bind an abstract name first.
    let believe = |uid: u32| uid == 0 || uid == own_uid() || Some(uid) == owner;
    ask_at(conn, &believe, request)
}

/// Talks to the daemon at the other end of `conn`, if `believe` holds
/// for its uid.
fn ask_at(
    conn: io::Result<UnixStream>,
    believe: &dyn Fn(u32) -> bool,
    request: &str,
) -> Option<io::Result<(u8, String)>> {
    let mut conn = match conn {
        Ok(c) => c,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return None;
        }
        Err(e) => return Some(Err(e)),
    };
    let mut talk = || -> io::Result<(u8, String)> {
        let uid = peer_uid(&conn)?;
        if !believe(uid) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("the socket is held by uid {uid}, not by the mount's owner"),
            ));
        }
        conn.write_all(format!("{request}\n").as_bytes())?;
        let mut all = String::new();
        conn.read_to_string(&mut all)?;
        let (code, text) = all.split_once('\n').unwrap_or((&all, ""));
        let code = code.parse().map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidData, format!("bad reply {all:?}"))
        })?;
        Ok((code, text.to_string()))
    };
    Some(talk())
}

/// Files written in small pieces are written again before a merge, which
/// then drops the pieces (`fs/defrag.rs`).
fn defragment(d: &Daemon) -> crate::engine::Result<()> {
    if let Err(e) = d.fs.defragment() {
        log::warn!("rewriting fragmented files before a merge: {e}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_names_fit_and_tell_long_paths_apart() {
        let short = socket_name(Path::new("/mnt/shop"));
        assert_eq!(short, b"caskfs-control:/mnt/shop");
        let long = |end: &str| socket_name(&Path::new(&"/d".repeat(80)).join(end));
        let (a, b) = (long("a"), long("b"));
        assert!(a.len() <= 100 && a != b, "{a:?}");
        assert_eq!(a, long("a"), "the client and the daemon must agree");
        // Whatever the path, the name fits in sun_path with the leading NUL.
        assert!(SocketAddr::from_abstract_name(&a).is_ok());
    }
}
