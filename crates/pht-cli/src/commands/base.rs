//! `pht base build python|r`: builds a base image for trains from Debian's own packages,
//! offline from any image registry, loads it into Docker, pushes it and signs it with the base
//! signer's key (not a researcher's: a station policy can trust bases and trains apart).
//!
//! Glue only: the root file system, layer and config are `pht-base`'s, Docker is `pht-docker`'s,
//! the registry and signatures `pht-registry`'s and `pht-core`'s.

use std::path::Path;

use bytes::Bytes;
use pht_base::{BaseKind, PackageList};
use pht_core::cosign;
use pht_core::oci::OCI_LAYER_GZIP;
use pht_core::Digest;
use pht_registry::{signatures, RegistryClient};
use serde::Serialize;

use super::train::{parse_reference, push_image};
use crate::exit::{fail, registry_failure, Classify as _, CommandResult, FailureKind};
use crate::keyfiles::read_signing_key;
use crate::output::Output;

/// The package lists the project keeps, built into `pht` so that `pht base build` works
/// anywhere; `--packages` replaces one.
const PYTHON_PACKAGES: &str = include_str!("../../../../trains/base/python/packages.txt");
const R_PACKAGES: &str = include_str!("../../../../trains/base/r/packages.txt");

/// The Debian mirror bases are built from unless `--mirror` says otherwise.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

#[derive(Serialize)]
struct BuiltBase {
    kind: &'static str,
    reference: String,
    digest: Digest,
    image_id: Digest,
    layer_diff_id: Digest,
    layer_digest: Digest,
    layer_bytes: u64,
    compressed_bytes: u64,
    packages_sha256: Digest,
    signer_key_id: String,
}

/// Builds, loads, pushes and signs a base; prints the pinned reference.
pub async fn build(
    output: Output,
    client: &RegistryClient,
    kind: BaseKind,
    tag: &str,
    key_path: &Path,
    packages_path: Option<&Path>,
    mirror: &str,
) -> CommandResult {
    let reference = parse_reference(tag)?;
    if reference.digest().is_some() {
        return Err(fail(
            FailureKind::Input,
            "give the base a tag to push to, not a digest: the digest is what the build makes",
        ));
    }
    let key = read_signing_key(key_path)?;
    let (packages_text, source_name) = match packages_path {
        Some(path) => (
            std::fs::read_to_string(path).map_err(|error| {
                fail(
                    FailureKind::Input,
                    format!("cannot read {}: {error}", path.display()),
                )
            })?,
            path.display().to_string(),
        ),
        None => (
            match kind {
                BaseKind::Python => PYTHON_PACKAGES,
                BaseKind::R => R_PACKAGES,
            }
            .to_string(),
            format!("trains/base/{}/packages.txt", kind.name()),
        ),
    };
    let packages = PackageList::parse(&packages_text, &source_name).input()?;

    let scratch = tempfile::tempdir().map_err(|error| {
        fail(
            FailureKind::Unavailable,
            format!("cannot make a scratch directory: {error}"),
        )
    })?;
    let root = scratch.path().join("rootfs");
    output.note(format!(
        "debootstrap: {} packages from {mirror} (a few minutes the first time)",
        packages.names().len()
    ));
    let layer = {
        let (root, packages, mirror) = (root.clone(), packages.clone(), mirror.to_string());
        tokio::task::spawn_blocking(move || {
            pht_base::debootstrap(&packages, &root, &mirror)?;
            pht_base::normalise(&root)?;
            pht_base::pack_layer(&root).map_err(|source| pht_base::RootfsError::Normalise {
                path: root.display().to_string(),
                source,
            })
        })
        .await
        .map_err(|error| {
            fail(
                FailureKind::Unavailable,
                format!("the build stopped: {error}"),
            )
        })?
        .unavailable()?
    };
    let config = pht_base::base_config(kind, &layer.diff_id, &packages.digest());
    let image_id = Digest::of(&config);

    output.note(format!("loading {image_id} into Docker"));
    let docker = pht_docker::connect().await.unavailable()?;
    let loaded =
        pht_docker::image::load_image(&docker, &config, &[Some(Bytes::from(layer.tar.clone()))])
            .await
            .unavailable()?;
    if loaded != image_id {
        return Err(fail(
            FailureKind::Unavailable,
            format!("Docker loaded the base as {loaded}, but its config is {image_id}"),
        ));
    }
    let (digest, _) = push_image(
        output,
        client,
        &reference,
        Bytes::from(config),
        &[(Bytes::from(layer.gzip.clone()), OCI_LAYER_GZIP)],
    )
    .await?;
    let signed = cosign::sign_image(&key, &reference.repository_path(), &digest);
    signatures::attach_signature(client, &reference, &digest, signed)
        .await
        .map_err(registry_failure)?;
    let built = BuiltBase {
        kind: kind.name(),
        reference: reference.pinned(digest.clone()).to_string(),
        digest,
        image_id,
        layer_diff_id: layer.diff_id.clone(),
        layer_digest: layer.gzip_digest.clone(),
        layer_bytes: layer.tar.len() as u64,
        compressed_bytes: layer.gzip.len() as u64,
        packages_sha256: packages.digest(),
        signer_key_id: key.public_key().key_id(),
    };
    output.print(&built, || {
        format!(
            "{}\n  layer   {} ({} MB, {} MB compressed)\n  packages sha256 {}\n  signed by key {}",
            built.reference,
            built.layer_diff_id,
            built.layer_bytes / 1_000_000,
            built.compressed_bytes / 1_000_000,
            built.packages_sha256.hex(),
            built.signer_key_id
        )
    });
    Ok(())
}
