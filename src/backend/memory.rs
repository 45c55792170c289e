//! Keys in a map in memory: the filesystem's semantics tested without a
//! disk or a mount. It checks compares as a shared backend does, can take
//! the limits of one (etcd's value and batch sizes), and can stop
//! accepting writes after a given number of batches, as a crash would, so
//! that a test can "reopen" what was written before it.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;

use super::{Batch, Compare, Error, Kv, Op, Pinned, Result, Revision, ScanVisit, Value};
use crate::vocab::StatFs;

#[derive(Clone)]
struct Stored {
    value: Arc<[u8]>,
    revision: Revision,
}

#[derive(Default)]
struct Map {
    keys: BTreeMap<Vec<u8>, Stored>,
    revision: Revision,
}

pub struct Memory {
    map: Arc<RwLock<Map>>,
    max_value_len: u64,
    max_batch_ops: usize,
    /// Batches still accepted before the "crash"; `u64::MAX`: no crash.
    writes_left: AtomicU64,
    /// Batches written, also by the store this one was restarted from.
    writes: AtomicU64,
}

impl Default for Memory {
    fn default() -> Self {
        Memory {
            map: Arc::default(),
            max_value_len: 1 << 30,
            max_batch_ops: usize::MAX,
            writes_left: AtomicU64::new(u64::MAX),
            writes: AtomicU64::new(0),
        }
    }
}

impl Memory {
    /// With a shared backend's limits.
    pub fn with_limits(max_value_len: u64, max_batch_ops: usize) -> Memory {
        Memory {
            max_value_len,
            max_batch_ops,
            ..Memory::default()
        }
    }

    /// Accepts `n` more batches (each change of an in-order batch counts
    /// as one), then refuses every write, as if the process had died there.
    pub fn crash_after(&self, n: u64) {
        self.writes_left.store(n, Ordering::SeqCst);
    }

    /// What a process starting after the crash finds: the same keys, and
    /// writes accepted again.
    pub fn restart(&self) -> Memory {
        let map = self.map.read();
        Memory {
            map: Arc::new(RwLock::new(Map {
                keys: map.keys.clone(),
                revision: map.revision,
            })),
            max_value_len: self.max_value_len,
            max_batch_ops: self.max_batch_ops,
            writes_left: AtomicU64::new(u64::MAX),
            writes: AtomicU64::new(self.writes()),
        }
    }

    /// How many batches were written (in-order ones by their changes).
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// Every key and value, for comparing stores in tests.
    pub fn dump(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let map = self.map.read();
        map.keys
            .iter()
            .map(|(k, s)| (k.clone(), s.value.to_vec()))
            .collect()
    }

    fn take_write(&self) -> Result<()> {
        let taken =
            self.writes_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
                    0 => None,
                    u64::MAX => Some(u64::MAX),
                    n => Some(n - 1),
                });
        taken.map(|_| ()).map_err(|_| Error::Other {
            errno: libc::EIO,
            why: "the memory store crashed (a test's injected crash)".into(),
        })
    }
}

struct MemValue(Stored);

impl Pinned for MemValue {
    fn len(&self) -> u64 {
        self.0.value.len() as u64
    }

    fn bytes(&self, offset: u64, len: usize) -> Result<Cow<'_, [u8]>> {
        let v = &self.0.value;
        let start = (offset.min(v.len() as u64)) as usize;
        let end = start.saturating_add(len).min(v.len());
        Ok(Cow::Borrowed(&v[start..end]))
    }

    fn revision(&self) -> Revision {
        self.0.revision
    }
}

impl Kv for Memory {
    fn get(&self, key: &[u8]) -> Result<Option<Value>> {
        let map = self.map.read();
        Ok(map.keys.get(key).map(|s| Value::new(MemValue(s.clone()))))
    }

    fn write(&self, batch: Batch) -> Result<Revision> {
        if batch.ops.len() > self.max_batch_ops {
            return Err(Error::TooBig(format!(
                "a batch of {} changes (at most {})",
                batch.ops.len(),
                self.max_batch_ops
            )));
        }
        for op in &batch.ops {
            if let Op::Put { value, .. } = op
                && value.len() as u64 > self.max_value_len
            {
                return Err(Error::TooBig(format!("a value of {} bytes", value.len())));
            }
        }
        let mut map = self.map.write();
        for c in &batch.compares {
            let holds = match c {
                Compare::Absent(k) => !map.keys.contains_key(k),
                Compare::Unchanged(k, rev) => map.keys.get(k).map(|s| s.revision) == Some(*rev),
            };
            if !holds {
                return Err(Error::Conflict);
            }
        }
        // A batch that may land in order is written op by op, as the log
        // writes it, so an injected crash can cut it between two.
        let pieces: Vec<Vec<Op>> = match batch.in_order {
            true => batch.ops.into_iter().map(|op| vec![op]).collect(),
            false => vec![batch.ops],
        };
        let mut revision = map.revision;
        for ops in pieces {
            self.take_write()?;
            self.writes.fetch_add(1, Ordering::SeqCst);
            map.revision += 1;
            revision = map.revision;
            for op in ops {
                match op {
                    Op::Put { key, value } => {
                        let value = value.into();
                        map.keys.insert(key, Stored { value, revision });
                    }
                    Op::Delete { key } => {
                        map.keys.remove(&key);
                    }
                }
            }
        }
        Ok(revision)
    }

    fn scan(&self, prefix: &[u8], each: &mut ScanVisit) -> Result<()> {
        let map = self.map.read();
        for (k, s) in map.keys.range(prefix.to_vec()..) {
            if !k.starts_with(prefix) {
                break;
            }
            each(k, Some(&s.value));
        }
        Ok(())
    }

    fn keys(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
        let map = self.map.read();
        Ok(map
            .keys
            .range(prefix.to_vec()..)
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }

    fn max_value_len(&self) -> u64 {
        self.max_value_len
    }

    fn max_batch_ops(&self) -> usize {
        self.max_batch_ops
    }

    fn room(&self, _len: u64) -> Result<()> {
        Ok(())
    }

    fn space(&self) -> Result<StatFs> {
        Ok(StatFs {
            blocks: 1 << 20,
            bfree: 1 << 20,
            bavail: 1 << 20,
            bsize: 4096,
            frsize: 4096,
            ..StatFs::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(ops: &[(&[u8], Option<&[u8]>)]) -> Batch {
        let mut b = Batch::default();
        for (k, v) in ops {
            match v {
                Some(v) => b.put(k.to_vec(), v.to_vec()),
                None => b.delete(k.to_vec()),
            };
        }
        b
    }

    #[test]
    fn compares_guard_batches_whole() {
        let m = Memory::default();
        m.write(batch(&[(b"a", Some(b"1"))])).unwrap();
        let rev = m.get(b"a").unwrap().unwrap().revision();
        let mut b = batch(&[(b"a", Some(b"2")), (b"b", Some(b"x"))]);
        b.expect(Compare::Unchanged(b"a".to_vec(), rev));
        m.write(b.clone()).unwrap();
        assert!(matches!(m.write(b), Err(Error::Conflict)), "a is newer now");
        let mut c = batch(&[(b"c", Some(b"y"))]);
        c.expect(Compare::Absent(b"b".to_vec()));
        assert!(matches!(m.write(c), Err(Error::Conflict)));
        assert_eq!(m.get(b"c").unwrap().map(|v| v.len()), None);
        assert_eq!(m.get(b"a").unwrap().unwrap().to_vec().unwrap(), b"2");
    }

    #[test]
    fn a_crash_keeps_what_came_before_it() {
        let m = Memory::default();
        m.crash_after(1);
        m.write(batch(&[(b"a", Some(b"1"))])).unwrap();
        assert!(m.write(batch(&[(b"b", Some(b"2"))])).is_err());
        let after = m.restart();
        assert_eq!(after.dump().len(), 1);
        after.write(batch(&[(b"b", Some(b"2"))])).unwrap();
        let mut seen = Vec::new();
        after
            .scan(b"", &mut |k, v| {
                seen.push((k.to_vec(), v.map(<[u8]>::to_vec)))
            })
            .unwrap();
        assert_eq!(seen.len(), 2);
    }

    #[test]
    fn a_pinned_value_outlives_its_key() {
        let m = Memory::default();
        m.write(batch(&[(b"k", Some(b"old"))])).unwrap();
        let v = m.get(b"k").unwrap().unwrap();
        m.write(batch(&[(b"k", None)])).unwrap();
        assert_eq!(v.to_vec().unwrap(), b"old");
        assert!(m.get(b"k").unwrap().is_none());
    }
}
