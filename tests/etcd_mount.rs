//! The etcd backend through real mounts: the contract of docs/SEMANTICS.md
//! with shell tools, two mounts of one namespace seeing each other's
//! changes, and a 3-member cluster losing its leader, its quorum and its
//! space.

mod common;

use std::fs;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::Mount;
use common::etcd::Cluster;

#[test]
fn files_folders_and_tools_work_as_on_a_local_store() {
    require_etcd!();
    let cluster = Cluster::start(3, &[]);
    let m = Mount::start_backend(&cluster.url("tools"), &[]);
    m.ok("echo hello > mnt/greeting && echo world >> mnt/greeting");
    assert_eq!(m.ok("cat mnt/greeting"), "hello\nworld\n");
    assert_eq!(m.ok("stat -c %s mnt/greeting"), "12\n");
    m.ok("truncate -s 3 mnt/greeting && sed -i s/hel/HEL/ mnt/greeting");
    assert_eq!(m.ok("cat mnt/greeting"), "HEL");
    m.ok("mkdir -p mnt/shop/products && echo 7 > mnt/shop/products/42");
    m.ok("mv mnt/greeting mnt/shop/hi && chmod 600 mnt/shop/hi");
    assert_eq!(m.ok("stat -c %a mnt/shop/hi"), "600\n");
    m.ok("ln -s products/42 mnt/shop/latest");
    assert_eq!(m.ok("cat mnt/shop/latest"), "7\n");
    m.ok("mv mnt/shop mnt/store");
    assert_eq!(
        m.ok("cd mnt && find . | sort"),
        ".\n./store\n./store/hi\n./store/latest\n./store/products\n./store/products/42\n"
    );
    m.fails("rmdir mnt/store/products");
    m.ok("rm mnt/store/products/42 && rmdir mnt/store/products");
    assert!(m.fails("cat mnt/nothing").contains("No such file"));

    // A tree in and out with tar, compared byte for byte.
    m.ok(
        "mkdir -p src/a/b src/c && head -c 100000 /dev/urandom > src/a/b/bin \
         && echo x > src/c/x && seq 1 1000 > src/a/n && chmod 640 src/a/n \
         && tar cf t.tar -C src . && mkdir mnt/t && tar xf t.tar -C mnt/t \
         && diff -r src mnt/t && tar cf - -C mnt/t . | tar tf - | sort > listed",
    );
    assert_eq!(m.ok("stat -c %a mnt/t/a/n"), "640\n");
    assert_eq!(m.ok("grep -rl 500 mnt/t"), "mnt/t/a/n\n");
}

/// A large file is extents of at most 1 MiB (etcd takes requests of
/// 1.5 MiB); an append writes one more, a reader that opened before a
/// rewrite keeps reading its version, and a removed file's records go.
/// What a rewrite replaced stays until no host can need it any more (the
/// garbage collection's hour, tested on the library in fs_model).
#[test]
fn a_large_file_is_extents_and_an_append_writes_one_more() {
    require_etcd!();
    let cluster = Cluster::start(3, &[]);
    let m = Mount::start_backend(&cluster.url("large"), &[]);
    let big = common::pattern(5 << 20, 1);
    fs::write(m.scratch("big"), &big).unwrap();
    m.ok("cp big mnt/big && cmp big mnt/big");
    let first = cluster.count("large/x");
    assert!((5..=6).contains(&first), "{first} extents for 5 MiB");
    let mut reader = fs::File::open(m.path("big")).unwrap();
    let other = common::pattern(5 << 20, 2);
    fs::write(m.scratch("other"), &other).unwrap();
    m.ok("cp other mnt/big && cmp other mnt/big");
    let mut old = Vec::new();
    std::io::Read::read_to_end(&mut reader, &mut old).unwrap();
    assert!(old == big, "a pinned reader saw another value");
    let before = cluster.count("large/x");
    m.ok("printf tail >> mnt/big");
    assert_eq!(m.ok("stat -c %s mnt/big"), format!("{}\n", (5 << 20) + 4));
    assert_eq!(m.ok("tail -c 4 mnt/big"), "tail");
    assert_eq!(
        cluster.count("large/x"),
        before + 1,
        "an append is one extent"
    );
    drop(reader);
    m.ok("rm mnt/big");
    assert_eq!(cluster.count("large/d"), 0, "the name went");
    assert_eq!(cluster.count("large/i"), 1, "only the root's inode is left");
}

#[test]
fn two_mounts_see_each_others_changes_within_a_second() {
    require_etcd!();
    let cluster = Cluster::start(3, &[]);
    let url = cluster.url("shared");
    let a = Mount::start_backend(&url, &[]);
    let b = Mount::start_backend(&url, &[]);
    let second = Duration::from_secs(1);
    a.ok("mkdir mnt/d && echo one > mnt/d/k");
    let seen = common::within(second, || {
        fs::read_to_string(b.path("d/k")).is_ok_and(|v| v == "one\n")
    });
    assert!(seen.is_some(), "b did not see a's new key within 1 s");
    eprintln!("b saw a's new key after {seen:?}");
    // b has the name and attributes cached now; a changes the value.
    assert_eq!(b.ok("stat -c %s mnt/d/k"), "4\n");
    a.ok("echo longer > mnt/d/k");
    let seen = common::within(second, || {
        b.ok("stat -c %s mnt/d/k") == "7\n"
            && fs::read_to_string(b.path("d/k")).unwrap() == "longer\n"
    });
    assert!(seen.is_some(), "b did not see a's new value within 1 s");
    eprintln!("b saw a's new value (its stat cached before) after {seen:?}");
    b.ok("mv mnt/d/k mnt/d/moved");
    let seen = common::within(second, || {
        !a.path("d/k").exists() && a.ok("ls mnt/d") == "moved\n"
    });
    assert!(seen.is_some(), "a did not see b's rename within 1 s");
    b.ok("rm mnt/d/moved");
    let seen = common::within(second, || a.ok("ls mnt/d").is_empty());
    assert!(seen.is_some(), "a did not see b's rm within 1 s");
}

#[test]
fn conflicting_writers_on_two_mounts_never_mix_values() {
    require_etcd!();
    let cluster = Cluster::start(3, &[]);
    let url = cluster.url("race");
    let a = Mount::start_backend(&url, &[]);
    let b = Mount::start_backend(&url, &[]);
    let values = [common::pattern(300_000, 2), common::pattern(200_000, 3)];
    fs::write(a.path("k"), &values[0]).unwrap();
    let stop = AtomicBool::new(false);
    /// Stops the writers however the reads end: a failed one must not
    /// leave them writing until the cluster is full, and the test waiting.
    struct Stop<'a>(&'a AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    thread::scope(|s| {
        for (m, v) in [(&a, &values[0]), (&b, &values[1])] {
            let stop = &stop;
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let mut f = fs::File::create(m.path("k")).unwrap();
                    // Two writes, so a mix could show.
                    f.write_all(&v[..v.len() / 2]).unwrap();
                    f.write_all(&v[v.len() / 2..]).unwrap();
                }
            });
        }
        let _stop = Stop(&stop);
        let end = Instant::now() + Duration::from_secs(3);
        let mut reads = 0;
        while Instant::now() < end {
            for m in [&a, &b] {
                let got = fs::read(m.path("k")).unwrap_or_else(|e| panic!("reading k: {e}"));
                assert!(
                    values.contains(&got),
                    "a read saw {} bytes that are neither value",
                    got.len()
                );
                reads += 1;
            }
        }
        assert!(reads > 10);
    });
    let last = fs::read(a.path("k")).unwrap();
    let seen = common::within(Duration::from_secs(1), || {
        fs::read(b.path("k")).unwrap() == last
    });
    assert!(seen.is_some(), "the two mounts disagree on the last commit");
}

#[test]
fn killing_the_leader_under_load_loses_no_acknowledged_write() {
    require_etcd!();
    let mut cluster = Cluster::start(3, &[]);
    let url = cluster.url("faults");
    let m = Mount::start_backend(&url, &[]);
    let mut acked = Vec::new();
    let mut failed = 0;
    let start = Instant::now();
    let mut killed = None;
    for i in 0..400 {
        if i == 100 {
            let leader = cluster.wait_for_leader(Duration::from_secs(10));
            cluster.kill(leader);
            killed = Some(leader);
        }
        if i == 300
            && let Some(l) = killed.take()
        {
            cluster.restart(l);
        }
        let v = format!("value {i}\n");
        match fs::write(m.path(&format!("k{i}")), &v) {
            Ok(()) => acked.push((i, v)),
            Err(_) => failed += 1,
        }
    }
    assert!(
        acked.len() >= 300,
        "only {} of 400 writes succeeded",
        acked.len()
    );
    drop(m);
    // A fresh mount reads what the cluster holds.
    let check = Mount::start_backend(&url, &[]);
    for (i, v) in &acked {
        let got = fs::read_to_string(check.path(&format!("k{i}")));
        assert_eq!(
            got.ok().as_deref(),
            Some(v.as_str()),
            "acknowledged k{i} lost"
        );
    }
    eprintln!(
        "{} writes acknowledged, {failed} failed, in {:?}",
        acked.len(),
        start.elapsed()
    );
}

#[test]
fn without_a_quorum_writes_fail_in_bounded_time_and_the_mount_recovers() {
    require_etcd!();
    let mut cluster = Cluster::start(3, &[]);
    let m = Mount::start_backend(&cluster.url("quorum"), &[]);
    m.ok("echo before > mnt/k && echo during > during");
    cluster.kill(1);
    cluster.kill(2);
    let start = Instant::now();
    // cp reports what close returns (a shell's `>` does not).
    let err = m.fails("cp during mnt/k");
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(30),
        "a write without quorum took {took:?}"
    );
    assert!(err.contains("timed out"), "unexpected error: {err}");
    // Reads are linearizable: they need the quorum too.
    let err = m.fails("cat mnt/k");
    assert!(err.contains("timed out"), "unexpected error: {err}");
    cluster.restart(1);
    cluster.restart(2);
    cluster.wait_for_leader(Duration::from_secs(30));
    // A timed-out write's outcome is unknown: the member left alone had
    // the transaction in its log, and may commit it once it has a quorum
    // again. Either value, whole.
    let now = m.ok("cat mnt/k");
    assert!(now == "before\n" || now == "during\n", "a mix: {now:?}");
    m.ok("echo after > mnt/k");
    assert_eq!(m.ok("cat mnt/k"), "after\n");
}

#[test]
fn a_full_cluster_gives_enospc() {
    require_etcd!();
    let cluster = Cluster::start(1, &["--quota-backend-bytes", "8000000"]);
    let m = Mount::start_backend(&cluster.url("full"), &[]);
    let chunk = common::pattern(500_000, 4);
    fs::write(m.scratch("chunk"), &chunk).unwrap();
    let mut err = String::new();
    for i in 0..200 {
        let out = m.sh(&format!("cp chunk mnt/k{i}"));
        if !out.status.success() {
            err = String::from_utf8_lossy(&out.stderr).into_owned();
            break;
        }
    }
    assert!(
        err.contains("No space left"),
        "expected ENOSPC, got: {err:?}"
    );
}
