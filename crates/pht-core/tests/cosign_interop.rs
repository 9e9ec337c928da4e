//! The real cosign signature in `shared/interop/cosign/` must verify under its key, and only there.

use std::path::PathBuf;

use pht_core::cosign::{verify_blob, verify_image_signature, SignedPayload};
use pht_core::{Digest, PublicKey};

fn vector(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/interop/cosign")
        .join(name);
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("interop vector {} is missing: {e}", path.display()))
}

fn key(name: &str) -> PublicKey {
    PublicKey::from_pem(&String::from_utf8(vector(name)).unwrap()).unwrap()
}

fn signature() -> String {
    String::from_utf8(vector("payload.json.sig")).unwrap()
}

#[test]
fn cosign_signature_verifies_under_its_key() {
    verify_blob(&key("cosign.pub"), &vector("payload.json"), &signature()).unwrap();
}

#[test]
fn cosign_signature_verifies_as_an_image_signature_for_its_digest() {
    let signed = SignedPayload {
        payload: vector("payload.json"),
        signature_base64: signature(),
    };
    let digest: Digest = "sha256:f3cfc9d0dbf931d3db4685ec659b7ac68e2a578219da4aae65427886e649b06b"
        .parse()
        .unwrap();
    let payload = verify_image_signature(&key("cosign.pub"), &signed, &digest).unwrap();
    assert_eq!(
        payload.critical.identity.docker_reference,
        "registry-testing.svc.lan/busybox"
    );
}

#[test]
fn cosign_signature_is_refused_under_another_key() {
    assert!(verify_blob(&key("other.pub"), &vector("payload.json"), &signature()).is_err());
}

#[test]
fn any_changed_payload_byte_is_refused() {
    let payload = vector("payload.json");
    for index in 0..payload.len() {
        let mut changed = payload.clone();
        changed[index] ^= 0x01;
        assert!(
            verify_blob(&key("cosign.pub"), &changed, &signature()).is_err(),
            "byte {index} changed still verified"
        );
    }
}

#[test]
fn any_changed_signature_byte_is_refused() {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let signature_bytes = engine.decode(signature().trim()).unwrap();
    for index in 0..signature_bytes.len() {
        let mut changed = signature_bytes.clone();
        changed[index] ^= 0x01;
        let result = verify_blob(
            &key("cosign.pub"),
            &vector("payload.json"),
            &engine.encode(&changed),
        );
        assert!(
            result.is_err(),
            "signature byte {index} changed still verified"
        );
    }
}
