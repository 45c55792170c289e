//! One process owns a data directory: an exclusive `flock` on its LOCK file,
//! which also records the owner's pid so that a second opener can name it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use super::error::{Error, Result};
use super::format::LOCK_FILE;

/// Held for as long as the store is open; the lock goes with the file.
pub struct DirLock {
    _file: File,
}

impl DirLock {
    pub fn acquire(dir: &Path) -> Result<DirLock> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        if !lock(&file, &path)? {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "holder unknown".to_string(),
                pid => format!("pid {pid}"),
            };
            return Err(Error::Locked {
                dir: dir.to_path_buf(),
                holder,
            });
        }
        let pid = format!("{}\n", std::process::id());
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| file.write_all(pid.as_bytes()))
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        Ok(DirLock { _file: file })
    }
}

/// How long a lock held by this very process is waited for: a child it
/// forks (to run a command) holds every descriptor, the lock's too, until
/// it calls exec, which closes them.
const OWN_FORK_WAIT: Duration = Duration::from_millis(200);

/// Takes the lock on `file`; false if another holds it.
fn lock(file: &File, path: &Path) -> Result<bool> {
    let deadline = Instant::now() + OWN_FORK_WAIT;
    loop {
        // SAFETY: flock on a descriptor we own; no memory is involved.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(true);
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(Error::io(format!("locking {}", path.display()), err));
        }
        let ours = std::fs::read_to_string(path)
            .is_ok_and(|pid| pid.trim() == std::process::id().to_string());
        if !ours || Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
