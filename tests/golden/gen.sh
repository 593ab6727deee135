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
#   tests/golden/gen.sh --fill MIB [--size MIB] [OUTDIR]
#       The same stand-ins, each root file system grown by MIB MiB of
#       incompressible, reproducible data (/usr/lib/metis-fill/), so the
#       benchmarks see images of a real size; --size grows each root partition
#       further so that every image is that many MiB (a 4 GiB card: 4096).
#       Still bit-for-bit reproducible; the digests differ from the default ones.
#   tests/golden/gen.sh --bootable [OUTDIR]
#       Bootable rpi-ubuntu-boot.img and amd64-boot.img from a debootstrapped
#       Debian bookworm, with kernel and initrd beside them. Needs root and the
#       Debian mirror. OUTDIR defaults to the cache directory
#       ${METIS_GOLDEN_CACHE:-/var/cache/metis-golden}/<first 16 hex of
#       sha256(gen.sh)>; an existing complete cache is reused. Prints OUTDIR as
#       the last line on stdout.
#   tests/golden/gen.sh --layout NAME [--table mbr|gpt] [--fat 12|16|32]
#           [--seed-mib N] --seed-label LABEL [--root-mib N] --root-label LABEL
#           [--armbian] [--fragment-fat] [--duplicate-seed] OUTDIR
#       One small edge-case card, OUTDIR/NAME.img, for the image tests
#       (core/tests/fixtures): a FAT seed (default FAT32, 64 MiB; a GPT names
#       the partition after its label) and an ext4 root (default 64 MiB) with
#       Ubuntu for Raspberry Pi's content, or Armbian's with --armbian (which
#       ships /etc/default/armbian-firstrun), plus a subdirectory and bulk
#       files. --fragment-fat leaves 20 one-cluster holes in the seed's free
#       space; --duplicate-seed adds a second seed partition with the same
#       label. The default table is mbr. Bit-for-bit reproducible; no root
#       needed. Prints the image's path. The tests read the files back from
#       the image, so what is written here is the only list of them.
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
# Building blocks shared by every mode
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

# make_fat FILE SIZE_MIB FAT_BITS LABEL VOLID HIDDEN_SECTORS SRC_DIR [CLUSTER_SECTORS]
# Makes a FAT file system in FILE and copies SRC_DIR's tree into it with mtools
# in sorted order (so directory entries are in the same order on every host).
make_fat() {
	mf_file=$1 mf_mib=$2 mf_bits=$3 mf_label=$4 mf_volid=$5 mf_hidden=$6 mf_src=$7
	mf_cluster=${8:-1}
	rm -f "$mf_file"
	# One 512-byte sector per cluster (the default) keeps a 64 MiB FAT32 above
	# the 65525 cluster minimum; a FAT12 has to stay below 4085 clusters, so it
	# needs more. -h records where the partition starts, as a real card has.
	# --invariant fixes the label entry time (mkfs.fat ignores SOURCE_DATE_EPOCH)
	# and must come before -i, which it would otherwise override.
	mkfs.fat --invariant -C -F "$mf_bits" -s "$mf_cluster" -S 512 -h "$mf_hidden" -n "$mf_label" \
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

# fill_tree DIR MIB SEED: MIB MiB of incompressible bytes in 64 MiB files
# under DIR/usr/lib/metis-fill, the same bytes for the same SEED every time
# (AES-CTR keystream of a key derived from SEED).
fill_tree() {
	ft_dir="$1/usr/lib/metis-fill" ft_left=$2 ft_i=0
	mkdir -p "$ft_dir"
	command -v openssl >/dev/null 2>&1 || die "--fill needs openssl"
	ft_key=$(printf 'metis-fill %s' "$3" | sha256sum | cut -c1-64)
	while [ "$ft_left" -gt 0 ]; do
		ft_n=$((ft_left < 64 ? ft_left : 64))
		ft_iv=$(printf '%032x' "$ft_i")
		openssl enc -aes-256-ctr -K "$ft_key" -iv "$ft_iv" </dev/zero 2>/dev/null |
			head -c $((ft_n * MIB)) >"$ft_dir/blob-$ft_i"
		ft_left=$((ft_left - ft_n))
		ft_i=$((ft_i + 1))
	done
}

gen_standins() {
	out=$1
	stage="$work/stage"
	mkdir -p "$out"

	stage_rpi_ubuntu "$stage/rpi/boot" "$stage/rpi/root"
	stage_armbian "$stage/armbian/boot" "$stage/armbian/root"
	stage_amd64 "$stage/amd64/esp" "$stage/amd64/seed" "$stage/amd64/root"
	# With --fill, each root grows by the data plus 1/16 for ext4's metadata.
	root_mib=64
	if [ "$fill_mib" -gt 0 ]; then
		fill_tree "$stage/rpi/root" "$fill_mib" rpi-ubuntu
		fill_tree "$stage/armbian/root" "$fill_mib" armbian
		fill_tree "$stage/amd64/root" "$fill_mib" amd64
		root_mib=$((64 + fill_mib + fill_mib / 16))
	fi
	# MBR cards: 1 MiB + 64 MiB boot + root + 1 MiB; GPT: 1 + 16 + 64 + root + 1.
	mbr_root=$root_mib gpt_root=$root_mib
	if [ "$size_mib" -gt 0 ]; then
		mbr_root=$((size_mib - 66)) gpt_root=$((size_mib - 82))
		[ "$gpt_root" -ge "$root_mib" ] || die "--size $size_mib is too small for --fill $fill_mib"
	fi
	# Modes and times must not depend on the umask or clock of the host.
	find "$stage" -type d -exec chmod 0755 {} +
	find "$stage" -type f -exec chmod 0644 {} +
	pin_tree "$stage"

	build_mbr_card "$work/rpi-ubuntu.img" 0x4d455449 64 system-boot 4d455001 "$stage/rpi/boot" \
		"$mbr_root" writable 4d455449-5300-4000-8000-0000000000a1 "$stage/rpi/root" yes
	build_mbr_card "$work/armbian.img" 0x4d455441 64 armbi_boot 4d455002 "$stage/armbian/boot" \
		"$mbr_root" armbi_root 4d455449-5300-4000-8000-0000000000a2 "$stage/armbian/root" yes
	build_gpt_disk "$work/amd64.img" 4D455449-5300-4000-8000-000000000064 \
		16 "$stage/amd64/esp" 64 "$stage/amd64/seed" "$gpt_root" "$stage/amd64/root" yes

	for img in rpi-ubuntu.img armbian.img amd64.img; do
		mv -f "$work/$img" "$out/$img"
	done
	(cd "$out" && sha256sum rpi-ubuntu.img armbian.img amd64.img >SHA256SUMS.tmp &&
		mv -f SHA256SUMS.tmp SHA256SUMS && cat SHA256SUMS)
}

# ---------------------------------------------------------------------------
# Mode 2: bootable stand-ins (cached, not reproducible: debootstrap is not)
# ---------------------------------------------------------------------------

# Packages on top of minbase. cloud-init needs python3-cffi-backend named
# explicitly or it fails to configure; netplan.io renders cloud-init's netplan
# v2 network-config for systemd-networkd, as on Ubuntu; dbus lets logind act on
# QEMU's ACPI power button and hostnamectl work; dosfstools lets systemd-fsck
# check the FAT partitions in fstab; locales lets cloud-init's locale module
# generate a locale a seed asks for.
BOOT_PACKAGES=systemd,systemd-sysv,udev,dbus,cloud-init,python3-cffi-backend,netplan.io,openssh-server,linux-image-amd64,initramfs-tools,e2fsprogs,dosfstools,locales

# The mirror apt already uses (deb.debian.org here), unless overridden.
debian_mirror() {
	if [ -n "${METIS_DEBIAN_MIRROR:-}" ]; then
		echo "$METIS_DEBIAN_MIRROR"
		return
	fi
	dm_uri=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
	echo "${dm_uri:-http://deb.debian.org/debian}"
}

# The k3s stand-in: records how it was started, then idles like a running k3s
# until stopped. The tests read what it recorded from the powered-off disk.
install_k3s_standin() {
	mkdir -p "$1/usr/local/bin" "$1/etc/systemd/system"
	cat >"$1/usr/local/bin/k3s" <<'K3S'
#!/bin/sh
# Metis k3s stand-in (test golden images only; this is not Kubernetes).
# Records its argv, environment, /etc/rancher/k3s/config.yaml(.d) and start
# time under /var/lib/metis-k3s-standin, then idles until SIGTERM.
set -eu
case "${1:-}" in
--version | -v | version)
	echo "k3s version v0.0.0+metis-standin"
	exit 0
	;;
esac
state=/var/lib/metis-k3s-standin
config=/etc/rancher/k3s/config.yaml
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
mkdir -p "$state"
rm -rf "$state/config.yaml" "$state/config.yaml.d"
if [ -f "$config" ]; then cp -p "$config" "$state/config.yaml"; fi
if [ -d "$config.d" ]; then cp -rp "$config.d" "$state/config.yaml.d"; fi
env | sort >"$state/environ"
{
	echo "started_at=$now"
	echo "uptime_seconds=$(cut -d' ' -f1 /proc/uptime)"
	echo "argc=$#"
	i=0
	for arg in "$@"; do
		i=$((i + 1))
		printf 'arg%d=%s\n' "$i" "$arg"
	done
	if [ -f "$config" ]; then echo "config_yaml=present"; else echo "config_yaml=absent"; fi
	printf 'config_yaml_d=%s\n' "$(ls "$config.d" 2>/dev/null | tr '\n' ' ')"
} >"$state/run.env.tmp"
mv "$state/run.env.tmp" "$state/run.env"
echo "$now $*" >>"$state/starts"
sync
if [ -n "${NOTIFY_SOCKET:-}" ]; then systemd-notify --ready; fi
exec sleep infinity
K3S
	chmod 0755 "$1/usr/local/bin/k3s"
	for ik_unit in k3s:server k3s-agent:agent; do
		ik_name=${ik_unit%%:*} ik_role=${ik_unit#*:}
		# Shaped like the unit k3s's install script writes (installed, not
		# enabled), but quick to stop: KillMode=mixed and TimeoutStopSec=5.
		cat >"$1/etc/systemd/system/$ik_name.service" <<UNIT
[Unit]
Description=Lightweight Kubernetes (Metis stand-in, $ik_role)
Documentation=https://k3s.io
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
Type=notify
NotifyAccess=all
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-/etc/sysconfig/%N
EnvironmentFile=-/etc/systemd/system/$ik_name.service.env
KillMode=mixed
Delegate=yes
LimitNOFILE=1048576
TimeoutStartSec=0
TimeoutStopSec=5
Restart=always
RestartSec=5s
ExecStart=/usr/local/bin/k3s $ik_role
UNIT
	done
}

# Makes the debootstrapped tree at $1 look like a vendor golden image.
configure_rootfs() {
	cr_root=$1
	# Vendors ship no host keys and an empty machine-id: each node makes its
	# own on first boot (or Metis provides them). debootstrap made both.
	rm -f "$cr_root"/etc/ssh/ssh_host_*
	: >"$cr_root/etc/machine-id"
	rm -f "$cr_root/var/lib/dbus/machine-id"
	ln -s /etc/machine-id "$cr_root/var/lib/dbus/machine-id"
	echo ubuntu >"$cr_root/etc/hostname"
	printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$cr_root/etc/hosts"
	# debootstrap copied the build host's resolver.
	: >"$cr_root/etc/resolv.conf"
	# Ubuntu's system locale; without one cloud-init's locale module tries to
	# make en_US.UTF-8 the default and fails.
	echo 'LANG=C.UTF-8' >"$cr_root/etc/default/locale"
	mkdir -p "$cr_root/boot/firmware" "$cr_root/boot/efi"

	# cloud-init as on Ubuntu: netplan renderer, default user "ubuntu".
	cat >"$cr_root/etc/cloud/cloud.cfg.d/90-metis-standin.cfg" <<'CFG'
# Metis golden stand-in: behave like Ubuntu's cloud-init configuration.
system_info:
  default_user:
    name: ubuntu
    gecos: Ubuntu
    groups: [adm, sudo]
  network:
    renderers: [netplan]
CFG
	chroot "$cr_root" systemctl enable systemd-networkd.service >/dev/null 2>&1 ||
		die "could not enable systemd-networkd in the image"
	# Boots must not sit two minutes waiting for a link the test network
	# never brings up (cloud-init.service is ordered after this).
	mkdir -p "$cr_root/etc/systemd/system/systemd-networkd-wait-online.service.d"
	cat >"$cr_root/etc/systemd/system/systemd-networkd-wait-online.service.d/90-metis-standin.conf" <<'UNIT'
[Service]
ExecStart=
ExecStart=/lib/systemd/systemd-networkd-wait-online --any --timeout=15
UNIT
	# Power-off must be quick: the tests inspect the disk after it.
	mkdir -p "$cr_root/etc/systemd/system.conf.d"
	printf '[Manager]\nDefaultTimeoutStopSec=10s\n' >"$cr_root/etc/systemd/system.conf.d/90-metis-standin.conf"
	install_k3s_standin "$cr_root"

	chroot "$cr_root" apt-get clean >/dev/null
	rm -rf "$cr_root"/var/lib/apt/lists/* "$cr_root/debootstrap"

	# QEMU boots the kernel directly; the initrd must find an ext4 root by
	# label on a virtio or AHCI disk (MODULES=most, Debian's default).
	cr_modules=$(chroot "$cr_root" sh -c 'lsinitramfs /boot/initrd.img-*')
	for cr_module in virtio_blk.ko virtio_pci.ko ahci.ko ext4.ko; do
		echo "$cr_modules" | grep -q "/$cr_module" || die "initrd lacks $cr_module"
	done
	echo "$cr_modules" | grep -q 'sbin/blkid$' || die "initrd lacks blkid (root=LABEL= needs it)"
}

# per_class_root ROOT ROOT_LABEL SEED_LABEL FIRMWARE_LINE: what differs
# between the classes' root file systems.
per_class_root() {
	printf '%s\n' "LABEL=$2	/	ext4	discard,errors=remount-ro	0	1" "$4" >"$1/etc/fstab"
	cloud_cfg_datasource "$1" "$3"
}

gen_bootable() {
	cache_root=${METIS_GOLDEN_CACHE:-/var/cache/metis-golden}
	key=$(sha256sum "$script_dir/gen.sh" | cut -c1-16)
	out=${1:-$cache_root/$key}
	# A finished cache needs neither root nor the lock.
	if [ -f "$out/COMPLETE" ]; then
		note "bootable golden images cached in $out"
		echo "$out"
		return 0
	fi
	[ "$(id -u)" -eq 0 ] || die "--bootable needs root (debootstrap, chroot) to build $out"
	for tool in debootstrap chroot flock findmnt; do
		command -v "$tool" >/dev/null 2>&1 || die "$tool not found; install debootstrap and util-linux"
	done
	mkdir -p "$cache_root"
	# One build at a time; whoever waited finds the finished cache.
	exec 9>"$cache_root/.lock"
	flock 9
	if [ -f "$out/COMPLETE" ]; then
		note "bootable golden images cached in $out"
		echo "$out"
		return 0
	fi
	partial="$out.partial"
	clean_partial
	mkdir -p "$partial"
	root="$partial/rootfs"
	mirror=$(debian_mirror)

	started=$(date +%s)
	note "debootstrap bookworm from $mirror (a few minutes) ..."
	debootstrap --variant=minbase --include="$BOOT_PACKAGES" bookworm "$root" "$mirror" \
		>"$partial/debootstrap.log" 2>&1 || {
		tail -n 30 "$partial/debootstrap.log" >&2
		[ -f "$root/debootstrap/debootstrap.log" ] && tail -n 30 "$root/debootstrap/debootstrap.log" >&2
		die "debootstrap failed (log above)"
	}
	debootstrapped=$(date +%s)
	note "debootstrap took $((debootstrapped - started)) s"
	configure_rootfs "$root"

	kernel=$(find "$root/boot" -name 'vmlinuz-*' | sort | tail -n 1)
	initrd=$(find "$root/boot" -name 'initrd.img-*' | sort | tail -n 1)
	if [ -z "$kernel" ] || [ -z "$initrd" ]; then die "no kernel or initrd in $root/boot"; fi

	# Ubuntu for Raspberry Pi: system-boot carries the firmware config, the
	# kernel, the initrd and the NoCloud seed.
	boot="$work/bootable/rpi-boot"
	stage_rpi_ubuntu "$boot" "$work/bootable/unused-root"
	cp "$kernel" "$boot/vmlinuz"
	cp "$initrd" "$boot/initrd.img"
	per_class_root "$root" writable system-boot "LABEL=system-boot	/boot/firmware	vfat	defaults	0	1"
	build_mbr_card "$partial/rpi-ubuntu-boot.img" 0x4d455449 256 system-boot 4d455001 "$boot" \
		1536 writable 4d455449-5300-4000-8000-0000000000b1 "$root" no
	cp "$kernel" "$partial/rpi-ubuntu-boot.vmlinuz"
	cp "$initrd" "$partial/rpi-ubuntu-boot.initrd"

	# amd64 cloud layout: ESP, CIDATA seed, rootfs.
	stage_amd64 "$work/bootable/esp" "$work/bootable/seed" "$work/bootable/unused-root2"
	per_class_root "$root" rootfs CIDATA "LABEL=ESP	/boot/efi	vfat	umask=0077	0	1"
	build_gpt_disk "$partial/amd64-boot.img" 4D455449-5300-4000-8000-0000000000B4 \
		16 "$work/bootable/esp" 64 "$work/bootable/seed" 1536 "$root" no
	cp "$kernel" "$partial/amd64-boot.vmlinuz"
	cp "$initrd" "$partial/amd64-boot.initrd"

	rm -rf --one-file-system "$root"
	{
		echo "gen.sh sha256 prefix: $key"
		echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
		echo "mirror: $mirror"
		echo "kernel: $(basename "$kernel")"
		echo "debootstrap seconds: $((debootstrapped - started))"
		echo "total seconds: $(($(date +%s) - started))"
	} >"$partial/COMPLETE"
	rm -rf "$out"
	mv "$partial" "$out"
	partial=
	note "bootable golden images built in $out in $(($(date +%s) - started)) s"
	echo "$out"
}

# Removes a half-built cache directory, unmounting anything debootstrap
# left mounted inside it first.
clean_partial() {
	[ -n "${partial:-}" ] && [ -e "$partial" ] || return 0
	findmnt -rn -o TARGET | grep "^$partial/" | sort -r | while IFS= read -r cp_mount; do
		umount -l "$cp_mount" || true
	done
	rm -rf --one-file-system "$partial"
}

# ---------------------------------------------------------------------------
# Mode 3: one small edge-case layout (for core/tests/image_personalise.rs)
# ---------------------------------------------------------------------------

# stage_layout BOOT_DIR ROOT_DIR: a class's content (Armbian's with --armbian,
# Ubuntu for Raspberry Pi's otherwise) pointing at the layout's seed label, plus
# bulk files so that the seed has a subdirectory and long cluster chains, and
# the root file system has data blocks besides its metadata.
stage_layout() {
	sl_boot=$1 sl_root=$2
	if [ "$lay_armbian" = yes ]; then
		stage_armbian "$sl_boot" "$sl_root"
	else
		stage_rpi_ubuntu "$sl_boot" "$sl_root"
	fi
	cloud_cfg_datasource "$sl_root" "$lay_seed_label"
	mkdir -p "$sl_boot/overlays" "$sl_root/usr/share/metis-test"
	dummy_blob "$sl_boot/overlays/vc4-kms-v3d.dtbo" vc4-kms-v3d.dtbo 20000
	# A real-sized kernel; a FAT12 seed is too small to hold one.
	[ "$lay_fat" = 12 ] || dummy_blob "$sl_boot/kernel8.img" kernel8.img 3000000
	dummy_blob "$sl_root/usr/share/metis-test/blob.bin" blob.bin 2000000
	find "$sl_boot" "$sl_root" -type d -exec chmod 0755 {} +
	find "$sl_boot" "$sl_root" -type f -exec chmod 0644 {} +
	pin_tree "$sl_boot"
	pin_tree "$sl_root"
}

# fragment_fat FILE CLUSTER_BYTES: writes 40 one-cluster files and deletes
# every other one, leaving 20 one-cluster holes, so that a file of several
# clusters cannot be allocated first-fit contiguously.
fragment_fat() {
	ff_file=$1
	dummy_blob "$work/cluster" 'fragmenting filler' "$2"
	touch -d "@$EPOCH" "$work/cluster"
	ff_i=0
	while [ "$ff_i" -lt 40 ]; do
		mcopy -m -o -i "$ff_file" "$work/cluster" "::/FILL$(printf %02d "$ff_i").BIN"
		ff_i=$((ff_i + 1))
	done
	ff_i=0
	while [ "$ff_i" -lt 40 ]; do
		mdel -i "$ff_file" "::/FILL$(printf %02d "$ff_i").BIN"
		ff_i=$((ff_i + 2))
	done
	rm -f "$work/cluster"
}

# gen_layout OUTDIR: OUTDIR/NAME.img as the --layout options describe it:
# seed (twice with --duplicate-seed), then root, MiB-aligned from 1 MiB, one
# MiB left at the end for a backup GPT. Fixed ids, bit-for-bit reproducible.
gen_layout() {
	gl_out=$1
	mkdir -p "$gl_out"
	stage_layout "$work/layout/boot" "$work/layout/root"
	gl_seeds=1
	[ "$lay_duplicate" = no ] || gl_seeds=2
	gl_root_start=$((1 + gl_seeds * lay_seed_mib))
	gl_total=$((gl_root_start + lay_root_mib + 1))
	# mkfs.fat's own choice for these sizes: 512-byte clusters for FAT32
	# (above its cluster minimum), 2 KiB for FAT12 and FAT16.
	gl_cluster=4
	[ "$lay_fat" != 32 ] || gl_cluster=1
	if [ "$lay_table" = gpt ]; then
		gl_script="label: gpt
label-id: 4D455449-5300-4000-8000-00000000000B
unit: sectors
first-lba: 34
sector-size: 512
"
	else
		gl_script="label: dos
label-id: 0x4d45544c
unit: sectors
sector-size: 512
"
	fi
	gl_i=1
	while [ "$gl_i" -le "$gl_seeds" ]; do
		gl_start=$((1 + (gl_i - 1) * lay_seed_mib))
		gl_line="start=$((gl_start * SECTORS_PER_MIB)), size=$((lay_seed_mib * SECTORS_PER_MIB))"
		if [ "$lay_table" = gpt ]; then
			gl_line="$gl_line, type=$GPT_BASIC_DATA, uuid=4D455449-5300-4000-8000-0000000000D$gl_i, name=\"$lay_seed_label\""
		elif [ "$lay_fat" = 32 ]; then
			gl_line="$gl_line, type=c"
		else
			gl_line="$gl_line, type=e"
		fi
		gl_script="$gl_script
$gl_line"
		make_fat "$work/seed$gl_i.fat" "$lay_seed_mib" "$lay_fat" "$lay_seed_label" "4d45d00$gl_i" \
			$((gl_start * SECTORS_PER_MIB)) "$work/layout/boot" "$gl_cluster"
		[ "$lay_fragment" = no ] || fragment_fat "$work/seed$gl_i.fat" $((gl_cluster * 512))
		gl_i=$((gl_i + 1))
	done
	gl_line="start=$((gl_root_start * SECTORS_PER_MIB)), size=$((lay_root_mib * SECTORS_PER_MIB))"
	if [ "$lay_table" = gpt ]; then
		gl_line="$gl_line, type=$GPT_LINUX_FS, uuid=4D455449-5300-4000-8000-0000000000D9, name=\"$lay_root_label\""
	else
		gl_line="$gl_line, type=83"
	fi
	gl_script="$gl_script
$gl_line"
	make_ext4 "$work/root.ext4" "$lay_root_mib" "$lay_root_label" 4d455449-5300-4000-8000-0000000000d9 \
		"$work/layout/root" yes

	gl_img="$work/$lay_name.img"
	new_disk "$gl_img" "$gl_total" "$gl_script"
	gl_i=1
	while [ "$gl_i" -le "$gl_seeds" ]; do
		put_partition "$gl_img" $((1 + (gl_i - 1) * lay_seed_mib)) "$work/seed$gl_i.fat"
		rm -f "$work/seed$gl_i.fat"
		gl_i=$((gl_i + 1))
	done
	put_partition "$gl_img" "$gl_root_start" "$work/root.ext4"
	rm -f "$work/root.ext4"
	mv -f "$gl_img" "$gl_out/$lay_name.img"
	echo "$gl_out/$lay_name.img"
}

# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

mode=standins
fill_mib=0
size_mib=0
lay_name='' lay_table=mbr lay_seed_label='' lay_fat=32 lay_seed_mib=64 lay_root_label='' lay_root_mib=64
lay_armbian=no lay_fragment=no lay_duplicate=no
case "${1:-}" in
--fill)
	[ $# -ge 2 ] || die "--fill needs a size in MiB"
	case $2 in '' | *[!0-9]*) die "--fill takes a whole number of MiB, not '$2'" ;; esac
	fill_mib=$2
	shift 2
	if [ "${1:-}" = --size ]; then
		[ $# -ge 2 ] || die "--size needs a size in MiB"
		case $2 in '' | *[!0-9]*) die "--size takes a whole number of MiB, not '$2'" ;; esac
		size_mib=$2
		shift 2
	fi
	;;
--bootable)
	mode=bootable
	shift
	;;
--layout)
	mode=layout
	[ $# -ge 2 ] || die "--layout needs a name (try --help)"
	lay_name=$2
	shift 2
	while [ $# -gt 0 ]; do
		case $1 in
		--table | --seed-label | --fat | --seed-mib | --root-label | --root-mib)
			[ $# -ge 2 ] || die "$1 needs a value (try --help)"
			case $1 in
			--table) lay_table=$2 ;;
			--seed-label) lay_seed_label=$2 ;;
			--fat) lay_fat=$2 ;;
			--seed-mib) lay_seed_mib=$2 ;;
			--root-label) lay_root_label=$2 ;;
			--root-mib) lay_root_mib=$2 ;;
			esac
			shift 2
			;;
		--armbian) lay_armbian=yes && shift ;;
		--fragment-fat) lay_fragment=yes && shift ;;
		--duplicate-seed) lay_duplicate=yes && shift ;;
		-*) die "unknown --layout option $1 (try --help)" ;;
		*) break ;;
		esac
	done
	case $lay_name in '' | *[!A-Za-z0-9_-]*) die "--layout takes a name of letters, digits, - and _, not '$lay_name'" ;; esac
	case $lay_table in mbr | gpt) ;; *) die "--table takes mbr or gpt, not '$lay_table'" ;; esac
	case $lay_fat in 12 | 16 | 32) ;; *) die "--fat takes 12, 16 or 32, not '$lay_fat'" ;; esac
	for lay_mib in "$lay_seed_mib" "$lay_root_mib"; do
		case $lay_mib in '' | 0 | *[!0-9]*) die "--seed-mib and --root-mib take a whole number of MiB, not '$lay_mib'" ;; esac
	done
	[ -n "$lay_seed_label" ] || die "--layout needs --seed-label"
	[ -n "$lay_root_label" ] || die "--layout needs --root-label"
	[ $# -eq 1 ] || die "--layout needs one OUTDIR after its options (try --help)"
	;;
-h | --help)
	sed -n '2,/^set -eu/p' "$0" | sed -e '/^set -eu/d' -e 's/^# \{0,1\}//'
	exit 0
	;;
-*) die "unknown option $1 (try --help)" ;;
esac
[ $# -le 1 ] || die "too many arguments (try --help)"

for tool in sfdisk mkfs.fat mmd mcopy mdel mke2fs debugfs sha256sum truncate; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool not found; install dosfstools, mtools, e2fsprogs, fdisk"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/metis-golden.XXXXXX")
partial=
trap 'clean_partial; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
write_mke2fs_conf "$work/mke2fs.conf"

case $mode in
standins) gen_standins "${1:-$repo_root/inventory/golden}" ;;
bootable) gen_bootable "${1:-}" ;;
layout) gen_layout "$1" ;;
esac
