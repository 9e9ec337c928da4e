//! Unit tests of the registry client's pure parts: bearer challenges and which scheme a
//! registry is reached over.
//!
//! No registry is contacted here; the workspace's end-to-end tests (`tests/`) push and pull
//! against a real one.

use super::*;

#[test]
fn bearer_challenge_parameters_are_parsed_with_quoted_commas() {
    let params = parse_challenge_params(
        r#"realm="https://auth.example.org/token",service="registry.example.org",scope="repository:a/b:pull,push""#,
    );
    assert_eq!(params["realm"], "https://auth.example.org/token");
    assert_eq!(params["service"], "registry.example.org");
    assert_eq!(params["scope"], "repository:a/b:pull,push");
}

#[test]
fn plain_http_is_refused_for_a_remote_registry_on_port_80() {
    let client = RegistryClient::new(RegistryOptions::default());
    let reference: ImageReference = "registry.example.org:80/a/b:1".parse().unwrap();
    assert!(matches!(
        client.base_url(&reference),
        Err(RegistryError::InsecureRefused { .. })
    ));
    let remote: ImageReference = "registry.example.org/a/b:1".parse().unwrap();
    assert_eq!(
        client.base_url(&remote).unwrap(),
        "https://registry.example.org"
    );
    let local: ImageReference = "127.0.0.1:5000/a/b:1".parse().unwrap();
    assert_eq!(client.base_url(&local).unwrap(), "http://127.0.0.1:5000");
}

#[test]
fn marked_insecure_registry_uses_plain_http() {
    let options = RegistryOptions {
        insecure_registries: ["registry:5000".to_string()].into(),
        ..RegistryOptions::default()
    };
    let client = RegistryClient::new(options);
    let reference: ImageReference = "registry:5000/a/b:1".parse().unwrap();
    assert_eq!(client.base_url(&reference).unwrap(), "http://registry:5000");
}

#[test]
fn endpoint_map_redirects_a_registry_name() {
    let options = RegistryOptions {
        insecure_registries: ["registry:5000".to_string()].into(),
        endpoints: [("127.0.0.1:5000".to_string(), "registry:5000".to_string())].into(),
        ..RegistryOptions::default()
    };
    let client = RegistryClient::new(options);
    let reference: ImageReference = "127.0.0.1:5000/a/b:1".parse().unwrap();
    assert_eq!(client.base_url(&reference).unwrap(), "http://registry:5000");
}

/// Runs `chunks` through a verifying stream expecting `expected` (its digest and length), and
/// returns what the consumer saw before the stream ended: the chunks, then the error if any.
async fn verify_chunks(chunks: &[&'static [u8]], expected: &[u8]) -> (Vec<Bytes>, Option<String>) {
    let reference: ImageReference = "127.0.0.1:5000/trains/t:1".parse().unwrap();
    let inner = futures_util::stream::iter(
        chunks
            .iter()
            .map(|chunk| Ok(Bytes::from_static(chunk)))
            .collect::<Vec<reqwest::Result<Bytes>>>(),
    )
    .boxed();
    let stream = verifying_stream(
        reference,
        Digest::of(expected),
        expected.len() as u64,
        inner,
    );
    let items: Vec<Result<Bytes, RegistryError>> = stream.collect().await;
    let mut seen = Vec::new();
    for item in items {
        match item {
            Ok(chunk) => seen.push(chunk),
            Err(error) => return (seen, Some(error.to_string())),
        }
    }
    (seen, None)
}

#[tokio::test]
async fn a_verified_stream_gives_every_chunk_and_ends_cleanly() {
    let (seen, error) = verify_chunks(&[b"ab", b"", b"cd", b"e"], b"abcde").await;
    assert_eq!(seen, [&b"ab"[..], b"cd", b"e"]);
    assert_eq!(error, None);
}

#[tokio::test]
async fn a_stream_that_does_not_hash_to_its_digest_never_gives_its_last_chunk() {
    let (seen, error) = verify_chunks(&[b"ab", b"cX"], b"abcd").await;
    // The consumer never sees the whole blob: the held-back chunk is replaced by the error.
    assert_eq!(seen, [&b"ab"[..]]);
    let error = error.expect("a digest mismatch");
    assert!(error.contains("hashes to"), "{error}");
}

#[tokio::test]
async fn a_stream_longer_than_its_descriptor_is_cut_off() {
    let (seen, error) = verify_chunks(&[b"ab", b"cd", b"ef"], b"abcd").await;
    assert_eq!(seen, [&b"ab"[..]]);
    assert!(error.unwrap().contains("more than the 4 bytes"));
}
