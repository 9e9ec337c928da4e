//! Verifying a request: finding this profile's signature among the received headers, then
//! checking the body digest, the declared algorithm, the clock window and the signature.
//!
//! Owns what a received signature must satisfy. It does not remember nonces (replay detection
//! is the verifier's store) and does not find keys: the caller maps a `keyid` to a key.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use sha2::{Digest as _, Sha256};

use super::base::profile_base;
use super::{
    structured, HttpSignatureError, ParameterValue, ReceivedSignatureHeaders, RequestDescription,
    SignatureParams, VerifiedSignature, CONTENT_DIGEST_HEADER, COVERED_COMPONENTS,
    SIGNATURE_HEADER, SIGNATURE_INPUT_HEADER,
};
use crate::keys::{KeyAlgorithm, PublicKey};

/// A `Signature-Input` entry of this profile with its `Signature` value, parsed but not yet
/// checked. The caller looks up the key for [`ParsedSignature::keyid`] and calls
/// [`ParsedSignature::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedSignature {
    label: String,
    params: SignatureParams,
    signature: Vec<u8>,
    keyid: String,
    created: i64,
    nonce: String,
    alg: Option<KeyAlgorithm>,
    expires: Option<i64>,
}

fn parse_algorithm(alg: &str) -> Result<KeyAlgorithm, HttpSignatureError> {
    match alg {
        "ed25519" => Ok(KeyAlgorithm::Ed25519),
        "ecdsa-p256-sha256" => Ok(KeyAlgorithm::P256),
        other => Err(HttpSignatureError::UnsupportedAlgorithm {
            alg: other.to_string(),
        }),
    }
}

/// Finds the signature of this profile among the received headers.
pub fn parse_signature(
    headers: &ReceivedSignatureHeaders<'_>,
) -> Result<ParsedSignature, HttpSignatureError> {
    let signature_input = headers
        .signature_input
        .ok_or(HttpSignatureError::MissingHeader {
            header: SIGNATURE_INPUT_HEADER,
        })?;
    let signature_header = headers.signature.ok_or(HttpSignatureError::MissingHeader {
        header: SIGNATURE_HEADER,
    })?;
    let inputs = structured::parse_dictionary(signature_input).map_err(|detail| {
        HttpSignatureError::MalformedHeader {
            header: SIGNATURE_INPUT_HEADER,
            detail,
        }
    })?;
    let signatures = structured::parse_dictionary(signature_header).map_err(|detail| {
        HttpSignatureError::MalformedHeader {
            header: SIGNATURE_HEADER,
            detail,
        }
    })?;
    let mut found = Vec::new();
    for (label, member) in inputs {
        let structured::Member::InnerList(items, parameters) = member else {
            found.push(format!("{label} (not an inner list)"));
            continue;
        };
        let components: Vec<String> = items
            .iter()
            .filter_map(|(item, item_parameters)| match item {
                ParameterValue::String(name) if item_parameters.is_empty() => Some(name.clone()),
                _ => None,
            })
            .collect();
        let mut sorted_components = components.clone();
        sorted_components.sort();
        let mut expected_components: Vec<String> =
            COVERED_COMPONENTS.iter().map(|c| c.to_string()).collect();
        expected_components.sort();
        if components.len() != items.len() || sorted_components != expected_components {
            found.push(format!("{label}=({})", components.join(" ")));
            continue;
        }
        let params = SignatureParams {
            components,
            parameters,
        };
        let signature = signatures
            .iter()
            .find(|(candidate, _)| *candidate == label)
            .ok_or_else(|| HttpSignatureError::MissingSignatureValue {
                label: label.clone(),
            })?;
        let structured::Member::Bytes(signature) = &signature.1 else {
            return Err(HttpSignatureError::MalformedHeader {
                header: SIGNATURE_HEADER,
                detail: format!("`{label}` is not a byte sequence"),
            });
        };
        let keyid = params
            .string_parameter("keyid")?
            .ok_or(HttpSignatureError::MissingParameter { parameter: "keyid" })?
            .to_string();
        let nonce = params
            .string_parameter("nonce")?
            .ok_or(HttpSignatureError::MissingParameter { parameter: "nonce" })?
            .to_string();
        let created =
            params
                .integer_parameter("created")?
                .ok_or(HttpSignatureError::MissingParameter {
                    parameter: "created",
                })?;
        let alg = params
            .string_parameter("alg")?
            .map(parse_algorithm)
            .transpose()?;
        let expires = params.integer_parameter("expires")?;
        return Ok(ParsedSignature {
            label,
            signature: signature.clone(),
            params,
            keyid,
            created,
            nonce,
            alg,
            expires,
        });
    }
    Err(HttpSignatureError::UnsupportedComponents {
        expected: format!("({})", COVERED_COMPONENTS.join(" ")),
        found: if found.is_empty() {
            "no entry".into()
        } else {
            found.join(", ")
        },
    })
}

fn timestamp(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

impl ParsedSignature {
    /// The key the signer names; the caller maps it to a registered key.
    pub fn keyid(&self) -> &str {
        &self.keyid
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Checks the body digest, the clock window and the signature of `request` under `key`.
    pub fn verify(
        &self,
        request: &RequestDescription<'_>,
        content_digest_header: Option<&str>,
        key: &PublicKey,
        now: DateTime<Utc>,
        allowed_clock_skew: chrono::Duration,
    ) -> Result<VerifiedSignature, HttpSignatureError> {
        let content_digest_header =
            content_digest_header
                .map(str::trim)
                .ok_or(HttpSignatureError::MissingHeader {
                    header: CONTENT_DIGEST_HEADER,
                })?;
        check_content_digest(content_digest_header, request.body)?;
        if let Some(declared) = self.alg {
            if declared != key.algorithm() {
                return Err(HttpSignatureError::AlgorithmMismatch {
                    declared: declared.to_string(),
                    keyid: self.keyid.clone(),
                    key_algorithm: key.algorithm(),
                });
            }
        }
        let created = timestamp(self.created);
        if (now - created).abs() > allowed_clock_skew {
            return Err(HttpSignatureError::OutsideClockSkew {
                created,
                now,
                skew_seconds: allowed_clock_skew.num_seconds(),
            });
        }
        if let Some(expires) = self.expires.map(timestamp) {
            if now > expires {
                return Err(HttpSignatureError::Expired { expires, now });
            }
        }
        let base = profile_base(request, content_digest_header, &self.params)
            .expect("parse_signature admits only the profile's components");
        let bad_signature = || HttpSignatureError::BadSignature {
            keyid: self.keyid.clone(),
        };
        let verifiable_signature = match key.algorithm() {
            KeyAlgorithm::Ed25519 => self.signature.clone(),
            KeyAlgorithm::P256 => p256::ecdsa::Signature::from_slice(&self.signature)
                .map_err(|_| bad_signature())?
                .to_der()
                .as_bytes()
                .to_vec(),
        };
        key.verify(base.as_bytes(), &verifiable_signature)
            .map_err(|_| bad_signature())?;
        Ok(VerifiedSignature {
            keyid: self.keyid.clone(),
            created,
            nonce: self.nonce.clone(),
        })
    }
}

/// Checks that the `sha-256` entry of a `Content-Digest` header matches `body`.
pub fn check_content_digest(header: &str, body: &[u8]) -> Result<(), HttpSignatureError> {
    let entries = structured::parse_dictionary(header).map_err(|detail| {
        HttpSignatureError::MalformedHeader {
            header: CONTENT_DIGEST_HEADER,
            detail,
        }
    })?;
    let (_, digest) = entries
        .iter()
        .find(|(algorithm, _)| algorithm == "sha-256")
        .ok_or(HttpSignatureError::MissingSha256Digest)?;
    let structured::Member::Bytes(header_digest) = digest else {
        return Err(HttpSignatureError::MalformedHeader {
            header: CONTENT_DIGEST_HEADER,
            detail: "`sha-256` is not a byte sequence".into(),
        });
    };
    let body_digest = Sha256::digest(body);
    if header_digest.as_slice() != body_digest.as_slice() {
        let engine = base64::engine::general_purpose::STANDARD;
        return Err(HttpSignatureError::ContentDigestMismatch {
            header_digest: engine.encode(header_digest),
            body_digest: engine.encode(body_digest),
        });
    }
    Ok(())
}

/// Parses the headers, looks the key up with `lookup`, and verifies: the whole check for a caller
/// whose key lookup is synchronous.
pub fn verify_request(
    request: &RequestDescription<'_>,
    headers: &ReceivedSignatureHeaders<'_>,
    lookup: impl Fn(&str) -> Option<PublicKey>,
    now: DateTime<Utc>,
    allowed_clock_skew: chrono::Duration,
) -> Result<VerifiedSignature, HttpSignatureError> {
    let parsed = parse_signature(headers)?;
    let key = lookup(parsed.keyid()).ok_or_else(|| HttpSignatureError::UnknownKey {
        keyid: parsed.keyid().to_string(),
    })?;
    parsed.verify(
        request,
        headers.content_digest,
        &key,
        now,
        allowed_clock_skew,
    )
}
