//! How FUSE requests reach the filesystem and its answers go back: one
//! request layer, and the two transports that carry requests to it.
//!
//! - `request`: what each operation answers (counters, cache lifetimes,
//!   open flags, errno), whichever transport carried it
//! - `classic`: /dev/fuse, by the fuser crate (which also mounts and
//!   answers INIT for both)
//! - `uring`: FUSE over io_uring
//! - `notify`: telling the kernel what changed behind its back
//! - `counters`: what the daemon served, for `caskfs stats`
//! - `killed`: whether a waiting caller is being killed

mod classic;
mod counters;
mod killed;
mod notify;
mod request;
pub mod uring;

use std::sync::{Arc, OnceLock};

pub use classic::Classic;
pub use counters::Counters;
pub use request::Requests;

use crate::backend::Locks;
use crate::fs::CaskFs;

/// The request layer over `fs`, and the slot where the session's notifier
/// goes once the session is made: the filesystem tells the kernel through
/// it what changed behind its back. With `locks`, the daemon keeps the
/// file locks, which every host then sees.
pub fn requests(
    fs: Arc<CaskFs>,
    locks: Option<Arc<dyn Locks>>,
) -> (Arc<Requests>, Arc<OnceLock<fuser::Notifier>>) {
    let notifier = Arc::new(OnceLock::new());
    fs.set_kernel_cache(Box::new(notify::Invalidator(notifier.clone())));
    (Arc::new(Requests::new(fs, locks)), notifier)
}
