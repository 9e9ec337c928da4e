//! The scanning machinery: one pass over the bytes of a text or a table cell, a lookup table
//! that skips the bytes no pattern starts with, and a detector called at each byte that can.
//!
//! Owns positions (line, column, field), context windows (in a table, the cell's own row and
//! its column header) and flagging. The patterns themselves are the detector files'; this file
//! only decides which one to try and what a match means with or without context.

use super::bsn::{match_bsn_shape, passes_eleven_test};
use super::context::{contains_context_word, TableColumns, BSN_WORDS, DATE_OF_BIRTH_WORDS};
use super::dates::match_date;
use super::email::match_email;
use super::findings::IdentifierFindings;
use super::phone::match_phone;
use super::postcode::match_postcode;
use super::{digits_end, is_decimal_separator, is_followed_by_fraction, ScanSettings};
use crate::columns::ColumnCounter;
use crate::delimited::Cell;
use crate::report::{Position, RuleResult};

/// The identifier scan of one output: a whole text, or a table cell by cell.
#[derive(Debug)]
pub(crate) struct IdentifierScan<'s> {
    bytes: &'s [u8],
    file: &'s str,
    settings: ScanSettings,
    table_columns: Option<TableColumns>,
    findings: IdentifierFindings,
    column_counter: ColumnCounter,
}

impl<'s> IdentifierScan<'s> {
    /// A scan of `bytes` whose positions name `file`.
    pub(crate) fn new(
        bytes: &'s [u8],
        file: &'s str,
        settings: ScanSettings,
        max_positions: usize,
    ) -> IdentifierScan<'s> {
        IdentifierScan {
            bytes,
            file,
            settings,
            table_columns: None,
            findings: IdentifierFindings::new(max_positions),
            column_counter: ColumnCounter::default(),
        }
    }

    /// Tells the scan which table columns lend context, once the header has been read.
    pub(crate) fn set_table_columns(&mut self, table_columns: TableColumns) {
        self.table_columns = Some(table_columns);
    }

    /// Scans all of the text.
    pub(crate) fn scan_all(&mut self) {
        // Columns on the first line are counted after a byte-order mark, as an editor shows them.
        let start = if self.bytes.starts_with(b"\xEF\xBB\xBF") {
            3
        } else {
            0
        };
        let end = self.bytes.len();
        self.scanner(1, start, None).run(start, end);
    }

    /// Scans the raw bytes of one table cell (quotes included, so nothing written after a
    /// closing quote escapes the scan). Patterns never span a delimiter, so cells can be scanned
    /// alone; context words are still looked for across cell borders.
    pub(crate) fn scan_cell(&mut self, cell: &Cell<'_>, field_index: usize) {
        self.scanner(cell.line, cell.line_start, Some(field_index))
            .run(cell.offset, cell.raw_end);
    }

    /// The rule results, in report order.
    pub(crate) fn into_results(self) -> Vec<RuleResult> {
        self.findings.into_results(self.settings.max_digit_run)
    }

    fn scanner(
        &mut self,
        line: usize,
        line_start: usize,
        field_index: Option<usize>,
    ) -> Scanner<'_> {
        Scanner {
            bytes: self.bytes,
            file: self.file,
            settings: self.settings,
            table_columns: self.table_columns.as_ref(),
            findings: &mut self.findings,
            column_counter: &mut self.column_counter,
            line,
            line_start,
            field_index,
        }
    }
}

/// The shortest cells that can hold an identifier, so a table scan can skip shorter ones.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ShortestPatterns {
    /// Any pattern: a postcode (`1234AB`) or e-mail address (`a@b.nl`) has 6 characters; dates
    /// with separators need 8, BSNs 9, phone numbers 10.
    pub(crate) any_pattern: usize,
    /// A pattern of digits alone: a compact date (`19800312`) has 8.
    pub(crate) digits_only: usize,
}

impl ShortestPatterns {
    /// The limits, lowered when the policy flags digit runs shorter than they are.
    pub(crate) fn for_max_digit_run(max_digit_run: usize) -> ShortestPatterns {
        ShortestPatterns {
            any_pattern: max_digit_run.min(6),
            digits_only: max_digit_run.min(8),
        }
    }
}

/// Whether `byte` can start an identifier pattern (or, for `\n`, moves the scan's position).
pub(crate) fn can_start_pattern(byte: u8) -> bool {
    IS_INTERESTING[byte as usize]
}

/// Bytes that can start a pattern: digits, line breaks (for positions), `@`, `+` and `(`.
const IS_INTERESTING: [bool; 256] = {
    let mut is_interesting = [false; 256];
    let mut digit = b'0';
    while digit <= b'9' {
        is_interesting[digit as usize] = true;
        digit += 1;
    }
    is_interesting[b'\n' as usize] = true;
    is_interesting[b'@' as usize] = true;
    is_interesting[b'+' as usize] = true;
    is_interesting[b'(' as usize] = true;
    is_interesting
};

struct Scanner<'s> {
    bytes: &'s [u8],
    file: &'s str,
    settings: ScanSettings,
    table_columns: Option<&'s TableColumns>,
    findings: &'s mut IdentifierFindings,
    column_counter: &'s mut ColumnCounter,
    line: usize,
    line_start: usize,
    /// For table cells: the 0-based column.
    field_index: Option<usize>,
}

#[derive(Clone, Copy)]
enum ContextKind {
    Bsn,
    DateOfBirth,
}

#[derive(Clone, Copy)]
enum Finding {
    Bsn,
    PossibleBsn,
    Email,
    Phone,
    Postcode,
    DateOfBirth,
    DigitRun,
}

impl Scanner<'_> {
    /// Scans `bytes[start..end]`; patterns that start there may read beyond `end`.
    fn run(&mut self, start: usize, end: usize) {
        let bytes = &self.bytes[..end];
        let mut index = start;
        loop {
            // Most bytes are boring. A plain table lookup and an if-chain (not a `match` on a
            // byte class, which compiles to an indirect jump that mispredicts at every change
            // from letters to digits) keep this loop at about a cycle per byte.
            while index < end && !IS_INTERESTING[bytes[index] as usize] {
                index += 1;
            }
            // The span ends here even when the file goes on.
            let Some(&byte) = bytes.get(index) else {
                break;
            };
            if byte.is_ascii_digit() {
                index = self.digit_token(index);
            } else if byte == b'\n' {
                index += 1;
                self.line += 1;
                self.line_start = index;
            } else if byte == b'@' {
                index = self.email(index);
            } else {
                index = self.phone_with_prefix(index);
            }
        }
    }

    /// Looks at the run of digits starting at `start` and whatever pattern it opens; returns
    /// where scanning continues (always after `start`).
    fn digit_token(&mut self, start: usize) -> usize {
        let bytes = self.bytes;
        let run_end = digits_end(bytes, start);
        let run_length = run_end - start;
        let comma_is_decimal = self.settings.comma_is_decimal;
        if start >= 2
            && is_decimal_separator(bytes[start - 1], comma_is_decimal)
            && bytes[start - 2].is_ascii_digit()
        {
            // The fraction of a decimal number.
            return run_end;
        }
        if let Some(date_end) = match_date(bytes, start, run_end) {
            if self.has_context(start, date_end, ContextKind::DateOfBirth) {
                self.flag(Finding::DateOfBirth, start);
            }
            return date_end;
        }
        if bytes[start] == b'0' {
            if let Some(phone_end) = match_phone(bytes, start) {
                self.flag(Finding::Phone, start);
                return phone_end;
            }
        }
        if let Some((bsn_end, bsn_digits)) =
            match_bsn_shape(bytes, start, run_end, comma_is_decimal)
        {
            if passes_eleven_test(&bsn_digits) {
                if self.has_context(start, bsn_end, ContextKind::Bsn) {
                    self.flag(Finding::Bsn, start);
                } else {
                    self.flag(Finding::PossibleBsn, start);
                }
                return bsn_end;
            }
        }
        let previous_is_alphanumeric = start > 0 && bytes[start - 1].is_ascii_alphanumeric();
        if run_length == 4 && bytes[start] != b'0' && !previous_is_alphanumeric {
            if let Some(postcode_end) = match_postcode(bytes, run_end) {
                self.flag(Finding::Postcode, start);
                return postcode_end;
            }
        }
        if run_length >= self.settings.max_digit_run
            && !is_followed_by_fraction(bytes, run_end, comma_is_decimal)
        {
            self.flag(Finding::DigitRun, start);
        }
        run_end
    }

    fn phone_with_prefix(&mut self, start: usize) -> usize {
        let bytes = self.bytes;
        let opens_phone = match bytes[start] {
            b'+' => bytes.get(start + 1) == Some(&b'3') && bytes.get(start + 2) == Some(&b'1'),
            _ => bytes.get(start + 1) == Some(&b'0'),
        };
        if opens_phone {
            if let Some(phone_end) = match_phone(bytes, start) {
                self.flag(Finding::Phone, start);
                return phone_end;
            }
        }
        start + 1
    }

    fn email(&mut self, at: usize) -> usize {
        match match_email(self.bytes, at, self.line_start) {
            Some((email_start, email_end)) => {
                self.flag(Finding::Email, email_start);
                email_end
            }
            None => at + 1,
        }
    }

    fn has_context(&self, start: usize, end: usize, context_kind: ContextKind) -> bool {
        let words = match context_kind {
            ContextKind::Bsn => BSN_WORDS,
            ContextKind::DateOfBirth => DATE_OF_BIRTH_WORDS,
        };
        let mut window_start = start.saturating_sub(self.settings.context_chars);
        let mut window_end = (end + self.settings.context_chars).min(self.bytes.len());
        if self.field_index.is_some() {
            // In a table, other rows (the header above another column, say) are no context; the
            // cell's own row is (a key/value table: `geboortedatum,12-03-1980`), and so is its
            // column header, below.
            window_start = window_start.max(self.line_start);
            if let Some(line_length) = self.bytes[end..window_end]
                .iter()
                .position(|&byte| byte == b'\n')
            {
                window_end = end + line_length;
            }
        }
        if contains_context_word(self.bytes, window_start..window_end, words) {
            return true;
        }
        let (Some(table_columns), Some(field_index)) = (self.table_columns, self.field_index)
        else {
            return false;
        };
        let column_flags = match context_kind {
            ContextKind::Bsn => &table_columns.is_bsn_column,
            ContextKind::DateOfBirth => &table_columns.is_date_of_birth_column,
        };
        column_flags.get(field_index).copied().unwrap_or(false)
    }

    fn flag(&mut self, finding: Finding, offset: usize) {
        let (bytes, file, line, line_start) = (self.bytes, self.file, self.line, self.line_start);
        let field_index = self.field_index;
        let column_counter = &mut *self.column_counter;
        let accumulator = match finding {
            Finding::Bsn => &mut self.findings.bsn,
            Finding::PossibleBsn => &mut self.findings.possible_bsn,
            Finding::Email => &mut self.findings.email,
            Finding::Phone => &mut self.findings.phone,
            Finding::Postcode => &mut self.findings.postcode,
            Finding::DateOfBirth => &mut self.findings.date_of_birth,
            Finding::DigitRun => &mut self.findings.digit_run,
        };
        accumulator.flag(|| Position {
            file: file.to_string(),
            line: line as u64,
            column: column_counter.column_at(bytes, line_start, offset),
            field: field_index.map(|field_index| field_index as u64 + 1),
        });
    }
}
