//! HTTP Message Signatures (RFC 9421) in the one profile this project uses, with RFC 9530
//! `Content-Digest` over the body.
//!
//! Owns the signature base (RFC 9421 §2.5), the `Signature-Input`, `Signature` and
//! `Content-Digest` header values, the small part of RFC 8941 structured fields those headers
//! need, and checking a received signature against a key and a clock. Every request signs the
//! components `"@method" "@path" "@query" "content-digest"` with the parameters `created`,
//! `nonce`, `keyid` and `alg`; the digest is sent for empty bodies too, so a verifier never has
//! to guess whether a request "has" a body.
//!
//! This module does no I/O and keeps no memory: replay detection (remembering nonces) belongs to
//! the verifier's store, and finding the key for a `keyid` to the caller.
//!
//! One concern a file: `base` builds the signature base from a request's components, `sign`
//! makes the headers, `verify` parses and checks them, and `structured` is the RFC 8941 parser
//! they share. This file holds the profile's constants, the values that cross the API and the
//! error type.

mod base;
mod sign;
mod structured;
#[cfg(test)]
mod tests;
mod verify;

pub use base::{content_digest, signature_base, ParameterValue, SignatureParams};
pub use sign::sign_request;
pub use verify::{check_content_digest, parse_signature, verify_request, ParsedSignature};

use chrono::{DateTime, Utc};

use crate::keys::KeyAlgorithm;

/// The dictionary label under which this project's clients put their signature.
pub const SIGNATURE_LABEL: &str = "pht";

/// The components every request signs, in this order.
pub const COVERED_COMPONENTS: [&str; 4] = ["@method", "@path", "@query", "content-digest"];

/// How far a signature's `created` may lie from the verifier's clock, either way.
pub const ALLOWED_CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(5);

/// Header names, lower-case as HTTP/2 writes them.
pub const SIGNATURE_INPUT_HEADER: &str = "signature-input";
pub const SIGNATURE_HEADER: &str = "signature";
pub const CONTENT_DIGEST_HEADER: &str = "content-digest";

/// What a signature covers of a request: the values, not a request object, so that any HTTP
/// library can describe its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestDescription<'a> {
    /// The method as sent, e.g. `GET`.
    pub method: &'a str,
    /// The absolute path as sent on the wire (still percent-encoded), without the query.
    pub path: &'a str,
    /// The query as sent, without the leading `?`; `None` or empty when there is none.
    pub query: Option<&'a str>,
    pub body: &'a [u8],
}

/// The three header values a signed request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeaders {
    pub signature_input: String,
    pub signature: String,
    pub content_digest: String,
}

/// The header values a verifier received; `None` for a header that was absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceivedSignatureHeaders<'a> {
    pub signature_input: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub content_digest: Option<&'a str>,
}

/// A signature that verified: who signed, when, and the nonce the caller must remember until
/// `created + ALLOWED_CLOCK_SKEW` to refuse replays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSignature {
    pub keyid: String,
    pub created: DateTime<Utc>,
    pub nonce: String,
}

impl VerifiedSignature {
    /// The moment after which this signature can no longer pass the clock-skew check, so its
    /// nonce need not be remembered any longer.
    pub fn replay_window_end(&self) -> DateTime<Utc> {
        self.created + ALLOWED_CLOCK_SKEW
    }
}

/// Why a request signature was not made or not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpSignatureError {
    #[error("the request has no `{header}` header; sign every request (RFC 9421)")]
    MissingHeader { header: &'static str },
    #[error("the `{header}` header is malformed: {detail}")]
    MalformedHeader {
        header: &'static str,
        detail: String,
    },
    #[error("the `content-digest` header has no `sha-256` entry")]
    MissingSha256Digest,
    #[error("the body does not match `content-digest`: header says {header_digest}, body hashes to {body_digest}")]
    ContentDigestMismatch {
        header_digest: String,
        body_digest: String,
    },
    #[error("the `signature-input` header has no signature covering {expected}; found {found}")]
    UnsupportedComponents { expected: String, found: String },
    #[error("the signature has no `{label}` entry in the `signature` header")]
    MissingSignatureValue { label: String },
    #[error("the signature parameters lack `{parameter}`")]
    MissingParameter { parameter: &'static str },
    #[error("the signature parameter `{parameter}` has the wrong type: expected {expected}")]
    ParameterType {
        parameter: &'static str,
        expected: &'static str,
    },
    #[error(
        "the signature algorithm `{alg}` is not supported: use `ed25519` or `ecdsa-p256-sha256`"
    )]
    UnsupportedAlgorithm { alg: String },
    #[error("the signature declares algorithm `{declared}` but key `{keyid}` is {key_algorithm}")]
    AlgorithmMismatch {
        declared: String,
        keyid: String,
        key_algorithm: KeyAlgorithm,
    },
    #[error("no key is registered for keyid `{keyid}`")]
    UnknownKey { keyid: String },
    #[error("the signature was created at {created}, more than {skew_seconds}s from the verifier's clock ({now}); check the signer's clock")]
    OutsideClockSkew {
        created: DateTime<Utc>,
        now: DateTime<Utc>,
        skew_seconds: i64,
    },
    #[error("the signature expired at {expires} (now {now})")]
    Expired {
        expires: DateTime<Utc>,
        now: DateTime<Utc>,
    },
    #[error("the signature does not verify under the key of `{keyid}`")]
    BadSignature { keyid: String },
    #[error("cannot sign: the {parameter} `{value}` contains characters a structured-field string cannot carry")]
    UnencodableParameter {
        parameter: &'static str,
        value: String,
    },
}
