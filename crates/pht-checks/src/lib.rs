//! Output checks: statistical disclosure control over what a train wrote to `/output`.
//!
//! Pure: takes collected file contents, the train's declared outputs, dataset row indexes and
//! thresholds, and returns a report. No Docker, no network, no file system; nothing here fails
//! on its input: a file it cannot read is a verdict (`review` or `fail`), not an error.
//!
//! ```
//! use pht_checks::{check_outputs, CheckConfig, DeclaredOutput, OutputEntry, Status};
//!
//! let entries = [OutputEntry::regular("counts.csv", b"sex,n\nf,12\nm,4\n".to_vec())];
//! let declared = [DeclaredOutput::table("counts.csv", ["n"])];
//! let report = check_outputs(&entries, &declared, &[], &CheckConfig::default());
//! assert_eq!(report.status(), Status::Fail); // 4 is below the default threshold of 10
//! ```
//!
//! Modules, each owning one concern:
//! - `input`: what goes in (entries, declarations);
//! - `check`: the entry point and the structure rules;
//! - `tables`: count cells, row counts and leakage, over `delimited` (CSV/TSV) and `json_table`;
//! - `parquet_table`: Parquet read as a flat table and written as CSV for the table rules and the
//!   leakage index;
//! - `identifiers`: BSN, e-mail, phone, postcode, date of birth, digit runs;
//! - `png`: figure structure;
//! - `count_columns`: which columns hold counts (declared, named, or inferred by name and shape);
//! - `dataset_index` and `row_hash`: the leakage index and its row normalisation;
//! - `differencing`: the ledger of released count tables and the comparison of a new one with
//!   it;
//! - `magnitude`: magnitude tables recomputed from the dataset (dominance, p-ratio, extremes)
//!   and models' degrees of freedom;
//! - `quasi_identifiers`: rows singling people out by a combination of values, whatever the
//!   column order, names or subset;
//! - `remedy`: suppress-and-round, the transformed copy of a table failing only on small cells;
//! - `report`: the versioned JSON report (`pht.checks.v1`) and its text rendering, with
//!   `columns` for the character columns of positions;
//! - `bench`: the generated benchmark table.

mod bench;
mod check;
mod columns;
mod config;
mod count_columns;
mod dataset_index;
mod delimited;
mod differencing;
mod identifiers;
mod input;
mod json_table;
mod magnitude;
mod parquet_table;
mod png;
mod quasi_identifiers;
mod remedy;
mod report;
mod row_hash;
mod tables;

pub use bench::{generate_benchmark_csv, BENCHMARK_CSV_HEADER};
pub use check::{check_outputs, check_outputs_with_data};
pub use config::{CheckConfig, DifferencingConfig, LeakageConfig};
pub use count_columns::{CountColumn, CountColumnSource};
pub use dataset_index::{DatasetIndex, DatasetIndexError, DATASET_INDEX_VERSION};
pub use delimited::{preview_table, PreviewCell};
pub use differencing::{
    count_table, differencing_result, CountTable, DifferencingFinding, Ledger, Release,
};
pub use input::{DeclaredOutput, EntryContent, OutputEntry, OutputKind};
pub use magnitude::{
    AggregateDeclaration, AggregateFunction, DatasetTable, MagnitudeConfig, ModelDeclaration,
};
pub use parquet_table::{parquet_to_csv, ParquetColumn, ParquetTableError};
pub use remedy::{suppress_and_round, Remedied, RoundingConfig};
pub use report::{
    rule_result_for, CheckReport, CollectionResult, FileEntry, OutputProperties, OutputResult,
    OutputType, Position, ReportVersion, Rule, RuleResult, Status, REPORT_VERSION,
};
