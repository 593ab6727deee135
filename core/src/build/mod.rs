//! The builder's flows that join the stages: a node's card image from its
//! class golden image and its rendering ([`node`]: inventory + render +
//! image), and the golden import that checks a vendor image against the
//! class's contract and pins it ([`import`]: lab + image). They sit above
//! `image`, so the card formats below never import the inventory or the
//! renderer (docs/decisions.md, "Layers").

pub mod import;
pub mod node;
