//! `pht results JOB`: downloads every result of a job and writes each one that verifies under
//! its own station's key to `DIR/STATION/`.
//!
//! Owns the researcher's judgements about a downloaded bundle: it matches the digest the hub
//! listed, verifies under that station's key only, and names this job and that station. Opening
//! and writing a bundle are `commands::results`'s; this file does not decrypt or parse one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use pht_api::v1::ResultSummary;
use pht_api::HubClient;
use pht_core::seal::OpenError;
use pht_core::{Digest, PublicKey};
use serde::Serialize;
use uuid::Uuid;

use super::{hub_failure, HubLogin, StationKeyArgument};
use crate::commands::results::{
    check_out_dir_is_usable, open_with_any_identity, read_identities, render_human,
    write_opened_bundle, OpenedResult,
};
use crate::exit::{fail, CommandResult, FailureKind};
use crate::keyfiles::{read_public_key, read_signing_key};
use crate::output::Output;

/// What `pht results JOB` was asked to do.
#[derive(Debug, Clone)]
pub struct JobResultsRequest {
    pub out_dir: PathBuf,
    pub identity_path: PathBuf,
    pub station_keys: Vec<StationKeyArgument>,
}

/// What happened to one station's result.
#[derive(Debug, Serialize)]
struct StationResultReport {
    station: String,
    stop_index: u32,
    bundle_digest: Digest,
    /// `verified`, `refused`, `unavailable` or `invalid input`.
    outcome: &'static str,
    /// Why nothing was written, when nothing was.
    reason: Option<String>,
    opened: Option<OpenedResult>,
}

#[derive(Debug, Serialize)]
struct JobResultsReport {
    job_id: Uuid,
    out_dir: PathBuf,
    stations: Vec<StationResultReport>,
}

/// `pht results JOB --out DIR --identity AGE --station-key STATION=PUBKEY …`: downloads every
/// result of the job, verifies each under its own station's key and writes it to `DIR/STATION/`.
pub async fn results(
    output: Output,
    login: &HubLogin,
    job_id: Uuid,
    request: &JobResultsRequest,
) -> CommandResult {
    let identities = read_identities(&request.identity_path)?;
    let station_keys = read_named_station_keys(&request.station_keys)?;
    let client = login.connect(read_signing_key(&login.key_path)?)?;
    let mut result_list = client.list_results(job_id).await.map_err(hub_failure)?;
    if result_list.results.is_empty() {
        return Err(fail(
            FailureKind::Unavailable,
            format!("the hub holds no results for job {job_id} yet; see `pht status {job_id}`"),
        ));
    }
    result_list.results.sort_by_key(|result| result.stop_index);
    // Every directory is checked before anything is downloaded, so that a second run into the
    // same --out refuses at once instead of after a partial download.
    for result in &result_list.results {
        if station_keys.contains_key(&result.station) {
            check_out_dir_is_usable(&request.out_dir.join(&result.station))?;
        }
    }
    for station in station_keys.keys() {
        if !result_list
            .results
            .iter()
            .any(|result| &result.station == station)
        {
            output.note(format!(
                "no result from station `{station}` at the hub; see `pht status {job_id}`"
            ));
        }
    }

    let mut reports = Vec::new();
    for summary in &result_list.results {
        let outcome = fetch_and_write_one(
            &client,
            job_id,
            summary,
            &identities,
            &station_keys,
            &request.out_dir,
        )
        .await;
        reports.push(match outcome {
            Ok(opened) => StationResultReport {
                station: summary.station.clone(),
                stop_index: summary.stop_index,
                bundle_digest: summary.digest.clone(),
                outcome: "verified",
                reason: None,
                opened: Some(opened),
            },
            Err(failure) => StationResultReport {
                station: summary.station.clone(),
                stop_index: summary.stop_index,
                bundle_digest: summary.digest.clone(),
                outcome: failure.kind.label(),
                reason: Some(format!("{:#}", failure.error)),
                opened: None,
            },
        });
    }
    let job_results = JobResultsReport {
        job_id,
        out_dir: request.out_dir.clone(),
        stations: reports,
    };
    output.print(&job_results, || render_job_results(&job_results));
    job_results_outcome(&job_results)
}

/// Reads each `--station-key`, refusing a station named twice.
fn read_named_station_keys(
    station_keys: &[StationKeyArgument],
) -> CommandResult<BTreeMap<String, PublicKey>> {
    let mut named = BTreeMap::new();
    for station_key in station_keys {
        let public_key = read_public_key(&station_key.public_key_path)?;
        if named
            .insert(station_key.station.clone(), public_key)
            .is_some()
        {
            return Err(fail(
                FailureKind::Input,
                format!(
                    "--station-key names station `{}` twice; give one key per station",
                    station_key.station
                ),
            ));
        }
    }
    Ok(named)
}

/// Downloads one station's bundle and writes it only if it verifies under that station's key
/// and names this job and that station.
async fn fetch_and_write_one(
    client: &HubClient,
    job_id: Uuid,
    summary: &ResultSummary,
    identities: &[age::x25519::Identity],
    station_keys: &BTreeMap<String, PublicKey>,
    out_dir: &Path,
) -> CommandResult<OpenedResult> {
    let station = &summary.station;
    let station_key = station_keys.get(station).ok_or_else(|| {
        fail(
            FailureKind::Refused,
            format!(
                "no --station-key for station `{station}`; pass --station-key {station}=PUBKEY with the key its operator gave you"
            ),
        )
    })?;
    let sealed = client
        .download_result(job_id, station)
        .await
        .map_err(hub_failure)?;
    if !summary.digest.matches(&sealed) {
        return Err(fail(
            FailureKind::Refused,
            format!(
                "the bundle the hub sent for station `{station}` has sha256 {} but the hub listed {}; fetch again, and if it persists ask the hub's operator",
                Digest::of(&sealed),
                summary.digest
            ),
        ));
    }
    // Only this station's key is offered: a bundle sealed by another station, even a trusted
    // one, does not verify as this station's result.
    let named_key = [(station.clone(), station_key.clone())];
    let opened = open_with_any_identity(&sealed, identities, &named_key).map_err(|error| {
        let kind = match error {
            OpenError::NotForThisIdentity { .. } => FailureKind::Input,
            _ => FailureKind::Refused,
        };
        fail(kind, format!("station `{station}`: {error}"))
    })?;
    let predicate = opened.predicate();
    if predicate.job_id != Some(job_id) {
        return Err(fail(
            FailureKind::Refused,
            format!(
                "station `{station}`'s bundle is signed for job {}, not job {job_id}; the hub returned the wrong bundle, do not use it",
                predicate
                    .job_id
                    .map_or_else(|| "none (a local run)".to_string(), |id| id.to_string())
            ),
        ));
    }
    if &predicate.station != station {
        return Err(fail(
            FailureKind::Refused,
            format!(
                "the bundle delivered as station `{station}`'s names station `{}` in its signed provenance; do not use it",
                predicate.station
            ),
        ));
    }
    write_opened_bundle(&opened, station_key.key_id(), &out_dir.join(station))
}

fn render_job_results(job_results: &JobResultsReport) -> String {
    let mut text = String::new();
    for report in &job_results.stations {
        match (&report.opened, &report.reason) {
            (Some(opened), _) => {
                text += &format!("station {} (stop {}): ", report.station, report.stop_index);
                text += &render_human(opened);
            }
            (None, reason) => {
                text += &format!(
                    "station {} (stop {}): {}, nothing written: {}\n",
                    report.station,
                    report.stop_index,
                    report.outcome,
                    reason.as_deref().unwrap_or("no reason given")
                );
            }
        }
    }
    let n_verified = job_results
        .stations
        .iter()
        .filter(|report| report.opened.is_some())
        .count();
    text += &format!(
        "{n_verified} of {} results verified and written under {}\n",
        job_results.stations.len(),
        job_results.out_dir.display()
    );
    text
}

/// Success only when every result verified. Otherwise the worst class wins: a refusal (exit 1)
/// over the hub being unavailable (4) over unusable input (3).
fn job_results_outcome(job_results: &JobResultsReport) -> CommandResult {
    let failed: Vec<&StationResultReport> = job_results
        .stations
        .iter()
        .filter(|report| report.opened.is_none())
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    let labels: BTreeSet<&str> = failed.iter().map(|report| report.outcome).collect();
    let kind = [
        FailureKind::Refused,
        FailureKind::Unavailable,
        FailureKind::Input,
    ]
    .into_iter()
    .find(|kind| labels.contains(kind.label()))
    .unwrap_or(FailureKind::Refused);
    let reasons: Vec<String> = failed
        .iter()
        .map(|report| {
            format!(
                "{}: {}",
                report.station,
                report.reason.as_deref().unwrap_or(report.outcome)
            )
        })
        .collect();
    Err(fail(
        kind,
        format!(
            "{} of {} results of job {} were not written — {}",
            failed.len(),
            job_results.stations.len(),
            job_results.job_id,
            reasons.join("; ")
        ),
    ))
}
