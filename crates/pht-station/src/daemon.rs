//! `pht-station run`: the daemon. It long-polls the hub (outbound only), hands each work item
//! to the pipeline with a concurrency limit, resumes runs a previous stop of the station
//! interrupted, and keeps flushing the outbox until the hub has acknowledged every result.
//!
//! Owns the loop and the order in which a work item is handled: the checks against the signed
//! job (`pipeline/receive.rs`), replay protection, the state from the previous stop, the
//! pipeline itself, then reporting and delivery (`pipeline/deliver.rs`). Never trusts the hub
//! for integrity: every refusal is audited and reported, and the hub is only told outcomes.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use pht_api::v1::{ReportedStopState, WorkItem};
use pht_api::HubClient;
use pht_core::job::RouteMode;
use pht_core::ImageReference;

use crate::audit::AuditEvent;
use crate::engine::Engine;
pub use crate::hub_link::HubLink;
use crate::pipeline::{GivenParameters, Submission};
use crate::station::Station;
use crate::store::{JobRef, RunStatus};
use crate::StationError;

/// Handles one work item; every refusal is audited and reported to the hub.
pub async fn handle_work<E: Engine, H: HubLink>(
    station: &Station<E>,
    hub: &H,
    item: WorkItem,
) -> Result<(), StationError> {
    let station_id = station.config().station_id.clone();
    let refuse = |reason: String| async move {
        let mut event = AuditEvent::new(&station.station_actor(), "job_refused");
        event.job_id = Some(item.job_id.to_string());
        event.decision = Some("refused".into());
        event.reasons = vec![reason.clone()];
        station.record_event(event)?;
        if let Err(error) = hub
            .report(
                item.job_id,
                &station.config().station_id,
                ReportedStopState::Denied,
                Some(reason),
            )
            .await
        {
            tracing::warn!(job_id = %item.job_id, %error, "could not report a refusal to the hub");
        }
        Ok::<(), StationError>(())
    };
    let verified = match station.check_work_item(&item) {
        Ok(verified) => verified,
        Err(refusal) => return refuse(refusal).await,
    };
    let job = verified.job().clone();
    let job_id = job.job_id.to_string();

    // A stop offered again: after a lease ran out, a restart, or a replay by the hub.
    if let Some(existing) = station.run_for_job(&job_id)? {
        let interrupted = existing.was_interrupted();
        if !interrupted {
            if existing.delivered_at.is_some()
                || existing.status.is_final() && existing.status != RunStatus::Succeeded
            {
                let mut event = AuditEvent::new(&station.station_actor(), "replay_refused")
                    .run(&existing.run_id);
                event.job_id = Some(job_id.clone());
                event.reasons = vec![format!(
                    "job {job_id} already ran here as {} ({:?}); it is not run again",
                    existing.run_id, existing.status
                )];
                station.record_event(event)?;
            }
            return station.sync_run(hub, existing).await;
        }
    } else if !station.store().mark_job_seen(&job_id, job.expires_at)? {
        return refuse(format!("job.replay: job {job_id} was seen before and has no run here; refusing to run it again")).await;
    }

    // State handed over by the previous stop must be signed by that peer, per local config.
    let mut input_state = Vec::new();
    let mut received_state = None;
    if job.route.mode == RouteMode::Sequential && verified.stop_index() > 0 {
        let previous = &job.route.stations[verified.stop_index() - 1];
        match station.receive_state(hub, item.job_id, previous).await {
            Ok(incoming) => {
                input_state = incoming.files;
                received_state = Some(incoming.from);
            }
            Err(reason) => return refuse(format!("job.state: {reason}")).await,
        }
    }

    let reference = ImageReference::with_digest(
        job.train
            .repository
            .split_once('/')
            .map_or("", |(registry, _)| registry),
        job.train
            .repository
            .split_once('/')
            .map_or("", |(_, repository)| repository),
        job.train.digest.clone(),
    );
    let _ = hub
        .report(item.job_id, &station_id, ReportedStopState::Running, None)
        .await;
    let record = station
        .submit(Submission {
            reference,
            parameters: GivenParameters::Json(verified.parameters_for(&station_id)),
            job: Some(JobRef {
                job_id: job_id.clone(),
                signer: verified.signer().to_string(),
                route: Some(job.route.clone()),
                stop_index: verified.stop_index(),
            }),
            recipient: Some(job.recipient.clone()),
            input_state,
            received_state,
            actor: format!("hub:job:{job_id}"),
        })
        .await?;
    station.sync_run(hub, record).await
}

/// Carries out again, once, every job run that a previous stop of this station interrupted.
/// The hub does not offer a stop again once the station reported it running, so the station
/// resumes from what it kept: the train by digest, the parameters, the recipient, the state
/// handed over and the route. The interrupted container was removed; its outputs never left.
pub async fn resume_interrupted<E: Engine, H: HubLink>(
    station: &Station<E>,
    hub: &H,
) -> Result<(), StationError> {
    let newest_by_job = station.store().newest_run_per_job()?;
    for (job_id, record) in newest_by_job {
        let interrupted = record.was_interrupted();
        if !interrupted {
            continue;
        }
        let Ok(reference) = record.train.reference.parse::<ImageReference>() else {
            continue;
        };
        let old_dir = station.store().run_dir(&record.run_id);
        let mut input_state = Vec::new();
        let state_dir = old_dir.join("input").join("state");
        if let Ok(entries) = std::fs::read_dir(&state_dir) {
            for entry in entries.flatten() {
                if let Ok(bytes) = std::fs::read(entry.path()) {
                    input_state.push((entry.file_name().to_string_lossy().into_owned(), bytes));
                }
            }
        }
        let mut event =
            AuditEvent::new(&station.station_actor(), "run_resumed").run(&record.run_id);
        event.job_id = Some(job_id.clone());
        station.record_event(event)?;
        let resumed = station
            .submit(Submission {
                reference,
                parameters: GivenParameters::Json(record.parameters.clone()),
                job: record.job.clone(),
                recipient: record.recipient.clone(),
                input_state,
                received_state: record.received_state.clone(),
                actor: format!("station:resume:{}", record.run_id),
            })
            .await?;
        station.sync_run(hub, resumed).await?;
    }
    Ok(())
}

/// Runs the daemon until `shutdown` resolves: polls, handles work with at most `concurrency`
/// stops at once, and retries deliveries. In-flight runs finish before it returns.
pub async fn run<E: Engine + 'static>(
    station: Arc<Station<E>>,
    hub: Arc<HubClient>,
    poll_wait: Duration,
    concurrency: usize,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StationError> {
    let station_id = station.config().station_id.clone();
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut in_flight = tokio::task::JoinSet::new();
    let mut backoff = Duration::from_millis(250);
    tokio::pin!(shutdown);
    station.record_event(
        AuditEvent::new(&station.station_actor(), "daemon_started")
            .detail("hub", hub_url_of(&station)),
    )?;
    // Only the daemon recovers: an operator command running beside it must not take the
    // daemon's live runs for interrupted ones.
    station.recover_interrupted_runs()?;
    resume_interrupted(&station, hub.as_ref()).await?;
    let checkpoint_every = station.config().audit.checkpoint_every;
    let mut last_checkpoint: Option<std::time::Instant> = None;
    loop {
        station.flush_outbox(hub.as_ref()).await?;
        // A witness of the audit log at start and every `audit.checkpoint_every`.
        if last_checkpoint.is_none_or(|at| at.elapsed() >= checkpoint_every) {
            station.send_checkpoint(hub.as_ref()).await;
            last_checkpoint = Some(std::time::Instant::now());
        }
        while in_flight.try_join_next().is_some() {}
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let polled = tokio::select! {
            _ = &mut shutdown => break,
            polled = hub.poll_work(&station_id, poll_wait) => polled,
        };
        station.note_hub_contact(polled.as_ref().map(|_| ()).map_err(ToString::to_string));
        match polled {
            Ok(Some(item)) => {
                backoff = Duration::from_millis(250);
                let (station, hub) = (station.clone(), hub.clone());
                in_flight.spawn(async move {
                    let job_id = item.job_id;
                    if let Err(error) = handle_work(&station, hub.as_ref(), item).await {
                        tracing::error!(%job_id, %error, "handling work failed; the hub will offer it again when the lease runs out");
                    }
                    drop(permit);
                });
            }
            Ok(None) => backoff = Duration::from_millis(250),
            Err(error) => {
                tracing::warn!(%error, backoff_ms = backoff.as_millis() as u64, "cannot reach the hub; retrying");
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
    tracing::info!(
        n_in_flight = in_flight.len(),
        "shutting down: waiting for runs in progress"
    );
    while in_flight.join_next().await.is_some() {}
    station.flush_outbox(hub.as_ref()).await?;
    station.record_event(AuditEvent::new(&station.station_actor(), "daemon_stopped"))?;
    Ok(())
}

fn hub_url_of<E: Engine>(station: &Station<E>) -> String {
    station
        .config()
        .hub
        .as_ref()
        .map(|h| h.display_address())
        .unwrap_or_default()
}
