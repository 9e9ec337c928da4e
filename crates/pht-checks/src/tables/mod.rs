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

mod counts;
mod leakage;

pub(crate) use counts::{classify_count_cell, is_suppression_marker, CountCell};

use std::collections::BTreeSet;

use crate::columns::ColumnCounter;
use crate::config::CheckConfig;
use crate::count_columns::{
    classify_columns, classify_header, ColumnRole, ColumnTally, CountColumn, CountColumnSource,
    CountFindings, NameClass,
};
use crate::dataset_index::DatasetIndex;
use crate::delimited::{is_blank_record, sniff_delimiter, Cell, DelimitedReader};
use crate::identifiers::{IdentifierScan, ScanSettings, ShortestPatterns, TableColumns};
use crate::input::DeclaredOutput;
use crate::json_table::{JsonCell, JsonRecordReader, JsonValueType};
use crate::quasi_identifiers::{value_hash, OutputRows};
use crate::report::{plural, rule_result, Position, Rule, RuleAccumulator, RuleResult, Status};
use crate::row_hash::{normalise_cell, RowHasher};
use counts::{describe_count_columns, normalise_column_name};
use leakage::leakage_result;

/// What the table checks found out about a table, for the report's properties.
#[derive(Debug, Default)]
pub(crate) struct TableFacts {
    pub(crate) n_rows: u64,
    pub(crate) n_columns: u64,
    pub(crate) count_columns: Vec<CountColumn>,
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

/// Whether a count cell holds no count: empty, a missing marker, or the policy's suppression
/// marker (`<=7` by default).
pub(crate) fn is_suppressed_count(text: &[u8], suppress_at_or_below: u64) -> bool {
    counts::is_suppression_marker(text, suppress_at_or_below)
        || matches!(
            counts::classify_count_cell(text, false),
            counts::CountCell::Missing
        )
}

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

/// The table rules over one table, fed record by record.
struct TableChecker<'c> {
    context: OutputContext<'c>,
    bytes: &'c [u8],
    comma_is_decimal: bool,
    declared_count_columns: Vec<String>,
    policy_count_columns: Vec<String>,
    /// The value column of a declared magnitude table, normalised like a header.
    magnitude_value_column: Option<String>,
    /// One per column, in column order.
    tallies: Vec<ColumnTally>,
    /// The columns whose cells are still looked at: known count columns and columns that have
    /// held only whole numbers so far.
    active_columns: Vec<usize>,
    leakage: RuleAccumulator,
    leaked_dataset_names: BTreeSet<String>,
    /// Data rows (0-based) found identical to a dataset row, ascending.
    identical_rows: Vec<usize>,
    /// Normalised header names, for the quasi-identifier rule's tie-break only.
    column_names: Vec<String>,
    /// Value hashes of the data rows, kept only when a dataset is mounted.
    output_rows: OutputRows,
    /// Where each data row starts (its first cell), for positions of rows found later.
    row_places: Vec<RowPlace>,
    normalised_cell: Vec<u8>,
    n_rows: u64,
    row_hasher: RowHasher,
    column_counter: ColumnCounter,
}

/// Where a data row's first cell is.
#[derive(Debug, Clone, Copy)]
struct RowPlace {
    line: usize,
    line_start: usize,
    offset: usize,
    column_index: usize,
}

impl RowPlace {
    fn of(cell: &Cell<'_>, column_index: usize) -> RowPlace {
        RowPlace {
            line: cell.line,
            line_start: cell.line_start,
            offset: cell.offset,
            column_index,
        }
    }
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
        let magnitude_value_column = context
            .declared
            .and_then(|declared_output| declared_output.aggregates.as_ref())
            .map(|aggregates| {
                let name = aggregates
                    .value_column
                    .as_deref()
                    .unwrap_or(&aggregates.column);
                normalise_column_name(name.as_bytes())
            });
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
            magnitude_value_column,
            tallies: Vec::new(),
            active_columns: Vec::new(),
            leakage: RuleAccumulator::new(Rule::Leakage, max_positions),
            leaked_dataset_names: BTreeSet::new(),
            identical_rows: Vec::new(),
            column_names: Vec::new(),
            output_rows: OutputRows::default(),
            row_places: Vec::new(),
            normalised_cell: Vec::new(),
            n_rows: 0,
            row_hasher: RowHasher::default(),
            column_counter: ColumnCounter::default(),
        }
    }

    /// The limit in the policy's own suppression marker (`<=7`).
    fn suppression_limit(&self) -> u64 {
        self.context.config.rounding.suppress_at_or_below
    }

    fn n_columns(&self) -> usize {
        self.tallies.len()
    }

    /// Adds columns (a CSV header, or JSON keys as they first appear) and reads what their
    /// names say.
    fn add_columns<'h>(&mut self, header_names: impl Iterator<Item = &'h [u8]>) {
        let max_positions = self.context.config.max_reported_positions;
        for raw_header in header_names {
            let column_index = self.tallies.len();
            let header_name = normalise_column_name(raw_header);
            // The name put in the report is the declared or policy spelling, never file text.
            let known = if self.declared_count_columns.contains(&header_name) {
                Some((header_name.clone(), CountColumnSource::Declared))
            } else if self.policy_count_columns.contains(&header_name) {
                Some((header_name.clone(), CountColumnSource::Policy))
            } else {
                None
            };
            let is_magnitude_value = self.magnitude_value_column.as_ref() == Some(&header_name);
            let name_class = if is_magnitude_value && known.is_none() {
                NameClass::Magnitude
            } else {
                classify_header(&String::from_utf8_lossy(raw_header))
            };
            self.tallies
                .push(ColumnTally::new(name_class, known, max_positions));
            self.column_names.push(header_name);
            self.active_columns.push(column_index);
        }
    }

    fn delimited_record(&mut self, cells: &[Cell<'_>]) {
        let row_index = self.n_rows;
        self.n_rows += 1;
        let mut any_inactive = false;
        for active_position in 0..self.active_columns.len() {
            let column_index = self.active_columns[active_position];
            match cells.get(column_index) {
                Some(cell) => {
                    let count_cell = if is_suppression_marker(&cell.text, self.suppression_limit())
                    {
                        CountCell::Missing
                    } else {
                        classify_count_cell(&cell.text, self.comma_is_decimal)
                    };
                    self.judge_count_cell(count_cell, cell, column_index, row_index);
                }
                None => self.tallies[column_index].add_missing(),
            }
            any_inactive |= !self.tallies[column_index].is_active();
        }
        if any_inactive {
            self.drop_inactive_columns();
        }
        if !self.context.datasets.is_empty() {
            if self.check_row_leakage(cells.iter().map(|cell| &*cell.text), &cells[0], 0) {
                self.identical_rows.push(row_index as usize);
            }
            self.keep_row_values(
                cells.iter().map(|cell| &*cell.text),
                RowPlace::of(&cells[0], 0),
            );
        }
    }

    /// Keeps a data row's value hashes for the quasi-identifier rule at the end of the table.
    fn keep_row_values<'t>(
        &mut self,
        cell_texts: impl Iterator<Item = &'t [u8]>,
        row_place: RowPlace,
    ) {
        let comma_is_decimal = self.comma_is_decimal;
        let normalised_cell = &mut self.normalised_cell;
        self.output_rows.push_row(cell_texts.map(|text| {
            normalised_cell.clear();
            normalise_cell(text, comma_is_decimal, normalised_cell);
            value_hash(normalised_cell)
        }));
        self.row_places.push(row_place);
    }

    fn drop_inactive_columns(&mut self) {
        let tallies = &self.tallies;
        self.active_columns
            .retain(|&column_index| tallies[column_index].is_active());
    }

    fn json_record(&mut self, record: &[(usize, JsonCell<'_>)]) {
        let row_index = self.n_rows;
        self.n_rows += 1;
        let mut any_inactive = false;
        for (column_index, json_cell) in record {
            if !self.tallies[*column_index].is_active() {
                continue;
            }
            let count_cell = match json_cell.value_type {
                JsonValueType::Null => CountCell::Missing,
                JsonValueType::Bool => CountCell::NonInteger,
                JsonValueType::String
                    if is_suppression_marker(&json_cell.cell.text, self.suppression_limit()) =>
                {
                    CountCell::Missing
                }
                JsonValueType::String | JsonValueType::Number => {
                    classify_count_cell(&json_cell.cell.text, false)
                }
            };
            self.judge_count_cell(count_cell, &json_cell.cell, *column_index, row_index);
            any_inactive |= !self.tallies[*column_index].is_active();
        }
        if any_inactive {
            self.drop_inactive_columns();
        }
        if let Some((first_column_index, first_cell)) = record.first() {
            if !self.context.datasets.is_empty() {
                let texts = record.iter().map(|(_, json_cell)| &*json_cell.cell.text);
                if self.check_row_leakage(texts, &first_cell.cell, *first_column_index) {
                    self.identical_rows.push(row_index as usize);
                }
                // Cells by column, so a record's keys in any order line up.
                let width = record
                    .iter()
                    .map(|(column_index, _)| column_index + 1)
                    .max()
                    .unwrap_or(0);
                let mut texts: Vec<&[u8]> = vec![&[]; width];
                for (column_index, json_cell) in record {
                    texts[*column_index] = &json_cell.cell.text;
                }
                let row_place = RowPlace::of(&first_cell.cell, *first_column_index);
                self.keep_row_values(texts.into_iter(), row_place);
            }
        }
    }

    fn finish(mut self) -> (Vec<RuleResult>, TableFacts) {
        let row_count = self.row_count_result();
        let config = self.context.config;
        let min_cell_count = config.min_cell_count;
        let roles = classify_columns(&self.tallies);
        let is_count_column: Vec<bool> = roles
            .iter()
            .map(|role| matches!(role, ColumnRole::Count(..)))
            .collect();
        let quasi_identifier_outcome = self.compare_quasi_identifiers(&is_count_column);
        let mut count_columns = Vec::new();
        let mut unclassified_fields = Vec::new();
        let mut findings = CountFindings::new(config.max_reported_positions);
        let n_columns = self.tallies.len() as u64;
        for (column_index, (tally, role)) in self.tallies.into_iter().zip(roles).enumerate() {
            let field = column_index as u64 + 1;
            match role {
                ColumnRole::Count(source, name) => {
                    count_columns.push(CountColumn {
                        field,
                        name,
                        source,
                    });
                    findings.merge(tally.findings);
                }
                ColumnRole::Unclassified => unclassified_fields.push(field),
                ColumnRole::NotCount => {}
            }
        }

        let mut threshold_notes = Vec::new();
        let mut threshold_status = Status::Pass;
        if findings.threshold.count > 0 {
            threshold_status = Status::Fail;
            threshold_notes.push(format!(
                "{} below {min_cell_count}",
                plural(findings.threshold.count, "count cell", "count cells")
            ));
        }
        let is_magnitude_table = self.magnitude_value_column.is_some();
        if count_columns.is_empty() && unclassified_fields.is_empty() && is_magnitude_table {
            threshold_notes.push(
                "a magnitude table: its cells are judged on the contributors the station \
                 recomputed from the dataset (below)"
                    .to_string(),
            );
        } else if count_columns.is_empty() && unclassified_fields.is_empty() {
            threshold_status = threshold_status.max(Status::Review);
            threshold_notes.push(
                "no count column declared, named in the policy or recognised by name or shape, \
                 so cell sizes cannot be checked"
                    .to_string(),
            );
        }
        if !unclassified_fields.is_empty() {
            threshold_status = threshold_status.max(Status::Review);
            let fields: Vec<String> = unclassified_fields.iter().map(u64::to_string).collect();
            threshold_notes.push(format!(
                "whole numbers in {} {} could not be classified as counts or keys (no \
                 categorical column beside them); declare count columns in train.yaml, or a \
                 reviewer decides",
                if fields.len() == 1 { "field" } else { "fields" },
                fields.join(", ")
            ));
        }
        let missing_declared_count_columns: Vec<String> = self
            .declared_count_columns
            .iter()
            .filter(|declared_name| {
                !count_columns.iter().any(|count_column| {
                    count_column.source == CountColumnSource::Declared
                        && count_column.name.as_ref() == Some(*declared_name)
                })
            })
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
                "{} checked in {}, none below {min_cell_count}",
                plural(findings.n_count_cells, "count cell", "count cells"),
                describe_count_columns(&count_columns)
            ));
        } else if !count_columns.is_empty() {
            threshold_notes.push(describe_count_columns(&count_columns));
        }
        let threshold = findings
            .threshold
            .finish_with_status(threshold_status, threshold_notes.join("; "));

        let zero_summary = if !config.flag_zero_cells {
            "zero cells are allowed by the policy".to_string()
        } else if findings.zero.count > 0 {
            format!(
                "{} zero",
                plural(findings.zero.count, "count cell is", "count cells are")
            )
        } else {
            "no zero count cells".to_string()
        };
        let zero = findings.zero.finish(Status::Review, zero_summary);

        let non_integer_summary = if findings.non_integer.count > 0 {
            format!(
                "{} not whole numbers",
                plural(
                    findings.non_integer.count,
                    "count cell is",
                    "count cells are"
                )
            )
        } else {
            "all count cells are whole numbers or empty".to_string()
        };
        let non_integer = findings
            .non_integer
            .finish(Status::Review, non_integer_summary);

        let negative_summary = if findings.negative.count > 0 {
            format!(
                "{} negative",
                plural(findings.negative.count, "count cell is", "count cells are")
            )
        } else {
            "no negative count cells".to_string()
        };
        let negative = findings.negative.finish(Status::Review, negative_summary);

        let leakage = leakage_result(
            self.leakage,
            &self.leaked_dataset_names,
            self.context.datasets.is_empty(),
            quasi_identifier_outcome,
        );

        let facts = TableFacts {
            n_rows: self.n_rows,
            n_columns,
            count_columns,
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
