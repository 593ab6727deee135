#!/bin/sh
# Metis secrets phase: installs the node's secrets from the card's secrets slot,
# then zeroes the slot. Shipped on the seed partition as metis/secrets-phase.sh
# and run by cloud-init's bootcmd on every boot (init stage, before sshd starts)
# with the seed partition mounted:
#
#     sh SEED/metis/secrets-phase.sh SEED NODE
#
# SEED is where the seed partition is mounted, NODE the node this card is for.
# The slot is SEED/metis-secrets.bin: a ustar archive (docs/bundle.md) followed
# by zeros, or all zeros once installed. An empty slot means there is nothing
# to do, so every boot after the first changes nothing.
#
# Order matters: every file is installed and synced before the slot is zeroed,
# so a failure never loses the secrets; the slot is zeroed in place (same size,
# same clusters on the FAT) so the image engine's recorded location stays true.
# Secret values are never printed: only paths are logged.
#
# Every path on the node is prefixed with ${METIS_ROOT:-}, so tests run this in
# a throwaway root.
set -eu

umask 077
export LC_ALL=C

ROOT=${METIS_ROOT:-}
TAG=metis-bootstrap
STATE=$ROOT/var/lib/metis
BUNDLE_FORMAT=1

seed=${1:?usage: secrets-phase.sh SEED_DIR NODE}
node=${2:?usage: secrets-phase.sh SEED_DIR NODE}
slot=$seed/metis-secrets.bin

log() {
	logger -t "$TAG" -p user.info -- "secrets phase: $*" || :
}

die() {
	logger -t "$TAG" -p user.err -- "secrets phase: $*" || :
	echo "metis-bootstrap: secrets phase: $*" >&2
	exit 1
}

if [ ! -f "$slot" ]; then
	log "no secrets slot at $slot; nothing to install"
	exit 0
fi

# A ustar header carries "ustar" at offset 257; a zeroed slot does not.
magic=$(dd if="$slot" bs=1 skip=257 count=5 2>/dev/null || :)
if [ "$magic" != ustar ]; then
	log "secrets slot is empty; nothing to install"
	exit 0
fi

# Unpack on tmpfs (/run), never on the card or the root filesystem.
stage=$ROOT/run/metis/secrets.$$
rm -rf "$stage"
mkdir -p "$stage"
trap 'rm -rf "$stage"' EXIT
trap 'exit 1' HUP INT TERM
tar -xf "$slot" -C "$stage" || die "cannot unpack the secrets slot $slot; it is left as it is"

manifest=$stage/manifest
[ -f "$manifest" ] || die "the secrets slot has no manifest; it is left as it is"
{
	read -r word version || :
	read -r key bundle_node || :
} <"$manifest"
[ "${word:-}" = metis-bundle ] || die "the secrets slot is not a Metis bundle; it is left as it is"
[ "${version:-}" = "$BUNDLE_FORMAT" ] ||
	die "secrets bundle format ${version:-?} is not $BUNDLE_FORMAT; this card needs a newer seed"
if [ "${key:-}" != node ] || [ "${bundle_node:-}" != "$node" ]; then
	die "the secrets slot is for node '${bundle_node:-?}', not '$node'; it is left as it is"
fi

installed=0
pending=
while read -r kind mode owner path; do
	case $kind in
	metis-bundle | node) continue ;;
	file) ;;
	*) die "unknown manifest entry '$kind'" ;;
	esac
	case $path in
	/*) ;;
	*) die "manifest path '$path' is not absolute" ;;
	esac
	src=$stage/files$path
	dst=$ROOT$path
	[ -f "$src" ] || die "the bundle lacks $path"
	(umask 022 && mkdir -p "$(dirname "$dst")")
	# Copied with umask 077 (mode 0600) and only then given its mode, so no
	# secret is readable by others for even a moment.
	rm -f "$dst.metis-new"
	cp "$src" "$dst.metis-new"
	chmod "$mode" "$dst.metis-new"
	if ! chown "$owner" "$dst.metis-new" 2>/dev/null; then
		# The owner may not exist yet: cloud-init creates users after bootcmd.
		# The k3s phase applies it later.
		chown 0:0 "$dst.metis-new"
		pending="$pending$owner $path
"
	fi
	mv -f "$dst.metis-new" "$dst"
	log "installed $path (mode $mode, owner $owner)"
	installed=$((installed + 1))
done <"$manifest"

(umask 022 && mkdir -p "$STATE")
if [ -n "$pending" ]; then
	printf '%s' "$pending" >>"$STATE/pending-owners"
fi
# Which secret files the bundle installed (paths only), for the status file.
sed -n 's/^file [0-7]* [^ ]* //p' "$manifest" >"$STATE/secrets-installed.new"
chmod 0644 "$STATE/secrets-installed.new"
mv -f "$STATE/secrets-installed.new" "$STATE/secrets-installed"
sync

# Zero the slot in place: same size, same clusters (conv=notrunc), then sync.
size=$(wc -c <"$slot")
if [ $((size % 512)) -eq 0 ]; then
	zeroed=$(dd if=/dev/zero of="$slot" bs=512 count=$((size / 512)) conv=notrunc 2>&1) || zeroed=failed
else
	zeroed=$(dd if=/dev/zero of="$slot" bs=1 count="$size" conv=notrunc 2>&1) || zeroed=failed
fi
sync
if [ "$zeroed" = failed ] || [ "$(dd if="$slot" bs=1 skip=257 count=5 2>/dev/null || :)" = ustar ]; then
	die "installed $installed secret file(s) but could not zero the secrets slot $slot: the secrets are still on the card; wipe that file"
fi
log "installed $installed secret file(s); secrets slot zeroed"
