//! Parquet files read as a flat table and written out as CSV, so that Parquet outputs and Parquet
//! datasets go through the same table rules and leakage index as CSV does.
//!
//! Owns which Parquet files are accepted (flat, within bounds, of known types and codecs), how
//! each cell is written as text, and the CSV quoting. It does not judge cells (the table rules
//! do), does not decide whether Parquet may leave a station (the policy's `allowed_extensions`
//! does, in `check`) and does not read files from disk (its callers hand it bytes). It reads with
//! the `parquet` crate's record API, without arrow.
//!
//! The CSV is comma separated with a header row of the column names and `\n` line ends. A cell
//! is quoted (RFC 4180, inner quotes doubled) when it holds `,` `"` CR or LF, and also `;` or a
//! tab: the CSV reader picks a `.csv` file's delimiter from its header, and an unquoted `;` in a
//! column name must not make it split this table on semicolons. Cell text:
//! - integers in decimal; floats in Rust's shortest round-trip form (`{}` of the stored `f32` or
//!   `f64`), with NaN as an empty cell (pandas writes a missing number as NaN);
//! - booleans `true` / `false`; strings as they are; null as an empty cell;
//! - dates `YYYY-MM-DD`; times of day `HH:MM:SS[.fff]`; timestamps ISO 8601
//!   (`YYYY-MM-DDTHH:MM:SS[.fff]`, with `Z` when the column is adjusted to UTC), fractions only
//!   as long as needed (3, 6 or 9 digits);
//! - decimals in plain decimal form (`123.45`, `-0.05`, never an exponent);
//! - binary as lowercase hex.
//!
//! No error carries a cell value: the `parquet` crate's own messages for undecodable pages can
//! quote bytes of the data, so they are withheld. Column names are named (with their number);
//! [`ParquetTableError::without_column_names`] drops them where a train chose them.

use std::fmt::{self, Write as _};
use std::panic::{catch_unwind, AssertUnwindSafe};

use chrono::{DateTime, NaiveDate, NaiveTime};
use parquet::basic::{
    Compression, ConvertedType, LogicalType, Repetition, TimeUnit, Type as PhysicalType,
};
use parquet::errors::ParquetError;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::reader::RowIter;
use parquet::record::Field;
use parquet::schema::types::ColumnDescriptor;

/// The most rows a Parquet file may declare (in its footer or its row groups together).
const MAX_ROWS: u64 = 100_000_000;
/// The most columns a Parquet file may have.
const MAX_COLUMNS: usize = 10_000;
/// The most bytes the CSV may grow to. The row and column bounds do not bound the CSV: a small
/// file can repeat one long string in every row (dictionary encoding makes that nearly free).
const MAX_CSV_BYTES: usize = 4 * 1024 * 1024 * 1024;

const PARQUET_MAGIC: &[u8] = b"PAR1";
const ENCRYPTED_PARQUET_MAGIC: &[u8] = b"PARE";

/// A column named in an error: always by its number (from 1, in schema order), and by its name
/// unless that was withheld.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParquetColumn {
    /// 1 for the first column of the schema.
    pub number: usize,
    /// The column's name in the schema; `None` once withheld.
    pub name: Option<String>,
}

impl fmt::Display for ParquetColumn {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(formatter, "column {} ({name:?})", self.number),
            None => write!(formatter, "column {}", self.number),
        }
    }
}

/// Why a Parquet file could not be converted to a CSV table. Never carries a cell value.
#[derive(Debug, thiserror::Error)]
pub enum ParquetTableError {
    /// The bytes are not a Parquet file at all.
    #[error("not a Parquet file: {reason}")]
    NotParquet { reason: &'static str },
    /// The file is encrypted; its columns cannot be read without the key.
    #[error(
        "an encrypted Parquet file (its footer ends in `PARE`), which cannot be checked; write \
         it without encryption"
    )]
    Encrypted,
    /// The footer (schema, row groups) could not be decoded.
    #[error(
        "the Parquet metadata cannot be read ({reason}); the file is damaged or was not written \
         completely"
    )]
    UnreadableMetadata { reason: String },
    /// More rows than this reader converts.
    #[error(
        "the Parquet file declares {n_rows} rows, more than the {max_rows} that are read; split \
         it into smaller files"
    )]
    TooManyRows { n_rows: u64, max_rows: u64 },
    /// More columns than this reader converts.
    #[error(
        "the Parquet file has {n_columns} columns, more than the {max_columns} that are read; \
         split it into narrower files"
    )]
    TooManyColumns {
        n_columns: usize,
        max_columns: usize,
    },
    /// A list, map, struct or repeated column: not a flat table.
    #[error(
        "{column} is nested (a list, map, struct or repeated field); only flat tables are \
         checked, so write one plain value per cell"
    )]
    NestedColumn { column: ParquetColumn },
    /// A physical and converted type the record reader has no conversion for.
    #[error(
        "{column} has type {physical_type} ({converted_type}), which is not read as a table \
         cell; write it as a number, string, date or timestamp"
    )]
    UnsupportedColumnType {
        column: ParquetColumn,
        physical_type: String,
        converted_type: String,
    },
    /// A codec this build does not decompress.
    #[error(
        "{column} is compressed with {codec}, which is not read here; write the file with \
         snappy, zstd, gzip or lz4 compression"
    )]
    UnsupportedCompression {
        column: ParquetColumn,
        codec: &'static str,
    },
    /// A page of the row group could not be decoded. The reader's own message is withheld: it
    /// can quote bytes of the data.
    #[error(
        "row group {row_group_number} cannot be decoded: a page is damaged, uses an encoding \
         that is not read here, or a string column holds bytes that are not UTF-8 (the reader's \
         message is withheld, as it can quote cell values)"
    )]
    UndecodableRowGroup { row_group_number: usize },
    /// A date, time or timestamp outside what can be written as ISO 8601.
    #[error("{column} holds a date or time out of the range that can be written as ISO 8601")]
    TimeOutOfRange { column: ParquetColumn },
    /// The table would not fit in the CSV size bound.
    #[error(
        "the table is larger than {max_csv_bytes} bytes as CSV, more than is read; split it \
         into smaller files"
    )]
    CsvTooLarge { max_csv_bytes: usize },
    /// The `parquet` crate panicked on this file.
    #[error("the Parquet reader failed on this file; it is damaged or malformed")]
    ReaderFailed,
}

impl ParquetTableError {
    /// The same error with column names withheld (numbers kept): for a report on a train's
    /// output, where the train chose the names and could spell data in them.
    pub fn without_column_names(mut self) -> ParquetTableError {
        match &mut self {
            ParquetTableError::NestedColumn { column }
            | ParquetTableError::UnsupportedColumnType { column, .. }
            | ParquetTableError::UnsupportedCompression { column, .. }
            | ParquetTableError::TimeOutOfRange { column } => column.name = None,
            ParquetTableError::NotParquet { .. }
            | ParquetTableError::Encrypted
            | ParquetTableError::UnreadableMetadata { .. }
            | ParquetTableError::TooManyRows { .. }
            | ParquetTableError::TooManyColumns { .. }
            | ParquetTableError::UndecodableRowGroup { .. }
            | ParquetTableError::CsvTooLarge { .. }
            | ParquetTableError::ReaderFailed => {}
        }
        self
    }
}

/// Reads a Parquet file (every row group) and writes it as CSV with a header row; see the module
/// documentation for how cells are written. Refuses nested columns, files beyond the row,
/// column and size bounds, and anything that is not a readable Parquet file.
pub fn parquet_to_csv(bytes: &[u8]) -> Result<Vec<u8>, ParquetTableError> {
    convert(bytes, Limits::DEFAULT)
}

/// The bounds of one conversion; tests use small ones.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_rows: u64,
    max_columns: usize,
    max_csv_bytes: usize,
}

impl Limits {
    const DEFAULT: Limits = Limits {
        max_rows: MAX_ROWS,
        max_columns: MAX_COLUMNS,
        max_csv_bytes: MAX_CSV_BYTES,
    };
}

fn convert(bytes: &[u8], limits: Limits) -> Result<Vec<u8>, ParquetTableError> {
    if bytes.len() < 2 * PARQUET_MAGIC.len() + 4 {
        return Err(ParquetTableError::NotParquet {
            reason: "it is too short to hold a Parquet header and footer",
        });
    }
    if bytes.starts_with(PARQUET_MAGIC) && bytes.ends_with(ENCRYPTED_PARQUET_MAGIC) {
        return Err(ParquetTableError::Encrypted);
    }
    if !bytes.starts_with(PARQUET_MAGIC) || !bytes.ends_with(PARQUET_MAGIC) {
        return Err(ParquetTableError::NotParquet {
            reason: "it does not start and end with the Parquet magic bytes `PAR1`",
        });
    }
    // The reader is third-party code run over bytes a train wrote; the checks must come back
    // with a verdict whatever it does, so a panic in it is caught and becomes an error.
    // Unwind safety: nothing outside the closure is observed after a panic.
    catch_unwind(AssertUnwindSafe(|| convert_parquet(bytes, limits)))
        .unwrap_or(Err(ParquetTableError::ReaderFailed))
}

/// How the values of one column are written, beyond what the record reader's `Field` says.
#[derive(Debug, Clone, Copy)]
enum ColumnKind {
    Plain,
    /// Timestamps: whether to write `Z`, and the unit of raw `INT64` values (nanoseconds arrive
    /// from the record reader as plain integers).
    Timestamp {
        is_adjusted_to_utc: bool,
        unit: Unit,
    },
    /// Times of day stored as nanoseconds, which arrive as plain integers.
    TimeOfDayNanos,
}

#[derive(Debug, Clone, Copy)]
enum Unit {
    Millis,
    Micros,
    Nanos,
}

fn convert_parquet(bytes: &[u8], limits: Limits) -> Result<Vec<u8>, ParquetTableError> {
    let file_reader =
        SerializedFileReader::new(bytes::Bytes::copy_from_slice(bytes)).map_err(|error| {
            ParquetTableError::UnreadableMetadata {
                reason: reader_message(&error),
            }
        })?;
    let metadata = file_reader.metadata();
    let schema = metadata.file_metadata().schema_descr();
    let n_leaf_columns = schema.num_columns();
    let n_top_columns = schema.root_schema().get_fields().len();
    let n_columns = n_leaf_columns.max(n_top_columns);
    if n_columns > limits.max_columns {
        return Err(ParquetTableError::TooManyColumns {
            n_columns,
            max_columns: limits.max_columns,
        });
    }
    // Each row group is read for as many rows as it declares, so their sum bounds the work as
    // much as the footer's total does.
    let non_negative = |n_rows: i64| {
        u64::try_from(n_rows).map_err(|_| ParquetTableError::UnreadableMetadata {
            reason: "a row count is negative".to_string(),
        })
    };
    let footer_rows = non_negative(metadata.file_metadata().num_rows())?;
    let mut row_group_rows = 0u64;
    for row_group in metadata.row_groups() {
        row_group_rows = row_group_rows.saturating_add(non_negative(row_group.num_rows())?);
    }
    let declared_rows = footer_rows.max(row_group_rows);
    if declared_rows > limits.max_rows {
        return Err(ParquetTableError::TooManyRows {
            n_rows: declared_rows,
            max_rows: limits.max_rows,
        });
    }

    let mut column_names = Vec::with_capacity(n_top_columns);
    let mut column_kinds = Vec::with_capacity(n_top_columns);
    for (column_index, field) in schema.root_schema().get_fields().iter().enumerate() {
        let column = ParquetColumn {
            number: column_index + 1,
            name: Some(field.name().to_string()),
        };
        let is_repeated = field.get_basic_info().has_repetition()
            && field.get_basic_info().repetition() == Repetition::REPEATED;
        if field.is_group() || is_repeated {
            return Err(ParquetTableError::NestedColumn { column });
        }
        // A flat schema has one leaf per top-level field, in the same order.
        let descriptor = schema.column(column_index);
        column_kinds.push(column_kind(&descriptor, column)?);
        column_names.push(field.name().to_string());
    }
    for row_group in metadata.row_groups() {
        for (column_index, column_chunk) in row_group.columns().iter().enumerate() {
            let codec = match column_chunk.compression() {
                Compression::BROTLI(_) => "brotli",
                Compression::LZO => "lzo",
                _ => continue,
            };
            return Err(ParquetTableError::UnsupportedCompression {
                column: ParquetColumn {
                    number: column_index + 1,
                    name: column_names.get(column_index).cloned(),
                },
                codec,
            });
        }
    }

    let mut csv = Vec::new();
    if column_names.is_empty() {
        // No columns, so no header and no rows: an empty table.
        return Ok(csv);
    }
    write_csv_record(&mut csv, column_names.iter().map(String::as_str));
    let mut cell_texts: Vec<String> = vec![String::new(); column_names.len()];
    for row_group_index in 0..metadata.num_row_groups() {
        let undecodable = |_: ParquetError| ParquetTableError::UndecodableRowGroup {
            row_group_number: row_group_index + 1,
        };
        let row_group_reader = file_reader
            .get_row_group(row_group_index)
            .map_err(undecodable)?;
        let row_iter =
            RowIter::from_row_group(None, row_group_reader.as_ref()).map_err(undecodable)?;
        for row in row_iter {
            let row = row.map_err(undecodable)?;
            cell_texts.iter_mut().for_each(String::clear);
            for (column_index, (_, field)) in row.get_column_iter().enumerate() {
                write_cell_text(
                    &mut cell_texts[column_index],
                    field,
                    column_kinds[column_index],
                )
                .ok_or_else(|| {
                    let column = ParquetColumn {
                        number: column_index + 1,
                        name: Some(column_names[column_index].clone()),
                    };
                    if field.is_primitive() {
                        ParquetTableError::TimeOutOfRange { column }
                    } else {
                        ParquetTableError::NestedColumn { column }
                    }
                })?;
            }
            write_csv_record(&mut csv, cell_texts.iter().map(String::as_str));
            if csv.len() > limits.max_csv_bytes {
                return Err(ParquetTableError::CsvTooLarge {
                    max_csv_bytes: limits.max_csv_bytes,
                });
            }
        }
    }
    Ok(csv)
}

/// The `parquet` crate's message for a footer it cannot decode, without its `Parquet error:`
/// prefix. Footer messages are about structure (lengths, field ids, type names), never cells.
fn reader_message(error: &ParquetError) -> String {
    let message = error.to_string();
    let message = message
        .strip_prefix("Parquet error: ")
        .unwrap_or(&message)
        .to_string();
    let first_line = message.lines().next().unwrap_or_default();
    first_line.chars().take(200).collect()
}

/// Whether the record reader converts the column's values (it panics on the rest), and how they
/// are written.
fn column_kind(
    descriptor: &ColumnDescriptor,
    column: ParquetColumn,
) -> Result<ColumnKind, ParquetTableError> {
    let converted_type = descriptor.converted_type();
    let is_converted = match descriptor.physical_type() {
        PhysicalType::INT32 => matches!(
            converted_type,
            ConvertedType::NONE
                | ConvertedType::INT_8
                | ConvertedType::INT_16
                | ConvertedType::INT_32
                | ConvertedType::UINT_8
                | ConvertedType::UINT_16
                | ConvertedType::UINT_32
                | ConvertedType::DATE
                | ConvertedType::TIME_MILLIS
                | ConvertedType::DECIMAL
        ),
        PhysicalType::INT64 => matches!(
            converted_type,
            ConvertedType::NONE
                | ConvertedType::INT_64
                | ConvertedType::UINT_64
                | ConvertedType::TIME_MICROS
                | ConvertedType::TIMESTAMP_MILLIS
                | ConvertedType::TIMESTAMP_MICROS
                | ConvertedType::DECIMAL
        ),
        PhysicalType::BYTE_ARRAY => matches!(
            converted_type,
            ConvertedType::NONE
                | ConvertedType::UTF8
                | ConvertedType::ENUM
                | ConvertedType::JSON
                | ConvertedType::BSON
                | ConvertedType::DECIMAL
        ),
        PhysicalType::FIXED_LEN_BYTE_ARRAY => {
            matches!(converted_type, ConvertedType::NONE | ConvertedType::DECIMAL)
        }
        PhysicalType::BOOLEAN
        | PhysicalType::INT96
        | PhysicalType::FLOAT
        | PhysicalType::DOUBLE => true,
    };
    if !is_converted {
        return Err(ParquetTableError::UnsupportedColumnType {
            column,
            physical_type: descriptor.physical_type().to_string(),
            converted_type: converted_type.to_string(),
        });
    }
    let column_kind = match (descriptor.physical_type(), descriptor.logical_type_ref()) {
        // INT96 timestamps (older Spark and pandas) carry no time zone; readers take them as
        // local times.
        (PhysicalType::INT96, _) => ColumnKind::Timestamp {
            is_adjusted_to_utc: false,
            unit: Unit::Nanos,
        },
        (_, Some(LogicalType::Timestamp(timestamp_type))) => ColumnKind::Timestamp {
            is_adjusted_to_utc: timestamp_type.is_adjusted_to_u_t_c,
            unit: unit_of(&timestamp_type.unit),
        },
        (_, Some(LogicalType::Time(time_type))) if matches!(time_type.unit, TimeUnit::NANOS) => {
            ColumnKind::TimeOfDayNanos
        }
        // The legacy converted types for timestamps meant instants in UTC.
        _ if matches!(
            converted_type,
            ConvertedType::TIMESTAMP_MILLIS | ConvertedType::TIMESTAMP_MICROS
        ) =>
        {
            ColumnKind::Timestamp {
                is_adjusted_to_utc: true,
                unit: if converted_type == ConvertedType::TIMESTAMP_MILLIS {
                    Unit::Millis
                } else {
                    Unit::Micros
                },
            }
        }
        _ => ColumnKind::Plain,
    };
    Ok(column_kind)
}

fn unit_of(time_unit: &TimeUnit) -> Unit {
    match time_unit {
        TimeUnit::MILLIS => Unit::Millis,
        TimeUnit::MICROS => Unit::Micros,
        TimeUnit::NANOS => Unit::Nanos,
    }
}

/// Writes one cell's text; `None` for a time out of range or a nested value.
fn write_cell_text(cell_text: &mut String, field: &Field, column_kind: ColumnKind) -> Option<()> {
    match field {
        Field::Null => {}
        Field::Bool(value) => push(cell_text, value),
        Field::Byte(value) => push(cell_text, value),
        Field::Short(value) => push(cell_text, value),
        Field::Int(value) => push(cell_text, value),
        Field::Long(value) => match column_kind {
            ColumnKind::Timestamp {
                is_adjusted_to_utc,
                unit,
            } => write_timestamp(cell_text, *value, unit, is_adjusted_to_utc)?,
            ColumnKind::TimeOfDayNanos => write_time_of_day(cell_text, *value, Unit::Nanos)?,
            ColumnKind::Plain => push(cell_text, value),
        },
        Field::UByte(value) => push(cell_text, value),
        Field::UShort(value) => push(cell_text, value),
        Field::UInt(value) => push(cell_text, value),
        Field::ULong(value) => push(cell_text, value),
        Field::Float16(value) => push_float(cell_text, f32::from(*value)),
        Field::Float(value) => push_float(cell_text, *value),
        Field::Double(value) => push_float(cell_text, *value),
        Field::Decimal(_) => {
            // The crate writes plain decimal form, with a bare trailing point at scale 0.
            let decimal_text = field.to_string();
            cell_text.push_str(decimal_text.strip_suffix('.').unwrap_or(&decimal_text));
        }
        Field::Str(value) => cell_text.push_str(value),
        Field::Bytes(value) => cell_text.push_str(&hex::encode(value.data())),
        Field::Date(days_since_epoch) => push(
            cell_text,
            NaiveDate::from_epoch_days(*days_since_epoch)?.format("%Y-%m-%d"),
        ),
        Field::TimeMillis(millis) => {
            write_time_of_day(cell_text, i64::from(*millis), Unit::Millis)?
        }
        Field::TimeMicros(micros) => write_time_of_day(cell_text, *micros, Unit::Micros)?,
        Field::TimestampMillis(millis) => {
            write_timestamp(cell_text, *millis, Unit::Millis, is_utc(column_kind))?
        }
        Field::TimestampMicros(micros) => {
            write_timestamp(cell_text, *micros, Unit::Micros, is_utc(column_kind))?
        }
        Field::Group(_) | Field::ListInternal(_) | Field::MapInternal(_) => return None,
    }
    Some(())
}

fn push(cell_text: &mut String, value: impl fmt::Display) {
    // Writing to a String cannot fail, and the date formats here are all valid.
    let _ = write!(cell_text, "{value}");
}

/// The shortest text that reads back as the same value; NaN (pandas' missing number) is empty.
fn push_float<F: fmt::Display + PartialEq + Copy>(cell_text: &mut String, value: F) {
    // NaN is the one value not equal to itself.
    #[allow(clippy::eq_op)]
    let is_nan = value != value;
    if !is_nan {
        push(cell_text, value);
    }
}

fn is_utc(column_kind: ColumnKind) -> bool {
    match column_kind {
        ColumnKind::Timestamp {
            is_adjusted_to_utc, ..
        } => is_adjusted_to_utc,
        ColumnKind::Plain | ColumnKind::TimeOfDayNanos => true,
    }
}

fn write_timestamp(
    cell_text: &mut String,
    value: i64,
    unit: Unit,
    is_adjusted_to_utc: bool,
) -> Option<()> {
    let timestamp = match unit {
        Unit::Millis => DateTime::from_timestamp_millis(value)?,
        Unit::Micros => DateTime::from_timestamp_micros(value)?,
        Unit::Nanos => DateTime::from_timestamp_nanos(value),
    };
    push(
        cell_text,
        timestamp.naive_utc().format("%Y-%m-%dT%H:%M:%S%.f"),
    );
    if is_adjusted_to_utc {
        cell_text.push('Z');
    }
    Some(())
}

fn write_time_of_day(cell_text: &mut String, value: i64, unit: Unit) -> Option<()> {
    if value < 0 {
        return None;
    }
    let units_per_second: i64 = match unit {
        Unit::Millis => 1_000,
        Unit::Micros => 1_000_000,
        Unit::Nanos => 1_000_000_000,
    };
    let seconds = u32::try_from(value / units_per_second).ok()?;
    let nanos =
        u32::try_from(value % units_per_second * (1_000_000_000 / units_per_second)).ok()?;
    let time = NaiveTime::from_num_seconds_from_midnight_opt(seconds, nanos)?;
    push(cell_text, time.format("%H:%M:%S%.f"));
    Some(())
}

/// Appends one CSV record and its line end.
fn write_csv_record<'t>(csv: &mut Vec<u8>, cells: impl Iterator<Item = &'t str>) {
    for (cell_index, cell) in cells.enumerate() {
        if cell_index > 0 {
            csv.push(b',');
        }
        let needs_quotes = cell
            .bytes()
            .any(|byte| matches!(byte, b',' | b'"' | b'\r' | b'\n' | b';' | b'\t'));
        if needs_quotes {
            csv.push(b'"');
            for byte in cell.bytes() {
                if byte == b'"' {
                    csv.push(b'"');
                }
                csv.push(byte);
            }
            csv.push(b'"');
        } else {
            csv.extend_from_slice(cell.as_bytes());
        }
    }
    csv.push(b'\n');
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use expect_test::{expect, Expect};
    use parquet::basic::{GzipLevel, ZstdLevel};
    use parquet::data_type::{
        BoolType, ByteArray, ByteArrayType, DataType, DoubleType, FixedLenByteArray,
        FixedLenByteArrayType, FloatType, Int32Type, Int64Type,
    };
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::{SerializedColumnWriter, SerializedFileWriter};
    use parquet::schema::parser::parse_message_type;
    use parquet::schema::types::Type as SchemaType;

    use super::*;

    /// The values of one column in one row group; `None` is a null.
    enum Values {
        Bool(Vec<Option<bool>>),
        Int32(Vec<Option<i32>>),
        Int64(Vec<Option<i64>>),
        Float(Vec<Option<f32>>),
        Double(Vec<Option<f64>>),
        Bytes(Vec<Option<&'static [u8]>>),
        Text(Vec<Option<&'static str>>),
        Fixed(Vec<Option<Vec<u8>>>),
    }

    fn write_column<T: DataType>(
        column_writer: &mut SerializedColumnWriter<'_>,
        values: Vec<Option<T::T>>,
    ) {
        let typed_writer = column_writer.typed::<T>();
        let is_optional = typed_writer.get_descriptor().max_def_level() > 0;
        let definition_levels: Vec<i16> = values.iter().map(|v| i16::from(v.is_some())).collect();
        let present: Vec<T::T> = values.into_iter().flatten().collect();
        typed_writer
            .write_batch(
                &present,
                is_optional.then_some(&definition_levels[..]),
                None,
            )
            .unwrap();
    }

    /// A Parquet file of `schema` (the crate's message syntax) with one row group per entry.
    fn parquet_file_with(
        compression: Compression,
        schema: SchemaType,
        row_groups: Vec<Vec<Values>>,
    ) -> Vec<u8> {
        let schema = Arc::new(schema);
        let properties = Arc::new(
            WriterProperties::builder()
                .set_compression(compression)
                .build(),
        );
        let mut file_writer = SerializedFileWriter::new(Vec::new(), schema, properties).unwrap();
        for row_group in row_groups {
            let mut row_group_writer = file_writer.next_row_group().unwrap();
            for values in row_group {
                let mut column_writer = row_group_writer.next_column().unwrap().unwrap();
                match values {
                    Values::Bool(values) => write_column::<BoolType>(&mut column_writer, values),
                    Values::Int32(values) => write_column::<Int32Type>(&mut column_writer, values),
                    Values::Int64(values) => write_column::<Int64Type>(&mut column_writer, values),
                    Values::Float(values) => write_column::<FloatType>(&mut column_writer, values),
                    Values::Double(values) => {
                        write_column::<DoubleType>(&mut column_writer, values)
                    }
                    Values::Bytes(values) => write_column::<ByteArrayType>(
                        &mut column_writer,
                        values.into_iter().map(|v| v.map(ByteArray::from)).collect(),
                    ),
                    Values::Text(values) => write_column::<ByteArrayType>(
                        &mut column_writer,
                        values.into_iter().map(|v| v.map(ByteArray::from)).collect(),
                    ),
                    Values::Fixed(values) => write_column::<FixedLenByteArrayType>(
                        &mut column_writer,
                        values
                            .into_iter()
                            .map(|v| v.map(|bytes| FixedLenByteArray::from(ByteArray::from(bytes))))
                            .collect(),
                    ),
                }
                column_writer.close().unwrap();
            }
            row_group_writer.close().unwrap();
        }
        file_writer.into_inner().unwrap()
    }

    fn parquet_file(schema: &str, row_groups: Vec<Vec<Values>>) -> Vec<u8> {
        parquet_file_with(Compression::SNAPPY, schema_of(schema), row_groups)
    }

    /// A schema in the crate's message syntax.
    fn schema_of(message: &str) -> SchemaType {
        parse_message_type(message).unwrap()
    }

    fn render(result: Result<Vec<u8>, ParquetTableError>) -> String {
        match result {
            Ok(csv) => String::from_utf8(csv).expect("the CSV is UTF-8"),
            Err(error) => format!("error: {error}\n"),
        }
    }

    fn check(parquet: &[u8], expected: Expect) {
        expected.assert_eq(&render(parquet_to_csv(parquet)));
    }

    fn check_with_limits(parquet: &[u8], limits: Limits, expected: Expect) {
        expected.assert_eq(&render(convert(parquet, limits)));
    }

    const COUNTS_SCHEMA: &str = "message counts {
        REQUIRED INT64 id;
        OPTIONAL INT32 n;
        OPTIONAL DOUBLE mean;
        OPTIONAL BINARY name (STRING);
        OPTIONAL BOOLEAN smoker;
    }";

    fn counts_row_group() -> Vec<Values> {
        vec![
            Values::Int64(vec![Some(1), Some(2), Some(-3), Some(4)]),
            Values::Int32(vec![Some(12), None, Some(0), Some(7)]),
            Values::Double(vec![Some(0.1), Some(2.0), None, Some(f64::NAN)]),
            Values::Text(vec![
                Some("Jansen, J."),
                Some("say \"hi\""),
                None,
                Some("two\nlines"),
            ]),
            Values::Bool(vec![Some(true), Some(false), None, Some(true)]),
        ]
    }

    #[test]
    fn ints_floats_strings_nulls_and_booleans_become_csv() {
        check(
            &parquet_file(COUNTS_SCHEMA, vec![counts_row_group()]),
            expect![[r#"
                id,n,mean,name,smoker
                1,12,0.1,"Jansen, J.",true
                2,,2,"say ""hi""",false
                -3,0,,,
                4,7,,"two
                lines",true
            "#]],
        );
    }

    #[test]
    fn every_row_group_is_read() {
        let second_row_group = vec![
            Values::Int64(vec![Some(5)]),
            Values::Int32(vec![Some(30)]),
            Values::Double(vec![Some(1e-7)]),
            Values::Text(vec![Some("")]),
            Values::Bool(vec![None]),
        ];
        check(
            &parquet_file(COUNTS_SCHEMA, vec![counts_row_group(), second_row_group]),
            expect![[r#"
                id,n,mean,name,smoker
                1,12,0.1,"Jansen, J.",true
                2,,2,"say ""hi""",false
                -3,0,,,
                4,7,,"two
                lines",true
                5,30,0.0000001,,
            "#]],
        );
    }

    #[test]
    fn every_codec_pandas_and_r_write_is_read() {
        let compressions = [
            Compression::UNCOMPRESSED,
            Compression::SNAPPY,
            Compression::GZIP(GzipLevel::default()),
            Compression::ZSTD(ZstdLevel::default()),
            Compression::LZ4,
            Compression::LZ4_RAW,
        ];
        let expected = render(parquet_to_csv(&parquet_file(
            COUNTS_SCHEMA,
            vec![counts_row_group()],
        )));
        for compression in compressions {
            let parquet = parquet_file_with(
                compression,
                schema_of(COUNTS_SCHEMA),
                vec![counts_row_group()],
            );
            assert_eq!(
                render(parquet_to_csv(&parquet)),
                expected,
                "{compression:?}"
            );
        }
    }

    #[test]
    fn dates_times_timestamps_decimals_and_binary_are_written_as_text() {
        let schema = "message typed {
            REQUIRED INT32 day (DATE);
            REQUIRED INT32 at (TIME(MILLIS,false));
            REQUIRED INT64 utc_millis (TIMESTAMP(MILLIS,true));
            REQUIRED INT64 local_micros (TIMESTAMP(MICROS,false));
            REQUIRED INT64 utc_nanos (TIMESTAMP(NANOS,true));
            REQUIRED INT32 price (DECIMAL(5,2));
            REQUIRED INT64 whole (DECIMAL(10,0));
            REQUIRED FIXED_LEN_BYTE_ARRAY (9) big (DECIMAL(20,3));
            REQUIRED BINARY raw;
            REQUIRED FLOAT ratio;
            REQUIRED INT32 small (INTEGER(8,true));
            REQUIRED INT64 unsigned (INTEGER(64,false));
        }";
        let row_group = vec![
            Values::Int32(vec![Some(0), Some(19_723)]),
            Values::Int32(vec![Some(0), Some(45_296_789)]),
            Values::Int64(vec![Some(0), Some(1_704_164_645_120)]),
            Values::Int64(vec![Some(-1), Some(1_704_164_645_000_000)]),
            Values::Int64(vec![Some(1), Some(1_704_164_645_000_000_000)]),
            Values::Int32(vec![Some(12_345), Some(-5)]),
            Values::Int64(vec![Some(42), Some(-7)]),
            Values::Fixed(vec![
                Some(vec![0, 0, 0, 0, 0, 0, 0, 0x30, 0x39]),
                Some(vec![0xff; 9]),
            ]),
            Values::Bytes(vec![Some(b"\x00\xffAz"), Some(b"")]),
            Values::Float(vec![Some(0.1), Some(f32::INFINITY)]),
            Values::Int32(vec![Some(-8), Some(127)]),
            Values::Int64(vec![Some(-1), Some(3)]),
        ];
        check(
            &parquet_file(schema, vec![row_group]),
            expect![[r#"
                day,at,utc_millis,local_micros,utc_nanos,price,whole,big,raw,ratio,small,unsigned
                1970-01-01,00:00:00,1970-01-01T00:00:00Z,1969-12-31T23:59:59.999999,1970-01-01T00:00:00.000000001Z,123.45,42,12.345,00ff417a,0.1,-8,18446744073709551615
                2024-01-01,12:34:56.789,2024-01-02T03:04:05.120Z,2024-01-02T03:04:05,2024-01-02T03:04:05Z,-0.05,-7,-0.001,,inf,127,3
            "#]],
        );
    }

    /// Written by pandas 3.1 with pyarrow 26 (`df.to_parquet(path)`, snappy) from
    /// `pd.DataFrame({"sex": pd.Categorical(["f", "m", "f"]), "n": pd.array([12, None, 4],
    /// dtype="Int64"), "n_float": [12.0, np.nan, 4.0], "name": ["Jansen, J.", 'say "hi"', None],
    /// "smoker": [True, False, None], "when": <naive datetime64[ns]>, "when_utc": <UTC
    /// datetime64[us]>, "day": <dates>, "price": <Decimal>, "raw": <bytes>},
    /// index=pd.Index([10, 20, 30], name="row"))`: dictionary-encoded strings, nanosecond
    /// timestamps, a FIXED_LEN_BYTE_ARRAY decimal and the index as the last column.
    const PANDAS_PARQUET: &[u8] = include_bytes!("../tests/fixtures/pandas-snappy.parquet");
    /// Written by pyarrow 26: `pq.write_table(pa.table({"n": [12]}), path, compression="brotli")`.
    const BROTLI_PARQUET: &[u8] = include_bytes!("../tests/fixtures/pyarrow-brotli.parquet");

    #[test]
    fn a_file_written_by_pandas_is_read() {
        check(
            PANDAS_PARQUET,
            expect![[r#"
                sex,n,n_float,name,smoker,when,when_utc,day,price,raw,row
                f,12,12,"Jansen, J.",true,2024-01-02T03:04:05,2024-01-02T03:04:05Z,2024-01-01,1.50,00ff,10
                m,,,"say ""hi""",false,2024-01-02T03:04:05.123456789,2024-01-02T03:04:05.500Z,1969-12-31,-0.05,,20
                f,4,4,,,,,,,,30
            "#]],
        );
    }

    #[test]
    fn a_brotli_file_is_refused_with_the_codecs_that_are_read() {
        check(
            BROTLI_PARQUET,
            expect![[r#"
                error: column 1 ("n") is compressed with brotli, which is not read here; write the file with snappy, zstd, gzip or lz4 compression
            "#]],
        );
    }

    #[test]
    fn semicolons_and_tabs_are_quoted_so_the_header_reads_as_comma_separated() {
        // The message syntax has no quoting, so the odd name is built directly.
        let name_column = SchemaType::primitive_type_builder("a;b;c", PhysicalType::BYTE_ARRAY)
            .with_repetition(Repetition::REQUIRED)
            .with_logical_type(Some(LogicalType::String))
            .build()
            .unwrap();
        let count_column = SchemaType::primitive_type_builder("n", PhysicalType::INT32)
            .with_repetition(Repetition::REQUIRED)
            .build()
            .unwrap();
        let schema = SchemaType::group_type_builder("odd")
            .with_fields(vec![Arc::new(name_column), Arc::new(count_column)])
            .build()
            .unwrap();
        check(
            &parquet_file_with(
                Compression::SNAPPY,
                schema,
                vec![vec![
                    Values::Text(vec![Some("x\ty")]),
                    Values::Int32(vec![Some(3)]),
                ]],
            ),
            expect![[r#"
                "a;b;c",n
                "x	y",3
            "#]],
        );
    }

    #[test]
    fn nested_columns_are_refused() {
        let list_schema = "message nested {
            REQUIRED INT32 n;
            OPTIONAL group tags (LIST) {
                REPEATED group list {
                    OPTIONAL BINARY element (STRING);
                }
            }
        }";
        // Files without row groups: the schema alone is refused.
        check(
            &parquet_file(list_schema, vec![]),
            expect![[r#"
                error: column 2 ("tags") is nested (a list, map, struct or repeated field); only flat tables are checked, so write one plain value per cell
            "#]],
        );
        check(
            &parquet_file("message repeated { REPEATED INT32 codes; }", vec![]),
            expect![[r#"
                error: column 1 ("codes") is nested (a list, map, struct or repeated field); only flat tables are checked, so write one plain value per cell
            "#]],
        );
    }

    #[test]
    fn bytes_that_are_not_parquet_are_refused() {
        check(
            b"id,n\n1,12\n2,30\n",
            expect![[r#"
                error: not a Parquet file: it does not start and end with the Parquet magic bytes `PAR1`
            "#]],
        );
        check(
            b"PAR1",
            expect![[r#"
                error: not a Parquet file: it is too short to hold a Parquet header and footer
            "#]],
        );
        check(
            b"PAR1 this is no Parquet footer PAR1",
            expect![[r#"
                error: the Parquet metadata cannot be read (EOF: Parquet file too small. Size is 35 but need 544367996); the file is damaged or was not written completely
            "#]],
        );
        let parquet = parquet_file(COUNTS_SCHEMA, vec![counts_row_group()]);
        let truncated = &parquet[..parquet.len() - 10];
        check(
            truncated,
            expect![[r#"
                error: not a Parquet file: it does not start and end with the Parquet magic bytes `PAR1`
            "#]],
        );
    }

    #[test]
    fn damaged_pages_are_refused_without_quoting_their_bytes() {
        let schema = "message text { REQUIRED BINARY name (STRING); }";
        let parquet = parquet_file_with(
            Compression::UNCOMPRESSED,
            schema_of(schema),
            vec![vec![Values::Bytes(vec![Some(b"Jan\xff Jansen")])]],
        );
        check(
            &parquet,
            expect![[r#"
                error: row group 1 cannot be decoded: a page is damaged, uses an encoding that is not read here, or a string column holds bytes that are not UTF-8 (the reader's message is withheld, as it can quote cell values)
            "#]],
        );
    }

    #[test]
    fn rows_columns_and_size_beyond_the_limits_are_refused() {
        let parquet = parquet_file(COUNTS_SCHEMA, vec![counts_row_group()]);
        let limits = Limits::DEFAULT;
        check_with_limits(
            &parquet,
            Limits {
                max_rows: 3,
                ..limits
            },
            expect![[r#"
                error: the Parquet file declares 4 rows, more than the 3 that are read; split it into smaller files
            "#]],
        );
        check_with_limits(
            &parquet,
            Limits {
                max_columns: 4,
                ..limits
            },
            expect![[r#"
                error: the Parquet file has 5 columns, more than the 4 that are read; split it into narrower files
            "#]],
        );
        check_with_limits(
            &parquet,
            Limits {
                max_csv_bytes: 40,
                ..limits
            },
            expect![[r#"
                error: the table is larger than 40 bytes as CSV, more than is read; split it into smaller files
            "#]],
        );
    }

    #[test]
    fn column_names_can_be_withheld_from_a_message() {
        let error = ParquetTableError::NestedColumn {
            column: ParquetColumn {
                number: 2,
                name: Some("Jan Jansen".to_string()),
            },
        };
        expect!["column 2 is nested (a list, map, struct or repeated field); only flat tables are checked, so write one plain value per cell"]
            .assert_eq(&error.without_column_names().to_string());
    }
}
