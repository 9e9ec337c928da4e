//! Signing a request: the `Signature-Input`, `Signature` and `Content-Digest` header values
//! for this project's one profile.
//!
//! Owns the parameters a signature carries and the wire form of its bytes. It does not choose
//! the nonce or read the clock: the caller passes both.

use base64::Engine as _;
use chrono::{DateTime, Utc};

use super::base::profile_base;
use super::{
    content_digest, HttpSignatureError, ParameterValue, RequestDescription, SignatureHeaders,
    SignatureParams, COVERED_COMPONENTS, SIGNATURE_LABEL,
};
use crate::keys::{KeyAlgorithm, SigningKey};

/// Signs `request` as `keyid` at `now` with a caller-chosen `nonce` (random, never reused).
pub fn sign_request(
    request: &RequestDescription<'_>,
    key: &SigningKey,
    keyid: &str,
    now: DateTime<Utc>,
    nonce: &str,
) -> Result<SignatureHeaders, HttpSignatureError> {
    for (parameter, value) in [("keyid", keyid), ("nonce", nonce)] {
        if !is_encodable_string(value) {
            return Err(HttpSignatureError::UnencodableParameter {
                parameter,
                value: value.to_string(),
            });
        }
    }
    let params = SignatureParams {
        components: COVERED_COMPONENTS.iter().map(|c| c.to_string()).collect(),
        parameters: vec![
            ("created".into(), ParameterValue::Integer(now.timestamp())),
            ("nonce".into(), ParameterValue::String(nonce.to_string())),
            ("keyid".into(), ParameterValue::String(keyid.to_string())),
            (
                "alg".into(),
                ParameterValue::String(key.algorithm().to_string()),
            ),
        ],
    };
    let content_digest_value = content_digest(request.body);
    let base = profile_base(request, &content_digest_value, &params)
        .expect("the profile's components all have values");
    let signature = signature_bytes_for_http(key, base.as_bytes());
    let engine = base64::engine::general_purpose::STANDARD;
    Ok(SignatureHeaders {
        signature_input: format!("{SIGNATURE_LABEL}={}", params.serialize()),
        signature: format!("{SIGNATURE_LABEL}=:{}:", engine.encode(signature)),
        content_digest: content_digest_value,
    })
}

/// RFC 9421 §3.3.4 wants ECDSA signatures as the 64-byte `r || s`, not the DER that
/// [`SigningKey::sign`] returns for cosign's sake.
pub(super) fn signature_bytes_for_http(key: &SigningKey, message: &[u8]) -> Vec<u8> {
    let signature = key.sign(message);
    match key.algorithm() {
        KeyAlgorithm::Ed25519 => signature,
        KeyAlgorithm::P256 => p256::ecdsa::Signature::from_der(&signature)
            .expect("our own P-256 signatures are valid DER")
            .to_bytes()
            .to_vec(),
    }
}

/// Whether `value` fits in an RFC 8941 string: printable ASCII only.
fn is_encodable_string(value: &str) -> bool {
    value.bytes().all(|byte| (0x20..=0x7e).contains(&byte))
}
