//! Attack 4: seeded random sequences of file operations through the mount,
//! several descriptors open at once, checked after every operation against
//! a model of the contract (data read, and the sizes `fstat`, `stat` and
//! `SEEK_END` show). Five seeds of 20,000 operations, each on a fresh
//! mount, three reading through the page cache and two direct; the seeds
//! are printed, and a failure says how to replay one (`CASKFS_SEED=...`
//! runs that seed alone, through the page cache).

mod reliability_common;

use reliability_common::{Mount, Rng, fuse_available, random_io, seed};

const RUNS: u64 = 5;
const OPS: u64 = 20_000;

#[test]
fn a_hundred_thousand_random_operations_match_the_model() {
    if !fuse_available() {
        return;
    }
    let seeds: Vec<u64> = match std::env::var("CASKFS_SEED") {
        Ok(_) => vec![seed()],
        Err(_) => {
            let mut rng = Rng::new(seed());
            (0..RUNS).map(|_| rng.next()).collect()
        }
    };
    let mut total = 0;
    for (i, s) in seeds.into_iter().enumerate() {
        // Small segments: the run rolls segments and merges beside the I/O.
        // Every other run reads direct, the others through the page cache.
        let mut args = vec!["--max-segment-size", "64K"];
        if i % 2 == 1 {
            args.push("--no-cache-reads");
        }
        eprintln!("random I/O seed {s} (replay with CASKFS_SEED={s}), {args:?}");
        let started = std::time::Instant::now();
        let mut m = Mount::start(&args);
        total += random_io::run(&m.mnt, s, OPS, m.reads_cached());
        m.unmount();
        let (clean, report) = reliability_common::check(&m.data);
        assert!(clean, "{report}");
        eprintln!(
            "seed {s}: {OPS} operations checked in {:?}",
            started.elapsed()
        );
    }
    if std::env::var("CASKFS_SEED").is_err() {
        assert_eq!(total, RUNS * OPS);
    }
}
