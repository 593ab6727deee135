//! A node's data disks: UUID, mount point, options, filesystem.

use std::collections::HashMap;
use std::path::Path;

use super::cx::Cx;
use super::hints::*;
use crate::inventory::diag::Pos;
use crate::inventory::model::*;
use crate::inventory::rules;
use crate::inventory::schema;

impl Cx {
    /// A node's data disks (Longhorn or not), mounted by filesystem UUID.
    pub(super) fn disks(&mut self, file: &Path, f: &schema::NodeFile) -> Vec<Disk> {
        let mut disks = Vec::new();
        let mut mounts: HashMap<String, u64> = HashMap::new();
        for d in &f.disks {
            let at = Pos::of(d);
            let d = &d.value;
            let uuid = match &d.uuid {
                Some(u) => self.rule(file, u, H_UUID, |v| rules::fs_uuid(v)),
                None => {
                    let what = if d.longhorn { "Longhorn disk" } else { "disk" };
                    self.err(file, at, format!("{what} has no `uuid`"), "disks are mounted by filesystem UUID so a renamed device cannot be mounted in its place; take it from `blkid` on the node");
                    None
                }
            };
            let mount = match &d.mount {
                Some(m) => {
                    if !m.value.starts_with('/') || m.value == "/" || m.value.contains("..") {
                        self.err(
                            file,
                            Pos::of(m),
                            format!(
                                "mount point `{}` must be an absolute path other than /",
                                m.value
                            ),
                            "write the full path without `..`, e.g. `mount: /var/lib/longhorn`",
                        );
                    }
                    if m.value
                        .contains(|c: char| c.is_whitespace() || c.is_control() || c == '\\')
                    {
                        self.err(
                            file,
                            Pos::of(m),
                            format!(
                                "mount point `{}` contains whitespace or a backslash, which fstab cannot hold as written",
                                m.value
                            ),
                            "choose a mount point without spaces or backslashes, e.g. `/var/lib/longhorn-2`",
                        );
                    }
                    if let Some(prev) = mounts.insert(m.value.clone(), Pos::of(m).line) {
                        self.err(
                            file,
                            Pos::of(m),
                            format!(
                                "mount point `{}` is used twice (also at line {prev})",
                                m.value
                            ),
                            "give each disk its own mount point, e.g. `/var/lib/longhorn-2`",
                        );
                    }
                    Some(m.value.clone())
                }
                None => {
                    self.err(
                        file,
                        at,
                        "disk has no `mount` point",
                        "add `mount: /var/lib/longhorn` (or where it belongs)",
                    );
                    None
                }
            };
            if let Some(bad) = d.options.iter().find(|o| {
                o.is_empty()
                    || o.contains(|c: char| c.is_whitespace() || c.is_control() || c == '\\')
            }) {
                self.err(
                    file,
                    at,
                    format!("mount option `{bad}` is empty or contains whitespace or a backslash, which fstab cannot hold as written"),
                    "write each option as its own list item without spaces, e.g. `options: [noatime, discard]`",
                );
            }
            let filesystem = match &d.filesystem {
                Some(fs) => self
                    .one_of(file, fs, "filesystem", &["ext4", "xfs", "btrfs"])
                    .map(str::to_string),
                None => Some("ext4".to_string()),
            };
            if let (Some(uuid), Some(mount), Some(filesystem)) = (uuid, mount, filesystem) {
                disks.push(Disk {
                    uuid,
                    mount,
                    filesystem,
                    longhorn: d.longhorn,
                    options: d.options.clone(),
                });
            }
        }
        disks
    }
}
