//! A data directory read as the mount reads it, through the library:
//! shared by the tests that check what a store holds.

#![allow(dead_code, reason = "each test binary uses some of it")]

use std::path::Path;
use std::thread::sleep;
use std::time::Duration;

/// A data directory read as the mount reads it, through the library
/// (no mount): for checking what a store holds after crashes, cuts and
/// repairs.
pub struct Library {
    pub fs: Option<caskfs::fs::CaskFs>,
    store: Option<std::sync::Arc<caskfs::engine::Store>>,
}

impl Library {
    /// Opens `dir` (waiting for a daemon that is still exiting to let go
    /// of it), carrying it over if it is in the old layout; the error
    /// says why it could not be read.
    pub fn open(dir: &Path) -> Result<Library, String> {
        let opts = caskfs::engine::Options {
            create_if_missing: false,
            compaction: false,
            ..caskfs::engine::Options::default()
        };
        let mut tries = 0;
        let store = loop {
            match caskfs::engine::Store::open(dir, opts.clone()) {
                Err(caskfs::engine::Error::Locked { .. }) if tries < 300 => {
                    tries += 1;
                    sleep(Duration::from_millis(10));
                }
                r => break r.map_err(|e| e.to_string())?,
            }
        };
        let store = std::sync::Arc::new(store);
        // As a mount would: a store from before the schema is carried over.
        if caskfs::upgrade::needed(&store) {
            caskfs::upgrade::carry_over(&store).map_err(|e| e.to_string())?;
        }
        let kv = std::sync::Arc::new(caskfs::backend::Log::new(store.clone()));
        let fs = caskfs::fs::CaskFs::load(
            kv,
            caskfs::fs::FsOptions {
                owner: caskfs::fs::Owner::current(),
                read_only: false,
                cache_reads: false,
                shared: false,
                max_file_size: 1 << 30,
            },
        )
        .map_err(|e| e.to_string())?;
        Ok(Library {
            fs: Some(fs),
            store: Some(store),
        })
    }

    fn fs(&self) -> &caskfs::fs::CaskFs {
        self.fs.as_ref().expect("open")
    }

    /// The bytes of the file at `path`, `None` if there is none there.
    pub fn read(&self, path: &str) -> Result<Option<Vec<u8>>, String> {
        let mut out = Vec::new();
        match self.fs().read_path(path.as_bytes(), &mut |b| {
            out.extend_from_slice(b);
            Ok(())
        }) {
            Ok(()) => Ok(Some(out)),
            Err(caskfs::fs::Error::NotFound) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Every file's path (not folders), in order.
    pub fn files(&self) -> Vec<String> {
        self.fs()
            .list_path(b"", true)
            .expect("listing the store")
            .into_iter()
            .filter(|(_, kind)| *kind != caskfs::vocab::FileType::Directory)
            .map(|(p, _)| String::from_utf8_lossy(&p).into_owned())
            .collect()
    }

    pub fn write(&self, path: &str, bytes: &[u8]) -> Result<(), String> {
        self.fs()
            .write_path(path.as_bytes(), &mut &bytes[..])
            .map_err(|e| e.to_string())
    }

    /// Closes the store, as a clean unmount does.
    pub fn close(mut self) {
        if let Some(fs) = self.fs.take() {
            fs.shutdown();
        }
        if let Some(s) = self
            .store
            .take()
            .and_then(|s| std::sync::Arc::try_unwrap(s).ok())
        {
            s.close().expect("closing the store");
        }
    }
}
