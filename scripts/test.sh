#!/usr/bin/env bash
# The whole test suite: `cargo test --release`, with what the tests need,
# then the mount suites again on the other FUSE transport with reads that
# bypass the page cache (`--no-cache-reads`), and the mount contract again
# on the etcd backend.
# The etcd backend's tests start etcd clusters of their own, so etcd must
# be installed (Debian's etcd-server), the tests of tools on the mount
# need rsync, git, python3 and attr: as root with apt-get this installs
# what is missing, and stops the system service etcd's package starts (the tests
# use their own ports). The conformance suites pjdfstest and fsx are
# installed with cargo when missing. Whatever is still missing, its tests
# skip, saying so, and under CI=true they fail. Arguments go to `cargo
# test`.
#
# FUSE over io_uring (Linux 6.14 and later) is off until root turns on the
# fuse module's enable_uring parameter: as root this turns it on for the
# run (and back as it was at the end), so that the suite runs on io_uring
# (`--transport auto`) and the mount suites again on /dev/fuse. A kernel
# without it runs everything on /dev/fuse, saying so (the second pass
# still reads direct).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "test.sh: cargo not found; install Rust from https://rustup.rs" >&2
    exit 1
fi
# The tools the tests use that a fresh Debian may lack: command -> package.
# rsync, git and python3's sqlite3 are what users run on the mount
# (tests/mount_links.rs), attr's setfattr and getfattr what they tag files
# with (tests/mount_xattrs.rs); etcd-server runs the etcd backend's
# clusters, openssl makes their TLS certificates (tests/etcd_tls.rs).
missing=()
for pair in etcd:etcd-server openssl:openssl rsync:rsync git:git python3:python3 setfattr:attr; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing ${missing[*]} for the tests" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
        apt-get update >/dev/null
        apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
    }
    if [[ " ${missing[*]} " == *" etcd-server "* ]] && command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now etcd >/dev/null 2>&1 || true
    fi
fi
# Others' conformance suites (tests/posix_suites.rs): pjdfstest, as root
# with the user it switches to, and fsx, both from crates.io.
for tool in pjdfstest@0.2.2 fsx@0.3.2; do
    if ! command -v "${tool%@*}" >/dev/null 2>&1; then
        echo "test.sh: installing ${tool} for the tests (cargo install)" >&2
        cargo install --locked --quiet "$tool" || echo "test.sh: could not install $tool" >&2
    fi
done
if [ "$(id -u)" = 0 ] && ! id tests >/dev/null 2>&1; then
    useradd -M -s /usr/sbin/nologin tests
fi
uring=/sys/module/fuse/parameters/enable_uring
if [ -w "$uring" ]; then
    was=$(cat "$uring")
    echo Y > "$uring"
    trap 'echo "$was" > "$uring"' EXIT
fi
cargo test --release "$@"
mount_suites=(--test mount_files --test mount_posix --test mount_tree --test mount_errors
    --test mount_concurrency --test mount_cache --test mount_lifecycle --test mount_faults
    --test mount_control --test mount_links --test mount_xattrs --test mount_sparse
    --test posix_suites --test reliability_random_io --test reliability_crash_loop)
if [ "$(cat "$uring" 2>/dev/null)" = Y ]; then
    # The first pass ran on io_uring; the mount suites once more on
    # /dev/fuse, reading direct (tests that name a read mode keep theirs).
    CASKFS_MOUNT_ARGS="--transport classic --no-cache-reads" \
        cargo test --release "${mount_suites[@]}" "$@"
else
    echo "test.sh: FUSE over io_uring is not on here ($uring); every mount ran on /dev/fuse" >&2
    CASKFS_MOUNT_ARGS="--no-cache-reads" cargo test --release "${mount_suites[@]}" "$@"
fi
# The mount contract once more with every mount on an etcd cluster of its
# own (CASKFS_TEST_BACKEND, tests/common): the same semantics on both
# backends. Without etcd the first pass has said so already.
if command -v etcd >/dev/null 2>&1; then
    CASKFS_TEST_BACKEND=etcd cargo test --release --test mount_files --test mount_posix \
        --test mount_tree --test mount_errors --test mount_concurrency --test mount_links \
        --test mount_xattrs --test mount_sparse "$@"
    # The mount contract once more on a cluster that serves TLS only, asks
    # for a client certificate, and has a user and password.
    if command -v openssl >/dev/null 2>&1; then
        CASKFS_TEST_BACKEND=etcd-secure cargo test --release --test mount_files "$@"
    fi
fi
