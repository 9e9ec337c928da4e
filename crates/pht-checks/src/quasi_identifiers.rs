//! Leakage by quasi-identifiers: output rows that share a combination of values with fewer than
//! `k` rows of a dataset, whatever the column order, the header names or the subset of columns
//! the train wrote. A row with birth year, sex, diagnosis and BMI of one patient singles that
//! patient out even when no output row equals a dataset row.
//!
//! Owns the per-column value index of a dataset (distinct value hashes and each row's code), the
//! buffer of an output table's value hashes, and the comparison. It does not read tables (the
//! table rules feed it) and it reports rows, never values.
//!
//! How a table is compared with a dataset:
//! 1. Each output column (count columns excluded: they are aggregates) is matched to the dataset
//!    column holding most of its values (at least half of a sample of its distinct values; ties
//!    go to the column of the same name, then to the one with fewer distinct values). Names are
//!    only a tie-break, so renaming a column does not hide it.
//! 2. When at least `min_shared_values` columns match, each output row's values are looked up
//!    as a combination over the matched columns: the number of dataset rows with the same
//!    values there is its support. Support from 1 to `k - 1` singles out fewer than `k` people:
//!    the row leaks. Support of `k` or more is safe (every part of the combination is shared by
//!    at least as many rows).
//! 3. A row whose whole combination occurs nowhere (a value added or changed to disguise it)
//!    is compared again on the columns where its values occur in the dataset at all, and then on
//!    every such set less one column, while at least `min_shared_values` remain. The number of
//!    column sets tried per table is bounded; rows left uncompared are counted, and the rule
//!    then asks for review.
//!
//! Values are the normalised cells of `row_hash` hashed with XXH3 (a stable, specified 64-bit
//! hash, so a cached index stays valid across releases); empty cells and missing markers are no
//! value and never shared.

use std::collections::{HashMap, HashSet};

use rustc_hash::FxHashMap;

/// No value in a row: empty, missing, or a value the dataset column does not hold.
pub(crate) const NO_CODE: u32 = u32::MAX;
/// No value in an output cell.
pub(crate) const NO_VALUE: u64 = 0;

/// Output rows sampled per column to match it to a dataset column.
const SAMPLED_ROWS: usize = 4096;
/// At least this share of an output column's sampled distinct values must occur in a dataset
/// column for the two to match.
const MIN_MATCHED_SHARE: f64 = 0.5;
/// Column sets compared per table and dataset beyond the first.
const MAX_COLUMN_SETS: usize = 48;

/// The hash of a normalised cell, `NO_VALUE` for an empty one.
pub(crate) fn value_hash(normalised: &[u8]) -> u64 {
    if normalised.is_empty() {
        return NO_VALUE;
    }
    match xxhash_rust::xxh3::xxh3_64(normalised) {
        NO_VALUE => 1,
        hash => hash,
    }
}

/// One column of a dataset: its normalised header, its distinct value hashes (sorted) and each
/// row's code, an index into them (`NO_CODE` for no value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DatasetColumn {
    pub(crate) name: String,
    pub(crate) distinct_values: Vec<u64>,
    pub(crate) codes: Vec<u32>,
}

impl DatasetColumn {
    /// Builds a column from each row's value hash.
    pub(crate) fn from_values(name: String, values: &[u64]) -> DatasetColumn {
        let mut distinct_values: Vec<u64> = values
            .iter()
            .copied()
            .filter(|&value| value != NO_VALUE)
            .collect();
        distinct_values.sort_unstable();
        distinct_values.dedup();
        let codes = values
            .iter()
            .map(|&value| code_in(&distinct_values, value))
            .collect();
        DatasetColumn {
            name,
            distinct_values,
            codes,
        }
    }

    fn code_of(&self, value: u64) -> u32 {
        code_in(&self.distinct_values, value)
    }

    /// Bytes held in memory.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.name.len() + self.distinct_values.len() * 8 + self.codes.len() * 4
    }
}

fn code_in(distinct_values: &[u64], value: u64) -> u32 {
    if value == NO_VALUE {
        return NO_CODE;
    }
    match distinct_values.binary_search(&value) {
        Ok(index) => index as u32,
        Err(_) => NO_CODE,
    }
}

/// The value hashes of an output table's data rows, in column order per row (a row may be
/// shorter than another: JSON records gain keys as they go).
#[derive(Debug, Default)]
pub(crate) struct OutputRows {
    values: Vec<u64>,
    row_ends: Vec<usize>,
}

impl OutputRows {
    pub(crate) fn push_row(&mut self, values: impl Iterator<Item = u64>) {
        self.values.extend(values);
        self.row_ends.push(self.values.len());
    }

    /// Data rows held.
    pub(crate) fn len(&self) -> usize {
        self.row_ends.len()
    }

    fn row(&self, row_index: usize) -> &[u64] {
        let start = match row_index {
            0 => 0,
            _ => self.row_ends[row_index - 1],
        };
        &self.values[start..self.row_ends[row_index]]
    }

    fn value(&self, row_index: usize, column_index: usize) -> u64 {
        self.row(row_index)
            .get(column_index)
            .copied()
            .unwrap_or(NO_VALUE)
    }
}

/// The rule's parameters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QuasiIdentifierSettings {
    /// A combination shared with fewer than this many dataset rows singles them out.
    pub(crate) k: u64,
    /// Only combinations of at least this many values count.
    pub(crate) min_shared_values: usize,
}

/// What comparing one table with one dataset found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct QuasiIdentifierFindings {
    /// Rows (0-based data row indexes, ascending) that single out fewer than `k` dataset rows.
    pub(crate) leaking_rows: Vec<usize>,
    /// Rows that could not be compared on every column set (the bound was reached).
    pub(crate) n_uncompared_rows: u64,
    /// Output columns matched to a dataset column.
    pub(crate) n_matched_columns: usize,
}

/// Compares an output table with a dataset's columns. `is_count_column[j]` excludes column `j`.
pub(crate) fn compare_with_dataset(
    rows: &OutputRows,
    output_names: &[String],
    is_count_column: &[bool],
    dataset_columns: &[DatasetColumn],
    settings: QuasiIdentifierSettings,
) -> QuasiIdentifierFindings {
    let matched = match_columns(
        rows,
        output_names,
        is_count_column,
        dataset_columns,
        settings.min_shared_values,
    );
    let mut findings = QuasiIdentifierFindings {
        n_matched_columns: matched.len(),
        ..QuasiIdentifierFindings::default()
    };
    if matched.len() < settings.min_shared_values.max(1) {
        return findings;
    }
    // Each row's code in each matched dataset column.
    let width = matched.len();
    let mut row_codes = Vec::with_capacity(rows.len() * width);
    for row_index in 0..rows.len() {
        for &(output_column, dataset_column) in &matched {
            let value = rows.value(row_index, output_column);
            row_codes.push(dataset_columns[dataset_column].code_of(value));
        }
    }
    let codes_of = |row_index: usize| &row_codes[row_index * width..(row_index + 1) * width];
    let present_mask = |row_index: usize| -> u64 {
        codes_of(row_index)
            .iter()
            .enumerate()
            .filter(|(_, &code)| code != NO_CODE)
            .fold(0u64, |mask, (position, _)| mask | 1 << position)
    };
    let all_columns: u64 = if width == 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    };
    let matched_dataset_columns: Vec<&DatasetColumn> = matched
        .iter()
        .map(|&(_, dataset_column)| &dataset_columns[dataset_column])
        .collect();
    let min_values = settings.min_shared_values.max(1) as u32;
    let mut is_leaking = vec![false; rows.len()];
    // Rows whose every compared combination so far occurred nowhere, with the column sets
    // still to try.
    let mut pending: Vec<usize> = Vec::new();
    let supports = support_table(&matched_dataset_columns, all_columns, settings.k);
    for (row_index, row_is_leaking) in is_leaking.iter_mut().enumerate() {
        let mask = present_mask(row_index);
        if mask == all_columns {
            match support_of(&supports, codes_of(row_index), all_columns) {
                0 => {}
                support if support < settings.k => {
                    *row_is_leaking = true;
                    continue;
                }
                _ => continue,
            }
        }
        if mask.count_ones() >= min_values {
            pending.push(row_index);
        }
    }
    // The column sets each pending row is compared on next: first where its values occur,
    // then that set less one column.
    let mut wanted: HashMap<u64, Vec<usize>> = HashMap::new();
    for &row_index in &pending {
        let mask = present_mask(row_index);
        if mask != all_columns {
            wanted.entry(mask).or_default().push(row_index);
        }
        if mask.count_ones() > min_values {
            for position in 0..width {
                if mask & (1 << position) != 0 {
                    wanted
                        .entry(mask & !(1 << position))
                        .or_default()
                        .push(row_index);
                }
            }
        }
    }
    // Most-wanted sets first, so the bound leaves out the rarest.
    let mut column_sets: Vec<(u64, Vec<usize>)> = wanted.into_iter().collect();
    column_sets.sort_by(|(mask_a, rows_a), (mask_b, rows_b)| {
        rows_b.len().cmp(&rows_a.len()).then(mask_a.cmp(mask_b))
    });
    let mut uncompared: HashSet<usize> = HashSet::new();
    for (set_number, (mask, set_rows)) in column_sets.into_iter().enumerate() {
        if set_number >= MAX_COLUMN_SETS {
            uncompared.extend(set_rows.into_iter().filter(|&row| !is_leaking[row]));
            continue;
        }
        let set_rows: Vec<usize> = set_rows
            .into_iter()
            .filter(|&row| !is_leaking[row])
            .collect();
        if set_rows.is_empty() {
            continue;
        }
        let supports = support_table(&matched_dataset_columns, mask, settings.k);
        for row_index in set_rows {
            let support = support_of(&supports, codes_of(row_index), mask);
            if support > 0 && support < settings.k {
                is_leaking[row_index] = true;
            }
        }
    }
    findings.leaking_rows = (0..rows.len()).filter(|&row| is_leaking[row]).collect();
    findings.n_uncompared_rows = uncompared
        .into_iter()
        .filter(|&row| !is_leaking[row])
        .count() as u64;
    findings
}

/// Matches output columns to dataset columns: `(output column, dataset column)`, sorted by
/// dataset column.
fn match_columns(
    rows: &OutputRows,
    output_names: &[String],
    is_count_column: &[bool],
    dataset_columns: &[DatasetColumn],
    min_shared_values: usize,
) -> Vec<(usize, usize)> {
    let n_output_columns = (0..rows.len())
        .map(|row_index| rows.row(row_index).len())
        .max()
        .unwrap_or(0);
    let n_sampled = rows.len().min(SAMPLED_ROWS);
    let mut candidates = Vec::new();
    for output_column in 0..n_output_columns {
        if is_count_column.get(output_column).copied().unwrap_or(false) {
            continue;
        }
        let sample: HashSet<u64> = (0..n_sampled)
            .map(|row_index| rows.value(row_index, output_column))
            .filter(|&value| value != NO_VALUE)
            .collect();
        if sample.is_empty() {
            continue;
        }
        for (dataset_column_index, dataset_column) in dataset_columns.iter().enumerate() {
            let matches = sample
                .iter()
                .filter(|&&value| dataset_column.code_of(value) != NO_CODE)
                .count();
            let share = matches as f64 / sample.len() as f64;
            if share >= MIN_MATCHED_SHARE {
                let same_name = output_names
                    .get(output_column)
                    .is_some_and(|name| *name == dataset_column.name);
                candidates.push((
                    share,
                    same_name,
                    dataset_column.distinct_values.len(),
                    output_column,
                    dataset_column_index,
                ));
            }
        }
    }
    if candidates.len() < min_shared_values {
        return Vec::new();
    }
    candidates.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then(b.1.cmp(&a.1))
            .then(a.2.cmp(&b.2))
            .then(a.3.cmp(&b.3))
            .then(a.4.cmp(&b.4))
    });
    let mut output_taken = HashSet::new();
    let mut dataset_taken = HashSet::new();
    let mut matched = Vec::new();
    for (_, _, _, output_column, dataset_column) in candidates {
        if matched.len() == 64 {
            break;
        }
        if output_taken.contains(&output_column) || dataset_taken.contains(&dataset_column) {
            continue;
        }
        output_taken.insert(output_column);
        dataset_taken.insert(dataset_column);
        matched.push((output_column, dataset_column));
    }
    matched.sort_by_key(|&(_, dataset_column)| dataset_column);
    matched
}

/// The key of a combination: the codes of the columns in `mask`, hashed.
fn combination_key(codes: impl Iterator<Item = u32>) -> u64 {
    let mut bytes = [0u8; 64 * 4];
    let mut length = 0;
    for code in codes {
        bytes[length..length + 4].copy_from_slice(&code.to_le_bytes());
        length += 4;
    }
    xxhash_rust::xxh3::xxh3_64(&bytes[..length])
}

/// Support of every combination over the columns in `mask` that occurs in the dataset, capped
/// at `k` (nothing above it matters).
fn support_table(columns: &[&DatasetColumn], mask: u64, k: u64) -> FxHashMap<u64, u32> {
    let selected: Vec<&DatasetColumn> = columns
        .iter()
        .enumerate()
        .filter(|(position, _)| mask & (1 << position) != 0)
        .map(|(_, column)| *column)
        .collect();
    let n_rows = selected.first().map_or(0, |column| column.codes.len());
    let cap = k.min(u64::from(u32::MAX)) as u32;
    let mut supports = FxHashMap::default();
    for row_index in 0..n_rows {
        let codes = selected.iter().map(|column| column.codes[row_index]);
        if codes.clone().any(|code| code == NO_CODE) {
            continue;
        }
        let support = supports.entry(combination_key(codes)).or_insert(0u32);
        *support = (*support + 1).min(cap);
    }
    supports
}

fn support_of(supports: &FxHashMap<u64, u32>, codes: &[u32], mask: u64) -> u64 {
    let selected = codes
        .iter()
        .enumerate()
        .filter(|(position, _)| mask & (1 << position) != 0)
        .map(|(_, &code)| code);
    if selected.clone().any(|code| code == NO_CODE) {
        return 0;
    }
    u64::from(
        supports
            .get(&combination_key(selected))
            .copied()
            .unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::row_hash::normalise_cell;

    fn hash(text: &str) -> u64 {
        let mut normalised = Vec::new();
        normalise_cell(text.as_bytes(), false, &mut normalised);
        value_hash(&normalised)
    }

    /// A dataset of `rows` (each a row of cells) under `header`.
    fn dataset(header: &[&str], rows: &[&[&str]]) -> Vec<DatasetColumn> {
        header
            .iter()
            .enumerate()
            .map(|(column, name)| {
                let values: Vec<u64> = rows.iter().map(|row| hash(row[column])).collect();
                DatasetColumn::from_values(name.to_string(), &values)
            })
            .collect()
    }

    fn output(rows: &[&[&str]]) -> OutputRows {
        let mut output_rows = OutputRows::default();
        for row in rows {
            output_rows.push_row(row.iter().map(|cell| hash(cell)));
        }
        output_rows
    }

    const SETTINGS: QuasiIdentifierSettings = QuasiIdentifierSettings {
        k: 3,
        min_shared_values: 3,
    };

    fn cohort() -> Vec<DatasetColumn> {
        dataset(
            &["birth_year", "sex", "diagnosis", "bmi"],
            &[
                &["1970", "F", "copd", "22.5"],
                &["1970", "F", "copd", "31.0"],
                &["1970", "F", "copd", "27.1"],
                &["1982", "M", "asthma", "24.0"],
                &["1982", "M", "asthma", "24.0"],
                &["1982", "M", "asthma", "24.0"],
                &["1955", "M", "copd", "29.3"],
            ],
        )
    }

    #[test]
    fn reordered_renamed_subsets_leak_and_shared_groups_do_not() {
        let names: Vec<String> = ["x", "y", "z", "w"].map(String::from).to_vec();
        // BMI first, sex last, no header in common with the dataset.
        let rows = output(&[
            &["31.0", "copd", "1970", "F"],
            &["24.0", "asthma", "1982", "M"],
            &["29.3", "copd", "1955", "M"],
        ]);
        let findings = compare_with_dataset(&rows, &names, &[false; 4], &cohort(), SETTINGS);
        assert_eq!(findings.leaking_rows, [0, 2]);
        assert_eq!(findings.n_matched_columns, 4);
        // Three values shared by three patients: a group, not a person.
        let group = output(&[&["copd", "1970", "F"]]);
        let findings = compare_with_dataset(&group, &names, &[false; 3], &cohort(), SETTINGS);
        assert!(findings.leaking_rows.is_empty(), "{findings:?}");
    }

    #[test]
    fn a_disguising_value_does_not_hide_the_person() {
        let names: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        // The 1955 patient with sex changed and a value no one has.
        let rows = output(&[
            &["1955", "F", "copd", "29.3"],
            &["1955", "M", "copd", "99.9"],
            &["1970", "F", "copd", "22.5"],
        ]);
        let findings = compare_with_dataset(&rows, &names, &[false; 4], &cohort(), SETTINGS);
        assert_eq!(findings.leaking_rows, [0, 1, 2]);
        assert_eq!(findings.n_uncompared_rows, 0);
    }

    #[test]
    fn count_columns_and_too_few_shared_values_are_not_compared() {
        let names: Vec<String> = ["sex", "diagnosis", "n"].map(String::from).to_vec();
        let rows = output(&[&["M", "copd", "1955"]]);
        let is_count = [false, false, true];
        let findings = compare_with_dataset(&rows, &names, &is_count, &cohort(), SETTINGS);
        assert_eq!(
            findings,
            QuasiIdentifierFindings {
                n_matched_columns: 0,
                ..QuasiIdentifierFindings::default()
            }
        );
    }
}
