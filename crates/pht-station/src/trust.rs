//! The station's policy file and the keys it trusts: who may sign trains, who may sign jobs.
//!
//! Owns reading the policy and every public key it names, with the policy file, the signer and
//! the key file in each error. Evaluating the policy is `pht-policy`'s; verifying signatures
//! with these keys happens in the verify stage.

use std::path::{Path, PathBuf};

use pht_core::PublicKey;
use pht_policy::{Policy, Role};

/// Named public keys, as the policy names its signers.
pub type NamedKeys = Vec<(String, PublicKey)>;

/// The policy and the keys it trusts, read from disk.
#[derive(Debug, Clone)]
pub struct Trust {
    pub policy: Policy,
    /// Keys trusted to sign trains.
    pub train_keys: NamedKeys,
    /// Keys trusted to sign job envelopes.
    pub job_keys: NamedKeys,
}

/// A policy file, or a key it trusts, that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("cannot read the policy {}: {source}", path.display())]
    ReadPolicy {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Policy(#[from] pht_policy::PolicyError),
    #[error("{}: trusted signer `{signer}`: cannot read public key {}: {source}", policy.display(), key.display())]
    ReadKey {
        policy: PathBuf,
        signer: String,
        key: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: trusted signer `{signer}`: public key {}: {source}", policy.display(), key.display())]
    InvalidKey {
        policy: PathBuf,
        signer: String,
        key: PathBuf,
        source: pht_core::keys::KeyError,
    },
}

/// Reads the policy file and every trusted key it names.
pub fn load_policy(path: &Path) -> Result<Trust, TrustError> {
    let text = std::fs::read_to_string(path).map_err(|source| TrustError::ReadPolicy {
        path: path.to_path_buf(),
        source,
    })?;
    let policy = Policy::from_yaml_str(&text, &path.display().to_string())?;
    let mut train_keys = Vec::new();
    let mut job_keys = Vec::new();
    for signer in policy.trusted_signers() {
        let key_path = signer.public_key_path();
        let pem = std::fs::read_to_string(key_path).map_err(|source| TrustError::ReadKey {
            policy: path.to_path_buf(),
            signer: signer.name().to_string(),
            key: key_path.to_path_buf(),
            source,
        })?;
        let key = PublicKey::from_pem(&pem).map_err(|source| TrustError::InvalidKey {
            policy: path.to_path_buf(),
            signer: signer.name().to_string(),
            key: key_path.to_path_buf(),
            source,
        })?;
        if signer.may_sign(Role::Trains) {
            train_keys.push((signer.name().to_string(), key.clone()));
        }
        if signer.may_sign(Role::Jobs) {
            job_keys.push((signer.name().to_string(), key));
        }
    }
    Ok(Trust {
        policy,
        train_keys,
        job_keys,
    })
}
