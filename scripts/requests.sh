#!/usr/bin/env bash
# Counts the FUSE requests that everyday tools send per file, from the
# daemon's own counters (`caskfs stats --json`): each workload runs on N
# fresh keys of 100 bytes in a mounted store, and the table shows requests
# per file by kind. Run from the repository root (needs root or fuse3,
# and python3):
#   scripts/requests.sh [N] [MOUNT OPTIONS...]   (N defaults to 200;
#   e.g. scripts/requests.sh 200 --no-cache-reads)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200}
shift || true
cargo build --release --quiet
bin=$PWD/target/release/caskfs
work=$(mktemp -d)
trap 'umount "$work/mnt" 2>/dev/null || umount -l "$work/mnt" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/mnt"
"$bin" mount --daemon "$@" "$work/data" "$work/mnt"
cd "$work"

counts() { "$bin" stats --json mnt | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["requests"]))'; }

# name | setup (not counted) | workload (counted). GNU tar reads no file
# when its archive is /dev/null, so its archive goes through a pipe.
workloads=(
  "shell create (echo v > k)|mkdir -p mnt/sh|for i in \$(seq $n); do echo v > mnt/sh/k\$i; done"
  "python create (open(k,'wb').write)|mkdir -p mnt/py|python3 -c 'for i in range($n): open(f\"mnt/py/k{i}\",\"wb\").write(b\"v\"*100)'"
  "stat after create|mkdir -p mnt/st; for i in \$(seq $n); do head -c 100 /dev/zero > mnt/st/k\$i; done|for i in \$(seq $n); do stat mnt/st/k\$i > /dev/null; done"
  "cat|:|for i in \$(seq $n); do cat mnt/st/k\$i > /dev/null; done"
  "cat again (unchanged)|:|for i in \$(seq $n); do cat mnt/st/k\$i > /dev/null; done"
  "python read|:|python3 -c 'for i in range(1,$n+1): open(f\"mnt/st/k{i}\",\"rb\").read()'"
  "cp out|mkdir -p out|cp -r mnt/st out/"
  "grep -r|:|grep -rl nothing-matches mnt/st || true"
  "tar c|:|tar cf - -C mnt st | cat > /dev/null"
  "append (echo v >> k)|:|for i in \$(seq $n); do echo v >> mnt/st/k\$i; done"
)

printf '%-36s %9s  %s\n' "workload ($n files)" "req/file" "by kind, per file"
for w in "${workloads[@]}"; do
  IFS="|" read -r name setup load <<< "$w"
  sh -c "$setup"
  before=$(counts)
  sh -c "$load"
  after=$(counts)
  python3 - "$name" "$n" "$before" "$after" <<'EOF'
import json, sys
name, n, before, after = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4])
delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
delta = {k: v for k, v in delta.items() if v > 0}
total = sum(delta.values()) / n
kinds = ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(delta.items(), key=lambda kv: -kv[1]))
print(f"{name:<36} {total:9.2f}  {kinds}")
EOF
done
