//! Base images for trains in the languages researchers use (Python, R), built offline from
//! Debian's own packages: a root file system made with `debootstrap`, normalised so that the
//! same package versions give the same bytes, packed into one deterministic layer (tar sorted by
//! name, fixed times and owners; gzip without a timestamp), and an OCI image config whose
//! creation time, user and environment are fixed too.
//!
//! Owns the package lists, the root file system's normalisation, the layer and the config. Does
//! not talk to Docker or a registry (`pht base build` loads, pushes and signs what this crate
//! makes) and decides nothing about which bases a station accepts (the policy does).

pub mod config;
pub mod layer;
pub mod packages;
pub mod rootfs;

pub use config::{base_config, BaseKind, BASE_LABEL, PACKAGES_LABEL};
pub use layer::{gzip_layer, pack_layer, Layer};
pub use packages::{PackageList, PackagesError};
pub use rootfs::{debootstrap, normalise, RootfsError};

/// Every time in a base image: the layer's file times and the config's `created`. A base is
/// identified by its package list and the packages' versions, not by when it was built.
/// 2026-01-01T00:00:00Z.
pub const SOURCE_DATE_EPOCH: u64 = 1_767_225_600;

/// The Debian release bases are built from.
pub const DEBIAN_SUITE: &str = "bookworm";
