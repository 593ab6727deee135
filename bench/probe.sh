#!/usr/bin/env bash
# The counterfeit-card probe's cost on a card that behaves like a real SD card.
#
#   bench/probe.sh [CLAIM_GIB...]   claimed capacities; default $BENCH_PROBE_GIB, else "32 128"
#
# flasher/tests/fakecard.py serves an honest card of each claimed capacity over
# FUSE (sparse: only written MiB are held; direct_io: no page cache), throttled to
# $CARD_WRITE_MBPS MB/s written (default 40) and $CARD_READ_MBPS MB/s read
# (default 80), one request at a time, with a loop device on top. `metis-flash
# write --json` flashes a small image onto it; the probe's time is its
# phase-finished event, the number of probe blocks the card's count of bytes
# written less the image, over 2 x 4 KiB (each block is written with a marker,
# then restored). The reference is the card's own time for one full flash and
# read-back of a 1 GiB image at the same rates: the probe should be a small
# fraction of any real flash.
#
# Needs root (loop devices, FUSE) and Debian's python3-fusepy.
# Prints markdown rows (| benchmark | metis | reference | ratio | goal |) as bench/run expects.
set -euo pipefail

read -r -a CLAIMS <<< "${*:-${BENCH_PROBE_GIB:-32 128}}"
WRITE_MBPS=${CARD_WRITE_MBPS:-40}
READ_MBPS=${CARD_READ_MBPS:-80}
IMAGE_MIB=64
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PATH="/usr/local/sbin:/usr/sbin:/sbin:$PATH"
[ "$(id -u)" = 0 ] || { echo "needs root (loop devices, FUSE)" >&2; exit 1; }
/usr/bin/python3 -c 'import fusepy' 2>/dev/null || { echo "needs python3-fusepy" >&2; exit 1; }

# shellcheck source=bench/lib.bash
. "$ROOT/bench/lib.bash"
bench_build

WORK=$(mktemp -d /var/tmp/metis-bench-probe.XXXXXX)
LOOP=''
DAEMON=''
detach() {
    if [ -n "$LOOP" ]; then losetup -d "$LOOP" 2>/dev/null || :; LOOP=; fi
    if mountpoint -q "$WORK/mnt" 2>/dev/null; then fusermount -u "$WORK/mnt" || :; fi
    if [ -n "$DAEMON" ]; then kill "$DAEMON" 2>/dev/null || :; wait "$DAEMON" 2>/dev/null || :; DAEMON=; fi
}
cleanup() { detach; rm -rf "$WORK"; }
trap cleanup EXIT

echo "generating a ${IMAGE_MIB} MiB image and its artifact..." >&2
"$GEN" gen "${IMAGE_MIB}M" "$WORK/golden.img"
"$GEN" base "$WORK/golden.img" "$WORK/art" 4M >/dev/null
"$GEN" node "$WORK/art" >/dev/null
head -c 4096 /dev/zero | tr '\0' '\245' > "$WORK/art/bundle"
IMAGE_BYTES=$(stat -c %s "$WORK/golden.img")
# The card's time for a full flash + read-back of 1 GiB at these rates.
REF=$(awk -v wr="$WRITE_MBPS" -v rr="$READ_MBPS" \
    'BEGIN { printf "%.2f", 2^30 / (wr * 1e6) + 2^30 / (rr * 1e6) }')

mkdir "$WORK/mnt"
for GIB in "${CLAIMS[@]}"; do
    /usr/bin/python3 "$ROOT/flasher/tests/fakecard.py" "$WORK/mnt" --size $((GIB << 30)) --sparse \
        --write-mbps "$WRITE_MBPS" --read-mbps "$READ_MBPS" --log "$WORK/written" &
    DAEMON=$!
    for _ in $(seq 100); do [ -e "$WORK/mnt/card" ] && break; sleep 0.1; done
    [ -e "$WORK/mnt/card" ] || { echo "fakecard.py did not mount" >&2; exit 1; }
    LOOP=$(losetup -f --show "$WORK/mnt/card")
    echo "throttled ${GIB} GiB card: $LOOP over FUSE (${WRITE_MBPS} MB/s write, ${READ_MBPS} MB/s read)" >&2

    write_card "$WORK/art" "$LOOP"
    grep -q '"ok":true' "$WORK/summary.json" || { cat "$WORK/summary.json" >&2; exit 1; }
    PROBE_S=$(sed -n 's/.*"event":"phase-finished","phase":"probe","seconds":\([0-9.e+-]*\).*/\1/p' \
        "$WORK/summary.json")
    [ -n "$PROBE_S" ] || { echo "no probe phase in the flash's events" >&2; exit 1; }
    PROBE_S=$(awk -v s="$PROBE_S" 'BEGIN { printf "%.2f", s }')
    WRITTEN=$(cat "$WORK/written")
    PROBES=$(awk -v w="$WRITTEN" -v i="$IMAGE_BYTES" \
        'BEGIN { n = (w - i) / 8192; if (n == int(n)) print n; else print "?" }')
    # What the card alone needs for them: each block read twice and written twice.
    OWN=$(awk -v n="$PROBES" -v wr="$WRITE_MBPS" -v rr="$READ_MBPS" \
        'BEGIN { if (n == "?") print "?"; else printf "%.2f", n * 8192 * (1 / (wr * 1e6) + 1 / (rr * 1e6)) }')
    printf '| probe: counterfeit-card probe on an honest throttled card (FUSE, %s MB/s write, %s MB/s read), %s GiB claim; ref the card'"'"'s own time for a full flash + read-back of 1 GiB | %s s (%s blocks of 4 KiB; the card alone: %s s) | %s s | %s | <= 5 s, a few seconds |\n' \
        "$WRITE_MBPS" "$READ_MBPS" "$GIB" "$PROBE_S" "$PROBES" "$OWN" "$REF" "$(ratio "$PROBE_S" "$REF")"
    detach
done
