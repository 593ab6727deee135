#!/usr/bin/env bash
# metis-flash-gui in a real window: its stripped size, and the CPU it uses while
# it waits for the operator (no busy repaint loop), on the first-run screen and
# on the node list of the example lab, under Xvfb with Mesa's software OpenGL.
# A screenshot of each screen goes to $WORK (kept with BENCH_KEEP=1) so a person
# can look at what the real window shows.
#
#   bench/gui.sh
#
# Needs xvfb and x11-apps (xwd), and scripts/example-run's out/ for the node list
# (without it only the first-run screen is measured).
# Prints markdown rows (| benchmark | metis | reference | ratio | goal |) as bench/run expects.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
command -v Xvfb >/dev/null || { echo "Xvfb not found (apt-get install xvfb x11-apps)" >&2; exit 1; }
command -v xwd >/dev/null || { echo "xwd not found (apt-get install x11-apps)" >&2; exit 1; }

echo "building metis-flash-gui (release)..." >&2
GUI=$(cargo build --release --quiet -p metis-flash-gui --manifest-path "$ROOT/Cargo.toml" \
        --message-format=json 2>/dev/null |
      grep -o '"executable":"[^"]*/metis-flash-gui"' | tail -1 | cut -d'"' -f4)
[ -x "$GUI" ] || { echo "build failed" >&2; exit 1; }

WORK=$(mktemp -d /var/tmp/metis-bench-gui.XXXXXX)
XVFB=''
APP=''
cleanup() {
    if [ -n "$APP" ]; then kill "$APP" 2>/dev/null || :; wait "$APP" 2>/dev/null || :; fi
    if [ -n "$XVFB" ]; then kill "$XVFB" 2>/dev/null || :; wait "$XVFB" 2>/dev/null || :; fi
    if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

row() { printf '| %s | %s | %s | %s | %s |\n' "$1" "$2" "$3" "$4" "$5"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2fx", a / b }'; }

strip -o "$WORK/gui.stripped" "$GUI"
SIZE=$(stat -c %s "$WORK/gui.stripped")
row "gui: stripped release binary size (x86_64 Linux, glibc)" \
    "$(awk -v b="$SIZE" 'BEGIN { printf "%.1f MiB", b / 1048576 }')" "16 MiB" \
    "$(ratio "$SIZE" $((16 << 20)))" "<= 16 MiB"

DISPLAY_NUM=:73
Xvfb "$DISPLAY_NUM" -screen 0 1280x900x24 -nolisten tcp >/dev/null 2>&1 &
XVFB=$!
for _ in $(seq 50); do [ -e /tmp/.X11-unix/X${DISPLAY_NUM#:} ] && break; sleep 0.1; done

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# idle NAME CONFIG_DIR: starts the GUI, lets it settle, measures 10 s of waiting.
idle() {
    local name=$1 config=$2 t0 t1 hz
    DISPLAY=$DISPLAY_NUM XDG_CONFIG_HOME=$config METIS_CACHE=$WORK/cache-$name \
        LIBGL_ALWAYS_SOFTWARE=1 "$GUI" >"$WORK/$name.log" 2>&1 &
    APP=$!
    sleep 8
    kill -0 "$APP" 2>/dev/null || { echo "the GUI exited:" >&2; cat "$WORK/$name.log" >&2; exit 1; }
    xwd -root -display "$DISPLAY_NUM" -out "$WORK/$name.xwd"
    t0=$(ticks "$APP")
    sleep 10
    t1=$(ticks "$APP")
    hz=$(getconf CLK_TCK)
    kill "$APP"; wait "$APP" 2>/dev/null || :; APP=''
    IDLE_PCT=$(awk -v a="$t0" -v b="$t1" -v hz="$hz" 'BEGIN { printf "%.1f", 100 * (b - a) / hz / 10 }')
}

mkdir -p "$WORK/empty-config"
idle first-run "$WORK/empty-config"
row "gui: CPU while waiting on the first-run screen, 10 s in a real window (Xvfb, Mesa llvmpipe); ref one core" \
    "${IDLE_PCT}%" "100%" "$(awk -v p="$IDLE_PCT" 'BEGIN { printf "%.3fx", p / 100 }')" "near zero (<= 1%)"
if [ -f "$ROOT/out/operator-config/metis/settings.json" ]; then
    idle nodes "$ROOT/out/operator-config"
    row "gui: CPU while waiting on the node list (example lab), 10 s in a real window; ref one core" \
        "${IDLE_PCT}%" "100%" "$(awk -v p="$IDLE_PCT" 'BEGIN { printf "%.3fx", p / 100 }')" "near zero (<= 1%)"
fi

# 2. Flashing from the window against the CLI, on the throttled card of
#    bench/card.sh (FUSE + loop, 40 MB/s write, 80 MB/s read): titan-db (a
#    512 MiB card image) from an `oci:` registry onto a card with no Metis
#    marker, alternating, medians compared (goal <= 1.02x). The window is driven
#    by its flow test (egui_kittest, the real engine, a frame drawn with software
#    wgpu every 100 ms as a real window repaints on progress); its time runs from
#    "Next: choose the card" (the cached artifact's verification) to the done
#    screen; the CLI's is its whole run. Both are built from this commit with the
#    same release settings (no LTO, so the test harness can link).
if [ "$(id -u)" != 0 ] || ! /usr/bin/python3 -c 'import fusepy' 2>/dev/null; then
    echo "gui.sh: the window-vs-CLI flash needs root and python3-fusepy: no row" >&2
    exit 0
fi
cd "$ROOT"
# shellcheck source=bench/lib.bash
. bench/lib.bash
# shellcheck disable=SC2034 # read by throttled_card and card_cleanup (bench/lib.bash)
WRITE_MBPS=${CARD_WRITE_MBPS:-40}
# shellcheck disable=SC2034
READ_MBPS=${CARD_READ_MBPS:-80}
LOOP=''
# shellcheck disable=SC2034
DAEMON=''
trap 'card_cleanup; cleanup' EXIT
echo "building the window's flow test and metis-flash with the same release settings..." >&2
same_build() { # PATTERN CARGO_ARGS...: the built executable whose path matches PATTERN
    local pattern=$1
    shift
    CARGO_TARGET_DIR=$ROOT/target/bench-gui CARGO_PROFILE_RELEASE_LTO=off \
        CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_PANIC=unwind \
        cargo "$@" --release --message-format=json 2>/dev/null | grep -o '"executable":"[^"]*"' |
        cut -d'"' -f4 | grep -- "$pattern" | tail -1
}
FLOW=$(same_build '/deps/flow-' test --no-run -p metis-flash-gui --test flow)
CLI=$(same_build '/metis-flash$' build -p metis-flash)
[ -x "$FLOW" ] && [ -x "$CLI" ] || { echo "build failed" >&2; exit 1; }
cargo build --release --quiet -p metis-build

echo "publishing titan-db with a 512 MiB card image..." >&2
bench_inventory "$WORK/inventory" 320 512 # gen.sh: root = 64 + fill * 17/16 within 512 - 82
COSIGN_PASSWORD=demo METIS_AGE_IDENTITY="$(cat inventory/demo-keys/builder.agekey)" \
    target/release/metis-build publish titan-db --inventory "$WORK/inventory" --registry "oci:$WORK/reg" \
    --key inventory/demo-keys/cosign.key --work-dir "$WORK/work" >/dev/null 2>"$WORK/publish.log" ||
    { cat "$WORK/publish.log" >&2; exit 1; }
rm -rf "$WORK/work" "$WORK/inventory/golden"
throttled_card $(((512 + 64) << 20))

# A card with no Metis marker before every run: both write it in full.
foreign() { head -c 4096 /dev/urandom | dd of="$LOOP" bs=4096 oflag=direct conv=fsync status=none; }
cli_run() {
    foreign
    measure env XDG_CONFIG_HOME="$WORK/cli-config" METIS_CACHE="$WORK/cli-cache" "$CLI" flash titan-db \
        --device "$LOOP" --yes --force-non-removable --quiet --registry "oci:$WORK/reg" \
        --trust-key inventory/demo-keys/cosign.pub --identity inventory/demo-keys/operator.agekey
}
gui_run() {
    foreign
    METIS_BENCH_REGISTRY=$WORK/reg METIS_BENCH_NODE=titan-db METIS_BENCH_DEVICE=$LOOP \
        METIS_BENCH_LAPTOP=$WORK/laptop "$FLOW" --ignored --exact bench_window_flashes_a_disk --nocapture \
        >"$WORK/flow.log" 2>&1 || { cat "$WORK/flow.log" >&2; exit 1; }
    GUI_SECONDS=$(sed -n 's/^gui_seconds //p' "$WORK/flow.log")
}
# The first runs fill each laptop's cache (and set the window's laptop up).
cli_run
gui_run
C=''
G=''
for _ in $(seq "${BENCH_RUNS:-3}"); do
    cli_run; C="$C $SECONDS_TAKEN"
    gui_run; G="$G $GUI_SECONDS"
done
CS=$(echo "$C" | tr ' ' '\n' | sed '/^$/d' | median)
GS=$(echo "$G" | tr ' ' '\n' | sed '/^$/d' | median)
row "gui: flash from the window (egui_kittest-driven, frames drawn), verify + write + read-back of a 512 MiB image on the throttled card, median of ${BENCH_RUNS:-3}; ref metis-flash NODE --device, same card, same build settings" \
    "${GS} s" "${CS} s" "$(ratio "$GS" "$CS")" "<= 1.02x"
