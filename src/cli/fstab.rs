//! The calling convention of mount(8) helpers, so that `mount -t
//! fuse.caskfs DATA MNT -o opts` and an fstab line work:
//!
//! - as `mount.fuse.caskfs DATA MNT -o opt,opt=value` (mount(8) runs
//!   `/sbin/mount.fuse.caskfs` when it exists: a link to `caskfs`);
//! - as `caskfs DATA MNT -o ...` (how fuse3's `mount.fuse3` runs the
//!   program named by the type).
//!
//! Either becomes `caskfs mount --daemon [options] DATA MNT`: every `caskfs
//! mount` option is an `-o` option with `_` or `-` (`max_segment_size=16M`,
//! `sync=always`, `ro`, `allow_other`), and the generic options of mount(8)
//! and fstab (`defaults`, `noauto`, `user`, `_netdev`, `x-systemd.*`, ...)
//! are left to mount(8).

use std::ffi::OsString;

use caskfs::exit::{Code, Failure};

/// Options of mount(8) and fstab that are not caskfs's to act on.
const GENERIC: [&str; 20] = [
    "defaults", "auto", "noauto", "user", "nouser", "users", "owner", "group", "nofail", "_netdev",
    "rw", "suid", "nosuid", "dev", "nodev", "exec", "noexec", "atime", "noatime", "relatime",
];

/// The arguments of `caskfs mount` that a helper call stands for, or
/// `None` if `args` (the whole command line) is an ordinary call, one that
/// names one of `subcommands` (or an option) first.
pub fn translate(
    args: &[OsString],
    subcommands: &[&str],
) -> Option<Result<Vec<OsString>, Failure>> {
    let program = args.first()?.to_string_lossy().into_owned();
    let as_helper = program
        .rsplit('/')
        .next()
        .is_some_and(|p| p.starts_with("mount."));
    let as_program = args.len() >= 3 && {
        let first = args[1].to_string_lossy();
        !first.starts_with('-') && !subcommands.contains(&&*first)
    };
    if !as_helper && !as_program {
        return None;
    }
    Some(mount_args(&args[1..]))
}

fn usage(msg: String) -> Failure {
    Failure::new(Code::Usage, msg)
}

fn mount_args(args: &[OsString]) -> Result<Vec<OsString>, Failure> {
    let mut positional = Vec::new();
    let mut options = Vec::new();
    let mut foreground = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("-o") => {
                let o = it.next().ok_or_else(|| usage("-o needs options".into()))?;
                options.extend(o.to_string_lossy().split(',').map(str::to_string));
            }
            Some(o) if o.starts_with("-o") => options.extend(o[2..].split(',').map(str::to_string)),
            Some("-f") => foreground = true,
            // sloppy, fake, verbose, no mtab: nothing to do here.
            Some("-s" | "-n" | "-v") => {}
            Some("-t") => {
                it.next();
            }
            _ => positional.push(a.clone()),
        }
    }
    let [data, mountpoint] = <[OsString; 2]>::try_from(positional)
        .map_err(|p| usage(format!("expected DATA_DIR and MOUNTPOINT, got {p:?}")))?;
    let mut out: Vec<OsString> = vec!["caskfs".into(), "mount".into()];
    if !foreground {
        out.push("--daemon".into());
    }
    for o in options.iter().filter(|o| !o.is_empty()) {
        let (name, value) = match o.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (o.as_str(), None),
        };
        if GENERIC.contains(&name) || name.starts_with("x-") || name.starts_with("comment=") {
            continue;
        }
        let name = match name {
            "ro" => "read-only",
            n => n,
        };
        out.push(format!("--{}", name.replace('_', "-")).into());
        if let Some(v) = value {
            out.push(v.into());
        }
    }
    out.push(data);
    out.push(mountpoint);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[OsString]) -> Vec<String> {
        v.iter().map(|s| s.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn helper_calls_become_mount_arguments() {
        let call: Vec<OsString> = [
            "/sbin/mount.fuse.caskfs",
            "/srv/data",
            "/mnt/kv",
            "-o",
            "rw,noauto,x-systemd.automount,sync=always,max_segment_size=16M,ro,allow_other",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let subcommands = ["mount", "stats"];
        let got = strings(&translate(&call, &subcommands).unwrap().unwrap());
        assert_eq!(
            got,
            [
                "caskfs",
                "mount",
                "--daemon",
                "--sync",
                "always",
                "--max-segment-size",
                "16M",
                "--read-only",
                "--allow-other",
                "/srv/data",
                "/mnt/kv"
            ]
        );
        let ordinary: Vec<OsString> = ["caskfs", "stats", "d"]
            .iter()
            .map(OsString::from)
            .collect();
        assert!(translate(&ordinary, &subcommands).is_none());
        let by_mount_fuse3: Vec<OsString> = ["caskfs", "data", "mnt", "-o", "rw"]
            .iter()
            .map(OsString::from)
            .collect();
        let got = strings(&translate(&by_mount_fuse3, &subcommands).unwrap().unwrap());
        assert_eq!(got, ["caskfs", "mount", "--daemon", "data", "mnt"]);
    }
}
