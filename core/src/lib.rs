//! metis-core: everything `metis-build` and `metis-flash` share.
//!
//! One module per pipeline stage: [`inventory`] loads and checks the lab's
//! GitOps data; later stages (render, image, oci, trust, secrets) build on it.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod image;
pub mod inventory;
pub mod oci;
pub mod profile;
pub mod publish;
pub mod render;
pub mod secrets;
pub mod trust;
