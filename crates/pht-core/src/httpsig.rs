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

use base64::Engine as _;
use chrono::{DateTime, Utc};
use sha2::{Digest as _, Sha256};

use crate::keys::{KeyAlgorithm, PublicKey, SigningKey};

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

/// The `Content-Digest` value (RFC 9530) of `body`: `sha-256=:<base64 of SHA-256>:`.
pub fn content_digest(body: &[u8]) -> String {
    let engine = base64::engine::general_purpose::STANDARD;
    format!("sha-256=:{}:", engine.encode(Sha256::digest(body)))
}

/// A parameter value as RFC 8941 allows on a signature: the kinds RFC 9421 defines use
/// integers and strings; tokens and booleans are accepted so that a signer's extra parameters
/// still verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParameterValue {
    Integer(i64),
    String(String),
    Token(String),
    Boolean(bool),
}

/// The `@signature-params` value: the covered component names and the parameters, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureParams {
    pub components: Vec<String>,
    pub parameters: Vec<(String, ParameterValue)>,
}

impl SignatureParams {
    /// The RFC 8941 serialisation, e.g. `("@method" "@path");created=1;keyid="k"`.
    pub fn serialize(&self) -> String {
        let mut serialized = String::from("(");
        for (component_idx, component) in self.components.iter().enumerate() {
            if component_idx > 0 {
                serialized.push(' ');
            }
            serialized.push_str(&serialize_string(component));
        }
        serialized.push(')');
        for (name, value) in &self.parameters {
            serialized.push(';');
            serialized.push_str(name);
            match value {
                ParameterValue::Integer(integer) => {
                    serialized.push('=');
                    serialized.push_str(&integer.to_string());
                }
                ParameterValue::String(string) => {
                    serialized.push('=');
                    serialized.push_str(&serialize_string(string));
                }
                ParameterValue::Token(token) => {
                    serialized.push('=');
                    serialized.push_str(token);
                }
                ParameterValue::Boolean(true) => {}
                ParameterValue::Boolean(false) => serialized.push_str("=?0"),
            }
        }
        serialized
    }

    fn parameter(&self, name: &str) -> Option<&ParameterValue> {
        self.parameters
            .iter()
            .find(|(candidate, _)| candidate == name)
            .map(|(_, value)| value)
    }

    fn string_parameter(&self, name: &'static str) -> Result<Option<&str>, HttpSignatureError> {
        match self.parameter(name) {
            None => Ok(None),
            Some(ParameterValue::String(value)) => Ok(Some(value)),
            Some(_) => Err(HttpSignatureError::ParameterType {
                parameter: name,
                expected: "a string",
            }),
        }
    }

    fn integer_parameter(&self, name: &'static str) -> Result<Option<i64>, HttpSignatureError> {
        match self.parameter(name) {
            None => Ok(None),
            Some(ParameterValue::Integer(value)) => Ok(Some(*value)),
            Some(_) => Err(HttpSignatureError::ParameterType {
                parameter: name,
                expected: "an integer",
            }),
        }
    }
}

/// The signature base (RFC 9421 §2.5): one `"name": value` line per covered component, in the
/// order of `params.components`, then the `"@signature-params"` line, with no trailing newline.
/// `component_values` holds the value of each component, in the same order.
pub fn signature_base(component_values: &[&str], params: &SignatureParams) -> String {
    let mut base = String::new();
    for (name, value) in params.components.iter().zip(component_values) {
        base.push_str(&serialize_string(name));
        base.push_str(": ");
        base.push_str(value);
        base.push('\n');
    }
    base.push_str("\"@signature-params\": ");
    base.push_str(&params.serialize());
    base
}

/// The value of one component of this profile for `request`.
fn component_value<'r>(
    component: &str,
    request: &RequestDescription<'r>,
    content_digest_value: &'r str,
) -> Option<std::borrow::Cow<'r, str>> {
    use std::borrow::Cow;
    match component {
        "@method" => Some(Cow::Borrowed(request.method)),
        // RFC 9421 §2.2.6: an empty path is `/`.
        "@path" if request.path.is_empty() => Some(Cow::Borrowed("/")),
        "@path" => Some(Cow::Borrowed(request.path)),
        // RFC 9421 §2.2.7: the query with its leading `?`, or `?` alone when there is none.
        "@query" => Some(Cow::Owned(format!("?{}", request.query.unwrap_or("")))),
        "content-digest" => Some(Cow::Borrowed(content_digest_value)),
        _ => None,
    }
}

fn profile_base(
    request: &RequestDescription<'_>,
    content_digest_value: &str,
    params: &SignatureParams,
) -> Option<String> {
    let values = params
        .components
        .iter()
        .map(|component| component_value(component, request, content_digest_value))
        .collect::<Option<Vec<_>>>()?;
    let value_refs: Vec<&str> = values.iter().map(|value| value.as_ref()).collect();
    Some(signature_base(&value_refs, params))
}

/// Signs `request` as `keyid` at `now` with a caller-chosen `nonce` (random, never reused).
pub fn sign_request(
    request: &RequestDescription<'_>,
    key: &SigningKey,
    keyid: &str,
    now: DateTime<Utc>,
    nonce: &str,
) -> Result<SignatureHeaders, HttpSignatureError> {
    for (parameter, value) in [("keyid", keyid), ("nonce", nonce)] {
        if !is_encodable_string(value) {
            return Err(HttpSignatureError::UnencodableParameter {
                parameter,
                value: value.to_string(),
            });
        }
    }
    let params = SignatureParams {
        components: COVERED_COMPONENTS.iter().map(|c| c.to_string()).collect(),
        parameters: vec![
            ("created".into(), ParameterValue::Integer(now.timestamp())),
            ("nonce".into(), ParameterValue::String(nonce.to_string())),
            ("keyid".into(), ParameterValue::String(keyid.to_string())),
            (
                "alg".into(),
                ParameterValue::String(key.algorithm().to_string()),
            ),
        ],
    };
    let content_digest_value = content_digest(request.body);
    let base = profile_base(request, &content_digest_value, &params)
        .expect("the profile's components all have values");
    let signature = signature_bytes_for_http(key, base.as_bytes());
    let engine = base64::engine::general_purpose::STANDARD;
    Ok(SignatureHeaders {
        signature_input: format!("{SIGNATURE_LABEL}={}", params.serialize()),
        signature: format!("{SIGNATURE_LABEL}=:{}:", engine.encode(signature)),
        content_digest: content_digest_value,
    })
}

/// RFC 9421 §3.3.4 wants ECDSA signatures as the 64-byte `r || s`, not the DER that
/// [`SigningKey::sign`] returns for cosign's sake.
fn signature_bytes_for_http(key: &SigningKey, message: &[u8]) -> Vec<u8> {
    let signature = key.sign(message);
    match key.algorithm() {
        KeyAlgorithm::Ed25519 => signature,
        KeyAlgorithm::P256 => p256::ecdsa::Signature::from_der(&signature)
            .expect("our own P-256 signatures are valid DER")
            .to_bytes()
            .to_vec(),
    }
}

/// A `Signature-Input` entry of this profile with its `Signature` value, parsed but not yet
/// checked. The caller looks up the key for [`ParsedSignature::keyid`] and calls
/// [`ParsedSignature::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedSignature {
    label: String,
    params: SignatureParams,
    signature: Vec<u8>,
    keyid: String,
    created: i64,
    nonce: String,
    alg: Option<KeyAlgorithm>,
    expires: Option<i64>,
}

fn parse_algorithm(alg: &str) -> Result<KeyAlgorithm, HttpSignatureError> {
    match alg {
        "ed25519" => Ok(KeyAlgorithm::Ed25519),
        "ecdsa-p256-sha256" => Ok(KeyAlgorithm::P256),
        other => Err(HttpSignatureError::UnsupportedAlgorithm {
            alg: other.to_string(),
        }),
    }
}

/// Finds the signature of this profile among the received headers.
pub fn parse_signature(
    headers: &ReceivedSignatureHeaders<'_>,
) -> Result<ParsedSignature, HttpSignatureError> {
    let signature_input = headers
        .signature_input
        .ok_or(HttpSignatureError::MissingHeader {
            header: SIGNATURE_INPUT_HEADER,
        })?;
    let signature_header = headers.signature.ok_or(HttpSignatureError::MissingHeader {
        header: SIGNATURE_HEADER,
    })?;
    let inputs = structured::parse_dictionary(signature_input).map_err(|detail| {
        HttpSignatureError::MalformedHeader {
            header: SIGNATURE_INPUT_HEADER,
            detail,
        }
    })?;
    let signatures = structured::parse_dictionary(signature_header).map_err(|detail| {
        HttpSignatureError::MalformedHeader {
            header: SIGNATURE_HEADER,
            detail,
        }
    })?;
    let mut found = Vec::new();
    for (label, member) in inputs {
        let structured::Member::InnerList(items, parameters) = member else {
            found.push(format!("{label} (not an inner list)"));
            continue;
        };
        let components: Vec<String> = items
            .iter()
            .filter_map(|(item, item_parameters)| match item {
                ParameterValue::String(name) if item_parameters.is_empty() => Some(name.clone()),
                _ => None,
            })
            .collect();
        let mut sorted_components = components.clone();
        sorted_components.sort();
        let mut expected_components: Vec<String> =
            COVERED_COMPONENTS.iter().map(|c| c.to_string()).collect();
        expected_components.sort();
        if components.len() != items.len() || sorted_components != expected_components {
            found.push(format!("{label}=({})", components.join(" ")));
            continue;
        }
        let params = SignatureParams {
            components,
            parameters,
        };
        let signature = signatures
            .iter()
            .find(|(candidate, _)| *candidate == label)
            .ok_or_else(|| HttpSignatureError::MissingSignatureValue {
                label: label.clone(),
            })?;
        let structured::Member::Bytes(signature) = &signature.1 else {
            return Err(HttpSignatureError::MalformedHeader {
                header: SIGNATURE_HEADER,
                detail: format!("`{label}` is not a byte sequence"),
            });
        };
        let keyid = params
            .string_parameter("keyid")?
            .ok_or(HttpSignatureError::MissingParameter { parameter: "keyid" })?
            .to_string();
        let nonce = params
            .string_parameter("nonce")?
            .ok_or(HttpSignatureError::MissingParameter { parameter: "nonce" })?
            .to_string();
        let created =
            params
                .integer_parameter("created")?
                .ok_or(HttpSignatureError::MissingParameter {
                    parameter: "created",
                })?;
        let alg = params
            .string_parameter("alg")?
            .map(parse_algorithm)
            .transpose()?;
        let expires = params.integer_parameter("expires")?;
        return Ok(ParsedSignature {
            label,
            signature: signature.clone(),
            params,
            keyid,
            created,
            nonce,
            alg,
            expires,
        });
    }
    Err(HttpSignatureError::UnsupportedComponents {
        expected: format!("({})", COVERED_COMPONENTS.join(" ")),
        found: if found.is_empty() {
            "no entry".into()
        } else {
            found.join(", ")
        },
    })
}

fn timestamp(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

impl ParsedSignature {
    /// The key the signer names; the caller maps it to a registered key.
    pub fn keyid(&self) -> &str {
        &self.keyid
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Checks the body digest, the clock window and the signature of `request` under `key`.
    pub fn verify(
        &self,
        request: &RequestDescription<'_>,
        content_digest_header: Option<&str>,
        key: &PublicKey,
        now: DateTime<Utc>,
        allowed_clock_skew: chrono::Duration,
    ) -> Result<VerifiedSignature, HttpSignatureError> {
        let content_digest_header =
            content_digest_header
                .map(str::trim)
                .ok_or(HttpSignatureError::MissingHeader {
                    header: CONTENT_DIGEST_HEADER,
                })?;
        check_content_digest(content_digest_header, request.body)?;
        if let Some(declared) = self.alg {
            if declared != key.algorithm() {
                return Err(HttpSignatureError::AlgorithmMismatch {
                    declared: declared.to_string(),
                    keyid: self.keyid.clone(),
                    key_algorithm: key.algorithm(),
                });
            }
        }
        let created = timestamp(self.created);
        if (now - created).abs() > allowed_clock_skew {
            return Err(HttpSignatureError::OutsideClockSkew {
                created,
                now,
                skew_seconds: allowed_clock_skew.num_seconds(),
            });
        }
        if let Some(expires) = self.expires.map(timestamp) {
            if now > expires {
                return Err(HttpSignatureError::Expired { expires, now });
            }
        }
        let base = profile_base(request, content_digest_header, &self.params)
            .expect("parse_signature admits only the profile's components");
        let bad_signature = || HttpSignatureError::BadSignature {
            keyid: self.keyid.clone(),
        };
        let verifiable_signature = match key.algorithm() {
            KeyAlgorithm::Ed25519 => self.signature.clone(),
            KeyAlgorithm::P256 => p256::ecdsa::Signature::from_slice(&self.signature)
                .map_err(|_| bad_signature())?
                .to_der()
                .as_bytes()
                .to_vec(),
        };
        key.verify(base.as_bytes(), &verifiable_signature)
            .map_err(|_| bad_signature())?;
        Ok(VerifiedSignature {
            keyid: self.keyid.clone(),
            created,
            nonce: self.nonce.clone(),
        })
    }
}

/// Checks that the `sha-256` entry of a `Content-Digest` header matches `body`.
pub fn check_content_digest(header: &str, body: &[u8]) -> Result<(), HttpSignatureError> {
    let entries = structured::parse_dictionary(header).map_err(|detail| {
        HttpSignatureError::MalformedHeader {
            header: CONTENT_DIGEST_HEADER,
            detail,
        }
    })?;
    let (_, digest) = entries
        .iter()
        .find(|(algorithm, _)| algorithm == "sha-256")
        .ok_or(HttpSignatureError::MissingSha256Digest)?;
    let structured::Member::Bytes(header_digest) = digest else {
        return Err(HttpSignatureError::MalformedHeader {
            header: CONTENT_DIGEST_HEADER,
            detail: "`sha-256` is not a byte sequence".into(),
        });
    };
    let body_digest = Sha256::digest(body);
    if header_digest.as_slice() != body_digest.as_slice() {
        let engine = base64::engine::general_purpose::STANDARD;
        return Err(HttpSignatureError::ContentDigestMismatch {
            header_digest: engine.encode(header_digest),
            body_digest: engine.encode(body_digest),
        });
    }
    Ok(())
}

/// Parses the headers, looks the key up with `lookup`, and verifies: the whole check for a caller
/// whose key lookup is synchronous.
pub fn verify_request(
    request: &RequestDescription<'_>,
    headers: &ReceivedSignatureHeaders<'_>,
    lookup: impl Fn(&str) -> Option<PublicKey>,
    now: DateTime<Utc>,
    allowed_clock_skew: chrono::Duration,
) -> Result<VerifiedSignature, HttpSignatureError> {
    let parsed = parse_signature(headers)?;
    let key = lookup(parsed.keyid()).ok_or_else(|| HttpSignatureError::UnknownKey {
        keyid: parsed.keyid().to_string(),
    })?;
    parsed.verify(
        request,
        headers.content_digest,
        &key,
        now,
        allowed_clock_skew,
    )
}

/// Whether `value` fits in an RFC 8941 string: printable ASCII only.
fn is_encodable_string(value: &str) -> bool {
    value.bytes().all(|byte| (0x20..=0x7e).contains(&byte))
}

fn serialize_string(value: &str) -> String {
    let mut serialized = String::with_capacity(value.len() + 2);
    serialized.push('"');
    for character in value.chars() {
        if character == '"' || character == '\\' {
            serialized.push('\\');
        }
        serialized.push(character);
    }
    serialized.push('"');
    serialized
}

/// The subset of RFC 8941 structured-field dictionaries these headers use: members that are
/// inner lists of bare items with parameters, byte sequences, or bare items.
mod structured {
    use base64::Engine as _;

    use super::ParameterValue;

    pub type Parameters = Vec<(String, ParameterValue)>;

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Member {
        InnerList(Vec<(ParameterValue, Parameters)>, Parameters),
        Bytes(Vec<u8>),
        Bare(ParameterValue),
    }

    struct Parser<'a> {
        input: &'a [u8],
        position: usize,
    }

    pub fn parse_dictionary(input: &str) -> Result<Vec<(String, Member)>, String> {
        let mut parser = Parser {
            input: input.as_bytes(),
            position: 0,
        };
        parser.skip_spaces();
        let mut members: Vec<(String, Member)> = Vec::new();
        if parser.at_end() {
            return Err("empty dictionary".into());
        }
        loop {
            let key = parser.key()?;
            let member = if parser.eat(b'=') {
                parser.member()?
            } else {
                Member::Bare(ParameterValue::Boolean(true))
            };
            // RFC 8941: a later duplicate key overwrites the earlier one.
            members.retain(|(existing, _)| *existing != key);
            members.push((key, member));
            parser.skip_optional_whitespace();
            if parser.at_end() {
                return Ok(members);
            }
            if !parser.eat(b',') {
                return Err(format!("expected `,` at byte {}", parser.position));
            }
            parser.skip_optional_whitespace();
            if parser.at_end() {
                return Err("trailing `,`".into());
            }
        }
    }

    impl Parser<'_> {
        fn at_end(&self) -> bool {
            self.position >= self.input.len()
        }

        fn peek(&self) -> Option<u8> {
            self.input.get(self.position).copied()
        }

        fn eat(&mut self, byte: u8) -> bool {
            if self.peek() == Some(byte) {
                self.position += 1;
                true
            } else {
                false
            }
        }

        fn skip_spaces(&mut self) {
            while self.peek() == Some(b' ') {
                self.position += 1;
            }
        }

        fn skip_optional_whitespace(&mut self) {
            while matches!(self.peek(), Some(b' ') | Some(b'\t')) {
                self.position += 1;
            }
        }

        fn key(&mut self) -> Result<String, String> {
            let start = self.position;
            match self.peek() {
                Some(byte) if byte.is_ascii_lowercase() || byte == b'*' => self.position += 1,
                _ => return Err(format!("expected a key at byte {start}")),
            }
            while let Some(byte) = self.peek() {
                if byte.is_ascii_lowercase()
                    || byte.is_ascii_digit()
                    || matches!(byte, b'_' | b'-' | b'.' | b'*')
                {
                    self.position += 1;
                } else {
                    break;
                }
            }
            Ok(String::from_utf8_lossy(&self.input[start..self.position]).into_owned())
        }

        fn member(&mut self) -> Result<Member, String> {
            if self.eat(b'(') {
                let mut items = Vec::new();
                loop {
                    self.skip_spaces();
                    if self.eat(b')') {
                        break;
                    }
                    let item = self.bare_item()?;
                    let parameters = self.parameters()?;
                    items.push((item, parameters));
                    match self.peek() {
                        Some(b' ') | Some(b')') => {}
                        _ => {
                            return Err(format!(
                                "expected ` ` or `)` in inner list at byte {}",
                                self.position
                            ))
                        }
                    }
                }
                let parameters = self.parameters()?;
                return Ok(Member::InnerList(items, parameters));
            }
            if self.eat(b':') {
                let start = self.position;
                while let Some(byte) = self.peek() {
                    if byte == b':' {
                        break;
                    }
                    self.position += 1;
                }
                let encoded = &self.input[start..self.position];
                if !self.eat(b':') {
                    return Err("unterminated byte sequence".into());
                }
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .map_err(|error| format!("byte sequence is not base64: {error}"))?;
                // Parameters on a byte sequence carry nothing this profile uses.
                self.parameters()?;
                return Ok(Member::Bytes(bytes));
            }
            let item = self.bare_item()?;
            self.parameters()?;
            Ok(Member::Bare(item))
        }

        fn parameters(&mut self) -> Result<Vec<(String, ParameterValue)>, String> {
            let mut parameters: Vec<(String, ParameterValue)> = Vec::new();
            while self.eat(b';') {
                self.skip_spaces();
                let key = self.key()?;
                let value = if self.eat(b'=') {
                    self.bare_item()?
                } else {
                    ParameterValue::Boolean(true)
                };
                parameters.retain(|(existing, _)| *existing != key);
                parameters.push((key, value));
            }
            Ok(parameters)
        }

        fn bare_item(&mut self) -> Result<ParameterValue, String> {
            match self.peek() {
                Some(b'"') => self.string().map(ParameterValue::String),
                Some(b'?') => {
                    self.position += 1;
                    match self.peek() {
                        Some(b'0') => {
                            self.position += 1;
                            Ok(ParameterValue::Boolean(false))
                        }
                        Some(b'1') => {
                            self.position += 1;
                            Ok(ParameterValue::Boolean(true))
                        }
                        _ => Err("malformed boolean".into()),
                    }
                }
                Some(byte) if byte == b'-' || byte.is_ascii_digit() => self.integer(),
                Some(byte) if byte.is_ascii_alphabetic() || byte == b'*' => {
                    let start = self.position;
                    self.position += 1;
                    while let Some(byte) = self.peek() {
                        if byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&byte) {
                            self.position += 1;
                        } else {
                            break;
                        }
                    }
                    Ok(ParameterValue::Token(
                        String::from_utf8_lossy(&self.input[start..self.position]).into_owned(),
                    ))
                }
                _ => Err(format!("expected an item at byte {}", self.position)),
            }
        }

        fn integer(&mut self) -> Result<ParameterValue, String> {
            let start = self.position;
            self.eat(b'-');
            let digits_start = self.position;
            while matches!(self.peek(), Some(byte) if byte.is_ascii_digit()) {
                self.position += 1;
            }
            let n_digits = self.position - digits_start;
            if n_digits == 0 || n_digits > 15 {
                return Err(format!("malformed integer at byte {start}"));
            }
            if self.peek() == Some(b'.') {
                return Err("decimals are not supported here".into());
            }
            let text = std::str::from_utf8(&self.input[start..self.position])
                .map_err(|_| "malformed integer".to_string())?;
            text.parse()
                .map(ParameterValue::Integer)
                .map_err(|_| format!("malformed integer `{text}`"))
        }

        fn string(&mut self) -> Result<String, String> {
            self.position += 1;
            let mut value = String::new();
            loop {
                match self.peek() {
                    None => return Err("unterminated string".into()),
                    Some(b'"') => {
                        self.position += 1;
                        return Ok(value);
                    }
                    Some(b'\\') => {
                        self.position += 1;
                        match self.peek() {
                            Some(escaped @ (b'"' | b'\\')) => {
                                value.push(escaped as char);
                                self.position += 1;
                            }
                            _ => return Err("bad escape in string".into()),
                        }
                    }
                    Some(byte) if (0x20..=0x7e).contains(&byte) => {
                        value.push(byte as char);
                        self.position += 1;
                    }
                    Some(_) => return Err("non-printable character in string".into()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 9421 Appendix B.1.4, test-key-ed25519.
    const RFC_ED25519_PRIVATE_KEY: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF
-----END PRIVATE KEY-----
";
    const RFC_ED25519_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=
-----END PUBLIC KEY-----
";

    #[test]
    fn rfc_9421_b_2_6_ed25519_vector_reproduces() {
        let signature_input = r#"sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519""#;
        let parsed = structured::parse_dictionary(signature_input).unwrap();
        let structured::Member::InnerList(items, parameters) = &parsed[0].1 else {
            panic!("not an inner list: {parsed:?}");
        };
        let params = SignatureParams {
            components: items
                .iter()
                .map(|(item, _)| match item {
                    ParameterValue::String(name) => name.clone(),
                    other => panic!("{other:?}"),
                })
                .collect(),
            parameters: parameters.clone(),
        };
        let base = signature_base(
            &[
                "Tue, 20 Apr 2021 02:07:55 GMT",
                "POST",
                "/foo",
                "example.com",
                "application/json",
                "18",
            ],
            &params,
        );
        expect_test::expect![[r#"
            "date": Tue, 20 Apr 2021 02:07:55 GMT
            "@method": POST
            "@path": /foo
            "@authority": example.com
            "content-type": application/json
            "content-length": 18
            "@signature-params": ("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519""#]]
        .assert_eq(&base);
        let key = SigningKey::from_pkcs8_pem(RFC_ED25519_PRIVATE_KEY, None).unwrap();
        let engine = base64::engine::general_purpose::STANDARD;
        let expected_signature = "wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==";
        assert_eq!(
            engine.encode(signature_bytes_for_http(&key, base.as_bytes())),
            expected_signature
        );
        let public_key = PublicKey::from_pem(RFC_ED25519_PUBLIC_KEY).unwrap();
        public_key
            .verify(base.as_bytes(), &engine.decode(expected_signature).unwrap())
            .unwrap();
    }

    #[test]
    fn content_digest_of_empty_body_matches_rfc_9530_form() {
        assert_eq!(
            content_digest(b""),
            "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"
        );
    }

    fn now() -> DateTime<Utc> {
        "2026-11-23T12:00:00Z".parse().unwrap()
    }

    const REQUEST: RequestDescription<'static> = RequestDescription {
        method: "POST",
        path: "/v1/jobs/42/stops/a/status",
        query: Some("wait=30"),
        body: br#"{"status":"running"}"#,
    };

    fn received(headers: &SignatureHeaders) -> ReceivedSignatureHeaders<'_> {
        ReceivedSignatureHeaders {
            signature_input: Some(&headers.signature_input),
            signature: Some(&headers.signature),
            content_digest: Some(&headers.content_digest),
        }
    }

    fn verify_with(
        request: &RequestDescription<'_>,
        headers: &SignatureHeaders,
        key: &PublicKey,
        at: DateTime<Utc>,
    ) -> Result<VerifiedSignature, HttpSignatureError> {
        verify_request(
            request,
            &received(headers),
            |keyid| (keyid == "station:a").then(|| key.clone()),
            at,
            ALLOWED_CLOCK_SKEW,
        )
    }

    #[test]
    fn profile_signature_base_is_exact() {
        let params = SignatureParams {
            components: COVERED_COMPONENTS.iter().map(|c| c.to_string()).collect(),
            parameters: vec![
                ("created".into(), ParameterValue::Integer(1_700_000_000)),
                ("nonce".into(), ParameterValue::String("n-1".into())),
                ("keyid".into(), ParameterValue::String("station:a".into())),
                ("alg".into(), ParameterValue::String("ed25519".into())),
            ],
        };
        let request = RequestDescription {
            query: None,
            body: b"",
            ..REQUEST
        };
        let base = profile_base(&request, &content_digest(b""), &params).unwrap();
        expect_test::expect![[r#"
            "@method": POST
            "@path": /v1/jobs/42/stops/a/status
            "@query": ?
            "content-digest": sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:
            "@signature-params": ("@method" "@path" "@query" "content-digest");created=1700000000;nonce="n-1";keyid="station:a";alg="ed25519""#]]
        .assert_eq(&base);
    }

    #[test]
    fn signed_request_verifies_for_both_algorithms() {
        for algorithm in [KeyAlgorithm::Ed25519, KeyAlgorithm::P256] {
            let key = SigningKey::generate(algorithm);
            let headers = sign_request(&REQUEST, &key, "station:a", now(), "nonce-1").unwrap();
            assert!(headers
                .signature_input
                .ends_with(&format!(";alg=\"{algorithm}\"")));
            let verified = verify_with(&REQUEST, &headers, &key.public_key(), now()).unwrap();
            assert_eq!(
                verified,
                VerifiedSignature {
                    keyid: "station:a".into(),
                    created: now(),
                    nonce: "nonce-1".into()
                }
            );
        }
    }

    #[test]
    fn ecdsa_signature_is_64_bytes_r_s_not_der() {
        let key = SigningKey::generate(KeyAlgorithm::P256);
        let headers = sign_request(&REQUEST, &key, "station:a", now(), "n").unwrap();
        let encoded = headers
            .signature
            .strip_prefix("pht=:")
            .and_then(|rest| rest.strip_suffix(':'))
            .unwrap();
        let engine = base64::engine::general_purpose::STANDARD;
        assert_eq!(engine.decode(encoded).unwrap().len(), 64);
    }

    #[test]
    fn changed_method_path_query_or_body_is_refused() {
        let key = SigningKey::generate(KeyAlgorithm::Ed25519);
        let headers = sign_request(&REQUEST, &key, "station:a", now(), "n").unwrap();
        let changed_requests = [
            RequestDescription {
                method: "PUT",
                ..REQUEST
            },
            RequestDescription {
                path: "/v1/jobs/42/stops/b/status",
                ..REQUEST
            },
            RequestDescription {
                query: Some("wait=31"),
                ..REQUEST
            },
            RequestDescription {
                query: None,
                ..REQUEST
            },
        ];
        for changed in changed_requests {
            assert_eq!(
                verify_with(&changed, &headers, &key.public_key(), now()),
                Err(HttpSignatureError::BadSignature {
                    keyid: "station:a".into()
                }),
                "{changed:?}"
            );
        }
        let changed_body = RequestDescription {
            body: br#"{"status":"denied"}"#,
            ..REQUEST
        };
        assert!(matches!(
            verify_with(&changed_body, &headers, &key.public_key(), now()),
            Err(HttpSignatureError::ContentDigestMismatch { .. })
        ));
    }

    #[test]
    fn body_and_digest_swapped_together_are_refused() {
        let key = SigningKey::generate(KeyAlgorithm::Ed25519);
        let mut headers = sign_request(&REQUEST, &key, "station:a", now(), "n").unwrap();
        let other_body = b"other".as_slice();
        headers.content_digest = content_digest(other_body);
        let changed = RequestDescription {
            body: other_body,
            ..REQUEST
        };
        assert!(matches!(
            verify_with(&changed, &headers, &key.public_key(), now()),
            Err(HttpSignatureError::BadSignature { .. })
        ));
    }

    #[test]
    fn signature_by_another_key_is_refused() {
        let key = SigningKey::generate(KeyAlgorithm::Ed25519);
        let other = SigningKey::generate(KeyAlgorithm::Ed25519);
        let headers = sign_request(&REQUEST, &other, "station:a", now(), "n").unwrap();
        assert!(matches!(
            verify_with(&REQUEST, &headers, &key.public_key(), now()),
            Err(HttpSignatureError::BadSignature { .. })
        ));
    }

    #[test]
    fn declared_algorithm_must_match_the_key() {
        let key = SigningKey::generate(KeyAlgorithm::Ed25519);
        let registered = SigningKey::generate(KeyAlgorithm::P256);
        let headers = sign_request(&REQUEST, &key, "station:a", now(), "n").unwrap();
        assert!(matches!(
            verify_with(&REQUEST, &headers, &registered.public_key(), now()),
            Err(HttpSignatureError::AlgorithmMismatch { .. })
        ));
    }

    #[test]
    fn created_outside_the_clock_skew_is_refused_either_way() {
        let key = SigningKey::generate(KeyAlgorithm::Ed25519);
        let headers = sign_request(&REQUEST, &key, "station:a", now(), "n").unwrap();
        for at in [
            now() + chrono::Duration::seconds(301),
            now() - chrono::Duration::seconds(301),
        ] {
            assert!(matches!(
                verify_with(&REQUEST, &headers, &key.public_key(), at),
                Err(HttpSignatureError::OutsideClockSkew { .. })
            ));
        }
        verify_with(
            &REQUEST,
            &headers,
            &key.public_key(),
            now() + chrono::Duration::seconds(300),
        )
        .unwrap();
    }

    #[test]
    fn unknown_keyid_is_refused() {
        let key = SigningKey::generate(KeyAlgorithm::Ed25519);
        let headers = sign_request(&REQUEST, &key, "station:zz", now(), "n").unwrap();
        assert_eq!(
            verify_with(&REQUEST, &headers, &key.public_key(), now()),
            Err(HttpSignatureError::UnknownKey {
                keyid: "station:zz".into()
            })
        );
    }

    #[test]
    fn missing_headers_are_named() {
        let key = SigningKey::generate(KeyAlgorithm::Ed25519);
        let headers = sign_request(&REQUEST, &key, "station:a", now(), "n").unwrap();
        let lookup = |_: &str| Some(key.public_key());
        let cases = [
            (
                ReceivedSignatureHeaders {
                    signature_input: None,
                    ..received(&headers)
                },
                SIGNATURE_INPUT_HEADER,
            ),
            (
                ReceivedSignatureHeaders {
                    signature: None,
                    ..received(&headers)
                },
                SIGNATURE_HEADER,
            ),
            (
                ReceivedSignatureHeaders {
                    content_digest: None,
                    ..received(&headers)
                },
                CONTENT_DIGEST_HEADER,
            ),
        ];
        for (received_headers, header) in cases {
            assert_eq!(
                verify_request(
                    &REQUEST,
                    &received_headers,
                    lookup,
                    now(),
                    ALLOWED_CLOCK_SKEW
                ),
                Err(HttpSignatureError::MissingHeader { header })
            );
        }
    }

    #[test]
    fn signature_covering_fewer_components_is_refused() {
        let key = SigningKey::generate(KeyAlgorithm::Ed25519);
        let headers = sign_request(&REQUEST, &key, "station:a", now(), "n").unwrap();
        let narrowed = SignatureHeaders {
            signature_input: headers.signature_input.replace(" \"content-digest\"", ""),
            ..headers
        };
        assert!(matches!(
            verify_with(&REQUEST, &narrowed, &key.public_key(), now()),
            Err(HttpSignatureError::UnsupportedComponents { .. })
        ));
    }

    #[test]
    fn extra_signatures_and_whitespace_in_headers_are_tolerated() {
        let key = SigningKey::generate(KeyAlgorithm::Ed25519);
        let headers = sign_request(&REQUEST, &key, "station:a", now(), "n").unwrap();
        let padded = SignatureHeaders {
            signature_input: format!("proxy=(\"@method\");created=1, {}", headers.signature_input),
            signature: format!("proxy=:AAAA:,  {}", headers.signature),
            content_digest: headers.content_digest,
        };
        verify_with(&REQUEST, &padded, &key.public_key(), now()).unwrap();
    }

    #[test]
    fn unencodable_keyid_cannot_be_signed() {
        let key = SigningKey::generate(KeyAlgorithm::Ed25519);
        assert!(matches!(
            sign_request(&REQUEST, &key, "station:ä", now(), "n"),
            Err(HttpSignatureError::UnencodableParameter { .. })
        ));
    }

    #[test]
    fn quoted_parameters_round_trip_through_the_parser() {
        let params = SignatureParams {
            components: vec!["@method".into()],
            parameters: vec![
                ("keyid".into(), ParameterValue::String(r#"a"b\c"#.into())),
                ("flag".into(), ParameterValue::Boolean(true)),
                ("off".into(), ParameterValue::Boolean(false)),
                ("tok".into(), ParameterValue::Token("x/y".into())),
                ("created".into(), ParameterValue::Integer(-5)),
            ],
        };
        let serialized = params.serialize();
        assert_eq!(
            serialized,
            r#"("@method");keyid="a\"b\\c";flag;off=?0;tok=x/y;created=-5"#
        );
        let parsed = structured::parse_dictionary(&format!("l={serialized}")).unwrap();
        assert_eq!(
            parsed[0].1,
            structured::Member::InnerList(
                vec![(ParameterValue::String("@method".into()), vec![])],
                params.parameters
            )
        );
    }
}
