//! What a policy decides about a run: allow, needs approval, or deny, with reasons that name the
//! rule, the expected and the actual value.
//!
//! A refusal is data, not an error. The `Grant` in an allow or needs-approval decision is the only
//! way to effective sandbox limits; it has private fields and is built only by `evaluate`, so it
//! never exceeds the policy's ceilings. These types serialise (the station writes decisions to its
//! audit log as JSON) but never deserialise: a grant read back from a file would be a forgery.
//! This module decides nothing itself.

use std::fmt;
use std::time::Duration;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use pht_core::Digest;

use crate::values::Runtime;

/// A policy rule, by its stable machine id (what the audit log and tools match on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// The train is signed, and a trusted signer's key verified the signature.
    SignerTrusted,
    /// The train's signer is one of `trusted_signers`.
    SignerKnown,
    /// The train's signer may sign trains (`may_sign`).
    SignerMaySign,
    /// The train's declared purpose is among its signer's `purposes`.
    PurposeAllowed,
    /// Every dataset the train declares is among its signer's `datasets`.
    DatasetAllowed,
    /// The job envelope's signer is one of `trusted_signers`.
    JobSignerKnown,
    /// The job envelope's signer may sign jobs (`may_sign`).
    JobSignerMaySign,
    /// The train's purpose is among the job signer's `purposes` (when someone else signed the train).
    JobPurposeAllowed,
    /// The train's datasets are among the job signer's `datasets` (when someone else signed the train).
    JobDatasetAllowed,
    /// The train comes from an allowed registry.
    RegistryAllowed,
    /// The train's repository matches one of its registry's `repositories`.
    RepositoryAllowed,
    /// The CPUs asked for are within `resources.cpus`.
    ResourcesCpus,
    /// The memory asked for is within `resources.memory`.
    ResourcesMemory,
    /// The wall-clock time asked for is within `resources.wall_clock`.
    ResourcesWallClock,
    /// GPUs are asked for only where `gpu.allowed` is true.
    GpuAllowed,
    /// The runtime asked for is the policy's `runtime`.
    RuntimeAllowed,
    /// The job's parameters fit `max_parameters_size`.
    ParametersSize,
    /// The train's base image is one `base_images.allowed` names (by digest, or signed by a
    /// listed base signer), and a train has one where `base_images.required` says so.
    BaseAllowed,
    /// The train's signer has `approval: automatic`.
    ApprovalSigner,
    /// The job's signer has `approval: automatic`.
    ApprovalJobSigner,
}

impl Rule {
    /// The stable id, e.g. `dataset.allowed`.
    pub fn id(self) -> &'static str {
        match self {
            Rule::SignerTrusted => "signer.trusted",
            Rule::SignerKnown => "signer.known",
            Rule::SignerMaySign => "signer.may_sign",
            Rule::PurposeAllowed => "purpose.allowed",
            Rule::DatasetAllowed => "dataset.allowed",
            Rule::JobSignerKnown => "job.signer.known",
            Rule::JobSignerMaySign => "job.signer.may_sign",
            Rule::JobPurposeAllowed => "job.purpose.allowed",
            Rule::JobDatasetAllowed => "job.dataset.allowed",
            Rule::RegistryAllowed => "registry.allowed",
            Rule::RepositoryAllowed => "repository.allowed",
            Rule::ResourcesCpus => "resources.cpus",
            Rule::ResourcesMemory => "resources.memory",
            Rule::ResourcesWallClock => "resources.wall_clock",
            Rule::GpuAllowed => "gpu.allowed",
            Rule::RuntimeAllowed => "runtime.allowed",
            Rule::ParametersSize => "parameters.size",
            Rule::BaseAllowed => "base.allowed",
            Rule::ApprovalSigner => "approval.signer",
            Rule::ApprovalJobSigner => "approval.job.signer",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.id())
    }
}

impl Serialize for Rule {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.id())
    }
}

/// One rule that did not hold, or one reason an operator must approve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    pub rule: Rule,
    /// What the policy wants, e.g. `at most 1GiB`.
    pub expected: String,
    /// What the request has, e.g. `2GiB`.
    pub actual: String,
    /// One line for a human, e.g. `the train asks for 2GiB of memory; the policy allows at most 1GiB`.
    pub message: String,
}

impl Reason {
    pub(crate) fn new(
        rule: Rule,
        expected: impl Into<String>,
        actual: impl Into<String>,
        message: impl Into<String>,
    ) -> Reason {
        Reason {
            rule,
            expected: expected.into(),
            actual: actual.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{}: {} (expected {}, actual {})",
            self.rule, self.message, self.expected, self.actual
        )
    }
}

/// What a run may use: the effective sandbox limits and the identities they were granted to.
/// Only `Policy::evaluate` builds one (the fields are private outside this crate, and nothing
/// else in it constructs a grant), and every limit is at most the policy's ceiling.
///
/// ```compile_fail
/// // A grant cannot be raised after the fact: its fields are private outside this crate.
/// fn raise(grant: &mut pht_policy::Grant) {
///     grant.cpus = 64.0;
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Grant {
    pub(crate) signer: String,
    pub(crate) job_signer: Option<String>,
    pub(crate) registry: String,
    pub(crate) repository: String,
    pub(crate) manifest_digest: Digest,
    pub(crate) datasets: Vec<String>,
    pub(crate) cpus: f64,
    pub(crate) memory_bytes: u64,
    pub(crate) pids: u64,
    #[serde(rename = "wall_clock_seconds", serialize_with = "serialize_seconds")]
    pub(crate) wall_clock: Duration,
    pub(crate) output_bytes: u64,
    pub(crate) tmp_bytes: u64,
    pub(crate) log_bytes: u64,
    pub(crate) runtime: Runtime,
    pub(crate) gpu: bool,
    pub(crate) policy_hash: String,
}

fn serialize_seconds<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

impl Grant {
    /// The trusted signer whose key verified the train.
    pub fn signer(&self) -> &str {
        &self.signer
    }

    /// The trusted signer whose key verified the job envelope; `None` for a local exec.
    pub fn job_signer(&self) -> Option<&str> {
        self.job_signer.as_deref()
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The manifest digest this grant is for; the station runs nothing else under it.
    pub fn manifest_digest(&self) -> &Digest {
        &self.manifest_digest
    }

    /// The datasets that may be mounted (read-only), each once, in the order the train declared them.
    pub fn datasets(&self) -> &[String] {
        &self.datasets
    }

    pub fn cpus(&self) -> f64 {
        self.cpus
    }

    pub fn memory_bytes(&self) -> u64 {
        self.memory_bytes
    }

    pub fn pids(&self) -> u64 {
        self.pids
    }

    /// After this the container is killed.
    pub fn wall_clock(&self) -> Duration {
        self.wall_clock
    }

    /// The most `/output` may hold.
    pub fn output_bytes(&self) -> u64 {
        self.output_bytes
    }

    /// The size of the `/tmp` tmpfs.
    pub fn tmp_bytes(&self) -> u64 {
        self.tmp_bytes
    }

    /// The most log output kept.
    pub fn log_bytes(&self) -> u64 {
        self.log_bytes
    }

    pub fn runtime(&self) -> Runtime {
        self.runtime
    }

    /// Whether GPUs may be attached (only when asked for and allowed).
    pub fn gpu(&self) -> bool {
        self.gpu
    }

    /// The content hash of the policy that granted this (see `Policy::content_hash`).
    pub fn policy_hash(&self) -> &str {
        &self.policy_hash
    }
}

/// The policy's answer to one run request.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The run may start now, with these limits.
    Allow(Grant),
    /// The run may start with these limits once an operator approves; `reasons` say why the
    /// operator is asked.
    NeedsApproval { grant: Grant, reasons: Vec<Reason> },
    /// The run may not start; `reasons` lists every rule that failed, not only the first.
    Deny { reasons: Vec<Reason> },
}

impl Decision {
    /// Why the run is denied or needs approval; empty for an allow.
    pub fn reasons(&self) -> &[Reason] {
        match self {
            Decision::Allow(_) => &[],
            Decision::NeedsApproval { reasons, .. } | Decision::Deny { reasons } => reasons,
        }
    }

    /// The grant of an allow or needs-approval decision.
    pub fn grant(&self) -> Option<&Grant> {
        match self {
            Decision::Allow(grant) | Decision::NeedsApproval { grant, .. } => Some(grant),
            Decision::Deny { .. } => None,
        }
    }

    /// `allow`, `needs_approval` or `deny`, as written to the audit log.
    pub fn outcome(&self) -> &'static str {
        match self {
            Decision::Allow(_) => "allow",
            Decision::NeedsApproval { .. } => "needs_approval",
            Decision::Deny { .. } => "deny",
        }
    }
}

/// `{"outcome": ..., "grant": {...} or null, "reasons": [...]}`: one shape for every outcome, so
/// audit log readers need no per-variant handling.
impl Serialize for Decision {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut state = serializer.serialize_struct("Decision", 3)?;
        state.serialize_field("outcome", self.outcome())?;
        state.serialize_field("grant", &self.grant())?;
        state.serialize_field("reasons", self.reasons())?;
        state.end()
    }
}

/// The outcome on the first line, then one reason per line.
impl fmt::Display for Decision {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.outcome())?;
        for reason in self.reasons() {
            write!(formatter, "\n- {reason}")?;
        }
        Ok(())
    }
}
