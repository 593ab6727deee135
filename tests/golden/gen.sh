#!/bin/sh
# Generates Metis's golden images for tests: small stand-ins with each class's
# real partition layout (default), or bootable Debian stand-ins (--bootable).
#
# No vendor image can be downloaded where tests run, so these images stand in
# for Ubuntu for Raspberry Pi, Armbian -ci and amd64 cloud images. What they
# share with the real ones is what Metis touches: partition table, labels,
# filesystems, the NoCloud seed files and the cloud-init datasource config.
#
# Usage:
#   tests/golden/gen.sh [OUTDIR]
#       Stand-ins rpi-ubuntu.img, armbian.img, amd64.img (~130-150 MiB each,
#       sparse), bit-for-bit reproducible; no root needed. OUTDIR defaults to
#       inventory/golden. Writes OUTDIR/SHA256SUMS and prints the digests.
#   tests/golden/gen.sh --bootable [OUTDIR]
#       Bootable rpi-ubuntu-boot.img and amd64-boot.img from a debootstrapped
#       Debian bookworm, with kernel and initrd beside them. Needs root and the
#       Debian mirror. OUTDIR defaults to the cache directory
#       ${METIS_GOLDEN_CACHE:-/var/cache/metis-golden}/<first 16 hex of
#       sha256(gen.sh)>; an existing complete cache is reused. Prints OUTDIR as
#       the last line on stdout.
#
# Tools: sfdisk, mkfs.fat, mtools, mke2fs, debugfs (e2fsprogs), sha256sum;
# --bootable adds debootstrap, chroot, flock.
set -eu

# One fixed instant for every timestamp the images carry (2024-01-01 UTC).
# FAT cannot store dates before 1980, so not the Unix epoch.
EPOCH=1704067200
export SOURCE_DATE_EPOCH="$EPOCH" E2FSPROGS_FAKE_TIME="$EPOCH" TZ=UTC LC_ALL=C
umask 022

# Tools live in /usr/sbin and /sbin; a non-root shell may not have them in PATH.
PATH="$PATH:/usr/sbin:/sbin"

MIB=1048576
SECTORS_PER_MIB=2048

die() {
	echo "gen.sh: $*" >&2
	exit 1
}

note() {
	echo "gen.sh: $*" >&2
}

script_dir=$(cd "$(dirname "$0")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)

# ---------------------------------------------------------------------------
# Building blocks shared by both modes
# ---------------------------------------------------------------------------

# mke2fs reads /etc/mke2fs.conf, which differs between hosts; pin the ext4
# defaults Debian and Ubuntu ship so every host makes the same bytes.
write_mke2fs_conf() {
	cat >"$1" <<'CONF'
[defaults]
	base_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
	default_mntopts = acl,user_xattr
	enable_periodic_fsck = 0
	blocksize = 4096
	inode_size = 256
	inode_ratio = 16384

[fs_types]
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
	}
	small = {
		inode_ratio = 16384
	}
CONF
}

# make_fat FILE SIZE_MIB FAT_BITS LABEL VOLID HIDDEN_SECTORS SRC_DIR
# Makes a FAT file system in FILE and copies SRC_DIR's tree into it with mtools
# in sorted order (so directory entries are in the same order on every host).
make_fat() {
	mf_file=$1 mf_mib=$2 mf_bits=$3 mf_label=$4 mf_volid=$5 mf_hidden=$6 mf_src=$7
	rm -f "$mf_file"
	# One 512-byte sector per cluster keeps a 64 MiB FAT32 above the 65525
	# cluster minimum; -h records where the partition starts, as a real card has.
	# --invariant fixes the label entry time (mkfs.fat ignores SOURCE_DATE_EPOCH)
	# and must come before -i, which it would otherwise override.
	mkfs.fat --invariant -C -F "$mf_bits" -s 1 -S 512 -h "$mf_hidden" -n "$mf_label" \
		-i "$mf_volid" "$mf_file" $((mf_mib * 1024)) >/dev/null 2>&1 ||
		die "mkfs.fat failed for $mf_label"
	(cd "$mf_src" && find . -mindepth 1 | sort) | while IFS= read -r mf_path; do
		mf_rel=${mf_path#./}
		if [ -d "$mf_src/$mf_rel" ]; then
			mmd -i "$mf_file" "::/$mf_rel"
		else
			mcopy -m -o -i "$mf_file" "$mf_src/$mf_rel" "::/$mf_rel"
		fi
	done
}

# make_ext4 FILE SIZE_MIB LABEL UUID SRC_DIR SQUASH_OWNERS
# Makes an ext4 file system in FILE populated from SRC_DIR (mke2fs -d).
# SQUASH_OWNERS=yes makes every inode root-owned and stamps every inode time
# with EPOCH, so a non-root run makes the same bytes as a root one.
make_ext4() {
	me_file=$1 me_mib=$2 me_label=$3 me_uuid=$4 me_src=$5 me_squash=$6
	rm -f "$me_file"
	MKE2FS_CONFIG="$work/mke2fs.conf" mke2fs -q -F -t ext4 -L "$me_label" -U "$me_uuid" \
		-E "hash_seed=$me_uuid,root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0,no_copy_xattrs" \
		-d "$me_src" "$me_file" "${me_mib}M" >/dev/null || die "mke2fs failed for $me_label"
	if [ "$me_squash" = yes ]; then
		# mke2fs -d copies the staging tree's owners and ctimes, which depend on
		# who runs this and when; overwrite them.
		(cd "$me_src" && find . | sort) | while IFS= read -r me_path; do
			me_rel=${me_path#.}
			[ -n "$me_rel" ] || me_rel=/
			for me_field in uid gid; do
				echo "sif \"$me_rel\" $me_field 0"
			done
			for me_field in atime mtime ctime crtime; do
				echo "sif \"$me_rel\" $me_field @$EPOCH"
			done
		done >"$work/debugfs.cmds"
		debugfs -w -f "$work/debugfs.cmds" "$me_file" >/dev/null 2>"$work/debugfs.err" ||
			die "debugfs failed on $me_label: $(cat "$work/debugfs.err")"
		if grep -v '^debugfs ' "$work/debugfs.err" | grep -q .; then
			die "debugfs complained on $me_label: $(cat "$work/debugfs.err")"
		fi
	fi
}

# new_disk IMG SIZE_MIB SFDISK_SCRIPT: a sparse file with a partition table.
new_disk() {
	rm -f "$1"
	truncate -s $(($2 * MIB)) "$1"
	printf '%s\n' "$3" | sfdisk -q --no-reread --no-tell-kernel "$1" >/dev/null ||
		die "sfdisk failed on $1"
}

# put_partition IMG START_MIB FILE: copies a file system into the image,
# leaving zero runs as holes.
put_partition() {
	dd if="$3" of="$1" bs=1M seek="$2" conv=notrunc,sparse status=none
}

# Pins the file times and modes of a staging tree.
pin_tree() {
	find "$1" -exec touch -h -d "@$EPOCH" {} +
}

# A few KiB of recognisable filler where a real image has a kernel or initrd.
dummy_blob() {
	yes "metis golden stand-in: $2 (not a real one)" | head -c "$3" >"$1"
}

# Seed (p1) and root (p2) of a MBR card, or ESP (p1), seed (p2), root (p3) of a
# GPT disk. Sizes in MiB; partitions start at 1 MiB and are MiB-aligned; one
# MiB is left at the end (the GPT backup header lives there).

# build_mbr_card IMG LABEL_ID BOOT_MIB BOOT_LABEL BOOT_VOLID BOOT_DIR ROOT_MIB ROOT_LABEL ROOT_UUID ROOT_DIR SQUASH
build_mbr_card() {
	bm_img=$1 bm_id=$2 bm_boot_mib=$3 bm_boot_label=$4 bm_volid=$5 bm_boot_dir=$6
	bm_root_mib=$7 bm_root_label=$8 bm_root_uuid=$9
	shift 9
	bm_root_dir=$1 bm_squash=$2
	bm_root_start=$((1 + bm_boot_mib))
	bm_total=$((bm_root_start + bm_root_mib + 1))
	new_disk "$bm_img" "$bm_total" "label: dos
label-id: $bm_id
unit: sectors
sector-size: 512

start=$SECTORS_PER_MIB, size=$((bm_boot_mib * SECTORS_PER_MIB)), type=c, bootable
start=$((bm_root_start * SECTORS_PER_MIB)), size=$((bm_root_mib * SECTORS_PER_MIB)), type=83"
	make_fat "$work/p1.fat" "$bm_boot_mib" 32 "$bm_boot_label" "$bm_volid" "$SECTORS_PER_MIB" "$bm_boot_dir"
	make_ext4 "$work/p2.ext4" "$bm_root_mib" "$bm_root_label" "$bm_root_uuid" "$bm_root_dir" "$bm_squash"
	put_partition "$bm_img" 1 "$work/p1.fat"
	put_partition "$bm_img" "$bm_root_start" "$work/p2.ext4"
	rm -f "$work/p1.fat" "$work/p2.ext4"
}

GPT_ESP=C12A7328-F81F-11D2-BA4B-00A0C93EC93B
GPT_BASIC_DATA=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7
GPT_LINUX_FS=0FC63DAF-8483-4772-8E79-3D69D8477DE4

# build_gpt_disk IMG DISK_GUID ESP_MIB ESP_DIR SEED_MIB SEED_DIR ROOT_MIB ROOT_DIR SQUASH
build_gpt_disk() {
	bg_img=$1 bg_guid=$2 bg_esp_mib=$3 bg_esp_dir=$4 bg_seed_mib=$5 bg_seed_dir=$6
	bg_root_mib=$7 bg_root_dir=$8 bg_squash=$9
	bg_seed_start=$((1 + bg_esp_mib))
	bg_root_start=$((bg_seed_start + bg_seed_mib))
	bg_total=$((bg_root_start + bg_root_mib + 1))
	new_disk "$bg_img" "$bg_total" "label: gpt
label-id: $bg_guid
unit: sectors
first-lba: 34
sector-size: 512

start=$SECTORS_PER_MIB, size=$((bg_esp_mib * SECTORS_PER_MIB)), type=$GPT_ESP, uuid=4D455449-5300-4000-8000-0000000000E1, name=\"ESP\"
start=$((bg_seed_start * SECTORS_PER_MIB)), size=$((bg_seed_mib * SECTORS_PER_MIB)), type=$GPT_BASIC_DATA, uuid=4D455449-5300-4000-8000-0000000000C1, name=\"cidata\"
start=$((bg_root_start * SECTORS_PER_MIB)), size=$((bg_root_mib * SECTORS_PER_MIB)), type=$GPT_LINUX_FS, uuid=4D455449-5300-4000-8000-0000000000F1, name=\"rootfs\""
	# The ESP is FAT16: too small for FAT32's cluster minimum, and UEFI
	# firmware reads FAT16 too.
	make_fat "$work/p1.fat" "$bg_esp_mib" 16 ESP 4d450e51 "$SECTORS_PER_MIB" "$bg_esp_dir"
	make_fat "$work/p2.fat" "$bg_seed_mib" 32 CIDATA 4d45c1da $((bg_seed_start * SECTORS_PER_MIB)) "$bg_seed_dir"
	make_ext4 "$work/p3.ext4" "$bg_root_mib" rootfs 4d455449-5300-4000-8000-0000000000a3 "$bg_root_dir" "$bg_squash"
	put_partition "$bg_img" 1 "$work/p1.fat"
	put_partition "$bg_img" "$bg_seed_start" "$work/p2.fat"
	put_partition "$bg_img" "$bg_root_start" "$work/p3.ext4"
	rm -f "$work/p1.fat" "$work/p2.fat" "$work/p3.ext4"
}

# ---------------------------------------------------------------------------
# Contents: what the vendor images carry where Metis looks
# ---------------------------------------------------------------------------

# cloud_cfg_datasource DIR SEED_LABEL: the datasource pin Ubuntu's Raspberry Pi
# image ships, pointing cloud-init at the seed partition.
cloud_cfg_datasource() {
	mkdir -p "$1/etc/cloud/cloud.cfg.d"
	cat >"$1/etc/cloud/cloud.cfg.d/99-fake_cloud.cfg" <<CFG
# configure cloud-init for NoCloud
datasource_list: [NoCloud, None]
datasource:
  NoCloud:
    fs_label: $2
CFG
}

# stage_root DIR HOSTNAME OS_RELEASE SEED_LABEL: the minimal root tree.
stage_root() {
	mkdir -p "$1/etc/ssh" "$1/usr/local/bin"
	echo "$2" >"$1/etc/hostname"
	# Empty, as the vendors ship it: systemd fills it on first boot unless
	# Metis writes the node's own id.
	: >"$1/etc/machine-id"
	printf '%s\n' "$3" >"$1/etc/os-release"
	cloud_cfg_datasource "$1" "$4"
}

# Default NoCloud seed files as Ubuntu ships them in system-boot.
stage_ubuntu_seed() {
	cat >"$1/user-data" <<'SEED'
#cloud-config

# This is the user-data configuration file for cloud-init. By default this sets
# up an initial user called "ubuntu" with password "ubuntu", which must be
# changed at first login. However, many additional actions can be initiated on
# first boot from this file (see https://cloudinit.readthedocs.io/).

# On first boot, set the (default) ubuntu user's password to "ubuntu" and
# expire user passwords
chpasswd:
  expire: true
  users:
  - name: ubuntu
    password: ubuntu
    type: text

# Enable password authentication with the SSH daemon
ssh_pwauth: true
SEED
	cat >"$1/meta-data" <<'SEED'
# This is the meta-data configuration file for cloud-init. Please refer to the
# cloud-init documentation for more information:
#
# https://cloudinit.readthedocs.io/

# Set the datasource mode to "local". This ensures that user-data is acted upon
# prior to bringing up the network (because everything about the datasource is
# assumed to be local). If you wish to use an HTTP datasource instead, you can
# change this to "net" or override it on the kernel cmdline (see README).
dsmode: local

# Specifies the "unique" identifier of the instance. Typically in cloud-init
# this is generated by the owning cloud and is actually unique (to some degree).
# Here our data-source is local, so this is just a fixed string. Warning: changing
# this will cause cloud-init to assume it is running on a "new" instance, and to
# go through first time setup again (the value is compared to a cached copy).
instance_id: cloud-image
SEED
	cat >"$1/network-config" <<'SEED'
# This file contains a netplan-compatible configuration which cloud-init will
# apply on first-boot (note: it will *not* update the config after the first
# boot). Please refer to the cloud-init documentation and the netplan reference
# for full details:
#
# https://netplan.io/reference
# https://cloudinit.readthedocs.io/en/latest/topics/network-config.html
# https://cloudinit.readthedocs.io/en/latest/topics/network-config-format-v2.html

network:
  version: 2
  ethernets:
    eth0:
      dhcp4: true
      optional: true
SEED
}

stage_rpi_ubuntu() {
	sru_boot=$1 sru_root=$2
	mkdir -p "$sru_boot" "$sru_root"
	cat >"$sru_boot/config.txt" <<'BOOT'
[all]
kernel=vmlinuz
cmdline=cmdline.txt
initramfs initrd.img followkernel

[pi4]
max_framebuffers=2
arm_boost=1

[all]
# Enable the audio output, I2C and SPI interfaces on the GPIO header. As these
# parameters related to the base device-tree they must appear *before* any
# other dtoverlay= specification
dtparam=audio=on
dtparam=i2c_arm=on
dtparam=spi=on

# Comment out the following line if the edges of the desktop appear outside
# the edges of your display
disable_overscan=1

# Enable the KMS ("full" KMS) graphics overlay, leaving GPU memory as the
# default (the kernel is in control of graphics memory with full KMS)
dtoverlay=vc4-kms-v3d

# Autoload overlays for any recognized cameras or displays that are attached
# to the CSI/DSI ports. Please note this is for libcamera support, *not* for
# the legacy camera stack
camera_auto_detect=1
display_auto_detect=1

# Config settings specific to arm64
arm_64bit=1
dtoverlay=dwc2

[all]
BOOT
	echo 'console=serial0,115200 multipath=off dwc_otg.lpm_enable=0 console=tty1 root=LABEL=writable rootfstype=ext4 rootwait fixrtc quiet splash' \
		>"$sru_boot/cmdline.txt"
	stage_ubuntu_seed "$sru_boot"
	dummy_blob "$sru_boot/vmlinuz" vmlinuz 8192
	dummy_blob "$sru_boot/initrd.img" initrd.img 8192
	stage_root "$sru_root" ubuntu 'PRETTY_NAME="Ubuntu 24.04.1 LTS"
NAME="Ubuntu"
VERSION_ID="24.04"
VERSION="24.04.1 LTS (Noble Numbat)"
VERSION_CODENAME=noble
ID=ubuntu
ID_LIKE=debian
HOME_URL="https://www.ubuntu.com/"
UBUNTU_CODENAME=noble' system-boot
}

stage_armbian() {
	sa_boot=$1 sa_root=$2
	mkdir -p "$sa_boot" "$sa_root"
	cat >"$sa_boot/armbianEnv.txt" <<'BOOT'
verbosity=1
bootlogo=false
console=both
disp_mode=1920x1080p60
overlay_prefix=bcm2711
rootdev=UUID=4d455449-5300-4000-8000-0000000000a2
rootfstype=ext4
ethaddr=dc:a6:32:00:00:01
usbstoragequirks=0x2537:0x1066:u,0x2537:0x1068:u
BOOT
	cat >"$sa_boot/user-data" <<'SEED'
#cloud-config
# Armbian cloud-init image: default user-data, replaced per node.
SEED
	cat >"$sa_boot/meta-data" <<'SEED'
instance_id: armbian-cloud-image
SEED
	cat >"$sa_boot/network-config" <<'SEED'
network:
  version: 2
  ethernets:
    all-eth:
      match:
        name: "e*"
      dhcp4: true
SEED
	stage_root "$sa_root" armbian 'PRETTY_NAME="Armbian 24.11.1 bookworm"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.armbian.com/"' armbi_boot
	mkdir -p "$sa_root/etc/default"
	cat >"$sa_root/etc/default/armbian-firstrun" <<'CFG'
# configuration values for the armbian-firstrun service
#
# OPENSSHD_REGENERATE_HOST_KEYS: regenerate the SSH host keys on first boot
OPENSSHD_REGENERATE_HOST_KEYS=true
CFG
	echo 'BOARD=rpi4b
BOARD_NAME="Raspberry Pi 4"
BOARDFAMILY=bcm2711
VERSION=24.11.1
LINUXFAMILY=bcm2711
ARCH=arm64
IMAGE_TYPE=stable
BRANCH=current' >"$sa_root/etc/armbian-release"
}

stage_amd64() {
	s6_esp=$1 s6_seed=$2 s6_root=$3
	mkdir -p "$s6_esp/EFI/BOOT" "$s6_seed" "$s6_root"
	dummy_blob "$s6_esp/EFI/BOOT/BOOTX64.EFI" BOOTX64.EFI 8192
	cat >"$s6_seed/user-data" <<'SEED'
#cloud-config
# amd64 cloud image: default user-data, replaced per node.
SEED
	cat >"$s6_seed/meta-data" <<'SEED'
instance-id: amd64-cloud-image
SEED
	cat >"$s6_seed/network-config" <<'SEED'
network:
  version: 2
  ethernets:
    all-en:
      match:
        name: "en*"
      dhcp4: true
SEED
	stage_root "$s6_root" ubuntu 'PRETTY_NAME="Ubuntu 24.04.1 LTS"
NAME="Ubuntu"
VERSION_ID="24.04"
VERSION="24.04.1 LTS (Noble Numbat)"
VERSION_CODENAME=noble
ID=ubuntu
ID_LIKE=debian
HOME_URL="https://www.ubuntu.com/"
UBUNTU_CODENAME=noble' CIDATA
}

# ---------------------------------------------------------------------------
# Mode 1: stand-ins (reproducible)
# ---------------------------------------------------------------------------

gen_standins() {
	out=$1
	stage="$work/stage"
	mkdir -p "$out"

	stage_rpi_ubuntu "$stage/rpi/boot" "$stage/rpi/root"
	stage_armbian "$stage/armbian/boot" "$stage/armbian/root"
	stage_amd64 "$stage/amd64/esp" "$stage/amd64/seed" "$stage/amd64/root"
	# Modes and times must not depend on the umask or clock of the host.
	find "$stage" -type d -exec chmod 0755 {} +
	find "$stage" -type f -exec chmod 0644 {} +
	pin_tree "$stage"

	build_mbr_card "$work/rpi-ubuntu.img" 0x4d455449 64 system-boot 4d455001 "$stage/rpi/boot" \
		64 writable 4d455449-5300-4000-8000-0000000000a1 "$stage/rpi/root" yes
	build_mbr_card "$work/armbian.img" 0x4d455441 64 armbi_boot 4d455002 "$stage/armbian/boot" \
		64 armbi_root 4d455449-5300-4000-8000-0000000000a2 "$stage/armbian/root" yes
	build_gpt_disk "$work/amd64.img" 4D455449-5300-4000-8000-000000000064 \
		16 "$stage/amd64/esp" 64 "$stage/amd64/seed" 64 "$stage/amd64/root" yes

	for img in rpi-ubuntu.img armbian.img amd64.img; do
		mv -f "$work/$img" "$out/$img"
	done
	(cd "$out" && sha256sum rpi-ubuntu.img armbian.img amd64.img >SHA256SUMS.tmp &&
		mv -f SHA256SUMS.tmp SHA256SUMS && cat SHA256SUMS)
}

gen_bootable() {
	die "--bootable is not implemented yet"
}

# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

mode=standins
case "${1:-}" in
--bootable)
	mode=bootable
	shift
	;;
-h | --help)
	sed -n '2,/^set -eu/p' "$0" | sed -e '/^set -eu/d' -e 's/^# \{0,1\}//'
	exit 0
	;;
-*) die "unknown option $1 (try --help)" ;;
esac
[ $# -le 1 ] || die "too many arguments (try --help)"

for tool in sfdisk mkfs.fat mmd mcopy mke2fs debugfs sha256sum truncate; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool not found; install dosfstools, mtools, e2fsprogs, fdisk"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/metis-golden.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
write_mke2fs_conf "$work/mke2fs.conf"

case $mode in
standins) gen_standins "${1:-$repo_root/inventory/golden}" ;;
bootable) gen_bootable "${1:-}" ;;
esac
