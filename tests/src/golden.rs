//! The golden images the tests use, made by the one generator,
//! `tests/golden/gen.sh`: small reproducible stand-ins for each class's layout,
//! and bootable Debian stand-ins (cached outside the clone).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context, Result};
use metis_core::image::golden::{file_sha256, GoldenImage};
use metis_core::image::partition::{Filesystem, PartitionSelector};
use metis_core::image::personalise::{self, PersonaliseRequest};
use metis_core::image::rootfs::RootFile;

use crate::{tool, workspace_root};

/// The stand-in images `gen.sh` makes, in the order it makes them.
pub const STANDINS: [&str; 3] = ["rpi-ubuntu.img", "armbian.img", "amd64.img"];

/// `tests/golden/gen.sh`.
pub fn generator() -> PathBuf {
    workspace_root().join("tests/golden/gen.sh")
}

/// `tests/golden/EXPECTED_SHA256`: the pinned digests of the stand-ins.
pub fn expected_digests_file() -> PathBuf {
    workspace_root().join("tests/golden/EXPECTED_SHA256")
}

/// Runs `gen.sh OUTDIR`: writes the three stand-ins and `SHA256SUMS` there.
pub fn generate_standins(outdir: &Path) -> Result<()> {
    tool::run(tool::command(generator()).arg(outdir)).with_context(|| {
        format!(
            "generating stand-in golden images into {}",
            outdir.display()
        )
    })?;
    for name in STANDINS {
        let image = outdir.join(name);
        if !image.is_file() {
            bail!("gen.sh exited 0 but did not write {}", image.display());
        }
    }
    Ok(())
}

/// Parses `sha256sum` output (`<hex>  <name>` lines) into (name, hex) pairs.
pub fn parse_sha256sums(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let (digest, name) = line.split_once(char::is_whitespace)?;
            Some((
                name.trim_start_matches([' ', '*']).to_owned(),
                digest.to_owned(),
            ))
        })
        .collect()
}

/// The bootable stand-ins (`gen.sh --bootable`), built once per `gen.sh`
/// version and kept in the cache directory.
#[derive(Debug, Clone)]
pub struct BootableImages {
    /// The cache directory holding them.
    pub dir: PathBuf,
}

/// One bootable class stand-in: disk image, kernel, initrd and the root
/// label to boot with.
#[derive(Debug, Clone)]
pub struct BootableImage {
    /// Raw disk image (never boot this one: copy it first).
    pub image: PathBuf,
    /// Kernel for QEMU's direct kernel boot.
    pub kernel: PathBuf,
    /// Initrd for QEMU's direct kernel boot.
    pub initrd: PathBuf,
    /// Label of the ext4 root file system (`root=LABEL=…`).
    pub root_label: &'static str,
    /// Label of the NoCloud seed partition (FAT).
    pub seed_label: &'static str,
    /// 1-based number of the NoCloud seed partition (FAT).
    pub seed_partition: usize,
    /// 1-based number of the root partition (ext4).
    pub root_partition: usize,
}

impl BootableImage {
    /// Writes to `dest` a copy of this image whose NoCloud seed holds
    /// `seed_files` (`meta-data`, `user-data`, `network-config`) and whose root
    /// file system also holds `root_files`, laid in by Metis's image engine
    /// (`personalise`), as a node's card would be.
    pub fn seeded_copy(
        &self,
        seed_files: &[(&str, &str)],
        root_files: Vec<RootFile>,
        dest: &Path,
    ) -> Result<()> {
        let seed_files: BTreeMap<String, Vec<u8>> = seed_files
            .iter()
            .map(|(name, text)| ((*name).to_owned(), text.as_bytes().to_vec()))
            .collect();
        let image = GoldenImage::open(&self.image, &file_sha256(&self.image)?)?;
        let request = PersonaliseRequest {
            seed: PartitionSelector::Label(self.seed_label.to_owned()),
            seed_filesystem: Filesystem::Vfat,
            root: Some(PartitionSelector::Label(self.root_label.to_owned())),
            seed_files,
            slot: Default::default(),
            root_files,
        };
        personalise::write_image(&personalise::personalise(&image, &request)?, dest)
            .with_context(|| format!("writing the seeded copy {}", dest.display()))?;
        Ok(())
    }
}

impl BootableImages {
    /// The Ubuntu-for-Raspberry-Pi layout: MBR, `system-boot` + `writable`.
    pub fn rpi_ubuntu(&self) -> BootableImage {
        self.image("rpi-ubuntu-boot", "writable", "system-boot", 1, 2)
    }

    /// The amd64 cloud layout: GPT, ESP + `CIDATA` + `rootfs`.
    pub fn amd64(&self) -> BootableImage {
        self.image("amd64-boot", "rootfs", "CIDATA", 2, 3)
    }

    fn image(
        &self,
        stem: &str,
        root_label: &'static str,
        seed_label: &'static str,
        seed_partition: usize,
        root_partition: usize,
    ) -> BootableImage {
        BootableImage {
            image: self.dir.join(format!("{stem}.img")),
            kernel: self.dir.join(format!("{stem}.vmlinuz")),
            initrd: self.dir.join(format!("{stem}.initrd")),
            root_label,
            seed_label,
            seed_partition,
            root_partition,
        }
    }
}

/// Builds the bootable stand-ins, or finds them in the cache
/// (`$METIS_GOLDEN_CACHE`, default `/var/cache/metis-golden`). The first
/// build needs root and the Debian mirror and takes minutes; gen.sh holds a
/// lock so concurrent callers wait for one build.
/// Within one test binary the images are resolved once and shared.
pub fn bootable() -> Result<BootableImages> {
    static BOOTABLE: OnceLock<std::result::Result<BootableImages, String>> = OnceLock::new();
    BOOTABLE
        .get_or_init(|| build_bootable().map_err(|err| format!("{err:#}")))
        .clone()
        .map_err(|err| anyhow!(err))
}

fn build_bootable() -> Result<BootableImages> {
    let stdout = tool::run_stdout(tool::command(generator()).arg("--bootable")).context(
        "building the bootable golden images (gen.sh --bootable needs root and the Debian mirror)",
    )?;
    let dir = stdout
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .map(|line| PathBuf::from(line.trim()))
        .context("gen.sh --bootable printed no cache directory")?;
    let images = BootableImages { dir };
    for image in [images.rpi_ubuntu(), images.amd64()] {
        for file in [&image.image, &image.kernel, &image.initrd] {
            if !file.is_file() {
                bail!("gen.sh --bootable did not leave {}", file.display());
            }
        }
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256sum_output_parses_in_order() {
        let text = "00ff  rpi-ubuntu.img\nabcd *amd64.img\n\n";
        assert_eq!(
            parse_sha256sums(text),
            [
                ("rpi-ubuntu.img".to_owned(), "00ff".to_owned()),
                ("amd64.img".to_owned(), "abcd".to_owned())
            ]
        );
    }
}
