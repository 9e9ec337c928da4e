//! The seam between the sandbox and the outside world: every Docker call of a run, and every
//! host mount, goes through [`SandboxEngine`].
//!
//! Owns: the trait, owned by its consumer (the rest of this module) and no wider than a run
//! needs, and the two plain values its calls answer with ([`ListedContainer`], [`ExitState`]).
//! The real implementation is [`BollardEngine`](super::bollard_engine::BollardEngine); the unit
//! tests inject a fake that records every call and fails the one it is told to.
//!
//! Does not decide anything and holds no state of a run: what is created, in which order, and
//! what is removed afterwards is decided by the callers (`run.rs`, `output_slot.rs`,
//! `spares.rs`, `cleanup.rs`).

use std::collections::HashMap;
use std::future::Future;
use std::io;

use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, VolumeCreateRequest};
use bytes::Bytes;
use futures_util::stream::BoxStream;

use super::cleanup::RunResources;
use super::error::RemovalFailure;
use crate::collect::{CollectError, CollectLimits, CollectedOutputs};
use crate::spec::OutputSlotSpec;

/// The Docker calls a run needs, and nothing more. Implemented by
/// [`BollardEngine`](super::bollard_engine::BollardEngine); the unit tests use a fake that
/// records calls and fails on request.
pub(crate) trait SandboxEngine: Send + Sync {
    /// The station label every created resource carries.
    fn station_id(&self) -> &str;
    /// The id of the image the output holder runs, building it if needed.
    fn output_holder_image(&self) -> impl Future<Output = Result<String, DockerError>> + Send;
    /// The paths an image declares as volumes (`VOLUME` in its Dockerfile).
    fn image_volume_paths(
        &self,
        image_id: &str,
    ) -> impl Future<Output = Result<Vec<String>, DockerError>> + Send;
    fn create_volume(
        &self,
        request: VolumeCreateRequest,
    ) -> impl Future<Output = Result<(), DockerError>> + Send;
    fn create_container(
        &self,
        name: &str,
        body: ContainerCreateBody,
    ) -> impl Future<Output = Result<(), DockerError>> + Send;
    /// Renames a container; fails with 404 when it is gone and 409 when the new name is taken.
    fn rename_container(
        &self,
        name: &str,
        new_name: &str,
    ) -> impl Future<Output = Result<(), DockerError>> + Send;
    /// Whether the container exists and is running.
    fn is_running(&self, name: &str) -> impl Future<Output = Result<bool, DockerError>> + Send;
    /// Where the run's `/output` is mounted on the host; `None` when this sandbox uses volumes.
    fn host_output_dir(&self, run_id: &str) -> Option<String>;
    /// Mounts a capped tmpfs at `dir` (from [`host_output_dir`](Self::host_output_dir)).
    fn mount_host_output(&self, dir: &str, slot: &OutputSlotSpec) -> io::Result<()>;
    /// Reads what the train left in a host output directory.
    fn collect_host_output(
        &self,
        dir: &str,
        limits: CollectLimits,
    ) -> impl Future<Output = Result<CollectedOutputs, CollectError>> + Send;
    /// Unmounts and removes a host output directory.
    fn release_host_output(&self, dir: &str) -> io::Result<()>;
    /// Unmounts and removes the host output directories of the runs `is_stale` names (what a
    /// crashed station left): (released, failures).
    fn release_stale_host_outputs(
        &self,
        is_stale: &dyn Fn(&str) -> bool,
    ) -> (Vec<String>, Vec<RemovalFailure>);
    /// The container's stdout and stderr from its start to its exit.
    fn attach_output(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<BoxStream<'static, Result<LogOutput, DockerError>>, DockerError>>
           + Send;
    fn start_container(&self, name: &str) -> impl Future<Output = Result<(), DockerError>> + Send;
    /// Resolves once the container is no longer running.
    fn wait_container(&self, name: &str) -> impl Future<Output = Result<(), DockerError>> + Send;
    /// SIGKILL; a container that already stopped is not an error.
    fn kill_container(&self, name: &str) -> impl Future<Output = Result<(), DockerError>> + Send;
    fn inspect_exit(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<ExitState, DockerError>> + Send;
    /// One item per out-of-memory kill in the container, from shortly before this call on.
    /// Docker records an OOM kill in the container's state only when the kernel's event reaches
    /// it before the exit does; its `oom` event arrives either way.
    fn oom_events(&self, name: &str) -> BoxStream<'static, Result<(), DockerError>>;
    /// A tar stream of `path` in the container.
    fn download_archive(
        &self,
        name: &str,
        path: &str,
    ) -> BoxStream<'static, Result<Bytes, DockerError>>;
    /// Forced removal; a container that does not exist is not an error.
    fn remove_container(&self, name: &str) -> impl Future<Output = Result<(), DockerError>> + Send;
    /// A volume that does not exist is not an error.
    fn remove_volume(&self, name: &str) -> impl Future<Output = Result<(), DockerError>> + Send;
    /// The containers (all states) carrying every label in `labels` (`key=value`).
    fn list_containers(
        &self,
        labels: &[String],
    ) -> impl Future<Output = Result<Vec<ListedContainer>, DockerError>> + Send;
    /// Names of the volumes carrying every label in `labels` (`key=value`).
    fn list_volumes(
        &self,
        labels: &[String],
    ) -> impl Future<Output = Result<Vec<String>, DockerError>> + Send;
    /// Removes a run's resources in the background: the run was dropped before it could.
    fn spawn_cleanup(&self, resources: RunResources);
}

/// A container as listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ListedContainer {
    pub name: String,
    pub running: bool,
    pub labels: HashMap<String, String>,
}

/// How a container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ExitState {
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
}
