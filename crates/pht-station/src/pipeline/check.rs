//! Check: every collected output is checked for disclosure risk before anything may leave, and
//! the report is kept beside the run.
//!
//! Owns building the inputs of `pht-checks` from what this station knows (the outputs the
//! train declared, the collected entries — everything but declared state — and the dataset row
//! indexes taken before the run), writing `report.json`, and auditing its hash and verdict.
//! Does not apply any rule itself (that is `pht-checks`'s) and does not decide what happens to
//! the outputs (`release.rs`).

use pht_checks::{CheckReport, DatasetIndex, DeclaredOutput, OutputEntry, OutputKind};
use pht_core::manifest::{OutputKind as ManifestKind, TrainManifest};
use pht_docker::collect::CollectedKind;
use pht_docker::CollectedOutputs;
use sha2::Digest as _;

use super::collect::CollectedRun;
use crate::audit::AuditEvent;
use crate::error::{StateFileError, StationError};
use crate::station::Station;
use crate::store::RunRecord;

/// A run whose outputs were checked: the verdict, with the report in the run directory. Only
/// [`Station::check`] makes one.
#[derive(Debug)]
pub struct CheckedRun {
    record: RunRecord,
    status: pht_checks::Status,
}

impl CheckedRun {
    pub(super) fn into_parts(self) -> (RunRecord, pht_checks::Status) {
        (self.record, self.status)
    }
}

impl<E> Station<E> {
    /// Checks the outputs of a collected run and keeps the report beside it.
    pub(super) fn check(&self, collected: CollectedRun) -> Result<CheckedRun, StationError> {
        let (approved, outcome, indexes) = collected.into_parts();
        let manifest = approved.train().manifest().clone();
        let mut record = approved.into_record();
        let state = state_paths(&manifest);
        record.state_paths = state.clone();
        let entries = check_entries(&outcome.outputs, &state);
        let report = run_checks(
            &entries,
            &manifest,
            &indexes,
            self.policy.outputs().checks(),
        );
        let report_path = self.store.run_dir(&record.run_id).join("report.json");
        let report_json = serde_json::to_vec_pretty(&report).expect("reports always serialise");
        pht_fs::write_atomic(&report_path, &report_json)
            .map_err(StateFileError::write(&report_path))?;
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
        Ok(CheckedRun { record, status })
    }
}

/// Paths the train declared as `state`: handed to the next stop, never released or checked as
/// results.
pub(crate) fn state_paths(manifest: &TrainManifest) -> Vec<String> {
    manifest
        .outputs
        .iter()
        .filter(|o| o.kind == ManifestKind::State)
        .map(|o| o.path.to_string())
        .collect()
}

/// The train's declared outputs, as the checks read them.
pub(crate) fn declared_outputs(manifest: &TrainManifest) -> Vec<DeclaredOutput> {
    manifest
        .outputs
        .iter()
        .map(|output| DeclaredOutput {
            path: output.path.to_string(),
            kind: match output.kind {
                ManifestKind::Table => OutputKind::Table,
                ManifestKind::Figure => OutputKind::Figure,
                ManifestKind::Text => OutputKind::Text,
                ManifestKind::Model => OutputKind::Model,
                ManifestKind::State => OutputKind::State,
            },
            count_columns: output.count_columns.clone(),
        })
        .collect()
}

/// The collected entries the checks look at: everything but declared state.
pub(crate) fn check_entries(collected: &CollectedOutputs, state: &[String]) -> Vec<OutputEntry> {
    collected
        .files
        .iter()
        .filter(|file| !state.contains(&file.path))
        .map(|file| match &file.kind {
            CollectedKind::Regular { bytes } => {
                OutputEntry::regular(file.path.clone(), bytes.clone())
            }
            CollectedKind::Symlink { target } => {
                OutputEntry::symlink(file.path.clone(), target.clone())
            }
            CollectedKind::Special { description } => {
                OutputEntry::special(file.path.clone(), description.clone())
            }
        })
        .chain(collected.refused.iter().map(|refused| {
            OutputEntry::not_collected(refused.path.clone(), refused.reason.to_string())
        }))
        .collect()
}

/// Runs the checks.
fn run_checks(
    entries: &[OutputEntry],
    manifest: &TrainManifest,
    datasets: &[DatasetIndex],
    config: &pht_checks::CheckConfig,
) -> CheckReport {
    pht_checks::check_outputs(entries, &declared_outputs(manifest), datasets, config)
}
