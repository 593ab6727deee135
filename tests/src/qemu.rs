//! Booting a card under QEMU and reading the outcome: direct kernel boot of
//! the golden image's kernel and initrd with the card as a virtio disk, a
//! user-mode NIC that lets no packet leave the VM, the serial console in a
//! file, and an orderly ACPI power-off once cloud-init says it has finished.
//!
//! QEMU runs with TCG: `/dev/kvm` exists on the CI hosts but guests hang
//! there after the kernel handoff.

use std::fs;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};

use crate::card::Card;
use crate::golden::BootableImage;
use crate::tool;

/// How long a guest may take from `system_powerdown` to QEMU exiting.
pub const POWER_OFF_TIMEOUT: Duration = Duration::from_secs(90);

/// A generous limit for one boot to cloud-init's final message under TCG
/// on a loaded 2-core CI host (it takes ~95 s unloaded).
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(600);

/// Serial console lines that mean the boot has failed for good.
const FATAL_CONSOLE: [&str; 4] = [
    "Kernel panic",
    "You are in emergency mode",
    "Give root password for maintenance",
    "ALERT!  LABEL=",
];

/// What one boot left behind: the serial console and timings.
#[derive(Debug, Clone)]
pub struct BootLog {
    /// Everything the guest wrote to its serial console.
    pub serial: String,
    /// QEMU start to cloud-init's `Cloud-init v. … finished at` line.
    pub until_cloud_init_finished: Duration,
    /// `system_powerdown` to QEMU exiting on its own.
    pub power_off: Duration,
}

impl BootLog {
    /// The last `lines` lines of the serial console.
    pub fn tail(&self, lines: usize) -> String {
        tail(&self.serial, lines)
    }

    /// cloud-init's final line (`Cloud-init v. … finished at …`).
    pub fn cloud_init_final_line(&self) -> Option<&str> {
        cloud_init_final_line(&self.serial)
    }
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn cloud_init_final_line(serial: &str) -> Option<&str> {
    serial
        .lines()
        .find(|line| line.contains("Cloud-init v. ") && line.contains(" finished at "))
}

/// A running QEMU; dropping it kills QEMU if it is still running.
struct Qemu {
    child: Child,
}

impl Drop for Qemu {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The disks a boot attaches besides the card.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExtraDisks<'a> {
    /// Further virtio disks: `/dev/vdb`, ….
    pub virtio: &'a [&'a Path],
    /// Removable USB mass-storage disks on an xHCI controller: `/dev/sda`, ….
    /// What a card in a USB card reader looks like to the guest (`removable`
    /// is 1 in sysfs).
    pub usb: &'a [&'a Path],
}

/// Boots `card` (a raw disk image, written to in place) under QEMU with
/// direct kernel boot (`root=LABEL=<root_label> console=ttyS0`), its NIC
/// having MAC address `mac`, and the `extra` disks; waits for cloud-init's
/// final message (at most `timeout`), then powers the guest off through ACPI
/// and waits for QEMU to exit. Fails with the serial console's tail if the
/// guest does not get there or does not power off by itself.
pub fn boot(
    card: &Path,
    kernel: &Path,
    initrd: &Path,
    root_label: &str,
    mac: &str,
    extra: ExtraDisks,
    timeout: Duration,
) -> Result<BootLog> {
    let scratch = tempfile::Builder::new().prefix("metis-qemu.").tempdir()?;
    let serial_path = scratch.path().join("serial.log");
    let monitor_path = scratch.path().join("monitor.sock");
    let qemu_output = scratch.path().join("qemu.out");

    // setpriv --pdeathsig: QEMU dies with the test thread that started it,
    // even when the test process is killed before Drop can run.
    let mut cmd = tool::command("setpriv");
    cmd.args(["--pdeathsig", "KILL", "qemu-system-x86_64"]);
    // -nodefaults: no floppy drive for cloud-init's device probe to stall on
    // (five read errors, seconds under TCG), no CD-ROM, no VGA.
    // -smp 1: with two vCPUs under TCG, two guests at once on a 2-core host
    // (four vCPU threads plus the tests' own work) once left the guest's boot
    // CPU idle with its timer interrupt never delivered: RCU stall reports
    // from 47 s on and no cloud-init after 600 s (CI, rpi5 titan-04). One
    // vCPU per guest has no cross-CPU wake-ups to lose and leaves a host
    // core per guest.
    cmd.args(["-accel", "tcg", "-m", "1024", "-smp", "1"])
        .args(["-nodefaults", "-nographic", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", serial_path.display()))
        .arg("-monitor")
        .arg(format!("unix:{},server,nowait", monitor_path.display()))
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        // panic=-1 with -no-reboot: a kernel panic ends QEMU at once.
        .arg(format!("root=LABEL={root_label} console=ttyS0 panic=-1"));
    for disk in std::iter::once(&card).chain(extra.virtio) {
        cmd.arg("-drive")
            .arg(format!("file={},format=raw,if=virtio", drive_path(disk)?));
    }
    if !extra.usb.is_empty() {
        cmd.args(["-device", "qemu-xhci,id=xhci"]);
    }
    for (n, disk) in extra.usb.iter().enumerate() {
        cmd.arg("-drive")
            .arg(format!(
                "file={},format=raw,if=none,id=usb{n}",
                drive_path(disk)?
            ))
            .arg("-device")
            .arg(format!("usb-storage,bus=xhci.0,drive=usb{n},removable=on"));
    }
    // restrict=on: the guest reaches nothing outside the VM.
    cmd.arg("-nic")
        .arg(format!("user,restrict=on,model=virtio-net-pci,mac={mac}"));
    let output = fs::File::create(&qemu_output)?;
    cmd.stdin(Stdio::null())
        .stdout(output.try_clone()?)
        .stderr(output);
    let line = tool::describe(&cmd);
    let started = Instant::now();
    let mut qemu = Qemu {
        child: cmd.spawn().with_context(|| format!("starting `{line}`"))?,
    };

    let read_serial = || {
        fs::read(&serial_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    };
    let failure = |what: String, serial: &str| {
        let qemu_said = fs::read_to_string(&qemu_output).unwrap_or_default();
        anyhow!(
            "{what}\n--- QEMU output ---\n{}\n--- last 60 lines of the serial console ---\n{}",
            qemu_said.trim_end(),
            tail(serial, 60)
        )
    };

    // Wait for cloud-init's final line.
    let until_cloud_init_finished = loop {
        let serial = read_serial();
        if cloud_init_final_line(&serial).is_some() {
            break started.elapsed();
        }
        if let Some(status) = qemu.child.try_wait()? {
            return Err(failure(
                format!("QEMU exited ({status}) before cloud-init finished"),
                &serial,
            ));
        }
        if let Some(fatal) = FATAL_CONSOLE.iter().find(|needle| serial.contains(*needle)) {
            return Err(failure(
                format!("the guest failed to boot ({fatal:?} on the console)"),
                &serial,
            ));
        }
        if started.elapsed() > timeout {
            return Err(failure(
                format!("cloud-init did not finish within {} s", timeout.as_secs()),
                &serial,
            ));
        }
        sleep(Duration::from_millis(500));
    };

    // Orderly ACPI power-off, so the guest's file systems are clean.
    let powerdown = Instant::now();
    monitor_command(&monitor_path, "system_powerdown")
        .map_err(|err| failure(format!("asking QEMU to power off: {err:#}"), &read_serial()))?;
    let power_off = loop {
        if let Some(status) = qemu.child.try_wait()? {
            if !status.success() {
                return Err(failure(
                    format!("QEMU exited with {status} on power-off"),
                    &read_serial(),
                ));
            }
            break powerdown.elapsed();
        }
        if powerdown.elapsed() > POWER_OFF_TIMEOUT {
            let _ = monitor_command(&monitor_path, "quit");
            return Err(failure(
                format!(
                    "the guest did not power off within {} s of system_powerdown",
                    POWER_OFF_TIMEOUT.as_secs()
                ),
                &read_serial(),
            ));
        }
        sleep(Duration::from_millis(250));
    };
    drop(qemu);
    Ok(BootLog {
        serial: read_serial(),
        until_cloud_init_finished,
        power_off,
    })
}

/// A disk path QEMU's `-drive file=` accepts (commas must be doubled).
fn drive_path(path: &Path) -> Result<String> {
    let text = path
        .to_str()
        .ok_or_else(|| anyhow!("{} is not UTF-8", path.display()))?;
    Ok(text.replace(',', ",,"))
}

/// Sends one human-monitor command to QEMU.
fn monitor_command(socket: &Path, command: &str) -> Result<()> {
    let mut stream = UnixStream::connect(socket)
        .with_context(|| format!("connecting to the QEMU monitor at {}", socket.display()))?;
    stream.write_all(format!("{command}\n").as_bytes())?;
    stream.flush()?;
    // Give QEMU a moment to read the line before the connection closes.
    sleep(Duration::from_millis(200));
    Ok(())
}

/// A card that has been booted and powered off, ready for offline
/// inspection. Assertions on it fail with what the node got instead and
/// the tail of its serial console.
#[derive(Debug)]
pub struct BootedCard {
    /// The card image after the boot.
    pub card: Card,
    /// The boot's serial console and timings.
    pub log: BootLog,
    /// 1-based number of the ext4 root partition.
    pub root_partition: usize,
    /// 1-based number of the NoCloud seed partition.
    pub seed_partition: usize,
}

/// Boots the card image at `card` (a copy of a bootable golden image, or a
/// card the project's tools made from one) with `golden`'s kernel and initrd
/// and NIC MAC address `mac`, then returns it for offline inspection.
pub fn boot_card(card: &Path, golden: &BootableImage, mac: &str) -> Result<BootedCard> {
    boot_card_with_disks(card, golden, mac, &[])
}

/// [`boot_card`] with `extra_disks` attached as `/dev/vdb`, ….
pub fn boot_card_with_disks(
    card: &Path,
    golden: &BootableImage,
    mac: &str,
    extra_disks: &[&Path],
) -> Result<BootedCard> {
    boot_card_with_usb(card, golden, mac, extra_disks, &[])
}

/// [`boot_card_with_disks`] with `usb_disks` attached as removable USB disks
/// (`/dev/sda`, …), as cards in a card reader.
pub fn boot_card_with_usb(
    card: &Path,
    golden: &BootableImage,
    mac: &str,
    extra_disks: &[&Path],
    usb_disks: &[&Path],
) -> Result<BootedCard> {
    let log = boot(
        card,
        &golden.kernel,
        &golden.initrd,
        golden.root_label,
        mac,
        ExtraDisks {
            virtio: extra_disks,
            usb: usb_disks,
        },
        BOOT_TIMEOUT,
    )?;
    Ok(BootedCard {
        card: Card::open(card)?,
        log,
        root_partition: golden.root_partition,
        seed_partition: golden.seed_partition,
    })
}

impl BootedCard {
    /// Panics with `message`, the tail of the serial console and the boot
    /// timings.
    #[track_caller]
    pub fn fail(&self, message: &str) -> ! {
        panic!(
            "{message}\n--- last 40 lines of the serial console ---\n{}\n--- cloud-init finished after {:.0?}, power-off took {:.0?} ---",
            self.log.tail(40),
            self.log.until_cloud_init_finished,
            self.log.power_off
        )
    }

    /// Text of `path` in the root file system; fails the test if it cannot
    /// be read.
    #[track_caller]
    pub fn root_file(&self, path: &str) -> String {
        match self.card.ext4_read_string(self.root_partition, path) {
            Ok(text) => text,
            Err(err) => self.fail(&format!("reading {path} from the node's root: {err:#}")),
        }
    }

    /// Whether `path` exists in the root file system.
    #[track_caller]
    pub fn root_exists(&self, path: &str) -> bool {
        match self.card.ext4_exists(self.root_partition, path) {
            Ok(found) => found,
            Err(err) => self.fail(&format!("looking up {path} on the node's root: {err:#}")),
        }
    }

    /// Asserts that `path` in the root file system holds exactly `expected`.
    #[track_caller]
    pub fn assert_root_file_eq(&self, path: &str, expected: &str) {
        let got = self.root_file(path);
        if got != expected {
            self.fail(&format!(
                "{path}: expected {expected:?}, the node has {got:?}"
            ));
        }
    }

    /// Asserts that `path` in the root file system contains `needle`.
    #[track_caller]
    pub fn assert_root_file_contains(&self, path: &str, needle: &str) {
        let got = self.root_file(path);
        if !got.contains(needle) {
            self.fail(&format!("{path} lacks {needle:?}; the node has:\n{got}"));
        }
    }

    /// Asserts that `path` exists in the root file system with permission
    /// bits `mode` and owner `uid`:`gid`.
    #[track_caller]
    pub fn assert_root_stat(&self, path: &str, mode: u32, uid: u32, gid: u32) {
        match self.card.ext4_stat(self.root_partition, path) {
            Ok(entry) if (entry.permissions(), entry.uid, entry.gid) == (mode, uid, gid) => {}
            Ok(entry) => self.fail(&format!(
                "{path}: expected mode {mode:o} owner {uid}:{gid}, the node has mode {:o} owner {}:{}",
                entry.permissions(),
                entry.uid,
                entry.gid
            )),
            Err(err) => self.fail(&format!("{path}: {err:#}")),
        }
    }

    /// Asserts that the serial console shows `needle`.
    #[track_caller]
    pub fn assert_console_contains(&self, needle: &str) {
        if !self.log.serial.contains(needle) {
            self.fail(&format!("the serial console never showed {needle:?}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_init_final_line_is_found_among_console_noise() {
        let console = "[   61.2] cloud-init[316]: Cloud-init v. 22.4.2 running 'init' at Wed. Up 61.04 seconds.\n\
                       [   77.0] cloud-init[383]: Cloud-init v. 22.4.2 finished at Wed, 25 Nov 2026 23:10:31 +0000. Up 77.02 seconds\n";
        assert!(cloud_init_final_line(console).unwrap().contains("Up 77.02"));
        assert!(cloud_init_final_line("Cloud-init v. 22.4.2 running 'init-local'\n").is_none());
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }

    #[test]
    fn drive_paths_escape_commas() {
        assert_eq!(
            drive_path(Path::new("/tmp/a,b.img")).unwrap(),
            "/tmp/a,,b.img"
        );
    }
}
