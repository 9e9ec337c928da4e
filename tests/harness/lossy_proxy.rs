//! A loopback proxy in front of a hub that loses answers, as a load balancer does when the
//! replica behind it dies after doing the work but before its answer gets out: for every
//! distinct path a rule names, the first request is forwarded and done by the hub, and the
//! client gets 502 instead of the hub's answer. Later requests pass through unchanged.
//!
//! Owns only forwarding (method, path, query, headers and body as they came: the hub's
//! signatures cover no host, so they verify through it) and counting what it forwarded. It signs
//! nothing and alters nothing else.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::signing_proxy::read_answer;

/// Which requests lose their first answer: `method` and a path that ends with `path_suffix`.
#[derive(Debug, Clone)]
pub struct LoseFirstAnswer {
    pub method: &'static str,
    pub path_suffix: &'static str,
}

#[derive(Debug)]
struct Shared {
    hub_url: String,
    rules: Vec<LoseFirstAnswer>,
    http: reqwest::Client,
    /// `METHOD path` → how many times it was forwarded.
    forwarded: Mutex<BTreeMap<String, usize>>,
    /// `METHOD path` whose first answer was lost.
    lost: Mutex<BTreeSet<String>>,
}

/// A running proxy; stopped when dropped.
#[derive(Debug)]
pub struct LossyProxy {
    pub url: String,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl LossyProxy {
    pub fn start(hub_url: &str, rules: Vec<LoseFirstAnswer>) -> LossyProxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let shared = Arc::new(Shared {
            hub_url: hub_url.trim_end_matches('/').to_string(),
            rules,
            http: reqwest::Client::new(),
            forwarded: Mutex::new(BTreeMap::new()),
            lost: Mutex::new(BTreeSet::new()),
        });
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let address: SocketAddr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(shared.clone());
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        LossyProxy {
            url: format!("http://{address}"),
            shared,
            runtime: Some(runtime),
        }
    }

    /// Every `METHOD path` forwarded, with how many times.
    pub fn forwarded(&self) -> BTreeMap<String, usize> {
        self.shared.forwarded.lock().unwrap().clone()
    }

    /// Every `METHOD path` whose first answer the client never got.
    pub fn lost(&self) -> BTreeSet<String> {
        self.shared.lost.lock().unwrap().clone()
    }
}

impl Drop for LossyProxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn forward(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let key = format!("{method} {path}");
    let url = match uri.query() {
        Some(query) => format!("{}{path}?{query}", shared.hub_url),
        None => format!("{}{path}", shared.hub_url),
    };
    let mut outgoing = shared
        .http
        .request(method.clone(), &url)
        .timeout(Duration::from_secs(60))
        .body(body.to_vec());
    for (name, value) in &headers {
        if name != "host" && name != "content-length" && name != "connection" {
            outgoing = outgoing.header(name, value);
        }
    }
    *shared
        .forwarded
        .lock()
        .unwrap()
        .entry(key.clone())
        .or_default() += 1;
    let answer = match outgoing.send().await {
        Ok(answer) => answer,
        Err(error) => {
            return (StatusCode::BAD_GATEWAY, format!("hub unreachable: {error}")).into_response()
        }
    };
    let (status, response_headers, body) = read_answer(answer).await;
    let loses = shared
        .rules
        .iter()
        .any(|rule| method.as_str() == rule.method && path.ends_with(rule.path_suffix));
    if loses && status.is_success() && shared.lost.lock().unwrap().insert(key) {
        return (
            StatusCode::BAD_GATEWAY,
            "502 Bad Gateway: the upstream's answer was lost",
        )
            .into_response();
    }
    (status, response_headers, body).into_response()
}
