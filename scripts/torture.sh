#!/usr/bin/env bash
# The reliability long run: crash loop, random I/O against the model,
# power-loss damage, eight-process concurrency, bad input, repair, disk
# full and memory, through real mounts, for a bounded time. Ends with a
# summary table. Needs FUSE (and root for the disk-full tmpfs).
#
#   scripts/torture.sh              # about 2 minutes
#   scripts/torture.sh --minutes 30 # longer (from 10 minutes on, the memory
#                                   # test uses 200 MiB files)
set -uo pipefail
cd "$(dirname "$0")/.."

minutes=2
while [ $# -gt 0 ]; do
    case "$1" in
    --minutes) minutes="${2:?--minutes needs a number}"; shift 2 ;;
    --minutes=*) minutes="${1#*=}"; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "torture.sh: unknown argument $1 (use --minutes N)" >&2; exit 2 ;;
    esac
done
case "$minutes" in ''|*[!0-9]*) echo "torture.sh: --minutes takes a whole number" >&2; exit 2 ;; esac
[ "$minutes" -ge 1 ] || { echo "torture.sh: --minutes must be at least 1" >&2; exit 2; }

secs=$((minutes * 60))
main_secs=$((secs * 70 / 100))
conc_secs=$((secs * 10 / 100)); [ $conc_secs -ge 8 ] || conc_secs=8
mem_mib=16; [ "$minutes" -ge 10 ] && mem_mib=200

logs=$(mktemp -d "${TMPDIR:-/tmp}/caskfs-torture.XXXXXX")
echo "building (release)..."
cargo build --release --tests --quiet || exit 1

failed=()
run() { # name, then env assignments and cargo test arguments
    local name=$1; shift
    echo "== $name"
    if env "$@" >"$logs/$name.log" 2>&1; then
        grep -ho 'FIGURES.*' "$logs/$name.log" || true
    else
        failed+=("$name")
        grep -ho 'FIGURES.*' "$logs/$name.log" || true
        grep -h -A6 'panicked' "$logs/$name.log" | head -20
        echo "   (full log: $logs/$name.log)"
    fi
}
t="cargo test --release --quiet --test"
run long_run     CASKFS_TORTURE_SECS=$main_secs $t reliability_torture -- --ignored --nocapture
run concurrency  CASKFS_CONCURRENCY_SECS=$conc_secs $t reliability_concurrency -- --nocapture
run bad_input    $t reliability_bad_input -- --nocapture
run repair       $t reliability_repair -- --nocapture
run disk_full    $t reliability_disk_full -- --nocapture
run memory       CASKFS_MEMORY_MIB=$mem_mib $t reliability_memory -- --nocapture

sum() { # field: summed over every group's FIGURES lines (not the long run's total)
    cat "$logs"/*.log | grep -ho 'FIGURES.*' | grep -v torture_total \
        | tr ' ' '\n' | awk -F= -v f="$1" '$1 == f { s += $2 } END { print s + 0 }'
}

echo
echo "caskfs torture: $minutes minute(s), logs in $logs"
printf '%-36s %14s\n' "figure" "count"
printf '%-36s %14s\n' "------------------------------------" "--------------"
printf '%-36s %14s\n' "crash cycles survived" "$(sum crash_cycles)"
printf '%-36s %14s\n' "acknowledged operations verified" "$(sum acked_verified)"
printf '%-36s %14s\n' "random-I/O operations checked" "$(sum random_ops)"
printf '%-36s %14s\n' "bad inputs tried" "$(sum bad_inputs)"
printf '%-36s %14s\n' "bytes of damage injected" "$(sum damage_bytes)"
printf '%-36s %14s\n' "anything lost" "$(sum lost)"
if [ ${#failed[@]} -eq 0 ]; then
    printf '%-36s %14s\n' "failed groups" "none"
    exit 0
fi
printf '%-36s %14s\n' "failed groups" "${#failed[@]}: ${failed[*]}"
exit 1
