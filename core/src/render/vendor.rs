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
        Os::Ubuntu | Os::Armbian => vec![cloud_init_local_dropin(&node.name)],
        Os::Debian => Vec::new(),
    }
}

/// The systemd drop-in that starts cloud-init's local stage only after
/// `local-fs.target`, so it finds the seed through the image's own mount of the
/// boot partition instead of racing it (see [`root_files`]).
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
        // Armbian's first boot writes a random `ethaddr` into armbianEnv.txt
        // when it finds none; pinning the node's MAC keeps its address (and
        // the MAC match of network-config) stable.
        Os::Armbian => node
            .interfaces
            .first()
            .map(|i| KeyValueEdit {
                path: paths::ARMBIAN_ENV.into(),
                key: "ethaddr".into(),
                value: i.mac.to_ascii_lowercase(),
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
