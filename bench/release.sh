#!/usr/bin/env bash
# The release binaries (scripts/release): stripped size per target against the
# goals (metis-flash <= 6 MiB on every target, metis-flash-gui <= 16 MiB), and
# the static musl flasher's flash + read-back on the throttled card of
# bench/card.sh (goal <= 1.05x the card's own time).
#
#   bench/release.sh [DIST...]  DIST: what scripts/release printed; default
#                               $METIS_RELEASE_DIR (several: separated by ':'),
#                               else dist/<workspace version>
#
# Several DISTs (e.g. one `--ci --bench` build and one `--only gui-linux-aarch64`
# build) give the sizes of every target any of them holds, each target from the
# first DIST that has it, and the card row from the first with a bench build.
#
# The card row needs DIST/bench/metis-flash-dev-write (`scripts/release --bench`:
# the same static build with the bench's `write` command) and root; without
# them it is left out with a message. Targets a release did not build have no row.
# Prints markdown rows (| benchmark | metis | reference | ratio | goal |) as bench/run expects.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml")
if [ $# -gt 0 ]; then
    dists=("$@")
else
    IFS=: read -r -a dists <<< "${METIS_RELEASE_DIR:-$ROOT/dist/$version}"
fi
found=()
for d in "${dists[@]}"; do [ -f "$d/SHA256SUMS" ] && found+=("$d"); done
# bench/run runs every bench/*.sh: no release built is no row, not a failure.
[ ${#found[@]} -gt 0 ] || { echo "release.sh: no release in ${dists[*]} (scripts/release first): no rows" >&2; exit 0; }

mib() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1048576 }'; }
size_row() { # $1: label, $2: path under a DIST, $3: goal in MiB; the first DIST that has it
    local d file="" bytes
    for d in "${found[@]}"; do [ -f "$d/$2" ] && { file=$d/$2; break; }; done
    [ -n "$file" ] || return 0
    bytes=$(stat -c %s "$file")
    printf '| release size: %s (stripped) | %s MiB | %s MiB (goal) | %s | <= %s MiB |\n' \
        "$1" "$(mib "$bytes")" "$3" "$(awk -v b="$bytes" -v g="$3" 'BEGIN { printf "%.2fx", b / (g * 1048576) }')" "$3"
}

for platform in linux-x86_64 linux-aarch64; do
    size_row "metis-flash, $platform, static musl" "metis-flash-$version-$platform" 6
    size_row "metis-flash-gui, $platform, glibc" "stage/metis-flash-$version-$platform/metis-flash-gui" 16
done
size_row "metis-flash.exe, windows-x86_64" "stage/metis-flash-$version-windows-x86_64/metis-flash.exe" 6
size_row "metis-flash-gui.exe, windows-x86_64" "stage/metis-flash-$version-windows-x86_64/metis-flash-gui.exe" 16
size_row "metis-build, linux-x86_64, static musl" "stage/metis-build-$version-linux-x86_64/metis-build" 64

DIST=""
for d in "${found[@]}"; do [ -x "$d/bench/metis-flash-dev-write" ] && { DIST=$d; break; }; done
dev_write=$DIST/bench/metis-flash-dev-write
if [ -x "$dev_write" ] && [ "$(id -u)" = 0 ]; then
    BENCH_FLASH=$dev_write BENCH_LABEL="static musl release build" BENCH_CARD_THROTTLED_ONLY=1 \
        bash "$ROOT/bench/card.sh"
else
    echo "release.sh: no $dev_write (scripts/release --bench) or not root: no card row" >&2
fi
