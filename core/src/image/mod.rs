//! Card images: the class base, the node patch, and composing them into a card.
//!
//! A node's card is one class base shared by every node of the class ([`base`], the
//! golden image in the zstd seekable format) plus a small node patch ([`patch`]).
//! [`chunks`] holds the per-chunk SHA-256 tables the signed node config carries, and
//! [`compose`] rebuilds the card stream from base and patch, verifying every chunk.
//! Wire formats: `docs/formats.md`.

pub mod base;
pub mod chunks;
pub mod compose;
pub mod patch;
