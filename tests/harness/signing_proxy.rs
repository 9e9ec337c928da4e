//! A loopback proxy that signs every request it forwards to a hub, so that an HTTP client that
//! knows nothing of RFC 9421 (schemathesis) can exercise the hub's signed API with valid
//! signatures.
//!
//! Owns only choosing who signs what: admin routes carry the admin token, a station's routes
//! (work, stop status and state, results upload, the station directory) are signed by the
//! station, job routes by the researcher, and everything else goes unsigned. The signing itself
//! is `pht_api::Credentials`'. Test support only: it would let anyone act as these identities.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use pht_api::{requests::HttpMethod, Credentials, HubRequest};

struct Identities {
    hub_url: String,
    admin: Credentials,
    researcher: Credentials,
    station: Credentials,
    http: reqwest::Client,
}

/// A running proxy; stopped when dropped.
#[derive(Debug)]
pub struct SigningProxy {
    pub url: String,
    runtime: Option<tokio::runtime::Runtime>,
}

impl SigningProxy {
    pub fn start(
        hub_url: &str,
        admin: Credentials,
        researcher: Credentials,
        station: Credentials,
    ) -> SigningProxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let identities = Arc::new(Identities {
            hub_url: hub_url.trim_end_matches('/').to_string(),
            admin,
            researcher,
            station,
            http: reqwest::Client::new(),
        });
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let address: SocketAddr = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback(forward).with_state(identities);
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        SigningProxy {
            url: format!("http://{address}"),
            runtime: Some(runtime),
        }
    }
}

impl Drop for SigningProxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn signer<'a>(identities: &'a Identities, path: &str) -> Option<&'a Credentials> {
    if path.starts_with("/v1/admin/") {
        Some(&identities.admin)
    } else if path.starts_with("/v1/stations/") || path.contains("/stops/") {
        Some(&identities.station)
    } else if path.starts_with("/v1/jobs") {
        Some(&identities.researcher)
    } else {
        None
    }
}

async fn forward(
    State(identities): State<Arc<Identities>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().map(str::to_string);
    let content_type = headers
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    let hub_method = match method {
        Method::GET => Some(HttpMethod::Get),
        Method::POST => Some(HttpMethod::Post),
        Method::PUT => Some(HttpMethod::Put),
        _ => None,
    };
    let url = match &query {
        Some(query) => format!("{}{path}?{query}", identities.hub_url),
        None => format!("{}{path}", identities.hub_url),
    };
    let mut outgoing = identities
        .http
        .request(method.clone(), &url)
        .timeout(Duration::from_secs(30))
        .body(body.to_vec());
    if let Some(content_type) = &content_type {
        outgoing = outgoing.header("content-type", content_type);
    }
    if let (Some(hub_method), Some(credentials)) = (hub_method, signer(&identities, &path)) {
        let request = HubRequest {
            method: hub_method,
            path: path.clone(),
            query: query.clone(),
            content_type,
            body: body.to_vec(),
            timeout: Duration::from_secs(30),
        };
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        match credentials.authentication_headers(&request, chrono::Utc::now(), &nonce) {
            Ok(authentication) => {
                for (name, value) in authentication {
                    outgoing = outgoing.header(name, value);
                }
            }
            Err(error) => {
                return (StatusCode::BAD_GATEWAY, format!("cannot sign: {error}")).into_response()
            }
        }
    }
    let answer = match outgoing.send().await {
        Ok(answer) => answer,
        Err(error) => {
            return (StatusCode::BAD_GATEWAY, format!("hub unreachable: {error}")).into_response()
        }
    };
    read_answer(answer).await.into_response()
}

/// A hub's answer as a proxy passes it back: its status, its headers but those of the
/// connection, and its body.
pub(crate) async fn read_answer(answer: reqwest::Response) -> (StatusCode, HeaderMap, Bytes) {
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut headers = HeaderMap::new();
    for (name, value) in answer.headers() {
        if name != "transfer-encoding" && name != "connection" && name != "content-length" {
            headers.insert(name.clone(), value.clone());
        }
    }
    let body = answer.bytes().await.unwrap_or_default();
    (status, headers, body)
}
