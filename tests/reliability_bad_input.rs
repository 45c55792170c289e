//! Attack 6: bad input. Odd names, empty and maximal values, what caskfs
//! cannot be, odd open flags, odd renames and reads, and bad data
//! directories. Each gets its documented errno or a clear message, the
//! daemon keeps serving, and no stored data changes (the README's
//! "Reliability" section lists them).

mod reliability_common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use reliability_common::{BIN, Mount, close, fuse_available, is_root, temp_root};

/// Every key and value in the mount.
fn snapshot(mnt: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    fs::read_dir(mnt)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let bytes = match e.file_type().unwrap().is_dir() {
                true => b"a folder".to_vec(),
                false => fs::read(e.path()).unwrap(),
            };
            (e.file_name().as_bytes().to_vec(), bytes)
        })
        .collect()
}

/// Runs `script`, expecting failure with `errno_text` in its stderr, and
/// checks that nothing stored changed and the daemon still serves.
fn refused(m: &Mount, script: &str, errno_text: &str, tried: &mut u64) {
    let before = snapshot(&m.mnt);
    let err = m.fails(script);
    assert!(
        err.contains(errno_text),
        "`{script}`: expected {errno_text}, got {err}"
    );
    assert_eq!(snapshot(&m.mnt), before, "`{script}` changed stored data");
    assert_eq!(m.ok("cat mnt/sentinel"), "still here\n", "after `{script}`");
    *tried += 1;
}

#[test]
fn odd_names_values_and_operations_get_their_errno_and_change_nothing() {
    if !fuse_available() {
        return;
    }
    let mut tried = 0;
    let mut m = Mount::start(&["--max-value-size", "64K"]);
    m.ok("echo still here > mnt/sentinel && mkdir mnt/folder");

    // Names: 255 bytes works, 256 is ENAMETOOLONG.
    let n255 = "n".repeat(255);
    refused(
        &m,
        &format!("mkdir mnt/{}", "n".repeat(256)),
        "File name too long",
        &mut tried,
    );
    m.ok(&format!(
        "echo v > mnt/{n255} && test \"$(cat mnt/{n255})\" = v"
    ));
    refused(
        &m,
        &format!("echo v > mnt/{}", "n".repeat(256)),
        "File name too long",
        &mut tried,
    );
    // Spaces, newlines, UTF-8, invalid UTF-8, a leading dash: ordinary keys.
    let odd: [&[u8]; 5] = [
        b"with spaces  in it",
        b"new\nline",
        "ключ-é-😀".as_bytes(),
        b"bad-\xff\xfe-utf8",
        b"-leading-dash",
    ];
    for name in odd {
        let p = m.mnt.join(OsStr::from_bytes(name));
        fs::write(&p, name).unwrap();
        assert_eq!(fs::read(&p).unwrap(), name, "{name:?}");
        assert!(
            fs::read_dir(&m.mnt)
                .unwrap()
                .any(|e| e.unwrap().file_name().as_bytes() == name),
            "{name:?} not listed"
        );
        tried += 1;
    }
    m.ok("cat -- mnt/-leading-dash > /dev/null && ls -- mnt/-leading-dash");
    // Empty values.
    m.ok(": > mnt/empty && test -e mnt/empty && test ! -s mnt/empty");
    tried += 1;
    // At the maximum value size, and one byte over (EFBIG, nothing stored).
    m.ok("head -c 65536 /dev/urandom > max && cp max mnt/max && cmp max mnt/max");
    refused(
        &m,
        "head -c 65537 /dev/zero > mnt/over",
        "File too large",
        &mut tried,
    );
    refused(
        &m,
        "head -c 65537 /dev/zero > mnt/max",
        "File too large",
        &mut tried,
    );
    refused(
        &m,
        "truncate -s 65537 mnt/max",
        "File too large",
        &mut tried,
    );
    m.ok("cmp max mnt/max");
    // What no filesystem does.
    for (script, errno) in [
        ("ln mnt/sentinel mnt/sentinel", "File exists"),
        ("link mnt/folder mnt/hard", "Operation not permitted"),
        ("mkdir mnt/sentinel", "File exists"),
        ("rmdir mnt/sentinel", "Not a directory"),
        ("cat mnt/sentinel/below", "Not a directory"),
        ("mkdir mnt/sentinel/below", "Not a directory"),
        ("mv mnt/sentinel mnt/sentinel/below", "Not a directory"),
    ] {
        refused(&m, script, errno, &mut tried);
    }
    // Extended attributes of a namespace caskfs does not keep: EOPNOTSUPP.
    let path = std::ffi::CString::new(m.path("sentinel").as_os_str().as_bytes()).unwrap();
    // SAFETY: valid C strings and a valid buffer of the given length.
    let rc = unsafe {
        libc::setxattr(
            path.as_ptr(),
            c"system.x".as_ptr(),
            b"1".as_ptr().cast(),
            1,
            0,
        )
    };
    assert_eq!(rc, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EOPNOTSUPP)
    );
    assert_eq!(m.ok("cat mnt/sentinel"), "still here\n");
    tried += 1;
    // Reading them, too, asked twice; the file lists none.
    let last_errno = || std::io::Error::last_os_error().raw_os_error();
    for _ in 0..2 {
        let mut buf = [0u8; 64];
        // SAFETY: valid C strings and a buffer of the given length.
        let get = unsafe {
            libc::getxattr(
                path.as_ptr(),
                c"system.x".as_ptr(),
                buf.as_mut_ptr().cast(),
                64,
            )
        };
        assert_eq!((get, last_errno()), (-1, Some(libc::EOPNOTSUPP)));
        // SAFETY: as above.
        let list = unsafe { libc::listxattr(path.as_ptr(), buf.as_mut_ptr().cast(), 64) };
        assert_eq!(list, 0);
    }
    // O_DIRECT: every file is direct I/O already; aligned I/O works.
    m.ok(
        "dd if=/dev/urandom of=direct bs=4096 count=2 2>/dev/null && \
          dd if=direct of=mnt/direct bs=4096 oflag=direct 2>/dev/null && cmp direct mnt/direct && \
          dd if=mnt/direct of=/dev/null bs=4096 iflag=direct 2>/dev/null",
    );
    tried += 1;
    // O_APPEND appends.
    m.ok(
        "echo a > mnt/app && echo b >> mnt/app && test \"$(cat mnt/app)\" = \"$(printf 'a\\nb')\"",
    );
    tried += 1;
    // O_EXCL on an existing key: EEXIST, value untouched.
    let before = snapshot(&m.mnt);
    let e = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(m.path("sentinel"))
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EEXIST));
    assert_eq!(snapshot(&m.mnt), before);
    tried += 1;
    // mv onto itself: mv refuses; rename(2) onto itself is a no-op.
    refused(
        &m,
        "mv mnt/sentinel mnt/sentinel",
        "are the same file",
        &mut tried,
    );
    fs::rename(m.path("sentinel"), m.path("sentinel")).unwrap();
    assert_eq!(snapshot(&m.mnt), before);
    tried += 1;
    // Reading past the end: no bytes, no error.
    let f = fs::File::open(m.path("sentinel")).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(f.read_at(&mut buf, 1 << 20).unwrap(), 0);
    assert_eq!(f.read_at(&mut buf, 11).unwrap(), 0);
    close(f).unwrap();
    tried += 1;
    // A second mount of the same data directory: a clear refusal.
    let other = m.scratch("mnt2");
    fs::create_dir_all(&other).unwrap();
    let out = Command::new(BIN)
        .arg("mount")
        .arg(&m.data)
        .arg(&other)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(3) && err.contains("in use by another caskfs process (pid"),
        "exit {:?}: {err}",
        out.status.code()
    );
    assert_eq!(m.ok("cat mnt/sentinel"), "still here\n");
    tried += 1;
    // Everything is still there after a remount.
    let all = snapshot(&m.mnt);
    m.unmount();
    m.mount();
    assert_eq!(snapshot(&m.mnt), all);
    eprintln!("FIGURES bad_input_mount bad_inputs={tried}");
}

/// `caskfs mount DATA MNT` on a bad data directory: fails with a message
/// containing `text`.
fn mount_refused(data: &Path, text: &str) {
    let root = temp_root();
    let mnt = root.path().join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let out = Command::new(BIN)
        .arg("mount")
        .arg(data)
        .arg(&mnt)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "mount of {} succeeded",
        data.display()
    );
    assert!(err.contains(text), "expected `{text}` in: {err}");
    assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
}

#[test]
fn bad_data_directories_are_refused_with_a_clear_message() {
    if !fuse_available() {
        return;
    }
    let root = temp_root();
    let r = root.path();
    // A file, not a directory.
    fs::write(r.join("a-file"), b"x").unwrap();
    mount_refused(
        &r.join("a-file"),
        "a-file is not a usable caskfs data directory: not a directory",
    );
    // Full of foreign files.
    fs::create_dir_all(r.join("foreign")).unwrap();
    fs::write(r.join("foreign/notes.txt"), b"mine").unwrap();
    fs::write(r.join("foreign/photo.jpg"), b"mine").unwrap();
    mount_refused(&r.join("foreign"), "no MANIFEST, and it holds other files");
    assert_eq!(fs::read(r.join("foreign/notes.txt")).unwrap(), b"mine");
    // Unreadable: only meaningful for a user the permissions apply to.
    if is_root() {
        fs::create_dir_all(r.join("locked")).unwrap();
        let st = Command::new("chmod")
            .arg("000")
            .arg(r.join("locked"))
            .status()
            .unwrap();
        assert!(st.success());
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(BIN)
            .arg("ls")
            .arg(r.join("locked"))
            .output();
        if let Ok(out) = out {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success() && err.contains("Permission denied"),
                "{err}"
            );
        }
    }
    // Segment and hint files with a wrong magic or a future version.
    let mut m = Mount::start(&["--max-segment-size", "4096"]);
    m.ok("for i in $(seq 1 40); do printf 'value-%s-%0100d' $i 0 > mnt/k$i; done");
    m.unmount();
    let first_seg = m.data.join("0000000000000001.seg");
    let first_hint = m.data.join("0000000000000001.hint");
    let pristine_seg = fs::read(&first_seg).unwrap();
    let pristine_hint = fs::read(&first_hint).unwrap();
    let mut bad = pristine_seg.clone();
    bad[0] = b'X';
    fs::write(&first_seg, &bad).unwrap();
    mount_refused(&m.data, "wrong magic number");
    let mut future = pristine_seg.clone();
    future[8] = 9;
    fs::write(&first_seg, &future).unwrap();
    mount_refused(&m.data, "format version 9");
    fs::write(&first_seg, &pristine_seg).unwrap();
    // A bad hint is only a hint: the segment is scanned, nothing is lost.
    for (at, val, why) in [(0usize, b'X', "wrong magic"), (8, 9u8, "format version")] {
        let mut h = pristine_hint.clone();
        h[at] = val;
        // With a valid checksum, so that the field itself is what is refused.
        let body = h.len() - 4;
        let crc = crc32fast::hash(&h[..body]).to_le_bytes();
        h[body..].copy_from_slice(&crc);
        fs::write(&first_hint, &h).unwrap();
        m.take_log();
        m.mount();
        assert_eq!(m.ok("ls mnt | wc -l").trim(), "40");
        assert!(m.ok("cat mnt/k1").starts_with("value-1-"));
        let log = m.log();
        assert!(
            log.contains("unusable") && log.contains(why),
            "{why}: {log}"
        );
        m.unmount();
    }
    // A file, foreign files, unreadable, segment magic and version, hint
    // magic and version.
    eprintln!("FIGURES bad_data_dirs bad_inputs=7");
}
