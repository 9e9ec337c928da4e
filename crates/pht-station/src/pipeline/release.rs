//! Release: what happens to a run's checked outputs — released to the researcher, withheld for
//! an operator, or blocked — and who decided.
//!
//! Owns the rule that turns a verdict into a decision (pass → released where the policy
//! releases automatically, otherwise withheld; review → withheld; fail → blocked unless an
//! operator overrides with a reason), the operator's `outputs release|block`, auditing every
//! decision, and [`ReleasedRun`]: the only thing the seal stage accepts, made here alone.
//!
//! The two-person rule: withheld outputs are released only once `outputs.reviewers_required`
//! distinct operators have each released them (each release is a review, audited as
//! `output_reviewed`; the same operator twice counts once and is told so); a block by any
//! reviewer blocks them. Overriding failed checks is one operator's act with a reason.
//! Does not look at the outputs (the checks did) and does not encrypt anything (`seal.rs`).

use chrono::Utc;
use pht_checks::Status;
use pht_policy::Release;

use super::check::CheckedRun;
use crate::audit::AuditEvent;
use crate::error::StationError;
use crate::station::Station;
pub use crate::store::OutputDecision;
use crate::store::{OutputDecisionRecord, OutputReview, RunRecord, RunStatus, StoreError};

/// The decision the checks alone lead to, before any operator acts.
pub fn automatic_decision(status: Status, release: Release) -> OutputDecision {
    match (status, release) {
        (Status::Pass, Release::Automatic) => OutputDecision::Released,
        (Status::Pass, Release::Manual) | (Status::Review, _) => OutputDecision::Withheld,
        (Status::Fail, _) => OutputDecision::Blocked,
    }
}

/// An operator's output decision that cannot be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("the outputs of run {run_id} {}; only withheld (or, with a reason, blocked) outputs can be {action}", describe(*.decision))]
    OutputsNotPending {
        run_id: String,
        decision: Option<OutputDecision>,
        action: &'static str,
    },
    #[error("a release needs a reason (--reason …); it is kept in the audit log")]
    ReasonRequired { run_id: String },
    #[error("run {run_id} failed ({reasons}); nothing of a failed run is released")]
    RunFailed { run_id: String, reasons: String },
    #[error(
        "operator {operator} has already released run {run_id}; the policy asks for \
         {required} distinct reviewers and {released} so far, so another operator must release it"
    )]
    AlreadyReviewed {
        run_id: String,
        operator: String,
        required: u32,
        released: u32,
    },
}

/// Where a run's outputs stand, in words for an operator.
fn describe(decision: Option<OutputDecision>) -> &'static str {
    match decision {
        Some(OutputDecision::Released) => "were released already",
        Some(OutputDecision::Withheld) => "are withheld",
        Some(OutputDecision::Blocked) => "are blocked",
        None => "were never checked (only a run that succeeded has outputs to decide about; see `pht-station show`)",
    }
}

/// A run whose outputs were released, with the release decision: what the seal stage takes.
/// Only this module makes one.
#[derive(Debug)]
pub struct ReleasedRun {
    record: RunRecord,
    release: OutputDecisionRecord,
}

impl ReleasedRun {
    pub(super) fn into_parts(self) -> (RunRecord, OutputDecisionRecord) {
        (self.record, self.release)
    }
}

/// How many distinct operators have released the run's outputs so far.
fn distinct_releasers(record: &RunRecord) -> u32 {
    let releasers: std::collections::BTreeSet<&str> = record
        .reviews
        .iter()
        .filter(|review| review.decision == OutputDecision::Released)
        .map(|review| review.operator.as_str())
        .collect();
    releasers.len() as u32
}

/// Who decides about outputs: the station by its rule, or a named operator.
#[derive(Debug, Clone, Copy)]
enum Decider<'a> {
    Station,
    Operator(&'a str),
}

impl<E> Station<E> {
    /// Decides about checked outputs by the policy's rule, and seals what it releases.
    pub(super) fn release_checked(&self, checked: CheckedRun) -> Result<RunRecord, StationError> {
        let (mut record, outputs_status, state) = checked.into_parts();
        if let Some(state) = state.as_ref().filter(|state| state.status == Status::Fail) {
            // State that may not leave fails the stop: nothing is released or handed on, and
            // the hub is told why.
            record.status = RunStatus::Failed;
            record.reasons.extend(state.reasons.iter().cloned());
            record.updated_at = Utc::now();
            let reason = "the state for the next stop failed its checks; nothing leaves this station (`pht-station outputs show` has the reports)";
            return self.decide_outputs(
                record,
                OutputDecision::Blocked,
                Decider::Station,
                reason.to_string(),
                false,
            );
        }
        // State that needs review holds the outputs back with it: an operator releases both.
        let status = outputs_status.max(state.map_or(Status::Pass, |state| state.status));
        let decision = automatic_decision(status, self.policy.outputs().release());
        let reason = match decision {
            OutputDecision::Released => "every check passed and the policy releases passing outputs automatically",
            OutputDecision::Withheld if status == Status::Pass => "the policy has an operator release every result",
            OutputDecision::Withheld => "the checks ask for review: `pht-station outputs show` the report, then `outputs release` or `outputs block`",
            OutputDecision::Blocked => "the checks failed; an operator may override with `outputs release RUN --reason …`",
        };
        self.decide_outputs(
            record,
            decision,
            Decider::Station,
            reason.to_string(),
            false,
        )
    }

    /// An operator releases withheld outputs, or overrides blocked ones (a reason is required).
    pub fn release_outputs(
        &self,
        run_id: &str,
        operator: &str,
        reason: &str,
    ) -> Result<RunRecord, StationError> {
        let (record, current) = self.load_pending_outputs(
            run_id,
            "released",
            &[OutputDecision::Withheld, OutputDecision::Blocked],
        )?;
        if record.status != RunStatus::Succeeded {
            return Err(ReleaseError::RunFailed {
                run_id: run_id.to_string(),
                reasons: record.reasons.join("; "),
            }
            .into());
        }
        if reason.trim().is_empty() {
            return Err(ReleaseError::ReasonRequired {
                run_id: run_id.to_string(),
            }
            .into());
        }
        let overridden = current == OutputDecision::Blocked;
        let mut record = record;
        let mut reason = reason.to_string();
        if !overridden {
            let required = self.policy.outputs().reviewers_required();
            let released = distinct_releasers(&record);
            if record.reviews.iter().any(|review| {
                review.operator == operator && review.decision == OutputDecision::Released
            }) {
                return Err(ReleaseError::AlreadyReviewed {
                    run_id: run_id.to_string(),
                    operator: operator.to_string(),
                    required,
                    released,
                }
                .into());
            }
            self.add_review(&mut record, operator, OutputDecision::Released, &reason)?;
            let released = released + 1;
            if released < required {
                record.updated_at = Utc::now();
                self.store.save(&record)?;
                return Ok(record);
            }
            if required > 1 {
                let reasons: Vec<String> = record
                    .reviews
                    .iter()
                    .filter(|review| review.decision == OutputDecision::Released)
                    .map(|review| format!("{}: {}", review.operator, review.reason))
                    .collect();
                reason = format!(
                    "released by {required} distinct reviewers ({})",
                    reasons.join("; ")
                );
            }
        }
        self.decide_outputs(
            record,
            OutputDecision::Released,
            Decider::Operator(operator),
            reason,
            overridden,
        )
    }

    /// Enters the run's count tables (kept by the check stage) in the differencing ledger of
    /// every dataset version it read, before its outputs are sealed: a table that leaves is one
    /// later tables are compared with.
    fn enter_in_ledger(&self, record: &RunRecord) -> Result<(), StationError> {
        let path = self
            .store
            .run_dir(&record.run_id)
            .join(super::check::COUNT_TABLES_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(StoreError::Read { path, source }.into()),
        };
        let tables: Vec<(String, pht_checks::CountTable)> = serde_json::from_slice(&bytes)
            .map_err(|error| StoreError::Damaged {
                path: path.clone(),
                detail: error.to_string(),
            })?;
        let now = Utc::now().timestamp();
        let releases: Vec<pht_checks::Release> = tables
            .into_iter()
            .map(|(output, table)| pht_checks::Release {
                run_id: record.run_id.clone(),
                job_id: record.job.as_ref().map(|job| job.job_id.clone()),
                output,
                released_at: now,
                table,
            })
            .collect();
        let dir = crate::ledger::ledger_dir(&self.config.state_dir);
        let config = &self.policy.outputs().checks().differencing;
        for version in &record.datasets {
            crate::ledger::append(&dir, &version.name, &version.sha256, &releases, config, now)?;
        }
        Ok(())
    }

    /// Records and audits one operator's review of withheld outputs.
    fn add_review(
        &self,
        record: &mut RunRecord,
        operator: &str,
        decision: OutputDecision,
        reason: &str,
    ) -> Result<(), StationError> {
        record.reviews.push(OutputReview {
            operator: operator.to_string(),
            decision,
            at: Utc::now(),
            reason: reason.to_string(),
        });
        let required = self.policy.outputs().reviewers_required();
        let mut audited =
            AuditEvent::new(&format!("operator:{operator}"), "output_reviewed").run(&record.run_id);
        audited.train_digest = Some(record.train.digest.clone());
        audited.reasons = vec![reason.to_string()];
        let decision_name = match decision {
            OutputDecision::Released => "released",
            OutputDecision::Withheld => "withheld",
            OutputDecision::Blocked => "blocked",
        };
        audited
            .details
            .insert("review".into(), decision_name.into());
        audited
            .details
            .insert("releases".into(), distinct_releasers(record).into());
        audited
            .details
            .insert("reviewers_required".into(), required.into());
        self.audit.append(audited)?;
        Ok(())
    }

    /// An operator blocks withheld outputs.
    pub fn block_outputs(
        &self,
        run_id: &str,
        operator: &str,
        reason: &str,
    ) -> Result<RunRecord, StationError> {
        let (mut record, _) =
            self.load_pending_outputs(run_id, "blocked", &[OutputDecision::Withheld])?;
        self.add_review(&mut record, operator, OutputDecision::Blocked, reason)?;
        self.decide_outputs(
            record,
            OutputDecision::Blocked,
            Decider::Operator(operator),
            reason.to_string(),
            false,
        )
    }

    /// Loads a run whose outputs an operator may still decide about by `action`: their
    /// current decision must be one of `pending`.
    fn load_pending_outputs(
        &self,
        run_id: &str,
        action: &'static str,
        pending: &[OutputDecision],
    ) -> Result<(RunRecord, OutputDecision), StationError> {
        let record = self.store.load(run_id)?;
        if self.store.is_live(run_id) {
            return Err(crate::store::StoreError::RunBusy {
                run_id: run_id.to_string(),
            }
            .into());
        }
        let current = record.output_decision.as_ref().map(|d| d.decision);
        match current {
            Some(decision) if pending.contains(&decision) => Ok((record, decision)),
            _ => Err(ReleaseError::OutputsNotPending {
                run_id: run_id.to_string(),
                decision: current,
                action,
            }
            .into()),
        }
    }

    /// Records an output decision, audits it, and seals released outputs.
    fn decide_outputs(
        &self,
        mut record: RunRecord,
        decision: OutputDecision,
        by: Decider<'_>,
        reason: String,
        overridden: bool,
    ) -> Result<RunRecord, StationError> {
        let (by_name, actor) = match by {
            Decider::Station => ("station".to_string(), self.station_actor()),
            Decider::Operator(name) => (name.to_string(), format!("operator:{name}")),
        };
        let decided = OutputDecisionRecord {
            decision,
            by: by_name,
            at: Utc::now(),
            reason: Some(reason.clone()),
            overridden,
        };
        let previous = record.output_decision.replace(decided.clone());
        record.updated_at = Utc::now();
        let event = match decision {
            OutputDecision::Released => "outputs_released",
            OutputDecision::Withheld => "outputs_withheld",
            OutputDecision::Blocked => "outputs_blocked",
        };
        let mut audited = AuditEvent::new(&actor, event).run(&record.run_id);
        audited.train_digest = Some(record.train.digest.clone());
        audited.decision = record.checks.clone();
        audited.reasons = vec![reason];
        if overridden {
            audited
                .details
                .insert("overrides_failed_checks".into(), true.into());
        }
        self.audit.append(audited)?;
        self.store.save(&record)?;
        if decision != OutputDecision::Released {
            return Ok(record);
        }
        let unsealed = record.clone();
        let sealed = self.enter_in_ledger(&record).and_then(|()| {
            let _timer = self.time_step(crate::metrics::PipelineStep::seal);
            self.seal(ReleasedRun {
                record,
                release: decided,
            })
        });
        match sealed {
            Ok(sealed) => Ok(sealed),
            // An operator's release that could not be sealed (a full disk, say) is undone, so
            // the operator can release again once the cause is mended; the station's own
            // release fails the run instead (`settle`), and the hub is told.
            Err(error) if matches!(by, Decider::Operator(_)) => {
                let mut restored = unsealed;
                restored.output_decision = previous;
                restored.updated_at = Utc::now();
                self.store.save(&restored)?;
                let mut undone = AuditEvent::new(&actor, "release_undone").run(&restored.run_id);
                undone.reasons = vec![format!("the outputs could not be sealed: {error}")];
                self.audit.append(undone)?;
                Err(error)
            }
            Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releasing_a_failed_runs_outputs_says_so_in_words() {
        let error = ReleaseError::OutputsNotPending {
            run_id: "run-1".into(),
            decision: None,
            action: "released",
        };
        expect_test::expect![[r#"the outputs of run run-1 were never checked (only a run that succeeded has outputs to decide about; see `pht-station show`); only withheld (or, with a reason, blocked) outputs can be released"#]]
            .assert_eq(&error.to_string());
    }

    #[test]
    fn fail_beats_automatic_release_and_review_waits() {
        assert_eq!(
            automatic_decision(Status::Pass, Release::Automatic),
            OutputDecision::Released
        );
        assert_eq!(
            automatic_decision(Status::Pass, Release::Manual),
            OutputDecision::Withheld
        );
        assert_eq!(
            automatic_decision(Status::Review, Release::Automatic),
            OutputDecision::Withheld
        );
        assert_eq!(
            automatic_decision(Status::Fail, Release::Automatic),
            OutputDecision::Blocked
        );
    }
}
