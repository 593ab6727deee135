//! The lab profile (`lab.metis`): the settings an operator's laptop needs to
//! pull and verify the lab's cards — registry, repository prefix, lab CA and
//! the pinned signing keys — in one file the builder exports
//! (`metis-build operator-profile > lab.metis`) and the flasher reads once
//! (`metis-flash setup lab.metis`).
//!
//! The format is the wire contract between the two programs, so it lives here,
//! where both import it, and depends on nothing of the builder's (inventory,
//! render, publish): only serde and [`crate::trust::PublicKey`] to parse keys.
//! A profile holds public material only; [`LabProfile::parse`] refuses a CA
//! field with any PEM block but certificates, so a private key pasted by
//! mistake never reaches a laptop. Described in `docs/operator-setup.md`.
//!
//! ```
//! use metis_core::profile::{LabProfile, PROFILE_FORMAT};
//!
//! let text = format!(
//!     r#"{{"format": "{PROFILE_FORMAT}", "lab": "lab.home.arpa",
//!         "registry": "harbor.lab.home.arpa", "prefix": "metis",
//!         "public_keys": ["{}"]}}"#,
//!     include_str!("../../inventory/demo-keys/cosign.pub").replace('\n', "\\n")
//! );
//! let profile = LabProfile::parse(text.as_bytes())?;
//! assert_eq!(profile.keys()?.len(), 1);
//! assert_eq!(LabProfile::parse(profile.to_json().as_bytes())?, profile);
//! # Ok::<(), metis_core::profile::ProfileError>(())
//! ```

use crate::trust::{KeyError, PublicKey};

/// The `format` every v1 profile carries; a reader refuses any other.
pub const PROFILE_FORMAT: &str = "metis-lab-profile/v1";

/// What to do about a profile that cannot be used: only the lab's maintainer
/// can make a good one.
const ASK_FOR_A_NEW_ONE: &str =
    "ask the lab's maintainer for a new profile: metis-build operator-profile > lab.metis";

/// An operator's settings for one lab, as exported by `metis-build
/// operator-profile` (JSON, fields in this order).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabProfile {
    /// Always [`PROFILE_FORMAT`].
    pub format: String,
    /// The lab's name, shown to the operator (by default the cluster's DNS domain).
    pub lab: String,
    /// Where the lab's artifacts are: `HOST[:PORT]` (HTTPS), or
    /// `oci:/absolute/dir` for an OCI image-layout directory.
    pub registry: String,
    /// Repository prefix: artifacts are at `<registry>/<prefix>/nodes/<node>`.
    pub prefix: String,
    /// The lab CA that signed the registry's certificate, PEM `CERTIFICATE`
    /// block(s) inline; absent when the registry's certificate is publicly trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate: Option<String>,
    /// The cosign public keys (PEM, one per entry) the lab's artifacts are signed with.
    pub public_keys: Vec<String>,
}

/// Why a profile cannot be used. Every message ends with what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// The bytes are not a JSON lab profile (not JSON, a missing or unknown
    /// field, a value of the wrong type).
    #[error("not a Metis lab profile: {reason}; {ASK_FOR_A_NEW_ONE}")]
    NotAProfile {
        /// What the JSON reader refused, with line and column.
        reason: String,
    },
    /// The profile is of another format (a newer Metis, or another program's file).
    #[error("the profile's format is `{found}`, this Metis reads `{PROFILE_FORMAT}`; update metis-flash, or {ASK_FOR_A_NEW_ONE}")]
    Format {
        /// The `format` the file carries.
        found: String,
    },
    /// The lab name is empty or holds control characters.
    #[error("the profile's lab name {lab:?} is empty or not printable; {ASK_FOR_A_NEW_ONE}")]
    Lab {
        /// The name as written.
        lab: String,
    },
    /// The registry is not `HOST[:PORT]` nor `oci:/absolute/dir`.
    #[error("the profile's registry `{registry}` {reason}; {ASK_FOR_A_NEW_ONE}")]
    Registry {
        /// The registry as written.
        registry: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The repository prefix is not lowercase path components.
    #[error("the profile's prefix `{prefix}` is not a repository prefix (lowercase path components such as `lab/metis`); {ASK_FOR_A_NEW_ONE}")]
    Prefix {
        /// The prefix as written.
        prefix: String,
    },
    /// The profile pins no signing key, so nothing could ever verify.
    #[error("the profile has no public key: no card could be verified; {ASK_FOR_A_NEW_ONE}")]
    NoKeys,
    /// A public key is not a cosign (ECDSA P-256) PEM public key.
    #[error("public key {number} of the profile is unusable: {source}; {ASK_FOR_A_NEW_ONE}")]
    Key {
        /// 1-based position in `public_keys`.
        number: usize,
        /// Why it does not parse.
        #[source]
        source: KeyError,
    },
    /// The CA is not one or more PEM `CERTIFICATE` blocks (or holds another
    /// block, such as a private key, which a profile must never carry).
    #[error("the profile's CA certificate is unusable: {reason}; {ASK_FOR_A_NEW_ONE}")]
    Certificate {
        /// What is wrong with it.
        reason: CertificateError,
    },
}

impl LabProfile {
    /// Reads and checks a profile: the format, a printable lab name, the
    /// registry, the prefix, at least one key and every key parsing, the CA
    /// being certificates only.
    pub fn parse(bytes: &[u8]) -> Result<Self, ProfileError> {
        // The format first, so a newer profile is named as such rather than
        // refused for a field this version does not know.
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| ProfileError::NotAProfile {
                reason: e.to_string(),
            })?;
        match value.get("format") {
            Some(serde_json::Value::String(f)) if f == PROFILE_FORMAT => {}
            Some(serde_json::Value::String(f)) => {
                return Err(ProfileError::Format { found: f.clone() })
            }
            Some(_) | None if !value.is_object() => {
                return Err(ProfileError::NotAProfile {
                    reason: "the file is not a JSON object".into(),
                })
            }
            _ => {
                return Err(ProfileError::NotAProfile {
                    reason: "no `format` string".into(),
                })
            }
        }
        let profile: Self =
            serde_json::from_value(value).map_err(|e| ProfileError::NotAProfile {
                reason: e.to_string(),
            })?;
        profile.validate()?;
        Ok(profile)
    }

    /// The profile as pretty JSON with a trailing newline; fields always in the
    /// same order, so exporting twice gives the same bytes.
    pub fn to_json(&self) -> String {
        let mut text =
            serde_json::to_string_pretty(self).expect("a profile of strings always serialises");
        text.push('\n');
        text
    }

    /// The pinned signing keys, parsed.
    pub fn keys(&self) -> Result<Vec<PublicKey>, ProfileError> {
        self.public_keys
            .iter()
            .enumerate()
            .map(|(i, pem)| {
                PublicKey::from_pem(pem).map_err(|source| ProfileError::Key {
                    number: i + 1,
                    source,
                })
            })
            .collect()
    }

    fn validate(&self) -> Result<(), ProfileError> {
        if self.lab.trim().is_empty() || self.lab.chars().any(char::is_control) {
            return Err(ProfileError::Lab {
                lab: self.lab.clone(),
            });
        }
        check_registry(&self.registry).map_err(|reason| ProfileError::Registry {
            registry: self.registry.clone(),
            reason,
        })?;
        if !is_repo_prefix(&self.prefix) {
            return Err(ProfileError::Prefix {
                prefix: self.prefix.clone(),
            });
        }
        if self.public_keys.is_empty() {
            return Err(ProfileError::NoKeys);
        }
        self.keys()?;
        if let Some(ca) = &self.ca_certificate {
            check_certificates(ca).map_err(|reason| ProfileError::Certificate { reason })?;
        }
        Ok(())
    }
}

/// `HOST[:PORT]` (a name, an IPv4 address or `[IPv6]`, no scheme, no path) or
/// `oci:/absolute/dir`.
fn check_registry(registry: &str) -> Result<(), &'static str> {
    if registry.is_empty() {
        return Err("is empty");
    }
    if let Some(dir) = crate::location::layout_dir(registry) {
        // Absolute: a profile is read from wherever the operator saved it, so
        // a relative directory would mean something different on each laptop.
        let absolute = dir.starts_with('/') || std::path::Path::new(dir).is_absolute();
        return if absolute {
            Ok(())
        } else {
            Err("is not an absolute `oci:` directory")
        };
    }
    if registry.contains("://") {
        return Err("has a scheme; write `HOST[:PORT]` (Metis always speaks HTTPS)");
    }
    if registry
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '@' | '\\'))
    {
        return Err("is not `HOST[:PORT]` (no path, user or spaces)");
    }
    let (host, port) = match registry.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((addr, rest)) if !addr.is_empty() => (addr, rest.strip_prefix(':')),
            _ => return Err("has an unclosed `[IPv6]` address"),
        },
        None => match registry.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (registry, None),
        },
    };
    if host.is_empty() {
        return Err("has no host");
    }
    if let Some(port) = port {
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err("has a port that is not a number from 1 to 65535");
        }
    }
    Ok(())
}

/// The OCI repository prefix grammar: lowercase path components of
/// `[a-z0-9._-]`, each starting and ending alphanumeric. The same rule as the
/// inventory's `registry.prefix` (inventory::rules::repo_prefix), kept here
/// because a profile is read where no inventory code is built; a test of the
/// inventory's export holds the two to the same answers.
pub(crate) fn is_repo_prefix(s: &str) -> bool {
    !s.is_empty()
        && s.split('/').all(|c| {
            !c.is_empty()
                && c.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                })
                && c.as_bytes()[0].is_ascii_alphanumeric()
                && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
        })
}

/// At least one PEM block, every block a well-formed `CERTIFICATE`. Text
/// between blocks (the `subject=`/`issuer=` lines `openssl x509` writes) is
/// allowed, as TLS libraries allow it; any other block is refused.
pub(crate) fn check_certificates(pem: &str) -> Result<(), CertificateError> {
    const BEGIN: &str = "-----BEGIN ";
    let mut rest = pem;
    let mut count = 0;
    while let Some(start) = rest.find(BEGIN) {
        let block = &rest[start..];
        let label_end = block[BEGIN.len()..]
            .find("-----")
            .ok_or(CertificateError::UnclosedBegin)?;
        let label = &block[BEGIN.len()..BEGIN.len() + label_end];
        let end_marker = format!("-----END {label}-----");
        let end = block
            .find(&end_marker)
            .ok_or_else(|| CertificateError::NoEnd {
                label: label.to_owned(),
            })?
            + end_marker.len();
        if label != "CERTIFICATE" {
            return Err(CertificateError::NotACertificate {
                label: label.to_owned(),
            });
        }
        pem_rfc7468::decode_vec(&block.as_bytes()[..end]).map_err(|reason| {
            CertificateError::BadPem {
                number: count + 1,
                reason,
            }
        })?;
        count += 1;
        rest = &block[end..];
    }
    if count == 0 {
        return Err(CertificateError::NoCertificate);
    }
    Ok(())
}

/// Why a CA file is not one or more PEM `CERTIFICATE` blocks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// A `-----BEGIN` line without its closing dashes.
    #[error("a `-----BEGIN` line is not closed")]
    UnclosedBegin,
    /// A block without its `-----END …-----` line.
    #[error("the `{label}` block has no `-----END {label}-----` line")]
    NoEnd {
        /// The block's label, e.g. `CERTIFICATE`.
        label: String,
    },
    /// A block other than a certificate, such as a private key.
    #[error("it holds a `{label}` block; only `CERTIFICATE` blocks belong there")]
    NotACertificate {
        /// The block's label, e.g. `PRIVATE KEY`.
        label: String,
    },
    /// A certificate block that does not decode.
    #[error("certificate {number} is not valid PEM: {reason}")]
    BadPem {
        /// Which block (1-based).
        number: usize,
        /// The decoder's reason.
        reason: pem_rfc7468::Error,
    },
    /// No certificate block at all.
    #[error("it holds no `-----BEGIN CERTIFICATE-----` block")]
    NoCertificate,
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEMO_KEY: &str = include_str!("../../inventory/demo-keys/cosign.pub");
    /// A self-signed certificate (`openssl req -x509`, P-256, CN "Metis test lab CA").
    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIBjjCCATWgAwIBAgIUQvzKvU3wMOIYKM0/1w5hRCUuIbswCgYIKoZIzj0EAwIw\nHDEaMBgGA1UEAwwRTWV0aXMgdGVzdCBsYWIgQ0EwIBcNMjYxMjAzMDc1MDI1WhgP\nMjEyNjExMDkwNzUwMjVaMBwxGjAYBgNVBAMMEU1ldGlzIHRlc3QgbGFiIENBMFkw\nEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEaP3qcZ85kqvF9HjjBf7eUaETtRJjIh/9\nrdTHTJazhxWcjSIPOs0GGV0vIr7ocbCTPaMVxL7BQI0vbw6PnYtseqNTMFEwHQYD\nVR0OBBYEFFKJEdzP5BUXArJo0rTbjotDUhh7MB8GA1UdIwQYMBaAFFKJEdzP5BUX\nArJo0rTbjotDUhh7MA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDRwAwRAIg\nHFsWX2ikSj+wIQ1XyS1b0EKPFBO0ZeLgiED0p1vqQzkCIF7PEXxMkqzvk2kbDewx\nwKVbKGs6HyHsqbyP2bZfHlZk\n-----END CERTIFICATE-----\n";

    fn good() -> LabProfile {
        LabProfile {
            format: PROFILE_FORMAT.into(),
            lab: "lab.home.arpa".into(),
            registry: "harbor.lab.home.arpa:443".into(),
            prefix: "lab/metis".into(),
            ca_certificate: Some(CERT.into()),
            public_keys: vec![DEMO_KEY.into()],
        }
    }

    /// One change to a good profile.
    type Edit = Box<dyn Fn(&mut LabProfile)>;

    fn json(p: &LabProfile) -> Vec<u8> {
        p.to_json().into_bytes()
    }

    #[test]
    fn a_good_profile_round_trips_byte_for_byte() {
        let p = good();
        let text = p.to_json();
        assert!(text.ends_with("}\n"), "{text}");
        let fields: Vec<usize> = [
            "\"format\"",
            "\"lab\"",
            "\"registry\"",
            "\"prefix\"",
            "\"ca_certificate\"",
            "\"public_keys\"",
        ]
        .iter()
        .map(|f| text.find(f).unwrap_or_else(|| panic!("{f} missing")))
        .collect();
        assert!(fields.windows(2).all(|w| w[0] < w[1]), "{text}");
        let back = LabProfile::parse(text.as_bytes()).unwrap();
        assert_eq!(back, p);
        assert_eq!(back.to_json(), text);
        let keys = back.keys().unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(
            keys[0].fingerprint(),
            crate::trust::DEMO_KEY_FINGERPRINT,
            "the demo key parses to itself"
        );
    }

    #[test]
    fn good_variants_parse() {
        let cases: Vec<(&str, Edit)> = vec![
            ("no CA (omitted)", Box::new(|p| p.ca_certificate = None)),
            (
                "oci: absolute",
                Box::new(|p| p.registry = "oci:/srv/metis".into()),
            ),
            ("bare host", Box::new(|p| p.registry = "harbor".into())),
            (
                "IPv4 and port",
                Box::new(|p| p.registry = "192.168.22.5:5000".into()),
            ),
            ("IPv6", Box::new(|p| p.registry = "[::1]:5000".into())),
            (
                "IPv6 no port",
                Box::new(|p| p.registry = "[fd00::5]".into()),
            ),
            ("one-part prefix", Box::new(|p| p.prefix = "metis".into())),
            (
                "two keys",
                Box::new(|p| p.public_keys.push(DEMO_KEY.into())),
            ),
            (
                "a CA bundle with openssl's text between blocks",
                Box::new(|p| {
                    p.ca_certificate = Some(format!(
                        "subject=CN = lab CA\n{CERT}\nissuer=CN = root\n{CERT}"
                    ))
                }),
            ),
        ];
        for (name, change) in cases {
            let mut p = good();
            change(&mut p);
            let parsed = LabProfile::parse(&json(&p));
            assert!(parsed.is_ok(), "{name}: {:?}", parsed.err());
        }
        let mut p = good();
        p.ca_certificate = None;
        assert!(!p.to_json().contains("ca_certificate"), "None is omitted");
    }

    #[test]
    fn each_bad_profile_is_refused_with_what_to_do() {
        let private = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n";
        let cases: Vec<(&str, Edit, &str)> = vec![
            (
                "format v2",
                Box::new(|p| p.format = "metis-lab-profile/v2".into()),
                "format is `metis-lab-profile/v2`",
            ),
            ("empty lab", Box::new(|p| p.lab = " ".into()), "lab name"),
            (
                "lab with a newline",
                Box::new(|p| p.lab = "a\nb".into()),
                "lab name",
            ),
            (
                "empty registry",
                Box::new(|p| p.registry = String::new()),
                "is empty",
            ),
            (
                "https scheme",
                Box::new(|p| p.registry = "https://harbor".into()),
                "has a scheme",
            ),
            (
                "registry with a path",
                Box::new(|p| p.registry = "harbor/metis".into()),
                "not `HOST[:PORT]`",
            ),
            (
                "registry with a user",
                Box::new(|p| p.registry = "ops@harbor".into()),
                "not `HOST[:PORT]`",
            ),
            (
                "bad port",
                Box::new(|p| p.registry = "harbor:https".into()),
                "port",
            ),
            (
                "port 0",
                Box::new(|p| p.registry = "harbor:0".into()),
                "port",
            ),
            (
                "no host",
                Box::new(|p| p.registry = ":5000".into()),
                "no host",
            ),
            (
                "unclosed IPv6",
                Box::new(|p| p.registry = "[::1:5000".into()),
                "unclosed",
            ),
            (
                "relative oci:",
                Box::new(|p| p.registry = "oci:../out/registry".into()),
                "absolute",
            ),
            (
                "uppercase prefix",
                Box::new(|p| p.prefix = "Metis".into()),
                "prefix `Metis`",
            ),
            (
                "empty prefix",
                Box::new(|p| p.prefix = String::new()),
                "prefix ``",
            ),
            (
                "prefix with a trailing slash",
                Box::new(|p| p.prefix = "metis/".into()),
                "prefix",
            ),
            (
                "no keys",
                Box::new(|p| p.public_keys.clear()),
                "no public key",
            ),
            (
                "a key that is not PEM",
                Box::new(|p| p.public_keys.push("ssh-ed25519 AAAA".into())),
                "public key 2",
            ),
            (
                "a private key as public key",
                Box::new(move |p| p.public_keys = vec![private.into()]),
                "public key 1",
            ),
            (
                "CA without a block",
                Box::new(|p| p.ca_certificate = Some("not a certificate".into())),
                "no `-----BEGIN CERTIFICATE-----`",
            ),
            (
                "CA with a private key",
                Box::new(move |p| p.ca_certificate = Some(format!("{CERT}{private}"))),
                "`PRIVATE KEY` block",
            ),
            (
                "CA not closed",
                Box::new(|p| p.ca_certificate = Some("-----BEGIN CERTIFICATE-----\nMIIB\n".into())),
                "no `-----END CERTIFICATE-----`",
            ),
            (
                "CA bad base64",
                Box::new(|p| {
                    p.ca_certificate = Some(
                        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n".into(),
                    )
                }),
                "not valid PEM",
            ),
        ];
        for (name, change, says) in cases {
            let mut p = good();
            change(&mut p);
            let err = match LabProfile::parse(&json(&p)) {
                Ok(_) => panic!("{name}: accepted"),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(says), "{name}: `{err}` does not say `{says}`");
            assert!(
                err.contains("metis-build operator-profile > lab.metis"),
                "{name}: `{err}` does not say what to do"
            );
        }
    }

    #[test]
    fn bad_json_is_refused_with_what_to_do() {
        let good_text = good().to_json();
        let cases: [(&str, String, &str); 6] = [
            ("not JSON", "lab: x".into(), "not a Metis lab profile"),
            ("an array", "[]".into(), "not a JSON object"),
            (
                "no format",
                good_text.replace("\"format\"", "\"formats\""),
                "no `format`",
            ),
            (
                "format not a string",
                good_text.replace(&format!("\"{PROFILE_FORMAT}\""), "1"),
                "no `format`",
            ),
            (
                "unknown field",
                good_text.replacen("\"lab\"", "\"password\": \"x\",\n  \"lab\"", 1),
                "unknown field `password`",
            ),
            (
                "missing field",
                good_text.replace("\"prefix\": \"lab/metis\",", ""),
                "missing field `prefix`",
            ),
        ];
        for (name, text, says) in cases {
            let err = LabProfile::parse(text.as_bytes())
                .map(|_| ())
                .expect_err(name)
                .to_string();
            assert!(err.contains(says), "{name}: `{err}` does not say `{says}`");
            assert!(err.contains("operator-profile"), "{name}: {err}");
        }
    }
}
