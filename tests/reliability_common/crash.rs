//! The crash loop: concurrent writers (create, overwrite, append, rename,
//! delete; small values, values larger than a segment's remaining space,
//! values of several MiB) and readers on a mount, killed with SIGKILL at a
//! random moment (sometimes just after asking for a merge), then remounted
//! and checked against the log of acknowledged operations.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::{Figures, Mount, Rng, check, piece, pieces_ok, tail};

pub struct CrashConfig {
    pub seed: u64,
    /// Stop after this many cycles…
    pub cycles: u64,
    /// …or at this time, whichever comes first.
    pub deadline: Option<Instant>,
    pub writers: usize,
    pub keys_per_writer: usize,
    /// Load before each kill, in ms: chosen uniformly in this range.
    pub load_ms: (u64, u64),
    /// Read through the page cache (the default), while the writers
    /// replace and append to the values the readers read; else direct
    /// (`--no-cache-reads`).
    pub cache_reads: bool,
}

type State = BTreeMap<String, Option<Vec<u8>>>;

/// An operation whose outcome was not acknowledged when the daemon died:
/// the keys it touches must show one of these joint states.
#[derive(Clone, Debug)]
struct InFlight {
    what: String,
    keys: Vec<String>,
    outcomes: Vec<Vec<Option<Vec<u8>>>>,
}

struct WriterResult {
    state: State,
    in_flight: Option<InFlight>,
    acked: u64,
    /// The last acknowledged operations, for the failure message.
    history: Vec<String>,
    /// An error seen before the kill: a bug.
    failure: Option<String>,
}

fn show(v: &Option<Vec<u8>>) -> String {
    match v {
        None => "absent".into(),
        Some(b) => format!("{} bytes (crc {:08x})", b.len(), super::crc32(b)),
    }
}

fn value_len(rng: &mut Rng) -> usize {
    match rng.below(100) {
        0..=2 => rng.range(2 << 20, 4 << 20) as usize,
        3..=17 => rng.range(100 << 10, 250 << 10) as usize,
        _ => rng.range(0, 4096) as usize,
    }
}

fn write_file(
    path: &std::path::Path,
    bytes: &[u8],
    append: bool,
    sync: bool,
) -> std::io::Result<()> {
    let mut f = if append {
        OpenOptions::new().append(true).create(true).open(path)?
    } else {
        fs::File::create(path)?
    };
    f.write_all(bytes)?;
    if sync {
        f.sync_all()?;
    }
    super::close(f)
}

/// One writer: owns its keys, so its model is exact.
fn writer(
    m_mnt: std::path::PathBuf,
    mut state: State,
    seed: u64,
    killed: Arc<AtomicBool>,
) -> WriterResult {
    let mut rng = Rng::new(seed);
    let keys: Vec<String> = state.keys().cloned().collect();
    let mut acked = 0;
    let mut history = Vec::new();
    loop {
        let a = keys[rng.below(keys.len() as u64) as usize].clone();
        let old_a = state[&a].clone();
        let choice = rng.below(100);
        let (in_flight, result) = match choice {
            0..=44 | 95..=99 => {
                let len = value_len(&mut rng);
                let new = piece(&mut rng, len);
                let sync = choice >= 95;
                let f = InFlight {
                    what: format!("write {a} ({} bytes, fsync {sync})", new.len()),
                    keys: vec![a.clone()],
                    outcomes: vec![vec![old_a.clone()], vec![Some(new.clone())]],
                };
                let r = write_file(&m_mnt.join(&a), &new, false, sync);
                (f, r.map(|_| vec![(a.clone(), Some(new))]))
            }
            45..=64 => {
                let len = rng.range(0, 3000) as usize;
                let add = piece(&mut rng, len);
                let mut new = old_a.clone().unwrap_or_default();
                new.extend_from_slice(&add);
                let f = InFlight {
                    what: format!("append to {a}"),
                    keys: vec![a.clone()],
                    outcomes: vec![vec![old_a.clone()], vec![Some(new.clone())]],
                };
                let r = write_file(&m_mnt.join(&a), &add, true, false);
                (f, r.map(|_| vec![(a.clone(), Some(new))]))
            }
            65..=79 if old_a.is_some() => {
                let b = keys[rng.below(keys.len() as u64) as usize].clone();
                let old_b = state[&b].clone();
                if a == b {
                    continue;
                }
                let f = InFlight {
                    what: format!("rename {a} -> {b}"),
                    keys: vec![a.clone(), b.clone()],
                    outcomes: vec![
                        vec![old_a.clone(), old_b.clone()],
                        vec![None, old_a.clone()],
                    ],
                };
                let r = fs::rename(m_mnt.join(&a), m_mnt.join(&b));
                (
                    f,
                    r.map(|_| vec![(a.clone(), None), (b.clone(), old_a.clone())]),
                )
            }
            80..=94 if old_a.is_some() => {
                let f = InFlight {
                    what: format!("rm {a}"),
                    keys: vec![a.clone()],
                    outcomes: vec![vec![old_a.clone()], vec![None]],
                };
                let r = fs::remove_file(m_mnt.join(&a));
                (f, r.map(|_| vec![(a.clone(), None)]))
            }
            _ => continue,
        };
        match result {
            Ok(changes) => {
                for (k, v) in changes {
                    state.insert(k, v);
                }
                acked += 1;
                if history.len() >= 40 {
                    history.remove(0);
                }
                history.push(in_flight.what.clone());
            }
            Err(e) => {
                let failure = (!killed.load(Ordering::SeqCst))
                    .then(|| format!("{} failed before the kill: {e}", in_flight.what));
                return WriterResult {
                    state,
                    in_flight: Some(in_flight),
                    acked,
                    history,
                    failure,
                };
            }
        }
        if killed.load(Ordering::SeqCst) {
            return WriterResult {
                state,
                in_flight: None,
                acked,
                history,
                failure: None,
            };
        }
    }
}

/// A reader: every value it reads must be whole pieces.
fn reader(
    mnt: std::path::PathBuf,
    keys: Vec<String>,
    seed: u64,
    killed: Arc<AtomicBool>,
    reads: Arc<AtomicU64>,
) -> Option<String> {
    let mut rng = Rng::new(seed);
    while !killed.load(Ordering::SeqCst) {
        let k = &keys[rng.below(keys.len() as u64) as usize];
        match fs::read(mnt.join(k)) {
            Ok(v) if pieces_ok(&v) => {
                reads.fetch_add(1, Ordering::Relaxed);
            }
            Ok(v) if !killed.load(Ordering::SeqCst) => {
                return Some(format!(
                    "read of {k} gave a torn value of {} bytes",
                    v.len()
                ));
            }
            Err(e)
                if !killed.load(Ordering::SeqCst)
                    && !matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ESTALE)) =>
            {
                return Some(format!("read of {k} failed before the kill: {e}"));
            }
            _ => {}
        }
    }
    None
}

/// Reads every key and compares with the acknowledged state; updates the
/// state to what the store holds. Returns a description of any difference.
fn verify(m: &Mount, results: &mut [WriterResult]) -> Result<u64, String> {
    let mut verified = 0;
    let mut expect_live = BTreeSet::new();
    for r in results.iter_mut() {
        let mut actual: State = BTreeMap::new();
        for k in r.state.keys() {
            let v = match fs::read(m.path(k)) {
                Ok(v) => Some(v),
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
                Err(e) => return Err(format!("reading {k} after remount: {e}")),
            };
            actual.insert(k.clone(), v);
        }
        let touched: BTreeSet<&String> = r.in_flight.iter().flat_map(|f| &f.keys).collect();
        for (k, want) in &r.state {
            if !touched.contains(k) && actual[k] != *want {
                return Err(format!(
                    "{k}: acknowledged {} but found {}; in flight: {:?}; last acknowledged: {:#?}",
                    show(want),
                    show(&actual[k]),
                    r.in_flight.as_ref().map(|f| &f.what),
                    r.history
                ));
            }
            verified += 1;
        }
        if let Some(f) = &r.in_flight {
            let got: Vec<Option<Vec<u8>>> = f.keys.iter().map(|k| actual[k].clone()).collect();
            if !f.outcomes.contains(&got) {
                return Err(format!(
                    "in-flight {}: found {:?}, expected one of {:?}",
                    f.what,
                    got.iter().map(show).collect::<Vec<_>>(),
                    f.outcomes
                        .iter()
                        .map(|o| o.iter().map(show).collect::<Vec<_>>())
                        .collect::<Vec<_>>()
                ));
            }
        }
        for (k, v) in &actual {
            if v.is_some() {
                expect_live.insert(k.clone());
            }
        }
        r.state = actual;
        r.in_flight = None;
    }
    let listed: BTreeSet<String> = fs::read_dir(&m.mnt)
        .map_err(|e| format!("ls: {e}"))?
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    if listed != expect_live {
        return Err(format!(
            "ls shows {:?}, the keys holding values are {:?}",
            listed
                .symmetric_difference(&expect_live)
                .collect::<Vec<_>>(),
            expect_live.len()
        ));
    }
    Ok(verified)
}

/// Runs the crash loop; panics (naming the seed) on any loss.
pub fn crash_loop(cfg: &CrashConfig) -> Figures {
    let mut rng = Rng::new(cfg.seed);
    let mut args = vec!["--max-segment-size", "256K"];
    args.push(if cfg.cache_reads {
        "--cache-reads"
    } else {
        "--no-cache-reads"
    });
    let mut m = Mount::start(&args);
    let mut states: Vec<WriterResult> = (0..cfg.writers)
        .map(|w| WriterResult {
            state: (0..cfg.keys_per_writer)
                .map(|i| (format!("w{w}-k{i}"), None))
                .collect(),
            in_flight: None,
            acked: 0,
            history: Vec::new(),
            failure: None,
        })
        .collect();
    let all_keys: Vec<String> = states
        .iter()
        .flat_map(|s| s.state.keys().cloned())
        .collect();
    let mut figures = Figures::default();
    let mut cycle = 0;
    while cycle < cfg.cycles && cfg.deadline.is_none_or(|d| Instant::now() < d) {
        let killed = Arc::new(AtomicBool::new(false));
        let reads = Arc::new(AtomicU64::new(0));
        let writers: Vec<_> = states
            .drain(..)
            .map(|s| {
                let (mnt, killed, seed) = (m.mnt.clone(), killed.clone(), rng.next());
                thread::spawn(move || writer(mnt, s.state, seed, killed))
            })
            .collect();
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (mnt, keys, killed, reads) = (
                    m.mnt.clone(),
                    all_keys.clone(),
                    killed.clone(),
                    reads.clone(),
                );
                let seed = rng.next();
                thread::spawn(move || reader(mnt, keys, seed, killed, reads))
            })
            .collect();
        thread::sleep(Duration::from_millis(
            rng.range(cfg.load_ms.0, cfg.load_ms.1),
        ));
        let during_merge = rng.chance(35);
        if during_merge {
            m.signal(libc::SIGUSR1);
            thread::sleep(Duration::from_millis(rng.below(40)));
        }
        killed.store(true, Ordering::SeqCst);
        m.crash();
        states = writers.into_iter().map(|t| t.join().unwrap()).collect();
        for r in readers {
            if let Some(f) = r.join().unwrap() {
                panic!(
                    "seed {}: cycle {cycle}: {f}\n{}",
                    cfg.seed,
                    tail(&m.log(), 3000)
                );
            }
        }
        for s in &states {
            if let Some(f) = &s.failure {
                panic!(
                    "seed {}: cycle {cycle}: {f}\n{}",
                    cfg.seed,
                    tail(&m.log(), 3000)
                );
            }
        }
        let (clean, report) = check(&m.data);
        assert!(
            clean,
            "seed {}: cycle {cycle}: caskfs check after kill -9:\n{report}",
            cfg.seed
        );
        let log = m.take_log();
        assert!(
            !log.contains("panicked"),
            "seed {}: daemon panicked:\n{log}",
            cfg.seed
        );
        m.args = if rng.chance(30) {
            vec![
                "--max-segment-size".into(),
                "256K".into(),
                "--sync".into(),
                "always".into(),
            ]
        } else {
            vec!["--max-segment-size".into(), "256K".into()]
        };
        m.mount();
        match verify(&m, &mut states) {
            Ok(_keys_checked) => {}
            Err(e) => {
                eprintln!("FIGURES crash_loss lost=1");
                panic!(
                    "seed {}: cycle {cycle} (kill during merge: {during_merge}): {e}\ndaemon log:\n{}",
                    cfg.seed,
                    tail(&m.log(), 3000)
                );
            }
        }
        figures.acked_verified += states.iter().map(|s| s.acked).sum::<u64>();
        for s in &mut states {
            s.acked = 0;
        }
        cycle += 1;
        figures.crash_cycles += 1;
    }
    m.unmount();
    let (clean, report) = check(&m.data);
    assert!(clean, "caskfs check after the crash loop:\n{report}");
    figures
}
