//! The real [`SandboxEngine`]: Docker through bollard, and the host mounts through
//! [`HostOutputs`].
//!
//! Owns: every bollard call a run makes, each answering in the terms of the trait — a
//! container that is already gone is removed, a kill that finds the train stopped is not an
//! error, a volume Docker still sees in use is retried for a while, a wait that times out is
//! asked again, and the log stream is attached live rather than replayed from the log file. The
//! holder image's own two calls (inspect, build), made once per sandbox rather than per run,
//! are in [`super::holder_image`].
//!
//! Does not decide anything about a run: which calls are made, and in which order, is decided
//! by the rest of the sandbox, which sees only the trait.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, VolumeCreateRequest};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder,
    DownloadFromContainerOptionsBuilder, EventsOptionsBuilder, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use tokio::sync::OnceCell;

use super::cleanup::{remove_run_resources, RunResources};
use super::engine::{ExitState, ListedContainer, SandboxEngine};
use super::error::{joined, RemovalFailure};
use super::holder_image;
use crate::collect::{CollectError, CollectLimits, CollectedOutputs};
use crate::host_output::{self, HostOutputs};
use crate::spec::OutputSlotSpec;

/// How often, and how long apart, removing a volume is retried while Docker still sees it in use.
const VOLUME_REMOVAL_ATTEMPTS: u32 = 10;
const VOLUME_REMOVAL_BACKOFF: Duration = Duration::from_millis(200);

/// The engine that talks to Docker through bollard.
#[derive(Debug, Clone)]
pub(crate) struct BollardEngine {
    docker: Docker,
    station_id: String,
    /// Built once per sandbox; concurrent runs wait for the same build.
    output_holder_image_id: Arc<OnceCell<String>>,
    host_outputs: Option<HostOutputs>,
}

impl BollardEngine {
    /// An engine labelling what it creates as `station_id`'s, with outputs in volumes.
    pub(super) fn new(docker: Docker, station_id: &str) -> Self {
        BollardEngine {
            docker,
            station_id: station_id.to_string(),
            output_holder_image_id: Arc::new(OnceCell::new()),
            host_outputs: None,
        }
    }

    /// Gives each run's `/output` as a tmpfs mounted under `outputs`' root instead.
    pub(super) fn with_host_outputs(mut self, outputs: HostOutputs) -> Self {
        self.host_outputs = Some(outputs);
        self
    }
}

/// The HTTP status of Docker's answer, if it answered with an error status.
pub(super) fn status_code(error: &DockerError) -> Option<u16> {
    match error {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

fn label_filters(labels: &[String]) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_string(), labels.to_vec())])
}

impl SandboxEngine for BollardEngine {
    fn station_id(&self) -> &str {
        &self.station_id
    }

    async fn output_holder_image(&self) -> Result<String, DockerError> {
        self.output_holder_image_id
            .get_or_try_init(|| holder_image::find_or_build(&self.docker))
            .await
            .cloned()
    }

    async fn image_volume_paths(&self, image_id: &str) -> Result<Vec<String>, DockerError> {
        let image = self.docker.inspect_image(image_id).await?;
        Ok(image
            .config
            .and_then(|config| config.volumes)
            .unwrap_or_default())
    }

    async fn create_volume(&self, request: VolumeCreateRequest) -> Result<(), DockerError> {
        self.docker.create_volume(request).await.map(|_| ())
    }

    async fn create_container(
        &self,
        name: &str,
        body: ContainerCreateBody,
    ) -> Result<(), DockerError> {
        let options = CreateContainerOptionsBuilder::new().name(name).build();
        let response = self.docker.create_container(Some(options), body).await?;
        for warning in response.warnings {
            tracing::warn!(container = name, %warning, "docker warned while creating a container");
        }
        Ok(())
    }

    async fn attach_output(
        &self,
        name: &str,
    ) -> Result<BoxStream<'static, Result<LogOutput, DockerError>>, DockerError> {
        // Attached before the start, so the live stream holds everything. `logs(true)` would
        // also replay the log file, and when that replay races the start it duplicates and
        // reorders the first lines (seen: lines from the end of a flood arrived first).
        let options = AttachContainerOptionsBuilder::new()
            .stream(true)
            .logs(false)
            .stdout(true)
            .stderr(true)
            .stdin(false)
            .build();
        let attached = self.docker.attach_container(name, Some(options)).await?;
        Ok(attached.output)
    }

    async fn rename_container(&self, name: &str, new_name: &str) -> Result<(), DockerError> {
        let options = bollard::query_parameters::RenameContainerOptionsBuilder::new()
            .name(new_name)
            .build();
        self.docker.rename_container(name, options).await
    }

    async fn is_running(&self, name: &str) -> Result<bool, DockerError> {
        match self.docker.inspect_container(name, None).await {
            Ok(inspected) => Ok(inspected
                .state
                .and_then(|state| state.running)
                .unwrap_or(false)),
            Err(error) if status_code(&error) == Some(404) => Ok(false),
            Err(error) => Err(error),
        }
    }

    fn host_output_dir(&self, run_id: &str) -> Option<String> {
        let outputs = self.host_outputs.as_ref()?;
        Some(outputs.run_dir(run_id).display().to_string())
    }

    fn mount_host_output(&self, dir: &str, slot: &OutputSlotSpec) -> io::Result<()> {
        match &self.host_outputs {
            Some(outputs) => outputs.mount(std::path::Path::new(dir), slot),
            None => Err(io::Error::other(
                "this sandbox does not mount outputs on the host",
            )),
        }
    }

    async fn collect_host_output(
        &self,
        dir: &str,
        limits: CollectLimits,
    ) -> Result<CollectedOutputs, CollectError> {
        let dir = std::path::PathBuf::from(dir);
        let walk_dir = dir.clone();
        tokio::task::spawn_blocking(move || host_output::collect_dir(&walk_dir, &limits))
            .await
            .unwrap_or_else(|join_error| {
                Err(CollectError::Walk {
                    dir: dir.display().to_string(),
                    source: io::Error::other(join_error.to_string()),
                })
            })
    }

    fn release_host_output(&self, dir: &str) -> io::Result<()> {
        match &self.host_outputs {
            Some(outputs) => outputs.release(std::path::Path::new(dir)),
            None => Ok(()),
        }
    }

    fn release_stale_host_outputs(
        &self,
        is_stale: &dyn Fn(&str) -> bool,
    ) -> (Vec<String>, Vec<RemovalFailure>) {
        let Some(outputs) = &self.host_outputs else {
            return (Vec::new(), Vec::new());
        };
        let (released, failures) = outputs.release_stale(is_stale);
        let failures = failures
            .into_iter()
            .map(|(dir, source)| RemovalFailure::OutputDir { dir, source })
            .collect();
        (released, failures)
    }

    async fn start_container(&self, name: &str) -> Result<(), DockerError> {
        self.docker.start_container(name, None).await
    }

    async fn wait_container(&self, name: &str) -> Result<(), DockerError> {
        loop {
            let mut wait_stream = self.docker.wait_container(name, None);
            match wait_stream.next().await {
                // bollard reports a non-zero exit code as an error; here it is just an exit.
                Some(Ok(_)) | Some(Err(DockerError::DockerContainerWaitError { .. })) => {
                    return Ok(())
                }
                // The response head did not arrive within the client's timeout: ask again.
                Some(Err(DockerError::RequestTimeoutError)) => continue,
                Some(Err(error)) => return Err(error),
                None => {
                    return Err(DockerError::DockerStreamError {
                        error: format!("the wait for container {name} ended without an answer"),
                    })
                }
            }
        }
    }

    async fn kill_container(&self, name: &str) -> Result<(), DockerError> {
        let options = KillContainerOptionsBuilder::new().signal("SIGKILL").build();
        match self.docker.kill_container(name, Some(options)).await {
            // 409: the container stopped between the timeout and the kill.
            Err(error) if status_code(&error) == Some(409) => Ok(()),
            other => other,
        }
    }

    async fn inspect_exit(&self, name: &str) -> Result<ExitState, DockerError> {
        let inspected = self.docker.inspect_container(name, None).await?;
        let state = inspected.state.unwrap_or_default();
        Ok(ExitState {
            exit_code: state.exit_code,
            oom_killed: state.oom_killed.unwrap_or(false),
        })
    }

    fn oom_events(&self, name: &str) -> BoxStream<'static, Result<(), DockerError>> {
        // `since` a little in the past: Docker replays what it buffered, so an event that
        // happens before this subscription reaches the daemon is not missed.
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|now| now.as_secs().saturating_sub(2))
            .unwrap_or(0);
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("container".to_string(), vec![name.to_string()]),
            ("event".to_string(), vec!["oom".to_string()]),
        ]);
        let options = EventsOptionsBuilder::new()
            .since(&since.to_string())
            .filters(&filters)
            .build();
        self.docker
            .events(Some(options))
            .map(|event| event.map(|_| ()))
            .boxed()
    }

    fn download_archive(
        &self,
        name: &str,
        path: &str,
    ) -> BoxStream<'static, Result<Bytes, DockerError>> {
        let options = DownloadFromContainerOptionsBuilder::new()
            .path(path)
            .build();
        self.docker
            .download_from_container(name, Some(options))
            .boxed()
    }

    async fn remove_container(&self, name: &str) -> Result<(), DockerError> {
        // `v` also removes anonymous volumes, should any have been created despite
        // `cover_image_volumes`.
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(name, Some(options)).await {
            Err(error) if status_code(&error) == Some(404) => Ok(()),
            other => other,
        }
    }

    async fn remove_volume(&self, name: &str) -> Result<(), DockerError> {
        let mut attempt = 1;
        loop {
            let options: Option<bollard::query_parameters::RemoveVolumeOptions> = None;
            match self.docker.remove_volume(name, options).await {
                Ok(()) => return Ok(()),
                Err(error) if status_code(&error) == Some(404) => return Ok(()),
                // 409: a container that was just removed may still be releasing it.
                Err(error)
                    if status_code(&error) == Some(409) && attempt < VOLUME_REMOVAL_ATTEMPTS =>
                {
                    attempt += 1;
                    tokio::time::sleep(VOLUME_REMOVAL_BACKOFF).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn list_containers(
        &self,
        labels: &[String],
    ) -> Result<Vec<ListedContainer>, DockerError> {
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&label_filters(labels))
            .build();
        let containers = self.docker.list_containers(Some(options)).await?;
        Ok(containers
            .into_iter()
            .filter_map(|container| {
                let names = container.names.unwrap_or_default();
                let name = names
                    .first()
                    .map(|name| name.trim_start_matches('/').to_string())
                    .or(container.id)?;
                Some(ListedContainer {
                    name,
                    running: container.state
                        == Some(bollard::models::ContainerSummaryStateEnum::RUNNING),
                    labels: container.labels.unwrap_or_default(),
                })
            })
            .collect())
    }

    async fn list_volumes(&self, labels: &[String]) -> Result<Vec<String>, DockerError> {
        let options = ListVolumesOptionsBuilder::new()
            .filters(&label_filters(labels))
            .build();
        let response = self.docker.list_volumes(Some(options)).await?;
        Ok(response
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|volume| volume.name)
            .collect())
    }

    fn spawn_cleanup(&self, resources: RunResources) {
        let engine = self.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(failures) = remove_run_resources(&engine, &resources).await {
                        tracing::warn!(
                            container = resources.train_container,
                            failures = joined(&failures),
                            "could not remove the sandbox of a dropped run"
                        );
                    }
                });
            }
            Err(_) => tracing::warn!(
                container = resources.train_container,
                "a run was dropped outside a tokio runtime; its sandbox is left for cleanup_stale"
            ),
        }
    }
}
