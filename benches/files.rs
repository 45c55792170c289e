//! Files benchmark (a plain program, `harness = false`): what a store of
//! many small files costs the daemon once it is open. N files (10 bytes,
//! 5-byte names) in 1,000 folders are written through the filesystem onto
//! the log and the store is closed; a fresh child process then opens it as
//! a mount does (the log with its hints, the directory map) and lists one
//! folder. It prints medians over several runs beside the targets of
//! issue 26.
//!
//!     cargo bench --bench files -- [--files N] [--runs R] [--dir PATH]
//!
//! Memory is the child's RssAnon after opening the log minus before it
//! (the index: its keys and slots), and after loading the filesystem
//! minus that (the directory map, nearly all of it). A file's name is
//! counted once apart, since it is the one cost no layout can drop.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use caskfs::backend::{Kv, Log};
use caskfs::engine::{Options, Store};
use caskfs::fs::{CaskFs, FsOptions, Owner};

mod common;
use common::{Flags, median, status_bytes};
const FOLDERS: u64 = 1000;
const NAME_LEN: u64 = 5;
const ROOT: u64 = 1;

struct Args {
    files: u64,
    runs: usize,
    dir: PathBuf,
    child: Option<PathBuf>,
}

fn parse_args() -> Args {
    let mut a = Args {
        files: 1_000_000,
        runs: 3,
        dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-files"),
        child: None,
    };
    let mut f = Flags::new("files [--files N] [--runs R] [--dir PATH]");
    while let Some(flag) = f.next_flag() {
        match flag.as_str() {
            "--files" => a.files = f.num().max(FOLDERS),
            "--runs" => a.runs = f.num().max(1) as usize,
            "--dir" => a.dir = PathBuf::from(f.value()),
            "--child" => a.child = Some(PathBuf::from(f.value())),
            _ => f.unknown(&flag),
        }
    }
    a
}

fn opts() -> FsOptions {
    FsOptions {
        owner: Owner { uid: 0, gid: 0 },
        read_only: false,
        cache_reads: false,
        shared: false,
        max_file_size: 1 << 40,
    }
}

fn open_store(dir: &Path) -> Store {
    let options = Options {
        compaction: false,
        ..Options::default()
    };
    Store::open(dir, options).expect("opening the store")
}

fn load(store: Store) -> CaskFs {
    let kv: Arc<dyn Kv> = Arc::new(Log::new(Arc::new(store)));
    CaskFs::load(kv, opts()).expect("loading the filesystem")
}

fn write_files(dir: &Path, files: u64) -> f64 {
    let _ = fs::remove_dir_all(dir);
    let fs = load(open_store(dir));
    let t = Instant::now();
    for i in 0..files {
        let path = format!("{:03}/f{:04}", i % FOLDERS, i / FOLDERS);
        fs.write_path(path.as_bytes(), &mut &b"ten bytes\n"[..])
            .expect("writing a file");
    }
    fs.sync().expect("sync");
    let secs = t.elapsed().as_secs_f64();
    fs.shutdown();
    drop(fs);
    files as f64 / secs
}

/// The heap that loading leaves free goes back to the kernel, as the
/// daemon's does after it loads.
fn trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Child mode: open, list one folder; print "open_secs index_bytes
/// dirmap_bytes ls_secs".
fn child(dir: &Path, files: u64) {
    let before = status_bytes("RssAnon");
    let t = Instant::now();
    let store = open_store(dir);
    trim();
    let index = status_bytes("RssAnon").saturating_sub(before);
    let fs = load(store);
    trim();
    let open_secs = t.elapsed().as_secs_f64();
    let dirmap = status_bytes("RssAnon").saturating_sub(before + index);
    let t = Instant::now();
    let folder = fs.lookup(ROOT, b"500", 1).expect("a folder").node;
    let fh = fs.opendir(folder).expect("opendir");
    let (entries, _) = fs.readdir(folder, fh, 0).expect("readdir");
    fs.releasedir(fh);
    let ls_secs = t.elapsed().as_secs_f64();
    assert_eq!(entries.len() as u64, 2 + files / FOLDERS, "listed");
    println!("{open_secs} {index} {dirmap} {ls_secs}");
}

struct Run {
    creates: f64,
    open_secs: f64,
    /// Bytes a file: the index's, the directory map's beyond the name.
    index: f64,
    dirmap: f64,
    ls_secs: f64,
}

fn one_run(a: &Args, dir: &Path) -> Run {
    let creates = write_files(dir, a.files);
    let out = Command::new(std::env::current_exe().expect("current exe"))
        .arg("--child")
        .arg(dir)
        .args(["--files", &a.files.to_string()])
        .output()
        .expect("running the child");
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let f: Vec<f64> = text
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    assert_eq!(f.len(), 4, "bad child output: {text}");
    let _ = fs::remove_dir_all(dir);
    Run {
        creates,
        open_secs: f[0],
        index: f[1] / a.files as f64,
        dirmap: f[2] / a.files as f64 - NAME_LEN as f64,
        ls_secs: f[3],
    }
}

fn main() {
    let a = parse_args();
    if let Some(dir) = &a.child {
        child(dir, a.files);
        return;
    }
    fs::create_dir_all(&a.dir).expect("creating the bench directory");
    println!(
        "caskfs files bench: {} files of 10 bytes, {NAME_LEN}-byte names, in {FOLDERS} folders, \
         {} runs, release build, in {}",
        a.files,
        a.runs,
        a.dir.display()
    );
    let mut runs = Vec::new();
    for r in 0..a.runs {
        let run = one_run(&a, &a.dir.join(format!("run{r}")));
        println!(
            "  run {}: {:.0} files/s written, open {:.3} s, {:.1} + {:.1} B a file, first ls {:.1} ms",
            r + 1,
            run.creates,
            run.open_secs,
            run.index,
            run.dirmap,
            run.ls_secs * 1e3
        );
        runs.push(run);
    }
    let _ = fs::remove_dir(&a.dir);
    let m = |f: &dyn Fn(&Run) -> f64| median(runs.iter().map(f).collect());
    let rows = [
        (
            "files written a second (no FUSE)",
            format!("{:.0}", m(&|r| r.creates)),
            "-",
        ),
        (
            "open: log with hints + directory map (s)",
            format!("{:.3}", m(&|r| r.open_secs)),
            "< 1",
        ),
        (
            "  the index's (its two keys)",
            format!("{:.1} B", m(&|r| r.index)),
            "-",
        ),
        (
            "  the directory map's, beyond the name",
            format!("{:.1} B", m(&|r| r.dirmap)),
            "-",
        ),
        (
            "memory a file beyond its name (RssAnon)",
            format!("{:.1} B", m(&|r| r.index + r.dirmap)),
            "<= 80 B",
        ),
        (
            "first listing of a folder (ms)",
            format!("{:.1}", m(&|r| r.ls_secs * 1e3)),
            "< 1000",
        ),
    ];
    println!();
    println!(
        "{:<44} {:>12}   target",
        format!("median of {} runs", a.runs),
        "measured"
    );
    println!("{}", "-".repeat(70));
    for (name, value, target) in rows {
        println!("{name:<44} {value:>12}   {target}");
    }
}
