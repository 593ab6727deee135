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
#    Spare cards on the same card: a card that holds another node of the class,
#    or the same node's previous revision, is compared and only what differs is
#    written (goal <= 0.40x the full flash + read-back; the physical bound is one
#    read of the card plus the changed chunks, ~0.34x); a card with no Metis
#    marker gets the full write (goal <= 1.02x). Each row also gives the ratio to
#    dd doing the same on the same card: for a full write dd's write + read; for
#    a spare card dd's read of the image, plus the bytes Metis wrote at dd's
#    write rate and the chunks it rewrote at dd's read rate.
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
    card_cleanup
    rm -rf "$WORK"
}
trap cleanup EXIT

# $BENCH_LABEL names the flasher measured when it is not the native build.
row() { printf '| %s%s (%s MiB) | %s | %s | %s | %s |\n' "$1" "${BENCH_LABEL:+, $BENCH_LABEL}" "$SIZE_MIB" "$2" "$3" "$4" "$5"; }

# --- 1. The throttled card --------------------------------------------------
echo "generating a ${SIZE_MIB} MiB mixed image and its artifact..." >&2
"$GEN" gen "${SIZE_MIB}M" "$WORK/golden.img"
"$GEN" base "$WORK/golden.img" "$WORK/art" 4M >/dev/null
"$GEN" node "$WORK/art" titan-13 1 >/dev/null
head -c 4096 /dev/zero | tr '\0' '\245' > "$WORK/art/bundle"
# Two more nodes of the class (same base): titan-15, and its next revision.
for n in 1 2; do
    mkdir "$WORK/art-15.$n"
    ln -s "$WORK/art/base.zst" "$WORK/art/base.json" "$WORK/art-15.$n/"
    "$GEN" node "$WORK/art-15.$n" titan-15 "$n" >/dev/null
    head -c 4096 /dev/zero | tr '\0' '\132' > "$WORK/art-15.$n/bundle"
done
IMAGE_BYTES=$(stat -c %s "$WORK/golden.img")
CARD_BYTES=$((IMAGE_BYTES + (64 << 20)))

throttled_card "$CARD_BYTES"

# A new card (no marker): compared with nothing, written in full.
write_card "$WORK/art" "$LOOP" --class bench
grep -q '"ok":true' "$WORK/summary.json" || { cat "$WORK/summary.json" >&2; exit 1; }
FOREIGN_S=$SECONDS_TAKEN; FOREIGN_W=$(json bytes_written)
grep -q '"card_held":null' "$WORK/summary.json" || { echo "a new card was compared" >&2; exit 1; }

write_card "$WORK/art" "$LOOP" --full --class bench
grep -q '"ok":true' "$WORK/summary.json" || { cat "$WORK/summary.json" >&2; exit 1; }
TOTAL=$SECONDS_TAKEN
WRITE_S=$(printf '%.2f' "$(json write_seconds)"); VERIFY_S=$(printf '%.2f' "$(json verify_seconds)")
WRITTEN=$(json bytes_written); WRITTEN=${WRITTEN:-$IMAGE_BYTES}
LIMIT=$(awk -v w="$WRITTEN" -v r="$IMAGE_BYTES" -v wr="$WRITE_MBPS" -v rr="$READ_MBPS" \
    'BEGIN { printf "%.2f", w / (wr * 1e6) + r / (rr * 1e6) }')
row "card: flash + read-back on a throttled card (FUSE, ${WRITE_MBPS} MB/s write, ${READ_MBPS} MB/s read); ref the card's own time" \
    "${TOTAL} s (write ${WRITE_S} s, verify ${VERIFY_S} s)" "${LIMIT} s" "$(ratio "$TOTAL" "$LIMIT")" "<= 1.05x"

# Spare cards: titan-15 onto the card holding titan-13, then titan-15's next
# revision onto it.
spare() { # DIR REVISION: sets SPARE_S SPARE_W SPARE_DIFF SPARE_REWRITTEN SPARE_TOTAL
    write_card "$1" "$LOOP" --class bench --revision "$2"
    grep -q '"ok":true' "$WORK/summary.json" || { cat "$WORK/summary.json" >&2; exit 1; }
    grep -q '"card_held":{' "$WORK/summary.json" || { echo "the spare card was not compared" >&2; exit 1; }
    SPARE_S=$SECONDS_TAKEN; SPARE_W=$(json bytes_written); SPARE_DIFF=$(json differing)
    SPARE_REWRITTEN=$(json rewritten); SPARE_TOTAL=$(json total)
}
spare "$WORK/art-15.1" 1
OTHER=("$SPARE_S" "$SPARE_W" "$SPARE_DIFF" "$SPARE_REWRITTEN" "$SPARE_TOTAL")
spare "$WORK/art-15.2" 2
NEXT=("$SPARE_S" "$SPARE_W" "$SPARE_DIFF" "$SPARE_REWRITTEN" "$SPARE_TOTAL")

# What a plain writer and reader get from the same simulated card (FUSE round
# trips included): dd of the raw image, then a direct read back.
measure dd if="$WORK/golden.img" of="$LOOP" bs=4M oflag=direct conv=fsync status=none
DD_W=$SECONDS_TAKEN
measure dd if="$LOOP" of=/dev/null bs=4M count=$((IMAGE_BYTES >> 22)) iflag=direct status=none
DD_R=$SECONDS_TAKEN
DD_S=$(awk -v a="$DD_W" -v b="$DD_R" 'BEGIN { printf "%.2f", a + b }')
row "card: flash + read-back on the throttled card; ref dd oflag=direct of the raw image + dd iflag=direct read on the same card" \
    "${TOTAL} s" "${DD_S} s (write ${DD_W} s, read ${DD_R} s)" "$(ratio "$TOTAL" "$DD_S")" "(info: the simulator's own overhead)"

mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
row "card: new card (no Metis marker), default mode: recognition + full flash + read-back, $(mib "$FOREIGN_W") written; ref the --full flash + read-back" \
    "${FOREIGN_S} s" "${TOTAL} s" "$(ratio "$FOREIGN_S" "$TOTAL")" "<= 1.02x"
row "card: new card, default mode; ref dd write + read of the raw image on the same card" \
    "${FOREIGN_S} s" "${DD_S} s" "$(ratio "$FOREIGN_S" "$DD_S")" "(info)"
spare_rows() { # WHAT S WRITTEN DIFFERING REWRITTEN TOTAL
    local dd_eq
    dd_eq=$(awk -v r="$DD_R" -v w="$DD_W" -v img="$IMAGE_BYTES" -v bw="$3" -v rw="$5" \
        'BEGIN { printf "%.2f", r + bw * w / img + rw * 4194304 * r / img }')
    row "card: spare card holding $1: compare + write $4 of $6 differing chunks ($5 rewritten, $(mib "$3") written) + read them back; ref the full flash + read-back" \
        "$2 s" "${TOTAL} s" "$(ratio "$2" "$TOTAL")" "<= 0.40x"
    row "card: spare card holding $1; ref dd: read of the image + the bytes written at dd's write rate + the rewritten chunks at dd's read rate" \
        "$2 s" "${dd_eq} s" "$(ratio "$2" "$dd_eq")" "(info)"
}
spare_rows "another node of the class" "${OTHER[@]}"
spare_rows "the same node's previous revision" "${NEXT[@]}"
losetup -d "$LOOP"; LOOP=
fusermount -u "$WORK/mnt"; wait "$DAEMON" 2>/dev/null || :; DAEMON=
rm -rf "$WORK/art" "$WORK/art-15.1" "$WORK/art-15.2" "$WORK/golden.img"

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
