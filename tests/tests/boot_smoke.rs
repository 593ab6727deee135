//! Smoke boot: each bootable stand-in (Raspberry Pi Ubuntu layout, amd64
//! cloud layout), given a hand-made NoCloud seed, boots under QEMU and
//! cloud-init applies the seed — hostname, a written file, a static address
//! matched by MAC — as a node will with a seed Metis renders.

use anyhow::Result;
use metis_tests::card::{copy_sparse, Card};
use metis_tests::golden::{self, BootableImage};
use metis_tests::qemu;

const MAC: &str = "52:54:00:12:34:56";

const META_DATA: &str = "instance-id: smoke-1\nlocal-hostname: smoke\n";

const USER_DATA: &str = "\
#cloud-config
hostname: smoke
write_files:
  - path: /etc/metis-smoke/proof.txt
    content: |
      written by cloud-init from the smoke seed
    owner: root:root
    permissions: '0640'
";

const NETWORK_CONFIG: &str = "\
network:
  version: 2
  ethernets:
    lan:
      match:
        macaddress: \"52:54:00:12:34:56\"
      addresses: [10.99.0.5/24]
      routes:
        - to: default
          via: 10.99.0.1
      nameservers:
        addresses: [10.99.0.1]
";

/// Seeds a copy of `golden`, boots it and checks what cloud-init did.
fn smoke(golden: &BootableImage) -> Result<()> {
    let scratch = tempfile::Builder::new().prefix("metis-smoke.").tempdir()?;
    let card_path = copy_sparse(&golden.image, &scratch.path().join("card.img"))?;

    let card = Card::open(&card_path)?;
    card.fat_write(golden.seed_partition, "/meta-data", META_DATA.as_bytes())?;
    card.fat_write(golden.seed_partition, "/user-data", USER_DATA.as_bytes())?;
    card.fat_write(
        golden.seed_partition,
        "/network-config",
        NETWORK_CONFIG.as_bytes(),
    )?;

    let node = qemu::boot_card(&card_path, golden, MAC)?;
    eprintln!(
        "smoke boot of {}: cloud-init finished after {:.1?}, power-off took {:.1?}",
        golden.image.display(),
        node.log.until_cloud_init_finished,
        node.log.power_off
    );

    node.assert_console_contains("Cloud-init v. ");
    // cloud-init prints the live interface table: the address was applied,
    // not only written down.
    node.assert_console_contains("10.99.0.5");
    node.assert_root_file_eq("/etc/hostname", "smoke\n");
    node.assert_root_file_eq("/var/lib/cloud/data/instance-id", "smoke-1\n");
    node.assert_root_file_eq(
        "/etc/metis-smoke/proof.txt",
        "written by cloud-init from the smoke seed\n",
    );
    node.assert_root_stat("/etc/metis-smoke/proof.txt", 0o640, 0, 0);
    node.assert_root_file_contains("/etc/netplan/50-cloud-init.yaml", "10.99.0.5/24");
    node.assert_root_file_contains("/etc/netplan/50-cloud-init.yaml", MAC);
    let result = node.root_file("/var/lib/cloud/data/result.json");
    if !result.contains("\"errors\": []") {
        node.fail(&format!("cloud-init reported errors:\n{result}"));
    }
    // The golden image carries k3s installed but not enabled.
    if node.root_exists("/var/lib/metis-k3s-standin") {
        node.fail("the k3s stand-in ran although no unit was enabled");
    }
    // Both file systems are clean after the ACPI power-off.
    node.card.fat_check(golden.seed_partition)?;
    node.card.ext4_check(golden.root_partition)?;
    Ok(())
}

#[test]
fn rpi_ubuntu_standin_boots_and_applies_a_nocloud_seed() -> Result<()> {
    smoke(&golden::bootable()?.rpi_ubuntu())
}

#[test]
fn amd64_standin_boots_and_applies_a_nocloud_seed() -> Result<()> {
    smoke(&golden::bootable()?.amd64())
}
