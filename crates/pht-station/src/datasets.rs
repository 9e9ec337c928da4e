//! The datasets a run reads: their version (a SHA-256 over file names and contents) and the row
//! indexes the leakage check compares outputs against, cached per dataset version.
//!
//! Owns reading a dataset directory and the index cache under the state directory. Does not
//! check anything: the indexes are handed to `pht-checks` by the check stage. Parquet files are
//! indexed through `pht_checks::parquet_to_csv`, so their rows hash exactly like the same rows
//! written as CSV; a Parquet file that cannot be read is an error, never skipped (its rows would
//! silently drop out of the leakage check).

use std::path::{Path, PathBuf};

use pht_checks::{parquet_to_csv, DatasetIndex, DatasetTable};
use sha2::{Digest as _, Sha256};

use crate::config::Dataset;

/// The data files of a dataset (CSV, TSV and Parquet, sorted), and the SHA-256 over their names
/// and contents: the dataset's version.
pub fn dataset_files(dataset: &Dataset) -> std::io::Result<(Vec<PathBuf>, String)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dataset.path)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.is_file()
                && path
                    .extension()
                    .is_some_and(|ext| ext == "csv" || ext == "tsv" || ext == "parquet")
        })
        .collect();
    files.sort();
    let mut hasher = Sha256::new();
    for file in &files {
        hasher.update(
            file.file_name()
                .map(|n| n.as_encoded_bytes())
                .unwrap_or_default(),
        );
        hasher.update([0]);
        hasher.update(std::fs::read(file)?);
        hasher.update([0]);
    }
    Ok((files, hex::encode(hasher.finalize())))
}

/// The row indexes of a dataset, from the cache when this version was indexed before.
pub fn dataset_indexes(
    cache_dir: &Path,
    dataset: &Dataset,
) -> std::io::Result<(Vec<DatasetIndex>, String)> {
    let (files, version) = dataset_files(dataset)?;
    let cache_path = cache_dir.join(format!("{}-{}.json", dataset.name, &version[..16]));
    if let Ok(bytes) = std::fs::read(&cache_path) {
        if let Ok(indexes) = serde_json::from_slice::<Vec<DatasetIndex>>(&bytes) {
            return Ok((indexes, version));
        }
    }
    let mut indexes = Vec::with_capacity(files.len());
    for file in &files {
        let bytes = std::fs::read(file)?;
        let index = if is_parquet(file) {
            let csv = parquet_to_csv(&bytes).map_err(|error| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "dataset file {} cannot be read as a Parquet table: {error}",
                        file.display()
                    ),
                )
            })?;
            DatasetIndex::from_csv(dataset.name.clone(), &csv)
        } else {
            DatasetIndex::from_csv(dataset.name.clone(), &bytes)
        };
        indexes.push(index);
    }
    // The cache only saves time: a run goes on without it (a full disk, say).
    let cached = std::fs::create_dir_all(cache_dir).and_then(|()| {
        pht_fs::write_atomic(
            &cache_path,
            &serde_json::to_vec(&indexes).expect("indexes always serialise"),
        )
    });
    if let Err(error) = cached {
        tracing::warn!(%error, path = %cache_path.display(), "cannot cache the dataset index; it is built again next run");
    }
    Ok((indexes, version))
}

/// A dataset's contents as delimited text (Parquet files converted to CSV), for recomputing the
/// cells of magnitude tables.
pub fn dataset_table(dataset: &Dataset) -> std::io::Result<DatasetTable> {
    let (files, _) = dataset_files(dataset)?;
    let mut contents = Vec::with_capacity(files.len());
    for file in &files {
        let bytes = std::fs::read(file)?;
        contents.push(if is_parquet(file) {
            parquet_to_csv(&bytes).map_err(|error| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "dataset file {} cannot be read as a Parquet table: {error}",
                        file.display()
                    ),
                )
            })?
        } else {
            bytes
        });
    }
    Ok(DatasetTable {
        name: dataset.name.clone(),
        files: contents,
    })
}

fn is_parquet(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "parquet")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_indexes_are_cached_per_version() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("cohort");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("a.csv"), "id,sex\n1,F\n2,M\n").unwrap();
        let dataset = Dataset {
            name: "cohort".into(),
            path: data.clone(),
            format: crate::config::DatasetFormat::Csv,
            description: None,
        };
        let cache = dir.path().join("cache");
        let (first, version) = dataset_indexes(&cache, &dataset).unwrap();
        assert_eq!(first[0].n_rows(), 2);
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1);
        std::fs::write(data.join("a.csv"), "id,sex\n1,F\n2,M\n3,F\n").unwrap();
        let (second, new_version) = dataset_indexes(&cache, &dataset).unwrap();
        assert_ne!(version, new_version);
        assert_eq!(second[0].n_rows(), 3);
    }

    /// A Parquet file (snappy, as pandas writes it) of `name`, `age` and `city`, one row each.
    fn cohort_parquet(rows: &[(&str, i64, &str)]) -> Vec<u8> {
        use parquet::basic::Compression;
        use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
        use parquet::file::properties::WriterProperties;
        use parquet::file::writer::SerializedFileWriter;
        use parquet::schema::parser::parse_message_type;
        use std::sync::Arc;

        let schema = parse_message_type(
            "message cohort {
                REQUIRED BINARY name (STRING);
                REQUIRED INT64 age;
                REQUIRED BINARY city (STRING);
            }",
        )
        .unwrap();
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let mut file_writer =
            SerializedFileWriter::new(Vec::new(), Arc::new(schema), Arc::new(properties)).unwrap();
        let mut row_group_writer = file_writer.next_row_group().unwrap();
        let names: Vec<ByteArray> = rows.iter().map(|row| ByteArray::from(row.0)).collect();
        let ages: Vec<i64> = rows.iter().map(|row| row.1).collect();
        let cities: Vec<ByteArray> = rows.iter().map(|row| ByteArray::from(row.2)).collect();
        for text_column in [Some(&names), None, Some(&cities)] {
            let mut column_writer = row_group_writer.next_column().unwrap().unwrap();
            match text_column {
                Some(values) => column_writer
                    .typed::<ByteArrayType>()
                    .write_batch(values, None, None),
                None => column_writer
                    .typed::<Int64Type>()
                    .write_batch(&ages, None, None),
            }
            .unwrap();
            column_writer.close().unwrap();
        }
        row_group_writer.close().unwrap();
        file_writer.into_inner().unwrap()
    }

    fn dataset_in(dir: &Path) -> Dataset {
        Dataset {
            name: "cohort".into(),
            path: dir.to_path_buf(),
            format: crate::config::DatasetFormat::Parquet,
            description: None,
        }
    }

    #[test]
    fn a_parquet_dataset_whose_rows_are_copied_to_a_csv_output_is_caught() {
        use pht_checks::{
            check_outputs, CheckConfig, DeclaredOutput, OutputEntry, OutputKind, Rule, Status,
        };

        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("cohort");
        std::fs::create_dir_all(&data).unwrap();
        let rows = [
            ("Jan", 34, "Utrecht"),
            ("Piet", 51, "Zwolle"),
            ("Kees", 29, "Delft"),
            ("Anna", 62, "Ede"),
        ];
        std::fs::write(data.join("cohort.parquet"), cohort_parquet(&rows)).unwrap();
        let dataset = dataset_in(&data);
        let (files, _) = dataset_files(&dataset).unwrap();
        assert_eq!(files, [data.join("cohort.parquet")]);
        let (indexes, _) = dataset_indexes(&dir.path().join("cache"), &dataset).unwrap();
        assert_eq!(indexes[0].n_rows(), 4);

        let report = check_outputs(
            &[OutputEntry::regular(
                "copy.csv",
                b"name,age,city\nPiet,51,Zwolle\nKees,29,Delft\n".to_vec(),
            )],
            &[DeclaredOutput::new("copy.csv", OutputKind::Table)],
            &indexes,
            &CheckConfig::default(),
        );
        let leakage = report
            .output("copy.csv")
            .unwrap()
            .checks
            .iter()
            .find(|rule_result| rule_result.rule == Rule::Leakage)
            .unwrap();
        assert_eq!(leakage.status, Status::Fail);
        assert_eq!(leakage.count, 2);
    }

    #[test]
    fn a_parquet_dataset_file_that_cannot_be_read_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.csv"), "id,sex\n1,F\n").unwrap();
        std::fs::write(dir.path().join("b.parquet"), "id,sex\n2,M\n3,F\n").unwrap();
        let error = dataset_indexes(&dir.path().join("cache"), &dataset_in(dir.path()))
            .expect_err("a damaged Parquet file is not skipped");
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
        let message = error
            .to_string()
            .replace(&dir.path().display().to_string(), "DIR");
        expect_test::expect!["dataset file DIR/b.parquet cannot be read as a Parquet table: not a Parquet file: it does not start and end with the Parquet magic bytes `PAR1`"]
            .assert_eq(&message);
    }
}
