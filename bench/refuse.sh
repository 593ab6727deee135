#!/usr/bin/env bash
# Refusing a tampered artifact: an `oci:` registry whose titan-13:latest is an
# UNSIGNED manifest naming a real 1 GiB layer (a sparse file of zeros). metis-flash
# must refuse it from the manifest and the (missing) signature alone, before any
# byte of the layer moves: wall time and peak RSS against the issue's goals
# (<= 1 s, <= 32 MiB). The reference is `skopeo copy` of the same artifact out of
# the same layout, which moves the layer as any client without trust-first would.
#
#   bench/refuse.sh            (needs skopeo, /usr/bin/time)
# Prints markdown rows (| benchmark | metis | reference | ratio | goal |) as bench/run expects.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.bash
. "$ROOT/bench/lib.bash"
bench_build

WORK=$(mktemp -d /var/tmp/metis-bench-refuse.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
REG=$WORK/registry
mkdir -p "$REG/blobs/sha256"
printf '{"imageLayoutVersion":"1.0.0"}' > "$REG/oci-layout"

put() { # put FILE: moves FILE into the layout's blobs; prints its digest
    local hex
    hex=$(sha256sum "$1" | cut -d' ' -f1)
    mv "$1" "$REG/blobs/sha256/$hex"
    echo "$hex"
}
truncate -s 1G "$WORK/layer"
LAYER=$(put "$WORK/layer")
printf '{"version":1}' > "$WORK/config"
CONFIG=$(put "$WORK/config")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.metis.node-image.v1","config":{"mediaType":"application/vnd.metis.node.config.v1+json","digest":"sha256:%s","size":13},"layers":[{"mediaType":"application/vnd.metis.base.v1.zstd-seekable","digest":"sha256:%s","size":1073741824}]}' \
    "$CONFIG" "$LAYER" > "$WORK/manifest"
MSIZE=$(stat -c %s "$WORK/manifest")
MANIFEST=$(put "$WORK/manifest")
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"metis/nodes/titan-13:latest"}}]}' \
    "$MANIFEST" "$MSIZE" > "$REG/index.json"

# measure's own status is its bookkeeping's: the flasher's exit code goes to a file.
# shellcheck disable=SC2016 # expanded by the inner sh
measure sh -c '"$@" 2> "$0"; echo $? > "$0.rc"' "$WORK/stderr" \
    env XDG_CONFIG_HOME="$WORK/config-home" METIS_CACHE="$WORK/cache" "$FLASH" titan-13 \
    --output "$WORK/t13.img" --registry "oci:$REG" --trust-key "$ROOT/inventory/demo-keys/cosign.pub" \
    --identity "$ROOT/inventory/demo-keys/operator.agekey" -q
if [ "$(cat "$WORK/stderr.rc")" != 3 ] || ! grep -q "has no signature" "$WORK/stderr"; then
    echo "metis-flash did not refuse the unsigned artifact (exit $(cat "$WORK/stderr.rc")):" >&2
    cat "$WORK/stderr" >&2
    exit 1
fi
METIS_S=$SECONDS_TAKEN; METIS_RSS=$((RSS_KB / 1024))
CACHED=$(du -sb "$WORK/cache" | cut -f1)

measure skopeo copy --quiet "oci:$REG:metis/nodes/titan-13:latest" "dir:$WORK/skopeo"
SKOPEO_S=$SECONDS_TAKEN; SKOPEO_RSS=$((RSS_KB / 1024))

row() { echo "| refuse: $1 (1 GiB layer) | $2 | $3 | $4 | $5 |"; }
row "unsigned artifact refused before its layer moves, wall; ref skopeo copy of it" \
    "${METIS_S} s (${CACHED} B cached)" "${SKOPEO_S} s" "$(ratio "$METIS_S" "$SKOPEO_S")" "<= 1 s"
row "unsigned artifact refused, peak RSS; ref skopeo copy of it" \
    "${METIS_RSS} MiB" "${SKOPEO_RSS} MiB" "$(ratio "$METIS_RSS" "$SKOPEO_RSS")" "<= 32 MiB"
