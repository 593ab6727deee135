//! Registry credentials: `METIS_REGISTRY_USERNAME`/`METIS_REGISTRY_PASSWORD`,
//! else the `auths` of `~/.docker/config.json` (or `$DOCKER_CONFIG/config.json`).

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use super::OciError;

/// Environment variable holding the registry user name.
pub const ENV_USERNAME: &str = "METIS_REGISTRY_USERNAME";
/// Environment variable holding the registry password or token.
pub const ENV_PASSWORD: &str = "METIS_REGISTRY_PASSWORD";

/// Where credentials came from; shown in errors (never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// None found: anonymous access.
    Anonymous,
    /// `METIS_REGISTRY_USERNAME`/`METIS_REGISTRY_PASSWORD`.
    Environment,
    /// An `auths` entry of a docker config file.
    DockerConfig(PathBuf),
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialSource::Anonymous => f.write_str("nowhere (anonymous access)"),
            CredentialSource::Environment => write!(f, "{ENV_USERNAME}/{ENV_PASSWORD}"),
            CredentialSource::DockerConfig(p) => write!(f, "{}", p.display()),
        }
    }
}

/// How Metis authenticates to a registry. Every place that speaks to one
/// matches on it exhaustively, so a new scheme cannot be half-handled.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// No credentials.
    Anonymous,
    /// HTTP basic, also what a bearer-token request is made with.
    Basic {
        /// User name.
        username: String,
        /// Password or token (never shown).
        password: String,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Anonymous => f.write_str("Anonymous"),
            Auth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .finish_non_exhaustive(),
        }
    }
}

/// Credentials for one registry, and where they came from.
#[derive(Clone)]
pub struct Credentials {
    /// Where they came from.
    pub source: CredentialSource,
    /// What to present.
    pub(crate) auth: Auth,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("source", &self.source)
            .field("auth", &self.auth)
            .finish()
    }
}

impl Credentials {
    /// Anonymous access.
    pub fn anonymous() -> Self {
        Credentials {
            source: CredentialSource::Anonymous,
            auth: Auth::Anonymous,
        }
    }

    /// Explicit user name and password from `source`.
    pub fn basic(source: CredentialSource, username: String, password: String) -> Self {
        Credentials {
            source,
            auth: Auth::Basic { username, password },
        }
    }

    /// Credentials for `registry` (`host[:port]`): the environment first, then
    /// the docker config.
    pub fn for_registry(registry: &str) -> Result<Self, OciError> {
        if let (Ok(user), Ok(pass)) = (std::env::var(ENV_USERNAME), std::env::var(ENV_PASSWORD)) {
            return Ok(Credentials::basic(
                CredentialSource::Environment,
                user,
                pass,
            ));
        }
        let path = match std::env::var_os("DOCKER_CONFIG") {
            Some(dir) => PathBuf::from(dir).join("config.json"),
            None => match dirs::home_dir() {
                Some(home) => home.join(".docker/config.json"),
                None => return Ok(Credentials::anonymous()),
            },
        };
        if !path.exists() {
            return Ok(Credentials::anonymous());
        }
        from_docker_config(&path, registry)
    }
}

#[derive(Deserialize, Default)]
struct DockerConfig {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, DockerAuth>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
struct DockerAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// `https://host:port/v1/` → `host:port`.
fn normalise_host(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

fn from_docker_config(path: &Path, registry: &str) -> Result<Credentials, OciError> {
    let bad = |reason: String| OciError::CredentialConfig {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let config: DockerConfig = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let helper = |helper: &str| OciError::CredentialHelper {
        registry: registry.to_owned(),
        helper: helper.to_owned(),
        config: path.to_path_buf(),
    };
    if let Some((_, h)) = config
        .cred_helpers
        .iter()
        .find(|(k, _)| normalise_host(k) == registry)
    {
        return Err(helper(h));
    }
    let entry = config
        .auths
        .iter()
        .find(|(k, _)| normalise_host(k) == registry);
    let source = CredentialSource::DockerConfig(path.to_path_buf());
    match entry {
        Some((_, a)) if a.username.is_some() && a.password.is_some() => Ok(Credentials::basic(
            source,
            a.username.clone().unwrap_or_default(),
            a.password.clone().unwrap_or_default(),
        )),
        Some((
            _,
            DockerAuth {
                auth: Some(b64), ..
            },
        )) if !b64.is_empty() => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|_| bad(format!("the `auth` of {registry} is not base64")))?;
            let decoded = String::from_utf8(decoded)
                .map_err(|_| bad(format!("the `auth` of {registry} is not UTF-8")))?;
            let (user, pass) = decoded
                .split_once(':')
                .ok_or_else(|| bad(format!("the `auth` of {registry} is not user:password")))?;
            Ok(Credentials::basic(source, user.into(), pass.into()))
        }
        // An empty entry next to a credsStore means "the store has it".
        _ => match &config.creds_store {
            Some(store) => Err(helper(store)),
            None => Ok(Credentials::anonymous()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn docker_config_entries() {
        let b64 = base64::engine::general_purpose::STANDARD.encode("ops:s3cret");
        let (_d, path) = config(&format!(
            r#"{{"auths":{{"https://harbor.lab:8443/v1/":{{"auth":"{b64}"}},
                "reg.lab":{{"username":"u","password":"p"}},"helped":{{}}}},
                "credHelpers":{{"ecr.aws":"ecr-login"}},"credsStore":"desktop"}}"#
        ));
        let c = from_docker_config(&path, "harbor.lab:8443").unwrap();
        assert_eq!(
            c.auth,
            Auth::Basic {
                username: "ops".into(),
                password: "s3cret".into()
            }
        );
        assert!(!format!("{c:?}").contains("s3cret"));
        let c = from_docker_config(&path, "reg.lab").unwrap();
        assert_eq!(
            c.auth,
            Auth::Basic {
                username: "u".into(),
                password: "p".into()
            }
        );
        for host in ["ecr.aws", "helped", "unknown"] {
            let e = from_docker_config(&path, host).unwrap_err().to_string();
            assert!(
                e.contains("credential helpers are not supported yet"),
                "{e}"
            );
            assert!(e.contains("METIS_REGISTRY_USERNAME"), "{e}");
        }
        let (_d, path) = config(r#"{"auths":{}}"#);
        assert_eq!(
            from_docker_config(&path, "x").unwrap().auth,
            Auth::Anonymous
        );
    }
}
