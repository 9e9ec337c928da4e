//! A station's side of a job: the long-poll for work (which leases a stop), the directory of
//! stations, stop status reports and the state handed on from the previous stop.
//!
//! Owns that a station acts only on its own stops and the retry when a report races a lease
//! lapse or a cancellation. Whether a report is allowed is `crate::rules`'s to decide.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use pht_api::v1;
use pht_core::job::RouteMode;

use super::{blob_response, parse_job_id, parse_json, path, read_blob, stop_status, HubResult};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::rules::{self, ReportDecision};
use crate::store::{JobRow, Lease, StopRow, StopTransition};
use crate::HubState;

/// Longest reason a station may give; reasons are for people, not for data.
const MAX_REASON_LENGTH: usize = 4096;

/// The stop of `station` in `job_id`, for that station only.
pub(super) async fn own_stop(
    state: &HubState,
    principal: &Principal,
    job_id: &str,
    station: &str,
) -> HubResult<(JobRow, StopRow)> {
    principal.require_station(station)?;
    let job_id = parse_job_id(job_id)?;
    let not_found =
        || ApiError::not_found(format!("job `{job_id}` has no stop at station `{station}`"));
    let job = state.store.job(job_id).await?.ok_or_else(not_found)?;
    let stop = state
        .store
        .stop_of_station(job_id, station)
        .await?
        .ok_or_else(not_found)?;
    Ok((job, stop))
}

fn wait_from_query(query: Option<&str>) -> HubResult<u64> {
    let Some(query) = query else {
        return Ok(0);
    };
    for pair in query.split('&') {
        if let Some(value) = pair.strip_prefix("wait=") {
            return value.parse().map_err(|_| {
                ApiError::bad_request(format!("`wait`: `{value}` is not a number of seconds"))
            });
        }
    }
    Ok(0)
}

fn work_item(lease: Lease) -> HubResult<v1::WorkItem> {
    let Lease {
        stop,
        envelope,
        mode,
    } = lease;
    let envelope = serde_json::value::RawValue::from_string(envelope)
        .map_err(|error| ApiError::internal(&error))?;
    Ok(v1::WorkItem {
        job_id: stop.job_id,
        stop_index: stop.stop_index,
        station: stop.station_id,
        mode,
        envelope,
        previous_state: stop.input_state,
        lease_expires_at: stop.lease_expires_at.unwrap_or(stop.updated_at),
    })
}

async fn try_lease(state: &HubState, station: &str) -> HubResult<Option<v1::WorkItem>> {
    let now = state.clock.now();
    let lease_until = now
        + chrono::Duration::from_std(state.settings.pickup_lease)
            .unwrap_or(chrono::Duration::minutes(5));
    match state
        .store
        .lease_next_stop(station, now, lease_until)
        .await?
    {
        Some(lease) => {
            tracing::info!(job_id = %lease.stop.job_id, station, stop_index = lease.stop.stop_index, "stop leased");
            work_item(lease).map(Some)
        }
        None => Ok(None),
    }
}

pub async fn poll_work(
    State(state): State<Arc<HubState>>,
    Extension(principal): Extension<Principal>,
    station: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> HubResult<Response> {
    let station = path(station)?;
    principal.require_station(&station)?;
    let wait = std::time::Duration::from_secs(wait_from_query(query.as_deref())?)
        .min(state.settings.long_poll_max_wait);
    let deadline = tokio::time::Instant::now() + wait;
    let notify = state.notifier.for_station(&station);
    let mut draining = state.draining.subscribe();
    // Counted as waiting from its first wait until it answers, or until its connection drops
    // and the server drops this future (the guard's drop uncounts it either way).
    let mut waiting = None;
    loop {
        // Register for the wake-up before looking, so that work arriving between the look and
        // the wait is not missed.
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(item) = try_lease(&state, &station).await? {
            return Ok(Json(item).into_response());
        }
        if *draining.borrow_and_update() {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        if waiting.is_none() {
            waiting = state.metrics.as_ref().map(|metrics| metrics.poll_waiting());
        }
        tokio::select! {
            woken = tokio::time::timeout_at(deadline, notified) => {
                if woken.is_err() {
                    return Ok(StatusCode::NO_CONTENT.into_response());
                }
            }
            // Shutting down: no work now; the station polls again (through a load balancer,
            // another replica).
            _ = draining.changed() => return Ok(StatusCode::NO_CONTENT.into_response()),
        }
    }
}

pub async fn station_directory(
    State(state): State<Arc<HubState>>,
    Extension(_principal): Extension<Principal>,
    station: Result<Path<String>, PathRejection>,
) -> HubResult<Json<v1::StationDirectoryEntry>> {
    let station = path(station)?;
    let row = state
        .store
        .station(&station)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no station `{station}`")))?;
    Ok(Json(v1::StationDirectoryEntry {
        id: row.id,
        age_recipient: row.age_recipient,
        public_key_pem: row.public_key_pem,
    }))
}

pub async fn report_stop_status(
    State(state): State<Arc<HubState>>,
    Extension(principal): Extension<Principal>,
    ids: Result<Path<(String, String)>, PathRejection>,
    body: Bytes,
) -> HubResult<Json<v1::StopStatus>> {
    let (job_id, station) = path(ids)?;
    let report: v1::StopStatusReport = parse_json(&body)?;
    let reason = report
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    if reason.is_none() && report.status != v1::ReportedStopState::Running {
        return Err(ApiError::unprocessable(
            "reason",
            "give a reason for every status but `running`",
        ));
    }
    if reason.is_some_and(|reason| reason.len() > MAX_REASON_LENGTH) {
        return Err(ApiError::unprocessable(
            "reason",
            format!("longer than {MAX_REASON_LENGTH} bytes"),
        ));
    }
    let (job, mut stop) = own_stop(&state, &principal, &job_id, &station).await?;
    // One retry: a lost race (lease lapse, cancellation) is decided again on what won.
    for _ in 0..2 {
        match rules::decide_report(stop.status, report.status) {
            ReportDecision::AlreadyApplied => return Ok(Json(stop_status(&stop))),
            ReportDecision::Refuse(why) => return Err(ApiError::conflict(why)),
            ReportDecision::Apply => {}
        }
        let skip_reason = (job.mode == RouteMode::Sequential
            && rules::report_ends_route(report.status))
        .then(|| {
            format!(
                "stop {} at station `{station}` ended as {}",
                stop.stop_index,
                rules::state_name(report.status.into())
            )
        });
        let transition = StopTransition {
            job_id: job.job_id,
            stop_index: stop.stop_index,
            from: stop.status,
            to: report.status.into(),
            reason,
            now: state.clock.now(),
        };
        if state
            .store
            .transition_stop(&transition, skip_reason.as_deref())
            .await?
        {
            tracing::info!(job_id = %job.job_id, station, status = rules::state_name(transition.to), "stop status reported");
            stop = state
                .store
                .stop_of_station(job.job_id, &station)
                .await?
                .ok_or_else(|| ApiError::not_found("the stop vanished"))?;
            return Ok(Json(stop_status(&stop)));
        }
        stop = state
            .store
            .stop_of_station(job.job_id, &station)
            .await?
            .ok_or_else(|| ApiError::not_found("the stop vanished"))?;
    }
    Err(ApiError::conflict(
        "the stop changed while the report was applied; read its status and retry",
    ))
}

pub async fn fetch_stop_state(
    State(state): State<Arc<HubState>>,
    Extension(principal): Extension<Principal>,
    ids: Result<Path<(String, String)>, PathRejection>,
) -> HubResult<Response> {
    let (job_id, station) = path(ids)?;
    let (job, stop) = own_stop(&state, &principal, &job_id, &station).await?;
    let digest = stop.input_state.ok_or_else(|| {
        ApiError::not_found(format!(
            "no state was handed to station `{station}` for job `{}`",
            job.job_id
        ))
    })?;
    Ok(blob_response(read_blob(&state, &digest).await?))
}
