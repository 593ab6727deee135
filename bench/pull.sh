#!/usr/bin/env bash
# Pull of a large node artifact from a loopback registry (docker-registry with
# TLS + htpasswd): metis-flash pull vs skopeo copy docker:// → oci:, in the
# same run, plus metis-flash's peak RSS. Prints markdown table rows only
# (bench/run collects them).
#
#   bench/pull.sh                      # 2 GiB, release build
#   METIS_BENCH_PULL_SIZE=256M METIS_BENCH_PROFILE=dev bench/pull.sh
#
# Needs: docker-registry, skopeo, openssl, htpasswd, /usr/bin/time. Uses
# ~4x SIZE of disk under $TMPDIR. Talks only to 127.0.0.1.
set -euo pipefail

size=${METIS_BENCH_PULL_SIZE:-2G}
profile=${METIS_BENCH_PROFILE:-release}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/metis-bench-pull.XXXXXX")
reg_pid=
cleanup() {
    # `wait` returns the killed registry's status; under set -e that ended the
    # trap before the rm (8 GiB left behind per run) and failed the script.
    if [[ -n $reg_pid ]]; then
        kill "$reg_pid" 2>/dev/null || :
        wait "$reg_pid" 2>/dev/null || :
    fi
    rm -rf "$work"
}
trap cleanup EXIT

cd "$root"
if [[ $profile == release ]]; then
    cargo build --quiet --release -p metis-flash -p metis-build
else
    cargo build --quiet -p metis-flash -p metis-build
fi
bin=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/$([[ $profile == release ]] && echo release || echo debug)
[[ -x $bin/metis-flash ]] || { echo "no $bin/metis-flash" >&2; exit 1; }

# Registry with a CA made here, htpasswd auth, storage in $work.
mkdir -p "$work/certs" "$work/storage"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=bench CA" \
    -keyout "$work/ca.key" -out "$work/certs/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 \
    -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$work/server.ext"
openssl x509 -req -in "$work/server.csr" -CA "$work/certs/ca.crt" -CAkey "$work/ca.key" \
    -CAcreateserial -days 1 -extfile "$work/server.ext" -out "$work/server.crt" 2>/dev/null
user=bench password=bench-password
htpasswd -Bbn "$user" "$password" >"$work/htpasswd"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/config.yml" <<YML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/storage
http:
  addr: 127.0.0.1:$port
  tls:
    certificate: $work/server.crt
    key: $work/server.key
auth:
  htpasswd:
    realm: bench
    path: $work/htpasswd
YML
docker-registry serve "$work/config.yml" >"$work/registry.log" 2>&1 &
reg_pid=$!
for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
    sleep 0.1
done

# A random-ish (incompressible) blob as the class base.
head -c "$size" /dev/zero | openssl enc -aes-128-ctr -pass pass:metis -nosalt -pbkdf2 >"$work/base" 2>/dev/null
echo '{"node":"bench-node","class":"bench"}' >"$work/config.json"
export METIS_REGISTRY_USERNAME=$user METIS_REGISTRY_PASSWORD=$password
p0=$(date +%s.%N)
/usr/bin/time -v -o "$work/push-time.txt" "$bin/metis-build" push-artifact --registry "127.0.0.1:$port" --repository metis/nodes/bench-node \
    --tag 1 --tag latest --config "$work/config.json" \
    --layer "application/vnd.metis.base.v1.zstd-seekable=$work/base" \
    --ca-file "$work/certs/ca.crt" >/dev/null 2>"$work/push.log"
p1=$(date +%s.%N)

now() { date +%s.%N; }

t0=$(now)
/usr/bin/time -v -o "$work/time.txt" "$bin/metis-flash" pull bench-node \
    --registry "127.0.0.1:$port/metis" --ca-file "$work/certs/ca.crt" \
    --cache "$work/cache" --inventory "$work/none" 2>"$work/metis.log"
t1=$(now)
skopeo copy --quiet --src-cert-dir "$work/certs" --src-creds "$user:$password" \
    "docker://127.0.0.1:$port/metis/nodes/bench-node:latest" "oci:$work/skopeo:bench" >/dev/null
t2=$(now)

# Both must hold the same bytes.
digest=$(sha256sum "$work/base" | cut -d' ' -f1)
cmp -s "$work/base" "$work/cache/blobs/sha256/$digest" || { echo "metis cache differs" >&2; exit 1; }
cmp -s "$work/base" "$work/skopeo/blobs/sha256/$digest" || { echo "skopeo copy differs" >&2; exit 1; }

rss_kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
label=$(numfmt --to=iec-i --suffix=B "$(stat -c %s "$work/base")" | sed 's/\([0-9.]*\)\(.*\)B/\1 \2B/')
awk -v m="$(echo "$t1 - $t0" | bc)" -v s="$(echo "$t2 - $t1" | bc)" -v l="$label" -v p="$profile" \
    'BEGIN { printf "| pull %s (%s build) | metis %.1fs | skopeo %.1fs | %.2fx | goal ≥ 1.0× |\n", l, p, m, s, s / m }'
awk -v r="$rss_kib" -v l="$label" \
    'BEGIN { printf "| metis-flash peak RSS, pull %s | %.0f MiB | | | <= 64 MiB |\n", l, r / 1024 }'
push_rss_kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/push-time.txt")
awk -v r="$push_rss_kib" -v t="$(echo "$p1 - $p0" | bc)" -v l="$label" \
    'BEGIN { printf "| metis-build push-artifact %s (hash + streaming upload) | %.1fs, peak RSS %.0f MiB | | | <= 64 MiB |\n", l, t, r / 1024 }'
