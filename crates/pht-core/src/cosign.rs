//! Cosign-compatible "simple signing" signatures over image manifest digests.
//!
//! Owns the payload format, the media type and annotation names of cosign's tag-based layout
//! (`sha256-<hex>.sig`), producing a signature and checking one against a key and the digest that
//! will run. Fetching signature manifests from a registry is the registry client's job.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::keys::{PublicKey, SignatureError, SigningKey};
use crate::oci::{Descriptor, ImageManifest, OCI_CONFIG, OCI_MANIFEST};

/// Media type of a signature layer: its blob is the payload.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Layer annotation holding the base64 signature over the payload.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The `critical.type` of a container image signature.
pub const SIGNATURE_TYPE: &str = "cosign container image signature";

/// The simple-signing payload, serialised with cosign's field order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimpleSigningPayload {
    pub critical: Critical,
    pub optional: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Critical {
    pub identity: Identity,
    pub image: Image,
    #[serde(rename = "type")]
    pub signature_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    #[serde(rename = "docker-reference")]
    pub docker_reference: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    #[serde(rename = "docker-manifest-digest")]
    pub docker_manifest_digest: String,
}

/// Why a simple-signing signature was not accepted. Each names what was expected and found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CosignError {
    #[error("the signature is not valid base64: {0}")]
    SignatureEncoding(String),
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("the signed payload is not a simple-signing payload: {0}")]
    PayloadFormat(String),
    #[error("the signature is of type `{actual}`, expected `{SIGNATURE_TYPE}`")]
    WrongType { actual: String },
    #[error("the signature is for image {signed}, but the image that will run is {expected}")]
    DigestMismatch { signed: String, expected: Digest },
}

impl SimpleSigningPayload {
    /// The payload for a repository (`registry/repository`) at a manifest digest.
    pub fn new(docker_reference: &str, manifest_digest: &Digest) -> SimpleSigningPayload {
        SimpleSigningPayload {
            critical: Critical {
                identity: Identity {
                    docker_reference: docker_reference.to_string(),
                },
                image: Image {
                    docker_manifest_digest: manifest_digest.to_string(),
                },
                signature_type: SIGNATURE_TYPE.to_string(),
            },
            optional: None,
        }
    }

    /// The exact bytes that are signed.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a payload of strings always serialises")
    }
}

/// A signature over a payload: what one layer of a `.sig` manifest holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPayload {
    pub payload: Vec<u8>,
    /// Base64 of the signature bytes, as in the layer annotation.
    pub signature_base64: String,
}

/// Signs an image manifest digest for `docker_reference` (`registry/repository`).
pub fn sign_image(
    key: &SigningKey,
    docker_reference: &str,
    manifest_digest: &Digest,
) -> SignedPayload {
    let payload = SimpleSigningPayload::new(docker_reference, manifest_digest).to_bytes();
    let signature_base64 = base64::engine::general_purpose::STANDARD.encode(key.sign(&payload));
    SignedPayload {
        payload,
        signature_base64,
    }
}

/// Signs arbitrary bytes as `cosign sign-blob --key` does: the base64 signature over the bytes.
pub fn sign_blob(key: &SigningKey, blob: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(key.sign(blob))
}

/// Verifies a base64 signature over a blob, as `cosign verify-blob --key` does. Surrounding
/// whitespace in the signature (a trailing newline in a `.sig` file) is ignored.
pub fn verify_blob(
    key: &PublicKey,
    blob: &[u8],
    signature_base64: &str,
) -> Result<(), CosignError> {
    let signature = base64::engine::general_purpose::STANDARD
        .decode(signature_base64.trim())
        .map_err(|e| CosignError::SignatureEncoding(e.to_string()))?;
    key.verify(blob, &signature)?;
    Ok(())
}

/// Verifies one image signature: the signature over the payload under `key`, the payload's type,
/// and that it names `expected_digest`, the manifest digest that will run.
pub fn verify_image_signature(
    key: &PublicKey,
    signed: &SignedPayload,
    expected_digest: &Digest,
) -> Result<SimpleSigningPayload, CosignError> {
    verify_blob(key, &signed.payload, &signed.signature_base64)?;
    let payload: SimpleSigningPayload = serde_json::from_slice(&signed.payload)
        .map_err(|e| CosignError::PayloadFormat(e.to_string()))?;
    if payload.critical.signature_type != SIGNATURE_TYPE {
        return Err(CosignError::WrongType {
            actual: payload.critical.signature_type,
        });
    }
    if payload.critical.image.docker_manifest_digest != expected_digest.to_string() {
        return Err(CosignError::DigestMismatch {
            signed: payload.critical.image.docker_manifest_digest,
            expected: expected_digest.clone(),
        });
    }
    Ok(payload)
}

/// The signature layers of a `.sig` manifest, in order. Layers of other media types, or without
/// the signature annotation, are skipped: cosign attaches nothing else there, and a reader must
/// not fail on an extension it does not know.
pub fn signature_layers(manifest: &ImageManifest) -> Vec<(&Descriptor, &str)> {
    manifest
        .layers
        .iter()
        .filter(|layer| layer.media_type == SIMPLE_SIGNING_MEDIA_TYPE)
        .filter_map(|layer| {
            let signature = layer.annotations.as_ref()?.get(SIGNATURE_ANNOTATION)?;
            Some((layer, signature.as_str()))
        })
        .collect()
}

/// The config blob cosign writes for a signature manifest: an image config whose single diff id
/// is the payload digest. Registries require a config; verifiers never read it.
pub fn signature_config(payload_digests: &[Digest]) -> Vec<u8> {
    let diff_ids: Vec<String> = payload_digests.iter().map(Digest::to_string).collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {}
    }))
    .expect("a JSON literal always serialises")
}

/// The `.sig` manifest for a set of signed payloads (one layer each).
pub fn signature_manifest(signatures: &[SignedPayload]) -> (ImageManifest, Vec<u8>) {
    let payload_digests: Vec<Digest> = signatures.iter().map(|s| Digest::of(&s.payload)).collect();
    let config = signature_config(&payload_digests);
    let layers = signatures
        .iter()
        .zip(&payload_digests)
        .map(|(signed, digest)| Descriptor {
            media_type: SIMPLE_SIGNING_MEDIA_TYPE.to_string(),
            digest: digest.clone(),
            size: signed.payload.len() as u64,
            annotations: Some(BTreeMap::from([(
                SIGNATURE_ANNOTATION.to_string(),
                signed.signature_base64.clone(),
            )])),
        })
        .collect();
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.to_string()),
        config: Descriptor {
            media_type: OCI_CONFIG.to_string(),
            digest: Digest::of(&config),
            size: config.len() as u64,
            annotations: None,
        },
        layers,
        annotations: None,
        subject: None,
    };
    (manifest, config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyAlgorithm;

    #[test]
    fn payload_bytes_match_cosign_encoding() {
        let digest: Digest =
            "sha256:f3cfc9d0dbf931d3db4685ec659b7ac68e2a578219da4aae65427886e649b06b"
                .parse()
                .unwrap();
        let payload = SimpleSigningPayload::new("registry-testing.svc.lan/busybox", &digest);
        // The exact bytes cosign signed in shared/interop/cosign/payload.json.
        let expected = r#"{"critical":{"identity":{"docker-reference":"registry-testing.svc.lan/busybox"},"image":{"docker-manifest-digest":"sha256:f3cfc9d0dbf931d3db4685ec659b7ac68e2a578219da4aae65427886e649b06b"},"type":"cosign container image signature"},"optional":null}"#;
        assert_eq!(String::from_utf8(payload.to_bytes()).unwrap(), expected);
    }

    #[test]
    fn signature_for_another_digest_is_refused() {
        let key = SigningKey::generate(KeyAlgorithm::Ed25519);
        let signed = sign_image(&key, "127.0.0.1:5000/trains/x", &Digest::of(b"one"));
        let error =
            verify_image_signature(&key.public_key(), &signed, &Digest::of(b"two")).unwrap_err();
        assert!(
            matches!(error, CosignError::DigestMismatch { .. }),
            "{error}"
        );
    }

    #[test]
    fn signature_of_wrong_type_is_refused() {
        let key = SigningKey::generate(KeyAlgorithm::P256);
        let digest = Digest::of(b"one");
        let mut payload = SimpleSigningPayload::new("r/x", &digest);
        payload.critical.signature_type = "something else".into();
        let bytes = payload.to_bytes();
        let signed = SignedPayload {
            signature_base64: sign_blob(&key, &bytes),
            payload: bytes,
        };
        let error = verify_image_signature(&key.public_key(), &signed, &digest).unwrap_err();
        assert!(matches!(error, CosignError::WrongType { .. }), "{error}");
    }

    #[test]
    fn signature_manifest_layers_carry_payload_and_annotation() {
        let key = SigningKey::generate(KeyAlgorithm::Ed25519);
        let signed = sign_image(&key, "r/x", &Digest::of(b"m"));
        let (manifest, config) = signature_manifest(std::slice::from_ref(&signed));
        assert_eq!(manifest.config.digest, Digest::of(&config));
        let layers = signature_layers(&manifest);
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0].0.digest, Digest::of(&signed.payload));
        assert_eq!(layers[0].1, signed.signature_base64);
    }
}
