#!/usr/bin/env bash
# The release binaries (scripts/release): stripped size per target against the
# goals (metis-flash <= 6 MiB on every target, metis-flash-gui <= 16 MiB), and
# the static musl flasher's flash + read-back on the throttled card of
# bench/card.sh (goal <= 1.05x the card's own time).
#
#   bench/release.sh [DIST]   DIST: what scripts/release printed; default
#                             $METIS_RELEASE_DIR, else dist/<workspace version>
#
# The card row needs DIST/bench/metis-flash-dev-write (`scripts/release --bench`:
# the same static build with the bench's `write` command) and root; without
# them it is left out with a message. Targets a release did not build have no row.
# Prints markdown rows (| benchmark | metis | reference | ratio | goal |) as bench/run expects.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml")
DIST=${1:-${METIS_RELEASE_DIR:-$ROOT/dist/$version}}
# bench/run runs every bench/*.sh: no release built is no row, not a failure.
[ -f "$DIST/SHA256SUMS" ] || { echo "release.sh: no release in $DIST (scripts/release first): no rows" >&2; exit 0; }

mib() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1048576 }'; }
size_row() { # $1: label, $2: file, $3: goal in MiB
    [ -f "$2" ] || return 0
    local bytes
    bytes=$(stat -c %s "$2")
    printf '| release size: %s (stripped) | %s MiB | %s MiB (goal) | %s | <= %s MiB |\n' \
        "$1" "$(mib "$bytes")" "$3" "$(awk -v b="$bytes" -v g="$3" 'BEGIN { printf "%.2fx", b / (g * 1048576) }')" "$3"
}

stage=$DIST/stage
for platform in linux-x86_64 linux-aarch64; do
    size_row "metis-flash, $platform, static musl" "$DIST/metis-flash-$version-$platform" 6
    size_row "metis-flash-gui, $platform, glibc" "$stage/metis-flash-$version-$platform/metis-flash-gui" 16
done
size_row "metis-flash.exe, windows-x86_64" "$stage/metis-flash-$version-windows-x86_64/metis-flash.exe" 6
size_row "metis-flash-gui.exe, windows-x86_64" "$stage/metis-flash-$version-windows-x86_64/metis-flash-gui.exe" 16
size_row "metis-build, linux-x86_64, static musl" "$stage/metis-build-$version-linux-x86_64/metis-build" 64

dev_write=$DIST/bench/metis-flash-dev-write
if [ -x "$dev_write" ] && [ "$(id -u)" = 0 ]; then
    BENCH_FLASH=$dev_write BENCH_LABEL="static musl release build" BENCH_CARD_THROTTLED_ONLY=1 \
        bash "$ROOT/bench/card.sh"
else
    echo "release.sh: no $dev_write (scripts/release --bench) or not root: no card row" >&2
fi
