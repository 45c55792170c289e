//! Attack 4: a seeded random sequence of file operations through the mount,
//! several handles open at once, checked after every operation against a
//! model of the contract (close-to-open). The seed is printed, and on a
//! failure the message says how to replay it (`CASKFS_SEED=...`).

mod reliability_common;

use reliability_common::{Mount, fuse_available, random_io, seed};

#[test]
fn ten_thousand_random_operations_match_the_model() {
    if !fuse_available() {
        return;
    }
    let seed = seed();
    eprintln!("random I/O seed {seed} (replay with CASKFS_SEED={seed})");
    // Small segments: the run rolls segments and merges beside the I/O.
    let mut m = Mount::start(&["--max-segment-size", "64K"]);
    let n = random_io::run(&m.mnt, seed, 10_000);
    assert_eq!(n, 10_000);
    m.unmount();
    let (clean, report) = reliability_common::check(&m.data);
    assert!(clean, "{report}");
}
