//! FUSE over io_uring: the transport the kernel offers when the fuse
//! module's `enable_uring` is on (Linux 6.14 and later). The kernel hands
//! a request to a queue of the CPU its caller runs on, whose threads
//! serve it and commit the reply in the same system call that waits for
//! the next one, after looking for it a few microseconds without
//! sleeping (`POLL`). The threads are not pinned to their queue's CPU: on
//! a two-vCPU VM, pinned threads made a single client's round trips
//! slower (the scheduler then moves the client between CPUs instead).
//!
//! fuser still mounts, answers INIT (asking for this transport, `classic.rs`)
//! and reads /dev/fuse, which keeps carrying FORGET and INTERRUPT; every
//! other request comes through the rings, served by `serve.rs`.
//!
//! - `abi`: the kernel's structures for this transport
//! - `serve`: decoding a request for the request layer, encoding its answer

mod abi;
mod serve;

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use io_uring::{IoUring, cqueue, opcode, squeue, types};
use log::{debug, error, info, warn};

use crate::transport::request::{Answer, Requests};

/// The largest request the kernel sends, and so each slot's payload
/// buffer: INIT caps writes and readahead at this (`classic.rs`), which the
/// classic transport's 1 MiB requests already are.
pub const MAX_REQUEST: u32 = 1 << 20;

const PARAMETER: &str = "/sys/module/fuse/parameters/enable_uring";

/// Why the kernel will not serve this mount through io_uring, if it will
/// not.
pub fn unavailable() -> Option<String> {
    match std::fs::read_to_string(PARAMETER) {
        Ok(v) if v.trim() == "Y" => None,
        Ok(_) => Some(format!(
            "the fuse module's io_uring is off (as root: echo Y > {PARAMETER})"
        )),
        Err(_) => Some(format!(
            "this kernel has no FUSE over io_uring ({PARAMETER} is missing; Linux 6.14 or later has it)"
        )),
    }
}

/// One request slot: the buffers the kernel writes a request into and
/// reads its reply from, registered with one ring.
struct Slot {
    header: Box<abi::RingHeader>,
    payload: Vec<u8>,
    /// What REGISTER points at; the kernel reads it during submission.
    iov: Box<[libc::iovec; 2]>,
    qid: u16,
}

// SAFETY: the raw pointers in `iov` point into the slot's own buffers,
// which move with it to the one thread that uses them.
unsafe impl Send for Slot {}

impl Slot {
    fn new(qid: u16) -> Slot {
        let mut header = Box::new(abi::RingHeader {
            in_out: [0; 128],
            op_in: [0; 128],
            ent: abi::RingEntInOut::default(),
        });
        let mut payload = vec![0u8; MAX_REQUEST as usize];
        let iov = Box::new([
            libc::iovec {
                iov_base: (&mut *header as *mut abi::RingHeader).cast(),
                iov_len: size_of::<abi::RingHeader>(),
            },
            libc::iovec {
                iov_base: payload.as_mut_ptr().cast(),
                iov_len: payload.len(),
            },
        ]);
        Slot {
            header,
            payload,
            iov,
            qid,
        }
    }

    fn command(&self, fd: i32, cmd: u32, commit_id: u64) -> squeue::Entry128 {
        let req = abi::CmdReq {
            commit_id,
            qid: self.qid,
            ..Default::default()
        };
        let mut data = [0u8; 80];
        data[..size_of::<abi::CmdReq>()].copy_from_slice(abi::bytes(&req));
        let sqe = opcode::UringCmd80::new(types::Fd(fd), cmd)
            .cmd(data)
            .addr(Some(self.iov.as_ptr() as u64))
            .build();
        with_len(sqe, self.iov.len() as u32)
    }
}

/// REGISTER takes its two buffers as an iovec array whose length is the
/// SQE's `len`, a field the io-uring crate's `UringCmd80` leaves at zero.
fn with_len(sqe: squeue::Entry128, len: u32) -> squeue::Entry128 {
    // `struct io_uring_sqe`: opcode u8, flags u8, ioprio u16, fd i32,
    // off u64, addr u64, then len u32.
    const LEN_AT: usize = 24;
    // SAFETY: `Entry128` is `repr(C)` over the kernel's 128-byte SQE, of
    // plain integers: it has no padding, so all 128 bytes are initialised.
    let mut raw: [u8; 128] = unsafe { std::mem::transmute(sqe) };
    raw[LEN_AT..LEN_AT + 4].copy_from_slice(&len.to_ne_bytes());
    // SAFETY: as above, any 128 bytes are a valid `Entry128`.
    unsafe { std::mem::transmute(raw) }
}

/// Rings and buffers made before mounting, so that once INIT has asked
/// for this transport nothing is left that could fail but REGISTER
/// itself, on whose failure the kernel falls back to /dev/fuse.
pub struct Prepared {
    queues: Vec<(IoUring<squeue::Entry128, cqueue::Entry>, Slot)>,
}

/// How many queues the kernel keeps: one per possible CPU. Registering
/// fewer would leave the ring never ready, and every request waiting.
fn possible_cpus() -> usize {
    std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|list| count_cpus(list.trim()))
        .unwrap_or_else(|| {
            // SAFETY: sysconf has no preconditions.
            let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
            usize::try_from(n).unwrap_or(1)
        })
        .max(1)
}

/// The CPUs in a kernel CPU list such as `0-3,8`.
fn count_cpus(list: &str) -> Option<usize> {
    list.split(',').try_fold(0, |n, range| {
        let (first, last) = range.split_once('-').unwrap_or((range, range));
        let (first, last): (usize, usize) = (first.parse().ok()?, last.parse().ok()?);
        Some(n + last.checked_sub(first)? + 1)
    })
}

/// Rings for `threads` threads spread over the CPUs' queues, at least one
/// each; a thread has one request slot, so a request that blocks holds up
/// only its own thread.
pub fn prepare(threads: usize) -> io::Result<Prepared> {
    let cpus = possible_cpus();
    let per_queue = threads.div_ceil(cpus).max(1);
    let mut queues = Vec::with_capacity(cpus * per_queue);
    for qid in 0..cpus {
        for _ in 0..per_queue {
            // Made here, used by the serving thread: disabled until that
            // thread enables it, which makes it the ring's one issuer.
            let ring = IoUring::builder()
                .setup_single_issuer()
                .setup_defer_taskrun()
                .setup_r_disabled()
                .build(2)?;
            let qid = u16::try_from(qid).map_err(io::Error::other)?;
            queues.push((ring, Slot::new(qid)));
        }
    }
    Ok(Prepared { queues })
}

/// The serving threads, once started.
pub struct Rings {
    threads: Vec<JoinHandle<()>>,
    serving: Arc<AtomicBool>,
}

impl Prepared {
    /// Registers every slot through `dev` (the session's /dev/fuse) and
    /// serves requests until the connection ends.
    pub fn start(self, dev: OwnedFd, requests: Arc<Requests>) -> io::Result<Rings> {
        let dev = Arc::new(dev);
        let serving = Arc::new(AtomicBool::new(true));
        let total = self.queues.len();
        let mut threads = Vec::with_capacity(total);
        for (ring, slot) in self.queues {
            let (dev, requests, serving) = (dev.clone(), requests.clone(), serving.clone());
            let t = std::thread::Builder::new()
                .name(format!("caskfs-uring-{}", slot.qid))
                .spawn(move || {
                    if let Err(e) = serve_slot(ring, slot, dev.as_raw_fd(), &requests, &serving) {
                        error!("io_uring transport: {e}");
                    }
                })?;
            threads.push(t);
        }
        info!("serving through io_uring: {total} slots");
        Ok(Rings { threads, serving })
    }
}

impl Rings {
    /// Whether requests come through the rings: until a registration
    /// fails, on which the kernel goes back to /dev/fuse.
    pub fn serving(&self) -> Arc<AtomicBool> {
        self.serving.clone()
    }

    /// Waits for the threads, which end with the connection; a bounded
    /// wait, so that a thread stuck in the kernel cannot hold up exit.
    pub fn join(self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        for t in self.threads {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                warn!("an io_uring thread is still waiting after unmount");
            }
        }
    }
}

/// How many refused replies a thread recovers from before it gives up.
const MAX_REFUSED: u32 = 16;

/// Errors of a command that mean the connection is over (unmounted, or
/// the daemon is going).
fn connection_ended(errno: i32) -> bool {
    matches!(
        errno,
        libc::ENOTCONN | libc::ECONNABORTED | libc::ECANCELED | libc::ENODEV
    )
}

fn serve_slot(
    mut ring: IoUring<squeue::Entry128, cqueue::Entry>,
    mut slot: Slot,
    dev: i32,
    requests: &Requests,
    serving: &AtomicBool,
) -> io::Result<()> {
    ring.submitter().register_enable_rings()?;
    let mut next = slot.command(dev, abi::CMD_REGISTER, 0);
    let mut registered = false;
    let mut refused = 0;
    let spin = online_cpus() > 1;
    loop {
        // SAFETY: the SQE points at the slot's buffers and iovec, which
        // live as long as the ring: until this function returns.
        unsafe { ring.submission().push(&next) }.map_err(io::Error::other)?;
        if registered && spin && ring.submit().is_ok() {
            poll_briefly(&mut ring);
        }
        let result = loop {
            // Interrupted or busy, the command may have gone in already: it
            // is not pushed again, only waited for.
            match ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
                    ) => {}
                Err(e) => return Err(e),
            }
            if let Some(cqe) = ring.completion().next() {
                break cqe.result();
            }
        };
        match result {
            0 => {}
            r if connection_ended(-r) => {
                debug!("io_uring queue {}: connection ended", slot.qid);
                return Ok(());
            }
            r if !registered => {
                serving.store(false, Ordering::Release);
                let e = io::Error::from_raw_os_error(-r);
                warn!("registering with the kernel failed ({e}); it serves through /dev/fuse");
                return Ok(());
            }
            // A commit the kernel refused leaves the slot with it: the
            // slot's buffers are registered again as a new one, lest the
            // queue lose a thread for good.
            r if refused < MAX_REFUSED => {
                refused += 1;
                let e = io::Error::from_raw_os_error(-r);
                error!(
                    "io_uring queue {}: a reply was refused ({e}); registering again",
                    slot.qid
                );
                next = slot.command(dev, abi::CMD_REGISTER, 0);
                continue;
            }
            r => return Err(io::Error::from_raw_os_error(-r)),
        }
        registered = true;
        let commit_id = slot.header.ent.commit_id;
        let answer = serve_one(&mut slot, requests);
        let reply = abi::OutHeader {
            len: (size_of::<abi::OutHeader>() + answer.unwrap_or(0)) as u32,
            error: answer.err().map_or(0, |e| -e),
            unique: commit_id,
        };
        let header = &mut *slot.header;
        header.in_out[..size_of::<abi::OutHeader>()].copy_from_slice(abi::bytes(&reply));
        header.ent.payload_sz = answer.unwrap_or(0) as u32;
        next = slot.command(dev, abi::CMD_COMMIT_AND_FETCH, commit_id);
    }
}

/// How long a thread looks for its next request before it sleeps: a
/// client's next request often follows within microseconds, and finding
/// it without sleeping spares two context switches, the bulk of a round
/// trip on a VM (reads and overwrites of small files ran about a third
/// faster on two vCPUs). Idle threads cost nothing: they sleep.
const POLL: Duration = Duration::from_micros(20);

/// `IORING_ENTER_GETEVENTS`: run the ring's completions that wait for
/// this thread (with `DEFER_TASKRUN`, requests arrive only then).
const ENTER_GETEVENTS: u32 = 1;

/// Looks for a request for up to `POLL`, without sleeping but yielding
/// the CPU to whatever else is runnable.
fn poll_briefly(ring: &mut IoUring<squeue::Entry128, cqueue::Entry>) {
    let since = Instant::now();
    while ring.completion().is_empty() && since.elapsed() < POLL {
        // SAFETY: nothing to submit and no argument: this only runs the
        // completions due to this thread. An error leaves the waiting to
        // the loop that sleeps.
        let got = unsafe {
            ring.submitter()
                .enter::<libc::sigset_t>(0, 0, ENTER_GETEVENTS, None)
        };
        if got.is_err() {
            return;
        }
        // A client waiting for this CPU gets it: polling must not delay
        // the very request it waits for (with two clients on two CPUs,
        // polling without yielding made their reads slower).
        // SAFETY: sched_yield has no preconditions.
        unsafe { libc::sched_yield() };
    }
}

/// On one CPU, a thread polling would only keep the client it answered
/// from running.
fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1)
}

/// Serves the request in `slot`; a panic answers EIO and is logged
/// rather than leaving the caller waiting forever.
fn serve_one(slot: &mut Slot, requests: &Requests) -> Answer<usize> {
    let header: abi::InHeader = abi::read(&slot.header.in_out).ok_or(libc::EIO)?;
    let req = serve::Request {
        header: &header,
        op_in: &slot.header.op_in,
        len: slot.header.ent.payload_sz as usize,
    };
    let payload = &mut slot.payload;
    catch_unwind(AssertUnwindSafe(|| serve::serve(requests, &req, payload))).unwrap_or_else(|_| {
        error!("io_uring: request {} panicked", header.opcode);
        Err(libc::EIO)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_count_every_cpu() {
        assert_eq!(count_cpus("0"), Some(1));
        assert_eq!(count_cpus("0-1"), Some(2));
        assert_eq!(count_cpus("0-3,8,10-11"), Some(7));
        assert_eq!(count_cpus("3-1"), None);
        assert_eq!(count_cpus(""), None);
    }

    #[test]
    fn register_names_both_buffers() {
        let slot = Slot::new(1);
        // SAFETY: an SQE is 128 bytes of plain integers (see `with_len`).
        let sqe: [u8; 128] = unsafe { std::mem::transmute(slot.command(7, abi::CMD_REGISTER, 0)) };
        assert_eq!(&sqe[4..8], &7i32.to_ne_bytes(), "fd");
        assert_eq!(&sqe[8..12], &abi::CMD_REGISTER.to_ne_bytes(), "cmd_op");
        assert_eq!(
            &sqe[16..24],
            &(slot.iov.as_ptr() as u64).to_ne_bytes(),
            "addr"
        );
        assert_eq!(&sqe[24..28], &2u32.to_ne_bytes(), "len");
        let req: abi::CmdReq = abi::read(&sqe[48..]).unwrap();
        assert_eq!((req.qid, req.commit_id), (1, 0));
    }
}
