//! Results: a station uploads its sealed bundle (and, on a sequential route, the state for the
//! next stop); the researcher lists and downloads the stored bundles.
//!
//! Owns storing blobs before the database names them, handing state to the next stop, and
//! answering a repeated upload of the same bundle as already stored. It never opens a bundle:
//! the hub cannot decrypt one and does not try.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::PathRejection;
use axum::extract::{Multipart, Path, State};
use axum::response::Response;
use axum::{Extension, Json};
use pht_api::v1;
use pht_core::job::RouteMode;
use pht_core::Digest;

use super::jobs::job_of_researcher;
use super::work::own_stop;
use super::{blob_response, path, read_blob, result_summary, HubResult};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::rules::{self, UploadDecision};
use crate::store::{Completion, StopRow, StopTransition, StoredResult};
use crate::HubState;

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
                    state.offer_work(&next.station_id).await;
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
