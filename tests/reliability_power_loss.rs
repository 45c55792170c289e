//! Attack 2: power-loss-shaped damage after durable writes (`--sync
//! always`, or fsync): the last segment cut at every byte position of its
//! last four records, and every byte of its last record flipped.

mod reliability_common;

use reliability_common::{fuse_available, power};

#[test]
fn cuts_and_flips_after_sync_always() {
    if !fuse_available() {
        return;
    }
    let f = power::scenario(&["--sync", "always"], false, 16);
    eprintln!("{}", f.line("power_loss_sync_always"));
}

#[test]
fn cuts_and_flips_after_fsync() {
    if !fuse_available() {
        return;
    }
    let f = power::scenario(&[], true, 16);
    eprintln!("{}", f.line("power_loss_fsync"));
}
