//! Approve: an operator approves or rejects a run the policy parked for approval.
//!
//! Owns recording the operator's decision (by name, with the reason) and, on approval,
//! carrying the run on: the train is verified again and the policy evaluated again first, so a
//! revoked key or a tightened policy still applies between the request and the approval. Does
//! not decide whether approval is needed: the policy did (`decide.rs`), and only `decide.rs`
//! turns an approval into an [`ApprovedRun`](super::decide::ApprovedRun).

use chrono::Utc;
use pht_core::ImageReference;

use super::Step;
use crate::audit::AuditEvent;
use crate::engine::Engine;
use crate::error::StationError;
use crate::station::Station;
use crate::store::{OperatorDecision, RunRecord, RunStatus};

/// An operator's approval or rejection that cannot be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ApproveError {
    #[error("run {run_id} is {status:?}; only a run awaiting approval can be {action}")]
    NotAwaitingApproval {
        run_id: String,
        status: RunStatus,
        action: &'static str,
    },
    #[error("run {run_id}: its record names no train by digest ({detail}); reject it and submit the train again")]
    NoTrainDigest { run_id: String, detail: String },
}

impl<E: Engine> Station<E> {
    /// Approves a run awaiting approval and carries it out.
    pub async fn approve(
        &self,
        run_id: &str,
        operator: &str,
        reason: Option<String>,
    ) -> Result<RunRecord, StationError> {
        let _hold = self.store.hold(run_id)?;
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
        let no_digest = |detail: String| ApproveError::NoTrainDigest {
            run_id: run_id.to_string(),
            detail,
        };
        let reference: ImageReference = record
            .train
            .reference
            .parse()
            .map_err(|e: pht_core::reference::ReferenceError| no_digest(e.to_string()))?;
        let digest = reference
            .digest()
            .cloned()
            .ok_or_else(|| no_digest("the reference has no digest".into()))?;
        let carried = async {
            let verified = match self.verify_again(record, &reference, &digest).await? {
                Step::Next(verified) => verified,
                Step::Done(finished) => return Ok(finished),
            };
            self.decide_and_carry_out(verified).await
        };
        let outcome = carried.await;
        self.settle(run_id, outcome)
    }
}

impl<E> Station<E> {
    /// Rejects a run awaiting approval.
    pub fn reject(
        &self,
        run_id: &str,
        operator: &str,
        reason: &str,
    ) -> Result<RunRecord, StationError> {
        let _hold = self.store.hold(run_id)?;
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
        self.count_run_end(RunStatus::Rejected.as_str());
        Ok(record)
    }

    /// Loads a run that must be awaiting approval for `action`.
    fn load_awaiting_approval(
        &self,
        run_id: &str,
        action: &'static str,
    ) -> Result<RunRecord, StationError> {
        let record = self.store.load(run_id)?;
        if record.status != RunStatus::AwaitingApproval {
            return Err(ApproveError::NotAwaitingApproval {
                run_id: run_id.to_string(),
                status: record.status,
                action,
            }
            .into());
        }
        Ok(record)
    }
}
