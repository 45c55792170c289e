//! `caskfs stats` as a table for people and as JSON for scripts, for an
//! unmounted store and, with what only the daemon knows, a mounted one;
//! `etcd`: the same for a mount of an etcd prefix.

pub mod etcd;

use std::fmt::Write;

use crate::engine::Stats;

/// What a running daemon adds to the store's own figures.
#[derive(Clone, Debug)]
pub struct Live {
    pub pid: u32,
    pub mountpoint: String,
    pub uptime_secs: f64,
    /// How requests reach the daemon: "io_uring" or "/dev/fuse".
    pub transport: &'static str,
    /// How read-only opens read: "page cache" or "direct".
    pub reads: &'static str,
    pub sync: String,
    pub open_handles: usize,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Requests served, by kind.
    pub requests: Vec<(&'static str, u64)>,
}

pub fn table(stats: &Stats, live: Option<&Live>) -> String {
    let mut out = String::new();
    let row = |out: &mut String, cells: [&dyn std::fmt::Display; 7]| {
        let [a, b, c, d, e, f, g] = cells;
        let _ = writeln!(
            out,
            "{a:>16} {b:>6} {c:>12} {d:>10} {e:>10} {f:>12} {g:>12}"
        );
    };
    row(
        &mut out,
        [
            &"segment",
            &"state",
            &"file bytes",
            &"live keys",
            &"dead keys",
            &"live bytes",
            &"dead bytes",
        ],
    );
    for s in &stats.segments {
        let state = if s.active { "active" } else { "closed" };
        row(
            &mut out,
            [
                &s.id,
                &state,
                &s.file_bytes,
                &s.live_keys,
                &s.dead_keys,
                &s.live_bytes,
                &s.dead_bytes,
            ],
        );
    }
    let _ = writeln!(
        out,
        "{} live keys, {} bytes of live values",
        stats.live_keys, stats.live_value_bytes
    );
    match &stats.last_merge {
        Some(line) => {
            let _ = writeln!(out, "last merge {line}");
        }
        None => out.push_str("no merge yet\n"),
    }
    if let Some(l) = live {
        let _ = writeln!(
            out,
            "mounted on {} by pid {} for {:.0} s; transport {}; reads {}; sync {}",
            l.mountpoint, l.pid, l.uptime_secs, l.transport, l.reads, l.sync
        );
        let running = if stats.merge_running {
            ", one running"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "{} merges since mount{running}; {} open files; {} bytes read, {} written",
            stats.merges_done, l.open_handles, l.bytes_read, l.bytes_written
        );
        let requests: Vec<String> = l.requests.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(out, "requests: {}", requests.join(", "));
    }
    out
}

pub fn json(stats: &Stats, live: Option<&Live>) -> String {
    let mut o = String::from("{");
    let _ = write!(
        o,
        "\"live_keys\":{},\"live_value_bytes\":{},\"merges_done\":{},\"merge_running\":{},\"last_merge\":{}",
        stats.live_keys,
        stats.live_value_bytes,
        stats.merges_done,
        stats.merge_running,
        stats.last_merge.as_deref().map_or("null".into(), quote)
    );
    o.push_str(",\"segments\":[");
    for (i, s) in stats.segments.iter().enumerate() {
        let _ = write!(
            o,
            "{}{{\"id\":{},\"active\":{},\"file_bytes\":{},\"live_keys\":{},\"dead_keys\":{},\"live_bytes\":{},\"dead_bytes\":{}}}",
            if i == 0 { "" } else { "," },
            s.id,
            s.active,
            s.file_bytes,
            s.live_keys,
            s.dead_keys,
            s.live_bytes,
            s.dead_bytes
        );
    }
    o.push(']');
    match live {
        None => o.push_str(",\"mounted\":false"),
        Some(l) => {
            let _ = write!(
                o,
                ",\"mounted\":true,\"pid\":{},\"mountpoint\":{},\"uptime_secs\":{:.3},\"transport\":{},\"reads\":{},\"sync\":{},\"open_handles\":{},\"bytes_read\":{},\"bytes_written\":{},\"requests\":{{",
                l.pid,
                quote(&l.mountpoint),
                l.uptime_secs,
                quote(l.transport),
                quote(l.reads),
                quote(&l.sync),
                l.open_handles,
                l.bytes_read,
                l.bytes_written
            );
            for (i, (k, n)) in l.requests.iter().enumerate() {
                let _ = write!(o, "{}{}:{n}", if i == 0 { "" } else { "," }, quote(k));
            }
            o.push('}');
        }
    }
    o.push('}');
    o
}

/// `s` as a JSON string.
fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(q, "\\u{:04x}", c as u32);
            }
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        assert_eq!(quote("a\"b\\c\nd"), "\"a\\\"b\\\\c\\u000ad\"");
    }
}
