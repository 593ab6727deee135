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
