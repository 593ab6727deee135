//! Signals while a secret is in clear: `secrets edit` whose editor (a fake
//! one that signals metis-build, as a Ctrl-C, a `kill` or a closed terminal
//! would, then exits) and `secrets init` whose `ssh-keygen` is interrupted.
//! metis-build must survive to wipe the plaintext, exit 130, say nothing was
//! changed, and leave the sealed files as they were.

#![cfg(target_os = "linux")]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use metis_tests::{copy_example_inventory, workspace_root};

/// A script that finds metis-build above it (an editor given with shell
/// syntax runs under `sh -c`) and sends it `$SIGNAL`; `$PARENT_RECORD` gets
/// the name of its direct parent.
const SIGNAL_PARENT: &str = r#"
p=$PPID
cat /proc/$p/comm > "$PARENT_RECORD"
[ "$(cat /proc/$p/comm)" = metis-build ] || p=$(cut -d' ' -f4 /proc/$p/stat)
[ "$(cat /proc/$p/comm)" = metis-build ] || { echo "metis-build not found above $$" >&2; exit 9; }
kill -s "$SIGNAL" "$p"
# Give metis-build's signal thread time to note it before we exit.
sleep 0.3
"#;

fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        }
        out.push(p);
    }
    out
}

struct Lab {
    _root: tempfile::TempDir,
    inventory: PathBuf,
    tmpdir: PathBuf,
    runtime: PathBuf,
    scripts: PathBuf,
}

impl Lab {
    fn new() -> Lab {
        let root = tempfile::tempdir().unwrap();
        let inventory = root.path().join("inventory");
        copy_example_inventory(&inventory);
        let [tmpdir, runtime, scripts] = ["tmp", "runtime", "scripts"].map(|d| root.path().join(d));
        for d in [&tmpdir, &runtime, &scripts] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
        Lab {
            _root: root,
            inventory,
            tmpdir,
            runtime,
            scripts,
        }
    }

    fn metis_build(&self, args: &[&str], runtime_dir: bool) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_metis-build"));
        cmd.args(args)
            .arg("--inventory")
            .arg(&self.inventory)
            .env("TMPDIR", &self.tmpdir)
            .env(
                "METIS_AGE_IDENTITY",
                std::fs::read_to_string(
                    workspace_root().join("inventory/demo-keys/builder.agekey"),
                )
                .unwrap(),
            )
            .env("PATH", metis_tests::tool::search_path())
            .env_remove("VISUAL");
        if runtime_dir {
            cmd.env("XDG_RUNTIME_DIR", &self.runtime);
        } else {
            cmd.env_remove("XDG_RUNTIME_DIR");
        }
        cmd
    }

    fn sealed(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out: Vec<_> = files_under(&self.inventory.join("secrets"))
            .into_iter()
            .map(|p| {
                let bytes = std::fs::read(&p).unwrap();
                (p, bytes)
            })
            .collect();
        out.sort();
        out
    }

    fn assert_no_plaintext_left(&self, what: &str) {
        for dir in [&self.tmpdir, &self.runtime] {
            let left = files_under(dir);
            assert!(left.is_empty(), "{what}: left behind {left:?}");
        }
    }
}

fn describe(o: &Output) -> String {
    format!(
        "{}\n--- stderr ---\n{}--- stdout ---\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    )
}

#[test]
fn edit_interrupted_while_the_editor_runs_wipes_the_plaintext_and_changes_nothing() {
    let lab = Lab::new();
    let record = lab.scripts.join("edited-file");
    let modes = lab.scripts.join("modes");
    let editor = lab.scripts.join("edit-and-signal.sh");
    // Saves a change (which must not be sealed), notes where the plaintext is,
    // signals metis-build, and exits 0 as an editor that was told to quit would.
    script(
        &editor,
        &format!(
            "sed -i 's/\"node_password\": \"[^\"]*\"/\"node_password\": \"changed\"/' \"$1\"\n\
             printf '%s' \"$1\" > {record:?}\n\
             stat -c %a \"${{1%/*}}\" \"$1\" > {modes:?}\n{SIGNAL_PARENT}exit 0\n"
        ),
    );
    let parent = lab.scripts.join("parent");
    let before = lab.sealed();
    let plain = editor.display().to_string();
    // Shell syntax (an assignment): run through `sh -c`, not directly.
    let shell = format!("EDITED_BY=metis {}", editor.display());
    for (signal, runtime_dir, editor) in [
        ("INT", false, &plain),
        ("TERM", true, &plain),
        ("HUP", false, &plain),
        ("INT", true, &shell),
    ] {
        let what = format!("SIG{signal}, XDG_RUNTIME_DIR {runtime_dir}, EDITOR {editor}");
        let _ = std::fs::remove_file(&record);
        let o = lab
            .metis_build(&["secrets", "edit", "titan-14"], runtime_dir)
            .env("EDITOR", editor)
            .env("SIGNAL", signal)
            .env("PARENT_RECORD", &parent)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(130), "{what}: {}", describe(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("interrupted while the editor") && err.contains("nothing was changed"),
            "{what}: {err}"
        );
        let direct_parent = std::fs::read_to_string(&parent).unwrap();
        assert_eq!(
            direct_parent.trim(),
            if editor == &plain {
                "metis-build"
            } else {
                "sh"
            },
            "{what}: a plain editor is metis-build's own child"
        );
        let edited = PathBuf::from(std::fs::read_to_string(&record).unwrap());
        let expected_base = if runtime_dir {
            &lab.runtime
        } else {
            &lab.tmpdir
        };
        assert!(
            edited.starts_with(expected_base),
            "{what}: the plaintext was at {}",
            edited.display()
        );
        assert_eq!(
            std::fs::read_to_string(&modes).unwrap(),
            "700\n600\n",
            "{what}: modes of the plaintext's directory and file"
        );
        assert!(!edited.exists(), "{what}: {} is left", edited.display());
        lab.assert_no_plaintext_left(&what);
        assert!(lab.sealed() == before, "{what}: a sealed file changed");
    }

    // The same editor without a signal does seal its change: the check above
    // is not passing because the edit never worked.
    script(
        &lab.scripts.join("edit.sh"),
        "sed -i 's/\"node_password\": \"[^\"]*\"/\"node_password\": \"changed\"/' \"$1\"\n",
    );
    let o = lab
        .metis_build(&["secrets", "edit", "titan-14"], true)
        .env("EDITOR", lab.scripts.join("edit.sh"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", describe(&o));
    assert!(lab.sealed() != before, "the edit was sealed");
    lab.assert_no_plaintext_left("a plain edit");
}

#[test]
fn init_interrupted_while_ssh_keygen_runs_wipes_the_keys_and_seals_no_half_node() {
    let lab = Lab::new();
    std::fs::remove_dir_all(lab.inventory.join("secrets")).unwrap();
    // An ssh-keygen that signals metis-build (its parent) after the real one
    // wrote the key, as if Ctrl-C came while it ran.
    let bin = lab.scripts.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let real = String::from_utf8(
        metis_tests::tool::run(Command::new("sh").args(["-c", "command -v ssh-keygen"]))
            .unwrap()
            .stdout,
    )
    .unwrap();
    script(
        &bin.join("ssh-keygen"),
        &format!("{} \"$@\" || exit\n{SIGNAL_PARENT}", real.trim()),
    );
    for (signal, runtime_dir) in [("INT", true), ("TERM", false)] {
        let what = format!("SIG{signal}, XDG_RUNTIME_DIR {runtime_dir}");
        let o = lab
            .metis_build(&["secrets", "init"], runtime_dir)
            .env(
                "PATH",
                format!("{}:{}", bin.display(), metis_tests::tool::search_path()),
            )
            .env("SIGNAL", signal)
            .env("PARENT_RECORD", lab.scripts.join("keygen-parent"))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(130), "{what}: {}", describe(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("interrupted while generating") && err.contains("init` again"),
            "{what}: {err}"
        );
        lab.assert_no_plaintext_left(&what);
        let sealed: Vec<_> = lab.sealed().into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            sealed,
            [lab.inventory.join("secrets/cluster.age")],
            "{what}: only the cluster's file, complete, is sealed"
        );
    }
}
