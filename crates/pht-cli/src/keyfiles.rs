//! Reading key files: private keys (asking for a passphrase when they are
//! encrypted), public keys, and the researcher's age identity.

use std::io::IsTerminal as _;
use std::path::Path;

use anyhow::Context as _;
use pht_core::{PublicKey, SigningKey};

use crate::exit::{Classify as _, CommandResult};

/// The environment variable that holds a key passphrase for non-interactive use.
pub const PASSWORD_ENV: &str = "PHT_KEY_PASSWORD";

/// Reads a private key, decrypting it with `PHT_KEY_PASSWORD` or a prompt when it is encrypted.
pub fn read_signing_key(path: &Path) -> CommandResult<SigningKey> {
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read private key {}", path.display()))
        .input()?;
    let passphrase = if SigningKey::pem_is_encrypted(&pem) {
        Some(match std::env::var(PASSWORD_ENV) {
            Ok(passphrase) => passphrase,
            Err(_) if std::io::stdin().is_terminal() => {
                rpassword::prompt_password(format!("passphrase for {}: ", path.display()))
                    .context("cannot read the passphrase")
                    .input()?
            }
            Err(_) => {
                return Err(anyhow::anyhow!(
                "private key {} is encrypted: set {PASSWORD_ENV} or run in a terminal to be asked",
                path.display()
            ))
                .input()
            }
        })
    } else {
        None
    };
    SigningKey::from_pkcs8_pem(&pem, passphrase.as_deref())
        .with_context(|| format!("cannot use private key {}", path.display()))
        .input()
}

/// Reads a PEM public key.
pub fn read_public_key(path: &Path) -> CommandResult<PublicKey> {
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read public key {}", path.display()))
        .input()?;
    PublicKey::from_pem(&pem)
        .with_context(|| format!("cannot use public key {}", path.display()))
        .input()
}
