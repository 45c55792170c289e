//! Keys are bytes of any value, 1 to 4095 of them: a record's key length
//! field holds no more (the filesystem's keys, docs/SCHEMA.md, are far
//! shorter). Stores written before the schema have paths for keys; what
//! a path is, is src/upgrade.rs's business, not the engine's.

use super::error::{Error, Result, show_key};

/// The longest key, in bytes.
pub const MAX_KEY_LEN: usize = 4095;

/// Refuses an empty key or one longer than `MAX_KEY_LEN`.
pub fn check_key(key: &[u8]) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(Error::InvalidKey {
            key: show_key(&key[..key.len().min(64)]),
            reason: "not 1 to 4095 bytes long",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_bytes_of_1_to_4095() {
        let longest = vec![b'/'; MAX_KEY_LEN];
        for good in [
            &b"a"[..],
            b"\0",
            b"/",
            b"..",
            b"a//b",
            b"\xff\xfe",
            &longest,
        ] {
            assert!(check_key(good).is_ok(), "{} bytes", good.len());
        }
        let too_long = vec![b'x'; MAX_KEY_LEN + 1];
        for bad in [&b""[..], &too_long] {
            assert!(
                matches!(check_key(bad), Err(Error::InvalidKey { .. })),
                "{} bytes",
                bad.len()
            );
        }
    }
}
