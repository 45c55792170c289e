//! Attack 1: kill -9 the daemon at random moments under concurrent load
//! (also just after asking for a merge, and while big values roll
//! segments), remount, and check every key against the acknowledged log;
//! the readers meanwhile must never see a torn value, whether they read
//! through the page cache (the default) or direct (`--no-cache-reads`).

mod reliability_common;

use reliability_common::crash::{CrashConfig, crash_loop};
use reliability_common::{fuse_available, seed};

/// Runs `cycles` crash cycles and checks nothing acknowledged was lost.
fn run(name: &str, cycles: u64, keys_per_writer: usize, load_ms: (u64, u64), cache_reads: bool) {
    if !fuse_available() {
        return;
    }
    let seed = seed();
    eprintln!("{name} seed {seed} (replay with CASKFS_SEED={seed})");
    let f = crash_loop(&CrashConfig {
        seed,
        cycles,
        deadline: None,
        writers: 4,
        keys_per_writer,
        load_ms,
        cache_reads,
    });
    eprintln!("{}", f.line(name));
    assert!(f.crash_cycles + 2 >= cycles);
    assert_eq!(f.lost, 0);
}

#[test]
fn kill_9_under_load_keeps_every_acknowledged_operation() {
    run("crash_loop", 22, 12, (80, 500), true);
}

#[test]
fn kill_9_with_direct_reads_keeps_every_acknowledged_operation() {
    run("crash_loop --no-cache-reads", 12, 6, (200, 600), false);
}
