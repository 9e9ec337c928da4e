//! JSON arrays of flat records (`[{"sex": "f", "n": 12}, ...]`, what `pandas.to_json(orient=
//! "records")` and `jsonlite::toJSON` write) read as a table, with the line and column of every
//! value.
//!
//! Owns recognising that shape and reading it record by record, so a large table is never held
//! in memory twice. It does not validate JSON (the caller has done so with serde_json) and does
//! not judge cells (the table rules do). Anything else (an object at the top, nested values) is
//! "not a table" and left to review.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::delimited::Cell;

/// The JSON type of a cell; counts read numbers and numeric strings alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonValueType {
    String,
    Number,
    Bool,
    Null,
}

/// A value of a record: its text (strings unescaped, other values as written) and where it is.
#[derive(Debug, Clone)]
pub(crate) struct JsonCell<'a> {
    pub(crate) cell: Cell<'a>,
    pub(crate) value_type: JsonValueType,
}

/// Reads an array of flat records one record at a time, so memory does not grow with the file.
/// Keys get column indexes in the order they first appear.
pub(crate) struct JsonRecordReader<'a> {
    cursor: JsonCursor<'a>,
    header: Vec<String>,
    column_by_key: HashMap<Cow<'a, [u8]>, usize>,
    finished: bool,
}

impl std::fmt::Debug for JsonRecordReader<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("JsonRecordReader")
            .field("position", &self.cursor.position)
            .field("n_columns", &self.header.len())
            .finish()
    }
}

impl<'a> JsonRecordReader<'a> {
    /// A reader over `bytes` (valid JSON, possibly after a byte-order mark at `start`); `None`
    /// unless it opens an array.
    pub(crate) fn new(bytes: &'a [u8], start: usize) -> Option<JsonRecordReader<'a>> {
        let mut cursor = JsonCursor {
            bytes,
            position: start,
            line: 1,
            line_start: start,
        };
        cursor.skip_whitespace();
        cursor.expect(b'[')?;
        cursor.skip_whitespace();
        let finished = cursor.peek() == Some(b']');
        Some(JsonRecordReader {
            cursor,
            header: Vec::new(),
            column_by_key: HashMap::new(),
            finished,
        })
    }

    /// Every key seen so far, in first-seen order.
    pub(crate) fn header(&self) -> &[String] {
        &self.header
    }

    /// Reads the next record (its values in its own order, each with its key's column index).
    /// `Some(false)` after the last; `None` as soon as the array turns out not to be flat
    /// records.
    pub(crate) fn next_record(&mut self, record: &mut Vec<(usize, JsonCell<'a>)>) -> Option<bool> {
        record.clear();
        if self.finished {
            return Some(false);
        }
        let cursor = &mut self.cursor;
        cursor.skip_whitespace();
        cursor.expect(b'{')?;
        cursor.skip_whitespace();
        if cursor.peek() == Some(b'}') {
            cursor.position += 1;
        } else {
            loop {
                cursor.skip_whitespace();
                let key = cursor.read_string()?.cell.text;
                let column_index = match self.column_by_key.get(&key) {
                    Some(&column_index) => column_index,
                    None => {
                        let column_index = self.header.len();
                        self.header.push(String::from_utf8_lossy(&key).into_owned());
                        self.column_by_key.insert(key, column_index);
                        column_index
                    }
                };
                cursor.skip_whitespace();
                cursor.expect(b':')?;
                cursor.skip_whitespace();
                record.push((column_index, cursor.read_scalar()?));
                cursor.skip_whitespace();
                match cursor.next_byte()? {
                    b',' => continue,
                    b'}' => break,
                    _ => return None,
                }
            }
        }
        cursor.skip_whitespace();
        match cursor.next_byte()? {
            b',' => {}
            b']' => self.finished = true,
            _ => return None,
        }
        Some(true)
    }
}

struct JsonCursor<'a> {
    bytes: &'a [u8],
    position: usize,
    line: usize,
    line_start: usize,
}

impl<'a> JsonCursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.position).copied()
    }

    fn next_byte(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.position += 1;
        Some(byte)
    }

    fn expect(&mut self, expected: u8) -> Option<()> {
        (self.next_byte()? == expected).then_some(())
    }

    fn skip_whitespace(&mut self) {
        while let Some(byte) = self.peek() {
            match byte {
                b' ' | b'\t' | b'\r' => self.position += 1,
                b'\n' => {
                    self.position += 1;
                    self.line += 1;
                    self.line_start = self.position;
                }
                _ => break,
            }
        }
    }

    fn cell_here(&self, text: Cow<'a, [u8]>) -> Cell<'a> {
        Cell::located(text, self.position, self.line, self.line_start)
    }

    fn read_string(&mut self) -> Option<JsonCell<'a>> {
        let opening_quote = self.position;
        if self.peek()? != b'"' {
            return None;
        }
        let mut cursor = opening_quote + 1;
        let mut has_escapes = false;
        loop {
            match *self.bytes.get(cursor)? {
                b'"' => break,
                b'\\' => {
                    has_escapes = true;
                    cursor += 2;
                }
                _ => cursor += 1,
            }
        }
        let closing_quote = cursor;
        let text = if has_escapes {
            let unescaped: String =
                serde_json::from_slice(&self.bytes[opening_quote..=closing_quote]).ok()?;
            Cow::Owned(unescaped.into_bytes())
        } else {
            Cow::Borrowed(&self.bytes[opening_quote + 1..closing_quote])
        };
        let cell = self.cell_here(text);
        self.position = closing_quote + 1;
        Some(JsonCell {
            cell,
            value_type: JsonValueType::String,
        })
    }

    fn read_scalar(&mut self) -> Option<JsonCell<'a>> {
        let start = self.position;
        let (value_type, end) = match self.peek()? {
            b'"' => return self.read_string(),
            b't' => (JsonValueType::Bool, start + 4),
            b'f' => (JsonValueType::Bool, start + 5),
            b'n' => (JsonValueType::Null, start + 4),
            b'-' | b'0'..=b'9' => {
                let mut end = start + 1;
                while end < self.bytes.len()
                    && matches!(
                        self.bytes[end],
                        b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-'
                    )
                {
                    end += 1;
                }
                (JsonValueType::Number, end)
            }
            _ => return None,
        };
        let text = Cow::Borrowed(self.bytes.get(start..end)?);
        let cell = self.cell_here(text);
        self.position = end;
        Some(JsonCell { cell, value_type })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    fn check(json: &str, expected: Expect) {
        let rendered = match read_all_records(json) {
            None => "not a table".to_string(),
            Some((header, records)) => {
                let mut rendered = format!("header: {}\n", header.join(", "));
                for record in &records {
                    let cells: Vec<String> = record
                        .iter()
                        .map(|(column_index, json_cell)| {
                            format!(
                                "{column_index}={}({:?})@{}:{}",
                                String::from_utf8_lossy(&json_cell.cell.text),
                                json_cell.value_type,
                                json_cell.cell.line,
                                json_cell.cell.offset - json_cell.cell.line_start + 1
                            )
                        })
                        .collect();
                    rendered.push_str(&cells.join(" "));
                    rendered.push('\n');
                }
                rendered
            }
        };
        expected.assert_eq(&rendered);
    }

    type Record<'a> = Vec<(usize, JsonCell<'a>)>;

    fn read_all_records(json: &str) -> Option<(Vec<String>, Vec<Record<'_>>)> {
        let mut json_record_reader = JsonRecordReader::new(json.as_bytes(), 0)?;
        let mut records = Vec::new();
        let mut record = Vec::new();
        while json_record_reader.next_record(&mut record)? {
            records.push(record.clone());
        }
        Some((json_record_reader.header().to_vec(), records))
    }

    #[test]
    fn records_are_read_with_positions_and_types() {
        check(
            "[\n  {\"sex\": \"f\", \"n\": 12},\n  {\"n\": 3.0, \"sex\": \"m\\u00e9\", \"ok\": true, \"x\": null}\n]",
            expect![[r#"
                header: sex, n, ok, x
                0=f(String)@2:11 1=12(Number)@2:21
                1=3.0(Number)@3:9 0=mé(String)@3:21 2=true(Bool)@3:38 3=null(Null)@3:49
            "#]],
        );
    }

    #[test]
    fn empty_array_is_an_empty_table() {
        check(
            "[ ]",
            expect![[r#"
            header: 
        "#]],
        );
    }

    #[test]
    fn other_shapes_are_not_tables() {
        check(r#"{"n": 3}"#, expect!["not a table"]);
        check(r#"[{"n": [1, 2]}]"#, expect!["not a table"]);
        check(r#"[1, 2]"#, expect!["not a table"]);
        check(r#"[{"n": {"a": 1}}]"#, expect!["not a table"]);
    }
}
