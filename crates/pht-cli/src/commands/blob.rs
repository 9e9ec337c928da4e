//! `pht sign-blob` and `pht verify-blob`: cosign-compatible signatures over any file.

use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use crate::exit::{Classify as _, CommandResult};
use crate::keyfiles::{read_public_key, read_signing_key};
use crate::output::Output;

#[derive(Serialize)]
struct BlobSignature {
    file: String,
    key_id: String,
    signature: String,
}

pub fn sign(
    output: Output,
    key_path: &Path,
    file: &Path,
    signature_path: Option<&Path>,
) -> CommandResult {
    let key = read_signing_key(key_path)?;
    let blob = std::fs::read(file)
        .with_context(|| format!("cannot read {}", file.display()))
        .input()?;
    let signature = pht_core::cosign::sign_blob(&key, &blob);
    if let Some(path) = signature_path {
        std::fs::write(path, &signature)
            .with_context(|| format!("cannot write {}", path.display()))
            .input()?;
        output.note(format!("signature written to {}", path.display()));
    }
    let result = BlobSignature {
        file: file.display().to_string(),
        key_id: key.public_key().key_id(),
        signature,
    };
    // Like cosign, the bare signature goes to stdout so it can be redirected into a file.
    output.print(&result, || result.signature.clone());
    Ok(())
}

#[derive(Serialize)]
struct BlobVerification {
    file: String,
    key_id: String,
    verified: bool,
}

pub fn verify(
    output: Output,
    key_path: &Path,
    signature_path: &Path,
    file: &Path,
) -> CommandResult {
    let key = read_public_key(key_path)?;
    let blob = std::fs::read(file)
        .with_context(|| format!("cannot read {}", file.display()))
        .input()?;
    let signature = std::fs::read_to_string(signature_path)
        .with_context(|| format!("cannot read signature {}", signature_path.display()))
        .input()?;
    pht_core::cosign::verify_blob(&key, &blob, &signature)
        .with_context(|| {
            format!(
                "{} does not verify against {} under {}",
                file.display(),
                signature_path.display(),
                key_path.display()
            )
        })
        .refused()?;
    let result = BlobVerification {
        file: file.display().to_string(),
        key_id: key.key_id(),
        verified: true,
    };
    output.print(&result, || {
        format!("Verified OK: {} (key {})", result.file, result.key_id)
    });
    Ok(())
}
