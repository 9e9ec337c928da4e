//! A small, fast reader for delimited text (CSV, TSV, semicolon CSV as Dutch spreadsheets write
//! it): records of cells with the line and byte offset where each cell starts.
//!
//! Owns delimiter sniffing and RFC 4180 quoting (quoted cells may hold delimiters, doubled quotes
//! and line breaks). It does not interpret cells (the table rules do) and never fails: malformed
//! input (an unterminated quote) is read as well as it can be and reported through a flag, so a
//! hostile file cannot stop the checks.
//!
//! While it looks for the end of a cell it also notes, at no extra branch, whether the cell holds
//! a byte that can start an identifier pattern and whether it is all digits: the identifier scan
//! then visits only cells that can hold an identifier (see [`Cell::may_hold_identifier`]).

use std::borrow::Cow;

use crate::identifiers::{can_start_pattern, ShortestPatterns};

/// Byte class bits of the reader's lookup table.
const ENDS_CELL: u8 = 1;
const STARTS_PATTERN: u8 = 2;
const NOT_A_DIGIT: u8 = 4;

/// One cell of a record, borrowed from the input unless it had to be unescaped.
#[derive(Debug, Clone)]
pub(crate) struct Cell<'a> {
    /// The cell's text, without surrounding quotes, doubled quotes undone.
    pub(crate) text: Cow<'a, [u8]>,
    /// Byte offset of the cell's first byte (its opening quote, if quoted) in the input.
    pub(crate) offset: usize,
    /// 1-based physical line on which the cell starts.
    pub(crate) line: usize,
    /// Byte offset of the start of that line.
    pub(crate) line_start: usize,
    /// Byte offset just after the cell's raw bytes (closing quote and anything after it
    /// included), where its delimiter or line break is.
    pub(crate) raw_end: usize,
    /// `STARTS_PATTERN` and `NOT_A_DIGIT` bits of the cell's bytes, or-ed together.
    byte_classes: u8,
}

impl<'a> Cell<'a> {
    /// A cell read by another reader (JSON); always worth scanning.
    pub(crate) fn located(
        text: Cow<'a, [u8]>,
        offset: usize,
        line: usize,
        line_start: usize,
    ) -> Cell<'a> {
        let raw_end = offset + text.len();
        Cell {
            text,
            offset,
            line,
            line_start,
            raw_end,
            byte_classes: STARTS_PATTERN | NOT_A_DIGIT,
        }
    }

    /// Whether the identifier scan must look at this cell: it has a byte that can start a
    /// pattern and is not too short to hold one (see [`ShortestPatterns`]).
    pub(crate) fn may_hold_identifier(&self, shortest_patterns: ShortestPatterns) -> bool {
        let raw_length = self.raw_end - self.offset;
        let starts_pattern = self.byte_classes & STARTS_PATTERN != 0;
        let is_too_short = raw_length < shortest_patterns.any_pattern
            || (self.byte_classes & NOT_A_DIGIT == 0 && raw_length < shortest_patterns.digits_only);
        starts_pattern && !is_too_short
    }
}

/// Reads records one at a time into a reusable vector of cells.
#[derive(Debug)]
pub(crate) struct DelimitedReader<'a> {
    bytes: &'a [u8],
    delimiter: u8,
    byte_classes: [u8; 256],
    position: usize,
    line: usize,
    line_start: usize,
    /// Set when a quoted cell ran to the end of the input without its closing quote.
    pub(crate) saw_unterminated_quote: bool,
}

impl<'a> DelimitedReader<'a> {
    pub(crate) fn new(bytes: &'a [u8], delimiter: u8) -> DelimitedReader<'a> {
        DelimitedReader::starting_at(bytes, delimiter, 0)
    }

    /// A reader that skips the first `start` bytes (a byte-order mark); columns on the first
    /// line are counted from there, as an editor shows them.
    pub(crate) fn starting_at(bytes: &'a [u8], delimiter: u8, start: usize) -> DelimitedReader<'a> {
        let mut byte_classes = [0u8; 256];
        for (byte, byte_class) in byte_classes.iter_mut().enumerate() {
            let byte = byte as u8;
            if byte == delimiter || byte == b'\n' {
                *byte_class |= ENDS_CELL;
            }
            if can_start_pattern(byte) {
                *byte_class |= STARTS_PATTERN;
            }
            // A carriage return splits digit runs, so it cannot make a short number longer.
            if !byte.is_ascii_digit() && byte != b'\r' {
                *byte_class |= NOT_A_DIGIT;
            }
        }
        DelimitedReader {
            bytes,
            delimiter,
            byte_classes,
            position: start,
            line: 1,
            line_start: start,
            saw_unterminated_quote: false,
        }
    }

    /// Reads the next record into `cells` (cleared first). Returns false at the end of input.
    /// A blank line is returned as a record with one empty cell; callers skip it.
    pub(crate) fn next_record(&mut self, cells: &mut Vec<Cell<'a>>) -> bool {
        cells.clear();
        let bytes = self.bytes;
        let n_bytes = bytes.len();
        if self.position >= n_bytes {
            return false;
        }
        loop {
            let cell_offset = self.position;
            let cell_line = self.line;
            let cell_line_start = self.line_start;
            let (text, byte_classes) = if self.position < n_bytes && bytes[self.position] == b'"' {
                // Quoted cells are rare in counts tables; scanning them always is simpler.
                (self.read_quoted_cell(), STARTS_PATTERN | NOT_A_DIGIT)
            } else {
                let start = self.position;
                let mut end = start;
                let mut byte_classes = 0;
                while end < n_bytes {
                    let byte_class = self.byte_classes[bytes[end] as usize];
                    if byte_class & ENDS_CELL != 0 {
                        break;
                    }
                    byte_classes |= byte_class;
                    end += 1;
                }
                self.position = end;
                let mut text_end = end;
                if text_end > start && bytes[text_end - 1] == b'\r' {
                    text_end -= 1;
                }
                (Cow::Borrowed(&bytes[start..text_end]), byte_classes)
            };
            cells.push(Cell {
                text,
                offset: cell_offset,
                line: cell_line,
                line_start: cell_line_start,
                raw_end: self.position,
                byte_classes,
            });
            if self.position >= n_bytes {
                return true;
            }
            if bytes[self.position] == self.delimiter {
                self.position += 1;
                if self.position >= n_bytes {
                    // A trailing delimiter at the very end still opens one (empty) cell.
                    cells.push(Cell {
                        text: Cow::Borrowed(&[]),
                        offset: self.position,
                        line: self.line,
                        line_start: self.line_start,
                        raw_end: self.position,
                        byte_classes: 0,
                    });
                    return true;
                }
                continue;
            }
            // A line break ends the record.
            self.position += 1;
            self.line += 1;
            self.line_start = self.position;
            return true;
        }
    }

    /// Reads a quoted cell starting at the opening quote; leaves the position on the delimiter or
    /// line break after it (anything between the closing quote and that is dropped).
    fn read_quoted_cell(&mut self) -> Cow<'a, [u8]> {
        let bytes = self.bytes;
        let n_bytes = bytes.len();
        let content_start = self.position + 1;
        let mut cursor = content_start;
        let mut has_doubled_quotes = false;
        let content_end;
        loop {
            if cursor >= n_bytes {
                self.saw_unterminated_quote = true;
                content_end = n_bytes;
                break;
            }
            match bytes[cursor] {
                b'"' => {
                    if cursor + 1 < n_bytes && bytes[cursor + 1] == b'"' {
                        has_doubled_quotes = true;
                        cursor += 2;
                    } else {
                        content_end = cursor;
                        cursor += 1;
                        break;
                    }
                }
                b'\n' => {
                    cursor += 1;
                    self.line += 1;
                    self.line_start = cursor;
                }
                _ => cursor += 1,
            }
        }
        while cursor < n_bytes && bytes[cursor] != self.delimiter && bytes[cursor] != b'\n' {
            cursor += 1;
        }
        self.position = cursor;
        let content = &bytes[content_start..content_end];
        if has_doubled_quotes {
            let mut unescaped = Vec::with_capacity(content.len());
            let mut index = 0;
            while index < content.len() {
                unescaped.push(content[index]);
                if content[index] == b'"' && content.get(index + 1) == Some(&b'"') {
                    index += 1;
                }
                index += 1;
            }
            Cow::Owned(unescaped)
        } else {
            Cow::Borrowed(content)
        }
    }
}

/// Whether a record is a blank line (one empty cell).
pub(crate) fn is_blank_record(cells: &[Cell<'_>]) -> bool {
    cells.len() == 1 && cells[0].text.iter().all(u8::is_ascii_whitespace)
}

/// Picks the delimiter of a `.csv` file from its first record: whichever of `,` `;` and tab
/// occurs most often outside quotes; `,` when none does.
pub(crate) fn sniff_delimiter(bytes: &[u8]) -> u8 {
    // The header is short; looking further only costs time on a file with one huge line.
    const SNIFF_LIMIT: usize = 64 * 1024;
    let mut n_commas = 0usize;
    let mut n_semicolons = 0usize;
    let mut n_tabs = 0usize;
    let mut inside_quotes = false;
    for &byte in bytes.iter().take(SNIFF_LIMIT) {
        match byte {
            b'"' => inside_quotes = !inside_quotes,
            b'\n' if !inside_quotes => break,
            b',' if !inside_quotes => n_commas += 1,
            b';' if !inside_quotes => n_semicolons += 1,
            b'\t' if !inside_quotes => n_tabs += 1,
            _ => {}
        }
    }
    if n_semicolons > n_commas && n_semicolons >= n_tabs {
        b';'
    } else if n_tabs > n_commas && n_tabs > n_semicolons {
        b'\t'
    } else {
        b','
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    fn check(input: &str, delimiter: u8, expected: Expect) {
        let mut reader = DelimitedReader::new(input.as_bytes(), delimiter);
        let mut cells = Vec::new();
        let mut rendered = String::new();
        while reader.next_record(&mut cells) {
            let rendered_cells: Vec<String> = cells
                .iter()
                .map(|cell| {
                    format!(
                        "{}@{}:{}",
                        String::from_utf8_lossy(&cell.text),
                        cell.line,
                        cell.offset - cell.line_start + 1
                    )
                })
                .collect();
            rendered.push_str(&rendered_cells.join(" | "));
            rendered.push('\n');
        }
        if reader.saw_unterminated_quote {
            rendered.push_str("unterminated quote\n");
        }
        expected.assert_eq(&rendered);
    }

    #[test]
    fn plain_cells_carry_their_line_and_column() {
        check(
            "a,b,c\n1,22,333\n",
            b',',
            expect![[r#"
                a@1:1 | b@1:3 | c@1:5
                1@2:1 | 22@2:3 | 333@2:6
            "#]],
        );
    }

    #[test]
    fn quoted_cells_keep_delimiters_line_breaks_and_doubled_quotes() {
        check(
            "name,n\r\n\"x, \"\"y\"\"\",12\r\n\"two\nlines\",13\n",
            b',',
            expect![[r#"
                name@1:1 | n@1:6
                x, "y"@2:1 | 12@2:12
                two
                lines@3:1 | 13@4:8
            "#]],
        );
    }

    #[test]
    fn trailing_delimiter_and_missing_final_newline_still_give_cells() {
        check(
            "a;b;\n1;2",
            b';',
            expect![[r#"
                a@1:1 | b@1:3 | @1:5
                1@2:1 | 2@2:3
            "#]],
        );
    }

    #[test]
    fn unterminated_quote_is_reported_not_fatal() {
        check(
            "a,\"b\n1,2\n",
            b',',
            expect![[r#"
                a@1:1 | b
                1,2
                @1:3
                unterminated quote
            "#]],
        );
    }

    #[test]
    fn delimiter_is_sniffed_from_the_header() {
        assert_eq!(sniff_delimiter(b"a,b,c\n1;2;3;4;5\n"), b',');
        assert_eq!(sniff_delimiter(b"a;b;c\n"), b';');
        assert_eq!(sniff_delimiter(b"a\tb\n"), b'\t');
        assert_eq!(sniff_delimiter(b"\"a;b\",c\n"), b',');
        assert_eq!(sniff_delimiter(b"single\n"), b',');
    }

    #[test]
    fn only_cells_that_can_hold_an_identifier_are_marked_for_scanning() {
        let mut reader = DelimitedReader::new(
            b"female,1234,1234567,12345678,40-49,a@b,80+,a@b.nl,\"x\",\"quoted\"\n",
            b',',
        );
        let mut cells = Vec::new();
        assert!(reader.next_record(&mut cells));
        let marked: Vec<bool> = cells
            .iter()
            .map(|cell| cell.may_hold_identifier(ShortestPatterns::for_max_digit_run(10)))
            .collect();
        assert_eq!(
            marked,
            [false, false, false, true, false, false, false, true, false, true]
        );
        let marked: Vec<bool> = cells
            .iter()
            .map(|cell| cell.may_hold_identifier(ShortestPatterns::for_max_digit_run(5)))
            .collect();
        assert_eq!(
            marked,
            [false, false, true, true, true, false, false, true, false, true]
        );
    }
}

/// One cell of a table shown to a reviewer: its text (lossy UTF-8) and the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewCell {
    pub text: String,
    pub line: u64,
}

/// The first `max_records` records of a delimited table, read exactly as the checks read it
/// (same delimiter sniffing and quoting), so a finding's line and field point at the cell a
/// reviewer sees. Returns the records and whether more followed.
pub fn preview_table(bytes: &[u8], max_records: usize) -> (Vec<Vec<PreviewCell>>, bool) {
    let start = if bytes.starts_with(b"\xEF\xBB\xBF") {
        3
    } else {
        0
    };
    let mut reader = DelimitedReader::starting_at(bytes, sniff_delimiter(&bytes[start..]), start);
    let mut cells = Vec::new();
    let mut records = Vec::new();
    while reader.next_record(&mut cells) {
        if is_blank_record(&cells) {
            continue;
        }
        if records.len() == max_records {
            return (records, true);
        }
        records.push(
            cells
                .iter()
                .map(|cell| {
                    let text = String::from_utf8_lossy(&cell.text);
                    PreviewCell {
                        text: text.trim_end_matches('\r').to_string(),
                        line: cell.line as u64,
                    }
                })
                .collect(),
        );
    }
    (records, false)
}

#[cfg(test)]
mod preview_tests {
    use super::*;

    #[test]
    fn a_preview_reads_quotes_and_lines_like_the_checks() {
        let (records, more) = preview_table(b"a;b\n\"x;\ny\";2\n\n3;4\n5;6\n", 3);
        assert!(more);
        assert_eq!(records.len(), 3);
        assert_eq!(records[1][0].text, "x;\ny");
        assert_eq!(records[1][1].line, 3);
        assert_eq!(records[2][0].line, 5);
    }
}
