//! The hub: an axum service that routes signed jobs to stations and carries sealed results
//! back, with its state in SQLite or PostgreSQL (portable SQL) and blobs content-addressed in a
//! directory every replica shares.
//!
//! On PostgreSQL any number of replicas serve the same hub: they hold no state of their own
//! beyond the long-polls waiting on them, which they wake when any replica announces work
//! (`LISTEN`/`NOTIFY` on [`store::WORK_CHANNEL`]), with the sweep's periodic re-check behind
//! the announcements.
//!
//! The hub is never trusted for integrity: it stores the researcher's envelope unchanged and
//! stations verify it again. It runs no containers and reads no results (they are encrypted to
//! the researcher). [`Hub::router`] is the whole HTTP surface; tests call it in-process. Each
//! replica counts what it serves for Prometheus (`GET /metrics`, [`metrics`]).

pub mod auth;
pub mod blobs;
pub mod clock;
pub mod config;
pub mod error;
pub mod metrics;
pub mod notify;
pub mod routes;
pub mod rules;
pub mod server;
pub mod store;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::Router;

use crate::blobs::{BlobError, BlobStore, Blobs};
use crate::clock::Clock;
use crate::config::{AdminToken, HubConfig};
use crate::metrics::HubMetrics;
use crate::notify::WorkNotifier;
use crate::store::{Store, StoreError};

/// The settings handlers consult on every request.
#[derive(Debug, Clone)]
pub struct Settings {
    pub admin_token: AdminToken,
    pub long_poll_max_wait: Duration,
    pub pickup_lease: Duration,
    pub max_upload_bytes: usize,
}

/// Where the hub keeps its state, and its settings.
#[derive(Debug, Clone)]
pub struct HubOptions {
    pub database_url: String,
    /// On PostgreSQL, the most connections this replica keeps (`None`: 16).
    pub store_connections: Option<u32>,
    pub blob_dir: PathBuf,
    pub settings: Settings,
    /// Count requests and serve `GET /metrics`; when off, nothing is recorded and `/metrics`
    /// answers 404.
    pub metrics: bool,
}

impl From<&HubConfig> for HubOptions {
    fn from(config: &HubConfig) -> HubOptions {
        HubOptions {
            database_url: config.database_url.clone(),
            store_connections: config.store_connections,
            blob_dir: config.blob_dir.clone(),
            settings: Settings {
                admin_token: config.admin_token.clone(),
                long_poll_max_wait: config.long_poll_max_wait,
                pickup_lease: config.pickup_lease,
                max_upload_bytes: config.max_upload_bytes,
            },
            metrics: config.metrics,
        }
    }
}

/// What every handler shares.
#[derive(Debug)]
pub struct HubState {
    pub store: Store,
    /// On a directory every replica shares, unless built with another [`Blobs`].
    pub blobs: Arc<dyn Blobs>,
    pub notifier: WorkNotifier,
    pub clock: Arc<dyn Clock>,
    pub settings: Settings,
    /// `None` when the hub runs with `metrics: false`.
    pub metrics: Option<Arc<HubMetrics>>,
    /// `true` once the hub is shutting down: long-polls return at once, `/readyz` says 503.
    pub draining: tokio::sync::watch::Sender<bool>,
    /// On PostgreSQL: the task that wakes this replica's long-polls on other replicas' work.
    listener: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl HubState {
    /// Wakes the long-polls of `station` on this replica and announces the work to the others.
    /// A failed announcement is logged, not returned: the work is stored, and the sweep's
    /// re-check wakes the station's polls within a sweep interval.
    pub async fn offer_work(&self, station: &str) {
        self.notifier.wake(station);
        if let Err(error) = self.store.announce_work(station).await {
            tracing::warn!(%error, station, "cannot announce work to the other replicas; the next sweep will");
        }
    }

    pub fn is_draining(&self) -> bool {
        *self.draining.borrow()
    }
}

/// Why the hub could not start.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Blobs(#[from] BlobError),
    #[error("cannot create {path}: {source}")]
    CreateDirectory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A running hub's state; cheap to clone.
#[derive(Debug, Clone)]
pub struct Hub {
    state: Arc<HubState>,
}

/// Outermost layer: a request id for every request, on the response and in the log line, and
/// the request counted in the metrics under its route's template. Applied with
/// `Router::layer`, which wraps each route after routing, so the template (`MatchedPath`) is
/// known here; the fallback has none and counts as `unmatched`.
async fn request_scope(
    State(state): State<Arc<HubState>>,
    request: Request,
    next: Next,
) -> Response {
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let started = std::time::Instant::now();
    let mut response = error::REQUEST_ID
        .scope(request_id.clone(), next.run(request))
        .await;
    if let Some(metrics) = &state.metrics {
        metrics.record_request(
            route.as_ref().map(MatchedPath::as_str),
            &method,
            response.status(),
            started.elapsed(),
        );
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response
            .headers_mut()
            .insert(pht_api::v1::REQUEST_ID_HEADER, value);
    }
    tracing::info!(
        request_id,
        %method,
        path,
        status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}

impl Hub {
    /// Opens the database (migrating it) and the blob directory.
    pub async fn open(options: HubOptions, clock: Arc<dyn Clock>) -> Result<Hub, HubError> {
        if let Some(database_path) = options
            .database_url
            .strip_prefix("sqlite://")
            .map(|path| path.split('?').next().unwrap_or(path))
            .filter(|path| !path.is_empty() && *path != ":memory:")
        {
            if let Some(parent) = std::path::Path::new(database_path).parent() {
                std::fs::create_dir_all(parent).map_err(|source| HubError::CreateDirectory {
                    path: parent.to_path_buf(),
                    source,
                })?;
            }
        }
        let store = Store::open(&options.database_url, options.store_connections).await?;
        let blobs: Arc<dyn Blobs> = Arc::new(BlobStore::open(&options.blob_dir)?);
        let backend = store.backend();
        let hub = Hub {
            state: Arc::new(HubState {
                store,
                blobs,
                notifier: WorkNotifier::default(),
                clock,
                settings: options.settings,
                metrics: options.metrics.then(|| Arc::new(HubMetrics::new())),
                draining: tokio::sync::watch::Sender::new(false),
                listener: std::sync::Mutex::new(None),
            }),
        };
        if backend == store::Backend::Postgres {
            let listener = notify::listen_for_work(&options.database_url, hub.state.clone())
                .await
                .map_err(|source| StoreError::Open {
                    url: store::redact_url(&options.database_url),
                    source,
                })?;
            *hub.state
                .listener
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(listener);
        }
        Ok(hub)
    }

    /// Starts a graceful shutdown: `/readyz` answers 503 (a load balancer stops sending new
    /// requests) and every waiting long-poll returns 204 now, so its station polls again, on
    /// another replica. Requests in progress finish.
    pub fn begin_shutdown(&self) {
        self.state.draining.send_replace(true);
    }

    pub fn state(&self) -> &Arc<HubState> {
        &self.state
    }

    /// The whole `/v1` HTTP surface.
    pub fn router(&self) -> Router {
        let state = self.state.clone();
        let public = Router::new()
            .route("/healthz", get(routes::healthz))
            .route("/readyz", get(routes::readyz))
            .route("/metrics", get(routes::metrics))
            .route("/v1/health", get(routes::health))
            .route("/v1/openapi.json", get(routes::openapi_document));
        let admin = Router::new()
            .route(
                "/v1/admin/stations",
                post(routes::register_station).get(routes::list_stations),
            )
            .route(
                "/v1/admin/researchers",
                post(routes::register_researcher).get(routes::list_researchers),
            )
            .route(
                "/v1/admin/stations/{station}/checkpoints",
                get(routes::admin_checkpoints),
            )
            .route_layer(middleware::from_fn_with_state(
                state.clone(),
                auth::require_admin_token,
            ))
            .layer(DefaultBodyLimit::max(auth::MAX_REQUEST_BYTES));
        let signed = Router::new()
            .route("/v1/jobs", post(routes::submit_job))
            .route("/v1/jobs/{job_id}", get(routes::get_job_status))
            .route("/v1/jobs/{job_id}/cancel", post(routes::cancel_job))
            .route("/v1/jobs/{job_id}/results", get(routes::list_results))
            .route(
                "/v1/jobs/{job_id}/results/{station}",
                get(routes::download_result),
            )
            .route(
                "/v1/jobs/{job_id}/stops/{station}/status",
                post(routes::report_stop_status),
            )
            .route(
                "/v1/jobs/{job_id}/stops/{station}/state",
                get(routes::fetch_stop_state),
            )
            .route(
                "/v1/jobs/{job_id}/stops/{station}/result",
                put(routes::upload_result),
            )
            .route("/v1/stations/{station}", get(routes::station_directory))
            .route("/v1/stations/{station}/work", get(routes::poll_work))
            .route(
                "/v1/stations/{station}/checkpoints",
                post(routes::submit_checkpoint).get(routes::station_checkpoints),
            )
            .route_layer(middleware::from_fn_with_state(
                state.clone(),
                auth::require_signature,
            ));
        Router::new()
            .merge(public)
            .merge(admin)
            .merge(signed)
            .fallback(routes::fallback)
            // The signature middleware reads signed bodies itself, with the route's limit
            // (`auth::body_limit`); admin registrations have their own limit above.
            .layer(DefaultBodyLimit::max(
                state.settings.max_upload_bytes.max(auth::MAX_REQUEST_BYTES),
            ))
            .layer(middleware::from_fn_with_state(state.clone(), request_scope))
            .with_state(state)
    }

    /// Offers lapsed leases again (waking their stations), expires work past its job's
    /// `expires_at`, and forgets nonces that can no longer be replayed.
    pub async fn sweep(&self) -> Result<(), StoreError> {
        let now = self.state.clock.now();
        let released = self.state.store.release_and_expire(now, None).await?;
        for station in released {
            self.state.offer_work(&station).await;
        }
        // The re-check behind the announcements: whatever is offered now wakes its station's
        // polls on this replica, so a lost announcement delays work by one sweep at most.
        for station in self.state.store.stations_with_work(now).await? {
            self.state.notifier.wake(&station);
        }
        self.state.store.forget_nonces_before(now).await?;
        Ok(())
    }

    /// Runs [`Hub::sweep`] every `interval` until the task is dropped.
    pub fn spawn_sweeper(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let hub = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if let Err(error) = hub.sweep().await {
                    tracing::error!(%error, "sweep failed");
                }
            }
        })
    }

    /// Stops listening for other replicas' work and closes the database.
    pub async fn close(&self) {
        let listener = self
            .state
            .listener
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(listener) = listener {
            listener.abort();
        }
        self.state.store.close().await;
    }
}
