//! Count cells: how one reads (a whole number, missing, negative, not a whole number) and how
//! it is judged against the threshold and zero rules, into the tally of its column; and the
//! report's description of the count columns found.
//!
//! Owns the reading and judging of single cells. Which columns are count columns is decided by
//! `count_columns` once the table has been read.

use super::{cell_position, TableChecker};
use crate::count_columns::{CountColumn, CountColumnSource};
use crate::delimited::Cell;
use crate::row_hash::is_missing_marker;

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

/// Whether a count cell is the policy's own suppression marker, `<=LIMIT` as `suppress-and-round`
/// writes it (`outputs.checks.rounding.suppress_at_or_below`): a suppressed cell, like an empty
/// one. Any other `<N` a train writes stays a non-integer for review: `<2` would tell a count of
/// one.
pub(crate) fn is_suppression_marker(text: &[u8], suppress_at_or_below: u64) -> bool {
    let Some(limit) = text.trim_ascii().strip_prefix(b"<=") else {
        return false;
    };
    std::str::from_utf8(limit)
        .ok()
        .and_then(|limit| limit.parse::<u64>().ok())
        == Some(suppress_at_or_below)
        && !limit.starts_with(b"0")
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

pub(super) fn normalise_column_name(name: &[u8]) -> String {
    String::from_utf8_lossy(name)
        .trim_start_matches('\u{feff}')
        .trim()
        .to_lowercase()
}

/// Whether a cell that is not a whole number is not a number at all (a category).
pub(super) fn is_text_cell(text: &[u8]) -> bool {
    let text = text.trim_ascii();
    !text.iter().all(|&byte| {
        byte.is_ascii_digit() || matches!(byte, b'.' | b',' | b'-' | b'+' | b'e' | b'E')
    })
}

impl TableChecker<'_> {
    /// Judges a cell of a column that is, or may turn out to be, a count column.
    pub(super) fn judge_count_cell(
        &mut self,
        count_cell: CountCell,
        cell: &Cell<'_>,
        column_index: usize,
        row_index: u64,
    ) {
        let config = self.context.config;
        let tally = &mut self.tallies[column_index];
        match count_cell {
            CountCell::Missing => {
                tally.add_missing();
                return;
            }
            CountCell::Value(value) => tally.add_value(value, row_index),
            CountCell::Negative => tally.add_non_count(false),
            CountCell::NonInteger => tally.add_non_count(is_text_cell(&cell.text)),
        }
        if !tally.is_active() {
            return;
        }
        let findings = &mut tally.findings;
        let accumulator = match count_cell {
            CountCell::Missing => return,
            CountCell::Value(0) if !config.flag_zero_cells => None,
            CountCell::Value(0) => Some(&mut findings.zero),
            CountCell::Value(value) if value < config.min_cell_count => {
                Some(&mut findings.threshold)
            }
            CountCell::Value(_) => None,
            CountCell::Negative => Some(&mut findings.negative),
            CountCell::NonInteger => Some(&mut findings.non_integer),
        };
        findings.n_count_cells += 1;
        if let Some(accumulator) = accumulator {
            let (file, bytes) = (self.context.file, self.bytes);
            let column_counter = &mut self.column_counter;
            accumulator.flag(|| cell_position(file, bytes, column_counter, cell, column_index));
        }
    }
}

/// `count columns: n (declared), field 4 (inferred from its shape)`.
pub(super) fn describe_count_columns(count_columns: &[CountColumn]) -> String {
    let described: Vec<String> = count_columns
        .iter()
        .map(|count_column| {
            let how = match count_column.source {
                CountColumnSource::Declared => "declared",
                CountColumnSource::Policy => "named in the policy",
                CountColumnSource::InferredFromName => "inferred from its name",
                CountColumnSource::InferredFromShape => "inferred from its shape",
            };
            match &count_column.name {
                Some(name) => format!("`{name}` (field {}, {how})", count_column.field),
                None => format!("field {} ({how})", count_column.field),
            }
        })
        .collect();
    format!(
        "{}: {}",
        if count_columns.len() == 1 {
            "count column"
        } else {
            "count columns"
        },
        described.join(", ")
    )
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
