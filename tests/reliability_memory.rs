//! Attack 7: 64 writers each keep a 16 MiB file open and half written. The
//! daemon must not hold those buffers in memory (past 1 MiB each they go
//! to the log as extents before the commit): its own memory (RssAnon, not
//! the log's mapped pages) stays well below what the writers hold. Then all 64 values commit
//! and read back exactly. `CASKFS_MEMORY_MIB` sets the file size (the long
//! run uses 200).

mod reliability_common;

use std::fs::File;
use std::io::{Read, Write};

use reliability_common::{Mount, close, crc32, fuse_available, pattern};

const WRITERS: usize = 64;
const CHUNK: usize = 1 << 20;

fn chunk(file: usize, i: usize) -> Vec<u8> {
    pattern(CHUNK, (file * 100_000 + i) as u64)
}

#[test]
fn sixty_four_half_written_files_do_not_live_in_the_daemons_memory() {
    if !fuse_available() {
        return;
    }
    let mib: usize = std::env::var("CASKFS_MEMORY_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    let mut m = Mount::start(&["--max-value-size", "1G"]);
    let baseline = m.anon();
    let mut files: Vec<File> = (0..WRITERS)
        .map(|w| File::create(m.path(&format!("big{w}"))).unwrap())
        .collect();
    let mut peak = 0;
    for (w, f) in files.iter_mut().enumerate() {
        for i in 0..mib / 2 {
            f.write_all(&chunk(w, i)).unwrap();
        }
        peak = peak.max(m.anon());
    }
    let held = (WRITERS * mib / 2) as u64 * CHUNK as u64;
    let limit = held / 4;
    eprintln!(
        "daemon RssAnon: {} MiB at start, {} MiB peak with {} MiB written and not yet committed",
        baseline >> 20,
        peak >> 20,
        held >> 20
    );
    for (w, mut f) in files.into_iter().enumerate() {
        for i in mib / 2..mib {
            f.write_all(&chunk(w, i)).unwrap();
        }
        close(f).unwrap();
    }
    for w in 0..WRITERS {
        let mut f = File::open(m.path(&format!("big{w}"))).unwrap();
        let mut buf = vec![0u8; CHUNK];
        for i in 0..mib {
            f.read_exact(&mut buf).unwrap();
            assert!(
                crc32(&buf) == crc32(&chunk(w, i)),
                "big{w}: MiB {i} differs"
            );
        }
        assert_eq!(f.read(&mut buf).unwrap(), 0, "big{w} is too long");
    }
    m.unmount();
    // Last, so that a failure here still shows the values committed.
    assert!(
        peak < baseline + limit,
        "daemon RssAnon {} MiB (from {} MiB) with {WRITERS} files of {mib} MiB half written ({} MiB held): \
         the write buffers live in memory; limit {} MiB",
        peak >> 20,
        baseline >> 20,
        held >> 20,
        limit >> 20
    );
}
