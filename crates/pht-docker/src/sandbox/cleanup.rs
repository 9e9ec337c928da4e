//! Removing what the sandbox made: a run's resources on every path, and what a crashed station
//! process left behind.
//!
//! Owns: [`RunResources`], what one run's cleanup removes; [`remove_run_resources`], called at
//! the end of every run, successful or not; [`CleanupOnDrop`], which spawns that removal when a
//! run's future is dropped before it got there; and the station-wide sweeps behind
//! [`DockerSandbox::cleanup_stale`](super::DockerSandbox::cleanup_stale) and
//! [`DockerSandbox::remove_spares`](super::DockerSandbox::remove_spares), which find this
//! station's resources by label and keep ready spare slots (or only remove those).
//!
//! Does not know how a run's `/output` is taken apart: the [`OutputSlot`] says in which order
//! ([`OutputSlot::release_with_train`]). Never touches another station's resources: every
//! listing filters on this station's label.

use super::engine::{ListedContainer, SandboxEngine};
use super::error::{RemovalFailure, SandboxError};
use super::output_slot::OutputSlot;
use super::spares::SPARE_NAME_PREFIX;
use super::{StaleCleanup, LABEL_STATION};
use crate::spec::{LABEL_MANAGED, LABEL_OUTPUT_VOLUME};

/// What a run's cleanup removes: the train container and the run's `/output`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunResources {
    pub train_container: String,
    pub output_slot: OutputSlot,
}

/// Removes the train container and the output slot. Every removal is attempted even when an
/// earlier one failed; the failures are returned together.
pub(super) async fn remove_run_resources<E: SandboxEngine>(
    engine: &E,
    resources: &RunResources,
) -> Result<(), Vec<RemovalFailure>> {
    let failures = resources
        .output_slot
        .release_with_train(engine, &resources.train_container)
        .await;
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures)
    }
}

/// Spawns the removal of a run's resources if the run is dropped before it removed them itself.
pub(super) struct CleanupOnDrop<'a, E: SandboxEngine> {
    engine: &'a E,
    resources: Option<RunResources>,
}

impl<'a, E: SandboxEngine> CleanupOnDrop<'a, E> {
    pub(super) fn arm(engine: &'a E, resources: RunResources) -> Self {
        CleanupOnDrop {
            engine,
            resources: Some(resources),
        }
    }

    /// The resources the guard would remove; the run updates them as it makes them.
    pub(super) fn resources_mut(&mut self) -> &mut RunResources {
        self.resources
            .as_mut()
            .expect("the guard is armed until the run ends")
    }

    /// The resources to remove; the caller removes them now.
    pub(super) fn disarm(&mut self) -> RunResources {
        self.resources
            .take()
            .expect("a guard is disarmed once, at the end of its run")
    }
}

impl<E: SandboxEngine> Drop for CleanupOnDrop<'_, E> {
    fn drop(&mut self) {
        if let Some(resources) = self.resources.take() {
            self.engine.spawn_cleanup(resources);
        }
    }
}

/// The run a resource belongs to, from its name (`pht-run-<id>` or `pht-run-<id>-output`).
fn run_id_of(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("pht-run-")?;
    Some(rest.strip_suffix("-output").unwrap_or(rest))
}

/// Removes this station's resources of the runs `is_stale` names, and its claimed or stopped
/// spares (ready spares stay), then those runs' host output directories. A resource of a run
/// that is still live, or that this station does not know, stays.
pub(super) async fn cleanup_stale_resources<E: SandboxEngine>(
    engine: &E,
    is_stale: &(dyn Fn(&str) -> bool + Sync),
) -> Result<StaleCleanup, SandboxError> {
    let selected = |container: &ListedContainer| run_id_of(&container.name).is_none_or(is_stale);
    let mut cleanup = remove_station_resources(engine, selected, true, is_stale).await?;
    // After the containers: a leftover train container may still bind-mount its directory.
    let (released, failures) = engine.release_stale_host_outputs(is_stale);
    if !failures.is_empty() {
        return Err(SandboxError::StaleCleanup {
            station_id: engine.station_id().to_string(),
            failures,
        });
    }
    cleanup.removed_output_dirs = released;
    Ok(cleanup)
}

/// Removes this station's spare slots, ready or not, but never a claimed one's volume.
pub(super) async fn remove_spare_slots<E: SandboxEngine>(
    engine: &E,
) -> Result<StaleCleanup, SandboxError> {
    remove_station_resources(
        engine,
        |container| container.name.starts_with(SPARE_NAME_PREFIX),
        false,
        &|_| false,
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
    is_stale_run: &(dyn Fn(&str) -> bool + Sync),
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
            Err(source) => failures.push(RemovalFailure::Container {
                name: container.name,
                source,
            }),
        }
    }
    for volume in engine.list_volumes(&labels).await.map_err(list_error)? {
        let removable = if keep_ready_spares {
            !kept_volumes.contains(&volume) && run_id_of(&volume).is_none_or(is_stale_run)
        } else {
            volume.starts_with(SPARE_NAME_PREFIX) && !kept_volumes.contains(&volume)
        };
        if !removable {
            continue;
        }
        match engine.remove_volume(&volume).await {
            Ok(()) => cleanup.removed_volumes.push(volume),
            Err(source) => failures.push(RemovalFailure::Volume {
                name: volume,
                source,
            }),
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
