//! Attack 5: eight shell processes hammer overlapping keys with `echo >`,
//! `cp`, `cat`, `mv`, `rm` and `ls` for a bounded time while merges run
//! (asked for every few hundred ms, on small segments). Every value carries
//! its own checksum (a payload line, then `cksum` of it), which readers
//! verify: no torn value, no EIO, no daemon panic. Races every filesystem
//! has (a key removed between `ls` and its `lstat`, or between `cp`'s
//! `stat` and its `open`, or renamed between mv's two `stat`s) give ENOENT,
//! EEXIST or "are the same file" and are not counted; a key being created
//! reads as empty until its writer closes it. A failed `echo >` counts.

mod reliability_common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reliability_common::{Mount, check, fuse_available, tail};

/// One hammering process. `$1` id, `$2` end time (epoch seconds).
const SCRIPT: &str = r#"
id=$1; end=$2; n=0; bad=bad$id; : > $bad
verify() { # $1 file
    [ "$(wc -l < $1)" = 2 ] && [ "$(head -n1 $1 | tr -d '\n' | cksum)" = "$(sed -n 2p $1)" ]
}
while [ $(date +%s) -lt $end ]; do
    n=$((n+1)); j=$(( (n * 7 + id) % 6 )); o=$(( (j + 1 + n % 5) % 6 ))
    case $(( (n + id) % 8 )) in
    0|1) p=$(printf "w${id}n${n}x%0$(( (n * 37) % 3000 ))d" 0)
         # `>` creates the key: no error is expected, whatever races it.
         printf '%s\n%s\n' "$p" "$(printf %s "$p" | cksum)" 2> e$id > mnt/k$j || cat e$id >> $bad ;;
    2) cp big$(( n % 3 )) mnt/k$j 2> e$id || grep -v -e 'No such file' -e 'File exists' e$id >> $bad ;;
    3|4) if cat mnt/k$j > r$id 2> e$id; then
             # Empty: a key being created, visible as empty until its close.
             [ -s r$id ] && ! verify r$id && { cp r$id torn$id.$n; echo "torn value in k$j: $(wc -c < r$id) bytes, line lengths $(awk '{printf "%d ", length}' r$id), starts $(head -c 12 r$id)"; } >> $bad
         else grep -v 'No such file' e$id >> $bad; fi ;;
    # mv (coreutils 9.1) whose target vanishes between its renameat2's
    # EEXIST and its lstat reads a stat it never filled: "cannot overwrite
    # directory". A race any filesystem has, as the others here.
    5) mv mnt/k$j mnt/k$o 2> e$id || grep -v -e 'No such file' -e 'are the same file' -e 'cannot overwrite directory' e$id >> $bad ;;
    6) rm mnt/k$j 2> e$id || grep -v 'No such file' e$id >> $bad ;;
    7) ls -l mnt > /dev/null 2> e$id || grep -v 'No such file' e$id >> $bad ;;
    esac
done
echo $n > count$id
"#;

#[test]
fn eight_processes_on_overlapping_keys_while_merging() {
    if !fuse_available() {
        return;
    }
    let secs = std::env::var("CASKFS_CONCURRENCY_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8u64);
    let mut m = Mount::start(&["--max-segment-size", "64K"]);
    // Big self-checking values (several reads each through the mount).
    m.ok(
        "for i in 0 1 2; do p=$(head -c $((60000 + i * 70000)) /dev/urandom | base64 -w0); \
          printf '%s\\n%s\\n' \"$p\" \"$(printf %s \"$p\" | cksum)\" > big$i; done",
    );
    std::fs::write(m.scratch("hammer.sh"), SCRIPT).unwrap();
    let end = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + secs;
    let mut procs: Vec<_> = (0..8)
        .map(|id| {
            Command::new("sh")
                .arg("hammer.sh")
                .arg(id.to_string())
                .arg(end.to_string())
                .current_dir(m.root.path())
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(secs + 60);
    let mut merges = 0;
    while procs.iter_mut().any(|p| p.try_wait().unwrap().is_none()) {
        assert!(Instant::now() < deadline, "the hammering processes hang");
        assert!(m.alive(), "the daemon died:\n{}", tail(&m.log(), 3000));
        m.signal(libc::SIGUSR1);
        merges += 1;
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut ops = 0;
    let mut problems = String::new();
    for id in 0..8 {
        ops += m
            .ok(&format!("cat count{id}"))
            .trim()
            .parse::<u64>()
            .unwrap_or(0);
        problems.push_str(&m.ok(&format!("cat bad{id}")));
    }
    let log = m.log();
    assert!(
        problems.is_empty(),
        "{problems}\ndaemon log:\n{}",
        tail(&log, 3000)
    );
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        !log.contains("(errno 5)"),
        "EIO in the log:\n{}",
        tail(&log, 3000)
    );
    assert!(
        log.contains("merged"),
        "no merge ran:\n{}",
        tail(&log, 3000)
    );
    eprintln!("{ops} shell operations by 8 processes, {merges} merges asked for");
    assert!(ops > 100, "only {ops} operations");
    // Everything left verifies, before and after a remount.
    let verify_all = "for f in mnt/*; do [ -e \"$f\" ] || continue; cat \"$f\" > r; \
                      [ \"$(wc -l < r)\" = 2 ] && [ \"$(head -n1 r | tr -d '\\n' | cksum)\" = \"$(sed -n 2p r)\" ] \
                      || { echo \"torn $f\"; exit 1; }; done";
    m.ok(verify_all);
    let before = m.ok("ls mnt | sort; cat mnt/* | cksum");
    m.unmount();
    let (clean, report) = check(&m.data);
    assert!(clean, "{report}");
    m.mount();
    m.ok(verify_all);
    assert_eq!(m.ok("ls mnt | sort; cat mnt/* | cksum"), before);
}

/// On any POSIX filesystem `fstat` of an open descriptor works after the
/// file is removed or renamed (cp does open, then fstat). On caskfs it
/// fails with ENOENT, because attributes are looked up by the key the
/// inode had, and the key is gone.
#[test]
fn fstat_of_an_open_file_works_after_rm_or_mv() {
    if !fuse_available() {
        return;
    }
    let m = Mount::start(&[]);
    for (what, then) in [("rm", "rm mnt/k"), ("mv", "mv mnt/k mnt/j")] {
        m.ok("echo value > mnt/k");
        let f = std::fs::File::open(m.path("k")).unwrap();
        m.ok(then);
        let md = f.metadata();
        assert!(md.is_ok(), "fstat after {what}: {md:?}");
        assert_eq!(md.unwrap().len(), 6, "fstat after {what}");
    }
}

/// A reader that opened a value before it was removed or renamed reads
/// that value, as on any POSIX filesystem (and as docs/SEMANTICS.md says
/// for values up to 1 MiB, which are pinned whole). On caskfs the first
/// read of such a descriptor fails with ESTALE: the value is pinned at the
/// first read, by key, and the key is gone. The hammer test above meets
/// this as `cat: ...: Stale file handle`.
#[test]
fn a_reader_opened_before_rm_or_mv_reads_the_value() {
    if !fuse_available() {
        return;
    }
    let m = Mount::start(&[]);
    for (what, then) in [("rm", "rm mnt/k"), ("mv", "mv mnt/k mnt/j")] {
        m.ok("rm -f mnt/j; echo value > mnt/k");
        let f = std::fs::File::open(m.path("k")).unwrap();
        m.ok(then);
        let mut s = String::new();
        let r = std::io::Read::read_to_string(&mut &f, &mut s);
        assert!(r.is_ok(), "read after {what}: {r:?}");
        assert_eq!(s, "value\n", "read after {what}");
    }
}
