//! A node's hooks: files it writes (never one Metis writes itself) and commands.

use std::path::Path;

use super::cx::Cx;
use super::hints::*;
use crate::inventory::diag::Pos;
use crate::inventory::model::*;
use crate::inventory::rules;
use crate::inventory::schema;

impl Cx {
    /// A node's hook files and commands.
    pub(super) fn hooks(&mut self, file: &Path, f: &schema::NodeFile) -> Hooks {
        let mut hooks = Hooks::default();
        if let Some(h) = &f.hooks {
            for hf in &h.files {
                if !hf.path.value.starts_with('/') {
                    self.err(
                        file,
                        Pos::of(&hf.path),
                        format!("hook file path `{}` must be absolute", hf.path.value),
                        format!(
                            "write the full path on the node, e.g. `/{}`",
                            hf.path.value.trim_start_matches("./")
                        ),
                    );
                }
                if crate::paths::is_metis_owned(&hf.path.value) {
                    self.err(
                        file,
                        Pos::of(&hf.path),
                        format!("hook file `{}` would replace a file Metis writes itself", hf.path.value),
                        "set what it holds through the inventory instead (k3s, network, kubelet, journald, disks); to add to it, write a drop-in next to it, e.g. /etc/rancher/k3s/config.yaml.d/50-hook.yaml",
                    );
                }
                let source = match (&hf.content, &hf.secret) {
                    (Some(c), None) => Some(HookFileSource::Content(c.clone())),
                    (None, Some(s)) => Some(HookFileSource::Secret(s.value.clone())),
                    _ => {
                        self.err(file, Pos::of(&hf.path), "hook file needs exactly one of `content` or `secret`", "`content:` for inline text, `secret: KEY` for a value of the node's sealed secrets");
                        None
                    }
                };
                let default_mode = if hf.secret.is_some() { "0600" } else { "0644" };
                let mode = match &hf.mode {
                    Some(m) => self.rule(file, m, H_MODE, |v| rules::file_mode(v)),
                    None => Some(default_mode.to_string()),
                };
                let owner = hf
                    .owner
                    .as_ref()
                    .map(|o| o.value.clone())
                    .unwrap_or_else(|| "root:root".into());
                if let (Some(source), Some(mode)) = (source, mode) {
                    hooks.files.push(HookFile {
                        path: hf.path.value.clone(),
                        source,
                        mode,
                        owner,
                    });
                }
            }
            for c in &h.commands {
                if c.value.trim().is_empty() {
                    self.err(
                        file,
                        Pos::of(c),
                        "empty hook command",
                        "remove the empty entry from `hooks.commands`",
                    );
                } else {
                    hooks.commands.push(c.value.clone());
                }
            }
        }
        hooks
    }
}
