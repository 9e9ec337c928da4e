//! `pht-station run`: the daemon. It long-polls the hub (outbound only), checks every work item
//! against the signed job envelope and its own keys, runs the stop through the station pipeline
//! with a concurrency limit, and delivers sealed results through a durable outbox: a result
//! stays in the run directory until the hub has acknowledged it.
//!
//! Owns the conversation with the hub. Never trusts the hub for integrity: the envelope is
//! verified again, the work item must agree with it, state from the previous stop must be signed
//! by a peer key from the local configuration, and state for the next stop is encrypted to the
//! peer's locally configured recipient.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use pht_api::v1::{ReportedStopState, StopStatusReport, WorkItem};
use pht_api::HubClient;
use pht_core::dsse::Envelope;
use pht_core::job::{verify_job, RouteMode};
use pht_core::{ImageReference, PublicKey};
use uuid::Uuid;

use crate::audit::AuditEvent;
use crate::engine::Engine;
use crate::outputs::OutputDecision;
use crate::station::{GivenParameters, Station, StationError, Submission};
use crate::store::{JobRef, RunRecord, RunStatus};

/// The hub, as the daemon uses it: behind a trait so the refusal logic is testable with a fake.
pub trait HubLink: Send + Sync {
    fn report(
        &self,
        job_id: Uuid,
        station: &str,
        status: ReportedStopState,
        reason: Option<String>,
    ) -> impl Future<Output = Result<(), String>> + Send;
    fn fetch_state(
        &self,
        job_id: Uuid,
        station: &str,
    ) -> impl Future<Output = Result<Bytes, String>> + Send;
    fn upload(
        &self,
        job_id: Uuid,
        station: &str,
        result: Vec<u8>,
        next_state: Option<Vec<u8>>,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

impl HubLink for HubClient {
    async fn report(
        &self,
        job_id: Uuid,
        station: &str,
        status: ReportedStopState,
        reason: Option<String>,
    ) -> Result<(), String> {
        self.report_stop_status(job_id, station, &StopStatusReport { status, reason })
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    async fn fetch_state(&self, job_id: Uuid, station: &str) -> Result<Bytes, String> {
        self.fetch_stop_state(job_id, station)
            .await
            .map_err(|e| e.to_string())
    }

    async fn upload(
        &self,
        job_id: Uuid,
        station: &str,
        result: Vec<u8>,
        next_state: Option<Vec<u8>>,
    ) -> Result<(), String> {
        self.upload_result(job_id, station, &result, next_state.as_deref())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

fn first_reason(record: &RunRecord) -> Option<String> {
    let reasons = record.reasons.join("; ");
    Some(if reasons.is_empty() {
        format!("run {}", record.run_id)
    } else {
        format!("run {}: {reasons}", record.run_id)
    })
}

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
    let envelope: Envelope = match serde_json::from_str(item.envelope.get()) {
        Ok(envelope) => envelope,
        Err(error) => {
            return refuse(format!(
                "job.envelope: the hub sent an envelope that is not DSSE JSON: {error}"
            ))
            .await
        }
    };
    let verified = match verify_job(&envelope, station.job_keys(), &station_id, Utc::now()) {
        Ok(verified) => verified,
        Err(refusal) => return refuse(format!("job.envelope: {refusal}")).await,
    };
    let job = verified.job().clone();
    if item.job_id != job.job_id
        || item.stop_index as usize != verified.stop_index()
        || item.mode != job.route.mode
        || item.station != station_id
    {
        return refuse(format!(
            "job.work_item: the hub's work item (job {}, stop {}, {:?}, for station `{}`) disagrees with the signed job (job {}, stop {}, {:?}, this station `{}`)",
            item.job_id,
            item.stop_index,
            item.mode,
            item.station,
            job.job_id,
            verified.stop_index(),
            job.route.mode,
            station_id
        ))
        .await;
    }
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
            return sync_run(station, hub, existing).await;
        }
    } else if !station.store().mark_job_seen(&job_id, job.expires_at)? {
        return refuse(format!("job.replay: job {job_id} was seen before and has no run here; refusing to run it again")).await;
    }

    // State handed over by the previous stop must be signed by that peer, per local config.
    let mut input_state = Vec::new();
    if job.route.mode == RouteMode::Sequential && verified.stop_index() > 0 {
        let previous = &job.route.stations[verified.stop_index() - 1];
        match receive_state(station, hub, item.job_id, previous).await {
            Ok(files) => input_state = files,
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
            actor: format!("hub:job:{job_id}"),
        })
        .await?;
    sync_run(station, hub, record).await
}

async fn receive_state<E: Engine, H: HubLink>(
    station: &Station<E>,
    hub: &H,
    job_id: Uuid,
    previous: &str,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let peer = station.config().peers.get(previous).ok_or_else(|| {
        format!("no peer `{previous}` in the station configuration: its state cannot be verified")
    })?;
    let pem = std::fs::read_to_string(&peer.public_key)
        .map_err(|e| format!("cannot read {}: {e}", peer.public_key.display()))?;
    let key =
        PublicKey::from_pem(&pem).map_err(|e| format!("{}: {e}", peer.public_key.display()))?;
    let identity = crate::keys::read_age_identity(&station.config().key_dir)?.ok_or_else(|| {
        "this station has no age identity (station.age): run `pht-station keys init`".to_string()
    })?;
    let sealed = hub
        .fetch_state(job_id, &station.config().station_id)
        .await?;
    let opened = pht_core::seal::open_state(&sealed, &identity, &[(previous.to_string(), key)])
        .map_err(|e| e.to_string())?;
    let predicate = opened.predicate();
    if predicate.job_id != job_id
        || predicate.next_station != station.config().station_id
        || predicate.station != previous
    {
        return Err(format!(
            "the state is for job {} from {} to {}, not job {job_id} from {previous} to {}",
            predicate.job_id,
            predicate.station,
            predicate.next_station,
            station.config().station_id
        ));
    }
    Ok(opened
        .files()
        .iter()
        .map(|(path, bytes)| (path.trim_start_matches("state/").to_string(), bytes.clone()))
        .collect())
}

/// Tells the hub where a run stands, and delivers its sealed result once released. Idempotent:
/// the outbox calls it again until the hub has acknowledged.
pub async fn sync_run<E: Engine, H: HubLink>(
    station: &Station<E>,
    hub: &H,
    mut record: RunRecord,
) -> Result<(), StationError> {
    let Some(job) = record.job.clone() else {
        return Ok(());
    };
    let Ok(job_id) = job.job_id.parse::<Uuid>() else {
        return Ok(());
    };
    let station_id = station.config().station_id.clone();
    let decision = record.output_decision.as_ref().map(|d| d.decision);
    let (status, reason) = match (record.status, decision) {
        (RunStatus::Refused | RunStatus::Rejected, _) => {
            (ReportedStopState::Denied, first_reason(&record))
        }
        (RunStatus::Failed | RunStatus::Error, _) => {
            (ReportedStopState::Failed, first_reason(&record))
        }
        (RunStatus::Succeeded, Some(OutputDecision::Blocked)) => (
            ReportedStopState::Blocked,
            Some(format!(
                "run {}: outputs blocked at the station",
                record.run_id
            )),
        ),
        (RunStatus::Succeeded, Some(OutputDecision::Withheld)) => (
            ReportedStopState::Withheld,
            Some(format!(
                "run {}: outputs withheld for review by the station operator",
                record.run_id
            )),
        ),
        (RunStatus::Succeeded, Some(OutputDecision::Released)) if record.sealed.is_some() => {
            if record.delivered_at.is_none() {
                deliver(station, hub, &mut record, job_id).await?;
            }
            return Ok(());
        }
        _ => (ReportedStopState::Running, None),
    };
    let status_name = format!("{status:?}");
    if record.reported.as_deref() == Some(status_name.as_str()) {
        return Ok(());
    }
    match hub.report(job_id, &station_id, status, reason).await {
        Ok(()) => {
            record.reported = Some(status_name);
            station.store().save(&record)?;
        }
        Err(error) => {
            tracing::warn!(run_id = %record.run_id, %error, "could not report to the hub; will retry")
        }
    }
    Ok(())
}

async fn deliver<E: Engine, H: HubLink>(
    station: &Station<E>,
    hub: &H,
    record: &mut RunRecord,
    job_id: Uuid,
) -> Result<(), StationError> {
    let run_dir = station.store().run_dir(&record.run_id);
    let result = std::fs::read(run_dir.join("result.age")).map_err(|e| {
        StationError::Config(format!(
            "cannot read the sealed result of {}: {e}",
            record.run_id
        ))
    })?;
    let next_state = next_state(station, record, job_id)?;
    match hub
        .upload(job_id, &station.config().station_id, result, next_state)
        .await
    {
        Ok(()) => {
            record.delivered_at = Some(Utc::now());
            record.reported = Some("Delivered".into());
            station.store().save(record)?;
            let mut event =
                AuditEvent::new(&station.station_actor(), "delivered").run(&record.run_id);
            event.job_id = Some(job_id.to_string());
            event.details.insert(
                "bundle_sha256".into(),
                record
                    .sealed
                    .as_ref()
                    .map(|s| s.sha256.clone())
                    .unwrap_or_default()
                    .into(),
            );
            station.record_event(event)?;
        }
        Err(error) => {
            tracing::warn!(run_id = %record.run_id, %error, "delivery failed; the result stays in the outbox")
        }
    }
    Ok(())
}

/// The state for the next stop of a sequential route, sealed once and kept, so a retried
/// upload sends the same bytes.
fn next_state<E: Engine>(
    station: &Station<E>,
    record: &RunRecord,
    job_id: Uuid,
) -> Result<Option<Vec<u8>>, StationError> {
    let Some(job) = &record.job else {
        return Ok(None);
    };
    let path = station
        .store()
        .run_dir(&record.run_id)
        .join("state-for-next.age");
    if let Ok(bytes) = std::fs::read(&path) {
        return Ok(Some(bytes));
    }
    let Some(route) = route_of(station, record) else {
        return Ok(None);
    };
    if route.mode != RouteMode::Sequential {
        return Ok(None);
    }
    let Some(next) = route.stations.get(job.stop_index + 1) else {
        return Ok(None);
    };
    let peer = station.config().peers.get(next).ok_or_else(|| {
        StationError::Config(format!(
            "the next stop `{next}` is not a peer in {}: its age recipient is unknown",
            station.config().source.display()
        ))
    })?;
    let key = station.station_key().ok_or_else(|| {
        StationError::Config("no station key: run `pht-station keys init`".into())
    })?;
    let outputs_dir = station.store().run_dir(&record.run_id).join("outputs");
    let mut files = Vec::new();
    for state_path in &record.state_paths {
        if let Ok(bytes) = std::fs::read(outputs_dir.join(state_path)) {
            files.push((state_path.clone(), bytes));
        }
    }
    let predicate =
        pht_core::intoto::StatePredicateV1 {
            job_id,
            run_id: record.run_id.clone(),
            train: pht_core::job::TrainPin {
                repository: format!("{}/{}", record.train.registry, record.train.repository),
                digest: record.train.digest.parse().map_err(
                    |e: pht_core::digest::DigestError| StationError::Config(e.to_string()),
                )?,
            },
            station: station.config().station_id.clone(),
            next_station: next.clone(),
            stop_index: job.stop_index,
            finished_at: record.finished_at.unwrap_or_else(Utc::now),
        };
    let sealed = pht_core::seal::seal_state(&files, predicate, key, &peer.age_recipient)
        .map_err(|e| StationError::Config(format!("cannot seal state for {next}: {e}")))?;
    crate::store::write_atomic(&path, &sealed)
        .map_err(|e| StationError::Config(format!("cannot write {}: {e}", path.display())))?;
    Ok(Some(sealed))
}

/// The route of a run's job, as the verified envelope gave it.
fn route_of<E: Engine>(_station: &Station<E>, record: &RunRecord) -> Option<pht_core::job::Route> {
    record.job.as_ref()?.route.clone()
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
                actor: format!("station:resume:{}", record.run_id),
            })
            .await?;
        sync_run(station, hub, resumed).await?;
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
    loop {
        flush_outbox(&station, hub.as_ref()).await?;
        while in_flight.try_join_next().is_some() {}
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let polled = tokio::select! {
            _ = &mut shutdown => break,
            polled = hub.poll_work(&station_id, poll_wait) => polled,
        };
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
    flush_outbox(&station, hub.as_ref()).await?;
    station.record_event(AuditEvent::new(&station.station_actor(), "daemon_stopped"))?;
    Ok(())
}

fn hub_url_of<E: Engine>(station: &Station<E>) -> String {
    station
        .config()
        .hub
        .as_ref()
        .map(|h| h.url.clone())
        .unwrap_or_default()
}

/// Reports and delivers everything the hub does not know yet (operator decisions made with
/// `pht-station outputs …`, results whose upload failed).
pub async fn flush_outbox<E: Engine, H: HubLink>(
    station: &Station<E>,
    hub: &H,
) -> Result<(), StationError> {
    // Only the newest run of a job speaks for it: an interrupted run that was resumed must not
    // report its interruption as the stop's outcome.
    let newest_by_job = station.store().newest_run_per_job()?;
    for record in newest_by_job.into_values() {
        let interrupted = record.was_interrupted();
        if record.delivered_at.is_none() && record.status != RunStatus::Running && !interrupted {
            sync_run(station, hub, record).await?;
        }
    }
    Ok(())
}
