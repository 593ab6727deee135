//! age encryption and decryption, and the identities that decrypt.

use std::fmt;
use std::io::Read;
#[cfg(feature = "build")]
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::armor::ArmoredReader;
#[cfg(feature = "build")]
use age::armor::{ArmoredWriter, Format};
use age::secrecy::SecretString;
use zeroize::Zeroizing;

use super::{Result, SecretsError};

/// Environment variable holding the CI builder's age identity file *contents*.
#[cfg(feature = "build")]
pub const CI_IDENTITY_ENV: &str = "METIS_AGE_IDENTITY";

/// Environment variable holding the passphrase of a passphrase-protected
/// identity or SSH key, for non-interactive use (tests, scripts).
pub const PASSPHRASE_ENV: &str = "METIS_IDENTITY_PASSPHRASE";

/// Parses recipients as metis.yaml writes them: `age1…` (X25519) or
/// `ssh-ed25519 …` / `ssh-rsa …` (age's SSH stanzas).
#[cfg(feature = "build")]
pub fn parse_recipients(list: &[String]) -> Result<Vec<Box<dyn age::Recipient + Send>>> {
    list.iter()
        .map(|r| {
            let r = r.trim();
            let bad = || SecretsError::BadRecipient {
                recipient: r.to_string(),
            };
            if r.starts_with("age1") {
                age::x25519::Recipient::from_str(r)
                    .map(|x| Box::new(x) as Box<dyn age::Recipient + Send>)
                    .map_err(|_| bad())
            } else if r.starts_with("ssh-") {
                age::ssh::Recipient::from_str(r)
                    .map(|x| Box::new(x) as Box<dyn age::Recipient + Send>)
                    .map_err(|_| bad())
            } else {
                Err(bad())
            }
        })
        .collect()
}

/// Encrypts `plaintext` to `recipients`; ASCII-armored when `armor`.
#[cfg(feature = "build")]
pub fn seal(plaintext: &[u8], recipients: &[String], armor: bool) -> Result<Vec<u8>> {
    let parsed = parse_recipients(recipients)?;
    let encryptor = age::Encryptor::with_recipients(parsed.iter().map(|r| r.as_ref() as _))
        .map_err(|e| SecretsError::Corrupt {
            what: "the recipient list".into(),
            reason: e.to_string(),
        })?;
    let mut out = Vec::with_capacity(plaintext.len() * 4 / 3 + 1024);
    let io = SecretsError::io("encrypting");
    let format = if armor {
        Format::AsciiArmor
    } else {
        Format::Binary
    };
    let run = || -> std::io::Result<()> {
        let armored = ArmoredWriter::wrap_output(&mut out, format)?;
        let mut w = encryptor.wrap_output(armored)?;
        w.write_all(plaintext)?;
        w.finish()?.finish()?;
        Ok(())
    };
    run().map_err(io)?;
    Ok(out)
}

/// Decrypts an age file (armored or binary) with `identities`. `what` names
/// the file in errors; `hint` says whom to ask when no identity matches.
pub fn open(
    ciphertext: &[u8],
    identities: &Identities,
    what: &str,
    hint: &str,
) -> Result<Zeroizing<Vec<u8>>> {
    let corrupt = |reason: String| SecretsError::Corrupt {
        what: what.to_string(),
        reason,
    };
    let decryptor =
        age::Decryptor::new_buffered(ArmoredReader::new(ciphertext)).map_err(|e| match e {
            age::DecryptError::Io(io) => corrupt(io.to_string()),
            other => corrupt(other.to_string()),
        })?;
    if decryptor.is_scrypt() {
        return Err(corrupt(
            "it is passphrase-encrypted, not encrypted to recipients".into(),
        ));
    }
    let mut reader = decryptor
        .decrypt(identities.list.iter().map(|i| i.as_ref() as _))
        .map_err(|e| map_decrypt_error(e, what, hint))?;
    let mut out = Zeroizing::new(Vec::with_capacity(ciphertext.len()));
    reader
        .read_to_end(&mut out)
        .map_err(|e| corrupt(format!("the payload does not authenticate ({})", e.kind())))?;
    Ok(out)
}

fn map_decrypt_error(e: age::DecryptError, what: &str, hint: &str) -> SecretsError {
    match e {
        age::DecryptError::NoMatchingKeys => SecretsError::NotARecipient {
            what: what.to_string(),
            plural: what.ends_with("secrets"),
            hint: hint.to_string(),
        },
        other => SecretsError::Corrupt {
            what: what.to_string(),
            reason: other.to_string(),
        },
    }
}

/// Passphrases: `METIS_IDENTITY_PASSPHRASE` when set, else asked on the
/// terminal with echo off.
fn passphrase(prompt: &str) -> Option<SecretString> {
    if let Ok(p) = std::env::var(PASSPHRASE_ENV) {
        return Some(SecretString::from(p));
    }
    rpassword::prompt_password(format!("{prompt}: "))
        .ok()
        .map(SecretString::from)
}

/// Private keys that can decrypt: age identities (X25519), SSH private keys
/// (ed25519, RSA; passphrase asked when needed). `Debug` shows only how many.
pub struct Identities {
    list: Vec<Box<dyn age::Identity + Send + Sync>>,
    /// The DEMO recipient one of them belongs to, if any.
    demo: Option<&'static str>,
}

/// The recipients of the example lab's DEMO identities (`inventory/demo-keys/`:
/// `operator.agekey`, `builder.agekey`, `operator_ssh`), whose private halves are
/// public: secrets sealed to them are not secret. A unit test keeps this list
/// equal to the files.
pub const DEMO_RECIPIENTS: &[&str] = &[
    "age18n6fdqnkkqsadk73fr8mneqn6cjat0ys7w6glyr8pv7fta3jq9yq4fgwa5",
    "age1lmyr4eednrm9p8mvqgkewuq699vqwe6qdnjm4zqyvcsqy8527csqtjge3l",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBZNhwignj2qWyV/ozWUNzidvfL1ZmsM1n9tEYAYQyso",
];

/// The recipient of each identity in an age identity file or OpenSSH private key,
/// as far as it can be derived without a passphrase: X25519 identities, and the
/// public key an `openssh-key-v1` file carries in clear (also when encrypted).
fn recipients_of(text: &[u8]) -> Vec<String> {
    let Ok(text) = std::str::from_utf8(text) else {
        return Vec::new();
    };
    if let Some(ssh) = openssh_public_key(text) {
        return vec![ssh];
    }
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .filter_map(|l| age::x25519::Identity::from_str(l).ok())
        .map(|id| id.to_public().to_string())
        .collect()
}

/// Splits an SSH wire-format string (u32 length, bytes) off the front of `rest`.
fn take_ssh_string<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let all: &'a [u8] = rest;
    let len = u32::from_be_bytes(all.get(..4)?.try_into().ok()?) as usize;
    let value = all.get(4..4usize.checked_add(len)?)?;
    *rest = &all[4 + len..];
    Some(value)
}

/// `ssh-<type> <base64>` from an `-----BEGIN OPENSSH PRIVATE KEY-----` file
/// (PROTOCOL.key: magic, cipher, kdf, kdf options, key count, then the public key
/// blob, before the possibly encrypted private part).
fn openssh_public_key(text: &str) -> Option<String> {
    use base64::Engine as _;
    let body = text
        .split("-----BEGIN OPENSSH PRIVATE KEY-----")
        .nth(1)?
        .split("-----END OPENSSH PRIVATE KEY-----")
        .next()?;
    let body: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let raw = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .ok()?,
    );
    let mut rest: &[u8] = raw.strip_prefix(b"openssh-key-v1\0")?;
    for _cipher_kdf_and_options in 0..3 {
        take_ssh_string(&mut rest)?;
    }
    let count = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
    rest = &rest[4..];
    if count != 1 {
        return None;
    }
    let blob = take_ssh_string(&mut rest)?;
    let kind = std::str::from_utf8(take_ssh_string(&mut &blob[..])?).ok()?;
    Some(format!(
        "{kind} {}",
        base64::engine::general_purpose::STANDARD.encode(blob)
    ))
}

impl fmt::Debug for Identities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identities({} redacted)", self.list.len())
    }
}

impl Identities {
    /// Parses an identity file's contents: an age identity file
    /// (`AGE-SECRET-KEY-1…` lines), a passphrase-protected one (an age file
    /// encrypted with a passphrase, as `age -p` writes it; the passphrase is
    /// asked for), or an OpenSSH private key. `name` names it in errors.
    pub fn parse(text: &[u8], name: &str) -> Result<Self> {
        let bad = || SecretsError::BadIdentity {
            path: name.to_string(),
        };
        let trimmed = text.trim_ascii_start();
        if trimmed.starts_with(b"age-encryption.org/")
            || trimmed.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----")
        {
            let decryptor =
                age::Decryptor::new_buffered(ArmoredReader::new(trimmed)).map_err(|_| bad())?;
            if !decryptor.is_scrypt() {
                return Err(bad());
            }
            let pass = passphrase(&format!("passphrase for {name}")).ok_or_else(|| {
                SecretsError::NoPassphrase {
                    what: name.to_string(),
                }
            })?;
            let id = age::scrypt::Identity::new(pass);
            let mut reader = decryptor
                .decrypt(std::iter::once(&id as &dyn age::Identity))
                .map_err(|e| match e {
                    age::DecryptError::DecryptionFailed
                    | age::DecryptError::NoMatchingKeys
                    | age::DecryptError::InvalidMac => SecretsError::WrongPassphrase {
                        what: name.to_string(),
                    },
                    _ => bad(),
                })?;
            let mut inner = Zeroizing::new(Vec::new());
            reader.read_to_end(&mut inner).map_err(|_| bad())?;
            return Self::parse_plain(&inner, name);
        }
        Self::parse_plain(text, name)
    }

    /// The recipient of the example lab's DEMO identity these include, if any
    /// (see `DEMO_RECIPIENTS`): the flasher warns, as for the demo signing key.
    pub fn demo_recipient(&self) -> Option<&'static str> {
        self.demo
    }

    fn parse_plain(text: &[u8], name: &str) -> Result<Self> {
        let demo = recipients_of(text)
            .iter()
            .find_map(|r| DEMO_RECIPIENTS.iter().find(|d| **d == r.as_str()).copied());
        Ok(Self {
            demo,
            ..Self::parse_identities(text, name)?
        })
    }

    fn parse_identities(text: &[u8], name: &str) -> Result<Self> {
        let bad = || SecretsError::BadIdentity {
            path: name.to_string(),
        };
        if text.windows(11).any(|w| w == b"PRIVATE KEY") {
            let id =
                age::ssh::Identity::from_buffer(text, Some(name.to_string())).map_err(|_| bad())?;
            // An encrypted key is decrypted here, once, so a missing or wrong
            // passphrase is named as such (age would ask once per stanza and
            // report a skipped key as "no matching keys").
            let id = match id {
                age::ssh::Identity::Unsupported(_) => return Err(bad()),
                age::ssh::Identity::Encrypted(k) => {
                    let pass = passphrase(&format!("passphrase for {name}")).ok_or_else(|| {
                        SecretsError::NoPassphrase {
                            what: name.to_string(),
                        }
                    })?;
                    let key = k.decrypt(pass).map_err(|_| SecretsError::WrongPassphrase {
                        what: name.to_string(),
                    })?;
                    age::ssh::Identity::Unencrypted(key)
                }
                unencrypted => unencrypted,
            };
            return Ok(Self {
                list: vec![Box::new(id)],
                demo: None,
            });
        }
        let file = age::IdentityFile::from_buffer(text).map_err(|_| bad())?;
        let list = file.into_identities().map_err(|_| bad())?;
        if list.is_empty() {
            return Err(bad());
        }
        Ok(Self { list, demo: None })
    }

    /// Reads an identity file (see [`Identities::parse`]).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = Zeroizing::new(
            std::fs::read(path).map_err(SecretsError::io(format!("reading {}", path.display())))?,
        );
        Self::parse(&text, &path.display().to_string())
    }

    /// The CI builder's identity: `file` when given, else the contents of
    /// `$METIS_AGE_IDENTITY`.
    #[cfg(feature = "build")]
    pub fn from_ci_env_or_file(file: Option<&Path>) -> Result<Self> {
        if let Some(f) = file {
            return Self::from_file(f);
        }
        match std::env::var(CI_IDENTITY_ENV) {
            Ok(v) if !v.trim().is_empty() => {
                let v = Zeroizing::new(v);
                Self::parse(v.as_bytes(), &format!("${CI_IDENTITY_ENV}"))
            }
            _ => Err(SecretsError::NoIdentity {
                hint: format!("pass --identity FILE or set {CI_IDENTITY_ENV} to the CI builder's age identity (its recipient is builder.recipient in metis.yaml)"),
            }),
        }
    }

    /// An operator's identity: `file` when given, else the first of
    /// `<config dir>/metis/identity.txt`, `~/.ssh/id_ed25519`, `~/.ssh/id_rsa`
    /// that exists.
    pub fn for_operator(file: Option<&Path>) -> Result<Self> {
        if let Some(f) = file {
            return Self::from_file(f);
        }
        let candidates = operator_identity_candidates();
        for c in &candidates {
            if c.is_file() {
                return Self::from_file(c);
            }
        }
        Err(SecretsError::NoIdentity {
            hint: format!(
                "pass --identity FILE (an age identity or your SSH private key); looked for {}",
                candidates
                    .iter()
                    .map(|c| c.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
    }
}

/// Where [`Identities::for_operator`] looks, in order.
fn operator_identity_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(c) = dirs::config_dir() {
        out.push(c.join("metis").join("identity.txt"));
    }
    if let Some(h) = dirs::home_dir() {
        out.push(h.join(".ssh").join("id_ed25519"));
        out.push(h.join(".ssh").join("id_rsa"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo_key(file: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../inventory/demo-keys")
            .join(file)
    }

    #[test]
    fn demo_identities_are_recognised_and_the_list_matches_the_files() {
        let mut derived = Vec::new();
        for (identity, public) in [
            ("operator.agekey", None),
            ("builder.agekey", None),
            ("operator_ssh", Some("operator_ssh.pub")),
        ] {
            let id = Identities::from_file(&demo_key(identity)).unwrap();
            let recipient = id
                .demo_recipient()
                .unwrap_or_else(|| panic!("{identity} not recognised as a demo identity"));
            // The recipient is the one the demo files publish.
            let published = match public {
                Some(p) => std::fs::read_to_string(demo_key(p)).unwrap(),
                None => std::fs::read_to_string(demo_key(identity)).unwrap(),
            };
            assert!(published.contains(recipient), "{identity}: {recipient}");
            derived.push(recipient);
        }
        assert_eq!(derived, DEMO_RECIPIENTS);
    }

    #[test]
    fn other_identities_are_not_demo() {
        let id = age::x25519::Identity::generate();
        let text = format!(
            "{}\n",
            age::secrecy::ExposeSecret::expose_secret(&id.to_string())
        );
        let parsed = Identities::parse(text.as_bytes(), "fresh").unwrap();
        assert_eq!(parsed.demo_recipient(), None);
        assert_eq!(
            openssh_public_key("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n"),
            None
        );
        assert_eq!(recipients_of(b"\xff\xfe"), Vec::<String>::new());
    }
}
