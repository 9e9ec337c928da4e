//! The leakage index of one dataset: its row count and the hashes of its normalised rows, built
//! once per dataset version and cached by the station (serialised as `pht.dataset-index.v1`).
//!
//! Owns building the index from CSV bytes and its versioned serialisation. It does not read the
//! dataset from disk or decide where the cache lives (the station does); the hash definition is
//! in `row_hash`, shared with the leakage rule.
//!
//! The first record of the CSV is its header and is not indexed (a header is not data). Blank
//! lines are skipped. The delimiter is sniffed like for outputs (`,`, `;` or tab).

use serde::{Deserialize, Serialize};

use crate::delimited::{is_blank_record, sniff_delimiter, DelimitedReader};
use crate::row_hash::{RowHash, RowHasher, ROW_HASH_BYTES};

/// The version string of the serialised index.
pub const DATASET_INDEX_VERSION: &str = "pht.dataset-index.v1";

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
        while reader.next_record(&mut cells) {
            if is_blank_record(&cells) {
                continue;
            }
            if !seen_header {
                seen_header = true;
                n_columns = cells.len() as u64;
                continue;
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
        DatasetIndex {
            name: name.into(),
            n_rows,
            n_columns,
            cell_counts,
            row_hashes,
            leakage_only: false,
        }
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
        Ok(DatasetIndex {
            name,
            n_rows: raw.n_rows,
            n_columns: raw.n_columns,
            cell_counts,
            row_hashes,
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
              "version": "pht.dataset-index.v1",
              "name": "tiny",
              "n_rows": 1,
              "n_columns": 2,
              "cell_counts": [
                2
              ],
              "row_hash_bytes": 16,
              "row_hashes": "e0b1fff4b50c9a5b42ceebbc828f70e9"
            }"#]]
        .assert_eq(&json);
        let read_back: DatasetIndex = serde_json::from_str(&json).unwrap();
        assert_eq!(read_back, dataset_index);
    }

    #[test]
    fn index_of_another_version_is_refused_with_advice() {
        let json = r#"{"version":"pht.dataset-index.v0","name":"old","n_rows":0,"n_columns":0,
            "cell_counts":[],"row_hash_bytes":16,"row_hashes":""}"#;
        let error = serde_json::from_str::<DatasetIndex>(json).unwrap_err();
        expect![[r#"dataset index "old" has version "pht.dataset-index.v0", expected "pht.dataset-index.v1"; rebuild it with DatasetIndex::from_csv"#]]
            .assert_eq(&error.to_string());
    }

    #[test]
    fn index_with_a_partial_hash_is_refused() {
        let json = r#"{"version":"pht.dataset-index.v1","name":"cut","n_rows":1,"n_columns":1,
            "cell_counts":[1],"row_hash_bytes":16,"row_hashes":"abcd"}"#;
        let error = serde_json::from_str::<DatasetIndex>(json).unwrap_err();
        assert!(
            error.to_string().contains("not a whole number of hashes"),
            "{error}"
        );
    }
}
