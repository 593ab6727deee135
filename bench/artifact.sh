#!/usr/bin/env bash
# Benchmark of the artifact format (class base, node patch, verified compose)
# against the zstd CLI on the same file.
#
#   bench/artifact.sh [SIZE]        SIZE of the generated image (K/M/G suffix);
#                                   default ${BENCH_SIZE_GIB}G if set (bench/run
#                                   sets it), else 1G. The issue's target is 4G.
#
# Environment: BENCH_DIR   work directory (default: a new one under /var/tmp,
#                          removed at the end); needs ~2.5 x SIZE free
#              SPARSE_SIZE size of the sparse-image RSS run (default 32G; 0 skips)
#              THREADS     compose/compress threads for Metis (default: cores, 2..8)
#
# Prints one markdown table row per measurement on stdout, as bench/run expects:
#   | benchmark | metis | reference | ratio (metis / reference) | goal |
# Progress and tool output go to stderr. Files are read warm (page cache), as the
# flasher reads its cache; both sides get the same treatment. Timing and peak RSS
# come from /usr/bin/time -v for Metis and zstd alike.
set -euo pipefail

if [ -n "${BENCH_SIZE_GIB:-}" ]; then DEFAULT_SIZE=${BENCH_SIZE_GIB}G; else DEFAULT_SIZE=1G; fi
SIZE=${1:-$DEFAULT_SIZE}
SPARSE_SIZE=${SPARSE_SIZE:-32G}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

command -v zstd >/dev/null || { echo "zstd CLI not found (apt-get install zstd)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time not found (apt-get install time)" >&2; exit 1; }

echo "building bench/artifact (release)..." >&2
BIN=$(cargo build --release --quiet --manifest-path "$ROOT/bench/artifact/Cargo.toml" \
        --message-format=json 2>/dev/null |
      grep -o '"executable":"[^"]*metis-bench-artifact"' | tail -1 | cut -d'"' -f4)
[ -x "$BIN" ] || { echo "could not build bench/artifact" >&2; exit 1; }

if [ -n "${BENCH_DIR:-}" ]; then
    WORK=$BENCH_DIR; mkdir -p "$WORK"
else
    WORK=$(mktemp -d /var/tmp/metis-bench-artifact.XXXXXX)
    trap 'rm -rf "$WORK"' EXIT
fi
TIMES=$WORK/time.txt
THREADS=${THREADS:-$(nproc)}
[ "$THREADS" -lt 2 ] && THREADS=2
[ "$THREADS" -gt 8 ] && THREADS=8

# measure CMD...: runs CMD under /usr/bin/time -v; sets SECONDS_TAKEN (wall),
# CPU_SECONDS (user + system) and RSS_KB (peak resident set).
measure() {
    /usr/bin/time -v -o "$TIMES" "$@"
    SECONDS_TAKEN=$(awk -F': ' '/Elapsed \(wall clock\)/ {
        n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s }' "$TIMES")
    RSS_KB=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$TIMES")
    CPU_SECONDS=$(awk -F': ' '/(User|System) time \(seconds\)/ {s += $2} END {printf "%.2f", s}' "$TIMES")
}
bytes_of() { stat -c %s "$1"; }
mib_s() { awk -v b="$1" -v s="$2" 'BEGIN { if (s < 0.005) s = 0.005; printf "%.0f", b / s / 1048576 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2fx", a / b }'; }
human() { awk -v b="$1" 'BEGIN { split("B KiB MiB GiB TiB", u, " "); i = 1;
    while (b >= 1024 && i < 5) { b /= 1024; i++ } printf (b == int(b) ? "%d %s" : "%.1f %s"), b, u[i] }'; }
# row BENCHMARK IMAGE METIS REFERENCE RATIO GOAL
row() { printf '| %s (%s) | %s | %s | %s | %s |\n' "$@"; }

echo "generating a $SIZE mixed image in $WORK..." >&2
"$BIN" gen "$SIZE" "$WORK/golden.img"
IMAGE_BYTES=$(bytes_of "$WORK/golden.img")
LABEL=$(human "$IMAGE_BYTES")
# Write back the generated image first: dirty pages being flushed would throttle the
# writes of whichever tool runs first. Then read it into the page cache (warm).
sync
cat "$WORK/golden.img" >/dev/null

# 1. Base compression vs zstd -T0 -3 (multi-threaded zstd, same level).
measure "$BIN" base "$WORK/golden.img" "$WORK/art" 4M "$THREADS"
METIS_C=$SECONDS_TAKEN; METIS_CPU=$CPU_SECONDS
sync
measure zstd -q -f -T0 -3 "$WORK/golden.img" -o "$WORK/golden.zst"
ZSTD_C=$SECONDS_TAKEN; ZSTD_CPU=$CPU_SECONDS
sync
M=$(mib_s "$IMAGE_BYTES" "$METIS_C"); Z=$(mib_s "$IMAGE_BYTES" "$ZSTD_C")
row "artifact: base compress, level 3, 4 MiB chunks, $THREADS threads, + SHA-256 table; ref zstd -T0 -3" \
    "$LABEL" "$M MiB/s" "$Z MiB/s" "$(ratio "$M" "$Z")" ">= 0.8x"
# CPU time is steadier than wall time on a shared machine.
row "artifact: base compress CPU time (user+sys); ref zstd -T0 -3" "$LABEL" "$METIS_CPU s" "$ZSTD_CPU s" \
    "$(ratio "$METIS_CPU" "$ZSTD_CPU")" "<= 1.3x"
MB=$(bytes_of "$WORK/art/base.zst"); ZB=$(bytes_of "$WORK/golden.zst")
row "artifact: base size (seekable, independent 4 MiB frames); ref zstd -T0 -3 output" "$LABEL" \
    "$(human "$MB")" "$(human "$ZB")" "$(ratio "$MB" "$ZB")" "<= 1.05x"
rm -f "$WORK/golden.zst"

"$BIN" node "$WORK/art"
sync
PATCH_BYTES=$(bytes_of "$WORK/art/node.patch")
row "artifact: node patch (seed + 64 KiB slot + sector); ref the class base" "$LABEL" "$PATCH_BYTES B" \
    "$(human "$MB")" "$(awk -v a="$PATCH_BYTES" -v b="$MB" 'BEGIN { printf "%.6fx", a / b }')" "< 64 KiB"

# 2. Compose + verify (patch, SHA-256 per chunk, slot) vs plain zstd -dc of the base.
measure "$BIN" compose "$WORK/art" "$THREADS"
METIS_D=$SECONDS_TAKEN; METIS_RSS=$RSS_KB; METIS_CPU=$CPU_SECONDS
measure sh -c 'zstd -q -dc "$1" >/dev/null' sh "$WORK/art/base.zst"
ZSTD_D=$SECONDS_TAKEN; ZSTD_RSS=$RSS_KB; ZSTD_CPU=$CPU_SECONDS
M=$(mib_s "$IMAGE_BYTES" "$METIS_D"); Z=$(mib_s "$IMAGE_BYTES" "$ZSTD_D")
row "artifact: compose+verify (patch, SHA-256 per chunk, slot), $THREADS threads; ref zstd -dc base >/dev/null" \
    "$LABEL" "$M MiB/s" "$Z MiB/s" "$(ratio "$M" "$Z")" ">= 1.0x"
row "artifact: compose+verify CPU time (user+sys; SHA-256 is the extra); ref zstd -dc" "$LABEL" \
    "$METIS_CPU s" "$ZSTD_CPU s" "$(ratio "$METIS_CPU" "$ZSTD_CPU")" "<= 2.5x"
row "artifact: compose peak RSS; ref zstd -dc" "$LABEL" "$((METIS_RSS / 1024)) MiB" \
    "$((ZSTD_RSS / 1024)) MiB" "$(ratio "$METIS_RSS" "$ZSTD_RSS")" "<= 64 MiB"
rm -rf "$WORK/golden.img" "$WORK/art"

# 3. A large, mostly empty card: a sparse file with 64 MiB of data at its start.
if [ "$SPARSE_SIZE" != 0 ]; then
    echo "sparse $SPARSE_SIZE image..." >&2
    "$BIN" gen 64M "$WORK/head.img"
    truncate -s "$SPARSE_SIZE" "$WORK/sparse.img"
    dd if="$WORK/head.img" of="$WORK/sparse.img" conv=notrunc bs=1M status=none
    rm -f "$WORK/head.img"
    sync
    SPARSE_BYTES=$(bytes_of "$WORK/sparse.img")
    # Reading holes fills the page cache with zero pages; warm it (when it fits in
    # RAM) so the first tool measured does not pay for the second.
    cat "$WORK/sparse.img" >/dev/null
    SLABEL="$(human "$SPARSE_BYTES") sparse"
    measure "$BIN" base "$WORK/sparse.img" "$WORK/sart" 4M "$THREADS"
    M=$(mib_s "$SPARSE_BYTES" "$SECONDS_TAKEN")
    measure zstd -q -f -T0 -3 "$WORK/sparse.img" -o "$WORK/sparse.zst"
    Z=$(mib_s "$SPARSE_BYTES" "$SECONDS_TAKEN")
    rm -f "$WORK/sparse.zst"
    row "artifact: base compress, mostly zero chunks; ref zstd -T0 -3" "$SLABEL" "$M MiB/s" "$Z MiB/s" \
        "$(ratio "$M" "$Z")" ">= 0.8x"
    "$BIN" node "$WORK/sart"
    measure "$BIN" compose "$WORK/sart" "$THREADS"
    METIS_D=$SECONDS_TAKEN; METIS_RSS=$RSS_KB
    measure sh -c 'zstd -q -dc "$1" >/dev/null' sh "$WORK/sart/base.zst"
    ZSTD_D=$SECONDS_TAKEN; ZSTD_RSS=$RSS_KB
    M=$(mib_s "$SPARSE_BYTES" "$METIS_D"); Z=$(mib_s "$SPARSE_BYTES" "$ZSTD_D")
    row "artifact: compose+verify, zero chunks skipped; ref zstd -dc base >/dev/null" "$SLABEL" \
        "$M MiB/s" "$Z MiB/s" "$(ratio "$M" "$Z")" ">= 1x"
    row "artifact: compose peak RSS; ref zstd -dc" "$SLABEL" "$((METIS_RSS / 1024)) MiB" \
        "$((ZSTD_RSS / 1024)) MiB" "$(ratio "$METIS_RSS" "$ZSTD_RSS")" "<= 64 MiB"
    rm -rf "$WORK/sparse.img" "$WORK/sart"
fi
