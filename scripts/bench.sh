#!/usr/bin/env bash
# Runs caskfs benchmarks in a release build.
#   scripts/bench.sh              every benchmark
#   scripts/bench.sh engine       one of them: engine, files, compaction, fs, etcd
#                                 (extra arguments go to it, e.g. --keys 100000;
#                                 scripts/bench.sh fs --quick for a short run,
#                                 scripts/bench.sh etcd --members 3)
set -euo pipefail
cd "$(dirname "$0")/.."

# Benchmark name -> how to run it.
ALL=(engine files compaction fs etcd)

run_engine() {
    cargo bench --bench engine -- "$@"
}

run_files() {
    cargo bench --bench files -- "$@"
}

run_compaction() {
    cargo bench --bench compaction -- "$@"
}

# caskfs mounted against a plain directory on the same disk. The program
# unmounts on its way out; the trap also clears a mount left by a crash.
run_fs() {
    fs_dir=target/bench-fs
    trap 'for m in "$fs_dir"/run*/mnt; do
              if mountpoint -q "$m" 2>/dev/null; then fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m"; fi
          done' EXIT
    cargo bench --bench fs -- --dir "$fs_dir" "$@"
}

# etcd's own cluster (killed by the program, or by the kernel when it
# dies), the etcd backend and a local data directory mounted, and a plain
# directory. The trap clears mounts left by a crash.
run_etcd() {
    etcd_dir=target/bench-etcd
    trap 'for m in "$etcd_dir"/run*/*-mnt; do
              if mountpoint -q "$m" 2>/dev/null; then fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m"; fi
          done' EXIT
    cargo bench --bench etcd -- --dir "$etcd_dir" "$@"
}

if [[ $# -eq 0 ]]; then
    for name in "${ALL[@]}"; do
        echo "== $name =="
        "run_$name"
    done
    exit 0
fi

name=$1
shift
if ! declare -F "run_$name" >/dev/null; then
    echo "bench.sh: unknown benchmark \"$name\" (known: ${ALL[*]})" >&2
    exit 2
fi
"run_$name" "$@"
