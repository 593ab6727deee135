#!/bin/bash
# The GitOps pipeline on the example lab (21 nodes, 6 classes, 3 golden layouts):
# metis-build publish (class bases once, a node patch per node) against the naive
# way (a full compressed image per node, uploaded per node), both into an OCI
# image-layout directory; and a one-node change against the full build.
# Prints markdown rows for bench/run: | benchmark | metis | reference | ratio | goal |
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

cargo build --release --quiet -p metis-build
bin=target/release/metis-build
work="$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/metis-bench-publish.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# Golden stand-ins of a real size: each root holds BENCH_PUBLISH_FILL_MIB
# (default 256 MiB per GiB of BENCH_SIZE_GIB) of incompressible data; the
# copied classes are re-pinned to their digests.
fill="${BENCH_PUBLISH_FILL_MIB:-$(( ${BENCH_SIZE_GIB:-4} * 256 ))}"
# shellcheck source=bench/lib.bash
. bench/lib.bash
bench_inventory "$work/inventory" "$fill"
golden_mib=$(du -m --apparent-size -c "$work"/inventory/golden/*.img | tail -1 | cut -f1)
export COSIGN_PASSWORD=demo
METIS_AGE_IDENTITY="$(cat inventory/demo-keys/builder.agekey)"
export METIS_AGE_IDENTITY
pub() {
    "$bin" publish --inventory "$work/inventory" --registry "oci:$work/reg" \
        --key inventory/demo-keys/cosign.key --work-dir "$work/work" --json
}
now() { date +%s.%N; }
# Prints: total bytes uploaded, bytes of class bases, largest node upload.
bytes() { python3 -c 'import json,sys
r = json.load(sys.stdin)
nodes = [n["uploaded_bytes"] for n in r["nodes"]]
print(r["base_bytes_uploaded"] + sum(nodes), r["base_bytes_uploaded"], max(nodes))'; }

t0=$(now); read -r full_bytes base_bytes max_node <<<"$(pub | bytes)"; t1=$(now)
full=$(python3 -c "print(round($t1 - $t0, 2))")
nodes=$(find "$work/inventory/nodes" -name "*.yaml" | wc -l)

# One node's label changes.
sed -i 's#lab.home.arpa/board=rpi4$#lab.home.arpa/board=rpi4b#' "$work/inventory/nodes/titan-13.yaml"
t0=$(now); read -r one_bytes _ _ <<<"$(pub | bytes)"; t1=$(now)
one=$(python3 -c "print(round($t1 - $t0, 2))")

# Naive: every node's full image, compressed, uploaded as its own blob.
t0=$(now); naive_bytes=0
for f in "$work"/inventory/nodes/*.yaml; do
    n=$(basename "$f" .yaml)
    "$bin" render "$n" --inventory "$work/inventory" --image "$work/$n.img" 2>/dev/null
    zstd -q -3 -T0 -f "$work/$n.img" -o "$work/$n.img.zst"
    echo '{"node":"'"$n"'"}' > "$work/$n.json"
    "$bin" push-artifact --registry "oci:$work/naive" --repository "naive/$n" --tag latest \
        --config "$work/$n.json" --layer "application/zstd=$work/$n.img.zst" >/dev/null
    naive_bytes=$((naive_bytes + $(stat -c %s "$work/$n.img.zst")))
    rm -f "$work/$n.img" "$work/$n.img.zst"
done
t1=$(now)
naive=$(python3 -c "print(round($t1 - $t0, 2))")

ratio() { python3 -c "print(f'{$1/$2:.2f}x')"; }
mib() { python3 -c "print(f'{$1/1048576:.1f} MiB')"; }
classes=$(find "$work/inventory/classes" -name "*.yaml" | wc -l)
echo "| publish: full build, $nodes nodes in $classes classes (3 golden images, $golden_mib MiB in all); ref naive: a full image per node, zstd -3, uploaded per node | ${full} s | ${naive} s | $(ratio "$full" "$naive") | (report) |"
echo "| publish: bytes uploaded by the full build; ref the class bases + 1 MiB per node | $(mib "$full_bytes") (bases $(mib "$base_bytes"), largest node $(mib "$max_node")) | $(mib "$((base_bytes + nodes * 1048576))") | $(ratio "$full_bytes" "$((base_bytes + nodes * 1048576))") | <= 1.0x |"
echo "| publish: bytes uploaded, full build; ref naive | $(mib "$full_bytes") | $(mib "$naive_bytes") | $(ratio "$full_bytes" "$naive_bytes") | (report) |"
echo "| publish after a one-node change (label); ref the full build | ${one} s, $(mib "$one_bytes") | ${full} s | $(ratio "$one" "$full") | <= 0.05x |"
