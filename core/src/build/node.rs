//! One node's card image: its class golden image (digest checked first), the
//! node's rendered seed and root-filesystem files laid in, vendor files edited
//! in place. The stage `metis-build render NODE --image` and the publisher use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;

use crate::image::fat::{self, SlotSpec};
use crate::image::golden::{GoldenError, GoldenImage, GoldenOptions};
use crate::image::partition::{PartitionError, PartitionTable};
use crate::image::patch::{Patch, PatchBuilder, PatchError};
use crate::image::personalise::{self, PersonaliseError, PersonaliseRequest, Personalised};
use crate::image::rootfs::{self, RootFile, RootfsError};
use crate::image::{fat::FatError, partition::Filesystem};
use crate::inventory::{Golden, Inventory};
use crate::layout::SeedFilesystem;
use crate::render::{self, RenderError, Rendered};

/// Errors building a node's card image.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum NodeImageError {
    /// The node could not be rendered.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The class's golden image is missing or does not match its pinned digest.
    #[error(transparent)]
    Golden(#[from] GoldenError),
    /// The golden image cannot be used from here.
    #[error("class `{class}`: {what}")]
    GoldenSource {
        /// The class.
        class: String,
        /// Why, and what to do.
        what: String,
    },
    /// The golden image's partition table or a named partition.
    #[error(transparent)]
    Partition(#[from] PartitionError),
    /// Reading a vendor file of the seed partition.
    #[error(transparent)]
    Seed(#[from] FatError),
    /// Reading or writing the root filesystem.
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    /// Laying the node into the image.
    #[error(transparent)]
    Personalise(#[from] PersonaliseError),
    /// Building the node patch.
    #[error(transparent)]
    Patch(#[from] PatchError),
    /// Reading the golden image or the overlay.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// A node's card image, ready to write out or diff into a node patch.
#[derive(Debug)]
pub struct NodeImage {
    /// What was rendered for the node.
    pub rendered: Rendered,
    /// The golden image plus the node's changes.
    pub personalised: Personalised,
    /// The golden image it was made from (shared by the nodes of its class).
    pub golden: Arc<GoldenImage>,
}

impl NodeImage {
    /// The node patch: the extents that differ from the golden image (slot
    /// zeroed), minimised against the golden bytes so unchanged bytes the
    /// overlay rewrote are not shipped.
    pub fn patch(&self) -> Result<Patch, NodeImageError> {
        let p = &self.personalised;
        let raw = self.golden.raw_path();
        let io = |source| NodeImageError::Io {
            path: raw.to_path_buf(),
            source,
        };
        let mut builder = PatchBuilder::new(p.image_size);
        for e in p.overlay.dirty_extents() {
            let mut bytes = vec![0u8; e.len as usize];
            p.overlay.read_at(e.offset, &mut bytes).map_err(io)?;
            builder.write(e.offset, &bytes)?;
        }
        // The slot is shipped zeroed whatever the overlay holds; the flasher fills it.
        let zeros = vec![0u8; p.slot.len as usize];
        builder.write(p.slot.offset, &zeros)?;
        let golden = std::fs::File::open(raw).map_err(io)?;
        Ok(builder.finish().minimize(std::io::BufReader::new(golden))?)
    }
}

/// Where a class's golden image file is, for classes pinned by path.
pub fn golden_path(inv: &Inventory, class: &str) -> Result<(PathBuf, String), NodeImageError> {
    let c = &inv.classes[class];
    match &c.golden {
        Golden::Path { path, sha256 } => Ok((inv.dir.join(path), sha256.clone())),
        Golden::Oci { reference } => Err(NodeImageError::GoldenSource {
            class: class.to_string(),
            what: format!(
                "the golden image is the registry artifact {reference}, not a file; \
                 `metis-build publish` pulls it, or pin a local copy with `golden: {{path: …, sha256: …}}`"
            ),
        }),
        Golden::Url { url, .. } => Err(NodeImageError::GoldenSource {
            class: class.to_string(),
            what: format!(
                "the golden image is downloaded from {url}, not a local file; open it with \
                 `open_class_golden`, which fetches it"
            ),
        }),
    }
}

/// Opens `class`'s golden image, checking its pinned digest before anything
/// else reads it. `cache_dir` keeps decompressed `.zst`/`.xz` golden images.
pub fn open_class_golden(
    inv: &Inventory,
    class: &str,
    cache_dir: Option<&Path>,
) -> Result<GoldenImage, NodeImageError> {
    open_class_golden_via(inv, class, cache_dir, None)
}

/// As [`open_class_golden`]; a class pinned to a golden image in the lab
/// registry (`golden: {oci: …}`) is pulled from `registry` into
/// `<cache_dir>/oci` first (kept there for the next build).
pub fn open_class_golden_via(
    inv: &Inventory,
    class: &str,
    cache_dir: Option<&Path>,
    registry: Option<&crate::oci::Registry>,
) -> Result<GoldenImage, NodeImageError> {
    if let Golden::Oci { reference } = &inv.classes[class].golden {
        let source = |what: String| NodeImageError::GoldenSource {
            class: class.to_string(),
            what,
        };
        let (Some(registry), Some(cache)) = (registry, cache_dir) else {
            return Err(source(format!(
                "the golden image is the registry artifact {reference}: build with \
                 `metis-build publish` (which pulls it from the lab registry), or pin a \
                 local copy with `golden: {{path: …, sha256: …}}`"
            )));
        };
        return crate::image::golden_oci::fetch_golden(
            registry,
            inv.registry_host(),
            reference,
            &cache.join("oci"),
            cache,
        )
        .map_err(|e| source(e.to_string()));
    }
    if let Golden::Url { url, sha256 } = &inv.classes[class].golden {
        // Downloads are kept by digest: in the cache directory, else in a
        // per-machine temporary one, so a second build reuses them.
        let dir = cache_dir
            .map(|c| c.join("downloads"))
            .unwrap_or_else(|| std::env::temp_dir().join("metis-golden-downloads"));
        let path = crate::image::golden::fetch_url(url, sha256, &dir)?;
        return Ok(GoldenImage::open_with(
            &path,
            sha256,
            &GoldenOptions {
                cache_dir: cache_dir.map(Path::to_path_buf),
            },
        )?);
    }
    let (path, sha256) = golden_path(inv, class)?;
    Ok(GoldenImage::open_with(
        &path,
        &sha256,
        &GoldenOptions {
            cache_dir: cache_dir.map(Path::to_path_buf),
        },
    )?)
}

/// Builds `node`'s card image. The golden image's digest is checked before
/// anything else reads it. `cache_dir` keeps decompressed `.zst`/`.xz` golden images.
pub fn node_image(
    inv: &Inventory,
    node: &str,
    cache_dir: Option<&Path>,
) -> Result<NodeImage, NodeImageError> {
    let n = inv
        .nodes
        .get(node)
        .ok_or_else(|| RenderError::UnknownNode {
            node: node.to_string(),
        })?;
    let golden = open_class_golden(inv, &inv.class_of(n).name, cache_dir)?;
    node_image_with(inv, node, Arc::new(golden))
}

/// Builds `node`'s card image on its class golden image, already opened (and
/// so verified) by [`open_class_golden`] — the publisher opens each class's
/// golden image once for all its nodes instead of hashing it again per node.
pub fn node_image_with(
    inv: &Inventory,
    node: &str,
    golden: Arc<GoldenImage>,
) -> Result<NodeImage, NodeImageError> {
    let rendered = render::render(inv, node)?;
    let n = &inv.nodes[node];
    let class = inv.class_of(n);
    let image = golden.source().to_path_buf();
    let seed_sel = class.seed.selector.clone();
    let root_sel = class.root.clone();

    let mut seed_files: BTreeMap<String, Vec<u8>> = rendered.seed.clone();
    let mut root_files: Vec<RootFile> = rendered
        .root_files
        .iter()
        .map(|f| RootFile {
            path: f.path.clone(),
            bytes: f.content.clone(),
            mode: f.mode,
        })
        .collect();

    // Vendor files are edited key by key so the rest of what the vendor ships survives.
    if !rendered.seed_edits.is_empty() || !rendered.root_edits.is_empty() {
        let mut card = golden.overlay().map_err(|source| PersonaliseError::Io {
            path: golden.raw_path().to_path_buf(),
            source,
        })?;
        let table = PartitionTable::read(&mut card, golden.size(), &image)?;
        let seed = table.find_with(&seed_sel, Filesystem::Vfat)?.clone();
        for edit in &rendered.seed_edits {
            let existing = match seed_files.get(&edit.path) {
                Some(b) => Some(b.clone()),
                None => fat::read_seed_file(&mut card, &seed, &edit.path, &image)?,
            };
            seed_files.insert(edit.path.clone(), edit.apply(existing.as_deref()));
        }
        if !rendered.root_edits.is_empty() {
            let root = table.find_with(&root_sel, Filesystem::Ext4)?.clone();
            for edit in &rendered.root_edits {
                let existing = match root_files.iter().find(|f| f.path == edit.path) {
                    Some(f) => Some(f.bytes.clone()),
                    None => rootfs::read_root_file(golden.raw_path(), &root, &edit.path)?,
                };
                let bytes = edit.apply(existing.as_deref());
                root_files.retain(|f| f.path != edit.path);
                root_files.push(RootFile {
                    path: edit.path.clone(),
                    bytes,
                    mode: 0o644,
                });
            }
        }
    }

    let request = PersonaliseRequest {
        seed: seed_sel,
        seed_filesystem: match class.seed.filesystem {
            SeedFilesystem::Vfat => Filesystem::Vfat,
        },
        root: Some(root_sel),
        seed_files,
        slot: SlotSpec {
            name: render::SLOT_FILE.to_string(),
            size: render::SLOT_SIZE,
        },
        root_files,
    };
    let personalised = personalise::personalise(&golden, &request)?;
    Ok(NodeImage {
        rendered,
        personalised,
        golden,
    })
}

/// Builds `node`'s card image and writes it to `out` (sparse, secrets slot zeroed).
pub fn write_node_image(
    inv: &Inventory,
    node: &str,
    out: &Path,
    cache_dir: Option<&Path>,
) -> Result<NodeImage, NodeImageError> {
    let img = node_image(inv, node, cache_dir)?;
    personalise::write_image(&img.personalised, out)?;
    Ok(img)
}
