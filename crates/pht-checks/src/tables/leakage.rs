//! The leakage rule over one table: rows identical to a dataset row (hashed as they are read)
//! and rows singling people out by a combination of values (`quasi_identifiers`, compared once
//! the table has been read, when the count columns are known and excluded).
//!
//! Owns the rule's findings and summary. Never names a value: rows are located by their first
//! cell.

use std::collections::BTreeSet;

use super::{cell_position, TableChecker};
use crate::delimited::Cell;
use crate::quasi_identifiers::{compare_with_dataset, QuasiIdentifierSettings};
use crate::report::{plural, Position, RuleAccumulator, RuleResult, Status};

impl TableChecker<'_> {
    /// Flags the row if it, or the row without its first cell (an index column pandas writes by
    /// default), equals a row of a mounted dataset. Rows are hashed only when some dataset has
    /// rows with that many cells, so a narrow counts table never pays for hashing.
    pub(super) fn check_row_leakage<'t>(
        &mut self,
        cell_texts: impl ExactSizeIterator<Item = &'t [u8]> + Clone,
        first_cell: &Cell<'_>,
        first_column_index: usize,
    ) -> bool {
        let datasets = self.context.datasets;
        let n_cells = cell_texts.len() as u64;
        let check_whole_row = datasets
            .iter()
            .any(|dataset_index| dataset_index.has_rows_with_cell_count(n_cells));
        let check_without_first_cell = n_cells >= 2
            && datasets
                .iter()
                .any(|dataset_index| dataset_index.has_rows_with_cell_count(n_cells - 1));
        let mut leaked_from = None;
        if check_whole_row {
            let row_hash = self
                .row_hasher
                .hash_row(cell_texts.clone(), self.comma_is_decimal);
            leaked_from = datasets
                .iter()
                .find(|dataset_index| dataset_index.contains_hash(&row_hash));
        }
        if leaked_from.is_none() && check_without_first_cell {
            let row_hash = self
                .row_hasher
                .hash_row(cell_texts.skip(1), self.comma_is_decimal);
            leaked_from = datasets
                .iter()
                .find(|dataset_index| dataset_index.contains_hash(&row_hash));
        }
        if let Some(dataset_index) = leaked_from {
            let (file, bytes) = (self.context.file, self.bytes);
            let column_counter = &mut self.column_counter;
            self.leakage.flag(|| {
                cell_position(file, bytes, column_counter, first_cell, first_column_index)
            });
            self.leaked_dataset_names
                .insert(dataset_index.name().to_string());
            return true;
        }
        false
    }

    /// Compares the kept rows with every mounted dataset's columns and flags the rows that
    /// single people out (rows already found identical are not counted twice).
    pub(super) fn compare_quasi_identifiers(
        &mut self,
        is_count_column: &[bool],
    ) -> QuasiIdentifierOutcome {
        let config = self.context.config;
        let settings = QuasiIdentifierSettings {
            k: config.leakage.k.unwrap_or(config.min_cell_count),
            min_shared_values: config.leakage.min_shared_values,
        };
        let mut outcome = QuasiIdentifierOutcome::default();
        let mut leaking_rows = BTreeSet::new();
        for dataset_index in self.context.datasets {
            let findings = compare_with_dataset(
                &self.output_rows,
                &self.column_names,
                is_count_column,
                dataset_index.columns(),
                settings,
            );
            outcome.n_uncompared_rows += findings.n_uncompared_rows;
            let mut found_here = false;
            for row_index in findings.leaking_rows {
                if self.identical_rows.binary_search(&row_index).is_err() {
                    found_here |= leaking_rows.insert(row_index);
                }
            }
            if found_here {
                outcome
                    .dataset_names
                    .insert(dataset_index.name().to_string());
            }
        }
        outcome.n_rows = leaking_rows.len() as u64;
        let (file, bytes) = (self.context.file, self.bytes);
        for row_index in leaking_rows {
            let row_place = self.row_places[row_index];
            let column_counter = &mut self.column_counter;
            self.leakage.flag(|| Position {
                file: file.to_string(),
                line: row_place.line as u64,
                column: column_counter.column_at(bytes, row_place.line_start, row_place.offset),
                field: Some(row_place.column_index as u64 + 1),
            });
        }
        self.leakage
            .positions
            .sort_by_key(|position| (position.line, position.column));
        outcome.settings = Some(settings);
        outcome
    }
}

/// What the quasi-identifier comparison found over all mounted datasets.
#[derive(Debug, Default)]
pub(super) struct QuasiIdentifierOutcome {
    /// Rows singling people out (not counting rows identical to a dataset row).
    n_rows: u64,
    n_uncompared_rows: u64,
    dataset_names: BTreeSet<String>,
    settings: Option<QuasiIdentifierSettings>,
}

fn backticked(names: &BTreeSet<String>) -> String {
    let names: Vec<String> = names.iter().map(|name| format!("`{name}`")).collect();
    names.join(", ")
}

/// The leakage rule: rows identical to dataset rows and rows singling people out fail; rows
/// that could not be compared on every combination ask for review.
pub(super) fn leakage_result(
    leakage: RuleAccumulator,
    identical_dataset_names: &BTreeSet<String>,
    no_dataset: bool,
    quasi: QuasiIdentifierOutcome,
) -> RuleResult {
    if no_dataset {
        return leakage.finish(
            Status::Fail,
            "no dataset mounted, nothing to compare with".to_string(),
        );
    }
    let n_identical = leakage.count - quasi.n_rows;
    let mut notes = Vec::new();
    if n_identical > 0 {
        notes.push(format!(
            "{} identical to rows of dataset {}",
            plural(n_identical, "row", "rows"),
            backticked(identical_dataset_names)
        ));
    }
    if let (true, Some(settings)) = (quasi.n_rows > 0, quasi.settings) {
        notes.push(format!(
            "{} {} a combination of at least {} values with fewer than {} rows of dataset {} \
             (compared whatever the column order, names or subset)",
            plural(quasi.n_rows, "row", "rows"),
            if quasi.n_rows == 1 { "shares" } else { "share" },
            settings.min_shared_values,
            settings.k,
            backticked(&quasi.dataset_names)
        ));
    }
    let mut status = if leakage.count > 0 {
        Status::Fail
    } else {
        Status::Pass
    };
    if quasi.n_uncompared_rows > 0 {
        status = status.max(Status::Review);
        notes.push(format!(
            "{} could not be compared on every combination of values (too many column sets)",
            plural(quasi.n_uncompared_rows, "row", "rows")
        ));
    }
    if notes.is_empty() {
        notes.push(
            "no row identical to a row of a mounted dataset or singling out fewer rows than \
             the threshold"
                .to_string(),
        );
    }
    leakage.finish_with_status(status, notes.join("; "))
}
