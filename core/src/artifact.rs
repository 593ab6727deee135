//! Placeholder until the lean-split branch lands.
pub use crate::publish::{NodeConfig, SlotLocation};
