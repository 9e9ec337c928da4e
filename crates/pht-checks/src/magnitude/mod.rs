//! Magnitude tables and models: outputs whose cells aggregate a dataset column (a sum of costs,
//! a mean age per group) or that were fitted on a number of observations.
//!
//! The train's word is checked, not trusted. For a table declared with `aggregates`, the station
//! hands over the dataset the cells were computed from ([`DatasetTable`]); this module groups
//! that dataset's rows by the declared key columns, recomputes every cell, and judges each one
//! on its own contributors: a cell that does not match its recomputed value, or names a group
//! the dataset does not have, is a finding (`aggregate`); then the count threshold on the number
//! of contributors (`threshold`), n,k dominance (`dominance`), the p-ratio (`p-ratio`), single
//! records (`extreme-value`, for `min` and `max`) and negative contributions (`negative`). For a
//! model, the residual degrees of freedom (`degrees-of-freedom`), with the declared `n_obs`
//! checked against the dataset's row count.
//!
//! Owns the declarations, the grouping and the per-cell findings. The arithmetic of each rule is
//! in `rules`; reading delimited text is `delimited`'s. No values appear in the report: a
//! finding names the cell's position and the rule, never the value or the contributions.

mod rules;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::columns::ColumnCounter;
use crate::config::CheckConfig;
use crate::delimited::{is_blank_record, sniff_delimiter, Cell, DelimitedReader};
use crate::report::{plural, rule_result, Position, RuleAccumulator, RuleResult, Status};
use crate::row_hash::is_missing_marker;
use crate::Rule;

/// How a magnitude table's cells aggregate a dataset column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AggregateFunction {
    Sum,
    Mean,
    Median,
    Min,
    Max,
}

impl AggregateFunction {
    /// The lower-case name used in `train.yaml`.
    pub fn as_str(self) -> &'static str {
        match self {
            AggregateFunction::Sum => "sum",
            AggregateFunction::Mean => "mean",
            AggregateFunction::Median => "median",
            AggregateFunction::Min => "min",
            AggregateFunction::Max => "max",
        }
    }

    /// The function applied to a group's values; `None` for an empty group.
    fn apply(self, values: &mut [f64]) -> Option<f64> {
        if values.is_empty() {
            return None;
        }
        let sum = || values.iter().sum::<f64>();
        Some(match self {
            AggregateFunction::Sum => sum(),
            AggregateFunction::Mean => sum() / values.len() as f64,
            AggregateFunction::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
            AggregateFunction::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            AggregateFunction::Median => {
                let middle = values.len() / 2;
                let (_, upper, _) = values.select_nth_unstable_by(middle, f64::total_cmp);
                let upper = *upper;
                if values.len() % 2 == 1 {
                    upper
                } else {
                    let lower = values[..middle]
                        .iter()
                        .copied()
                        .fold(f64::NEG_INFINITY, f64::max);
                    (lower + upper) / 2.0
                }
            }
        })
    }
}

/// A table output's cells aggregate `column` of `dataset`, one cell per group of `group_by`
/// (`train.yaml`: `aggregates: {dataset, column, function, group_by}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateDeclaration {
    /// The mounted dataset the cells were computed from.
    pub dataset: String,
    /// The dataset column that was aggregated.
    pub column: String,
    pub function: AggregateFunction,
    /// The key columns, present in both the dataset and the table (compared case-insensitively).
    #[serde(default)]
    pub group_by: Vec<String>,
    /// The table column holding the aggregate; by default the one named like `column`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_column: Option<String>,
}

/// A model output's size (`train.yaml`: `kind: model` with `model: {n_obs, n_params}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelDeclaration {
    /// Observations the model was fitted on.
    pub n_obs: u64,
    /// Parameters it estimated (coefficients, the intercept included).
    pub n_params: u64,
    /// The dataset it was fitted on; `n_obs` may not exceed its rows. When absent, the largest
    /// mounted dataset bounds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
}

/// The parameters of the magnitude and model rules (policy `outputs.checks.magnitude`); the
/// defaults are ACRO's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MagnitudeConfig {
    /// n of the n,k dominance rule: how many of the largest contributors are summed.
    pub nk_n: usize,
    /// k of the n,k dominance rule: the fraction of a cell's total they must stay below.
    pub nk_k: f64,
    /// p of the p-ratio: the other contributors must sum to at least this fraction of the
    /// largest.
    pub p_ratio: f64,
    /// Release `min` and `max` cells (each is one record's value). Off by default.
    pub allow_extremes: bool,
    /// A model needs at least this many residual degrees of freedom (`n_obs - n_params`).
    pub min_residual_dof: u64,
}

impl Default for MagnitudeConfig {
    fn default() -> Self {
        MagnitudeConfig {
            nk_n: 2,
            nk_k: 0.9,
            p_ratio: 0.1,
            allow_extremes: false,
            min_residual_dof: 10,
        }
    }
}

/// A mounted dataset as delimited text, for recomputing magnitude cells. The station reads the
/// dataset's files (Parquet converted to CSV); each file starts with its header.
#[derive(Clone, PartialEq, Eq)]
pub struct DatasetTable {
    /// The dataset's name, as `aggregates.dataset` names it.
    pub name: String,
    /// Each file's bytes.
    pub files: Vec<Vec<u8>>,
}

impl std::fmt::Debug for DatasetTable {
    // Patient data never goes into a debug message; show its size.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n_bytes: usize = self.files.iter().map(Vec::len).sum();
        write!(
            formatter,
            "DatasetTable {{ name: {:?}, files: {}, bytes: {n_bytes} }}",
            self.name,
            self.files.len()
        )
    }
}

/// The contributions of every group of a dataset to one column.
#[derive(Debug, Default)]
struct Groups {
    /// Key (the group's cells, trimmed, joined by 0x1F) → the column's values in that group.
    by_key: HashMap<Vec<u8>, Vec<f64>>,
    /// Data rows with a value that is neither empty, a missing marker nor a number.
    unreadable_values: u64,
}

const KEY_SEPARATOR: u8 = 0x1F;

fn normalise(name: &[u8]) -> Vec<u8> {
    name.trim_ascii().to_ascii_lowercase()
}

/// Where each of `wanted` is among `header`'s cells, or the first one missing.
fn find_columns<'w>(header: &[Cell<'_>], wanted: &[&'w str]) -> Result<Vec<usize>, &'w str> {
    wanted
        .iter()
        .map(|name| {
            let name_normalised = normalise(name.as_bytes());
            header
                .iter()
                .position(|cell| normalise(&cell.text) == name_normalised)
                .ok_or(*name)
        })
        .collect()
}

fn push_key(key: &mut Vec<u8>, cells: &[Cell<'_>], indexes: &[usize]) {
    key.clear();
    for (position, &index) in indexes.iter().enumerate() {
        if position > 0 {
            key.push(KEY_SEPARATOR);
        }
        if let Some(cell) = cells.get(index) {
            key.extend_from_slice(cell.text.trim_ascii());
        }
    }
}

/// A number as a cell writes it (`.` as the decimal point; `,` too for `;`- and tab-separated
/// text), and how many decimals it shows. `None` for anything else.
fn parse_number(text: &[u8], comma_is_decimal: bool) -> Option<(f64, u32)> {
    let text = std::str::from_utf8(text.trim_ascii()).ok()?;
    let owned;
    let text = if comma_is_decimal && text.contains(',') {
        owned = text.replace(',', ".");
        owned.as_str()
    } else {
        text
    };
    let value: f64 = text.parse().ok()?;
    if !value.is_finite() {
        return None;
    }
    let decimals = match text.split_once('.') {
        Some((_, fraction)) if !fraction.contains(['e', 'E']) => fraction.len() as u32,
        _ => 0,
    };
    Some((value, decimals))
}

fn is_suppressed(text: &[u8]) -> bool {
    let text = text.trim_ascii();
    text.is_empty() || (text.len() <= 4 && is_missing_marker(&text.to_ascii_lowercase()))
}

/// Groups the dataset's rows by `group_by` and collects `column`'s values per group. Missing
/// values (empty, `NA`, …) are not contributions, as in pandas and ACRO.
fn group_dataset(
    dataset: &DatasetTable,
    group_by: &[String],
    column: &str,
) -> Result<Groups, String> {
    let mut groups = Groups::default();
    let mut wanted: Vec<&str> = group_by.iter().map(String::as_str).collect();
    wanted.push(column);
    let mut cells = Vec::new();
    let mut key = Vec::new();
    for file in &dataset.files {
        let start = crate::tables::text_start(file);
        let delimiter = sniff_delimiter(&file[start..]);
        let comma_is_decimal = delimiter != b',';
        let mut reader = DelimitedReader::starting_at(file, delimiter, start);
        if !reader.next_record(&mut cells) {
            continue;
        }
        let indexes = find_columns(&cells, &wanted)
            .map_err(|missing| format!("dataset `{}` has no column `{missing}`", dataset.name))?;
        let (value_index, key_indexes) = indexes.split_last().expect("column is always wanted");
        while reader.next_record(&mut cells) {
            if is_blank_record(&cells) {
                continue;
            }
            let Some(value_cell) = cells.get(*value_index) else {
                continue;
            };
            if is_suppressed(&value_cell.text) {
                continue;
            }
            let Some((value, _)) = parse_number(&value_cell.text, comma_is_decimal) else {
                groups.unreadable_values += 1;
                continue;
            };
            push_key(&mut key, &cells, key_indexes);
            match groups.by_key.get_mut(key.as_slice()) {
                Some(values) => values.push(value),
                None => {
                    groups.by_key.insert(key.clone(), vec![value]);
                }
            }
        }
    }
    Ok(groups)
}

/// How far a declared cell may be from the recomputed value: half a unit of its last shown
/// decimal (it was rounded when written), plus floating-point noise.
fn tolerance(decimals: u32, expected: f64) -> f64 {
    0.5 * 10f64.powi(-(decimals.min(15) as i32)) + 1e-9 * expected.abs().max(1.0)
}

/// The findings of one magnitude table, in report order.
pub(crate) fn check_magnitude_table(
    file: &str,
    bytes: &[u8],
    declaration: &AggregateDeclaration,
    datasets: &[DatasetTable],
    config: &CheckConfig,
) -> Vec<RuleResult> {
    let fail = |summary: String| vec![rule_result(Rule::Aggregate, Status::Fail, 1, summary)];
    let Some(dataset) = datasets.iter().find(|d| d.name == declaration.dataset) else {
        return fail(format!(
            "the table declares aggregates over dataset `{}`, which is not granted to this run \
             or could not be read; its cells cannot be recomputed",
            declaration.dataset
        ));
    };
    let groups = match group_dataset(dataset, &declaration.group_by, &declaration.column) {
        Ok(groups) => groups,
        Err(message) => return fail(format!("{message}, which the table's aggregates name")),
    };

    let start = crate::tables::text_start(bytes);
    let delimiter = sniff_delimiter(&bytes[start..]);
    let comma_is_decimal = delimiter != b',';
    let mut reader = DelimitedReader::starting_at(bytes, delimiter, start);
    let mut cells = Vec::new();
    if !reader.next_record(&mut cells) {
        return fail("the table declared as aggregates is empty".into());
    }
    let value_column = declaration
        .value_column
        .as_deref()
        .unwrap_or(&declaration.column);
    let mut wanted: Vec<&str> = declaration.group_by.iter().map(String::as_str).collect();
    wanted.push(value_column);
    let indexes = match find_columns(&cells, &wanted) {
        Ok(indexes) => indexes,
        Err(missing) => {
            return fail(format!(
                "the table has no column `{missing}`, which its aggregates declaration names"
            ))
        }
    };
    let (value_index, key_indexes) = indexes.split_last().expect("value column is wanted");

    let magnitude = &config.magnitude;
    let max_positions = config.max_reported_positions;
    let mut mismatch = RuleAccumulator::new(Rule::Aggregate, max_positions);
    let mut threshold = RuleAccumulator::new(Rule::Threshold, max_positions);
    let mut dominance = RuleAccumulator::new(Rule::Dominance, max_positions);
    let mut p_ratio = RuleAccumulator::new(Rule::PRatio, max_positions);
    let mut extreme = RuleAccumulator::new(Rule::ExtremeValue, max_positions);
    let mut negative = RuleAccumulator::new(Rule::Negative, max_positions);
    let is_extreme = matches!(
        declaration.function,
        AggregateFunction::Min | AggregateFunction::Max
    );
    let mut column_counter = ColumnCounter::default();
    let mut key = Vec::new();
    let mut scratch = Vec::new();
    let mut n_cells = 0u64;
    while reader.next_record(&mut cells) {
        if is_blank_record(&cells) {
            continue;
        }
        let Some(value_cell) = cells.get(*value_index) else {
            continue;
        };
        if is_suppressed(&value_cell.text) {
            continue;
        }
        n_cells += 1;
        let position = Position {
            file: file.to_string(),
            line: value_cell.line as u64,
            column: column_counter.column_at(bytes, value_cell.line_start, value_cell.offset),
            field: Some(*value_index as u64 + 1),
        };
        push_key(&mut key, &cells, key_indexes);
        let contributions = groups.by_key.get(key.as_slice());
        let declared = parse_number(&value_cell.text, comma_is_decimal);
        scratch.clear();
        scratch.extend_from_slice(contributions.map(Vec::as_slice).unwrap_or_default());
        let recomputed = declaration.function.apply(&mut scratch);
        let matches = match (declared, recomputed) {
            (Some((value, decimals)), Some(expected)) => {
                (value - expected).abs() <= tolerance(decimals, expected)
            }
            _ => false,
        };
        if !matches {
            mismatch.flag(|| position.clone());
        }
        let Some(contributions) = contributions else {
            continue;
        };
        if (contributions.len() as u64) < config.min_cell_count {
            threshold.flag(|| position.clone());
        }
        if rules::nk_dominated(contributions, magnitude.nk_n, magnitude.nk_k) {
            dominance.flag(|| position.clone());
        }
        if rules::p_ratio_violated(contributions, magnitude.p_ratio) {
            p_ratio.flag(|| position.clone());
        }
        if is_extreme && !magnitude.allow_extremes {
            extreme.flag(|| position.clone());
        }
        if contributions.iter().any(|&value| value < 0.0) {
            negative.flag(|| position.clone());
        }
    }

    let cells_word = |count: u64| plural(count, "cell", "cells");
    let function = declaration.function.as_str();
    let column = &declaration.column;
    let dataset_name = &declaration.dataset;
    let mut results = Vec::new();
    let count = mismatch.count;
    results.push(mismatch.finish(
        Status::Fail,
        if count == 0 {
            format!(
                "{} recomputed from dataset `{dataset_name}` ({function} of `{column}`); all match",
                cells_word(n_cells)
            )
        } else {
            format!(
                "{} of {n_cells} do not match the {function} of `{column}` the station recomputed \
                 from dataset `{dataset_name}`, or name a group it does not have: the table is not \
                 what train.yaml declares",
                cells_word(count)
            )
        },
    ));
    let count = threshold.count;
    results.push(threshold.finish(
        Status::Fail,
        format!(
            "{} with fewer than {} contributors",
            cells_word(count),
            config.min_cell_count
        ),
    ));
    let count = dominance.count;
    results.push(dominance.finish(
        Status::Fail,
        format!(
            "{} where the {} largest contributors make up {} or more of the total (n,k dominance)",
            cells_word(count),
            magnitude.nk_n,
            magnitude.nk_k
        ),
    ));
    let count = p_ratio.count;
    results.push(p_ratio.finish(
        Status::Fail,
        format!(
            "{} where the contributors other than the two largest sum to less than {} of the \
             largest (p-ratio), or with a total of zero or less",
            cells_word(count),
            magnitude.p_ratio
        ),
    ));
    if is_extreme {
        let count = extreme.count;
        let allowed = magnitude.allow_extremes;
        results.push(extreme.finish(
            Status::Fail,
            format!(
                "{} giving the {function} of `{column}`, one record's value{}",
                cells_word(count),
                if allowed {
                    " (the policy allows this)"
                } else {
                    ""
                }
            ),
        ));
    }
    let count = negative.count;
    results.push(negative.finish(
        Status::Review,
        format!(
            "{} with negative contributions: the dominance rules assume none",
            cells_word(count)
        ),
    ));
    if groups.unreadable_values > 0 {
        results.push(rule_result(
            Rule::Format,
            Status::Review,
            groups.unreadable_values,
            format!(
                "{} of dataset `{dataset_name}` hold a `{column}` that is not a number and were \
                 left out of the recomputation",
                plural(groups.unreadable_values, "row", "rows")
            ),
        ));
    }
    results
}

/// The finding of one model declaration: its residual degrees of freedom and its `n_obs`
/// against the rows of the dataset it names (`dataset_rows`: name → data rows).
pub(crate) fn check_model(
    declaration: &ModelDeclaration,
    dataset_rows: &[(String, u64)],
    config: &CheckConfig,
) -> RuleResult {
    let minimum = config.magnitude.min_residual_dof;
    let dof = rules::residual_dof(declaration.n_obs, declaration.n_params);
    let bound = match &declaration.dataset {
        Some(name) => dataset_rows
            .iter()
            .find(|(dataset, _)| dataset == name)
            .map(|(_, rows)| (name.as_str(), *rows)),
        None => dataset_rows
            .iter()
            .max_by_key(|(_, rows)| *rows)
            .map(|(name, rows)| (name.as_str(), *rows)),
    };
    if let Some(name) = &declaration.dataset {
        if bound.is_none() {
            return rule_result(
                Rule::DegreesOfFreedom,
                Status::Fail,
                1,
                format!("the model declares dataset `{name}`, which is not mounted for this run"),
            );
        }
    }
    if let Some((name, rows)) = bound {
        if declaration.n_obs > rows {
            return rule_result(
                Rule::DegreesOfFreedom,
                Status::Fail,
                1,
                format!(
                    "the model declares {} observations, more than the {rows} rows of dataset \
                     `{name}`: its size is not what train.yaml says",
                    declaration.n_obs
                ),
            );
        }
    }
    if dof < i128::from(minimum) {
        rule_result(
            Rule::DegreesOfFreedom,
            Status::Fail,
            1,
            format!(
                "the model has {dof} residual degrees of freedom ({} observations, {} parameters), \
                 fewer than the policy's {minimum}",
                declaration.n_obs, declaration.n_params
            ),
        )
    } else {
        rule_result(
            Rule::DegreesOfFreedom,
            Status::Pass,
            0,
            format!(
                "{dof} residual degrees of freedom ({} observations, {} parameters), at least {minimum}",
                declaration.n_obs, declaration.n_params
            ),
        )
    }
}

#[cfg(test)]
mod tests;
