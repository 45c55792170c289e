//! The offline CLI on a data directory: put/get/rm/ls/stats/check, errors
//! on stderr with a non-zero exit status.

mod engine_common;
#[path = "common/library.rs"]
mod library;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use engine_common::{open, tempdir};
use library::Library;

fn caskfs(args: &[&str], dir: &Path, stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_caskfs"));
    cmd.arg(args[0]).arg(dir).args(&args[1..]);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("running caskfs");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("writing stdin");
    }
    child.wait_with_output().expect("caskfs output")
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(out: &Output, what: &str, says: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{what} succeeded");
    assert!(
        stderr.contains(says),
        "{what}: stderr does not say {says:?}: {stderr}"
    );
}

#[test]
fn put_get_rm_ls_stats_check() {
    let tmp = tempdir();
    let d = tmp.path().join("data");
    ok(&caskfs(&["put", "alpha", "one"], &d, None), "put");
    let binary: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    ok(
        &caskfs(&["put", "beta"], &d, Some(&binary)),
        "put from stdin",
    );
    ok(&caskfs(&["put", "gamma", ""], &d, None), "put empty");
    ok(
        &caskfs(&["put", "shop/products/42", "in stock"], &d, None),
        "put a path",
    );
    assert_eq!(
        caskfs(&["get", "shop/products/42"], &d, None).stdout,
        b"in stock"
    );
    ok(&caskfs(&["put", "shop/cart", "1"], &d, None), "put");
    // ls lists one folder, folders ending in '/'; -r every key below it.
    assert_eq!(
        ok(&caskfs(&["ls"], &d, None), "ls"),
        "alpha\nbeta\ngamma\nshop/\n"
    );
    assert_eq!(
        ok(&caskfs(&["ls", "shop"], &d, None), "ls a folder"),
        "cart\nproducts/\n"
    );
    assert_eq!(
        ok(&caskfs(&["ls", "-r", "shop/"], &d, None), "ls -r a folder"),
        "shop/cart\nshop/products/\nshop/products/42\n"
    );
    assert_eq!(
        ok(&caskfs(&["ls", "-r"], &d, None), "ls -r"),
        "alpha\nbeta\ngamma\nshop/\nshop/cart\nshop/products/\nshop/products/42\n"
    );
    fails(
        &caskfs(&["ls", "alpha"], &d, None),
        "ls of a key",
        "is not a folder",
    );
    fails(
        &caskfs(&["ls", "nothing"], &d, None),
        "ls of nothing",
        "is not a folder",
    );
    ok(&caskfs(&["rm", "shop/cart"], &d, None), "rm a path");
    fails(
        &caskfs(&["put", "alpha/x", "v"], &d, None),
        "put below a key",
        "\"alpha\" is not a folder",
    );
    ok(&caskfs(&["rm", "shop/products/42"], &d, None), "rm a path");
    // put made the folders above the key, and they stay when emptied.
    assert_eq!(
        ok(&caskfs(&["ls", "-r", "shop"], &d, None), "ls -r"),
        "shop/products/\n"
    );
    ok(&caskfs(&["rm", "shop/products"], &d, None), "rm a folder");
    ok(&caskfs(&["rm", "shop"], &d, None), "rm a folder");
    let out = caskfs(&["get", "beta"], &d, None);
    ok(&out, "get");
    assert_eq!(out.stdout, binary, "get returns the raw bytes");
    assert_eq!(caskfs(&["get", "alpha"], &d, None).stdout, b"one");
    assert_eq!(ok(&caskfs(&["ls"], &d, None), "ls"), "alpha\nbeta\ngamma\n");
    ok(&caskfs(&["rm", "alpha"], &d, None), "rm");
    assert_eq!(ok(&caskfs(&["ls"], &d, None), "ls"), "beta\ngamma\n");
    let stats = ok(&caskfs(&["stats"], &d, None), "stats");
    // The log's records: the files' inodes and names among them, and the
    // 3000 bytes of beta within the live values.
    let live: Vec<u64> = stats
        .lines()
        .find(|l| l.contains("bytes of live values"))
        .map(|l| l.split(' ').filter_map(|w| w.parse().ok()).collect())
        .unwrap_or_default();
    assert!(
        matches!(live[..], [keys, bytes] if keys >= 4 && (3000..4000).contains(&bytes)),
        "stats: {stats}"
    );
    let check = ok(&caskfs(&["check"], &d, None), "check");
    assert!(check.contains("no damage"), "check: {check}");
    // The library sees what the CLI wrote.
    let lib = Library::open(&d).unwrap();
    assert_eq!(lib.read("beta").unwrap(), Some(binary));
    lib.close();
}

#[test]
fn errors_go_to_stderr_with_a_failure_status() {
    let tmp = tempdir();
    let d = tmp.path().join("data");
    ok(&caskfs(&["put", "k", "v"], &d, None), "put");
    fails(
        &caskfs(&["get", "missing"], &d, None),
        "get missing",
        "not found",
    );
    fails(
        &caskfs(&["rm", "missing"], &d, None),
        "rm missing",
        "not found",
    );
    fails(
        &caskfs(&["put", "..", "v"], &d, None),
        "put ..",
        "invalid key",
    );
    fails(
        &caskfs(&["put", "a//b", "v"], &d, None),
        "put a//b",
        "invalid key",
    );
    fails(
        &caskfs(&["put", "/a", "v"], &d, None),
        "put /a",
        "invalid key",
    );
    let nowhere = tmp.path().join("nowhere");
    fails(
        &caskfs(&["ls"], &nowhere, None),
        "ls of a missing dir",
        "nowhere",
    );
    fails(
        &caskfs(&["get", "k"], &nowhere, None),
        "get in a missing dir",
        "nowhere",
    );
    assert!(!nowhere.exists(), "a read command created the directory");
    // A directory in use by this process.
    let s = open(&d);
    for args in [&["put", "k", "w"][..], &["get", "k"], &["ls"], &["check"]] {
        fails(
            &caskfs(args, &d, None),
            &format!("{args:?} while open"),
            "in use",
        );
    }
    drop(s);
    assert_eq!(ok(&caskfs(&["get", "k"], &d, None), "get once closed"), "v");
}
