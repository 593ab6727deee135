//! The card marker: one 4 KiB block just past the image that says which class's
//! image Metis last wrote onto this card, so the next flash of the same class can
//! compare the card with the image chunk by chunk and write only what differs
//! (docs/flashing.md, "spare cards").
//!
//! ```text
//! offset round_up(image size, 4 KiB):
//!   "METIS-CARD-MARK" 0x01 | u32 LE length | SHA-256 of the JSON | JSON | zeros
//!   JSON: {"format":"metis-card-marker/v1","class":…,"node":…,"revision":…,
//!          "image_size":…,"head_sha256":…}
//! ```
//!
//! The marker is only a hint about whether comparing is worth a read of the card:
//! it never stands in for a check. Every chunk is verified against the signed table
//! either by the comparison read or by the read-back after it is rewritten. It lies
//! outside the image, so it is never part of what is verified, and outside the
//! areas [`super::wipe`] zeroes, so a card wiped by an interrupted flash still
//! carries it and the next run repairs the card by comparison.
//!
//! A marker counts only while the card's first 4 KiB are either what that flash
//! wrote there (`head_sha256`) or zeros (Metis wiped the partition table): a card
//! written over by another tool after Metis keeps a stale marker past its new
//! image, and gets a full write.

use std::io;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::GPT_BACKUP_BYTES;
use crate::aligned::{round_down, round_up, AlignedBuf, ALIGN};
use crate::medium::Medium;

/// The marker block's first bytes.
const MAGIC: &[u8; 16] = b"METIS-CARD-MARK\x01";
/// `format` in the marker's JSON.
const FORMAT: &str = "metis-card-marker/v1";
/// Magic, length, SHA-256.
const HEADER: usize = 16 + 4 + 32;
/// How many bytes at the card's start the marker's `head_sha256` covers.
pub const HEAD_CHECK: usize = ALIGN;

/// What a marker records about the flash that wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardMarker {
    /// [`FORMAT`].
    pub format: String,
    /// The node's class (same class, same golden image layout).
    pub class: String,
    /// The node written.
    pub node: String,
    /// Its signed revision.
    pub revision: u64,
    /// The image's size in bytes (the marker sits just past it).
    pub image_size: u64,
    /// SHA-256 (hex) of the image's first [`HEAD_CHECK`] bytes.
    pub head_sha256: String,
}

impl CardMarker {
    /// A marker for `node` of `class` at `revision`, whose image begins with `head`.
    pub fn new(class: &str, node: &str, revision: u64, image_size: u64, head: &[u8]) -> Self {
        CardMarker {
            format: FORMAT.into(),
            class: class.into(),
            node: node.into(),
            revision,
            image_size,
            head_sha256: hex::encode(Sha256::digest(&head[..head.len().min(HEAD_CHECK)])),
        }
    }

    /// The marker as its 4 KiB block.
    fn encode(&self) -> AlignedBuf {
        let json = serde_json::to_vec(self).expect("a marker serializes");
        let mut block = AlignedBuf::new(ALIGN);
        block.set_len(ALIGN);
        let bytes = block.whole_mut();
        bytes[..16].copy_from_slice(MAGIC);
        bytes[16..20].copy_from_slice(&(json.len() as u32).to_le_bytes());
        bytes[20..HEADER].copy_from_slice(&Sha256::digest(&json));
        // Class and node names are short; an oversized marker is cut, so it fails
        // its checksum and reads as "no marker" (a full write next time).
        let n = json.len().min(ALIGN - HEADER);
        bytes[HEADER..HEADER + n].copy_from_slice(&json[..n]);
        block
    }

    /// The marker a 4 KiB block holds, if it holds a valid one.
    fn decode(block: &[u8]) -> Option<Self> {
        if block.len() < HEADER || &block[..16] != MAGIC {
            return None;
        }
        let len = u32::from_le_bytes(block[16..20].try_into().ok()?) as usize;
        let json = block.get(HEADER..HEADER.checked_add(len)?)?;
        if Sha256::digest(json)[..] != block[20..HEADER] {
            return None;
        }
        let marker: CardMarker = serde_json::from_slice(json).ok()?;
        (marker.format == FORMAT).then_some(marker)
    }
}

/// Where the marker of an image of `image_size` bytes sits on a medium of
/// `medium_size` bytes, if it fits before the disk's GPT-backup area (which a
/// failed flash wipes).
pub fn offset(image_size: u64, medium_size: u64) -> Option<u64> {
    let at = round_up(image_size);
    let end = round_down(medium_size.saturating_sub(GPT_BACKUP_BYTES));
    (at + ALIGN as u64 <= end).then_some(at)
}

/// Writes `marker` past the image (nothing when it does not fit).
pub fn write(medium: &dyn Medium, marker: &CardMarker) -> io::Result<()> {
    match offset(marker.image_size, medium.size()) {
        Some(at) => medium.write_at(marker.encode().filled(), at),
        None => Ok(()),
    }
}

/// Why a card gets a full write rather than a comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recognition {
    /// The card holds a Metis image of the same class: compare.
    SameClass(CardMarker),
    /// Anything else, in words for the operator.
    Other(String),
}

/// Reads the marker where an image of `image_size` bytes of `class` would have
/// left it, and the card's first 4 KiB: two small direct reads.
pub fn recognise(medium: &dyn Medium, image_size: u64, class: &str) -> io::Result<Recognition> {
    let Some(at) = offset(image_size, medium.size()) else {
        return Ok(Recognition::Other(
            "the card has no room past the image for a Metis marker".into(),
        ));
    };
    let mut block = AlignedBuf::new(ALIGN);
    let n = medium.read_at(block.whole_mut(), at)?;
    block.set_len(n.min(ALIGN));
    let Some(marker) = CardMarker::decode(block.filled()) else {
        return Ok(Recognition::Other(
            "the card holds no Metis image of this size".into(),
        ));
    };
    if marker.class != class || marker.image_size != image_size {
        return Ok(Recognition::Other(format!(
            "the card held {} of class {}, not {class}",
            marker.node, marker.class
        )));
    }
    let mut head = AlignedBuf::new(HEAD_CHECK);
    let n = medium.read_at(head.whole_mut(), 0)?;
    head.set_len(n.min(HEAD_CHECK));
    let head = head.filled();
    let wiped = head.iter().all(|b| *b == 0);
    if !wiped && hex::encode(Sha256::digest(head)) != marker.head_sha256 {
        return Ok(Recognition::Other(format!(
            "the card was written by another tool after Metis wrote {} to it",
            marker.node
        )));
    }
    Ok(Recognition::SameClass(marker))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_reads_back_and_a_changed_byte_voids_it() {
        let m = CardMarker::new("rpi5", "titan-13", 7, 130 << 20, &[1u8; 8192]);
        let block = m.encode();
        assert_eq!(CardMarker::decode(block.filled()), Some(m.clone()));
        for at in [0, 17, 30, HEADER + 3] {
            let mut bytes = block.filled().to_vec();
            bytes[at] ^= 1;
            assert_eq!(CardMarker::decode(&bytes), None, "byte {at} flipped");
        }
        assert_eq!(CardMarker::decode(&[0u8; ALIGN]), None);
    }

    #[test]
    fn the_marker_fits_only_before_the_disks_gpt_backup() {
        let image = (130 << 20) + 1000;
        let at = round_up(image);
        assert_eq!(offset(image, at + 4096 + GPT_BACKUP_BYTES + 512), Some(at));
        assert_eq!(offset(image, at + 4096), None);
        assert_eq!(offset(image, image), None);
    }
}
