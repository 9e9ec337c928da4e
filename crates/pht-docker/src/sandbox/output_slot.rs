//! A run's `/output`, whichever way it comes: one type, [`OutputSlot`], with one method per
//! thing a run does with it, so the run itself never asks which kind it has.
//!
//! Owns: the two kinds and everything that differs between them.
//!
//! | step | [`OutputSlot::HostTmpfs`] | [`OutputSlot::Volume`] |
//! | --- | --- | --- |
//! | [`prepare`](OutputSlot::prepare) | mount a capped tmpfs on the host | claim a spare, or create a capped tmpfs volume and start its holder |
//! | [`mount`](OutputSlot::mount) | bind the host directory | mount the volume |
//! | [`ensure_held`](OutputSlot::ensure_held) | nothing: the host mount cannot go away | the holder must still run, or the volume was unmounted with the outputs |
//! | [`collect`](OutputSlot::collect) | walk the directory on the host | stream Docker's archive of the holder's `/output` |
//! | [`release_with_train`](OutputSlot::release_with_train) | remove the train, then unmount | remove the train and the holder at once, then the volume |
//!
//! Both kinds are tmpfs capped in bytes and entries by the same options
//! ([`OutputSlotSpec::tmpfs_options`](crate::spec::OutputSlotSpec::tmpfs_options)), so the kernel enforces the cap however fast the train
//! writes, and both feed the one tar collector ([`crate::collect`]).
//!
//! Does not decide which kind a run gets (the station does, with
//! [`DockerSandbox::with_host_outputs`](super::DockerSandbox::with_host_outputs)), does not keep
//! spares ([`super::spares`]), and does not build the request bodies ([`crate::spec`]).

use std::collections::HashMap;

use bollard::errors::Error as DockerError;

use super::add_station_label;
use super::download::download_and_collect;
use super::engine::SandboxEngine;
use super::error::{RemovalFailure, RunStep, SandboxError, StepFailure};
use super::spares::{claim_spare, SpareTemplate, WarmSlots};
use crate::collect::{CollectLimits, CollectedOutputs};
use crate::spec::{
    self, OutputMount, RunResourceNames, RunSpec, LABEL_ROLE, ROLE_OUTPUT_HOLDER,
    ROLE_OUTPUT_VOLUME,
};

/// How often starting the output holder is tried before the run fails.
pub(super) const HOLDER_START_ATTEMPTS: u32 = 3;
/// How long to wait before the next start of the holder, times the attempt.
const HOLDER_START_BACKOFF: std::time::Duration = std::time::Duration::from_millis(200);

/// Where a run's `/output` lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OutputSlot {
    /// A capped tmpfs this process mounts on the host at `dir` ([`crate::host_output`]),
    /// bind-mounted into the train and read back from the host.
    HostTmpfs { dir: String },
    /// A capped tmpfs volume, which Docker unmounts, contents and all, when its last container
    /// stops; `holder`, started before the train, keeps it mounted past the train's exit.
    /// `volume` is the run's own, or the spare's it claimed.
    Volume { volume: String, holder: String },
}

impl OutputSlot {
    /// The slot `engine` gives the run `names` belong to: a host tmpfs where the engine mounts
    /// on the host, otherwise the run's volume and holder.
    pub(super) fn for_run(
        engine: &impl SandboxEngine,
        run_id: &str,
        names: &RunResourceNames,
    ) -> Self {
        match engine.host_output_dir(run_id) {
            Some(dir) => OutputSlot::HostTmpfs { dir },
            None => OutputSlot::Volume {
                volume: names.output_volume.clone(),
                holder: names.output_holder_container.clone(),
            },
        }
    }

    /// Makes `/output` ready for the train. A volume slot claims a spare where `slots` keeps
    /// them, makes its own otherwise, and then asks for the next spare.
    pub(super) async fn prepare<E: SandboxEngine>(
        &mut self,
        engine: &E,
        spec: &RunSpec,
        slots: &WarmSlots<'_>,
    ) -> Result<(), SandboxError> {
        match self {
            OutputSlot::HostTmpfs { dir } => engine
                .mount_host_output(dir, &spec.output_slot())
                .map_err(|source| SandboxError::HostOutput {
                    run_id: spec.run_id().to_string(),
                    action: "mount the tmpfs for /output",
                    dir: dir.clone(),
                    source,
                }),
            OutputSlot::Volume { volume, holder } => {
                prepare_volume(engine, spec, volume, holder, slots).await
            }
        }
    }

    /// What the train container mounts at `/output`.
    pub(super) fn mount(&self) -> OutputMount<'_> {
        match self {
            OutputSlot::HostTmpfs { dir } => OutputMount::HostDir(dir),
            OutputSlot::Volume { volume, .. } => OutputMount::Volume(volume),
        }
    }

    /// Checks, once the train has exited, that what it wrote is still there to be collected.
    pub(super) async fn ensure_held<E: SandboxEngine>(
        &self,
        engine: &E,
        run_id: &str,
    ) -> Result<(), SandboxError> {
        let OutputSlot::Volume { holder, .. } = self else {
            return Ok(());
        };
        // The holder was started before the train and nothing restarts it: running now means
        // the volume stayed mounted all along. Stopped, Docker would remount an empty tmpfs for
        // the download, and the run would look like it wrote nothing.
        let holder_running = engine
            .is_running(holder)
            .await
            .map_err(SandboxError::at_step(run_id, RunStep::CheckOutputHolder))?;
        if holder_running {
            Ok(())
        } else {
            Err(SandboxError::OutputHolderStopped {
                run_id: run_id.to_string(),
            })
        }
    }

    /// Reads what the train left in `/output`, within `limits`.
    pub(super) async fn collect<E: SandboxEngine>(
        &self,
        engine: &E,
        run_id: &str,
        limits: CollectLimits,
    ) -> Result<CollectedOutputs, SandboxError> {
        match self {
            OutputSlot::HostTmpfs { dir } => {
                engine
                    .collect_host_output(dir, limits)
                    .await
                    .map_err(|source| SandboxError::Collect {
                        run_id: run_id.to_string(),
                        source,
                    })
            }
            OutputSlot::Volume { holder, .. } => {
                download_and_collect(engine, run_id, holder, limits).await
            }
        }
    }

    /// Removes the slot and `train_container`, the train that mounts it, in the order the slot
    /// needs. Every removal is attempted even when an earlier one failed; the failures are
    /// returned together.
    pub(super) async fn release_with_train<E: SandboxEngine>(
        &self,
        engine: &E,
        train_container: &str,
    ) -> Vec<RemovalFailure> {
        let container_failure = |name: &str, source: DockerError| RemovalFailure::Container {
            name: name.to_string(),
            source,
        };
        let mut failures = Vec::new();
        match self {
            OutputSlot::HostTmpfs { dir } => {
                if let Err(source) = engine.remove_container(train_container).await {
                    failures.push(container_failure(train_container, source));
                }
                // Unmounted only once the train's container, which bind-mounts it, is gone.
                if let Err(source) = engine.release_host_output(dir) {
                    failures.push(RemovalFailure::OutputDir {
                        dir: dir.clone(),
                        source,
                    });
                }
            }
            OutputSlot::Volume { volume, holder } => {
                // The two containers go at once; the volume only when neither holds it any more.
                let (train_removal, holder_removal) = tokio::join!(
                    engine.remove_container(train_container),
                    engine.remove_container(holder)
                );
                for (container, removal) in [
                    (train_container, train_removal),
                    (holder.as_str(), holder_removal),
                ] {
                    if let Err(source) = removal {
                        failures.push(container_failure(container, source));
                    }
                }
                if let Err(source) = engine.remove_volume(volume).await {
                    failures.push(RemovalFailure::Volume {
                        name: volume.clone(),
                        source,
                    });
                }
            }
        }
        failures
    }
}

/// Gives the run an output volume kept mounted by a started holder: a spare claimed, or one
/// made now; then asks for the next spare. A claimed spare's volume replaces `volume`.
async fn prepare_volume<E: SandboxEngine>(
    engine: &E,
    spec: &RunSpec,
    volume: &mut String,
    holder: &str,
    slots: &WarmSlots<'_>,
) -> Result<(), SandboxError> {
    let holder_image_id = engine
        .output_holder_image()
        .await
        .map_err(SandboxError::at_step(
            spec.run_id(),
            RunStep::BuildOutputHolderImage,
        ))?;
    let template = SpareTemplate {
        slot: spec.output_slot(),
        holder_image_id,
    };
    let claimed_volume = if slots.target > 0 {
        claim_spare(engine, &template, holder).await
    } else {
        None
    };
    match claimed_volume {
        Some(claimed_volume) => *volume = claimed_volume,
        None => {
            create_volume_slot(engine, &template, holder, volume, |role| {
                let mut labels = spec.labels();
                labels.insert(LABEL_ROLE.to_string(), role.to_string());
                labels.into_iter().collect()
            })
            .await
            .map_err(|failure| failure.of_run(spec.run_id()))?;
        }
    }
    if slots.target > 0 {
        (slots.on_claimed)(template);
    }
    Ok(())
}

/// Creates a volume slot: the tmpfs volume, then the holder that keeps it mounted, started.
/// `labels` gives the labels for a role ([`ROLE_OUTPUT_VOLUME`] or [`ROLE_OUTPUT_HOLDER`]); the
/// station label is added here. On failure, says at which step; the caller removes what was made.
pub(super) async fn create_volume_slot<E: SandboxEngine>(
    engine: &E,
    template: &SpareTemplate,
    holder: &str,
    volume: &str,
    labels: impl Fn(&str) -> HashMap<String, String>,
) -> Result<(), StepFailure> {
    let mut volume_request =
        spec::output_slot_volume_request(&template.slot, volume, labels(ROLE_OUTPUT_VOLUME));
    add_station_label(&mut volume_request.labels, engine.station_id());
    engine
        .create_volume(volume_request)
        .await
        .map_err(StepFailure::at(RunStep::CreateOutputVolume))?;

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
        .map_err(StepFailure::at(RunStep::CreateOutputHolder))?;
    // Docker 20.10 occasionally answers "cannot start a stopped process" when many containers
    // start at once on a loaded host; the holder does nothing but wait, so starting it again is
    // safe. The train itself is never retried.
    let mut holder_attempt = 1;
    loop {
        match engine.start_container(holder).await {
            Ok(()) => return Ok(()),
            Err(error) if holder_attempt < HOLDER_START_ATTEMPTS => {
                tracing::warn!(holder, attempt = holder_attempt, %error, "starting the output holder failed; trying again");
                tokio::time::sleep(HOLDER_START_BACKOFF * holder_attempt).await;
                holder_attempt += 1;
            }
            Err(error) => return Err(StepFailure::at(RunStep::StartOutputHolder)(error)),
        }
    }
}
