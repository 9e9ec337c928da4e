//! Verify: the train is fetched by digest and checked before anything else may happen to it.
//! The registry must be one the policy allows (checked before any traffic), the manifest and
//! config must match their digests, the train manifest is read from the image label, every
//! dataset it needs must be held here, a key the policy trusts for trains must have signed
//! the digest (cosign simple signing), and the parameters must fit `train.yaml`.
//!
//! The base image a train names in its manifest is the train's own word, so it is checked too:
//! the base's registry must be one the policy names, its manifest and config are fetched by
//! digest (never its layers), the train's layers must begin with the base's layers
//! (`base.mismatch` otherwise), and where the policy trusts base signers the base's cosign
//! signature is verified against their keys. Whether that base is allowed is the policy's
//! decision (`base.allowed`, in `decide.rs`).
//!
//! Owns [`VerifiedTrain`], which only this module can make. A train that fails a check is a
//! refusal (a run record with reasons), not an error; `Err` ([`VerifyError`]) is for a
//! registry the station could not reach. Does not pull layers: that waits for the policy's
//! decision (`pull.rs`).

use std::collections::BTreeMap;

use bytes::Bytes;
use pht_core::cosign;
use pht_core::manifest::{BaseImage, TRAIN_LABEL};
use pht_core::oci::{ImageConfig, ImageManifest};
use pht_core::{Digest, ImageReference, TrainManifest};
use pht_registry::{signatures, RegistryError};

use super::receive::{GivenParameters, Received};
use super::{Refusal, Step};
use crate::audit::AuditEvent;
use crate::error::StationError;
use crate::params;
use crate::station::Station;
use crate::store::{BaseRef, RunRecord};

/// Largest image config read (configs are a few KiB).
const MAX_CONFIG_BYTES: u64 = 8 << 20;

/// A registry could not be reached while verifying a train.
#[derive(Debug, thiserror::Error)]
#[error("registry: {source}")]
pub struct VerifyError {
    pub reference: String,
    #[source]
    pub source: RegistryError,
}

/// A train fetched and checked: its manifest parsed from the image label and the name of the
/// trusted key that signed its digest. Only [`Station::verify_train`] makes one.
#[derive(Debug, Clone)]
pub struct VerifiedTrain {
    reference: ImageReference,
    digest: Digest,
    manifest: TrainManifest,
    image_manifest: ImageManifest,
    config_bytes: Bytes,
    signer: String,
    base: Option<VerifiedBase>,
}

/// The base image a verified train is built on: its manifest and config fetched by digest,
/// the train's layers shown to begin with its layers, and the trusted base signer whose key
/// verified its signature, if one did. Only made while verifying a train.
#[derive(Debug, Clone)]
pub struct VerifiedBase {
    reference: ImageReference,
    signer: Option<String>,
}

impl VerifiedBase {
    /// `registry/repository@sha256:…`.
    pub fn reference(&self) -> &ImageReference {
        &self.reference
    }

    pub fn digest(&self) -> &Digest {
        self.reference
            .digest()
            .expect("a verified base is pinned to its digest")
    }

    /// The trusted base signer whose key verified the base's signature; `None` when none did
    /// (or the policy trusts no base signer).
    pub fn signer(&self) -> Option<&str> {
        self.signer.as_deref()
    }
}

impl VerifiedTrain {
    /// The train's reference, pinned to the verified digest.
    pub fn reference(&self) -> &ImageReference {
        &self.reference
    }

    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    pub fn manifest(&self) -> &TrainManifest {
        &self.manifest
    }

    pub fn image_manifest(&self) -> &ImageManifest {
        &self.image_manifest
    }

    pub fn config_bytes(&self) -> &Bytes {
        &self.config_bytes
    }

    /// The trusted signer whose signature verified.
    pub fn signer(&self) -> &str {
        &self.signer
    }

    /// The base image the train is built on, checked; `None` for a train without one.
    pub fn base(&self) -> Option<&VerifiedBase> {
        self.base.as_ref()
    }
}

/// A run whose train verified and whose parameters fit it: ready for the policy.
#[derive(Debug)]
pub struct VerifiedRun {
    pub(super) record: RunRecord,
    train: VerifiedTrain,
}

impl VerifiedRun {
    pub(super) fn into_parts(self) -> (RunRecord, VerifiedTrain) {
        (self.record, self.train)
    }
}

impl<E> Station<E> {
    /// Verifies a received run's train and resolves its parameters.
    pub(super) async fn verify(
        &self,
        received: Received,
    ) -> Result<Step<VerifiedRun>, StationError> {
        let (mut record, reference, given) = received.into_parts();
        let Some(digest) = reference.digest().cloned() else {
            return self.refuse(record, vec!["reference.digest: a station runs trains by digest only; give REPOSITORY@sha256:…".into()]).map(Step::Done);
        };
        let train = match self.verify_train(record, &reference, &digest).await? {
            Step::Next((record_back, train)) => {
                record = record_back;
                train
            }
            Step::Done(finished) => return Ok(Step::Done(finished)),
        };
        record.train.name = Some(train.manifest.name.to_string());
        record.train.version = Some(train.manifest.version.to_string());
        record.train.description = Some(train.manifest.description.clone());
        record.train.purpose = Some(train.manifest.purpose.to_string());
        record.train.datasets = train
            .manifest
            .datasets
            .iter()
            .map(ToString::to_string)
            .collect();
        record.train.resources = Some(train.manifest.resources.clone());
        record.signer = Some(train.signer.clone());
        record.base = train.base.as_ref().map(|base| BaseRef {
            reference: base.reference.to_string(),
            signer: base.signer.clone(),
        });
        let mut verified = AuditEvent::new(&self.station_actor(), "verified").run(&record.run_id);
        verified.train_digest = Some(digest.to_string());
        verified.decision = Some("signed".into());
        verified
            .details
            .insert("signer".into(), train.signer.clone().into());
        if let Some(base) = &train.base {
            verified
                .details
                .insert("base".into(), base.reference.to_string().into());
            if let Some(base_signer) = &base.signer {
                verified
                    .details
                    .insert("base_signer".into(), base_signer.clone().into());
            }
        }
        self.audit.append(verified)?;

        match resolve_parameters(&train.manifest, given) {
            Ok(parameters) => {
                record.parameters = parameters;
                Ok(Step::Next(VerifiedRun { record, train }))
            }
            Err(reason) => self.refuse(record, vec![reason]).map(Step::Done),
        }
    }

    /// Verifies again the train of a run that waited for approval: a revoked key or a moved
    /// registry still applies. The parameters were resolved when the run was received.
    pub(super) async fn verify_again(
        &self,
        record: RunRecord,
        reference: &ImageReference,
        digest: &Digest,
    ) -> Result<Step<VerifiedRun>, StationError> {
        Ok(match self.verify_train(record, reference, digest).await? {
            Step::Next((record, train)) => Step::Next(VerifiedRun { record, train }),
            Step::Done(finished) => Step::Done(finished),
        })
    }

    /// The registry check, then fetching and verifying the train. A refusal finishes the
    /// record as refused; a registry that cannot be reached fails it and is returned as `Err`.
    async fn verify_train(
        &self,
        record: RunRecord,
        reference: &ImageReference,
        digest: &Digest,
    ) -> Result<Step<(RunRecord, VerifiedTrain)>, StationError> {
        if let Err(refusal) = self.check_registry_allowed(reference) {
            return self.refuse(record, refusal).map(Step::Done);
        }
        match self.inspect(reference, digest).await {
            Ok(Ok(train)) => Ok(Step::Next((record, train))),
            Ok(Err(refusal)) => self.refuse(record, refusal).map(Step::Done),
            Err(source) => self.fail(
                record,
                VerifyError {
                    reference: reference.to_string(),
                    source,
                }
                .into(),
            ),
        }
    }

    fn check_registry_allowed(&self, reference: &ImageReference) -> Result<(), Refusal> {
        // Checked before any network traffic, so a job cannot make the station contact a
        // registry its policy does not name.
        let allowed = self.policy.registries().iter().any(|rule| {
            rule.registry().eq_ignore_ascii_case(reference.registry())
                && rule.allows_repository(reference.repository())
        });
        if allowed {
            return Ok(());
        }
        let expected: Vec<String> = self
            .policy
            .registries()
            .iter()
            .flat_map(|rule| {
                rule.repository_patterns()
                    .iter()
                    .map(move |p| format!("{}/{p}", rule.registry()))
            })
            .collect();
        Err(vec![format!(
            "registry.allowed: {} is not a registry/repository this station's policy allows (expected one of: {})",
            reference.repository_path(),
            expected.join(", ")
        )])
    }

    /// Fetches manifest, config and signatures, and checks them. `Ok(Err(_))` is a refusal.
    async fn inspect(
        &self,
        reference: &ImageReference,
        digest: &Digest,
    ) -> Result<Result<VerifiedTrain, Refusal>, RegistryError> {
        let registry_name = reference.registry().to_string();
        let fetched = match self
            .registry
            .get_manifest(reference, &digest.to_string())
            .await
        {
            Ok(fetched) => fetched,
            Err(RegistryError::NotFound { .. }) => {
                return Ok(Err(vec![format!(
                    "train.exists: {} has no manifest {digest}",
                    reference.repository_path()
                )]))
            }
            Err(
                error @ (RegistryError::DigestMismatch { .. }
                | RegistryError::Malformed { .. }
                | RegistryError::TooLarge { .. }),
            ) => return Ok(Err(vec![format!("train.manifest: {error}")])),
            Err(error) => return Err(error),
        };
        let image_manifest = match fetched.image_manifest(&registry_name) {
            Ok(manifest) => manifest,
            Err(error) => return Ok(Err(vec![format!("train.manifest: {error}")])),
        };
        let config_bytes = match self
            .registry
            .get_blob(
                reference,
                &image_manifest.config.digest,
                MAX_CONFIG_BYTES,
                None,
            )
            .await
        {
            Ok(bytes) => Bytes::from(bytes),
            Err(
                error @ (RegistryError::DigestMismatch { .. }
                | RegistryError::TooLarge { .. }
                | RegistryError::NotFound { .. }),
            ) => return Ok(Err(vec![format!("train.config: {error}")])),
            Err(error) => return Err(error),
        };
        let config: ImageConfig = match serde_json::from_slice(&config_bytes) {
            Ok(config) => config,
            Err(error) => {
                return Ok(Err(vec![format!(
                    "train.config: the image config is not valid JSON: {error}"
                )]))
            }
        };
        let manifest = match config.labels().get(TRAIN_LABEL).map(|label| TrainManifest::from_label_json(label)) {
            Some(Ok(manifest)) => manifest,
            Some(Err(error)) => return Ok(Err(vec![format!("train.manifest: {error}")])),
            None => return Ok(Err(vec![format!("train.manifest: the image has no {TRAIN_LABEL} label; build it with `pht train build`")])),
        };
        let missing: Vec<&str> = manifest
            .datasets
            .iter()
            .map(|d| d.as_str())
            .filter(|name| !self.config.datasets.contains_key(*name))
            .collect();
        if !missing.is_empty() {
            return Ok(Err(vec![format!(
                "dataset.available: the train needs {} which this station does not hold (it holds: {})",
                missing.join(", "),
                self.config.datasets.keys().cloned().collect::<Vec<_>>().join(", ")
            )]));
        }

        let found = match signatures::fetch_signatures(&self.registry, reference, digest).await {
            Ok(found) => found,
            Err(
                error @ (RegistryError::DigestMismatch { .. }
                | RegistryError::Malformed { .. }
                | RegistryError::TooLarge { .. }),
            ) => return Ok(Err(vec![format!("signature.format: {error}")])),
            Err(error) => return Err(error),
        };
        let mut signer = None;
        let mut problems = Vec::new();
        'signatures: for signed in &found {
            for (name, key) in &self.train_keys {
                match cosign::verify_image_signature(key, signed, digest) {
                    Ok(_) => {
                        signer = Some(name.clone());
                        break 'signatures;
                    }
                    Err(cosign::CosignError::Signature(_)) => {}
                    Err(error) => {
                        problems.push(format!("signature by trusted signer `{name}`: {error}"))
                    }
                }
            }
        }
        let Some(signer) = signer else {
            let reason = if found.is_empty() {
                format!(
                    "signature.present: {} has no signature for {digest} (tag {})",
                    reference.repository_path(),
                    digest.cosign_signature_tag()
                )
            } else if !problems.is_empty() {
                format!("signature.valid: {}", problems.join("; "))
            } else {
                format!("signature.trusted: none of the {} signature(s) on {digest} is by a key this station's policy trusts to sign trains", found.len())
            };
            return Ok(Err(vec![reason]));
        };
        // Only a train a trusted key signed gets this far, so only such a train can make the
        // station contact the registry of its base.
        let base = match &manifest.base {
            None => None,
            Some(declared) => match self.verify_base(declared, config.diff_ids()).await? {
                Ok(base) => Some(base),
                Err(refusal) => return Ok(Err(refusal)),
            },
        };
        Ok(Ok(VerifiedTrain {
            reference: reference.pinned(digest.clone()),
            digest: digest.clone(),
            manifest,
            image_manifest,
            config_bytes,
            signer,
            base,
        }))
    }

    /// Checks the base a train names: its registry is one the policy names, its manifest and
    /// config exist at its digest, the train's layers (`train_diff_ids`) begin with its layers,
    /// and which trusted base signer, if any, signed it. `Ok(Err(_))` is a refusal.
    async fn verify_base(
        &self,
        declared: &BaseImage,
        train_diff_ids: &[Digest],
    ) -> Result<Result<VerifiedBase, Refusal>, RegistryError> {
        let refuse = |reason: String| Ok(Err(vec![reason]));
        let reference = match declared.repository.parse::<ImageReference>() {
            Ok(parsed) if parsed.tag().is_none() && parsed.digest().is_none() => {
                parsed.pinned(declared.digest.clone())
            }
            Ok(_) | Err(_) => {
                let repository = &declared.repository;
                return refuse(format!("base.reference: the train names its base `{repository}`, which is not `registry/repository`"));
            }
        };
        // The registry rules for trains apply to bases too: no traffic to a registry the
        // policy does not name. Which repositories and digests are allowed is `base_images`'s.
        let registry_named = self
            .policy
            .registries()
            .iter()
            .any(|rule| rule.registry().eq_ignore_ascii_case(reference.registry()));
        if !registry_named {
            let registries: Vec<&str> = self
                .policy
                .registries()
                .iter()
                .map(|rule| rule.registry())
                .collect();
            return refuse(format!(
                "base.registry: the train's base {reference} is in registry {}, which this station's policy does not name (expected one of: {})",
                reference.registry(),
                registries.join(", ")
            ));
        }
        let fetched = match self
            .registry
            .get_manifest(&reference, &declared.digest.to_string())
            .await
        {
            Ok(fetched) => fetched,
            Err(RegistryError::NotFound { .. }) => {
                return refuse(format!(
                    "base.exists: {} has no manifest {}, the base the train names",
                    reference.repository_path(),
                    declared.digest
                ))
            }
            Err(
                error @ (RegistryError::DigestMismatch { .. }
                | RegistryError::Malformed { .. }
                | RegistryError::TooLarge { .. }),
            ) => return refuse(format!("base.manifest: {error}")),
            Err(error) => return Err(error),
        };
        let base_manifest = match fetched.image_manifest(reference.registry()) {
            Ok(manifest) => manifest,
            Err(error) => return refuse(format!("base.manifest: {error}")),
        };
        let base_config_bytes = match self
            .registry
            .get_blob(
                &reference,
                &base_manifest.config.digest,
                MAX_CONFIG_BYTES,
                None,
            )
            .await
        {
            Ok(bytes) => bytes,
            Err(
                error @ (RegistryError::DigestMismatch { .. }
                | RegistryError::TooLarge { .. }
                | RegistryError::NotFound { .. }),
            ) => return refuse(format!("base.config: {error}")),
            Err(error) => return Err(error),
        };
        let base_config: ImageConfig = match serde_json::from_slice(&base_config_bytes) {
            Ok(config) => config,
            Err(error) => {
                return refuse(format!(
                    "base.config: the base's image config is not valid JSON: {error}"
                ))
            }
        };
        let base_diff_ids = base_config.diff_ids();
        if base_diff_ids.is_empty() {
            return refuse(format!(
                "base.config: the base {reference} has no layers, so no train is built on it"
            ));
        }
        if !train_diff_ids.starts_with(base_diff_ids) {
            let actual = &train_diff_ids[..base_diff_ids.len().min(train_diff_ids.len())];
            return refuse(format!(
                "base.mismatch: the train's layers do not begin with the layers of {reference}, the base it names (expected first layers {}, actual {})",
                layer_list(base_diff_ids),
                layer_list(actual)
            ));
        }
        let signer = self.base_signer(&reference, &declared.digest).await?;
        Ok(Ok(VerifiedBase { reference, signer }))
    }

    /// The trusted base signer whose key verified a signature on the base, if one did. A
    /// signature that cannot be read verifies nothing; whether the base needed one is the
    /// policy's decision.
    async fn base_signer(
        &self,
        reference: &ImageReference,
        digest: &Digest,
    ) -> Result<Option<String>, RegistryError> {
        if self.base_keys.is_empty() {
            return Ok(None);
        }
        let found = match signatures::fetch_signatures(&self.registry, reference, digest).await {
            Ok(found) => found,
            Err(
                error @ (RegistryError::DigestMismatch { .. }
                | RegistryError::Malformed { .. }
                | RegistryError::TooLarge { .. }),
            ) => {
                tracing::warn!(base = %reference, %error, "the base's signatures cannot be read");
                Vec::new()
            }
            Err(error) => return Err(error),
        };
        Ok(found.iter().find_map(|signed| {
            self.base_keys
                .iter()
                .find(|(_, key)| cosign::verify_image_signature(key, signed, digest).is_ok())
                .map(|(name, _)| name.clone())
        }))
    }
}

/// Diff ids as a refusal lists them: `sha256:…, sha256:…`, or `no layers`.
fn layer_list(diff_ids: &[Digest]) -> String {
    if diff_ids.is_empty() {
        return "no layers".to_string();
    }
    diff_ids
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn resolve_parameters(
    manifest: &TrainManifest,
    given: GivenParameters,
) -> Result<BTreeMap<String, serde_json::Value>, String> {
    let given = match given {
        GivenParameters::Json(values) => values,
        GivenParameters::CommandLine(pairs) => {
            params::parse_command_line(&manifest.parameters, &pairs)
                .map_err(|e| format!("parameters: {e}"))?
        }
    };
    params::resolve(&manifest.parameters, &given).map_err(|e| format!("parameters: {e}"))
}
