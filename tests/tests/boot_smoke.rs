//! Smoke boot: each bootable stand-in (Raspberry Pi Ubuntu layout, amd64
//! cloud layout), given a hand-made NoCloud seed, boots under QEMU and
//! cloud-init applies the seed — hostname, a written file, a static address
//! matched by MAC — as a node will with a seed Metis renders. The amd64 boot
//! also starts the golden image's k3s stand-in the way Metis's bootstrap will
//! (`systemctl enable --now` from runcmd) and checks what it recorded.
//!
//! The seed is laid in by Metis's image engine (`personalise`), with the one
//! root file every Raspberry Pi card gets (see [`smoke`]); nothing else of a
//! node is rendered here.

use std::time::Duration;

use anyhow::Result;
use metis_core::image::rootfs::RootFile;
use metis_core::render;
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

/// Appended to [`USER_DATA`] (it continues its `write_files` list) when the
/// boot starts k3s.
const K3S_USER_DATA: &str = "  - path: /etc/rancher/k3s/config.yaml
    content: |
      node-name: smoke
      node-ip: 10.99.0.5
    permissions: '0600'
runcmd:
  - [systemctl, enable, --now, k3s-agent.service]
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

/// Seeds a copy of `golden`, boots it and checks what cloud-init did; with
/// `start_k3s`, also what the k3s stand-in recorded.
fn smoke(golden: &BootableImage, start_k3s: bool) -> Result<()> {
    let scratch = tempfile::Builder::new().prefix("metis-smoke.").tempdir()?;
    let card_path = scratch.path().join("card.img");
    let user_data = if start_k3s {
        format!("{USER_DATA}{K3S_USER_DATA}")
    } else {
        USER_DATA.to_owned()
    };
    // The Raspberry Pi layout's seed is the boot partition its fstab also
    // mounts; cloud-init's local stage races that mount unless ordered after
    // it (cloud-init #6614), which made this boot fail now and then with
    // "Failed to mount boot-firmware.mount". Every Metis card carries the
    // drop-in that orders it, so the seeded stand-in does too.
    let root_files = if golden.root_label == "writable" {
        let dropin = render::cloud_init_local_dropin("smoke");
        vec![RootFile {
            path: dropin.path,
            bytes: dropin.content,
            mode: dropin.mode,
        }]
    } else {
        Vec::new()
    };
    golden.seeded_copy(
        &[
            ("meta-data", META_DATA),
            ("user-data", &user_data),
            ("network-config", NETWORK_CONFIG),
        ],
        root_files,
        &card_path,
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
    if start_k3s {
        let state = "/var/lib/metis-k3s-standin";
        let run = node.root_file(&format!("{state}/run.env"));
        for line in ["argc=1", "arg1=agent", "config_yaml=present"] {
            if !run.lines().any(|l| l == line) {
                node.fail(&format!("k3s stand-in run.env lacks {line:?}:\n{run}"));
            }
        }
        node.assert_root_file_eq(
            &format!("{state}/config.yaml"),
            "node-name: smoke\nnode-ip: 10.99.0.5\n",
        );
        let starts = node.root_file(&format!("{state}/starts"));
        if starts.lines().count() != 1 {
            node.fail(&format!("k3s stand-in started other than once:\n{starts}"));
        }
        node.assert_root_file_contains(&format!("{state}/environ"), "INVOCATION_ID=");
        // A running k3s must not hold up power-off (it once took minutes).
        if node.log.power_off > Duration::from_secs(45) {
            node.fail(&format!(
                "power-off with k3s running took {:?}",
                node.log.power_off
            ));
        }
    } else if node.root_exists("/var/lib/metis-k3s-standin") {
        // The golden image carries k3s installed but not enabled.
        node.fail("the k3s stand-in ran although no unit was enabled");
    }
    // Both file systems are clean after the ACPI power-off.
    node.card.fat_check(golden.seed_partition)?;
    node.card.ext4_check(golden.root_partition)?;
    Ok(())
}

#[test]
fn rpi_ubuntu_standin_boots_and_applies_a_nocloud_seed() -> Result<()> {
    smoke(&golden::bootable()?.rpi_ubuntu(), false)
}

#[test]
fn amd64_standin_boots_applies_a_nocloud_seed_and_starts_k3s() -> Result<()> {
    smoke(&golden::bootable()?.amd64(), true)
}
