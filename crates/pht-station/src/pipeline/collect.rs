//! Collect: what the sandbox brought back from `/output` is kept in the run directory and the
//! run's outcome recorded.
//!
//! Owns writing the train's logs and collected regular files under `runs/<run>/`, the record of
//! every output (path, kind, size, SHA-256 — never contents), what was not collected and why,
//! and turning the container's end (exit code, memory or wall-clock kill, a full `/output`) into
//! the run's status with reasons; and, for a run that failed, deleting what it wrote unless the
//! policy keeps it (`retention.failed_outputs`). Does not judge the outputs: links, special
//! files and size were already refused by `pht-docker`'s collector, and disclosure checks are
//! `check.rs`'s.

use chrono::Utc;
use pht_checks::DatasetIndex;
use pht_docker::collect::CollectedKind;
use pht_docker::RunOutcome;
use pht_policy::Grant;

use super::decide::ApprovedRun;
use super::run::FinishedRun;
use super::Step;
use crate::audit::{AuditEvent, OutputHash};
use crate::error::{StateFileError, StationError};
use crate::station::Station;
use crate::store::{OutcomeSummary, OutputSummary, RunRecord, RunStatus};

/// A run that succeeded, its outputs kept in the run directory: ready for the checks. Only
/// [`Station::collect`] makes one.
#[derive(Debug)]
pub struct CollectedRun {
    approved: ApprovedRun,
    outcome: RunOutcome,
    indexes: Vec<DatasetIndex>,
}

impl CollectedRun {
    pub(super) fn into_parts(self) -> (ApprovedRun, RunOutcome, Vec<DatasetIndex>) {
        (self.approved, self.outcome, self.indexes)
    }
}

impl<E> Station<E> {
    /// Keeps what the run wrote and records how it ended; a run that failed ends here.
    pub(super) fn collect(
        &self,
        finished: FinishedRun,
    ) -> Result<Step<CollectedRun>, StationError> {
        let (mut approved, outcome, indexes) = finished.into_parts();
        let grant = approved.grant().clone();
        self.record_outcome(approved.record_mut(), &outcome, &grant)?;
        let record = approved.record();
        let mut finished =
            AuditEvent::new(&self.station_actor(), "run_finished").run(&record.run_id);
        finished.train_digest = Some(approved.train().digest().to_string());
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
        self.store.save(record)?;
        self.apply_received_state_retention(record)?;
        if record.status != RunStatus::Succeeded {
            self.apply_failed_output_retention(record)?;
            return Ok(Step::Done(approved.into_record()));
        }
        Ok(Step::Next(CollectedRun {
            approved,
            outcome,
            indexes,
        }))
    }

    /// The state the previous stop handed over holds what came from other stations' data: once
    /// the run has ended it is deleted from the run directory, unless the policy keeps it
    /// (`retention.received_state: keep`). Either way the audit log says which.
    fn apply_received_state_retention(&self, record: &RunRecord) -> Result<(), StationError> {
        let state_dir = self
            .store
            .run_dir(&record.run_id)
            .join("input")
            .join("state");
        if record.received_state.is_none() || !state_dir.exists() {
            return Ok(());
        }
        let kept = self.policy.received_state() == pht_policy::Keep::Keep;
        if !kept {
            std::fs::remove_dir_all(&state_dir).map_err(StateFileError::write(&state_dir))?;
        }
        let event = if kept {
            "received_state_kept"
        } else {
            "received_state_deleted"
        };
        self.audit.append(
            AuditEvent::new(&self.station_actor(), event)
                .run(&record.run_id)
                .detail(
                    "rule",
                    if kept {
                        "retention.received_state: keep"
                    } else {
                        "retention.received_state: delete"
                    },
                ),
        )?;
        Ok(())
    }

    /// What a failed run wrote is never checked or released; unless the policy keeps it
    /// (`retention.failed_outputs: keep`), it is deleted once its hashes are recorded.
    fn apply_failed_output_retention(&self, record: &RunRecord) -> Result<(), StationError> {
        if self.policy.failed_outputs() == pht_policy::Keep::Keep {
            return Ok(());
        }
        let outputs_dir = self.store.run_dir(&record.run_id).join("outputs");
        if !outputs_dir.exists() {
            return Ok(());
        }
        std::fs::remove_dir_all(&outputs_dir).map_err(StateFileError::write(&outputs_dir))?;
        let files = record.outputs.iter().filter(|o| o.kind == "file");
        let n_bytes: u64 = files.clone().map(|o| o.size).sum();
        let deleted = AuditEvent::new(&self.station_actor(), "outputs_deleted")
            .run(&record.run_id)
            .detail("files", files.count())
            .detail("bytes", n_bytes)
            .detail("rule", "retention.failed_outputs: delete");
        self.audit.append(deleted)?;
        Ok(())
    }

    /// Fills the record from the outcome and keeps logs and collected files in the run directory.
    fn record_outcome(
        &self,
        record: &mut RunRecord,
        outcome: &RunOutcome,
        grant: &Grant,
    ) -> Result<(), StationError> {
        let run_dir = self.store.run_dir(&record.run_id);
        let logs_path = run_dir.join("logs.txt");
        std::fs::write(&logs_path, &outcome.logs).map_err(StateFileError::write(&logs_path))?;
        let outputs_dir = run_dir.join("outputs");
        for file in &outcome.outputs.files {
            let kind = match &file.kind {
                CollectedKind::Regular { bytes } => {
                    // The collector only yields relative paths without `..`; joining is safe.
                    let path = outputs_dir.join(&file.path);
                    if let Some(parent) = path.parent() {
                        std::fs::create_dir_all(parent)
                            .map_err(StateFileError::create_directory(parent))?;
                    }
                    std::fs::write(&path, bytes).map_err(StateFileError::write(&path))?;
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
        record.reasons = outcome_reasons(
            outcome,
            &Granted {
                memory_bytes: grant.memory_bytes(),
                wall_clock: grant.wall_clock(),
                output_bytes: grant.output_bytes(),
            },
        );
        let succeeded = outcome.exit_code == Some(0) && !outcome.oom_killed && !outcome.timed_out;
        record.status = if succeeded {
            RunStatus::Succeeded
        } else {
            RunStatus::Failed
        };
        record.updated_at = Utc::now();
        Ok(())
    }
}

/// Why a run ended the way it did, one line per cause, each naming the limit or exit.
/// The limits a run's end is judged against.
struct Granted {
    memory_bytes: u64,
    wall_clock: std::time::Duration,
    output_bytes: u64,
}

fn outcome_reasons(outcome: &RunOutcome, grant: &Granted) -> Vec<String> {
    let mut reasons = Vec::new();
    if outcome.oom_killed {
        reasons.push(format!(
            "resources.memory: killed at the memory limit of {} bytes",
            grant.memory_bytes
        ));
    }
    if outcome.timed_out {
        reasons.push(format!(
            "resources.wall_clock: killed at the wall-clock limit of {}s",
            grant.wall_clock.as_secs_f64()
        ));
    }
    if outcome.output_file_limit_reached {
        reasons.push(
            "resources.output_files: /output held more files and directories than this station collects (the policy's outputs.checks.max_files sets how many); outputs may be cut".to_string(),
        );
    } else if outcome.output_limit_reached {
        reasons.push(format!(
            "resources.output_size: /output reached its limit of {} bytes; outputs may be cut",
            grant.output_bytes
        ));
    }
    match outcome.exit_code {
        Some(0) => {}
        Some(code) if !outcome.oom_killed && !outcome.timed_out => {
            reasons.push(format!("train.exit: the train exited with code {code}"))
        }
        Some(_) => {}
        None => {
            reasons.push("train.exit: no exit code (the container did not finish normally)".into())
        }
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(output_limit_reached: bool, output_file_limit_reached: bool) -> RunOutcome {
        RunOutcome {
            exit_code: Some(0),
            oom_killed: false,
            timed_out: false,
            duration: std::time::Duration::from_secs(1),
            logs: Vec::new(),
            logs_truncated: false,
            outputs: Default::default(),
            output_limit_reached,
            output_file_limit_reached,
        }
    }

    #[test]
    fn hitting_the_file_count_cap_is_not_reported_as_the_byte_size_limit() {
        let granted = Granted {
            memory_bytes: 1 << 28,
            wall_clock: std::time::Duration::from_secs(60),
            output_bytes: 1 << 20,
        };
        let files = outcome_reasons(&outcome(true, true), &granted);
        assert_eq!(files.len(), 1, "{files:?}");
        assert!(files[0].starts_with("resources.output_files:"), "{files:?}");
        let bytes = outcome_reasons(&outcome(true, false), &granted);
        assert!(
            bytes[0]
                .starts_with("resources.output_size: /output reached its limit of 1048576 bytes"),
            "{bytes:?}"
        );
    }
}
