//! Syntax rules for single values: names, addresses, labels, taints, sizes.
//! Each returns a [`RuleError`] naming the [`Rule`] broken, with a message
//! phrased for the operator; callers add file:line and the hint.

use std::net::IpAddr;

use super::model::{IpCidr, Taint, TaintEffect};

/// The rule a value broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// [`dns_label`]: an RFC 1123 label (host and node names, file stems).
    DnsLabel,
    /// [`dns_name`]: dot-separated RFC 1123 labels.
    DnsName,
    /// [`mac`]: a unicast MAC address.
    Mac,
    /// [`cidr`]: an address with prefix length.
    Cidr,
    /// [`ip`]: a plain IP address.
    Ip,
    /// The name part of a Kubernetes qualified name, or a label or taint value.
    K8sName,
    /// [`k8s_key`]: a Kubernetes qualified name.
    K8sKey,
    /// [`node_label`]: `key=value` that kubelet accepts.
    NodeLabel,
    /// [`taint`]: `key[=value]:Effect`.
    Taint,
    /// [`journald_size`]: a journald byte size.
    JournaldSize,
    /// [`time_span`]: a systemd time span.
    TimeSpan,
    /// [`log_size`]: a Kubernetes quantity for the container log size.
    LogSize,
    /// [`fs_uuid`]: a filesystem UUID.
    FsUuid,
    /// [`user_name`]: a Linux user name.
    UserName,
    /// [`ssh_public_key`]: an SSH public key line.
    SshPublicKey,
    /// [`age_recipient`]: an age recipient.
    AgeRecipient,
    /// [`server_url`]: an `https://host:port` join URL.
    ServerUrl,
    /// [`sha256_pin`]: 64 lowercase hex digits.
    Sha256,
    /// [`repo_prefix`]: an OCI repository path prefix.
    RepoPrefix,
    /// [`file_mode`]: an octal file mode.
    FileMode,
    /// A Linux network interface name.
    InterfaceName,
    /// A k3s version such as `v1.32.4+k3s1`.
    K3sVersion,
    /// A time zone name such as `Europe/Berlin`.
    TimeZone,
    /// kubelet's `containerLogMaxFiles`, at least 2.
    LogFiles,
    /// A percentage, 0 to 100.
    Percentage,
}

/// A value that breaks a [`Rule`]; shown as the message for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RuleError {
    rule: Rule,
    message: String,
}

impl RuleError {
    /// `value` breaks `rule`, as `message` tells the operator.
    pub fn new(rule: Rule, message: impl Into<String>) -> Self {
        Self {
            rule,
            message: message.into(),
        }
    }

    /// The rule broken.
    pub fn rule(&self) -> Rule {
        self.rule
    }
}

fn fail<T>(rule: Rule, message: String) -> Result<T, RuleError> {
    Err(RuleError::new(rule, message))
}

/// RFC 1123 DNS label: lowercase letters, digits and `-`, 1–63 characters,
/// not starting or ending with `-`. Host names and node names follow it.
pub fn dns_label(s: &str) -> Result<(), RuleError> {
    if s.is_empty() || s.len() > 63 {
        return fail(
            Rule::DnsLabel,
            format!("`{s}` must be 1 to 63 characters long"),
        );
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return fail(
            Rule::DnsLabel,
            format!("`{s}` may only contain lowercase letters, digits and `-`"),
        );
    }
    if s.starts_with('-') || s.ends_with('-') {
        return fail(
            Rule::DnsLabel,
            format!("`{s}` must not start or end with `-`"),
        );
    }
    Ok(())
}

/// A DNS name made of RFC 1123 labels separated by dots, at most 253 characters.
pub fn dns_name(s: &str) -> Result<(), RuleError> {
    if s.len() > 253 {
        return fail(
            Rule::DnsName,
            format!("`{s}` is longer than 253 characters"),
        );
    }
    for label in s.split('.') {
        dns_label(label).map_err(|e| RuleError::new(Rule::DnsName, format!("`{s}`: {e}")))?;
    }
    Ok(())
}

/// A MAC address `aa:bb:cc:dd:ee:ff`, returned lowercase. Rejects multicast
/// addresses, which no NIC has.
pub fn mac(s: &str) -> Result<String, RuleError> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6
        || parts
            .iter()
            .any(|p| p.len() != 2 || !p.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return fail(Rule::Mac, format!(
            "`{s}` is not a MAC address; write six hex octets separated by `:`, e.g. `dc:a6:32:01:02:03`"
        ));
    }
    let first = u8::from_str_radix(parts[0], 16).expect("checked hex");
    if first & 1 == 1 {
        return fail(
            Rule::Mac,
            format!(
            "`{s}` is a multicast address (lowest bit of the first octet set); no interface has it"
        ),
        );
    }
    Ok(s.to_ascii_lowercase())
}

/// An address with prefix, `10.0.0.5/24` or `fd00::5/64`.
pub fn cidr(s: &str) -> Result<IpCidr, RuleError> {
    if !s.contains('/') {
        return fail(
            Rule::Cidr,
            format!(
                "`{s}` has no prefix length; write it as `{s}/24` (or the subnet's real prefix)"
            ),
        );
    }
    IpCidr::parse(s)
        .ok_or_else(|| RuleError::new(Rule::Cidr, format!("`{s}` is not a valid address/prefix")))
}

/// A plain IP address.
pub fn ip(s: &str) -> Result<IpAddr, RuleError> {
    s.parse()
        .map_err(|_| RuleError::new(Rule::Ip, format!("`{s}` is not a valid IP address")))
}

/// Whether `addr` lies inside the subnet of `net`.
pub fn in_subnet(net: &IpCidr, addr: &IpAddr) -> bool {
    match (net.addr, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = if net.prefix == 0 {
                0
            } else {
                u32::MAX << (32 - net.prefix)
            };
            u32::from(n) & mask == u32::from(*a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = if net.prefix == 0 {
                0
            } else {
                u128::MAX << (128 - net.prefix)
            };
            u128::from(n) & mask == u128::from(*a) & mask
        }
        _ => false,
    }
}

/// Kubernetes "name" part of a qualified name: 1–63 characters, alphanumerics
/// and `-_.`, starting and ending alphanumeric.
fn k8s_name(s: &str) -> Result<(), RuleError> {
    if s.is_empty() || s.len() > 63 {
        return fail(Rule::K8sName, format!("`{s}` must be 1 to 63 characters"));
    }
    let ok_inner = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    let first = s.as_bytes()[0];
    let last = s.as_bytes()[s.len() - 1];
    if !ok_inner || !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return fail(Rule::K8sName, format!(
            "`{s}` must consist of letters, digits, `-`, `_` or `.` and start and end with a letter or digit"
        ));
    }
    Ok(())
}

/// A Kubernetes qualified name (`[prefix/]name`) as used for label and taint keys.
pub fn k8s_key(s: &str) -> Result<(), RuleError> {
    match s.split_once('/') {
        Some((prefix, name)) => {
            if prefix.is_empty() {
                return fail(
                    Rule::K8sKey,
                    format!("`{s}` has an empty prefix before `/`"),
                );
            }
            dns_name(prefix)
                .map_err(|e| RuleError::new(Rule::K8sKey, format!("prefix of `{s}`: {e}")))?;
            if name.contains('/') {
                return fail(Rule::K8sKey, format!("`{s}` may contain at most one `/`"));
            }
            k8s_name(name)
        }
        None => k8s_name(s),
    }
}

/// Label namespaces kubelet accepts in `--node-labels` although they are under
/// kubernetes.io / k8s.io (kubelet's `KubeletLabels` and allowed prefixes).
const KUBELET_ALLOWED: &[&str] = &[
    "kubernetes.io/hostname",
    "kubernetes.io/instance-type",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "beta.kubernetes.io/instance-type",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "failure-domain.kubernetes.io/zone",
    "failure-domain.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "node.kubernetes.io/instance-type",
];

/// A node label `key=value` as k3s passes it to kubelet's `--node-labels`.
/// Returns the key.
pub fn node_label(s: &str) -> Result<String, RuleError> {
    let Some((key, value)) = s.split_once('=') else {
        return fail(
            Rule::NodeLabel,
            format!("label `{s}` has no `=`; write it as `key=value`"),
        );
    };
    k8s_key(key).map_err(|e| RuleError::new(Rule::NodeLabel, format!("label key: {e}")))?;
    if !value.is_empty() {
        k8s_name(value)
            .map_err(|e| RuleError::new(Rule::NodeLabel, format!("label value: {e}")))?;
    }
    if let Some((prefix, _)) = key.split_once('/') {
        let restricted = prefix == "kubernetes.io"
            || prefix.ends_with(".kubernetes.io")
            || prefix == "k8s.io"
            || prefix.ends_with(".k8s.io");
        let allowed = KUBELET_ALLOWED.contains(&key)
            || prefix == "kubelet.kubernetes.io"
            || prefix.ends_with(".kubelet.kubernetes.io")
            || prefix == "node.kubernetes.io"
            || prefix.ends_with(".node.kubernetes.io");
        if restricted && !allowed {
            return fail(Rule::NodeLabel, format!(
                "kubelet refuses to set label `{key}` itself (the {prefix} namespace is reserved), so k3s would fail to start; \
                 apply it with kubectl after the node joins, or use your own prefix such as `lab.example/{}`",
                key.split_once('/').map(|(_, n)| n).unwrap_or(key)
            ));
        }
    }
    Ok(key.to_string())
}

/// A taint `key[=value]:Effect`.
pub fn taint(s: &str) -> Result<Taint, RuleError> {
    let Some((kv, effect)) = s.rsplit_once(':') else {
        return fail(Rule::Taint, format!(
            "taint `{s}` has no effect; write it as `key=value:NoSchedule` (or PreferNoSchedule, NoExecute)"
        ));
    };
    let effect = match effect {
        "NoSchedule" => TaintEffect::NoSchedule,
        "PreferNoSchedule" => TaintEffect::PreferNoSchedule,
        "NoExecute" => TaintEffect::NoExecute,
        other => {
            let hint = super::diag::closest(other, ["NoSchedule", "PreferNoSchedule", "NoExecute"])
                .map(|c| format!(" (did you mean `{c}`?)"))
                .unwrap_or_default();
            return fail(Rule::Taint, format!(
                "taint `{s}` has unknown effect `{other}`; use NoSchedule, PreferNoSchedule or NoExecute{hint}"
            ));
        }
    };
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (kv, None),
    };
    k8s_key(key).map_err(|e| RuleError::new(Rule::Taint, format!("taint key: {e}")))?;
    if let Some(v) = value {
        if !v.is_empty() {
            k8s_name(v).map_err(|e| RuleError::new(Rule::Taint, format!("taint value: {e}")))?;
        }
    }
    Ok(Taint {
        key: key.to_string(),
        value: value.map(str::to_string),
        effect,
    })
}

/// A byte size as journald takes it: digits with an optional K, M, G or T suffix.
pub fn journald_size(s: &str) -> Result<(), RuleError> {
    let digits = s.trim_end_matches(['K', 'M', 'G', 'T']);
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || s.len() - digits.len() > 1
    {
        return fail(
            Rule::JournaldSize,
            format!("`{s}` is not a size; write e.g. `500M` or `2G`"),
        );
    }
    Ok(())
}

/// A systemd time span such as `2week`, `30day`, `12h` or `3600`.
pub fn time_span(s: &str) -> Result<(), RuleError> {
    let digits_end = s.bytes().take_while(u8::is_ascii_digit).count();
    let unit = s[digits_end..].trim();
    const UNITS: &[&str] = &[
        "", "s", "sec", "min", "m", "h", "hr", "d", "day", "days", "w", "week", "weeks", "month",
        "months", "y", "year", "years",
    ];
    if digits_end == 0 || !UNITS.contains(&unit) {
        return fail(
            Rule::TimeSpan,
            format!("`{s}` is not a systemd time span; write e.g. `2week`, `30day` or `12h`"),
        );
    }
    Ok(())
}

/// A Kubernetes quantity as kubelet takes for `containerLogMaxSize` (`10Mi`, `50M`).
pub fn log_size(s: &str) -> Result<(), RuleError> {
    let digits_end = s.bytes().take_while(u8::is_ascii_digit).count();
    let unit = &s[digits_end..];
    if digits_end == 0 || !["", "Ki", "Mi", "Gi", "K", "M", "G"].contains(&unit) {
        return fail(
            Rule::LogSize,
            format!("`{s}` is not a quantity; write e.g. `10Mi`"),
        );
    }
    Ok(())
}

/// A filesystem UUID as `UUID=` in fstab takes it: RFC 4122 form for ext4/xfs/btrfs,
/// `XXXX-XXXX` for FAT/exFAT.
pub fn fs_uuid(s: &str) -> Result<String, RuleError> {
    let lower = s.to_ascii_lowercase();
    let groups: Vec<&str> = lower.split('-').collect();
    let shape: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    let hex = groups
        .iter()
        .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()));
    if hex && (shape == [8, 4, 4, 4, 12] || shape == [4, 4]) {
        // FAT serials are conventionally upper case in /dev/disk/by-uuid.
        Ok(if shape == [4, 4] {
            s.to_ascii_uppercase()
        } else {
            lower
        })
    } else {
        fail(
            Rule::FsUuid,
            format!(
                "`{s}` is not a filesystem UUID; copy it from `blkid` on the node (e.g. `3f1c…-…`)"
            ),
        )
    }
}

/// A Linux user name.
pub fn user_name(s: &str) -> Result<(), RuleError> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        fail(Rule::UserName, format!(
            "`{s}` is not a valid user name (lowercase letters, digits, `_`, `-`; starting with a letter)"
        ))
    }
}

/// An SSH public key line.
pub fn ssh_public_key(s: &str) -> Result<(), RuleError> {
    let mut parts = s.split_whitespace();
    let kind = parts.next().unwrap_or("");
    let body = parts.next().unwrap_or("");
    let known = kind.starts_with("ssh-")
        || kind.starts_with("ecdsa-sha2-")
        || kind.starts_with("sk-ssh-")
        || kind.starts_with("sk-ecdsa-");
    if !known || body.len() < 16 {
        return fail(
            Rule::SshPublicKey,
            "not an SSH public key line (`ssh-ed25519 AAAA… comment`)".to_string(),
        );
    }
    Ok(())
}

/// An age recipient: native X25519 (`age1…`) or an SSH public key age accepts.
pub fn age_recipient(s: &str) -> Result<(), RuleError> {
    let native = s.starts_with("age1")
        && s.len() == 62
        && s[4..]
            .bytes()
            .all(|b| b"qpzry9x8gf2tvdw0s3jn54khce6mua7l".contains(&b));
    let ssh = s.starts_with("ssh-ed25519 ") || s.starts_with("ssh-rsa ");
    if native || ssh {
        Ok(())
    } else {
        fail(Rule::AgeRecipient, format!(
            "`{}` is not an age recipient; use an `age1…` key (age-keygen -y) or an `ssh-ed25519`/`ssh-rsa` public key",
            abbreviate(s)
        ))
    }
}

/// A join URL `https://host:port`, returning the host.
pub fn server_url(s: &str) -> Result<String, RuleError> {
    let Some(rest) = s.strip_prefix("https://") else {
        return fail(
            Rule::ServerUrl,
            format!("`{s}` must be an https URL of a live server, e.g. `https://10.0.0.10:6443`"),
        );
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("").to_string()
    } else {
        authority.split(':').next().unwrap_or("").to_string()
    };
    if host.is_empty() {
        return fail(Rule::ServerUrl, format!("`{s}` has no host"));
    }
    if host.parse::<IpAddr>().is_err() {
        dns_name(&host)?;
    }
    Ok(host)
}

/// A lowercase hex SHA-256 as a class pins its golden image (no `sha256:`;
/// `crate::digest` parses the prefixed OCI form).
pub fn sha256_pin(s: &str) -> Result<(), RuleError> {
    if s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        fail(
            Rule::Sha256,
            format!(
                "`{}` is not a SHA-256 (64 lowercase hex digits); compute it with `sha256sum FILE`",
                abbreviate(s)
            ),
        )
    }
}

/// An OCI repository path prefix (`metis`, `lab/metis`).
pub fn repo_prefix(s: &str) -> Result<(), RuleError> {
    let ok = !s.is_empty()
        && s.split('/').all(|c| {
            !c.is_empty()
                && c.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                })
                && c.as_bytes()[0].is_ascii_alphanumeric()
                && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
        });
    if ok {
        Ok(())
    } else {
        fail(
            Rule::RepoPrefix,
            format!(
                "`{s}` is not a repository prefix (lowercase path components such as `lab/metis`)"
            ),
        )
    }
}

/// An octal file mode like `0644` or `600`.
pub fn file_mode(s: &str) -> Result<String, RuleError> {
    let digits = s.strip_prefix('0').unwrap_or(s);
    if (3..=4).contains(&digits.len()) && digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        Ok(format!("0{digits}"))
    } else {
        fail(
            Rule::FileMode,
            format!("`{s}` is not an octal file mode such as `0644`"),
        )
    }
}

/// Shortens a long value for messages.
fn abbreviate(s: &str) -> String {
    if s.chars().count() > 24 {
        format!("{}…", s.chars().take(24).collect::<String>())
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert!(node_label("lab.example/disk=hdd").is_ok());
        assert!(node_label("node.longhorn.io/create-default-disk=true").is_ok());
        assert!(node_label("topology.kubernetes.io/zone=rack1").is_ok());
        assert!(node_label("node.kubernetes.io/pool=pi").is_ok());
        assert!(node_label("empty=").is_ok());
        let e = node_label("node-role.kubernetes.io/worker=true")
            .unwrap_err()
            .to_string();
        assert!(e.contains("kubelet refuses"), "{e}");
        assert!(node_label("novalue")
            .unwrap_err()
            .to_string()
            .contains("no `=`"));
        assert!(node_label("bad key=x").is_err());
        assert!(node_label("k=-bad").is_err());
        assert!(node_label(&format!("k={}", "a".repeat(64))).is_err());
        assert!(node_label("/x=y").is_err());
    }

    #[test]
    fn taints() {
        let t = taint("dedicated=db:NoSchedule").unwrap();
        assert_eq!(t.to_string(), "dedicated=db:NoSchedule");
        assert_eq!(taint("gpu:NoExecute").unwrap().value, None);
        let e = taint("a=b:NoScheduled").unwrap_err().to_string();
        assert!(e.contains("did you mean `NoSchedule`"), "{e}");
        assert!(taint("a=b").unwrap_err().to_string().contains("no effect"));
        assert!(taint("=b:NoSchedule").is_err());
    }

    #[test]
    fn addresses() {
        assert_eq!(mac("DC:A6:32:01:02:03").unwrap(), "dc:a6:32:01:02:03");
        assert!(mac("dc:a6:32:01:02").is_err());
        assert!(mac("01:00:5e:00:00:01")
            .unwrap_err()
            .to_string()
            .contains("multicast"));
        assert!(mac("dc-a6-32-01-02-03").is_err());
        assert_eq!(cidr("10.0.0.5/24").unwrap().prefix, 24);
        assert!(cidr("10.0.0.5")
            .unwrap_err()
            .to_string()
            .contains("no prefix"));
        assert!(cidr("10.0.0.5/33").is_err());
        assert!(cidr("300.0.0.5/24").is_err());
        assert!(cidr("fd00::5/64").is_ok());
        let net = cidr("10.0.0.5/24").unwrap();
        assert!(in_subnet(&net, &"10.0.0.1".parse().unwrap()));
        assert!(!in_subnet(&net, &"10.0.1.1".parse().unwrap()));
    }

    #[test]
    fn names_and_sizes() {
        assert!(dns_label("titan-db").is_ok());
        assert!(dns_label("Titan").is_err());
        assert!(dns_label("-x").is_err());
        assert!(journald_size("500M").is_ok());
        assert!(journald_size("5MB").is_err());
        assert!(time_span("2week").is_ok());
        assert!(time_span("fortnight").is_err());
        assert!(log_size("10Mi").is_ok());
        assert!(log_size("10MB").is_err());
        assert!(fs_uuid("3F1C2A4B-0000-4000-8000-00000000000A").is_ok());
        assert_eq!(fs_uuid("abcd-ef01").unwrap(), "ABCD-EF01");
        assert!(fs_uuid("not-a-uuid").is_err());
        assert_eq!(server_url("https://10.0.0.10:6443").unwrap(), "10.0.0.10");
        assert_eq!(
            server_url("https://k3s.lab.example:6443").unwrap(),
            "k3s.lab.example"
        );
        assert!(server_url("http://10.0.0.10:6443").is_err());
        assert_eq!(file_mode("644").unwrap(), "0644");
        assert!(file_mode("0999").is_err());
        assert!(age_recipient("age1xyz").is_err());
    }

    #[test]
    fn errors_name_the_rule_broken() {
        assert_eq!(mac("dc:a6").unwrap_err().rule(), Rule::Mac);
        assert_eq!(taint("a=b").unwrap_err().rule(), Rule::Taint);
        assert_eq!(node_label("bad key=x").unwrap_err().rule(), Rule::NodeLabel);
        let e = sha256_pin("ABC").unwrap_err();
        assert_eq!(e.rule(), Rule::Sha256);
        assert_eq!(
            e.to_string(),
            "`ABC` is not a SHA-256 (64 lowercase hex digits); compute it with `sha256sum FILE`"
        );
    }
}
