//! Running one train in the sandbox, and removing every trace of the run afterwards.
//!
//! Owns: the life cycle of a run's Docker resources. [`DockerSandbox::run`] creates the run's
//! `/output` volume and the container that keeps it mounted, creates the train container, streams
//! its stdout and stderr (capped), starts it, waits for it with the wall-clock limit (then kills
//! it), inspects how it ended, collects `/output` through the archive API, and then removes the
//! containers and the volume on every path: success, failure, timeout, an error in the middle,
//! and the caller dropping the run. [`DockerSandbox::cleanup_stale`] removes what a crashed
//! station left behind.
//!
//! Does not decide anything: the container specification comes from [`crate::spec`], built from a
//! [`RunSpec`] the station resolved from its policy, and the outputs are judged by the output
//! checks, not here. The Docker calls sit behind [`SandboxEngine`], a small trait with a fake in
//! the unit tests below; the real engine is [`BollardEngine`].

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io::{self, Read};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, HostConfig, VolumeCreateRequest};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, BuildImageOptionsBuilder, CreateContainerOptionsBuilder,
    DownloadFromContainerOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, OnceCell};

use crate::collect::{self, CollectError, CollectLimits, CollectedKind, CollectedOutputs};
use crate::spec::{
    self, RunLimits, RunResourceNames, RunSpec, LABEL_MANAGED, OUTPUT_MOUNT_PATH,
    PARAMS_MOUNT_PATH, TMP_MOUNT_PATH,
};

/// Label naming the station (sandbox owner) of a resource, so that stations sharing one engine,
/// or tests running in parallel, only ever clean up their own leftovers.
pub const LABEL_STATION: &str = "org.pht.station";
/// The station a [`DockerSandbox::new`] sandbox labels its resources with.
pub const DEFAULT_STATION_ID: &str = "local";

/// Tag of the image the output holder runs. The sandbox refers to it by id once built; the tag
/// only tells an operator what the image is for.
const OUTPUT_HOLDER_IMAGE_TAG: &str = "pht-output-holder:v1";
/// tmpfs allocates whole pages.
const TMPFS_PAGE_BYTES: u64 = 4096;
/// A `/output` this close to its cap counts as full: the last write that failed could not have
/// added more than a page or two.
const OUTPUT_FULL_SLACK_BYTES: u64 = 2 * TMPFS_PAGE_BYTES;
/// tmpfs keeps symbolic link targets shorter than this in the inode, longer ones in a page.
const TMPFS_INLINE_SYMLINK_BYTES: usize = 128;
/// How long the log stream may trail the container's exit before it is cut.
const LOG_DRAIN_GRACE: Duration = Duration::from_secs(5);
/// How often, and how long apart, removing a volume is retried while Docker still sees it in use.
const VOLUME_REMOVAL_ATTEMPTS: u32 = 10;
const VOLUME_REMOVAL_BACKOFF: Duration = Duration::from_millis(200);
/// How often starting the output holder is tried before the run fails.
const HOLDER_START_ATTEMPTS: u32 = 3;

/// What happened to a run. Refusals and limits reached are data here, not errors: a train that
/// was OOM-killed or timed out ran in a working sandbox.
#[derive(Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// The train's exit code, as Docker reports it (137 when killed).
    pub exit_code: Option<i64>,
    /// The kernel killed the train for using more memory than its limit.
    pub oom_killed: bool,
    /// The train was killed at the wall-clock limit.
    pub timed_out: bool,
    /// From start to exit (or to the kill).
    pub duration: Duration,
    /// stdout and stderr, interleaved as they arrived, cut at the log limit.
    pub logs: Vec<u8>,
    /// The train wrote more than `logs` holds.
    pub logs_truncated: bool,
    pub outputs: CollectedOutputs,
    /// `/output` was full: the kernel refused (or would have refused) the train's next write, or
    /// collection stopped at a cap. Outputs may be incomplete.
    pub output_limit_reached: bool,
}

impl fmt::Debug for RunOutcome {
    // Logs can be long and binary; show them as text, shortened.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN_LOG_BYTES: usize = 2048;
        let shown_logs =
            String::from_utf8_lossy(&self.logs[..self.logs.len().min(SHOWN_LOG_BYTES)]);
        formatter
            .debug_struct("RunOutcome")
            .field("exit_code", &self.exit_code)
            .field("oom_killed", &self.oom_killed)
            .field("timed_out", &self.timed_out)
            .field("duration", &self.duration)
            .field("logs", &shown_logs)
            .field("logs_len", &self.logs.len())
            .field("logs_truncated", &self.logs_truncated)
            .field("outputs", &self.outputs)
            .field("output_limit_reached", &self.output_limit_reached)
            .finish()
    }
}

/// The step of a run at which Docker failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStep {
    BuildOutputHolderImage,
    InspectTrainImage,
    CreateOutputVolume,
    CreateOutputHolder,
    StartOutputHolder,
    CreateTrainContainer,
    AttachToTrain,
    StartTrain,
    WaitForTrain,
    KillTrain,
    InspectTrain,
    DownloadOutputs,
}

impl fmt::Display for RunStep {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let description = match self {
            RunStep::BuildOutputHolderImage => "build the output holder image",
            RunStep::InspectTrainImage => "inspect the train image",
            RunStep::CreateOutputVolume => "create the output volume",
            RunStep::CreateOutputHolder => "create the output holder container",
            RunStep::StartOutputHolder => "start the output holder container",
            RunStep::CreateTrainContainer => "create the train container",
            RunStep::AttachToTrain => "attach to the train's output streams",
            RunStep::StartTrain => "start the train container",
            RunStep::WaitForTrain => "wait for the train to exit",
            RunStep::KillTrain => "kill the train at its wall-clock limit",
            RunStep::InspectTrain => "inspect how the train exited",
            RunStep::DownloadOutputs => "download /output",
        };
        formatter.write_str(description)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("could not {step} of run {run_id}: {source}")]
    Docker {
        run_id: String,
        step: RunStep,
        source: DockerError,
    },
    #[error("could not collect the outputs of run {run_id}: {source}")]
    Collect {
        run_id: String,
        source: CollectError,
    },
    #[error("collecting the outputs of run {run_id} stopped unexpectedly: {message}")]
    CollectTask { run_id: String, message: String },
    #[error("could not remove the sandbox of run {run_id} ({}); remove the leftovers with `docker rm -f` and `docker volume rm`, or call cleanup_stale", .failures.join("; "))]
    Cleanup {
        run_id: String,
        failures: Vec<String>,
    },
    #[error("could not remove leftover sandbox resources of station {station_id:?} ({}); remove them with `docker rm -f` and `docker volume rm`", .failures.join("; "))]
    StaleCleanup {
        station_id: String,
        failures: Vec<String>,
    },
    #[error("could not list the leftover sandbox resources of station {station_id:?}: {source}")]
    ListLeftovers {
        station_id: String,
        source: DockerError,
    },
}

/// What [`DockerSandbox::cleanup_stale`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaleCleanup {
    pub removed_containers: Vec<String>,
    pub removed_volumes: Vec<String>,
}

/// Runs trains in Docker with the sandbox defaults of `DESIGN.md`.
#[derive(Debug, Clone)]
pub struct DockerSandbox {
    engine: BollardEngine,
}

impl DockerSandbox {
    /// A sandbox labelling its resources as belonging to station [`DEFAULT_STATION_ID`].
    pub fn new(docker: Docker) -> Self {
        Self::for_station(docker, DEFAULT_STATION_ID)
    }

    /// A sandbox labelling its resources as belonging to `station_id`; its
    /// [`cleanup_stale`](Self::cleanup_stale) leaves other stations' resources alone.
    pub fn for_station(docker: Docker, station_id: &str) -> Self {
        DockerSandbox {
            engine: BollardEngine {
                docker,
                station_id: station_id.to_string(),
                output_holder_image_id: Arc::new(OnceCell::new()),
            },
        }
    }

    pub fn station_id(&self) -> &str {
        &self.engine.station_id
    }

    /// Runs `spec` to completion and removes its containers and volume, whatever happens.
    ///
    /// If the returned future is dropped before it completes, the removal is spawned onto the
    /// current tokio runtime instead.
    pub async fn run(&self, spec: &RunSpec) -> Result<RunOutcome, SandboxError> {
        run_in_sandbox(&self.engine, spec).await
    }

    /// Removes every container and volume of this station that a previous station process left
    /// behind (after a crash). Call it when the station starts, before it runs anything: it also
    /// removes the resources of runs in progress.
    pub async fn cleanup_stale(&self) -> Result<StaleCleanup, SandboxError> {
        cleanup_stale_resources(&self.engine).await
    }
}

/// The Docker calls a run needs, and nothing more. Implemented by [`BollardEngine`]; the unit
/// tests use a fake that records calls and fails on request.
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
    /// Names of the containers (all states) carrying every label in `labels` (`key=value`).
    fn list_containers(
        &self,
        labels: &[String],
    ) -> impl Future<Output = Result<Vec<String>, DockerError>> + Send;
    /// Names of the volumes carrying every label in `labels` (`key=value`).
    fn list_volumes(
        &self,
        labels: &[String],
    ) -> impl Future<Output = Result<Vec<String>, DockerError>> + Send;
    /// Removes a run's resources in the background: the run was dropped before it could.
    fn spawn_cleanup(&self, names: RunResourceNames);
}

/// How a container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ExitState {
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
}

async fn run_in_sandbox<E: SandboxEngine>(
    engine: &E,
    spec: &RunSpec,
) -> Result<RunOutcome, SandboxError> {
    let names = spec.resource_names();
    let mut cleanup_guard = CleanupOnDrop {
        engine,
        names: Some(names.clone()),
    };
    let run_result = run_steps(engine, spec, &names).await;
    let cleanup_result = remove_run_resources(engine, &names).await;
    cleanup_guard.disarm();
    match (run_result, cleanup_result) {
        (Ok(outcome), Ok(())) => Ok(outcome),
        (Ok(_), Err(failures)) => Err(SandboxError::Cleanup {
            run_id: spec.run_id().to_string(),
            failures,
        }),
        (Err(run_error), Ok(())) => Err(run_error),
        (Err(run_error), Err(failures)) => {
            // The run's own error says more about what went wrong; the cleanup failures are
            // still worth an operator's attention.
            tracing::warn!(
                run_id = spec.run_id(),
                failures = failures.join("; "),
                "could not remove the sandbox of a failed run"
            );
            Err(run_error)
        }
    }
}

async fn run_steps<E: SandboxEngine>(
    engine: &E,
    spec: &RunSpec,
    names: &RunResourceNames,
) -> Result<RunOutcome, SandboxError> {
    let limits = spec.limits();
    let docker_error = |step: RunStep| {
        let run_id = spec.run_id().to_string();
        move |source: DockerError| SandboxError::Docker {
            run_id,
            step,
            source,
        }
    };

    let holder_image_id = engine
        .output_holder_image()
        .await
        .map_err(docker_error(RunStep::BuildOutputHolderImage))?;
    let image_volume_paths = engine
        .image_volume_paths(spec.image_id())
        .await
        .map_err(docker_error(RunStep::InspectTrainImage))?;

    let mut volume_request = spec::output_volume_request(spec, &names.output_volume);
    add_station_label(&mut volume_request.labels, engine.station_id());
    engine
        .create_volume(volume_request)
        .await
        .map_err(docker_error(RunStep::CreateOutputVolume))?;

    let mut holder_body = spec::output_holder_body(spec, &holder_image_id, &names.output_volume);
    add_station_label(&mut holder_body.labels, engine.station_id());
    engine
        .create_container(&names.output_holder_container, holder_body)
        .await
        .map_err(docker_error(RunStep::CreateOutputHolder))?;
    // Docker 20.10 occasionally answers "cannot start a stopped process" when many containers
    // start at once on a loaded host; the holder does nothing but wait, so starting it again is
    // safe. The train itself is never retried.
    let mut holder_attempt = 1;
    loop {
        match engine.start_container(&names.output_holder_container).await {
            Ok(()) => break,
            Err(error) if holder_attempt < HOLDER_START_ATTEMPTS => {
                tracing::warn!(run_id = spec.run_id(), attempt = holder_attempt, %error, "starting the output holder failed; trying again");
                tokio::time::sleep(VOLUME_REMOVAL_BACKOFF * holder_attempt).await;
                holder_attempt += 1;
            }
            Err(error) => return Err(docker_error(RunStep::StartOutputHolder)(error)),
        }
    }

    let mut train_body = spec::container_body(spec, &names.output_volume);
    add_station_label(&mut train_body.labels, engine.station_id());
    if let Some(host_config) = train_body.host_config.as_mut() {
        cover_image_volumes(host_config, &image_volume_paths, limits.tmp_bytes);
    }
    engine
        .create_container(&names.train_container, train_body)
        .await
        .map_err(docker_error(RunStep::CreateTrainContainer))?;

    // Attach before starting, as `docker run` does, so no output is missed. The capture reads
    // the container's streams directly rather than the log file, whose rotation at its size
    // cap would silently drop the beginning.
    let log_stream = engine
        .attach_output(&names.train_container)
        .await
        .map_err(docker_error(RunStep::AttachToTrain))?;
    let captured_logs = Arc::new(Mutex::new(CapturedLogs::default()));
    let mut log_capture = AbortOnDrop(tokio::spawn(capture_logs(
        log_stream,
        limits.log_bytes,
        Arc::clone(&captured_logs),
    )));

    engine
        .start_container(&names.train_container)
        .await
        .map_err(docker_error(RunStep::StartTrain))?;
    let started_at = Instant::now();
    let timed_out = match tokio::time::timeout(
        limits.wall_clock,
        engine.wait_container(&names.train_container),
    )
    .await
    {
        Ok(wait_result) => {
            wait_result.map_err(docker_error(RunStep::WaitForTrain))?;
            false
        }
        Err(_elapsed) => {
            engine
                .kill_container(&names.train_container)
                .await
                .map_err(docker_error(RunStep::KillTrain))?;
            engine
                .wait_container(&names.train_container)
                .await
                .map_err(docker_error(RunStep::WaitForTrain))?;
            true
        }
    };
    let duration = started_at.elapsed();

    let exit_state = engine
        .inspect_exit(&names.train_container)
        .await
        .map_err(docker_error(RunStep::InspectTrain))?;

    let log_drain = tokio::time::timeout(LOG_DRAIN_GRACE, &mut log_capture.0).await;
    drop(log_capture);
    let (logs, logs_truncated) = {
        let mut captured = captured_logs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if log_drain.is_err() {
            // The stream outlived the container; what it had not delivered is lost.
            captured.incomplete = true;
        }
        let logs_truncated = captured.is_truncated();
        (std::mem::take(&mut captured.bytes), logs_truncated)
    };

    let outputs = download_and_collect(
        engine,
        spec.run_id(),
        &names.output_holder_container,
        collect_limits(limits),
    )
    .await?;
    let output_limit_reached = output_limit_reached(&outputs, limits);

    Ok(RunOutcome {
        exit_code: exit_state.exit_code,
        oom_killed: exit_state.oom_killed,
        timed_out,
        duration,
        logs,
        logs_truncated,
        outputs,
        output_limit_reached,
    })
}

fn add_station_label(labels: &mut Option<HashMap<String, String>>, station_id: &str) {
    labels
        .get_or_insert_with(HashMap::new)
        .insert(LABEL_STATION.to_string(), station_id.to_string());
}

/// Puts a small tmpfs over every path the train image declares as a volume. Docker would
/// otherwise give each one an anonymous, writable, disk-backed volume that no limit caps.
/// Paths the sandbox mounts itself are left to those mounts.
fn cover_image_volumes(
    host_config: &mut HostConfig,
    image_volume_paths: &[String],
    tmp_bytes: u64,
) {
    let sandbox_targets: Vec<String> = host_config
        .mounts
        .iter()
        .flatten()
        .filter_map(|mount| mount.target.clone())
        .chain([
            TMP_MOUNT_PATH.to_string(),
            OUTPUT_MOUNT_PATH.to_string(),
            PARAMS_MOUNT_PATH.to_string(),
        ])
        .collect();
    let tmpfs = host_config.tmpfs.get_or_insert_with(HashMap::new);
    for path in image_volume_paths {
        let path = path.trim_end_matches('/');
        if path.is_empty() || sandbox_targets.iter().any(|target| target == path) {
            continue;
        }
        tmpfs.insert(
            path.to_string(),
            format!("size={tmp_bytes},mode=1777,noexec,nosuid,nodev"),
        );
    }
}

fn collect_limits(limits: &RunLimits) -> CollectLimits {
    CollectLimits {
        // The tmpfs holds whole pages, so it can hold up to a page more than asked for.
        max_total_bytes: round_up_to_page(limits.output_bytes),
        max_entries: limits.output_files,
    }
}

fn round_up_to_page(bytes: u64) -> u64 {
    bytes
        .div_ceil(TMPFS_PAGE_BYTES)
        .saturating_mul(TMPFS_PAGE_BYTES)
}

/// Whether `/output` was full, judged from what was collected: the tmpfs counts whole pages per
/// file, so the pages the collected files occupy tell how close the train came to the cap.
fn output_limit_reached(outputs: &CollectedOutputs, limits: &RunLimits) -> bool {
    if outputs.truncated || outputs.entries_seen >= limits.output_files {
        return true;
    }
    let occupied_bytes: u64 = outputs
        .files
        .iter()
        .map(|file| match &file.kind {
            CollectedKind::Regular { .. } => round_up_to_page(file.size),
            CollectedKind::Symlink { target } if target.len() >= TMPFS_INLINE_SYMLINK_BYTES => {
                TMPFS_PAGE_BYTES
            }
            CollectedKind::Symlink { .. } | CollectedKind::Special { .. } => 0,
        })
        .sum();
    occupied_bytes.saturating_add(OUTPUT_FULL_SLACK_BYTES) >= limits.output_bytes
}

#[derive(Debug, Default)]
struct CapturedLogs {
    bytes: Vec<u8>,
    n_bytes_seen: u64,
    /// The stream failed or was cut before it ended.
    incomplete: bool,
}

impl CapturedLogs {
    fn is_truncated(&self) -> bool {
        self.incomplete || self.n_bytes_seen > self.bytes.len() as u64
    }
}

/// Reads the stream to its end, keeping the first `log_bytes` bytes and counting the rest. It
/// never stops reading early: a train blocks when nobody reads its output.
async fn capture_logs(
    mut log_stream: BoxStream<'static, Result<LogOutput, DockerError>>,
    log_bytes: u64,
    captured: Arc<Mutex<CapturedLogs>>,
) {
    let log_bytes = usize::try_from(log_bytes).unwrap_or(usize::MAX);
    while let Some(item) = log_stream.next().await {
        let mut captured = captured
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match item {
            Ok(log_output) => {
                let message = log_output.into_bytes();
                captured.n_bytes_seen += message.len() as u64;
                let room = log_bytes.saturating_sub(captured.bytes.len());
                let kept = room.min(message.len());
                captured.bytes.extend_from_slice(&message[..kept]);
            }
            Err(error) => {
                tracing::warn!(%error, "the train's output stream failed; its logs are incomplete");
                captured.incomplete = true;
                return;
            }
        }
    }
}

/// Aborts a spawned task when dropped, so a cancelled run leaves no task behind.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Streams the archive of `/output` from `container` into the collector, which runs on a
/// blocking thread and reads as the bytes arrive, so the archive is never held in memory twice.
async fn download_and_collect<E: SandboxEngine>(
    engine: &E,
    run_id: &str,
    container: &str,
    limits: CollectLimits,
) -> Result<CollectedOutputs, SandboxError> {
    const CHANNEL_CHUNKS: usize = 16;
    let (chunk_sender, chunk_receiver) = mpsc::channel::<io::Result<Bytes>>(CHANNEL_CHUNKS);
    let archive_root = OUTPUT_MOUNT_PATH.trim_start_matches('/').to_string();
    let collect_task = tokio::task::spawn_blocking(move || {
        collect::collect_outputs(ChannelReader::new(chunk_receiver), &archive_root, &limits)
    });

    let mut archive_stream = engine.download_archive(container, OUTPUT_MOUNT_PATH);
    let mut download_error = None;
    while let Some(chunk) = archive_stream.next().await {
        match chunk {
            Ok(bytes) => {
                if chunk_sender.send(Ok(bytes)).await.is_err() {
                    // The collector stopped at a cap; the rest of the archive is not needed.
                    break;
                }
            }
            Err(error) => {
                let _ = chunk_sender
                    .send(Err(io::Error::other("the archive download failed")))
                    .await;
                download_error = Some(error);
                break;
            }
        }
    }
    drop(chunk_sender);
    drop(archive_stream);
    let collected = collect_task.await;

    if let Some(source) = download_error {
        return Err(SandboxError::Docker {
            run_id: run_id.to_string(),
            step: RunStep::DownloadOutputs,
            source,
        });
    }
    match collected {
        Ok(Ok(outputs)) => Ok(outputs),
        Ok(Err(source)) => Err(SandboxError::Collect {
            run_id: run_id.to_string(),
            source,
        }),
        Err(join_error) => Err(SandboxError::CollectTask {
            run_id: run_id.to_string(),
            message: join_error.to_string(),
        }),
    }
}

/// A blocking [`Read`] over chunks sent from async code.
struct ChannelReader {
    chunk_receiver: mpsc::Receiver<io::Result<Bytes>>,
    current_chunk: Bytes,
}

impl ChannelReader {
    fn new(chunk_receiver: mpsc::Receiver<io::Result<Bytes>>) -> Self {
        ChannelReader {
            chunk_receiver,
            current_chunk: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        while self.current_chunk.is_empty() {
            match self.chunk_receiver.blocking_recv() {
                Some(Ok(chunk)) => self.current_chunk = chunk,
                Some(Err(error)) => return Err(error),
                None => return Ok(0),
            }
        }
        let n_bytes = buffer.len().min(self.current_chunk.len());
        buffer[..n_bytes].copy_from_slice(&self.current_chunk.split_to(n_bytes));
        Ok(n_bytes)
    }
}

/// Removes both containers, then the volume they mounted. Every removal is attempted even when
/// an earlier one failed; the failures are returned together.
async fn remove_run_resources<E: SandboxEngine>(
    engine: &E,
    names: &RunResourceNames,
) -> Result<(), Vec<String>> {
    let mut failures = Vec::new();
    for container in [&names.train_container, &names.output_holder_container] {
        if let Err(error) = engine.remove_container(container).await {
            failures.push(format!("container {container}: {error}"));
        }
    }
    if let Err(error) = engine.remove_volume(&names.output_volume).await {
        failures.push(format!("volume {}: {error}", names.output_volume));
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures)
    }
}

/// Spawns the removal of a run's resources if the run is dropped before it removed them itself.
struct CleanupOnDrop<'a, E: SandboxEngine> {
    engine: &'a E,
    names: Option<RunResourceNames>,
}

impl<E: SandboxEngine> CleanupOnDrop<'_, E> {
    fn disarm(&mut self) {
        self.names = None;
    }
}

impl<E: SandboxEngine> Drop for CleanupOnDrop<'_, E> {
    fn drop(&mut self) {
        if let Some(names) = self.names.take() {
            self.engine.spawn_cleanup(names);
        }
    }
}

async fn cleanup_stale_resources<E: SandboxEngine>(
    engine: &E,
) -> Result<StaleCleanup, SandboxError> {
    let labels = vec![
        format!("{LABEL_MANAGED}=true"),
        format!("{LABEL_STATION}={}", engine.station_id()),
    ];
    let list_error = |source| SandboxError::ListLeftovers {
        station_id: engine.station_id().to_string(),
        source,
    };
    let mut cleanup = StaleCleanup::default();
    let mut failures = Vec::new();
    for container in engine.list_containers(&labels).await.map_err(list_error)? {
        match engine.remove_container(&container).await {
            Ok(()) => cleanup.removed_containers.push(container),
            Err(error) => failures.push(format!("container {container}: {error}")),
        }
    }
    for volume in engine.list_volumes(&labels).await.map_err(list_error)? {
        match engine.remove_volume(&volume).await {
            Ok(()) => cleanup.removed_volumes.push(volume),
            Err(error) => failures.push(format!("volume {volume}: {error}")),
        }
    }
    if failures.is_empty() {
        Ok(cleanup)
    } else {
        Err(SandboxError::StaleCleanup {
            station_id: engine.station_id().to_string(),
            failures,
        })
    }
}

/// The engine that talks to Docker through bollard.
#[derive(Debug, Clone)]
pub(crate) struct BollardEngine {
    docker: Docker,
    station_id: String,
    /// Built once per sandbox; concurrent runs wait for the same build.
    output_holder_image_id: Arc<OnceCell<String>>,
}

fn status_code(error: &DockerError) -> Option<u16> {
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
            .get_or_try_init(|| find_or_build_output_holder_image(&self.docker))
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

    async fn list_containers(&self, labels: &[String]) -> Result<Vec<String>, DockerError> {
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&label_filters(labels))
            .build();
        let containers = self.docker.list_containers(Some(options)).await?;
        Ok(containers
            .into_iter()
            .filter_map(|container| {
                let names = container.names.unwrap_or_default();
                names
                    .first()
                    .map(|name| name.trim_start_matches('/').to_string())
                    .or(container.id)
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

    fn spawn_cleanup(&self, names: RunResourceNames) {
        let engine = self.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(failures) = remove_run_resources(&engine, &names).await {
                        tracing::warn!(
                            container = names.train_container,
                            failures = failures.join("; "),
                            "could not remove the sandbox of a dropped run"
                        );
                    }
                });
            }
            Err(_) => tracing::warn!(
                container = names.train_container,
                "a run was dropped outside a tokio runtime; its sandbox is left for cleanup_stale"
            ),
        }
    }
}

/// Label on the output holder image carrying [`output_holder_content_digest`], so that an image
/// built by an earlier station process (or another version) is reused only if it is this one.
const LABEL_OUTPUT_HOLDER_CONTENT: &str = "org.pht.output-holder.content";

/// Serializes holder image builds within this process: sandboxes starting together find the
/// image the first one built instead of each building their own.
static OUTPUT_HOLDER_BUILD_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The id of the output holder image: the tagged image if its content label matches, otherwise a
/// fresh build.
async fn find_or_build_output_holder_image(docker: &Docker) -> Result<String, DockerError> {
    let _build_lock = OUTPUT_HOLDER_BUILD_LOCK.lock().await;
    let content_digest = output_holder_content_digest();
    match docker.inspect_image(OUTPUT_HOLDER_IMAGE_TAG).await {
        Ok(image) => {
            let labels = image.config.and_then(|config| config.labels);
            let is_current = labels
                .as_ref()
                .and_then(|labels| labels.get(LABEL_OUTPUT_HOLDER_CONTENT))
                .is_some_and(|digest| *digest == content_digest);
            if let (true, Some(image_id)) = (is_current, image.id) {
                return Ok(image_id);
            }
        }
        Err(error) if status_code(&error) == Some(404) => {}
        Err(error) => return Err(error),
    }
    build_output_holder_image(docker).await
}

/// Builds the output holder image: `FROM scratch` with one program that sleeps forever.
async fn build_output_holder_image(docker: &Docker) -> Result<String, DockerError> {
    let context =
        output_holder_build_context().map_err(|error| DockerError::IOError { err: error })?;
    let options = BuildImageOptionsBuilder::new()
        .dockerfile("Dockerfile")
        .t(OUTPUT_HOLDER_IMAGE_TAG)
        .rm(true)
        .forcerm(true)
        .build();
    let mut build_stream =
        docker.build_image(options, None, Some(bollard::body_full(context.into())));
    let mut image_id = None;
    while let Some(build_info) = build_stream.next().await {
        let build_info = build_info?;
        if let Some(id) = build_info.aux.and_then(|aux| aux.id) {
            image_id = Some(id);
        }
    }
    match image_id {
        Some(image_id) => Ok(image_id),
        // Older engines do not report the id; the tag was just set by this build.
        None => docker
            .inspect_image(OUTPUT_HOLDER_IMAGE_TAG)
            .await?
            .id
            .ok_or_else(|| DockerError::DockerStreamError {
                error: format!("the build of {OUTPUT_HOLDER_IMAGE_TAG} reported no image id"),
            }),
    }
}

const OUTPUT_HOLDER_DOCKERFILE: &str = "FROM scratch\n\
                                        COPY pause /pause\n\
                                        USER 65534:65534\n\
                                        ENTRYPOINT [\"/pause\"]\n";

/// SHA-256 of what the holder image is built from.
fn output_holder_content_digest() -> String {
    let mut hasher = Sha256::new();
    hasher.update(OUTPUT_HOLDER_DOCKERFILE.as_bytes());
    hasher.update(pause_program());
    hex::encode(hasher.finalize())
}

fn output_holder_build_context() -> io::Result<Vec<u8>> {
    let dockerfile = format!(
        "{OUTPUT_HOLDER_DOCKERFILE}LABEL org.pht.role=output-holder-image {LABEL_OUTPUT_HOLDER_CONTENT}={}\n",
        output_holder_content_digest()
    );
    let mut builder = tar::Builder::new(Vec::new());
    for (path, mode, content) in [
        ("Dockerfile", 0o644, dockerfile.into_bytes()),
        ("pause", 0o555, pause_program()),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(mode);
        header.set_mtime(0);
        header.set_cksum();
        builder.append_data(&mut header, path, content.as_slice())?;
    }
    builder.into_inner()
}

/// A complete static x86-64 Linux program, 129 bytes, that calls `pause(2)` forever. It is the
/// output holder's only content: the station cannot pull images and carries no toolchain, so the
/// program is written out here, header field by header field.
fn pause_program() -> Vec<u8> {
    const LOAD_ADDRESS: u64 = 0x40_0000;
    const ELF_HEADER_BYTES: u16 = 64;
    const PROGRAM_HEADER_BYTES: u16 = 56;
    // loop: mov eax, 34 (SYS_pause); syscall; jmp loop
    const CODE: [u8; 9] = [0xb8, 0x22, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xeb, 0xf7];
    let code_offset = u64::from(ELF_HEADER_BYTES + PROGRAM_HEADER_BYTES);
    let file_bytes = code_offset + CODE.len() as u64;

    let mut program = Vec::with_capacity(file_bytes as usize);
    // ELF header: magic, 64-bit, little-endian, version 1, System V ABI, padding.
    program.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    program.extend_from_slice(&[0; 8]);
    program.extend_from_slice(&2u16.to_le_bytes()); // an executable
    program.extend_from_slice(&0x3eu16.to_le_bytes()); // for x86-64
    program.extend_from_slice(&1u32.to_le_bytes()); // ELF version
    program.extend_from_slice(&(LOAD_ADDRESS + code_offset).to_le_bytes()); // entry point
    program.extend_from_slice(&u64::from(ELF_HEADER_BYTES).to_le_bytes()); // program headers at
    program.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    program.extend_from_slice(&0u32.to_le_bytes()); // no flags
    program.extend_from_slice(&ELF_HEADER_BYTES.to_le_bytes());
    program.extend_from_slice(&PROGRAM_HEADER_BYTES.to_le_bytes());
    program.extend_from_slice(&1u16.to_le_bytes()); // one program header
    program.extend_from_slice(&[0; 6]); // section header size, count and name index
                                        // Program header: load the whole file, readable and executable, at LOAD_ADDRESS.
    program.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    program.extend_from_slice(&5u32.to_le_bytes()); // PF_R | PF_X
    program.extend_from_slice(&0u64.to_le_bytes()); // from file offset 0
    program.extend_from_slice(&LOAD_ADDRESS.to_le_bytes()); // virtual address
    program.extend_from_slice(&LOAD_ADDRESS.to_le_bytes()); // physical address
    program.extend_from_slice(&file_bytes.to_le_bytes()); // bytes in the file
    program.extend_from_slice(&file_bytes.to_le_bytes()); // bytes in memory
    program.extend_from_slice(&0x1000u64.to_le_bytes()); // page alignment
    program.extend_from_slice(&CODE);
    program
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::CollectedFile;
    use expect_test::{expect, Expect};
    use std::sync::atomic::{AtomicBool, Ordering};

    const IMAGE_ID: &str =
        "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn limits() -> RunLimits {
        RunLimits {
            nano_cpus: 1_000_000_000,
            memory_bytes: 64 * 1024 * 1024,
            pids: 64,
            wall_clock: Duration::from_secs(30),
            tmp_bytes: 1024 * 1024,
            output_bytes: 64 * 1024,
            output_files: 100,
            log_bytes: 16,
        }
    }

    fn spec_with(limits: RunLimits) -> RunSpec {
        RunSpec::new("r1", IMAGE_ID, limits).expect("valid spec")
    }

    /// An archive of /output holding `result.txt`.
    fn output_archive() -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_size(0);
        header.set_mode(0o700);
        header.set_cksum();
        builder
            .append_data(&mut header, "output/", std::io::empty())
            .expect("in-memory tar");
        let content = b"rows=3\n";
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, "output/result.txt", &content[..])
            .expect("in-memory tar");
        builder.into_inner().expect("in-memory tar")
    }

    /// Records every call as one line and fails the call whose line equals `fail_call`.
    #[derive(Default)]
    struct FakeEngine {
        calls: Mutex<Vec<String>>,
        fail_call: Option<String>,
        /// The train never exits on its own; only a kill ends it.
        train_hangs: bool,
        killed: AtomicBool,
        image_volume_paths: Vec<String>,
        created_bodies: Mutex<Vec<ContainerCreateBody>>,
    }

    impl FakeEngine {
        fn failing_at(call: &str) -> Self {
            FakeEngine {
                fail_call: Some(call.to_string()),
                ..Default::default()
            }
        }

        fn record(&self, call: String) -> Result<(), DockerError> {
            let fails = self.fail_call.as_deref() == Some(call.as_str());
            self.calls.lock().expect("not poisoned").push(call);
            if fails {
                Err(DockerError::DockerResponseServerError {
                    status_code: 500,
                    message: "injected failure".to_string(),
                })
            } else {
                Ok(())
            }
        }

        fn calls(&self) -> Vec<String> {
            self.calls.lock().expect("not poisoned").clone()
        }
    }

    impl SandboxEngine for FakeEngine {
        fn station_id(&self) -> &str {
            "test-station"
        }

        async fn output_holder_image(&self) -> Result<String, DockerError> {
            self.record("output_holder_image".to_string())?;
            Ok("sha256:holder".to_string())
        }

        async fn image_volume_paths(&self, image_id: &str) -> Result<Vec<String>, DockerError> {
            self.record(format!("image_volume_paths {image_id}"))?;
            Ok(self.image_volume_paths.clone())
        }

        async fn create_volume(&self, request: VolumeCreateRequest) -> Result<(), DockerError> {
            self.record(format!(
                "create_volume {}",
                request.name.unwrap_or_default()
            ))
        }

        async fn create_container(
            &self,
            name: &str,
            body: ContainerCreateBody,
        ) -> Result<(), DockerError> {
            self.created_bodies.lock().expect("not poisoned").push(body);
            self.record(format!("create_container {name}"))
        }

        async fn attach_output(
            &self,
            name: &str,
        ) -> Result<BoxStream<'static, Result<LogOutput, DockerError>>, DockerError> {
            self.record(format!("attach_output {name}"))?;
            let chunks = vec![
                Ok(LogOutput::StdOut {
                    message: Bytes::from_static(b"0123456789"),
                }),
                Ok(LogOutput::StdErr {
                    message: Bytes::from_static(b"abcdefghij"),
                }),
            ];
            Ok(futures_util::stream::iter(chunks).boxed())
        }

        async fn start_container(&self, name: &str) -> Result<(), DockerError> {
            self.record(format!("start_container {name}"))
        }

        async fn wait_container(&self, name: &str) -> Result<(), DockerError> {
            self.record(format!("wait_container {name}"))?;
            if self.train_hangs && !self.killed.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            Ok(())
        }

        async fn kill_container(&self, name: &str) -> Result<(), DockerError> {
            self.killed.store(true, Ordering::SeqCst);
            self.record(format!("kill_container {name}"))
        }

        async fn inspect_exit(&self, name: &str) -> Result<ExitState, DockerError> {
            self.record(format!("inspect_exit {name}"))?;
            let killed = self.killed.load(Ordering::SeqCst);
            Ok(ExitState {
                exit_code: Some(if killed { 137 } else { 0 }),
                oom_killed: false,
            })
        }

        fn download_archive(
            &self,
            name: &str,
            path: &str,
        ) -> BoxStream<'static, Result<Bytes, DockerError>> {
            match self.record(format!("download_archive {name} {path}")) {
                Ok(()) => {
                    let chunks: Vec<Result<Bytes, DockerError>> = output_archive()
                        .chunks(700)
                        .map(|chunk| Ok(Bytes::copy_from_slice(chunk)))
                        .collect();
                    futures_util::stream::iter(chunks).boxed()
                }
                Err(error) => futures_util::stream::iter(vec![Err(error)]).boxed(),
            }
        }

        async fn remove_container(&self, name: &str) -> Result<(), DockerError> {
            self.record(format!("remove_container {name}"))
        }

        async fn remove_volume(&self, name: &str) -> Result<(), DockerError> {
            self.record(format!("remove_volume {name}"))
        }

        async fn list_containers(&self, labels: &[String]) -> Result<Vec<String>, DockerError> {
            self.record(format!("list_containers {}", labels.join(",")))?;
            Ok(vec![
                "pht-run-old".to_string(),
                "pht-run-old-output".to_string(),
            ])
        }

        async fn list_volumes(&self, labels: &[String]) -> Result<Vec<String>, DockerError> {
            self.record(format!("list_volumes {}", labels.join(",")))?;
            Ok(vec!["pht-run-old-output".to_string()])
        }

        fn spawn_cleanup(&self, names: RunResourceNames) {
            let _ = self.record(format!("spawn_cleanup {}", names.train_container));
        }
    }

    const REMOVALS: [&str; 3] = [
        "remove_container pht-run-r1",
        "remove_container pht-run-r1-output",
        "remove_volume pht-run-r1-output",
    ];

    #[tokio::test]
    async fn a_successful_run_goes_through_every_step_then_removes_everything() {
        let engine = FakeEngine::default();
        let outcome = run_in_sandbox(&engine, &spec_with(limits()))
            .await
            .expect("the fake engine does not fail");
        expect![[r#"
            output_holder_image
            image_volume_paths sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
            create_volume pht-run-r1-output
            create_container pht-run-r1-output
            start_container pht-run-r1-output
            create_container pht-run-r1
            attach_output pht-run-r1
            start_container pht-run-r1
            wait_container pht-run-r1
            inspect_exit pht-run-r1
            download_archive pht-run-r1-output /output
            remove_container pht-run-r1
            remove_container pht-run-r1-output
            remove_volume pht-run-r1-output"#]].assert_eq(&engine.calls().join("\n"));
        assert_eq!(outcome.exit_code, Some(0));
        assert!(!outcome.timed_out);
        assert_eq!(
            outcome.outputs.regular_file("result.txt"),
            Some(&b"rows=3\n"[..])
        );
        assert!(!outcome.output_limit_reached, "{outcome:?}");
    }

    #[tokio::test]
    async fn every_failing_step_still_removes_every_resource() {
        let successful_engine = FakeEngine::default();
        run_in_sandbox(&successful_engine, &spec_with(limits()))
            .await
            .expect("the fake engine does not fail");
        let steps: Vec<String> = successful_engine
            .calls()
            .into_iter()
            .filter(|call| !call.starts_with("remove_"))
            .collect();
        assert!(steps.len() >= 10, "{steps:?}");
        for failing_step in steps {
            let engine = FakeEngine::failing_at(&failing_step);
            let error = run_in_sandbox(&engine, &spec_with(limits()))
                .await
                .expect_err("an injected failure fails the run");
            assert!(
                error.to_string().contains("injected failure"),
                "the error of {failing_step:?} carries the cause: {error}"
            );
            let calls = engine.calls();
            // Starting the output holder is retried; the last failed attempt counts.
            let failure_idx = calls
                .iter()
                .rposition(|call| *call == failing_step)
                .expect("the failing call was made");
            let n_attempts = calls.iter().filter(|call| **call == failing_step).count();
            let expected_attempts = if failing_step.ends_with("-output")
                && failing_step.starts_with("start_container")
            {
                HOLDER_START_ATTEMPTS as usize
            } else {
                1
            };
            assert_eq!(
                n_attempts, expected_attempts,
                "{failing_step:?} was tried {n_attempts} times"
            );
            let calls_after_failure = &calls[failure_idx + 1..];
            assert_eq!(
                calls_after_failure, REMOVALS,
                "after {failing_step:?} fails, only the removals follow"
            );
        }
    }

    #[tokio::test]
    async fn a_failing_removal_after_a_successful_run_is_an_error_and_the_others_still_happen() {
        let engine = FakeEngine::failing_at("remove_container pht-run-r1");
        let error = run_in_sandbox(&engine, &spec_with(limits()))
            .await
            .expect_err("a leftover container is an error");
        expect!["could not remove the sandbox of run r1 (container pht-run-r1: Docker responded with status code 500: injected failure); remove the leftovers with `docker rm -f` and `docker volume rm`, or call cleanup_stale"].assert_eq(&error.to_string());
        let calls = engine.calls();
        assert!(calls.ends_with(&REMOVALS.map(str::to_string)), "{calls:?}");
    }

    #[tokio::test]
    async fn a_train_past_its_wall_clock_is_killed_and_removed() {
        let engine = FakeEngine {
            train_hangs: true,
            ..Default::default()
        };
        let mut run_limits = limits();
        run_limits.wall_clock = Duration::from_millis(50);
        let outcome = run_in_sandbox(&engine, &spec_with(run_limits))
            .await
            .expect("a timeout is an outcome, not an error");
        assert!(outcome.timed_out);
        assert_eq!(outcome.exit_code, Some(137));
        let calls = engine.calls();
        assert!(
            calls.contains(&"kill_container pht-run-r1".to_string()),
            "{calls:?}"
        );
        assert!(calls.ends_with(&REMOVALS.map(str::to_string)), "{calls:?}");
    }

    #[tokio::test]
    async fn a_dropped_run_spawns_its_cleanup() {
        let engine = FakeEngine {
            train_hangs: true,
            ..Default::default()
        };
        let mut run_limits = limits();
        run_limits.wall_clock = Duration::from_secs(3600);
        let spec = spec_with(run_limits);
        let dropped =
            tokio::time::timeout(Duration::from_millis(50), run_in_sandbox(&engine, &spec)).await;
        assert!(dropped.is_err(), "the run was still waiting");
        let calls = engine.calls();
        assert_eq!(
            calls.last().map(String::as_str),
            Some("spawn_cleanup pht-run-r1"),
            "{calls:?}"
        );
    }

    #[tokio::test]
    async fn logs_are_capped_and_marked_truncated() {
        let engine = FakeEngine::default();
        let outcome = run_in_sandbox(&engine, &spec_with(limits()))
            .await
            .expect("the fake engine does not fail");
        assert_eq!(outcome.logs, b"0123456789abcdef");
        assert!(outcome.logs_truncated);

        let mut generous_limits = limits();
        generous_limits.log_bytes = 1024;
        let outcome = run_in_sandbox(&FakeEngine::default(), &spec_with(generous_limits))
            .await
            .expect("the fake engine does not fail");
        assert_eq!(outcome.logs, b"0123456789abcdefghij");
        assert!(!outcome.logs_truncated, "{outcome:?}");
    }

    #[tokio::test]
    async fn every_resource_carries_the_station_label() {
        let engine = FakeEngine::default();
        run_in_sandbox(&engine, &spec_with(limits()))
            .await
            .expect("the fake engine does not fail");
        let bodies = engine.created_bodies.lock().expect("not poisoned");
        assert_eq!(bodies.len(), 2);
        for body in bodies.iter() {
            let labels = body.labels.as_ref().expect("labels are always set");
            assert_eq!(labels[LABEL_STATION], "test-station");
            assert_eq!(labels[LABEL_MANAGED], "true");
        }
    }

    #[tokio::test]
    async fn image_volumes_are_covered_by_a_capped_tmpfs() {
        let engine = FakeEngine {
            image_volume_paths: vec![
                "/scratch".to_string(),
                "/output".to_string(),
                "/tmp/".to_string(),
            ],
            ..Default::default()
        };
        run_in_sandbox(&engine, &spec_with(limits()))
            .await
            .expect("the fake engine does not fail");
        let bodies = engine.created_bodies.lock().expect("not poisoned");
        let train_body = bodies.last().expect("the train was created last");
        let tmpfs = train_body
            .host_config
            .as_ref()
            .and_then(|host_config| host_config.tmpfs.as_ref())
            .expect("tmpfs is always set");
        let mut tmpfs: Vec<_> = tmpfs.iter().collect();
        tmpfs.sort();
        expect![[r#"
            [
                (
                    "/scratch",
                    "size=1048576,mode=1777,noexec,nosuid,nodev",
                ),
                (
                    "/tmp",
                    "size=1048576,mode=1777,noexec,nosuid,nodev",
                ),
            ]"#]]
        .assert_eq(&format!("{tmpfs:#?}"));
    }

    #[tokio::test]
    async fn cleanup_stale_removes_this_stations_leftovers() {
        let engine = FakeEngine::default();
        let cleanup = cleanup_stale_resources(&engine)
            .await
            .expect("the fake engine does not fail");
        expect![[r#"
            list_containers org.pht.managed=true,org.pht.station=test-station
            remove_container pht-run-old
            remove_container pht-run-old-output
            list_volumes org.pht.managed=true,org.pht.station=test-station
            remove_volume pht-run-old-output"#]]
        .assert_eq(&engine.calls().join("\n"));
        assert_eq!(cleanup.removed_containers.len(), 2);
        assert_eq!(cleanup.removed_volumes.len(), 1);
    }

    fn regular(path: &str, size: usize) -> CollectedFile {
        CollectedFile {
            path: path.to_string(),
            kind: CollectedKind::Regular {
                bytes: vec![b'x'; size],
            },
            size: size as u64,
            sha256: String::new(),
        }
    }

    fn check_limit(files: Vec<CollectedFile>, entries_seen: u64, expected: Expect) {
        let outputs = CollectedOutputs {
            total_bytes: files.iter().map(|file| file.size).sum(),
            files,
            entries_seen,
            ..Default::default()
        };
        // output_bytes = 64 KiB, output_files = 100
        expected.assert_eq(&output_limit_reached(&outputs, &limits()).to_string());
    }

    #[test]
    fn output_limit_is_judged_by_the_pages_the_files_occupy() {
        check_limit(vec![regular("small", 10)], 1, expect!["false"]);
        check_limit(vec![regular("full", 64 * 1024)], 1, expect!["true"]);
        // 15 one-byte files occupy 15 pages: 60 KiB, within two pages of the cap.
        let many_small: Vec<_> = (0..15).map(|idx| regular(&idx.to_string(), 1)).collect();
        check_limit(many_small, 15, expect!["true"]);
        check_limit(vec![regular("half", 32 * 1024)], 1, expect!["false"]);
        check_limit(vec![regular("one", 1)], 100, expect!["true"]);
    }

    #[test]
    fn the_output_holder_image_is_built_from_scratch_and_labelled_with_its_content() {
        let context = output_holder_build_context().expect("in-memory tar");
        let mut archive = tar::Archive::new(context.as_slice());
        let mut listing = Vec::new();
        for entry in archive.entries().expect("a tar archive") {
            let mut entry = entry.expect("a tar entry");
            let path = entry.path().expect("a path").display().to_string();
            let mode = entry.header().mode().expect("a mode");
            let mut content = Vec::new();
            entry.read_to_end(&mut content).expect("readable");
            let shown = if path == "Dockerfile" {
                String::from_utf8(content).expect("text")
            } else {
                format!("{} bytes\n", content.len())
            };
            listing.push(format!("{path} {mode:o}\n{shown}"));
        }
        expect![[r#"
            Dockerfile 644
            FROM scratch
            COPY pause /pause
            USER 65534:65534
            ENTRYPOINT ["/pause"]
            LABEL org.pht.role=output-holder-image org.pht.output-holder.content=c1e4d94ae338ec606edb9bcc8867137ddad8b2a93e2be8a35ca671802b8912bd

            pause 555
            129 bytes
        "#]].assert_eq(&listing.join("\n"));
    }

    #[test]
    fn the_pause_program_is_the_known_129_bytes() {
        expect!["7f454c4602010100000000000000000002003e0001000000780040000000000040000000000000000000000000000000000000004000380001000000000000000100000005000000000000000000000000004000000000000000400000000000810000000000000081000000000000000010000000000000b8220000000f05ebf7"].assert_eq(&hex::encode(pause_program()));
    }
}
