//! The `/v1` handlers: admin registration, job submission and following, and the station's
//! work loop (long-poll, status, state, result).
//!
//! Each handler checks who may do what against the path (a station only its own stops, a
//! researcher only their own jobs), asks [`crate::rules`] whether the change is allowed, and
//! applies it through [`crate::store`] and [`crate::blobs`]. No SQL here, and never a body or
//! result in a log line.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::PathRejection;
use axum::extract::{Multipart, Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use pht_api::v1;
use pht_core::dsse::{self, Envelope};
use pht_core::job::{JobV1, RouteMode, CLOCK_SKEW, JOB_PAYLOAD_TYPE};
use pht_core::{Digest, PublicKey};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::rules::{self, ReportDecision, UploadDecision};
use crate::store::{
    Completion, JobRow, Registration, ResearcherRow, StationRow, StopRow, StopTransition,
    StoredResult,
};
use crate::HubState;

type HubResult<T> = Result<T, ApiError>;

/// Longest reason a station may give; reasons are for people, not for data.
const MAX_REASON_LENGTH: usize = 4096;
const MAX_ID_LENGTH: usize = 64;

fn parse_json<T: DeserializeOwned>(body: &[u8]) -> HubResult<T> {
    serde_json::from_slice(body)
        .map_err(|error| ApiError::bad_request(format!("invalid request body: {error}")))
}

fn path<T>(path: Result<Path<T>, PathRejection>) -> HubResult<T> {
    path.map(|Path(value)| value)
        .map_err(|rejection| ApiError::bad_request(format!("invalid path: {rejection}")))
}

fn parse_job_id(job_id: &str) -> HubResult<Uuid> {
    Uuid::parse_str(job_id)
        .map_err(|_| ApiError::bad_request(format!("`job_id`: `{job_id}` is not a UUID")))
}

/// Station and researcher ids: `[A-Za-z0-9._-]`, starting with a letter or digit, at most 64.
pub fn validate_id(field: &str, id: &str) -> HubResult<()> {
    let valid = !id.is_empty()
        && id.len() <= MAX_ID_LENGTH
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(ApiError::unprocessable(
            field,
            format!(
                "`{id}` is not a valid id: use 1 to {MAX_ID_LENGTH} of A-Z a-z 0-9 . _ -, starting with a letter or digit"
            ),
        ))
    }
}

fn validate_public_key(pem: &str) -> HubResult<()> {
    PublicKey::from_pem(pem)
        .map(|_| ())
        .map_err(|error| ApiError::unprocessable("public_key_pem", error))
}

// Public.

pub async fn health() -> Json<v1::Health> {
    Json(v1::Health {
        status: "ok".into(),
    })
}

/// The committed OpenAPI document, served as is.
pub const OPENAPI_DOCUMENT: &str = include_str!("../openapi.json");

pub async fn openapi_document() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        OPENAPI_DOCUMENT,
    )
        .into_response()
}

pub async fn fallback() -> ApiError {
    ApiError::not_found("no such endpoint; see /v1/openapi.json")
}

// Admin.

fn station_record(row: StationRow) -> v1::StationRecord {
    v1::StationRecord {
        id: row.id,
        public_key_pem: row.public_key_pem,
        age_recipient: row.age_recipient,
        registered_at: row.registered_at,
    }
}

fn researcher_record(row: ResearcherRow) -> v1::ResearcherRecord {
    v1::ResearcherRecord {
        id: row.id,
        public_key_pem: row.public_key_pem,
        registered_at: row.registered_at,
    }
}

pub async fn register_station(
    State(state): State<Arc<HubState>>,
    body: Bytes,
) -> HubResult<(StatusCode, Json<v1::StationRecord>)> {
    let request: v1::RegisterStationRequest = parse_json(&body)?;
    validate_id("id", &request.id)?;
    validate_public_key(&request.public_key_pem)?;
    request
        .age_recipient
        .parse::<age::x25519::Recipient>()
        .map_err(|error| ApiError::unprocessable("age_recipient", error))?;
    let row = StationRow {
        id: request.id,
        public_key_pem: request.public_key_pem,
        age_recipient: request.age_recipient,
        registered_at: state.clock.now(),
    };
    match state.store.register_station(&row).await? {
        Registration::Created(stored) => {
            tracing::info!(station = %stored.id, "station registered");
            Ok((StatusCode::CREATED, Json(station_record(stored))))
        }
        Registration::Existing(stored)
            if stored.public_key_pem == row.public_key_pem
                && stored.age_recipient == row.age_recipient =>
        {
            Ok((StatusCode::OK, Json(station_record(stored))))
        }
        Registration::Existing(stored) => Err(ApiError::conflict(format!(
            "station `{}` is already registered with a different key or recipient",
            stored.id
        ))),
    }
}

pub async fn list_stations(State(state): State<Arc<HubState>>) -> HubResult<Json<v1::StationList>> {
    let stations = state.store.stations().await?;
    Ok(Json(v1::StationList {
        stations: stations.into_iter().map(station_record).collect(),
    }))
}

pub async fn register_researcher(
    State(state): State<Arc<HubState>>,
    body: Bytes,
) -> HubResult<(StatusCode, Json<v1::ResearcherRecord>)> {
    let request: v1::RegisterResearcherRequest = parse_json(&body)?;
    validate_id("id", &request.id)?;
    validate_public_key(&request.public_key_pem)?;
    let row = ResearcherRow {
        id: request.id,
        public_key_pem: request.public_key_pem,
        registered_at: state.clock.now(),
    };
    match state.store.register_researcher(&row).await? {
        Registration::Created(stored) => {
            tracing::info!(researcher = %stored.id, "researcher registered");
            Ok((StatusCode::CREATED, Json(researcher_record(stored))))
        }
        Registration::Existing(stored) if stored.public_key_pem == row.public_key_pem => {
            Ok((StatusCode::OK, Json(researcher_record(stored))))
        }
        Registration::Existing(stored) => Err(ApiError::conflict(format!(
            "researcher `{}` is already registered with a different key",
            stored.id
        ))),
    }
}

pub async fn list_researchers(
    State(state): State<Arc<HubState>>,
) -> HubResult<Json<v1::ResearcherList>> {
    let researchers = state.store.researchers().await?;
    Ok(Json(v1::ResearcherList {
        researchers: researchers.into_iter().map(researcher_record).collect(),
    }))
}

// Researcher.

fn result_summary(stop: &StopRow) -> Option<v1::ResultSummary> {
    stop.result.as_ref().map(|result| v1::ResultSummary {
        station: stop.station_id.clone(),
        stop_index: stop.stop_index,
        digest: result.digest.clone(),
        size_bytes: result.size_bytes,
        uploaded_at: result.uploaded_at,
    })
}

fn stop_status(stop: &StopRow) -> v1::StopStatus {
    v1::StopStatus {
        index: stop.stop_index,
        station: stop.station_id.clone(),
        status: stop.status,
        reason: stop.reason.clone(),
        updated_at: stop.updated_at,
        input_state: stop.input_state.clone(),
        result: result_summary(stop),
    }
}

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
        state.notifier.wake(&station);
    }
    let stops = state.store.stops(job.job_id).await?;
    Ok(job_status(job, &stops))
}

/// The job, if it exists (404) and belongs to the calling researcher (403).
async fn job_of_researcher(
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
    job.validate()
        .map_err(|error| ApiError::unprocessable("payload", error))?;
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
    if !state.store.insert_job(&row, &job.route.stations).await? {
        return Err(ApiError::conflict(format!(
            "`job_id`: job `{}` was already submitted",
            job.job_id
        )));
    }
    let stops = state.store.stops(job.job_id).await?;
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

pub async fn list_results(
    State(state): State<Arc<HubState>>,
    Extension(principal): Extension<Principal>,
    job_id: Result<Path<String>, PathRejection>,
) -> HubResult<Json<v1::ResultList>> {
    let job = job_of_researcher(&state, &principal, &path(job_id)?).await?;
    let stops = state.store.stops(job.job_id).await?;
    Ok(Json(v1::ResultList {
        job_id: job.job_id,
        results: stops.iter().filter_map(result_summary).collect(),
    }))
}

fn blob_response(bytes: Bytes) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::HeaderName::from_static(pht_core::httpsig::CONTENT_DIGEST_HEADER),
                pht_core::httpsig::content_digest(&bytes),
            ),
        ],
        bytes,
    )
        .into_response()
}

async fn read_blob(state: &HubState, digest: &Digest) -> HubResult<Bytes> {
    state.blobs.get(digest).await?.ok_or_else(|| {
        ApiError::internal(&crate::blobs::BlobError::Task(format!(
            "blob {digest} is recorded in the database but missing on disk"
        )))
    })
}

pub async fn download_result(
    State(state): State<Arc<HubState>>,
    Extension(principal): Extension<Principal>,
    ids: Result<Path<(String, String)>, PathRejection>,
) -> HubResult<Response> {
    let (job_id, station) = path(ids)?;
    let job = job_of_researcher(&state, &principal, &job_id).await?;
    let stop = state
        .store
        .stop_of_station(job.job_id, &station)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "job `{}` has no stop at station `{station}`",
                job.job_id
            ))
        })?;
    let result = stop.result.ok_or_else(|| {
        ApiError::not_found(format!(
            "station `{station}` has delivered no result for job `{}` yet",
            job.job_id
        ))
    })?;
    Ok(blob_response(read_blob(&state, &result.digest).await?))
}

// Station.

/// The stop of `station` in `job_id`, for that station only.
async fn own_stop(
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

async fn work_item(state: &HubState, stop: StopRow) -> HubResult<v1::WorkItem> {
    let job = state.store.job(stop.job_id).await?.ok_or_else(|| {
        ApiError::internal(&crate::store::StoreError::Corrupt {
            what: format!("stop of missing job {}", stop.job_id),
        })
    })?;
    let envelope = serde_json::value::RawValue::from_string(job.envelope)
        .map_err(|error| ApiError::internal(&error))?;
    Ok(v1::WorkItem {
        job_id: stop.job_id,
        stop_index: stop.stop_index,
        station: stop.station_id,
        mode: job.mode,
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
        Some(stop) => {
            tracing::info!(job_id = %stop.job_id, station, stop_index = stop.stop_index, "stop leased");
            work_item(state, stop).await.map(Some)
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
    loop {
        // Register for the wake-up before looking, so that work arriving between the look and
        // the wait is not missed.
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(item) = try_lease(&state, &station).await? {
            return Ok(Json(item).into_response());
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return Ok(StatusCode::NO_CONTENT.into_response());
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

/// The parts of a result upload.
struct ResultUpload {
    result_bundle: Bytes,
    next_state: Option<Bytes>,
}

async fn read_result_upload(
    multipart: Result<Multipart, MultipartRejection>,
) -> HubResult<ResultUpload> {
    let mut multipart = multipart.map_err(|rejection| {
        ApiError::bad_request(format!(
            "the upload must be multipart/form-data with parts `{}` and optionally `{}`: {rejection}",
            v1::RESULT_PART,
            v1::NEXT_STATE_PART
        ))
    })?;
    let mut result_bundle = None;
    let mut next_state = None;
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|error| ApiError::bad_request(format!("malformed multipart body: {error}")))?
    {
        let name = field.name().unwrap_or_default().to_string();
        let bytes = field
            .bytes()
            .await
            .map_err(|error| ApiError::bad_request(format!("malformed part `{name}`: {error}")))?;
        match name.as_str() {
            v1::RESULT_PART if result_bundle.is_none() => result_bundle = Some(bytes),
            v1::NEXT_STATE_PART if next_state.is_none() => next_state = Some(bytes),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unexpected or repeated part `{name}`"
                )))
            }
        }
    }
    let result_bundle = result_bundle.ok_or_else(|| {
        ApiError::unprocessable(v1::RESULT_PART, "the result bundle part is missing")
    })?;
    Ok(ResultUpload {
        result_bundle,
        next_state,
    })
}

pub async fn upload_result(
    State(state): State<Arc<HubState>>,
    Extension(principal): Extension<Principal>,
    ids: Result<Path<(String, String)>, PathRejection>,
    multipart: Result<Multipart, MultipartRejection>,
) -> HubResult<Json<v1::ResultReceipt>> {
    let (job_id, station) = path(ids)?;
    let (job, mut stop) = own_stop(&state, &principal, &job_id, &station).await?;
    let upload = read_result_upload(multipart).await?;
    let result_digest = Digest::of(&upload.result_bundle);
    let stops = state.store.stops(job.job_id).await?;
    let next_stop = match job.mode {
        RouteMode::Sequential => stops
            .iter()
            .find(|candidate| candidate.stop_index == stop.stop_index + 1),
        RouteMode::Parallel => None,
    };
    if upload.next_state.is_some() && next_stop.is_none() {
        return Err(ApiError::unprocessable(
            v1::NEXT_STATE_PART,
            "state is handed on only to the next stop of a sequential route, and this stop has none",
        ));
    }
    for _ in 0..2 {
        match rules::decide_upload(
            stop.status,
            stop.result.as_ref().map(|result| &result.digest),
            &result_digest,
        ) {
            UploadDecision::Refuse(why) => return Err(ApiError::conflict(why)),
            UploadDecision::AlreadyStored => {
                let next_stop = match next_stop {
                    Some(next) => {
                        state
                            .store
                            .stop_of_station(job.job_id, &next.station_id)
                            .await?
                    }
                    None => None,
                };
                return Ok(Json(receipt(&stop, next_stop.as_ref(), true)));
            }
            UploadDecision::Store => {}
        }
        // The blobs are durable before the database says they exist.
        state.blobs.put(upload.result_bundle.clone()).await?;
        let next_state_digest = match &upload.next_state {
            Some(bytes) => Some(state.blobs.put(bytes.clone()).await?),
            None => None,
        };
        let now = state.clock.now();
        let completion = Completion {
            transition: StopTransition {
                job_id: job.job_id,
                stop_index: stop.stop_index,
                from: stop.status,
                to: v1::StopState::Done,
                reason: None,
                now,
            },
            result: StoredResult {
                digest: result_digest.clone(),
                size_bytes: upload.result_bundle.len() as u64,
                uploaded_at: now,
            },
            next_stop: next_stop.map(|next| (next.stop_index, next_state_digest.as_ref())),
        };
        let stored = state.store.complete_stop(&completion).await?;
        stop = state
            .store
            .stop_of_station(job.job_id, &station)
            .await?
            .ok_or_else(|| ApiError::not_found("the stop vanished"))?;
        if stored {
            tracing::info!(job_id = %job.job_id, station, stop_index = stop.stop_index, size_bytes = upload.result_bundle.len(), "result stored");
            let next_stop = match next_stop {
                Some(next) => {
                    state.notifier.wake(&next.station_id);
                    state
                        .store
                        .stop_of_station(job.job_id, &next.station_id)
                        .await?
                }
                None => None,
            };
            return Ok(Json(receipt(&stop, next_stop.as_ref(), false)));
        }
    }
    Err(ApiError::conflict(
        "the stop changed while the result was stored; read its status and retry",
    ))
}

fn receipt(stop: &StopRow, next_stop: Option<&StopRow>, already_stored: bool) -> v1::ResultReceipt {
    v1::ResultReceipt {
        job_id: stop.job_id,
        station: stop.station_id.clone(),
        stop_index: stop.stop_index,
        result: result_summary(stop).expect("a completed stop has a result"),
        next_state: next_stop.and_then(|next| next.input_state.clone()),
        next_station: next_stop.map(|next| next.station_id.clone()),
        already_stored,
    }
}
