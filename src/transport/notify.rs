//! Telling the kernel what changed behind its back, through the session's
//! notifier (which writes to /dev/fuse, whichever transport serves
//! requests).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, OnceLock, mpsc};
use std::time::Duration;

use fuser::{INodeNo, Notifier};
use log::{debug, warn};

use crate::fs::KernelCache;

/// How long a request waits for the kernel to drop a name or a cached
/// listing (see `off_thread`).
const NAME_WAIT: Duration = Duration::from_millis(100);

/// All are called from inside request handlers, before the reply that
/// lets the caller go on (a close, a write), so every later stat or
/// listing asks again; an attribute reply already on its way is discarded
/// by the kernel, whose attribute version this bumps. Only `fill` drops a
/// file's data pages, of an inode nobody has open, so none waits on a
/// read in flight: the cache of a value that changed is dropped by the
/// next open (`fs/page_cache.rs`), or by the kernel itself when it sees
/// the size change. What may wait on a request of this daemon's (a
/// folder's lock, a cached listing's pages) is done off the serving
/// thread (`off_thread`).
pub struct Invalidator(pub Arc<OnceLock<Notifier>>);

impl KernelCache for Invalidator {
    /// First drops every page and the attributes (pages past the value's
    /// end may hold an older, longer value's bytes), then stores the value.
    /// Nobody has the inode open, so no read in flight holds its pages.
    fn fill(&self, ino: u64, value: &[u8]) -> bool {
        let Some(n) = self.0.get() else {
            return false;
        };
        let filled = n
            .inval_inode(INodeNo(ino), 0, 0)
            .and_then(|()| n.store(INodeNo(ino), 0, value));
        // ENOENT: the kernel has forgotten the inode.
        if let Err(e) = &filled {
            debug!("filling the page cache of inode {ino}: {e}");
        }
        filled.is_ok()
    }

    fn attrs_changed(&self, ino: u64) {
        if let Some(n) = self.0.get()
            && let Err(e) = n.inval_inode(INodeNo(ino), -1, 0)
        {
            warn!("invalidating the attributes of inode {ino}: {e}");
        }
    }

    /// Listings are cached by the kernel (`opendir`), which drops them
    /// itself on every create, unlink and rename it sends; only a key that
    /// vanishes without one needs telling. Dropping the cached pages waits
    /// for their locks, which a listing may hold while it waits on this
    /// daemon: so, as for `entry_gone`, a thread of its own does it.
    fn listing_changed(&self, dir: u64) {
        self.off_thread("inval-listing", move |n| {
            if let Err(e) = n.inval_inode(INodeNo(dir), 0, 0) {
                warn!("invalidating the cached listing: {e}");
            }
        });
    }

    /// Dropping a name takes its folder's lock in the kernel, which an
    /// operation in that folder may hold while it waits on this daemon:
    /// so a thread of its own does it.
    fn entry_gone(&self, parent: u64, name: &[u8]) {
        let name = OsStr::from_bytes(name).to_os_string();
        self.off_thread("inval-entry", move |n| drop_name(n, parent, &name));
    }

    fn name_changed(&self, parent: u64, name: &[u8]) {
        if let Some(n) = self.0.get() {
            drop_name(n, parent, OsStr::from_bytes(name));
        }
    }
}

impl Invalidator {
    /// Runs `tell` on a thread of its own, which the caller (a request
    /// being served) waits for up to `NAME_WAIT`: should the kernel wait
    /// on a request of this daemon's first, the caller goes on and serves
    /// it, and the notice follows.
    fn off_thread(&self, name: &str, tell: impl FnOnce(&Notifier) + Send + 'static) {
        let Some(n) = self.0.get().cloned() else {
            return;
        };
        let (done, finished) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                tell(&n);
                let _ = done.send(());
            });
        match spawned {
            Ok(_) => {
                let _ = finished.recv_timeout(NAME_WAIT);
            }
            Err(e) => warn!("starting a thread to tell the kernel: {e}"),
        }
    }
}

/// Has the kernel forget `name` in folder `parent`.
fn drop_name(n: &Notifier, parent: u64, name: &OsStr) {
    // ENOENT: the kernel had no such name; nothing to drop.
    if let Err(e) = n.inval_entry(INodeNo(parent), name)
        && e.raw_os_error() != Some(libc::ENOENT)
    {
        warn!("invalidating the name {name:?}: {e}");
    }
}
