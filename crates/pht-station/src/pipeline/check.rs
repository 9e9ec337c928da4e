//! Check: every collected output is checked for disclosure risk before anything may leave —
//! what goes to the researcher, and the state handed to the next stop of a sequential route,
//! which leaves this hospital for another organisation's station — and the reports are kept
//! beside the run.
//!
//! Owns building the inputs of `pht-checks` from what this station knows (the outputs the
//! train declared, the collected entries, the dataset row indexes taken before the run, which
//! include the state this stop received), writing `report.json` and `state-report.json`, the
//! state size cap (`outputs.max_state_size`), and auditing hashes and verdicts. State gets the
//! structure, identifier and leakage rules, not the small-cell rules: it goes to a station, not
//! to a researcher. Does not apply any rule itself (that is `pht-checks`'s) and does not decide
//! what happens to the outputs (`release.rs`).

use pht_checks::{
    AggregateDeclaration, AggregateFunction, CheckConfig, CheckReport, CountTable, DatasetIndex,
    DatasetTable, DeclaredOutput, ModelDeclaration, OutputEntry, OutputKind,
};
use pht_core::manifest::{
    AggregateFunction as ManifestFunction, OutputKind as ManifestKind, TrainManifest,
};
use pht_docker::collect::CollectedKind;
use pht_docker::CollectedOutputs;
use pht_policy::Remedy;
use sha2::Digest as _;

use super::collect::CollectedRun;
use crate::audit::AuditEvent;
use crate::error::{StateFileError, StationError};
use crate::station::Station;
use crate::store::RunRecord;

/// The name of the state check report in a run directory.
pub const STATE_REPORT_FILE: &str = "state-report.json";

/// What the checks said about the state a run would hand to the next stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateVerdict {
    pub status: pht_checks::Status,
    /// Why the state may not leave, one line each (the report has the details).
    pub reasons: Vec<String>,
}

/// A run whose outputs were checked: the verdicts, with the reports in the run directory. Only
/// [`Station::check`] makes one.
#[derive(Debug)]
pub struct CheckedRun {
    record: RunRecord,
    status: pht_checks::Status,
    state: Option<StateVerdict>,
}

impl CheckedRun {
    pub(super) fn into_parts(self) -> (RunRecord, pht_checks::Status, Option<StateVerdict>) {
        (self.record, self.status, self.state)
    }
}

impl<E> Station<E> {
    /// Checks the outputs of a collected run, and its state, and keeps the reports beside it.
    pub(super) fn check(&self, collected: CollectedRun) -> Result<CheckedRun, StationError> {
        let (approved, outcome, indexes) = collected.into_parts();
        let manifest = approved.train().manifest().clone();
        let mut record = approved.into_record();
        let state = state_paths(&manifest);
        record.state_paths = state.clone();
        let mut entries = check_entries(&outcome.outputs, &state);
        let tables = aggregated_datasets(&self.config, &manifest, &record);
        let declared = declared_outputs(&manifest);
        let checks = self.policy.outputs().checks();
        let mut report = run_checks(&entries, &declared, &indexes, &tables, checks);
        if self.policy.outputs().remedy() == Remedy::SuppressAndRound {
            let remedied = self.remedy(&mut record, &mut entries, &report)?;
            if !remedied.is_empty() {
                report = run_checks(&entries, &declared, &indexes, &tables, checks);
                for (path, result) in remedied {
                    report.add_rule_result(&path, result);
                }
            }
        }
        self.check_differencing(&record, &entries, &mut report)?;
        if let Some(metrics) = &self.metrics {
            metrics.checked(&report);
        }
        let report_json = self.write_report(&record, "report.json", &report)?;
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

        let state_verdict = self.check_state(&mut record, &outcome.outputs, &state, &indexes)?;
        Ok(CheckedRun {
            record,
            status,
            state: state_verdict,
        })
    }

    /// The state files a run wrote, checked as outputs that leave for the next station.
    fn check_state(
        &self,
        record: &mut RunRecord,
        collected: &CollectedOutputs,
        state: &[String],
        indexes: &[DatasetIndex],
    ) -> Result<Option<StateVerdict>, StationError> {
        let entries = state_entries(collected, state);
        if entries.is_empty() {
            return Ok(None);
        }
        let report = run_checks(
            &entries,
            &state_declarations(&entries),
            indexes,
            &[],
            &state_config(self.policy.outputs().checks()),
        );
        let report_json = self.write_report(record, STATE_REPORT_FILE, &report)?;
        let mut verdict = StateVerdict {
            status: report.status(),
            reasons: Vec::new(),
        };
        if verdict.status == pht_checks::Status::Fail {
            verdict.reasons.push(format!(
                "state.checks: the state for the next stop failed its checks ({}: {})",
                STATE_REPORT_FILE,
                report.render_text().lines().next().unwrap_or_default()
            ));
        }
        let n_state_bytes: u64 = entries
            .iter()
            .map(|entry| match &entry.content {
                pht_checks::EntryContent::Regular(bytes) => bytes.len() as u64,
                _ => 0,
            })
            .sum();
        let max_state_bytes = self.policy.outputs().max_state_bytes();
        if n_state_bytes > max_state_bytes {
            verdict.status = pht_checks::Status::Fail;
            verdict.reasons.push(format!(
                "state.size: the state for the next stop is {n_state_bytes} bytes, more than the policy's outputs.max_state_size of {max_state_bytes}"
            ));
        }
        record.state_checks = Some(verdict.status.to_string());
        let mut checked =
            AuditEvent::new(&self.station_actor(), "state_checked").run(&record.run_id);
        checked.train_digest = Some(record.train.digest.clone());
        checked.decision = Some(verdict.status.to_string());
        checked.reasons = verdict.reasons.clone();
        checked.details.insert(
            "report_sha256".into(),
            hex::encode(sha2::Sha256::digest(&report_json)).into(),
        );
        checked
            .details
            .insert("state_bytes".into(), n_state_bytes.into());
        self.audit.append(checked)?;
        Ok(Some(verdict))
    }

    /// `outputs.remedy: suppress-and-round`: every count table that failed only on small
    /// cells is replaced, in `entries`, by its transformed copy, kept under the run's
    /// `remedied/` (the original stays under `outputs/` and never leaves) and named in the
    /// record. Returns each remedied path with the rule result listing its changes.
    fn remedy(
        &self,
        record: &mut RunRecord,
        entries: &mut [OutputEntry],
        report: &CheckReport,
    ) -> Result<Vec<(String, pht_checks::RuleResult)>, StationError> {
        let checks = self.policy.outputs().checks();
        let mut remedied = Vec::new();
        for entry in entries.iter_mut() {
            let pht_checks::EntryContent::Regular(bytes) = &entry.content else {
                continue;
            };
            let Some(output) = report.output(&entry.path) else {
                continue;
            };
            let fails_only_on_small_cells = output.status == pht_checks::Status::Fail
                && output
                    .checks
                    .iter()
                    .filter(|check| check.status == pht_checks::Status::Fail)
                    .all(|check| check.rule == pht_checks::Rule::Threshold);
            if !fails_only_on_small_cells
                || !matches!(output.properties.format.as_str(), "csv" | "tsv")
            {
                continue;
            }
            let fields: Vec<u64> = output
                .properties
                .count_columns
                .iter()
                .map(|column| column.field)
                .collect();
            let Some(transformed) = pht_checks::suppress_and_round(
                &entry.path,
                bytes,
                &fields,
                &checks.rounding,
                checks.max_reported_positions,
            ) else {
                continue;
            };
            let path = self
                .store
                .run_dir(&record.run_id)
                .join(REMEDIED_DIR)
                .join(&entry.path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(StateFileError::write(parent))?;
            }
            pht_fs::write_atomic(&path, &transformed.bytes)
                .map_err(StateFileError::write(&path))?;
            record.remedied.retain(|earlier| earlier.path != entry.path);
            record.remedied.push(crate::store::RemediedOutput {
                path: entry.path.clone(),
                description: format!(
                    "suppress-and-round: counts at or below {} suppressed as `<={}`, other counts \
                     rounded to the nearest multiple of {}, totals recomputed from the rounded \
                     cells ({} suppressed, {} rounded, {} totals)",
                    checks.rounding.suppress_at_or_below,
                    checks.rounding.suppress_at_or_below,
                    checks.rounding.base,
                    transformed.suppressed,
                    transformed.rounded,
                    transformed.totals
                ),
                sha256: hex::encode(sha2::Sha256::digest(&transformed.bytes)),
                size: transformed.bytes.len() as u64,
            });
            remedied.push((entry.path.clone(), transformed.result));
            entry.content = pht_checks::EntryContent::Regular(transformed.bytes);
        }
        Ok(remedied)
    }

    /// Compares every count table of this run with those released earlier over the same
    /// dataset versions (the differencing rule), adds the verdicts to the report, and keeps the
    /// tables beside the run so that releasing them enters them in the ledger.
    fn check_differencing(
        &self,
        record: &RunRecord,
        entries: &[OutputEntry],
        report: &mut CheckReport,
    ) -> Result<(), StationError> {
        let checks = self.policy.outputs().checks();
        if !checks.differencing.enabled {
            return Ok(());
        }
        let tables = count_tables(entries, report);
        let dir = crate::ledger::ledger_dir(&self.config.state_dir);
        let mut ledgers = Vec::new();
        for version in &record.datasets {
            ledgers.push(crate::ledger::load(&dir, &version.name, &version.sha256)?);
        }
        let mut tables = tables;
        tables.retain(|(path, table)| {
            if table.cells.len() <= MAX_LEDGER_CELLS {
                return true;
            }
            report.add_rule_result(
                path,
                pht_checks::rule_result_for(
                    pht_checks::Rule::Differencing,
                    pht_checks::Status::Review,
                    format!(
                        "{} cells, more than the {MAX_LEDGER_CELLS} compared with earlier releases; \
                         a reviewer judges what it reveals beside them (it is not kept in the ledger)",
                        table.cells.len()
                    ),
                ),
            );
            false
        });
        for (path, table) in &tables {
            let findings: Vec<_> = ledgers
                .iter()
                .flat_map(|ledger| ledger.compare(table, checks.min_cell_count))
                .collect();
            report.add_rule_result(
                path,
                pht_checks::differencing_result(&findings, checks.min_cell_count),
            );
        }
        let path = self.store.run_dir(&record.run_id).join(COUNT_TABLES_FILE);
        let json = serde_json::to_vec(&tables).expect("count tables always serialise");
        pht_fs::write_atomic(&path, &json).map_err(StateFileError::write(&path))?;
        Ok(())
    }

    fn write_report(
        &self,
        record: &RunRecord,
        file_name: &str,
        report: &CheckReport,
    ) -> Result<Vec<u8>, StationError> {
        let path = self.store.run_dir(&record.run_id).join(file_name);
        let json = serde_json::to_vec_pretty(report).expect("reports always serialise");
        pht_fs::write_atomic(&path, &json).map_err(StateFileError::write(&path))?;
        Ok(json)
    }
}

/// Count tables with more cells than this are not compared with the ledger (every subset of
/// their keys would be indexed) but go to review.
const MAX_LEDGER_CELLS: usize = 20_000;

/// Where a run's remedied copies live, beside `outputs/`.
pub const REMEDIED_DIR: &str = "remedied";

/// The count tables of a run (path → cells), kept in its directory until they are released.
pub const COUNT_TABLES_FILE: &str = "count-tables.json";

/// The count tables among the entries: CSV and TSV outputs in which the checks found count
/// columns, read by their first count column (further count columns are not keys).
fn count_tables(entries: &[OutputEntry], report: &CheckReport) -> Vec<(String, CountTable)> {
    entries
        .iter()
        .filter_map(|entry| {
            let pht_checks::EntryContent::Regular(bytes) = &entry.content else {
                return None;
            };
            let output = report.output(&entry.path)?;
            if !matches!(output.properties.format.as_str(), "csv" | "tsv") {
                return None;
            }
            let (first, others) = output.properties.count_columns.split_first()?;
            let others: Vec<u64> = others.iter().map(|column| column.field).collect();
            let table = pht_checks::count_table(bytes, first.field, &others)?;
            Some((entry.path.clone(), table))
        })
        .collect()
}

/// The checks for state: the policy's, without the small-cell rules (state goes to a station,
/// not to a researcher) and without flagging undeclared files (every state file is declared).
fn state_config(checks: &CheckConfig) -> CheckConfig {
    CheckConfig {
        min_cell_count: 0,
        flag_zero_cells: false,
        review_undeclared_outputs: false,
        ..checks.clone()
    }
}

/// State files as the checks read them: tables where their format is one, text otherwise.
fn state_declarations(entries: &[OutputEntry]) -> Vec<DeclaredOutput> {
    entries
        .iter()
        .map(|entry| {
            let is_table = [".csv", ".tsv", ".json", ".parquet"]
                .iter()
                .any(|extension| entry.path.ends_with(extension));
            let kind = if is_table {
                OutputKind::Table
            } else {
                OutputKind::Text
            };
            DeclaredOutput::new(entry.path.clone(), kind)
        })
        .collect()
}

/// The collected entries that are declared state.
fn state_entries(collected: &CollectedOutputs, state: &[String]) -> Vec<OutputEntry> {
    collected
        .files
        .iter()
        .filter(|file| state.contains(&file.path))
        .map(entry_of)
        .collect()
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
            aggregates: output
                .aggregates
                .as_ref()
                .map(|aggregates| AggregateDeclaration {
                    dataset: aggregates.dataset.to_string(),
                    column: aggregates.column.clone(),
                    function: match aggregates.function {
                        ManifestFunction::Sum => AggregateFunction::Sum,
                        ManifestFunction::Mean => AggregateFunction::Mean,
                        ManifestFunction::Median => AggregateFunction::Median,
                        ManifestFunction::Min => AggregateFunction::Min,
                        ManifestFunction::Max => AggregateFunction::Max,
                    },
                    group_by: aggregates.group_by.clone(),
                    value_column: aggregates.value_column.clone(),
                }),
            model: output.model.as_ref().map(|model| ModelDeclaration {
                n_obs: model.n_obs,
                n_params: model.n_params,
                dataset: model.dataset.as_ref().map(ToString::to_string),
            }),
        })
        .collect()
}

/// The contents of the granted datasets that magnitude tables declare they aggregate, for
/// recomputing their cells. A dataset that cannot be read is left out, so those tables fail
/// their `aggregate` check rather than pass unchecked.
fn aggregated_datasets(
    config: &crate::config::StationConfig,
    manifest: &TrainManifest,
    record: &RunRecord,
) -> Vec<DatasetTable> {
    let mut names: Vec<&str> = manifest
        .outputs
        .iter()
        .filter_map(|output| output.aggregates.as_ref())
        .map(|aggregates| aggregates.dataset.as_str())
        .filter(|name| {
            record
                .datasets
                .iter()
                .any(|granted| granted.name.as_str() == *name)
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .filter_map(|name| {
            let dataset = config.datasets.get(name)?;
            match crate::datasets::dataset_table(dataset) {
                Ok(table) => Some(table),
                Err(error) => {
                    tracing::warn!(dataset = name, %error, "cannot read the dataset to recompute magnitude tables; they fail their check");
                    None
                }
            }
        })
        .collect()
}

/// The collected entries the checks look at for release: everything but declared state.
pub(crate) fn check_entries(collected: &CollectedOutputs, state: &[String]) -> Vec<OutputEntry> {
    collected
        .files
        .iter()
        .filter(|file| !state.contains(&file.path))
        .map(entry_of)
        .chain(collected.refused.iter().map(|refused| {
            OutputEntry::not_collected(refused.path.clone(), refused.reason.to_string())
        }))
        .collect()
}

/// One collected file as the checks read it.
fn entry_of(file: &pht_docker::CollectedFile) -> OutputEntry {
    match &file.kind {
        CollectedKind::Regular { bytes } => OutputEntry::regular(file.path.clone(), bytes.clone()),
        CollectedKind::Symlink { target } => {
            OutputEntry::symlink(file.path.clone(), target.clone())
        }
        CollectedKind::Special { description } => {
            OutputEntry::special(file.path.clone(), description.clone())
        }
    }
}

/// Runs the checks.
fn run_checks(
    entries: &[OutputEntry],
    declared: &[DeclaredOutput],
    datasets: &[DatasetIndex],
    tables: &[DatasetTable],
    config: &CheckConfig,
) -> CheckReport {
    pht_checks::check_outputs_with_data(entries, declared, datasets, tables, config)
}
