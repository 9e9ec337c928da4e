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
//! Warm output slots (volumes only): creating and starting the holder costs about as much as
//! starting the train itself, so a sandbox with [`DockerSandbox::with_warm_output_slots`] keeps
//! spare slots (an empty tmpfs volume and a started holder that has never been given to a train)
//! ready. A run claims a spare by renaming its holder to the run's holder name (atomic in
//! Docker, so two station processes never share one), and the sandbox prepares the next spare in
//! the background while the train runs. A spare is claimed only when its
//! [`OutputSlotSpec::key`](crate::spec::OutputSlotSpec::key) matches the run's: same size and
//! file caps, same user, same holder image. Spares outlive the process that made them, so the
//! next `pht-station exec` finds one; [`DockerSandbox::remove_spares`] removes them.
//!
//! Does not decide anything: the container specification comes from [`crate::spec`], built from a
//! [`RunSpec`] the station resolved from its policy, and the outputs are judged by the output
//! checks, not here.
//!
//! The files, one concern each:
//!
//! - this file: the public [`DockerSandbox`] and what it returns ([`RunOutcome`],
//!   [`StaleCleanup`]);
//! - `run.rs`: one run, step by step, and whether `/output` was full;
//! - `output_slot.rs`: the run's `/output`, a host tmpfs or a volume with its holder, behind one
//!   type, `OutputSlot`;
//! - `spares.rs`: warm output slots, claimed by rename and replenished in the background;
//! - `holder_image.rs`: the image the holder runs, built here from a 129-byte program;
//! - `logs.rs`: capturing stdout and stderr, capped;
//! - `download.rs`: streaming Docker's archive of `/output` into the collector;
//! - `cleanup.rs`: removing a run's resources on every path, and a crashed station's leftovers;
//! - `engine.rs`: `SandboxEngine`, the trait every Docker call and host mount goes through;
//! - `bollard_engine.rs`: the real engine, `BollardEngine`;
//! - `error.rs`: [`SandboxError`] and its parts;
//! - `fake_engine.rs` and `tests.rs`: the unit tests, against a fake engine that records calls.

mod bollard_engine;
mod cleanup;
mod download;
mod engine;
mod error;
mod holder_image;
mod logs;
mod oom_watch;
mod output_slot;
mod run;
mod spares;

#[cfg(test)]
mod fake_engine;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use bollard::Docker;

use self::bollard_engine::BollardEngine;
use self::engine::SandboxEngine;
use self::spares::{SpareKeeper, WarmSlots};
use crate::collect::CollectedOutputs;
use crate::host_output::HostOutputs;
use crate::spec::RunSpec;

pub use self::error::{RemovalFailure, RunStep, SandboxError};

/// Label naming the station (sandbox owner) of a resource, so that stations sharing one engine,
/// or tests running in parallel, only ever clean up their own leftovers.
pub const LABEL_STATION: &str = "org.pht.station";
/// The station a [`DockerSandbox::new`] sandbox labels its resources with.
pub const DEFAULT_STATION_ID: &str = "local";

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
    /// Of which: the number of files and directories reached its cap (not the byte size).
    pub output_file_limit_reached: bool,
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
            .field("output_file_limit_reached", &self.output_file_limit_reached)
            .finish()
    }
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
    spares: SpareKeeper,
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
            engine: BollardEngine::new(docker, station_id),
            spares: SpareKeeper::none(),
        }
    }

    /// Gives each run's `/output` as a tmpfs mounted under `outputs`' root and bind-mounted
    /// into the train, instead of a volume and holder; spare slots are then never needed.
    pub fn with_host_outputs(mut self, outputs: HostOutputs) -> Self {
        self.engine = self.engine.with_host_outputs(outputs);
        self
    }

    /// Keeps `count` spare output slots ready for the next runs (see the module documentation).
    /// Each is an empty tmpfs volume and a paused 129-byte holder container; they outlive this
    /// process until [`remove_spares`](Self::remove_spares).
    pub fn with_warm_output_slots(mut self, count: usize) -> Self {
        self.spares = self.spares.with_target(count);
        self
    }

    /// Waits until the spare slots being prepared in the background are ready (or failed; a
    /// failure is logged and the next run creates its slot itself). Call it before the process
    /// exits, so no spare is left half made.
    pub async fn settle(&self) {
        self.spares.settle().await;
    }

    /// Removes this station's spare output slots (after [`settle`](Self::settle)).
    pub async fn remove_spares(&self) -> Result<StaleCleanup, SandboxError> {
        self.settle().await;
        cleanup::remove_spare_slots(&self.engine).await
    }

    pub fn station_id(&self) -> &str {
        self.engine.station_id()
    }

    /// Runs `spec` to completion and removes its containers and volume, whatever happens.
    ///
    /// If the returned future is dropped before it completes, the removal is spawned onto the
    /// current tokio runtime instead.
    pub async fn run(&self, spec: &RunSpec) -> Result<RunOutcome, SandboxError> {
        let slots = WarmSlots {
            target: self.spares.target(),
            on_claimed: &|template| self.spares.spawn_replenish(&self.engine, template),
        };
        run::run_in_sandbox(&self.engine, spec, &slots).await
    }

    /// Removes every container and volume of this station that a previous station process left
    /// behind (after a crash), except spare output slots that are still ready for use. Call it
    /// when the station starts, before it runs anything: it also removes the resources of runs
    /// in progress.
    pub async fn cleanup_stale(&self) -> Result<StaleCleanup, SandboxError> {
        cleanup::cleanup_stale_resources(&self.engine, &|_| true).await
    }

    /// Like [`cleanup_stale`](Self::cleanup_stale), but only for the runs `is_stale` names (by
    /// run id): a station passes the runs its own records say it started and no live process
    /// still carries out, so a concurrent `exec`, or another station given the same id on this
    /// engine, keeps its running trains. Spares are this station's to remove either way.
    pub async fn cleanup_stale_runs(
        &self,
        is_stale: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<StaleCleanup, SandboxError> {
        cleanup::cleanup_stale_resources(&self.engine, is_stale).await
    }
}

/// Adds the station label to the labels of a resource about to be created.
fn add_station_label(labels: &mut Option<HashMap<String, String>>, station_id: &str) {
    labels
        .get_or_insert_with(HashMap::new)
        .insert(LABEL_STATION.to_string(), station_id.to_string());
}
