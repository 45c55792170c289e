//! `caskfs mount`'s command line: its options, checked and turned into
//! what `caskfs::mount` serves.

use std::path::PathBuf;
use std::time::Duration;

use caskfs::backend::etcd::{DEFAULT_QUOTA, EtcdUrl};
use caskfs::engine::{Options, SyncPolicy, parse_ratio, parse_secs, parse_size};
use caskfs::exit::{Code, Failure};
use caskfs::mount::{MountOptions, Transport};
use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct MountArgs {
    /// The data directory (created if missing), then an existing, empty
    /// directory to mount on; with --backend, only the mountpoint.
    #[arg(value_name = "[DATA_DIR] MOUNTPOINT", num_args = 1..=2, required = true)]
    pub paths: Vec<PathBuf>,
    /// Serve the keys under PREFIX of an etcd cluster (etcd 3.4 or later,
    /// its client URLs) instead of a data directory, for a namespace that
    /// several hosts share: `caskfs mount --backend
    /// etcd://[USER@]HOST:PORT[,HOST:PORT...]/PREFIX[?OPTIONS] MOUNTPOINT`.
    /// OPTIONS: `cacert=FILE` (TLS to every member, trusting only that
    /// CA), `cert=FILE&key=FILE` (a client certificate), `server-name=NAME`
    /// (the name the members' certificates carry, if not their hosts).
    /// USER@: etcd's auth, the password read from the environment variable
    /// CASKFS_ETCD_PASSWORD.
    #[arg(long, value_name = "URL")]
    pub backend: Option<EtcdUrl>,
    /// With --backend: the cluster's --quota-backend-bytes (K, M, G
    /// suffixes), which `df` shows as the size and `caskfs stats` as the
    /// quota, for etcd before 3.6, which does not report it; a newer etcd's
    /// own figure wins [default: 2G, etcd's default].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub etcd_quota: Option<u64>,
    /// Run in the background; return once the mount is ready.
    #[arg(long)]
    pub daemon: bool,
    /// Close a segment file once it reaches this size (K, M, G suffixes)
    /// [default: 64M].
    #[arg(long, value_parser = parse_size)]
    pub max_segment_size: Option<u64>,
    /// When writes reach the disk: none, always, or interval=MS [default:
    /// none].
    #[arg(long)]
    pub sync: Option<SyncPolicy>,
    /// The largest file: a write or truncate past it fails with EFBIG
    /// (K, M, G, T suffixes; 16T, as ext4 with 4 KiB blocks).
    #[arg(long, value_parser = parse_size, default_value = "16T")]
    pub max_value_size: u64,
    /// FUSE worker threads (with io_uring, spread over the CPUs' queues,
    /// at least one each).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: u16,
    /// How requests reach the daemon: `uring` (FUSE over io_uring, which
    /// the fuse module's enable_uring parameter turns on), `classic`
    /// (/dev/fuse), or `auto`, io_uring when the kernel has it on.
    #[arg(long, value_enum, default_value_t = TransportArg::Auto)]
    pub transport: TransportArg,
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
    /// --merge-min-dead-bytes are [default: 0.5].
    #[arg(long, value_name = "R", value_parser = parse_ratio)]
    pub merge_dead_ratio: Option<f64>,
    /// The dead bytes a background merge waits for, besides
    /// --merge-dead-ratio (K, M, G suffixes) [default: the segment size, at
    /// most 16M].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub merge_min_dead_bytes: Option<u64>,
    /// Merge in the background when there are more than N closed segments
    /// beyond those their live data fills, whatever is dead [default: 16].
    #[arg(long, value_name = "N")]
    pub merge_max_segments: Option<usize>,
    /// How often the merge thread checks whether a merge is due, besides
    /// after every segment roll (seconds, fractions allowed) [default:
    /// 60].
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub merge_interval: Option<Duration>,
    /// With --daemon, append log lines here instead of discarding them.
    #[arg(long)]
    pub log_file: Option<PathBuf>,
    /// With --backend: the TTL of the etcd lease this daemon's file locks
    /// live under, which is how long a host that dies keeps its locks
    /// (whole seconds, as `10s` or `10`) [default: 10s].
    #[arg(long, value_name = "SECS", value_parser = parse_lease)]
    pub lock_lease: Option<Duration>,
}

/// `--lock-lease`: whole seconds, with or without an `s`; etcd's leases
/// count seconds.
fn parse_lease(s: &str) -> Result<Duration, String> {
    let secs = s.trim().strip_suffix('s').unwrap_or(s.trim());
    match secs.parse::<u64>() {
        Ok(n) if (1..=86_400).contains(&n) => Ok(Duration::from_secs(n)),
        _ => Err(format!(
            "bad lease \"{s}\": use whole seconds from 1 to 86400, such as 10s"
        )),
    }
}

/// `--transport`: see `caskfs::mount::Transport`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportArg {
    Auto,
    Uring,
    Classic,
}

impl MountArgs {
    /// The engine options these arguments ask for.
    fn engine_options(&self) -> Options {
        let d = Options::default();
        Options {
            max_segment_size: self.max_segment_size.unwrap_or(d.max_segment_size),
            sync: self.sync.unwrap_or(d.sync),
            read_only: self.read_only,
            create_if_missing: !self.read_only,
            compaction: !self.no_compaction,
            compact_dead_ratio: self.merge_dead_ratio.unwrap_or(d.compact_dead_ratio),
            compact_min_dead_bytes: self.merge_min_dead_bytes,
            compact_max_segments: self.merge_max_segments.unwrap_or(d.compact_max_segments),
            compact_interval: self.merge_interval.unwrap_or(d.compact_interval),
            ..d
        }
    }

    /// The options given that only a local data directory has: its log's
    /// segments, syncs and merges (etcd keeps and compacts its own).
    fn local_only(&self) -> Vec<&'static str> {
        [
            ("--max-segment-size", self.max_segment_size.is_some()),
            ("--sync", self.sync.is_some()),
            ("--no-compaction", self.no_compaction),
            ("--merge-dead-ratio", self.merge_dead_ratio.is_some()),
            (
                "--merge-min-dead-bytes",
                self.merge_min_dead_bytes.is_some(),
            ),
            ("--merge-max-segments", self.merge_max_segments.is_some()),
            ("--merge-interval", self.merge_interval.is_some()),
            ("--cache-reads", self.cache_reads),
        ]
        .into_iter()
        .filter_map(|(name, given)| given.then_some(name))
        .collect()
    }

    /// What to mount and how, or a usage error.
    pub fn options(self) -> Result<MountOptions, Failure> {
        let (data_dir, mountpoint) = match (&self.backend, self.paths.as_slice()) {
            (None, [dir, mountpoint]) => {
                let dir = std::path::absolute(dir)
                    .map_err(|e| format!("data directory {}: {e}", dir.display()))?;
                (dir, mountpoint.clone())
            }
            (Some(_), [mountpoint]) => (PathBuf::new(), mountpoint.clone()),
            (None, _) => {
                return Err(Failure::new(
                    Code::Usage,
                    "usage: caskfs mount DATA_DIR MOUNTPOINT",
                ));
            }
            (Some(_), _) => {
                let usage = "with --backend, give only the mountpoint: caskfs mount --backend URL MOUNTPOINT";
                return Err(Failure::new(Code::Usage, usage));
            }
        };
        if self.backend.is_none() && self.etcd_quota.is_some() {
            return Err(Failure::new(
                Code::Usage,
                "--etcd-quota has no meaning without --backend: a data directory's size is its disk's",
            ));
        }
        if self.backend.is_none() && self.lock_lease.is_some() {
            let why = "--lock-lease has meaning only with --backend: on a local mount the \
                       kernel keeps the locks";
            return Err(Failure::new(Code::Usage, why));
        }
        let local_only = self.local_only();
        if self.backend.is_some() && !local_only.is_empty() {
            let why = format!(
                "{} {} no meaning with --backend: etcd keeps, syncs and compacts the keys \
                 itself, and reads go to the daemon (another host's change would not \
                 drop this host's cached pages)",
                local_only.join(", "),
                if local_only.len() == 1 { "has" } else { "have" },
            );
            return Err(Failure::new(Code::Usage, why));
        }
        // The daemon leaves the directory it was started in: a relative
        // path is taken from there now.
        let log_file = match &self.log_file {
            Some(p) => {
                Some(std::path::absolute(p).map_err(|e| format!("log file {}: {e}", p.display()))?)
            }
            None => None,
        };
        Ok(MountOptions {
            engine: self.engine_options(),
            etcd_quota: self.etcd_quota.unwrap_or(DEFAULT_QUOTA),
            max_file_size: self.max_value_size,
            // Reads go through the page cache by default, but not from
            // etcd, whose other hosts' changes would not drop this host's
            // cached pages.
            cache_reads: self.backend.is_none() && !self.no_cache_reads,
            data_dir,
            mountpoint,
            backend: self.backend,
            daemon: self.daemon,
            threads: self.threads,
            transport: match self.transport {
                TransportArg::Auto => Transport::Auto,
                TransportArg::Uring => Transport::Uring,
                TransportArg::Classic => Transport::Classic,
            },
            read_only: self.read_only,
            allow_other: self.allow_other,
            log_file,
            lock_lease: self.lock_lease.unwrap_or(Duration::from_secs(10)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
