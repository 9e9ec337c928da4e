//! The check report: what leaves the checks, for the operator, the researcher and the sealed
//! result bundle. Versioned (`pht.checks.v1`) because it crosses a trust boundary.
//!
//! Owns the report types, their JSON shape and their text rendering. It does not decide any
//! verdict (the rule modules do) and it never holds a flagged value: a finding is a rule, a
//! count and positions (file, line, column), nothing from the cell itself.
//!
//! The shape follows ACRO's `results.json` (the SACRO output checking tool) so that output
//! checkers recognise it: a top-level `version` and `results` keyed by output, each with `uid`,
//! `status` (`pass`/`review`/`fail`), `type`, `properties`, `files`, `summary` (`"fail; rule:
//! ...; "`), `comments` and `exception`. Where ACRO has `sdc.summary` (a count per rule) and
//! `sdc.cells` (positions per rule), this report has `checks`: one entry per rule with its own
//! status, summary, count and 1-based positions.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::count_columns::CountColumn;
use crate::input::OutputKind;

/// The version string of the report format.
pub const REPORT_VERSION: &str = "pht.checks.v1";

/// A verdict. Ordered so that the maximum of several verdicts is the overall one:
/// fail beats review beats pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Nothing found; the output may be released.
    Pass,
    /// A human output checker has to look before release.
    Review,
    /// The output must not be released.
    Fail,
}

impl Status {
    /// The lower-case name used in the JSON report.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Review => "review",
            Status::Fail => "fail",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Every rule the checks apply, by its stable name in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// Collection: more files than `max_files` (fail).
    FileCount,
    /// Collection: more bytes than `max_total_bytes` (fail).
    TotalSize,
    /// The path is empty, absolute, escapes `/output`, has control characters or is repeated
    /// (fail).
    Path,
    /// The file name itself holds a possible identifier (status of that identifier); the name
    /// is then withheld from the report.
    FileName,
    /// A symbolic link or special file (fail).
    RegularFile,
    /// The extension is not allowed (fail), or the content does not match it (fail).
    FileType,
    /// A PNG whose chunk structure is broken or that carries bytes after its end (fail).
    PngStructure,
    /// The content could not be parsed as its type claims (review).
    Format,
    /// No output in `train.yaml` declares this file (review).
    Undeclared,
    /// The output cannot be checked automatically: free text, figures, models, unknown types
    /// (review).
    HumanReview,
    /// Count cells from 1 to `min_cell_count - 1` (fail); a table without any count column
    /// (review).
    Threshold,
    /// Count cells that are exactly zero (review, when `flag_zero_cells`).
    Zero,
    /// Count cells that are not integers (review).
    NonInteger,
    /// Count cells that are negative (review).
    Negative,
    /// The table has nearly as many rows as a mounted dataset (review).
    RowCount,
    /// A table row is identical to a row of a mounted dataset (fail).
    Leakage,
    /// A 9-digit number passing the 11-test near a BSN context word (fail).
    Bsn,
    /// A 9-digit number passing the 11-test without a context word (review).
    PossibleBsn,
    /// An e-mail address (fail).
    Email,
    /// A Dutch phone number (fail).
    Phone,
    /// A Dutch postcode (review).
    Postcode,
    /// A date near a date-of-birth context word or in a date-of-birth column (fail).
    DateOfBirth,
    /// A run of at least `max_digit_run` digits (review).
    DigitRun,
    /// A magnitude cell whose `n` largest contributors make up `k` or more of its total
    /// (fail; n,k dominance, ACRO's `nk-rule`).
    Dominance,
    /// A magnitude cell whose other contributors than the two largest sum to less than `p` of
    /// the largest: the second largest could estimate the largest too closely (fail).
    PRatio,
    /// A declared aggregate cell that does not match what the station recomputed from the
    /// dataset, or whose group has no rows there (fail).
    Aggregate,
    /// A `min` or `max` cell: the value of a single record (fail unless the policy allows).
    ExtremeValue,
    /// A model with fewer residual degrees of freedom than the policy's minimum, or fitted on
    /// more observations than the dataset holds (fail).
    DegreesOfFreedom,
    /// A count table whose margins differ from those of a table released earlier over the same
    /// dataset version by a small nonzero group (fail).
    Differencing,
    /// The table leaves as a transformed copy (suppress-and-round); lists every changed cell
    /// (pass).
    Rounding,
}

impl Rule {
    /// The stable kebab-case name used in the JSON report.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::FileCount => "file-count",
            Rule::TotalSize => "total-size",
            Rule::Path => "path",
            Rule::FileName => "file-name",
            Rule::RegularFile => "regular-file",
            Rule::FileType => "file-type",
            Rule::PngStructure => "png-structure",
            Rule::Format => "format",
            Rule::Undeclared => "undeclared",
            Rule::HumanReview => "human-review",
            Rule::Threshold => "threshold",
            Rule::Zero => "zero",
            Rule::NonInteger => "non-integer",
            Rule::Negative => "negative",
            Rule::RowCount => "row-count",
            Rule::Leakage => "leakage",
            Rule::Bsn => "bsn",
            Rule::PossibleBsn => "possible-bsn",
            Rule::Email => "email",
            Rule::Phone => "phone",
            Rule::Postcode => "postcode",
            Rule::DateOfBirth => "date-of-birth",
            Rule::DigitRun => "digit-run",
            Rule::Dominance => "dominance",
            Rule::PRatio => "p-ratio",
            Rule::Aggregate => "aggregate",
            Rule::ExtremeValue => "extreme-value",
            Rule::DegreesOfFreedom => "degrees-of-freedom",
            Rule::Differencing => "differencing",
            Rule::Rounding => "rounding",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Where something was flagged. All numbers are 1-based.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The output's path (or its withheld label when the name itself was flagged).
    pub file: String,
    /// The physical line in the file.
    pub line: u64,
    /// The character (not byte) column in that line where the flagged item starts.
    pub column: u64,
    /// For tables: the table column (field) the item is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<u64>,
}

/// The outcome of one rule on one output (or on the whole collection).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleResult {
    /// Which rule.
    pub rule: Rule,
    /// Its verdict.
    pub status: Status,
    /// A sentence for the operator; never contains a flagged value.
    pub summary: String,
    /// How many items the rule flagged (exact, even when positions are truncated).
    pub count: u64,
    /// Where the flagged items are, at most `max_reported_positions` of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub positions: Vec<Position>,
    /// True when more items were flagged than positions are listed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub positions_truncated: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// What kind of output the checks treated a file as (ACRO's `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputType {
    /// A table (CSV, TSV, JSON array of flat records).
    Table,
    /// A figure.
    Figure,
    /// Free text.
    Text,
    /// A model.
    Model,
    /// State for the next station.
    State,
    /// Anything else: undeclared files of no recognised type, links, special files.
    Custom,
}

impl From<OutputKind> for OutputType {
    fn from(kind: OutputKind) -> OutputType {
        match kind {
            OutputKind::Table => OutputType::Table,
            OutputKind::Figure => OutputType::Figure,
            OutputKind::Text => OutputType::Text,
            OutputKind::Model => OutputType::Model,
            OutputKind::State => OutputType::State,
        }
    }
}

impl OutputType {
    fn as_str(self) -> &'static str {
        match self {
            OutputType::Table => "table",
            OutputType::Figure => "figure",
            OutputType::Text => "text",
            OutputType::Model => "model",
            OutputType::State => "state",
            OutputType::Custom => "custom",
        }
    }
}

/// Facts about an output that help the checker, none of them data values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutputProperties {
    /// How the content was read: `csv`, `tsv`, `json`, `txt`, `png`, `other`, `symlink`,
    /// `special`.
    pub format: String,
    /// The kind declared in `train.yaml`, if a declaration covers the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_kind: Option<OutputKind>,
    /// Size in bytes (0 for links and special files).
    pub n_bytes: u64,
    /// For tables: data rows (the header not counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_rows: Option<u64>,
    /// For tables: columns in the header (or distinct keys of the JSON records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_columns: Option<u64>,
    /// For tables: the count columns, declared, named by the policy or inferred.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub count_columns: Vec<CountColumn>,
}

/// A file belonging to an output (ACRO's `files`; here always exactly one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// The path relative to `/output` (or the withheld label).
    pub name: String,
    /// Size in bytes.
    pub n_bytes: u64,
}

/// The verdict on one output file (ACRO's record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputResult {
    /// The key of this result: the path, or a withheld label when the name held an identifier.
    pub uid: String,
    /// The worst status of its checks.
    pub status: Status,
    /// What the output was treated as.
    #[serde(rename = "type")]
    pub output_type: OutputType,
    /// Facts about the output.
    pub properties: OutputProperties,
    /// The file(s) of this output.
    pub files: Vec<FileEntry>,
    /// Every rule applied to this output, in a fixed order, passing ones included.
    pub checks: Vec<RuleResult>,
    /// ACRO-style one-line summary: `"fail; threshold: ...; zero: ...; "` or `"pass"`.
    pub summary: String,
    /// Filled by the operator during review; the checks leave it empty.
    #[serde(default)]
    pub comments: Vec<String>,
    /// The researcher's or operator's reason for an exception; the checks leave it empty.
    #[serde(default)]
    pub exception: String,
}

/// The checks that concern all outputs together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionResult {
    /// The worst status of the collection checks.
    pub status: Status,
    /// How many entries were collected (files, links and special files).
    pub n_files: u64,
    /// Total bytes of the regular files.
    pub n_bytes: u64,
    /// `file-count` and `total-size`, and `row-count` over all tables together when a dataset
    /// is mounted.
    pub checks: Vec<RuleResult>,
}

/// The report on all outputs of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Always [`REPORT_VERSION`]; reading a report of another version fails.
    pub version: ReportVersion,
    /// The overall verdict: the worst of the collection and every output.
    pub status: Status,
    /// A one-line summary for the operator.
    pub summary: String,
    /// Checks over the whole collection.
    pub collection: CollectionResult,
    /// One result per output, keyed by `uid` (the path), in path order.
    pub results: BTreeMap<String, OutputResult>,
}

impl CheckReport {
    /// The overall verdict: fail beats review beats pass.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The result for the output at `path`, if its name was not withheld.
    pub fn output(&self, path: &str) -> Option<&OutputResult> {
        self.results.get(path)
    }

    /// A multi-line summary for operators: the verdict, then every output with its non-passing
    /// rules and their first positions.
    pub fn render_text(&self) -> String {
        self.to_string()
    }
}

/// How many positions a rule shows in the text rendering before "and N more".
const POSITIONS_SHOWN_IN_TEXT: usize = 5;

impl fmt::Display for CheckReport {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            formatter,
            "output checks ({}): {}",
            REPORT_VERSION,
            self.status.as_str().to_uppercase()
        )?;
        writeln!(formatter, "{}", self.summary)?;
        writeln!(
            formatter,
            "collection: {} ({} files, {} bytes)",
            self.collection.status, self.collection.n_files, self.collection.n_bytes
        )?;
        write_flagged_rules(formatter, &self.collection.checks)?;
        for output_result in self.results.values() {
            writeln!(
                formatter,
                "{:<7} {} [{}]",
                output_result.status.as_str().to_uppercase(),
                output_result.uid,
                output_result.output_type.as_str()
            )?;
            write_flagged_rules(formatter, &output_result.checks)?;
        }
        Ok(())
    }
}

fn write_flagged_rules(formatter: &mut fmt::Formatter<'_>, checks: &[RuleResult]) -> fmt::Result {
    for rule_result in checks
        .iter()
        .filter(|rule_result| rule_result.status != Status::Pass)
    {
        write!(
            formatter,
            "        {} ({}): {}",
            rule_result.rule, rule_result.status, rule_result.summary
        )?;
        if !rule_result.positions.is_empty() {
            let shown: Vec<String> = rule_result
                .positions
                .iter()
                .take(POSITIONS_SHOWN_IN_TEXT)
                .map(|position| format!("{}:{}:{}", position.file, position.line, position.column))
                .collect();
            write!(formatter, " at {}", shown.join(", "))?;
            let n_shown = shown.len() as u64;
            if rule_result.count > n_shown {
                write!(formatter, " and {} more", rule_result.count - n_shown)?;
            }
        }
        writeln!(formatter)?;
    }
    Ok(())
}

/// The report's version marker. Serialises as [`REPORT_VERSION`] and refuses any other value
/// when read, so a consumer never misreads a report of another format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReportVersion;

impl Serialize for ReportVersion {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REPORT_VERSION)
    }
}

impl<'de> Deserialize<'de> for ReportVersion {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let version = String::deserialize(deserializer)?;
        if version == REPORT_VERSION {
            Ok(ReportVersion)
        } else {
            Err(serde::de::Error::custom(format!(
                "unsupported check report version {version:?}, expected {REPORT_VERSION:?}"
            )))
        }
    }
}

/// Collects the findings of one rule on one output: an exact count and the first positions.
#[derive(Debug)]
pub(crate) struct RuleAccumulator {
    pub(crate) rule: Rule,
    pub(crate) count: u64,
    pub(crate) positions: Vec<Position>,
    max_positions: usize,
}

impl RuleAccumulator {
    pub(crate) fn new(rule: Rule, max_positions: usize) -> RuleAccumulator {
        RuleAccumulator {
            rule,
            count: 0,
            positions: Vec::new(),
            max_positions,
        }
    }

    /// At most this many positions are listed.
    pub(crate) fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// Counts one finding; computes its position only while positions are still listed.
    pub(crate) fn flag(&mut self, position: impl FnOnce() -> Position) {
        self.count += 1;
        if self.positions.len() < self.max_positions {
            self.positions.push(position());
        }
    }

    /// The result: `status_when_flagged` if anything was flagged, else pass.
    pub(crate) fn finish(self, status_when_flagged: Status, summary: String) -> RuleResult {
        let status = if self.count > 0 {
            status_when_flagged
        } else {
            Status::Pass
        };
        self.finish_with_status(status, summary)
    }

    pub(crate) fn finish_with_status(self, status: Status, summary: String) -> RuleResult {
        let positions_truncated = self.count > self.positions.len() as u64;
        RuleResult {
            rule: self.rule,
            status,
            summary,
            count: self.count,
            positions: self.positions,
            positions_truncated,
        }
    }
}

/// A rule result without positions, for callers outside this crate (the station's own
/// additions to a report, such as a table too large for the differencing ledger).
pub fn rule_result_for(rule: Rule, status: Status, summary: String) -> RuleResult {
    let count = u64::from(status != Status::Pass);
    rule_result(rule, status, count, summary)
}

/// A rule result without positions.
pub(crate) fn rule_result(rule: Rule, status: Status, count: u64, summary: String) -> RuleResult {
    RuleResult {
        rule,
        status,
        summary,
        count,
        positions: Vec::new(),
        positions_truncated: false,
    }
}

/// `1 cell` / `2 cells`.
pub(crate) fn plural(count: u64, singular: &str, plural: &str) -> String {
    if count == 1 {
        format!("{count} {singular}")
    } else {
        format!("{count} {plural}")
    }
}
