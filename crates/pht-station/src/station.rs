//! The station pipeline: receive → verify → policy → approval → pull by digest → run sandboxed →
//! collect, with every step appended to the audit log and every run kept in durable state.
//!
//! Owns the order of the steps and what is recorded at each. Signature and manifest checks come
//! from `pht-core`, decisions from `pht-policy`, registry traffic from `pht-registry`, and the
//! container engine is reached only through the [`Engine`] trait.

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use chrono::Utc;
use pht_core::cosign;
use pht_core::manifest::TRAIN_LABEL;
use pht_core::oci::{ImageConfig, ImageManifest};
use pht_core::{Digest, ImageReference, PublicKey, TrainManifest};
use pht_docker::collect::CollectedKind;
use pht_docker::{RunLimits, RunOutcome, RunSpec};
use pht_policy::{Decision, Grant, Policy, ResourceRequest, Role, RunRequest, Runtime};
use pht_registry::{signatures, RegistryClient, RegistryError, RegistryOptions};
use sha2::Digest as _;

use crate::audit::{AuditEvent, AuditLog, OutputHash};
use crate::config::StationConfig;
use crate::engine::Engine;
use crate::outputs::{self, OutputDecision};
use crate::params;
use crate::store::{
    DatasetVersion, JobRef, OperatorDecision, OutcomeSummary, OutputDecisionRecord, OutputSummary,
    RunRecord, RunStatus, RunStore, SealedBundle, TrainRef,
};

/// Largest image config read (configs are a few KiB).
const MAX_CONFIG_BYTES: u64 = 8 << 20;
/// Largest single layer pulled.
const MAX_LAYER_BYTES: u64 = 4 << 30;

/// What went wrong in the station itself (not a refusal: refusals are run records).
#[derive(Debug, thiserror::Error)]
pub enum StationError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("registry: {0}")]
    Registry(RegistryError),
    #[error("container engine: {0}")]
    Engine(String),
    #[error("run {run_id} is {status:?}; only a run awaiting approval can be {action}")]
    NotAwaitingApproval {
        run_id: String,
        status: RunStatus,
        action: &'static str,
    },
    #[error("the outputs of run {run_id} are {decision:?}; only withheld (or, with a reason, blocked) outputs can be {action}")]
    OutputsNotPending {
        run_id: String,
        decision: Option<OutputDecision>,
        action: &'static str,
    },
}

/// Parameters as they arrive: typed JSON from a job, or `k=v` text from the command line.
#[derive(Debug, Clone)]
pub enum GivenParameters {
    Json(BTreeMap<String, serde_json::Value>),
    CommandLine(Vec<String>),
}

/// One request to run a train: from an operator's `exec`, or a stop of a job from the hub.
#[derive(Debug, Clone)]
pub struct Submission {
    pub reference: ImageReference,
    pub parameters: GivenParameters,
    pub job: Option<JobRef>,
    /// The age recipient released results are sealed for.
    pub recipient: Option<String>,
    /// Files the previous stop handed over, mounted read-only at `/input/state`.
    pub input_state: Vec<(String, Vec<u8>)>,
    /// Who asked (recorded in the audit log).
    pub actor: String,
}

/// A train fetched and checked: its manifest parsed from the image label and, if a trusted key
/// verified one of its signatures, the name of that signer.
#[derive(Debug, Clone)]
struct InspectedTrain {
    reference: ImageReference,
    digest: Digest,
    manifest: TrainManifest,
    image_manifest: ImageManifest,
    config_bytes: Bytes,
    signer: Option<String>,
}

/// A refusal before policy: rule and message, like the policy's reasons.
type Refusal = Vec<String>;

/// A station: its configuration, policy, trusted keys, state and engine.
pub struct Station<E> {
    config: StationConfig,
    policy: Policy,
    train_keys: Vec<(String, PublicKey)>,
    job_keys: Vec<(String, PublicKey)>,
    registry: RegistryClient,
    engine: E,
    audit: AuditLog,
    store: RunStore,
    /// Signs provenance of released results; a station without one cannot release.
    station_key: Option<pht_core::SigningKey>,
}

impl<E> std::fmt::Debug for Station<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Station")
            .field("station_id", &self.config.station_id)
            .finish_non_exhaustive()
    }
}

fn new_run_id() -> String {
    format!("run-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// Named public keys, as the policy names its signers.
pub type NamedKeys = Vec<(String, PublicKey)>;

/// Reads the policy file and every trusted key it names: the policy, the keys trusted to sign
/// trains, and the keys trusted to sign jobs.
pub fn load_policy(path: &Path) -> Result<(Policy, NamedKeys, NamedKeys), StationError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        StationError::Config(format!("cannot read the policy {}: {e}", path.display()))
    })?;
    let policy = Policy::from_yaml_str(&text, &path.display().to_string())
        .map_err(|e| StationError::Config(e.to_string()))?;
    let mut train_keys = Vec::new();
    let mut job_keys = Vec::new();
    for signer in policy.trusted_signers() {
        let key_path = signer.public_key_path();
        let pem = std::fs::read_to_string(key_path).map_err(|e| {
            StationError::Config(format!(
                "{}: trusted signer `{}`: cannot read public key {}: {e}",
                path.display(),
                signer.name(),
                key_path.display()
            ))
        })?;
        let key = PublicKey::from_pem(&pem).map_err(|e| {
            StationError::Config(format!(
                "{}: trusted signer `{}`: public key {}: {e}",
                path.display(),
                signer.name(),
                key_path.display()
            ))
        })?;
        if signer.may_sign(Role::Trains) {
            train_keys.push((signer.name().to_string(), key.clone()));
        }
        if signer.may_sign(Role::Jobs) {
            job_keys.push((signer.name().to_string(), key));
        }
    }
    Ok((policy, train_keys, job_keys))
}

impl<E: Engine> Station<E> {
    /// Opens a station: reads its policy and keys, opens its state and audit log (refusing a log
    /// that does not verify), and marks runs interrupted by a previous stop.
    pub fn open(config: StationConfig, engine: E) -> Result<Station<E>, StationError> {
        let (policy, train_keys, job_keys) = load_policy(&config.policy)?;
        std::fs::create_dir_all(&config.state_dir).map_err(|e| {
            StationError::Config(format!(
                "cannot create the state directory {}: {e}",
                config.state_dir.display()
            ))
        })?;
        let store = RunStore::open(&config.state_dir)?;
        let audit = AuditLog::open(&config.state_dir.join("audit.log"))?;
        let registry = RegistryClient::new(RegistryOptions {
            insecure_registries: config
                .registries
                .iter()
                .filter(|r| r.insecure)
                .map(|r| r.registry.clone())
                .collect(),
            credentials: None,
            endpoints: config
                .registries
                .iter()
                .filter_map(|r| {
                    r.endpoint
                        .clone()
                        .map(|endpoint| (r.registry.clone(), endpoint))
                })
                .collect(),
        });
        let station_key =
            crate::keys::read_signing_key(&config.key_dir).map_err(StationError::Config)?;
        let station = Station {
            config,
            policy,
            train_keys,
            job_keys,
            registry,
            engine,
            audit,
            store,
            station_key,
        };
        Ok(station)
    }

    pub fn engine(&self) -> &E {
        &self.engine
    }

    pub fn config(&self) -> &StationConfig {
        &self.config
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn store(&self) -> &RunStore {
        &self.store
    }

    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// The station's provenance signing key, if it has one.
    pub fn station_key(&self) -> Option<&pht_core::SigningKey> {
        self.station_key.as_ref()
    }

    /// The run of a job, if this station has one (the newest, when a run was interrupted and
    /// started again).
    pub fn run_for_job(&self, job_id: &str) -> Result<Option<RunRecord>, StationError> {
        Ok(self
            .store
            .list()?
            .into_iter()
            .rfind(|r| r.job.as_ref().is_some_and(|j| j.job_id == job_id)))
    }

    /// Appends an event to the audit log.
    pub fn record_event(&self, event: AuditEvent) -> Result<(), StationError> {
        self.audit.append(event)?;
        Ok(())
    }

    /// The keys this station trusts to sign job envelopes.
    pub fn job_keys(&self) -> &[(String, PublicKey)] {
        &self.job_keys
    }

    pub fn station_actor(&self) -> String {
        format!("station:{}", self.config.station_id)
    }

    /// Marks runs left `running` by a station process that stopped as interrupted. Only the
    /// daemon calls this, at start: an operator command beside a running daemon must not.
    pub fn recover_interrupted_runs(&self) -> Result<(), StationError> {
        for mut record in self.store.list()? {
            if record.status == RunStatus::Running {
                record.status = RunStatus::Error;
                record.reasons.push(crate::store::INTERRUPTED_REASON.into());
                record.updated_at = Utc::now();
                self.store.save(&record)?;
                self.audit.append(
                    AuditEvent::new(&self.station_actor(), "run_interrupted")
                        .run(&record.run_id)
                        .detail("status", "error"),
                )?;
            }
        }
        Ok(())
    }

    /// Runs the whole pipeline for a train reference (which must carry a digest) on behalf of
    /// `actor`, optionally as a stop of a verified job. Returns the run record: refused, awaiting
    /// approval, succeeded or failed. `Err` only when the station itself could not proceed.
    pub async fn submit(&self, submission: Submission) -> Result<RunRecord, StationError> {
        let Submission {
            reference,
            parameters: given,
            job,
            recipient,
            input_state,
            actor,
        } = submission;
        let reference = &reference;
        let actor = actor.as_str();
        let now = Utc::now();
        let digest = reference.digest().cloned();
        let mut record = RunRecord {
            version: "pht.run.v1".into(),
            run_id: new_run_id(),
            created_at: now,
            updated_at: now,
            status: RunStatus::Running,
            train: TrainRef {
                reference: reference.to_string(),
                registry: reference.registry().to_string(),
                repository: reference.repository().to_string(),
                digest: digest.as_ref().map(Digest::to_string).unwrap_or_default(),
                name: None,
                version: None,
            },
            job: job.clone(),
            signer: None,
            parameters: BTreeMap::new(),
            decision: None,
            reasons: Vec::new(),
            approval: None,
            outcome: None,
            outputs: Vec::new(),
            refused_outputs: Vec::new(),
            checks: None,
            output_decision: None,
            datasets: Vec::new(),
            recipient,
            sealed: None,
            started_at: None,
            finished_at: None,
            policy_sha256: None,
            state_paths: Vec::new(),
            reported: None,
            delivered_at: None,
        };
        if !input_state.is_empty() {
            let state_dir = self
                .store
                .run_dir(&record.run_id)
                .join("input")
                .join("state");
            for (path, bytes) in &input_state {
                // Paths were checked when the state bundle was opened.
                let target = state_dir.join(path);
                let written = target
                    .parent()
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .and_then(|()| std::fs::write(&target, bytes));
                if let Err(e) = written {
                    return Err(StationError::Config(format!(
                        "cannot write {}: {e}",
                        target.display()
                    )));
                }
            }
        }
        let mut received = AuditEvent::new(actor, "received").run(&record.run_id);
        received.train_digest = digest.as_ref().map(Digest::to_string);
        received.job_id = job.as_ref().map(|j| j.job_id.clone());
        received
            .details
            .insert("reference".into(), reference.to_string().into());
        self.audit.append(received)?;
        // Saved before any registry traffic: a stop the hub offers again while this run is still
        // fetching must find it, not be taken for a replay.
        self.store.save(&record)?;

        let Some(digest) = digest else {
            return self.refuse(record, vec!["reference.digest: a station runs trains by digest only; give REPOSITORY@sha256:…".into()]);
        };
        let train = match self.checked_train(record, reference, &digest).await? {
            (record_back, Some(train)) => {
                record = record_back;
                train
            }
            (finished, None) => return Ok(finished),
        };
        record.train.name = Some(train.manifest.name.to_string());
        record.train.version = Some(train.manifest.version.to_string());
        record.signer = train.signer.clone();
        let mut verified = AuditEvent::new(&self.station_actor(), "verified").run(&record.run_id);
        verified.train_digest = Some(digest.to_string());
        verified.decision = Some(if train.signer.is_some() {
            "signed".into()
        } else {
            "unsigned".into()
        });
        if let Some(signer) = &train.signer {
            verified
                .details
                .insert("signer".into(), signer.clone().into());
        }
        self.audit.append(verified)?;

        let parameters = match resolve_parameters(&train.manifest, given) {
            Ok(parameters) => parameters,
            Err(reason) => return self.refuse(record, vec![reason]),
        };
        record.parameters = parameters;
        self.decide_and_run(record, &train).await
    }

    /// Evaluates the policy and runs what it allows; parks what needs approval.
    async fn decide_and_run(
        &self,
        mut record: RunRecord,
        train: &InspectedTrain,
    ) -> Result<RunRecord, StationError> {
        let decision = self.policy.evaluate(&self.run_request(train, &record));
        record.policy_sha256 = Some(self.policy.content_hash().to_string());
        record.decision =
            Some(serde_json::to_value(&decision).expect("decisions always serialise"));
        let mut decided =
            AuditEvent::new(&self.station_actor(), "policy_decided").run(&record.run_id);
        decided.train_digest = Some(train.digest.to_string());
        decided.decision = Some(decision.outcome().to_string());
        decided.reasons = decision.reasons().iter().map(ToString::to_string).collect();
        decided.datasets = train
            .manifest
            .datasets
            .iter()
            .map(ToString::to_string)
            .collect();
        decided
            .details
            .insert("policy_hash".into(), self.policy.content_hash().into());
        self.audit.append(decided)?;

        match decision {
            Decision::Deny { reasons } => {
                self.refuse_logged(record, reasons.iter().map(ToString::to_string).collect())
            }
            Decision::NeedsApproval { reasons, .. } if record.approval.is_none() => {
                record.status = RunStatus::AwaitingApproval;
                record.reasons = reasons.iter().map(ToString::to_string).collect();
                record.updated_at = Utc::now();
                self.store.save(&record)?;
                self.audit.append(
                    AuditEvent::new(&self.station_actor(), "awaiting_approval").run(&record.run_id),
                )?;
                Ok(record)
            }
            Decision::NeedsApproval { grant, .. } | Decision::Allow(grant) => {
                self.execute(record, train, &grant).await
            }
        }
    }

    fn run_request(&self, train: &InspectedTrain, record: &RunRecord) -> RunRequest {
        let resources = &train.manifest.resources;
        RunRequest {
            train_signer: train.signer.clone(),
            job_signer: record.job.as_ref().map(|j| j.signer.clone()),
            registry: train.reference.registry().to_string(),
            repository: train.reference.repository().to_string(),
            manifest_digest: train.digest.clone(),
            purpose: train.manifest.purpose.to_string(),
            datasets: train
                .manifest
                .datasets
                .iter()
                .map(ToString::to_string)
                .collect(),
            resources: ResourceRequest {
                cpus: resources.cpus,
                memory_bytes: resources.memory.map(|m| m.0),
                wall_clock: resources.wall_clock.map(|w| w.0),
            },
            gpu: false,
            runtime: None,
            parameters_bytes: serde_json::to_vec(&record.parameters).map_or(0, |b| b.len() as u64),
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
    ) -> Result<Result<InspectedTrain, Refusal>, StationError> {
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
            Err(error) => return Err(StationError::Registry(error)),
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
            Err(error) => return Err(StationError::Registry(error)),
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
            Err(error) => return Err(StationError::Registry(error)),
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
        if signer.is_none() {
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
        }
        Ok(Ok(InspectedTrain {
            reference: reference.pinned(digest.clone()),
            digest: digest.clone(),
            manifest,
            image_manifest,
            config_bytes,
            signer,
        }))
    }

    /// The registry check, then fetching and verifying the train. Returns the record with the
    /// train, or the record already finished as refused (or failed, when the station itself
    /// could not proceed, which is also returned as `Err`).
    async fn checked_train(
        &self,
        record: RunRecord,
        reference: &ImageReference,
        digest: &Digest,
    ) -> Result<(RunRecord, Option<InspectedTrain>), StationError> {
        if let Err(refusal) = self.check_registry_allowed(reference) {
            return Ok((self.refuse(record, refusal)?, None));
        }
        match self.inspect(reference, digest).await {
            Ok(Ok(train)) => Ok((record, Some(train))),
            Ok(Err(refusal)) => Ok((self.refuse(record, refusal)?, None)),
            Err(error) => self.fail_with_error(record, error).map(|r| (r, None)),
        }
    }

    /// Loads a run that must be awaiting approval for `action`.
    fn load_awaiting_approval(
        &self,
        run_id: &str,
        action: &'static str,
    ) -> Result<RunRecord, StationError> {
        let record = self.store.load(run_id)?;
        if record.status != RunStatus::AwaitingApproval {
            return Err(StationError::NotAwaitingApproval {
                run_id: run_id.to_string(),
                status: record.status,
                action,
            });
        }
        Ok(record)
    }

    fn refuse(&self, mut record: RunRecord, reasons: Refusal) -> Result<RunRecord, StationError> {
        record.status = RunStatus::Refused;
        record.reasons = reasons;
        record.updated_at = Utc::now();
        self.store.save(&record)?;
        let mut refused = AuditEvent::new(&self.station_actor(), "refused").run(&record.run_id);
        refused.train_digest = Some(record.train.digest.clone()).filter(|d| !d.is_empty());
        refused.job_id = record.job.as_ref().map(|j| j.job_id.clone());
        refused.decision = Some("refused".into());
        refused.reasons = record.reasons.clone();
        self.audit.append(refused)?;
        Ok(record)
    }

    /// A refusal whose reasons the policy decision entry already carries.
    fn refuse_logged(
        &self,
        record: RunRecord,
        reasons: Refusal,
    ) -> Result<RunRecord, StationError> {
        self.refuse(record, reasons)
    }

    fn fail_with_error(
        &self,
        mut record: RunRecord,
        error: StationError,
    ) -> Result<RunRecord, StationError> {
        record.status = RunStatus::Error;
        record.reasons = vec![error.to_string()];
        record.updated_at = Utc::now();
        self.store.save(&record)?;
        let mut event = AuditEvent::new(&self.station_actor(), "error").run(&record.run_id);
        event.reasons = record.reasons.clone();
        self.audit.append(event)?;
        Err(error)
    }

    /// Approves a run awaiting approval and carries it out. Verification and policy are run
    /// again first, so a revoked key or a tightened policy still applies.
    pub async fn approve(
        &self,
        run_id: &str,
        operator: &str,
        reason: Option<String>,
    ) -> Result<RunRecord, StationError> {
        let mut record = self.load_awaiting_approval(run_id, "approved")?;
        record.approval = Some(OperatorDecision {
            by: operator.to_string(),
            at: Utc::now(),
            reason: reason.clone(),
        });
        let mut approved = AuditEvent::new(&format!("operator:{operator}"), "approved").run(run_id);
        approved.reasons = reason.into_iter().collect();
        self.audit.append(approved)?;
        record.reasons.clear();
        let reference: ImageReference = record
            .train
            .reference
            .parse()
            .map_err(|e| StationError::Config(format!("run {run_id}: {e}")))?;
        let digest = reference
            .digest()
            .cloned()
            .ok_or_else(|| StationError::Config(format!("run {run_id} has no digest")))?;
        match self.checked_train(record, &reference, &digest).await? {
            (record, Some(train)) => self.decide_and_run(record, &train).await,
            (finished, None) => Ok(finished),
        }
    }

    /// Rejects a run awaiting approval.
    pub fn reject(
        &self,
        run_id: &str,
        operator: &str,
        reason: &str,
    ) -> Result<RunRecord, StationError> {
        let mut record = self.load_awaiting_approval(run_id, "rejected")?;
        record.status = RunStatus::Rejected;
        record.approval = Some(OperatorDecision {
            by: operator.to_string(),
            at: Utc::now(),
            reason: Some(reason.to_string()),
        });
        record.reasons = vec![format!("rejected by {operator}: {reason}")];
        record.updated_at = Utc::now();
        self.store.save(&record)?;
        let mut rejected = AuditEvent::new(&format!("operator:{operator}"), "rejected").run(run_id);
        rejected.decision = Some("rejected".into());
        rejected.reasons = vec![reason.to_string()];
        self.audit.append(rejected)?;
        Ok(record)
    }

    /// Makes the signed image present in the engine: skipped when an image with the config
    /// digest is already there (content-addressed), otherwise every layer is fetched, checked
    /// against its digest, and loaded; the engine's image id must be the config digest.
    async fn pull(&self, train: &InspectedTrain) -> Result<Digest, StationError> {
        let image_id = train.image_manifest.config.digest.clone();
        if self
            .engine
            .has_image(&image_id)
            .await
            .map_err(|e| StationError::Engine(e.0))?
        {
            return Ok(image_id);
        }
        let mut layers = Vec::with_capacity(train.image_manifest.layers.len());
        for layer in &train.image_manifest.layers {
            let bytes = self
                .registry
                .get_blob(&train.reference, &layer.digest, MAX_LAYER_BYTES, None)
                .await
                .map_err(StationError::Registry)?;
            layers.push(Bytes::from(bytes));
        }
        let loaded = self
            .engine
            .load_image(&train.config_bytes, &layers)
            .await
            .map_err(|e| StationError::Engine(e.0))?;
        if loaded != image_id {
            return Err(StationError::Engine(format!(
                "the engine loaded image {loaded}, but the signed manifest's config is {image_id}: refusing to run it"
            )));
        }
        Ok(image_id)
    }

    fn run_spec(
        &self,
        record: &RunRecord,
        train: &InspectedTrain,
        grant: &Grant,
        image_id: &Digest,
    ) -> Result<RunSpec, StationError> {
        let spec_error =
            |e: pht_docker::SpecError| StationError::Config(format!("run {}: {e}", record.run_id));
        let limits = RunLimits {
            nano_cpus: RunLimits::nano_cpus_from_cpus(grant.cpus()),
            memory_bytes: grant.memory_bytes(),
            pids: grant.pids(),
            wall_clock: grant.wall_clock(),
            tmp_bytes: grant.tmp_bytes(),
            output_bytes: grant.output_bytes(),
            output_files: self.policy.outputs().checks().max_files as u64 * 4 + 16,
            log_bytes: grant.log_bytes(),
        };
        let input_dir = self.store.run_dir(&record.run_id).join("input");
        std::fs::create_dir_all(&input_dir).map_err(|e| {
            StationError::Config(format!("cannot create {}: {e}", input_dir.display()))
        })?;
        let params_path = input_dir.join("params.json");
        let params =
            serde_json::to_vec_pretty(&record.parameters).expect("parameters always serialise");
        std::fs::write(&params_path, params).map_err(|e| {
            StationError::Config(format!("cannot write {}: {e}", params_path.display()))
        })?;
        let mut spec = RunSpec::new(&record.run_id, &image_id.to_string(), limits)
            .map_err(spec_error)?
            .with_params_file(&params_path)
            .map_err(spec_error)?;
        for dataset in grant.datasets() {
            let held = &self.config.datasets[dataset.as_str()];
            spec = spec.with_dataset(dataset, &held.path).map_err(spec_error)?;
        }
        let state_dir = input_dir.join("state");
        if state_dir.is_dir() {
            spec = spec.with_state_dir(&state_dir).map_err(spec_error)?;
        }
        if let Some(entrypoint) = &train.manifest.entrypoint {
            spec = spec.with_entrypoint(entrypoint.clone());
        }
        if let Some(command) = &train.manifest.command {
            spec = spec.with_cmd(command.clone());
        }
        if grant.runtime() == Runtime::Runsc {
            spec = spec.with_runtime("runsc").map_err(spec_error)?;
        }
        Ok(spec.with_gpu(grant.gpu()))
    }

    async fn execute(
        &self,
        mut record: RunRecord,
        train: &InspectedTrain,
        grant: &Grant,
    ) -> Result<RunRecord, StationError> {
        record.status = RunStatus::Running;
        record.updated_at = Utc::now();
        self.store.save(&record)?;
        let image_id = match self.pull(train).await {
            Ok(image_id) => image_id,
            Err(error) => return self.fail_with_error(record, error),
        };
        let mut pulled = AuditEvent::new(&self.station_actor(), "pulled").run(&record.run_id);
        pulled.train_digest = Some(train.digest.to_string());
        pulled
            .details
            .insert("image_id".into(), image_id.to_string().into());
        self.audit.append(pulled)?;

        // The row indexes used by the leakage check, and the dataset versions for provenance,
        // are taken before the run: the train sees the same files.
        let mut indexes = Vec::new();
        record.datasets.clear();
        for name in grant.datasets() {
            let dataset = &self.config.datasets[name.as_str()];
            match outputs::dataset_indexes(&self.config.state_dir.join("dataset-index"), dataset) {
                Ok((dataset_indexes, version)) => {
                    indexes.extend(dataset_indexes);
                    record.datasets.push(DatasetVersion {
                        name: name.clone(),
                        sha256: version,
                    });
                }
                Err(error) => {
                    let message = format!(
                        "cannot read dataset `{name}` at {}: {error}",
                        dataset.path.display()
                    );
                    return self.fail_with_error(record, StationError::Config(message));
                }
            }
        }

        let spec = match self.run_spec(&record, train, grant, &image_id) {
            Ok(spec) => spec,
            Err(error) => return self.fail_with_error(record, error),
        };
        let mut started = AuditEvent::new(&self.station_actor(), "run_started").run(&record.run_id);
        started.train_digest = Some(train.digest.to_string());
        started.datasets = grant.datasets().to_vec();
        started.details.insert(
            "limits".into(),
            serde_json::to_value(grant).expect("grants always serialise"),
        );
        started.details.insert(
            "dataset_versions".into(),
            serde_json::to_value(&record.datasets).expect("versions always serialise"),
        );
        self.audit.append(started)?;
        record.started_at = Some(Utc::now());

        let outcome = match self.engine.run(&spec).await {
            Ok(outcome) => outcome,
            Err(error) => return self.fail_with_error(record, StationError::Engine(error.0)),
        };
        record.finished_at = Some(Utc::now());
        self.record_outcome(&mut record, &outcome, grant)?;
        let mut finished =
            AuditEvent::new(&self.station_actor(), "run_finished").run(&record.run_id);
        finished.train_digest = Some(train.digest.to_string());
        finished.decision = Some(
            serde_json::to_value(record.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
        );
        finished.reasons = record.reasons.clone();
        finished.datasets = grant.datasets().to_vec();
        finished.outputs = record
            .outputs
            .iter()
            .map(|o| OutputHash {
                path: o.path.clone(),
                sha256: o.sha256.clone(),
                size: o.size,
            })
            .collect();
        finished.details.insert(
            "outcome".into(),
            serde_json::to_value(&record.outcome).expect("outcomes always serialise"),
        );
        self.audit.append(finished)?;
        self.store.save(&record)?;
        if record.status == RunStatus::Succeeded {
            self.check_outputs(&mut record, train, &outcome, &indexes)?;
        }
        Ok(record)
    }

    /// Checks the outputs, keeps the report beside the run, and decides what happens to them.
    fn check_outputs(
        &self,
        record: &mut RunRecord,
        train: &InspectedTrain,
        outcome: &RunOutcome,
        indexes: &[pht_checks::DatasetIndex],
    ) -> Result<(), StationError> {
        let state = outputs::state_paths(&train.manifest);
        record.state_paths = state.clone();
        let entries = outputs::check_entries(&outcome.outputs, &state);
        let report = outputs::check(
            &entries,
            &train.manifest,
            indexes,
            self.policy.outputs().checks(),
        );
        let report_path = self.store.run_dir(&record.run_id).join("report.json");
        let report_json = serde_json::to_vec_pretty(&report).expect("reports always serialise");
        crate::store::write_atomic(&report_path, &report_json).map_err(|e| {
            StationError::Config(format!("cannot write {}: {e}", report_path.display()))
        })?;
        let status = report.status();
        record.checks = Some(status.to_string());
        let mut checked =
            AuditEvent::new(&self.station_actor(), "outputs_checked").run(&record.run_id);
        checked.train_digest = Some(record.train.digest.clone());
        checked.decision = Some(status.to_string());
        checked.details.insert(
            "report_sha256".into(),
            hex::encode(sha2::Sha256::digest(&report_json)).into(),
        );
        self.audit.append(checked)?;

        let decision = outputs::automatic_decision(status, self.policy.outputs().release());
        let reason = match decision {
            OutputDecision::Released => "every check passed and the policy releases passing outputs automatically".to_string(),
            OutputDecision::Withheld if status == pht_checks::Status::Pass => "the policy has an operator release every result".to_string(),
            OutputDecision::Withheld => "the checks ask for review: `pht-station outputs show` the report, then `outputs release` or `outputs block`".to_string(),
            OutputDecision::Blocked => "the checks failed; an operator may override with `outputs release RUN --reason …`".to_string(),
        };
        self.decide_outputs(record, decision, "station", Some(reason), false)
    }

    /// Records an output decision, audits it, and seals released outputs.
    fn decide_outputs(
        &self,
        record: &mut RunRecord,
        decision: OutputDecision,
        by: &str,
        reason: Option<String>,
        overridden: bool,
    ) -> Result<(), StationError> {
        record.output_decision = Some(OutputDecisionRecord {
            decision,
            by: by.to_string(),
            at: Utc::now(),
            reason: reason.clone(),
            overridden,
        });
        record.updated_at = Utc::now();
        let event = match decision {
            OutputDecision::Released => "outputs_released",
            OutputDecision::Withheld => "outputs_withheld",
            OutputDecision::Blocked => "outputs_blocked",
        };
        let actor = if by == "station" {
            self.station_actor()
        } else {
            format!("operator:{by}")
        };
        let mut audited = AuditEvent::new(&actor, event).run(&record.run_id);
        audited.train_digest = Some(record.train.digest.clone());
        audited.decision = record.checks.clone();
        audited.reasons = reason.into_iter().collect();
        if overridden {
            audited
                .details
                .insert("overrides_failed_checks".into(), true.into());
        }
        self.audit.append(audited)?;
        self.store.save(record)?;
        if decision == OutputDecision::Released {
            self.seal(record)?;
        }
        Ok(())
    }

    /// Seals the released outputs for the researcher: the files that are not state, the check
    /// report, and provenance signed by the station key, encrypted with age to the recipient.
    fn seal(&self, record: &mut RunRecord) -> Result<(), StationError> {
        use pht_core::intoto::{CheckVerdict, DatasetUse, FileVerdict, Release, ResultPredicateV1};
        let station_key = self.station_key.as_ref().ok_or_else(|| {
            StationError::Config(format!(
                "station {} has no signing key in {}: create one with `pht-station keys init`",
                self.config.station_id,
                self.config.key_dir.display()
            ))
        })?;
        let recipient = record.recipient.clone().ok_or_else(|| {
            StationError::Config(format!(
                "run {} names no recipient to seal for (exec with --recipient age1…)",
                record.run_id
            ))
        })?;
        let run_dir = self.store.run_dir(&record.run_id);
        let report_path = run_dir.join("report.json");
        let report_json = std::fs::read(&report_path).map_err(|e| {
            StationError::Config(format!("cannot read {}: {e}", report_path.display()))
        })?;
        let report: pht_checks::CheckReport = serde_json::from_slice(&report_json)
            .map_err(|e| StationError::Config(format!("{}: {e}", report_path.display())))?;
        let verdict_of = |status: pht_checks::Status| match status {
            pht_checks::Status::Pass => CheckVerdict::Pass,
            pht_checks::Status::Review => CheckVerdict::Review,
            pht_checks::Status::Fail => CheckVerdict::Fail,
        };
        let mut files = Vec::new();
        let mut verdicts = Vec::new();
        for output in record.outputs.iter().filter(|o| o.kind == "file") {
            // Only what the checks looked at leaves: declared state never does.
            let Some(result) = report.output(&output.path) else {
                continue;
            };
            let path = run_dir.join("outputs").join(&output.path);
            let bytes = std::fs::read(&path).map_err(|e| {
                StationError::Config(format!("cannot read {}: {e}", path.display()))
            })?;
            files.push((output.path.clone(), bytes));
            verdicts.push(FileVerdict {
                path: output.path.clone(),
                verdict: verdict_of(result.status),
            });
        }
        let decision = record
            .output_decision
            .clone()
            .expect("sealing follows a release decision");
        let hex_digest =
            |hex: &str| Digest::from_hex(hex).map_err(|e| StationError::Config(e.to_string()));
        let predicate = ResultPredicateV1 {
            job_id: record.job.as_ref().and_then(|j| j.job_id.parse().ok()),
            run_id: record.run_id.clone(),
            train: pht_core::job::TrainPin {
                repository: format!("{}/{}", record.train.registry, record.train.repository),
                digest: hex_digest(record.train.digest.trim_start_matches("sha256:"))?,
            },
            station: self.config.station_id.clone(),
            policy_sha256: hex_digest(
                record
                    .policy_sha256
                    .as_deref()
                    .unwrap_or(self.policy.content_hash()),
            )?,
            datasets: record
                .datasets
                .iter()
                .map(|d| {
                    Ok(DatasetUse {
                        name: d.name.clone(),
                        sha256: hex_digest(&d.sha256)?,
                    })
                })
                .collect::<Result<_, StationError>>()?,
            started_at: record.started_at.unwrap_or(record.created_at),
            finished_at: record.finished_at.unwrap_or(record.updated_at),
            verdict: verdict_of(report.status()),
            files: verdicts,
            released: Release {
                by: decision.by.clone(),
                at: decision.at,
                reason: decision.reason.clone().unwrap_or_default(),
                overrides_failed_checks: decision.overridden,
            },
        };
        let sealed =
            pht_core::seal::seal_bundle(&files, &report_json, predicate, station_key, &[recipient])
                .map_err(|e| {
                    StationError::Config(format!("cannot seal run {}: {e}", record.run_id))
                })?;
        let bundle_path = run_dir.join("result.age");
        crate::store::write_atomic(&bundle_path, &sealed).map_err(|e| {
            StationError::Config(format!("cannot write {}: {e}", bundle_path.display()))
        })?;
        let bundle_sha256 = hex::encode(sha2::Sha256::digest(&sealed));
        record.sealed = Some(SealedBundle {
            path: bundle_path.display().to_string(),
            sha256: bundle_sha256.clone(),
            size: sealed.len() as u64,
        });
        record.updated_at = Utc::now();
        self.store.save(record)?;
        let mut sealed_event = AuditEvent::new(&self.station_actor(), "sealed").run(&record.run_id);
        sealed_event.train_digest = Some(record.train.digest.clone());
        sealed_event.outputs = record
            .outputs
            .iter()
            .filter(|o| files.iter().any(|(path, _)| *path == o.path))
            .map(|o| OutputHash {
                path: o.path.clone(),
                sha256: o.sha256.clone(),
                size: o.size,
            })
            .collect();
        sealed_event
            .details
            .insert("bundle_sha256".into(), bundle_sha256.into());
        self.audit.append(sealed_event)?;
        Ok(())
    }

    /// An operator releases withheld outputs, or overrides blocked ones (a reason is required).
    pub fn release_outputs(
        &self,
        run_id: &str,
        operator: &str,
        reason: &str,
    ) -> Result<RunRecord, StationError> {
        let mut record = self.store.load(run_id)?;
        let current = record.output_decision.as_ref().map(|d| d.decision);
        let overridden = match current {
            Some(OutputDecision::Withheld) => false,
            Some(OutputDecision::Blocked) => true,
            _ => {
                return Err(StationError::OutputsNotPending {
                    run_id: run_id.to_string(),
                    decision: current,
                    action: "released",
                })
            }
        };
        if reason.trim().is_empty() {
            return Err(StationError::Config(
                "a release needs a reason (--reason …); it is kept in the audit log".into(),
            ));
        }
        self.decide_outputs(
            &mut record,
            OutputDecision::Released,
            operator,
            Some(reason.to_string()),
            overridden,
        )?;
        Ok(record)
    }

    /// An operator blocks withheld outputs.
    pub fn block_outputs(
        &self,
        run_id: &str,
        operator: &str,
        reason: &str,
    ) -> Result<RunRecord, StationError> {
        let mut record = self.store.load(run_id)?;
        let current = record.output_decision.as_ref().map(|d| d.decision);
        if current != Some(OutputDecision::Withheld) {
            return Err(StationError::OutputsNotPending {
                run_id: run_id.to_string(),
                decision: current,
                action: "blocked",
            });
        }
        self.decide_outputs(
            &mut record,
            OutputDecision::Blocked,
            operator,
            Some(reason.to_string()),
            false,
        )?;
        Ok(record)
    }

    /// Fills the record from the outcome and keeps logs and collected files in the run directory.
    fn record_outcome(
        &self,
        record: &mut RunRecord,
        outcome: &RunOutcome,
        grant: &Grant,
    ) -> Result<(), StationError> {
        let run_dir = self.store.run_dir(&record.run_id);
        let write_error = |path: &Path, e: std::io::Error| {
            StationError::Config(format!("cannot write {}: {e}", path.display()))
        };
        let logs_path = run_dir.join("logs.txt");
        std::fs::write(&logs_path, &outcome.logs).map_err(|e| write_error(&logs_path, e))?;
        let outputs_dir = run_dir.join("outputs");
        for file in &outcome.outputs.files {
            let kind = match &file.kind {
                CollectedKind::Regular { bytes } => {
                    // The collector only yields relative paths without `..`; joining is safe.
                    let path = outputs_dir.join(&file.path);
                    if let Some(parent) = path.parent() {
                        std::fs::create_dir_all(parent).map_err(|e| write_error(parent, e))?;
                    }
                    std::fs::write(&path, bytes).map_err(|e| write_error(&path, e))?;
                    "file"
                }
                CollectedKind::Symlink { .. } => "symlink",
                CollectedKind::Special { .. } => "special",
            };
            record.outputs.push(OutputSummary {
                path: file.path.clone(),
                kind: kind.into(),
                size: file.size,
                sha256: file.sha256.clone(),
            });
        }
        record.refused_outputs = outcome
            .outputs
            .refused
            .iter()
            .map(|r| format!("{}: {}", r.path, r.reason))
            .collect();
        record.outcome = Some(OutcomeSummary {
            exit_code: outcome.exit_code,
            oom_killed: outcome.oom_killed,
            timed_out: outcome.timed_out,
            duration_ms: outcome.duration.as_millis() as u64,
            output_limit_reached: outcome.output_limit_reached,
            logs_truncated: outcome.logs_truncated,
            log_bytes: outcome.logs.len() as u64,
        });
        let mut reasons = Vec::new();
        if outcome.oom_killed {
            reasons.push(format!(
                "resources.memory: killed at the memory limit of {} bytes",
                grant.memory_bytes()
            ));
        }
        if outcome.timed_out {
            reasons.push(format!(
                "resources.wall_clock: killed at the wall-clock limit of {}s",
                grant.wall_clock().as_secs_f64()
            ));
        }
        if outcome.output_limit_reached {
            reasons.push(format!(
                "resources.output_size: /output reached its limit of {} bytes; outputs may be cut",
                grant.output_bytes()
            ));
        }
        match outcome.exit_code {
            Some(0) => {}
            Some(code) if !outcome.oom_killed && !outcome.timed_out => {
                reasons.push(format!("train.exit: the train exited with code {code}"))
            }
            Some(_) => {}
            None => reasons
                .push("train.exit: no exit code (the container did not finish normally)".into()),
        }
        let succeeded = outcome.exit_code == Some(0) && !outcome.oom_killed && !outcome.timed_out;
        record.status = if succeeded {
            RunStatus::Succeeded
        } else {
            RunStatus::Failed
        };
        record.reasons = reasons;
        record.updated_at = Utc::now();
        Ok(())
    }
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
