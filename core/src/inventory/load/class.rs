//! `classes/<class>.yaml`: architecture, OS, golden image and card layout.

use std::path::{Path, PathBuf};

use super::cx::Cx;
use super::hints::*;
use crate::inventory::diag::Pos;
use crate::inventory::model::*;
use crate::inventory::rules;
use crate::inventory::schema;

impl Cx {
    pub(super) fn class(
        &mut self,
        name: &str,
        file: &Path,
        f: &schema::ClassFile,
    ) -> Option<Class> {
        let arch = self.one_of(file, &f.architecture, "architecture", &["arm64", "amd64"]);
        let os = self.one_of(file, &f.os, "os", &["ubuntu", "armbian", "debian"]);
        let g = &f.golden;
        let sources = [g.oci.is_some(), g.path.is_some(), g.url.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        let golden = if sources != 1 {
            self.err(
                file,
                Pos::FILE,
                "golden must name exactly one of `oci`, `path` or `url`",
                "pin the class's golden image once, by digest",
            );
            None
        } else if let Some(oci) = &g.oci {
            let ok = oci
                .value
                .split_once("@sha256:")
                .is_some_and(|(_, d)| rules::sha256_pin(d).is_ok());
            if !ok {
                self.err(
                    file,
                    Pos::of(oci),
                    format!("`{}` is not pinned by digest", oci.value),
                    "write it as `registry/repo@sha256:<64 hex>`; tags can move",
                );
            }
            Some(Golden::Oci {
                reference: oci.value.clone(),
            })
        } else {
            let sha = match &g.sha256 {
                Some(s) => self
                    .rule(file, s, H_SHA, |v| rules::sha256_pin(v))
                    .map(|_| s.value.clone()),
                None => {
                    self.err(
                        file,
                        Pos::FILE,
                        "golden image has no `sha256`",
                        "add `sha256:` with the image file's digest (`sha256sum FILE`)",
                    );
                    None
                }
            };
            match (&g.path, &g.url, sha) {
                (Some(p), _, Some(sha256)) => Some(Golden::Path {
                    path: PathBuf::from(&p.value),
                    sha256,
                }),
                (_, Some(u), Some(sha256)) => {
                    if !u.value.starts_with("https://") && !u.value.starts_with("http://") {
                        self.err(
                            file,
                            Pos::of(u),
                            format!("`{}` is not an http(s) URL", u.value),
                            "write the image's download URL starting with `https://`",
                        );
                    }
                    Some(Golden::Url {
                        url: u.value.clone(),
                        sha256,
                    })
                }
                _ => None,
            }
        };
        let seed_fs = match &f.seed.value.filesystem {
            Some(fs) => self
                .one_of(file, fs, "seed filesystem", &["vfat"])
                .map(|_| SeedFilesystem::Vfat),
            None => Some(SeedFilesystem::Vfat),
        };
        const SEED_HINT: &str = "name the seed partition by its filesystem label (Ubuntu for Raspberry Pi: `label: system-boot`; Armbian: `label: armbi_boot`; cloud images: `label: CIDATA`) or by its GPT partition name (`gpt_name: cidata`); `blkid` or `sfdisk -d` on the image shows them";
        const ROOT_HINT: &str = "name the root partition by its ext4 filesystem label (Ubuntu for Raspberry Pi: `label: writable`; Armbian: `label: armbi_root`; cloud images: `label: rootfs`) or by its GPT partition name (`gpt_name: rootfs`); `blkid` or `sfdisk -d` on the image shows them";
        let seed = &f.seed.value;
        let seed_sel = self.partition_selector(
            file,
            "seed",
            Pos::of(&f.seed),
            (&seed.label, &seed.gpt_name),
            SEED_HINT,
        );
        let root = &f.root.value;
        let root_sel = self.partition_selector(
            file,
            "root",
            Pos::of(&f.root),
            (&root.label, &root.gpt_name),
            ROOT_HINT,
        );
        self.settings_rules(file, &f.defaults);
        Some(Class {
            name: name.to_string(),
            file: file.to_path_buf(),
            description: f.description.clone().unwrap_or_default(),
            architecture: match arch? {
                "arm64" => Arch::Arm64,
                _ => Arch::Amd64,
            },
            os: match os? {
                "ubuntu" => Os::Ubuntu,
                "armbian" => Os::Armbian,
                _ => Os::Debian,
            },
            golden: golden?,
            seed: SeedPartition {
                selector: seed_sel?,
                filesystem: seed_fs?,
            },
            root: root_sel?,
            k3s: f.k3s,
        })
    }

    /// A class's `seed:` or `root:` (`what`) names its partition by `label:` or
    /// by `gpt_name:` (exactly one, not empty).
    fn partition_selector(
        &mut self,
        file: &Path,
        what: &str,
        block: Pos,
        (label, gpt_name): (&Option<schema::S<String>>, &Option<schema::S<String>>),
        hint: &str,
    ) -> Option<PartitionSelector> {
        match (label, gpt_name) {
            (Some(label), None) if !label.value.is_empty() => {
                Some(PartitionSelector::Label(label.value.clone()))
            }
            (None, Some(name)) if !name.value.is_empty() => {
                Some(PartitionSelector::GptName(name.value.clone()))
            }
            (Some(label), None) => {
                self.err(file, Pos::of(label), format!("{what} label is empty"), hint);
                None
            }
            (None, Some(name)) => {
                self.err(
                    file,
                    Pos::of(name),
                    format!("{what} gpt_name is empty"),
                    hint,
                );
                None
            }
            (Some(_), Some(name)) => {
                self.err(
                    file,
                    Pos::of(name),
                    format!("the {what} names both a label and a gpt_name: keep one"),
                    hint,
                );
                None
            }
            (None, None) => {
                self.err(
                    file,
                    block,
                    format!("the {what} names no partition: neither `label` nor `gpt_name`"),
                    hint,
                );
                None
            }
        }
    }
}
