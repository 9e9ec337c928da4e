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

#[cfg(test)]
mod tests {
    use pht_core::{KeyAlgorithm, SigningKey};

    use super::*;

    /// A policy in a temporary directory trusting `alice` for trains and jobs and `bases-2026`
    /// for bases, with the given keys.
    fn load(
        alice: &SigningKey,
        bases: &SigningKey,
    ) -> (tempfile::TempDir, Result<Trust, TrustError>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("alice.pub"), alice.public_key().to_pem()).unwrap();
        std::fs::write(dir.path().join("bases.pub"), bases.public_key().to_pem()).unwrap();
        std::fs::write(
            dir.path().join("policy.yaml"),
            "version: 1\ntrusted_signers:\n  - name: alice\n    public_key: alice.pub\n    purposes: ['*']\n    datasets: []\nregistries: []\ntrusted_base_signers:\n  - name: bases-2026\n    public_key: bases.pub\n",
        )
        .unwrap();
        let trust = load_policy(&dir.path().join("policy.yaml"));
        (dir, trust)
    }

    #[test]
    fn base_keys_are_kept_apart_from_train_and_job_keys() {
        let alice = SigningKey::generate(KeyAlgorithm::Ed25519);
        let bases = SigningKey::generate(KeyAlgorithm::P256);
        let (_dir, trust) = load(&alice, &bases);
        let trust = trust.unwrap();
        let names = |keys: &NamedKeys| keys.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(&trust.train_keys), ["alice"]);
        assert_eq!(names(&trust.job_keys), ["alice"]);
        assert_eq!(names(&trust.base_keys), ["bases-2026"]);
        assert_eq!(trust.base_keys[0].1, bases.public_key());
    }

    #[test]
    fn a_base_key_that_is_also_a_trusted_signers_key_is_refused() {
        let alice = SigningKey::generate(KeyAlgorithm::Ed25519);
        let (dir, trust) = load(&alice, &alice);
        let message = trust.unwrap_err().to_string();
        let message = message.replace(&dir.path().display().to_string(), "<dir>");
        expect_test::expect!["<dir>/policy.yaml: trusted base signer `bases-2026` has the same public key as trusted signer `alice`: a key that signs base images must not sign trains or jobs; give the bases a key of their own (`pht key generate`)"]
            .assert_eq(&message);
    }
}
