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
#    marker, alternating, medians compared (goal <= 1.02x). The window is the
#    release binary above in the real window under Xvfb, drawn by Mesa's
#    software OpenGL (the costliest way a laptop draws), driven with xdotool by
#    the keyboard as an operator can: the node's name and Enter; Tab and Enter
#    for the card; the name and Enter again. Its time is what the window spends
#    working — from the first Enter to the "verified" line it logs, plus from
#    the last Enter to its "insert and power on" line — without the pauses the
#    script takes between keys; the CLI's is its whole run (start-up and the lab
#    index included, which the window did before). The CLI is the release build
#    of the same commit.
if [ "$(id -u)" != 0 ] || ! /usr/bin/python3 -c 'import fusepy' 2>/dev/null || ! command -v xdotool >/dev/null; then
    echo "gui.sh: the window-vs-CLI flash needs root, python3-fusepy and xdotool: no row" >&2
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
cargo build --release --quiet -p metis-flash -p metis-build
CLI=$ROOT/target/release/metis-flash

echo "publishing titan-db with a 512 MiB card image..." >&2
bench_inventory "$WORK/inventory" 320 512 # gen.sh: root = 64 + fill * 17/16 within 512 - 82
COSIGN_PASSWORD=demo METIS_AGE_IDENTITY="$(cat inventory/demo-keys/builder.agekey)" \
    target/release/metis-build publish titan-db --inventory "$WORK/inventory" --registry "oci:$WORK/reg" \
    --key inventory/demo-keys/cosign.key --work-dir "$WORK/work" >/dev/null 2>"$WORK/publish.log" ||
    { cat "$WORK/publish.log" >&2; exit 1; }
rm -rf "$WORK/work" "$WORK/inventory/golden"
throttled_card $(((512 + 64) << 20))
# The window's Tab lands on the first disk it offers: this card must be the only
# one, or the keys would choose another machine's loop device.
if [ "$(losetup -a | wc -l)" != 1 ]; then
    echo "gui.sh: other loop devices are attached (losetup -a): no window-vs-CLI row" >&2
    exit 0
fi

# The window's laptop, set up as an operator does (the lab profile, the demo key).
/usr/bin/python3 - "$WORK/reg" inventory/demo-keys/cosign.pub >"$WORK/lab.metis" <<'PY'
import json, sys
print(json.dumps({"format": "metis-lab-profile/v1", "lab": "bench.lab",
                  "registry": "oci:" + sys.argv[1], "prefix": "metis",
                  "public_keys": [open(sys.argv[2]).read()]}))
PY
FINGERPRINT=de61bbfc11e58cefda6a136ab7e09d39c78b9048657d972b7ba5b10ba86fa1bc # the DEMO key
XDG_CONFIG_HOME=$WORK/gui-config METIS_CACHE=$WORK/gui-cache "$CLI" setup "$WORK/lab.metis" --yes \
    --expect-fingerprint "$FINGERPRINT" --identity inventory/demo-keys/operator.agekey >/dev/null 2>&1

# A card with no Metis marker before every run: both write it in full.
foreign() { head -c 4096 /dev/urandom | dd of="$LOOP" bs=4096 oflag=direct conv=fsync status=none; }
cli_run() {
    foreign
    measure env XDG_CONFIG_HOME="$WORK/cli-config" METIS_CACHE="$WORK/cli-cache" "$CLI" flash titan-db \
        --device "$LOOP" --yes --force-non-removable --quiet --registry "oci:$WORK/reg" \
        --trust-key inventory/demo-keys/cosign.pub --identity inventory/demo-keys/operator.agekey
}
now() { date +%s.%N; }
# until_logged TEXT: waits for the window's log line holding TEXT; prints the time seen.
until_logged() {
    local i
    for i in $(seq 6000); do
        if grep -q "$1" "$WORK/window.log"; then now; return; fi
        if grep -q "failed" "$WORK/window.log" || ! kill -0 "$APP" 2>/dev/null; then break; fi
        [ "$i" != 6000 ] && sleep 0.05
    done
    echo "the window did not log \"$1\":" >&2
    cat "$WORK/window.log" >&2
    exit 1
}
keys() { DISPLAY=$DISPLAY_NUM xdotool "$@"; }
gui_run() {
    local t0 t1 t2 t3 c0
    foreign
    DISPLAY=$DISPLAY_NUM XDG_CONFIG_HOME=$WORK/gui-config METIS_CACHE=$WORK/gui-cache \
        LIBGL_ALWAYS_SOFTWARE=1 "$GUI" --force-non-removable >"$WORK/window.log" 2>&1 &
    APP=$!
    for _ in $(seq 200); do
        WID=$(keys search --name '^Metis flasher$' 2>/dev/null | head -1) && [ -n "$WID" ] && break
        sleep 0.1
    done
    [ -n "$WID" ] || { echo "no window" >&2; cat "$WORK/window.log" >&2; exit 1; }
    until_logged "lab index" >/dev/null
    sleep 0.5 # the node list drawn
    keys windowfocus --sync "$WID"
    keys mousemove --sync 400 71 click 1 # the search box (the node list's layout)
    keys type --delay 10 titan-db
    sleep 0.3
    c0=$(ticks "$APP")
    t0=$(now)
    keys key Return
    t1=$(until_logged "verified")
    until_logged "$LOOP offered" >/dev/null # the disks checked against the image's size
    sleep 0.3
    keys key Tab key Return key Return # the only disk offered, chosen; on to the confirmation
    sleep 0.5
    keys type --delay 10 titan-db
    sleep 0.3
    t2=$(now)
    keys key Return
    t3=$(until_logged "insert and power on")
    GUI_CPU=$(awk -v a="$c0" -v b="$(ticks "$APP")" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", (b - a) / hz }')
    grep -q "written to $LOOP " "$WORK/window.log" ||
        { echo "the window wrote something else:" >&2; cat "$WORK/window.log" >&2; exit 1; }
    kill "$APP"; wait "$APP" 2>/dev/null || :; APP=''
    GUI_SECONDS=$(echo "$t1 - $t0 + $t3 - $t2" | bc)
}
# The first runs fill each laptop's cache.
cli_run
gui_run
C=''
G=''
CC=''
GC=''
for _ in $(seq "${BENCH_RUNS:-3}"); do
    cli_run; C="$C $SECONDS_TAKEN"; CC="$CC $CPU_SECONDS"
    gui_run; G="$G $GUI_SECONDS"; GC="$GC $GUI_CPU"
    echo "cli $SECONDS_TAKEN s ($CPU_SECONDS s CPU), window $GUI_SECONDS s ($GUI_CPU s CPU)" >&2
done
CS=$(echo "$C" | tr ' ' '\n' | sed '/^$/d' | median)
GS=$(echo "$G" | tr ' ' '\n' | sed '/^$/d' | median)
CCS=$(echo "$CC" | tr ' ' '\n' | sed '/^$/d' | median)
GCS=$(echo "$GC" | tr ' ' '\n' | sed '/^$/d' | median)
row "gui: flash from the real window (release build, Xvfb + Mesa llvmpipe, keyboard-driven), verify + write + read-back of a 512 MiB image on the throttled card, median of ${BENCH_RUNS:-3}; ref metis-flash NODE --device, same card" \
    "$(printf '%.2f' "$GS") s (CPU ${GCS} s)" "${CS} s (CPU ${CCS} s)" "$(ratio "$GS" "$CS")" "<= 1.02x"
