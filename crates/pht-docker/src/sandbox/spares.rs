//! Warm output slots: spare volumes with a started holder, ready before a run asks for one.
//!
//! Owns: what a spare is made of ([`SpareTemplate`]) and the labels that find it, claiming one
//! for a run by renaming its holder to the run's holder name (atomic in Docker, so two station
//! processes never share a spare), telling a ready spare from one that was claimed or stopped
//! ([`ListedContainer::ready_spare_volume`]), and making new spares in the background until the
//! target is reached ([`SpareKeeper`]).
//!
//! Does not create a slot's volume and holder itself: that is [`create_volume_slot`], the same
//! code a run without a spare uses. Does not remove spares either ([`super::cleanup`] does). A spare never fails a
//! run: when none can be claimed the run makes its own slot, and a spare that cannot be made
//! is logged ([`SpareError`]) and left for the next run to make.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bollard::errors::Error as DockerError;
use tokio::task::JoinHandle;

use super::bollard_engine::{status_code, BollardEngine};
use super::engine::{ListedContainer, SandboxEngine};
use super::error::StepFailure;
use super::output_slot::create_volume_slot;
use super::LABEL_STATION;
use crate::spec::{
    OutputSlotSpec, LABEL_MANAGED, LABEL_OUTPUT_SLOT, LABEL_OUTPUT_VOLUME, LABEL_ROLE,
    ROLE_OUTPUT_HOLDER,
};

/// Name prefix of a spare output slot's holder and volume. A claimed spare holder is renamed to
/// its run's holder name, so a holder with this prefix has never been given to a train.
pub(super) const SPARE_NAME_PREFIX: &str = "pht-spare-";

/// Why a spare slot could not be made. Only logged: the next run makes its own slot.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpareError {
    #[error("could not list the spare output slots: {source}")]
    List { source: DockerError },
    #[error("could not prepare spare output slot {spare}: {source}")]
    Create { spare: String, source: StepFailure },
}

impl ListedContainer {
    /// The volume this container holds if it is a spare output slot that is ready for use:
    /// running, never renamed to a run, and labelled with its slot and volume.
    pub(super) fn ready_spare_volume(&self) -> Option<&str> {
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
    /// Spares to keep ready; 0 disables them. A host tmpfs slot never uses them.
    pub target: usize,
    /// Called once the run has its slot, with what the next spare must be made of.
    pub on_claimed: &'a (dyn Fn(SpareTemplate) + Send + Sync),
}

impl WarmSlots<'_> {
    #[cfg(test)]
    pub(super) const NONE: WarmSlots<'static> = WarmSlots {
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
    pub(super) fn key(&self) -> String {
        self.slot.key(&self.holder_image_id)
    }
}

/// The spares a sandbox keeps ready, and the background tasks preparing them.
#[derive(Debug, Clone)]
pub(super) struct SpareKeeper {
    /// How many spare output slots to keep ready; 0 creates every slot on the run's own path.
    target: usize,
    /// Spare slots being prepared in the background; [`SpareKeeper::settle`] waits for them.
    background: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// One preparation at a time per sandbox, so concurrent runs do not overshoot the target.
    replenish_lock: Arc<tokio::sync::Mutex<()>>,
}

impl SpareKeeper {
    /// Keeps no spares.
    pub(super) fn none() -> Self {
        SpareKeeper {
            target: 0,
            background: Arc::new(Mutex::new(Vec::new())),
            replenish_lock: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    pub(super) fn with_target(mut self, target: usize) -> Self {
        self.target = target;
        self
    }

    pub(super) fn target(&self) -> usize {
        self.target
    }

    /// Waits until the spare slots being prepared in the background are ready (or failed).
    pub(super) async fn settle(&self) {
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

    /// Starts making spares from `template` until the target is ready, in the background.
    pub(super) fn spawn_replenish(&self, engine: &BollardEngine, template: SpareTemplate) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let engine = engine.clone();
        let target = self.target;
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
pub(super) async fn claim_spare<E: SandboxEngine>(
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
pub(super) async fn replenish_spares<E: SandboxEngine>(
    engine: &E,
    template: &SpareTemplate,
    target: usize,
) -> Result<(), SpareError> {
    let ready = engine
        .list_containers(&spare_labels(engine, template))
        .await
        .map_err(|source| SpareError::List { source })?
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
        if let Err(failure) = create_volume_slot(engine, template, &name, &name, labels).await {
            let _ = engine.remove_container(&name).await;
            let _ = engine.remove_volume(&name).await;
            return Err(SpareError::Create {
                spare: name,
                source: failure,
            });
        }
    }
    Ok(())
}
