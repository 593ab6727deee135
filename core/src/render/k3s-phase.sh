#!/bin/sh
# Metis k3s phase: data disks, then k3s in the node's role, then the node's
# hooks. Written by cloud-init (write_files) to /usr/local/lib/metis/ and run by
# its runcmd at first boot, after the secrets phase and write_files:
#
#     sh /usr/local/lib/metis/k3s-phase.sh
#
# Idempotent: run it again after fixing a problem (a missing disk, say); what is
# already in place is left alone and a second run changes no file.
#
#  1. Adds the node's data disks (/etc/metis/fstab, by UUID, nofail) to
#     /etc/fstab, creates the mount points and mounts them, waiting up to the
#     disk timeout for each to appear.
#  2. Only if every Longhorn disk is mounted and the join token is installed,
#     enables and starts k3s from what the golden image carries (k3s.service for
#     a server, k3s-agent.service for an agent; never a download). Role none:
#     no k3s.
#  3. Runs the node's hook commands in order; each one that succeeds is not run
#     again.
#  4. Writes /var/lib/metis/bootstrap.json (what is in place, what failed).
#
# Every step is logged to the journal with tag metis-bootstrap. A failure is
# also written to the console, to /etc/motd.d/50-metis-bootstrap (shown at
# login until a run succeeds) and to the status file, and the exit status is 1.
#
# Every path on the node is prefixed with ${METIS_ROOT:-}, so tests run this in
# a throwaway root.
set -eu

umask 022
export LC_ALL=C

ROOT=${METIS_ROOT:-}
TAG=metis-bootstrap
LIB=/usr/local/lib/metis
STATE=$ROOT/var/lib/metis
STATUS=$STATE/bootstrap.json
MOTD=$ROOT/etc/motd.d/50-metis-bootstrap
JOURNALD_DROPIN=$ROOT/etc/systemd/journald.conf.d/60-metis.conf

# The node's parameters, rendered by Metis: METIS_NODE, METIS_ROLE,
# METIS_K3S_UNIT, METIS_TOKEN_FILE, METIS_DISK_TIMEOUT, METIS_LONGHORN_MOUNTS.
# shellcheck source=/dev/null
. "$ROOT/etc/metis/node.env"
# Tests shorten the wait for a disk that will never come.
: "${METIS_DISK_WAIT:=$METIS_DISK_TIMEOUT}"

failures=
note() {
	logger -t "$TAG" -p user.info -- "k3s phase: $*" || :
}
fail() {
	logger -t "$TAG" -p user.err -- "k3s phase: $*" || :
	echo "metis-bootstrap: k3s phase: $*" >&2
	failures="$failures$*
"
}

# JSON string of $1 (our own paths and messages: no control characters).
json() {
	printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"
}

# Writes stdin (text ending in one newline) to $1 only if it differs, so a
# second run leaves the file and its directory untouched.
write_if_changed() {
	content=$(cat)
	if ! printf '%s\n' "$content" | cmp -s - "$1" 2>/dev/null; then
		printf '%s\n' "$content" >"$1.metis-new"
		mv -f "$1.metis-new" "$1"
	fi
}

mkdir -p "$STATE"

# --- 1. Data disks -----------------------------------------------------------
fstab=$ROOT/etc/fstab
fstab_changed=
if [ -f "$ROOT/etc/metis/fstab" ]; then
	while IFS= read -r line; do
		case $line in '' | '#'*) continue ;; esac
		if ! grep -qxF -- "$line" "$fstab" 2>/dev/null; then
			# Keep the last line of an fstab without a final newline intact.
			if [ -s "$fstab" ] && [ -n "$(tail -c 1 "$fstab")" ]; then
				echo >>"$fstab"
			fi
			printf '%s\n' "$line" >>"$fstab"
			fstab_changed=1
			note "added to /etc/fstab: $line"
		fi
	done <"$ROOT/etc/metis/fstab"
fi
if [ -n "$fstab_changed" ]; then
	# Let systemd-fstab-generator make the mount units RequiresMountsFor= needs.
	systemctl daemon-reload || fail "systemctl daemon-reload failed"
fi

disks_json=
longhorn_missing=
if [ -f "$ROOT/etc/metis/fstab" ]; then
	while read -r spec mnt _fstype _opts _rest; do
		case $spec in '' | '#'*) continue ;; esac
		uuid=${spec#UUID=}
		longhorn=false
		case " $METIS_LONGHORN_MOUNTS " in *" $mnt "*) longhorn=true ;; esac
		mkdir -p "$ROOT$mnt"
		if mountpoint -q "$ROOT$mnt"; then
			state=mounted
		else
			waited=0
			while [ ! -e "$ROOT/dev/disk/by-uuid/$uuid" ] && [ "$waited" -lt "$METIS_DISK_WAIT" ]; do
				sleep 1
				waited=$((waited + 1))
			done
			if [ ! -e "$ROOT/dev/disk/by-uuid/$uuid" ]; then
				state=missing
				fail "disk UUID=$uuid for $mnt is missing (waited ${waited}s); is it plugged in and powered?"
			elif mount "$ROOT$mnt" && mountpoint -q "$ROOT$mnt"; then
				state=mounted
				note "mounted UUID=$uuid at $mnt"
			else
				state=unmountable
				fail "disk UUID=$uuid is present but could not be mounted at $mnt; see journalctl -b"
			fi
		fi
		if [ "$state" != mounted ] && [ "$longhorn" = true ]; then
			longhorn_missing="$longhorn_missing $mnt"
		fi
		disks_json="$disks_json${disks_json:+,}
    {\"uuid\": $(json "$uuid"), \"mount\": $(json "$mnt"), \"longhorn\": $longhorn, \"state\": $(json "$state")}"
	done <"$ROOT/etc/metis/fstab"
fi

# Owners of secret files the secrets phase could not set (users did not exist).
if [ -f "$STATE/pending-owners" ]; then
	still=
	while read -r owner path; do
		[ -n "$path" ] || continue
		if chown "$owner" "$ROOT$path" 2>/dev/null; then
			note "owner of $path set to $owner"
		else
			still="$still$owner $path
"
			fail "cannot give $path to $owner; does the user exist?"
		fi
	done <"$STATE/pending-owners"
	if [ -n "$still" ]; then
		printf '%s' "$still" | write_if_changed "$STATE/pending-owners"
	else
		rm -f "$STATE/pending-owners"
	fi
fi

# journald reads its drop-ins only when it starts; restart it once per change.
if [ -f "$JOURNALD_DROPIN" ]; then
	sum=$(cksum <"$JOURNALD_DROPIN")
	if [ "$(cat "$STATE/journald-applied" 2>/dev/null || :)" != "$sum" ]; then
		if systemctl try-restart systemd-journald.service; then
			printf '%s\n' "$sum" | write_if_changed "$STATE/journald-applied"
			note "journald limits applied"
		else
			fail "could not restart systemd-journald; its limits apply from the next boot"
		fi
	fi
fi

# --- 2. k3s ------------------------------------------------------------------
if [ -z "$METIS_K3S_UNIT" ]; then
	k3s_state=none
	note "role $METIS_ROLE: no k3s"
elif [ -n "$longhorn_missing" ]; then
	k3s_state=blocked
	fail "$METIS_K3S_UNIT not started: Longhorn disk(s) not mounted:$longhorn_missing"
elif [ ! -s "$ROOT$METIS_TOKEN_FILE" ]; then
	k3s_state=blocked
	fail "$METIS_K3S_UNIT not started: no join token at $METIS_TOKEN_FILE (the card's secrets were not installed; flash it with metis-flash)"
else
	k3s_state=enabled
	if ! systemctl is-enabled --quiet "$METIS_K3S_UNIT"; then
		# Pick up the unit drop-in cloud-init just wrote.
		systemctl daemon-reload || fail "systemctl daemon-reload failed"
		if systemctl enable "$METIS_K3S_UNIT"; then
			note "enabled $METIS_K3S_UNIT"
		else
			k3s_state=failed
			fail "could not enable $METIS_K3S_UNIT; does the golden image carry it?"
		fi
	fi
	# --no-block: k3s units wait for the cluster with no start timeout; a
	# blocking start would hold cloud-init's final stage until the join succeeds.
	if [ "$k3s_state" = enabled ] && ! systemctl is-active --quiet "$METIS_K3S_UNIT"; then
		if systemctl start --no-block "$METIS_K3S_UNIT"; then
			note "started $METIS_K3S_UNIT"
		else
			k3s_state=failed
			fail "could not start $METIS_K3S_UNIT"
		fi
	fi
fi

# --- 3. Hooks ----------------------------------------------------------------
hooks_json=
mkdir -p "$STATE/hooks"
for hook in "$ROOT$LIB"/hooks/*.sh; do
	[ -f "$hook" ] || continue
	name=$(basename "$hook" .sh)
	sum=$(cksum <"$hook")
	if [ "$(cat "$STATE/hooks/$name.done" 2>/dev/null || :)" = "$sum" ]; then
		state="done"
	elif output=$(cd / && sh "$hook" 2>&1); then
		state="done"
		printf '%s\n' "$sum" >"$STATE/hooks/$name.done"
		note "hook $name done"
		[ -z "$output" ] || printf '%s\n' "$output" | logger -t "$TAG" -p user.info || :
	else
		rc=$?
		state=failed
		[ -z "$output" ] || printf '%s\n' "$output" | logger -t "$TAG" -p user.err || :
		fail "hook $name failed with status $rc (see $LIB/hooks/$name.sh)"
	fi
	hooks_json="$hooks_json${hooks_json:+,}
    {\"hook\": $(json "$name"), \"state\": $(json "$state")}"
done

# --- 4. Status ---------------------------------------------------------------
if [ -f "$STATE/secrets-installed" ]; then secrets=installed; else secrets=absent; fi
failed_json=
if [ -n "$failures" ]; then
	while IFS= read -r f; do
		[ -n "$f" ] || continue
		failed_json="$failed_json${failed_json:+,}
    $(json "$f")"
	done <<EOF
$failures
EOF
fi
if [ -n "$failures" ]; then ok=false; else ok=true; fi
{
	printf '{\n  "format": 1,\n  "node": %s,\n  "role": %s,\n  "ok": %s,\n' \
		"$(json "$METIS_NODE")" "$(json "$METIS_ROLE")" "$ok"
	printf '  "secrets": %s,\n' "$(json "$secrets")"
	printf '  "disks": [%s%s],\n' "$disks_json" "${disks_json:+
  }"
	printf '  "k3s": {"unit": %s, "state": %s},\n' "$(json "$METIS_K3S_UNIT")" "$(json "$k3s_state")"
	printf '  "hooks": [%s%s],\n' "$hooks_json" "${hooks_json:+
  }"
	printf '  "failed": [%s%s]\n}\n' "$failed_json" "${failed_json:+
  }"
} | write_if_changed "$STATUS"

if [ -n "$failures" ]; then
	mkdir -p "$(dirname "$MOTD")"
	{
		echo "*** Metis bootstrap of $METIS_NODE did not complete:"
		printf '%s' "$failures" | sed 's/^/***   /'
		echo "*** Fix it, then run: sudo sh $LIB/k3s-phase.sh"
		echo "*** Details: journalctl -t $TAG; /var/lib/metis/bootstrap.json"
	} | write_if_changed "$MOTD"
	exit 1
fi
rm -f "$MOTD"
note "done: node $METIS_NODE, role $METIS_ROLE, k3s $k3s_state"
