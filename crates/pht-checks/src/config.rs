//! Thresholds for the output checks, as they appear under `outputs.checks` in a station policy.
//! Owns only the settings and their defaults; the rules that use them live beside it.

use serde::{Deserialize, Serialize};

/// Every threshold of the output checks. A station policy embeds this under `outputs.checks`;
/// each field has a default drawn from statistical disclosure control practice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckConfig {
    /// At most this many files in `/output`.
    pub max_files: usize,
    /// At most this many bytes in all of `/output` together.
    pub max_total_bytes: u64,
    /// File extensions (lower case, without the dot) that may leave the station.
    pub allowed_extensions: Vec<String>,
    /// A cell in a count column below this fails (default 10).
    pub min_cell_count: u64,
    /// Flag count cells that are exactly zero for review.
    pub flag_zero_cells: bool,
    /// Column names recognised as counts even when `train.yaml` does not declare them.
    pub count_column_names: Vec<String>,
    /// Flag a table whose row count is at least this fraction of a mounted dataset's rows.
    pub row_count_ratio: f64,
    /// Digit runs at least this long are flagged as possible identifiers.
    pub max_digit_run: usize,
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            max_files: 50,
            max_total_bytes: 100 * 1024 * 1024,
            allowed_extensions: ["csv", "tsv", "json", "txt", "png"].map(String::from).to_vec(),
            min_cell_count: 10,
            flag_zero_cells: true,
            count_column_names: ["n", "count", "counts", "freq", "frequency", "n_patients", "patients"]
                .map(String::from)
                .to_vec(),
            row_count_ratio: 0.9,
            max_digit_run: 10,
        }
    }
}
