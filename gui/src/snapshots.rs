//! Each screen rendered and compared with the PNG kept in `gui/tests/snapshots/`,
//! so a layout change is reviewed like a trycmd file, never accidental.
//!
//! The screens are filled with fixed words (a fixed lab, disks from a stand-in
//! backend, fixed progress) so the pictures do not depend on this machine's
//! disks, the temporary directories or the clock; `tests/flow.rs` drives the same
//! screens through the real engine. Rendering: egui_kittest's wgpu renderer on a
//! CPU adapter (Mesa's lavapipe, `mesa-vulkan-drivers`). After a deliberate
//! change: `UPDATE_SNAPSHOTS=1 cargo test -p metis-flash-gui snapshot`, look at
//! the new PNGs, commit them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use egui_kittest::{Harness, SnapshotResults};
use metis_core::profile::{LabProfile, PROFILE_FORMAT};
use metis_engine::device::{Backend, Candidate, DeviceError, Disk, Partition, Policy};
use metis_engine::events::Progress;
use metis_engine::flash::{ChunkCounts, FlashSummary, WriteMode};
use metis_engine::medium::Medium;
use metis_engine::{
    CacheState, CancelToken, Engine, EngineError, EngineOptions, Events, LabNode, LabNodes, Phase,
    SetupRequest,
};

use crate::app::{App, Choice, Config, Failure, Phases, Screen, Verified};
use crate::worker::{scan, Lab};

const GIB: u64 = 1 << 30;

/// Two disks: a USB card reader that is offered, and the laptop's own disk.
struct StandIn;

impl StandIn {
    fn disks() -> Vec<Disk> {
        vec![
            Disk {
                path: "/dev/nvme0n1".into(),
                model: "Samsung SSD 980".into(),
                size: 500 * GIB,
                bus: "nvme".into(),
                removable: false,
                read_only: false,
            },
            Disk {
                path: "/dev/sdb".into(),
                model: "SanDisk Ultra".into(),
                size: 32 * GIB,
                bus: "usb".into(),
                removable: true,
                read_only: false,
            },
        ]
    }
}

impl Backend for StandIn {
    fn list(&self) -> Result<Vec<Disk>, DeviceError> {
        Ok(Self::disks())
    }
    fn describe(&self, device: &Path) -> Result<Disk, DeviceError> {
        Self::disks()
            .into_iter()
            .find(|d| d.path == device)
            .ok_or(DeviceError::Unsupported { os: "stand-in" })
    }
    fn inspect(&self, device: &Path, _: u64, _: Policy) -> Result<Candidate, DeviceError> {
        let disk = self.describe(device)?;
        if !disk.removable {
            return Err(DeviceError::Refused {
                device: device.into(),
                reason: "it holds the running system (/ is on /dev/nvme0n1p2)".into(),
                hint: "insert the card in a USB reader".into(),
            });
        }
        Ok(Candidate {
            partitions: vec![Partition {
                path: "/dev/sdb1".into(),
                size: 32 * GIB - (4 << 20),
                mounts: vec!["/media/operator/CARD".into()],
            }],
            to_unmount: vec!["/media/operator/CARD".into()],
            disk,
        })
    }
    fn open(&self, _: &Candidate) -> Result<Box<dyn Medium>, DeviceError> {
        Err(DeviceError::Unsupported { os: "stand-in" })
    }
}

fn demo_key() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../inventory/demo-keys/cosign.pub"),
    )
    .unwrap()
}

fn config(may_write_disks: bool) -> Config {
    Config {
        engine: EngineOptions::default(),
        backend: Arc::new(StandIn),
        policy: Policy::default(),
        may_write_disks,
        output_dir: PathBuf::from("/home/operator"),
    }
}

fn node(name: &str, class: &str, revision: u64, cache: CacheState) -> LabNode {
    LabNode {
        node: name.into(),
        class: class.into(),
        revision,
        digest: format!("sha256:{}", "ab".repeat(32)),
        cache,
        verifies: cache == CacheState::Cached,
        problem: None,
    }
}

/// The window with a lab open (an offline engine over an empty cache: the
/// screens only read the lab index drawn here).
fn with_lab(app: &mut App, offline: bool, dir: &Path) {
    let engine = Engine::open(
        EngineOptions {
            offline: true,
            cache: Some(dir.join("cache")),
            config_dir: Some(dir.join("config")),
            ..Default::default()
        },
        Events::none(),
    )
    .unwrap();
    app.settings.lab = Some("lab.home.arpa".into());
    app.lab = Some(Lab {
        engine: Arc::new(engine),
        nodes: LabNodes {
            revision: 42,
            key: "3f6c0e1d9b2a4c5e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e".into(),
            fetched: Some("2026-12-01T09:30:00+00:00".into()),
            nodes: vec![
                node("cp-1", "control-plane", 41, CacheState::Cached),
                node(
                    "rpi4-hdd-1",
                    "rpi4-armbian-longhorn",
                    40,
                    CacheState::NotCached,
                ),
                node("rpi5-w1", "rpi5-ubuntu", 42, CacheState::Stale),
                node("titan-13", "amd64-agents", 42, CacheState::Cached),
                node("titan-db", "amd64-agents", 39, CacheState::Cached),
            ],
        },
        offline,
    });
    app.node = Some("titan-db".into());
}

fn verified() -> Verified {
    Verified {
        node: "titan-db".into(),
        revision: 39,
        digest: format!("sha256:{}", "5e".repeat(32)),
        image_size: 3 * GIB / 2,
        rejoin: vec![
            "kubectl delete node titan-db".into(),
            "kubectl -n kube-system exec etcd-cp-1 -- etcdctl member remove titan-db".into(),
        ],
    }
}

fn on_card(app: &mut App, dir: &Path) {
    with_lab(app, false, dir);
    app.verified = Some(verified());
    app.disks = Some(scan(&StandIn, 3 * GIB / 2, Policy::default()));
    app.output_path = "/home/operator/titan-db.img".into();
}

fn harness(app: App) -> Harness<'static, App> {
    Harness::builder()
        .with_size([760.0, 560.0])
        .build_ui_state(|ui, app: &mut App| crate::screens::window(app, ui), app)
}

/// Renders `app` on `screen` and compares it with `tests/snapshots/<name>.png`.
fn check(results: &mut SnapshotResults, name: &str, mut app: App, screen: Screen) {
    app.screen = screen;
    let mut h = harness(app);
    h.run();
    results.add(h.try_snapshot(name));
}

#[test]
fn snapshot_each_screen() {
    let dir = tempfile::tempdir().unwrap();
    let mut results = SnapshotResults::new();

    let mut app = App::new(config(true));
    app.setup.profile_path = "/home/operator/Downloads/lab.metis".into();
    let profile = LabProfile {
        format: PROFILE_FORMAT.into(),
        lab: "lab.home.arpa".into(),
        registry: "harbor.lab.home.arpa".into(),
        prefix: "metis".into(),
        ca_certificate: None,
        public_keys: vec![demo_key()],
    };
    app.setup.request = Some(SetupRequest::from_profile(&profile).unwrap());
    app.setup.identity = "/home/operator/.config/age/operator.txt".into();
    check(&mut results, "1-setup", app, Screen::Setup);

    let mut app = App::new(config(true));
    with_lab(&mut app, false, dir.path());
    check(&mut results, "2-nodes", app, Screen::Nodes);

    let mut app = App::new(config(true));
    with_lab(&mut app, true, dir.path());
    app.search = "titan".into();
    check(&mut results, "2-nodes-offline", app, Screen::Nodes);

    let mut app = App::new(config(true));
    on_card(&mut app, dir.path());
    app.choice = Some(Choice::Disk("/dev/sdb".into()));
    check(&mut results, "3-card", app, Screen::Card);

    let mut app = App::new(config(false));
    on_card(&mut app, dir.path());
    app.choice = Some(Choice::File);
    check(&mut results, "3-card-not-root", app, Screen::Card);

    let mut app = App::new(config(true));
    on_card(&mut app, dir.path());
    app.choice = Some(Choice::Disk("/dev/sdb".into()));
    app.typed = "titan-d".into();
    check(&mut results, "4-confirm", app, Screen::Confirm);

    let mut app = App::new(config(true));
    on_card(&mut app, dir.path());
    app.choice = Some(Choice::Disk("/dev/sdb".into()));
    app.cancel = Some(CancelToken::new());
    app.phases = Phases {
        finished: vec![
            (Phase::Download, 12.4),
            (Phase::Verify, 3.1),
            (Phase::Probe, 0.8),
        ],
        current: Some((
            Phase::Write,
            Some(Progress {
                phase: Phase::Write,
                done: 640 << 20,
                total: 3 * GIB / 2,
                rate: 41.9e6,
                eta_seconds: Some(22.4),
                chunk: Some(160),
            }),
        )),
    };
    check(&mut results, "5-progress", app, Screen::Progress);

    let mut app = App::new(config(true));
    on_card(&mut app, dir.path());
    app.choice = Some(Choice::Disk("/dev/sdb".into()));
    app.done = Some(FlashSummary {
        node: "titan-db".into(),
        target: "/dev/sdb".into(),
        target_kind: "device",
        mode: WriteMode::Full,
        image_bytes: 3 * GIB / 2,
        bytes_written: 3 * GIB / 2 + (1 << 20),
        card_held: None,
        chunks: ChunkCounts {
            total: 384,
            compared: 0,
            differing: 0,
            rewritten: 384,
            skipped: 0,
        },
        probe_seconds: 1.1,
        compare_seconds: 0.0,
        write_seconds: 38.2,
        verify_seconds: 14.9,
        write_bytes_per_second: 42.2e6,
        read_back: true,
        verified: true,
    });
    check(&mut results, "6-done", app, Screen::Done);

    let mut app = App::new(config(true));
    on_card(&mut app, dir.path());
    app.choice = Some(Choice::Disk("/dev/sdb".into()));
    app.failure = Some(Failure::from_error(
        &EngineError::Unsigned {
            what: "titan-db".into(),
            digest: format!("sha256:{}", "5e".repeat(32)),
        },
        false,
    ));
    check(&mut results, "7-error", app, Screen::Error);
}
