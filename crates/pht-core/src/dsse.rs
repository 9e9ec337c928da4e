//! DSSE (Dead Simple Signing Envelope) v1: signing and verifying a typed payload.
//!
//! Owns the envelope JSON, the pre-authentication encoding (PAE) and checking signatures against
//! a set of named keys. What the payload means (a job, an in-toto statement) is decided elsewhere.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::keys::{PublicKey, SigningKey};

/// A DSSE envelope as it travels: payload and signatures in standard base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub payload: String,
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeSignature {
    #[serde(default)]
    pub keyid: String,
    pub sig: String,
}

/// Why an envelope was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsseError {
    #[error("the envelope has payload type `{actual}`, expected `{expected}`")]
    PayloadType { expected: String, actual: String },
    #[error("the envelope's {field} is not valid base64")]
    Encoding { field: &'static str },
    #[error("the envelope carries no signature by a trusted key (it has {n_signatures} signature(s); trusted key ids: {trusted})")]
    Untrusted {
        n_signatures: usize,
        trusted: String,
    },
}

/// The pre-authentication encoding: what is actually signed.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut encoded = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    encoded.extend_from_slice(
        format!(
            "DSSEv1 {} {} {} ",
            payload_type.len(),
            payload_type,
            payload.len()
        )
        .as_bytes(),
    );
    encoded.extend_from_slice(payload);
    encoded
}

/// A DSSE envelope over `payload`, signed by `key`.
pub fn sign(key: &SigningKey, payload_type: &str, payload: &[u8]) -> Envelope {
    let engine = base64::engine::general_purpose::STANDARD;
    Envelope {
        payload: engine.encode(payload),
        payload_type: payload_type.to_string(),
        signatures: vec![EnvelopeSignature {
            keyid: key.public_key().key_id(),
            sig: engine.encode(key.sign(&pae(payload_type, payload))),
        }],
    }
}

/// A payload whose envelope carried a valid signature by one of the trusted keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPayload<'k> {
    /// The name the caller gave the key that verified.
    pub signer: &'k str,
    pub payload: Vec<u8>,
}

/// Verifies `envelope` against named trusted keys; the first trusted key with a valid signature
/// wins. Signatures by unknown keys are ignored, as DSSE prescribes.
pub fn verify<'k>(
    envelope: &Envelope,
    expected_payload_type: &str,
    trusted_keys: &'k [(String, PublicKey)],
) -> Result<VerifiedPayload<'k>, DsseError> {
    if envelope.payload_type != expected_payload_type {
        return Err(DsseError::PayloadType {
            expected: expected_payload_type.to_string(),
            actual: envelope.payload_type.clone(),
        });
    }
    let engine = base64::engine::general_purpose::STANDARD;
    let payload = engine
        .decode(&envelope.payload)
        .map_err(|_| DsseError::Encoding { field: "payload" })?;
    let signed_bytes = pae(&envelope.payload_type, &payload);
    for signature in &envelope.signatures {
        let Ok(signature_bytes) = engine.decode(&signature.sig) else {
            continue;
        };
        for (name, key) in trusted_keys {
            if key.verify(&signed_bytes, &signature_bytes).is_ok() {
                return Ok(VerifiedPayload {
                    signer: name,
                    payload,
                });
            }
        }
    }
    Err(DsseError::Untrusted {
        n_signatures: envelope.signatures.len(),
        trusted: trusted_keys
            .iter()
            .map(|(_, key)| key.key_id())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyAlgorithm;

    #[test]
    fn pae_matches_the_specification_example() {
        // From the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
    }

    #[test]
    fn envelope_verifies_under_its_key_and_names_the_signer() {
        for algorithm in [KeyAlgorithm::Ed25519, KeyAlgorithm::P256] {
            let key = SigningKey::generate(algorithm);
            let envelope = sign(&key, "text/plain", b"hi");
            let trusted = vec![("alice".to_string(), key.public_key())];
            let verified = verify(&envelope, "text/plain", &trusted).unwrap();
            assert_eq!(
                (verified.signer, verified.payload.as_slice()),
                ("alice", &b"hi"[..])
            );
        }
    }

    #[test]
    fn envelope_with_changed_payload_or_type_is_refused() {
        let key = SigningKey::generate(KeyAlgorithm::Ed25519);
        let trusted = vec![("alice".to_string(), key.public_key())];
        let mut envelope = sign(&key, "text/plain", b"hi");
        envelope.payload = base64::engine::general_purpose::STANDARD.encode(b"ho");
        assert!(matches!(
            verify(&envelope, "text/plain", &trusted),
            Err(DsseError::Untrusted { .. })
        ));
        let envelope = sign(&key, "text/plain", b"hi");
        assert!(matches!(
            verify(&envelope, "text/other", &trusted),
            Err(DsseError::PayloadType { .. })
        ));
    }

    #[test]
    fn envelope_signed_by_unknown_key_is_refused() {
        let envelope = sign(&SigningKey::generate(KeyAlgorithm::Ed25519), "t", b"x");
        let trusted = vec![(
            "bob".to_string(),
            SigningKey::generate(KeyAlgorithm::Ed25519).public_key(),
        )];
        assert!(matches!(
            verify(&envelope, "t", &trusted),
            Err(DsseError::Untrusted { .. })
        ));
    }
}
