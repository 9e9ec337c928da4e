//! Cosign signatures in a registry: the `sha256-<hex>.sig` tag beside an image.
//!
//! Owns reading every signature attached to a manifest digest and attaching a new one the way
//! cosign does (one layer per signature, appended to the existing `.sig` manifest). Deciding
//! whether a signature is good is `pht_core::cosign`'s job.

use bytes::Bytes;
use pht_core::cosign::{self, SignedPayload};
use pht_core::oci::OCI_MANIFEST;
use pht_core::{Digest, ImageReference};

use crate::client::RegistryClient;
use crate::error::RegistryError;

/// Largest signature payload read (cosign payloads are a few hundred bytes).
const MAX_PAYLOAD_BYTES: u64 = 1 << 20;

/// Every signature attached to `digest` in the reference's repository; empty when there is no
/// `.sig` tag.
pub async fn fetch_signatures(
    client: &RegistryClient,
    reference: &ImageReference,
    digest: &Digest,
) -> Result<Vec<SignedPayload>, RegistryError> {
    let manifest = match client
        .get_manifest(reference, &digest.cosign_signature_tag())
        .await
    {
        Ok(manifest) => manifest,
        Err(RegistryError::NotFound { .. }) => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let manifest = manifest.image_manifest(reference.registry())?;
    let mut signatures = Vec::new();
    for (layer, signature_base64) in cosign::signature_layers(&manifest) {
        let payload = client
            .get_blob(reference, &layer.digest, MAX_PAYLOAD_BYTES, None)
            .await?;
        signatures.push(SignedPayload {
            payload,
            signature_base64: signature_base64.to_string(),
        });
    }
    Ok(signatures)
}

/// Attaches a signature to `digest`: keeps the signatures already there, adds this one unless
/// the same signature is present, and stores the manifest under the `.sig` tag. Returns the
/// digest of the new signature manifest.
pub async fn attach_signature(
    client: &RegistryClient,
    reference: &ImageReference,
    digest: &Digest,
    signed: SignedPayload,
) -> Result<Digest, RegistryError> {
    let mut signatures = fetch_signatures(client, reference, digest).await?;
    if !signatures.contains(&signed) {
        signatures.push(signed);
    }
    let (manifest, config) = cosign::signature_manifest(&signatures);
    for signature in &signatures {
        client
            .push_blob(reference, Bytes::from(signature.payload.clone()), None)
            .await?;
    }
    client
        .push_blob(reference, Bytes::from(config), None)
        .await?;
    let manifest_bytes = serde_json::to_vec(&manifest).expect("a manifest always serialises");
    client
        .put_manifest(
            reference,
            &digest.cosign_signature_tag(),
            OCI_MANIFEST,
            manifest_bytes,
        )
        .await
}
