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
