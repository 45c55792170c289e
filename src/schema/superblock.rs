//! The superblock (key `S\0`): that a store is laid out as this schema,
//! which version of it, and whether an old store is still being carried
//! over into it.

use super::codec::{In, Out, corrupt};
use crate::backend::{Error, Result};

const MAGIC: &[u8; 8] = b"caskfs\0s";
/// The schema version this build writes and reads.
pub const VERSION: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Ready,
    /// A store of the old layout is being copied into the schema: what
    /// the schema holds may be incomplete (a second try starts over).
    Upgrading,
    /// Copied whole; the old layout's keys are being removed.
    Clearing,
}

pub fn encode(state: State) -> Vec<u8> {
    let mut o = Out::default();
    o.bytes(MAGIC).var(u64::from(VERSION)).u8(match state {
        State::Ready => 0,
        State::Upgrading => 1,
        State::Clearing => 2,
    });
    o.0
}

pub fn decode(b: &[u8]) -> Result<State> {
    let rest = b
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| corrupt("superblock"))?;
    let mut i = In::new(rest, "superblock");
    let version = i.var()?;
    if version != u64::from(VERSION) {
        return Err(Error::Other {
            errno: libc::EPROTO,
            why: format!(
                "the store's schema is version {version}; this build reads version {VERSION} (a newer caskfs wrote it?)"
            ),
        });
    }
    let state = match i.u8()? {
        0 => State::Ready,
        1 => State::Upgrading,
        2 => State::Clearing,
        _ => return Err(corrupt("superblock")),
    };
    i.end()?;
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_other_versions_are_refused() {
        for s in [State::Ready, State::Upgrading, State::Clearing] {
            assert_eq!(decode(&encode(s)).unwrap(), s);
        }
        let mut future = encode(State::Ready);
        future[8] = 2;
        assert!(
            decode(&future)
                .unwrap_err()
                .to_string()
                .contains("version 2")
        );
        assert!(decode(b"caskfs").is_err());
    }
}
