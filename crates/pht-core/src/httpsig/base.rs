//! The signature base (RFC 9421 §2.5) and what goes into it: the covered components' values,
//! the `@signature-params` line and the `Content-Digest` value (RFC 9530) of a body.
//!
//! Owns turning a request description and parameters into the exact bytes that are signed. It
//! neither signs nor verifies (`sign`, `verify`) and parses no headers (`structured`).

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use super::{HttpSignatureError, RequestDescription};

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

    pub(super) fn string_parameter(
        &self,
        name: &'static str,
    ) -> Result<Option<&str>, HttpSignatureError> {
        match self.parameter(name) {
            None => Ok(None),
            Some(ParameterValue::String(value)) => Ok(Some(value)),
            Some(_) => Err(HttpSignatureError::ParameterType {
                parameter: name,
                expected: "a string",
            }),
        }
    }

    pub(super) fn integer_parameter(
        &self,
        name: &'static str,
    ) -> Result<Option<i64>, HttpSignatureError> {
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

pub(super) fn profile_base(
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
