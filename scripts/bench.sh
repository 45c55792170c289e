#!/usr/bin/env bash
# Runs caskfs benchmarks in a release build.
#   scripts/bench.sh              every benchmark
#   scripts/bench.sh engine       one of them: engine, compaction (extra
#                                 arguments go to it, e.g. --keys 100000)
set -euo pipefail
cd "$(dirname "$0")/.."

# Benchmark name -> how to run it.
ALL=(engine compaction)

run_engine() {
    cargo bench --bench engine -- "$@"
}

run_compaction() {
    cargo bench --bench compaction -- "$@"
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
