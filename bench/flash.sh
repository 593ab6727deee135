#!/usr/bin/env bash
# Benchmark of `metis-flash write` (decode + verify + O_DIRECT write + read-back)
# against dd and zstd|dd+cmp, on a loop device over a file.
#
#   bench/flash.sh [SIZE_GIB]     image size in GiB; default $BENCH_SIZE_GIB, else 4
#
# Environment: BENCH_DIR      work directory (default: a new one under /var/tmp,
#                             removed at the end); needs ~2.5 x SIZE free
#              LOOP_DIRECT_IO on (default) or off: `losetup --direct-io`; "on" makes
#                             the loop device write through to the disk like a card
#
# Needs root (loop devices), zstd, cmp, /usr/bin/time. Prints one markdown row per
# measurement on stdout, as bench/run expects:
#   | benchmark | metis | reference | ratio (metis / reference) | goal |
# The raw image is read warm (page cache) by dd, as Metis reads its cache warm.
set -euo pipefail

SIZE_GIB=${1:-${BENCH_SIZE_GIB:-4}}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PATH="/usr/local/sbin:/usr/sbin:/sbin:$PATH"
[ "$(id -u)" = 0 ] || { echo "needs root (loop devices)" >&2; exit 1; }
command -v zstd >/dev/null || { echo "zstd CLI not found (apt-get install zstd)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time not found (apt-get install time)" >&2; exit 1; }

# shellcheck source=bench/lib.bash
. "$ROOT/bench/lib.bash"
bench_build

LOOP=
if [ -n "${BENCH_DIR:-}" ]; then
    WORK=$BENCH_DIR; mkdir -p "$WORK"
    trap 'if [ -n "$LOOP" ]; then losetup -d "$LOOP" || :; fi' EXIT
else
    WORK=$(mktemp -d /var/tmp/metis-bench-flash.XXXXXX)
    trap 'if [ -n "$LOOP" ]; then losetup -d "$LOOP" || :; fi; rm -rf "$WORK"' EXIT
fi
row() { printf '| %s (%s GiB) | %s | %s | %s | %s |\n' "$1" "$SIZE_GIB" "$2" "$3" "$4" "$5"; }

echo "generating a ${SIZE_GIB} GiB mixed image and its artifact in $WORK..." >&2
"$GEN" gen "${SIZE_GIB}G" "$WORK/golden.img"
"$GEN" base "$WORK/golden.img" "$WORK/art" 4M >/dev/null
"$GEN" node "$WORK/art" >/dev/null
head -c 4096 /dev/zero | tr '\0' '\245' > "$WORK/art/bundle"
IMAGE_BYTES=$(stat -c %s "$WORK/golden.img")
truncate -s $((IMAGE_BYTES + (64 << 20))) "$WORK/card"
LOOP=$(losetup -f --show --direct-io="${LOOP_DIRECT_IO:-on}" "$WORK/card")
echo "card: $LOOP (direct-io ${LOOP_DIRECT_IO:-on})" >&2
sync
cat "$WORK/golden.img" "$WORK/art/base.zst" >/dev/null

# flash [ARGS...]: the full flash under /usr/bin/time, summary in $WORK/summary.json.
flash() { write_card "$WORK/art" "$LOOP" "$@"; }

# 1. Write throughput: Metis's write phase (decode, verify, aligned direct writes,
#    partition-table area last, fsync) vs dd of the raw image.
#    The host's disk under the loop device swings by tens of percent from one
#    run to the next, so each side runs $RUNS times, alternating, and the
#    medians are compared (the full flash of the median run is kept for below).
RUNS=${BENCH_RUNS:-3}
DD_LIST=''
WRITE_LIST=''
for _ in $(seq "$RUNS"); do
    measure dd if="$WORK/golden.img" of="$LOOP" bs=4M oflag=direct conv=fsync status=none
    DD_LIST="$DD_LIST $SECONDS_TAKEN"
    flash
    WRITE_LIST="$WRITE_LIST $(json write_seconds)"
done
DD_S=$(echo "$DD_LIST" | tr ' ' '\n' | sed '/^$/d' | median)
WRITE_MEDIAN=$(echo "$WRITE_LIST" | tr ' ' '\n' | sed '/^$/d' | median)
flash
METIS_TOTAL=$SECONDS_TAKEN; METIS_RSS=$RSS_KB; METIS_CPU=$CPU_SECONDS
WRITE_S=$(json write_seconds); VERIFY_S=$(json verify_seconds)
M=$(mib_s "$IMAGE_BYTES" "$WRITE_MEDIAN"); D=$(mib_s "$IMAGE_BYTES" "$DD_S")
row "flash: write (decode+verify+O_DIRECT, fsync), median of $RUNS; ref dd bs=4M oflag=direct of the raw image, median of $RUNS" \
    "$M MiB/s" "$D MiB/s" "$(ratio "$M" "$D")" ">= 0.95x"

# 2. The whole job: flash + read-back vs zstd -dc | dd, then cmp against the image.
measure sh -c 'zstd -q -dc "$1" | dd of="$2" bs=4M iflag=fullblock oflag=direct conv=fsync status=none &&
               cmp -n "$4" "$3" "$2"' sh "$WORK/art/base.zst" "$LOOP" "$WORK/golden.img" "$IMAGE_BYTES"
REF_S=$SECONDS_TAKEN; REF_CPU=$CPU_SECONDS
row "flash: write + read-back verify, total wall; ref zstd -dc base | dd oflag=direct + cmp" \
    "${METIS_TOTAL} s (write ${WRITE_S} s, verify ${VERIFY_S} s)" "${REF_S} s" \
    "$(ratio "$METIS_TOTAL" "$REF_S")" "<= 1.0x"
row "flash: write + read-back CPU time (user+sys; decode + 2x SHA-256); ref zstd|dd + cmp" \
    "$METIS_CPU s" "$REF_CPU s" "$(ratio "$METIS_CPU" "$REF_CPU")" "(info: a loaded machine hurts the CPU-heavier side)"

# Context: the read-back against a plain direct read of the card, and compose alone
# (decode + patch + SHA-256, into a sink: the ceiling of the write phase).
measure dd if="$LOOP" of=/dev/null bs=4M count=$((IMAGE_BYTES >> 22)) iflag=direct status=none
M=$(mib_s "$IMAGE_BYTES" "$VERIFY_S"); D=$(mib_s "$IMAGE_BYTES" "$SECONDS_TAKEN")
row "flash: read-back (O_DIRECT + SHA-256 per chunk); ref dd iflag=direct of=/dev/null" \
    "$M MiB/s" "$D MiB/s" "$(ratio "$M" "$D")" "(info)"
measure "$GEN" compose "$WORK/art" >/dev/null
M=$(mib_s "$IMAGE_BYTES" "$WRITE_S"); D=$(mib_s "$IMAGE_BYTES" "$SECONDS_TAKEN")
row "flash: write phase; ref compose+verify alone into a sink (metis-core)" \
    "$M MiB/s" "$D MiB/s" "$(ratio "$M" "$D")" "(info: ~1x = bound by compose)"
row "flash: peak RSS of the full flash; ref the goal" "$((METIS_RSS / 1024)) MiB" "64 MiB" \
    "$(ratio "$METIS_RSS" 65536)" "<= 64 MiB"

# 3. Sparse: zero chunks zeroed by BLKZEROOUT instead of written.
flash --sparse
WRITE_SP=$(json write_seconds)
M=$(mib_s "$IMAGE_BYTES" "$WRITE_SP"); D=$(mib_s "$IMAGE_BYTES" "$DD_S")
row "flash --sparse: write (zero chunks by BLKZEROOUT); ref dd bs=4M oflag=direct" \
    "$M MiB/s" "$D MiB/s" "$(ratio "$M" "$D")" "(info)"

# 4. Binary size (release profile strips): the operators' build, without the
# dev-write command the benchmarks use. Before the engine/lean split it was
# 5.8 MiB (bench/RESULTS.md of 2026-11-26, commit 9909c93, the dev-write build).
OPERATOR_FLASH=$(cargo build --release --quiet -p metis-flash --manifest-path "$ROOT/Cargo.toml" \
                   --message-format=json 2>/dev/null |
                 grep -o '"executable":"[^"]*/metis-flash"' | tail -1 | cut -d'"' -f4)
BIN_BYTES=$(stat -c %s "$OPERATOR_FLASH")
row "flash: stripped release binary size (operators' build; 5.8 MiB before the lean split); ref the goal" \
    "$(awk -v b="$BIN_BYTES" 'BEGIN{printf "%.1f MiB", b/1048576}')" \
    "4.5 MiB" "$(ratio "$BIN_BYTES" $((9 << 19)))" "<= 4.5 MiB"
