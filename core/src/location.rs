//! Registry locations as text, before anything is opened: which are the
//! example lab's and the tests' (an `oci:` directory or a loopback registry).
//! A leaf: the inventory checks demo keys with it, `oci` and the engine open
//! registries with it.

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
