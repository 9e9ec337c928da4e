//! `/v1/jobs` and `/v1/jobs/{job_id}`: a researcher submits a signed job, follows it and
//! cancels it.
//!
//! Owns checking the job envelope against the researcher's registered key and the job's own
//! rules before it is stored, and that a researcher sees only their own jobs. Which state a
//! job is in is `crate::rules`'s to say, not this file's.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use pht_api::v1;
use pht_core::dsse::{self, Envelope};
use pht_core::job::{JobV1, CLOCK_SKEW, JOB_PAYLOAD_TYPE};
use pht_core::PublicKey;

use super::{parse_job_id, parse_json, path, stop_status, validate_id, HubResult};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::rules;
use crate::store::{JobRow, StopRow};
use crate::HubState;

fn job_status(job: &JobRow, stops: &[StopRow]) -> v1::JobStatus {
    let stop_states: Vec<v1::StopState> = stops.iter().map(|stop| stop.status).collect();
    v1::JobStatus {
        job_id: job.job_id,
        researcher: job.researcher_id.clone(),
        train: v1::TrainSummary {
            repository: job.train_repository.clone(),
            digest: job.train_digest.clone(),
        },
        mode: job.mode,
        issued_at: job.issued_at,
        expires_at: job.expires_at,
        submitted_at: job.submitted_at,
        status: rules::job_state(job.cancelled_at.is_some(), &stop_states),
        stops: stops.iter().map(stop_status).collect(),
    }
}

/// Brings lapsed leases and expired work of `job_id` up to date, then reads its status.
async fn current_job_status(state: &HubState, job: &JobRow) -> HubResult<v1::JobStatus> {
    let released = state
        .store
        .release_and_expire(state.clock.now(), Some(job.job_id))
        .await?;
    for station in released {
        state.offer_work(&station).await;
    }
    let stops = state.store.stops(job.job_id).await?;
    Ok(job_status(job, &stops))
}

/// The job, if it exists (404) and belongs to the calling researcher (403).
pub(super) async fn job_of_researcher(
    state: &HubState,
    principal: &Principal,
    job_id: &str,
) -> HubResult<JobRow> {
    let researcher = principal.require_researcher()?;
    let job_id = parse_job_id(job_id)?;
    let job = state
        .store
        .job(job_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no job `{job_id}`")))?;
    if job.researcher_id != researcher {
        return Err(ApiError::forbidden(format!(
            "job `{job_id}` belongs to another researcher"
        )));
    }
    Ok(job)
}

pub async fn submit_job(
    State(state): State<Arc<HubState>>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> HubResult<(StatusCode, Json<v1::JobStatus>)> {
    let researcher_id = principal.require_researcher()?.to_string();
    let envelope_text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("the job envelope is not UTF-8 JSON"))?;
    let envelope: Envelope = parse_json(&body)?;
    let researcher = state
        .store
        .researcher(&researcher_id)
        .await?
        .ok_or_else(|| {
            ApiError::unauthenticated(format!("researcher `{researcher_id}` is not registered"))
        })?;
    let key = PublicKey::from_pem(&researcher.public_key_pem)
        .map_err(|error| ApiError::internal(&error))?;
    let trusted = [(researcher_id.clone(), key)];
    let verified = dsse::verify(&envelope, JOB_PAYLOAD_TYPE, &trusted).map_err(|error| {
        ApiError::unprocessable(
            "signatures",
            format!("the envelope is not signed by researcher `{researcher_id}`'s registered key: {error}"),
        )
    })?;
    let job: JobV1 = serde_json::from_slice(&verified.payload)
        .map_err(|error| ApiError::unprocessable("payload", error))?;
    job.validate().map_err(|error| {
        let field = match error {
            pht_core::job::JobRefusal::Recipient(_) => "recipient",
            pht_core::job::JobRefusal::BadRoute(_) => "route",
            _ => "payload",
        };
        ApiError::unprocessable(field, error)
    })?;
    let now = state.clock.now();
    if now >= job.expires_at {
        return Err(ApiError::unprocessable(
            "expires_at",
            format!("the job expired at {} (now {now})", job.expires_at),
        ));
    }
    if job.issued_at > now + CLOCK_SKEW {
        return Err(ApiError::unprocessable(
            "issued_at",
            format!(
                "{} is in the future (now {now}); check the clock",
                job.issued_at
            ),
        ));
    }
    for station in &job.route.stations {
        validate_id("route.stations", station)?;
    }
    let unregistered = state
        .store
        .unregistered_stations(&job.route.stations)
        .await?;
    if !unregistered.is_empty() {
        return Err(ApiError::unprocessable(
            "route.stations",
            format!("not registered at this hub: {}", unregistered.join(", ")),
        ));
    }
    let row = JobRow {
        job_id: job.job_id,
        researcher_id,
        envelope: envelope_text.to_string(),
        mode: job.route.mode,
        train_repository: job.train.repository.clone(),
        train_digest: job.train.digest.clone(),
        issued_at: job.issued_at,
        expires_at: job.expires_at,
        submitted_at: now,
        cancelled_at: None,
    };
    let Some(stops) = state.store.insert_job(&row, &job.route.stations).await? else {
        // The same envelope again from the same researcher is a retry (an answer lost between
        // a load balancer and the client): answer it as the first time, without a new job.
        let stored = state.store.job(job.job_id).await?;
        if let Some(stored) = stored.filter(|stored| {
            stored.researcher_id == row.researcher_id && stored.envelope == row.envelope
        }) {
            return Ok((
                StatusCode::OK,
                Json(current_job_status(&state, &stored).await?),
            ));
        }
        return Err(ApiError::conflict(format!(
            "`job_id`: job `{}` was already submitted with another envelope; give a new job a new id",
            job.job_id
        )));
    };
    // The store announced the ready stops to the other replicas with the job; this replica's
    // own polls are woken here.
    for stop in stops
        .iter()
        .filter(|stop| stop.status == v1::StopState::Ready)
    {
        state.notifier.wake(&stop.station_id);
    }
    tracing::info!(job_id = %job.job_id, researcher = %row.researcher_id, n_stops = stops.len(), "job submitted");
    Ok((StatusCode::CREATED, Json(job_status(&row, &stops))))
}

pub async fn get_job_status(
    State(state): State<Arc<HubState>>,
    Extension(principal): Extension<Principal>,
    job_id: Result<Path<String>, PathRejection>,
) -> HubResult<Json<v1::JobStatus>> {
    let job = job_of_researcher(&state, &principal, &path(job_id)?).await?;
    Ok(Json(current_job_status(&state, &job).await?))
}

pub async fn cancel_job(
    State(state): State<Arc<HubState>>,
    Extension(principal): Extension<Principal>,
    job_id: Result<Path<String>, PathRejection>,
) -> HubResult<Json<v1::JobStatus>> {
    let job = job_of_researcher(&state, &principal, &path(job_id)?).await?;
    let status = current_job_status(&state, &job).await?;
    if status.status == v1::JobState::Cancelled {
        return Ok(Json(status));
    }
    if status.status != v1::JobState::Active {
        return Err(ApiError::conflict(format!(
            "job `{}` already ended; there is nothing to cancel",
            job.job_id
        )));
    }
    state
        .store
        .cancel_job(job.job_id, state.clock.now())
        .await?;
    tracing::info!(job_id = %job.job_id, "job cancelled");
    let job = state
        .store
        .job(job.job_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no job `{}`", job.job_id)))?;
    Ok(Json(current_job_status(&state, &job).await?))
}
