//! The station's policy file and the keys it trusts: who may sign trains, who may sign jobs,
//! and who may sign the base images trains are built on.
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
    /// Keys trusted to sign base images (`trusted_base_signers`), and nothing else.
    pub base_keys: NamedKeys,
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
    #[error("{}: {list} `{signer}`: cannot read public key {}: {source}", policy.display(), key.display())]
    ReadKey {
        policy: PathBuf,
        /// `trusted signer` or `trusted base signer`.
        list: &'static str,
        signer: String,
        key: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {list} `{signer}`: public key {}: {source}", policy.display(), key.display())]
    InvalidKey {
        policy: PathBuf,
        list: &'static str,
        signer: String,
        key: PathBuf,
        source: pht_core::keys::KeyError,
    },
    #[error("{}: trusted base signer `{base_signer}` has the same public key as trusted signer `{signer}`: a key that signs base images must not sign trains or jobs; give the bases a key of their own (`pht key generate`)", policy.display())]
    SharedBaseKey {
        policy: PathBuf,
        base_signer: String,
        signer: String,
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
    let mut signer_keys: NamedKeys = Vec::new();
    for signer in policy.trusted_signers() {
        let key = read_key(
            path,
            "trusted signer",
            signer.name(),
            signer.public_key_path(),
        )?;
        if signer.may_sign(Role::Trains) {
            train_keys.push((signer.name().to_string(), key.clone()));
        }
        if signer.may_sign(Role::Jobs) {
            job_keys.push((signer.name().to_string(), key.clone()));
        }
        signer_keys.push((signer.name().to_string(), key));
    }
    let mut base_keys = Vec::new();
    for base_signer in policy.trusted_base_signers() {
        let key = read_key(
            path,
            "trusted base signer",
            base_signer.name(),
            base_signer.public_key_path(),
        )?;
        // Separate lists keep a base key from verifying trains; one key in both would undo that.
        if let Some((signer, _)) = signer_keys.iter().find(|(_, other)| *other == key) {
            return Err(TrustError::SharedBaseKey {
                policy: path.to_path_buf(),
                base_signer: base_signer.name().to_string(),
                signer: signer.clone(),
            });
        }
        base_keys.push((base_signer.name().to_string(), key));
    }
    Ok(Trust {
        policy,
        train_keys,
        job_keys,
        base_keys,
    })
}

fn read_key(
    policy: &Path,
    list: &'static str,
    signer: &str,
    key_path: &Path,
) -> Result<PublicKey, TrustError> {
    let pem = std::fs::read_to_string(key_path).map_err(|source| TrustError::ReadKey {
        policy: policy.to_path_buf(),
        list,
        signer: signer.to_string(),
        key: key_path.to_path_buf(),
        source,
    })?;
    PublicKey::from_pem(&pem).map_err(|source| TrustError::InvalidKey {
        policy: policy.to_path_buf(),
        list,
        signer: signer.to_string(),
        key: key_path.to_path_buf(),
        source,
    })
}
