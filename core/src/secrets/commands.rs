//! What `metis-build secrets …` does: create, change, re-encrypt and import
//! sealed sources.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;

use zeroize::Zeroizing;

use super::age_io::Identities;
use super::bundle::{read_source, source_recipients, write_source};
use super::plaintext_dir::PlaintextDir;
use super::source::{sealed_path, HostKey, RegistryCredentials, Secret, Source, CLUSTER};
use super::{Result, SecretsError};
use crate::inventory::Inventory;
use crate::render::SshKeyType;

/// SSH host key types `init` generates, with ssh-keygen's arguments.
const GENERATED_KEYS: &[(&str, &[&str])] = &[
    ("ed25519", &["-t", "ed25519"]),
    ("ecdsa", &["-t", "ecdsa", "-b", "256"]),
    ("rsa", &["-t", "rsa", "-b", "3072"]),
];

fn check_target(inv: &Inventory, target: &str) -> Result<()> {
    if target == CLUSTER || inv.nodes.contains_key(target) {
        Ok(())
    } else {
        Err(SecretsError::UnknownTarget {
            node: target.into(),
        })
    }
}

fn random_hex(bytes: usize) -> Secret {
    use rand_core::RngCore;
    let mut buf = Zeroizing::new(vec![0u8; bytes]);
    rand_core::OsRng.fill_bytes(&mut buf);
    Secret::new(hex::encode(&*buf))
}

/// Generates the node's SSH host keys with `ssh-keygen` in a plaintext
/// directory (zeroed and removed on every exit path).
fn generate_host_keys(hostname: &str) -> Result<std::collections::BTreeMap<String, HostKey>> {
    let dir = PlaintextDir::new()?;
    let mut out = std::collections::BTreeMap::new();
    for (name, args) in GENERATED_KEYS {
        let key = dir.path().join(format!("ssh_host_{name}_key"));
        let public = key.with_extension("pub");
        let status = Command::new("ssh-keygen")
            .args(*args)
            .args(["-q", "-N", "", "-C"])
            .arg(format!("root@{hostname}"))
            .arg("-f")
            .arg(&key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| SecretsError::Tool {
                tool: "ssh-keygen".into(),
                reason: format!("{e} (install OpenSSH's ssh-keygen)"),
            })?;
        if !status.success() {
            return Err(SecretsError::Tool {
                tool: "ssh-keygen".into(),
                reason: status.to_string(),
            });
        }
        let private_pem = read_secret_file(&key)?;
        let public_line = std::fs::read_to_string(&public)
            .map_err(SecretsError::io("reading the generated public key"))?;
        out.insert(
            name.to_string(),
            HostKey {
                private: Secret::new(private_pem.to_string()),
                public: public_line.trim().to_string(),
            },
        );
    }
    Ok(out)
}

fn read_secret_file(path: &Path) -> Result<Zeroizing<String>> {
    let mut s = Zeroizing::new(String::new());
    File::open(path)
        .and_then(|mut f| f.read_to_string(&mut s))
        .map_err(SecretsError::io(format!("reading {}", path.display())))?;
    Ok(s)
}

/// Creates what is missing, never overwriting a sealed file:
/// `secrets/cluster.age` with a random k3s token, and for each node without
/// `secrets/<node>.age` new SSH host keys (ed25519, ecdsa, rsa; by
/// `ssh-keygen`) and a random k3s node password. Returns the files written.
///
/// `interrupted` is asked after each node's keys were generated (a signal
/// also reaches `ssh-keygen`): when it says yes, the keys are wiped and
/// [`SecretsError::Interrupted`] returned; files already sealed are complete
/// and stay.
pub fn init(inv: &Inventory, interrupted: &dyn Fn() -> bool) -> Result<Vec<PathBuf>> {
    source_recipients(inv)?;
    let mut written = Vec::new();
    if !sealed_path(inv, CLUSTER).exists() {
        let mut s = Source::new();
        s.k3s_token = Some(random_hex(24));
        write_source(inv, CLUSTER, &s)?;
        written.push(sealed_path(inv, CLUSTER));
    }
    for node in inv.nodes.values() {
        if sealed_path(inv, &node.name).exists() {
            continue;
        }
        let mut s = Source::new();
        let keys = generate_host_keys(&node.hostname);
        if interrupted() {
            return Err(SecretsError::Interrupted {
                during: format!("generating {}'s SSH host keys", node.name),
                outcome: format!(
                    "its keys were wiped; the {} file(s) sealed before are complete and kept; run `metis-build secrets init` again for the rest",
                    written.len()
                ),
            });
        }
        s.ssh_host_keys = keys?;
        s.node_password = Some(random_hex(16));
        write_source(inv, &node.name, &s)?;
        written.push(sealed_path(inv, &node.name));
    }
    Ok(written)
}

/// A key of a sealed source, as `secrets set` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretKey {
    /// `node_password`.
    NodePassword,
    /// `k3s_token`.
    K3sToken,
    /// `registry.username`.
    RegistryUsername,
    /// `registry.password`.
    RegistryPassword,
    /// `ssh_host_keys.<type>.private`.
    HostPrivate(SshKeyType),
    /// `ssh_host_keys.<type>.public`.
    HostPublic(SshKeyType),
    /// `file.<name>`: a secret hook file's value.
    File(String),
}

impl std::fmt::Display for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretKey::NodePassword => f.write_str("node_password"),
            SecretKey::K3sToken => f.write_str("k3s_token"),
            SecretKey::RegistryUsername => f.write_str("registry.username"),
            SecretKey::RegistryPassword => f.write_str("registry.password"),
            SecretKey::HostPrivate(t) => write!(f, "ssh_host_keys.{}.private", t.as_str()),
            SecretKey::HostPublic(t) => write!(f, "ssh_host_keys.{}.public", t.as_str()),
            SecretKey::File(n) => write!(f, "file.{n}"),
        }
    }
}

impl FromStr for SecretKey {
    type Err = SecretsError;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || SecretsError::BadKey { key: s.into() };
        Ok(match s {
            "node_password" => SecretKey::NodePassword,
            "k3s_token" => SecretKey::K3sToken,
            "registry.username" => SecretKey::RegistryUsername,
            "registry.password" => SecretKey::RegistryPassword,
            _ => {
                if let Some(name) = s.strip_prefix("file.") {
                    if name.is_empty() {
                        return Err(bad());
                    }
                    SecretKey::File(name.into())
                } else if let Some(rest) = s.strip_prefix("ssh_host_keys.") {
                    let (t, half) = rest.split_once('.').ok_or_else(bad)?;
                    let t = SshKeyType::parse(t).ok_or_else(bad)?;
                    match half {
                        "private" => SecretKey::HostPrivate(t),
                        "public" => SecretKey::HostPublic(t),
                        _ => return Err(bad()),
                    }
                } else {
                    return Err(bad());
                }
            }
        })
    }
}

fn one_line(key: &str, value: &[u8]) -> Result<Secret> {
    let bad = |reason: &str| SecretsError::BadValue {
        key: key.into(),
        reason: reason.into(),
    };
    let s = std::str::from_utf8(value).map_err(|_| bad("not UTF-8"))?;
    let s = s.trim_end_matches(['\n', '\r']);
    if s.is_empty() || s.contains(['\n', '\r']) {
        return Err(bad("must be one non-empty line"));
    }
    Ok(Secret::new(s.to_string()))
}

/// Sets one key of a sealed source (`target`: a node or `cluster`) to
/// `value`, creating the source if it does not exist. `ci` decrypts the
/// existing source.
pub fn set(
    inv: &Inventory,
    ci: Option<&Identities>,
    target: &str,
    key: &SecretKey,
    value: &[u8],
) -> Result<()> {
    check_target(inv, target)?;
    let mut source = load_or_new(inv, ci, target)?;
    let name = key.to_string();
    match key {
        SecretKey::NodePassword => source.node_password = Some(one_line(&name, value)?),
        SecretKey::K3sToken => source.k3s_token = Some(one_line(&name, value)?),
        SecretKey::RegistryUsername => {
            let v = one_line(&name, value)?;
            source
                .registry
                .get_or_insert_with(Default::default)
                .username = v.expose().into();
        }
        SecretKey::RegistryPassword => {
            let v = one_line(&name, value)?;
            source
                .registry
                .get_or_insert_with(RegistryCredentials::default)
                .password = v;
        }
        SecretKey::HostPrivate(t) => {
            let s = std::str::from_utf8(value).map_err(|_| SecretsError::BadValue {
                key: name.clone(),
                reason: "not UTF-8".into(),
            })?;
            if !s.trim_start().starts_with("-----BEGIN ") {
                return Err(SecretsError::BadValue {
                    key: name,
                    reason: "not a PEM private key".into(),
                });
            }
            source
                .ssh_host_keys
                .entry(t.as_str().into())
                .or_default()
                .private = Secret::new(s.to_string());
        }
        SecretKey::HostPublic(t) => {
            let v = one_line(&name, value)?;
            source
                .ssh_host_keys
                .entry(t.as_str().into())
                .or_default()
                .public = v.expose().into();
        }
        SecretKey::File(f) => {
            let s = std::str::from_utf8(value).map_err(|_| SecretsError::BadValue {
                key: name,
                reason: "not UTF-8 (secret files are text)".into(),
            })?;
            source.files.insert(f.clone(), Secret::new(s.to_string()));
        }
    }
    write_source(inv, target, &source)
}

fn load_or_new(inv: &Inventory, ci: Option<&Identities>, target: &str) -> Result<Source> {
    if sealed_path(inv, target).exists() {
        let ci = ci.ok_or_else(|| SecretsError::NoIdentity {
            hint: format!(
                "{} exists; pass --identity FILE or set {} to decrypt it",
                sealed_path(inv, target).display(),
                super::CI_IDENTITY_ENV
            ),
        })?;
        read_source(inv, target, ci)
    } else {
        Ok(Source::new())
    }
}

/// Decrypts a sealed source into a 0600 file of a plaintext directory (0700,
/// under `$XDG_RUNTIME_DIR` when set), runs `editor` on it (`EDITOR="code
/// --wait"` works; shell syntax goes through `sh -c`), and re-encrypts what
/// was saved.
/// The temp file is zeroed and removed on every exit path. Returns whether
/// the content changed.
///
/// `interrupted` is asked once the editor has exited: when a signal came
/// while it ran (the caller keeps the process alive meanwhile), what was
/// saved is discarded and [`SecretsError::Interrupted`] returned.
pub fn edit(
    inv: &Inventory,
    ci: &Identities,
    target: &str,
    editor: &str,
    interrupted: &dyn Fn() -> bool,
) -> Result<bool> {
    check_target(inv, target)?;
    let before = load_or_new(inv, Some(ci), target)?;
    let dir = PlaintextDir::new()?;
    let path = dir.path().join(format!("{target}.json"));
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts
            .open(&path)
            .map_err(SecretsError::io("creating the temp file to edit"))?;
        f.write_all(&before.to_plaintext())
            .map_err(SecretsError::io("writing the temp file to edit"))?;
    }
    let status = editor_command(editor, &path)
        .status()
        .map_err(|e| SecretsError::Tool {
            tool: format!("the editor `{editor}`"),
            reason: e.to_string(),
        })?;
    if interrupted() {
        return Err(SecretsError::Interrupted {
            during: format!("the editor `{editor}` ran"),
            outcome: "nothing was changed and the decrypted temp file was wiped".into(),
        });
    }
    if !status.success() {
        return Err(SecretsError::Tool {
            tool: format!("the editor `{editor}`"),
            reason: format!("{status}; nothing was changed"),
        });
    }
    let mut after_plain = Zeroizing::new(Vec::new());
    File::open(&path)
        .and_then(|mut f| f.read_to_end(&mut after_plain))
        .map_err(SecretsError::io("reading the edited temp file"))?;
    let after = Source::from_plaintext(&after_plain, &format!("the edited {target} secrets"))?;
    if after == before {
        return Ok(false);
    }
    write_source(inv, target, &after)?;
    Ok(true)
}

/// How `edit` runs `editor` on `path`. A plain command line (`vim`,
/// `code --wait`) is split on spaces and run directly, so the editor is our
/// own child: metis-build waits for the editor itself, not for a shell that a
/// signal may end while the editor still writes (a swap file, say) into the
/// directory about to be wiped. Anything with shell syntax goes through
/// `sh -c` as git does.
fn editor_command(editor: &str, path: &Path) -> Command {
    let plain = editor
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || " -_./:+,@%".contains(c));
    if plain || cfg!(not(unix)) {
        let mut words = editor.split_whitespace();
        let mut cmd = Command::new(words.next().unwrap_or("vi"));
        cmd.args(words).arg(path);
        cmd
    } else {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("{editor} \"$1\""))
            .arg("sh")
            .arg(path);
        cmd
    }
}

/// Re-encrypts every sealed source of the inventory (`secrets/*.age`) to the
/// current recipients. Returns the files rewritten.
pub fn rekey(inv: &Inventory, ci: &Identities) -> Result<Vec<PathBuf>> {
    source_recipients(inv)?;
    let dir = inv.dir.join("secrets");
    let mut targets: Vec<String> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .flatten()
            .filter_map(|e| {
                let p = e.path();
                (p.extension().and_then(|x| x.to_str()) == Some("age"))
                    .then(|| p.file_stem()?.to_str().map(String::from))
                    .flatten()
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(SecretsError::io(format!("reading {}", dir.display()))(e)),
    };
    targets.sort();
    // Decrypt everything first, so a file we cannot read stops the run
    // before anything is rewritten.
    let mut sources = Vec::new();
    for t in &targets {
        sources.push((t, read_source(inv, t, ci)?));
    }
    let mut written = Vec::new();
    for (t, s) in sources {
        write_source(inv, t, &s)?;
        written.push(sealed_path(inv, t));
    }
    Ok(written)
}

/// Imports a running node's identity from a copy of its files under `root`:
/// `etc/ssh/ssh_host_{ed25519,ecdsa,rsa}_key{,.pub}` and
/// `etc/rancher/node/password`, so a rebuilt node keeps its old SSH host keys
/// and k3s node password. Other keys of an existing source are kept (`ci`
/// decrypts it). Returns what was imported (key names, not values).
pub fn capture(
    inv: &Inventory,
    ci: Option<&Identities>,
    node: &str,
    root: &Path,
) -> Result<Vec<String>> {
    if !inv.nodes.contains_key(node) {
        return Err(SecretsError::UnknownTarget { node: node.into() });
    }
    let mut keys = std::collections::BTreeMap::new();
    let mut imported = Vec::new();
    for t in ["ed25519", "ecdsa", "rsa"] {
        let private = root.join(format!("etc/ssh/ssh_host_{t}_key"));
        let public = root.join(format!("etc/ssh/ssh_host_{t}_key.pub"));
        if !private.is_file() {
            continue;
        }
        let private_pem = read_secret_file(&private)?;
        if !private_pem.trim_start().starts_with("-----BEGIN ") {
            return Err(SecretsError::BadValue {
                key: private.display().to_string(),
                reason: "not a PEM private key".into(),
            });
        }
        let public_line = std::fs::read_to_string(&public).map_err(SecretsError::io(format!(
            "reading {} (the public half of {})",
            public.display(),
            private.display()
        )))?;
        keys.insert(
            t.to_string(),
            HostKey {
                private: Secret::new(private_pem.to_string()),
                public: public_line.trim().to_string(),
            },
        );
        imported.push(format!("ssh_host_keys.{t}"));
    }
    let password_file = root.join("etc/rancher/node/password");
    let password = if password_file.is_file() {
        let p = read_secret_file(&password_file)?;
        imported.push("node_password".into());
        Some(one_line("node_password", p.as_bytes())?)
    } else {
        None
    };
    if imported.is_empty() {
        return Err(SecretsError::MissingSource {
            path: root.join("etc/ssh/ssh_host_*_key"),
        });
    }
    let mut source = load_or_new(inv, ci, node)?;
    if !keys.is_empty() {
        source.ssh_host_keys = keys;
    }
    if password.is_some() {
        source.node_password = password;
    }
    write_source(inv, node, &source)?;
    Ok(imported)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_parse_and_print_the_same() {
        for k in [
            "node_password",
            "k3s_token",
            "registry.username",
            "registry.password",
            "ssh_host_keys.ed25519.private",
            "ssh_host_keys.ecdsa.public",
            "ssh_host_keys.rsa.private",
            "file.lab_api_key",
        ] {
            assert_eq!(k.parse::<SecretKey>().unwrap().to_string(), k);
        }
        for bad in [
            "",
            "file.",
            "password",
            "ssh_host_keys.dsa.private",
            "ssh_host_keys.rsa",
            "ssh_host_keys.rsa.both",
        ] {
            assert!(bad.parse::<SecretKey>().is_err(), "{bad}");
        }
    }

    #[test]
    fn plain_editors_run_directly_and_shell_syntax_through_sh() {
        let path = Path::new("/run/user/1000/metis-secrets-x/titan-13.json");
        let args = |c: &Command| {
            c.get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        };
        let c = editor_command("code --wait", path);
        assert_eq!(c.get_program(), "code");
        assert_eq!(args(&c), ["--wait", path.to_str().unwrap()]);
        let c = editor_command("/usr/bin/vim", path);
        assert_eq!(c.get_program(), "/usr/bin/vim");
        #[cfg(unix)]
        for shell in ["FOO=1 vim", "vim -c 'set nobackup'", "$HOME/bin/ed"] {
            let c = editor_command(shell, path);
            assert_eq!(c.get_program(), "sh", "{shell}");
            assert_eq!(args(&c)[1], format!("{shell} \"$1\""));
        }
    }

    #[test]
    fn one_line_values_lose_one_trailing_newline_and_refuse_more_lines() {
        assert_eq!(one_line("k", b"abc\n").unwrap().expose(), "abc");
        assert_eq!(one_line("k", b"abc\r\n").unwrap().expose(), "abc");
        for bad in [&b""[..], b"\n", b"a\nb", b"\xff"] {
            let e = one_line("k", bad).unwrap_err().to_string();
            assert!(e.contains("`k`"), "{e}");
        }
    }

    #[test]
    fn sources_round_trip_through_their_plaintext() {
        let mut s = Source::new();
        s.node_password = Some(Secret::new("p".into()));
        s.ssh_host_keys.insert(
            "ed25519".into(),
            HostKey {
                private: Secret::new("-----BEGIN OPENSSH PRIVATE KEY-----\nx\n".into()),
                public: "ssh-ed25519 AAAA".into(),
            },
        );
        s.files.insert("k".into(), Secret::new("v\n".into()));
        let back = Source::from_plaintext(&s.to_plaintext(), "t").unwrap();
        assert_eq!(back, s);
        let e = Source::from_plaintext(br#"{"metis_secrets": 2}"#, "t").unwrap_err();
        assert!(e.to_string().contains("expected 1"), "{e}");
        let e = Source::from_plaintext(
            br#"{"metis_secrets": 1, "ssh_host_keys": {"dsa": {"private": "x", "public": "y"}}}"#,
            "t",
        )
        .unwrap_err();
        assert!(e.to_string().contains("ssh_host_keys.dsa"), "{e}");
    }
}
