#!/usr/bin/env bash
# The whole test suite: `cargo test --release`, with what the tests need,
# then the mount contract again on the etcd backend.
# The etcd backend's tests start etcd clusters of their own, so etcd must
# be installed (Debian's etcd-server): as root with apt-get this installs
# it when missing, and stops the system service the package starts (the
# tests use their own ports). Otherwise those tests skip, saying so, and
# under CI=true they fail. Arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "test.sh: cargo not found; install Rust from https://rustup.rs" >&2
    exit 1
fi
if ! command -v etcd >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing etcd-server for the etcd backend's tests" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends etcd-server >/dev/null 2>&1 || {
        apt-get update >/dev/null
        apt-get install -y --no-install-recommends etcd-server >/dev/null
    }
    if command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now etcd >/dev/null 2>&1 || true
    fi
fi
cargo test --release "$@"
# The mount contract once more with every mount on an etcd cluster of its
# own (CASKFS_TEST_BACKEND, tests/common): the same semantics on both
# backends. Without etcd the first pass has said so already.
if command -v etcd >/dev/null 2>&1; then
    CASKFS_TEST_BACKEND=etcd cargo test --release --test mount_files --test mount_posix \
        --test mount_tree --test mount_errors --test mount_concurrency "$@"
fi
