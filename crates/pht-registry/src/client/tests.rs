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
