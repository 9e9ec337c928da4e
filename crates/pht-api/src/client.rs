//! `HubClient`: sends the requests of [`crate::requests`] over HTTP with reqwest, authenticated
//! by [`crate::auth::Credentials`], and decodes the answers into [`crate::v1`] types.
//!
//! Owns transport, failover and error mapping only: a non-2xx answer becomes
//! [`HubClientError::Status`] with the hub's status, code, message and request id. A client may
//! know several addresses of one hub (replicas, or load balancers): a request that could not
//! reach one, or that a load balancer answered 502, 503 or 504, is sent again, signed afresh, to
//! the next, and the address that last answered is tried first. Every request of the API is
//! safe to repeat (the hub answers a repeated submission, report or upload as the first time).
//! It makes no decisions about jobs or stops; the station and the CLI do.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use pht_core::dsse::Envelope;
use pht_core::httpsig::{self, HttpSignatureError};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::auth::{random_nonce, Credentials};
use crate::requests::{self, HttpMethod, HubRequest};
use crate::v1;

/// Why a call to the hub did not return what was asked for.
#[derive(Debug, thiserror::Error)]
pub enum HubClientError {
    #[error("invalid hub URL `{url}`: it must start with http:// or https://")]
    BaseUrl { url: String },
    #[error("could not sign {method} {path}: {source}")]
    Sign {
        method: HttpMethod,
        path: String,
        #[source]
        source: HttpSignatureError,
    },
    #[error("could not reach the hub for {method} {url}: {source}")]
    Transport {
        method: HttpMethod,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the hub answered {status} ({code}) to {method} {path}: {message} (request id {request_id})")]
    Status {
        method: HttpMethod,
        path: String,
        status: u16,
        code: String,
        message: String,
        request_id: String,
    },
    #[error("the hub's answer to {method} {path} could not be read: {detail}")]
    Decode {
        method: HttpMethod,
        path: String,
        detail: String,
    },
}

/// Whether a failed attempt says nothing about the request itself, so that another attempt,
/// perhaps at another address, may succeed: the hub was not reached, the connection broke, or
/// a load balancer found no replica to answer (502, 503, 504). A long-poll that ran out its time
/// is not retried here: its caller polls again anyway.
fn worth_another_attempt(error: &HubClientError) -> bool {
    match error {
        HubClientError::Transport { source, .. } => !source.is_timeout(),
        HubClientError::Status { status, .. } => matches!(status, 502..=504),
        _ => false,
    }
}

impl HubClientError {
    /// The HTTP status the hub answered with, when it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            HubClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A raw successful answer: status, content type and body.
#[derive(Debug, Clone)]
pub struct HubResponse {
    pub status: u16,
    pub content_digest: Option<String>,
    pub body: Bytes,
}

/// How many times one request is sent at most, over all of the hub's addresses.
const MAX_ATTEMPTS: usize = 4;
/// The pause before the second attempt; it doubles for each further one.
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// A client of one hub, acting as one principal.
#[derive(Debug)]
pub struct HubClient {
    http: reqwest::Client,
    /// Every address of the hub, in the order given; never empty.
    base_urls: Vec<String>,
    /// The index in `base_urls` of the address that answered last.
    preferred: AtomicUsize,
    credentials: Credentials,
}

impl HubClient {
    /// A client for the hub at `base_url` (e.g. `https://hub.example.org`), or at any of
    /// several addresses separated by commas (`https://hub-a:8443,https://hub-b:8443`).
    pub fn new(base_url: &str, credentials: Credentials) -> Result<HubClient, HubClientError> {
        // A long-poll sends nothing while it waits, so without keepalive probes a connection
        // whose path went away (a cable pulled, a network detached) is only noticed when the
        // request times out; with them, within about TCP_KEEPALIVE_IDLE + RETRIES × INTERVAL.
        const TCP_KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
        const TCP_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
        const TCP_KEEPALIVE_RETRIES: u32 = 3;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // The hub closes a connection that sends no request for its header timeout (10 s by
            // default); the client lets an idle one go first, so it never sends on a closing one.
            .pool_idle_timeout(Duration::from_secs(5))
            .tcp_keepalive(TCP_KEEPALIVE_IDLE)
            .tcp_keepalive_interval(TCP_KEEPALIVE_INTERVAL)
            .tcp_keepalive_retries(TCP_KEEPALIVE_RETRIES)
            .build()
            .map_err(|source| HubClientError::Transport {
                method: HttpMethod::Get,
                url: base_url.to_string(),
                source,
            })?;
        HubClient::with_http_client(base_url, credentials, http)
    }

    /// A client that shares `http` (its connection pool) with other clients, e.g. one per
    /// principal in a process that acts for many. `base_url` may list several addresses
    /// separated by commas, as for [`HubClient::new`].
    pub fn with_http_client(
        base_url: &str,
        credentials: Credentials,
        http: reqwest::Client,
    ) -> Result<HubClient, HubClientError> {
        let mut base_urls = Vec::new();
        for url in base_url.split(',').map(str::trim) {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(HubClientError::BaseUrl {
                    url: url.to_string(),
                });
            }
            base_urls.push(url.trim_end_matches('/').to_string());
        }
        Ok(HubClient {
            http,
            base_urls,
            preferred: AtomicUsize::new(0),
            credentials,
        })
    }

    /// The hub's addresses this client knows, the one it tries first first.
    pub fn base_urls(&self) -> Vec<&str> {
        let first = self.preferred.load(Ordering::Relaxed);
        (0..self.base_urls.len())
            .map(|offset| self.base_urls[(first + offset) % self.base_urls.len()].as_str())
            .collect()
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Sends `request`, signed now with a fresh nonce, and returns the answer if it is 2xx.
    /// When the hub could not be reached, or a load balancer in front of it answered 502, 503
    /// or 504, the request is signed again and sent to the next address (or, with one address,
    /// to the same after a pause), up to four times in all; the last failure is returned.
    pub async fn send(&self, request: &HubRequest) -> Result<HubResponse, HubClientError> {
        let first = self.preferred.load(Ordering::Relaxed);
        let mut pause = FIRST_RETRY_PAUSE;
        let mut attempt = 0;
        loop {
            let index = (first + attempt) % self.base_urls.len();
            let result = self.send_once(&self.base_urls[index], request).await;
            attempt += 1;
            match result {
                Ok(response) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok(response);
                }
                Err(error) if attempt < MAX_ATTEMPTS && worth_another_attempt(&error) => {
                    tracing::debug!(%error, attempt, "trying the hub again");
                    // A new address is tried at once; the same one again after a pause.
                    if self.base_urls.len() == 1 || attempt % self.base_urls.len() == 0 {
                        tokio::time::sleep(pause).await;
                        pause *= 2;
                    }
                }
                Err(error) => {
                    if error.status().is_some() {
                        // The hub itself answered: this address works.
                        self.preferred.store(index, Ordering::Relaxed);
                    }
                    return Err(error);
                }
            }
        }
    }

    /// One attempt of [`send`](Self::send) at one address.
    async fn send_once(
        &self,
        base_url: &str,
        request: &HubRequest,
    ) -> Result<HubResponse, HubClientError> {
        let url = format!("{}{}", base_url, request.path_and_query());
        let method = match request.method {
            HttpMethod::Get => reqwest::Method::GET,
            HttpMethod::Post => reqwest::Method::POST,
            HttpMethod::Put => reqwest::Method::PUT,
        };
        let authentication_headers = self
            .credentials
            .authentication_headers(request, Utc::now(), &random_nonce())
            .map_err(|source| HubClientError::Sign {
                method: request.method,
                path: request.path.clone(),
                source,
            })?;
        let mut builder = self
            .http
            .request(method, &url)
            .timeout(request.timeout)
            .body(request.body.clone());
        if let Some(content_type) = &request.content_type {
            builder = builder.header("content-type", content_type);
        }
        for (name, value) in authentication_headers {
            builder = builder.header(name, value);
        }
        let transport_error = |source| HubClientError::Transport {
            method: request.method,
            url: url.clone(),
            source,
        };
        let response = builder.send().await.map_err(transport_error)?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_string)
        };
        let request_id = header(v1::REQUEST_ID_HEADER).unwrap_or_else(|| "unknown".into());
        let content_digest = header(httpsig::CONTENT_DIGEST_HEADER);
        let body = response.bytes().await.map_err(transport_error)?;
        if (200..300).contains(&status) {
            return Ok(HubResponse {
                status,
                content_digest,
                body,
            });
        }
        let (code, message) = match serde_json::from_slice::<v1::ErrorBody>(&body) {
            Ok(error_body) => (error_body.code, error_body.message),
            Err(_) => (
                "unknown".into(),
                String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned(),
            ),
        };
        Err(HubClientError::Status {
            method: request.method,
            path: request.path.clone(),
            status,
            code,
            message,
            request_id,
        })
    }

    async fn send_json<T: DeserializeOwned>(
        &self,
        request: &HubRequest,
    ) -> Result<T, HubClientError> {
        let response = self.send(request).await?;
        serde_json::from_slice(&response.body).map_err(|error| HubClientError::Decode {
            method: request.method,
            path: request.path.clone(),
            detail: error.to_string(),
        })
    }

    /// Sends a request whose answer is a blob, checking the blob against the answer's
    /// `content-digest` (corruption in transit; the hub is not trusted for more).
    async fn send_blob(&self, request: &HubRequest) -> Result<Bytes, HubClientError> {
        let response = self.send(request).await?;
        if let Some(content_digest) = &response.content_digest {
            httpsig::check_content_digest(content_digest, &response.body).map_err(|error| {
                HubClientError::Decode {
                    method: request.method,
                    path: request.path.clone(),
                    detail: error.to_string(),
                }
            })?;
        }
        Ok(response.body)
    }

    // Admin.

    pub async fn register_station(
        &self,
        registration: &v1::RegisterStationRequest,
    ) -> Result<v1::StationRecord, HubClientError> {
        self.send_json(&requests::register_station(registration))
            .await
    }

    pub async fn list_stations(&self) -> Result<Vec<v1::StationRecord>, HubClientError> {
        let list: v1::StationList = self.send_json(&requests::list_stations()).await?;
        Ok(list.stations)
    }

    pub async fn register_researcher(
        &self,
        registration: &v1::RegisterResearcherRequest,
    ) -> Result<v1::ResearcherRecord, HubClientError> {
        self.send_json(&requests::register_researcher(registration))
            .await
    }

    pub async fn list_researchers(&self) -> Result<Vec<v1::ResearcherRecord>, HubClientError> {
        let list: v1::ResearcherList = self.send_json(&requests::list_researchers()).await?;
        Ok(list.researchers)
    }

    // Researcher.

    pub async fn submit_job(&self, envelope: &Envelope) -> Result<v1::JobStatus, HubClientError> {
        self.send_json(&requests::submit_job(envelope)).await
    }

    /// Submits envelope bytes exactly as they are (e.g. read from a file).
    pub async fn submit_job_bytes(
        &self,
        envelope_json: Vec<u8>,
    ) -> Result<v1::JobStatus, HubClientError> {
        self.send_json(&requests::submit_job_bytes(envelope_json))
            .await
    }

    pub async fn job_status(&self, job_id: Uuid) -> Result<v1::JobStatus, HubClientError> {
        self.send_json(&requests::job_status(job_id)).await
    }

    pub async fn cancel_job(&self, job_id: Uuid) -> Result<v1::JobStatus, HubClientError> {
        self.send_json(&requests::cancel_job(job_id)).await
    }

    pub async fn list_results(&self, job_id: Uuid) -> Result<v1::ResultList, HubClientError> {
        self.send_json(&requests::list_results(job_id)).await
    }

    /// The sealed result bundle a station delivered for `job_id`.
    pub async fn download_result(
        &self,
        job_id: Uuid,
        station: &str,
    ) -> Result<Bytes, HubClientError> {
        self.send_blob(&requests::download_result(job_id, station))
            .await
    }

    // Station.

    /// Long-polls for the next stop; `None` when none arrived within `wait`.
    pub async fn poll_work(
        &self,
        station: &str,
        wait: Duration,
    ) -> Result<Option<v1::WorkItem>, HubClientError> {
        let request = requests::poll_work(station, wait);
        let response = self.send(&request).await?;
        if response.status == 204 {
            return Ok(None);
        }
        serde_json::from_slice(&response.body)
            .map(Some)
            .map_err(|error| HubClientError::Decode {
                method: request.method,
                path: request.path.clone(),
                detail: error.to_string(),
            })
    }

    pub async fn report_stop_status(
        &self,
        job_id: Uuid,
        station: &str,
        report: &v1::StopStatusReport,
    ) -> Result<v1::StopStatus, HubClientError> {
        self.send_json(&requests::report_stop_status(job_id, station, report))
            .await
    }

    /// The state blob the previous stop left for `station` (encrypted to it).
    pub async fn fetch_stop_state(
        &self,
        job_id: Uuid,
        station: &str,
    ) -> Result<Bytes, HubClientError> {
        self.send_blob(&requests::fetch_stop_state(job_id, station))
            .await
    }

    /// Uploads the sealed result bundle (and the next stop's state); safe to retry.
    pub async fn upload_result(
        &self,
        job_id: Uuid,
        station: &str,
        result_bundle: &[u8],
        next_state: Option<&[u8]>,
    ) -> Result<v1::ResultReceipt, HubClientError> {
        self.send_json(&requests::upload_result(
            job_id,
            station,
            result_bundle,
            next_state,
        ))
        .await
    }

    pub async fn station_directory(
        &self,
        station: &str,
    ) -> Result<v1::StationDirectoryEntry, HubClientError> {
        self.send_json(&requests::station_directory(station)).await
    }

    /// Sends a checkpoint of the station's audit log to the hub, which keeps it.
    pub async fn submit_checkpoint(
        &self,
        station: &str,
        envelope: &pht_core::dsse::Envelope,
    ) -> Result<(), HubClientError> {
        self.send(&requests::submit_checkpoint(station, envelope))
            .await
            .map(|_| ())
    }

    /// The checkpoints the hub witnessed for `station` (as that station, or with the admin
    /// token), oldest first.
    pub async fn checkpoints(
        &self,
        station: &str,
    ) -> Result<Vec<pht_core::dsse::Envelope>, HubClientError> {
        let request = match self.credentials {
            Credentials::Admin { .. } => requests::admin_checkpoints(station),
            _ => requests::station_checkpoints(station),
        };
        self.send_json(&request).await
    }

    pub async fn health(&self) -> Result<v1::Health, HubClientError> {
        self.send_json(&requests::health()).await
    }
}
