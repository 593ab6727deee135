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
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done

# Push: one incompressible blob of SIZE with `metis-build push-artifact`
# (hash + streaming upload), for its time and peak RSS.
head -c "$size" /dev/zero | openssl enc -aes-128-ctr -pass pass:metis -nosalt -pbkdf2 >"$work/base" 2>/dev/null
echo '{"node":"bench-node","class":"bench"}' >"$work/config.json"
export METIS_REGISTRY_USERNAME=$user METIS_REGISTRY_PASSWORD=$password
p0=$(date +%s.%N)
/usr/bin/time -v -o "$work/push-time.txt" "$bin/metis-build" push-artifact --registry "127.0.0.1:$port" --repository bench/push \
    --tag latest --config "$work/config.json" \
    --layer "application/vnd.metis.base.v1.zstd-seekable=$work/base" \
    --ca-file "$work/certs/ca.crt" >/dev/null 2>"$work/push.log"
p1=$(date +%s.%N)
rm -f "$work/base"

# Pull: a real, signed node artifact. The example lab is published into the
# registry with golden stand-ins holding SIZE of incompressible data, as CI
# would; the flasher verifies the signature (demo key), the index and every
# digest, as an operator's pull does.
fill=$(numfmt --from=iec "$size")
fill=$((fill >> 20))
# shellcheck source=bench/lib.bash
. bench/lib.bash
bench_inventory "$work/inventory" "$fill"
node=titan-db
COSIGN_PASSWORD=demo METIS_AGE_IDENTITY="$(cat inventory/demo-keys/builder.agekey)" \
    "$bin/metis-build" publish "$node" --inventory "$work/inventory" --registry "127.0.0.1:$port/metis" \
    --ca-file "$work/certs/ca.crt" --key inventory/demo-keys/cosign.key --work-dir "$work/work" \
    >/dev/null 2>"$work/publish.log" || { cat "$work/publish.log" >&2; exit 1; }
rm -rf "$work/work" "$work/inventory/golden"

now() { date +%s.%N; }

t0=$(now)
HOME=$work/home XDG_CONFIG_HOME=$work/home/.config /usr/bin/time -v -o "$work/time.txt" \
    "$bin/metis-flash" pull "$node" \
    --registry "127.0.0.1:$port/metis" --ca-file "$work/certs/ca.crt" \
    --trust-key inventory/demo-keys/cosign.pub --cache "$work/cache" 2>"$work/metis.log" ||
    { cat "$work/metis.log" >&2; exit 1; }
t1=$(now)
skopeo copy --quiet --src-cert-dir "$work/certs" --src-creds "$user:$password" \
    "docker://127.0.0.1:$port/metis/nodes/$node:latest" "oci:$work/skopeo:bench" >/dev/null
t2=$(now)

# Both must hold the same bytes: every blob skopeo copied is in metis's cache.
bytes=0
for blob in "$work"/skopeo/blobs/sha256/*; do
    cmp -s "$blob" "$work/cache/blobs/sha256/$(basename "$blob")" ||
        { echo "metis cache lacks or differs in $(basename "$blob")" >&2; exit 1; }
    bytes=$((bytes + $(stat -c %s "$blob")))
done

rss_kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
label=$(numfmt --to=iec-i --suffix=B "$bytes" | sed 's/\([0-9.]*\)\(.*\)B/\1 \2B/')
push_label=$(numfmt --to=iec-i --suffix=B "$(numfmt --from=iec "$size")" | sed 's/\([0-9.]*\)\(.*\)B/\1 \2B/')
awk -v m="$(echo "$t1 - $t0" | bc)" -v s="$(echo "$t2 - $t1" | bc)" -v l="$label" -v p="$profile" \
    'BEGIN { printf "| pull: a signed node artifact, %s (%s build; signature, index, digests verified); ref skopeo copy docker:// to oci: | %.1f s | %.1f s | %.2fx | <= 1.0x |\n", l, p, m, s, m / s }'
awk -v r="$rss_kib" -v l="$label" \
    'BEGIN { printf "| pull: metis-flash peak RSS, %s; ref the goal | %.0f MiB | 64 MiB | %.2fx | <= 64 MiB |\n", l, r / 1024, r / 65536 }'
push_rss_kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/push-time.txt")
awk -v r="$push_rss_kib" -v t="$(echo "$p1 - $p0" | bc)" -v l="$push_label" \
    'BEGIN { printf "| pull: metis-build push-artifact %s (hash + streaming upload) peak RSS; ref the goal | %.0f MiB (%.1f s) | 64 MiB | %.2fx | <= 64 MiB |\n", l, r / 1024, t, r / 65536 }'
