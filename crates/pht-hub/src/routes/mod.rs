//! The `/v1` handlers: admin registration, job submission and following, and the station's
//! work loop (long-poll, status, state, result).
//!
//! Each handler checks who may do what against the path (a station only its own stops, a
//! researcher only their own jobs), asks [`crate::rules`] whether the change is allowed, and
//! applies it through [`crate::store`] and [`crate::blobs`]. No SQL here, and never a body or
//! result in a log line.
//!
//! One resource a file: `admin` (station and researcher registration), `jobs` (submitting,
//! following and cancelling), `work` (a station's long-poll, leases, stop status and state)
//! and `results` (a station's upload, a researcher's listing and download). This file holds
//! the public endpoints (health, readiness, `/metrics`, the OpenAPI document) and what the
//! handlers share: request parsing, id checks, and the wire views of a stop and of a stored
//! blob.

mod admin;
mod checkpoints;
mod jobs;
mod results;
mod work;

pub use admin::{list_researchers, list_stations, register_researcher, register_station};
pub use checkpoints::{admin_checkpoints, station_checkpoints, submit_checkpoint};
pub use jobs::{cancel_job, get_job_status, submit_job};
pub use results::{download_result, list_results, upload_result};
pub use work::{fetch_stop_state, poll_work, report_stop_status, station_directory};

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use pht_api::v1;
use pht_core::{Digest, PublicKey};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::ApiError;
use crate::metrics::ScrapedCounts;
use crate::store::StopRow;
use crate::HubState;

type HubResult<T> = Result<T, ApiError>;

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

/// `GET /healthz`: the process serves requests. Says nothing of the database: a load balancer
/// or orchestrator asks `/readyz` for that.
pub async fn healthz() -> Json<v1::Health> {
    Json(v1::Health {
        status: "ok".into(),
    })
}

/// `GET /readyz`: 200 when this replica can take work (its database answers and it is not
/// shutting down), 503 otherwise, so that a load balancer sends requests elsewhere.
pub async fn readyz(
    axum::extract::State(state): axum::extract::State<std::sync::Arc<HubState>>,
) -> Response {
    let unavailable = |status: &str| {
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Json(v1::Health {
                status: status.into(),
            }),
        )
            .into_response()
    };
    if state.is_draining() {
        return unavailable("shutting down");
    }
    match state.store.ping().await {
        Ok(()) => Json(v1::Health {
            status: "ready".into(),
        })
        .into_response(),
        Err(error) => {
            tracing::warn!(%error, "not ready: the database does not answer");
            unavailable("the database does not answer")
        }
    }
}

/// `GET /metrics`: this replica's Prometheus metrics ([`crate::metrics`]), with the jobs and
/// stops by state and the bytes of stored blobs read now. A source that cannot be read is left
/// out of this scrape (and logged) so that the rest still arrives. 404 when the hub runs with
/// `metrics: false`.
pub async fn metrics(
    axum::extract::State(state): axum::extract::State<std::sync::Arc<HubState>>,
) -> HubResult<Response> {
    let Some(metrics) = &state.metrics else {
        return Err(ApiError::not_found("metrics are turned off on this hub"));
    };
    let (jobs, stops, blob_bytes) = tokio::join!(
        state.store.count_jobs_by_progress(),
        state.store.count_stops_by_state(),
        state.blobs.stored_bytes(),
    );
    let scraped = ScrapedCounts {
        jobs: jobs
            .map(|by_progress| {
                by_progress
                    .into_iter()
                    .map(|(progress, n_jobs)| (crate::rules::job_state_of(progress), n_jobs))
                    .collect()
            })
            .inspect_err(|error| tracing::warn!(%error, "metrics: cannot count jobs"))
            .ok(),
        stops: stops
            .inspect_err(|error| tracing::warn!(%error, "metrics: cannot count stops"))
            .ok(),
        blob_bytes: blob_bytes
            .inspect_err(|error| tracing::warn!(%error, "metrics: cannot add up stored blobs"))
            .ok(),
    };
    let text = metrics
        .encode(&scraped)
        .map_err(|error| ApiError::internal(&error))?;
    Ok(([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response())
}

pub async fn health() -> Json<v1::Health> {
    Json(v1::Health {
        status: "ok".into(),
    })
}

/// The committed OpenAPI document, served as is.
pub const OPENAPI_DOCUMENT: &str = include_str!("../../openapi.json");

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

// Shared by the handlers.

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
