//! The first-boot bootstrap: the two POSIX sh phases and the per-node files
//! they read.
//!
//! The phase scripts are the same for every node (kept as `.sh` files beside
//! this module, so `shellcheck` runs on them as written); what differs per node
//! is in `/etc/metis/node.env`, `/etc/metis/fstab` and the hook scripts.

use std::fmt::Write as _;

use super::{k3s, paths, RenderError};
use crate::inventory::{Class, Node};

/// The secrets phase, shipped on the seed partition as [`paths::SEED_SECRETS_PHASE`].
pub const SECRETS_PHASE: &str = include_str!("secrets-phase.sh");
/// The k3s phase, written by cloud-init to [`paths::K3S_PHASE`].
pub const K3S_PHASE: &str = include_str!("k3s-phase.sh");

/// Characters a mount point or option may not contain: fstab separates fields
/// with whitespace (and would need octal escapes), node.env lists mount points
/// separated by spaces.
fn plain(s: &str) -> bool {
    !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
}

/// `'…'` for sh, with embedded quotes spelled `'\''`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The node's fstab lines for its data disks, by filesystem UUID, `nofail`
/// (a missing disk never stops the boot) with a device timeout (how long
/// systemd waits for a slow USB disk). Longhorn disks are kept from k3s by the
/// unit drop-in and by the k3s phase.
pub(super) fn fstab(node: &Node) -> Result<Option<String>, RenderError> {
    if node.disks.is_empty() {
        return Ok(None);
    }
    let mut out = format!(
        "# Rendered by Metis for node {}: data disks by UUID. The k3s phase adds\n\
         # these lines to /etc/fstab.\n",
        node.name
    );
    for d in &node.disks {
        let mut opts = vec![
            "defaults".to_string(),
            "nofail".to_string(),
            format!(
                "x-systemd.device-timeout={}s",
                node.settings.disk_timeout_sec
            ),
        ];
        opts.extend(d.options.iter().cloned());
        if let Some(bad) = std::iter::once(&d.mount)
            .chain(d.options.iter())
            .find(|s| !plain(s))
        {
            return Err(RenderError::Unrenderable {
                node: node.name.clone(),
                what: format!(
                    "disk {}: `{bad}` contains whitespace or a backslash, which fstab cannot hold as written",
                    d.uuid
                ),
            });
        }
        let passno = if d.filesystem == "ext4" { 2 } else { 0 };
        let _ = writeln!(
            out,
            "UUID={} {} {} {} 0 {passno}",
            d.uuid,
            d.mount,
            d.filesystem,
            opts.join(",")
        );
    }
    Ok(Some(out))
}

/// `/etc/metis/node.env`, sourced by the k3s phase.
pub(super) fn node_env(node: &Node) -> String {
    let longhorn = super::longhorn_mounts(node);
    let mut out = format!(
        "# Rendered by Metis for node {}: parameters of the k3s phase.\n",
        node.name
    );
    for (key, value) in [
        ("METIS_NODE", node.name.clone()),
        ("METIS_ROLE", node.role.to_string()),
        (
            "METIS_K3S_UNIT",
            k3s::unit(node.role).unwrap_or_default().to_string(),
        ),
        ("METIS_TOKEN_FILE", paths::K3S_TOKEN.to_string()),
        (
            "METIS_DISK_TIMEOUT",
            node.settings.disk_timeout_sec.to_string(),
        ),
        ("METIS_LONGHORN_MOUNTS", longhorn.join(" ")),
    ] {
        let _ = writeln!(out, "{key}={}", sh_quote(&value));
    }
    out
}

/// The hook commands as scripts `/usr/local/lib/metis/hooks/NNN.sh`, in order.
pub(super) fn hook_scripts(node: &Node) -> Vec<(String, String)> {
    node.hooks
        .commands
        .iter()
        .enumerate()
        .map(|(i, cmd)| {
            let mut body = format!(
                "# Rendered by Metis for node {}: hook command {} of {}, run by the\n\
                 # k3s phase; not run again once it succeeded.\n",
                node.name,
                i + 1,
                node.hooks.commands.len()
            );
            body.push_str(cmd);
            if !cmd.ends_with('\n') {
                body.push('\n');
            }
            (format!("{}/{:03}.sh", paths::HOOKS_DIR, i + 1), body)
        })
        .collect()
}

/// The `bootcmd` entry: find the seed partition (by label or GPT partition name,
/// as the class names it: [`PartitionSelector::device_path`]), mount it if nothing
/// has (Ubuntu mounts `system-boot` at /boot/firmware, Armbian `armbi_boot` at
/// /boot, a cloud image's `CIDATA` is not mounted), run the secrets phase from
/// it, and unmount what it mounted.
///
/// bootcmd runs before `write_files`, so the secrets phase cannot come from
/// user-data; it is a seed file. bootcmd runs on every boot; with the slot
/// zeroed the phase does nothing.
pub(super) fn bootcmd(node: &Node, class: &Class) -> String {
    format!(
        r#"# Metis secrets phase (every boot; does nothing once the slot is zeroed).
dev={dir}{name}
mnt=$(findmnt -nro TARGET --source "$dev" 2>/dev/null | head -n 1) || mnt=
own=
if [ -z "$mnt" ] && [ -e "$dev" ]; then
  mkdir -p /run/metis/seed
  if mount -t {fstype} -o rw "$dev" /run/metis/seed; then
    mnt=/run/metis/seed
    own=1
  fi
fi
if [ -z "$mnt" ]; then
  logger -t metis-bootstrap -p user.err "secrets phase: seed partition $dev not found; secrets not installed"
  echo "metis-bootstrap: secrets phase: seed partition $dev not found" >&2
  exit 1
fi
rc=0
sh "$mnt/{script}" "$mnt" {node} || rc=$?
if [ -n "$own" ]; then umount "$mnt" || true; fi
exit "$rc"
"#,
        dir = class.seed.selector.device_dir(),
        name = sh_quote(class.seed.selector.value()),
        fstype = class.seed.filesystem.mount_type(),
        script = paths::SEED_SECRETS_PHASE,
        node = sh_quote(&node.name),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sh_quote_survives_quotes() {
        assert_eq!(sh_quote("a'b"), r"'a'\''b'");
        assert_eq!(sh_quote(""), "''");
    }

    #[test]
    fn plain_rejects_what_fstab_cannot_hold() {
        assert!(plain("/var/lib/longhorn"));
        assert!(plain("noatime"));
        for bad in ["", "/mnt/my disk", "/mnt/a\tb", "/mnt/a\\b", "/mnt/a\nb"] {
            assert!(!plain(bad), "{bad:?}");
        }
    }
}
