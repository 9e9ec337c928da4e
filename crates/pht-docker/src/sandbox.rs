//! Running one train in the sandbox, and removing every trace of the run afterwards.
//!
//! Owns: the life cycle of a run's Docker resources. [`DockerSandbox::run`] gives the run its
//! `/output` (a capped tmpfs, see below), creates the train container, streams its stdout and
//! stderr (capped), starts it, waits for it with the wall-clock limit (then kills it), inspects
//! how it ended, collects `/output`, and then removes the container and the output tmpfs on
//! every path: success, failure, timeout, an error in the middle, and the caller dropping the
//! run. [`DockerSandbox::cleanup_stale`] removes what a crashed station left behind.
//!
//! `/output` comes one of two ways. With [`DockerSandbox::with_host_outputs`] it is a tmpfs this
//! process mounts on the host and bind-mounts ([`crate::host_output`]): one `mount(2)`, read back
//! from the host. Otherwise it is a tmpfs volume, which Docker unmounts, contents and all, when
//! its last container stops; a tiny holder container keeps it mounted past the train's exit, and
//! it is read through the archive API.
//!
//! Warm output slots (volumes only): creating and starting the holder costs about as much as starting the train
//! itself, so a sandbox with [`DockerSandbox::with_warm_output_slots`] keeps spare slots (an empty
//! tmpfs volume and a started holder that has never been given to a train) ready. A run claims a
//! spare by renaming its holder to the run's holder name (atomic in Docker, so two station
//! processes never share one), and the sandbox prepares the next spare in the background while
//! the train runs. A spare is claimed only when its [`OutputSlotSpec::key`] matches the run's:
//! same size and file caps, same user, same holder image. Spares outlive the process that made
//! them, so the next `pht-station exec` finds one; [`DockerSandbox::remove_spares`] removes them.
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
use tokio::task::JoinHandle;

use crate::collect::{self, CollectError, CollectLimits, CollectedKind, CollectedOutputs};
use crate::host_output::{self, HostOutputs};
use crate::spec::{
    self, OutputMount, OutputSlotSpec, RunLimits, RunResourceNames, RunSpec, LABEL_MANAGED,
    LABEL_OUTPUT_SLOT, LABEL_OUTPUT_VOLUME, LABEL_ROLE, OUTPUT_MOUNT_PATH, PARAMS_MOUNT_PATH,
    ROLE_OUTPUT_HOLDER, ROLE_OUTPUT_VOLUME, TMP_MOUNT_PATH,
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
/// Name prefix of a spare output slot's holder and volume. A claimed spare holder is renamed to
/// its run's holder name, so a holder with this prefix has never been given to a train.
const SPARE_NAME_PREFIX: &str = "pht-spare-";

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
    CheckOutputHolder,
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
            RunStep::CheckOutputHolder => "check that the output holder still runs",
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
    #[error("the output holder of run {run_id} stopped while the train ran, so /output was unmounted and the outputs are lost; it was removed by hand or by another station process's start-up cleanup: run the train again, and start the daemon only while no `exec` is running")]
    OutputHolderStopped { run_id: String },
    #[error("could not {action} of run {run_id}: {source}; if this station cannot mount, set `docker.output_storage: volume` in its configuration")]
    HostOutput {
        run_id: String,
        action: &'static str,
        source: io::Error,
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

/// What [`DockerSandbox::cleanup_stale`] or [`DockerSandbox::remove_spares`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaleCleanup {
    pub removed_containers: Vec<String>,
    pub removed_volumes: Vec<String>,
    /// Spare output slots (holders) left in place: empty, never given to a train, reusable.
    pub kept_spares: Vec<String>,
    /// Host output directories unmounted and removed.
    pub removed_output_dirs: Vec<String>,
}

/// Runs trains in Docker with the sandbox defaults of `DESIGN.md`.
#[derive(Debug, Clone)]
pub struct DockerSandbox {
    engine: BollardEngine,
    /// How many spare output slots to keep ready; 0 creates every slot on the run's own path.
    warm_output_slots: usize,
    /// Spare slots being prepared in the background; [`DockerSandbox::settle`] waits for them.
    background: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// One preparation at a time per sandbox, so concurrent runs do not overshoot the target.
    replenish_lock: Arc<tokio::sync::Mutex<()>>,
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
                host_outputs: None,
            },
            warm_output_slots: 0,
            background: Arc::new(Mutex::new(Vec::new())),
            replenish_lock: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Gives each run's `/output` as a tmpfs mounted under `outputs`' root and bind-mounted
    /// into the train, instead of a volume and holder; spare slots are then never needed.
    pub fn with_host_outputs(mut self, outputs: HostOutputs) -> Self {
        self.engine.host_outputs = Some(outputs);
        self
    }

    /// Keeps `count` spare output slots ready for the next runs (see the module documentation).
    /// Each is an empty tmpfs volume and a paused 129-byte holder container; they outlive this
    /// process until [`remove_spares`](Self::remove_spares).
    pub fn with_warm_output_slots(mut self, count: usize) -> Self {
        self.warm_output_slots = count;
        self
    }

    /// Waits until the spare slots being prepared in the background are ready (or failed; a
    /// failure is logged and the next run creates its slot itself). Call it before the process
    /// exits, so no spare is left half made.
    pub async fn settle(&self) {
        loop {
            let pending = std::mem::take(
                &mut *self
                    .background
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
            );
            if pending.is_empty() {
                return;
            }
            for task in pending {
                let _ = task.await;
            }
        }
    }

    /// Removes this station's spare output slots (after [`settle`](Self::settle)).
    pub async fn remove_spares(&self) -> Result<StaleCleanup, SandboxError> {
        self.settle().await;
        remove_spare_slots(&self.engine).await
    }

    fn spawn_replenish(&self, template: SpareTemplate) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let engine = self.engine.clone();
        let target = self.warm_output_slots;
        let lock = Arc::clone(&self.replenish_lock);
        let task = runtime.spawn(async move {
            let _one_at_a_time = lock.lock().await;
            if let Err(error) = replenish_spares(&engine, &template, target).await {
                tracing::warn!(%error, "could not prepare a spare output slot; the next run creates its own");
            }
        });
        let mut background = self
            .background
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        background.retain(|task| !task.is_finished());
        background.push(task);
    }

    pub fn station_id(&self) -> &str {
        &self.engine.station_id
    }

    /// Runs `spec` to completion and removes its containers and volume, whatever happens.
    ///
    /// If the returned future is dropped before it completes, the removal is spawned onto the
    /// current tokio runtime instead.
    pub async fn run(&self, spec: &RunSpec) -> Result<RunOutcome, SandboxError> {
        let slots = WarmSlots {
            // Host outputs need no slot at all.
            target: if self.engine.host_outputs.is_some() {
                0
            } else {
                self.warm_output_slots
            },
            on_claimed: &|template| self.spawn_replenish(template),
        };
        run_in_sandbox(&self.engine, spec, &slots).await
    }

    /// Removes every container and volume of this station that a previous station process left
    /// behind (after a crash), except spare output slots that are still ready for use. Call it
    /// when the station starts, before it runs anything: it also removes the resources of runs
    /// in progress.
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
    /// Unmounts and removes every host output directory (what a crashed station left):
    /// (released, failures).
    fn release_all_host_outputs(&self) -> (Vec<String>, Vec<String>);
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
    fn spawn_cleanup(&self, names: RunResourceNames);
}

/// A container as listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ListedContainer {
    pub name: String,
    pub running: bool,
    pub labels: HashMap<String, String>,
}

impl ListedContainer {
    /// The volume this container holds if it is a spare output slot that is ready for use:
    /// running, never renamed to a run, and labelled with its slot and volume.
    fn ready_spare_volume(&self) -> Option<&str> {
        let is_spare = self.running
            && self.name.starts_with(SPARE_NAME_PREFIX)
            && self.labels.contains_key(LABEL_OUTPUT_SLOT);
        is_spare
            .then(|| self.labels.get(LABEL_OUTPUT_VOLUME).map(String::as_str))
            .flatten()
    }
}

/// What a run needs to know about spare output slots.
pub(crate) struct WarmSlots<'a> {
    /// Spares to keep ready; 0 disables them.
    pub target: usize,
    /// Called once the run has its slot, with what the next spare must be made of.
    pub on_claimed: &'a (dyn Fn(SpareTemplate) + Send + Sync),
}

impl WarmSlots<'_> {
    #[cfg(test)]
    const NONE: WarmSlots<'static> = WarmSlots {
        target: 0,
        on_claimed: &|_| {},
    };
}

/// What a spare output slot is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SpareTemplate {
    pub slot: OutputSlotSpec,
    pub holder_image_id: String,
}

impl SpareTemplate {
    fn key(&self) -> String {
        self.slot.key(&self.holder_image_id)
    }
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
    slots: &WarmSlots<'_>,
) -> Result<RunOutcome, SandboxError> {
    let mut cleanup_guard = CleanupOnDrop {
        engine,
        names: Some(spec.resource_names()),
    };
    let names = cleanup_guard
        .names
        .as_mut()
        .expect("the guard is armed until the run ends");
    let run_result = run_steps(engine, spec, names, slots).await;
    let names = cleanup_guard.disarm();
    let cleanup_result = remove_run_resources(engine, &names).await;
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

/// The run's steps. `names` is what the cleanup removes; claiming a spare slot changes the
/// volume in it.
async fn run_steps<E: SandboxEngine>(
    engine: &E,
    spec: &RunSpec,
    names: &mut RunResourceNames,
    slots: &WarmSlots<'_>,
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

    names.host_output_dir = engine.host_output_dir(spec.run_id());
    let image_volume_paths = engine
        .image_volume_paths(spec.image_id())
        .await
        .map_err(docker_error(RunStep::InspectTrainImage))?;
    match &names.host_output_dir {
        Some(dir) => engine
            .mount_host_output(dir, &spec.output_slot())
            .map_err(|source| SandboxError::HostOutput {
                run_id: spec.run_id().to_string(),
                action: "mount the tmpfs for /output",
                source,
            })?,
        None => prepare_output_slot(engine, spec, names, slots).await?,
    }

    let output_mount = match &names.host_output_dir {
        Some(dir) => OutputMount::HostDir(dir),
        None => OutputMount::Volume(&names.output_volume),
    };
    let mut train_body = spec::container_body(spec, output_mount);
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
    if names.host_output_dir.is_none() {
        // The holder was started before the train and nothing restarts it: running now means
        // the volume stayed mounted all along. Stopped, Docker would remount an empty tmpfs for
        // the download, and the run would look like it wrote nothing.
        let holder_running = engine
            .is_running(&names.output_holder_container)
            .await
            .map_err(docker_error(RunStep::CheckOutputHolder))?;
        if !holder_running {
            return Err(SandboxError::OutputHolderStopped {
                run_id: spec.run_id().to_string(),
            });
        }
    }

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

    let outputs = match &names.host_output_dir {
        Some(dir) => engine
            .collect_host_output(dir, collect_limits(limits))
            .await
            .map_err(|source| SandboxError::Collect {
                run_id: spec.run_id().to_string(),
                source,
            })?,
        None => {
            download_and_collect(
                engine,
                spec.run_id(),
                &names.output_holder_container,
                collect_limits(limits),
            )
            .await?
        }
    };
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

/// Gives the run an output volume kept mounted by a started holder: a spare claimed, or one
/// made now; then asks for the next spare.
async fn prepare_output_slot<E: SandboxEngine>(
    engine: &E,
    spec: &RunSpec,
    names: &mut RunResourceNames,
    slots: &WarmSlots<'_>,
) -> Result<(), SandboxError> {
    let docker_error = |step: RunStep, source: DockerError| SandboxError::Docker {
        run_id: spec.run_id().to_string(),
        step,
        source,
    };
    let holder_image_id = engine
        .output_holder_image()
        .await
        .map_err(|source| docker_error(RunStep::BuildOutputHolderImage, source))?;
    let template = SpareTemplate {
        slot: spec.output_slot(),
        holder_image_id,
    };
    let claimed_volume = if slots.target > 0 {
        claim_spare(engine, &template, &names.output_holder_container).await
    } else {
        None
    };
    match claimed_volume {
        Some(volume) => names.output_volume = volume,
        None => {
            create_output_slot(
                engine,
                &template,
                &names.output_holder_container,
                &names.output_volume,
                |role| {
                    let mut labels = spec.labels();
                    labels.insert(LABEL_ROLE.to_string(), role.to_string());
                    labels.into_iter().collect()
                },
            )
            .await
            .map_err(|(step, source)| docker_error(step, source))?;
        }
    }
    if slots.target > 0 {
        (slots.on_claimed)(template);
    }
    Ok(())
}

/// Creates an output slot: the tmpfs volume, then the holder that keeps it mounted, started.
/// `labels` gives the labels for a role ([`ROLE_OUTPUT_VOLUME`] or [`ROLE_OUTPUT_HOLDER`]); the
/// station label is added here. On failure, says at which step; the caller removes what was made.
async fn create_output_slot<E: SandboxEngine>(
    engine: &E,
    template: &SpareTemplate,
    holder: &str,
    volume: &str,
    labels: impl Fn(&str) -> HashMap<String, String>,
) -> Result<(), (RunStep, DockerError)> {
    let mut volume_request =
        spec::output_slot_volume_request(&template.slot, volume, labels(ROLE_OUTPUT_VOLUME));
    add_station_label(&mut volume_request.labels, engine.station_id());
    engine
        .create_volume(volume_request)
        .await
        .map_err(|error| (RunStep::CreateOutputVolume, error))?;

    let mut holder_body = spec::output_slot_holder_body(
        &template.slot,
        &template.holder_image_id,
        volume,
        labels(ROLE_OUTPUT_HOLDER),
    );
    add_station_label(&mut holder_body.labels, engine.station_id());
    engine
        .create_container(holder, holder_body)
        .await
        .map_err(|error| (RunStep::CreateOutputHolder, error))?;
    // Docker 20.10 occasionally answers "cannot start a stopped process" when many containers
    // start at once on a loaded host; the holder does nothing but wait, so starting it again is
    // safe. The train itself is never retried.
    let mut holder_attempt = 1;
    loop {
        match engine.start_container(holder).await {
            Ok(()) => return Ok(()),
            Err(error) if holder_attempt < HOLDER_START_ATTEMPTS => {
                tracing::warn!(holder, attempt = holder_attempt, %error, "starting the output holder failed; trying again");
                tokio::time::sleep(VOLUME_REMOVAL_BACKOFF * holder_attempt).await;
                holder_attempt += 1;
            }
            Err(error) => return Err((RunStep::StartOutputHolder, error)),
        }
    }
}

/// The labels that find this station's spare slots made from `template`.
fn spare_labels(engine: &impl SandboxEngine, template: &SpareTemplate) -> Vec<String> {
    vec![
        format!("{LABEL_MANAGED}=true"),
        format!("{LABEL_STATION}={}", engine.station_id()),
        format!("{LABEL_OUTPUT_SLOT}={}", template.key()),
    ]
}

/// Claims a ready spare slot made from `template` by renaming its holder to `run_holder`, and
/// returns the volume it holds. `None` when there is none (or Docker failed: the run then creates
/// its own slot, so a claim never fails a run).
async fn claim_spare<E: SandboxEngine>(
    engine: &E,
    template: &SpareTemplate,
    run_holder: &str,
) -> Option<String> {
    let spares = match engine
        .list_containers(&spare_labels(engine, template))
        .await
    {
        Ok(spares) => spares,
        Err(error) => {
            tracing::warn!(%error, "could not list spare output slots; creating one for this run");
            return None;
        }
    };
    for spare in &spares {
        let Some(volume) = spare.ready_spare_volume() else {
            continue;
        };
        match engine.rename_container(&spare.name, run_holder).await {
            Ok(()) => return Some(volume.to_string()),
            // Another station process claimed it (or removed it) first.
            Err(error) if matches!(status_code(&error), Some(404 | 409)) => continue,
            Err(error) => {
                tracing::warn!(spare = spare.name, %error, "could not claim a spare output slot");
                continue;
            }
        }
    }
    None
}

/// Prepares spare slots made from `template` until `target` are ready.
async fn replenish_spares<E: SandboxEngine>(
    engine: &E,
    template: &SpareTemplate,
    target: usize,
) -> Result<(), String> {
    let ready = engine
        .list_containers(&spare_labels(engine, template))
        .await
        .map_err(|error| format!("listing spare output slots: {error}"))?
        .iter()
        .filter(|listed| listed.ready_spare_volume().is_some())
        .count();
    let key = template.key();
    for _ in ready..target {
        let name = format!(
            "{SPARE_NAME_PREFIX}{}-{}",
            engine.station_id(),
            uuid::Uuid::new_v4().simple()
        );
        let labels = |role: &str| {
            let mut labels = HashMap::from([
                (LABEL_MANAGED.to_string(), "true".to_string()),
                (LABEL_ROLE.to_string(), role.to_string()),
                (LABEL_OUTPUT_SLOT.to_string(), key.clone()),
            ]);
            if role == ROLE_OUTPUT_HOLDER {
                labels.insert(LABEL_OUTPUT_VOLUME.to_string(), name.clone());
            }
            labels
        };
        if let Err((step, error)) = create_output_slot(engine, template, &name, &name, labels).await
        {
            let _ = engine.remove_container(&name).await;
            let _ = engine.remove_volume(&name).await;
            return Err(format!("could not {step} of a spare slot: {error}"));
        }
    }
    Ok(())
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
    if let Some(dir) = &names.host_output_dir {
        if let Err(error) = engine.remove_container(&names.train_container).await {
            failures.push(format!("container {}: {error}", names.train_container));
        }
        // Unmounted only once the train's container, which bind-mounts it, is gone.
        if let Err(error) = engine.release_host_output(dir) {
            failures.push(format!("output directory {dir}: {error}"));
        }
        return if failures.is_empty() {
            Ok(())
        } else {
            Err(failures)
        };
    }
    // The two containers go at once; the volume only when neither holds it any more.
    let (train_removal, holder_removal) = tokio::join!(
        engine.remove_container(&names.train_container),
        engine.remove_container(&names.output_holder_container)
    );
    for (container, removal) in [
        (&names.train_container, train_removal),
        (&names.output_holder_container, holder_removal),
    ] {
        if let Err(error) = removal {
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
    /// The names to remove; the caller removes them now.
    fn disarm(&mut self) -> RunResourceNames {
        self.names
            .take()
            .expect("a guard is disarmed once, at the end of its run")
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
    let mut cleanup = remove_station_resources(engine, |_| true, true).await?;
    // After the containers: a leftover train container may still bind-mount its directory.
    let (released, failures) = engine.release_all_host_outputs();
    if !failures.is_empty() {
        return Err(SandboxError::StaleCleanup {
            station_id: engine.station_id().to_string(),
            failures,
        });
    }
    cleanup.removed_output_dirs = released;
    Ok(cleanup)
}

async fn remove_spare_slots<E: SandboxEngine>(engine: &E) -> Result<StaleCleanup, SandboxError> {
    remove_station_resources(
        engine,
        |container| container.name.starts_with(SPARE_NAME_PREFIX),
        false,
    )
    .await
}

/// Removes this station's containers that `selected` picks (and, when `keep_ready_spares`, are
/// not ready spare slots), then the volumes no remaining container holds: a volume whose holder
/// is removed goes with it, a ready spare's stays.
async fn remove_station_resources<E: SandboxEngine>(
    engine: &E,
    selected: impl Fn(&ListedContainer) -> bool,
    keep_ready_spares: bool,
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
    let mut kept_volumes = Vec::new();
    for container in engine.list_containers(&labels).await.map_err(list_error)? {
        let kept_spare_volume = container.ready_spare_volume().filter(|_| keep_ready_spares);
        if let Some(volume) = kept_spare_volume {
            kept_volumes.push(volume.to_string());
            cleanup.kept_spares.push(container.name);
            continue;
        }
        if !selected(&container) {
            // Not ours to remove; neither is the volume it holds.
            kept_volumes.extend(container.labels.get(LABEL_OUTPUT_VOLUME).cloned());
            continue;
        }
        match engine.remove_container(&container.name).await {
            Ok(()) => cleanup.removed_containers.push(container.name),
            Err(error) => failures.push(format!("container {}: {error}", container.name)),
        }
    }
    for volume in engine.list_volumes(&labels).await.map_err(list_error)? {
        let removable = if keep_ready_spares {
            !kept_volumes.contains(&volume)
        } else {
            volume.starts_with(SPARE_NAME_PREFIX) && !kept_volumes.contains(&volume)
        };
        if !removable {
            continue;
        }
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
    host_outputs: Option<HostOutputs>,
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

    fn release_all_host_outputs(&self) -> (Vec<String>, Vec<String>) {
        match &self.host_outputs {
            Some(outputs) => outputs.release_all(),
            None => (Vec::new(), Vec::new()),
        }
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
        /// What `list_containers` and `list_volumes` answer; `None`: a crashed run's leftovers.
        listed: Option<Vec<ListedContainer>>,
        volumes: Option<Vec<String>>,
        /// Containers whose rename fails with 409, as when another process claimed them first.
        claimed_elsewhere: Vec<String>,
        /// The output holder is no longer running when the train exits.
        holder_stopped: bool,
        /// The sandbox mounts `/output` on the host instead of using a volume.
        host_outputs: bool,
    }

    impl FakeEngine {
        fn failing_at(call: &str) -> Self {
            FakeEngine {
                fail_call: Some(call.to_string()),
                ..Default::default()
            }
        }

        /// `fail_call` ending in `*` fails every call starting with what precedes it.
        fn record(&self, call: String) -> Result<(), DockerError> {
            let fails = match self.fail_call.as_deref() {
                Some(pattern) => match pattern.strip_suffix('*') {
                    Some(prefix) => call.starts_with(prefix),
                    None => pattern == call,
                },
                None => false,
            };
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

        async fn rename_container(&self, name: &str, new_name: &str) -> Result<(), DockerError> {
            self.record(format!("rename_container {name} {new_name}"))?;
            if self.claimed_elsewhere.iter().any(|claimed| claimed == name) {
                return Err(DockerError::DockerResponseServerError {
                    status_code: 409,
                    message: "name in use".to_string(),
                });
            }
            Ok(())
        }

        async fn is_running(&self, name: &str) -> Result<bool, DockerError> {
            self.record(format!("is_running {name}"))?;
            Ok(!self.holder_stopped)
        }

        fn host_output_dir(&self, run_id: &str) -> Option<String> {
            self.host_outputs.then(|| format!("/outputs/{run_id}"))
        }

        fn mount_host_output(&self, dir: &str, _slot: &OutputSlotSpec) -> io::Result<()> {
            self.record(format!("mount_host_output {dir}"))
                .map_err(io::Error::other)
        }

        async fn collect_host_output(
            &self,
            dir: &str,
            limits: CollectLimits,
        ) -> Result<CollectedOutputs, CollectError> {
            self.record(format!("collect_host_output {dir}"))
                .map_err(|error| CollectError::Walk {
                    dir: dir.to_string(),
                    source: io::Error::other(error),
                })?;
            Ok(
                collect::collect_outputs(output_archive().as_slice(), "output", &limits)
                    .expect("a valid archive"),
            )
        }

        fn release_host_output(&self, dir: &str) -> io::Result<()> {
            self.record(format!("release_host_output {dir}"))
                .map_err(io::Error::other)
        }

        fn release_all_host_outputs(&self) -> (Vec<String>, Vec<String>) {
            let _ = self.record("release_all_host_outputs".to_string());
            (Vec::new(), Vec::new())
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

        async fn list_containers(
            &self,
            labels: &[String],
        ) -> Result<Vec<ListedContainer>, DockerError> {
            self.record(format!("list_containers {}", labels.join(",")))?;
            Ok(self.listed.clone().unwrap_or_else(|| {
                vec![
                    listed("pht-run-old", false, &[]),
                    listed(
                        "pht-run-old-output",
                        true,
                        &[(LABEL_OUTPUT_VOLUME, "pht-run-old-output")],
                    ),
                ]
            }))
        }

        async fn list_volumes(&self, labels: &[String]) -> Result<Vec<String>, DockerError> {
            self.record(format!("list_volumes {}", labels.join(",")))?;
            Ok(self
                .volumes
                .clone()
                .unwrap_or_else(|| vec!["pht-run-old-output".to_string()]))
        }

        fn spawn_cleanup(&self, names: RunResourceNames) {
            let _ = self.record(format!("spawn_cleanup {}", names.train_container));
        }
    }

    fn listed(name: &str, running: bool, labels: &[(&str, &str)]) -> ListedContainer {
        ListedContainer {
            name: name.to_string(),
            running,
            labels: labels
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
        }
    }

    /// A spare slot of the same make as `spec_with(limits())`'s, holding `volume`.
    fn spare(name: &str, running: bool, volume: &str) -> ListedContainer {
        let key = spec_with(limits()).output_slot().key("sha256:holder");
        listed(
            name,
            running,
            &[(LABEL_OUTPUT_SLOT, &key), (LABEL_OUTPUT_VOLUME, volume)],
        )
    }

    /// What the first container created (the train, when no holder was made) mounts at
    /// `/output`.
    fn train_output_source(engine: &FakeEngine) -> Option<String> {
        let bodies = engine.created_bodies.lock().expect("not poisoned");
        bodies[0]
            .host_config
            .as_ref()?
            .mounts
            .as_ref()?
            .iter()
            .find(|mount| mount.target.as_deref() == Some(OUTPUT_MOUNT_PATH))?
            .source
            .clone()
    }

    async fn run_in_sandbox(
        engine: &FakeEngine,
        spec: &RunSpec,
    ) -> Result<RunOutcome, SandboxError> {
        super::run_in_sandbox(engine, spec, &WarmSlots::NONE).await
    }

    /// Runs with one warm slot; returns the outcome and the spare templates the run asked for.
    async fn run_warm(
        engine: &FakeEngine,
    ) -> (Result<RunOutcome, SandboxError>, Vec<SpareTemplate>) {
        let requested = Mutex::new(Vec::new());
        let on_claimed = |template| requested.lock().expect("not poisoned").push(template);
        let slots = WarmSlots {
            target: 1,
            on_claimed: &on_claimed,
        };
        let outcome = super::run_in_sandbox(engine, &spec_with(limits()), &slots).await;
        (outcome, requested.into_inner().expect("not poisoned"))
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
            image_volume_paths sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
            output_holder_image
            create_volume pht-run-r1-output
            create_container pht-run-r1-output
            start_container pht-run-r1-output
            create_container pht-run-r1
            attach_output pht-run-r1
            start_container pht-run-r1
            wait_container pht-run-r1
            inspect_exit pht-run-r1
            is_running pht-run-r1-output
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
            remove_volume pht-run-old-output
            release_all_host_outputs"#]]
        .assert_eq(&engine.calls().join("\n"));
        assert_eq!(cleanup.removed_containers.len(), 2);
        assert_eq!(cleanup.removed_volumes.len(), 1);
    }

    #[tokio::test]
    async fn with_host_outputs_a_run_mounts_binds_reads_and_releases_a_host_tmpfs() {
        let engine = FakeEngine {
            host_outputs: true,
            ..Default::default()
        };
        let outcome = run_in_sandbox(&engine, &spec_with(limits()))
            .await
            .expect("the fake engine does not fail");
        expect![[r#"
            image_volume_paths sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
            mount_host_output /outputs/r1
            create_container pht-run-r1
            attach_output pht-run-r1
            start_container pht-run-r1
            wait_container pht-run-r1
            inspect_exit pht-run-r1
            collect_host_output /outputs/r1
            remove_container pht-run-r1
            release_host_output /outputs/r1"#]]
        .assert_eq(&engine.calls().join("\n"));
        assert_eq!(
            outcome.outputs.regular_file("result.txt"),
            Some(&b"rows=3\n"[..])
        );
        assert_eq!(train_output_source(&engine).as_deref(), Some("/outputs/r1"));
    }

    #[tokio::test]
    async fn with_host_outputs_every_failing_step_still_removes_the_train_and_the_mount() {
        let successful_engine = FakeEngine {
            host_outputs: true,
            ..Default::default()
        };
        run_in_sandbox(&successful_engine, &spec_with(limits()))
            .await
            .expect("the fake engine does not fail");
        let steps: Vec<String> = successful_engine
            .calls()
            .into_iter()
            .filter(|call| !call.starts_with("remove_") && !call.starts_with("release_"))
            .collect();
        for failing_step in steps {
            let engine = FakeEngine {
                host_outputs: true,
                fail_call: Some(failing_step.clone()),
                ..Default::default()
            };
            let error = run_in_sandbox(&engine, &spec_with(limits()))
                .await
                .expect_err("an injected failure fails the run");
            assert!(
                error.to_string().contains("injected failure"),
                "the error of {failing_step:?} carries the cause: {error}"
            );
            let calls = engine.calls();
            let expected_tail = [
                "remove_container pht-run-r1",
                "release_host_output /outputs/r1",
            ];
            assert!(
                calls.ends_with(
                    &expected_tail
                        .iter()
                        .map(|call| call.to_string())
                        .collect::<Vec<_>>()
                ),
                "after {failing_step:?}: {calls:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_holder_that_stopped_during_the_run_fails_it_instead_of_reporting_no_outputs() {
        let engine = FakeEngine {
            holder_stopped: true,
            ..Default::default()
        };
        let error = run_in_sandbox(&engine, &spec_with(limits()))
            .await
            .expect_err("outputs lost with the holder");
        assert!(
            matches!(error, SandboxError::OutputHolderStopped { .. }),
            "{error}"
        );
        let calls = engine.calls();
        assert!(
            !calls
                .iter()
                .any(|call| call.starts_with("download_archive")),
            "{calls:?}"
        );
        assert!(calls.ends_with(&REMOVALS.map(str::to_string)), "{calls:?}");
    }

    #[tokio::test]
    async fn a_run_claims_a_ready_spare_by_renaming_it_and_asks_for_the_next() {
        let engine = FakeEngine {
            listed: Some(vec![
                // Stopped: its tmpfs is gone; never claimed.
                spare("pht-spare-stopped", false, "pht-spare-stopped"),
                // Renamed to a run: claimed before, may hold that run's outputs; never claimed.
                spare("pht-run-other-output", true, "pht-spare-used"),
                // Another process renames it first.
                spare("pht-spare-raced", true, "pht-spare-raced"),
                spare("pht-spare-ready", true, "pht-spare-ready"),
            ]),
            claimed_elsewhere: vec!["pht-spare-raced".to_string()],
            ..Default::default()
        };
        let (outcome, requested) = run_warm(&engine).await;
        outcome.expect("the fake engine does not fail");
        let key = spec_with(limits()).output_slot().key("sha256:holder");
        let calls = engine.calls().join("\n").replace(&key, "KEY");
        expect![[r#"
            image_volume_paths sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
            output_holder_image
            list_containers org.pht.managed=true,org.pht.station=test-station,org.pht.output-slot=KEY
            rename_container pht-spare-raced pht-run-r1-output
            rename_container pht-spare-ready pht-run-r1-output
            create_container pht-run-r1
            attach_output pht-run-r1
            start_container pht-run-r1
            wait_container pht-run-r1
            inspect_exit pht-run-r1
            is_running pht-run-r1-output
            download_archive pht-run-r1-output /output
            remove_container pht-run-r1
            remove_container pht-run-r1-output
            remove_volume pht-spare-ready"#]]
        .assert_eq(&calls);
        assert_eq!(
            train_output_source(&engine).as_deref(),
            Some("pht-spare-ready")
        );
        assert_eq!(
            requested,
            vec![SpareTemplate {
                slot: spec_with(limits()).output_slot(),
                holder_image_id: "sha256:holder".to_string()
            }]
        );
    }

    #[tokio::test]
    async fn a_run_without_a_ready_spare_creates_its_own_slot_and_asks_for_the_next() {
        let engine = FakeEngine {
            listed: Some(vec![spare("pht-spare-stopped", false, "pht-spare-stopped")]),
            ..Default::default()
        };
        let (outcome, requested) = run_warm(&engine).await;
        outcome.expect("the fake engine does not fail");
        let calls = engine.calls();
        for call in [
            "create_volume pht-run-r1-output",
            "create_container pht-run-r1-output",
            "start_container pht-run-r1-output",
        ] {
            assert!(calls.contains(&call.to_string()), "{call}: {calls:?}");
        }
        assert!(
            !calls
                .iter()
                .any(|call| call.starts_with("rename_container")),
            "{calls:?}"
        );
        assert!(calls.ends_with(&REMOVALS.map(str::to_string)), "{calls:?}");
        assert_eq!(requested.len(), 1);
    }

    #[tokio::test]
    async fn a_failing_spare_listing_does_not_fail_the_run() {
        let key = spec_with(limits()).output_slot().key("sha256:holder");
        let engine = FakeEngine::failing_at(&format!(
            "list_containers org.pht.managed=true,org.pht.station=test-station,org.pht.output-slot={key}"
        ));
        let (outcome, _) = run_warm(&engine).await;
        outcome.expect("a run creates its own slot when spares cannot be listed");
        assert!(engine
            .calls()
            .contains(&"start_container pht-run-r1-output".to_string()));
    }

    #[tokio::test]
    async fn replenishing_makes_spares_up_to_the_target_labelled_with_their_slot() {
        let engine = FakeEngine {
            listed: Some(vec![
                spare("pht-spare-ready", true, "pht-spare-ready"),
                spare("pht-spare-stopped", false, "pht-spare-stopped"),
            ]),
            ..Default::default()
        };
        let template = SpareTemplate {
            slot: spec_with(limits()).output_slot(),
            holder_image_id: "sha256:holder".to_string(),
        };
        replenish_spares(&engine, &template, 2)
            .await
            .expect("the fake engine does not fail");
        let calls = engine.calls();
        let created: Vec<&String> = calls
            .iter()
            .filter(|call| call.starts_with("create_") || call.starts_with("start_"))
            .collect();
        assert_eq!(
            created.len(),
            3,
            "one volume, one holder, one start: {calls:?}"
        );
        let name = created[0]
            .strip_prefix("create_volume ")
            .expect("the volume first");
        assert!(name.starts_with("pht-spare-test-station-"), "{name}");
        assert_eq!(*created[1], format!("create_container {name}"));
        assert_eq!(*created[2], format!("start_container {name}"));
        let labels = engine.created_bodies.lock().expect("not poisoned")[0]
            .labels
            .clone()
            .expect("labelled");
        assert_eq!(labels[LABEL_OUTPUT_SLOT], template.key());
        assert_eq!(labels[LABEL_OUTPUT_VOLUME], name);
        assert_eq!(labels[LABEL_STATION], "test-station");
        assert!(!labels.contains_key(spec::LABEL_RUN_ID), "{labels:?}");

        // At the target already: nothing is made.
        let engine = FakeEngine {
            listed: Some(vec![spare("pht-spare-ready", true, "pht-spare-ready")]),
            ..Default::default()
        };
        replenish_spares(&engine, &template, 1)
            .await
            .expect("the fake engine does not fail");
        assert_eq!(engine.calls().len(), 1, "{:?}", engine.calls());
    }

    #[tokio::test]
    async fn a_spare_that_cannot_be_started_is_removed_again() {
        let template = SpareTemplate {
            slot: spec_with(limits()).output_slot(),
            holder_image_id: "sha256:holder".to_string(),
        };
        // Fail the holder's creation, whatever its random name.
        let failing = FakeEngine {
            listed: Some(Vec::new()),
            fail_call: Some("create_container pht-spare-*".to_string()),
            ..Default::default()
        };
        let _ = replenish_spares(&failing, &template, 1).await;
        let calls = failing.calls();
        let name = calls
            .iter()
            .find_map(|call| call.strip_prefix("create_volume "))
            .expect("the volume was created")
            .to_string();
        assert!(
            calls.ends_with(&[
                format!("remove_container {name}"),
                format!("remove_volume {name}")
            ]),
            "{calls:?}"
        );
    }

    #[tokio::test]
    async fn cleanup_stale_keeps_ready_spares_and_removes_claimed_and_stopped_ones() {
        let engine = FakeEngine {
            listed: Some(vec![
                listed("pht-run-old", false, &[]),
                spare("pht-run-old-output", true, "pht-spare-claimed"),
                spare("pht-spare-stopped", false, "pht-spare-stopped"),
                spare("pht-spare-ready", true, "pht-spare-ready"),
            ]),
            volumes: Some(vec![
                "pht-spare-claimed".to_string(),
                "pht-spare-stopped".to_string(),
                "pht-spare-ready".to_string(),
            ]),
            ..Default::default()
        };
        let cleanup = cleanup_stale_resources(&engine)
            .await
            .expect("the fake engine does not fail");
        assert_eq!(cleanup.kept_spares, ["pht-spare-ready"]);
        assert_eq!(
            cleanup.removed_containers,
            ["pht-run-old", "pht-run-old-output", "pht-spare-stopped"]
        );
        assert_eq!(
            cleanup.removed_volumes,
            ["pht-spare-claimed", "pht-spare-stopped"]
        );

        let removed = remove_spare_slots(&engine)
            .await
            .expect("the fake engine does not fail");
        assert_eq!(
            removed.removed_containers,
            ["pht-spare-stopped", "pht-spare-ready"]
        );
        assert_eq!(
            removed.removed_volumes,
            ["pht-spare-stopped", "pht-spare-ready"],
            "a claimed spare's volume belongs to its run"
        );
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
