//! Whether a caller waiting on the daemon is being killed: the kernel
//! lets a fatal signal end a FUSE request's wait only once the daemon
//! answers (it sends no FUSE_INTERRUPT here, as fuser refuses them), so a
//! request that waits long (a blocking lock) looks for itself.

/// SIGKILL's bit in `/proc/*/status`'s pending masks (signal 9).
const SIGKILL_BIT: u64 = 1 << (libc::SIGKILL - 1);

/// Whether thread `tid` (a request's caller) has SIGKILL pending: the
/// kernel marks every thread of a process that a fatal signal ends so.
/// A thread gone counts as killed; a status that cannot be read, not.
pub fn fatal_signal_pending(tid: u32) -> bool {
    let status = match std::fs::read_to_string(format!("/proc/{tid}/status")) {
        Ok(s) => s,
        Err(e) => return e.kind() == std::io::ErrorKind::NotFound,
    };
    status.lines().any(|line| {
        let mask = line
            .strip_prefix("SigPnd:")
            .or_else(|| line.strip_prefix("ShdPnd:"));
        mask.and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .is_some_and(|m| m & SIGKILL_BIT != 0)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_live_thread_without_sigkill_is_not_killed() {
        assert!(!super::fatal_signal_pending(std::process::id()));
    }
}
