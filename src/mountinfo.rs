//! What /proc/self/mountinfo says is mounted: one parser for the daemon
//! (is the mountpoint free?) and the commands (which mount serves a
//! path?).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

/// One line of mountinfo: where, what filesystem type, and its source.
#[derive(Debug, PartialEq, Eq)]
pub struct Mount {
    pub mountpoint: OsString,
    pub fstype: String,
    pub source: OsString,
    /// Who mounted it, for FUSE (`user_id=` among its options).
    pub owner: Option<u32>,
}

/// Everything mounted now, as this process sees it.
pub fn mounts() -> Vec<Mount> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines().filter_map(parse).collect()
}

/// Whether `path` (canonical) is a mount point now.
pub fn is_mounted(path: &Path) -> bool {
    mounts().iter().any(|m| m.mountpoint == path.as_os_str())
}

/// A line: `id parent major:minor root mountpoint options [optional...]
/// - fstype source super-options`.
fn parse(line: &str) -> Option<Mount> {
    let (before, after) = line.split_once(" - ")?;
    let mut rest = after.split(' ');
    let (fstype, source) = (rest.next()?.to_string(), unescape(rest.next()?));
    let owner = rest
        .next()
        .unwrap_or("")
        .split(',')
        .find_map(|o| o.strip_prefix("user_id=")?.parse().ok());
    Some(Mount {
        mountpoint: unescape(before.split(' ').nth(4)?),
        fstype,
        source,
        owner,
    })
}

/// Spaces, tabs, newlines and backslashes in a field come octal escaped
/// (`\040`); anything else that looks like an escape is kept as it is.
fn unescape(field: &str) -> OsString {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .map(|d| d.iter().fold(0u32, |n, c| n * 8 + u32::from(c - b'0')))
            .and_then(|v| u8::try_from(v).ok());
        match octal {
            Some(v) => {
                out.push(v);
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    OsString::from_vec(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_unescaped() {
        assert_eq!(unescape(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape(r"/end\"), r"/end\");
        assert_eq!(unescape(r"/big\777"), r"/big\777", "no byte is that large");
    }

    #[test]
    fn lines_name_mountpoint_type_and_source() {
        let line = r"36 35 0:52 / /tmp/m\040nt rw,nosuid - fuse.caskfs /data\040dir rw,user_id=0";
        assert_eq!(
            parse(line),
            Some(Mount {
                mountpoint: "/tmp/m nt".into(),
                fstype: "fuse.caskfs".into(),
                source: "/data dir".into(),
                owner: Some(0),
            })
        );
        assert_eq!(parse("no separator"), None);
    }
}
