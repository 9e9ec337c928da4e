//! Unit tests of the HTTP signature profile: the RFC 9421 test vector, the exact signature base,
//! and every way a changed or incomplete request is refused.
//!
//! They call signing and verification directly; the hub's middleware and the API client have
//! their own tests.

use base64::Engine as _;
use chrono::{DateTime, Utc};

use super::base::profile_base;
use super::sign::signature_bytes_for_http;
use super::*;
use crate::keys::{KeyAlgorithm, PublicKey, SigningKey};

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
    let expected_signature =
        "wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==";
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
