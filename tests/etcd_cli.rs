//! The offline commands on an etcd prefix, and backups that move a
//! namespace between a local data directory and etcd in both directions.

mod common;

use std::fs;
use std::process::{Command, Output};

use common::Mount;
use common::etcd::Cluster;

fn caskfs(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(common::BIN);
    cmd.args(args);
    if let Some(input) = stdin {
        use std::io::Write;
        use std::process::Stdio;
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("caskfs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("stdin");
        return child.wait_with_output().expect("caskfs");
    }
    cmd.output().expect("caskfs")
}

fn ok(args: &[&str]) -> String {
    let out = caskfs(args, None);
    assert!(
        out.status.success(),
        "caskfs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn put_get_ls_rm_and_stats_work_on_a_prefix() {
    require_etcd!();
    let cluster = Cluster::start(1, &[]);
    let url = cluster.url("cli");
    ok(&["put", &url, "shop/products/42", "seven"]);
    let out = caskfs(&["put", &url, "greeting"], Some(b"hi\n"));
    assert!(out.status.success());
    assert_eq!(ok(&["ls", &url]), "greeting\nshop/\n");
    assert_eq!(
        ok(&["ls", "-r", &url]),
        "greeting\nshop/\nshop/products/\nshop/products/42\n"
    );
    assert_eq!(ok(&["get", &url, "shop/products/42"]), "seven");
    assert_eq!(
        ok(&["stats", "--json", &url]),
        format!(
            "{{\"backend\":\"etcd\",\"url\":\"{url}\",\"keys\":2,\"folders\":2,\"bytes\":8}}\n"
        )
    );
    ok(&["rm", &url, "greeting"]);
    let missing = caskfs(&["get", &url, "greeting"], None);
    assert_eq!(missing.status.code(), Some(4), "a missing key's exit code");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));
    let bad = caskfs(&["ls", "etcd://nowhere"], None);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn a_namespace_moves_from_etcd_to_a_data_directory_and_back() {
    require_etcd!();
    let cluster = Cluster::start(1, &[]);
    let from = cluster.url("from");
    let big = common::pattern(3 << 20, 9);
    {
        let m = Mount::start_backend(&from, &[]);
        fs::write(m.path("big"), &big).unwrap();
        m.ok("mkdir -p mnt/a/empty && echo x > mnt/a/x && chmod 640 mnt/a/x && ln -s a/x mnt/link");
    }
    let root = common::temp_root();
    let local = root.path().join("local");
    let local = local.to_str().unwrap();
    assert!(ok(&["backup", &from, local]).contains("copied 5 records"));
    // The local copy mounts as any data directory, modes and all.
    {
        let m = Mount::start_with(common::temp_root(), local.into(), &[]);
        assert!(fs::read(m.path("big")).unwrap() == big);
        assert_eq!(
            m.ok("stat -c %a mnt/a/x && readlink mnt/link && ls mnt/a"),
            "640\na/x\nempty\nx\n"
        );
    }
    let to = cluster.url("to");
    assert!(ok(&["backup", local, &to]).contains("copied 5 records"));
    let again = caskfs(&["backup", local, &to], None);
    assert!(!again.status.success(), "a backup into a non-empty prefix");
    let m = Mount::start_backend(&to, &[]);
    assert!(fs::read(m.path("big")).unwrap() == big);
    assert_eq!(
        m.ok("stat -c %a mnt/a/x && cat mnt/link && ls mnt/a"),
        "640\nx\nempty\nx\n"
    );
}

#[test]
fn stats_and_backup_take_the_mountpoint_of_a_prefix() {
    require_etcd!();
    let cluster = Cluster::start(1, &[]);
    let m = Mount::start_backend(&cluster.url("mounted"), &[]);
    m.ok("mkdir mnt/d && printf 12345 > mnt/d/k");
    m.ok("python3 -c \"import os; os.setxattr('mnt/d/k', 'user.kept', b'yes')\"");
    let mnt = m.mnt.to_str().unwrap();
    // The URL's stats count the prefix; the mountpoint's ask the daemon
    // (tests/etcd_stats.rs).
    assert_eq!(
        ok(&["stats", &cluster.url("mounted")]),
        format!(
            "{}: keys 1, folders 1, bytes of values 5\n",
            cluster.url("mounted")
        )
    );
    let live = ok(&["stats", mnt]);
    assert!(
        live.starts_with(&format!("etcd {}\n", cluster.url("mounted"))) && live.contains("watch: "),
        "{live}"
    );
    let dest = m.scratch("copy");
    assert!(ok(&["backup", mnt, dest.to_str().unwrap()]).contains("copied 2 records"));
    assert_eq!(ok(&["get", dest.to_str().unwrap(), "d/k"]), "12345");
    // Extended attributes come along.
    let copy = Mount::start_with(common::temp_root(), dest.clone(), &[]);
    let kept = copy.ok("python3 -c \"import os; print(os.getxattr('mnt/d/k', 'user.kept'))\"");
    assert_eq!(kept, "b'yes'\n");
    drop(copy);
    let compact = caskfs(&["compact", mnt], None);
    assert_eq!(compact.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&compact.stderr).contains("etcd compacts its own history"));
}

#[test]
fn mount_with_a_backend_takes_only_the_mountpoint() {
    let root = common::temp_root();
    let mnt = root.path().to_str().unwrap();
    let url = "etcd://127.0.0.1:1/p";
    for (args, says) in [
        (
            vec!["mount", "--backend", url, mnt, mnt],
            "give only the mountpoint",
        ),
        (
            vec!["mount", "--backend", url, "--cache-reads", mnt],
            "--cache-reads has no meaning with --backend",
        ),
        (
            vec![
                "mount",
                "--backend",
                url,
                "--sync",
                "always",
                "--max-segment-size",
                "1M",
                mnt,
            ],
            "--max-segment-size, --sync have no meaning with --backend",
        ),
        (
            vec!["mount", "--backend", url, "--no-compaction", mnt],
            "--no-compaction has no meaning",
        ),
        (
            vec!["mount", "--backend", "etcd://nowhere", mnt],
            "expected etcd://[USER@]HOST:PORT",
        ),
        (
            vec!["mount", mnt],
            "usage: caskfs mount DATA_DIR MOUNTPOINT",
        ),
    ] {
        let out = caskfs(&args, None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// A prefix an older caskfs wrote (keys that are paths: `m/` records, `d/`
/// bytes, `c/` chunks; `src/backend/etcd/legacy.rs`) is not mounted or
/// read in place: commands say how to carry it over, and `caskfs backup`
/// reads it into a data directory, whose copy goes to a new prefix.
#[test]
fn an_old_layout_prefix_is_refused_with_advice_and_backed_up_into_the_schema() {
    use caskfs::backend::etcd::legacy::{Body, Meta, Record};
    require_etcd!();
    let cluster = Cluster::start(1, &[]);
    let meta = |mode: u32| Meta {
        mode,
        uid: 1000,
        gid: 100,
        mtime: 981_173_106_000_000_000,
        ctime: 981_173_106_000_000_000,
    };
    let record = |mode, len, body| Record {
        meta: meta(mode),
        len,
        body,
    };
    cluster.put(
        "old/m/greeting",
        &record(0o100640, 6, Body::Inline).encode(),
    );
    cluster.put("old/d/greeting", b"hello\n");
    cluster.put("old/m/docs", &record(0o040750, 0, Body::Inline).encode());
    let big = common::pattern((1 << 20) + 1000, 3);
    let chunks = Body::Chunks { generation: 7 };
    cluster.put(
        "old/m/docs/big",
        &record(0o100644, big.len() as u64, chunks).encode(),
    );
    cluster.put("old/c/0000000000000007/00000000", &big[..1 << 20]);
    cluster.put("old/c/0000000000000007/00000001", &big[1 << 20..]);

    let old = cluster.url("old");
    let refused = caskfs(&["ls", &old], None);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        said.contains("written by an older caskfs") && said.contains("caskfs backup"),
        "{said}"
    );

    let root = common::temp_root();
    let local = root.path().join("local");
    let local = local.to_str().unwrap();
    ok(&["backup", &old, local]);
    assert_eq!(ok(&["get", local, "greeting"]), "hello\n");
    assert!(caskfs(&["get", local, "docs/big"], None).stdout == big);
    let new = cluster.url("new");
    ok(&["backup", local, &new]);
    let m = Mount::start_backend(&new, &[]);
    assert_eq!(
        m.ok("stat -c '%a %u %g %Y' mnt/greeting mnt/docs && cat mnt/greeting"),
        "640 1000 100 981173106\n750 1000 100 981173106\nhello\n"
    );
    assert!(fs::read(m.path("docs/big")).unwrap() == big);
}
