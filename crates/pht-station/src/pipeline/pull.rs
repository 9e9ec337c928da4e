//! Pull: the signed image is made present in the container engine, by digest.
//!
//! Owns fetching every layer the verified manifest names (each checked against its digest by
//! `pht-registry`), loading them into the engine, and the check that the image the engine will
//! run is the one that was signed: its id must equal the signed manifest's config digest. A
//! present image with that id is not fetched again (content-addressed). Never lets the engine
//! contact a registry itself.

use bytes::Bytes;
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
        let image_id = match self.pull_image(&approved).await {
            Ok(image_id) => image_id,
            Err(error) => return self.fail(approved.into_record(), error.into()),
        };
        let train = approved.train();
        let mut pulled =
            AuditEvent::new(&self.station_actor(), "pulled").run(&approved.record().run_id);
        pulled.train_digest = Some(train.digest().to_string());
        pulled
            .details
            .insert("image_id".into(), image_id.to_string().into());
        self.audit.append(pulled)?;
        Ok(PulledRun { approved, image_id })
    }

    async fn pull_image(&self, approved: &ApprovedRun) -> Result<Digest, PullError> {
        let train = approved.train();
        let image_id = train.image_manifest().config.digest.clone();
        if self.engine.has_image(&image_id).await? {
            return Ok(image_id);
        }
        let mut layers = Vec::with_capacity(train.image_manifest().layers.len());
        for layer in &train.image_manifest().layers {
            let bytes = self
                .registry
                .get_blob(train.reference(), &layer.digest, MAX_LAYER_BYTES, None)
                .await
                .map_err(|source| PullError::Registry {
                    layer: layer.digest.clone(),
                    source,
                })?;
            layers.push(Bytes::from(bytes));
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
        Ok(image_id)
    }
}
