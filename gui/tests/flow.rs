//! The window driven headless through its accessibility tree (egui_kittest), over
//! the real engine and a real `oci:` registry the project's own publisher filled
//! with the example lab (signed with the demo key): first-run setup from a lab
//! profile, a node, an image file (and, as root, a loop device), the typed name,
//! the flash, the done screen; the image is the one `metis-flash` writes. Then the
//! error paths: a wrong name keeps Flash disabled, a tampered cached artifact is
//! refused with nothing written (offline, with the badge), and Cancel mid-write
//! leaves no output file.

mod lab;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use egui_kittest::kittest::{NodeT, Queryable};
use egui_kittest::Harness;
use lab::{cli_flash, demo, profile, sbin_path, sha};
use metis_core::profile::LabProfile;
use metis_engine::device::Policy;
use metis_engine::{Engine, EngineOptions, Events, Phase, SetupRequest};
use metis_flash_gui::egui;
use metis_flash_gui::{App, Config, Screen};

/// A laptop: its own config directory and cache under `dir`.
fn options(dir: &Path) -> EngineOptions {
    EngineOptions {
        cache: Some(dir.join("cache")),
        config_dir: Some(dir.join("config")),
        ..Default::default()
    }
}

fn window(dir: &Path, policy: Policy) -> Harness<'static, App> {
    let app = App::new(Config {
        engine: options(dir),
        backend: Arc::new(metis_engine::device::Native),
        policy,
        may_write_disks: metis_flash_gui::may_write_disks(),
        output_dir: dir.to_path_buf(),
    });
    Harness::builder().with_size([760.0, 560.0]).build_ui_state(
        |ui, app: &mut App| metis_flash_gui::screens::window(app, ui),
        app,
    )
}

/// Steps the window until `done` (the workers report on their own threads).
fn wait(h: &mut Harness<'_, App>, what: &str, done: impl Fn(&Harness<'_, App>) -> bool) {
    let start = Instant::now();
    loop {
        h.step();
        if done(h) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "waited too long for {what}; on {:?}",
            h.state().screen()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    h.step();
}

fn wait_for_screen(h: &mut Harness<'_, App>, screen: Screen) {
    wait(h, &format!("{screen:?}"), |h| h.state().screen() == screen);
}

/// Replaces the text of the field labelled `label`.
fn type_into(h: &mut Harness<'_, App>, label: &str, text: &str) {
    h.get_by_label(label).focus();
    h.step();
    h.key_combination_modifiers(egui::Modifiers::COMMAND, &[egui::Key::A]);
    h.step();
    h.key_press(egui::Key::Backspace);
    h.step();
    if !text.is_empty() {
        h.get_by_label(label).type_text(text);
        h.step();
    }
    h.step();
}

fn click(h: &mut Harness<'_, App>, label: &str) {
    h.get_by_label(label).click();
    h.step();
    h.step();
}

fn text_shown(h: &Harness<'_, App>, part: &str) -> bool {
    h.query_all_by_label_contains(part).next().is_some()
}

/// The first-run screen from the profile, then the node list.
fn set_up(h: &mut Harness<'_, App>, profile: &Path) {
    wait_for_screen(h, Screen::Setup);
    type_into(h, "Lab profile", profile.to_str().unwrap());
    click(h, "Open…");
    wait(h, "the profile's keys", |h| text_shown(h, "SHA-256"));
    let fingerprint = metis_core::trust::PublicKey::read(&demo("cosign.pub"))
        .unwrap()
        .fingerprint();
    assert!(text_shown(h, &fingerprint[..32]), "no fingerprint shown");
    assert!(text_shown(h, "DEMO key"));
    type_into(
        h,
        "Your identity file",
        demo("operator.agekey").to_str().unwrap(),
    );
    click(h, "Trust these keys and save");
    wait_for_screen(h, Screen::Nodes);
}

/// From the node list: the node, the image file, the typed name, Flash.
fn flash_to_file(h: &mut Harness<'_, App>, node: &str, output: &Path) {
    click(h, node);
    click(h, "Next: choose the card");
    wait(h, "the verified artifact", |h| {
        text_shown(h, "verified, image")
    });
    click(h, "Image file…");
    type_into(h, "Path", output.to_str().unwrap());
    click(h, "Next: confirm");
    assert_eq!(h.state().screen(), Screen::Confirm);
}

#[test]
fn first_run_setup_then_a_node_flashed_to_an_image_file() {
    let work = tempfile::tempdir().unwrap();
    let profile = profile(work.path());
    let mut h = window(work.path(), Policy::default());
    set_up(&mut h, &profile);
    assert!(work.path().join("config/settings.json").is_file());
    assert!(text_shown(&h, "example.lab"));
    assert!(!text_shown(&h, "offline"), "an offline badge while online");

    // The search box narrows the list. A node it hides is no longer chosen, one
    // it leaves alone is, and Enter goes on with it.
    let next_enabled = |h: &Harness<'_, App>| {
        !h.get_by_label("Next: choose the card")
            .accesskit_node()
            .is_disabled()
    };
    assert!(!next_enabled(&h), "Next enabled with no node chosen");
    click(&mut h, "titan-13");
    assert!(next_enabled(&h));
    type_into(&mut h, "Search", "no-such-node");
    assert!(
        !next_enabled(&h),
        "Next still acts on a node the search hides"
    );
    type_into(&mut h, "Search", "0a");
    assert!(h.query_by_label("titan-13").is_none());
    assert!(h.query_by_label("titan-0a").is_some());
    assert!(next_enabled(&h), "the only node shown is not chosen");
    h.get_by_label("Search").focus();
    h.step();
    h.key_press(egui::Key::Enter);
    h.step();
    h.step();
    assert_eq!(h.state().screen(), Screen::Card, "Enter did not go on");
    assert!(text_shown(&h, "card for titan-0a"));
    // With a card chosen Enter goes on, but not from a focused Back.
    wait(&mut h, "the verified artifact", |h| {
        text_shown(h, "verified, image")
    });
    click(&mut h, "Image file…");
    h.get_by_label("Back").focus();
    h.step();
    h.key_press(egui::Key::Enter);
    h.step();
    h.step();
    assert_eq!(
        h.state().screen(),
        Screen::Nodes,
        "Enter on Back did not go back"
    );
    type_into(&mut h, "Search", "");

    let img = work.path().join("out/titan-13.img");
    std::fs::create_dir_all(img.parent().unwrap()).unwrap();
    flash_to_file(&mut h, "titan-13", &img);

    // A wrong name keeps Flash disabled.
    type_into(&mut h, "Type the node's name to confirm", "titan-1");
    assert!(h
        .get_by_label("Flash titan-13")
        .accesskit_node()
        .is_disabled());
    h.get_by_label("Flash titan-13").click();
    h.step();
    assert_eq!(h.state().screen(), Screen::Confirm);
    type_into(&mut h, "Type the node's name to confirm", "titan-13");
    assert!(!h
        .get_by_label("Flash titan-13")
        .accesskit_node()
        .is_disabled());
    click(&mut h, "Flash titan-13");
    wait_for_screen(&mut h, Screen::Done);
    assert!(text_shown(&h, "Written and verified"));
    assert!(text_shown(&h, "sha256:"));

    // The very image `metis-flash` writes for the node.
    let by_cli = work.path().join("cli.img");
    cli_flash(work.path(), "titan-13", &by_cli);
    let size = std::fs::metadata(&by_cli).unwrap().len();
    assert_eq!(std::fs::metadata(&img).unwrap().len(), size);
    assert_eq!(
        sha(&img, size),
        sha(&by_cli, size),
        "the GUI wrote another image"
    );

    // Another card of the same node: the node stays chosen.
    click(&mut h, "Flash another card");
    assert_eq!(h.state().screen(), Screen::Card);
    assert!(text_shown(&h, "card for titan-13"));
}

/// Files dropped on the window: the `.metis` one is the lab profile, opened at
/// once; the other is the identity.
fn drop_file(h: &mut Harness<'_, App>, path: &Path) {
    /// A file as the windowing system hands a dropped one to egui.
    #[derive(Debug)]
    struct Dropped(PathBuf);
    impl egui::DroppedFile for Dropped {
        fn path(&self) -> &Path {
            &self.0
        }
        fn bytes(&self) -> Result<Vec<u8>, String> {
            std::fs::read(&self.0).map_err(|e| e.to_string())
        }
    }
    h.input_mut()
        .dropped_files
        .push(Arc::new(Dropped(path.to_path_buf())));
    h.step();
    h.step();
}

#[test]
fn a_dropped_profile_and_identity_set_the_laptop_up() {
    let work = tempfile::tempdir().unwrap();
    let profile = profile(work.path());
    let mut h = window(work.path(), Policy::default());
    wait_for_screen(&mut h, Screen::Setup);
    drop_file(&mut h, &profile);
    wait(&mut h, "the profile's keys", |h| text_shown(h, "SHA-256"));
    assert!(text_shown(&h, "DEMO key"));
    drop_file(&mut h, &demo("operator.agekey"));
    let identity = h
        .get_by_label("Your identity file")
        .accesskit_node()
        .value()
        .map(|v| v.to_string());
    assert!(
        identity
            .as_deref()
            .is_some_and(|v| v.ends_with("operator.agekey")),
        "the identity field holds {identity:?}"
    );
    click(&mut h, "Trust these keys and save");
    wait_for_screen(&mut h, Screen::Nodes);
    let settings = std::fs::read_to_string(work.path().join("config/settings.json")).unwrap();
    assert!(settings.contains("operator.agekey"), "{settings}");
}

#[test]
fn a_server_shows_its_etcd_rejoin_commands_with_a_copy_button() {
    let work = tempfile::tempdir().unwrap();
    let profile = profile(work.path());
    let mut h = window(work.path(), Policy::default());
    set_up(&mut h, &profile);
    let img = work.path().join("titan-0a.img");
    flash_to_file(&mut h, "titan-0a", &img);
    type_into(&mut h, "Type the node's name to confirm", "titan-0a");
    click(&mut h, "Flash titan-0a");
    wait_for_screen(&mut h, Screen::Done);
    assert!(text_shown(&h, "is a k3s server"), "no rejoin commands");
    h.get_by_label("Copy the commands").click();
    h.step();
    let copied = h
        .output()
        .platform_output
        .commands
        .iter()
        .any(|c| matches!(c, egui::OutputCommand::CopyText(t) if t.contains("titan-0a")));
    assert!(copied, "nothing copied");
}

/// Settings as `metis-flash setup` writes them, and the node's artifact and the
/// lab index pulled into the cache while the registry was reachable.
fn laptop_with_cached(dir: &Path, node: &str) {
    let mut request = SetupRequest::from_profile(
        &LabProfile::parse(&std::fs::read(profile(dir)).unwrap()).unwrap(),
    )
    .unwrap();
    request.identity = Some(demo("operator.agekey"));
    request.apply(&dir.join("config")).unwrap();
    let engine = Engine::open(options(dir), Events::none()).unwrap();
    engine.pull(&[node.to_owned()], "latest").unwrap();
    engine.lab_nodes().unwrap();
}

#[test]
fn a_tampered_cached_artifact_is_refused_offline_and_nothing_is_written() {
    let work = tempfile::tempdir().unwrap();
    laptop_with_cached(work.path(), "titan-13");
    // One byte of the cached node patch flipped.
    let layout = metis_core::oci::Layout::open_or_create(&work.path().join("cache")).unwrap();
    let r = layout
        .resolve("metis/nodes/titan-13", "latest")
        .unwrap()
        .unwrap();
    let m = layout.manifest(&r.manifest.digest).unwrap();
    let patch = m
        .layers
        .iter()
        .find(|l| l.media_type == metis_core::oci::MEDIA_TYPE_PATCH)
        .unwrap();
    let p = layout.blob_path(&patch.digest).unwrap();
    let mut bytes = std::fs::read(&p).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&p, bytes).unwrap();
    // The registry now cannot be reached (nothing listens on port 9).
    SetupRequest {
        registry: Some("127.0.0.1:9/metis".into()),
        ..Default::default()
    }
    .apply(&work.path().join("config"))
    .unwrap();

    let mut h = window(work.path(), Policy::default());
    wait_for_screen(&mut h, Screen::Nodes);
    assert!(text_shown(&h, "offline"), "no offline badge");
    assert!(text_shown(&h, "The registry cannot be reached"));
    click(&mut h, "titan-13");
    click(&mut h, "Next: choose the card");
    wait_for_screen(&mut h, Screen::Error);
    assert!(text_shown(&h, "verif"), "not a verification error");
    assert!(text_shown(&h, "Nothing was written."));
    assert!(text_shown(&h, "What to do:"));
    assert!(!work.path().join("titan-13.img").exists());
}

#[test]
fn cancel_mid_write_leaves_no_output_file() {
    let work = tempfile::tempdir().unwrap();
    laptop_with_cached(work.path(), "titan-13");
    let mut h = window(work.path(), Policy::default());
    wait_for_screen(&mut h, Screen::Nodes);
    let img = work.path().join("cancelled.img");
    flash_to_file(&mut h, "titan-13", &img);
    type_into(&mut h, "Type the node's name to confirm", "titan-13");
    click(&mut h, "Flash titan-13");
    wait(&mut h, "the write phase", |h| {
        h.state().phase() == Some(Phase::Write) || h.state().screen() != Screen::Progress
    });
    click(&mut h, "Cancel");
    wait_for_screen(&mut h, Screen::Error);
    assert!(text_shown(&h, "interrupted"), "not interrupted");
    assert!(!img.exists(), "a cancelled flash left {}", img.display());
}

/// A loop device as the card (root only: the disk list needs it attached).
#[test]
fn as_root_a_loop_device_is_written() {
    if !metis_flash_gui::may_write_disks() {
        eprintln!("skipped: writing a loop device needs root");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let profile = profile(work.path());
    let card = work.path().join("card.raw");
    std::fs::write(&card, vec![0xA5u8; 512 << 20]).unwrap();
    let out = Command::new("losetup")
        .args(["-f", "--show"])
        .arg(&card)
        .env("PATH", sbin_path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dev = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    struct Detach(String);
    impl Drop for Detach {
        fn drop(&mut self) {
            let _ = Command::new("losetup").args(["-d", &self.0]).status();
        }
    }
    let _detach = Detach(dev.clone());

    // A loop device is not removable: only the tests override that rule.
    let mut h = window(
        work.path(),
        Policy {
            force_non_removable: true,
        },
    );
    set_up(&mut h, &profile);
    click(&mut h, "titan-13");
    click(&mut h, "Next: choose the card");
    let row = format!("{dev}  ");
    wait(&mut h, "the loop device offered", |h| {
        h.query_by_label_contains(&row)
            .is_some_and(|n| !n.accesskit_node().is_disabled())
    });
    h.get_by_label_contains(&row).click();
    h.step();
    click(&mut h, "Next: confirm");
    type_into(&mut h, "Type the node's name to confirm", "titan-13");
    click(&mut h, "Flash titan-13");
    wait_for_screen(&mut h, Screen::Done);
    assert!(text_shown(&h, "Insert and power on"));

    let by_cli = work.path().join("cli.img");
    cli_flash(work.path(), "titan-13", &by_cli);
    let size = std::fs::metadata(&by_cli).unwrap().len();
    assert_eq!(
        sha(&card, size),
        sha(&by_cli, size),
        "the card is not the node's image"
    );
}
