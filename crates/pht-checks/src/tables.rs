//! The table rules: small and zero count cells, non-integer and negative counts, tables as long
//! as a dataset, and rows copied from a dataset. Drives the CSV/TSV reader (with the identifier
//! scan in the same pass) and the streaming JSON record reader for one table output.
//!
//! Owns what a count column is and how its cells are judged. It does not decide the file's type
//! (the orchestrator in `check` does), and it never copies a cell into the report: a finding is
//! counted and located, nothing more.
//!
//! Count columns are those declared in `train.yaml` for this output plus those named in the
//! policy's `count_column_names`, compared case-insensitively after trimming. Empty cells and
//! missing markers (`NA`, `null`, ...) in a count column are suppressed cells and pass: an empty
//! cell discloses nothing. `12.0` counts as 12 (pandas writes integer columns with missing values
//! as floats).

use std::collections::BTreeSet;

use crate::columns::ColumnCounter;
use crate::config::CheckConfig;
use crate::dataset_index::DatasetIndex;
use crate::delimited::{is_blank_record, sniff_delimiter, Cell, DelimitedReader};
use crate::identifiers::{IdentifierScan, ScanSettings, ShortestPatterns, TableColumns};
use crate::input::DeclaredOutput;
use crate::json_table::{JsonCell, JsonRecordReader, JsonValueType};
use crate::report::{plural, rule_result, Position, Rule, RuleAccumulator, RuleResult, Status};
use crate::row_hash::{is_missing_marker, RowHasher};

/// What the table checks found out about a table, for the report's properties.
#[derive(Debug, Default)]
pub(crate) struct TableFacts {
    pub(crate) n_rows: u64,
    pub(crate) n_columns: u64,
    pub(crate) count_columns: Vec<String>,
}

/// The results of checking one table, in report order within each group.
#[derive(Debug)]
pub(crate) struct TableOutcome {
    pub(crate) format: RuleResult,
    pub(crate) table_rules: Vec<RuleResult>,
    pub(crate) identifier_rules: Vec<RuleResult>,
    pub(crate) facts: TableFacts,
}

/// The shared inputs of the content checks on one output.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OutputContext<'c> {
    /// The name positions carry: the path, or its withheld label.
    pub(crate) file: &'c str,
    pub(crate) declared: Option<&'c DeclaredOutput>,
    pub(crate) datasets: &'c [DatasetIndex],
    pub(crate) config: &'c CheckConfig,
}

const UTF8_BYTE_ORDER_MARK: &[u8] = b"\xEF\xBB\xBF";

/// Where the text starts after an optional UTF-8 byte-order mark (Excel writes one).
pub(crate) fn text_start(bytes: &[u8]) -> usize {
    if bytes.starts_with(UTF8_BYTE_ORDER_MARK) {
        UTF8_BYTE_ORDER_MARK.len()
    } else {
        0
    }
}

/// Checks a CSV or TSV table. `tab_separated` is set for `.tsv`; a `.csv` has its delimiter
/// sniffed (comma, semicolon or tab).
pub(crate) fn check_delimited_table(
    context: OutputContext<'_>,
    bytes: &[u8],
    tab_separated: bool,
) -> TableOutcome {
    let start = text_start(bytes);
    let delimiter = if tab_separated {
        b'\t'
    } else {
        sniff_delimiter(&bytes[start..])
    };
    let comma_is_decimal = delimiter != b',';
    let mut reader = DelimitedReader::starting_at(bytes, delimiter, start);
    let mut cells: Vec<Cell<'_>> = Vec::new();
    let mut table_checker = TableChecker::new(context, bytes, comma_is_decimal);
    let mut seen_header = false;
    let mut identifier_scan = IdentifierScan::new(
        bytes,
        context.file,
        scan_settings(context.config, comma_is_decimal),
        context.config.max_reported_positions,
    );
    let shortest_patterns = ShortestPatterns::for_max_digit_run(context.config.max_digit_run);
    while reader.next_record(&mut cells) {
        if is_blank_record(&cells) {
            continue;
        }
        if seen_header {
            table_checker.delimited_record(&cells);
        } else {
            seen_header = true;
            identifier_scan.set_table_columns(TableColumns::from_header(
                cells.iter().map(|cell| &*cell.text),
            ));
            table_checker.add_columns(cells.iter().map(|cell| &*cell.text));
            // A header is not data, but a file without one starts with a data row.
            table_checker.check_row_leakage(cells.iter().map(|cell| &*cell.text), &cells[0], 0);
        }
        for (field_index, cell) in cells.iter().enumerate() {
            if cell.may_hold_identifier(shortest_patterns) {
                identifier_scan.scan_cell(cell, field_index);
            }
        }
    }
    let is_utf8 = std::str::from_utf8(bytes).is_ok();
    let delimiter_name = match delimiter {
        b'\t' => "tab",
        b';' => "semicolon",
        _ => "comma",
    };
    let format = if !is_utf8 {
        rule_result(
            Rule::Format,
            Status::Review,
            0,
            "not valid UTF-8 text; cells were read byte by byte".to_string(),
        )
    } else if reader.saw_unterminated_quote {
        rule_result(
            Rule::Format,
            Status::Review,
            0,
            "a quoted cell is never closed, so the table may have been read wrongly".to_string(),
        )
    } else {
        rule_result(
            Rule::Format,
            Status::Pass,
            0,
            format!("read as a table separated by {delimiter_name}"),
        )
    };
    let (table_rules, facts) = if seen_header {
        table_checker.finish()
    } else {
        (empty_table_rules(), TableFacts::default())
    };
    let identifier_rules = identifier_scan.into_results();
    TableOutcome {
        format,
        table_rules,
        identifier_rules,
        facts,
    }
}

/// Checks JSON (already validated) as an array of flat records, streaming them so a large file
/// is never held twice. `None` when the JSON has another shape.
pub(crate) fn check_json_table(
    context: OutputContext<'_>,
    bytes: &[u8],
    start: usize,
) -> Option<TableOutcome> {
    let mut json_record_reader = JsonRecordReader::new(bytes, start)?;
    let mut table_checker = TableChecker::new(context, bytes, false);
    let mut record = Vec::new();
    while json_record_reader.next_record(&mut record)? {
        table_checker.add_columns(
            json_record_reader.header()[table_checker.n_columns()..]
                .iter()
                .map(|name| name.as_bytes()),
        );
        table_checker.json_record(&record);
    }
    let (table_rules, facts) = table_checker.finish();
    let format = rule_result(
        Rule::Format,
        Status::Pass,
        0,
        "read as a JSON array of flat records".to_string(),
    );
    // Keys sit next to their values in JSON, so the context window finds `"bsn": ...` without
    // column bookkeeping.
    let identifier_rules = scan_text_identifiers(context, bytes);
    Some(TableOutcome {
        format,
        table_rules,
        identifier_rules,
        facts,
    })
}

/// Runs the identifier scan over a whole text output (free text, JSON).
pub(crate) fn scan_text_identifiers(context: OutputContext<'_>, bytes: &[u8]) -> Vec<RuleResult> {
    let config = context.config;
    let mut identifier_scan = IdentifierScan::new(
        bytes,
        context.file,
        scan_settings(config, false),
        config.max_reported_positions,
    );
    identifier_scan.scan_all();
    identifier_scan.into_results()
}

fn scan_settings(config: &CheckConfig, comma_is_decimal: bool) -> ScanSettings {
    ScanSettings {
        max_digit_run: config.max_digit_run,
        context_chars: config.identifier_context_chars,
        comma_is_decimal,
    }
}

fn empty_table_rules() -> Vec<RuleResult> {
    [
        Rule::Threshold,
        Rule::Zero,
        Rule::NonInteger,
        Rule::Negative,
        Rule::RowCount,
        Rule::Leakage,
    ]
    .into_iter()
    .map(|rule| rule_result(rule, Status::Pass, 0, "the table is empty".to_string()))
    .collect()
}

/// How a count cell reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CountCell {
    /// Empty or a missing marker: a suppressed cell.
    Missing,
    /// A whole number (saturating at `u64::MAX`).
    Value(u64),
    Negative,
    NonInteger,
}

/// Reads a count cell: digits, optionally signed, optionally with an all-zero fraction.
pub(crate) fn classify_count_cell(text: &[u8], comma_is_decimal: bool) -> CountCell {
    let text = text.trim_ascii();
    if text.is_empty() {
        return CountCell::Missing;
    }
    if text.iter().all(u8::is_ascii_digit) {
        return CountCell::Value(parse_saturating(text));
    }
    if text.len() <= 4 && is_missing_marker(&text.to_ascii_lowercase()) {
        return CountCell::Missing;
    }
    let (is_negative, unsigned) = match text[0] {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let separator_index = unsigned
        .iter()
        .position(|&byte| byte == b'.' || (comma_is_decimal && byte == b','));
    let (integer_part, fraction_part) = match separator_index {
        Some(index) => (&unsigned[..index], &unsigned[index + 1..]),
        None => (unsigned, &[][..]),
    };
    let is_whole_number = !integer_part.is_empty()
        && integer_part.iter().all(u8::is_ascii_digit)
        && fraction_part.iter().all(|&byte| byte == b'0');
    if !is_whole_number {
        return CountCell::NonInteger;
    }
    match parse_saturating(integer_part) {
        0 => CountCell::Value(0),
        _ if is_negative => CountCell::Negative,
        value => CountCell::Value(value),
    }
}

fn parse_saturating(digits: &[u8]) -> u64 {
    digits.iter().fold(0u64, |value, &digit| {
        value
            .saturating_mul(10)
            .saturating_add(u64::from(digit - b'0'))
    })
}

fn normalise_column_name(name: &[u8]) -> String {
    String::from_utf8_lossy(name)
        .trim_start_matches('\u{feff}')
        .trim()
        .to_lowercase()
}

/// The table rules over one table, fed record by record.
struct TableChecker<'c> {
    context: OutputContext<'c>,
    bytes: &'c [u8],
    comma_is_decimal: bool,
    declared_count_columns: Vec<String>,
    policy_count_columns: Vec<String>,
    n_columns: usize,
    count_column_indices: Vec<usize>,
    is_count_column: Vec<bool>,
    count_column_names: Vec<String>,
    n_count_cells: u64,
    threshold: RuleAccumulator,
    zero: RuleAccumulator,
    non_integer: RuleAccumulator,
    negative: RuleAccumulator,
    leakage: RuleAccumulator,
    leaked_dataset_names: BTreeSet<String>,
    n_rows: u64,
    row_hasher: RowHasher,
    column_counter: ColumnCounter,
}

/// Where a cell is, for the report.
fn cell_position(
    file: &str,
    bytes: &[u8],
    column_counter: &mut ColumnCounter,
    cell: &Cell<'_>,
    column_index: usize,
) -> Position {
    Position {
        file: file.to_string(),
        line: cell.line as u64,
        column: column_counter.column_at(bytes, cell.line_start, cell.offset),
        field: Some(column_index as u64 + 1),
    }
}

impl<'c> TableChecker<'c> {
    fn new(
        context: OutputContext<'c>,
        bytes: &'c [u8],
        comma_is_decimal: bool,
    ) -> TableChecker<'c> {
        let config = context.config;
        let declared_count_columns = context
            .declared
            .map(|declared_output| {
                declared_output
                    .count_columns
                    .iter()
                    .map(|name| normalise_column_name(name.as_bytes()))
                    .collect()
            })
            .unwrap_or_default();
        let policy_count_columns = config
            .count_column_names
            .iter()
            .map(|name| normalise_column_name(name.as_bytes()))
            .collect();
        let max_positions = config.max_reported_positions;
        TableChecker {
            context,
            bytes,
            comma_is_decimal,
            declared_count_columns,
            policy_count_columns,
            n_columns: 0,
            count_column_indices: Vec::new(),
            is_count_column: Vec::new(),
            count_column_names: Vec::new(),
            n_count_cells: 0,
            threshold: RuleAccumulator::new(Rule::Threshold, max_positions),
            zero: RuleAccumulator::new(Rule::Zero, max_positions),
            non_integer: RuleAccumulator::new(Rule::NonInteger, max_positions),
            negative: RuleAccumulator::new(Rule::Negative, max_positions),
            leakage: RuleAccumulator::new(Rule::Leakage, max_positions),
            leaked_dataset_names: BTreeSet::new(),
            n_rows: 0,
            row_hasher: RowHasher::default(),
            column_counter: ColumnCounter::default(),
        }
    }

    fn n_columns(&self) -> usize {
        self.n_columns
    }

    /// Adds columns (a CSV header, or JSON keys as they first appear) and finds the count
    /// columns among them.
    fn add_columns<'h>(&mut self, header_names: impl Iterator<Item = &'h [u8]>) {
        for header_name in header_names {
            let column_index = self.n_columns;
            self.n_columns += 1;
            let header_name = normalise_column_name(header_name);
            // The name put in the report is the declared or policy spelling, never file text.
            let known_name = self
                .declared_count_columns
                .iter()
                .chain(&self.policy_count_columns)
                .find(|count_column_name| **count_column_name == header_name)
                .cloned();
            self.is_count_column.push(known_name.is_some());
            if let Some(known_name) = known_name {
                self.count_column_indices.push(column_index);
                self.count_column_names.push(known_name);
            }
        }
    }

    fn delimited_record(&mut self, cells: &[Cell<'_>]) {
        self.n_rows += 1;
        for count_column_position in 0..self.count_column_indices.len() {
            let column_index = self.count_column_indices[count_column_position];
            if let Some(cell) = cells.get(column_index) {
                let count_cell = classify_count_cell(&cell.text, self.comma_is_decimal);
                self.judge_count_cell(count_cell, cell, column_index);
            }
        }
        if !self.context.datasets.is_empty() {
            self.check_row_leakage(cells.iter().map(|cell| &*cell.text), &cells[0], 0);
        }
    }

    fn json_record(&mut self, record: &[(usize, JsonCell<'_>)]) {
        self.n_rows += 1;
        for (column_index, json_cell) in record {
            if !self.is_count_column[*column_index] {
                continue;
            }
            let count_cell = match json_cell.value_type {
                JsonValueType::Null => CountCell::Missing,
                JsonValueType::Bool => CountCell::NonInteger,
                JsonValueType::String | JsonValueType::Number => {
                    classify_count_cell(&json_cell.cell.text, false)
                }
            };
            self.judge_count_cell(count_cell, &json_cell.cell, *column_index);
        }
        if let Some((first_column_index, first_cell)) = record.first() {
            if !self.context.datasets.is_empty() {
                let texts = record.iter().map(|(_, json_cell)| &*json_cell.cell.text);
                self.check_row_leakage(texts, &first_cell.cell, *first_column_index);
            }
        }
    }

    fn judge_count_cell(&mut self, count_cell: CountCell, cell: &Cell<'_>, column_index: usize) {
        let config = self.context.config;
        let (file, bytes) = (self.context.file, self.bytes);
        let column_counter = &mut self.column_counter;
        let position = || cell_position(file, bytes, column_counter, cell, column_index);
        let accumulator = match count_cell {
            CountCell::Missing => return,
            CountCell::Value(0) if !config.flag_zero_cells => None,
            CountCell::Value(0) => Some(&mut self.zero),
            CountCell::Value(value) if value < config.min_cell_count => Some(&mut self.threshold),
            CountCell::Value(_) => None,
            CountCell::Negative => Some(&mut self.negative),
            CountCell::NonInteger => Some(&mut self.non_integer),
        };
        self.n_count_cells += 1;
        if let Some(accumulator) = accumulator {
            accumulator.flag(position);
        }
    }

    /// Flags the row if it, or the row without its first cell (an index column pandas writes by
    /// default), equals a row of a mounted dataset. Rows are hashed only when some dataset has
    /// rows with that many cells, so a narrow counts table never pays for hashing.
    fn check_row_leakage<'t>(
        &mut self,
        cell_texts: impl ExactSizeIterator<Item = &'t [u8]> + Clone,
        first_cell: &Cell<'_>,
        first_column_index: usize,
    ) {
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
        }
    }

    fn finish(self) -> (Vec<RuleResult>, TableFacts) {
        let row_count = self.row_count_result();
        let config = self.context.config;
        let min_cell_count = config.min_cell_count;

        let mut threshold_notes = Vec::new();
        let mut threshold_status = Status::Pass;
        if self.threshold.count > 0 {
            threshold_status = Status::Fail;
            threshold_notes.push(format!(
                "{} below {min_cell_count}",
                plural(self.threshold.count, "count cell", "count cells")
            ));
        }
        if self.count_column_indices.is_empty() {
            threshold_status = threshold_status.max(Status::Review);
            threshold_notes.push(
                "no count column declared in train.yaml or named in the policy, so cell sizes \
                 cannot be checked"
                    .to_string(),
            );
        }
        let missing_declared_count_columns: Vec<String> = self
            .declared_count_columns
            .iter()
            .filter(|declared_name| !self.count_column_names.contains(declared_name))
            .map(|declared_name| format!("`{declared_name}`"))
            .collect();
        if !missing_declared_count_columns.is_empty() {
            threshold_status = threshold_status.max(Status::Review);
            let names = missing_declared_count_columns;
            threshold_notes.push(format!(
                "declared count columns not found in the table: {}",
                names.join(", ")
            ));
        }
        if threshold_notes.is_empty() {
            threshold_notes.push(format!(
                "{} checked, none below {min_cell_count}",
                plural(self.n_count_cells, "count cell", "count cells")
            ));
        }
        let threshold = self
            .threshold
            .finish_with_status(threshold_status, threshold_notes.join("; "));

        let zero_summary = if !config.flag_zero_cells {
            "zero cells are allowed by the policy".to_string()
        } else if self.zero.count > 0 {
            format!(
                "{} zero",
                plural(self.zero.count, "count cell is", "count cells are")
            )
        } else {
            "no zero count cells".to_string()
        };
        let zero = self.zero.finish(Status::Review, zero_summary);

        let non_integer_summary = if self.non_integer.count > 0 {
            format!(
                "{} not whole numbers",
                plural(self.non_integer.count, "count cell is", "count cells are")
            )
        } else {
            "all count cells are whole numbers or empty".to_string()
        };
        let non_integer = self.non_integer.finish(Status::Review, non_integer_summary);

        let negative_summary = if self.negative.count > 0 {
            format!(
                "{} negative",
                plural(self.negative.count, "count cell is", "count cells are")
            )
        } else {
            "no negative count cells".to_string()
        };
        let negative = self.negative.finish(Status::Review, negative_summary);

        let leakage_summary = if self.context.datasets.is_empty() {
            "no dataset mounted, nothing to compare with".to_string()
        } else if self.leakage.count > 0 {
            let names: Vec<String> = self
                .leaked_dataset_names
                .iter()
                .map(|name| format!("`{name}`"))
                .collect();
            format!(
                "{} identical to rows of dataset {}",
                plural(self.leakage.count, "row", "rows"),
                names.join(", ")
            )
        } else {
            "no row identical to a row of a mounted dataset".to_string()
        };
        let leakage = self.leakage.finish(Status::Fail, leakage_summary);

        let facts = TableFacts {
            n_rows: self.n_rows,
            n_columns: self.n_columns as u64,
            count_columns: self.count_column_names,
        };
        (
            vec![threshold, zero, non_integer, negative, row_count, leakage],
            facts,
        )
    }

    fn row_count_result(&self) -> RuleResult {
        let ratio = self.context.config.row_count_ratio;
        let close_datasets: Vec<&DatasetIndex> = self
            .context
            .datasets
            .iter()
            .filter(|dataset_index| {
                !dataset_index.is_leakage_only()
                    && dataset_index.n_rows() > 0
                    && self.n_rows as f64 >= ratio * dataset_index.n_rows() as f64
            })
            .collect();
        let percentage = (ratio * 10_000.0).round() / 100.0;
        if self.context.datasets.is_empty() {
            return rule_result(
                Rule::RowCount,
                Status::Pass,
                0,
                "no dataset mounted, nothing to compare with".to_string(),
            );
        }
        if close_datasets.is_empty() {
            return rule_result(
                Rule::RowCount,
                Status::Pass,
                0,
                format!(
                    "{}, fewer than {percentage}% of the rows of every mounted dataset",
                    plural(self.n_rows, "row", "rows")
                ),
            );
        }
        let descriptions: Vec<String> = close_datasets
            .iter()
            .map(|dataset_index| {
                format!(
                    "`{}` ({} rows)",
                    dataset_index.name(),
                    dataset_index.n_rows()
                )
            })
            .collect();
        rule_result(
            Rule::RowCount,
            Status::Review,
            close_datasets.len() as u64,
            format!(
                "the table has {}, at least {percentage}% of dataset {}",
                plural(self.n_rows, "row", "rows"),
                descriptions.join(", ")
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_cells_read_as_whole_numbers_missing_or_not_counts() {
        let cases: &[(&str, bool, CountCell)] = &[
            ("12", false, CountCell::Value(12)),
            (" 12 ", false, CountCell::Value(12)),
            ("12.0", false, CountCell::Value(12)),
            ("12,00", true, CountCell::Value(12)),
            ("12,00", false, CountCell::NonInteger),
            ("+7", false, CountCell::Value(7)),
            ("-0", false, CountCell::Value(0)),
            ("-3", false, CountCell::Negative),
            ("12.5", false, CountCell::NonInteger),
            ("<10", false, CountCell::NonInteger),
            ("*", false, CountCell::NonInteger),
            ("1e3", false, CountCell::NonInteger),
            ("", false, CountCell::Missing),
            ("NA", false, CountCell::Missing),
            ("null", false, CountCell::Missing),
            ("99999999999999999999999", false, CountCell::Value(u64::MAX)),
        ];
        for &(text, comma_is_decimal, expected) in cases {
            assert_eq!(
                classify_count_cell(text.as_bytes(), comma_is_decimal),
                expected,
                "{text:?}"
            );
        }
    }
}
