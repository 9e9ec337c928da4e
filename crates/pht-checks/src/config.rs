//! Thresholds for the output checks, as they appear under `outputs.checks` in a station policy.
//! Owns only the settings and their defaults; the rules that use them live beside it. It does not
//! parse the policy file (the policy crate embeds this struct and reads it with serde).

use serde::{Deserialize, Serialize};

use crate::magnitude::MagnitudeConfig;
use crate::remedy::RoundingConfig;

/// Every threshold of the output checks. A station policy embeds this under `outputs.checks`;
/// each field has a default drawn from statistical disclosure control practice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckConfig {
    /// At most this many files in `/output`.
    pub max_files: usize,
    /// At most this many bytes in all of `/output` together.
    pub max_total_bytes: u64,
    /// File extensions (lower case, without the dot) that may leave the station. Any other
    /// extension fails; an allowed extension without a dedicated check is flagged for review.
    pub allowed_extensions: Vec<String>,
    /// A cell in a count column below this fails (default 10). A count of 0 is not a small cell:
    /// it is governed by `flag_zero_cells`.
    pub min_cell_count: u64,
    /// Flag count cells that are exactly zero for review (a structural zero can disclose that
    /// nobody in a group has a property). When false, zeros pass.
    pub flag_zero_cells: bool,
    /// Column names recognised as counts even when `train.yaml` does not declare them
    /// (compared case-insensitively, after trimming). The checks also infer count columns from
    /// their names and shape (`count_columns`); this list adds exact names to that.
    pub count_column_names: Vec<String>,
    /// Flag a table for review whose row count is at least this fraction of a mounted dataset's
    /// rows: it may be the dataset itself, row by row.
    pub row_count_ratio: f64,
    /// Digit runs at least this long are flagged as possible identifiers.
    pub max_digit_run: usize,
    /// How many characters before and after a candidate BSN or date are searched for a context
    /// word (`bsn`, `geboortedatum`, `dob`, ...). A BSN or date with a context word fails.
    pub identifier_context_chars: usize,
    /// Flag files that no output in `train.yaml` declares for review.
    pub review_undeclared_outputs: bool,
    /// At most this many positions are listed per rule and file in the report; the count of
    /// flagged items stays exact. Keeps the report small when a whole column fails.
    pub max_reported_positions: usize,
    /// The quasi-identifier leakage rule.
    pub leakage: LeakageConfig,
    /// The magnitude-table and model rules (dominance, p-ratio, extremes, degrees of freedom).
    pub magnitude: MagnitudeConfig,
    /// The differencing rule and how long the station keeps what it released.
    pub differencing: DifferencingConfig,
    /// The parameters of the `suppress-and-round` remedy (policy `outputs.remedy`).
    pub rounding: RoundingConfig,
}

/// Comparing each new count table with those released earlier over the same dataset version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DifferencingConfig {
    /// Compare at all (default true).
    pub enabled: bool,
    /// Releases kept per dataset version; the oldest go first (default 10,000).
    pub max_releases: usize,
    /// Releases older than this many days are forgotten (default 365).
    pub retention_days: u32,
}

impl Default for DifferencingConfig {
    fn default() -> Self {
        DifferencingConfig {
            enabled: true,
            max_releases: 10_000,
            retention_days: 365,
        }
    }
}

/// When an output row singles people out by a combination of values it shares with a dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeakageConfig {
    /// A combination of values shared with fewer than this many dataset rows (and at least
    /// one) leaks. Default: `min_cell_count`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k: Option<u64>,
    /// Only combinations of at least this many values are compared (default 3): one or two
    /// shared values (sex, an age group) are what aggregates are made of.
    pub min_shared_values: usize,
}

impl Default for LeakageConfig {
    fn default() -> Self {
        LeakageConfig {
            k: None,
            min_shared_values: 3,
        }
    }
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            max_files: 50,
            max_total_bytes: 100 * 1024 * 1024,
            allowed_extensions: ["csv", "tsv", "json", "txt", "png"]
                .map(String::from)
                .to_vec(),
            min_cell_count: 10,
            flag_zero_cells: true,
            count_column_names: [
                "n",
                "count",
                "counts",
                "freq",
                "frequency",
                "n_patients",
                "patients",
            ]
            .map(String::from)
            .to_vec(),
            row_count_ratio: 0.9,
            max_digit_run: 10,
            identifier_context_chars: 40,
            review_undeclared_outputs: true,
            max_reported_positions: 100,
            leakage: LeakageConfig::default(),
            magnitude: MagnitudeConfig::default(),
            differencing: DifferencingConfig::default(),
            rounding: RoundingConfig::default(),
        }
    }
}
