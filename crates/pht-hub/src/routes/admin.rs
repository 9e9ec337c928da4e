//! `/v1/admin/…`: registering stations and researchers, and listing them.
//!
//! Owns what a registration must carry (a valid id, a public key, for a station an age
//! recipient) and that registering again with the same keys is a no-op. The admin token is
//! checked by the middleware in front of these handlers, not here.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use pht_api::v1;

use super::{parse_json, validate_id, validate_public_key, HubResult};
use crate::error::ApiError;
use crate::store::{Registration, ResearcherRow, StationRow};
use crate::HubState;

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
    pht_core::recipient::parse_recipient(&request.age_recipient)
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
