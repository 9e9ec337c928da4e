//! Safe rounding as a remedy: a count table that fails only on small cells is released as a
//! transformed copy, the way OpenSAFELY asks researchers to release counts.
//!
//! Owns the transformation ([`suppress_and_round`]): every count at or below the suppression
//! limit (default 7, zeros included) becomes the marker `<=LIMIT`, every other count is rounded
//! to the nearest multiple of the base (default 5, halves up), and rows whose key says they are
//! a total (`total`, `all`, `totaal`, `overall`, …) get the sum of the rounded cells above them
//! in that column (suppressed cells count as nothing). Everything else in the file is kept byte
//! for byte. The changes are listed by position and kind, never with the original value. When
//! to apply it, and keeping the original from leaving, belong to the station.

use serde::{Deserialize, Serialize};

use crate::columns::ColumnCounter;
use crate::delimited::{is_blank_record, sniff_delimiter, DelimitedReader};
use crate::report::{plural, Position, RuleAccumulator, RuleResult, Status};
use crate::tables::text_start;
use crate::Rule;

/// The parameters of `suppress-and-round` (policy `outputs.checks.rounding`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoundingConfig {
    /// Counts at or below this are suppressed (default 7).
    pub suppress_at_or_below: u64,
    /// Other counts are rounded to the nearest multiple of this (default 5).
    pub base: u64,
}

impl Default for RoundingConfig {
    fn default() -> Self {
        RoundingConfig {
            suppress_at_or_below: 7,
            base: 5,
        }
    }
}

/// A transformed table and what was changed.
#[derive(Debug, Clone)]
pub struct Remedied {
    /// The transformed file.
    pub bytes: Vec<u8>,
    /// Cells suppressed, cells rounded and totals recomputed (positions in the original file,
    /// which are those of the transformed one too: only cell texts change).
    pub suppressed: u64,
    pub rounded: u64,
    pub totals: u64,
    /// The `rounding` rule result listing every change by position.
    pub result: RuleResult,
}

/// Key words that make a row a total row (compared case-insensitively).
const TOTAL_WORDS: &[&str] = &[
    "total", "totals", "all", "overall", "sum", "totaal", "gesamt", "totale",
];

fn round(value: u64, base: u64) -> u64 {
    if base <= 1 {
        return value;
    }
    value.saturating_add(base / 2) / base * base
}

/// Applies suppress-and-round to the count columns `count_fields` (1-based) of a CSV or TSV
/// table. `None` when the table has no header or a count cell is not a whole number (such a
/// table is not only failing on small cells; it is left to a reviewer).
pub fn suppress_and_round(
    file: &str,
    bytes: &[u8],
    count_fields: &[u64],
    config: &RoundingConfig,
    max_positions: usize,
) -> Option<Remedied> {
    let start = text_start(bytes);
    let delimiter = sniff_delimiter(&bytes[start..]);
    let mut reader = DelimitedReader::starting_at(bytes, delimiter, start);
    let mut cells = Vec::new();
    if !reader.next_record(&mut cells) {
        return None;
    }
    let count_indexes: Vec<usize> = count_fields
        .iter()
        .filter_map(|field| usize::try_from(field.checked_sub(1)?).ok())
        .filter(|&index| index < cells.len())
        .collect();
    if count_indexes.is_empty() {
        return None;
    }
    let marker = format!("<={}", config.suppress_at_or_below);
    // (byte range of a cell, its new text)
    let mut replacements: Vec<(usize, usize, String)> = Vec::new();
    let mut changes = RuleAccumulator::new(Rule::Rounding, max_positions);
    let mut column_counter = ColumnCounter::default();
    let mut sums = vec![0u64; count_indexes.len()];
    let (mut suppressed, mut rounded, mut totals) = (0u64, 0u64, 0u64);
    while reader.next_record(&mut cells) {
        if is_blank_record(&cells) {
            continue;
        }
        let is_total_row = cells.iter().enumerate().any(|(index, cell)| {
            !count_indexes.contains(&index)
                && std::str::from_utf8(cell.text.trim_ascii()).is_ok_and(|text| {
                    TOTAL_WORDS
                        .iter()
                        .any(|word| text.eq_ignore_ascii_case(word))
                })
        });
        for (position, &index) in count_indexes.iter().enumerate() {
            let Some(cell) = cells.get(index) else {
                continue;
            };
            let text = cell.text.trim_ascii();
            if text.is_empty()
                || crate::tables::is_suppressed_count(text, config.suppress_at_or_below)
            {
                continue;
            }
            let value: u64 = std::str::from_utf8(text).ok()?.parse().ok()?;
            let new_text = if is_total_row {
                totals += 1;
                sums[position].to_string()
            } else if value <= config.suppress_at_or_below {
                suppressed += 1;
                marker.clone()
            } else {
                rounded += 1;
                let rounded_value = round(value, config.base);
                sums[position] = sums[position].saturating_add(rounded_value);
                rounded_value.to_string()
            };
            if new_text.as_bytes() != text {
                let cell_position = Position {
                    file: file.to_string(),
                    line: cell.line as u64,
                    column: column_counter.column_at(bytes, cell.line_start, cell.offset),
                    field: Some(index as u64 + 1),
                };
                changes.flag(|| cell_position);
                replacements.push((cell.offset, cell.raw_end, new_text));
            }
        }
    }
    let mut transformed = Vec::with_capacity(bytes.len());
    let mut copied_to = 0;
    for (from, to, text) in &replacements {
        transformed.extend_from_slice(&bytes[copied_to..*from]);
        transformed.extend_from_slice(text.as_bytes());
        copied_to = *to;
    }
    transformed.extend_from_slice(&bytes[copied_to..]);
    let n_changed = changes.count;
    let result = changes.finish_with_status(
        Status::Pass,
        format!(
            "released as a transformed copy (suppress-and-round): {} changed — {} at or below {} \
             suppressed as `{marker}`, {} rounded to a multiple of {}, {} recomputed from the \
             rounded cells; the original does not leave the station",
            plural(n_changed, "cell", "cells"),
            plural(suppressed, "count", "counts"),
            config.suppress_at_or_below,
            plural(rounded, "count", "counts"),
            config.base,
            plural(totals, "total", "totals"),
        ),
    );
    Some(Remedied {
        bytes: transformed,
        suppressed,
        rounded,
        totals,
        result,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remedy(csv: &str) -> Remedied {
        suppress_and_round(
            "counts.csv",
            csv.as_bytes(),
            &[2],
            &RoundingConfig::default(),
            100,
        )
        .unwrap()
    }

    #[test]
    fn small_counts_are_suppressed_others_rounded_and_totals_recomputed() {
        let remedied = remedy("region,n\nnorth,4\nsouth,12\neast,13\nwest,0\nTotal,29\n");
        assert_eq!(
            String::from_utf8(remedied.bytes).unwrap(),
            "region,n\nnorth,<=7\nsouth,10\neast,15\nwest,<=7\nTotal,25\n"
        );
        assert_eq!(
            (remedied.suppressed, remedied.rounded, remedied.totals),
            (2, 2, 1)
        );
        let lines: Vec<u64> = remedied.result.positions.iter().map(|p| p.line).collect();
        assert_eq!(lines, [2, 3, 4, 5, 6]);
        assert!(!remedied.result.summary.contains("29"));
    }

    #[test]
    fn the_boundaries_are_at_the_limit_and_halves_round_up() {
        let remedied = remedy("g,n\na,7\nb,8\nc,10\nd,12\ne,13\n");
        assert_eq!(
            String::from_utf8(remedied.bytes).unwrap(),
            "g,n\na,<=7\nb,10\nc,10\nd,10\ne,15\n"
        );
    }

    #[test]
    fn quoted_cells_and_other_columns_are_kept_byte_for_byte() {
        let remedied = remedy("\"region, part\",n,note\n\"north, a\",\"9\",x\n");
        assert_eq!(
            String::from_utf8(remedied.bytes).unwrap(),
            "\"region, part\",n,note\n\"north, a\",10,x\n"
        );
    }

    #[test]
    fn only_the_policys_own_marker_reads_as_suppressed() {
        use crate::tables::is_suppression_marker;
        assert!(is_suppression_marker(b"<=7", 7));
        assert!(is_suppression_marker(b" <=7 ", 7));
        assert!(
            !is_suppression_marker(b"<=2", 7),
            "<=2 would tell a count of 0 to 2"
        );
        assert!(!is_suppression_marker(b"<7", 7));
        assert!(!is_suppression_marker(b"<=07", 7));
        // A train writing `<=1` gets a review, not a pass.
        let entries = [crate::OutputEntry::regular(
            "c.csv",
            b"g,n\na,<=1\nb,20\n".to_vec(),
        )];
        let declared = [crate::DeclaredOutput::table("c.csv", ["n"])];
        let report = crate::check_outputs(&entries, &declared, &[], &crate::CheckConfig::default());
        assert_eq!(report.status(), Status::Review, "{}", report.render_text());
    }

    #[test]
    fn a_table_with_a_non_integer_count_is_not_remedied() {
        assert!(suppress_and_round(
            "c.csv",
            b"g,n\na,1.5\n",
            &[2],
            &RoundingConfig::default(),
            100
        )
        .is_none());
    }

    #[test]
    fn the_remedied_table_passes_the_threshold_rule() {
        let remedied = remedy("region,n\nnorth,4\nsouth,12\n");
        let entries = [crate::OutputEntry::regular("counts.csv", remedied.bytes)];
        let declared = [crate::DeclaredOutput::table("counts.csv", ["n"])];
        let report = crate::check_outputs(&entries, &declared, &[], &crate::CheckConfig::default());
        assert_eq!(report.status(), Status::Pass, "{}", report.render_text());
    }
}
