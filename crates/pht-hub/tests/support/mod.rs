//! In-process test harness: a hub on SQLite in a temporary directory, or on a real PostgreSQL
//! server started for the test, with a manual clock, called through its router without a
//! socket, with requests built by `pht-api` and signed as a real client signs them.
//! [`on_both_stores!`] runs a test once on each store.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{to_bytes, Body, Bytes};
use axum::http::{HeaderMap, StatusCode};
use axum::Router;
use chrono::{DateTime, Utc};
use pht_api::auth::random_nonce;
use pht_api::{requests, v1, Credentials, HubRequest};
use pht_core::dsse::Envelope;
use pht_core::job::{JobV1, Route, RouteMode, TrainPin};
use pht_core::{Digest, KeyAlgorithm, SigningKey};
use pht_e2e::postgres::PostgresServer;
use pht_hub::clock::ManualClock;
use pht_hub::config::AdminToken;
use pht_hub::{Hub, HubOptions, Settings};
use tower::ServiceExt as _;
use uuid::Uuid;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const PICKUP_LEASE: Duration = Duration::from_secs(60);

pub fn start_time() -> DateTime<Utc> {
    "2026-11-23T12:00:00Z".parse().unwrap()
}

/// Which store a test hub runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Sqlite,
    Postgres,
}

/// Defines, for each `async fn name(hub: TestHub)` named, a test `sqlite::name` on a hub over
/// SQLite and a test `postgres::name` on a hub over its own PostgreSQL server.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::support::TestHub::start_on(super::support::Store::Sqlite).await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::support::TestHub::start_on(super::support::Store::Postgres).await).await;
                }
            )*
        }
    };
}

/// A hub under test and the clock it reads.
pub struct TestHub {
    /// Shared by the replicas of one hub ([`TestHub::replica`]): the blob directory is in it.
    pub dir: Arc<tempfile::TempDir>,
    pub clock: Arc<ManualClock>,
    pub hub: Hub,
    pub router: Router,
    pub store: Store,
    database_url: String,
    /// Whether the hub counts requests and serves `/metrics`.
    metrics: bool,
    /// The PostgreSQL server of a hub on PostgreSQL; stopped and removed with the hub.
    pub postgres: Option<PostgresServer>,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "{error}: status {} body {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn error(&self) -> v1::ErrorBody {
        self.json()
    }

    /// Asserts the status and returns self, with the body in the panic message.
    pub fn expect_status(self, status: StatusCode) -> Answer {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        self
    }
}

fn options(dir: &std::path::Path, database_url: &str, metrics: bool) -> HubOptions {
    HubOptions {
        database_url: database_url.to_string(),
        store_connections: None,
        blob_dir: dir.join("blobs"),
        settings: Settings {
            admin_token: AdminToken::new(ADMIN_TOKEN),
            long_poll_max_wait: Duration::from_secs(30),
            pickup_lease: PICKUP_LEASE,
            max_upload_bytes: 16 * 1024 * 1024,
        },
        metrics,
    }
}

pub fn admin() -> Credentials {
    Credentials::Admin {
        token: ADMIN_TOKEN.into(),
    }
}

impl TestHub {
    /// A hub on SQLite.
    pub async fn start() -> TestHub {
        TestHub::start_on(Store::Sqlite).await
    }

    /// A hub on `store`, with its metrics on.
    pub async fn start_on(store: Store) -> TestHub {
        TestHub::start_with(store, true).await
    }

    /// A hub on `store`, with its metrics on or off (`metrics: false`).
    pub async fn start_with(store: Store, metrics: bool) -> TestHub {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let (postgres, database_url) = match store {
            Store::Sqlite => (
                None,
                format!("sqlite://{}", dir.path().join("hub.db").display()),
            ),
            Store::Postgres => {
                let server = tokio::task::spawn_blocking(PostgresServer::start)
                    .await
                    .unwrap();
                let url = server.create_database("pht_hub");
                (Some(server), url)
            }
        };
        let clock = Arc::new(ManualClock::new(start_time()));
        let hub = Hub::open(options(dir.path(), &database_url, metrics), clock.clone())
            .await
            .unwrap();
        let router = hub.router();
        TestHub {
            dir,
            clock,
            hub,
            router,
            store,
            database_url,
            metrics,
            postgres,
        }
    }

    /// A second replica of this hub: another `Hub` (its own pool, long-polls and listener) on
    /// the same database and blob directory, reading the same clock. Drop it before `self`.
    pub async fn replica(&self) -> TestHub {
        let hub = Hub::open(
            options(self.dir.path(), &self.database_url, self.metrics),
            self.clock.clone(),
        )
        .await
        .unwrap();
        let router = hub.router();
        TestHub {
            dir: self.dir.clone(),
            clock: self.clock.clone(),
            hub,
            router,
            store: self.store,
            database_url: self.database_url.clone(),
            metrics: self.metrics,
            postgres: None,
        }
    }

    /// Drops the hub and opens a new one on the same database and blob directory.
    pub async fn restart(self) -> TestHub {
        let TestHub {
            dir,
            clock,
            hub,
            store,
            database_url,
            metrics,
            postgres,
            ..
        } = self;
        hub.close().await;
        drop(hub);
        let hub = Hub::open(options(dir.path(), &database_url, metrics), clock.clone())
            .await
            .unwrap();
        let router = hub.router();
        TestHub {
            dir,
            clock,
            hub,
            router,
            store,
            database_url,
            metrics,
            postgres,
        }
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(chrono::Duration::from_std(by).unwrap());
    }

    /// Sends `request` as `credentials`, signed now with a fresh nonce.
    pub async fn call(&self, request: &HubRequest, credentials: &Credentials) -> Answer {
        self.call_signed(request, credentials, self.clock.now(), &random_nonce())
            .await
    }

    /// Sends `request` signed at `signed_at` with `nonce`.
    pub async fn call_signed(
        &self,
        request: &HubRequest,
        credentials: &Credentials,
        signed_at: DateTime<Utc>,
        nonce: &str,
    ) -> Answer {
        let headers = credentials
            .authentication_headers(request, signed_at, nonce)
            .unwrap();
        self.call_with_headers(request, &headers).await
    }

    pub async fn call_with_headers(
        &self,
        request: &HubRequest,
        headers: &[(&str, String)],
    ) -> Answer {
        let mut builder = axum::http::Request::builder()
            .method(request.method.as_str())
            .uri(request.path_and_query());
        if let Some(content_type) = &request.content_type {
            builder = builder.header("content-type", content_type);
        }
        for (name, value) in headers {
            builder = builder.header(*name, value);
        }
        let response = self
            .router
            .clone()
            .oneshot(builder.body(Body::from(request.body.clone())).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        Answer {
            status,
            headers,
            body,
        }
    }

    /// Registers a station with a new key; returns its credentials.
    pub async fn add_station(&self, id: &str, algorithm: KeyAlgorithm) -> Credentials {
        let key = SigningKey::generate(algorithm);
        let registration = v1::RegisterStationRequest {
            id: id.into(),
            public_key_pem: key.public_key().to_pem(),
            age_recipient: age::x25519::Identity::generate().to_public().to_string(),
        };
        self.call(&requests::register_station(&registration), &admin())
            .await
            .expect_status(StatusCode::CREATED);
        Credentials::Station {
            station_id: id.into(),
            key,
        }
    }

    /// Registers a researcher with a new key; returns the credentials and a copy of the key for
    /// signing envelopes.
    pub async fn add_researcher(&self, id: &str) -> (Credentials, SigningKey) {
        let key = SigningKey::generate(KeyAlgorithm::Ed25519);
        let key_copy = SigningKey::from_pkcs8_pem(&key.to_pkcs8_pem(None).unwrap(), None).unwrap();
        let registration = v1::RegisterResearcherRequest {
            id: id.into(),
            public_key_pem: key.public_key().to_pem(),
        };
        self.call(&requests::register_researcher(&registration), &admin())
            .await
            .expect_status(StatusCode::CREATED);
        (
            Credentials::Researcher {
                researcher_id: id.into(),
                key,
            },
            key_copy,
        )
    }

    pub async fn poll(&self, station: &Credentials, wait: Duration) -> Option<v1::WorkItem> {
        let station_id = station_id(station);
        let answer = self
            .call(&requests::poll_work(&station_id, wait), station)
            .await;
        match answer.status {
            StatusCode::NO_CONTENT => None,
            StatusCode::OK => Some(answer.json()),
            other => panic!(
                "poll answered {other}: {}",
                String::from_utf8_lossy(&answer.body)
            ),
        }
    }

    pub async fn status(&self, researcher: &Credentials, job_id: Uuid) -> v1::JobStatus {
        self.call(&requests::job_status(job_id), researcher)
            .await
            .expect_status(StatusCode::OK)
            .json()
    }

    pub async fn upload(
        &self,
        station: &Credentials,
        job_id: Uuid,
        result_bundle: &[u8],
        next_state: Option<&[u8]>,
    ) -> Answer {
        let station_id = station_id(station);
        self.call(
            &requests::upload_result(job_id, &station_id, result_bundle, next_state),
            station,
        )
        .await
    }
}

pub fn station_id(credentials: &Credentials) -> String {
    match credentials {
        Credentials::Station { station_id, .. } => station_id.clone(),
        other => panic!("not a station: {other:?}"),
    }
}

/// A job over `stations`, issued at `now`, valid for an hour.
pub fn job(job_id: Uuid, mode: RouteMode, stations: &[&str], now: DateTime<Utc>) -> JobV1 {
    JobV1 {
        job_id,
        issued_at: now,
        expires_at: now + chrono::Duration::hours(1),
        train: TrainPin {
            repository: "127.0.0.1:5000/trains/count".into(),
            digest: Digest::of(b"train manifest"),
        },
        route: Route {
            mode,
            stations: stations.iter().map(|s| s.to_string()).collect(),
        },
        parameters: BTreeMap::new(),
        recipient: "age175g0ksqujt32anura8w5z7uygzspy28h2cvdrfjwh9ss5elnrefs4278nk".into(),
    }
}

pub fn envelope_bytes(envelope: &Envelope) -> Vec<u8> {
    serde_json::to_vec(envelope).unwrap()
}
