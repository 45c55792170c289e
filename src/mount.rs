//! `caskfs mount`: check the mountpoint, open the store, mount, serve until
//! unmounted (by `umount`, `fusermount3 -u`, SIGINT or SIGTERM), then
//! close the store. With `--daemon` the command returns once the mount is
//! ready, or fails with the reason.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Args;
use fuser::{Config, MountOption, Session, SessionACL};
use log::{debug, info, warn};

use crate::control;
use crate::engine::{Options, Store, SyncPolicy, parse_ratio, parse_secs, parse_size};
use crate::etcd::{Etcd, EtcdUrl};
use crate::exit::{Code, Failure};
use crate::fs::{Bitcask, CaskFs, CaskFuse, FsOptions, Owner, Storage, uring};

#[derive(Args, Debug, Clone)]
pub struct MountArgs {
    /// The data directory (created if missing), then an existing, empty
    /// directory to mount on; with --backend, only the mountpoint.
    #[arg(value_name = "[DATA_DIR] MOUNTPOINT", num_args = 1..=2, required = true)]
    pub paths: Vec<PathBuf>,
    /// The data directory, from `paths` (none with --backend).
    #[arg(skip)]
    pub data_dir: PathBuf,
    #[arg(skip)]
    pub mountpoint: PathBuf,
    /// Serve the keys under PREFIX of an etcd cluster (etcd 3.4 or later,
    /// its client URLs) instead of a data directory, for a namespace that
    /// several hosts share: `caskfs mount --backend
    /// etcd://HOST:PORT[,HOST:PORT...]/PREFIX MOUNTPOINT`.
    #[arg(long, value_name = "URL")]
    pub backend: Option<EtcdUrl>,
    /// Run in the background; return once the mount is ready.
    #[arg(long)]
    pub daemon: bool,
    /// Close a segment file once it reaches this size (K, M, G suffixes).
    #[arg(long, value_parser = parse_size, default_value = "64M")]
    pub max_segment_size: u64,
    /// When writes reach the disk: none, always, or interval=MS.
    #[arg(long, default_value = "none")]
    pub sync: SyncPolicy,
    /// Refuse values larger than this with EFBIG (K, M, G suffixes).
    #[arg(long, value_parser = parse_size, default_value = "1G")]
    pub max_value_size: u64,
    /// FUSE worker threads (with io_uring, spread over the CPUs' queues,
    /// at least one each).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: u16,
    /// How requests reach the daemon: `uring` (FUSE over io_uring, which
    /// the fuse module's enable_uring parameter turns on), `classic`
    /// (/dev/fuse), or `auto`, io_uring when the kernel has it on.
    #[arg(long, value_enum, default_value_t = Transport::Auto)]
    pub transport: Transport,
    /// Mount read-only: every change fails with EROFS.
    #[arg(long)]
    pub read_only: bool,
    /// Read through the kernel's page cache when no writer has the key
    /// open, so that reading an unchanged value again costs only the open
    /// (docs/SEMANTICS.md). The default, except with --backend.
    #[arg(long, overrides_with_all = ["cache_reads", "no_cache_reads"])]
    pub cache_reads: bool,
    /// Send every read to the daemon (direct I/O): a writer's open then
    /// never moves its key to a new inode.
    #[arg(long, overrides_with_all = ["cache_reads", "no_cache_reads"])]
    pub no_cache_reads: bool,
    /// Let other users use the mount (non-root users need
    /// `user_allow_other` in /etc/fuse.conf).
    #[arg(long)]
    pub allow_other: bool,
    /// Do not merge segments in the background (SIGUSR1 still asks for one).
    #[arg(long)]
    pub no_compaction: bool,
    /// Merge in the background once at least this share (0 to 1) of the
    /// closed segments' bytes is dead (superseded or deleted), and at least
    /// --merge-min-dead-bytes are.
    #[arg(long, value_name = "R", value_parser = parse_ratio, default_value = "0.5")]
    pub merge_dead_ratio: f64,
    /// The dead bytes a background merge waits for, besides
    /// --merge-dead-ratio (K, M, G suffixes) [default: the segment size, at
    /// most 16M].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub merge_min_dead_bytes: Option<u64>,
    /// Merge in the background when there are more than N closed segments
    /// beyond those their live data fills, whatever is dead.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub merge_max_segments: usize,
    /// How often the merge thread checks whether a merge is due, besides
    /// after every segment roll (seconds, fractions allowed).
    #[arg(long, value_name = "SECS", value_parser = parse_secs, default_value = "60")]
    pub merge_interval: Duration,
    /// With --daemon, append log lines here instead of discarding them.
    #[arg(long)]
    pub log_file: Option<PathBuf>,
}

type Res<T> = Result<T, Failure>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    Auto,
    Uring,
    Classic,
}

/// The io_uring rings to offer the kernel, if `--transport` and the
/// kernel allow: made before mounting, so that once INIT has asked for
/// them only their registration can fail (on which the kernel falls back
/// to /dev/fuse by itself).
fn prepare_uring(args: &MountArgs) -> Res<Option<uring::Prepared>> {
    let forced = match args.transport {
        Transport::Classic => return Ok(None),
        Transport::Auto => false,
        Transport::Uring => true,
    };
    let prepared = match uring::unavailable() {
        Some(why) => Err(why),
        None => uring::prepare(usize::from(args.threads))
            .map_err(|e| format!("setting up io_uring: {e}")),
    };
    match prepared {
        Ok(p) => Ok(Some(p)),
        Err(why) if forced => Err(format!("--transport uring: {why}").into()),
        Err(why) => {
            info!("serving through /dev/fuse: {why}");
            Ok(None)
        }
    }
}

impl MountArgs {
    /// The engine options these arguments ask for.
    pub fn engine_options(&self) -> Options {
        Options {
            max_segment_size: self.max_segment_size,
            max_value_size: self.max_value_size,
            sync: self.sync,
            read_only: self.read_only,
            create_if_missing: !self.read_only,
            compaction: !self.no_compaction,
            compact_dead_ratio: self.merge_dead_ratio,
            compact_min_dead_bytes: self.merge_min_dead_bytes,
            compact_max_segments: self.merge_max_segments,
            compact_interval: self.merge_interval,
            ..Options::default()
        }
    }

    /// Whether reads go through the page cache: by default, but not with
    /// --backend, whose other hosts' changes would not drop this host's
    /// cached pages (an explicit --cache-reads is refused there).
    pub fn reads_cached(&self) -> bool {
        self.backend.is_none() && !self.no_cache_reads
    }
}

pub fn run(args: MountArgs) -> Res<()> {
    let (data_dir, mountpoint) = match (&args.backend, args.paths.as_slice()) {
        (None, [dir, mountpoint]) => {
            let dir = std::path::absolute(dir)
                .map_err(|e| format!("data directory {}: {e}", dir.display()))?;
            (dir, mountpoint)
        }
        (Some(_), [mountpoint]) => (PathBuf::new(), mountpoint),
        (None, _) => {
            return Err(Failure::new(
                Code::Usage,
                "usage: caskfs mount DATA_DIR MOUNTPOINT",
            ));
        }
        (Some(_), _) => {
            let usage =
                "with --backend, give only the mountpoint: caskfs mount --backend URL MOUNTPOINT";
            return Err(Failure::new(Code::Usage, usage));
        }
    };
    if args.backend.is_some() && args.cache_reads {
        let why = "--cache-reads is not available with --backend yet: \
                   another host's change would not drop this host's cached pages \
                   (reads there go to the daemon by default)";
        return Err(Failure::new(Code::Usage, why));
    }
    let mountpoint = check_mountpoint(mountpoint)?;
    let args = MountArgs {
        mountpoint,
        data_dir,
        ..args
    };
    if args.daemon {
        daemonize(args)
    } else {
        serve(&args, &mut |_| {})
    }
}

/// The mountpoint must be an empty directory that is not mounted on yet.
fn check_mountpoint(path: &Path) -> Res<PathBuf> {
    let shown = path.display();
    let meta = fs::metadata(path).map_err(|e| format!("mountpoint {shown}: {e}"))?;
    if !meta.is_dir() {
        return Err(format!("mountpoint {shown} is not a directory").into());
    }
    let canon = fs::canonicalize(path).map_err(|e| format!("mountpoint {shown}: {e}"))?;
    if is_mounted(&canon) {
        return Err(format!("mountpoint {shown} is already a mount point").into());
    }
    let mut entries = fs::read_dir(&canon).map_err(|e| format!("mountpoint {shown}: {e}"))?;
    if entries.next().is_some() {
        return Err(format!("mountpoint {shown} is not empty").into());
    }
    Ok(canon)
}

/// Whether `path` is listed in /proc/self/mountinfo.
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| unescape_mountinfo(mp) == want)
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .map(|d| d.iter().fold(0u32, |n, c| n * 8 + u32::from(c - b'0')));
        match octal.and_then(|v| u8::try_from(v).ok()) {
            Some(v) => {
                out.push(v);
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Forks; the child serves and tells the parent through a pipe when the
/// mount is ready (an empty message) or why it failed.
fn daemonize(args: MountArgs) -> Res<()> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid two-element array for pipe(2) to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()).into());
    }
    // SAFETY: the pipe fds are fresh and owned by nothing else.
    let (mut rd, wr) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    // SAFETY: no other threads exist yet (nothing has spawned any), so the
    // child may continue running arbitrary code.
    match unsafe { libc::fork() } {
        -1 => Err(format!("fork: {}", std::io::Error::last_os_error()).into()),
        0 => {
            drop(rd);
            let mut wr = Some(wr);
            let mut report = |msg: &str| {
                if let Some(mut w) = wr.take() {
                    let _ = w.write_all(msg.as_bytes());
                }
            };
            let code = match detach(&args).and_then(|()| serve(&args, &mut report)) {
                Ok(()) => 0,
                Err(f) => {
                    report(&f.encode());
                    log::error!("{f}");
                    f.code as i32
                }
            };
            std::process::exit(code);
        }
        _child => {
            drop(wr);
            let mut msg = String::new();
            let _ = rd.read_to_string(&mut msg);
            match msg.as_str() {
                "" => Err(Failure::from(
                    "the daemon exited before the mount was ready".to_string(),
                )),
                "ready" => Ok(()),
                m => Err(Failure::decode(m)),
            }
        }
    }
}

/// Leaves the terminal's session and points stdio away from it.
fn detach(args: &MountArgs) -> Res<()> {
    // SAFETY: setsid and chdir have no memory-safety preconditions.
    unsafe {
        libc::setsid();
        libc::chdir(c"/".as_ptr());
    }
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| format!("/dev/null: {e}"))?;
    let log = match &args.log_file {
        Some(p) => OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .map_err(|e| format!("log file {}: {e}", p.display()))?,
        None => null.try_clone().map_err(|e| e.to_string())?,
    };
    // SAFETY: dup2 onto the standard descriptors of this process.
    unsafe {
        libc::dup2(null.as_raw_fd(), 0);
        libc::dup2(null.as_raw_fd(), 1);
        libc::dup2(log.as_raw_fd(), 2);
    }
    Ok(())
}

/// Opens the store, mounts, calls `ready("ready")`, serves until
/// unmounted, and closes the store.
fn serve(args: &MountArgs, ready: &mut dyn FnMut(&str)) -> Res<()> {
    // Block the stop signals and SIGUSR1 (merge now) in every thread (they
    // inherit the mask); one thread waits for them with sigwait.
    let signals = block_stop_signals()?;
    // The local store, or none when the keys live in etcd.
    let (local, storage, source, shared): (Option<Arc<Store>>, Arc<dyn Storage>, _, _) = match &args
        .backend
    {
        None => {
            let store = Store::open(&args.data_dir, args.engine_options())
                .map_err(|e| Failure::engine(&e))?;
            let store = Arc::new(store);
            let bitcask = Arc::new(Bitcask::new(store.clone()));
            (
                Some(store),
                bitcask,
                args.data_dir.display().to_string(),
                false,
            )
        }
        Some(url) => {
            let etcd = Etcd::open(url, args.max_value_size).map_err(|e| format!("{url}: {e}"))?;
            (None, Arc::new(etcd), url.to_string(), true)
        }
    };
    let folders = local.as_ref().and_then(index_folders);
    let fs = Arc::new(CaskFs::new(
        storage,
        FsOptions {
            owner: Owner::current(),
            read_only: args.read_only,
            cache_reads: args.reads_cached(),
            shared,
        },
    ));
    fs.follow_remote_changes();
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(source.clone()),
        MountOption::Subtype("caskfs".into()),
        MountOption::NoAtime,
        MountOption::NoDev,
        MountOption::NoSuid,
        if args.read_only {
            MountOption::RO
        } else {
            MountOption::RW
        },
    ];
    // The kernel checks every access against the stored modes and owners,
    // as on any filesystem (the owner of a 0444 file cannot write it).
    config.mount_options.push(MountOption::DefaultPermissions);
    if args.allow_other {
        config.acl = SessionACL::All;
    }
    config.n_threads = Some(usize::from(args.threads));
    config.clone_fd = args.threads > 1;
    let prepared = prepare_uring(args)?;
    let mut fuse = CaskFuse::new(fs.clone());
    let counters = fuse.counters();
    let notifier = fuse.notifier_slot();
    // The rings, the flag INIT sets if the kernel agreed to them, and what
    // serves their requests (which holds the store: dropped unless used).
    let offer = prepared.map(|p| (p, fuse.ask_for_uring(), Arc::new(fuse.uring_server())));
    let mut session = Session::new(fuse, &args.mountpoint, &config)
        .map_err(|e| mount_error(&args.mountpoint, &e))?;
    let _ = notifier.set(session.notifier());
    let rings = match offer {
        Some((p, agreed, server)) if agreed.load(Ordering::Acquire) => {
            let dev = session
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| format!("io_uring: {e}"))?;
            Some(p.start(dev, server).map_err(|e| format!("io_uring: {e}"))?)
        }
        Some(_) => {
            warn!("the kernel did not offer io_uring at INIT; serving through /dev/fuse");
            None
        }
        None => None,
    };
    let uring = rings
        .as_ref()
        .map_or_else(Arc::default, uring::Rings::serving);
    info!(
        "mounted {source} on {} (transport {}, reads {})",
        args.mountpoint.display(),
        control::transport(&uring),
        fs.read_mode()
    );
    // Live stats and control speak for a local store only, for now.
    let control = local.as_ref().and_then(|store| {
        let started = control::Server::start(control::Daemon {
            store: store.clone(),
            fs,
            counters,
            mountpoint: args.mountpoint.clone(),
            started: std::time::Instant::now(),
            uring,
        });
        // The mount works without it; only live stats and control do not.
        started
            .inspect_err(|e| warn!("no control socket in {}: {e}", args.data_dir.display()))
            .ok()
    });
    ready("ready");

    let mut unmounter = session.unmount_callable();
    let mountpoint = args.mountpoint.clone();
    // Weak, so that the store can be closed once the session ends.
    let merger = local.as_ref().map(Arc::downgrade);
    std::thread::Builder::new()
        .name("caskfs-signals".into())
        .spawn(move || {
            let sig = loop {
                match wait_for(&signals) {
                    libc::SIGUSR1 => match merger.as_ref().and_then(|m| m.upgrade()) {
                        Some(store) => {
                            info!("SIGUSR1: merging closed segments");
                            store.request_compaction();
                        }
                        None => info!("SIGUSR1: no segments to merge (etcd compacts its own)"),
                    },
                    sig => break sig,
                }
            };
            info!("signal {sig}: unmounting {}", mountpoint.display());
            if let Err(e) = unmounter.unmount() {
                warn!("unmount failed ({e}); detaching lazily");
                lazy_unmount(&mountpoint);
            }
        })
        .map_err(|e| format!("starting the signal thread: {e}"))?;

    let served = session.run().or_else(|e| {
        // A worker reading the device while the kernel tears the
        // connection down at unmount can get ECONNABORTED instead of
        // ENODEV (the request it was handed was ended under it): the
        // session is over either way.
        if e.raw_os_error() == Some(libc::ECONNABORTED) {
            debug!("FUSE connection ended under a reader: {e}");
            Ok(())
        } else {
            Err(e)
        }
    });
    if let Some(r) = rings {
        r.join();
    }
    info!("unmounted {}", args.mountpoint.display());
    if let Some(c) = control {
        c.stop();
    }
    if let Some(f) = folders {
        let _ = f.join();
    }
    let closed = match local.map(Arc::try_unwrap) {
        None => Ok(()),
        Some(Ok(store)) => store.close().map_err(|e| e.to_string()),
        Some(Err(store)) => {
            warn!("the store is still in use after unmounting; syncing it without closing");
            store.sync().map_err(|e| e.to_string())
        }
    };
    served.map_err(|e| format!("serving {}: {e}", args.mountpoint.display()))?;
    Ok(closed?)
}

/// Builds the store's tree of folders in the background: the mount asks
/// for it at the first stat of a folder or create (a second or more for a
/// million keys), which this moves to while nobody waits, as a rule.
fn index_folders(store: &Arc<Store>) -> Option<std::thread::JoinHandle<()>> {
    let store = Arc::downgrade(store);
    let spawned = std::thread::Builder::new()
        .name("caskfs-folders".into())
        .spawn(move || {
            if let Some(store) = store.upgrade() {
                let started = std::time::Instant::now();
                let (entries, _) = store.folder_counts(b"");
                info!(
                    "tree of folders built in {:.3} s ({entries} entries at the top)",
                    started.elapsed().as_secs_f64()
                );
            }
        });
    spawned
        .map_err(|e| warn!("building the tree of folders in the background: {e}"))
        .ok()
}

fn mount_error(mountpoint: &Path, e: &std::io::Error) -> String {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let hint = if root {
        String::new()
    } else {
        "; as a non-root user mounting needs fusermount3 (Debian/Ubuntu package fuse3)".into()
    };
    format!("cannot mount on {}: {e}{hint}", mountpoint.display())
}

fn block_stop_signals() -> Res<libc::sigset_t> {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use;
    // pthread_sigmask only reads the set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGUSR1] {
            libc::sigaddset(&mut set, sig);
        }
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(format!(
                "blocking signals: {}",
                std::io::Error::from_raw_os_error(rc)
            )
            .into());
        }
        Ok(set)
    }
}

fn wait_for(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    // SAFETY: `set` is an initialised signal set and `sig` a valid out-pointer.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}

fn lazy_unmount(mountpoint: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(mountpoint.as_os_str().as_bytes()) else {
        return;
    };
    // SAFETY: `path` is a valid C string.
    if unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } != 0 {
        let _ = std::process::Command::new("fusermount3")
            .args(["-u", "-z", "--"])
            .arg(mountpoint)
            .status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo(r"/end\"), r"/end\");
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: MountArgs,
    }

    fn parse(extra: &[&str]) -> Result<Options, String> {
        use clap::Parser;
        let argv = ["caskfs", "data", "mnt"].iter().chain(extra);
        Cli::try_parse_from(argv)
            .map(|c| c.args.engine_options())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn merge_options_default_to_the_engine_defaults() {
        let o = parse(&[]).unwrap();
        let d = Options::default();
        assert!(o.compaction);
        assert_eq!(o.compact_dead_ratio, d.compact_dead_ratio);
        assert_eq!(o.compact_min_dead_bytes, d.compact_min_dead_bytes);
        assert_eq!(o.compact_max_segments, d.compact_max_segments);
        assert_eq!(o.compact_interval, d.compact_interval);
        assert_eq!(o.max_segment_size, d.max_segment_size);
    }

    #[test]
    fn merge_options_are_passed_to_the_engine() {
        let o = parse(&[
            "--merge-dead-ratio",
            "0.25",
            "--merge-min-dead-bytes",
            "2M",
            "--merge-max-segments",
            "4",
            "--merge-interval",
            "0.5",
            "--no-compaction",
        ])
        .unwrap();
        assert!(!o.compaction);
        assert_eq!(o.compact_dead_ratio, 0.25);
        assert_eq!(o.compact_min_dead_bytes, Some(2 << 20));
        assert_eq!(o.compact_max_segments, 4);
        assert_eq!(o.compact_interval, Duration::from_millis(500));
        assert!(parse(&["--merge-dead-ratio", "2"]).is_err());
        assert!(parse(&["--merge-interval", "0"]).is_err());
        assert!(parse(&["--merge-min-dead-bytes", "lots"]).is_err());
        assert!(parse(&["--merge-max-segments", "-1"]).is_err());
    }
}
