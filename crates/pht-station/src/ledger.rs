//! The differencing ledger: every count table this station released, per dataset version, kept
//! under `state_dir/ledger/` so that a new table is compared with them across restarts.
//!
//! Owns the files (one JSON line per released table, `<dataset>-<version>.jsonl`), appending
//! under an exclusive lock, and retention (`outputs.checks.differencing`: at most `max_releases`
//! per dataset version, none older than `retention_days`; the file is rewritten atomically when
//! either bound is passed). The comparison itself is `pht_checks::Ledger`'s. A line that cannot
//! be read (a torn last line after a crash) is skipped with a warning, never fatal: the ledger
//! makes checks stricter, and losing one line must not stop the station.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use pht_checks::{DifferencingConfig, Ledger, Release};

use crate::store::StoreError;

/// The ledger directory of a station.
pub fn ledger_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("ledger")
}

fn ledger_path(dir: &Path, dataset: &str, version: &str) -> PathBuf {
    let version = &version[..version.len().min(16)];
    dir.join(format!("{dataset}-{version}.jsonl"))
}

fn read_releases(path: &Path) -> Result<Vec<Release>, StoreError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(StoreError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let mut releases = Vec::new();
    for (index, line) in text.lines().enumerate() {
        match serde_json::from_str::<Release>(line) {
            Ok(release) => releases.push(release),
            Err(error) => tracing::warn!(
                path = %path.display(),
                line = index + 1,
                %error,
                "skipping an unreadable line of the differencing ledger"
            ),
        }
    }
    Ok(releases)
}

/// The releases over `dataset` at `version`, indexed for comparison.
pub fn load(dir: &Path, dataset: &str, version: &str) -> Result<Ledger, StoreError> {
    Ok(Ledger::from_releases(read_releases(&ledger_path(
        dir, dataset, version,
    ))?))
}

/// Appends `releases` to the ledger of `dataset` at `version`, then applies retention.
pub fn append(
    dir: &Path,
    dataset: &str,
    version: &str,
    releases: &[Release],
    config: &DifferencingConfig,
    now: i64,
) -> Result<(), StoreError> {
    if releases.is_empty() {
        return Ok(());
    }
    let path = ledger_path(dir, dataset, version);
    let write_error = |source| StoreError::Write {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(write_error)?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(".lock"))
        .map_err(write_error)?;
    lock.lock().map_err(write_error)?;
    let mut lines = String::new();
    for release in releases {
        lines.push_str(&serde_json::to_string(release).expect("releases always serialise"));
        lines.push('\n');
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(write_error)?;
    file.write_all(lines.as_bytes()).map_err(write_error)?;
    file.sync_all().map_err(write_error)?;
    drop(file);

    let kept = read_releases(&path)?;
    let oldest_kept = now - i64::from(config.retention_days) * 86_400;
    let n_kept = kept.len();
    let fresh: Vec<&Release> = kept
        .iter()
        .filter(|release| release.released_at >= oldest_kept)
        .collect();
    let skip = fresh.len().saturating_sub(config.max_releases);
    if fresh.len() != n_kept || skip > 0 {
        let mut text = String::new();
        for release in &fresh[skip..] {
            text.push_str(&serde_json::to_string(release).expect("releases always serialise"));
            text.push('\n');
        }
        pht_fs::write_atomic(&path, text.as_bytes()).map_err(write_error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pht_checks::count_table;

    fn release(run: &str, at: i64, csv: &str) -> Release {
        Release {
            run_id: run.into(),
            job_id: None,
            output: "counts.csv".into(),
            released_at: at,
            table: count_table(csv.as_bytes(), 2, &[]).unwrap(),
        }
    }

    #[test]
    fn releases_survive_a_reload_and_retention_drops_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let config = DifferencingConfig {
            max_releases: 2,
            ..DifferencingConfig::default()
        };
        let now = 1_000_000_000;
        for run in ["a", "b", "c"] {
            append(
                dir.path(),
                "cohort",
                "0123456789abcdef0123",
                &[release(run, now, "sex,n\nF,120\n")],
                &config,
                now,
            )
            .unwrap();
        }
        let ledger = load(dir.path(), "cohort", "0123456789abcdef0123").unwrap();
        let runs: Vec<&str> = ledger
            .releases()
            .iter()
            .map(|r| r.run_id.as_str())
            .collect();
        assert_eq!(runs, ["b", "c"]);

        let expired = now + 400 * 86_400;
        append(
            dir.path(),
            "cohort",
            "0123456789abcdef0123",
            &[release("d", expired, "sex,n\nF,120\n")],
            &config,
            expired,
        )
        .unwrap();
        let ledger = load(dir.path(), "cohort", "0123456789abcdef0123").unwrap();
        assert_eq!(ledger.len(), 1);
        assert!(load(dir.path(), "cohort", "ffff").unwrap().is_empty());
    }

    #[test]
    fn a_torn_last_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let config = DifferencingConfig::default();
        append(
            dir.path(),
            "cohort",
            "v1",
            &[release("a", 0, "sex,n\nF,120\n")],
            &config,
            0,
        )
        .unwrap();
        let path = ledger_path(dir.path(), "cohort", "v1");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"run_id\": \"b\", \"outp");
        std::fs::write(&path, text).unwrap();
        assert_eq!(load(dir.path(), "cohort", "v1").unwrap().len(), 1);
    }
}
