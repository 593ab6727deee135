//! The golden-image generator `tests/golden/gen.sh`: its stand-ins are
//! reproducible to the bit, have each class's partition layout, labels and
//! seed files, pass the file systems' own checkers, and the script is
//! shellcheck clean.

use std::fs;
use std::path::Path;

use anyhow::{ensure, Context, Result};
use metis_tests::card::Card;
use metis_tests::golden::{self, STANDINS};
use metis_tests::tool;
use tempfile::TempDir;

/// A fresh set of stand-ins in a temporary directory.
fn standins() -> Result<TempDir> {
    let dir = tempfile::tempdir()?;
    golden::generate_standins(dir.path())?;
    Ok(dir)
}

fn sha256_hex(path: &Path) -> Result<String> {
    let (digest, _) = metis_core::digest::hash_file(path)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(digest.hex())
}

/// Checks the file system of partition `number`: type and label by blkid,
/// then the file system's own checker.
fn check_fs(card: &Card, number: usize, fs_type: &str, label: &str) -> Result<()> {
    let probed = card.probe_value(number, "TYPE")?;
    ensure!(
        probed == fs_type,
        "partition {number}: blkid TYPE {probed}, expected {fs_type}"
    );
    let probed = card.probe_value(number, "LABEL")?;
    ensure!(
        probed == label,
        "partition {number}: label {probed:?}, expected {label:?}"
    );
    match fs_type {
        "vfat" => card.fat_check(number),
        "ext4" => card.ext4_check(number),
        other => unreachable!("no checker for {other}"),
    }
}

fn assert_contains(haystack: &str, needle: &str, what: &str) {
    assert!(
        haystack.contains(needle),
        "{what} lacks {needle:?}; it is:\n{haystack}"
    );
}

/// Common root tree of every stand-in.
fn check_minimal_root(card: &Card, number: usize, hostname: &str, seed_label: &str) -> Result<()> {
    assert_eq!(
        card.ext4_read_string(number, "/etc/hostname")?,
        format!("{hostname}\n")
    );
    let machine_id = card.ext4_stat(number, "/etc/machine-id")?;
    assert!(
        machine_id.is_file() && machine_id.size == 0,
        "/etc/machine-id must be an empty file: {machine_id:?}"
    );
    assert!(
        card.ext4_stat(number, "/etc/ssh")?.is_dir(),
        "/etc/ssh missing"
    );
    assert!(
        card.ext4_stat(number, "/usr/local/bin")?.is_dir(),
        "/usr/local/bin missing"
    );
    assert_contains(
        &card.ext4_read_string(number, "/etc/os-release")?,
        "PRETTY_NAME=",
        "/etc/os-release",
    );
    let datasource = card.ext4_read_string(number, "/etc/cloud/cloud.cfg.d/99-fake_cloud.cfg")?;
    assert_contains(
        &datasource,
        "datasource_list: [NoCloud, None]",
        "99-fake_cloud.cfg",
    );
    assert_contains(
        &datasource,
        &format!("fs_label: {seed_label}"),
        "99-fake_cloud.cfg",
    );
    // Owners are squashed to root even when gen.sh runs as another user.
    for entry in card.ext4_list(number, "/etc")? {
        assert_eq!(
            (entry.uid, entry.gid),
            (0, 0),
            "/etc/{} is not root-owned",
            entry.name
        );
    }
    Ok(())
}

#[test]
fn generator_is_reproducible_and_matches_the_pinned_digests() -> Result<()> {
    let first = standins()?;
    let second = standins()?;
    for name in STANDINS {
        let a = fs::read(first.path().join(name))?;
        let b = fs::read(second.path().join(name))?;
        assert_eq!(a.len(), b.len(), "{name}: sizes differ between two runs");
        if let Some(at) = a.iter().zip(&b).position(|(x, y)| x != y) {
            panic!("{name}: two runs of gen.sh differ first at byte {at} (partition offset? see sfdisk -d)");
        }
        assert!(
            a.len() <= 160 << 20,
            "{name} is {} bytes, over 160 MiB",
            a.len()
        );
    }

    // SHA256SUMS is what the tools compute, and matches the committed pins.
    let sums = fs::read_to_string(first.path().join("SHA256SUMS"))?;
    let listed = golden::parse_sha256sums(&sums);
    assert_eq!(listed.len(), STANDINS.len(), "SHA256SUMS: {sums}");
    for (name, digest) in &listed {
        assert_eq!(
            &sha256_hex(&first.path().join(name))?,
            digest,
            "SHA256SUMS entry for {name}"
        );
    }
    let pinned = fs::read_to_string(golden::expected_digests_file())?;
    assert_eq!(
        golden::parse_sha256sums(&pinned),
        listed,
        "the stand-ins no longer match tests/golden/EXPECTED_SHA256; if gen.sh changed on \
         purpose, copy the new SHA256SUMS there and update the class files that pin them:\n{sums}"
    );
    Ok(())
}

#[test]
fn rpi_ubuntu_standin_has_the_ubuntu_for_raspberry_pi_layout() -> Result<()> {
    let dir = standins()?;
    let card = Card::open(dir.path().join("rpi-ubuntu.img"))?;
    let table = card.table();
    assert_eq!(table.label, "dos");
    assert_eq!(table.id, "0x4d455449");
    assert_eq!(table.partitions.len(), 2, "{table:#?}");
    let (boot, root) = (&table.partitions[0], &table.partitions[1]);
    assert_eq!((boot.kind.as_str(), boot.bootable), ("c", true), "{boot:?}");
    assert_eq!(
        (root.kind.as_str(), root.bootable),
        ("83", false),
        "{root:?}"
    );
    assert!(boot.len() >= 64 << 20, "system-boot too small: {boot:?}");

    check_fs(&card, 1, "vfat", "system-boot")?;
    check_fs(&card, 2, "ext4", "writable")?;
    assert_eq!(card.probe_value(1, "VERSION")?, "FAT32");

    let mut names = card.fat_list(1, "/")?;
    names.sort();
    assert_eq!(
        names,
        [
            "cmdline.txt",
            "config.txt",
            "initrd.img",
            "meta-data",
            "network-config",
            "user-data",
            "vmlinuz"
        ]
    );
    let cmdline = card.fat_read_string(1, "/cmdline.txt")?;
    assert_contains(&cmdline, "console=serial0,115200", "cmdline.txt");
    assert_contains(
        &cmdline,
        "root=LABEL=writable rootfstype=ext4 rootwait fixrtc quiet splash",
        "cmdline.txt",
    );
    assert!(card
        .fat_read_string(1, "/user-data")?
        .starts_with("#cloud-config\n"));
    assert_contains(
        &card.fat_read_string(1, "/meta-data")?,
        "\ninstance_id: cloud-image\n",
        "meta-data",
    );
    assert_contains(
        &card.fat_read_string(1, "/network-config")?,
        "version: 2",
        "network-config",
    );
    assert_contains(
        &card.fat_read_string(1, "/config.txt")?,
        "cmdline=cmdline.txt",
        "config.txt",
    );
    let kernel = card.fat_read(1, "/vmlinuz")?.len();
    assert!(
        (1024..=64 * 1024).contains(&kernel),
        "vmlinuz is {kernel} bytes"
    );

    check_minimal_root(&card, 2, "ubuntu", "system-boot")
}

#[test]
fn armbian_standin_has_the_armbian_cloud_init_layout() -> Result<()> {
    let dir = standins()?;
    let card = Card::open(dir.path().join("armbian.img"))?;
    let table = card.table();
    assert_eq!(table.label, "dos");
    let kinds: Vec<&str> = table.partitions.iter().map(|p| p.kind.as_str()).collect();
    assert_eq!(kinds, ["c", "83"], "{table:#?}");

    check_fs(&card, 1, "vfat", "armbi_boot")?;
    check_fs(&card, 2, "ext4", "armbi_root")?;

    let env = card.fat_read_string(1, "/armbianEnv.txt")?;
    assert!(
        env.lines().any(|line| line.starts_with("ethaddr=")),
        "armbianEnv.txt:\n{env}"
    );
    assert_contains(
        &card.fat_read_string(1, "/meta-data")?,
        "instance_id:",
        "meta-data",
    );
    assert!(card
        .fat_read_string(1, "/user-data")?
        .starts_with("#cloud-config\n"));
    assert_contains(
        &card.fat_read_string(1, "/network-config")?,
        "version: 2",
        "network-config",
    );

    check_minimal_root(&card, 2, "armbian", "armbi_boot")?;
    let firstrun = card.ext4_read_string(2, "/etc/default/armbian-firstrun")?;
    assert!(
        firstrun
            .lines()
            .any(|line| line == "OPENSSHD_REGENERATE_HOST_KEYS=true"),
        "armbian-firstrun:\n{firstrun}"
    );
    Ok(())
}

#[test]
fn amd64_standin_has_the_cloud_image_layout() -> Result<()> {
    let dir = standins()?;
    let card = Card::open(dir.path().join("amd64.img"))?;
    let table = card.table();
    assert_eq!(table.label, "gpt");
    assert_eq!(table.id, "4D455449-5300-4000-8000-000000000064");
    let layout: Vec<(&str, Option<&str>)> = table
        .partitions
        .iter()
        .map(|p| (p.kind.as_str(), p.name.as_deref()))
        .collect();
    assert_eq!(
        layout,
        [
            ("C12A7328-F81F-11D2-BA4B-00A0C93EC93B", Some("ESP")),
            ("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7", Some("cidata")),
            ("0FC63DAF-8483-4772-8E79-3D69D8477DE4", Some("rootfs")),
        ]
    );
    let uuids: Vec<Option<&str>> = table.partitions.iter().map(|p| p.uuid.as_deref()).collect();
    assert!(
        uuids.iter().all(Option::is_some),
        "partition GUIDs must be fixed: {uuids:?}"
    );
    assert!(
        table.partitions[1].len() >= 64 << 20,
        "seed partition too small"
    );

    check_fs(&card, 1, "vfat", "ESP")?;
    check_fs(&card, 2, "vfat", "CIDATA")?;
    check_fs(&card, 3, "ext4", "rootfs")?;
    assert_eq!(card.probe_value(2, "VERSION")?, "FAT32");

    assert_eq!(card.fat_list(1, "/EFI/BOOT")?, ["BOOTX64.EFI"]);
    let mut seed = card.fat_list(2, "/")?;
    seed.sort();
    assert_eq!(seed, ["meta-data", "network-config", "user-data"]);
    check_minimal_root(&card, 3, "ubuntu", "CIDATA")
}

#[test]
fn generator_is_shellcheck_clean() -> Result<()> {
    tool::run(tool::command("shellcheck").arg(golden::generator()))?;
    Ok(())
}
