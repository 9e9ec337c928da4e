//! The station's own keys, in its key directory: `station.key` signs provenance (Ed25519,
//! PKCS#8), `station.pub` is what researchers verify it with, and `station.age` /
//! `station.age.pub` receive state handed over by the previous stop of a sequential route.
//!
//! Owns creating and reading those files; signing and sealing are `pht-core`'s.

use std::path::{Path, PathBuf};

use age::secrecy::ExposeSecret as _;
use pht_core::{KeyAlgorithm, SigningKey};

/// The environment variable holding the station key's passphrase, if it is encrypted.
pub const PASSWORD_ENV: &str = "PHT_STATION_KEY_PASSWORD";

/// The files of a station's key directory.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyFiles {
    pub signing_key: PathBuf,
    pub public_key: PathBuf,
    pub age_identity: PathBuf,
    pub age_recipient: PathBuf,
}

impl KeyFiles {
    pub fn in_dir(key_dir: &Path) -> KeyFiles {
        KeyFiles {
            signing_key: key_dir.join("station.key"),
            public_key: key_dir.join("station.pub"),
            age_identity: key_dir.join("station.age"),
            age_recipient: key_dir.join("station.age.pub"),
        }
    }
}

/// A station key file that cannot be read or created.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{} exists: a station keeps its keys (researchers trust them); remove them by hand to replace", path.display())]
    Exists { path: PathBuf },
    #[error("cannot create {}: {source}", path.display())]
    CreateDirectory {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {detail}", path.display())]
    Invalid { path: PathBuf, detail: String },
    #[error("cannot encode the new station key: {0}")]
    Encode(pht_core::keys::KeyError),
}

fn write_error(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Write {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates the station's keys; refuses to replace existing ones.
pub fn init(key_dir: &Path) -> Result<KeyFiles, KeyError> {
    let files = KeyFiles::in_dir(key_dir);
    for path in [
        &files.signing_key,
        &files.public_key,
        &files.age_identity,
        &files.age_recipient,
    ] {
        if path.exists() {
            return Err(KeyError::Exists { path: path.clone() });
        }
    }
    std::fs::create_dir_all(key_dir).map_err(|source| KeyError::CreateDirectory {
        path: key_dir.to_path_buf(),
        source,
    })?;
    let key = SigningKey::generate(KeyAlgorithm::Ed25519);
    let passphrase = std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty());
    let pem = key
        .to_pkcs8_pem(passphrase.as_deref())
        .map_err(KeyError::Encode)?;
    pht_fs::write_private(&files.signing_key, pem.as_bytes())
        .map_err(write_error(&files.signing_key))?;
    std::fs::write(&files.public_key, key.public_key().to_pem())
        .map_err(write_error(&files.public_key))?;
    let identity = age::x25519::Identity::generate();
    pht_fs::write_private(
        &files.age_identity,
        format!("{}\n", identity.to_string().expose_secret()).as_bytes(),
    )
    .map_err(write_error(&files.age_identity))?;
    std::fs::write(&files.age_recipient, format!("{}\n", identity.to_public()))
        .map_err(write_error(&files.age_recipient))?;
    Ok(files)
}

/// The station's signing key, if it has one.
pub fn read_signing_key(key_dir: &Path) -> Result<Option<SigningKey>, KeyError> {
    let path = KeyFiles::in_dir(key_dir).signing_key;
    let pem = match std::fs::read_to_string(&path) {
        Ok(pem) => pem,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(KeyError::Read { path, source }),
    };
    let passphrase = std::env::var(PASSWORD_ENV).ok();
    SigningKey::from_pkcs8_pem(&pem, passphrase.as_deref())
        .map(Some)
        .map_err(|e| KeyError::Invalid {
            detail: format!(
                "{e} (an encrypted station key reads its passphrase from {PASSWORD_ENV})"
            ),
            path,
        })
}

/// The station's age identity (for state from the previous stop), if it has one.
pub fn read_age_identity(key_dir: &Path) -> Result<Option<age::x25519::Identity>, KeyError> {
    let path = KeyFiles::in_dir(key_dir).age_identity;
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(KeyError::Read { path, source }),
    };
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or_default();
    line.parse::<age::x25519::Identity>()
        .map(Some)
        .map_err(|e| KeyError::Invalid {
            detail: format!("not an age identity: {e}"),
            path,
        })
}
