#!/usr/bin/env bash
# Flash + read-back on a card that behaves like a real SD card, against the
# physical limit; and --sparse against bmaptool copy on a mostly empty image.
#
#   bench/card.sh [SIZE_MIB]    image size in MiB; default $BENCH_CARD_MIB, else 512
#   BENCH_FLASH=BIN BENCH_LABEL=TEXT BENCH_CARD_THROTTLED_ONLY=1 bench/card.sh
#                               part 1 only, with another flasher (bench/release.sh)
#
# 1. The throttled card: flasher/tests/fakecard.py serves one file over FUSE
#    (direct_io: no page cache in FUSE) at a card's sustained rates, one request
#    at a time — $CARD_WRITE_MBPS MB/s written (default 40) and $CARD_READ_MBPS
#    MB/s read (default 80) — with a loop device on top, a real block device.
#    The limit is what the card alone needs: bytes written / write rate + bytes
#    read back / read rate. Metis's decompression, hashing and decryption must
#    hide behind the card (goal <= 1.05x).
# 2. --sparse on an image with ~30% mapped data (the rest holes) vs
#    `bmaptool copy` of the same image with its bmap, both onto a loop device
#    (goal <= 1.0x). Metis's time includes its read-back of the whole image;
#    bmaptool's does not read the card back (it checks the source's digests).
#
# Needs root (loop devices, FUSE), Debian's python3-fusepy and fuse3, bmap-tools.
# Prints markdown rows (| benchmark | metis | reference | ratio | goal |) as bench/run expects.
set -euo pipefail

SIZE_MIB=${1:-${BENCH_CARD_MIB:-512}}
WRITE_MBPS=${CARD_WRITE_MBPS:-40}
READ_MBPS=${CARD_READ_MBPS:-80}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PATH="/usr/local/sbin:/usr/sbin:/sbin:$PATH"
[ "$(id -u)" = 0 ] || { echo "needs root (loop devices, FUSE)" >&2; exit 1; }
/usr/bin/python3 -c 'import fusepy' 2>/dev/null || { echo "needs python3-fusepy" >&2; exit 1; }
command -v bmaptool >/dev/null || { echo "bmaptool not found (apt-get install bmap-tools)" >&2; exit 1; }

# shellcheck source=bench/lib.bash
. "$ROOT/bench/lib.bash"
bench_build

WORK=$(mktemp -d /var/tmp/metis-bench-card.XXXXXX)
LOOP=''
DAEMON=''
cleanup() {
    if [ -n "$LOOP" ]; then losetup -d "$LOOP" 2>/dev/null || :; fi
    if mountpoint -q "$WORK/mnt" 2>/dev/null; then fusermount -u "$WORK/mnt" || :; fi
    if [ -n "$DAEMON" ]; then kill "$DAEMON" 2>/dev/null || :; wait "$DAEMON" 2>/dev/null || :; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# $BENCH_LABEL names the flasher measured when it is not the native build.
row() { printf '| %s%s (%s MiB) | %s | %s | %s | %s |\n' "$1" "${BENCH_LABEL:+, $BENCH_LABEL}" "$SIZE_MIB" "$2" "$3" "$4" "$5"; }

# --- 1. The throttled card --------------------------------------------------
echo "generating a ${SIZE_MIB} MiB mixed image and its artifact..." >&2
"$GEN" gen "${SIZE_MIB}M" "$WORK/golden.img"
"$GEN" base "$WORK/golden.img" "$WORK/art" 4M >/dev/null
"$GEN" node "$WORK/art" >/dev/null
head -c 4096 /dev/zero | tr '\0' '\245' > "$WORK/art/bundle"
IMAGE_BYTES=$(stat -c %s "$WORK/golden.img")
CARD_BYTES=$((IMAGE_BYTES + (64 << 20)))

mkdir "$WORK/mnt"
/usr/bin/python3 "$ROOT/flasher/tests/fakecard.py" "$WORK/mnt" --size "$CARD_BYTES" --sparse \
    --write-mbps "$WRITE_MBPS" --read-mbps "$READ_MBPS" &
DAEMON=$!
for _ in $(seq 100); do [ -e "$WORK/mnt/card" ] && break; sleep 0.1; done
[ -e "$WORK/mnt/card" ] || { echo "fakecard.py did not mount" >&2; exit 1; }
LOOP=$(losetup -f --show "$WORK/mnt/card")
echo "throttled card: $LOOP over FUSE (${WRITE_MBPS} MB/s write, ${READ_MBPS} MB/s read)" >&2

write_card "$WORK/art" "$LOOP" --full
grep -q '"ok":true' "$WORK/summary.json" || { cat "$WORK/summary.json" >&2; exit 1; }
TOTAL=$SECONDS_TAKEN
WRITE_S=$(json write_seconds); VERIFY_S=$(json verify_seconds)
WRITTEN=$(json bytes_written); WRITTEN=${WRITTEN:-$IMAGE_BYTES}
LIMIT=$(awk -v w="$WRITTEN" -v r="$IMAGE_BYTES" -v wr="$WRITE_MBPS" -v rr="$READ_MBPS" \
    'BEGIN { printf "%.2f", w / (wr * 1e6) + r / (rr * 1e6) }')
row "card: flash + read-back on a throttled card (FUSE, ${WRITE_MBPS} MB/s write, ${READ_MBPS} MB/s read); ref the card's own time" \
    "${TOTAL} s (write ${WRITE_S} s, verify ${VERIFY_S} s)" "${LIMIT} s" "$(ratio "$TOTAL" "$LIMIT")" "<= 1.05x"
# What a plain writer and reader get from the same simulated card (FUSE round
# trips included): dd of the raw image, then a direct read back.
measure dd if="$WORK/golden.img" of="$LOOP" bs=4M oflag=direct conv=fsync status=none
DD_W=$SECONDS_TAKEN
measure dd if="$LOOP" of=/dev/null bs=4M count=$((IMAGE_BYTES >> 22)) iflag=direct status=none
DD_R=$SECONDS_TAKEN
DD_S=$(awk -v a="$DD_W" -v b="$DD_R" 'BEGIN { printf "%.2f", a + b }')
row "card: flash + read-back on the throttled card; ref dd oflag=direct of the raw image + dd iflag=direct read on the same card" \
    "${TOTAL} s" "${DD_S} s (write ${DD_W} s, read ${DD_R} s)" "$(ratio "$TOTAL" "$DD_S")" "(info: the simulator's own overhead)"
losetup -d "$LOOP"; LOOP=
fusermount -u "$WORK/mnt"; wait "$DAEMON" 2>/dev/null || :; DAEMON=
rm -rf "$WORK/art" "$WORK/golden.img"

[ -n "${BENCH_CARD_THROTTLED_ONLY:-}" ] && exit 0

# --- 2. --sparse vs bmaptool -------------------------------------------------
# Data in the first 60% of the image, ~half of it zeros punched into holes, the
# rest of the image a hole: ~30% mapped.
DATA_MIB=$((SIZE_MIB * 6 / 10))
"$GEN" gen "${DATA_MIB}M" "$WORK/sparse.img"
fallocate --dig-holes "$WORK/sparse.img"
truncate -s "${SIZE_MIB}M" "$WORK/sparse.img"
"$GEN" base "$WORK/sparse.img" "$WORK/art" 4M >/dev/null
"$GEN" node "$WORK/art" >/dev/null
head -c 4096 /dev/zero | tr '\0' '\245' > "$WORK/art/bundle"
IMAGE_BYTES=$(stat -c %s "$WORK/sparse.img")
MAPPED=$(( $(stat -c %b "$WORK/sparse.img") * 512 ))
bmaptool create -o "$WORK/sparse.bmap" "$WORK/sparse.img" 2>/dev/null
truncate -s $((IMAGE_BYTES + (64 << 20))) "$WORK/card"
LOOP=$(losetup -f --show --direct-io=on "$WORK/card")
sync
cat "$WORK/sparse.img" "$WORK/art/base.zst" >/dev/null

measure bmaptool -q copy --bmap "$WORK/sparse.bmap" "$WORK/sparse.img" "$LOOP"
BMAP_S=$SECONDS_TAKEN
write_card "$WORK/art" "$LOOP" --sparse
grep -q '"ok":true' "$WORK/summary.json" || { cat "$WORK/summary.json" >&2; exit 1; }
METIS_S=$SECONDS_TAKEN
METIS_W=$(json write_seconds)
PCT=$(awk -v m="$MAPPED" -v s="$IMAGE_BYTES" 'BEGIN { printf "%.0f", 100 * m / s }')
row "card: --sparse write phase, ${PCT}% mapped; ref bmaptool copy with its bmap" \
    "${METIS_W} s" "${BMAP_S} s" "$(ratio "$METIS_W" "$BMAP_S")" "<= 1.0x"
row "card: --sparse write + read-back of the whole card, ${PCT}% mapped; ref bmaptool copy (which reads nothing back)" \
    "${METIS_S} s (verify $(json verify_seconds) s)" "${BMAP_S} s" "$(ratio "$METIS_S" "$BMAP_S")" "(info)"
