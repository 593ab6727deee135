//! Leak sweep: an inventory whose secrets are unique marker strings goes
//! through every `metis-build secrets` command, `check`, `render --out` and
//! `render --image`, with failures injected (wrong identity, missing sealed
//! file, corrupted ciphertext, failing editor, bad values). No marker may
//! appear in any stdout or stderr, nor in any file left in the temp dirs
//! except the sealed `.age` files and the (encrypted) bundle.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use metis_tests::golden::generate_standins;
use metis_tests::workspace_root;

fn copy_dir(from: &Path, to: &Path, skip: &[&str]) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if skip.iter().any(|s| e.file_name() == *s) {
            continue;
        }
        if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()), skip);
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

struct Sweep {
    marker: String,
    tmpdir: PathBuf,
    inventory: PathBuf,
    identity: String,
    outputs: Vec<(String, Output)>,
}

impl Sweep {
    fn run(&mut self, args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> bool {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_metis-build"));
        cmd.args(args)
            .arg("--inventory")
            .arg(&self.inventory)
            .env("TMPDIR", &self.tmpdir)
            // Plaintext would go under XDG_RUNTIME_DIR, out of the sweep's sight.
            .env_remove("XDG_RUNTIME_DIR")
            .env("METIS_AGE_IDENTITY", &self.identity)
            .env("PATH", metis_tests::tool::search_path())
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        // A command that refuses before reading stdin closes it: not an error here.
        let _ = child.stdin.take().unwrap().write_all(stdin);
        let out = child.wait_with_output().unwrap();
        let ok = out.status.success();
        self.outputs.push((args.join(" "), out));
        ok
    }

    fn must(&mut self, args: &[&str], stdin: &[u8], env: &[(&str, &str)]) {
        assert!(
            self.run(args, stdin, env),
            "{args:?} failed: {}",
            self.last_stderr()
        );
    }

    fn must_fail(&mut self, args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> String {
        assert!(!self.run(args, stdin, env), "{args:?} should fail");
        self.last_stderr()
    }

    fn last_stderr(&self) -> String {
        String::from_utf8_lossy(&self.outputs.last().unwrap().1.stderr).into_owned()
    }
}

fn contains(path: &Path, needle: &[u8]) -> bool {
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            return false;
        }
        carry.extend_from_slice(&buf[..n]);
        if carry.windows(needle.len()).any(|w| w == needle) {
            return true;
        }
        let keep = carry.len().saturating_sub(needle.len());
        carry.drain(..keep);
    }
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn no_secret_leaks_through_any_command_or_failure() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let marker = format!("LEAKMARKER-{:x}{:x}", nanos, std::process::id());
    let root = workspace_root();
    let demo = root.join("inventory/demo-keys");

    // Swept: the inventory, the render output, TMPDIR of every command.
    let swept = tempfile::tempdir().unwrap();
    // Not swept: the inputs holding markers in clear (a node's copied files,
    // the editor script).
    let inputs = tempfile::tempdir().unwrap();
    let inventory = swept.path().join("inventory");
    copy_dir(&root.join("inventory"), &inventory, &["secrets", "golden"]);
    // A registry with credentials (loopback: no demo-key warning) and a
    // secret hook file, so every kind of secret reaches the bundle.
    let lab = inventory.join("metis.yaml");
    let text = std::fs::read_to_string(&lab).unwrap();
    std::fs::write(
        &lab,
        text.replacen("host: oci:../out/registry", "host: 127.0.0.1:5000", 1),
    )
    .unwrap();
    let node = inventory.join("nodes/titan-13.yaml");
    let mut text = std::fs::read_to_string(&node).unwrap();
    text.push_str("hooks:\n  files:\n    - path: /etc/lab/api-key\n      secret: lab_api_key\n");
    std::fs::write(&node, text).unwrap();
    let tmpdir = swept.path().join("tmp");
    std::fs::create_dir_all(&tmpdir).unwrap();
    let mut s = Sweep {
        marker: marker.clone(),
        tmpdir: tmpdir.clone(),
        inventory: inventory.clone(),
        identity: std::fs::read_to_string(demo.join("builder.agekey")).unwrap(),
        outputs: Vec::new(),
    };
    let m = |what: &str| format!("{marker}-{what}");

    // `check` wants the classes' golden images.
    generate_standins(&inventory.join("golden")).expect("gen.sh");

    // Without sealed files, check fails and says what to run.
    let err = s.must_fail(&["check"], b"", &[]);
    assert!(err.contains("metis-build secrets init"), "{err}");

    s.must(&["secrets", "init"], b"", &[]);
    s.must(&["check"], b"", &[]);
    // init never overwrites.
    let before = std::fs::read(inventory.join("secrets/titan-13.age")).unwrap();
    s.must(&["secrets", "init"], b"", &[]);
    assert_eq!(
        before,
        std::fs::read(inventory.join("secrets/titan-13.age")).unwrap()
    );

    s.must(
        &["secrets", "set", "titan-13", "node_password"],
        m("pw").as_bytes(),
        &[],
    );
    s.must(
        &["secrets", "set", "cluster", "k3s_token"],
        format!("{}\n", m("token")).as_bytes(),
        &[],
    );
    s.must(
        &["secrets", "set", "cluster", "registry.username"],
        b"robot$lab\n",
        &[],
    );
    s.must(
        &["secrets", "set", "cluster", "registry.password"],
        m("registry").as_bytes(),
        &[],
    );
    s.must(
        &["secrets", "set", "titan-13", "file.lab_api_key"],
        m("file").as_bytes(),
        &[],
    );
    // Bad key, bad value, unknown node: refused without echoing the value.
    s.must_fail(
        &["secrets", "set", "titan-13", "nonsense"],
        m("badkey").as_bytes(),
        &[],
    );
    s.must_fail(
        &["secrets", "set", "titan-13", "node_password"],
        format!("{}\n{}\n", m("two"), m("lines")).as_bytes(),
        &[],
    );
    s.must_fail(
        &["secrets", "set", "titan-77", "node_password"],
        m("nonode").as_bytes(),
        &[],
    );
    s.must_fail(
        &[
            "secrets",
            "set",
            "titan-13",
            "ssh_host_keys.ed25519.private",
        ],
        m("notpem").as_bytes(),
        &[],
    );

    // capture: a node's files in clear (inputs), imported into titan-12.
    let node_root = inputs.path().join("node");
    std::fs::create_dir_all(node_root.join("etc/ssh")).unwrap();
    std::fs::create_dir_all(node_root.join("etc/rancher/node")).unwrap();
    std::fs::write(
        node_root.join("etc/ssh/ssh_host_ed25519_key"),
        format!(
            "-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----\n",
            m("hostkey")
        ),
    )
    .unwrap();
    std::fs::write(
        node_root.join("etc/ssh/ssh_host_ed25519_key.pub"),
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBZNhwignj2qWyV/ozWUNzidvfL1ZmsM1n9tEYAYQyso root@titan-12\n",
    )
    .unwrap();
    std::fs::write(
        node_root.join("etc/rancher/node/password"),
        format!("{}\n", m("captured")),
    )
    .unwrap();
    s.must(
        &[
            "secrets",
            "capture",
            "titan-12",
            node_root.to_str().unwrap(),
        ],
        b"",
        &[],
    );
    s.must_fail(
        &[
            "secrets",
            "capture",
            "titan-12",
            inputs.path().join("nothing").to_str().unwrap(),
        ],
        b"",
        &[],
    );

    // edit: an editor that changes titan-14's password; one that fails; one
    // that writes broken JSON.
    let editor = inputs.path().join("edit.sh");
    std::fs::write(
        &editor,
        format!("#!/bin/sh\nsed -i 's/\"node_password\": \"[^\"]*\"/\"node_password\": \"{}\"/' \"$1\"\n", m("edited")),
    )
    .unwrap();
    let failing = inputs.path().join("fail.sh");
    std::fs::write(&failing, "#!/bin/sh\nexit 3\n").unwrap();
    let breaking = inputs.path().join("break.sh");
    std::fs::write(
        &breaking,
        format!(
            "#!/bin/sh\nprintf '{{\"node_password\": [\"{}\"' > \"$1\"\n",
            m("broken")
        ),
    )
    .unwrap();
    for f in [&editor, &failing, &breaking] {
        let mut p = std::fs::metadata(f).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut p, 0o755);
        std::fs::set_permissions(f, p).unwrap();
    }
    s.must(
        &["secrets", "edit", "titan-14"],
        b"",
        &[("EDITOR", editor.to_str().unwrap()), ("VISUAL", "")],
    );
    s.must_fail(
        &["secrets", "edit", "titan-14"],
        b"",
        &[("VISUAL", failing.to_str().unwrap())],
    );
    s.must_fail(
        &["secrets", "edit", "titan-14"],
        b"",
        &[("VISUAL", breaking.to_str().unwrap())],
    );
    let leftovers: Vec<_> = std::fs::read_dir(&tmpdir).unwrap().collect();
    assert!(
        leftovers.is_empty(),
        "temp files left behind: {leftovers:?}"
    );

    s.must(&["secrets", "rekey"], b"", &[]);
    s.must(&["secrets", "digest", "titan-13"], b"", &[]);

    // The bundle, checked for content with the operator's key below.
    let out = swept.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let bundle = out.join("titan-13.bundle.age");
    s.must(
        &[
            "secrets",
            "bundle",
            "titan-13",
            "--out",
            bundle.to_str().unwrap(),
        ],
        b"",
        &[],
    );
    let bundle12 = out.join("titan-12.bundle.age");
    s.must(
        &[
            "secrets",
            "bundle",
            "titan-12",
            "--out",
            bundle12.to_str().unwrap(),
        ],
        b"",
        &[],
    );

    // Failures: wrong identity, missing file, corrupted ciphertext.
    let wrong = demo.join("operator_ssh");
    let e = s.must_fail(
        &[
            "secrets",
            "bundle",
            "titan-13",
            "--out",
            out.join("x").to_str().unwrap(),
            "--identity",
            wrong.to_str().unwrap(),
        ],
        b"",
        &[],
    );
    assert!(e.contains("not a recipient"), "{e}");
    s.must_fail(
        &[
            "secrets",
            "set",
            "titan-13",
            "node_password",
            "--identity",
            wrong.to_str().unwrap(),
        ],
        m("wrongid").as_bytes(),
        &[],
    );
    s.must_fail(
        &["secrets", "rekey"],
        b"",
        &[("METIS_AGE_IDENTITY", "AGE-SECRET-KEY-1GARBAGE")],
    );
    std::fs::remove_file(inventory.join("secrets/titan-15.age")).unwrap();
    let e = s.must_fail(
        &[
            "secrets",
            "bundle",
            "titan-15",
            "--out",
            out.join("y").to_str().unwrap(),
        ],
        b"",
        &[],
    );
    assert!(e.contains("titan-15"), "{e}");
    s.must_fail(&["check"], b"", &[]);
    s.must_fail(
        &[
            "render",
            "titan-13",
            "--out",
            out.join("r0").to_str().unwrap(),
        ],
        b"",
        &[],
    );
    s.must(&["secrets", "init"], b"", &[]);
    let sealed17 = inventory.join("secrets/titan-17.age");
    let mut text = std::fs::read_to_string(&sealed17).unwrap();
    let i = text.len() / 2;
    let c = if &text[i..i + 1] == "A" { "B" } else { "A" };
    text.replace_range(i..i + 1, c);
    std::fs::write(&sealed17, text).unwrap();
    s.must_fail(
        &[
            "secrets",
            "bundle",
            "titan-17",
            "--out",
            out.join("z").to_str().unwrap(),
        ],
        b"",
        &[],
    );
    s.must_fail(&["secrets", "rekey"], b"", &[]);
    s.must_fail(
        &["secrets", "edit", "titan-17"],
        b"",
        &[("VISUAL", editor.to_str().unwrap())],
    );
    std::fs::remove_file(&sealed17).unwrap();
    s.must(&["secrets", "init"], b"", &[]);

    // The rest of the pipeline on the same inventory.
    s.must(&["check"], b"", &[]);
    s.must(
        &[
            "render",
            "titan-13",
            "--out",
            out.join("render").to_str().unwrap(),
        ],
        b"",
        &[],
    );
    s.must(
        &[
            "render",
            "titan-13",
            "--image",
            out.join("titan-13.img").to_str().unwrap(),
        ],
        b"",
        &[],
    );

    // The secrets did flow: the operator opens the bundles and finds them.
    let open = |b: &Path| {
        let o = Command::new("age")
            .arg("-d")
            .arg("-i")
            .arg(demo.join("operator.agekey"))
            .arg(b)
            .output()
            .unwrap();
        assert!(o.status.success());
        o.stdout
    };
    let slot = open(&bundle);
    for what in ["pw", "token", "registry", "file"] {
        let needle = m(what);
        assert!(
            slot.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{what} not in the bundle"
        );
    }
    let slot12 = open(&bundle12);
    for what in ["hostkey", "captured"] {
        let needle = m(what);
        assert!(
            slot12.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{what} not in titan-12's bundle"
        );
    }
    let o = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(demo.join("builder.agekey"))
        .arg(inventory.join("secrets/titan-14.age"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&m("edited")),
        "the edit was sealed"
    );

    // The sweep.
    for (cmd, o) in &s.outputs {
        for (name, bytes) in [("stdout", &o.stdout), ("stderr", &o.stderr)] {
            assert!(
                !String::from_utf8_lossy(bytes).contains(&s.marker),
                "`metis-build {cmd}` {name} holds a secret:\n{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
    let mut all = Vec::new();
    files(swept.path(), &mut all);
    let mut scanned = 0;
    for f in all {
        let sealed = f.extension().is_some_and(|e| e == "age")
            && (f.parent() == Some(&inventory.join("secrets")) || f.parent() == Some(&out));
        if sealed || f.starts_with(inventory.join("golden")) {
            continue;
        }
        scanned += 1;
        assert!(
            !contains(&f, s.marker.as_bytes()),
            "{} holds a secret",
            f.display()
        );
    }
    assert!(
        scanned > 20,
        "the sweep looked at the render output too ({scanned} files)"
    );
    assert!(
        std::fs::read_dir(&tmpdir).unwrap().next().is_none(),
        "TMPDIR not empty"
    );
}
