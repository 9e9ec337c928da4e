//! Witnessed audit checkpoints: a station sends each checkpoint it signs
//! (`POST /v1/stations/{station}/checkpoints`), the hub keeps them append-only, and serves them
//! to the station itself and, under the admin token, to the hub's operator and auditors
//! (`GET …/checkpoints`, `GET /v1/admin/stations/{station}/checkpoints`).
//!
//! Owns that a checkpoint is kept only when signed by the station's registered key and naming
//! that station, and that a second checkpoint with another hash at a sequence number already
//! witnessed is refused (409): it means the station's log was rewritten, and the first one
//! stays. The hub judges nothing else; stations and auditors compare logs with checkpoints.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use pht_core::checkpoint::Checkpoint;
use pht_core::dsse::Envelope;
use pht_core::PublicKey;

use super::{parse_json, path, HubResult};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::store::{CheckpointInsert, CheckpointRow};
use crate::HubState;

async fn station_key(state: &HubState, station: &str) -> HubResult<PublicKey> {
    let row = state
        .store
        .station(station)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no station `{station}`")))?;
    PublicKey::from_pem(&row.public_key_pem).map_err(|error| ApiError::internal(&error))
}

/// `POST /v1/stations/{station}/checkpoints`: 201 when kept, 200 when already kept.
pub async fn submit_checkpoint(
    State(state): State<Arc<HubState>>,
    Extension(principal): Extension<Principal>,
    station: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> HubResult<(StatusCode, Json<Envelope>)> {
    let station = path(station)?;
    principal.require_station(&station)?;
    let envelope: Envelope = parse_json(&body)?;
    let key = station_key(&state, &station).await?;
    let checkpoint = Checkpoint::verify(&envelope, &station, &key)
        .map_err(|error| ApiError::unprocessable("checkpoint", error))?;
    let row = CheckpointRow {
        station_id: station.clone(),
        seq: checkpoint.seq,
        head_hash: checkpoint.head_hash.clone(),
        checkpoint_time: checkpoint.time,
        received_at: state.clock.now(),
        envelope: String::from_utf8_lossy(&body).into_owned(),
    };
    let status = match state.store.insert_checkpoint(&row).await? {
        CheckpointInsert::New => StatusCode::CREATED,
        CheckpointInsert::Repeated => StatusCode::OK,
        CheckpointInsert::Contradicts { kept_hash } => {
            tracing::warn!(
                station,
                seq = checkpoint.seq,
                "a station sent a checkpoint contradicting one already witnessed: its audit log was rewritten"
            );
            return Err(ApiError::conflict(format!(
                "entry {} of station `{station}`'s audit log was witnessed with hash {kept_hash}, not {}: the log was rewritten; the witnessed checkpoint stays",
                checkpoint.seq, checkpoint.head_hash
            )));
        }
    };
    if let Some(metrics) = &state.metrics {
        metrics.checkpoint_received();
    }
    Ok((status, Json(envelope)))
}

async fn list(state: &HubState, station: &str) -> HubResult<Json<Vec<Envelope>>> {
    state
        .store
        .station(station)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no station `{station}`")))?;
    let envelopes = state
        .store
        .checkpoints(station)
        .await?
        .iter()
        .filter_map(|text| serde_json::from_str(text).ok())
        .collect();
    Ok(Json(envelopes))
}

/// `GET /v1/stations/{station}/checkpoints`, for the station itself.
pub async fn station_checkpoints(
    State(state): State<Arc<HubState>>,
    Extension(principal): Extension<Principal>,
    station: Result<Path<String>, PathRejection>,
) -> HubResult<Json<Vec<Envelope>>> {
    let station = path(station)?;
    principal.require_station(&station)?;
    list(&state, &station).await
}

/// `GET /v1/admin/stations/{station}/checkpoints`, for the hub's operator and auditors.
pub async fn admin_checkpoints(
    State(state): State<Arc<HubState>>,
    station: Result<Path<String>, PathRejection>,
) -> HubResult<Json<Vec<Envelope>>> {
    let station = path(station)?;
    list(&state, &station).await
}
