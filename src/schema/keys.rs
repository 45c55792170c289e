//! Every key the schema stores, built and taken apart in one place. A key
//! is a one-byte tag and its fields; ids are big-endian (so that a shared
//! backend's ranges come out in order) and below `ID_LIMIT`, so the
//! second byte of every key is 0. No key of the old layout (a path, which
//! never holds a NUL) looks like one.

/// Ids (inode numbers, extent and node ids) stay below this.
pub const ID_LIMIT: u64 = 1 << 56;

/// The root folder's inode number, as FUSE numbers it.
pub const ROOT: u64 = 1;

pub const SUPERBLOCK: &[u8] = b"S\0";

const INODE: u8 = b'i';
const ENTRY: u8 = b'd';
const NODE: u8 = b'n';
const EXTENT: u8 = b'x';
const ORPHAN: u8 = b'o';
const COUNTER: u8 = b'c';
const HOLDERS: u8 = b'r';
const LOCKS: u8 = b'l';

/// A key of the schema, not one of the old layout.
pub fn is_schema_key(key: &[u8]) -> bool {
    key.len() >= 2 && key[1] == 0
}

fn tagged(tag: u8, id: u64) -> [u8; 9] {
    let mut k = [0; 9];
    k[0] = tag;
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

fn id_of(tag: u8, key: &[u8]) -> Option<u64> {
    match key {
        [t, rest @ ..] if *t == tag && rest.len() == 8 && is_schema_key(key) => {
            Some(u64::from_be_bytes(rest.try_into().ok()?))
        }
        _ => None,
    }
}

pub fn inode(ino: u64) -> [u8; 9] {
    tagged(INODE, ino)
}

/// Where the file locks on `ino` lie (`backend::locks`): one key per
/// daemon and lock owner after it, on a shared backend only.
pub fn locks(ino: u64) -> [u8; 9] {
    tagged(LOCKS, ino)
}

pub fn inode_prefix() -> &'static [u8] {
    &[INODE]
}

pub fn inode_of(key: &[u8]) -> Option<u64> {
    id_of(INODE, key)
}

pub fn node(id: u64) -> [u8; 9] {
    tagged(NODE, id)
}

pub fn extent(id: u64) -> [u8; 9] {
    tagged(EXTENT, id)
}

pub fn extent_prefix() -> &'static [u8] {
    &[EXTENT]
}

pub fn node_prefix() -> &'static [u8] {
    &[NODE]
}

/// The id of an extent or node key.
pub fn block_of(key: &[u8]) -> Option<u64> {
    id_of(EXTENT, key).or_else(|| id_of(NODE, key))
}

/// Who may hold extent `id` besides the file that wrote it: present only
/// for an extent `copy_file_range` shared (`fs/sharing.rs`).
pub fn holders(id: u64) -> [u8; 9] {
    tagged(HOLDERS, id)
}

pub fn holders_prefix() -> &'static [u8] {
    &[HOLDERS]
}

pub fn holders_of(key: &[u8]) -> Option<u64> {
    id_of(HOLDERS, key)
}

/// An inode with no name left that was open: freed at the next open.
pub fn orphan(ino: u64) -> [u8; 9] {
    tagged(ORPHAN, ino)
}

pub fn orphan_prefix() -> &'static [u8] {
    &[ORPHAN]
}

pub fn orphan_of(key: &[u8]) -> Option<u64> {
    id_of(ORPHAN, key)
}

/// The entry `name` in folder `parent`.
pub fn entry(parent: u64, name: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + name.len());
    k.extend_from_slice(&tagged(ENTRY, parent));
    k.extend_from_slice(name);
    k
}

/// What every entry key starts with (all folders' entries).
pub fn entry_prefix() -> &'static [u8] {
    &[ENTRY]
}

/// The folder and name of an entry key.
pub fn entry_of(key: &[u8]) -> Option<(u64, &[u8])> {
    if key.len() < 10 || key[0] != ENTRY || !is_schema_key(key) {
        return None;
    }
    let parent = u64::from_be_bytes(key[1..9].try_into().ok()?);
    Some((parent, &key[9..]))
}

/// A counter: ids below its value are taken.
pub fn counter(name: &str) -> Vec<u8> {
    let mut k = vec![COUNTER, 0];
    k.extend_from_slice(name.as_bytes());
    k
}

/// Present while the store is open: found at open, it says the last one
/// crashed.
pub fn open_mark() -> Vec<u8> {
    counter("open")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_never_look_like_paths() {
        let e = entry(ROOT, b"name");
        assert_eq!(entry_of(&e), Some((ROOT, &b"name"[..])));
        assert_eq!(entry_of(&inode(5)), None);
        assert_eq!(orphan_of(&orphan(7)), Some(7));
        assert_eq!(orphan_of(&inode(7)), None);
        for k in [
            SUPERBLOCK.to_vec(),
            inode(ID_LIMIT - 1).to_vec(),
            e,
            node(3).to_vec(),
            extent(4).to_vec(),
            counter("ino"),
        ] {
            assert!(is_schema_key(&k), "{k:?}");
            assert!(k.contains(&0), "a path never holds a NUL");
        }
        assert!(!is_schema_key(b"shop/products/42"));
        assert_eq!(entry_of(b"docs/readme.txt"), None, "a path is no entry");
        assert_eq!(inode_of(b"i23456789"), None);
    }
}
