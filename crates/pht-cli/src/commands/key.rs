//! `pht key generate`: a signing key pair and an age identity for receiving results.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use age::secrecy::ExposeSecret as _;
use anyhow::Context as _;
use pht_core::{KeyAlgorithm, SigningKey};
use serde::Serialize;

use crate::exit::{fail, Classify as _, CommandResult, FailureKind};
use crate::keyfiles::PASSWORD_ENV;
use crate::output::Output;

#[derive(Serialize)]
struct GeneratedKeys {
    algorithm: KeyAlgorithm,
    key_id: String,
    private_key: PathBuf,
    public_key: PathBuf,
    encrypted: bool,
    age_identity: PathBuf,
    age_recipient: String,
    age_recipient_file: PathBuf,
}

fn passphrase() -> CommandResult<Option<String>> {
    if let Ok(passphrase) = std::env::var(PASSWORD_ENV) {
        return Ok((!passphrase.is_empty()).then_some(passphrase));
    }
    if !std::io::stdin().is_terminal() {
        eprintln!("warning: {PASSWORD_ENV} is not set and there is no terminal to ask: the private key is written unencrypted");
        return Ok(None);
    }
    let first =
        rpassword::prompt_password("passphrase for the new key (empty for none): ").input()?;
    if first.is_empty() {
        return Ok(None);
    }
    let second = rpassword::prompt_password("the same passphrase again: ").input()?;
    if first != second {
        return Err(fail(
            FailureKind::Input,
            "the passphrases differ; nothing was written",
        ));
    }
    Ok(Some(first))
}

pub fn generate(
    output: Output,
    algorithm: KeyAlgorithm,
    dir: &Path,
    name: &str,
    force: bool,
) -> CommandResult {
    let paths = [
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pub")),
        dir.join(format!("{name}.age")),
        dir.join(format!("{name}.age.pub")),
    ];
    for path in &paths {
        if path.exists() {
            if !force {
                return Err(fail(
                    FailureKind::Input,
                    format!(
                        "{} exists; pass --force to replace it, or choose another --name",
                        path.display()
                    ),
                ));
            }
            std::fs::remove_file(path)
                .with_context(|| format!("cannot replace {}", path.display()))
                .input()?;
        }
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
        .input()?;
    let passphrase = passphrase()?;
    let key = SigningKey::generate(algorithm);
    let private_pem = key.to_pkcs8_pem(passphrase.as_deref()).input()?;
    let [private_path, public_path, age_path, age_public_path] = paths;
    pht_fs::write_private(&private_path, private_pem.as_bytes())
        .with_context(|| format!("cannot write {}", private_path.display()))
        .input()?;
    std::fs::write(&public_path, key.public_key().to_pem())
        .with_context(|| format!("cannot write {}", public_path.display()))
        .input()?;

    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let identity_text = format!(
        "# created: {}\n# public key: {recipient}\n{}\n",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        identity.to_string().expose_secret()
    );
    pht_fs::write_private(&age_path, identity_text.as_bytes())
        .with_context(|| format!("cannot write {}", age_path.display()))
        .input()?;
    std::fs::write(&age_public_path, format!("{recipient}\n"))
        .with_context(|| format!("cannot write {}", age_public_path.display()))
        .input()?;

    let generated = GeneratedKeys {
        algorithm,
        key_id: key.public_key().key_id(),
        private_key: private_path,
        public_key: public_path,
        encrypted: passphrase.is_some(),
        age_identity: age_path,
        age_recipient: recipient,
        age_recipient_file: age_public_path,
    };
    output.print(&generated, || {
        format!(
            "generated {} signing key {} ({})\n  private key  {}\n  public key   {}  (give this to station operators)\n  age identity {}  (decrypts your results; keep it secret)\n  age recipient {}",
            generated.algorithm,
            generated.key_id,
            if generated.encrypted { "passphrase-encrypted" } else { "unencrypted" },
            generated.private_key.display(),
            generated.public_key.display(),
            generated.age_identity.display(),
            generated.age_recipient,
        )
    });
    Ok(())
}
