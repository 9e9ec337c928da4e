//! Who a client is and how its requests prove it: RFC 9421 signatures for stations and
//! researchers, a bearer token for the hub's admin.
//!
//! Owns the key id format (`station:<id>`, `researcher:<id>`) and turning a [`HubRequest`] into
//! the headers that authenticate it at a given moment with a given nonce. Chooses neither the
//! moment nor the nonce: the caller passes them, so that tests are reproducible.

use chrono::{DateTime, Utc};
use pht_core::httpsig::{self, HttpSignatureError, RequestDescription};
use pht_core::SigningKey;

use crate::requests::HubRequest;

/// The key id prefix of a station's requests.
pub const STATION_KEYID_PREFIX: &str = "station:";
/// The key id prefix of a researcher's requests.
pub const RESEARCHER_KEYID_PREFIX: &str = "researcher:";

/// The key id a station signs with.
pub fn station_keyid(station_id: &str) -> String {
    format!("{STATION_KEYID_PREFIX}{station_id}")
}

/// The key id a researcher signs with.
pub fn researcher_keyid(researcher_id: &str) -> String {
    format!("{RESEARCHER_KEYID_PREFIX}{researcher_id}")
}

/// How a client authenticates.
#[derive(Debug)]
pub enum Credentials {
    /// A station signing with its registered key.
    Station { station_id: String, key: SigningKey },
    /// A researcher signing with their registered key.
    Researcher {
        researcher_id: String,
        key: SigningKey,
    },
    /// The hub operator, with the admin token from the hub's configuration.
    Admin { token: String },
    /// No authentication: only `/v1/health` and `/v1/openapi.json` answer.
    Anonymous,
}

impl Credentials {
    /// The RFC 9421 key id, for signing credentials.
    pub fn keyid(&self) -> Option<String> {
        match self {
            Credentials::Station { station_id, .. } => Some(station_keyid(station_id)),
            Credentials::Researcher { researcher_id, .. } => Some(researcher_keyid(researcher_id)),
            Credentials::Admin { .. } | Credentials::Anonymous => None,
        }
    }

    /// The headers that authenticate `request`, signed at `now` with `nonce`.
    pub fn authentication_headers(
        &self,
        request: &HubRequest,
        now: DateTime<Utc>,
        nonce: &str,
    ) -> Result<Vec<(&'static str, String)>, HttpSignatureError> {
        let (keyid, key) = match self {
            Credentials::Station { station_id, key } => (station_keyid(station_id), key),
            Credentials::Researcher { researcher_id, key } => {
                (researcher_keyid(researcher_id), key)
            }
            Credentials::Admin { token } => {
                return Ok(vec![("authorization", format!("Bearer {token}"))]);
            }
            Credentials::Anonymous => return Ok(Vec::new()),
        };
        let description = RequestDescription {
            method: request.method.as_str(),
            path: &request.path,
            query: request.query.as_deref(),
            body: &request.body,
        };
        let headers = httpsig::sign_request(&description, key, &keyid, now, nonce)?;
        Ok(vec![
            (httpsig::SIGNATURE_INPUT_HEADER, headers.signature_input),
            (httpsig::SIGNATURE_HEADER, headers.signature),
            (httpsig::CONTENT_DIGEST_HEADER, headers.content_digest),
        ])
    }
}

/// A fresh random nonce: 128 bits from the operating system, as hex.
pub fn random_nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pht_core::httpsig::{verify_request, ReceivedSignatureHeaders, ALLOWED_CLOCK_SKEW};
    use pht_core::KeyAlgorithm;

    #[test]
    fn station_request_verifies_under_its_keyid() {
        let key = SigningKey::generate(KeyAlgorithm::P256);
        let public_key = key.public_key();
        let credentials = Credentials::Station {
            station_id: "umc-1".into(),
            key,
        };
        let request = crate::requests::poll_work("umc-1", std::time::Duration::from_secs(5));
        let now: DateTime<Utc> = "2026-11-23T12:00:00Z".parse().unwrap();
        let headers = credentials
            .authentication_headers(&request, now, "n-1")
            .unwrap();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(candidate, _)| *candidate == name)
                .map(|(_, value)| value.as_str())
        };
        let verified = verify_request(
            &RequestDescription {
                method: "GET",
                path: "/v1/stations/umc-1/work",
                query: Some("wait=5"),
                body: b"",
            },
            &ReceivedSignatureHeaders {
                signature_input: header("signature-input"),
                signature: header("signature"),
                content_digest: header("content-digest"),
            },
            |keyid| (keyid == "station:umc-1").then(|| public_key.clone()),
            now,
            ALLOWED_CLOCK_SKEW,
        )
        .unwrap();
        assert_eq!(verified.nonce, "n-1");
    }

    #[test]
    fn admin_sends_a_bearer_token_and_no_signature() {
        let credentials = Credentials::Admin {
            token: "secret".into(),
        };
        let headers = credentials
            .authentication_headers(&crate::requests::list_stations(), Utc::now(), "n")
            .unwrap();
        assert_eq!(
            headers,
            vec![("authorization", "Bearer secret".to_string())]
        );
    }
}
