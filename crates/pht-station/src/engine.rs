//! The station's view of the container engine: the things the pipeline needs from it,
//! behind a small trait so the pipeline can be tested with a fake.
//!
//! Owns nothing but the seam; `DockerEngine` forwards to `pht-docker`, where every Docker call
//! lives.

use std::future::Future;

use bytes::Bytes;
use futures_util::StreamExt as _;
use pht_core::Digest;
pub use pht_docker::image::LoadLayer;
use pht_docker::{DockerSandbox, RunOutcome, RunSpec};

/// What went wrong in the engine, as text for the run record and audit log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EngineError(pub String);

/// The container engine, as the pipeline uses it.
pub trait Engine: Send + Sync {
    /// Whether an image with this id (config digest) is present locally.
    fn has_image(
        &self,
        image_id: &Digest,
    ) -> impl Future<Output = Result<bool, EngineError>> + Send;
    /// The chain ids of every layer the engine holds (see `pht_core::oci::chain_ids`).
    fn layer_chains(
        &self,
    ) -> impl Future<Output = Result<std::collections::HashSet<Digest>, EngineError>> + Send;
    /// Loads an image from verified layers (plain or gzip tars); `None` is a layer the engine
    /// holds already. Returns the id the engine gave it.
    fn load_image(
        &self,
        config: &[u8],
        layers: &[Option<Bytes>],
    ) -> impl Future<Output = Result<Digest, EngineError>> + Send;
    /// Loads an image from layers as they stream in; a stream that ends with an error (a layer
    /// that failed its check) must leave nothing loaded. The default collects each stream into
    /// memory and calls [`Engine::load_image`], which is right for fakes and small images only;
    /// `DockerEngine` streams.
    fn load_image_streamed(
        &self,
        config: Bytes,
        layers: Vec<LoadLayer>,
    ) -> impl Future<Output = Result<Digest, EngineError>> + Send {
        async move {
            let mut collected = Vec::with_capacity(layers.len());
            for layer in layers {
                match layer {
                    LoadLayer::Present => collected.push(None),
                    LoadLayer::Stream { mut body, .. } => {
                        let mut bytes = Vec::new();
                        while let Some(chunk) = body.next().await {
                            bytes.extend_from_slice(
                                &chunk.map_err(|error| EngineError(error.to_string()))?,
                            );
                        }
                        collected.push(Some(Bytes::from(bytes)));
                    }
                }
            }
            self.load_image(&config, &collected).await
        }
    }
    /// Runs a fully resolved spec in the sandbox.
    fn run(&self, spec: &RunSpec) -> impl Future<Output = Result<RunOutcome, EngineError>> + Send;
    /// The engine and its version for the operator console, e.g. `Docker 20.10.24 (API 1.41)`;
    /// an error when the engine cannot be reached.
    fn version(&self) -> impl Future<Output = Result<String, EngineError>> + Send {
        async { Err(EngineError("this engine does not report a version".into())) }
    }
}

/// The real engine: Docker through `pht-docker`.
#[derive(Debug, Clone)]
pub struct DockerEngine {
    docker: bollard::Docker,
    sandbox: DockerSandbox,
}

impl DockerEngine {
    /// `warm_output_slots`: spare output slots the sandbox keeps ready (0: none), used when
    /// `host_outputs` is `None`; otherwise `/output` is a tmpfs mounted there.
    pub fn new(
        docker: bollard::Docker,
        station_id: &str,
        warm_output_slots: usize,
        host_outputs: Option<pht_docker::HostOutputs>,
    ) -> DockerEngine {
        let mut sandbox = DockerSandbox::for_station(docker.clone(), station_id)
            .with_warm_output_slots(warm_output_slots);
        if let Some(host_outputs) = host_outputs {
            sandbox = sandbox.with_host_outputs(host_outputs);
        }
        DockerEngine { sandbox, docker }
    }

    pub fn sandbox(&self) -> &DockerSandbox {
        &self.sandbox
    }
}

impl Engine for DockerEngine {
    async fn has_image(&self, image_id: &Digest) -> Result<bool, EngineError> {
        match pht_docker::image::inspect_image(&self.docker, &image_id.to_string()).await {
            Ok(local) => Ok(local.id == *image_id),
            Err(pht_docker::image::ImageError::NotFound { .. }) => Ok(false),
            Err(error) => Err(EngineError(error.to_string())),
        }
    }

    async fn layer_chains(&self) -> Result<std::collections::HashSet<Digest>, EngineError> {
        pht_docker::image::local_layer_chains(&self.docker)
            .await
            .map_err(|e| EngineError(e.to_string()))
    }

    async fn load_image(
        &self,
        config: &[u8],
        layers: &[Option<Bytes>],
    ) -> Result<Digest, EngineError> {
        pht_docker::image::load_image(&self.docker, config, layers)
            .await
            .map_err(|e| EngineError(e.to_string()))
    }

    async fn load_image_streamed(
        &self,
        config: Bytes,
        layers: Vec<LoadLayer>,
    ) -> Result<Digest, EngineError> {
        pht_docker::image::load_image_streamed(&self.docker, config, layers)
            .await
            .map_err(|e| EngineError(e.to_string()))
    }

    async fn run(&self, spec: &RunSpec) -> Result<RunOutcome, EngineError> {
        self.sandbox
            .run(spec)
            .await
            .map_err(|e| EngineError(e.to_string()))
    }

    async fn version(&self) -> Result<String, EngineError> {
        let version = self
            .docker
            .version()
            .await
            .map_err(|e| EngineError(format!("Docker cannot be reached: {e}")))?;
        Ok(format!(
            "Docker {} (API {})",
            version.version.as_deref().unwrap_or("?"),
            version.api_version.as_deref().unwrap_or("?")
        ))
    }
}
