//! POSIX details that standard tools check: the sizes a writing process
//! sees (`fstat`, `stat`, `SEEK_END`) match what it reads, other processes
//! see committed sizes only, and `tail -f` follows a key that grows.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Mount;

/// Another process: a shell started before the test opens anything, so
/// it holds none of the test's descriptors (a child that inherits one
/// closes it at exec, and every close commits).
struct Shell {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Shell {
    fn start(m: &Mount) -> Shell {
        let mut child = Command::new("sh")
            .current_dir(m.root.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let input = child.stdin.take().unwrap();
        let output = BufReader::new(child.stdout.take().unwrap());
        Shell {
            child,
            input,
            output,
        }
    }

    /// Runs `cmd` and returns its output up to a marker line.
    fn run(&mut self, cmd: &str) -> String {
        writeln!(self.input, "{cmd}; echo; echo '--end--'").unwrap();
        let mut out = String::new();
        loop {
            let mut line = String::new();
            assert!(self.output.read_line(&mut line).unwrap() > 0, "shell died");
            if line == "--end--\n" {
                return out.trim_end_matches('\n').to_string();
            }
            out.push_str(&line);
        }
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sizes(f: &mut File, path: &std::path::Path) -> (u64, u64, u64) {
    let fstat = f.metadata().unwrap().len();
    let stat = fs::metadata(path).unwrap().len();
    let end = f.seek(SeekFrom::End(0)).unwrap();
    (fstat, stat, end)
}

#[test]
fn a_writer_sees_the_length_it_reads() {
    require_fuse!();
    let m = Mount::start(&[]);
    let k = m.mnt.join("k");
    m.ok("printf %1000s x > mnt/k");
    let mut other = Shell::start(&m);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_TRUNC)
        .open(&k)
        .unwrap();
    assert_eq!(sizes(&mut f, &k), (0, 0, 0));
    f.set_len(152_507).unwrap();
    assert_eq!(sizes(&mut f, &k), (152_507, 152_507, 152_507));
    // Another process sees the committed value until the close.
    assert_eq!(other.run("stat -c %s mnt/k"), "1000");
    assert_eq!(other.run("wc -c < mnt/k"), "1000");
    f.write_all(b"tail").unwrap();
    assert_eq!(sizes(&mut f, &k), (152_511, 152_511, 152_511));
    // A second descriptor of the same process shares the draft.
    let mut g = OpenOptions::new().read(true).write(true).open(&k).unwrap();
    assert_eq!(sizes(&mut g, &k), (152_511, 152_511, 152_511));
    g.set_len(10).unwrap();
    assert_eq!(sizes(&mut f, &k), (10, 10, 10));
    let mut head = [0u8; 16];
    assert_eq!(f.read_at(&mut head, 0).unwrap(), 10);
    assert_eq!(other.run("stat -c %s mnt/k"), "1000");
    drop(g);
    // The close committed: everyone sees it.
    assert_eq!(other.run("stat -c %s mnt/k"), "10");
    f.write_all_at(b"0123456789", 10).unwrap();
    assert_eq!(sizes(&mut f, &k), (20, 20, 20));
    drop(f);
    assert_eq!(other.run("stat -c %s mnt/k"), "20");
    assert_eq!(fs::metadata(&k).unwrap().len(), 20);
}

#[test]
fn truncate_by_path_goes_to_the_callers_draft() {
    require_fuse!();
    let m = Mount::start(&[]);
    let k = m.mnt.join("k");
    m.ok("echo hello > mnt/k");
    let mut other = Shell::start(&m);
    let mut f = OpenOptions::new().write(true).open(&k).unwrap();
    f.write_all(b"HELLO, WORLD").unwrap();
    // truncate(2) by path from the writing process: its own draft.
    let path = std::ffi::CString::new(k.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string path.
    assert_eq!(unsafe { libc::truncate(path.as_ptr(), 5) }, 0);
    assert_eq!(f.metadata().unwrap().len(), 5);
    assert_eq!(other.run("cat mnt/k"), "hello");
    drop(f);
    assert_eq!(other.run("cat mnt/k"), "HELLO");
    // From another process, with nobody writing: committed at once.
    m.ok("truncate -s 2 mnt/k");
    assert_eq!(m.ok("cat mnt/k"), "HE");
}

/// Collects a child's stdout lines through a channel.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let mut out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while let Ok(1) = out.read(&mut byte) {
            if byte[0] == b'\n' {
                let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
                buf.clear();
            } else {
                buf.push(byte[0]);
            }
        }
    });
    rx
}

fn expect_line(rx: &mpsc::Receiver<String>, want: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line == want => return,
            Ok(_) => {}
            Err(_) => panic!("tail did not print {want:?} within {within:?}"),
        }
    }
}

#[test]
fn tail_follows_appended_lines() {
    require_fuse!();
    let m = Mount::start(&[]);
    for follow in ["-f", "-F"] {
        m.ok("echo first > mnt/log");
        let mut tail = Command::new("tail")
            .arg(follow)
            .arg(m.mnt.join("log"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let rx = lines_of(&mut tail);
        expect_line(&rx, "first", Duration::from_secs(5));
        for n in 0..3 {
            let line = format!("line {n}");
            m.ok(&format!("echo '{line}' >> mnt/log"));
            // tail looks once a second (-f polls; -F is told at once):
            // the line shows at its next look, with half a second to spare
            // for a busy machine.
            expect_line(&rx, &line, Duration::from_millis(1500));
        }
        let _ = tail.kill();
        let _ = tail.wait();
    }
}

#[test]
fn a_reader_follows_growth_but_never_a_rewrite() {
    require_fuse!();
    let m = Mount::start(&[]);
    m.ok("printf abc > mnt/k");
    let mut r = File::open(m.mnt.join("k")).unwrap();
    let mut buf = Vec::new();
    r.read_to_end(&mut buf).unwrap();
    assert_eq!(buf, b"abc");
    // Grown by an append: the reader goes on from where it is.
    m.ok("printf def >> mnt/k");
    buf.clear();
    r.read_to_end(&mut buf).unwrap();
    assert_eq!(buf, b"def");
    // Replaced by a longer value that does not begin with what the reader
    // has: it stays at the end of its value, and reads it whole again.
    m.ok("printf XYZdefghi > mnt/k");
    buf.clear();
    r.read_to_end(&mut buf).unwrap();
    assert!(buf.is_empty(), "{buf:?}");
    let mut all = [0u8; 16];
    assert_eq!(r.read_at(&mut all, 0).unwrap(), 6);
    assert_eq!(&all[..6], b"abcdef");
    // A fresh reader sees the new value.
    assert_eq!(m.ok("cat mnt/k"), "XYZdefghi");
    drop(r);
    let mut w = OpenOptions::new()
        .append(true)
        .open(m.mnt.join("k"))
        .unwrap();
    w.write_all(b"!").unwrap();
    drop(w);
    assert_eq!(m.ok("cat mnt/k"), "XYZdefghi!");
}

/// open(O_TRUNC) and close with nothing written: the close does not
/// commit (a shell redirect closes before it writes), the release right
/// after does. A stat between them found neither the draft nor the new
/// version, and the kernel kept the old length and times (pjdfstest's
/// open_trunc).
#[test]
fn a_truncating_open_and_close_show_at_once() {
    require_fuse!();
    let m = Mount::start(&[]);
    let script = r#"
import os, time
def st(p):
    s = os.stat(p)
    return (s.st_mtime_ns, s.st_ctime_ns, s.st_size)
bad = 0
for i in range(300):
    p = "mnt/f%d" % i
    os.close(os.open(p, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644))
    with open(p, "wb") as f:
        f.write(b"data")
    a = st(p)
    time.sleep(0.002)
    os.close(os.open(p, os.O_WRONLY | os.O_TRUNC))
    b = st(p)
    bad += not (b[0] > a[0] and b[1] > a[1] and b[2] == 0)
print(bad)
"#;
    let out = m.ok(&format!("python3 -c '{script}'"));
    assert_eq!(out.trim(), "0", "stats that showed the file as before");
}
