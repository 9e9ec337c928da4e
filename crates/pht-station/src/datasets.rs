//! The datasets a run reads: their version (a SHA-256 over file names and contents) and the row
//! indexes the leakage check compares outputs against, cached per dataset version.
//!
//! Owns reading a dataset directory and the index cache under the state directory. Does not
//! check anything: the indexes are handed to `pht-checks` by the check stage.

use std::path::{Path, PathBuf};

use pht_checks::DatasetIndex;
use sha2::{Digest as _, Sha256};

use crate::config::Dataset;

/// The data files of a dataset (CSV and TSV, sorted), and the SHA-256 over their names and
/// contents: the dataset's version.
pub fn dataset_files(dataset: &Dataset) -> std::io::Result<(Vec<PathBuf>, String)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dataset.path)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.is_file()
                && path
                    .extension()
                    .is_some_and(|ext| ext == "csv" || ext == "tsv")
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
        indexes.push(DatasetIndex::from_csv(
            dataset.name.clone(),
            &std::fs::read(file)?,
        ));
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
}
