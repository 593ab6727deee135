#!/bin/bash
# Personalising one node: metis (copy-on-write overlay, fatfs, debugfs on a
# metadata-only copy of the root) against the naive way (full copy of the
# golden image, loop-mount, copy the seed in, write machine-id, unmount).
#
# Golden stand-in (tests/golden/gen.sh --fill --size): BENCH_SIZE_GIB (default
# 4) GiB MBR card, 64 MiB FAT32 `system-boot`, the rest ext4 `writable` holding
# BENCH_DATA_MIB (default 1024) MiB of incompressible data. Both sides run with a cold page cache when the
# script may drop it (root), warm otherwise.
#
# Prints markdown rows for bench/run: | benchmark | metis | reference | ratio | goal |
# The naive reference needs root (losetup, mount); without it the reference is
# the full copy alone, which is a lower bound on the naive cost.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

size_gib="${BENCH_SIZE_GIB:-4}"
# Data must fit the ext4 root: at most a quarter of the image unless set explicitly.
data_mib="${BENCH_DATA_MIB:-$(( size_gib * 256 < 1024 ? size_gib * 256 : 1024 ))}"
work="$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/metis-bench-personalise.XXXXXX")"
loopdev=""
cleanup() {
    if mountpoint -q "$work/mnt" 2>/dev/null; then umount "$work/mnt" || :; fi
    if [ -n "$loopdev" ]; then losetup -d "$loopdev" 2>/dev/null || :; fi
    rm -rf "$work"
}
trap cleanup EXIT

[ -x /usr/bin/time ] || apt-get install -y time >&2

bin="$(cargo build --release -p metis-core --example personalise --message-format=json |
    sed -n 's/.*"executable":"\([^"]*examples\/personalise\)".*/\1/p' | tail -1)"
[ -x "$bin" ] || { echo "personalise example did not build" >&2; exit 1; }

# --- golden stand-in ---------------------------------------------------------
# The project's generator: the Ubuntu-for-Raspberry-Pi stand-in (64 MiB FAT32
# `system-boot` at 1 MiB, ext4 `writable` after it) grown to the card size, its
# root holding data_mib MiB of incompressible, reproducible data.
boot_mib=64
tests/golden/gen.sh --fill "$data_mib" --size $((size_gib * 1024)) "$work/gen" >/dev/null
golden="$work/golden.img"
mv "$work/gen/rpi-ubuntu.img" "$golden"
rm -rf "$work/gen"
sha="$(sha256sum "$golden" | cut -d' ' -f1)"

cold() {
    sync
    if [ -w /proc/sys/vm/drop_caches ]; then echo 3 >/proc/sys/vm/drop_caches; fi
}
field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" "$2"; }
rss_kib() { sed -n 's/.*Maximum resident set size (kbytes): //p' "$1"; }
wall() { sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$1" |
    awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s }'; }

# --- metis: full personalised image written (sparse) --------------------------
cold
/usr/bin/time -v -o "$work/metis.time" "$bin" "$golden" system-boot writable \
    "$work/node.img" "$sha" >"$work/metis.out"
metis_s="$(wall "$work/metis.time")"
metis_rss="$(rss_kib "$work/metis.time")"
metis_verify_s="$(field verify_s "$work/metis.out")"
metis_personalise_s="$(field personalise_s "$work/metis.out")"
changed="$(field changed_bytes "$work/metis.out")"
e2fsck -fn "$work/node.img?offset=$(((boot_mib + 1) * 1048576))" >/dev/null 2>&1 ||
    e2fsck_note=" (e2fsck on the output FAILED)"
rm -f "$work/node.img"

# --- metis: node patch only (what CI uploads), no image written ---------------
cold
/usr/bin/time -v -o "$work/patch.time" "$bin" "$golden" system-boot writable - "$sha" \
    >"$work/patch.out"
patch_s="$(wall "$work/patch.time")"
patch_rss="$(rss_kib "$work/patch.time")"
patch_verify_s="$(field verify_s "$work/patch.out")"
second_s="$(field second_personalise_s "$work/patch.out")"
second_read="$(field rchar_second "$work/patch.out")"
patch_read="$(field rchar_personalise "$work/patch.out")"

# --- naive: full copy + loop mount + copy in -----------------------------------
printf '#cloud-config\nhostname: titan-db\n' >"$work/user-data"
printf 'instance-id: titan-db-bench\n' >"$work/meta-data"
cold
naive_mode="cp --sparse=never + losetup + mount + copy-in"
start=$(date +%s.%N)
/usr/bin/time -v -o "$work/naive.time" bash -c '
    set -e
    cp --sparse=never "$1" "$2/naive.img"
    grep rchar /proc/$$/io >"$2/naive.io"
' _ "$golden" "$work"
naive_read="$(awk '{print $2}' "$work/naive.io")" # the full copy's bytes read
naive_rss="$(rss_kib "$work/naive.time")"
# Partition loop devices by offset: containers often lack udev for loopNpM nodes.
boot_off=1048576
root_off=$(((boot_mib + 1) * 1048576))
if [ "$(id -u)" = 0 ] && loopdev="$(losetup -f --show -o "$boot_off" --sizelimit $((boot_mib * 1048576)) "$work/naive.img" 2>/dev/null)"; then
    mkdir -p "$work/mnt"
    head -c 65536 /dev/zero >"$work/metis-secrets.bin"
    if mount -t vfat "$loopdev" "$work/mnt" 2>/dev/null; then
        mkdir -p "$work/mnt/metis"
        cp "$work/user-data" "$work/meta-data" "$work/metis-secrets.bin" "$work/mnt/"
        umount "$work/mnt"
    else
        # No vfat in this kernel: copy the seed in with mtools instead.
        naive_mode="cp --sparse=never + mtools (no vfat module) + losetup/mount ext4 + copy-in"
        MTOOLS_SKIP_CHECK=1 mmd -i "$work/naive.img@@$boot_off" ::/metis
        MTOOLS_SKIP_CHECK=1 mcopy -o -i "$work/naive.img@@$boot_off" \
            "$work/user-data" "$work/meta-data" "$work/metis-secrets.bin" ::/
    fi
    losetup -d "$loopdev"
    loopdev="$(losetup -f --show -o "$root_off" "$work/naive.img")"
    mount "$loopdev" "$work/mnt"
    echo 5f3c0e1a9b7d4c2e8f6a1b3c5d7e9f01 >"$work/mnt/etc/machine-id"
    umount "$work/mnt"
    losetup -d "$loopdev"
    loopdev=""
    sync
else
    naive_mode="cp --sparse=never only (no root for loop mounts: lower bound)"
fi
end=$(date +%s.%N)
naive_s="$(echo "$end - $start" | bc -l)"

# A naive pipeline verifies the golden image too.
cold
sha_start=$(date +%s.%N)
sha256sum "$golden" >/dev/null
naive_sha_s="$(echo "$(date +%s.%N) - $sha_start" | bc -l)"

metis_write_s="$(field write_s "$work/metis.out")"
naive_all_s="$(echo "$naive_s + $naive_sha_s" | bc -l)"
node_full_s="$(echo "$metis_personalise_s + $metis_write_s" | bc -l)"

ratio() { echo "$1 $2" | awk '{ printf "%.1f", $1 / $2 }'; }
secs() { echo "$1" | awk '{ printf "%.2f", $1 }'; }
gib() { echo "$1" | awk '{ printf "%.2f", $1 / 1073741824 }'; }
mib() { echo "$1" | awk '{ printf "%.1f", $1 / 1048576 }'; }
kib() { echo "$1" | awk '{ printf "%.0f", $1 / 1024 }'; }

card="${size_gib} GiB MBR card, ${data_mib} MiB root data"
# Per node: a publish opens each class's golden image once (its sha256
# checked, its root's metadata copied on the first node's edit); every further
# node costs the personalise step of a second node on the same image. The first
# node's whole wall time, less the golden check, is reported too.
per_node_s="$(echo "$patch_s - $patch_verify_s" | bc -l)"
frac() { echo "$1 $2" | awk '{ printf "%.3f", $1 / $2 }'; }
echo "| personalise one node ($card): per node after the class's first (personalise step; root metadata copy shared, edits rolled back)${e2fsck_note:-}; ref naive: $naive_mode | $(echo "$second_s" | awk '{ printf "%.4f", $1 }') s, $(mib "$second_read") MiB read | $(secs "$naive_s") s | $(frac "$second_s" "$naive_s")x | <= 0.02x |"
echo "| personalise one node ($card): the class's first node, wall (process, partition table, seed, root metadata copy; golden sha256 excluded) | $(secs "$per_node_s") s | $(secs "$naive_s") s | $(frac "$per_node_s" "$naive_s")x | (info) |"
echo "| personalise one node ($card): full image written (sparse) | $(secs "$node_full_s") s | $(secs "$naive_s") s | $(ratio "$naive_s" "$node_full_s")x faster | |"
echo "| personalise one node ($card): all-in, incl. sha256 of the golden | $(secs "$metis_s") s (verify $(secs "$metis_verify_s") s) | $(secs "$naive_all_s") s (sha256sum $(secs "$naive_sha_s") s) | $(ratio "$naive_all_s" "$metis_s")x faster | |"
echo "| personalise one node ($card): bytes read by the class's first node (rchar, incl. e2image/debugfs) | $(mib "$patch_read") MiB, $(kib "$changed") KiB changed | $(gib "$naive_read") GiB (full copy) | $(ratio "$naive_read" "$patch_read")x less | proportional to the change |"
echo "| personalise one node ($card): peak RSS | $((metis_rss / 1024)) MiB (patch only: $((patch_rss / 1024)) MiB) | $((naive_rss / 1024)) MiB (cp) | | <= 64 MiB |"
