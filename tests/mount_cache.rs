//! The kernel caches names, attributes and small values' pages (see
//! `src/fs/attr.rs` and `fuse.rs`); these tests check that a change made
//! through the mount by one process is seen at once by the next `stat`,
//! `cat` or `ls` of another process: close-to-open consistency.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;

use common::Mount;

/// Every write is followed at once by stat, cat and ls in new processes.
#[test]
fn each_change_is_seen_by_the_next_stat_cat_and_ls() {
    require_fuse!();
    let m = Mount::start(&[]);
    // Lengths go up and down, and repeat with other bytes (same length,
    // new content: only the value's identity tells the cache it changed).
    let script = r#"
        set -e
        for v in aaaa bb cccccccc dd ee 1 22222 33333 x; do
            printf %s "$v" > mnt/k
            [ "$(stat -c %s mnt/k)" = "${#v}" ] || { echo "stat size after $v: $(stat -c %s mnt/k)"; exit 1; }
            [ "$(cat mnt/k)" = "$v" ] || { echo "cat after $v: $(cat mnt/k)"; exit 1; }
            [ "$(cat mnt/k)" = "$v" ] || { echo "second cat after $v: $(cat mnt/k)"; exit 1; }
            [ "$(ls mnt)" = "k" ] || { echo "ls: $(ls mnt)"; exit 1; }
        done
    "#;
    m.ok(script);
}

/// A cached value is replaced by a shorter, then a longer one, and the
/// next reader sees exactly the new bytes each time.
#[test]
fn overwrite_shorter_then_longer_is_read_exactly() {
    require_fuse!();
    let m = Mount::start(&[]);
    let path = m.path("k");
    for round in 0..20u8 {
        let len = [3000, 10, 4096, 1, 4097, 200][round as usize % 6];
        let v = common::pattern(len, round);
        fs::write(&path, &v).unwrap();
        // Read twice in fresh processes: were data kept in the page cache,
        // the second read is where a stale page would show.
        for _ in 0..2 {
            let got = std::process::Command::new("cat")
                .arg(&path)
                .output()
                .unwrap();
            assert_eq!(got.stdout, v, "round {round}: len {len}");
        }
        assert_eq!(fs::metadata(&path).unwrap().len(), len as u64);
    }
}

/// A reader that opened before a change keeps its descriptor; a reader
/// that opens after the writer's close sees the new value.
#[test]
fn open_after_close_sees_the_new_value_while_an_old_reader_stays_open() {
    require_fuse!();
    let m = Mount::start(&[]);
    let path = m.path("k");
    fs::write(&path, b"old value").unwrap();
    let old = fs::File::open(&path).unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"old value");
    fs::write(&path, b"new").unwrap();
    assert_eq!(m.ok("cat mnt/k"), "new");
    assert_eq!(fs::read(&path).unwrap(), b"new");
    assert_eq!(fs::metadata(&path).unwrap().len(), 3);
    drop(old);
    assert_eq!(m.ok("cat mnt/k"), "new");
}

/// A creation whose commit fails leaves no name behind, even though other
/// processes looked it up while it was being written.
#[test]
fn failed_create_leaves_no_cached_name() {
    require_fuse!();
    let m = Mount::start(&["--max-value-size", "64K"]);
    m.ok("head -c 100000 /dev/zero > big");
    assert!(m.fails("stat mnt/k").contains("No such file"));
    assert!(m.fails("cat big > mnt/k").contains("File too large"));
    assert!(m.fails("stat mnt/k").contains("No such file"));
    assert!(m.fails("cat mnt/k").contains("No such file"));
    assert_eq!(m.ok("ls mnt"), "");
    // Looked up while pending, then gone when the commit fails. (Checked
    // from this process: a child would inherit the descriptor, and its
    // exit is a close, which commits.)
    let path = m.path("p");
    let mut f = fs::File::create(&path).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), 0);
    // Listed twice: the second listing comes from the kernel's cache.
    for _ in 0..2 {
        let names: Vec<_> = fs::read_dir(&m.mnt)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["p"]);
    }
    let err = f.write_all(&vec![0u8; 100_000]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EFBIG));
    drop(f);
    assert!(m.fails("stat mnt/p").contains("No such file"));
    assert_eq!(m.ok("ls mnt"), "");
    // The names work as new keys afterwards.
    m.ok("echo fine > mnt/k && echo also > mnt/p");
    assert_eq!(m.ok("cat mnt/k mnt/p"), "fine\nalso\n");
    assert_eq!(m.ok("ls mnt"), "k\np\n");
}

/// The kernel keeps listings between opens; each create, rm and mv in
/// one process shows in the next `ls` of another, over a listing longer
/// than one page of entries.
#[test]
fn cached_listings_follow_every_change() {
    require_fuse!();
    let m = Mount::start(&[]);
    m.ok("for i in $(seq 1 400); do echo $i > mnt/key-$i; done");
    let script = r#"
        set -e
        want() { # expected count, then a name that must (+) or must not (-) be listed
            ls mnt > l1; ls mnt > l2
            cmp -s l1 l2 || { echo "two listings differ"; exit 1; }
            [ "$(wc -l < l1)" = "$1" ] || { echo "count $(wc -l < l1), wanted $1"; exit 1; }
            case $2 in
            +*) grep -qx "${2#+}" l1 || { echo "${2#+} missing"; exit 1; } ;;
            -*) ! grep -qx "${2#-}" l1 || { echo "${2#-} still listed"; exit 1; } ;;
            esac
        }
        want 400 +key-1
        for i in $(seq 1 20); do
            echo new > mnt/new-$i; want $((400 + 1)) +new-$i
            mv mnt/new-$i mnt/moved-$i; want 401 +moved-$i; want 401 -new-$i
            mv mnt/moved-$i mnt/key-$i; want 400 -moved-$i
            rm mnt/key-$i; want 399 -key-$i
            echo back > mnt/key-$i; want 400 +key-$i
        done
    "#;
    m.ok(script);
}

/// The kernel remembers missing names (negative entries); a create, an
/// rm and a mv onto the name each show in the next process at once.
#[test]
fn missing_names_appear_at_once() {
    require_fuse!();
    let m = Mount::start(&[]);
    let script = r#"
        set -e
        gone() { if stat mnt/$1 > /dev/null 2>&1; then echo "$1 listed after $2"; exit 1; fi; }
        is() { [ "$(cat mnt/$1)" = "$2" ] || { echo "$1 is not $2 after $3"; exit 1; }; }
        for round in 1 2 3; do
            gone k start; gone k "a second look"
            echo v$round > mnt/k; is k v$round create
            rm mnt/k; gone k rm
            echo w > mnt/other; gone k "another create"
            mv mnt/other mnt/k; is k w mv; gone other mv
            rm mnt/k
        done
    "#;
    m.ok(script);
}

/// Removals and renames are seen at once by stat, cat and ls.
#[test]
fn rm_and_mv_are_seen_at_once() {
    require_fuse!();
    let m = Mount::start(&[]);
    m.ok("echo a > mnt/a && echo b > mnt/b && stat mnt/a mnt/b >/dev/null && cat mnt/a mnt/b >/dev/null");
    m.ok("rm mnt/a");
    assert!(m.fails("stat mnt/a").contains("No such file"));
    assert!(m.fails("cat mnt/a").contains("No such file"));
    assert_eq!(m.ok("ls mnt"), "b\n");
    m.ok("echo again > mnt/a");
    assert_eq!(m.ok("cat mnt/a"), "again\n");
    let ino_a = fs::metadata(m.path("a")).unwrap().ino();
    m.ok("mv mnt/a mnt/b");
    assert!(m.fails("stat mnt/a").contains("No such file"));
    assert_eq!(m.ok("cat mnt/b"), "again\n");
    assert_eq!(m.ok("stat -c %s mnt/b"), "6\n");
    assert_eq!(fs::metadata(m.path("b")).unwrap().ino(), ino_a);
    assert_eq!(m.ok("ls mnt"), "b\n");
    // sed -i: write a temporary, rename it over the key.
    m.ok("sed -i s/again/edited/ mnt/b");
    assert_eq!(m.ok("cat mnt/b"), "edited\n");
    assert_eq!(m.ok("stat -c %s mnt/b"), "7\n");
}

/// A truncate, an append and a touch, each seen by the next process.
#[test]
fn truncate_append_and_touch_are_seen_at_once() {
    require_fuse!();
    let m = Mount::start(&[]);
    m.ok("echo hello > mnt/k && cat mnt/k > /dev/null");
    m.ok("truncate -s 2 mnt/k");
    assert_eq!(m.ok("cat mnt/k"), "he");
    assert_eq!(m.ok("stat -c %s mnt/k"), "2\n");
    m.ok("echo llo >> mnt/k");
    assert_eq!(m.ok("cat mnt/k"), "hello\n");
    assert_eq!(m.ok("stat -c %s mnt/k"), "6\n");
    m.ok("touch -d 2001-02-03T04:05:06Z mnt/k");
    assert_eq!(m.ok("stat -c %Y mnt/k"), "981173106\n");
    m.ok("echo x > mnt/k");
    assert_ne!(m.ok("stat -c %Y mnt/k"), "981173106\n");
    // The writing process sees its own length; a reader, even in that
    // process, the committed value (tests/mount_posix.rs checks what other
    // processes see).
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(m.path("k"))
        .unwrap();
    f.write_all(b"uncommitted").unwrap();
    assert_eq!(fs::metadata(m.path("k")).unwrap().len(), 13);
    assert_eq!(fs::read(m.path("k")).unwrap(), b"x\n");
    drop(f);
    assert_eq!(m.ok("stat -c %s mnt/k"), "13\n");
    assert_eq!(m.ok("cat mnt/k"), "x\nuncommitted");
}

/// A value replaced by one of the same length, while a reader read the old
/// one between the writer's write and its close: the next reader gets the
/// new bytes (a page cache would drop pages by itself only when the size
/// changes).
#[test]
fn same_length_rewrite_is_not_served_from_stale_pages() {
    require_fuse!();
    let m = Mount::start(&[]);
    let path = m.path("k");
    for round in 0..5u8 {
        let old = common::pattern(100, 2 * round);
        let new = common::pattern(100, 2 * round + 1);
        fs::write(&path, &old).unwrap();
        assert_eq!(fs::read(&path).unwrap(), old);
        let mut f = fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all(&new).unwrap();
        // Not committed yet: a reader (this process, so that no child
        // closes the writer's descriptor) caches the old value.
        assert_eq!(fs::read(&path).unwrap(), old);
        drop(f);
        assert_eq!(fs::read(&path).unwrap(), new, "round {round}");
        let cat = std::process::Command::new("cat")
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(cat.stdout, new, "round {round}");
    }
}

/// access(2) follows the stored modes (the kernel checks them), and a
/// read-only mount refuses writes.
#[test]
fn access_follows_the_stored_modes() {
    require_fuse!();
    let mut m = Mount::start(&[]);
    m.ok("echo v > mnt/k");
    m.ok("test -r mnt/k && test -w mnt/k && ! test -x mnt/k && test -x mnt");
    m.ok("chmod 755 mnt/k && test -x mnt/k && chmod 600 mnt/k && ! test -x mnt/k");
    m.unmount();
    m.args = vec!["--read-only".into()];
    m.mount();
    m.ok("test -r mnt/k && ! test -w mnt/k");
}

/// How many requests of `kind` the daemon has served (`caskfs stats
/// --json`).
fn served(m: &Mount, kind: &str) -> u64 {
    let json = stats_json(m);
    let requests = json.split("\"requests\":").nth(1).unwrap_or("");
    number(requests, kind).unwrap_or(0)
}

fn stats_json(m: &Mount) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_caskfs"))
        .args(["stats", "--json"])
        .arg(&m.mnt)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until the daemon holds no open file: every RELEASE has come.
fn all_released(m: &Mount) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while number(&stats_json(m), "open_handles") != Some(0) {
        assert!(std::time::Instant::now() < deadline, "a handle stayed open");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// The number after `"name":` in `json`.
fn number(json: &str, name: &str) -> Option<u64> {
    json.split(&format!("\"{name}\":"))
        .nth(1)
        .map(|n| {
            n.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|n| n.parse().ok())
}

/// A new key's attributes are cached from its creation, so the `fstat`
/// that follows `open(O_CREAT)` (python's `open` does one) asks nothing,
/// while the writer's length is still seen at once. (The descriptor is a
/// shell's: a child process this test process forks would inherit one of
/// its own, and close it.)
#[test]
fn a_created_key_is_cached_from_its_creation() {
    require_fuse!();
    let m = Mount::start(&[]);
    m.ok("mkdir mnt/d && echo warm > mnt/d/first && stat mnt/d/first > /dev/null");
    let before = served(&m, "getattr");
    let size = m.ok("exec 3> mnt/d/k && stat -L -c %s /dev/fd/3");
    assert_eq!(size, "0\n");
    assert_eq!(
        served(&m, "getattr"),
        before,
        "fstat after create asked the daemon"
    );
    let sizes = m.ok("exec 3> mnt/d/k && printf 12345 >&3 && stat -L -c %s /dev/fd/3 mnt/d/k");
    assert_eq!(sizes, "5\n5\n");
    assert_eq!(m.ok("stat -c %s mnt/d/k"), "5\n");
}

/// An unchanged value is read again from the kernel's page cache, without
/// a READ request; a changed one (same length too) is read from the store.
#[test]
fn an_unchanged_value_is_read_again_from_the_page_cache() {
    require_fuse!();
    let m = Mount::start(&["--cache-reads"]);
    let v = common::pattern(20_000, 1);
    fs::write(m.path("k"), &v).unwrap();
    // A reader that opens while the writer's RELEASE (which the kernel
    // sends after close returns) is still on its way reads direct; the
    // cache is filled by the first open after it.
    all_released(&m);
    assert_eq!(fs::read(m.path("k")).unwrap(), v);
    let before = served(&m, "read");
    for _ in 0..3 {
        assert_eq!(fs::read(m.path("k")).unwrap(), v);
        let cat = std::process::Command::new("cat")
            .arg(m.path("k"))
            .output()
            .unwrap();
        assert_eq!(cat.stdout, v);
    }
    assert_eq!(
        served(&m, "read"),
        before,
        "an unchanged value was read from the store again"
    );
    // A new value comes from the store, or from the cache its writer's
    // last close filled: never the old pages.
    let w = common::pattern(20_000, 2);
    fs::write(m.path("k"), &w).unwrap();
    assert_eq!(fs::read(m.path("k")).unwrap(), w);
    all_released(&m);
    assert_eq!(fs::read(m.path("k")).unwrap(), w);
}

/// A writer's last close puts the value it committed into the page cache
/// (values up to 128 KiB), so that the first reader after it asks for no
/// READ, as on a local filesystem; a shorter value leaves none of the
/// longer one's bytes behind, and a key someone else holds open is not
/// filled (the other's mapping might hold other bytes).
#[test]
fn a_closed_writers_value_is_read_from_the_page_cache() {
    require_fuse!();
    let m = Mount::start(&["--cache-reads"]);
    let cat = || {
        let out = std::process::Command::new("cat").arg(m.path("k")).output();
        out.unwrap().stdout
    };
    for (round, len) in [60_000, 100, 4_096, 128 << 10].into_iter().enumerate() {
        let v = common::pattern(len, 30 + round as u8);
        fs::write(m.path("k"), &v).unwrap();
        all_released(&m);
        let before = served(&m, "read");
        assert!(cat() == v, "{len} bytes: cat");
        assert_eq!(fs::read(m.path("k")).unwrap(), v, "{len} bytes: read");
        assert_eq!(served(&m, "read"), before, "{len} bytes: a READ was sent");
    }
    // Larger values are read from the store, once.
    let big = common::pattern((128 << 10) + 1, 40);
    fs::write(m.path("k"), &big).unwrap();
    all_released(&m);
    let before = served(&m, "read");
    assert!(cat() == big);
    assert!(served(&m, "read") > before, "a large value was filled");
    // A reader that opened while the writer wrote (so on its inode, and
    // direct) is open across the writer's close: no fill.
    let v = common::pattern(300, 41);
    let mut w = fs::File::create(m.path("k")).unwrap();
    std::io::Write::write_all(&mut w, &v).unwrap();
    let held = fs::File::open(m.path("k")).unwrap();
    drop(w);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while number(&stats_json(&m), "open_handles") != Some(1) {
        assert!(
            std::time::Instant::now() < deadline,
            "the writer stayed open"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    drop(held);
    all_released(&m);
    let before = served(&m, "read");
    assert!(cat() == v);
    assert!(
        served(&m, "read") > before,
        "filled while a reader was open"
    );
}

/// Reads go through the page cache unless the mount says
/// `--no-cache-reads` (CASKFS_MOUNT_ARGS may say it for every mount):
/// then every read of a value read before asks the daemon again, and
/// `caskfs stats` says which mode the daemon serves in.
#[test]
fn reads_are_cached_by_default_and_direct_when_asked() {
    require_fuse!();
    for args in [&[][..], &["--no-cache-reads"]] {
        let m = Mount::start(args);
        let cached = m.reads_cached();
        let mode = if cached { "page cache" } else { "direct" };
        assert!(
            stats_json(&m).contains(&format!("\"reads\":\"{mode}\"")),
            "{args:?}: {}",
            stats_json(&m)
        );
        let cat = || {
            let out = std::process::Command::new("cat").arg(m.path("k")).output();
            out.unwrap().stdout
        };
        let v = common::pattern(9_000, 3);
        fs::write(m.path("k"), &v).unwrap();
        all_released(&m);
        assert_eq!(cat(), v);
        let before = served(&m, "read");
        assert_eq!(cat(), v);
        assert_eq!(
            served(&m, "read") == before,
            cached,
            "{args:?}: a second cat of an unchanged value"
        );
    }
}

/// A reader that opened a value before it was replaced (by a shorter one,
/// then by one of the same length) reads the whole old value to its end,
/// through the page cache, while new opens read the new one; a value that
/// only grew is read on into its growth. The reader's descriptor shows the
/// key's inode number throughout (`tail -F` checks it).
#[test]
fn a_reader_keeps_its_value_across_a_rewrite_and_follows_growth() {
    require_fuse!();
    let m = Mount::start(&["--cache-reads"]);
    let path = m.path("k");
    for (round, new_len) in [5_000, 100_000].into_iter().enumerate() {
        let old = common::pattern(100_000, 10 + round as u8);
        let new = common::pattern(new_len, 20 + round as u8);
        fs::write(&path, &old).unwrap();
        let mut r = fs::File::open(&path).unwrap();
        let mut head = vec![0u8; 10_000];
        std::io::Read::read_exact(&mut r, &mut head).unwrap();
        fs::write(&path, &new).unwrap();
        assert_eq!(fs::read(&path).unwrap(), new, "round {round}: a new open");
        let mut rest = Vec::new();
        std::io::Read::read_to_end(&mut r, &mut rest).unwrap();
        head.extend_from_slice(&rest);
        assert!(head == old, "round {round}: the open reader saw a mix");
        let (held, named) = (r.metadata().unwrap(), fs::metadata(&path).unwrap());
        assert_eq!((held.ino(), named.len()), (named.ino(), new_len as u64));
        drop(r);
        assert_eq!(
            fs::read(&path).unwrap(),
            new,
            "round {round}: after the reader"
        );
    }
    fs::write(&path, b"line 1\n").unwrap();
    let mut r = fs::File::open(&path).unwrap();
    let mut got = String::new();
    std::io::Read::read_to_string(&mut r, &mut got).unwrap();
    for n in 2..5 {
        m.ok(&format!("echo 'line {n}' >> mnt/k"));
        std::io::Read::read_to_string(&mut r, &mut got).unwrap();
        let (held, named) = (r.metadata().unwrap(), fs::metadata(&path).unwrap());
        assert_eq!((held.ino(), held.len()), (named.ino(), named.len()));
    }
    assert_eq!(got, "line 1\nline 2\nline 3\nline 4\n");
    assert_eq!(m.ok("cat mnt/k"), got);
    // A truncate by path is a writer too.
    let mut r = fs::File::open(&path).unwrap();
    m.ok("truncate -s 3 mnt/k");
    let mut held = String::new();
    std::io::Read::read_to_string(&mut r, &mut held).unwrap();
    assert_eq!((held, m.ok("cat mnt/k")), (got, "lin".to_string()));
}

/// A reader that opened while a writer had the key open reads direct, and
/// pins the value it found. Mapping it later fills the inode's page cache
/// with that value, after the writer committed a new one: a reader opening
/// then, or after the mapping's reader closed, still reads the new value.
#[test]
fn an_old_readers_mapping_does_not_leak_into_new_readers() {
    require_fuse!();
    let m = Mount::start(&["--cache-reads"]);
    let path = m.path("k");
    let (old, new) = (common::pattern(20_000, 5), common::pattern(20_000, 6));
    fs::write(&path, &old).unwrap();
    let mut writer = fs::OpenOptions::new().write(true).open(&path).unwrap();
    let reader = fs::File::open(&path).unwrap();
    writer.write_all(&new).unwrap();
    drop(writer);
    let cat = || {
        let out = std::process::Command::new("cat").arg(&path).output();
        out.unwrap().stdout
    };
    assert!(cat() == new, "a reader after the writer's close");
    assert!(
        common::mmap_read(&reader, old.len()).unwrap() == old,
        "the old reader's mapping"
    );
    assert!(cat() == new, "a reader beside the old reader's mapping");
    drop(reader);
    all_released(&m);
    assert!(cat() == new, "a reader after the old reader closed");
    assert!(cat() == new, "the same again, from the page cache");
}
