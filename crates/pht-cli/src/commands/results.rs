//! `pht results open`: decrypt a sealed result bundle, verify it against station keys and write
//! its files into a directory.
//!
//! Glue only: decryption, the archive rules, the signature and the subject check are all
//! `pht_core::seal::open_bundle`. This module reads the key files, refuses to overwrite
//! anything, writes what was verified and prints what it found. It does not fetch bundles from
//! the hub (`commands::jobs` does, and reuses the reading and writing here) and it does not
//! interpret the check report.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use age::x25519;
use anyhow::Context as _;
use pht_core::intoto::{CheckVerdict, FileVerdict, Release};
use pht_core::job::TrainPin;
use pht_core::seal::{self, OpenError, OpenedBundle, OUTPUTS_DIR, REPORT_PATH};
use pht_core::{Digest, PublicKey};
use serde::Serialize;
use uuid::Uuid;

use crate::exit::{fail, Classify as _, CommandResult, Failure, FailureKind};
use crate::keyfiles::read_public_key;
use crate::output::Output;

/// Where the signed statement is written, pretty-printed, next to the report and the outputs.
const PROVENANCE_FILE: &str = "provenance.json";

/// A file written out of the bundle, with the hash the signed statement vouched for.
#[derive(Debug, Serialize)]
pub(crate) struct WrittenFile {
    path: String,
    sha256: Digest,
    n_bytes: usize,
}

#[derive(Debug, Serialize)]
pub(crate) struct OpenedResult {
    /// The name of the station key that verified (the key file's stem).
    station_key: String,
    station_key_id: String,
    /// The station id the provenance names.
    station: String,
    job_id: Option<Uuid>,
    run_id: String,
    train: TrainPin,
    verdict: CheckVerdict,
    released: Release,
    out_dir: PathBuf,
    report: WrittenFile,
    files: Vec<WrittenFile>,
    /// Files the checks judged that are not in the bundle.
    withheld: Vec<FileVerdict>,
    /// Files in the bundle that are transformed copies of what the train wrote (the station's
    /// remedy, e.g. suppress-and-round), with how they were transformed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    transformed: Vec<FileVerdict>,
}

/// `pht results open BUNDLE --identity KEY --station-key PUB… --out DIR`.
pub fn open(
    output: Output,
    bundle: &Path,
    identity: &Path,
    station_keys: &[PathBuf],
    out_dir: &Path,
) -> CommandResult {
    let identities = read_identities(identity)?;
    let named_station_keys = read_station_keys(station_keys)?;
    check_out_dir_is_usable(out_dir)?;
    let sealed = std::fs::read(bundle)
        .with_context(|| format!("cannot read bundle {}", bundle.display()))
        .input()?;

    let opened = open_with_any_identity(&sealed, &identities, &named_station_keys)
        .map_err(|error| classify_open_error(error, bundle, identity))?;

    let station_key_id = named_station_keys
        .iter()
        .find(|(name, _)| name == opened.station())
        .map(|(_, key)| key.key_id())
        .unwrap_or_default();
    let result = write_opened_bundle(&opened, station_key_id, out_dir)?;
    output.print(&result, || render_human(&result));
    Ok(())
}

/// Writes a verified bundle into `out_dir` (see [`write_bundle`]) and describes what was
/// written; `station_key_id` is the id of the key that verified it.
pub(crate) fn write_opened_bundle(
    opened: &OpenedBundle,
    station_key_id: String,
    out_dir: &Path,
) -> CommandResult<OpenedResult> {
    let written = write_bundle(opened, out_dir)?;
    let predicate = opened.predicate();
    let released_paths: BTreeSet<&str> = opened
        .files()
        .iter()
        .map(|(path, _)| path.as_str())
        .collect();
    Ok(OpenedResult {
        station_key: opened.station().to_string(),
        station_key_id,
        station: predicate.station.clone(),
        job_id: predicate.job_id,
        run_id: predicate.run_id.clone(),
        train: predicate.train.clone(),
        verdict: predicate.verdict,
        released: predicate.released.clone(),
        out_dir: out_dir.to_path_buf(),
        report: written.report,
        files: written.files,
        withheld: predicate
            .files
            .iter()
            .filter(|file| !released_paths.contains(file.path.as_str()))
            .cloned()
            .collect(),
        transformed: predicate
            .files
            .iter()
            .filter(|file| {
                file.transformed.is_some() && released_paths.contains(file.path.as_str())
            })
            .cloned()
            .collect(),
    })
}

pub(crate) fn render_human(result: &OpenedResult) -> String {
    let mut text = format!(
        "verified: signed by station key `{}` (key id {})\n",
        result.station_key, result.station_key_id
    );
    text += &format!("  station   {}\n", result.station);
    text += &match result.job_id {
        Some(job_id) => format!("  job       {job_id}\n"),
        None => "  job       none (a local run)\n".to_string(),
    };
    text += &format!("  run       {}\n", result.run_id);
    text += &format!(
        "  train     {}@{}\n",
        result.train.repository, result.train.digest
    );
    text += &format!(
        "  verdict   {} (released by {} at {}: {})\n",
        result.verdict,
        result.released.by,
        result
            .released
            .at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        result.released.reason
    );
    text += &format!("  written   {}\n", result.out_dir.display());
    let path_width = std::iter::once(&result.report)
        .chain(&result.files)
        .map(|file| file.path.len())
        .max()
        .unwrap_or(0);
    for file in std::iter::once(&result.report).chain(&result.files) {
        text += &format!(
            "    {:path_width$}  {}  {} bytes\n",
            file.path, file.sha256, file.n_bytes
        );
    }
    for file in &result.withheld {
        text += &format!("  withheld  {} ({})\n", file.path, file.verdict);
    }
    for file in &result.transformed {
        text += &format!(
            "  transformed  {}: not what the train wrote but a copy the station made — {}\n",
            file.path,
            file.transformed.as_deref().unwrap_or_default()
        );
    }
    text
}

/// Reads an age identity file: one `AGE-SECRET-KEY-1…` per line, `#` lines are comments.
pub(crate) fn read_identities(path: &Path) -> CommandResult<Vec<x25519::Identity>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read age identity {}", path.display()))
        .input()?;
    let mut identities = Vec::new();
    for (line_idx, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // The line is a secret: the message names its number, never its text.
        let identity = line.parse::<x25519::Identity>().map_err(|reason| {
            fail(
                FailureKind::Input,
                format!(
                    "line {} of {} is not an age X25519 identity (`AGE-SECRET-KEY-1…`): {reason}",
                    line_idx + 1,
                    path.display()
                ),
            )
        })?;
        identities.push(identity);
    }
    if identities.is_empty() {
        return Err(fail(
            FailureKind::Input,
            format!(
                "{} holds no age identity; pass the NAME.age file `pht key generate` wrote",
                path.display()
            ),
        ));
    }
    Ok(identities)
}

/// Reads the station public keys, each named after its file (`umc.pub` is `umc`).
fn read_station_keys(paths: &[PathBuf]) -> CommandResult<Vec<(String, PublicKey)>> {
    if paths.is_empty() {
        return Err(fail(
            FailureKind::Input,
            "no station key given; pass the public key of the station that sealed the bundle with --station-key",
        ));
    }
    paths
        .iter()
        .map(|path| {
            let name = path
                .file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.display().to_string());
            Ok((name, read_public_key(path)?))
        })
        .collect()
}

/// The output directory may be new or empty: nothing that is already there is overwritten.
pub(crate) fn check_out_dir_is_usable(out_dir: &Path) -> CommandResult {
    match std::fs::read_dir(out_dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(fail(
                    FailureKind::Input,
                    format!(
                        "{} exists and is not empty; choose a new or empty directory with --out",
                        out_dir.display()
                    ),
                ));
            }
            Ok(())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error)
            .with_context(|| format!("cannot use {} as the output directory", out_dir.display()))
            .input(),
    }
}

/// Tries each identity in turn; a file may hold several, as age identity files do.
pub(crate) fn open_with_any_identity(
    sealed: &[u8],
    identities: &[x25519::Identity],
    station_keys: &[(String, PublicKey)],
) -> Result<OpenedBundle, OpenError> {
    let mut last_error = None;
    for identity in identities {
        match seal::open_bundle(sealed, identity, station_keys) {
            Err(error @ OpenError::NotForThisIdentity { .. }) => last_error = Some(error),
            other => return other,
        }
    }
    Err(last_error.expect("read_identities returns at least one identity"))
}

/// A bundle for another identity is the user's wrong input; everything else is a refusal.
fn classify_open_error(error: OpenError, bundle: &Path, identity: &Path) -> Failure {
    let kind = match error {
        OpenError::NotForThisIdentity { .. } => FailureKind::Input,
        _ => FailureKind::Refused,
    };
    fail(
        kind,
        format!(
            "{} (bundle {}, identity {})",
            error,
            bundle.display(),
            identity.display()
        ),
    )
}

struct Written {
    report: WrittenFile,
    files: Vec<WrittenFile>,
}

/// Writes the verified report, statement and outputs. Paths were checked by `open_bundle`
/// (relative, no `..`), and every file is created new, so nothing outside `out_dir` and
/// nothing already there is touched.
fn write_bundle(opened: &OpenedBundle, out_dir: &Path) -> CommandResult<Written> {
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))
        .input()?;
    let report = write_new_file(out_dir, REPORT_PATH, opened.report_json())?;
    let statement_json =
        serde_json::to_vec_pretty(opened.statement()).expect("a statement always serialises");
    write_new_file(out_dir, PROVENANCE_FILE, &statement_json)?;
    let files = opened
        .files()
        .iter()
        .map(|(path, contents)| write_new_file(out_dir, &format!("{OUTPUTS_DIR}/{path}"), contents))
        .collect::<CommandResult<Vec<_>>>()?;
    Ok(Written { report, files })
}

fn write_new_file(out_dir: &Path, relative: &str, contents: &[u8]) -> CommandResult<WrittenFile> {
    use std::io::Write as _;
    let path = out_dir.join(relative);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))
            .input()?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))
        .input()?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
        .input()?;
    Ok(WrittenFile {
        path: relative.to_string(),
        sha256: Digest::of(contents),
        n_bytes: contents.len(),
    })
}

#[cfg(test)]
mod tests {
    use age::secrecy::ExposeSecret as _;
    use pht_core::intoto::ResultPredicate;
    use pht_core::{KeyAlgorithm, SigningKey};

    use super::*;

    /// A sealed bundle on disk with the researcher's identity file and the station's key file.
    struct Setup {
        dir: tempfile::TempDir,
        station_key: SigningKey,
        identity: x25519::Identity,
    }

    impl Setup {
        fn new() -> Setup {
            let dir = tempfile::tempdir().unwrap();
            let station_key = SigningKey::generate(KeyAlgorithm::Ed25519);
            let identity = x25519::Identity::generate();
            std::fs::write(
                dir.path().join("alice.age"),
                format!(
                    "# created: 2026-11-23T12:00:00Z\n# public key: {}\n{}\n",
                    identity.to_public(),
                    identity.to_string().expose_secret()
                ),
            )
            .unwrap();
            std::fs::write(
                dir.path().join("umc.pub"),
                station_key.public_key().to_pem(),
            )
            .unwrap();
            let setup = Setup {
                dir,
                station_key,
                identity,
            };
            setup.write_bundle(&setup.station_key);
            setup
        }

        fn write_bundle(&self, signing_key: &SigningKey) {
            let files = vec![
                ("counts.csv".to_string(), b"group,n\na,12\n".to_vec()),
                ("figures/age.png".to_string(), vec![0x89, b'P', b'N', b'G']),
            ];
            let mut predicate = ResultPredicate::example(
                CheckVerdict::Fail,
                &[
                    ("counts.csv", CheckVerdict::Pass),
                    ("figures/age.png", CheckVerdict::Pass),
                    ("rows.csv", CheckVerdict::Fail),
                ],
            );
            predicate.released.reason = "rows.csv withheld".into();
            let sealed = seal::seal_bundle(
                &files,
                br#"{"status":"fail"}"#,
                predicate,
                signing_key,
                &[self.identity.to_public().to_string()],
            )
            .unwrap();
            std::fs::write(self.path("result.age"), sealed).unwrap();
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn open(&self, out_dir: &Path) -> CommandResult {
            open(
                Output { json: true },
                &self.path("result.age"),
                &self.path("alice.age"),
                &[self.path("umc.pub")],
                out_dir,
            )
        }
    }

    fn failure_kind(result: CommandResult) -> Option<FailureKind> {
        result.err().map(|failure| failure.kind)
    }

    #[test]
    fn verified_bundle_is_written_into_a_new_directory() {
        let setup = Setup::new();
        let out_dir = setup.path("results");
        setup.open(&out_dir).unwrap();
        assert_eq!(
            std::fs::read(out_dir.join("outputs/counts.csv")).unwrap(),
            b"group,n\na,12\n"
        );
        assert_eq!(
            std::fs::read(out_dir.join("outputs/figures/age.png")).unwrap(),
            [0x89, b'P', b'N', b'G']
        );
        assert_eq!(
            std::fs::read(out_dir.join("report.json")).unwrap(),
            br#"{"status":"fail"}"#
        );
        let statement: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out_dir.join(PROVENANCE_FILE)).unwrap()).unwrap();
        assert_eq!(
            statement["predicateType"],
            "https://pht.dev/provenance/result/v1"
        );
    }

    #[test]
    fn existing_empty_directory_is_used_and_a_non_empty_one_is_refused() {
        let setup = Setup::new();
        let out_dir = setup.path("empty");
        std::fs::create_dir(&out_dir).unwrap();
        setup.open(&out_dir).unwrap();
        assert_eq!(failure_kind(setup.open(&out_dir)), Some(FailureKind::Input));
    }

    #[test]
    fn bundle_sealed_by_an_unknown_station_is_refused_and_nothing_is_written() {
        let setup = Setup::new();
        setup.write_bundle(&SigningKey::generate(KeyAlgorithm::Ed25519));
        let out_dir = setup.path("results");
        assert_eq!(
            failure_kind(setup.open(&out_dir)),
            Some(FailureKind::Refused)
        );
        assert!(!out_dir.exists());
    }

    #[test]
    fn bundle_for_another_identity_is_invalid_input() {
        let setup = Setup::new();
        let other = x25519::Identity::generate();
        std::fs::write(
            setup.path("alice.age"),
            format!("{}\n", other.to_string().expose_secret()),
        )
        .unwrap();
        assert_eq!(
            failure_kind(setup.open(&setup.path("results"))),
            Some(FailureKind::Input)
        );
    }

    #[test]
    fn identity_file_without_an_identity_is_invalid_input() {
        let setup = Setup::new();
        std::fs::write(setup.path("alice.age"), "# only a comment\n").unwrap();
        assert_eq!(
            failure_kind(setup.open(&setup.path("results"))),
            Some(FailureKind::Input)
        );
    }

    #[test]
    fn human_summary_names_the_station_train_verdict_and_withheld_files() {
        let setup = Setup::new();
        let opened = seal::open_bundle(
            &std::fs::read(setup.path("result.age")).unwrap(),
            &setup.identity,
            &[("umc".to_string(), setup.station_key.public_key())],
        )
        .unwrap();
        let written = write_bundle(&opened, &setup.path("results")).unwrap();
        let predicate = opened.predicate();
        let result = OpenedResult {
            station_key: "umc".into(),
            station_key_id: "0123456789abcdef".into(),
            station: predicate.station.clone(),
            job_id: predicate.job_id,
            run_id: predicate.run_id.clone(),
            train: predicate.train.clone(),
            verdict: predicate.verdict,
            released: predicate.released.clone(),
            out_dir: PathBuf::from("results"),
            report: written.report,
            files: written.files,
            withheld: vec![predicate.files[2].clone()],
            transformed: Vec::new(),
        };
        let expected = concat!(
            "verified: signed by station key `umc` (key id 0123456789abcdef)\n",
            "  station   umc-utrecht\n",
            "  job       none (a local run)\n",
            "  run       run-1\n",
            "  train     127.0.0.1:5000/trains/count@sha256:05b3abf2579a5eb66403cd78be557fd860633a1fe2103c7642030defe32c657f\n",
            "  verdict   fail (released by operator:jansen at 2026-11-23T12:05:00Z: rows.csv withheld)\n",
            "  written   results\n",
            "    report.json              sha256:afaf00cbf93b64c2c27eaf134c4d6223712c0386bbdb93bf0f677b77ec1405d1  17 bytes\n",
            "    outputs/counts.csv       sha256:bb9b35e5e58e05867def33ef5125fbb039e94dc1147c843aa2f7d7f351144145  13 bytes\n",
            "    outputs/figures/age.png  sha256:0f4636c78f65d3639ece5a064b5ae753e3408614a14fb18ab4d7540d2c248543  4 bytes\n",
            "  withheld  rows.csv (fail)\n",
        );
        assert_eq!(render_human(&result), expected);
    }
}
