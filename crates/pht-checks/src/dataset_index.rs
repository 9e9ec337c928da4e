//! The leakage index of one dataset: its row count, the hashes of its normalised rows (for rows
//! copied whole) and its columns' values (for rows that single a person out by a combination of
//! values, `quasi_identifiers`), built once per dataset version and cached by the station
//! (serialised as `pht.dataset-index.v2`).
//!
//! Owns building the index from CSV bytes and its versioned serialisation. It does not read the
//! dataset from disk or decide where the cache lives (the station does); the hash definition is
//! in `row_hash`, shared with the leakage rule.
//!
//! The first record of the CSV is its header and is not indexed (a header is not data). Blank
//! lines are skipped. The delimiter is sniffed like for outputs (`,`, `;` or tab).

use serde::{Deserialize, Serialize};

use base64::Engine as _;

use crate::delimited::{is_blank_record, sniff_delimiter, DelimitedReader};
use crate::quasi_identifiers::{value_hash, DatasetColumn, NO_CODE};
use crate::row_hash::{normalise_cell, RowHash, RowHasher, ROW_HASH_BYTES};

/// The version string of the serialised index.
pub const DATASET_INDEX_VERSION: &str = "pht.dataset-index.v2";

/// Why a serialised dataset index could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DatasetIndexError {
    /// The index was written by another version of the format.
    #[error(
        "dataset index {name:?} has version {found:?}, expected {DATASET_INDEX_VERSION:?}; \
         rebuild it with DatasetIndex::from_csv"
    )]
    UnsupportedVersion { name: String, found: String },
    /// The row hashes are not hex of whole 16-byte hashes.
    #[error("dataset index {name:?} has malformed row hashes: {reason}; rebuild the index")]
    MalformedRowHashes { name: String, reason: String },
    /// A column's codes or values are not whole numbers of their width, or a code points
    /// past the column's values.
    #[error("dataset index {name:?} has a malformed column {column}: {reason}; rebuild the index")]
    MalformedColumn {
        name: String,
        column: usize,
        reason: String,
    },
    /// The stored hash width is not the one this version uses.
    #[error(
        "dataset index {name:?} stores {found}-byte row hashes, expected {ROW_HASH_BYTES}; \
         rebuild the index"
    )]
    UnsupportedHashWidth { name: String, found: usize },
}

/// Row count and normalised row hashes of one dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetIndex {
    name: String,
    n_rows: u64,
    n_columns: u64,
    /// Distinct cell counts of the data rows, sorted: only an output row with one of these cell
    /// counts can match, so other rows are never hashed.
    cell_counts: Vec<u64>,
    /// Sorted and deduplicated.
    row_hashes: Vec<RowHash>,
    /// Every column's values, for the quasi-identifier comparison.
    columns: Vec<DatasetColumn>,
    /// Compared with outputs for leakage only, not for row counts: the state a stop received
    /// is a few rows of running results, not a dataset an output could be a copy of by size.
    /// Never serialised (such an index is not cached).
    leakage_only: bool,
}

impl DatasetIndex {
    /// Builds the index of a dataset from its CSV bytes. Never fails: an unreadable line is
    /// indexed as whatever cells it yields.
    pub fn from_csv(name: impl Into<String>, csv_bytes: &[u8]) -> DatasetIndex {
        let delimiter = sniff_delimiter(csv_bytes);
        let comma_is_decimal = delimiter != b',';
        let mut reader = DelimitedReader::new(csv_bytes, delimiter);
        let mut cells = Vec::new();
        let mut row_hasher = RowHasher::default();
        let mut row_hashes = Vec::new();
        let mut cell_counts = Vec::new();
        let mut n_columns = 0;
        let mut n_rows = 0;
        let mut seen_header = false;
        let mut column_names = Vec::new();
        let mut column_values: Vec<Vec<u64>> = Vec::new();
        let mut normalised = Vec::new();
        while reader.next_record(&mut cells) {
            if is_blank_record(&cells) {
                continue;
            }
            if !seen_header {
                seen_header = true;
                n_columns = cells.len() as u64;
                for cell in &cells {
                    normalised.clear();
                    normalise_cell(&cell.text, false, &mut normalised);
                    column_names.push(String::from_utf8_lossy(&normalised).into_owned());
                    column_values.push(Vec::new());
                }
                continue;
            }
            for (column_index, values) in column_values.iter_mut().enumerate() {
                normalised.clear();
                if let Some(cell) = cells.get(column_index) {
                    normalise_cell(&cell.text, comma_is_decimal, &mut normalised);
                }
                values.push(value_hash(&normalised));
            }
            n_rows += 1;
            let cell_count = cells.len() as u64;
            if !cell_counts.contains(&cell_count) {
                cell_counts.push(cell_count);
            }
            row_hashes
                .push(row_hasher.hash_row(cells.iter().map(|cell| &*cell.text), comma_is_decimal));
        }
        cell_counts.sort_unstable();
        row_hashes.sort_unstable();
        row_hashes.dedup();
        let columns = column_names
            .into_iter()
            .zip(column_values)
            .map(|(column_name, values)| DatasetColumn::from_values(column_name, &values))
            .collect();
        DatasetIndex {
            name: name.into(),
            n_rows,
            n_columns,
            cell_counts,
            row_hashes,
            columns,
            leakage_only: false,
        }
    }

    pub(crate) fn columns(&self) -> &[DatasetColumn] {
        &self.columns
    }

    /// Bytes the index holds in memory (row hashes and column values), for `make bench`.
    pub fn memory_bytes(&self) -> usize {
        self.row_hashes.len() * ROW_HASH_BYTES
            + self.cell_counts.len() * 8
            + self
                .columns
                .iter()
                .map(DatasetColumn::memory_bytes)
                .sum::<usize>()
    }

    /// This index, used for the leakage rule only (see the field's documentation).
    pub fn for_leakage_only(mut self) -> DatasetIndex {
        self.leakage_only = true;
        self
    }

    /// Whether the index is used for the leakage rule only.
    pub fn is_leakage_only(&self) -> bool {
        self.leakage_only
    }

    /// The dataset's name as the train and policy know it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Data rows (header excluded).
    pub fn n_rows(&self) -> u64 {
        self.n_rows
    }

    /// Columns in the header.
    pub fn n_columns(&self) -> u64 {
        self.n_columns
    }

    /// Distinct normalised rows.
    pub fn n_distinct_rows(&self) -> usize {
        self.row_hashes.len()
    }

    /// Whether a row with exactly these (raw) cells occurs in the dataset, after normalisation.
    /// `comma_is_decimal` tells whether `12,5` in these cells means twelve and a half.
    pub fn contains_row<'c>(
        &self,
        cells: impl ExactSizeIterator<Item = &'c [u8]>,
        comma_is_decimal: bool,
    ) -> bool {
        let mut row_hasher = RowHasher::default();
        self.contains_hash(&row_hasher.hash_row(cells, comma_is_decimal))
    }

    pub(crate) fn has_rows_with_cell_count(&self, cell_count: u64) -> bool {
        self.cell_counts.binary_search(&cell_count).is_ok()
    }

    pub(crate) fn contains_hash(&self, row_hash: &RowHash) -> bool {
        self.row_hashes.binary_search(row_hash).is_ok()
    }
}

/// The serialised form: hashes as one hex string (32 hex digits per row, sorted) because a JSON
/// array of strings would triple the size of a large index.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatasetIndex<'a> {
    version: std::borrow::Cow<'a, str>,
    name: std::borrow::Cow<'a, str>,
    n_rows: u64,
    n_columns: u64,
    cell_counts: std::borrow::Cow<'a, [u64]>,
    row_hash_bytes: usize,
    row_hashes: String,
    columns: Vec<RawColumn<'a>>,
}

/// A column in the serialised form: its distinct value hashes (8 bytes each, little-endian) and
/// each row's code (4 bytes each, little-endian, `ffffffff` for no value), both in base64.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawColumn<'a> {
    name: std::borrow::Cow<'a, str>,
    values: String,
    codes: String,
}

impl Serialize for DatasetIndex {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        RawDatasetIndex {
            version: DATASET_INDEX_VERSION.into(),
            name: self.name.as_str().into(),
            n_rows: self.n_rows,
            n_columns: self.n_columns,
            cell_counts: self.cell_counts.as_slice().into(),
            row_hash_bytes: ROW_HASH_BYTES,
            row_hashes: hex::encode(self.row_hashes.as_flattened()),
            columns: self
                .columns
                .iter()
                .map(|column| {
                    let values: Vec<u8> = column
                        .distinct_values
                        .iter()
                        .flat_map(|value| value.to_le_bytes())
                        .collect();
                    let codes: Vec<u8> = column
                        .codes
                        .iter()
                        .flat_map(|code| code.to_le_bytes())
                        .collect();
                    RawColumn {
                        name: column.name.as_str().into(),
                        values: base64::engine::general_purpose::STANDARD.encode(values),
                        codes: base64::engine::general_purpose::STANDARD.encode(codes),
                    }
                })
                .collect(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for DatasetIndex {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw_dataset_index = RawDatasetIndex::deserialize(deserializer)?;
        DatasetIndex::try_from(raw_dataset_index).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<RawDatasetIndex<'_>> for DatasetIndex {
    type Error = DatasetIndexError;

    fn try_from(raw: RawDatasetIndex<'_>) -> Result<DatasetIndex, DatasetIndexError> {
        let name = raw.name.into_owned();
        if raw.version != DATASET_INDEX_VERSION {
            return Err(DatasetIndexError::UnsupportedVersion {
                name,
                found: raw.version.into_owned(),
            });
        }
        if raw.row_hash_bytes != ROW_HASH_BYTES {
            return Err(DatasetIndexError::UnsupportedHashWidth {
                name,
                found: raw.row_hash_bytes,
            });
        }
        let hash_bytes = hex::decode(&raw.row_hashes).map_err(|error| {
            DatasetIndexError::MalformedRowHashes {
                name: name.clone(),
                reason: error.to_string(),
            }
        })?;
        if hash_bytes.len() % ROW_HASH_BYTES != 0 {
            return Err(DatasetIndexError::MalformedRowHashes {
                name,
                reason: format!("{} bytes is not a whole number of hashes", hash_bytes.len()),
            });
        }
        let mut row_hashes: Vec<RowHash> = hash_bytes
            .chunks_exact(ROW_HASH_BYTES)
            .map(|chunk| chunk.try_into().expect("chunks_exact yields whole hashes"))
            .collect();
        // A hand-edited or foreign index may be unsorted; binary search needs order.
        row_hashes.sort_unstable();
        row_hashes.dedup();
        let mut cell_counts = raw.cell_counts.into_owned();
        cell_counts.sort_unstable();
        cell_counts.dedup();
        let mut columns = Vec::with_capacity(raw.columns.len());
        for (column_index, raw_column) in raw.columns.into_iter().enumerate() {
            let malformed = |reason: String| DatasetIndexError::MalformedColumn {
                name: name.clone(),
                column: column_index + 1,
                reason,
            };
            let decode = |text: &str, width: usize| {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|error| malformed(error.to_string()))?;
                if bytes.len() % width != 0 {
                    return Err(malformed(format!(
                        "{} bytes is not a whole number of {width}-byte entries",
                        bytes.len()
                    )));
                }
                Ok(bytes)
            };
            let distinct_values: Vec<u64> = decode(&raw_column.values, 8)?
                .chunks_exact(8)
                .map(|chunk| u64::from_le_bytes(chunk.try_into().expect("8-byte chunks")))
                .collect();
            let codes: Vec<u32> = decode(&raw_column.codes, 4)?
                .chunks_exact(4)
                .map(|chunk| u32::from_le_bytes(chunk.try_into().expect("4-byte chunks")))
                .collect();
            if !distinct_values.is_sorted() {
                return Err(malformed("values are not sorted".to_string()));
            }
            if codes.len() as u64 != raw.n_rows {
                return Err(malformed(format!(
                    "{} codes for {} rows",
                    codes.len(),
                    raw.n_rows
                )));
            }
            if codes
                .iter()
                .any(|&code| code != NO_CODE && code as usize >= distinct_values.len())
            {
                return Err(malformed(
                    "a code points past the column's values".to_string(),
                ));
            }
            columns.push(DatasetColumn {
                name: raw_column.name.into_owned(),
                distinct_values,
                codes,
            });
        }
        Ok(DatasetIndex {
            name,
            n_rows: raw.n_rows,
            n_columns: raw.n_columns,
            cell_counts,
            row_hashes,
            columns,
            leakage_only: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    const COHORT: &str = "id,name,age\n1,Jan,34\n2,Piet,51\n\n3,Jan,34\n";

    #[test]
    fn index_counts_data_rows_and_finds_normalised_rows() {
        let dataset_index = DatasetIndex::from_csv("cohort", COHORT.as_bytes());
        assert_eq!(dataset_index.n_rows(), 3);
        assert_eq!(dataset_index.n_columns(), 3);
        assert_eq!(dataset_index.n_distinct_rows(), 3);
        assert!(dataset_index.contains_row([&b"2"[..], b" PIET ", b"51.0"].into_iter(), false));
        assert!(!dataset_index.contains_row([&b"2"[..], b"Piet"].into_iter(), false));
        assert!(!dataset_index.contains_row([&b"id"[..], b"name", b"age"].into_iter(), false));
    }

    #[test]
    fn semicolon_csv_with_decimal_commas_matches_point_decimals() {
        let dataset_index = DatasetIndex::from_csv("lab", "id;value\n7;12,50\n".as_bytes());
        assert!(dataset_index.contains_row([&b"7"[..], b"12.5"].into_iter(), false));
    }

    #[test]
    fn index_round_trips_through_json_with_its_version() {
        let dataset_index = DatasetIndex::from_csv("tiny", "a,b\nx,1\n".as_bytes());
        let json = serde_json::to_string_pretty(&dataset_index).unwrap();
        expect![[r#"
            {
              "version": "pht.dataset-index.v2",
              "name": "tiny",
              "n_rows": 1,
              "n_columns": 2,
              "cell_counts": [
                2
              ],
              "row_hash_bytes": 16,
              "row_hashes": "e0b1fff4b50c9a5b42ceebbc828f70e9",
              "columns": [
                {
                  "name": "a",
                  "values": "Ec2ygGRs8Oo=",
                  "codes": "AAAAAA=="
                },
                {
                  "name": "b",
                  "values": "WPGYjwIlzWU=",
                  "codes": "AAAAAA=="
                }
              ]
            }"#]]
        .assert_eq(&json);
        let read_back: DatasetIndex = serde_json::from_str(&json).unwrap();
        assert_eq!(read_back, dataset_index);
    }

    #[test]
    fn index_of_another_version_is_refused_with_advice() {
        let json = r#"{"version":"pht.dataset-index.v1","name":"old","n_rows":0,"n_columns":0,
            "cell_counts":[],"row_hash_bytes":16,"row_hashes":"","columns":[]}"#;
        let error = serde_json::from_str::<DatasetIndex>(json).unwrap_err();
        expect![[r#"dataset index "old" has version "pht.dataset-index.v1", expected "pht.dataset-index.v2"; rebuild it with DatasetIndex::from_csv"#]]
            .assert_eq(&error.to_string());
    }

    #[test]
    fn index_whose_codes_point_past_its_values_is_refused() {
        let json = r#"{"version":"pht.dataset-index.v2","name":"bad","n_rows":1,"n_columns":1,
            "cell_counts":[1],"row_hash_bytes":16,"row_hashes":"","columns":[
            {"name":"a","values":"","codes":"AQAAAA=="}]}"#;
        let error = serde_json::from_str::<DatasetIndex>(json).unwrap_err();
        assert!(
            error.to_string().contains("column 1: a code points past"),
            "{error}"
        );
    }

    #[test]
    fn index_with_a_partial_hash_is_refused() {
        let json = r#"{"version":"pht.dataset-index.v2","name":"cut","n_rows":1,"n_columns":1,
            "cell_counts":[1],"row_hash_bytes":16,"row_hashes":"abcd","columns":[]}"#;
        let error = serde_json::from_str::<DatasetIndex>(json).unwrap_err();
        assert!(
            error.to_string().contains("not a whole number of hashes"),
            "{error}"
        );
    }
}
