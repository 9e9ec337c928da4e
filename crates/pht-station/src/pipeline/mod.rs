//! The station pipeline, one stage a file, in the order DESIGN.md lists them:
//!
//! | stage | file | takes | gives |
//! | --- | --- | --- | --- |
//! | receive | `receive.rs` | a [`Submission`] (operator `exec`, or a checked hub work item) | `Received` |
//! | verify | `verify.rs` | `Received` | `VerifiedRun` (a `VerifiedTrain`, parameters resolved) |
//! | decide | `decide.rs` | `VerifiedRun` | `ApprovedRun`, or a run refused or awaiting approval |
//! | approve | `approve.rs` | an operator's approval of a parked run | `VerifiedRun` again, then decide |
//! | pull | `pull.rs` | `ApprovedRun` | `PulledRun` (image id = signed config digest) |
//! | run | `run.rs` | `PulledRun` | `FinishedRun` (the sandbox's outcome) |
//! | collect | `collect.rs` | `FinishedRun` | `CollectedRun`, or a run that failed |
//! | check | `check.rs` | `CollectedRun` | `CheckedRun` (report beside the run) |
//! | release | `release.rs` | `CheckedRun`, or an operator's release/block | `ReleasedRun`, or outputs withheld/blocked |
//! | seal | `seal.rs` | `ReleasedRun` | a sealed bundle in the run directory |
//! | deliver | `deliver.rs` | a sealed run | the hub's acknowledgement (outbox until then) |
//!
//! Each stage's output type has private fields and is made only by its stage, so the order is
//! checked by the compiler: nothing reaches the sandbox without an `ApprovedRun`, nothing is
//! sealed without a `ReleasedRun`. A stage that ends a run early returns [`Step::Done`] with the
//! finished record (refused, awaiting approval, failed); `Err` is only for what went wrong in
//! the station itself, and a run it interrupts is recorded as `error` first.
//!
//! Owns the order of the stages and the two ways a run ends early (refused, failed). Every
//! step is appended to the audit log by the stage that takes it.

pub mod approve;
pub mod check;
pub mod collect;
pub mod decide;
pub mod deliver;
pub mod pull;
pub mod receive;
pub mod release;
pub mod run;
pub mod seal;
pub mod verify;

use chrono::Utc;

use crate::audit::AuditEvent;
use crate::engine::Engine;
use crate::error::StationError;
use crate::station::Station;
use crate::store::{RunRecord, RunStatus};

pub use pull::PullProgress;

use crate::metrics::PipelineStep;
pub use receive::{GivenParameters, Submission};

/// What a stage hands on: the next stage's input, or a run that ended at this stage.
// Every stage's `T` holds a run record too, so the variants are about the same size in use;
// clippy sees only the generic definition.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Step<T> {
    Next(T),
    Done(RunRecord),
}

/// A refusal before policy: one line per reason, each starting with the rule it names.
pub(crate) type Refusal = Vec<String>;

/// Takes the next stage's input out of a [`Step`], or returns the run that ended.
macro_rules! next_or_return {
    ($step:expr) => {
        match $step {
            Step::Next(next) => next,
            Step::Done(finished) => return Ok(finished),
        }
    };
}

impl<E: Engine> Station<E> {
    /// Runs the whole pipeline for a train reference (which must carry a digest) on behalf of
    /// `actor`, optionally as a stop of a verified job. Returns the run record: refused,
    /// awaiting approval, succeeded or failed. `Err` only when the station itself could not
    /// proceed.
    pub async fn submit(&self, submission: Submission) -> Result<RunRecord, StationError> {
        let (received, _hold) = self.receive(submission)?;
        let run_id = received.run_id().to_string();
        let carried = async {
            let verified = {
                let _timer = self.time_step(PipelineStep::verify);
                next_or_return!(self.verify(received).await?)
            };
            self.decide_and_carry_out(verified).await
        };
        let outcome = carried.await;
        self.settle(&run_id, outcome)
    }

    /// The policy's decision, then everything an approved run goes through.
    pub(crate) async fn decide_and_carry_out(
        &self,
        verified: verify::VerifiedRun,
    ) -> Result<RunRecord, StationError> {
        let mut approved = next_or_return!(self.decide(verified)?);
        let record = approved.record_mut();
        record.status = RunStatus::Running;
        record.updated_at = Utc::now();
        self.store.save(record)?;
        // Room for the outputs and records is checked, and the reserve made again, before the
        // train touches the data: a run that could not be recorded must not start.
        let room =
            crate::space::check_room(&self.config.state_dir, approved.grant().output_bytes())
                .map_err(StationError::from)
                .and_then(|()| {
                    self.reserve.ensure().map_err(|source| {
                        crate::error::StateFileError {
                            action: crate::error::FileAction::Write,
                            path: self.config.state_dir.join("reserve"),
                            source,
                        }
                        .into()
                    })
                });
        if let Err(error) = room {
            return self.fail(approved.into_record(), error);
        }
        let pulled = {
            let _timer = self.time_step(PipelineStep::pull);
            self.pull(approved).await?
        };
        let finished = {
            let _timer = self.time_step(PipelineStep::run);
            self.run(pulled).await?
        };
        let collected = {
            let _timer = self.time_step(PipelineStep::collect);
            next_or_return!(self.collect(finished)?)
        };
        let checked = {
            let _timer = self.time_step(PipelineStep::check);
            self.check(collected)?
        };
        self.release_checked(checked)
    }
}

impl<E> Station<E> {
    /// Counts a run that ended, in the metrics when kept.
    pub(crate) fn count_run_end(&self, outcome: &'static str) {
        if let Some(metrics) = &self.metrics {
            metrics.run_ended(outcome);
        }
    }

    /// Ends a run as refused, with the reasons, and audits the refusal.
    pub(crate) fn refuse(
        &self,
        mut record: RunRecord,
        reasons: Refusal,
    ) -> Result<RunRecord, StationError> {
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

    /// Ends a run as `error` because the station could not carry it out, audits it, and
    /// returns the error. On a full disk the reserve is given back first, so the failure is
    /// still recorded; a run is never left `running` by an error.
    pub(crate) fn fail<T>(
        &self,
        mut record: RunRecord,
        error: StationError,
    ) -> Result<T, StationError> {
        record.status = RunStatus::Error;
        record.reasons = vec![error.to_string()];
        record.updated_at = Utc::now();
        if let Err(first) = self.record_failure(&record, error.is_disk_full()) {
            if !self.reserve.release() {
                return Err(first);
            }
            tracing::warn!(run_id = %record.run_id, "the state directory is full: used the reserve to record the failure; free space there");
            self.record_failure(&record, true)?;
        }
        Err(error)
    }

    fn record_failure(&self, record: &RunRecord, disk_full: bool) -> Result<(), StationError> {
        self.store.save(record)?;
        let mut event = AuditEvent::new(&self.station_actor(), "error").run(&record.run_id);
        event.reasons = record.reasons.clone();
        if disk_full {
            event.details.insert("disk_full".into(), true.into());
        }
        self.audit.append(event)?;
        Ok(())
    }

    /// Makes sure a run that ended in an error is recorded as one: a stage that failed the run
    /// did so already; an error a stage passed on with `?` (an audit entry or a record that
    /// could not be written, outputs that could not be kept or sealed) is recorded here.
    pub(crate) fn settle(
        &self,
        run_id: &str,
        outcome: Result<RunRecord, StationError>,
    ) -> Result<RunRecord, StationError> {
        let error = match outcome {
            Ok(record) => {
                if record.status.is_final() {
                    self.count_run_end(record.status.as_str());
                }
                return Ok(record);
            }
            Err(error) => error,
        };
        self.count_run_end(RunStatus::Error.as_str());
        match self.store.load(run_id) {
            Ok(record)
                if record.status == RunStatus::Error && record.reasons == [error.to_string()] =>
            {
                Err(error)
            }
            Ok(record) => self.fail(record, error),
            Err(_) => Err(error),
        }
    }
}
