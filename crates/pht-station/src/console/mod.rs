//! The operator console: a web UI for data stewards, served by `pht-station run` (when the
//! configuration has `console:`) and by `pht-station console`. Server-rendered HTML, usable
//! without JavaScript; on loopback unless TLS protects it, or on a Unix socket.
//!
//! Owns sign-in, sessions, roles, CSRF checks, the screens and serving them. It decides nothing
//! about runs: every approval, rejection, release, block and override goes through the same
//! `Station` methods the CLI calls (`approve`, `reject`, `release_outputs`, `block_outputs`),
//! which record and audit it under the operator's name, and everything shown is read from the
//! run store, check reports and audit log those methods write. What it may not do: connect
//! anywhere (the station makes no outbound exception for it), expose anything to the hub, show
//! an output's bytes to someone not signed in, or act without a valid session and CSRF token.
//!
//! - `auth`: sessions, sign-in throttling, tokens and cookies;
//! - `views`: the layout and shared HTML;
//! - `pages`: one handler per route, each building its screen from the station's records;
//! - `serve`: listening on TCP, TCP with TLS, or a Unix socket.

pub mod auth;
mod pages;
mod serve;
pub mod views;

#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};

use axum::http::{header, HeaderValue};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};

use crate::audit::{AuditLog, Verification};
use crate::engine::Engine;
use crate::station::Station;

pub use serve::{serve, ServeError};

/// Runs shown per page of the run list and the audit log.
pub const PAGE_SIZE: u64 = 50;

/// The last verification of the audit log, shown on the overview.
#[derive(Debug, Clone)]
pub struct AuditCheck {
    pub at: DateTime<Utc>,
    pub verification: Result<Verification, String>,
}

/// A console over one station.
pub struct Console<E> {
    pub(crate) station: Arc<Station<E>>,
    pub(crate) sessions: auth::Sessions,
    pub(crate) throttle: auth::Throttle,
    /// Served with TLS: cookies are marked Secure.
    pub(crate) secure: bool,
    pub(crate) audit_check: Mutex<Option<AuditCheck>>,
}

impl<E> std::fmt::Debug for Console<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("station", &self.station)
            .field("secure", &self.secure)
            .finish_non_exhaustive()
    }
}

impl<E: Engine + 'static> Console<E> {
    /// A console over `station`; `secure` when it is served with TLS. Rebuilds the run index
    /// first if it is missing or out of step with the run records.
    pub fn new(
        station: Arc<Station<E>>,
        secure: bool,
    ) -> Result<Arc<Console<E>>, crate::StationError> {
        station.store().check_index()?;
        let idle = station
            .config()
            .console
            .as_ref()
            .map_or(crate::config::DEFAULT_SESSION_IDLE, |c| c.session_idle);
        Ok(Arc::new(Console {
            station,
            sessions: auth::Sessions::new(idle),
            throttle: auth::Throttle::default(),
            secure,
            audit_check: Mutex::new(None),
        }))
    }

    /// Verifies the whole audit log now and keeps the result for the overview.
    pub async fn verify_audit(&self) -> AuditCheck {
        let path = self.station.audit().path().to_path_buf();
        let verification = tokio::task::spawn_blocking(move || AuditLog::verify_file(&path))
            .await
            .map_err(|error| error.to_string())
            .and_then(|verified| verified.map_err(|error| error.to_string()));
        let check = AuditCheck {
            at: Utc::now(),
            verification,
        };
        *self
            .audit_check
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(check.clone());
        check
    }

    /// The routes, with the headers every response carries.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/", get(pages::overview::<E>))
            .route(
                "/login",
                get(pages::login_form::<E>).post(pages::login::<E>),
            )
            .route("/logout", post(pages::logout::<E>))
            .route("/approvals", get(pages::approvals::<E>))
            .route("/review", get(pages::review_queue::<E>))
            .route("/runs", get(pages::runs::<E>))
            .route("/runs/{run_id}", get(pages::run_detail::<E>))
            .route("/runs/{run_id}/review", get(pages::review::<E>))
            .route("/runs/{run_id}/figure", get(pages::figure::<E>))
            .route("/runs/{run_id}/approve", post(pages::approve::<E>))
            .route("/runs/{run_id}/reject", post(pages::reject::<E>))
            .route("/runs/{run_id}/release", post(pages::release::<E>))
            .route("/runs/{run_id}/block", post(pages::block::<E>))
            .route("/runs/{run_id}/override", post(pages::override_block::<E>))
            .route("/audit", get(pages::audit::<E>))
            .route("/audit/verify", post(pages::verify_audit::<E>))
            .route("/static/console.css", get(pages::stylesheet))
            .route("/favicon.ico", get(pages::favicon))
            .fallback(pages::not_found::<E>)
            .layer(axum::middleware::map_response(security_headers))
            // Forms are small: a reason of 500 characters and a token.
            .layer(axum::extract::DefaultBodyLimit::max(16 * 1024))
            .with_state(self.clone())
    }
}

/// No script, no framing, no inline style, nothing cached, no referrer: what a console showing
/// withheld outputs should send with every response.
async fn security_headers(mut response: axum::response::Response) -> axum::response::Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
