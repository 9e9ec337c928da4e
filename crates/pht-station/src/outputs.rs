//! The output-check stage: from collected files to a check report and a release decision.
//!
//! Owns building the inputs of `pht-checks` (declared outputs from the train manifest, dataset
//! row indexes cached per dataset version) and the rule that turns a verdict into a decision:
//! pass → released where the policy releases automatically, otherwise withheld; review →
//! withheld for an operator; fail → blocked unless an operator overrides with a reason.

use std::path::{Path, PathBuf};

use pht_checks::{CheckReport, DatasetIndex, DeclaredOutput, OutputEntry, OutputKind, Status};
use pht_core::manifest::{OutputKind as ManifestKind, TrainManifest};
use pht_docker::collect::CollectedKind;
use pht_docker::CollectedOutputs;
use pht_policy::Release;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::config::Dataset;
use crate::store::write_atomic;

/// What happened to a run's outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputDecision {
    /// Released to the researcher (sealed).
    Released,
    /// Waiting for an operator: `pht-station outputs release|block RUN --reason …`.
    Withheld,
    /// Not released.
    Blocked,
}

/// The decision the checks alone lead to, before any operator acts.
pub fn automatic_decision(status: Status, release: Release) -> OutputDecision {
    match (status, release) {
        (Status::Pass, Release::Automatic) => OutputDecision::Released,
        (Status::Pass, Release::Manual) | (Status::Review, _) => OutputDecision::Withheld,
        (Status::Fail, _) => OutputDecision::Blocked,
    }
}

/// Paths the train declared as `state`: handed to the next stop, never released or checked as
/// results.
pub fn state_paths(manifest: &TrainManifest) -> Vec<String> {
    manifest
        .outputs
        .iter()
        .filter(|o| o.kind == ManifestKind::State)
        .map(|o| o.path.to_string())
        .collect()
}

/// The train's declared outputs, as the checks read them.
pub fn declared_outputs(manifest: &TrainManifest) -> Vec<DeclaredOutput> {
    manifest
        .outputs
        .iter()
        .map(|output| DeclaredOutput {
            path: output.path.to_string(),
            kind: match output.kind {
                ManifestKind::Table => OutputKind::Table,
                ManifestKind::Figure => OutputKind::Figure,
                ManifestKind::Text => OutputKind::Text,
                ManifestKind::Model => OutputKind::Model,
                ManifestKind::State => OutputKind::State,
            },
            count_columns: output.count_columns.clone(),
        })
        .collect()
}

/// The collected entries the checks look at: everything but declared state.
pub fn check_entries(collected: &CollectedOutputs, state: &[String]) -> Vec<OutputEntry> {
    collected
        .files
        .iter()
        .filter(|file| !state.contains(&file.path))
        .map(|file| match &file.kind {
            CollectedKind::Regular { bytes } => {
                OutputEntry::regular(file.path.clone(), bytes.clone())
            }
            CollectedKind::Symlink { target } => {
                OutputEntry::symlink(file.path.clone(), target.clone())
            }
            CollectedKind::Special { description } => {
                OutputEntry::special(file.path.clone(), description.clone())
            }
        })
        .chain(
            collected.refused.iter().map(|refused| {
                OutputEntry::special(refused.path.clone(), refused.reason.to_string())
            }),
        )
        .collect()
}

/// Runs the checks.
pub fn check(
    entries: &[OutputEntry],
    manifest: &TrainManifest,
    datasets: &[DatasetIndex],
    config: &pht_checks::CheckConfig,
) -> CheckReport {
    pht_checks::check_outputs(entries, &declared_outputs(manifest), datasets, config)
}

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
    std::fs::create_dir_all(cache_dir)?;
    write_atomic(
        &cache_path,
        &serde_json::to_vec(&indexes).expect("indexes always serialise"),
    )?;
    Ok((indexes, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_beats_automatic_release_and_review_waits() {
        assert_eq!(
            automatic_decision(Status::Pass, Release::Automatic),
            OutputDecision::Released
        );
        assert_eq!(
            automatic_decision(Status::Pass, Release::Manual),
            OutputDecision::Withheld
        );
        assert_eq!(
            automatic_decision(Status::Review, Release::Automatic),
            OutputDecision::Withheld
        );
        assert_eq!(
            automatic_decision(Status::Fail, Release::Automatic),
            OutputDecision::Blocked
        );
    }

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
