//! Personalises one node from a golden image; drives bench/personalise.sh.
//!
//! Usage: personalise GOLDEN SEED_LABEL ROOT_LABEL OUT [SHA256]
//!
//! OUT `-` builds the node (overlay, dirty extents, slot) without writing an
//! image: what CI does when it uploads only the node patch. Without SHA256
//! the golden image's digest is computed first (one more read of it).
//! Prints one line of metrics on stdout: phase times, bytes read by this
//! process (/proc/self/io rchar) after each phase, changed bytes, the slot.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use metis_core::image::fat::SlotSpec;
use metis_core::image::golden::{file_sha256, GoldenImage};
use metis_core::image::partition::{Filesystem, PartitionSelector};
use metis_core::image::personalise::{personalise, write_image, PersonaliseRequest};
use metis_core::image::rootfs::RootFile;

fn rchar() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("rchar: ").map(|v| v.trim().parse().ok()))
                .flatten()
        })
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        eprintln!("usage: personalise GOLDEN SEED_LABEL ROOT_LABEL OUT [SHA256]");
        std::process::exit(2);
    }
    let golden_path = Path::new(&args[0]);
    let sha = match args.get(4) {
        Some(sha) => sha.clone(),
        None => file_sha256(golden_path).unwrap_or_else(|e| {
            eprintln!("reading {}: {e}", golden_path.display());
            std::process::exit(1)
        }),
    };

    let start = Instant::now();
    let golden = GoldenImage::open(golden_path, &sha).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let verified = start.elapsed();
    let rchar_verified = rchar();

    let mut seed_files = BTreeMap::new();
    seed_files.insert(
        "user-data".to_string(),
        b"#cloud-config\nhostname: titan-db\n".to_vec(),
    );
    seed_files.insert(
        "meta-data".to_string(),
        b"instance-id: titan-db-bench\n".to_vec(),
    );
    seed_files.insert(
        "network-config".to_string(),
        b"version: 2\nethernets: {}\n".to_vec(),
    );
    seed_files.insert(
        "metis/bootstrap.sh".to_string(),
        b"#!/bin/sh\nset -eu\n".to_vec(),
    );
    let request = PersonaliseRequest {
        seed: PartitionSelector::Label(args[1].clone()),
        seed_filesystem: Filesystem::Vfat,
        root: Some(PartitionSelector::Label(args[2].clone())),
        seed_files,
        slot: SlotSpec::default(),
        root_files: vec![RootFile::machine_id("5f3c0e1a9b7d4c2e8f6a1b3c5d7e9f01").unwrap()],
    };
    let node = personalise(&golden, &request).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let personalised = start.elapsed() - verified;
    let rchar_personalised = rchar();

    // A second node of the same class: what each node after the first costs
    // in a publish (the root's metadata copy is shared and rolled back).
    let mut second = request.clone();
    second.root_files = vec![RootFile::machine_id("0123456789abcdef0123456789abcdef").unwrap()];
    let second_start = Instant::now();
    personalise(&golden, &second).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let second_s = second_start.elapsed();
    let rchar_second = rchar() - rchar_personalised;

    let write_start = Instant::now();
    if args[3] != "-" {
        write_image(&node, Path::new(&args[3])).unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(1)
        });
    }
    let written = write_start.elapsed();
    let extents = node.dirty_extents();
    let changed: u64 = extents.iter().map(|e| e.len).sum();
    println!(
        "verify_s={:.3} personalise_s={:.3} second_personalise_s={:.4} rchar_second={} write_s={:.3} \
         rchar_verify={} rchar_personalise={} rchar_total={} \
         changed_bytes={} extents={} slot_offset={} slot_len={}",
        verified.as_secs_f64(),
        personalised.as_secs_f64(),
        second_s.as_secs_f64(),
        rchar_second,
        written.as_secs_f64(),
        rchar_verified,
        rchar_personalised - rchar_verified,
        rchar(),
        changed,
        extents.len(),
        node.slot.offset,
        node.slot.len
    );
}
