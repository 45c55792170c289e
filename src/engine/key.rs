//! Keys are paths: 1 or more components separated by `/`, each 1..=255
//! bytes with no NUL and not `.` or `..`, at most 4095 bytes in all (the
//! limits of a Linux path, so that every key can be a file in the mount).

use super::error::{Error, Result, show_key};

/// The longest key, in bytes: PATH_MAX less its terminating NUL.
pub const MAX_KEY_LEN: usize = 4095;
/// The longest component of a key, in bytes: NAME_MAX.
pub const MAX_NAME_LEN: usize = 255;

pub fn validate_key(key: &[u8]) -> Result<()> {
    let (reason, too_long) = if key.is_empty() {
        ("empty", false)
    } else if key.len() > MAX_KEY_LEN {
        ("longer than 4095 bytes", true)
    } else if key.contains(&0) {
        ("contains a NUL byte", false)
    } else {
        let mut why = None;
        for part in key.split(|&b| b == b'/') {
            why = if part.is_empty() {
                Some((
                    "has an empty component (a leading, trailing or double '/')",
                    false,
                ))
            } else if part == b"." || part == b".." {
                Some(("has a \".\" or \"..\" component", false))
            } else if part.len() > MAX_NAME_LEN {
                Some(("has a component longer than 255 bytes", true))
            } else {
                continue;
            };
            break;
        }
        match why {
            Some(w) => w,
            None => return Ok(()),
        }
    };
    Err(Error::InvalidKey {
        key: show_key(&key[..key.len().min(64)]),
        reason,
        too_long,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn too_long(key: &[u8]) -> Option<bool> {
        match validate_key(key) {
            Ok(()) => None,
            Err(Error::InvalidKey { too_long, .. }) => Some(too_long),
            Err(e) => panic!("unexpected error {e}"),
        }
    }

    #[test]
    fn names_and_paths() {
        let name_255 = [b'x'; 255];
        // 16 components of 255 bytes and 15 slashes: 4095 bytes.
        let path_4095 = vec![&name_255[..]; 16].join(&b'/');
        assert_eq!(path_4095.len(), 4095);
        for good in [
            &b"a"[..],
            b"with space",
            b"-dash",
            "ünï".as_bytes(),
            b"\xff\xfe",
            &name_255,
            b"a/b/c",
            b"shop/products/42/stock",
            b"a/.hidden/..dots/...",
            &path_4095,
        ] {
            assert_eq!(
                too_long(good),
                None,
                "{}",
                show_key(&good[..good.len().min(40)])
            );
        }
        let name_256 = [b'x'; 256];
        let in_path = [&b"a/"[..], &name_256, b"/b"].concat();
        let path_4096 = [&path_4095[..], b"y"].concat();
        for long in [&name_256[..], &in_path, &path_4096] {
            assert_eq!(too_long(long), Some(true), "{} bytes", long.len());
        }
        for bad in [
            &b""[..],
            b".",
            b"..",
            b"/",
            b"a//b",
            b"/a",
            b"a/",
            b"a/./b",
            b"a/../b",
            b"./a",
            b"a/..",
            b"a\0b",
            b"a/b\0",
        ] {
            assert_eq!(too_long(bad), Some(false), "{}", show_key(bad));
        }
    }
}
