//! Where a registry is: a host spoken to over HTTPS or an OCI image-layout
//! directory, parsed once into [`RegistryLocation`] from the text operators
//! write (`HOST[:PORT][/PREFIX]` or `oci:DIR`), before anything is opened.
//! A leaf: the inventory checks demo keys with it, `oci` opens registries at
//! it, metis-build's `--registry` and the engine (metis-flash, the GUI) parse
//! with it.
//!
//! ```
//! use metis_core::location::RegistryLocation;
//!
//! let (location, prefix) = RegistryLocation::parse_with_prefix("harbor.lab:8443/metis")?;
//! assert_eq!(location, RegistryLocation::Remote("harbor.lab:8443".into()));
//! assert_eq!(prefix.as_deref(), Some("metis"));
//! assert!(RegistryLocation::parse_with_prefix("oci:/srv/registry")?.0.is_test_registry());
//! # Ok::<(), metis_core::location::LocationError>(())
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

/// What marks a location as an OCI image-layout directory.
const LAYOUT_PREFIX: &str = "oci:";

/// A registry: a host spoken to over HTTPS, or an OCI image-layout directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryLocation {
    /// `HOST[:PORT]` (Harbor, distribution).
    Remote(String),
    /// `oci:DIR`: an image-layout directory (an air-gapped lab's USB stick, tests).
    Layout(PathBuf),
}

/// Why a registry location does not parse. Each message says what to write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LocationError {
    /// `oci:` with no directory after it.
    #[error("`oci:` names no directory: write oci:/path/to/layout")]
    NoDirectory,
    /// A URL (`https://…`): Metis chooses the scheme itself.
    #[error(
        "registry {text:?}: write HOST[:PORT]/PREFIX without a scheme \
         (e.g. harbor.lab.home.arpa/metis)"
    )]
    Scheme {
        /// The location as written.
        text: String,
    },
    /// No host, or a host with white space in it.
    #[error("registry {text:?} is not HOST[:PORT]/PREFIX or oci:DIR")]
    NotALocation {
        /// The location as written.
        text: String,
    },
}

impl RegistryLocation {
    /// Parses `HOST[:PORT][/PREFIX]` or `oci:DIR`; the prefix when one is
    /// written. An `oci:` directory is kept as written: the caller says what a
    /// relative one is relative to ([`absolute`](Self::absolute) for the
    /// working directory, [`in_inventory`](Self::in_inventory)).
    pub fn parse_with_prefix(text: &str) -> Result<(Self, Option<String>), LocationError> {
        let text = text.trim();
        if let Some(dir) = layout_dir(text) {
            if dir.is_empty() {
                return Err(LocationError::NoDirectory);
            }
            return Ok((RegistryLocation::Layout(PathBuf::from(dir)), None));
        }
        if text.contains("://") {
            return Err(LocationError::Scheme { text: text.into() });
        }
        let (host, prefix) = match text.split_once('/') {
            Some((host, prefix)) => (host, Some(prefix.trim_matches('/').to_owned())),
            None => (text, None),
        };
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(LocationError::NotALocation { text: text.into() });
        }
        Ok((
            RegistryLocation::Remote(host.to_owned()),
            prefix.filter(|p| !p.is_empty()),
        ))
    }

    /// A location an inventory names (its `registry.host`, checked when the
    /// inventory was loaded): an `oci:DIR` written relative is relative to the
    /// inventory directory; a `host[:port]` is itself.
    pub fn in_inventory(inventory_dir: &Path, host: &str) -> Self {
        match layout_dir(host) {
            Some(dir) => RegistryLocation::Layout(inventory_dir.join(dir)),
            None => RegistryLocation::Remote(host.to_owned()),
        }
    }

    /// The same location with an `oci:` directory made absolute against the
    /// working directory (kept as is if that cannot be done).
    pub fn absolute(self) -> Self {
        match self {
            RegistryLocation::Layout(dir) => {
                RegistryLocation::Layout(std::path::absolute(&dir).unwrap_or(dir))
            }
            remote => remote,
        }
    }

    /// The host, or `None` for an `oci:` directory, which has none.
    pub fn host(&self) -> Option<&str> {
        match self {
            RegistryLocation::Remote(host) => Some(host),
            RegistryLocation::Layout(_) => None,
        }
    }

    /// Whether a demo key or identity is acceptable here: an `oci:` directory or
    /// a loopback registry (the example lab and tests), never a lab's registry.
    pub fn is_test_registry(&self) -> bool {
        match self {
            RegistryLocation::Layout(_) => true,
            RegistryLocation::Remote(host) => is_loopback(host),
        }
    }
}

impl fmt::Display for RegistryLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryLocation::Remote(host) => f.write_str(host),
            RegistryLocation::Layout(dir) => f.write_str(&layout_name(dir)),
        }
    }
}

/// The directory of an `oci:DIR` location as written (empty when none is),
/// or `None` for a host. For text whose checks have messages of their own (an
/// operator profile, an inventory); anything else parses with
/// [`RegistryLocation::parse_with_prefix`].
pub fn layout_dir(location: &str) -> Option<&str> {
    location.strip_prefix(LAYOUT_PREFIX)
}

/// An image-layout directory's name in messages and settings: `oci:DIR`.
pub fn layout_name(dir: &Path) -> String {
    format!("{LAYOUT_PREFIX}{}", dir.display())
}

/// A registry named in an inventory as the text [`Registry::open`] takes (see
/// [`RegistryLocation::in_inventory`]).
///
/// [`Registry::open`]: crate::oci::Registry::open
pub fn in_inventory(inventory_dir: &Path, host: &str) -> String {
    RegistryLocation::in_inventory(inventory_dir, host).to_string()
}

/// The host of a location, or `None` for an `oci:` directory, which has none.
pub fn host(location: &str) -> Option<&str> {
    layout_dir(location).is_none().then_some(location)
}

/// Whether `host[:port]` names the loopback interface.
pub fn is_loopback(host: &str) -> bool {
    let name = if host.parse::<std::net::IpAddr>().is_ok() {
        host
    } else if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Registries where the example lab's demo keys are acceptable: an OCI layout
/// directory or a registry on the loopback interface.
pub fn is_test_registry(location: &str) -> bool {
    layout_dir(location).is_some() || is_loopback(location)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_once() {
        let (l, p) = RegistryLocation::parse_with_prefix("harbor.lab:8443/metis/lab").unwrap();
        assert_eq!(l, RegistryLocation::Remote("harbor.lab:8443".into()));
        assert_eq!(l.host(), Some("harbor.lab:8443"));
        assert_eq!(p.as_deref(), Some("metis/lab"));
        let (l, p) = RegistryLocation::parse_with_prefix(" oci:/srv/reg ").unwrap();
        assert_eq!(l, RegistryLocation::Layout("/srv/reg".into()));
        assert_eq!(l.host(), None);
        assert!(p.is_none());
        // Absolute on this OS (Windows adds the current drive: Z:\srv\reg under Wine).
        let srv_reg = std::path::absolute("/srv/reg").unwrap();
        let l = l.absolute();
        assert_eq!(l, RegistryLocation::Layout(srv_reg.clone()));
        assert_eq!(l.to_string(), format!("oci:{}", srv_reg.display()));
        for bad in ["https://harbor/metis", "", "oci:", "a b/c", "/metis"] {
            assert!(RegistryLocation::parse_with_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_prefix_is_what_follows_the_host() {
        for (text, host, prefix) in [
            ("harbor.lab", "harbor.lab", None),
            ("harbor.lab/", "harbor.lab", None),
            (
                "127.0.0.1:5000/lab/metis",
                "127.0.0.1:5000",
                Some("lab/metis"),
            ),
            ("[::1]:5000/metis/", "[::1]:5000", Some("metis")),
        ] {
            let (l, p) = RegistryLocation::parse_with_prefix(text).unwrap();
            assert_eq!(l, RegistryLocation::Remote(host.into()), "{text}");
            assert_eq!(p.as_deref(), prefix, "{text}");
        }
        // A relative directory stays relative until the caller anchors it.
        let (l, p) = RegistryLocation::parse_with_prefix("oci:out/reg").unwrap();
        assert_eq!(l, RegistryLocation::Layout("out/reg".into()));
        assert_eq!(l.to_string(), "oci:out/reg");
        assert!(p.is_none());
    }

    #[test]
    fn errors_say_what_to_write() {
        for (text, message) in [
            (
                "oci:",
                "`oci:` names no directory: write oci:/path/to/layout",
            ),
            (
                "https://harbor.lab/metis",
                "registry \"https://harbor.lab/metis\": write HOST[:PORT]/PREFIX without a \
                 scheme (e.g. harbor.lab.home.arpa/metis)",
            ),
            (
                "a b/c",
                "registry \"a b/c\" is not HOST[:PORT]/PREFIX or oci:DIR",
            ),
        ] {
            let err = RegistryLocation::parse_with_prefix(text).unwrap_err();
            assert_eq!(err.to_string(), message, "{text}");
        }
    }

    #[test]
    fn inventory_directories_anchor_relative_layouts() {
        let inv = Path::new("/lab/inventory");
        assert_eq!(
            RegistryLocation::in_inventory(inv, "oci:../out/registry"),
            RegistryLocation::Layout("/lab/inventory/../out/registry".into())
        );
        assert_eq!(
            RegistryLocation::in_inventory(inv, "harbor.lab:443"),
            RegistryLocation::Remote("harbor.lab:443".into())
        );
        assert_eq!(host("oci:/srv/registry"), None);
        assert_eq!(host("harbor.lab"), Some("harbor.lab"));
        assert_eq!(layout_dir("oci:"), Some(""));
        assert_eq!(layout_dir("harbor.lab"), None);
    }

    #[test]
    fn loopback_hosts() {
        for h in ["127.0.0.1:5000", "localhost", "[::1]:443", "::1"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["harbor.lab:443", "10.0.0.1", "[2001:db8::1]:5000"] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn test_registries_are_layouts_and_loopback() {
        for ok in [
            "oci:/tmp/x",
            "oci:relative/dir",
            "127.0.0.1:5000",
            "localhost:5000",
            "[::1]:5000",
            "::1",
        ] {
            assert!(is_test_registry(ok), "{ok}");
            let (location, _) = RegistryLocation::parse_with_prefix(ok).unwrap();
            assert!(location.is_test_registry(), "{ok}");
        }
        for real in [
            "192.168.22.5:443",
            "harbor.lab.home.arpa",
            "[2001:db8::1]:5000",
        ] {
            assert!(!is_test_registry(real), "{real}");
            let (location, _) = RegistryLocation::parse_with_prefix(real).unwrap();
            assert!(!location.is_test_registry(), "{real}");
        }
    }
}
