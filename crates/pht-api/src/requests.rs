//! Every hub request, built as data: method, path, query, content type and body bytes.
//!
//! Owns the URL layout of `/v1` and the encoding of bodies (JSON, the raw job envelope, the
//! multipart result upload). Building a request does no I/O and signs nothing: authentication is
//! added by [`crate::auth`], sending by [`crate::client::HubClient`] or, in tests, by handing the
//! request straight to the hub's router.

use std::fmt;
use std::time::Duration;

use pht_core::dsse::Envelope;
use pht_core::Digest;
use serde::Serialize;
use uuid::Uuid;

use crate::v1;

/// The methods the hub uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Post,
    Put,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
        }
    }
}

impl fmt::Display for HttpMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One request to the hub, before authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubRequest {
    pub method: HttpMethod,
    /// Absolute path, percent-encoded as it goes on the wire.
    pub path: String,
    /// Query without the leading `?`.
    pub query: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    /// How long the request may take before the client gives up.
    pub timeout: Duration,
}

/// Time allowed for ordinary requests; uploads of large bundles need the room.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Extra time a long-poll gets on top of its wait, for the answer to travel.
pub const LONG_POLL_GRACE: Duration = Duration::from_secs(30);

impl HubRequest {
    fn new(method: HttpMethod, path: String) -> HubRequest {
        HubRequest {
            method,
            path,
            query: None,
            content_type: None,
            body: Vec::new(),
            timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    fn json(method: HttpMethod, path: String, body: &impl Serialize) -> HubRequest {
        HubRequest {
            content_type: Some("application/json".into()),
            body: serde_json::to_vec(body).expect("wire types always serialise"),
            ..HubRequest::new(method, path)
        }
    }

    /// The path and query as they appear in the request line.
    pub fn path_and_query(&self) -> String {
        match &self.query {
            Some(query) => format!("{}?{query}", self.path),
            None => self.path.clone(),
        }
    }
}

/// Percent-encodes one path segment: everything but RFC 3986 unreserved characters.
pub fn path_segment(segment: &str) -> String {
    let mut encoded = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

pub fn health() -> HubRequest {
    HubRequest::new(HttpMethod::Get, "/v1/health".into())
}

pub fn openapi_document() -> HubRequest {
    HubRequest::new(HttpMethod::Get, "/v1/openapi.json".into())
}

pub fn register_station(registration: &v1::RegisterStationRequest) -> HubRequest {
    HubRequest::json(HttpMethod::Post, "/v1/admin/stations".into(), registration)
}

pub fn list_stations() -> HubRequest {
    HubRequest::new(HttpMethod::Get, "/v1/admin/stations".into())
}

pub fn register_researcher(registration: &v1::RegisterResearcherRequest) -> HubRequest {
    HubRequest::json(
        HttpMethod::Post,
        "/v1/admin/researchers".into(),
        registration,
    )
}

pub fn list_researchers() -> HubRequest {
    HubRequest::new(HttpMethod::Get, "/v1/admin/researchers".into())
}

/// Submits the envelope bytes exactly as given; the hub stores and forwards them unchanged.
pub fn submit_job_bytes(envelope_json: Vec<u8>) -> HubRequest {
    HubRequest {
        content_type: Some("application/json".into()),
        body: envelope_json,
        ..HubRequest::new(HttpMethod::Post, "/v1/jobs".into())
    }
}

pub fn submit_job(envelope: &Envelope) -> HubRequest {
    submit_job_bytes(serde_json::to_vec(envelope).expect("an envelope always serialises"))
}

fn job_path(job_id: Uuid) -> String {
    format!("/v1/jobs/{job_id}")
}

fn stop_path(job_id: Uuid, station: &str) -> String {
    format!("/v1/jobs/{job_id}/stops/{}", path_segment(station))
}

pub fn job_status(job_id: Uuid) -> HubRequest {
    HubRequest::new(HttpMethod::Get, job_path(job_id))
}

pub fn cancel_job(job_id: Uuid) -> HubRequest {
    HubRequest::new(HttpMethod::Post, format!("{}/cancel", job_path(job_id)))
}

pub fn list_results(job_id: Uuid) -> HubRequest {
    HubRequest::new(HttpMethod::Get, format!("{}/results", job_path(job_id)))
}

pub fn download_result(job_id: Uuid, station: &str) -> HubRequest {
    HubRequest::new(
        HttpMethod::Get,
        format!("{}/results/{}", job_path(job_id), path_segment(station)),
    )
}

/// Long-polls for the station's next stop, waiting up to `wait` (the hub caps it).
pub fn poll_work(station: &str, wait: Duration) -> HubRequest {
    HubRequest {
        query: Some(format!("wait={}", wait.as_secs())),
        timeout: wait + LONG_POLL_GRACE,
        ..HubRequest::new(
            HttpMethod::Get,
            format!("/v1/stations/{}/work", path_segment(station)),
        )
    }
}

pub fn station_directory(station: &str) -> HubRequest {
    HubRequest::new(
        HttpMethod::Get,
        format!("/v1/stations/{}", path_segment(station)),
    )
}

/// A station sends a checkpoint of its audit log (a DSSE envelope it signed).
pub fn submit_checkpoint(station: &str, envelope: &pht_core::dsse::Envelope) -> HubRequest {
    HubRequest::json(
        HttpMethod::Post,
        format!("/v1/stations/{}/checkpoints", path_segment(station)),
        envelope,
    )
}

/// A station's own witnessed checkpoints.
pub fn station_checkpoints(station: &str) -> HubRequest {
    HubRequest::new(
        HttpMethod::Get,
        format!("/v1/stations/{}/checkpoints", path_segment(station)),
    )
}

/// A station's witnessed checkpoints, for the hub's admin.
pub fn admin_checkpoints(station: &str) -> HubRequest {
    HubRequest::new(
        HttpMethod::Get,
        format!("/v1/admin/stations/{}/checkpoints", path_segment(station)),
    )
}

pub fn report_stop_status(
    job_id: Uuid,
    station: &str,
    report: &v1::StopStatusReport,
) -> HubRequest {
    HubRequest::json(
        HttpMethod::Post,
        format!("{}/status", stop_path(job_id, station)),
        report,
    )
}

pub fn fetch_stop_state(job_id: Uuid, station: &str) -> HubRequest {
    HubRequest::new(
        HttpMethod::Get,
        format!("{}/state", stop_path(job_id, station)),
    )
}

/// Uploads the sealed result bundle and, for a sequential route, the state for the next stop, as
/// one `multipart/form-data` body whose bytes are fixed before signing.
pub fn upload_result(
    job_id: Uuid,
    station: &str,
    result_bundle: &[u8],
    next_state: Option<&[u8]>,
) -> HubRequest {
    let boundary = multipart_boundary(result_bundle, next_state);
    let mut body = Vec::with_capacity(
        result_bundle.len() + next_state.map_or(0, <[u8]>::len) + 4 * boundary.len() + 512,
    );
    let mut add_part = |name: &str, bytes: &[u8]| {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    };
    add_part(v1::RESULT_PART, result_bundle);
    if let Some(state) = next_state {
        add_part(v1::NEXT_STATE_PART, state);
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    HubRequest {
        content_type: Some(format!("multipart/form-data; boundary={boundary}")),
        body,
        ..HubRequest::new(
            HttpMethod::Put,
            format!("{}/result", stop_path(job_id, station)),
        )
    }
}

/// A boundary derived from the content (so a request is reproducible) that occurs in neither
/// part.
fn multipart_boundary(result_bundle: &[u8], next_state: Option<&[u8]>) -> String {
    let seed = Digest::of(result_bundle);
    let parts: Vec<&[u8]> = [Some(result_bundle), next_state]
        .into_iter()
        .flatten()
        .collect();
    first_free_boundary(&seed.hex()[..24], &parts)
}

fn first_free_boundary(seed: &str, parts: &[&[u8]]) -> String {
    let occurs_in_a_part = |boundary: &str| {
        let needle = boundary.as_bytes();
        parts
            .iter()
            .any(|part| part.windows(needle.len()).any(|window| window == needle))
    };
    let mut attempt = 0_u32;
    loop {
        let boundary = format!("pht-{seed}-{attempt}");
        if !occurs_in_a_part(&boundary) {
            return boundary;
        }
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_upload_is_multipart_with_fixed_bytes() {
        let job_id = Uuid::nil();
        let request = upload_result(job_id, "st a", b"bundle", Some(b"state"));
        assert_eq!(
            request,
            upload_result(job_id, "st a", b"bundle", Some(b"state"))
        );
        let rendered = format!(
            "{} {}\ncontent-type: {}\n\n{}",
            request.method,
            request.path_and_query(),
            request.content_type.clone().unwrap(),
            String::from_utf8(request.body).unwrap()
        );
        expect_test::expect![[r#"
            PUT /v1/jobs/00000000-0000-0000-0000-000000000000/stops/st%20a/result
            content-type: multipart/form-data; boundary=pht-1e6ed65d77d6364eeaed5a74-0

            --pht-1e6ed65d77d6364eeaed5a74-0
            Content-Disposition: form-data; name="result"; filename="result.bin"
            Content-Type: application/octet-stream

            bundle
            --pht-1e6ed65d77d6364eeaed5a74-0
            Content-Disposition: form-data; name="state"; filename="state.bin"
            Content-Type: application/octet-stream

            state
            --pht-1e6ed65d77d6364eeaed5a74-0--
        "#]]
        .assert_eq(&rendered.replace('\r', ""));
    }

    #[test]
    fn boundary_that_occurs_in_the_content_is_skipped() {
        let hostile: &[u8] = b"data --pht-seed-0 more";
        assert_eq!(
            first_free_boundary("seed", &[b"clean", hostile]),
            "pht-seed-1"
        );
    }

    #[test]
    fn long_poll_carries_wait_and_a_longer_timeout() {
        let request = poll_work("a", Duration::from_secs(25));
        assert_eq!(request.path_and_query(), "/v1/stations/a/work?wait=25");
        assert_eq!(request.timeout, Duration::from_secs(55));
    }
}
