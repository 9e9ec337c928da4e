//! What can go wrong in the sandbox, with the run, step, container, volume or directory it went
//! wrong on.
//!
//! Owns: [`SandboxError`], the one error every public operation of [`crate::sandbox`] returns,
//! [`RunStep`], the step of a run at which Docker failed, and [`RemovalFailure`], one resource
//! that could not be removed. The files of the sandbox build these; a caller reads them.
//!
//! Does not hold refusals or limits reached: a train that was OOM-killed, timed out or filled
//! `/output` ran in a working sandbox, and [`RunOutcome`](super::RunOutcome) says so as data.
//! Nor does it hold what only goes to the log: a spare slot that could not be made is a
//! [`SpareError`](super::spares::SpareError), because no run fails over it.

use std::fmt;
use std::io;

use bollard::errors::Error as DockerError;

use crate::collect::CollectError;

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
    #[error("could not {action} of run {run_id} at {dir}: {source}; if this station cannot mount, set `docker.output_storage: volume` in its configuration")]
    HostOutput {
        run_id: String,
        action: &'static str,
        /// The host directory that was to be the run's `/output`.
        dir: String,
        source: io::Error,
    },
    #[error("could not collect the outputs of run {run_id}: {source}")]
    Collect {
        run_id: String,
        source: CollectError,
    },
    #[error("collecting the outputs of run {run_id} stopped unexpectedly: {message}")]
    CollectTask { run_id: String, message: String },
    #[error("could not remove the sandbox of run {run_id} ({}); remove the leftovers with `docker rm -f` and `docker volume rm`, or call cleanup_stale", joined(.failures))]
    Cleanup {
        run_id: String,
        failures: Vec<RemovalFailure>,
    },
    #[error("could not remove leftover sandbox resources of station {station_id:?} ({}); remove them with `docker rm -f` and `docker volume rm`", joined(.failures))]
    StaleCleanup {
        station_id: String,
        failures: Vec<RemovalFailure>,
    },
    #[error("could not list the leftover sandbox resources of station {station_id:?}: {source}")]
    ListLeftovers {
        station_id: String,
        source: DockerError,
    },
}

impl SandboxError {
    /// The `map_err` of the Docker call at `step` of run `run_id`.
    pub(crate) fn at_step(run_id: &str, step: RunStep) -> impl FnOnce(DockerError) -> Self + '_ {
        move |source| SandboxError::Docker {
            run_id: run_id.to_string(),
            step,
            source,
        }
    }
}

/// A Docker call that failed at `step` of making something a run or a spare slot needs; whoever
/// asked says whose it was ([`SandboxError::Docker`] or a spare's
/// [`SpareError`](super::spares::SpareError)).
#[derive(Debug, thiserror::Error)]
#[error("could not {step}: {source}")]
pub(crate) struct StepFailure {
    pub step: RunStep,
    pub source: DockerError,
}

impl StepFailure {
    pub(crate) fn at(step: RunStep) -> impl FnOnce(DockerError) -> Self {
        move |source| StepFailure { step, source }
    }

    pub(crate) fn of_run(self, run_id: &str) -> SandboxError {
        SandboxError::at_step(run_id, self.step)(self.source)
    }
}

/// A container, volume or host output directory that could not be removed.
#[derive(Debug, thiserror::Error)]
pub enum RemovalFailure {
    #[error("container {name}: {source}")]
    Container { name: String, source: DockerError },
    #[error("volume {name}: {source}")]
    Volume { name: String, source: DockerError },
    #[error("output directory {dir}: {source}")]
    OutputDir { dir: String, source: io::Error },
}

/// The failures as one line, `; `-separated, for an error message or a log entry.
pub(crate) fn joined(failures: &[RemovalFailure]) -> String {
    failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
