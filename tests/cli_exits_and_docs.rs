//! How `caskfs` ends: one line on stderr naming the path and an exit code
//! per kind of failure (as `caskfs --help` lists them); and the completion
//! scripts and manual pages made from the same definition.

mod engine_common;

use std::process::{Command, Output};

use engine_common::{open, tempdir};

fn caskfs(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_caskfs"))
        .args(args)
        .output()
        .expect("running caskfs")
}

/// The exit code and the stderr of a failed run, which must be one line.
fn failure(args: &[&str]) -> (i32, String) {
    let out = caskfs(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let code = out.status.code().expect("an exit code");
    assert_ne!(code, 0, "{args:?} succeeded");
    assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    (code, err)
}

#[test]
fn each_kind_of_failure_has_its_exit_code() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap();
    let help = String::from_utf8_lossy(&caskfs(&["--help"]).stdout).into_owned();
    assert!(help.contains("Exit codes:") && help.contains("3  the data directory is in use"));

    let (code, err) = failure(&["get", data_s, "k"]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains(data_s), "names the path: {err}");

    assert!(
        caskfs(&["put", data_s, "a/b", "value of a/b"])
            .status
            .success()
    );
    let (code, err) = failure(&["get", data_s, "a/x"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains(data_s) && err.contains("a/x"), "{err}");
    assert_eq!(failure(&["rm", data_s, "nothing"]).0, 4);
    assert_eq!(failure(&["ls", data_s, "nope"]).0, 4);

    for usage in [
        &["no-such-command"][..],
        &["get", data_s],
        &["stats", "--bogus", data_s],
    ] {
        let (code, err) = failure(usage);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("caskfs --help"), "{err}");
    }

    let held = open(&data);
    let (code, err) = failure(&["get", data_s, "a/b"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("in use"), "{err}");
    // The segment holding a/b is closed, so damage there is not a torn tail.
    held.roll().unwrap();
    held.put(b"later", b"x").unwrap();
    drop(held);

    // Damage: a flipped byte in a/b's record.
    let seg = engine_common::seg_path(&data, engine_common::segment_ids(&data)[0]);
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes.windows(8).position(|w| w == b"value of").unwrap();
    bytes[at + 1] ^= 0x40;
    std::fs::write(&seg, bytes).unwrap();
    let out = caskfs(&["check", data_s]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn completion_scripts_load_and_manual_pages_are_written() {
    let bash = caskfs(&["completions", "bash"]);
    assert!(bash.status.success());
    let script = tempdir();
    let path = script.path().join("caskfs.bash");
    std::fs::write(&path, &bash.stdout).unwrap();
    let check = Command::new("bash").arg("-n").arg(&path).status().unwrap();
    assert!(check.success(), "bash -n rejects the script");
    // Loaded into a shell, it registers a completion for caskfs.
    let loaded = Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p caskfs", path.display()))
        .output()
        .unwrap();
    let registered = String::from_utf8_lossy(&loaded.stdout);
    assert!(registered.contains("caskfs"), "{registered}");
    for shell in ["zsh", "fish"] {
        let out = caskfs(&["completions", shell]);
        assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("mount"));
    }

    let pages = tempdir();
    let dir = pages.path().join("man1");
    assert!(caskfs(&["man", dir.to_str().unwrap()]).status.success());
    for page in [
        "caskfs.1",
        "caskfs-mount.1",
        "caskfs-check.1",
        "caskfs-put.1",
    ] {
        let text = std::fs::read_to_string(dir.join(page)).unwrap();
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{page}");
    }
    let top = std::fs::read_to_string(dir.join("caskfs.1")).unwrap();
    assert!(top.contains("Exit codes"), "the exit codes are in the page");
}
