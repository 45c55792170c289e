//! The tree of keys through a real mount: folders (`mkdir -p`, `rmdir`,
//! link counts, persistence), the tools that need them (`cp -r`, `tar`,
//! `git`, rsync's way of writing), modes, owners and times that are kept,
//! symlinks, renames of files and folders with POSIX's errors, and
//! executables.

mod common;

use common::{Mount, is_root};

/// Runs renameat2(2) through python's ctypes (coreutils 9.1 has no `mv
/// --exchange`); prints 0 or the errno name.
fn renameat2(m: &Mount, from: &str, to: &str, flags: u32) -> String {
    let script = format!(
        "python3 -c 'import ctypes, errno, os\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         r = libc.renameat2(-100, b\"{from}\", -100, b\"{to}\", {flags})\n\
         print(0 if r == 0 else errno.errorcode[ctypes.get_errno()])'"
    );
    m.ok(&script).trim().to_string()
}

/// `stat -c FORMAT` of each path, one line each.
fn stat(m: &Mount, format: &str, paths: &str) -> String {
    m.ok(&format!("cd mnt && stat -c '{format}' {paths}"))
}

#[test]
fn folders_are_real_and_survive_a_remount() {
    require_fuse!();
    let mut m = Mount::start(&[]);
    m.ok("mkdir -p mnt/a/b/c && mkdir mnt/empty && echo v > mnt/a/b/c/f && echo w > mnt/a/g");
    assert_eq!(m.ok("ls mnt/a"), "b\ng\n", "direct children only");
    assert_eq!(m.ok("ls mnt"), "a\nempty\n");
    let links = "%n %h %F";
    let expect = "a 3 directory\na/b 3 directory\na/b/c 2 directory\nempty 2 directory\n. 4 directory\na/b/c/f 1 regular file\n";
    assert_eq!(stat(&m, links, "a a/b a/b/c empty . a/b/c/f"), expect);
    // find trusts the link counts to skip stat calls on leaves.
    let found = m.ok("cd mnt && find . | sort");
    assert_eq!(found, ".\n./a\n./a/b\n./a/b/c\n./a/b/c/f\n./a/g\n./empty\n");
    assert_eq!(m.ok("cd mnt && find . -type d -empty"), "./empty\n");
    m.ok("chmod 700 mnt/empty");
    m.unmount();
    m.mount();
    assert_eq!(m.ok("cd mnt && find . | sort"), found, "after a remount");
    assert_eq!(stat(&m, "%a %h", "empty"), "700 2\n");
    assert_eq!(m.ok("cat mnt/a/b/c/f"), "v\n");
    // `caskfs get` names the same value by its path.
    m.unmount();
    let get = std::process::Command::new(common::BIN)
        .args(["get"])
        .arg(m.backend.clone().unwrap_or(m.data.display().to_string()))
        .arg("a/b/c/f")
        .output()
        .unwrap();
    assert_eq!(get.stdout, b"v\n");
    m.mount();
}

#[test]
fn folder_errors_are_posix() {
    require_fuse!();
    let m = Mount::start(&[]);
    m.ok("mkdir -p mnt/d/e && echo x > mnt/d/e/f && echo y > mnt/file");
    for (cmd, err) in [
        ("rmdir mnt/d", "Directory not empty"),
        ("rmdir mnt/file", "Not a directory"),
        ("rmdir mnt/nothing", "No such file"),
        ("rm mnt/d", "Is a directory"),
        ("mkdir mnt/d", "File exists"),
        ("mkdir mnt/file", "File exists"),
        ("echo z > mnt/missing/k", "Directory nonexistent"),
        ("mkdir mnt/missing/k", "No such file"),
        ("touch mnt/file/k", "Not a directory"),
        ("cat mnt/d", "Is a directory"),
        ("echo z > mnt/d", "Is a directory"),
    ] {
        let e = m.fails(cmd);
        assert!(e.contains(err), "{cmd}: {e}");
    }
    // Folders nest as deep as on any filesystem (a path over 4095 bytes
    // is the kernel's to refuse, and `mkdir -p` goes one level at a
    // time); a name over 255 bytes is refused.
    let deep = "x/".repeat(2049);
    m.ok(&format!("mkdir -p mnt/{deep}"));
    let long = "n".repeat(256);
    let e = m.fails(&format!("mkdir mnt/{long}"));
    assert!(e.contains("File name too long"), "{e}");
    m.ok("rm -r mnt/x mnt/d");
    assert_eq!(m.ok("ls mnt"), "file\n");
}

#[test]
fn trees_copy_in_and_out_with_cp_tar_and_rsyncs_way() {
    require_fuse!();
    let m = Mount::start(&[]);
    m.ok(
        "mkdir -p src/a/b src/empty && echo one > src/a/one && head -c 300000 /dev/urandom > src/a/b/big \
         && printf '#!/bin/sh\\necho ran\\n' > src/run && chmod 755 src/run && chmod 600 src/a/one \
         && ln -s a/one src/link && touch -d 2001-02-03 src/a/one",
    );
    m.ok("cp -r src mnt/cp && diff -r src mnt/cp");
    m.ok("cp -a src mnt/cpa && diff -r src mnt/cpa");
    let kept = "%n %a %Y %F";
    assert_eq!(
        m.ok(&format!(
            "cd mnt/cpa && stat -c '{kept}' a/one run link empty a/b"
        )),
        m.ok(&format!(
            "cd src && stat -c '{kept}' a/one run link empty a/b"
        )),
    );
    assert_eq!(m.ok("mnt/cpa/run"), "ran\n");
    m.ok(
        "tar -cf t.tar -C src . && mkdir mnt/t && tar -xf t.tar -C mnt/t && tar -df t.tar -C mnt/t",
    );
    m.ok("diff -r src mnt/t");
    m.ok("tar -cf out.tar -C mnt/t . && mkdir back && tar -xf out.tar -C back && diff -r src back");
    // rsync -a writes a temporary name, sets mode and times, then renames.
    m.ok("python3 -c 'import os\n\
         fd = os.open(\"mnt/t/a/.one.XYZ\", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)\n\
         os.write(fd, b\"two\\n\"); os.fchmod(fd, 0o640); os.close(fd)\n\
         os.utime(\"mnt/t/a/.one.XYZ\", (1e9, 1e9))\n\
         os.rename(\"mnt/t/a/.one.XYZ\", \"mnt/t/a/one\")'");
    assert_eq!(stat(&m, "%a %Y %s", "t/a/one"), "640 1000000000 4\n");
    if m.sh("command -v rsync").status.success() {
        m.ok("rsync -a src/ mnt/rs/ && diff -r src mnt/rs && rsync -a mnt/rs/ rs2/ && diff -r src rs2");
        assert_eq!(m.ok("rsync -an --itemize-changes src/ mnt/rs/"), "");
    } else {
        eprintln!("rsync is not installed: its way of writing was tested without it");
    }
}

#[test]
fn git_init_commit_gc_fsck_and_clone() {
    require_fuse!();
    let m = Mount::start(&[]);
    if !m.sh("command -v git").status.success() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "git is not installed, and CI=true"
        );
        eprintln!("skipping: git is not installed");
        return;
    }
    let git = "git -c user.name=t -c user.email=t@example.com -c init.defaultBranch=main";
    m.ok(&format!(
        "cd mnt && {git} init -q repo && cd repo && mkdir -p src/deep && echo a > src/deep/a \
         && printf '#!/bin/sh\\n' > run.sh && chmod +x run.sh && ln -s src/deep/a link \
         && {git} add . && {git} commit -qm one && echo b >> src/deep/a && {git} commit -qam two \
         && {git} gc -q && {git} fsck --strict && {git} status --porcelain"
    ));
    let log = m.ok(&format!("cd mnt/repo && {git} log --format=%s"));
    assert_eq!(log, "two\none\n");
    m.ok(&format!(
        "{git} clone -q mnt/repo clone && test -x clone/run.sh && test -L clone/link \
         && {git} clone -q clone mnt/clone2 && cd mnt/clone2 && {git} fsck && cat src/deep/a"
    ));
    assert_eq!(m.ok("cat mnt/clone2/link"), "a\nb\n");
}

#[test]
fn modes_owners_and_times_are_kept() {
    require_fuse!();
    let mut m = Mount::start(&[]);
    m.ok("umask 027 && echo v > mnt/f && mkdir mnt/d && cd mnt && stat -c %a f d > ../umask");
    assert_eq!(m.ok("cat umask"), "640\n750\n");
    m.ok("python3 -c 'import os; os.close(os.open(\"mnt/p\", os.O_CREAT | os.O_WRONLY, 0o600))'");
    assert_eq!(stat(&m, "%a", "p"), "600\n");
    let before: f64 = stat(&m, "%.9Z", "f").trim().parse().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    m.ok("chmod 4751 mnt/f && chmod 1777 mnt/d && touch -d '2003-04-05 06:07:08' mnt/f");
    let after: f64 = stat(&m, "%.9Z", "f").trim().parse().unwrap();
    assert!(after > before, "chmod changes ctime: {before} -> {after}");
    m.ok("install -m 0644 mnt/f mnt/installed && cp -p mnt/f mnt/copied");
    let expect = "4751 1049522828\n1777\n644\n4751 1049522828\n";
    let got = |m: &Mount| {
        m.ok("cd mnt && stat -c '%a %Y' f && stat -c %a d installed && stat -c '%a %Y' copied")
    };
    assert_eq!(got(&m), expect);
    if is_root() {
        m.ok("chown 1234:5678 mnt/f && chown -h 42:43 mnt/d");
        assert_eq!(stat(&m, "%u %g", "f d"), "1234 5678\n42 43\n");
    }
    let owners = stat(&m, "%u %g", "f d p");
    // A value written again keeps its mode and owner.
    m.ok("chmod 751 mnt/f && echo again >> mnt/f");
    assert_eq!(stat(&m, "%a", "f"), "751\n");
    m.unmount();
    if m.local() {
        let compact = std::process::Command::new(common::BIN)
            .arg("compact")
            .arg(&m.data)
            .status()
            .unwrap();
        assert!(compact.success());
    }
    m.mount();
    assert_eq!(stat(&m, "%a", "f d installed"), "751\n1777\n644\n");
    assert_eq!(stat(&m, "%u %g", "f d p"), owners, "after a remount");
}

#[test]
fn a_folders_times_follow_its_names_and_are_stored() {
    require_fuse!();
    let mut m = Mount::start(&[]);
    m.ok("mkdir mnt/d mnt/e && touch -d '2001-01-01' mnt/d mnt/e");
    let old = "978307200\n978307200\n";
    assert_eq!(stat(&m, "%Y", "d e"), old);
    // A create and an unlink show in the folder's times at once.
    m.ok("echo v > mnt/d/f && echo w > mnt/e/g && rm mnt/e/g");
    let now = stat(&m, "%Y %Z", "d e");
    assert!(!now.contains("978307200"), "{now}");
    // Stored at unmount.
    m.unmount();
    m.mount();
    assert_eq!(stat(&m, "%Y %Z", "d e"), now, "after a remount");
    // Stored within a second, so a kill -9 after that keeps them.
    m.ok("touch -d '2002-02-02' mnt/d && echo x > mnt/d/h");
    let now = stat(&m, "%Y %Z", "d");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    m.crash();
    m.mount();
    assert_eq!(stat(&m, "%Y %Z", "d"), now, "after a crash");
    assert_eq!(m.ok("cat mnt/d/h"), "x\n");
}

#[test]
fn permissions_are_checked_for_other_users() {
    require_fuse!();
    if !is_root() {
        eprintln!("skipping: switching to another user needs root");
        return;
    }
    let m = Mount::start(&["--allow-other"]);
    m.ok("chmod 755 . && echo mine > mnt/root-file && mkdir mnt/shared && chmod 1777 mnt/shared");
    let as_nobody = |script: &str| {
        format!("setpriv --reuid=65534 --regid=65534 --clear-groups sh -c '{script}'")
    };
    for (script, err) in [
        ("echo x > mnt/root-file", "Permission denied"),
        ("echo x > mnt/new", "Permission denied"),
        ("chmod 777 mnt/root-file", "Operation not permitted"),
        ("chown 65534 mnt/root-file", "Operation not permitted"),
        ("rm -f mnt/root-file", "Permission denied"),
    ] {
        let e = m.fails(&as_nobody(script));
        assert!(e.contains(err), "{script}: {e}");
    }
    m.ok(&as_nobody(
        "echo ok > mnt/shared/n && cat mnt/shared/n && chmod 600 mnt/shared/n",
    ));
    assert_eq!(stat(&m, "%U %a", "shared/n"), "nobody 600\n");
    m.ok("chmod 700 mnt/shared");
    let e = m.fails(&as_nobody("cat mnt/shared/n"));
    assert!(e.contains("Permission denied"), "{e}");
    assert_eq!(m.ok("cat mnt/root-file"), "mine\n");
}

#[test]
fn symlinks_are_stored_followed_and_moved() {
    require_fuse!();
    let mut m = Mount::start(&[]);
    m.ok("mkdir mnt/d && echo target > mnt/d/t && ln -s d/t mnt/l && ln -s /nowhere mnt/dangling");
    assert_eq!(m.ok("readlink mnt/l mnt/dangling"), "d/t\n/nowhere\n");
    assert_eq!(m.ok("cat mnt/l"), "target\n");
    assert!(m.ok("ls -l mnt").contains("l -> d/t"));
    assert_eq!(stat(&m, "%F %s", "l"), "symbolic link 3\n");
    m.ok("mv mnt/l mnt/d/l2");
    assert_eq!(m.ok("readlink mnt/d/l2"), "d/t\n");
    m.unmount();
    m.mount();
    assert_eq!(m.ok("readlink mnt/d/l2 && cat mnt/d/t"), "d/t\ntarget\n");
    assert!(m.fails("cat mnt/dangling").contains("No such file"));
    assert!(m.fails("ln -s x mnt/d/l2").contains("File exists"));
}

#[test]
fn renames_of_files_and_folders() {
    require_fuse!();
    let mut m = Mount::start(&[]);
    m.ok(
        "mkdir -p mnt/a/b mnt/full mnt/emptydir && echo 1 > mnt/a/one && echo 2 > mnt/a/b/two \
         && echo f > mnt/file && echo x > mnt/full/x",
    );
    let ino = stat(&m, "%i", "a/b/two");
    m.ok("mv mnt/file mnt/a/b/moved && mv mnt/a mnt/z");
    assert_eq!(
        m.ok("cd mnt && find z | sort"),
        "z\nz/b\nz/b/moved\nz/b/two\nz/one\n"
    );
    assert_eq!(
        stat(&m, "%i", "z/b/two"),
        ino,
        "inodes follow a folder rename"
    );
    assert_eq!(m.ok("cat mnt/z/b/two mnt/z/b/moved"), "2\nf\n");
    for (from, to, flags, errno) in [
        ("z", "z/b/inside", 0, "EINVAL"),
        ("z", "full", 0, "ENOTEMPTY"),
        ("z/one", "emptydir", 0, "EISDIR"),
        ("emptydir", "z/one", 0, "ENOTDIR"),
        ("z/one", "full/x", 1, "EEXIST"),
        ("z/one", "full/x", 2, "EINVAL"),
        ("nothing", "z/new", 0, "ENOENT"),
    ] {
        let r = renameat2(&m, &format!("mnt/{from}"), &format!("mnt/{to}"), flags);
        assert_eq!(r, errno, "{from} -> {to} (flags {flags})");
    }
    // Onto an empty folder: replaced.
    m.ok("mv -T mnt/z mnt/emptydir && test ! -e mnt/z");
    m.unmount();
    m.mount();
    assert_eq!(
        m.ok("cd mnt && find emptydir | sort"),
        "emptydir\nemptydir/b\nemptydir/b/moved\nemptydir/b/two\nemptydir/one\n"
    );
}

/// A folder of any size moves in one step: one entry changes, whatever is
/// below it (the old layout copied every key below, and gave up with
/// EXDEV past 10,000 keys or 64 MiB).
#[test]
fn a_folder_of_any_size_moves_in_one_step() {
    require_fuse!();
    let m = Mount::start(&[]);
    m.ok("mkdir -p mnt/big/sub && head -c 40M /dev/urandom > mnt/big/a && head -c 30M /dev/urandom > mnt/big/sub/b");
    m.ok("python3 -c 'for i in range(12000): open(f\"mnt/big/f{i}\", \"w\").close()'");
    let listed = m.ok("ls mnt/big");
    let sums = m.ok("cd mnt/big && sha256sum a sub/b");
    assert_eq!(renameat2(&m, "mnt/big", "mnt/moved", 0), "0");
    m.ok("test ! -e mnt/big");
    assert_eq!(m.ok("cd mnt/moved && sha256sum a sub/b"), sums);
    assert_eq!(m.ok("ls mnt/moved"), listed);
    assert_eq!(m.ok("ls mnt/moved | wc -l").trim(), "12002");
}

#[test]
fn a_listing_during_changes_returns_every_lasting_entry_once() {
    require_fuse!();
    let m = Mount::start(&[]);
    let out = m.ok("python3 -c 'import os, threading\n\
         d = \"mnt/d\"; os.mkdir(d)\n\
         for i in range(1500): open(f\"{d}/keep{i:04}\", \"w\").close()\n\
         stop = False\n\
         def churn():\n\
         \x20   n = 0\n\
         \x20   while not stop:\n\
         \x20       p = f\"{d}/tmp{n % 50}\"\n\
         \x20       open(p, \"w\").close(); os.unlink(p); n += 1\n\
         t = threading.Thread(target=churn); t.start()\n\
         bad = 0\n\
         for _ in range(30):\n\
         \x20   names = [n for n in os.listdir(d) if n.startswith(\"keep\")]\n\
         \x20   bad += len(names) != 1500 or len(set(names)) != 1500\n\
         stop = True; t.join(); print(bad)'");
    assert_eq!(out.trim(), "0");
}

#[test]
fn executables_run_from_the_mount() {
    require_fuse!();
    let m = Mount::start(&[]);
    m.ok("cp /bin/true mnt/t && mnt/t && mkdir mnt/bin && cp /bin/echo mnt/bin/e");
    assert_eq!(m.ok("mnt/bin/e hello"), "hello\n");
    assert_eq!(stat(&m, "%a", "t"), "755\n");
    m.ok("chmod -x mnt/t");
    assert!(m.fails("mnt/t").contains("Permission denied"));
}
