//! Signing keys: Ed25519 (the default) and ECDSA P-256 with SHA-256 (cosign's default).
//!
//! Owns generation, PEM encoding (private keys as PKCS#8, optionally passphrase-encrypted with
//! PBES2/scrypt/AES-256-CBC; public keys as SubjectPublicKeyInfo, as cosign writes them), signing
//! and verification over raw bytes. Reading key files and prompting for passphrases is the
//! caller's job.

use std::fmt;

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signer as _, Verifier as _};
use pkcs8::der::pem::LineEnding;
use pkcs8::der::Decode as _;
use rand_core::OsRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

const ED25519_OID: pkcs8::ObjectIdentifier = pkcs8::ObjectIdentifier::new_unwrap("1.3.101.112");
const EC_PUBLIC_KEY_OID: pkcs8::ObjectIdentifier =
    pkcs8::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");

/// The signature algorithms a train or job may be signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyAlgorithm {
    /// Ed25519, signing the message bytes directly.
    Ed25519,
    /// ECDSA over NIST P-256 with SHA-256, DER-encoded signatures (cosign's default).
    P256,
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyAlgorithm::Ed25519 => "ed25519",
            KeyAlgorithm::P256 => "ecdsa-p256-sha256",
        })
    }
}

/// Why a key could not be read or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the key file is empty (expected a PEM key starting `-----BEGIN`)")]
    Empty,
    #[error(
        "this looks like an age identity (a secret key), not a signing key; give the PEM key file"
    )]
    AgeIdentity,
    #[error("not a PEM private key: {0} (expected `-----BEGIN PRIVATE KEY-----` or `-----BEGIN ENCRYPTED PRIVATE KEY-----`)")]
    PrivatePem(String),
    #[error("not a PEM public key: {0} (expected `-----BEGIN PUBLIC KEY-----`, SubjectPublicKeyInfo as cosign writes it)")]
    PublicPem(String),
    #[error("the private key is encrypted: give its passphrase (PHT_KEY_PASSWORD or the prompt)")]
    PassphraseRequired,
    #[error("could not decrypt the private key: wrong passphrase or damaged file")]
    Decrypt,
    #[error("unsupported key algorithm {0}: use Ed25519 or ECDSA P-256")]
    UnsupportedAlgorithm(String),
    #[error("could not encode the key: {0}")]
    Encode(String),
}

/// Why a signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature is not well-formed for {algorithm}: {detail}")]
    Malformed {
        algorithm: KeyAlgorithm,
        detail: String,
    },
    #[error("the signature does not match the data under this {algorithm} key (key id {key_id})")]
    Mismatch {
        algorithm: KeyAlgorithm,
        key_id: String,
    },
}

/// A private signing key.
pub enum SigningKey {
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::ecdsa::SigningKey),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        write!(
            f,
            "SigningKey({}, key id {})",
            self.algorithm(),
            self.public_key().key_id()
        )
    }
}

impl SigningKey {
    /// A new random key.
    pub fn generate(algorithm: KeyAlgorithm) -> SigningKey {
        match algorithm {
            KeyAlgorithm::Ed25519 => {
                SigningKey::Ed25519(ed25519_dalek::SigningKey::generate(&mut OsRng))
            }
            KeyAlgorithm::P256 => SigningKey::P256(p256::ecdsa::SigningKey::random(&mut OsRng)),
        }
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        match self {
            SigningKey::Ed25519(_) => KeyAlgorithm::Ed25519,
            SigningKey::P256(_) => KeyAlgorithm::P256,
        }
    }

    pub fn public_key(&self) -> PublicKey {
        match self {
            SigningKey::Ed25519(key) => PublicKey::Ed25519(key.verifying_key()),
            SigningKey::P256(key) => PublicKey::P256(*key.verifying_key()),
        }
    }

    /// Signs `message`: Ed25519 over the bytes, P-256 as ECDSA over their SHA-256, DER-encoded.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            SigningKey::Ed25519(key) => key.sign(message).to_bytes().to_vec(),
            SigningKey::P256(key) => {
                let signature: p256::ecdsa::Signature = key.sign(message);
                signature.to_der().as_bytes().to_vec()
            }
        }
    }

    /// PKCS#8 PEM; encrypted (PBES2, scrypt, AES-256-CBC) when a passphrase is given. Written
    /// so that OpenSSL 3 reads it: Ed25519 as PKCS#8 v1 (RFC 8410, without the optional public
    /// key that OpenSSL calls unsupported), and scrypt at N = 2^14, r = 8, p = 1 — OpenSSL's own
    /// parameters, within its default 32 MiB memory limit.
    pub fn to_pkcs8_pem(&self, passphrase: Option<&str>) -> Result<String, KeyError> {
        use pkcs8::der::Encode as _;
        let encode_error = |e: pkcs8::der::Error| KeyError::Encode(e.to_string());
        let document = match self {
            SigningKey::Ed25519(key) => {
                // RFC 8410: the private key is an OCTET STRING holding the 32-byte seed.
                let seed = pkcs8::der::asn1::OctetString::new(key.to_bytes().to_vec())
                    .and_then(|octets| octets.to_der())
                    .map_err(encode_error)?;
                let algorithm = pkcs8::AlgorithmIdentifierRef {
                    oid: ED25519_OID,
                    parameters: None,
                };
                let der = pkcs8::PrivateKeyInfo::new(algorithm, &seed)
                    .to_der()
                    .map_err(encode_error)?;
                pkcs8::SecretDocument::try_from(der.as_slice()).map_err(encode_error)?
            }
            SigningKey::P256(key) => key
                .to_pkcs8_der()
                .map_err(|e| KeyError::Encode(e.to_string()))?,
        };
        let pem = match passphrase {
            None => document.to_pem("PRIVATE KEY", LineEnding::LF),
            Some(passphrase) => {
                let info =
                    pkcs8::PrivateKeyInfo::from_der(document.as_bytes()).map_err(encode_error)?;
                let mut salt = [0u8; 16];
                let mut iv = [0u8; 16];
                rand_core::RngCore::fill_bytes(&mut OsRng, &mut salt);
                rand_core::RngCore::fill_bytes(&mut OsRng, &mut iv);
                let scrypt = pkcs8::pkcs5::scrypt::Params::new(14, 8, 1, 32)
                    .map_err(|e| KeyError::Encode(e.to_string()))?;
                let parameters =
                    pkcs8::pkcs5::pbes2::Parameters::scrypt_aes256cbc(scrypt, &salt, &iv)
                        .map_err(|e| KeyError::Encode(e.to_string()))?;
                info.encrypt_with_params(parameters, passphrase.as_bytes())
                    .map_err(|e| KeyError::Encode(e.to_string()))?
                    .to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF)
            }
        }
        .map_err(|e| KeyError::Encode(e.to_string()))?;
        Ok(pem.to_string())
    }

    /// Whether a PEM private key is passphrase-encrypted (so the caller knows to ask for one).
    pub fn pem_is_encrypted(pem: &str) -> bool {
        pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    }

    /// Reads a PKCS#8 PEM private key, decrypting it with `passphrase` when it is encrypted.
    pub fn from_pkcs8_pem(pem: &str, passphrase: Option<&str>) -> Result<SigningKey, KeyError> {
        check_not_empty_or_age(pem)?;
        let (label, der) = pkcs8::der::pem::decode_vec(pem.trim().as_bytes())
            .map_err(|e| KeyError::PrivatePem(e.to_string()))?;
        let plain_der = match label {
            "PRIVATE KEY" => pkcs8::SecretDocument::try_from(der.as_slice())
                .map_err(|e| KeyError::PrivatePem(e.to_string()))?,
            "ENCRYPTED PRIVATE KEY" => {
                let passphrase = passphrase.ok_or(KeyError::PassphraseRequired)?;
                let encrypted = pkcs8::EncryptedPrivateKeyInfo::from_der(&der)
                    .map_err(|e| KeyError::PrivatePem(e.to_string()))?;
                encrypted
                    .decrypt(passphrase.as_bytes())
                    .map_err(|_| KeyError::Decrypt)?
            }
            other => {
                return Err(KeyError::PrivatePem(format!(
                    "unexpected PEM label `{other}`"
                )))
            }
        };
        let info = pkcs8::PrivateKeyInfo::from_der(plain_der.as_bytes())
            .map_err(|e| KeyError::PrivatePem(e.to_string()))?;
        let oid = info.algorithm.oid;
        if oid == ED25519_OID {
            let key = ed25519_dalek::SigningKey::from_pkcs8_der(plain_der.as_bytes())
                .map_err(|e| KeyError::PrivatePem(e.to_string()))?;
            Ok(SigningKey::Ed25519(key))
        } else if oid == EC_PUBLIC_KEY_OID {
            let key =
                p256::ecdsa::SigningKey::from_pkcs8_der(plain_der.as_bytes()).map_err(|_| {
                    KeyError::UnsupportedAlgorithm("an EC key on a curve other than P-256".into())
                })?;
            Ok(SigningKey::P256(key))
        } else {
            Err(KeyError::UnsupportedAlgorithm(algorithm_name(oid)))
        }
    }
}

/// Refuses what cannot be a PEM key before the PEM parser does, with words instead of its
/// (an empty file reads as "invalid data (NUL byte)" there). Never echoes the input: a secret
/// key given by mistake must not reach a message.
fn check_not_empty_or_age(pem: &str) -> Result<(), KeyError> {
    let text = pem.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    if text.is_empty() {
        return Err(KeyError::Empty);
    }
    if text.contains("AGE-SECRET-KEY-") {
        return Err(KeyError::AgeIdentity);
    }
    Ok(())
}

/// An algorithm's name for a message: the common ones by name, others by OID.
fn algorithm_name(oid: pkcs8::ObjectIdentifier) -> String {
    match oid.to_string().as_str() {
        "1.2.840.113549.1.1.1" => "RSA".to_string(),
        "1.2.840.10040.4.1" => "DSA".to_string(),
        "1.3.101.113" => "Ed448".to_string(),
        other => other.to_string(),
    }
}

/// A public verification key.
#[derive(Clone, PartialEq, Eq)]
pub enum PublicKey {
    Ed25519(ed25519_dalek::VerifyingKey),
    P256(p256::ecdsa::VerifyingKey),
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PublicKey({}, key id {})",
            self.algorithm(),
            self.key_id()
        )
    }
}

impl PublicKey {
    pub fn algorithm(&self) -> KeyAlgorithm {
        match self {
            PublicKey::Ed25519(_) => KeyAlgorithm::Ed25519,
            PublicKey::P256(_) => KeyAlgorithm::P256,
        }
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn to_spki_der(&self) -> Vec<u8> {
        let document = match self {
            PublicKey::Ed25519(key) => key.to_public_key_der(),
            PublicKey::P256(key) => key.to_public_key_der(),
        };
        // Encoding a valid in-memory key cannot fail; the document is a few dozen bytes.
        document.map(|d| d.as_bytes().to_vec()).unwrap_or_default()
    }

    /// PEM SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`), readable by cosign.
    pub fn to_pem(&self) -> String {
        let pem = match self {
            PublicKey::Ed25519(key) => key.to_public_key_pem(LineEnding::LF),
            PublicKey::P256(key) => key.to_public_key_pem(LineEnding::LF),
        };
        pem.unwrap_or_default()
    }

    /// Reads a PEM SubjectPublicKeyInfo.
    pub fn from_pem(pem: &str) -> Result<PublicKey, KeyError> {
        check_not_empty_or_age(pem)?;
        let (label, der) = pkcs8::der::pem::decode_vec(pem.trim().as_bytes())
            .map_err(|e| KeyError::PublicPem(e.to_string()))?;
        if label != "PUBLIC KEY" {
            return Err(KeyError::PublicPem(format!(
                "unexpected PEM label `{label}`"
            )));
        }
        PublicKey::from_spki_der(&der)
    }

    /// Reads a DER SubjectPublicKeyInfo.
    pub fn from_spki_der(der: &[u8]) -> Result<PublicKey, KeyError> {
        let info = pkcs8::spki::SubjectPublicKeyInfoRef::from_der(der)
            .map_err(|e| KeyError::PublicPem(e.to_string()))?;
        let oid = info.algorithm.oid;
        if oid == ED25519_OID {
            ed25519_dalek::VerifyingKey::from_public_key_der(der)
                .map(PublicKey::Ed25519)
                .map_err(|e| KeyError::PublicPem(e.to_string()))
        } else if oid == EC_PUBLIC_KEY_OID {
            p256::ecdsa::VerifyingKey::from_public_key_der(der)
                .map(PublicKey::P256)
                .map_err(|_| {
                    KeyError::UnsupportedAlgorithm("an EC key on a curve other than P-256".into())
                })
        } else {
            Err(KeyError::UnsupportedAlgorithm(algorithm_name(oid)))
        }
    }

    /// A stable identifier: the hex SHA-256 of the DER SubjectPublicKeyInfo, first 16 digits.
    pub fn key_id(&self) -> String {
        hex::encode(&Sha256::digest(self.to_spki_der())[..8])
    }

    /// Verifies `signature` over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
        let algorithm = self.algorithm();
        let mismatch = || SignatureError::Mismatch {
            algorithm,
            key_id: self.key_id(),
        };
        match self {
            PublicKey::Ed25519(key) => {
                let signature = ed25519_dalek::Signature::from_slice(signature).map_err(|e| {
                    SignatureError::Malformed {
                        algorithm,
                        detail: e.to_string(),
                    }
                })?;
                key.verify(message, &signature).map_err(|_| mismatch())
            }
            PublicKey::P256(key) => {
                let signature = p256::ecdsa::Signature::from_der(signature).map_err(|e| {
                    SignatureError::Malformed {
                        algorithm,
                        detail: e.to_string(),
                    }
                })?;
                key.verify(message, &signature).map_err(|_| mismatch())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(algorithm: KeyAlgorithm, passphrase: Option<&str>) {
        let key = SigningKey::generate(algorithm);
        let pem = key.to_pkcs8_pem(passphrase).unwrap();
        assert_eq!(SigningKey::pem_is_encrypted(&pem), passphrase.is_some());
        let read_back = SigningKey::from_pkcs8_pem(&pem, passphrase).unwrap();
        assert_eq!(read_back.public_key(), key.public_key());
        let public = PublicKey::from_pem(&key.public_key().to_pem()).unwrap();
        let signature = read_back.sign(b"train");
        public.verify(b"train", &signature).unwrap();
        assert!(public.verify(b"trains", &signature).is_err());
    }

    #[test]
    fn ed25519_plain_key_round_trips() {
        round_trip(KeyAlgorithm::Ed25519, None);
    }

    #[test]
    fn p256_plain_key_round_trips() {
        round_trip(KeyAlgorithm::P256, None);
    }

    #[test]
    fn ed25519_encrypted_key_round_trips() {
        round_trip(KeyAlgorithm::Ed25519, Some("correct horse"));
    }

    #[test]
    fn p256_encrypted_key_round_trips() {
        round_trip(KeyAlgorithm::P256, Some("correct horse"));
    }

    #[test]
    fn encrypted_key_with_wrong_or_missing_passphrase_is_refused() {
        let pem = SigningKey::generate(KeyAlgorithm::Ed25519)
            .to_pkcs8_pem(Some("right"))
            .unwrap();
        assert!(matches!(
            SigningKey::from_pkcs8_pem(&pem, Some("wrong")),
            Err(KeyError::Decrypt)
        ));
        assert!(matches!(
            SigningKey::from_pkcs8_pem(&pem, None),
            Err(KeyError::PassphraseRequired)
        ));
    }

    #[test]
    fn public_pem_is_subject_public_key_info() {
        let pem = SigningKey::generate(KeyAlgorithm::P256)
            .public_key()
            .to_pem();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
    }

    #[test]
    fn private_key_is_not_accepted_as_public_key() {
        let pem = SigningKey::generate(KeyAlgorithm::Ed25519)
            .to_pkcs8_pem(None)
            .unwrap();
        assert!(matches!(
            PublicKey::from_pem(&pem),
            Err(KeyError::PublicPem(_))
        ));
    }

    #[test]
    fn an_empty_key_file_says_it_is_empty() {
        for empty in ["", "\n\n", "\0\0"] {
            assert!(matches!(
                SigningKey::from_pkcs8_pem(empty, None),
                Err(KeyError::Empty)
            ));
            assert!(matches!(PublicKey::from_pem(empty), Err(KeyError::Empty)));
        }
    }

    #[test]
    fn an_age_identity_given_as_a_key_is_named_and_never_echoed() {
        let identity = "# created: 2026-01-01\nAGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ\n";
        let error = PublicKey::from_pem(identity).unwrap_err().to_string();
        assert!(error.contains("age identity"), "{error}");
        assert!(!error.contains("AGE-SECRET-KEY-1"), "{error}");
        let error = SigningKey::from_pkcs8_pem(identity, None)
            .unwrap_err()
            .to_string();
        assert!(!error.contains("AGE-SECRET-KEY-1"), "{error}");
    }
}
