//! Which process a request comes from. The kernel names the calling
//! thread; descriptors are shared by a process's threads, so two thread
//! ids are compared by the thread group (process) they belong to.

use std::fs;
use std::sync::OnceLock;

/// The process of thread `tid`, read from `/proc`; `None` once the thread
/// is gone or for 0 (a request the kernel makes on its own behalf).
pub fn process_of(tid: u32) -> Option<u32> {
    if tid == 0 {
        return None;
    }
    let status = fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The thread that opened something, and its process once asked for:
/// most requests come from the opening thread itself, which needs no
/// look-up.
pub struct Opener {
    tid: u32,
    process: OnceLock<Option<u32>>,
}

impl Opener {
    pub fn new(tid: u32) -> Opener {
        Opener {
            tid,
            process: OnceLock::new(),
        }
    }

    /// Whether thread `tid` belongs to the opener's process.
    pub fn is(&self, tid: u32) -> bool {
        if tid == 0 || self.tid == 0 {
            return false;
        }
        if tid == self.tid {
            return true;
        }
        let mine = *self.process.get_or_init(|| process_of(self.tid));
        mine.is_some() && mine == process_of(tid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_of_one_process_match() {
        let me = std::process::id();
        let opener = Opener::new(me);
        assert_eq!(process_of(me), Some(me));
        assert!(opener.is(me));
        assert!(!opener.is(0));
        assert!(!Opener::new(0).is(me));
        // A thread of this process, asked while it is alive.
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            tx.send(unsafe { libc::gettid() as u32 }).unwrap();
            done_rx.recv().unwrap();
        });
        let tid = rx.recv().unwrap();
        assert!(opener.is(tid));
        done_tx.send(()).unwrap();
        t.join().unwrap();
        // pid 1 (init) is another process.
        assert!(!opener.is(1));
    }
}
