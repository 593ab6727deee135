# shellcheck shell=bash
# Helpers shared by bench/flash.sh and bench/card.sh (sourced, not run).
# measure and json need $WORK; row is each script's own (its size unit differs).

# Builds metis-flash and bench/artifact in release; sets FLASH and GEN.
# $BENCH_FLASH names another metis-flash built with dev-write to measure instead
# (bench/release.sh: the static musl release build).
bench_build() {
    echo "building metis-flash and bench/artifact (release)..." >&2
    if [ -n "${BENCH_FLASH:-}" ]; then
        FLASH=$BENCH_FLASH
    else
        FLASH=$(cargo build --release --quiet -p metis-flash --features dev-write --manifest-path "$ROOT/Cargo.toml" \
                  --message-format=json 2>/dev/null |
                grep -o '"executable":"[^"]*/metis-flash"' | tail -1 | cut -d'"' -f4)
    fi
    GEN=$(cargo build --release --quiet --manifest-path "$ROOT/bench/artifact/Cargo.toml" \
            --message-format=json 2>/dev/null |
          grep -o '"executable":"[^"]*metis-bench-artifact"' | tail -1 | cut -d'"' -f4)
    if [ ! -x "$FLASH" ] || [ ! -x "$GEN" ]; then echo "build failed" >&2; exit 1; fi
}

# measure CMD...: runs CMD under /usr/bin/time; sets SECONDS_TAKEN, RSS_KB, CPU_SECONDS.
# shellcheck disable=SC2034 # the results are for the sourcing script
measure() {
    local times=$WORK/time.txt
    /usr/bin/time -v -o "$times" "$@"
    SECONDS_TAKEN=$(awk -F': ' '/Elapsed \(wall clock\)/ {
        n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s }' "$times")
    RSS_KB=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$times")
    CPU_SECONDS=$(awk -F': ' '/(User|System) time \(seconds\)/ {s += $2} END {printf "%.2f", s}' "$times")
}

# median: the median of the numbers on stdin, one a line.
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

mib_s() { awk -v b="$1" -v s="$2" 'BEGIN { if (s < 0.005) s = 0.005; printf "%.0f", b / s / 1048576 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2fx", a / b }'; }

# json FIELD: a number from the last write_card's summary (`--json` prints the
# engine's events one a line, the summary last).
json() { tail -n 1 "$WORK/summary.json" | sed -n "s/.*\"$1\":\([0-9.e+-]*\).*/\1/p"; }

# write_card ART DEV [ARGS...]: `metis-flash write` of the artifact directory ART
# (bench/artifact's base.zst, node.json, node.patch, slot) and the bundle ART/bundle
# onto DEV, under measure, its JSON summary in $WORK/summary.json.
write_card() {
    local art=$1 dev=$2
    shift 2
    measure sh -c '"$@" > "$0"' "$WORK/summary.json" "$FLASH" write --base "$art/base.zst" \
        --table "$art/node.json" --patch "$art/node.patch" --slot-offset "$(cat "$art/slot")" \
        --slot-file "$art/bundle" --device "$dev" --yes --force-non-removable --json "$@"
}

# bench_inventory DIR FILL_MIB [SIZE_MIB]: the example inventory copied to DIR
# with golden stand-ins of a real size (tests/golden/gen.sh --fill, each root
# holding FILL_MIB of incompressible data; --size SIZE_MIB per image), each class
# re-pinned to its new golden's digest. Needs the repository root as $PWD.
bench_inventory() {
    local dir=$1 fill=$2 size=${3:-} sha img c
    cp -r inventory "$dir"
    rm -rf "$dir/golden"
    tests/golden/gen.sh --fill "$fill" ${size:+--size "$size"} "$dir/golden" >/dev/null
    while read -r sha img; do
        for c in "$dir"/classes/*.yaml; do
            if grep -q "path: golden/$img\$" "$c"; then
                sed -i "s/^\(  sha256:\) .*/\1 $sha/" "$c"
            fi
        done
    done <"$dir/golden/SHA256SUMS"
    # A checkout's golden images are older than the build; the builder keeps a
    # verified-digest stamp only for files that have settled for 2 s.
    sleep 2
}

# throttled_card BYTES: flasher/tests/fakecard.py serving $WORK/mnt/card (BYTES,
# sparse) at ${WRITE_MBPS} MB/s written and ${READ_MBPS} MB/s read, one request
# at a time, with a loop device on top; sets DAEMON and LOOP. card_cleanup
# (called from the script's EXIT trap) detaches and unmounts.
throttled_card() {
    mkdir -p "$WORK/mnt"
    /usr/bin/python3 "$ROOT/flasher/tests/fakecard.py" "$WORK/mnt" --size "$1" --sparse \
        --write-mbps "$WRITE_MBPS" --read-mbps "$READ_MBPS" &
    DAEMON=$!
    for _ in $(seq 100); do [ -e "$WORK/mnt/card" ] && break; sleep 0.1; done
    [ -e "$WORK/mnt/card" ] || { echo "fakecard.py did not mount" >&2; exit 1; }
    LOOP=$(losetup -f --show "$WORK/mnt/card")
    echo "throttled card: $LOOP over FUSE (${WRITE_MBPS} MB/s write, ${READ_MBPS} MB/s read)" >&2
}
card_cleanup() {
    if [ -n "${LOOP:-}" ]; then losetup -d "$LOOP" 2>/dev/null || :; fi
    if mountpoint -q "$WORK/mnt" 2>/dev/null; then fusermount -u "$WORK/mnt" || :; fi
    if [ -n "${DAEMON:-}" ]; then kill "$DAEMON" 2>/dev/null || :; wait "$DAEMON" 2>/dev/null || :; fi
}
