//! Pull: the signed image is made present in the container engine, by digest.
//!
//! Owns fetching every layer the verified manifest names (each checked against its digest by
//! `pht-registry`), loading them into the engine, and the check that the image the engine will
//! run is the one that was signed: its id must equal the signed manifest's config digest. A
//! present image with that id is not fetched again (content-addressed). Never lets the engine
//! contact a registry itself.

use bytes::Bytes;
use pht_core::oci::ImageConfig;
use pht_core::Digest;
use pht_registry::RegistryError;

use super::decide::ApprovedRun;
use crate::audit::AuditEvent;
use crate::engine::{Engine, EngineError};
use crate::error::StationError;
use crate::station::Station;

/// Largest single layer pulled.
const MAX_LAYER_BYTES: u64 = 4 << 30;

/// The signed image could not be made present.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("registry: {source}")]
    Registry {
        layer: Digest,
        #[source]
        source: RegistryError,
    },
    #[error("container engine: {0}")]
    Engine(#[from] EngineError),
    #[error("container engine: the engine loaded image {loaded}, but the signed manifest's config is {expected}: refusing to run it")]
    ImageIdMismatch { loaded: Digest, expected: Digest },
    #[error("layer {layer} does not unpack to the layer the signed config names ({expected}): refusing to run it")]
    DiffIdMismatch { layer: Digest, expected: Digest },
    #[error("the train's image: {0}")]
    Malformed(String),
    #[error("layer {layer} is {media_type}, which this station does not read (it reads tar and gzip layers)")]
    UnknownMediaType { layer: Digest, media_type: String },
    #[error("layer {layer} is not valid gzip: {detail}")]
    BadGzip { layer: Digest, detail: String },
}

/// What a pull fetched and what the engine held already.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PullCount {
    pub layers_fetched: usize,
    pub layers_present: usize,
    pub bytes_fetched: u64,
}

/// A layer blob as the tar it is, decompressed when the registry stores it with gzip.
fn uncompressed(media_type: &str, blob: Vec<u8>, layer: &Digest) -> Result<Vec<u8>, PullError> {
    use std::io::Read as _;
    match media_type {
        pht_core::oci::OCI_LAYER_TAR | pht_core::oci::DOCKER_LAYER_TAR => Ok(blob),
        pht_core::oci::OCI_LAYER_GZIP | pht_core::oci::DOCKER_LAYER_GZIP => {
            let mut tar = Vec::with_capacity(blob.len() * 3);
            flate2::read::GzDecoder::new(blob.as_slice())
                .take(MAX_LAYER_BYTES)
                .read_to_end(&mut tar)
                .map_err(|error| PullError::BadGzip {
                    layer: layer.clone(),
                    detail: error.to_string(),
                })?;
            Ok(tar)
        }
        other => Err(PullError::UnknownMediaType {
            layer: layer.clone(),
            media_type: other.to_string(),
        }),
    }
}

/// An approved run whose signed image is present in the engine under `image_id`. Only
/// [`Station::pull`] makes one.
#[derive(Debug)]
pub struct PulledRun {
    approved: ApprovedRun,
    image_id: Digest,
}

impl PulledRun {
    pub(super) fn into_parts(self) -> (ApprovedRun, Digest) {
        (self.approved, self.image_id)
    }
}

impl<E: Engine> Station<E> {
    /// Pulls the approved run's image; a failure fails the run.
    pub(super) async fn pull(&self, approved: ApprovedRun) -> Result<PulledRun, StationError> {
        let (image_id, count) = match self.pull_image(&approved).await {
            Ok(pulled) => pulled,
            Err(error) => return self.fail(approved.into_record(), error.into()),
        };
        let train = approved.train();
        let mut pulled =
            AuditEvent::new(&self.station_actor(), "pulled").run(&approved.record().run_id);
        pulled.train_digest = Some(train.digest().to_string());
        pulled
            .details
            .insert("image_id".into(), image_id.to_string().into());
        pulled
            .details
            .insert("layers_fetched".into(), count.layers_fetched.into());
        pulled
            .details
            .insert("layers_present".into(), count.layers_present.into());
        pulled
            .details
            .insert("bytes_fetched".into(), count.bytes_fetched.into());
        if let Some(base) = train.base() {
            pulled
                .details
                .insert("base".into(), base.reference().to_string().into());
        }
        self.audit.append(pulled)?;
        Ok(PulledRun { approved, image_id })
    }

    async fn pull_image(&self, approved: &ApprovedRun) -> Result<(Digest, PullCount), PullError> {
        let train = approved.train();
        let image_id = train.image_manifest().config.digest.clone();
        let mut count = PullCount::default();
        if self.engine.has_image(&image_id).await? {
            count.layers_present = train.image_manifest().layers.len();
            return Ok((image_id, count));
        }
        let config: ImageConfig =
            serde_json::from_slice(train.config_bytes()).map_err(|error| {
                PullError::Malformed(format!("the image config is not JSON: {error}"))
            })?;
        let diff_ids = config.diff_ids();
        let manifest_layers = &train.image_manifest().layers;
        if diff_ids.len() != manifest_layers.len() {
            return Err(PullError::Malformed(format!(
                "the manifest names {} layers but the config {}",
                manifest_layers.len(),
                diff_ids.len()
            )));
        }
        // Layers the engine holds (by chain id) are neither fetched nor sent again: a train on
        // a base the station has run before fetches only its own layers.
        let present = self.engine.layer_chains().await?;
        let chains = pht_core::oci::chain_ids(diff_ids);
        let mut layers = Vec::with_capacity(manifest_layers.len());
        for ((layer, diff_id), chain_id) in manifest_layers.iter().zip(diff_ids).zip(&chains) {
            if present.contains(chain_id) {
                count.layers_present += 1;
                layers.push(None);
                continue;
            }
            let blob = self
                .registry
                .get_blob(train.reference(), &layer.digest, MAX_LAYER_BYTES, None)
                .await
                .map_err(|source| PullError::Registry {
                    layer: layer.digest.clone(),
                    source,
                })?;
            count.layers_fetched += 1;
            count.bytes_fetched += blob.len() as u64;
            let tar = uncompressed(&layer.media_type, blob, &layer.digest)?;
            if Digest::of(&tar) != *diff_id {
                return Err(PullError::DiffIdMismatch {
                    layer: layer.digest.clone(),
                    expected: diff_id.clone(),
                });
            }
            layers.push(Some(Bytes::from(tar)));
        }
        let loaded = self
            .engine
            .load_image(train.config_bytes(), &layers)
            .await?;
        if loaded != image_id {
            return Err(PullError::ImageIdMismatch {
                loaded,
                expected: image_id,
            });
        }
        Ok((image_id, count))
    }
}
