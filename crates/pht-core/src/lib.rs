//! The formats that cross trust boundaries, and the cryptography over them.
//!
//! Digests, image references, the train manifest (`train.yaml` and its image label), signing keys,
//! cosign-compatible simple-signing payloads, DSSE envelopes and the job envelope all live here.
//! This crate does no I/O: it takes bytes, values and `now`, and returns values. Reading files,
//! talking to registries, Docker and the clock belong to the crates that call it.

pub mod checkpoint;
pub mod cosign;
pub mod digest;
pub mod dsse;
pub mod httpsig;
pub mod intoto;
pub mod job;
pub mod keys;
pub mod manifest;
pub mod oci;
pub mod recipient;
pub mod reference;
pub mod seal;
pub mod train_sources;
pub mod units;

pub use digest::Digest;
pub use keys::{KeyAlgorithm, PublicKey, SigningKey};
pub use manifest::TrainManifest;
pub use reference::ImageReference;
