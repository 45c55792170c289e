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

use fuser::{Config, MountOption, Session, SessionACL};
use log::{debug, info, warn};

use crate::backend::etcd::{Etcd, EtcdUrl};
use crate::backend::{Kv, Log};
use crate::control;
use crate::engine::{Options, Store};
use crate::exit::Failure;
use crate::fs::{CaskFs, FsOptions, Owner};
use crate::transport::{self, Classic, uring};

/// What `caskfs mount` was asked to do (the command line's definition
/// is the CLI's, `src/cli/mount.rs`).
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// The data directory, absolute (empty with `backend`).
    pub data_dir: PathBuf,
    pub mountpoint: PathBuf,
    /// Serve a prefix of an etcd cluster instead of `data_dir`.
    pub backend: Option<EtcdUrl>,
    /// Run in the background; return once the mount is ready.
    pub daemon: bool,
    /// The local store's options (not used with `backend`).
    pub engine: Options,
    /// With `backend`, the cluster's `--quota-backend-bytes`, for an etcd
    /// that does not report it (before 3.6).
    pub etcd_quota: u64,
    /// The largest file (EFBIG past it).
    pub max_file_size: u64,
    /// FUSE worker threads.
    pub threads: u16,
    pub transport: Transport,
    pub read_only: bool,
    /// Readers may read through the kernel's page cache.
    pub cache_reads: bool,
    pub allow_other: bool,
    /// With `daemon`, where log lines go.
    pub log_file: Option<PathBuf>,
    /// With `backend`: the TTL of the lease the daemon's file locks live
    /// under (how long a dead host keeps them).
    pub lock_lease: std::time::Duration,
}

type Res<T> = Result<T, Failure>;

/// How requests reach the daemon: FUSE over io_uring when the kernel has
/// it on (`Auto`), always (`Uring`, refusing to mount without it), or
/// never (`Classic`, /dev/fuse).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Auto,
    Uring,
    Classic,
}

/// The io_uring rings to offer the kernel, if `--transport` and the
/// kernel allow: made before mounting, so that once INIT has asked for
/// them only their registration can fail (on which the kernel falls back
/// to /dev/fuse by itself).
fn prepare_uring(args: &MountOptions) -> Res<Option<uring::Prepared>> {
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

pub fn run(opts: MountOptions) -> Res<()> {
    let opts = MountOptions {
        mountpoint: check_mountpoint(&opts.mountpoint)?,
        ..opts
    };
    if opts.daemon {
        daemonize(opts)
    } else {
        serve(&opts, &mut |_| {})
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
    if crate::mountinfo::is_mounted(&canon) {
        return Err(format!("mountpoint {shown} is already a mount point").into());
    }
    let mut entries = fs::read_dir(&canon).map_err(|e| format!("mountpoint {shown}: {e}"))?;
    if entries.next().is_some() {
        return Err(format!("mountpoint {shown} is not empty").into());
    }
    Ok(canon)
}

/// Forks; the child serves and tells the parent through a pipe when the
/// mount is ready (an empty message) or why it failed.
fn daemonize(args: MountOptions) -> Res<()> {
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
fn detach(args: &MountOptions) -> Res<()> {
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
fn serve(args: &MountOptions, ready: &mut dyn FnMut(&str)) -> Res<()> {
    // Block the stop signals and SIGUSR1 (merge now) in every thread (they
    // inherit the mask); one thread waits for them with sigwait.
    let signals = block_stop_signals()?;
    // The locks every host sees, on etcd; else the kernel keeps them.
    let mut locks = None;
    // The local store, or none when the keys live in etcd.
    let mut observer = None;
    let (local, kv, source): (Option<Arc<Store>>, Arc<dyn Kv>, _) = match &args.backend {
        None => {
            let store = Store::open(&args.data_dir, args.engine.clone())
                .map_err(|e| Failure::engine(&e))?;
            let store = Arc::new(store);
            if crate::upgrade::needed(&store) {
                if args.read_only {
                    return Err(format!(
                        "{}: the data directory is in the layout of an older caskfs; \
                         mount it once without --read-only to carry it over",
                        args.data_dir.display()
                    )
                    .into());
                }
                crate::upgrade::carry_over(&store)
                    .map_err(|e| format!("carrying {} over: {e}", args.data_dir.display()))?;
            }
            if !args.read_only {
                store.metadata_carried_over();
            }
            let log = Arc::new(Log::new(store.clone()));
            (Some(store), log, args.data_dir.display().to_string())
        }
        Some(url) => {
            let etcd =
                Etcd::open_with_quota(url, args.etcd_quota).map_err(|e| format!("{url}: {e}"))?;
            observer = Some(etcd.observer());
            let leased = etcd.locks(args.lock_lease);
            locks = Some(leased.map_err(|e| format!("{url}: a lease for locks: {e}"))?);
            (None, Arc::new(etcd), url.to_string())
        }
    };
    let fs = CaskFs::load(
        kv.clone(),
        FsOptions {
            owner: Owner::current(),
            read_only: args.read_only,
            cache_reads: args.cache_reads,
            shared: kv.shared(),
            max_file_size: args.max_file_size,
        },
    )
    .map_err(|e| match (e, &args.backend) {
        (crate::fs::Error::OldLayout(_), Some(url)) => {
            crate::backend::etcd::old_layout_advice(&url.to_string())
        }
        (e, _) => format!("{source}: {e}"),
    })?;
    drop(kv);
    give_back_loading_memory();
    let fs = Arc::new(fs);
    fs.follow_remote_changes();
    fs.collect_garbage_in_background();
    fs.store_folder_times_in_background();
    fs.defragment_after_merges();
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(source.clone()),
        subtype(),
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
    let (requests, notifier) = transport::requests(fs.clone(), locks);
    let counters = requests.counters();
    let mut classic = Classic::new(requests.clone());
    // The rings, the flag INIT sets if the kernel agreed to them, and what
    // serves their requests (which holds the store: dropped unless used).
    let offer = prepared.map(|p| (p, classic.ask_for_uring(), requests));
    let mut session = Session::new(classic, &args.mountpoint, &config)
        .map_err(|e| mount_error(&args.mountpoint, &e))?;
    let _ = notifier.set(session.notifier());
    let rings = match offer {
        Some((p, agreed, requests)) if agreed.load(Ordering::Acquire) => {
            let dev = session
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| format!("io_uring: {e}"))?;
            Some(
                p.start(dev, requests)
                    .map_err(|e| format!("io_uring: {e}"))?,
            )
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
    // Weak, as the store below: SIGUSR1 rewrites fragmented files first.
    let defragmenter = Arc::downgrade(&fs);
    let served = match (&local, observer) {
        (Some(store), _) => Some(control::Served::Local(store.clone())),
        (None, Some(o)) => Some(control::Served::Etcd(o)),
        (None, None) => None,
    };
    let control = served.and_then(|served| {
        let started = control::Server::start(control::Daemon {
            served,
            fs,
            counters,
            mountpoint: args.mountpoint.clone(),
            started: std::time::Instant::now(),
            uring,
        });
        // The mount works without it; only live stats and control do not.
        started
            .inspect_err(|e| warn!("no control socket for {source}: {e}"))
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
                            let fs = defragmenter.upgrade();
                            if let Some(Err(e)) = fs.map(|fs| fs.defragment()) {
                                warn!("rewriting fragmented files before a merge: {e}");
                            }
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

/// `fuse.caskfs` as the type in /proc/mounts and `df -T`. fusermount3
/// (for users other than root) takes the subtype as its own option; root
/// mounts with mount(2), where fuser drops that option, so the kernel is
/// given it directly.
fn subtype() -> MountOption {
    // SAFETY: geteuid cannot fail and touches no memory.
    match unsafe { libc::geteuid() } {
        0 => MountOption::CUSTOM("subtype=caskfs".into()),
        _ => MountOption::Subtype("caskfs".into()),
    }
}

/// Loading a store (recovery, the directory map) allocates and frees much
/// that glibc's heap would otherwise keep for the daemon's lifetime, where
/// RSS shows it as the daemon's own memory.
fn give_back_loading_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}
