//! Direct identifiers in text: Dutch BSN, e-mail addresses, Dutch phone numbers, Dutch postcodes,
//! dates of birth and long digit runs, found by one hand-written pass over the bytes.
//!
//! Owns the patterns, their context words and what each finding means (fail or review). It does
//! not know file types: callers hand it a whole text, or the cells of a table one by one with
//! which columns are named like a BSN or a date of birth. It records rule, count and position
//! only, never the matched text.
//!
//! Why a scanner and not regular expressions: the scan runs over every text output (100 MB
//! tables included) and almost every byte is boring; a lookup table skips those, the digit
//! patterns share one look at each run of digits, and in tables only cells that can hold a
//! pattern are visited at all.
//!
//! What it cannot do: it catches identifiers written plainly, by mistake. A train that encodes
//! data on purpose (JSON `\u` escapes, base64, digits spelled out) gets past it; signatures,
//! policy and the human review of flagged outputs are the defences against that.
//!
//! Decisions that keep false positives sane:
//! - fractional digits (`0.123456789`) and integer parts of decimals (`1234567890.5`) are numbers,
//!   never identifiers;
//! - a BSN is 9 digits (or `1234.56.782`, `123-456-782`, `123 456 782`) passing the 11-test
//!   (`9*d1 + 8*d2 + ... + 2*d8 - d9` divisible by 11, not all zeros); with a BSN context word
//!   within `identifier_context_chars` it fails, without one it is flagged for review because a
//!   random 9-digit number passes the test one time in eleven; an invalid one is not a BSN;
//! - a phone number needs 10 national digits starting `0` (not `00`), or `+31`/`0031` with 9
//!   digits, grouped like a phone (`06-12345678`, `020 123 4567`, `(020) 1234567`);
//! - a postcode is `1234AB` or `1234 AB`: first digit not 0, upper-case letters, not SA/SD/SS,
//!   standing alone (`1500 MG`-style false positives are accepted as reviews; lower-case is not
//!   matched, so `2020 we` in prose does not trip it);
//! - a date (`12-03-1980`, `12/03/1980`, `12.03.1980`, `1980-03-12`, `19800312`, `12 maart 1980`)
//!   is only flagged near a date-of-birth context word or in a column so named; other dates pass;
//! - "near" is within `identifier_context_chars` characters; in a table only on the same row,
//!   plus the column's header, so a birth-date column does not taint the visit date beside it;
//! - obfuscated e-mail (`user at example dot com`) and version strings (`pkg@1.2.3`) are not
//!   e-mail addresses: the domain needs a dot and an alphabetic top-level label.

use crate::columns::ColumnCounter;
use crate::delimited::Cell;
use crate::report::{plural, Position, Rule, RuleAccumulator, RuleResult, Status};

/// Settings of one scan.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScanSettings {
    pub(crate) max_digit_run: usize,
    pub(crate) context_chars: usize,
    /// Whether `,` between digits is a decimal separator (semicolon and tab separated tables).
    pub(crate) comma_is_decimal: bool,
}

/// For tables: which columns lend context to a BSN or a date found in them.
#[derive(Debug, Default)]
pub(crate) struct TableColumns {
    pub(crate) is_bsn_column: Vec<bool>,
    pub(crate) is_date_of_birth_column: Vec<bool>,
}

impl TableColumns {
    /// Classifies header names (as written in the file).
    pub(crate) fn from_header<'h>(header_names: impl Iterator<Item = &'h [u8]>) -> TableColumns {
        let mut table_columns = TableColumns::default();
        for header_name in header_names {
            let whole_name = 0..header_name.len();
            table_columns.is_bsn_column.push(contains_context_word(
                header_name,
                whole_name.clone(),
                BSN_WORDS,
            ));
            table_columns
                .is_date_of_birth_column
                .push(contains_context_word(
                    header_name,
                    whole_name,
                    DATE_OF_BIRTH_WORDS,
                ));
        }
        table_columns
    }
}

/// A context word, and whether it must also end at a word boundary (`dob`, not `dobbelsteen`).
/// Every word starts at a word boundary (after a non-alphanumeric byte, or at a camel-case
/// hump: `patientBSN`). A space in a word matches up to two separators (space, `_`, `-`, `.`)
/// or none, so `date of birth` also matches `date_of_birth` and `DateOfBirth`.
type ContextWord = (&'static [u8], bool);

const BSN_WORDS: &[ContextWord] = &[
    (b"bsn", false),
    (b"burger service nummer", false),
    (b"burger service nr", false),
    (b"sofi nummer", false),
    (b"sofi nr", false),
    (b"citizen service number", false),
];

/// Words that name a date of birth, not merely birth: `birth_weight`, `birth_year` and
/// `geboortegewicht` are common perinatal columns whose neighbours are not birth dates.
const DATE_OF_BIRTH_WORDS: &[ContextWord] = &[
    (b"dob", true),
    (b"d.o.b", false),
    (b"date of birth", false),
    (b"birth date", false),
    (b"birth dt", false),
    (b"birthday", false),
    (b"born", true),
    (b"geboorte datum", false),
    (b"geboren", true),
    (b"geb datum", false),
    (b"geb dat", true),
    (b"geb", true),
];

/// Per-rule findings of the identifier scan of one output.
#[derive(Debug)]
pub(crate) struct IdentifierFindings {
    pub(crate) bsn: RuleAccumulator,
    pub(crate) possible_bsn: RuleAccumulator,
    pub(crate) email: RuleAccumulator,
    pub(crate) phone: RuleAccumulator,
    pub(crate) postcode: RuleAccumulator,
    pub(crate) date_of_birth: RuleAccumulator,
    pub(crate) digit_run: RuleAccumulator,
}

impl IdentifierFindings {
    pub(crate) fn new(max_positions: usize) -> IdentifierFindings {
        IdentifierFindings {
            bsn: RuleAccumulator::new(Rule::Bsn, max_positions),
            possible_bsn: RuleAccumulator::new(Rule::PossibleBsn, max_positions),
            email: RuleAccumulator::new(Rule::Email, max_positions),
            phone: RuleAccumulator::new(Rule::Phone, max_positions),
            postcode: RuleAccumulator::new(Rule::Postcode, max_positions),
            date_of_birth: RuleAccumulator::new(Rule::DateOfBirth, max_positions),
            digit_run: RuleAccumulator::new(Rule::DigitRun, max_positions),
        }
    }

    /// The rule results, in report order.
    pub(crate) fn into_results(self, max_digit_run: usize) -> Vec<RuleResult> {
        fn found(count: u64, what: &str, what_plural: &str, detail: &str) -> String {
            if count == 0 {
                format!("no {what_plural} found")
            } else {
                format!("{}{detail}", plural(count, what, what_plural))
            }
        }
        let IdentifierFindings {
            bsn,
            possible_bsn,
            email,
            phone,
            postcode,
            date_of_birth,
            digit_run,
        } = self;
        let bsn_summary = found(
            bsn.count,
            "BSN",
            "BSNs",
            " (9 digits passing the 11-test near a BSN context word)",
        );
        let possible_bsn_summary = found(
            possible_bsn.count,
            "9-digit number passing the BSN 11-test",
            "9-digit numbers passing the BSN 11-test",
            " without a BSN context word nearby",
        );
        let email_summary = found(email.count, "e-mail address", "e-mail addresses", "");
        let phone_summary = found(phone.count, "Dutch phone number", "Dutch phone numbers", "");
        let postcode_summary = found(postcode.count, "Dutch postcode", "Dutch postcodes", "");
        let date_of_birth_summary = found(
            date_of_birth.count,
            "date of birth",
            "dates of birth",
            " (dates near a birth context word or in a birth-date column)",
        );
        let digit_run_summary = found(
            digit_run.count,
            &format!("run of {max_digit_run} or more digits"),
            &format!("runs of {max_digit_run} or more digits"),
            "",
        );
        vec![
            bsn.finish(Status::Fail, bsn_summary),
            possible_bsn.finish(Status::Review, possible_bsn_summary),
            email.finish(Status::Fail, email_summary),
            phone.finish(Status::Fail, phone_summary),
            postcode.finish(Status::Review, postcode_summary),
            date_of_birth.finish(Status::Fail, date_of_birth_summary),
            digit_run.finish(Status::Review, digit_run_summary),
        ]
    }
}

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
        let bytes = self.bytes;
        // Local parts are at most 64 characters (RFC 5321).
        let mut local_start = at;
        while local_start > self.line_start
            && at - local_start < 64
            && is_email_local_byte(bytes[local_start - 1])
        {
            local_start -= 1;
        }
        while local_start < at && bytes[local_start] == b'.' {
            local_start += 1;
        }
        if local_start == at || bytes[at - 1] == b'.' {
            return at + 1;
        }
        let mut cursor = at + 1;
        let mut n_labels = 0;
        let mut last_label = (cursor, cursor);
        loop {
            let label_start = cursor;
            while cursor < bytes.len()
                && (bytes[cursor].is_ascii_alphanumeric() || bytes[cursor] == b'-')
            {
                cursor += 1;
            }
            if cursor == label_start {
                break;
            }
            n_labels += 1;
            last_label = (label_start, cursor);
            if cursor + 1 < bytes.len()
                && bytes[cursor] == b'.'
                && bytes[cursor + 1].is_ascii_alphanumeric()
            {
                cursor += 1;
                continue;
            }
            break;
        }
        let top_level_label = &bytes[last_label.0..last_label.1];
        if n_labels >= 2
            && top_level_label.len() >= 2
            && top_level_label.iter().all(u8::is_ascii_alphabetic)
        {
            self.flag(Finding::Email, local_start);
            return last_label.1;
        }
        at + 1
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

/// Whether `bytes[window]` contains one of `words` (see [`ContextWord`]), case-insensitively.
fn contains_context_word(
    bytes: &[u8],
    window: std::ops::Range<usize>,
    words: &[ContextWord],
) -> bool {
    let window_end = window.end;
    let is_word_byte = |index: usize| bytes.get(index).is_some_and(u8::is_ascii_alphanumeric);
    for index in window {
        let starts_word = index == 0
            || !is_word_byte(index - 1)
            || (bytes[index].is_ascii_uppercase() && bytes[index - 1].is_ascii_lowercase());
        if !starts_word {
            continue;
        }
        let first_byte = bytes[index].to_ascii_lowercase();
        for &(word, needs_end_boundary) in words {
            if word[0] != first_byte {
                continue;
            }
            let Some(word_end) = match_context_word(bytes, index, window_end, word) else {
                continue;
            };
            let ends_word = !is_word_byte(word_end)
                || (bytes[word_end].is_ascii_uppercase()
                    && bytes[word_end - 1].is_ascii_lowercase());
            if !needs_end_boundary || ends_word {
                return true;
            }
        }
    }
    false
}

/// Matches `word` at `bytes[start..window_end]`; returns the end of the match.
fn match_context_word(bytes: &[u8], start: usize, window_end: usize, word: &[u8]) -> Option<usize> {
    const MAX_SEPARATORS: usize = 2;
    let mut position = start;
    for &word_byte in word {
        if word_byte == b' ' {
            let mut n_separators = 0;
            while n_separators < MAX_SEPARATORS
                && position < window_end
                && matches!(bytes[position], b' ' | b'_' | b'-' | b'.')
            {
                position += 1;
                n_separators += 1;
            }
            continue;
        }
        if position >= window_end || bytes[position].to_ascii_lowercase() != word_byte {
            return None;
        }
        position += 1;
    }
    Some(position)
}

fn digits_end(bytes: &[u8], start: usize) -> usize {
    let mut end = start;
    while end < bytes.len() && bytes[end].is_ascii_digit() {
        end += 1;
    }
    end
}

fn is_decimal_separator(byte: u8, comma_is_decimal: bool) -> bool {
    byte == b'.' || (comma_is_decimal && byte == b',')
}

fn is_followed_by_fraction(bytes: &[u8], end: usize, comma_is_decimal: bool) -> bool {
    end + 1 < bytes.len()
        && is_decimal_separator(bytes[end], comma_is_decimal)
        && bytes[end + 1].is_ascii_digit()
}

fn is_email_local_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn parse_digits(digits: &[u8]) -> u32 {
    digits
        .iter()
        .fold(0, |value, &digit| value * 10 + u32::from(digit - b'0'))
}

fn is_plausible_date(first: u32, second: u32, year: u32) -> bool {
    let is_day_month = (1..=31).contains(&first) && (1..=12).contains(&second);
    let is_month_day = (1..=12).contains(&first) && (1..=31).contains(&second);
    (1900..=2100).contains(&year) && (is_day_month || is_month_day)
}

const MONTH_NAMES: &[&[u8]] = &[
    b"januari",
    b"februari",
    b"maart",
    b"april",
    b"mei",
    b"juni",
    b"juli",
    b"augustus",
    b"september",
    b"oktober",
    b"november",
    b"december",
    b"january",
    b"february",
    b"march",
    b"may",
    b"june",
    b"july",
    b"august",
    b"october",
    b"jan",
    b"feb",
    b"mrt",
    b"mar",
    b"apr",
    b"jun",
    b"jul",
    b"aug",
    b"sep",
    b"sept",
    b"okt",
    b"oct",
    b"nov",
    b"dec",
];

/// A date starting at the digit run `start..run_end`; returns its end.
fn match_date(bytes: &[u8], start: usize, run_end: usize) -> Option<usize> {
    let run_length = run_end - start;
    if run_length == 8 {
        let year = parse_digits(&bytes[start..start + 4]);
        let month = parse_digits(&bytes[start + 4..start + 6]);
        let day = parse_digits(&bytes[start + 6..start + 8]);
        return ((1900..=2100).contains(&year)
            && (1..=12).contains(&month)
            && (1..=31).contains(&day))
        .then_some(run_end);
    }
    let separator = *bytes.get(run_end)?;
    if matches!(separator, b'-' | b'/' | b'.') && matches!(run_length, 1 | 2 | 4) {
        let second_start = run_end + 1;
        let second_end = digits_end(bytes, second_start);
        if !(1..=2).contains(&(second_end - second_start))
            || bytes.get(second_end) != Some(&separator)
        {
            return None;
        }
        let third_start = second_end + 1;
        let third_end = digits_end(bytes, third_start);
        let first = parse_digits(&bytes[start..run_end]);
        let second = parse_digits(&bytes[second_start..second_end]);
        let third_length = third_end - third_start;
        let is_date = if run_length == 4 {
            (1..=2).contains(&third_length)
                && is_plausible_date(parse_digits(&bytes[third_start..third_end]), second, first)
        } else {
            third_length == 4
                && is_plausible_date(first, second, parse_digits(&bytes[third_start..third_end]))
        };
        return is_date.then_some(third_end);
    }
    if separator == b' ' && matches!(run_length, 1 | 2) {
        let name_start = run_end + 1;
        let mut name_end = name_start;
        while name_end < bytes.len() && bytes[name_end].is_ascii_alphabetic() {
            name_end += 1;
        }
        let month_name = &bytes[name_start..name_end];
        if !MONTH_NAMES
            .iter()
            .any(|name| name.eq_ignore_ascii_case(month_name))
        {
            return None;
        }
        let mut cursor = name_end;
        if bytes.get(cursor) == Some(&b'.') {
            cursor += 1;
        }
        if bytes.get(cursor) != Some(&b' ') {
            return None;
        }
        let year_start = cursor + 1;
        let year_end = digits_end(bytes, year_start);
        let day = parse_digits(&bytes[start..run_end]);
        return (year_end - year_start == 4
            && (1..=31).contains(&day)
            && (1900..=2100).contains(&parse_digits(&bytes[year_start..year_end])))
        .then_some(year_end);
    }
    None
}

/// A Dutch phone number starting at `start` (a digit, `+` or `(`); returns its end.
///
/// Collects digit groups joined by one space or hyphen (or a parenthesised area code), then
/// accepts the longest prefix of groups that spells a phone number, so a number followed by an
/// unrelated count (`06-12345678 12`) is still found.
fn match_phone(bytes: &[u8], start: usize) -> Option<usize> {
    const MAX_GROUPS: usize = 8;
    const MAX_DIGITS: usize = 16;
    let n_bytes = bytes.len();
    let has_plus = bytes[start] == b'+';
    let mut cursor = if has_plus { start + 1 } else { start };
    let mut digits = [0u8; MAX_DIGITS];
    let mut n_digits = 0;
    // Per group: digits so far (cumulative) and the end of the group in the input.
    let mut groups = [(0usize, 0usize); MAX_GROUPS];
    let mut n_groups = 0;
    let mut first_group_length = 0;
    while n_groups < MAX_GROUPS {
        let opens_parenthesis = cursor < n_bytes && bytes[cursor] == b'(';
        let group_start = if opens_parenthesis {
            cursor + 1
        } else {
            cursor
        };
        let group_end = digits_end(bytes, group_start);
        if group_end == group_start || n_digits + (group_end - group_start) > MAX_DIGITS {
            break;
        }
        let mut after_group = group_end;
        if opens_parenthesis {
            if bytes.get(after_group) != Some(&b')') {
                break;
            }
            after_group += 1;
        }
        for &digit in &bytes[group_start..group_end] {
            digits[n_digits] = digit;
            n_digits += 1;
        }
        if n_groups == 0 {
            first_group_length = group_end - group_start;
        }
        groups[n_groups] = (n_digits, after_group);
        n_groups += 1;
        let next_opens_group = |index: usize| {
            index < n_bytes && (bytes[index].is_ascii_digit() || bytes[index] == b'(')
        };
        if after_group < n_bytes
            && matches!(bytes[after_group], b' ' | b'-')
            && next_opens_group(after_group + 1)
        {
            cursor = after_group + 1;
        } else if opens_parenthesis && after_group < n_bytes && bytes[after_group].is_ascii_digit()
        {
            cursor = after_group;
        } else {
            break;
        }
    }
    for group_count in (1..=n_groups).rev() {
        let (n_group_digits, group_end) = groups[group_count - 1];
        let candidate = &digits[..n_group_digits];
        if is_followed_by_fraction(bytes, group_end, false) {
            continue;
        }
        let is_phone = if has_plus {
            candidate
                .strip_prefix(b"31")
                .is_some_and(is_international_remainder)
        } else if let Some(remainder) = candidate.strip_prefix(b"0031") {
            is_international_remainder(remainder)
        } else {
            let plausible_grouping = group_count == 1 || (2..=4).contains(&first_group_length);
            candidate.len() == 10
                && candidate[0] == b'0'
                && candidate[1] != b'0'
                && plausible_grouping
        };
        if is_phone {
            return Some(group_end);
        }
    }
    None
}

/// The digits after `+31`/`0031`: 9 digits not starting with 0, or `(0)` written out (10 digits
/// starting with a single 0).
fn is_international_remainder(remainder: &[u8]) -> bool {
    (remainder.len() == 9 && remainder[0] != b'0')
        || (remainder.len() == 10 && remainder[0] == b'0' && remainder[1] != b'0')
}

/// A BSN-shaped number starting at the digit run `start..run_end`: 9 plain digits or three
/// groups (`4.2.3` with dots, `3-3-3` with one of space, hyphen or dot). Returns its end and its
/// nine digits.
fn match_bsn_shape(
    bytes: &[u8],
    start: usize,
    run_end: usize,
    comma_is_decimal: bool,
) -> Option<(usize, [u8; 9])> {
    let run_length = run_end - start;
    let mut bsn_digits = [0u8; 9];
    if run_length == 9 {
        if is_followed_by_fraction(bytes, run_end, comma_is_decimal) {
            return None;
        }
        bsn_digits.copy_from_slice(&bytes[start..run_end]);
        return Some((run_end, bsn_digits));
    }
    let separator = *bytes.get(run_end)?;
    let later_group_lengths: &[usize] = match (run_length, separator) {
        (4, b'.') => &[2, 3],
        (3, b' ' | b'-' | b'.') => &[3, 3],
        _ => return None,
    };
    bsn_digits[..run_length].copy_from_slice(&bytes[start..run_end]);
    let mut n_digits = run_length;
    let mut cursor = run_end;
    for &group_length in later_group_lengths {
        if bytes.get(cursor) != Some(&separator) {
            return None;
        }
        let group_start = cursor + 1;
        let group_end = digits_end(bytes, group_start);
        if group_end - group_start != group_length {
            return None;
        }
        bsn_digits[n_digits..n_digits + group_length]
            .copy_from_slice(&bytes[group_start..group_end]);
        n_digits += group_length;
        cursor = group_end;
    }
    // A fourth group means a longer number written in groups, not a BSN.
    let continues = cursor + 1 < bytes.len()
        && (bytes[cursor] == separator || is_decimal_separator(bytes[cursor], comma_is_decimal))
        && bytes[cursor + 1].is_ascii_digit();
    (!continues).then_some((cursor, bsn_digits))
}

/// The BSN 11-test. All zeros passes arithmetically but is no number anyone has.
fn passes_eleven_test(bsn_digits: &[u8; 9]) -> bool {
    if bsn_digits.iter().all(|&digit| digit == b'0') {
        return false;
    }
    let weighted_sum: i64 = bsn_digits[..8]
        .iter()
        .zip((2..=9).rev())
        .map(|(&digit, weight)| i64::from(digit - b'0') * weight)
        .sum::<i64>()
        - i64::from(bsn_digits[8] - b'0');
    weighted_sum % 11 == 0
}

/// A postcode's letters after the four digits ending at `run_end`; returns its end.
fn match_postcode(bytes: &[u8], run_end: usize) -> Option<usize> {
    let letters_start = if bytes.get(run_end) == Some(&b' ') {
        run_end + 1
    } else {
        run_end
    };
    let letters = bytes.get(letters_start..letters_start + 2)?;
    let letters_end = letters_start + 2;
    let is_postcode = letters.iter().all(u8::is_ascii_uppercase)
        && !matches!(letters, b"SA" | b"SD" | b"SS")
        && !bytes
            .get(letters_end)
            .is_some_and(u8::is_ascii_alphanumeric);
    is_postcode.then_some(letters_end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    /// Scans `text` as free text and lists every non-empty rule as `rule count [line:column...]`.
    fn check(text: &str, expected: Expect) {
        check_with(text, None, expected);
    }

    /// With `table_columns`, `text` is read as a comma-separated table and scanned cell by cell.
    fn check_with(text: &str, table_columns: Option<TableColumns>, expected: Expect) {
        let settings = ScanSettings {
            max_digit_run: 10,
            context_chars: 40,
            comma_is_decimal: false,
        };
        let mut identifier_scan = IdentifierScan::new(text.as_bytes(), "f", settings, 10);
        match table_columns {
            None => identifier_scan.scan_all(),
            Some(table_columns) => {
                identifier_scan.set_table_columns(table_columns);
                let mut reader = crate::delimited::DelimitedReader::new(text.as_bytes(), b',');
                let mut cells = Vec::new();
                while reader.next_record(&mut cells) {
                    for (field_index, cell) in cells.iter().enumerate() {
                        if cell.may_hold_identifier(ShortestPatterns::for_max_digit_run(10)) {
                            identifier_scan.scan_cell(cell, field_index);
                        }
                    }
                }
            }
        }
        let rendered: Vec<String> = identifier_scan
            .into_results()
            .into_iter()
            .filter(|rule_result| rule_result.count > 0)
            .map(|rule_result| {
                let positions: Vec<String> = rule_result
                    .positions
                    .iter()
                    .map(|position| match position.field {
                        Some(field) => format!("{}:{}#{}", position.line, position.column, field),
                        None => format!("{}:{}", position.line, position.column),
                    })
                    .collect();
                format!(
                    "{} {} {} [{}]",
                    rule_result.rule,
                    rule_result.status,
                    rule_result.count,
                    positions.join(" ")
                )
            })
            .collect();
        expected.assert_eq(&rendered.join("\n"));
    }

    #[test]
    fn valid_bsn_near_a_context_word_fails() {
        check("BSN: 111222333", expect!["bsn fail 1 [1:6]"]);
        check(
            "burgerservicenummer van de patiënt is 1234.56.782",
            expect!["bsn fail 1 [1:39]"],
        );
        check("sofinummer 123-456-782", expect!["bsn fail 1 [1:12]"]);
    }

    #[test]
    fn valid_bsn_without_context_is_a_possible_bsn_for_review() {
        check(
            "patient 111222333 seen",
            expect!["possible-bsn review 1 [1:9]"],
        );
    }

    #[test]
    fn invalid_bsn_with_context_is_not_a_bsn() {
        check("bsn 111222334", expect![""]);
    }

    #[test]
    fn context_word_far_away_does_not_count() {
        check(
            "bsn is not recorded in this analysis, which is fine and long; 111222333",
            expect!["possible-bsn review 1 [1:63]"],
        );
    }

    #[test]
    fn bsn_column_header_lends_context() {
        let table_columns = TableColumns::from_header([&b"group"[..], b"patient_bsn"].into_iter());
        let table = format!("group,patient_bsn\n{}a,111222333\n", "x,1\n".repeat(20));
        check_with(&table, Some(table_columns), expect!["bsn fail 1 [22:3#2]"]);
    }

    #[test]
    fn decimals_are_numbers_not_identifiers() {
        check("p = 0.111222333 and 0.12345678901234566", expect![""]);
        check("estimate 1112223334.5", expect![""]);
    }

    #[test]
    fn email_addresses_fail_and_look_alikes_pass() {
        check(
            "contact: jan.de-vries+ct@umc.example.nl.",
            expect!["email fail 1 [1:10]"],
        );
        check(
            "user at example dot com, numpy@1.26.4, foo@bar, a@b.c, @home.nl, x.@y.nl",
            expect![""],
        );
    }

    #[test]
    fn phone_numbers_fail_in_common_dutch_spellings() {
        check(
            "06-12345678; +31 6 12345678; 020-1234567; 0031 20 1234567; (020) 123 4567; \
             0612345678 12; +31 (0)6 12345678",
            expect!["phone fail 7 [1:1 1:14 1:30 1:43 1:60 1:76 1:91]"],
        );
    }

    #[test]
    fn numbers_that_merely_start_with_zero_are_not_phones() {
        check(
            "0 12 345 6789; 0.123456789; 0031; 006 1234567; 017",
            expect![""],
        );
    }

    #[test]
    fn postcodes_are_flagged_for_review_and_look_alikes_pass() {
        check(
            "1234 AB and 1234AB",
            expect!["postcode review 2 [1:1 1:13]"],
        );
        check(
            "0123 AB, 1234 SS, 1234 ab, 1234 ABC, X1234 AB, in 2020 we saw 1500 cases",
            expect![""],
        );
    }

    #[test]
    fn dates_fail_only_with_a_birth_context() {
        check(
            "geboortedatum: 12-03-1980\ndob 1980-03-12\nborn on 12 maart 1980\nDOB=19800312",
            expect!["date-of-birth fail 4 [1:16 2:5 3:9 4:5]"],
        );
        check(
            "visit 12-03-2020, period 2019-01-01 to 2019-12-31",
            expect![""],
        );
        check("dobbelsteen 12-03-2020", expect![""]);
    }

    #[test]
    fn each_identifier_in_a_table_is_counted_once() {
        // Regression: a cell's scan ran on past the cell to the end of the file, so every
        // earlier scanned cell counted the e-mail again (and big tables took quadratic time).
        let table_columns = TableColumns::from_header([&b"a"[..], b"b", b"mail"].into_iter());
        check_with(
            "a,b,mail\nx1,y2,jan@example.nl\nx3,y4,z\n",
            Some(table_columns),
            expect!["email fail 1 [2:7#3]"],
        );
    }

    #[test]
    fn context_words_match_separators_and_camel_case_but_not_mere_birth() {
        check(
            "date_of_birth 12-03-1980\nDateOfBirth 12-03-1980\npatientDOB 12-03-1980\n\
             geb. 12-03-1980\nBirth-Date: 12-03-1980",
            expect!["date-of-birth fail 5 [1:15 2:13 3:12 4:6 5:13]"],
        );
        check(
            "birth_weight 3200 visit 12-03-2020\ngeboortegewicht 12-03-2020\n\
             birth_year 1980 12-03-2020",
            expect![""],
        );
        check(
            "patientBSN 111222333\nburger_service_nummer 111222333",
            expect!["bsn fail 2 [1:12 2:23]"],
        );
    }

    #[test]
    fn date_of_birth_column_lends_context() {
        let table_columns = TableColumns::from_header([&b"Geboortedatum"[..], b"n"].into_iter());
        let table = format!("Geboortedatum,n\n{}12/03/1980,11\n", "x,1\n".repeat(20));
        check_with(
            &table,
            Some(table_columns),
            expect!["date-of-birth fail 1 [22:1#1]"],
        );
    }

    #[test]
    fn long_digit_runs_are_flagged_but_counts_and_years_pass() {
        check(
            "id 12345678901 and 1234 and 2023 and 987654321",
            expect!["digit-run review 1 [1:4]"],
        );
        check("count,year\n1234,2023\n", expect![""]);
    }

    #[test]
    fn positions_count_characters_not_bytes() {
        check("é ü jan@example.nl", expect!["email fail 1 [1:5]"]);
    }
}
