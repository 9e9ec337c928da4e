//! Image references: `registry[:port]/repository[:tag][@sha256:…]`.
//!
//! Owns parsing and printing. A reference always names its registry explicitly (trains never come
//! from an implicit default registry). Resolving a tag to a digest is the registry client's job.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

/// A parsed image reference. A station only ever runs references that carry a digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageReference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference `{input}`: {problem}")]
pub struct ReferenceError {
    pub input: String,
    pub problem: String,
}

impl ImageReference {
    /// A reference to a repository at a digest.
    pub fn with_digest(registry: &str, repository: &str, digest: Digest) -> ImageReference {
        ImageReference {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag: None,
            digest: Some(digest),
        }
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, as cosign writes it in the `docker-reference` of a payload.
    pub fn repository_path(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// What to ask the registry for: the digest when there is one, otherwise the tag, otherwise
    /// `latest`.
    pub fn manifest_selector(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// The same repository at a pinned digest (the tag is dropped: digests are what run).
    pub fn pinned(&self, digest: Digest) -> ImageReference {
        ImageReference::with_digest(&self.registry, &self.repository, digest)
    }

    /// The same repository at another tag.
    pub fn with_tag(&self, tag: &str) -> ImageReference {
        ImageReference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        }
    }

    /// Whether the registry host is on the loopback interface, where plain HTTP is acceptable.
    pub fn is_loopback_registry(&self) -> bool {
        is_loopback_registry_name(&self.registry)
    }
}

/// Whether a registry name (`host[:port]`) names the loopback interface: `localhost`, or an IP
/// address that is loopback. A name that merely starts like one (`127.example.org`) is not.
pub fn is_loopback_registry_name(registry: &str) -> bool {
    let host = host_of(registry);
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let unbracketed = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    unbracketed
        .parse::<std::net::IpAddr>()
        .is_ok_and(|address| address.is_loopback())
}

/// The host part of `host[:port]`, keeping an IPv6 literal's brackets.
fn host_of(registry: &str) -> &str {
    if registry.starts_with('[') {
        return match registry.find(']') {
            Some(end) => &registry[..=end],
            None => registry,
        };
    }
    registry.split(':').next().unwrap_or(registry)
}

fn valid_repository_component(component: &str) -> bool {
    !component.is_empty()
        && component.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
        && component.as_bytes()[0].is_ascii_alphanumeric()
}

fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && tag.as_bytes()[0] != b'.'
        && tag.as_bytes()[0] != b'-'
}

impl FromStr for ImageReference {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<ImageReference, ReferenceError> {
        let fail = |problem: &str| ReferenceError {
            input: input.to_string(),
            problem: problem.to_string(),
        };
        let (name_and_tag, digest) = match input.split_once('@') {
            Some((rest, digest)) => (
                rest,
                Some(digest.parse::<Digest>().map_err(|e| fail(&e.to_string()))?),
            ),
            None => (input, None),
        };
        let (registry, path) = name_and_tag
            .split_once('/')
            .ok_or_else(|| fail("expected `registry/repository[:tag][@digest]`, e.g. `127.0.0.1:5000/trains/cohort-stats:0.1.0`"))?;
        let registry_is_explicit =
            registry.contains('.') || registry.contains(':') || registry == "localhost";
        if !registry_is_explicit {
            return Err(fail("the first component must be a registry host (with a `.` or a `:port`, or `localhost`); trains never come from an implicit default registry"));
        }
        // A `:` after the last `/` separates the tag.
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repository, tag)) if !tag.contains('/') => (repository, Some(tag)),
            _ => (path, None),
        };
        if !repository.split('/').all(valid_repository_component) {
            return Err(fail(
                "repository components must be lower-case letters, digits, `.`, `_` or `-`",
            ));
        }
        if let Some(tag) = tag {
            if !valid_tag(tag) {
                return Err(fail("a tag is up to 128 letters, digits, `.`, `_` or `-`, not starting with `.` or `-`"));
            }
        }
        Ok(ImageReference {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag: tag.map(str::to_string),
            digest,
        })
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_with_port_tag_and_digest_round_trips() {
        let digest = Digest::of(b"m");
        let text = format!("127.0.0.1:5000/trains/cohort-stats:0.1.0@{digest}");
        let reference: ImageReference = text.parse().unwrap();
        assert_eq!(reference.registry(), "127.0.0.1:5000");
        assert_eq!(reference.repository(), "trains/cohort-stats");
        assert_eq!(reference.tag(), Some("0.1.0"));
        assert_eq!(reference.digest(), Some(&digest));
        assert_eq!(reference.to_string(), text);
        assert!(reference.is_loopback_registry());
    }

    #[test]
    fn reference_without_registry_host_is_refused() {
        let error = "library/busybox:latest"
            .parse::<ImageReference>()
            .unwrap_err();
        assert!(error.problem.contains("registry host"), "{error}");
    }

    #[test]
    fn upper_case_repository_is_refused() {
        assert!("registry.example.org/Trains/x"
            .parse::<ImageReference>()
            .is_err());
    }

    #[test]
    fn remote_registry_is_not_loopback() {
        let reference: ImageReference = "registry.example.org/a/b:1".parse().unwrap();
        assert!(!reference.is_loopback_registry());
        assert_eq!(reference.manifest_selector(), "1");
    }

    #[test]
    fn is_loopback_registry_on_an_unclosed_bracket_does_not_panic() {
        // Found by fuzzing: `[.a` sliced past its end.
        let reference = ImageReference::with_digest("[.a", "trains/x", Digest::of(b"m"));
        assert!(!reference.is_loopback_registry());
    }

    #[test]
    fn only_real_loopback_hosts_are_loopback() {
        for loopback in [
            "localhost:5000",
            "127.0.0.1",
            "127.1.2.3:80",
            "[::1]:5000",
            "LOCALHOST",
        ] {
            assert!(is_loopback_registry_name(loopback), "{loopback}");
        }
        for remote in [
            "127.example.org:5000",
            "localhost.example.org",
            "[::2]",
            "10.0.0.1:5000",
            "[.a",
            "",
        ] {
            assert!(!is_loopback_registry_name(remote), "{remote}");
        }
    }
}
