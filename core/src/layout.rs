//! Which partition of a card is the seed: the one card-layout type that the
//! inventory (a class's `seed:`), image building, the golden import's contract
//! check and the node's bootstrap script share, so a class that names its seed
//! by GPT partition name is honoured everywhere, not by label in one place and
//! by name in another.

use std::fmt;

use serde::ser::SerializeMap as _;
use serde::{Serialize, Serializer};

/// How a class names a partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PartitionSelector {
    /// By filesystem label (FAT: case-insensitive, as DOS and blkid compare
    /// them; ext4: exact).
    Label(String),
    /// By GPT partition name (exact).
    GptName(String),
}

impl PartitionSelector {
    /// The class file's key for this selector (`label` or `gpt_name`).
    pub fn key(&self) -> &'static str {
        match self {
            PartitionSelector::Label(_) => "label",
            PartitionSelector::GptName(_) => "gpt_name",
        }
    }

    /// The label or name itself.
    pub fn value(&self) -> &str {
        match self {
            PartitionSelector::Label(v) | PartitionSelector::GptName(v) => v,
        }
    }

    /// Where udev makes the partition appear on the booted node
    /// (`60-persistent-storage.rules`): this directory, then [`Self::value`].
    /// A FAT label is found as blkid reports it, upper case as mkfs.fat writes it.
    pub fn device_dir(&self) -> &'static str {
        match self {
            PartitionSelector::Label(_) => "/dev/disk/by-label/",
            PartitionSelector::GptName(_) => "/dev/disk/by-partlabel/",
        }
    }

    /// The partition's device path on the booted node.
    pub fn device_path(&self) -> String {
        format!("{}{}", self.device_dir(), self.value())
    }
}

impl fmt::Display for PartitionSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartitionSelector::Label(l) => write!(f, "filesystem label {l:?}"),
            PartitionSelector::GptName(n) => write!(f, "GPT partition name {n:?}"),
        }
    }
}

/// Filesystem of a seed partition (cloud-init's NoCloud reads only FAT here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SeedFilesystem {
    /// FAT12/16/32.
    Vfat,
}

impl SeedFilesystem {
    /// The type `mount -t` takes on the node.
    pub fn mount_type(self) -> &'static str {
        match self {
            SeedFilesystem::Vfat => "vfat",
        }
    }
}

/// The seed partition of a class: how it is found, and its filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedPartition {
    /// How it is found.
    pub selector: PartitionSelector,
    /// Its filesystem.
    pub filesystem: SeedFilesystem,
}

/// As the class file writes it: `{label: …, filesystem: …}` or
/// `{gpt_name: …, filesystem: …}` (the publish plan's input digest hashes a
/// class through this, so a label-selected seed serialises as it always has).
impl Serialize for SeedPartition {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry(self.selector.key(), self.selector.value())?;
        map.serialize_entry("filesystem", &self.filesystem)?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_selector_has_its_device_path_and_class_file_form() {
        let label = SeedPartition {
            selector: PartitionSelector::Label("CIDATA".into()),
            filesystem: SeedFilesystem::Vfat,
        };
        assert_eq!(label.selector.device_path(), "/dev/disk/by-label/CIDATA");
        assert_eq!(
            serde_json::to_string(&label).unwrap(),
            r#"{"label":"CIDATA","filesystem":"vfat"}"#
        );
        let name = SeedPartition {
            selector: PartitionSelector::GptName("cidata".into()),
            filesystem: SeedFilesystem::Vfat,
        };
        assert_eq!(name.selector.device_path(), "/dev/disk/by-partlabel/cidata");
        assert_eq!(
            serde_json::to_string(&name).unwrap(),
            r#"{"gpt_name":"cidata","filesystem":"vfat"}"#
        );
        assert_eq!(name.filesystem.mount_type(), "vfat");
    }
}
