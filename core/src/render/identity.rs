//! The node's stable identifiers: `/etc/machine-id` and cloud-init's instance-id.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::{KeyValueEdit, RootFile};

/// The node's `/etc/machine-id`: 32 lowercase hex digits, the same for every
/// build of the node (journald, DHCP client ids and k3s's node identity key on
/// it), derived from the lab domain and the node name.
///
/// The version and variant bits are set as systemd sets them for a random id
/// (a v4 UUID), so tools that inspect the id see a well-formed one.
pub fn machine_id(domain: &str, node: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"metis machine-id v1\0")
        .chain_update(domain.as_bytes())
        .chain_update(b"\0")
        .chain_update(node.as_bytes())
        .finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    hex::encode(id)
}

/// cloud-init's instance-id: `metis-<node>-<12 hex>`, the hex being the
/// SHA-256 of everything rendered for the node except `meta-data` itself.
///
/// Same rendered configuration → same id, so a reboot never re-runs first
/// boot; any change of what the node gets → a new id, so a card carrying a
/// changed seed runs first boot again even on a root filesystem that already
/// booted. The build revision is deliberately not an input: an inventory
/// commit that does not touch a node must leave its card byte-identical, or
/// every commit would rebuild every node (DESIGN.md, "Artifacts": a node is
/// rebuilt only when its input digest, which covers the rendered seed, changes).
pub(super) fn instance_id(
    node: &str,
    seed: &BTreeMap<String, Vec<u8>>,
    root_files: &[RootFile],
    root_edits: &[KeyValueEdit],
    seed_edits: &[KeyValueEdit],
) -> String {
    let mut h = Sha256::new();
    h.update(b"metis instance-id v1\0");
    field(&mut h, node.as_bytes());
    for (path, bytes) in seed {
        field(&mut h, b"seed");
        field(&mut h, path.as_bytes());
        field(&mut h, bytes);
    }
    for f in root_files {
        field(&mut h, b"root");
        field(&mut h, f.path.as_bytes());
        field(&mut h, format!("{:o}", f.mode).as_bytes());
        field(&mut h, &f.content);
    }
    for (kind, edits) in [("root-edit", root_edits), ("seed-edit", seed_edits)] {
        for e in edits {
            field(&mut h, kind.as_bytes());
            field(&mut h, e.path.as_bytes());
            field(&mut h, e.key.as_bytes());
            field(&mut h, e.value.as_bytes());
        }
    }
    let digest = h.finalize();
    format!("metis-{node}-{}", &hex::encode(digest)[..12])
}

/// Length-prefixed, so no two different inputs hash the same byte stream.
fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_id_is_32_lowercase_hex_and_stable_per_node() {
        let a = machine_id("lab.home.arpa", "titan-13");
        assert_eq!(a.len(), 32);
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_eq!(a, machine_id("lab.home.arpa", "titan-13"));
        assert_ne!(a, machine_id("lab.home.arpa", "titan-15"));
        assert_ne!(a, machine_id("other.arpa", "titan-13"));
        // v4 UUID shape, as systemd-machine-id-setup writes it.
        assert_eq!(&a[12..13], "4");
        assert!(matches!(&a[16..17], "8" | "9" | "a" | "b"));
    }

    #[test]
    fn instance_id_follows_every_input() {
        let mut seed = BTreeMap::new();
        seed.insert("user-data".to_string(), b"a".to_vec());
        let base = instance_id("n", &seed, &[], &[], &[]);
        assert!(base.starts_with("metis-n-"));
        assert_eq!(base.len(), "metis-n-".len() + 12);
        assert_eq!(base, instance_id("n", &seed, &[], &[], &[]));
        assert_ne!(base, instance_id("m", &seed, &[], &[], &[]));
        let mut changed = seed.clone();
        changed.insert("user-data".to_string(), b"b".to_vec());
        assert_ne!(base, instance_id("n", &changed, &[], &[], &[]));
        let edit = KeyValueEdit {
            path: "armbianEnv.txt".into(),
            key: "ethaddr".into(),
            value: "x".into(),
        };
        assert_ne!(
            base,
            instance_id("n", &seed, &[], &[], std::slice::from_ref(&edit))
        );
        assert_ne!(
            instance_id("n", &seed, &[], std::slice::from_ref(&edit), &[]),
            instance_id("n", &seed, &[], &[], &[edit])
        );
    }
}
