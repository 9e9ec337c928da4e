//! Interoperability of our key files with Debian's `openssl` (OpenSSL 3): every private key we
//! write, plain and passphrase-encrypted, Ed25519 and P-256, is read by `openssl pkey` with its
//! default limits, and the public key OpenSSL derives from it is the one we derive.
//!
//! Runs real processes in a temporary directory; fails, and does not skip, when `openssl` is
//! missing (`apt-get install openssl`).

use std::process::Command;

use pht_core::{KeyAlgorithm, SigningKey};

fn openssl_public_key(private_pem: &str, passphrase: Option<&str>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("key.pem");
    std::fs::write(&key_path, private_pem).unwrap();
    let mut command = Command::new("openssl");
    command.arg("pkey").arg("-in").arg(&key_path).arg("-pubout");
    if let Some(passphrase) = passphrase {
        command.arg("-passin").arg(format!("pass:{passphrase}"));
    }
    let output = command
        .output()
        .expect("cannot run `openssl`; install it with `apt-get install openssl`");
    assert!(
        output.status.success(),
        "openssl pkey refused our key: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn check(algorithm: KeyAlgorithm, passphrase: Option<&str>) {
    let key = SigningKey::generate(algorithm);
    let pem = key.to_pkcs8_pem(passphrase).unwrap();
    assert_eq!(
        openssl_public_key(&pem, passphrase).trim(),
        key.public_key().to_pem().trim(),
        "{algorithm} passphrase={}",
        passphrase.is_some()
    );
    // And we read back what we wrote.
    let read = SigningKey::from_pkcs8_pem(&pem, passphrase).unwrap();
    assert_eq!(read.public_key(), key.public_key());
}

#[test]
fn openssl_reads_a_plain_ed25519_key() {
    check(KeyAlgorithm::Ed25519, None);
}

#[test]
fn openssl_reads_an_encrypted_ed25519_key_within_its_scrypt_memory_limit() {
    check(KeyAlgorithm::Ed25519, Some("correct horse battery staple"));
}

#[test]
fn openssl_reads_a_plain_p256_key() {
    check(KeyAlgorithm::P256, None);
}

#[test]
fn openssl_reads_an_encrypted_p256_key() {
    check(KeyAlgorithm::P256, Some("correct horse battery staple"));
}

#[test]
fn we_read_keys_openssl_writes() {
    let dir = tempfile::tempdir().unwrap();
    for (algorithm, args) in [
        ("ed25519", vec!["genpkey", "-algorithm", "ed25519"]),
        (
            "p256",
            vec![
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ],
        ),
    ] {
        let path = dir.path().join(format!("{algorithm}.pem"));
        let status = Command::new("openssl")
            .args(&args)
            .arg("-out")
            .arg(&path)
            .status()
            .expect("cannot run `openssl`; install it with `apt-get install openssl`");
        assert!(status.success());
        let pem = std::fs::read_to_string(&path).unwrap();
        SigningKey::from_pkcs8_pem(&pem, None)
            .unwrap_or_else(|e| panic!("{algorithm} key from openssl: {e}"));
    }
}
