//! Decide: the station's policy says allow, needs approval, or deny, with reasons.
//!
//! Owns the station's own readiness first (could a result of this run ever be sealed?), then
//! building the policy's [`RunRequest`] from what verification established, recording
//! the decision (the policy's content hash with it), and [`ApprovedRun`]: the only way to the
//! sandbox, made here alone, when the policy allows the run or it needs approval and an
//! operator has approved it (`approve.rs`). Does not evaluate rules itself: that is
//! `pht-policy`'s, and a denial is a refusal with the policy's reasons.

use chrono::Utc;
use pht_policy::{BaseRequest, Decision, Grant, ResourceRequest, RunRequest};

use super::verify::{VerifiedRun, VerifiedTrain};
use super::Step;
use crate::audit::AuditEvent;
use crate::error::StationError;
use crate::station::Station;
use crate::store::{RunRecord, RunStatus};

/// A run the policy allows (or an operator approved where it asked for approval), with the
/// limits the policy granted. Only [`Station::decide`] makes one.
#[derive(Debug)]
pub struct ApprovedRun {
    record: RunRecord,
    train: VerifiedTrain,
    grant: Grant,
}

impl ApprovedRun {
    pub fn record(&self) -> &RunRecord {
        &self.record
    }

    pub(super) fn record_mut(&mut self) -> &mut RunRecord {
        &mut self.record
    }

    pub fn train(&self) -> &VerifiedTrain {
        &self.train
    }

    pub fn grant(&self) -> &Grant {
        &self.grant
    }

    pub(super) fn into_record(self) -> RunRecord {
        self.record
    }
}

impl<E> Station<E> {
    /// Evaluates the policy: an allowed run goes on, a run that needs approval is parked
    /// (awaiting approval) unless an operator approved it already, a denied one is refused.
    pub(super) fn decide(&self, verified: VerifiedRun) -> Result<Step<ApprovedRun>, StationError> {
        let (mut record, train) = verified.into_parts();
        let unready = self.readiness(&record);
        if !unready.is_empty() {
            return self.refuse(record, unready).map(Step::Done);
        }
        let decision = self.policy.evaluate(&self.run_request(&train, &record));
        record.policy_sha256 = Some(self.policy.content_hash().to_string());
        record.decision =
            Some(serde_json::to_value(&decision).expect("decisions always serialise"));
        let mut decided =
            AuditEvent::new(&self.station_actor(), "policy_decided").run(&record.run_id);
        decided.train_digest = Some(train.digest().to_string());
        decided.decision = Some(decision.outcome().to_string());
        decided.reasons = decision.reasons().iter().map(ToString::to_string).collect();
        decided.datasets = train
            .manifest()
            .datasets
            .iter()
            .map(ToString::to_string)
            .collect();
        decided
            .details
            .insert("policy_hash".into(), self.policy.content_hash().into());
        self.audit.append(decided)?;

        match decision {
            Decision::Deny { reasons } => self
                .refuse(record, reasons.iter().map(ToString::to_string).collect())
                .map(Step::Done),
            Decision::NeedsApproval { reasons, .. } if record.approval.is_none() => {
                record.status = RunStatus::AwaitingApproval;
                record.reasons = reasons.iter().map(ToString::to_string).collect();
                record.updated_at = Utc::now();
                self.store.save(&record)?;
                self.audit.append(
                    AuditEvent::new(&self.station_actor(), "awaiting_approval").run(&record.run_id),
                )?;
                Ok(Step::Done(record))
            }
            Decision::NeedsApproval { grant, .. } | Decision::Allow(grant) => {
                Ok(Step::Next(ApprovedRun {
                    record,
                    train,
                    grant,
                }))
            }
        }
    }

    /// What would keep this run's results from ever leaving, checked before the policy and
    /// long before the train touches the data: a recipient that is not an age recipient, no
    /// recipient where the policy releases automatically, or no station key to sign the
    /// provenance with. One reason a line, each naming its rule.
    fn readiness(&self, record: &RunRecord) -> Vec<String> {
        let mut reasons = Vec::new();
        match &record.recipient {
            Some(recipient) => {
                if let Err(error) = pht_core::recipient::parse_recipient(recipient) {
                    reasons.push(format!("seal.recipient: {error}"));
                }
            }
            None if self.policy.outputs().release() == pht_policy::Release::Automatic => {
                reasons.push("seal.recipient: the policy releases passing outputs automatically, but this run names no recipient to seal them for; exec with --recipient age1…".into());
            }
            None => {}
        }
        let may_seal = record.recipient.is_some();
        if may_seal && self.station_key.is_none() {
            reasons.push(format!(
                "seal.station_key: station {} has no signing key in {}, so no result could be sealed; create one with `pht-station keys init`",
                self.config.station_id,
                self.config.key_dir.display()
            ));
        }
        reasons
    }

    fn run_request(&self, train: &VerifiedTrain, record: &RunRecord) -> RunRequest {
        let resources = &train.manifest().resources;
        RunRequest {
            train_signer: Some(train.signer().to_string()),
            job_signer: record.job.as_ref().map(|j| j.signer.clone()),
            registry: train.reference().registry().to_string(),
            repository: train.reference().repository().to_string(),
            manifest_digest: train.digest().clone(),
            purpose: train.manifest().purpose.to_string(),
            datasets: train
                .manifest()
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
            base: train.base().map(|base| BaseRequest {
                repository: base.reference().repository_path(),
                digest: base.digest().clone(),
                signer: base.signer().map(str::to_string),
            }),
        }
    }
}
