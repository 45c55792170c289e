//! The long run behind `scripts/torture.sh`: the crash loop and the random
//! I/O model for as long as `CASKFS_TORTURE_SECS` says (default 120), then
//! the power-loss scenarios once. Ignored in `cargo test` (the reliability
//! tests there run the same workloads with smaller budgets); the script
//! runs it with `--ignored` and prints a summary of the `FIGURES` lines.

mod reliability_common;

use std::time::{Duration, Instant};

use reliability_common::crash::{CrashConfig, crash_loop};
use reliability_common::{Figures, Mount, fuse_available, power, random_io, seed};

#[test]
#[ignore = "long run: scripts/torture.sh"]
fn torture_long_run() {
    if !fuse_available() {
        return;
    }
    let secs: u64 = std::env::var("CASKFS_TORTURE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let start = Instant::now();
    let seed = seed();
    eprintln!("torture seed {seed} (replay with CASKFS_SEED={seed}), {secs} s");
    let mut total = Figures::default();

    // Power loss first: fixed work, a few seconds.
    for (args, fsync) in [(&["--sync", "always"][..], false), (&[][..], true)] {
        let f = power::scenario(args, fsync, 4);
        eprintln!("{}", f.line("power_loss"));
        total.add(&f);
    }

    // Random I/O: at least 100,000 operations, in runs of 10,000 with
    // seeds drawn from the first, on one mount.
    let io_until = start + Duration::from_secs(secs * 2 / 5);
    let m = Mount::start(&["--max-segment-size", "64K"]);
    let mut rng = reliability_common::Rng::new(seed);
    let mut runs = 0;
    while runs < 10 || Instant::now() < io_until {
        let s = rng.next();
        eprintln!("random I/O run {runs}: seed {s}");
        // Each run starts from whatever the previous one left.
        for e in std::fs::read_dir(&m.mnt).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
        total.random_ops += random_io::run(&m.mnt, s, 10_000, m.reads_cached());
        runs += 1;
    }
    drop(m);
    let io = Figures {
        random_ops: total.random_ops,
        ..Figures::default()
    };
    eprintln!("{}", io.line("random_io"));

    // The crash loop for the rest of the time.
    let left = Duration::from_secs(secs).saturating_sub(start.elapsed());
    let f = crash_loop(&CrashConfig {
        seed,
        cycles: u64::MAX,
        deadline: Some(Instant::now() + left.max(Duration::from_secs(20))),
        writers: 6,
        keys_per_writer: 16,
        cache_reads: true,
        load_ms: (50, 1500),
    });
    eprintln!("{}", f.line("crash_loop"));
    total.add(&f);
    eprintln!("{}", total.line("torture_total"));
}
