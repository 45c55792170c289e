//! The control socket of a mounted store: `control.sock` in the data
//! directory, readable and writable by its owner only, on which the daemon
//! answers `caskfs stats`, `compact`, `check` and `backup`. One request per
//! connection: the client writes a line (`stats`, `stats json`, `compact`,
//! `check`, `backup DEST`), the daemon answers with a line holding the
//! exit code, then the text to print.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use log::{info, warn};

use crate::engine::{CONTROL_FILE, Store};
use crate::exit::Code;
use crate::fs::{CaskFs, Findings};
use crate::report::{self, Live};
use crate::transport::Counters;

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(CONTROL_FILE)
}

/// What the daemon answers from.
pub struct Daemon {
    pub store: Arc<Store>,
    pub fs: Arc<CaskFs>,
    pub counters: Arc<Counters>,
    pub mountpoint: PathBuf,
    pub started: Instant,
    /// Whether requests come through io_uring rather than /dev/fuse.
    pub uring: Arc<AtomicBool>,
}

/// The serving thread; `stop` ends it and removes the socket.
pub struct Server {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    /// The listening socket, shut down to wake the accept at stop.
    listener: UnixListener,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds the socket (replacing one a dead daemon left) and answers on
    /// a thread of its own, one request at a time.
    pub fn start(d: Daemon) -> io::Result<Server> {
        let path = socket_path(d.store.dir());
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let listener = UnixListener::bind(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
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
                            if let Err(e) = answer(&d, c) {
                                warn!("control socket: {e}");
                            }
                        }
                        Err(e) => warn!("control socket: {e}"),
                    }
                }
            })?;
        info!("answering on {}", path.display());
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
        let _ = std::fs::remove_file(&self.path);
    }
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
    match request.split_once(' ').unwrap_or((request, "")) {
        ("stats", form) => match d.store.stats() {
            Ok(stats) => {
                let live = live(d);
                match form {
                    "json" => (0, report::json(&stats, Some(&live))),
                    _ => (0, report::table(&stats, Some(&live))),
                }
            }
            Err(e) => failed(&e),
        },
        ("compact", _) => match defragment(d)
            .and_then(|()| d.store.roll())
            .and_then(|()| d.store.compact())
        {
            Ok(Some(r)) => (0, format!("merged {r}\n")),
            Ok(None) => (0, "nothing to merge\n".into()),
            Err(e) => failed(&e),
        },
        ("check", _) => match (d.store.check_live(), live_tree_check(d)) {
            (Ok(r), Ok(t)) if r.is_clean() && t.problems.is_empty() => (0, format!("{r}\n{t}\n")),
            (Ok(r), Ok(t)) => (Code::Damage as u8, format!("{r}\n{t}\n")),
            (Err(e), _) => failed(&e),
            (_, Err(e)) => failed(&e),
        },
        ("backup", dest) if Path::new(dest).is_absolute() => {
            match d.store.backup(Path::new(dest)) {
                Ok(r) => (0, format!("{r}\n")),
                Err(e) => failed(&e),
            }
        }
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

fn live(d: &Daemon) -> Live {
    Live {
        pid: std::process::id(),
        mountpoint: d.mountpoint.display().to_string(),
        uptime_secs: d.started.elapsed().as_secs_f64(),
        transport: transport(&d.uring),
        reads: d.fs.read_mode(),
        sync: format!("{:?}", d.store.options().sync).to_lowercase(),
        open_handles: d.fs.open_handles(),
        bytes_read: d.counters.bytes_read(),
        bytes_written: d.counters.bytes_written(),
        requests: d.counters.requests(),
    }
}

/// Asks the daemon serving `data_dir`: its exit code and text, or `None`
/// when no daemon answers there (no socket, or one a dead daemon left).
pub fn ask(data_dir: &Path, request: &str) -> Option<io::Result<(u8, String)>> {
    let mut conn = match UnixStream::connect(socket_path(data_dir)) {
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
