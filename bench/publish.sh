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

cp -r inventory "$work/inventory"
rm -rf "$work/inventory/golden"
tests/golden/gen.sh "$work/inventory/golden" >/dev/null
export COSIGN_PASSWORD=demo
METIS_AGE_IDENTITY="$(cat inventory/demo-keys/builder.agekey)"
export METIS_AGE_IDENTITY
pub() {
    "$bin" publish --inventory "$work/inventory" --registry "oci:$work/reg" \
        --key inventory/demo-keys/cosign.key --work-dir "$work/work" --json
}
now() { date +%s.%N; }
bytes() { python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["base_bytes_uploaded"]+sum(n["uploaded_bytes"] for n in r["nodes"]))'; }

t0=$(now); full_bytes=$(pub | bytes); t1=$(now)
full=$(python3 -c "print(round($t1 - $t0, 2))")
nodes=$(find "$work/inventory/nodes" -name "*.yaml" | wc -l)

# One node's label changes.
sed -i 's#lab.home.arpa/board=rpi4$#lab.home.arpa/board=rpi4b#' "$work/inventory/nodes/titan-13.yaml"
t0=$(now); one_bytes=$(pub | bytes); t1=$(now)
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
echo "| publish $nodes nodes (full build) | ${full}s, $full_bytes B | naive ${naive}s, $naive_bytes B | time $(ratio "$full" "$naive"), bytes $(ratio "$full_bytes" "$naive_bytes") | bytes ≤ bases + 1 MiB/node |"
echo "| publish after a one-node change | ${one}s, $one_bytes B | full build ${full}s | $(ratio "$one" "$full") | ≤ 0.05x |"
