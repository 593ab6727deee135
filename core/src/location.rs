//! Registry locations as text, before anything is opened: which are the
//! example lab's and the tests' (an `oci:` directory or a loopback registry).
//! A leaf: the inventory checks demo keys with it, `oci` and the engine open
//! registries with it.

use std::path::Path;

/// A registry named in an inventory as a location: an `oci:DIR` written
/// relative is relative to the inventory directory; a `host[:port]` is itself.
pub fn in_inventory(inventory_dir: &Path, host: &str) -> String {
    match host.strip_prefix("oci:") {
        Some(dir) => format!("oci:{}", inventory_dir.join(dir).display()),
        None => host.to_owned(),
    }
}

/// The host of a location, or `None` for an `oci:` directory, which has none.
pub fn host(location: &str) -> Option<&str> {
    (!location.starts_with("oci:")).then_some(location)
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
    location.starts_with("oci:") || is_loopback(location)
}
