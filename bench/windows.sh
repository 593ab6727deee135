#!/usr/bin/env bash
# metis-flash.exe under Wine against the Linux flasher on the same machine: the
# operator's flash of a published node (1 GiB card image) from an `oci:`
# registry to `--output` — signature and every digest verified, the secrets
# decrypted, the image written and read back — with a warm cache, so both sides
# do the same work and Wine's own overhead is what differs. Goal <= 1.5x.
#
#   bench/windows.sh [DIST]   DIST: what scripts/release printed (its Windows
#                             exe and static Linux flasher); default
#                             $METIS_RELEASE_DIR, else dist/<workspace version>
#
# Without a Windows build in DIST, or without wine64, it prints no row (a
# message on stderr). Prints markdown rows as bench/run expects.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export PATH="/usr/local/sbin:/usr/sbin:/sbin:$PATH"
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
DIST=${1:-${METIS_RELEASE_DIR:-$ROOT/dist/$version}}
EXE=$DIST/stage/metis-flash-$version-windows-x86_64/metis-flash.exe
LINUX=$DIST/metis-flash-$version-linux-x86_64
WINE=/usr/lib/wine/wine64
for need in "$EXE" "$LINUX" "$WINE"; do
    [ -e "$need" ] || { echo "windows.sh: no $need (scripts/release, scripts/install-deps): no rows" >&2; exit 0; }
done
SIZE_MIB=${BENCH_WINDOWS_MIB:-1024}
RUNS=${BENCH_RUNS:-3}

WORK=$(mktemp -d /var/tmp/metis-bench-windows.XXXXXX)
cleanup() {
    WINEPREFIX=$WORK/wine /usr/bin/wineserver -k 2>/dev/null || :
    rm -rf "$WORK"
}
trap cleanup EXIT
# shellcheck source=bench/lib.bash
. bench/lib.bash

echo "publishing titan-db with a ${SIZE_MIB} MiB card image..." >&2
cargo build --release --quiet -p metis-build
bench_inventory "$WORK/inventory" $((SIZE_MIB * 3 / 4)) "$SIZE_MIB"
COSIGN_PASSWORD=demo METIS_AGE_IDENTITY="$(cat inventory/demo-keys/builder.agekey)" \
    target/release/metis-build publish titan-db --inventory "$WORK/inventory" --registry "oci:$WORK/reg" \
    --key inventory/demo-keys/cosign.key --work-dir "$WORK/work" >/dev/null 2>"$WORK/publish.log" ||
    { cat "$WORK/publish.log" >&2; exit 1; }
rm -rf "$WORK/work" "$WORK/inventory/golden"

# The exe beside Wine's missing bcryptprimitives.dll stand-in (docs/windows.md).
mkdir -p "$WORK/win"
cp "$EXE" "$WORK/win/"
x86_64-w64-mingw32-gcc -O2 -shared -s -o "$WORK/win/bcryptprimitives.dll" \
    scripts/windows/bcryptprimitives.c -ladvapi32
z() { local p="Z:$1"; printf '%s' "${p//\//\\}"; }
linux() {
    METIS_CACHE=$WORK/cache XDG_CONFIG_HOME=$WORK/config "$LINUX" "$@" </dev/null
}
windows() {
    WINEPREFIX=$WORK/wine WINEDEBUG=-all METIS_CACHE=$(z "$WORK/wcache") \
        "$WINE" "$WORK/win/metis-flash.exe" "$@" </dev/null
}
lflash() {
    linux flash titan-db --registry "oci:$WORK/reg" --identity inventory/demo-keys/operator.agekey \
        --output "$WORK/linux.img" 2>"$WORK/linux.log" || { cat "$WORK/linux.log" >&2; exit 1; }
}
wflash() {
    windows flash titan-db --registry "oci:$(z "$WORK/reg")" \
        --identity "$(z "$ROOT/inventory/demo-keys/operator.agekey")" \
        --output "$(z "$WORK/windows.img")" 2>"$WORK/windows.log" || { cat "$WORK/windows.log" >&2; exit 1; }
}
linux trust add inventory/demo-keys/cosign.pub >/dev/null 2>&1
windows trust add "$(z "$ROOT/inventory/demo-keys/cosign.pub")" >/dev/null 2>&1
# First flashes fill each cache (and start the prefix's wineserver); the
# measured runs alternate, and the medians are compared.
lflash
wflash
cmp -s "$WORK/linux.img" "$WORK/windows.img" || { echo "metis-flash.exe wrote a different card" >&2; exit 1; }
now() { date +%s.%N; }
L=''
W=''
for _ in $(seq "$RUNS"); do
    t0=$(now); lflash; t1=$(now); wflash; t2=$(now)
    L="$L $(echo "$t1 - $t0" | bc)"
    W="$W $(echo "$t2 - $t1" | bc)"
done
LS=$(echo "$L" | tr ' ' '\n' | sed '/^$/d' | median)
WS=$(echo "$W" | tr ' ' '\n' | sed '/^$/d' | median)
IMG=$(stat -c %s "$WORK/linux.img")
printf '| windows: metis-flash.exe under Wine, flash to --output (warm cache, verified, read back), median of %s; ref the static Linux flasher on this machine (%s MiB card image) | %.2f s | %.2f s | %s | <= 1.5x |\n' \
    "$RUNS" "$((IMG >> 20))" "$WS" "$LS" "$(ratio "$WS" "$LS")"
