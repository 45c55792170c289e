//! What the daemon keeps of an inode while something uses it: its
//! committed version, the versions readers and drafts pinned, what waits
//! to be freed until they let go, and what the kernel's page cache of it
//! may hold. An inode nothing uses is not kept (its record is read again).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{ArcMutexGuard, Mutex, RawMutex};

use super::page_cache::CacheState;
use crate::backend::Revision;
use crate::schema::Inode;

/// One committed state of an inode: its record. Numbers grow with every
/// version any inode gets, so an older version has a smaller one.
#[derive(Debug)]
pub struct Version {
    pub vno: u64,
    pub ino: u64,
    pub inode: Inode,
    /// The backend's revision the record was read or written at (0 where
    /// the backend keeps none).
    pub revision: Revision,
}

/// Keys to delete once nothing reads them any more, gathered from every
/// inode, deleted by the filesystem at the end of a request.
pub type Frees = Arc<Mutex<Vec<Vec<u8>>>>;

#[derive(Default)]
struct State {
    current: Option<Arc<Version>>,
    /// The latest revision at which another host changed the record: a
    /// version older than that is not current.
    changed_elsewhere: Revision,
    /// Versions pinned, and how many pins each.
    pins: BTreeMap<u64, usize>,
    /// Keys that versions before a number reach and later ones do not.
    waiting: Vec<(u64, Vec<Vec<u8>>)>,
    handles: usize,
    cache: CacheState,
    /// `current` is newer than the stored record (a folder's times, which
    /// are stored later): kept until stored.
    unstored: bool,
}

pub struct Live {
    pub ino: u64,
    /// Held by whatever changes the inode's record (a commit, a setattr, a
    /// link or unlink of it), so that one change never undoes another.
    lock: Arc<Mutex<()>>,
    state: Mutex<State>,
    frees: Frees,
}

/// A version kept readable while held: what it reaches is not freed.
pub struct Pin {
    live: Arc<Live>,
    version: Arc<Version>,
}

impl Pin {
    pub fn version(&self) -> &Arc<Version> {
        &self.version
    }

    pub fn inode(&self) -> &Inode {
        &self.version.inode
    }
}

impl Clone for Pin {
    fn clone(&self) -> Pin {
        self.live.pin(self.version.clone())
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        self.live.unpin(self.version.vno);
    }
}

/// The waiting keys no pinned version reaches any more.
fn release(st: &mut State) -> Vec<Vec<u8>> {
    let oldest = st.pins.keys().next().copied().unwrap_or(u64::MAX);
    let mut ready = Vec::new();
    st.waiting.retain_mut(|(at, keys)| {
        let free = oldest >= *at;
        if free {
            ready.append(keys);
        }
        !free
    });
    ready
}

impl Live {
    pub fn lock(&self) -> ArcMutexGuard<RawMutex, ()> {
        self.lock.lock_arc()
    }

    pub fn current(&self) -> Option<Arc<Version>> {
        self.state.lock().current.clone()
    }

    /// The inode's record changed (a commit, a setattr): `v` is current.
    pub fn set_current(&self, v: Arc<Version>) {
        let mut st = self.state.lock();
        if v.revision >= st.changed_elsewhere {
            st.current = Some(v);
            st.unstored = false;
        }
    }

    /// `v` is current, but not stored yet: kept (never dropped as idle)
    /// until a write of the record stores it.
    pub fn set_unstored(&self, v: Arc<Version>) {
        let mut st = self.state.lock();
        st.current = Some(v);
        st.unstored = true;
    }

    /// The current version, if it is newer than the stored record.
    pub fn unstored(&self) -> Option<Arc<Version>> {
        let st = self.state.lock();
        st.current.clone().filter(|_| st.unstored)
    }

    /// Forget the committed version: read it again next time (it was
    /// removed).
    pub fn forget_current(&self) {
        let mut st = self.state.lock();
        st.current = None;
        st.unstored = false;
    }

    /// Another host changed the record at `revision`: what is older goes,
    /// and no version older is made current after (a commit of this host
    /// that lost the race may come back later).
    pub fn changed_elsewhere(&self, revision: Revision) {
        let mut st = self.state.lock();
        st.changed_elsewhere = st.changed_elsewhere.max(revision);
        if st.current.as_ref().is_some_and(|c| c.revision < revision) {
            st.current = None;
        }
    }

    /// The committed version, pinned under the same lock that a commit's
    /// free looks at the pins under: no free can slip in between.
    pub fn pin_current(self: &Arc<Self>) -> Option<Pin> {
        let mut st = self.state.lock();
        let version = st.current.clone()?;
        *st.pins.entry(version.vno).or_default() += 1;
        Some(Pin {
            live: self.clone(),
            version,
        })
    }

    pub fn pin(self: &Arc<Self>, version: Arc<Version>) -> Pin {
        *self.state.lock().pins.entry(version.vno).or_default() += 1;
        Pin {
            live: self.clone(),
            version,
        }
    }

    /// Pins number `vno` before the version it will be is read: what a
    /// change committed after `vno` was taken frees waits for this pin,
    /// whichever record the read finds. `settle` or `unpin` follows.
    pub fn pin_ahead(&self, vno: u64) {
        *self.state.lock().pins.entry(vno).or_default() += 1;
    }

    /// The version read after `pin_ahead(version.vno)`, pinned; current
    /// unless a newer one is already.
    pub fn settle(self: &Arc<Self>, version: Arc<Version>) -> Pin {
        let mut st = self.state.lock();
        let newer = st.current.as_ref().is_none_or(|c| c.vno < version.vno);
        if newer && version.revision >= st.changed_elsewhere {
            st.current = Some(version.clone());
        }
        drop(st);
        Pin {
            live: self.clone(),
            version,
        }
    }

    pub fn unpin(&self, vno: u64) {
        let mut st = self.state.lock();
        if let Some(n) = st.pins.get_mut(&vno) {
            *n -= 1;
            if *n == 0 {
                st.pins.remove(&vno);
            }
        }
        let ready = release(&mut st);
        drop(st);
        if !ready.is_empty() {
            self.frees.lock().extend(ready);
        }
    }

    /// Takes `keys` back from what waits to be freed: a new version
    /// reaches them again.
    pub fn keep(&self, keys: &[Vec<u8>]) {
        if keys.is_empty() {
            return;
        }
        let keys: std::collections::HashSet<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        let mut st = self.state.lock();
        for (_, waiting) in &mut st.waiting {
            waiting.retain(|k| !keys.contains(k.as_slice()));
        }
    }

    /// `keys`, which versions before `vno` reach and `vno` does not: to
    /// delete now if no such version is pinned (returned), else once none
    /// is.
    pub fn free(&self, vno: u64, keys: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        let mut st = self.state.lock();
        if keys.is_empty() || st.pins.keys().next().is_none_or(|&oldest| oldest >= vno) {
            return keys;
        }
        st.waiting.push((vno, keys));
        Vec::new()
    }

    /// The keys waiting here to be freed (read by pinned versions).
    fn waiting(&self) -> Vec<Vec<u8>> {
        let st = self.state.lock();
        st.waiting
            .iter()
            .flat_map(|(_, keys)| keys.clone())
            .collect()
    }

    pub fn with_cache<R>(&self, f: impl FnOnce(&mut CacheState) -> R) -> R {
        f(&mut self.state.lock().cache)
    }

    pub fn open_handle(&self) {
        self.state.lock().handles += 1;
    }

    pub fn close_handle(&self) {
        let mut st = self.state.lock();
        st.handles = st.handles.saturating_sub(1);
    }

    /// Nothing holds it: no handle, pin or waiting free.
    fn idle(&self) -> bool {
        let st = self.state.lock();
        st.handles == 0 && st.pins.is_empty() && st.waiting.is_empty() && !st.unstored
    }
}

/// Idle inodes kept for what the page cache of each holds, at most.
const IDLE_KEPT: usize = 65_536;

/// The inodes in use, by number.
pub struct Lives {
    map: Mutex<HashMap<u64, Arc<Live>>>,
    frees: Frees,
    vnos: AtomicU64,
}

impl Lives {
    pub fn new(frees: Frees) -> Lives {
        Lives {
            map: Mutex::default(),
            frees,
            vnos: AtomicU64::new(1),
        }
    }

    /// A number for a new version.
    pub fn next_vno(&self) -> u64 {
        self.vnos.fetch_add(1, Ordering::Relaxed)
    }

    /// A new version of `ino`, written or read at `revision`.
    pub fn version(&self, ino: u64, inode: Inode, revision: Revision) -> Arc<Version> {
        Arc::new(Version {
            vno: self.next_vno(),
            ino,
            inode,
            revision,
        })
    }

    /// The inode's state, made if it has none.
    pub fn get(&self, ino: u64) -> Arc<Live> {
        let mut map = self.map.lock();
        if let Some(l) = map.get(&ino) {
            return l.clone();
        }
        if map.len() >= IDLE_KEPT {
            // A page cache state forgotten reads as stale: only costs the
            // next reader of that inode a read.
            map.retain(|_, l| Arc::strong_count(l) > 1 || !l.idle());
        }
        let l = Arc::new(Live {
            ino,
            lock: Arc::default(),
            state: Mutex::new(State {
                cache: CacheState::unknown(),
                ..State::default()
            }),
            frees: self.frees.clone(),
        });
        map.insert(ino, l.clone());
        l
    }

    /// The inode's state if it has one.
    pub fn find(&self, ino: u64) -> Option<Arc<Live>> {
        self.map.lock().get(&ino).cloned()
    }

    /// Every key an inode waits to free: pinned versions still read them.
    pub fn waiting(&self) -> Vec<Vec<u8>> {
        let lives: Vec<Arc<Live>> = self.map.lock().values().cloned().collect();
        lives.iter().flat_map(|l| l.waiting()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::FileType;

    #[test]
    fn frees_wait_for_older_pins() {
        let frees = Frees::default();
        let lives = Lives::new(frees.clone());
        let live = lives.get(5);
        let inode = Inode::new(FileType::Regular, 0o644, 0, 0, 0);
        let v1 = lives.version(5, inode.clone(), 0);
        let reader = live.pin(v1.clone());
        let v2 = lives.version(5, inode.clone(), 0);
        let draft = live.pin(v2.clone());
        let v3 = lives.version(5, inode, 0);
        // Keys v1 reached and v2 does not: the reader holds v1.
        assert!(live.free(v2.vno, vec![b"a".to_vec()]).is_empty());
        // Keys v2 reached and v3 does not: the draft holds v2.
        assert!(live.free(v3.vno, vec![b"b".to_vec()]).is_empty());
        drop(draft);
        assert!(frees.lock().is_empty(), "v1 still reads a");
        assert!(
            live.waiting().contains(&b"b".to_vec()),
            "b waits for v1 too (it came after it)"
        );
        drop(reader);
        let mut got = frees.lock().clone();
        got.sort();
        assert_eq!(got, vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(live.free(v3.vno, vec![b"c".to_vec()]), vec![b"c".to_vec()]);
    }
}
