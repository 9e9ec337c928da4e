//! The entry point, [`check_outputs`]: decides what each collected entry is, runs the rules that
//! apply to it and assembles the report.
//!
//! Owns the structure rules (file count, total size, paths, links and special files, allowed
//! types, declarations) and the order in which rules appear. It does not implement the table,
//! identifier or PNG rules (their modules do), nor read Parquet (`parquet_table` converts an
//! allowed `.parquet` output to CSV for the table rules), and it does no I/O: entries arrive as
//! bytes.
//!
//! What needs a human (`human-review`): free text (`.txt`), figures (every PNG: pixels can show
//! anything and nothing here reads them), JSON that is not a table, allowed types without a
//! dedicated check, and outputs declared as a model or as state (both can memorise rows).

use std::collections::{BTreeMap, HashSet};

use crate::config::CheckConfig;
use crate::dataset_index::DatasetIndex;
use crate::identifiers::{IdentifierScan, ScanSettings};
use crate::input::{find_declaration, DeclaredOutput, EntryContent, OutputEntry, OutputKind};
use crate::magnitude::{check_magnitude_table, check_model, DatasetTable};
use crate::parquet_table::parquet_to_csv;
use crate::png::{inspect_png, PNG_SIGNATURE};
use crate::report::{
    plural, rule_result, CheckReport, CollectionResult, FileEntry, OutputProperties, OutputResult,
    OutputType, ReportVersion, Rule, RuleResult, Status,
};
use crate::tables::{
    check_delimited_table, check_json_table, scan_text_identifiers, text_start, OutputContext,
    TableOutcome,
};

/// Checks every collected output of a run against the train's declarations, the mounted datasets'
/// indexes and the policy's thresholds. Never fails: anything it cannot read is a verdict.
pub fn check_outputs(
    entries: &[OutputEntry],
    declared: &[DeclaredOutput],
    datasets: &[DatasetIndex],
    config: &CheckConfig,
) -> CheckReport {
    check_outputs_with_data(entries, declared, datasets, &[], config)
}

/// [`check_outputs`], with the mounted datasets' contents for the outputs that declare
/// `aggregates`: their cells are recomputed from `tables` and judged on their contributors (a
/// declared aggregate over a dataset not in `tables` fails: it cannot be checked).
pub fn check_outputs_with_data(
    entries: &[OutputEntry],
    declared: &[DeclaredOutput],
    datasets: &[DatasetIndex],
    tables: &[DatasetTable],
    config: &CheckConfig,
) -> CheckReport {
    let data = Data { datasets, tables };
    let n_files = entries.len() as u64;
    let n_bytes: u64 = entries
        .iter()
        .map(|entry| match &entry.content {
            EntryContent::Regular(bytes) => bytes.len() as u64,
            _ => 0,
        })
        .sum();
    let mut collection = check_collection(n_files, n_bytes, config);

    let mut seen_paths = HashSet::new();
    let mut results = BTreeMap::new();
    for (entry_index, entry) in entries.iter().enumerate() {
        let is_repeated_path = !seen_paths.insert(entry.path.as_str());
        let entry_name = name_entry(entry_index, &entry.path, is_repeated_path, config);
        let output_result = check_entry(entry, entry_name, declared, data, config);
        results.insert(output_result.uid.clone(), output_result);
    }
    if let Some(run_row_count) = run_row_count(&results, datasets, config) {
        collection.status = collection.status.max(run_row_count.status);
        collection.checks.push(run_row_count);
    }

    let status = results
        .values()
        .map(|output_result: &OutputResult| output_result.status)
        .chain([collection.status])
        .max()
        .unwrap_or(Status::Pass);
    let count_with = |wanted: Status| {
        results
            .values()
            .filter(|output_result| output_result.status == wanted)
            .count()
    };
    let mut summary = format!(
        "{status}; {}: {} fail, {} review, {} pass",
        plural(results.len() as u64, "output", "outputs"),
        count_with(Status::Fail),
        count_with(Status::Review),
        count_with(Status::Pass)
    );
    for rule_result in collection
        .checks
        .iter()
        .filter(|rule_result| rule_result.status != Status::Pass)
    {
        summary.push_str(&format!("; {}: {}", rule_result.rule, rule_result.summary));
    }
    CheckReport {
        version: ReportVersion,
        status,
        summary,
        collection,
        results,
    }
}

fn check_collection(n_files: u64, n_bytes: u64, config: &CheckConfig) -> CollectionResult {
    let max_files = config.max_files as u64;
    let file_count = if n_files > max_files {
        rule_result(
            Rule::FileCount,
            Status::Fail,
            n_files - max_files,
            format!("{n_files} files, more than the {max_files} allowed"),
        )
    } else {
        rule_result(
            Rule::FileCount,
            Status::Pass,
            0,
            format!("{n_files} files, within the limit of {max_files}"),
        )
    };
    let total_size = if n_bytes > config.max_total_bytes {
        rule_result(
            Rule::TotalSize,
            Status::Fail,
            1,
            format!(
                "{n_bytes} bytes, more than the {} allowed",
                config.max_total_bytes
            ),
        )
    } else {
        rule_result(
            Rule::TotalSize,
            Status::Pass,
            0,
            format!(
                "{n_bytes} bytes, within the limit of {}",
                config.max_total_bytes
            ),
        )
    };
    let checks = vec![file_count, total_size];
    let status = checks
        .iter()
        .map(|rule_result| rule_result.status)
        .max()
        .unwrap_or(Status::Pass);
    CollectionResult {
        status,
        n_files,
        n_bytes,
        checks,
    }
}

/// The row-count rule over the whole run: a dataset split over several tables, each shorter than
/// the rule's share, is still as long as the dataset together. `None` when no dataset is mounted
/// that outputs could be a copy of by size.
fn run_row_count(
    results: &BTreeMap<String, OutputResult>,
    datasets: &[DatasetIndex],
    config: &CheckConfig,
) -> Option<RuleResult> {
    let comparable: Vec<&DatasetIndex> = datasets
        .iter()
        .filter(|dataset_index| !dataset_index.is_leakage_only() && dataset_index.n_rows() > 0)
        .collect();
    if comparable.is_empty() {
        return None;
    }
    let table_rows: Vec<u64> = results
        .values()
        .filter_map(|output_result| output_result.properties.n_rows)
        .collect();
    let n_rows: u64 = table_rows.iter().sum();
    let ratio = config.row_count_ratio;
    let percentage = (ratio * 10_000.0).round() / 100.0;
    let close: Vec<String> = comparable
        .iter()
        .filter(|dataset_index| n_rows as f64 >= ratio * dataset_index.n_rows() as f64)
        .map(|dataset_index| {
            format!(
                "`{}` ({} rows)",
                dataset_index.name(),
                dataset_index.n_rows()
            )
        })
        .collect();
    let tables = plural(table_rows.len() as u64, "table", "tables");
    Some(if table_rows.len() < 2 {
        rule_result(
            Rule::RowCount,
            Status::Pass,
            0,
            format!("{tables}, judged on its own"),
        )
    } else if close.is_empty() {
        rule_result(
            Rule::RowCount,
            Status::Pass,
            0,
            format!(
                "{} in {tables} together, fewer than {percentage}% of the rows of every \
                 mounted dataset",
                plural(n_rows, "row", "rows")
            ),
        )
    } else {
        rule_result(
            Rule::RowCount,
            Status::Review,
            close.len() as u64,
            format!(
                "the run's {tables} have {} together, at least {percentage}% of dataset {}",
                plural(n_rows, "row", "rows"),
                close.join(", ")
            ),
        )
    })
}

/// How an entry is named in the report, and the verdicts on its path and name.
struct EntryName {
    label: String,
    path_rule: RuleResult,
    file_name_rule: RuleResult,
}

fn name_entry(
    entry_index: usize,
    path: &str,
    is_repeated_path: bool,
    config: &CheckConfig,
) -> EntryName {
    let has_control_characters = path.chars().any(char::is_control);
    let segments: Vec<&str> = path.split('/').collect();
    let path_problem = if path.is_empty() {
        Some("the path is empty")
    } else if path.starts_with('/') {
        Some("the path is absolute")
    } else if segments.contains(&"..") {
        Some("the path leaves /output")
    } else if segments
        .iter()
        .any(|segment| segment.is_empty() || *segment == ".")
    {
        Some("the path has empty or `.` segments")
    } else if has_control_characters {
        Some("the path has control characters")
    } else if path.contains('\\') {
        Some("the path has a backslash")
    } else if is_repeated_path {
        Some("the path occurs more than once")
    } else {
        None
    };
    let path_rule = match path_problem {
        Some(problem) => rule_result(Rule::Path, Status::Fail, 1, problem.to_string()),
        None => rule_result(
            Rule::Path,
            Status::Pass,
            0,
            "a plain relative path".to_string(),
        ),
    };

    // A train can smuggle a value out in a file name as easily as in a file.
    let settings = ScanSettings {
        max_digit_run: config.max_digit_run,
        context_chars: config.identifier_context_chars,
        comma_is_decimal: false,
    };
    let mut identifier_scan = IdentifierScan::new(path.as_bytes(), "", settings, 0);
    identifier_scan.scan_all();
    let flagged: Vec<RuleResult> = identifier_scan
        .into_results()
        .into_iter()
        .filter(|rule_result| rule_result.count > 0)
        .collect();
    let name_status = flagged.iter().map(|rule_result| rule_result.status).max();
    let file_name_rule = match name_status {
        Some(status) => {
            let rule_names: Vec<&str> = flagged
                .iter()
                .map(|rule_result| rule_result.rule.as_str())
                .collect();
            rule_result(
                Rule::FileName,
                status,
                flagged.iter().map(|rule_result| rule_result.count).sum(),
                format!(
                    "the file name holds a possible identifier ({}); the name is withheld from \
                     this report",
                    rule_names.join(", ")
                ),
            )
        }
        None => rule_result(
            Rule::FileName,
            Status::Pass,
            0,
            "no identifier in the file name".to_string(),
        ),
    };

    // Withheld names stay out of the report entirely; control characters could also drive the
    // operator's terminal when the text summary is printed.
    let label = if name_status.is_some() || has_control_characters {
        format!("file-name-withheld-{}", entry_index + 1)
    } else if is_repeated_path {
        format!("{path}#{}", entry_index + 1)
    } else {
        path.to_string()
    };
    EntryName {
        label,
        path_rule,
        file_name_rule,
    }
}

/// The verdicts on one output as they accumulate.
struct OutputCheck {
    checks: Vec<RuleResult>,
    properties: OutputProperties,
    output_type: OutputType,
    human_review_reasons: Vec<String>,
}

/// `text` if it is short plain ASCII, otherwise `fallback`: a report never carries control
/// characters or long text from an entry's description.
fn plain_or<'a>(text: &'a str, fallback: &'a str) -> &'a str {
    let plain = text.len() <= 80
        && text
            .bytes()
            .all(|byte| byte.is_ascii_graphic() || byte == b' ');
    if plain {
        text
    } else {
        fallback
    }
}

/// What the checks know of the mounted datasets: their row indexes and, for magnitude tables,
/// their contents.
#[derive(Clone, Copy)]
struct Data<'d> {
    datasets: &'d [DatasetIndex],
    tables: &'d [DatasetTable],
}

impl Data<'_> {
    /// Each dataset's data rows (its files together), by name.
    fn dataset_rows(&self) -> Vec<(String, u64)> {
        let mut rows: BTreeMap<String, u64> = BTreeMap::new();
        for dataset_index in self
            .datasets
            .iter()
            .filter(|dataset_index| !dataset_index.is_leakage_only())
        {
            *rows.entry(dataset_index.name().to_string()).or_default() += dataset_index.n_rows();
        }
        rows.into_iter().collect()
    }
}

fn check_entry(
    entry: &OutputEntry,
    entry_name: EntryName,
    declared: &[DeclaredOutput],
    data: Data<'_>,
    config: &CheckConfig,
) -> OutputResult {
    let mut output_check = OutputCheck {
        checks: vec![entry_name.path_rule, entry_name.file_name_rule],
        properties: OutputProperties::default(),
        output_type: OutputType::Custom,
        human_review_reasons: Vec::new(),
    };
    let label = entry_name.label;
    match &entry.content {
        EntryContent::Symlink { .. } => {
            output_check.properties.format = "symlink".to_string();
            output_check.checks.push(rule_result(
                Rule::RegularFile,
                Status::Fail,
                1,
                "a symbolic link; links are never followed or released".to_string(),
            ));
        }
        EntryContent::NotCollected { reason } => {
            output_check.properties.format = "not collected".to_string();
            output_check.checks.push(rule_result(
                Rule::RegularFile,
                Status::Fail,
                1,
                format!(
                    "not collected: {}",
                    plain_or(reason, "refused by the collector")
                ),
            ));
        }
        EntryContent::Special { description } => {
            output_check.properties.format = "special".to_string();
            let is_plain_description = description.len() <= 40
                && description
                    .bytes()
                    .all(|byte| byte.is_ascii_graphic() || byte == b' ');
            let summary = if is_plain_description {
                format!("a special file ({description}); only regular files are released")
            } else {
                "a special file; only regular files are released".to_string()
            };
            output_check
                .checks
                .push(rule_result(Rule::RegularFile, Status::Fail, 1, summary));
        }
        EntryContent::Regular(bytes) => {
            output_check.properties.n_bytes = bytes.len() as u64;
            output_check.checks.push(rule_result(
                Rule::RegularFile,
                Status::Pass,
                0,
                "a regular file".to_string(),
            ));
            check_regular_file(
                &mut output_check,
                &label,
                &entry.path,
                bytes,
                declared,
                data,
                config,
            );
        }
    }

    let status = output_check
        .checks
        .iter()
        .map(|rule_result| rule_result.status)
        .max()
        .unwrap_or(Status::Pass);
    let flagged: Vec<String> = output_check
        .checks
        .iter()
        .filter(|rule_result| rule_result.status != Status::Pass)
        .map(|rule_result| format!("{}: {}", rule_result.rule, rule_result.summary))
        .collect();
    let summary = if flagged.is_empty() {
        status.to_string()
    } else {
        format!("{status}; {}", flagged.join("; "))
    };
    OutputResult {
        uid: label.clone(),
        status,
        output_type: output_check.output_type,
        files: vec![FileEntry {
            name: label,
            n_bytes: output_check.properties.n_bytes,
        }],
        properties: output_check.properties,
        checks: output_check.checks,
        summary,
        comments: Vec::new(),
        exception: String::new(),
    }
}

fn check_regular_file(
    output_check: &mut OutputCheck,
    label: &str,
    path: &str,
    bytes: &[u8],
    declared: &[DeclaredOutput],
    data: Data<'_>,
    config: &CheckConfig,
) {
    let datasets = data.datasets;
    let extension = extension_of(path);
    let declaration = find_declaration(declared, path);
    output_check.properties.declared_kind = declaration.map(|declared_output| declared_output.kind);
    let declared_type = declaration.map(|declared_output| OutputType::from(declared_output.kind));
    output_check.output_type = declared_type.unwrap_or(OutputType::Custom);
    output_check.properties.format = match extension.as_str() {
        "csv" | "tsv" | "json" | "txt" | "png" | "parquet" => extension.clone(),
        _ => "other".to_string(),
    };
    let shown_extension = if is_safe_to_show(&extension) {
        format!("`.{extension}`")
    } else {
        "this extension".to_string()
    };

    let is_allowed = config.allowed_extensions.iter().any(|allowed| {
        allowed
            .trim_start_matches('.')
            .eq_ignore_ascii_case(&extension)
    });
    if !is_allowed {
        output_check.checks.push(rule_result(
            Rule::FileType,
            Status::Fail,
            1,
            format!(
                "{shown_extension} is not an allowed file type (allowed: {})",
                config.allowed_extensions.join(", ")
            ),
        ));
        return;
    }
    if extension == "png" && !bytes.starts_with(PNG_SIGNATURE) {
        output_check.checks.push(rule_result(
            Rule::FileType,
            Status::Fail,
            1,
            "named `.png` but does not start with the PNG signature".to_string(),
        ));
        return;
    }
    output_check.checks.push(rule_result(
        Rule::FileType,
        Status::Pass,
        0,
        format!("{shown_extension} is an allowed file type"),
    ));

    output_check.checks.push(match declaration {
        Some(declared_output) => rule_result(
            Rule::Undeclared,
            Status::Pass,
            0,
            format!(
                "declared in train.yaml as {}",
                kind_name(declared_output.kind)
            ),
        ),
        None if config.review_undeclared_outputs => rule_result(
            Rule::Undeclared,
            Status::Review,
            1,
            "no output in train.yaml declares this file".to_string(),
        ),
        None => rule_result(
            Rule::Undeclared,
            Status::Pass,
            0,
            "not declared in train.yaml; the policy does not flag undeclared outputs".to_string(),
        ),
    });
    match declaration.map(|declared_output| declared_output.kind) {
        Some(OutputKind::Model) => output_check
            .human_review_reasons
            .push("declared as a model, which can memorise rows of the data".to_string()),
        Some(OutputKind::State) => output_check.human_review_reasons.push(
            "declared as state for the next station, which can carry rows of the data".to_string(),
        ),
        _ => {}
    }

    let output_context = OutputContext {
        file: label,
        declared: declaration,
        datasets,
        config,
    };
    match extension.as_str() {
        "csv" | "tsv" => {
            let table_outcome = check_delimited_table(output_context, bytes, extension == "tsv");
            add_table_outcome(output_check, table_outcome, declared_type);
        }
        "json" => check_json(output_check, output_context, bytes, declared_type),
        "parquet" => check_parquet(output_check, output_context, bytes, declared_type),
        "txt" => {
            add_text_format(output_check, bytes);
            output_check
                .checks
                .extend(scan_text_identifiers(output_context, bytes));
            output_check.output_type = declared_type.unwrap_or(OutputType::Text);
            output_check
                .human_review_reasons
                .push("free text cannot be checked automatically".to_string());
        }
        "png" => {
            output_check.output_type = declared_type.unwrap_or(OutputType::Figure);
            check_png(output_check, bytes);
        }
        _ => {
            if looks_like_text(bytes) {
                add_text_format(output_check, bytes);
                output_check
                    .checks
                    .extend(scan_text_identifiers(output_context, bytes));
            } else {
                output_check.checks.push(rule_result(
                    Rule::Format,
                    Status::Pass,
                    0,
                    "binary content, not scanned for identifiers".to_string(),
                ));
            }
            output_check.human_review_reasons.push(format!(
                "no automatic check exists for {shown_extension} files"
            ));
        }
    }

    if let Some(declared_output) = declaration {
        check_declared_sizes(
            output_check,
            label,
            &extension,
            bytes,
            declared_output,
            data,
            config,
        );
    }

    let human_review = if output_check.human_review_reasons.is_empty() {
        rule_result(
            Rule::HumanReview,
            Status::Pass,
            0,
            "fully checked automatically".to_string(),
        )
    } else {
        rule_result(
            Rule::HumanReview,
            Status::Review,
            output_check.human_review_reasons.len() as u64,
            output_check.human_review_reasons.join("; "),
        )
    };
    output_check.checks.push(human_review);
}

/// The rules on what an output declares about its own size: a magnitude table's cells
/// recomputed from the dataset, a model's degrees of freedom.
fn check_declared_sizes(
    output_check: &mut OutputCheck,
    label: &str,
    extension: &str,
    bytes: &[u8],
    declared_output: &DeclaredOutput,
    data: Data<'_>,
    config: &CheckConfig,
) {
    if let Some(aggregates) = &declared_output.aggregates {
        let csv;
        let table = match extension {
            "csv" | "tsv" => Some(bytes),
            "parquet" => match parquet_to_csv(bytes) {
                Ok(converted) => {
                    csv = converted;
                    Some(csv.as_slice())
                }
                // The table rules above already failed it as unreadable.
                Err(_) => None,
            },
            _ => None,
        };
        match table {
            Some(table) => output_check.checks.extend(check_magnitude_table(
                label,
                table,
                aggregates,
                data.tables,
                config,
            )),
            None => output_check.checks.push(rule_result(
                Rule::Aggregate,
                Status::Fail,
                1,
                "declares aggregates, which are recomputed only for CSV, TSV and Parquet tables"
                    .to_string(),
            )),
        }
    }
    if let Some(model) = &declared_output.model {
        output_check
            .checks
            .push(check_model(model, &data.dataset_rows(), config));
    }
}

fn add_table_outcome(
    output_check: &mut OutputCheck,
    table_outcome: TableOutcome,
    declared_type: Option<OutputType>,
) {
    output_check.output_type = declared_type.unwrap_or(OutputType::Table);
    output_check.properties.n_rows = Some(table_outcome.facts.n_rows);
    output_check.properties.n_columns = Some(table_outcome.facts.n_columns);
    output_check.properties.count_columns = table_outcome.facts.count_columns;
    output_check.checks.push(table_outcome.format);
    output_check.checks.extend(table_outcome.table_rules);
    output_check.checks.extend(table_outcome.identifier_rules);
}

fn check_json(
    output_check: &mut OutputCheck,
    output_context: OutputContext<'_>,
    bytes: &[u8],
    declared_type: Option<OutputType>,
) {
    let start = text_start(bytes);
    if serde_json::from_slice::<serde::de::IgnoredAny>(&bytes[start..]).is_err() {
        output_check.checks.push(rule_result(
            Rule::Format,
            Status::Review,
            0,
            "not valid JSON; scanned as free text".to_string(),
        ));
        output_check
            .checks
            .extend(scan_text_identifiers(output_context, bytes));
        output_check
            .human_review_reasons
            .push("invalid JSON cannot be checked as a table".to_string());
        return;
    }
    match check_json_table(output_context, bytes, start) {
        Some(table_outcome) => add_table_outcome(output_check, table_outcome, declared_type),
        None => {
            output_check.checks.push(rule_result(
                Rule::Format,
                Status::Pass,
                0,
                "valid JSON, but not an array of flat records".to_string(),
            ));
            output_check
                .checks
                .extend(scan_text_identifiers(output_context, bytes));
            output_check.human_review_reasons.push(
                "JSON that is not an array of flat records cannot be checked as a table"
                    .to_string(),
            );
        }
    }
}

/// Parquet is converted to CSV and checked by the same table rules as a CSV output, so it can
/// hide neither a small cell nor a dataset's rows where a CSV could not.
fn check_parquet(
    output_check: &mut OutputCheck,
    output_context: OutputContext<'_>,
    bytes: &[u8],
    declared_type: Option<OutputType>,
) {
    match parquet_to_csv(bytes) {
        Ok(csv) => {
            let mut table_outcome = check_delimited_table(output_context, &csv, false);
            if table_outcome.format.status == Status::Pass {
                table_outcome.format.summary = "read as Parquet and checked as a table; \
                    positions are lines and columns of the table converted to CSV (line 1 is \
                    the header, line 2 the first row)"
                    .to_string();
            }
            add_table_outcome(output_check, table_outcome, declared_type);
        }
        Err(error) => {
            output_check.output_type = declared_type.unwrap_or(OutputType::Table);
            // The train chose the column names and could spell data in them.
            output_check.checks.push(rule_result(
                Rule::Format,
                Status::Fail,
                1,
                error.without_column_names().to_string(),
            ));
        }
    }
}

fn check_png(output_check: &mut OutputCheck, bytes: &[u8]) {
    let png_facts = inspect_png(bytes);
    let png_structure = if let Some(problem) = png_facts.structure_problem {
        rule_result(Rule::PngStructure, Status::Fail, 1, problem.to_string())
    } else if png_facts.n_trailing_bytes > 0 {
        rule_result(
            Rule::PngStructure,
            Status::Fail,
            1,
            format!(
                "{} after the end of the image, where data can hide",
                plural(png_facts.n_trailing_bytes, "byte", "bytes")
            ),
        )
    } else {
        rule_result(
            Rule::PngStructure,
            Status::Pass,
            0,
            format!(
                "{}, nothing after the image end",
                plural(png_facts.n_chunks, "chunk", "chunks")
            ),
        )
    };
    output_check.checks.push(png_structure);
    let mut reason = "figures need a human eye: nothing here reads pixels".to_string();
    if png_facts.n_text_chunks > 0 {
        reason.push_str(&format!(
            ", and this one carries {} that image viewers do not show",
            plural(png_facts.n_text_chunks, "text chunk", "text chunks")
        ));
    }
    output_check.human_review_reasons.push(reason);
}

fn add_text_format(output_check: &mut OutputCheck, bytes: &[u8]) {
    let format = if std::str::from_utf8(bytes).is_ok() {
        rule_result(Rule::Format, Status::Pass, 0, "UTF-8 text".to_string())
    } else {
        rule_result(
            Rule::Format,
            Status::Review,
            0,
            "not valid UTF-8 text; scanned byte by byte".to_string(),
        )
    };
    output_check.checks.push(format);
}

/// Text enough to scan: valid UTF-8 without NUL bytes.
fn looks_like_text(bytes: &[u8]) -> bool {
    !bytes.contains(&0) && std::str::from_utf8(bytes).is_ok()
}

/// The lower-case extension of the last path segment; empty for none or a leading-dot name.
fn extension_of(path: &str) -> String {
    let file_name = path.rsplit('/').next().unwrap_or(path);
    match file_name.rsplit_once('.') {
        Some((stem, extension)) if !stem.is_empty() => extension.to_ascii_lowercase(),
        _ => String::new(),
    }
}

/// An extension is echoed in the report only when it cannot carry a value: short, alphanumeric,
/// and not all digits.
fn is_safe_to_show(extension: &str) -> bool {
    !extension.is_empty()
        && extension.len() <= 8
        && extension.bytes().all(|byte| byte.is_ascii_alphanumeric())
        && !extension.bytes().all(|byte| byte.is_ascii_digit())
}

fn kind_name(kind: OutputKind) -> &'static str {
    match kind {
        OutputKind::Table => "a table",
        OutputKind::Figure => "a figure",
        OutputKind::Text => "text",
        OutputKind::Model => "a model",
        OutputKind::State => "state",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_are_lower_case_last_suffixes() {
        assert_eq!(extension_of("tables/Counts.CSV"), "csv");
        assert_eq!(extension_of("archive.tar.gz"), "gz");
        assert_eq!(extension_of(".hidden"), "");
        assert_eq!(extension_of("dir.d/noext"), "");
    }
}
