//! Who is calling: RFC 9421 request signatures for stations and researchers (with replay
//! protection through the store), a bearer token for the admin.
//!
//! Owns the two axum middlewares that authenticate a request and put a [`Principal`] in its
//! extensions. Authorisation (a station sees only its own work, a researcher only their own
//! jobs) is checked by each handler against the path, with the helpers here.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use pht_api::auth::{RESEARCHER_KEYID_PREFIX, STATION_KEYID_PREFIX};
use pht_core::httpsig::{self, ReceivedSignatureHeaders, RequestDescription};
use pht_core::PublicKey;
use sha2::{Digest as _, Sha256};

use crate::error::ApiError;
use crate::HubState;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Station(String),
    Researcher(String),
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::Station(id) => write!(f, "{STATION_KEYID_PREFIX}{id}"),
            Principal::Researcher(id) => write!(f, "{RESEARCHER_KEYID_PREFIX}{id}"),
        }
    }
}

impl Principal {
    /// `station:<id>` or `researcher:<id>`.
    pub fn from_keyid(keyid: &str) -> Option<Principal> {
        if let Some(id) = keyid.strip_prefix(STATION_KEYID_PREFIX) {
            return Some(Principal::Station(id.to_string()));
        }
        keyid
            .strip_prefix(RESEARCHER_KEYID_PREFIX)
            .map(|id| Principal::Researcher(id.to_string()))
    }

    /// The station's id if the caller is the station `station_id`; 403 otherwise.
    pub fn require_station(&self, station_id: &str) -> Result<(), ApiError> {
        match self {
            Principal::Station(id) if id == station_id => Ok(()),
            Principal::Station(id) => Err(ApiError::forbidden(format!(
                "station `{id}` may not act for station `{station_id}`"
            ))),
            Principal::Researcher(id) => Err(ApiError::forbidden(format!(
                "researcher `{id}` may not use station endpoints"
            ))),
        }
    }

    /// The researcher's id; 403 for a station.
    pub fn require_researcher(&self) -> Result<&str, ApiError> {
        match self {
            Principal::Researcher(id) => Ok(id),
            Principal::Station(id) => Err(ApiError::forbidden(format!(
                "station `{id}` may not use researcher endpoints"
            ))),
        }
    }
}

fn header<'r>(request: &'r axum::http::request::Parts, name: &str) -> Option<&'r str> {
    request
        .headers
        .get(name)
        .and_then(|value| value.to_str().ok())
}

async fn registered_key(state: &HubState, principal: &Principal) -> Result<PublicKey, ApiError> {
    let pem = match principal {
        Principal::Station(id) => state.store.station(id).await?.map(|row| row.public_key_pem),
        Principal::Researcher(id) => state
            .store
            .researcher(id)
            .await?
            .map(|row| row.public_key_pem),
    };
    let pem = pem.ok_or_else(|| {
        ApiError::unauthenticated(format!("no key is registered for keyid `{principal}`"))
    })?;
    PublicKey::from_pem(&pem).map_err(|error| ApiError::internal(&error))
}

/// The largest body of a request that is not a result upload: a job envelope with its
/// parameters, a status report. Result uploads may carry up to `max_upload_bytes`.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;

/// How large a body the route of `method` and `path` takes.
pub fn body_limit(method: &axum::http::Method, path: &str, max_upload_bytes: usize) -> usize {
    let is_result_upload = method == axum::http::Method::PUT && path.ends_with("/result");
    if is_result_upload {
        max_upload_bytes
    } else {
        MAX_REQUEST_BYTES.min(max_upload_bytes)
    }
}

/// Middleware: verifies the RFC 9421 signature over method, path, query and body digest,
/// refuses replayed nonces, and passes the request on with its [`Principal`].
pub async fn require_signature(
    State(state): State<Arc<HubState>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    // The cheap checks (headers parse, the key id is registered) come before reading a body of
    // up to `max_upload_bytes`, so that strangers cannot make the hub buffer large bodies.
    let received = ReceivedSignatureHeaders {
        signature_input: header(&parts, httpsig::SIGNATURE_INPUT_HEADER),
        signature: header(&parts, httpsig::SIGNATURE_HEADER),
        content_digest: header(&parts, httpsig::CONTENT_DIGEST_HEADER),
    };
    let parsed = httpsig::parse_signature(&received)
        .map_err(|error| ApiError::unauthenticated(error.to_string()))?;
    let principal = Principal::from_keyid(parsed.keyid()).ok_or_else(|| {
        ApiError::unauthenticated(format!(
            "keyid `{}` is neither `station:<id>` nor `researcher:<id>`",
            parsed.keyid()
        ))
    })?;
    let key = registered_key(&state, &principal).await?;
    let content_digest = received.content_digest.map(str::to_string);
    let limit = body_limit(
        &parts.method,
        parts.uri.path(),
        state.settings.max_upload_bytes,
    );
    let body = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::payload_too_large(limit))?;
    let description = RequestDescription {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query(),
        body: &body,
    };
    let now = state.clock.now();
    let verified = parsed
        .verify(
            &description,
            content_digest.as_deref(),
            &key,
            now,
            httpsig::ALLOWED_CLOCK_SKEW,
        )
        .map_err(|error| ApiError::unauthenticated(error.to_string()))?;
    let fresh = state
        .store
        .remember_nonce(
            &verified.keyid,
            &verified.nonce,
            verified.replay_window_end(),
        )
        .await?;
    if !fresh {
        return Err(ApiError::unauthenticated(format!(
            "nonce `{}` was already used by `{}`: a replayed request",
            verified.nonce, verified.keyid
        )));
    }
    tracing::debug!(keyid = %verified.keyid, "request signature verified");
    parts.extensions.insert(principal);
    Ok(next.run(Request::from_parts(parts, Body::from(body))).await)
}

/// Middleware: the admin's bearer token.
pub async fn require_admin_token(
    State(state): State<Arc<HubState>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = request
        .headers()
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::unauthenticated("admin endpoints need `Authorization: Bearer <admin token>`")
        })?;
    // Comparing digests rather than the tokens keeps the comparison's timing independent of
    // how much of the token a guess got right.
    let expected = Sha256::digest(state.settings.admin_token.expose().as_bytes());
    if Sha256::digest(presented.as_bytes()) != expected {
        return Err(ApiError::unauthenticated("the admin token is wrong"));
    }
    Ok(next.run(request).await)
}
