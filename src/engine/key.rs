//! Keys are file names: 1..=255 bytes, no `/` or NUL, not `.` or `..`.

use super::error::{Error, Result, show_key};

pub const MAX_KEY_LEN: usize = 255;

pub fn validate_key(key: &[u8]) -> Result<()> {
    let reason = if key.is_empty() {
        "empty"
    } else if key.len() > MAX_KEY_LEN {
        "longer than 255 bytes"
    } else if key == b"." || key == b".." {
        "\".\" and \"..\" are not keys"
    } else if key.contains(&b'/') {
        "contains '/'"
    } else if key.contains(&0) {
        "contains a NUL byte"
    } else {
        return Ok(());
    };
    Err(Error::InvalidKey {
        key: show_key(&key[..key.len().min(64)]),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_only() {
        for good in [
            &b"a"[..],
            b"with space",
            b"-dash",
            "ünï".as_bytes(),
            b"\xff\xfe",
            &[b'x'; 255],
        ] {
            assert!(validate_key(good).is_ok());
        }
        for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b", &[b'x'; 256]] {
            assert!(validate_key(bad).is_err());
        }
    }
}
