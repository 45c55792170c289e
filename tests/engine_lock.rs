//! One owner per data directory, and the limits on keys and values.

mod engine_common;

use std::fs;

use caskfs::engine::{BatchOp, Error, Options, Store};
use engine_common::{open, seg_path, segment_ids, small_opts, tempdir};

#[test]
fn a_second_open_fails_with_locked_naming_the_holder() {
    let d = tempdir();
    let first = open(d.path());
    first.put(b"k", b"v").expect("put");
    let err = match Store::open(d.path(), small_opts()) {
        Ok(_) => panic!("a second open of a locked directory succeeded"),
        Err(e) => e,
    };
    assert!(matches!(err, Error::Locked { .. }), "not Locked: {err:?}");
    let msg = err.to_string();
    assert!(msg.contains("in use"), "message does not say in use: {msg}");
    assert!(
        msg.contains(&std::process::id().to_string()),
        "message does not name the holder's pid: {msg}"
    );
    // Read-only opens and check are refused too.
    let ro = Options {
        read_only: true,
        ..small_opts()
    };
    assert!(matches!(
        Store::open(d.path(), ro),
        Err(Error::Locked { .. })
    ));
    assert!(matches!(
        caskfs::engine::check(d.path()),
        Err(Error::Locked { .. })
    ));
    // The refused opens changed nothing.
    assert_eq!(first.get(b"k").expect("get"), Some(b"v".to_vec()));
    first.close().expect("close");

    let again = open(d.path());
    assert_eq!(again.get(b"k").expect("get"), Some(b"v".to_vec()));
    drop(again); // dropping without close releases the lock as well
    let third = open(d.path());
    assert_eq!(third.get(b"k").expect("get"), Some(b"v".to_vec()));
}

#[test]
fn invalid_keys_are_refused_and_nothing_is_written() {
    let d = tempdir();
    let s = open(d.path());
    s.put(b"existing", b"v").expect("put");
    let seg = seg_path(d.path(), *segment_ids(d.path()).last().expect("segment"));
    let len = fs::metadata(&seg).expect("stat").len();
    let too_long = vec![b'x'; 4096];
    for key in [&b""[..], &too_long] {
        for (what, r) in [
            ("put", s.put(key, b"v")),
            ("put_from", s.put_from(key, 1, &mut &b"v"[..])),
            ("delete", s.delete(key)),
            (
                "batch",
                s.write_batch(&[BatchOp::Put(b"ok", b"v"), BatchOp::Delete(key)]),
            ),
            (
                "batch in order",
                s.apply_in_order(&[BatchOp::Put(b"ok", b"v"), BatchOp::Put(key, b"v")]),
            ),
        ] {
            match r {
                Err(Error::InvalidKey { .. }) => {}
                other => panic!(
                    "{what} of {} bytes: expected InvalidKey, got {other:?}",
                    key.len()
                ),
            }
        }
        let msg = s.put(key, b"v").expect_err("refused").to_string();
        assert!(msg.contains("invalid key"), "unclear message: {msg}");
    }
    assert_eq!(
        fs::metadata(&seg).expect("stat").len(),
        len,
        "bytes were written"
    );
    assert_eq!(s.keys(), vec![b"existing".to_vec()]);
    s.close().expect("close");
}

/// Keys are bytes, not paths: whatever a path could not be is a key.
#[test]
fn any_bytes_of_1_to_4095_are_a_key() {
    let d = tempdir();
    let s = open(d.path());
    let longest = vec![b'/'; 4095];
    let keys: [&[u8]; 9] = [
        b".",
        b"..",
        b"/",
        b"a//b",
        b"/a/",
        b"nul\0",
        b"\xff\xfe",
        &[b'x'; 256],
        &longest,
    ];
    for (i, key) in keys.iter().enumerate() {
        s.put(key, format!("value {i}").as_bytes()).expect("put");
    }
    s.delete(b"..").expect("delete");
    s.close().expect("close");
    let s = open(d.path());
    for (i, key) in keys.iter().enumerate() {
        let want = (*key != b"..").then(|| format!("value {i}").into_bytes());
        assert_eq!(s.get(key).expect("get"), want, "key of {} bytes", key.len());
    }
}

#[test]
fn a_value_over_the_maximum_is_refused_and_nothing_is_written() {
    let d = tempdir();
    let opts = Options {
        max_value_size: 1000,
        ..small_opts()
    };
    let s = Store::open(d.path(), opts.clone()).expect("open");
    s.put(b"k", b"old").expect("put");
    let seg = seg_path(d.path(), *segment_ids(d.path()).last().expect("segment"));
    let len = fs::metadata(&seg).expect("stat").len();
    let big = vec![7u8; 1001];
    let attempts = [
        ("put", s.put(b"k", &big)),
        ("put_from", s.put_from(b"k", 1001, &mut &big[..])),
        (
            "batch",
            s.write_batch(&[BatchOp::Put(b"other", b"small"), BatchOp::Put(b"k", &big)]),
        ),
    ];
    for (what, r) in attempts {
        match r {
            Err(e @ Error::ValueTooLarge { .. }) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("1001") && msg.contains("1000"),
                    "{what}: {msg}"
                );
            }
            other => panic!("{what}: expected ValueTooLarge, got {other:?}"),
        }
    }
    assert_eq!(
        fs::metadata(&seg).expect("stat").len(),
        len,
        "bytes were written"
    );
    // A batch is one record: its changes together are held to the limit,
    // so that a record's offsets and lengths stay within a u32.
    match s.write_batch(&[
        BatchOp::Put(b"other", &big[..600]),
        BatchOp::Put(b"k", &big[..600]),
    ]) {
        Err(e @ Error::BatchTooLarge { .. }) => {
            let msg = e.to_string();
            // Two values of 600 bytes, two record headers, two keys.
            let len = 2 * 600 + 2 * caskfs::engine::RECORD_HEADER_LEN + "other".len() + "k".len();
            assert!(
                msg.contains(&format!(" {len} bytes")) && msg.contains("1000"),
                "batch: {msg}"
            );
        }
        other => panic!("batch of 1200 bytes: expected BatchTooLarge, got {other:?}"),
    }
    assert_eq!(s.get(b"k").expect("get"), Some(b"old".to_vec()));
    assert_eq!(s.get(b"other").expect("get"), None, "half a batch applied");
    s.put(b"k", &big[..1000])
        .expect("exactly the maximum works");
    s.close().expect("close");
    let s = Store::open(d.path(), opts).expect("reopen");
    assert_eq!(s.get(b"k").expect("get").map(|v| v.len()), Some(1000));
    assert_eq!(s.get(b"other").expect("get"), None);
}

#[test]
fn bad_options_are_refused_with_a_clear_error() {
    let d = tempdir();
    for opts in [
        Options {
            max_segment_size: 4095,
            ..small_opts()
        },
        Options {
            max_value_size: u64::MAX,
            ..small_opts()
        },
    ] {
        match Store::open(d.path(), opts) {
            Err(Error::InvalidOption(msg)) => assert!(!msg.is_empty()),
            Err(e) => panic!("expected InvalidOption, got {e}"),
            Ok(_) => panic!("bad options accepted"),
        }
    }
}
