//! Long work shows a progress bar on stderr when it is a terminal (here a
//! pseudo-terminal from `script`), and nothing extra when it is not.

mod engine_common;

use std::process::Command;

use engine_common::{open, tempdir};

const BIN: &str = env!("CARGO_BIN_EXE_caskfs");

#[test]
fn a_bar_on_a_terminal_and_nothing_in_a_pipe() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let store = open(&data);
    for i in 0..200 {
        store
            .put(format!("k{i}").as_bytes(), &[i as u8; 20_000])
            .unwrap();
    }
    drop(store);

    for args in [&["check"][..], &["compact"], &["stats"]] {
        let out = Command::new(BIN).args(args).arg(&data).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(
            out.stderr.is_empty(),
            "{args:?} wrote to a pipe: {:?}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let backup = dir.path().join("backup");
    for (args, shows) in [
        (format!("check {}", data.display()), "checking"),
        (format!("compact {}", data.display()), "merging"),
        (
            format!("backup {} {}", data.display(), backup.display()),
            "backing up",
        ),
    ] {
        let out = Command::new("script")
            .args(["-qc", &format!("{BIN} {args}"), "/dev/null"])
            .output()
            .expect("script(1), from util-linux");
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{args}: {shown}");
        assert!(
            shown.contains(shows) && shown.contains("MiB"),
            "{args}: no bar in {shown:?}"
        );
    }
}
