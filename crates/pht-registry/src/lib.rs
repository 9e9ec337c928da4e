//! An OCI distribution client: manifests, blobs and cosign signature tags.
//!
//! Owns the registry HTTP protocol (pull, streamed pull, push with existence checks and
//! cross-repository mounts, delete, tag listing), its authentication (basic,
//! and bearer tokens from the registry's token service), the rule that only loopback or
//! explicitly insecure registries may be reached over plain HTTP, and the check that every
//! manifest and blob fetched hashes to the digest it was asked for. It knows nothing about Docker
//! or policy.

mod client;
mod error;
pub mod signatures;

pub use client::{
    BlobCopy, BlobStream, Credentials, FetchedManifest, Mount, Progress, RegistryClient,
    RegistryOptions, UploadSession,
};
pub use error::RegistryError;
