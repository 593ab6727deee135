//! The plan: every node's inputs against what the registry holds, deciding
//! build, skip, remove or fail.

use serde::Serialize;

use super::inputs::{node_inputs, SecretsSource};
use super::registry_state::{published_index, published_node, PublishedNode};
use super::{node_message, PublishError};
use crate::artifact::Inputs;
use crate::inventory::Inventory;
use crate::oci::{self, Registry};
use crate::trust::LabIndex;

/// What a plan decided for one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Build and publish it.
    Build,
    /// Its published artifact is current.
    Skip,
    /// In the registry's index but no longer in the inventory: leaves the index.
    Remove,
    /// Its inputs could not be computed (the reason says why): not built, and
    /// a publish reports it failed.
    Fail,
}

/// One node of a plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedNode {
    /// Node name.
    pub node: String,
    /// Class (empty for removed nodes).
    pub class: String,
    /// Build, skip, remove or fail.
    pub action: Action,
    /// Why, in words.
    pub reason: String,
    /// The node's input digest now (empty for removed and failed nodes).
    pub input_digest: String,
    /// Digest of the published `latest` manifest, if any.
    pub published: Option<String>,
    /// Revision of the published `latest`, if any.
    pub published_revision: Option<u64>,
    #[serde(skip)]
    pub(super) published_signed: bool,
    #[serde(skip)]
    pub(super) inputs: Option<Inputs>,
}

/// The whole plan.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Every node of the inventory, plus removed ones.
    pub nodes: Vec<PlannedNode>,
    /// Newest revision published so far (0: none).
    pub published_revision: u64,
    /// Why the lab index must be published again even if no node is built
    /// (none yet, unsigned, or behind the nodes' `latest` after an interrupted
    /// run); `null` when it is current.
    pub index_update: Option<String>,
    /// The lab index as published, if any.
    #[serde(skip)]
    pub index: Option<LabIndex>,
}

impl Plan {
    /// Nodes to build.
    pub fn to_build(&self) -> impl Iterator<Item = &PlannedNode> {
        self.nodes.iter().filter(|n| n.action == Action::Build)
    }

    /// Nodes whose inputs could not be computed.
    pub fn failed(&self) -> impl Iterator<Item = &PlannedNode> {
        self.nodes.iter().filter(|n| n.action == Action::Fail)
    }
}

/// Compares every node's inputs with what the registry holds. A node whose
/// inputs cannot be computed (render error, unreadable sealed file, malformed
/// published manifest) is planned as [`Action::Fail`] and the others still
/// planned; only registry errors end the plan.
pub fn plan(
    inv: &Inventory,
    registry: &Registry,
    secrets: &dyn SecretsSource,
) -> Result<Plan, PublishError> {
    let prefix = &inv.lab.registry.prefix;
    let published_idx = published_index(registry, prefix)?;
    let mut nodes = Vec::new();
    let mut newest = published_idx
        .as_ref()
        .and_then(|(i, _)| i.nodes.values().map(|e| e.revision).max())
        .unwrap_or(0);
    for (name, node) in &inv.nodes {
        let failed = |reason: String, published: Option<&PublishedNode>| PlannedNode {
            node: name.clone(),
            class: node.class.clone(),
            action: Action::Fail,
            reason,
            input_digest: String::new(),
            published: published.map(|p| p.digest.clone()),
            published_revision: published.map(|p| p.revision),
            published_signed: published.is_some_and(|p| p.signed),
            inputs: None,
        };
        let published = match published_node(registry, &oci::node_repository(prefix, name)) {
            Ok(p) => p,
            Err(PublishError::Oci(e)) => return Err(e.into()),
            Err(e) => {
                nodes.push(failed(node_message(e), None));
                continue;
            }
        };
        if let Some(p) = &published {
            newest = newest.max(p.revision);
        }
        let inputs = match node_inputs(inv, name, secrets) {
            Ok(i) => i,
            Err(PublishError::Oci(e)) => return Err(e.into()),
            Err(e) => {
                nodes.push(failed(node_message(e), published.as_ref()));
                continue;
            }
        };
        let digest = inputs.digest();
        let (action, reason) = match &published {
            None => (Action::Build, "new node".to_string()),
            Some(p) if !p.signed => (
                Action::Build,
                "published artifact has no signature (interrupted run)".to_string(),
            ),
            Some(p) if p.input_digest.as_deref() == Some(digest.as_str()) => {
                (Action::Skip, "unchanged".to_string())
            }
            Some(p) => (Action::Build, change_reason(p.inputs.as_ref(), &inputs)),
        };
        nodes.push(PlannedNode {
            node: name.clone(),
            class: node.class.clone(),
            action,
            reason,
            input_digest: digest,
            published: published.as_ref().map(|p| p.digest.clone()),
            published_revision: published.as_ref().map(|p| p.revision),
            published_signed: published.as_ref().is_some_and(|p| p.signed),
            inputs: Some(inputs),
        });
    }
    if let Some((idx, _)) = &published_idx {
        for (name, entry) in &idx.nodes {
            if !inv.nodes.contains_key(name) {
                nodes.push(PlannedNode {
                    node: name.clone(),
                    class: entry.class.clone(),
                    action: Action::Remove,
                    reason: "removed from the inventory (leaves the index; artifact deleted only with --prune)".into(),
                    input_digest: String::new(),
                    published: Some(entry.digest.clone()),
                    published_revision: Some(entry.revision),
                    published_signed: true,
                    inputs: None,
                });
            }
        }
    }
    let index_update = index_update(published_idx.as_ref(), &nodes);
    Ok(Plan {
        nodes,
        published_revision: newest,
        index_update,
        index: published_idx.map(|(i, _)| i),
    })
}

/// Why the published index no longer matches the nodes' signed `latest`
/// artifacts, as after a run killed between its last node and the index.
fn index_update(published: Option<&(LabIndex, bool)>, nodes: &[PlannedNode]) -> Option<String> {
    let Some((index, signed)) = published else {
        return Some("no lab index published yet".into());
    };
    if !signed {
        return Some("the published index has no signature (interrupted run)".into());
    }
    for n in nodes {
        if n.action != Action::Skip {
            continue;
        }
        let current = n
            .published
            .as_ref()
            .zip(n.published_revision)
            .map(|(digest, revision)| (digest.as_str(), revision, n.class.as_str()));
        let listed = index
            .nodes
            .get(&n.node)
            .map(|e| (e.digest.as_str(), e.revision, e.class.as_str()));
        if current != listed {
            return Some(match listed {
                None => format!("the index lacks {} (interrupted run)", n.node),
                Some(_) => format!(
                    "the index lists an older artifact of {} (interrupted run)",
                    n.node
                ),
            });
        }
    }
    None
}

fn change_reason(old: Option<&Inputs>, new: &Inputs) -> String {
    let Some(old) = old else {
        return "inputs changed".into();
    };
    let mut what = Vec::new();
    if old.builder != new.builder {
        what.push("new builder or format version");
    }
    if old.golden != new.golden {
        what.push("changed class golden image");
    }
    if old.seed != new.seed {
        let (was, now) = (&old.sources, &new.sources);
        let before = what.len();
        if was.node.is_empty() {
            // Made by a builder that kept no sources: cannot tell which file.
            what.push("changed node, class or lab settings");
        } else {
            if was.node != now.node {
                what.push("changed node settings");
            }
            if was.class != now.class {
                what.push("changed class settings");
            }
            if was.lab != now.lab {
                what.push("changed lab settings (metis.yaml)");
            }
        }
        if what.len() == before {
            what.push("changed rendered seed (templates or hook files)");
        }
    }
    if old.secrets != new.secrets {
        what.push("changed secrets");
    }
    // An artifact from before recipients were an input says "new builder" already.
    if !old.recipients.is_empty() && old.recipients != new.recipients {
        what.push("operator recipients changed");
    }
    if what.is_empty() {
        "inputs changed".into()
    } else {
        what.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::Sources;

    fn inputs() -> Inputs {
        Inputs {
            builder: "metis-build 1 inputs/2".into(),
            golden: "rpi5@aa".into(),
            seed: "sha256:01".into(),
            secrets: "sha256:02".into(),
            recipients: "sha256:03".into(),
            sources: Sources {
                node: "sha256:n".into(),
                class: "sha256:c".into(),
                lab: "sha256:l".into(),
            },
        }
    }

    #[test]
    fn sources_explain_but_do_not_decide() {
        let mut edited = inputs();
        edited.sources.node = "sha256:comment-only".into();
        assert_eq!(edited.digest(), inputs().digest());
        edited.recipients = "sha256:another-operator".into();
        assert_ne!(edited.digest(), inputs().digest());
    }

    #[test]
    fn change_reasons_name_what_changed() {
        type Edit = fn(&mut Inputs);
        let cases: [(Edit, &str); 9] = [
            (
                |i| i.builder = "metis-build 2".into(),
                "new builder or format version",
            ),
            (
                |i| i.golden = "rpi5@bb".into(),
                "changed class golden image",
            ),
            (
                |i| {
                    i.seed = "sha256:x".into();
                    i.sources.node = "sha256:n2".into();
                },
                "changed node settings",
            ),
            (
                |i| {
                    i.seed = "sha256:x".into();
                    i.sources.class = "sha256:c2".into();
                },
                "changed class settings",
            ),
            (
                |i| {
                    i.seed = "sha256:x".into();
                    i.sources.lab = "sha256:l2".into();
                },
                "changed lab settings (metis.yaml)",
            ),
            (
                |i| i.seed = "sha256:x".into(),
                "changed rendered seed (templates or hook files)",
            ),
            (|i| i.secrets = "sha256:s".into(), "changed secrets"),
            (
                |i| i.recipients = "sha256:r".into(),
                "operator recipients changed",
            ),
            (
                |i| {
                    i.seed = "sha256:x".into();
                    i.sources.node = "sha256:n2".into();
                    i.sources.class = "sha256:c2".into();
                    i.secrets = "sha256:s".into();
                },
                "changed node settings, changed class settings, changed secrets",
            ),
        ];
        for (edit, want) in cases {
            let mut new = inputs();
            edit(&mut new);
            assert_eq!(change_reason(Some(&inputs()), &new), want);
        }
        // An artifact from a builder that kept no sources or recipients.
        let mut old = inputs();
        old.sources = Sources::default();
        old.recipients = String::new();
        old.builder = "metis-build 0".into();
        let mut new = inputs();
        new.seed = "sha256:x".into();
        assert_eq!(
            change_reason(Some(&old), &new),
            "new builder or format version, changed node, class or lab settings"
        );
    }
}
