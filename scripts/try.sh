#!/usr/bin/env bash
# Builds caskfs (release), mounts ./data on ./mnt in the background, and
# says how to use and unmount it.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "try.sh: cargo not found; install Rust from https://rustup.rs" >&2
    exit 1
fi
if [ "$(id -u)" != 0 ] && ! command -v fusermount3 >/dev/null 2>&1; then
    echo "try.sh: mounting as a non-root user needs fusermount3: sudo apt-get install fuse3" >&2
    exit 1
fi

cargo build --release
mkdir -p mnt
if mountpoint -q mnt; then
    echo "try.sh: ./mnt is already mounted; unmount it first: fusermount3 -u mnt" >&2
    exit 1
fi
./target/release/caskfs mount --daemon --log-file caskfs.log data mnt

cat <<'MSG'

caskfs is mounted: ./data (the store) on ./mnt. Try:

    echo hello > mnt/greeting
    cat mnt/greeting
    ls -l mnt
    mv mnt/greeting mnt/hi && rm mnt/hi

Offline tools on the data directory (while unmounted):
    ./target/release/caskfs ls data      ./target/release/caskfs stats data

Log: ./caskfs.log    Unmount: fusermount3 -u mnt   (or, as root: umount mnt)
MSG
