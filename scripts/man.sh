#!/usr/bin/env bash
# Writes the manual pages (caskfs.1 and one per subcommand, caskfs-mount.1
# and so on) from the command's own definition.
#   scripts/man.sh              into target/man/man1
#   scripts/man.sh DIR          into DIR
# Install them with e.g. `sudo cp target/man/man1/*.1 /usr/local/share/man/man1/`.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/man/man1}
cargo build --release --quiet
target/release/caskfs man "$out"
ls "$out"
