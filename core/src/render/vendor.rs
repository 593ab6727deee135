//! What a vendor image does at first boot that would undo the node's identity,
//! and the edits that stop it.

use super::{paths, KeyValueEdit, RootFile};
use crate::inventory::{Class, Node, Os};

/// Whole files for the root filesystem (written by the image engine at build time).
pub(super) fn root_files(class: &Class, node: &Node) -> Vec<RootFile> {
    match class.os {
        // The seed is the boot partition, which the vendor's fstab also mounts
        // (/boot/firmware, /boot). cloud-init-local is not ordered after that
        // mount: when it probes the seed while systemd mounts it, its own mount
        // fails ("Failed to mount … when looking for data"), NoCloud is found
        // only in the network stage and the first boot runs on the fallback
        // DHCP network instead of the node's static address (seen under QEMU,
        // builder/tests/boot_chain.rs; cloud-init issue #6614). nofail data
        // disks are not ordered before local-fs.target, so a missing disk
        // does not hold this up.
        Os::Ubuntu => vec![cloud_init_local_dropin(&node.name)],
        Os::Armbian => std::iter::once(cloud_init_local_dropin(&node.name))
            .chain(armbian_firstrun_dropin(node))
            .collect(),
        Os::Debian => Vec::new(),
    }
}

/// The MAC Armbian's boot loader gives the first interface (`ethaddr` in
/// armbianEnv.txt): the node's own, the one network-config matches.
fn armbian_ethaddr(node: &Node) -> Option<String> {
    node.interfaces.first().map(|i| i.mac.to_ascii_lowercase())
}

/// The drop-in that puts the node's `ethaddr` back after armbian-firstrun.
///
/// armbian-firstrun (armbian/build,
/// packages/bsp/common/usr/lib/armbian/armbian-firstrun) rewrites every
/// `^ethaddr=` line of /boot/armbianEnv.txt with a random MAC whenever the
/// file exists; no setting in /etc/default/armbian-firstrun turns that off.
/// U-Boot reads the file at the next boot, so without this the node would come
/// back from its first reboot with a random MAC and network-config's
/// match-by-MAC would miss. The unit is `Type=simple`, which would start a
/// post command beside the script instead of after it: as `oneshot` without
/// `RemainAfterExit`, `ExecStopPost=` runs as soon as the script ends, whether
/// it succeeded or failed. The rest of first-run (locale, console, Bluetooth
/// tweaks) still runs. core/tests/fixtures/armbian-firstrun-mac.bash runs the
/// real script's lines against it.
fn armbian_firstrun_dropin(node: &Node) -> Option<RootFile> {
    let mac = armbian_ethaddr(node)?;
    Some(RootFile {
        path: paths::ARMBIAN_FIRSTRUN_DROPIN.into(),
        content: format!(
            "# Rendered by Metis for node {node}: armbian-firstrun writes a random\n\
             # ethaddr into /boot/armbianEnv.txt; put the node's MAC back as soon as\n\
             # it ends, so every later boot keeps the MAC network-config matches.\n\
             [Service]\n\
             Type=oneshot\n\
             RemainAfterExit=no\n\
             ExecStopPost=-/bin/sed -i -e \"s/^ethaddr=.*/ethaddr={mac}/\" {env}\n",
            node = node.name,
            env = paths::ARMBIAN_BOOT_ENV,
        )
        .into_bytes(),
        mode: 0o644,
    })
}

/// The systemd drop-in that starts cloud-init's local stage only after
/// `local-fs.target`, so it finds the seed through the image's own mount of the
/// boot partition instead of racing it (see `root_files`).
pub fn cloud_init_local_dropin(node: &str) -> RootFile {
    RootFile {
        path: paths::CLOUD_INIT_LOCAL_DROPIN.into(),
        content: format!(
            "# Rendered by Metis for node {node}: find the seed only once the image's\n\
             # own mounts of it are done, so first boot gets the node's network.\n\
             [Unit]\n\
             After=local-fs.target\n"
        )
        .into_bytes(),
        mode: 0o644,
    }
}

/// Edits of files on the root filesystem (applied by the image engine at build time).
pub(super) fn root_edits(class: &Class) -> Vec<KeyValueEdit> {
    match class.os {
        // armbian-firstrun deletes and regenerates the SSH host keys at first
        // boot unless told not to; the node's own keys come from the bundle.
        Os::Armbian => vec![KeyValueEdit {
            path: paths::ARMBIAN_FIRSTRUN.into(),
            key: "OPENSSHD_REGENERATE_HOST_KEYS".into(),
            value: "false".into(),
        }],
        Os::Ubuntu | Os::Debian => Vec::new(),
    }
}

/// Edits of files on the seed partition (applied by the image engine at build time).
pub(super) fn seed_edits(class: &Class, node: &Node) -> Vec<KeyValueEdit> {
    match class.os {
        // On boards Armbian boots with U-Boot, `ethaddr` in armbianEnv.txt is
        // the MAC the kernel gets; pinning the node's keeps it (and the MAC
        // match of network-config) from the first boot on. armbian-firstrun
        // overwrites it with a random one during that boot; the drop-in of
        // [`armbian_firstrun_dropin`] writes it back. (Raspberry Pi boards
        // boot without U-Boot and keep the MAC of their OTP either way.)
        Os::Armbian => armbian_ethaddr(node)
            .map(|mac| KeyValueEdit {
                path: paths::ARMBIAN_ENV.into(),
                key: "ethaddr".into(),
                value: mac,
            })
            .into_iter()
            .collect(),
        Os::Ubuntu | Os::Debian => Vec::new(),
    }
}

impl KeyValueEdit {
    /// The file after the edit: the first `key=…` line gets the new value and
    /// later `key=…` lines are dropped (the last one would win in both
    /// armbianEnv.txt and a sourced shell file); without one, `key=value` is
    /// appended. Every other line, comments included, is kept byte for byte.
    /// `existing` is `None` when the file does not exist.
    pub fn apply(&self, existing: Option<&[u8]>) -> Vec<u8> {
        let line = format!("{}={}", self.key, self.value);
        let prefix = format!("{}=", self.key);
        let mut out = Vec::new();
        let mut done = false;
        let existing = existing.unwrap_or_default();
        for l in existing.split_inclusive(|b| *b == b'\n') {
            let body = l.strip_suffix(b"\n").unwrap_or(l);
            let body = body.strip_suffix(b"\r").unwrap_or(body);
            if body.starts_with(prefix.as_bytes()) {
                if !done {
                    out.extend_from_slice(line.as_bytes());
                    out.extend_from_slice(&l[body.len()..]);
                    if !l.ends_with(b"\n") {
                        out.push(b'\n');
                    }
                    done = true;
                }
            } else {
                out.extend_from_slice(l);
            }
        }
        if !done {
            if !out.is_empty() && !out.ends_with(b"\n") {
                out.push(b'\n');
            }
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit() -> KeyValueEdit {
        KeyValueEdit {
            path: "armbianEnv.txt".into(),
            key: "ethaddr".into(),
            value: "dc:a6:32:00:00:13".into(),
        }
    }

    #[test]
    fn apply_matrix() {
        let cases: &[(Option<&str>, &str)] = &[
            (None, "ethaddr=dc:a6:32:00:00:13\n"),
            (Some(""), "ethaddr=dc:a6:32:00:00:13\n"),
            (
                Some("verbosity=1\nethaddr=aa:bb:cc:dd:ee:ff\nconsole=both\n"),
                "verbosity=1\nethaddr=dc:a6:32:00:00:13\nconsole=both\n",
            ),
            (
                Some("verbosity=1\nconsole=both"),
                "verbosity=1\nconsole=both\nethaddr=dc:a6:32:00:00:13\n",
            ),
            (
                Some("ethaddr=1\r\nx=2\r\nethaddr=3\r\n"),
                "ethaddr=dc:a6:32:00:00:13\r\nx=2\r\n",
            ),
            (
                Some("#ethaddr=commented\nethaddrx=other\n"),
                "#ethaddr=commented\nethaddrx=other\nethaddr=dc:a6:32:00:00:13\n",
            ),
            (Some("ethaddr=old"), "ethaddr=dc:a6:32:00:00:13\n"),
        ];
        for (before, after) in cases {
            let got = edit().apply(before.map(str::as_bytes));
            assert_eq!(String::from_utf8(got).unwrap(), *after, "from {before:?}");
        }
    }

    #[test]
    fn apply_is_idempotent() {
        let once = edit().apply(Some(b"a=1\nethaddr=x\n"));
        assert_eq!(edit().apply(Some(&once)), once);
    }
}
