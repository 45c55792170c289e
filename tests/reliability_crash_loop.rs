//! Attack 1: kill -9 the daemon at random moments under concurrent load
//! (also just after asking for a merge, and while big values roll
//! segments), remount, and check every key against the acknowledged log.

mod reliability_common;

use reliability_common::crash::{CrashConfig, crash_loop};
use reliability_common::{fuse_available, seed};

#[test]
fn kill_9_under_load_keeps_every_acknowledged_operation() {
    if !fuse_available() {
        return;
    }
    let seed = seed();
    eprintln!("crash loop seed {seed} (replay with CASKFS_SEED={seed})");
    let f = crash_loop(&CrashConfig {
        seed,
        cycles: 22,
        deadline: None,
        writers: 4,
        keys_per_writer: 12,
        load_ms: (80, 500),
    });
    eprintln!("{}", f.line("crash_loop"));
    assert!(f.crash_cycles >= 20);
    assert_eq!(f.lost, 0);
}
