//! An operator whose SSH private key has a passphrase flashes a card as they
//! would: `metis-flash NODE --output … --identity ~/.ssh/id_ed25519` on a real
//! terminal (a tmux session), the passphrase typed at the prompt with echo
//! off. A wrong passphrase is named as such; without a terminal (and without
//! `METIS_IDENTITY_PASSPHRASE`) the error says how to give it.

use metis_tests::DemoBuilderEnv;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use metis_tests::registry::workspace_binary;
use metis_tests::tmux::Tmux;
use metis_tests::{tool, workspace_root};

const NODE: &str = "titan-13";
const PASSPHRASE: &str = "tr0ub4dor&3 horse";
const WAIT: Duration = Duration::from_secs(120);

fn demo(file: &str) -> PathBuf {
    workspace_root().join("inventory/demo-keys").join(file)
}

/// The example lab with the demo operator's SSH key as a recipient, sealed
/// sources rekeyed to it, `NODE` published into `oci:<dir>/registry`.
fn lab_for_the_ssh_operator(dir: &Path) -> (PathBuf, String) {
    let inventory = dir.join("inventory");
    metis_tests::copy_example_inventory(&inventory);
    metis_tests::golden::generate_standins(&inventory.join("golden")).unwrap();
    let lab = inventory.join("metis.yaml");
    let public = std::fs::read_to_string(demo("operator_ssh.pub")).unwrap();
    let recipient: Vec<&str> = public.split_whitespace().take(2).collect();
    let text = std::fs::read_to_string(&lab).unwrap().replacen(
        "operators:\n  recipients:\n",
        &format!("operators:\n  recipients:\n    - {}\n", recipient.join(" ")),
        1,
    );
    std::fs::write(&lab, text).unwrap();
    let registry = format!("oci:{}", dir.join("registry").display());
    for args in [
        &["secrets", "rekey"][..],
        &[
            "publish",
            NODE,
            "--registry",
            &registry,
            "--key",
            demo("cosign.key").to_str().unwrap(),
            "--work-dir",
            dir.join("work").to_str().unwrap(),
        ],
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_metis-build"))
            .args(args)
            .arg("--inventory")
            .arg(&inventory)
            .env("PATH", tool::search_path())
            .demo_builder_env()
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "metis-build {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    (inventory, registry)
}

#[test]
fn an_ssh_key_passphrase_is_asked_on_the_terminal_without_echo() {
    let dir = tempfile::tempdir().unwrap();
    let (inventory, registry) = lab_for_the_ssh_operator(dir.path());
    // The operator's key, protected by a passphrase as ssh-keygen -p does it.
    let ssh = dir.path().join("home/.ssh");
    std::fs::create_dir_all(&ssh).unwrap();
    let key = ssh.join("id_ed25519");
    std::fs::copy(demo("operator_ssh"), &key).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    tool::run(
        tool::command("ssh-keygen")
            .args(["-q", "-p", "-P", "", "-N", PASSPHRASE, "-f"])
            .arg(&key),
    )
    .unwrap();
    let flasher = workspace_binary("metis-flash", "metis-flash").unwrap();
    let (cache, config) = (dir.path().join("cache"), dir.path().join("config"));
    let card = |name: &str| dir.path().join(name).display().to_string();
    let argv = |out: &str| -> Vec<String> {
        [
            flasher.to_str().unwrap(),
            NODE,
            "--output",
            out,
            "--identity",
            key.to_str().unwrap(),
            "--trust-key",
            demo("cosign.pub").to_str().unwrap(),
            "--registry",
            &registry,
            "--inventory",
            inventory.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
    };
    let home = dir.path().join("home");
    let env = [
        ("METIS_CACHE", cache.to_str().unwrap()),
        ("XDG_CONFIG_HOME", config.to_str().unwrap()),
        ("HOME", home.to_str().unwrap()),
    ];

    // Without a terminal: the error says how to give the passphrase.
    let o = Command::new(&flasher)
        .args(&argv(&card("no-tty.img"))[1..])
        .envs(env.iter().copied())
        .env_remove("METIS_IDENTITY_PASSPHRASE")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("no terminal") && err.contains("METIS_IDENTITY_PASSPHRASE"),
        "{err}"
    );

    // A wrong passphrase typed at the prompt.
    let wrong = argv(&card("wrong.img"));
    let t = Tmux::start(&wrong.iter().map(String::as_str).collect::<Vec<_>>(), &env);
    t.wait_for("passphrase for", WAIT);
    t.type_text("not-it");
    t.keys(&["Enter"]);
    let (code, screen) = t.exit_code(WAIT);
    assert_eq!(code, 2, "{screen}");
    assert!(screen.contains("wrong passphrase for"), "{screen}");
    assert!(
        !screen.contains("not-it"),
        "the passphrase was echoed:\n{screen}"
    );
    drop(t);

    // The right one: the card is written and verified.
    let good = card("card.img");
    let right = argv(&good);
    let t = Tmux::start(&right.iter().map(String::as_str).collect::<Vec<_>>(), &env);
    let prompt = t.wait_for("passphrase for", WAIT);
    assert!(prompt.contains(key.to_str().unwrap()), "{prompt}");
    t.type_text(PASSPHRASE);
    t.keys(&["Enter"]);
    let (code, screen) = t.exit_code(WAIT);
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains("read back and verified"), "{screen}");
    assert!(
        !screen.contains(PASSPHRASE),
        "the passphrase was echoed:\n{screen}"
    );
    assert!(Path::new(&good).is_file());
}
