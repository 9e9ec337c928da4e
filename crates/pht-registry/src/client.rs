//! The registry HTTP client: one `RegistryClient` per process, shared by every operation.
//!
//! Owns URLs, authentication (basic, and bearer tokens per repository scope, cached), transport
//! security rules, size limits and digest verification. Does not interpret what it moves beyond
//! parsing manifests.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt as _;
use pht_core::oci::{ImageManifest, DOCKER_MANIFEST_LIST, MANIFEST_ACCEPT, OCI_INDEX};
use pht_core::{Digest, ImageReference};
use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use crate::error::RegistryError;

/// A manifest as the registry sent it, verified against its digest.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub digest: Digest,
    pub media_type: String,
    /// The exact bytes: their SHA-256 is `digest`.
    pub bytes: Vec<u8>,
}

impl FetchedManifest {
    /// Parses the bytes as an image manifest; an index (multi-platform list) is refused with a
    /// hint, because trains are single-platform and run by the digest of their image manifest.
    pub fn image_manifest(&self, registry: &str) -> Result<ImageManifest, RegistryError> {
        if self.media_type == OCI_INDEX || self.media_type == DOCKER_MANIFEST_LIST {
            return Err(RegistryError::Malformed {
                registry: registry.to_string(),
                what: "manifest".into(),
                detail: format!("{} is an image index, not an image manifest: pass the digest of one platform's manifest", self.digest),
            });
        }
        serde_json::from_slice(&self.bytes).map_err(|e| RegistryError::Malformed {
            registry: registry.to_string(),
            what: "image manifest".into(),
            detail: e.to_string(),
        })
    }
}

/// Registry credentials, used for basic auth and to obtain bearer tokens.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, password hidden)", self.username)
    }
}

/// How the client may reach registries.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Registries (`host:port`) that may be reached over plain HTTP although not on loopback.
    pub insecure_registries: BTreeSet<String>,
    pub credentials: Option<Credentials>,
    /// Where to reach a registry when that differs from the name in references: `name → host:port`.
    /// A station on a private network reaches `127.0.0.1:5000/…` trains at `registry:5000`.
    pub endpoints: std::collections::BTreeMap<String, String>,
}

/// Called with the number of bytes moved so far.
pub type Progress<'a> = &'a (dyn Fn(u64) + Send + Sync);

/// Largest manifest accepted (the distribution spec suggests 4 MiB).
const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// A client for OCI distribution registries.
#[derive(Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    options: RegistryOptions,
    /// `Authorization` header values per (registry, repository scope).
    authorizations: Arc<Mutex<HashMap<(String, String), String>>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

#[derive(Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens and credentials stay out of debug output.
        f.debug_struct("RegistryClient")
            .field("insecure_registries", &self.options.insecure_registries)
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    pub fn new(options: RegistryOptions) -> RegistryClient {
        let http = reqwest::Client::builder()
            .user_agent(concat!("pht/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .expect("a reqwest client with static settings always builds");
        RegistryClient {
            http,
            options,
            authorizations: Arc::default(),
        }
    }

    /// `http(s)://registry`, refusing plain HTTP unless the registry is on loopback or marked
    /// insecure.
    fn base_url(&self, reference: &ImageReference) -> Result<String, RegistryError> {
        self.registry_url(reference.registry())
    }

    /// [`Self::base_url`] of a registry by name.
    fn registry_url(&self, registry: &str) -> Result<String, RegistryError> {
        let endpoint = self
            .options
            .endpoints
            .get(registry)
            .map_or(registry, String::as_str);
        let marked_insecure = self.options.insecure_registries.contains(registry)
            || self.options.insecure_registries.contains(endpoint);
        let endpoint_is_loopback = endpoint.starts_with("127.")
            || endpoint.starts_with("localhost")
            || endpoint.starts_with("[::1]");
        if marked_insecure || endpoint_is_loopback {
            Ok(format!("http://{endpoint}"))
        } else if endpoint.ends_with(":80") {
            Err(RegistryError::InsecureRefused {
                registry: registry.to_string(),
            })
        } else {
            Ok(format!("https://{endpoint}"))
        }
    }

    /// Asks the registry's API root (`GET /v2/`) whether it answers, as `pht-station doctor`
    /// does: the status it gave (200, or 401 when it wants a login, are both a registry).
    pub async fn ping(&self, registry: &str) -> Result<u16, RegistryError> {
        let url = format!("{}/v2/", self.registry_url(registry)?);
        let response = self
            .http
            .get(&url)
            .timeout(std::time::Duration::from_secs(10))
            .send()
            .await
            .map_err(|error| RegistryError::Unreachable {
                registry: registry.to_string(),
                detail: error_chain(&error),
            })?;
        Ok(response.status().as_u16())
    }

    /// `http(s)://registry/v2/<repository>/<path>`.
    fn api_url(&self, reference: &ImageReference, path: &str) -> Result<String, RegistryError> {
        Ok(format!(
            "{}/v2/{}/{path}",
            self.base_url(reference)?,
            reference.repository()
        ))
    }

    fn unreachable(reference: &ImageReference, error: reqwest::Error) -> RegistryError {
        RegistryError::Unreachable {
            registry: reference.registry().to_string(),
            detail: error_chain(&error),
        }
    }

    /// Sends a request, authenticating on a 401 challenge and retrying once. `body` is cloned for
    /// the retry, so this is for small bodies; large uploads authenticate first (see
    /// [`RegistryClient::authorize`]).
    async fn send(
        &self,
        reference: &ImageReference,
        actions: &str,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Result<reqwest::Response, RegistryError> {
        let scope_key = (
            reference.registry().to_string(),
            format!("{}:{actions}", reference.repository()),
        );
        for attempt in 0..2 {
            let mut request = self
                .http
                .request(method.clone(), url)
                .headers(headers.clone());
            if let Some(body) = &body {
                request = request.body(body.clone());
            }
            let cached = self
                .authorizations
                .lock()
                .expect("authorization cache lock")
                .get(&scope_key)
                .cloned();
            if let Some(value) = cached {
                request = request.header(AUTHORIZATION, value);
            }
            let response = request
                .send()
                .await
                .map_err(|e| Self::unreachable(reference, e))?;
            if response.status() != StatusCode::UNAUTHORIZED || attempt == 1 {
                return Ok(response);
            }
            let challenge = response
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let authorization = self
                .answer_challenge(reference, actions, &challenge)
                .await?;
            self.authorizations
                .lock()
                .expect("authorization cache lock")
                .insert(scope_key.clone(), authorization);
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// Makes sure the cache holds an authorization for `actions` on the repository, by pinging
    /// the API root. Used before streaming uploads, which cannot be replayed after a 401.
    async fn authorize(
        &self,
        reference: &ImageReference,
        actions: &str,
    ) -> Result<(), RegistryError> {
        let url = self.api_url(reference, "tags/list")?;
        let response = self
            .send(
                reference,
                actions,
                Method::GET,
                &url,
                HeaderMap::new(),
                None,
            )
            .await?;
        if response.status() == StatusCode::UNAUTHORIZED
            || response.status() == StatusCode::FORBIDDEN
        {
            return Err(self.unauthorized(reference, response.status()));
        }
        Ok(())
    }

    fn unauthorized(&self, reference: &ImageReference, status: StatusCode) -> RegistryError {
        let hint = if self.options.credentials.is_none() {
            " (no credentials given: set PHT_REGISTRY_USERNAME and PHT_REGISTRY_PASSWORD)"
                .to_string()
        } else {
            " (check the credentials and the account's rights on this repository)".to_string()
        };
        RegistryError::Unauthorized {
            registry: reference.registry().to_string(),
            repository: reference.repository().to_string(),
            status: status.as_u16(),
            hint,
        }
    }

    async fn answer_challenge(
        &self,
        reference: &ImageReference,
        actions: &str,
        challenge: &str,
    ) -> Result<String, RegistryError> {
        let credentials = self.options.credentials.as_ref();
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            let credentials = credentials
                .ok_or_else(|| self.unauthorized(reference, StatusCode::UNAUTHORIZED))?;
            return Ok(basic_header(credentials));
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(self.unauthorized(reference, StatusCode::UNAUTHORIZED));
        }
        let params = parse_challenge_params(params);
        let realm = params
            .get("realm")
            .ok_or_else(|| RegistryError::Malformed {
                registry: reference.registry().to_string(),
                what: "authentication challenge".into(),
                detail: "bearer challenge without realm".into(),
            })?;
        let scope = format!("repository:{}:{actions}", reference.repository());
        let mut request = self.http.get(realm).query(&[("scope", scope.as_str())]);
        if let Some(service) = params.get("service") {
            request = request.query(&[("service", service.as_str())]);
        }
        if let Some(credentials) = credentials {
            request = request.header(AUTHORIZATION, basic_header(credentials));
        }
        let response = request
            .send()
            .await
            .map_err(|e| Self::unreachable(reference, e))?;
        if !response.status().is_success() {
            return Err(self.unauthorized(reference, response.status()));
        }
        let token: TokenResponse = response
            .json()
            .await
            .map_err(|e| RegistryError::Malformed {
                registry: reference.registry().to_string(),
                what: "token response".into(),
                detail: e.to_string(),
            })?;
        let token = token
            .token
            .or(token.access_token)
            .ok_or_else(|| RegistryError::Malformed {
                registry: reference.registry().to_string(),
                what: "token response".into(),
                detail: "no token".into(),
            })?;
        Ok(format!("Bearer {token}"))
    }

    async fn status_error(
        &self,
        reference: &ImageReference,
        operation: &str,
        response: reqwest::Response,
    ) -> RegistryError {
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return self.unauthorized(reference, status);
        }
        let body: String = response
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect();
        RegistryError::Status {
            registry: reference.registry().to_string(),
            operation: operation.to_string(),
            status: status.as_u16(),
            body: body.trim().to_string(),
        }
    }

    fn not_found(reference: &ImageReference, what: String) -> RegistryError {
        RegistryError::NotFound {
            registry: reference.registry().to_string(),
            repository: reference.repository().to_string(),
            what,
        }
    }

    /// Fetches the manifest `selector` (a tag or a digest) of the reference's repository. When
    /// the selector is a digest, the bytes must hash to it.
    pub async fn get_manifest(
        &self,
        reference: &ImageReference,
        selector: &str,
    ) -> Result<FetchedManifest, RegistryError> {
        let url = self.api_url(reference, &format!("manifests/{selector}"))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::ACCEPT,
            MANIFEST_ACCEPT.parse().expect("static header value"),
        );
        let response = self
            .send(reference, "pull", Method::GET, &url, headers, None)
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(Self::not_found(reference, format!("manifest {selector}")));
        }
        if !response.status().is_success() {
            return Err(self
                .status_error(reference, &format!("manifest {selector}"), response)
                .await);
        }
        let media_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string())
            .unwrap_or_default();
        let bytes = read_limited(reference, response, MAX_MANIFEST_BYTES, "manifest", None).await?;
        let digest = Digest::of(&bytes);
        if let Ok(expected) = selector.parse::<Digest>() {
            if expected != digest {
                return Err(RegistryError::DigestMismatch {
                    registry: reference.registry().to_string(),
                    expected,
                    actual: digest,
                });
            }
        }
        // A registry may omit or generalise the content type; the document's own mediaType wins.
        let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| {
                v.get("mediaType")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or(media_type);
        Ok(FetchedManifest {
            digest,
            media_type,
            bytes,
        })
    }

    /// Resolves a reference to its manifest digest: the digest it carries, or the one its tag
    /// points at now.
    pub async fn resolve(&self, reference: &ImageReference) -> Result<Digest, RegistryError> {
        if let Some(digest) = reference.digest() {
            return Ok(digest.clone());
        }
        Ok(self
            .get_manifest(reference, &reference.manifest_selector())
            .await?
            .digest)
    }

    /// Stores a manifest under `selector` (a tag or its digest) and returns its digest.
    pub async fn put_manifest(
        &self,
        reference: &ImageReference,
        selector: &str,
        media_type: &str,
        bytes: Vec<u8>,
    ) -> Result<Digest, RegistryError> {
        let url = self.api_url(reference, &format!("manifests/{selector}"))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            media_type.parse().map_err(|_| RegistryError::Malformed {
                registry: reference.registry().to_string(),
                what: "media type".into(),
                detail: media_type.to_string(),
            })?,
        );
        let digest = Digest::of(&bytes);
        let response = self
            .send(
                reference,
                "pull,push",
                Method::PUT,
                &url,
                headers,
                Some(Bytes::from(bytes)),
            )
            .await?;
        if !response.status().is_success() {
            return Err(self
                .status_error(reference, &format!("storing manifest {selector}"), response)
                .await);
        }
        Ok(digest)
    }

    /// Deletes the manifest with `digest` (and so every tag pointing at it).
    pub async fn delete_manifest(
        &self,
        reference: &ImageReference,
        digest: &Digest,
    ) -> Result<(), RegistryError> {
        let url = self.api_url(reference, &format!("manifests/{digest}"))?;
        let response = self
            .send(
                reference,
                "pull,push,delete",
                Method::DELETE,
                &url,
                HeaderMap::new(),
                None,
            )
            .await?;
        match response.status() {
            status if status.is_success() => Ok(()),
            StatusCode::NOT_FOUND => Err(Self::not_found(reference, format!("manifest {digest}"))),
            _ => Err(self
                .status_error(reference, &format!("deleting manifest {digest}"), response)
                .await),
        }
    }

    /// The repository's tags.
    pub async fn list_tags(
        &self,
        reference: &ImageReference,
    ) -> Result<Vec<String>, RegistryError> {
        let url = self.api_url(reference, "tags/list")?;
        let response = self
            .send(reference, "pull", Method::GET, &url, HeaderMap::new(), None)
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        if !response.status().is_success() {
            return Err(self.status_error(reference, "listing tags", response).await);
        }
        let bytes = read_limited(reference, response, MAX_MANIFEST_BYTES, "tag list", None).await?;
        let tags: TagList =
            serde_json::from_slice(&bytes).map_err(|e| RegistryError::Malformed {
                registry: reference.registry().to_string(),
                what: "tag list".into(),
                detail: e.to_string(),
            })?;
        Ok(tags.tags.unwrap_or_default())
    }

    /// Whether the repository holds a blob.
    pub async fn blob_exists(
        &self,
        reference: &ImageReference,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        let url = self.api_url(reference, &format!("blobs/{digest}"))?;
        let response = self
            .send(
                reference,
                "pull",
                Method::HEAD,
                &url,
                HeaderMap::new(),
                None,
            )
            .await?;
        match response.status() {
            status if status.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self
                .status_error(reference, &format!("checking blob {digest}"), response)
                .await),
        }
    }

    /// Fetches a blob into memory, refusing more than `limit` bytes and any content that does
    /// not hash to `digest`.
    pub async fn get_blob(
        &self,
        reference: &ImageReference,
        digest: &Digest,
        limit: u64,
        progress: Option<Progress<'_>>,
    ) -> Result<Vec<u8>, RegistryError> {
        let response = self.blob_response(reference, digest).await?;
        let bytes = read_limited(
            reference,
            response,
            limit,
            &format!("blob {digest}"),
            progress,
        )
        .await?;
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(RegistryError::DigestMismatch {
                registry: reference.registry().to_string(),
                expected: digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// The registry's successful answer to `GET blobs/<digest>`, or the error naming the blob.
    async fn blob_response(
        &self,
        reference: &ImageReference,
        digest: &Digest,
    ) -> Result<reqwest::Response, RegistryError> {
        let url = self.api_url(reference, &format!("blobs/{digest}"))?;
        let response = self
            .send(reference, "pull", Method::GET, &url, HeaderMap::new(), None)
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(Self::not_found(reference, format!("blob {digest}")));
        }
        if !response.status().is_success() {
            return Err(self
                .status_error(reference, &format!("blob {digest}"), response)
                .await);
        }
        Ok(response)
    }

    /// Fetches a blob as a stream of chunks, for blobs too large to hold in memory (a base
    /// image's layer). The stream refuses more than `size` bytes and ends with an error unless
    /// exactly `size` bytes came that hash to `digest`; it holds its last chunk back until that
    /// check has passed, so a consumer that has seen the whole stream end cleanly has seen
    /// exactly the blob asked for. What is held at any time is one chunk (as the connection
    /// delivers them, tens of KiB), never the blob.
    pub async fn get_blob_stream(
        &self,
        reference: &ImageReference,
        digest: &Digest,
        size: u64,
    ) -> Result<BlobStream, RegistryError> {
        let response = self.blob_response(reference, digest).await?;
        if response
            .content_length()
            .is_some_and(|length| length > size)
        {
            return Err(RegistryError::TooLarge {
                registry: reference.registry().to_string(),
                what: format!("blob {digest}"),
                limit: size,
            });
        }
        Ok(verifying_stream(
            reference.clone(),
            digest.clone(),
            size,
            response.bytes_stream().boxed(),
        ))
    }

    /// Uploads a blob unless the repository already has it (monolithic upload: POST, then PUT
    /// with the digest). Returns whether bytes were sent.
    pub async fn push_blob(
        &self,
        reference: &ImageReference,
        bytes: Bytes,
        progress: Option<Progress<'_>>,
    ) -> Result<bool, RegistryError> {
        let digest = Digest::of(&bytes);
        self.authorize(reference, "pull,push").await?;
        if self.blob_exists(reference, &digest).await? {
            if let Some(progress) = progress {
                progress(bytes.len() as u64);
            }
            return Ok(false);
        }
        let session = self.start_upload(reference, None).await?;
        let UploadStart::Session(session) = session else {
            unreachable!("an upload started without a mount is never mounted")
        };
        self.upload_blob(reference, session, bytes, progress)
            .await?;
        Ok(true)
    }

    /// Makes the blob `digest` present in `reference`'s repository by asking the registry to
    /// mount it from `from_repository` (same registry; `POST …/blobs/uploads/?mount=…&from=…`).
    /// A registry that cannot mount — it lacks the blob there, or the token may not read that
    /// repository, or it does not mount at all — answers with an upload session instead, which
    /// is returned for the caller to upload into.
    pub async fn mount_blob(
        &self,
        reference: &ImageReference,
        digest: &Digest,
        from_repository: &str,
    ) -> Result<Mount, RegistryError> {
        self.authorize(reference, "pull,push").await?;
        Ok(
            match self
                .start_upload(reference, Some((digest, from_repository)))
                .await?
            {
                UploadStart::Mounted => Mount::Mounted,
                UploadStart::Session(session) => Mount::NotMounted(session),
            },
        )
    }

    /// Copies the blob `digest` (at most `limit` bytes) from `from` into `reference`'s
    /// repository: nothing when it is there already, a cross-repository mount when both are in
    /// the same registry, else (or when the registry will not mount) the blob is fetched from
    /// `from`, checked against its digest, and uploaded.
    pub async fn copy_blob(
        &self,
        reference: &ImageReference,
        from: &ImageReference,
        digest: &Digest,
        limit: u64,
        progress: Option<Progress<'_>>,
    ) -> Result<BlobCopy, RegistryError> {
        self.authorize(reference, "pull,push").await?;
        if self.blob_exists(reference, digest).await? {
            return Ok(BlobCopy::Present);
        }
        let session = if from.registry() == reference.registry() {
            match self
                .mount_blob(reference, digest, from.repository())
                .await?
            {
                Mount::Mounted => return Ok(BlobCopy::Mounted),
                Mount::NotMounted(session) => Some(session),
            }
        } else {
            None
        };
        let bytes = Bytes::from(self.get_blob(from, digest, limit, None).await?);
        let n_bytes = bytes.len() as u64;
        let session = match session {
            Some(session) => session,
            None => match self.start_upload(reference, None).await? {
                UploadStart::Session(session) => session,
                UploadStart::Mounted => unreachable!("an upload started without a mount"),
            },
        };
        self.upload_blob(reference, session, bytes, progress)
            .await?;
        Ok(BlobCopy::Uploaded(n_bytes))
    }

    /// `POST /v2/<name>/blobs/uploads/`, with `mount` and `from` when `mount` is given.
    async fn start_upload(
        &self,
        reference: &ImageReference,
        mount: Option<(&Digest, &str)>,
    ) -> Result<UploadStart, RegistryError> {
        let base = self.base_url(reference)?;
        let mut start_url = format!("{base}/v2/{}/blobs/uploads/", reference.repository());
        if let Some((digest, from_repository)) = mount {
            let query: String = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("mount", &digest.to_string())
                .append_pair("from", from_repository)
                .finish();
            start_url = format!("{start_url}?{query}");
        }
        let response = self
            .send(
                reference,
                "pull,push",
                Method::POST,
                &start_url,
                HeaderMap::new(),
                None,
            )
            .await?;
        if mount.is_some() && response.status() == StatusCode::CREATED {
            return Ok(UploadStart::Mounted);
        }
        if response.status() != StatusCode::ACCEPTED {
            return Err(self
                .status_error(reference, "starting a blob upload", response)
                .await);
        }
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::Malformed {
                registry: reference.registry().to_string(),
                what: "upload response".into(),
                detail: "no Location header".into(),
            })?
            .to_string();
        let url = if location.starts_with("http://") || location.starts_with("https://") {
            location
        } else {
            format!("{base}{location}")
        };
        Ok(UploadStart::Session(UploadSession { url }))
    }

    /// Uploads `bytes` into an open session in one PUT, streamed in chunks for the progress
    /// callback.
    pub async fn upload_blob(
        &self,
        reference: &ImageReference,
        session: UploadSession,
        bytes: Bytes,
        progress: Option<Progress<'_>>,
    ) -> Result<(), RegistryError> {
        let digest = Digest::of(&bytes);
        let upload_url = session.url;
        let separator = if upload_url.contains('?') { '&' } else { '?' };
        let put_url = format!("{upload_url}{separator}digest={digest}");

        let total_len = bytes.len();
        const CHUNK: usize = 256 * 1024;
        let chunks: Vec<Bytes> = (0..total_len.div_ceil(CHUNK).max(1))
            .map(|i| bytes.slice(i * CHUNK..((i + 1) * CHUNK).min(total_len)))
            .collect();
        let mut sent = 0u64;
        let (progress_sender, mut progress_receiver) =
            tokio::sync::mpsc::unbounded_channel::<u64>();
        let stream = futures_util::stream::iter(chunks).map(move |chunk| {
            sent += chunk.len() as u64;
            let _ = progress_sender.send(sent);
            Ok::<Bytes, std::io::Error>(chunk)
        });
        let mut request = self
            .http
            .put(&put_url)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, total_len)
            .body(reqwest::Body::wrap_stream(stream));
        let cached = self
            .authorizations
            .lock()
            .expect("authorization cache lock")
            .get(&(
                reference.registry().to_string(),
                format!("{}:pull,push", reference.repository()),
            ))
            .cloned();
        if let Some(value) = cached {
            request = request.header(AUTHORIZATION, value);
        }
        let send = request.send();
        tokio::pin!(send);
        let response = loop {
            tokio::select! {
                result = &mut send => break result.map_err(|e| Self::unreachable(reference, e))?,
                Some(done) = progress_receiver.recv() => {
                    if let Some(progress) = progress { progress(done) }
                }
            }
        };
        if response.status() != StatusCode::CREATED {
            return Err(self
                .status_error(reference, &format!("uploading blob {digest}"), response)
                .await);
        }
        if let Some(progress) = progress {
            progress(total_len as u64);
        }
        Ok(())
    }
}

/// An upload the registry has opened: where the blob is to be PUT.
#[derive(Debug)]
pub struct UploadSession {
    url: String,
}

/// What a cross-repository mount request did.
#[derive(Debug)]
pub enum Mount {
    /// The blob is now in the repository; nothing was sent.
    Mounted,
    /// The registry did not mount and opened an upload instead (it answered 202).
    NotMounted(UploadSession),
}

/// How [`RegistryClient::copy_blob`] made a blob present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobCopy {
    /// The repository had it.
    Present,
    /// Mounted from the other repository, without sending its bytes.
    Mounted,
    /// Fetched from the other repository and uploaded: this many bytes.
    Uploaded(u64),
}

enum UploadStart {
    Mounted,
    Session(UploadSession),
}

/// A blob's bytes as they arrive, checked against its digest and size (see
/// [`RegistryClient::get_blob_stream`]).
pub type BlobStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, RegistryError>> + Send>>;

/// Where a [`verifying_stream`] is.
enum Verifying {
    Reading {
        inner: futures_util::stream::BoxStream<'static, reqwest::Result<Bytes>>,
        hasher: sha2::Sha256,
        n_bytes: u64,
        held: Option<Bytes>,
    },
    Done,
}

/// Wraps a blob's chunks so that more than `size` bytes, fewer, or bytes hashing to anything
/// but `digest` end the stream with an error, and the last chunk is only given once they have
/// been checked.
fn verifying_stream(
    reference: ImageReference,
    digest: Digest,
    size: u64,
    inner: futures_util::stream::BoxStream<'static, reqwest::Result<Bytes>>,
) -> BlobStream {
    use sha2::Digest as _;
    let start = Verifying::Reading {
        inner,
        hasher: sha2::Sha256::new(),
        n_bytes: 0,
        held: None,
    };
    let stream = futures_util::stream::unfold(start, move |state| {
        let (reference, digest) = (reference.clone(), digest.clone());
        async move {
            let Verifying::Reading {
                mut inner,
                mut hasher,
                mut n_bytes,
                mut held,
            } = state
            else {
                return None;
            };
            let malformed = |detail: String| RegistryError::Malformed {
                registry: reference.registry().to_string(),
                what: format!("blob {digest}"),
                detail,
            };
            loop {
                match inner.next().await {
                    Some(Ok(chunk)) if chunk.is_empty() => continue,
                    Some(Ok(chunk)) => {
                        n_bytes += chunk.len() as u64;
                        if n_bytes > size {
                            let error = malformed(format!(
                                "more than the {size} bytes its descriptor gives"
                            ));
                            return Some((Err(error), Verifying::Done));
                        }
                        hasher.update(&chunk);
                        if let Some(previous) = held.replace(chunk) {
                            let state = Verifying::Reading {
                                inner,
                                hasher,
                                n_bytes,
                                held,
                            };
                            return Some((Ok(previous), state));
                        }
                    }
                    Some(Err(error)) => {
                        let error = RegistryClient::unreachable(&reference, error);
                        return Some((Err(error), Verifying::Done));
                    }
                    None => {
                        if n_bytes != size {
                            let error = malformed(format!(
                                "{n_bytes} bytes where its descriptor gives {size}"
                            ));
                            return Some((Err(error), Verifying::Done));
                        }
                        let actual = Digest::from_hasher(hasher);
                        if actual != digest {
                            let error = RegistryError::DigestMismatch {
                                registry: reference.registry().to_string(),
                                expected: digest.clone(),
                                actual,
                            };
                            return Some((Err(error), Verifying::Done));
                        }
                        return held.map(|last| (Ok(last), Verifying::Done));
                    }
                }
            }
        }
    });
    Box::pin(stream)
}

async fn read_limited(
    reference: &ImageReference,
    response: reqwest::Response,
    limit: u64,
    what: &str,
    progress: Option<Progress<'_>>,
) -> Result<Vec<u8>, RegistryError> {
    let too_large = || RegistryError::TooLarge {
        registry: reference.registry().to_string(),
        what: what.to_string(),
        limit,
    };
    if response
        .content_length()
        .is_some_and(|length| length > limit)
    {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(response.content_length().unwrap_or(0).min(limit) as usize);
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| RegistryClient::unreachable(reference, e))?;
        if bytes.len() as u64 + chunk.len() as u64 > limit {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
        if let Some(progress) = progress {
            progress(bytes.len() as u64);
        }
    }
    Ok(bytes)
}

fn basic_header(credentials: &Credentials) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", credentials.username, credentials.password));
    format!("Basic {encoded}")
}

/// Parses `realm="…",service="…",scope="…"` (quoted values may contain commas).
fn parse_challenge_params(params: &str) -> HashMap<String, String> {
    let mut parsed = HashMap::new();
    let mut rest = params.trim();
    while let Some((key, after_key)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after_key = after_key.trim_start();
        let (value, remainder) = if let Some(quoted) = after_key.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            (&quoted[..end], quoted.get(end + 1..).unwrap_or(""))
        } else {
            let end = after_key.find(',').unwrap_or(after_key.len());
            (&after_key[..end], &after_key[end..])
        };
        parsed.insert(key, value.to_string());
        rest = remainder.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
    }
    parsed
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests;
