//! Errors from talking to a registry; each names the registry, the repository and what to do.

use pht_core::Digest;

/// What went wrong talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry {registry} would be reached over plain HTTP; only loopback registries may be, unless you mark it insecure (--insecure-registry {registry})")]
    InsecureRefused { registry: String },
    #[error(
        "cannot reach registry {registry}: {detail} (is it running, and is the address right?)"
    )]
    Unreachable { registry: String, detail: String },
    #[error("registry {registry} refused access to {repository}: HTTP {status}{hint}")]
    Unauthorized {
        registry: String,
        repository: String,
        status: u16,
        hint: String,
    },
    #[error("{what} not found in {registry}/{repository}")]
    NotFound {
        registry: String,
        repository: String,
        what: String,
    },
    #[error("registry {registry} answered HTTP {status} for {operation}: {body}")]
    Status {
        registry: String,
        operation: String,
        status: u16,
        body: String,
    },
    #[error(
        "registry {registry} sent content for {expected} that hashes to {actual}: refusing it"
    )]
    DigestMismatch {
        registry: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("registry {registry} sent a malformed {what}: {detail}")]
    Malformed {
        registry: String,
        what: String,
        detail: String,
    },
    #[error("{what} from registry {registry} is larger than the {limit}-byte limit")]
    TooLarge {
        registry: String,
        what: String,
        limit: u64,
    },
}
