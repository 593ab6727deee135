//! The class base: a golden image compressed once per golden digest into the
//! work directory (seekable zstd and its chunk table), uploaded once per class.

use std::path::{Path, PathBuf};

use super::{io_err, PublishError, ATTEMPTS};
use crate::build::node::open_class_golden_via;
use crate::digest::Sha256Digest;
use crate::image::base::{write_base, BaseOptions};
use crate::image::chunks::{ChunkTable, DEFAULT_CHUNK_SIZE};
use crate::image::golden::GoldenImage;
use crate::inventory::Inventory;
use crate::oci::{self, block_on, Progress, Registry};

/// A class base compressed once per golden digest and kept in the work dir.
pub(super) struct Base {
    pub(super) path: PathBuf,
    pub(super) table: ChunkTable,
    /// The compressed file's digest: its blob digest.
    pub(super) digest: Sha256Digest,
}

pub(super) fn class_base(
    golden: &GoldenImage,
    class: &str,
    work: &Path,
) -> Result<Base, PublishError> {
    let sha = golden.sha256();
    let dir = work.join("bases");
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let path = dir.join(format!("{sha}-{DEFAULT_CHUNK_SIZE}.zst"));
    let table_path = dir.join(format!("{sha}-{DEFAULT_CHUNK_SIZE}.table.json"));
    let digest_path = dir.join(format!("{sha}-{DEFAULT_CHUNK_SIZE}.digest"));
    // The base is renamed into place last, after its table and digest, so its
    // presence means all three are whole.
    if let (Ok(_), Ok(t), Ok(digest)) = (
        std::fs::metadata(&path),
        std::fs::read(&table_path),
        std::fs::read_to_string(&digest_path),
    ) {
        // A digest file that does not parse was not written by us whole: make
        // the base again.
        if let (Ok(table), Ok(digest)) = (serde_json::from_slice(&t), digest.parse()) {
            return Ok(Base {
                path,
                table,
                digest,
            });
        }
    }
    let raw = golden.raw_path();
    let tmp = path.with_extension("zst.part");
    let summary = write_base(
        std::fs::File::open(raw).map_err(io_err(raw))?,
        std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io_err(&tmp))?),
        &BaseOptions::default(),
    )
    .map_err(|e| PublishError::Node {
        node: class.to_string(),
        message: format!("compressing the class base: {e}"),
    })?;
    std::fs::write(
        &table_path,
        serde_json::to_vec(&summary.table).expect("table serialises"),
    )
    .map_err(io_err(&table_path))?;
    let digest = oci::hash_file(&tmp)?;
    std::fs::write(&digest_path, digest.to_string()).map_err(io_err(&digest_path))?;
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    Ok(Base {
        path,
        table: summary.table,
        digest,
    })
}

/// Opens a class's golden image (checking its digest), makes its base and
/// uploads it once to the class's golden repository; returns the bytes uploaded.
pub(super) fn prepare_class(
    inv: &Inventory,
    registry: &Registry,
    class: &str,
    work_dir: &Path,
) -> Result<(GoldenImage, Base, u64), PublishError> {
    let golden = open_class_golden_via(
        inv,
        class,
        Some(&work_dir.join("golden-raw")),
        Some(registry),
    )
    .map_err(|e| PublishError::Node {
        node: class.to_string(),
        message: e.to_string(),
    })?;
    let base = class_base(&golden, class, work_dir)?;
    let golden_repo = oci::golden_repository(&inv.lab.registry.prefix, class);
    let digest = base.digest;
    let digest_text = digest.to_string();
    let exists = block_on(oci::retry(ATTEMPTS, || {
        registry.blob_exists(&golden_repo, &digest_text)
    }))?;
    let mut uploaded = 0;
    if !exists {
        let size = std::fs::metadata(&base.path)
            .map_err(io_err(&base.path))?
            .len();
        let progress = Progress::none();
        block_on(oci::retry(ATTEMPTS, || {
            registry.push_blob_file(&golden_repo, &digest, size, &base.path, &progress)
        }))?;
        uploaded = size;
    }
    Ok((golden, base, uploaded))
}
