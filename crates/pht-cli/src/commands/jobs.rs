//! `pht submit`, `pht status` and `pht results JOB`: the researcher's side of the hub.
//!
//! Glue only: the job payload, its checks and its signature are `pht_core::job`, the hub's wire
//! types and transport are `pht-api`, and opening a sealed bundle is `pht_core::seal` (through the
//! reading and writing helpers of `commands::results`). This module turns what the user typed
//! into a job, asks the hub, and prints what it answered. It decides nothing about a job the hub
//! or a station decides; the only judgements made here are the researcher's own: which station
//! key a bundle must verify under, and that the bundle names this job and that station.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use pht_api::v1::{JobState, JobStatus, ResultSummary, StopStatus};
use pht_api::{Credentials, HubClient, HubClientError};
use pht_core::job::{JobV1, Route, RouteMode, TrainPin};
use pht_core::seal::OpenError;
use pht_core::{Digest, ImageReference, PublicKey, SigningKey};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::commands::results::{
    check_out_dir_is_usable, open_with_any_identity, read_identities, render_human,
    write_opened_bundle, OpenedResult,
};
use crate::exit::{fail, Classify as _, CommandResult, Failure, FailureKind};
use crate::keyfiles::{read_public_key, read_signing_key};
use crate::output::Output;

/// The parameter key that applies to every station of the route.
const EVERY_STATION: &str = "*";

/// How often `pht status --watch` asks the hub again.
const WATCH_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Where the hub is and who is asking: `--hub`, `--researcher` and `--key`, resolved.
#[derive(Debug, Clone)]
pub struct HubLogin {
    pub hub_url: String,
    pub researcher_id: String,
    /// The researcher's private signing key: it signs every request and every job envelope.
    pub key_path: PathBuf,
}

impl HubLogin {
    fn connect(&self, key: SigningKey) -> CommandResult<HubClient> {
        HubClient::new(
            &self.hub_url,
            Credentials::Researcher {
                researcher_id: self.researcher_id.clone(),
                key,
            },
        )
        .map_err(hub_failure)
    }
}

/// A hub that could not be asked is the user's input (a bad URL or key); everything else the
/// hub did or said is "unavailable" (exit 4), including a refusal by the hub, whose message
/// names the reason.
fn hub_failure(error: HubClientError) -> Failure {
    let kind = match &error {
        HubClientError::BaseUrl { .. } | HubClientError::Sign { .. } => FailureKind::Input,
        _ => FailureKind::Unavailable,
    };
    Failure {
        kind,
        error: error.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Arguments as typed (the value parsers clap calls).

/// One `--param NAME=VALUE`.
#[derive(Debug, Clone, PartialEq)]
pub struct ParameterArgument {
    pub name: String,
    pub value: Value,
}

/// One `--param-for STATION:NAME=VALUE`.
#[derive(Debug, Clone, PartialEq)]
pub struct StationParameterArgument {
    pub station: String,
    pub parameter: ParameterArgument,
}

/// One `--station-key STATION=PUBKEY`.
#[derive(Debug, Clone, PartialEq)]
pub struct StationKeyArgument {
    pub station: String,
    pub public_key_path: PathBuf,
}

/// Parses `NAME=VALUE`. The value is a JSON number or boolean when it reads as one (`10`,
/// `0.5`, `true`), otherwise the string as typed.
pub fn parse_parameter_argument(text: &str) -> Result<ParameterArgument, String> {
    let (name, value_text) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not NAME=VALUE"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("`{text}` has no parameter name before `=`"));
    }
    let value = match serde_json::from_str::<Value>(value_text) {
        Ok(typed @ (Value::Number(_) | Value::Bool(_))) => typed,
        _ => Value::String(value_text.to_string()),
    };
    Ok(ParameterArgument {
        name: name.to_string(),
        value,
    })
}

/// Parses `STATION:NAME=VALUE`.
pub fn parse_station_parameter_argument(text: &str) -> Result<StationParameterArgument, String> {
    let (station, parameter_text) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}` is not STATION:NAME=VALUE"))?;
    check_station_id(station).map_err(|problem| format!("`{text}`: {problem}"))?;
    Ok(StationParameterArgument {
        station: station.to_string(),
        parameter: parse_parameter_argument(parameter_text)?,
    })
}

/// Parses `STATION=PUBKEY`: the public key (PEM) that station `STATION` seals its results with.
pub fn parse_station_key_argument(text: &str) -> Result<StationKeyArgument, String> {
    let (station, path) = text.split_once('=').ok_or_else(|| {
        format!("`{text}` is not STATION=PUBKEY (e.g. umc=keys/umc.pub): each key must name its station")
    })?;
    check_station_id(station).map_err(|problem| format!("`{text}`: {problem}"))?;
    if path.is_empty() {
        return Err(format!("`{text}` names no public key file after `=`"));
    }
    Ok(StationKeyArgument {
        station: station.to_string(),
        public_key_path: PathBuf::from(path),
    })
}

/// Parses a duration such as `30s`, `10m` or `24h`.
pub fn parse_duration_argument(text: &str) -> Result<Duration, String> {
    pht_core::units::parse_duration(text).map_err(|error| error.to_string())
}

/// Station ids use the hub's alphabet: `[A-Za-z0-9._-]`, 1 to 64 characters, starting with a
/// letter or digit. Checking it here also keeps a station id safe as a directory name.
fn check_station_id(station: &str) -> Result<(), String> {
    let well_formed = (1..=64).contains(&station.len())
        && station
            .chars()
            .next()
            .is_some_and(|first| first.is_ascii_alphanumeric())
        && station
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if well_formed {
        Ok(())
    } else {
        Err(format!(
            "`{station}` is not a station id (letters, digits, `.`, `_`, `-`; at most 64; starting with a letter or digit)"
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// pht submit

/// What `pht submit` was asked to do.
#[derive(Debug, Clone)]
pub struct SubmitRequest {
    pub train_reference: String,
    pub route_stations: Vec<String>,
    pub route_mode: RouteMode,
    pub parameters: Vec<ParameterArgument>,
    pub station_parameters: Vec<StationParameterArgument>,
    /// `--recipient age1…`.
    pub recipient: Option<String>,
    /// `--recipient-file FILE`.
    pub recipient_file: Option<PathBuf>,
    pub expires_in: Duration,
}

/// `pht submit TRAIN@DIGEST --route a,b …`: builds, signs and submits a job.
pub async fn submit(output: Output, login: &HubLogin, request: &SubmitRequest) -> CommandResult {
    let recipient = resolve_recipient(
        request.recipient.as_deref(),
        request.recipient_file.as_deref(),
        &login.key_path,
    )?;
    let job = build_job(request, recipient, Uuid::new_v4(), Utc::now())?;
    let key = read_signing_key(&login.key_path)?;
    let envelope = job.sign(&key);
    let client = login.connect(key)?;
    let job_status = client.submit_job(&envelope).await.map_err(hub_failure)?;
    output.print(&job_status, || {
        format!(
            "submitted job {}\n{}",
            job_status.job_id,
            render_job_status(&job_status)
        )
    });
    output.note(format!(
        "follow it with `pht status {} --watch`; collect its results with `pht results {} --out DIR …`",
        job_status.job_id, job_status.job_id
    ));
    Ok(())
}

/// The job `request` describes, issued at `now`. Pure: the caller supplies the id and the clock.
fn build_job(
    request: &SubmitRequest,
    recipient: String,
    job_id: Uuid,
    now: DateTime<Utc>,
) -> CommandResult<JobV1> {
    let train = train_pin(&request.train_reference)?;
    let stations: Vec<String> = request
        .route_stations
        .iter()
        .map(|station| station.trim().to_string())
        .collect();
    for station in &stations {
        check_station_id(station)
            .map_err(|problem| fail(FailureKind::Input, format!("--route: {problem}")))?;
    }
    let parameters = build_parameters(&stations, &request.parameters, &request.station_parameters)?;
    let expires_in = chrono::Duration::from_std(request.expires_in)
        .ok()
        .filter(|expires_in| *expires_in > chrono::Duration::zero())
        .ok_or_else(|| {
            fail(
                FailureKind::Input,
                "--expires-in must be a positive duration such as 24h",
            )
        })?;
    let expires_at = now.checked_add_signed(expires_in).ok_or_else(|| {
        fail(
            FailureKind::Input,
            "--expires-in is too long; use hours or days",
        )
    })?;
    let job = JobV1 {
        job_id,
        issued_at: now,
        expires_at,
        train,
        route: Route {
            mode: request.route_mode,
            stations,
        },
        parameters,
        recipient,
    };
    job.validate().map_err(|refusal| {
        fail(
            FailureKind::Input,
            format!("cannot submit this job: {refusal}"),
        )
    })?;
    Ok(job)
}

/// The train a job pins: `registry/repository` and the manifest digest. A tag alone is refused,
/// because a station runs exactly the digest the researcher signed.
fn train_pin(reference_text: &str) -> CommandResult<TrainPin> {
    let reference: ImageReference = reference_text.parse().input()?;
    let digest = reference.digest().cloned().ok_or_else(|| {
        fail(
            FailureKind::Input,
            format!(
                "`{reference_text}` names no digest; submit a digest: run `pht train push` and use the REPO@sha256:… it printed"
            ),
        )
    })?;
    Ok(TrainPin {
        repository: reference.repository_path(),
        digest,
    })
}

/// The job's parameters: `--param` values under `*`; for each station named by `--param-for`,
/// the `--param` values overlaid with its own. A station reads its own entry *instead of* `*`,
/// so the overlay is what keeps a `--param` from being lost at a station that has its own.
fn build_parameters(
    route_stations: &[String],
    parameters: &[ParameterArgument],
    station_parameters: &[StationParameterArgument],
) -> CommandResult<BTreeMap<String, BTreeMap<String, Value>>> {
    let mut every_station = BTreeMap::new();
    for parameter in parameters {
        if every_station
            .insert(parameter.name.clone(), parameter.value.clone())
            .is_some()
        {
            return Err(fail(
                FailureKind::Input,
                format!("--param {} is given twice", parameter.name),
            ));
        }
    }
    let mut per_station: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for station_parameter in station_parameters {
        let station = &station_parameter.station;
        if !route_stations.contains(station) {
            return Err(fail(
                FailureKind::Input,
                format!(
                    "--param-for names station `{station}`, which is not on the route ({})",
                    route_stations.join(",")
                ),
            ));
        }
        let own = per_station.entry(station.clone()).or_default();
        let name = &station_parameter.parameter.name;
        if own
            .insert(name.clone(), station_parameter.parameter.value.clone())
            .is_some()
        {
            return Err(fail(
                FailureKind::Input,
                format!("--param-for {station}:{name} is given twice"),
            ));
        }
    }
    let mut all = BTreeMap::new();
    for (station, own) in per_station {
        let mut merged = every_station.clone();
        merged.extend(own);
        all.insert(station, merged);
    }
    if !every_station.is_empty() {
        all.insert(EVERY_STATION.to_string(), every_station);
    }
    Ok(all)
}

/// The recipient file `pht key generate` writes next to a key: `DIR/NAME.key` → `DIR/NAME.age.pub`.
fn default_recipient_file(key_path: &Path) -> PathBuf {
    let stem = key_path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    key_path.with_file_name(format!("{stem}.age.pub"))
}

/// The age recipient results are encrypted to: `--recipient`, else the first recipient in
/// `--recipient-file`, else the `.age.pub` file next to the signing key.
fn resolve_recipient(
    recipient: Option<&str>,
    recipient_file: Option<&Path>,
    key_path: &Path,
) -> CommandResult<String> {
    let (recipient, origin) = match (recipient, recipient_file) {
        (Some(recipient), _) => (recipient.trim().to_string(), "--recipient".to_string()),
        (None, given_file) => {
            let path = given_file
                .map(Path::to_path_buf)
                .unwrap_or_else(|| default_recipient_file(key_path));
            let text = std::fs::read_to_string(&path)
                .with_context(|| {
                    format!(
                        "cannot read the age recipient file {}; pass --recipient age1… or --recipient-file FILE (by default the NAME.age.pub next to --key)",
                        path.display()
                    )
                })
                .input()?;
            let recipient = text
                .lines()
                .map(str::trim)
                .find(|line| !line.is_empty() && !line.starts_with('#'))
                .ok_or_else(|| {
                    fail(
                        FailureKind::Input,
                        format!("{} holds no age recipient", path.display()),
                    )
                })?
                .to_string();
            (recipient, path.display().to_string())
        }
    };
    recipient
        .parse::<age::x25519::Recipient>()
        .map_err(|reason| {
            fail(
                FailureKind::Input,
                format!(
                    "{origin}: `{recipient}` is not an age X25519 recipient (`age1…`): {reason}"
                ),
            )
        })?;
    Ok(recipient)
}

// ---------------------------------------------------------------------------------------------
// pht status

/// `pht status JOB [--watch]`: prints the job; with `watch`, polls until the job is no longer
/// active (or `watch` time passed), printing only what changed.
pub async fn status(
    output: Output,
    login: &HubLogin,
    job_id: Uuid,
    watch: Option<Duration>,
) -> CommandResult {
    let client = login.connect(read_signing_key(&login.key_path)?)?;
    let mut job_status = client.job_status(job_id).await.map_err(hub_failure)?;
    let Some(timeout) = watch else {
        output.print(&job_status, || render_job_status(&job_status));
        return job_outcome(&job_status);
    };
    // While watching, people see each change as it happens; a script gets one JSON document,
    // the final status.
    if !output.json {
        println!("{}", render_job_status(&job_status).trim_end());
    }
    let deadline = tokio::time::Instant::now() + timeout;
    while job_status.status == JobState::Active {
        if tokio::time::Instant::now() >= deadline {
            output.print(&job_status, String::new);
            return Err(fail(
                FailureKind::Unavailable,
                format!(
                    "job {job_id} is still active after {}s of watching; run `pht status {job_id} --watch` again, or raise --timeout",
                    timeout.as_secs()
                ),
            ));
        }
        tokio::time::sleep(WATCH_POLL_INTERVAL).await;
        let next_status = client.job_status(job_id).await.map_err(hub_failure)?;
        if !output.json {
            for line in describe_changes(&job_status, &next_status, Utc::now()) {
                println!("{line}");
            }
        }
        job_status = next_status;
    }
    output.print(&job_status, String::new);
    job_outcome(&job_status)
}

/// Exit 0 for a completed or still active job, exit 1 (refused) for a job that ended without
/// every result, naming the stops that did not deliver.
fn job_outcome(job_status: &JobStatus) -> CommandResult {
    match job_status.status {
        JobState::Active | JobState::Completed => Ok(()),
        JobState::Incomplete | JobState::Cancelled => {
            let stops_without_result: Vec<String> = job_status
                .stops
                .iter()
                .filter(|stop| stop.result.is_none())
                .map(|stop| {
                    let mut text = format!("{} {}", stop.station, wire_name(&stop.status));
                    if let Some(reason) = &stop.reason {
                        text += &format!(" ({reason})");
                    }
                    text
                })
                .collect();
            Err(fail(
                FailureKind::Refused,
                format!(
                    "job {} is {}: {}",
                    job_status.job_id,
                    wire_name(&job_status.status),
                    stops_without_result.join("; ")
                ),
            ))
        }
    }
}

/// One line per stop (and for the job) whose status, reason or stored result changed.
fn describe_changes(previous: &JobStatus, next: &JobStatus, now: DateTime<Utc>) -> Vec<String> {
    let time = now.format("%H:%M:%S");
    let mut lines = Vec::new();
    for next_stop in &next.stops {
        let previous_stop = previous
            .stops
            .iter()
            .find(|stop| stop.index == next_stop.index);
        let changed = previous_stop.is_none_or(|previous_stop| {
            previous_stop.status != next_stop.status
                || previous_stop.reason != next_stop.reason
                || previous_stop.result.is_some() != next_stop.result.is_some()
        });
        if !changed {
            continue;
        }
        let mut line = format!(
            "{time}  stop {} {}: {}",
            next_stop.index,
            next_stop.station,
            wire_name(&next_stop.status)
        );
        if let Some(previous_stop) = previous_stop {
            if previous_stop.status != next_stop.status {
                line = format!(
                    "{time}  stop {} {}: {} -> {}",
                    next_stop.index,
                    next_stop.station,
                    wire_name(&previous_stop.status),
                    wire_name(&next_stop.status)
                );
            }
        }
        if next_stop.result.is_some() {
            line += " (result stored)";
        }
        if let Some(reason) = &next_stop.reason {
            line += &format!(": {reason}");
        }
        lines.push(line);
    }
    if previous.status != next.status {
        lines.push(format!(
            "{time}  job {}: {} -> {}",
            next.job_id,
            wire_name(&previous.status),
            wire_name(&next.status)
        ));
    }
    lines
}

/// A status as the API spells it (`active`, `done`, …).
fn wire_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(name)) => name,
        _ => "unknown".to_string(),
    }
}

fn render_job_status(job_status: &JobStatus) -> String {
    let mut text = format!(
        "job {}  {}\n",
        job_status.job_id,
        wire_name(&job_status.status)
    );
    text += &format!(
        "  train    {}@{}\n",
        job_status.train.repository, job_status.train.digest
    );
    text += &format!(
        "  route    {} ({} stops)\n",
        wire_name(&job_status.mode),
        job_status.stops.len()
    );
    text += &format!(
        "  expires  {}\n",
        job_status
            .expires_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    text += &render_stops(&job_status.stops);
    text
}

fn render_stops(stops: &[StopStatus]) -> String {
    let rows: Vec<[String; 5]> = stops
        .iter()
        .map(|stop| {
            [
                stop.index.to_string(),
                stop.station.clone(),
                wire_name(&stop.status),
                if stop.result.is_some() { "stored" } else { "-" }.to_string(),
                stop.reason.clone().unwrap_or_else(|| "-".to_string()),
            ]
        })
        .collect();
    let header = ["stop", "station", "status", "result", "reason"].map(str::to_string);
    let mut widths = header.clone().map(|cell| cell.len());
    for row in &rows {
        for (cell_idx, cell) in row.iter().enumerate() {
            widths[cell_idx] = widths[cell_idx].max(cell.len());
        }
    }
    let mut text = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        text += &format!("  {}\n", line.join("  ").trim_end());
    }
    text
}

// ---------------------------------------------------------------------------------------------
// pht results JOB

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

#[cfg(test)]
mod tests {
    use pht_api::v1::{StopState, TrainSummary};
    use serde_json::json;

    use super::*;

    const DIGEST: &str = "sha256:05b3abf2579a5eb66403cd78be557fd860633a1fe2103c7642030defe32c657f";

    fn recipient() -> String {
        age::x25519::Identity::generate().to_public().to_string()
    }

    fn submit_request(route: &[&str]) -> SubmitRequest {
        SubmitRequest {
            train_reference: format!("127.0.0.1:5000/trains/count@{DIGEST}"),
            route_stations: route.iter().map(|station| station.to_string()).collect(),
            route_mode: RouteMode::Parallel,
            parameters: Vec::new(),
            station_parameters: Vec::new(),
            recipient: None,
            recipient_file: None,
            expires_in: Duration::from_secs(24 * 3600),
        }
    }

    fn failure_message(result: CommandResult<impl std::fmt::Debug>) -> (FailureKind, String) {
        let failure = result.expect_err("expected a failure");
        (failure.kind, format!("{:#}", failure.error))
    }

    #[test]
    fn param_values_are_typed_when_they_read_as_numbers_or_booleans() {
        let check = |text: &str, expected: Value| {
            assert_eq!(
                parse_parameter_argument(text).unwrap().value,
                expected,
                "{text}"
            );
        };
        check("n=10", json!(10));
        check("alpha=0.05", json!(0.05));
        check("strict=true", json!(true));
        check("cohort=adults", json!("adults"));
        check("missing=null", json!("null"));
        check("list=[1,2]", json!("[1,2]"));
        check("expression=a=b", json!("a=b"));
        check("empty=", json!(""));
        assert_eq!(parse_parameter_argument("n=1").unwrap().name, "n");
    }

    #[test]
    fn param_without_name_or_equals_sign_is_a_usage_error() {
        assert!(parse_parameter_argument("=1").is_err());
        assert!(parse_parameter_argument("n").is_err());
    }

    #[test]
    fn param_for_names_a_station_then_a_parameter() {
        let parsed = parse_station_parameter_argument("umc-1:threshold=5").unwrap();
        assert_eq!(parsed.station, "umc-1");
        assert_eq!(parsed.parameter.name, "threshold");
        assert_eq!(parsed.parameter.value, json!(5));
        assert!(parse_station_parameter_argument("threshold=5").is_err());
        assert!(parse_station_parameter_argument(":threshold=5").is_err());
        assert!(parse_station_parameter_argument("../x:threshold=5").is_err());
    }

    #[test]
    fn station_key_must_name_its_station() {
        let parsed = parse_station_key_argument("umc=keys/umc.pub").unwrap();
        assert_eq!(parsed.station, "umc");
        assert_eq!(parsed.public_key_path, PathBuf::from("keys/umc.pub"));
        assert!(parse_station_key_argument("keys/umc.pub").is_err());
        assert!(parse_station_key_argument("umc=").is_err());
        assert!(parse_station_key_argument("..=keys/umc.pub").is_err());
    }

    #[test]
    fn station_parameters_are_overlaid_on_the_parameters_for_every_station() {
        let stations = vec!["a".to_string(), "b".to_string()];
        let parameters = build_parameters(
            &stations,
            &[
                parse_parameter_argument("n=10").unwrap(),
                parse_parameter_argument("label=x").unwrap(),
            ],
            &[parse_station_parameter_argument("b:n=20").unwrap()],
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&parameters).unwrap(),
            json!({"*": {"n": 10, "label": "x"}, "b": {"n": 20, "label": "x"}})
        );
    }

    #[test]
    fn no_parameters_give_an_empty_map() {
        let parameters = build_parameters(&["a".to_string()], &[], &[]).unwrap();
        assert!(parameters.is_empty());
    }

    #[test]
    fn param_for_a_station_off_the_route_is_refused() {
        let (kind, message) = failure_message(build_parameters(
            &["a".to_string()],
            &[],
            &[parse_station_parameter_argument("c:n=1").unwrap()],
        ));
        assert_eq!(kind, FailureKind::Input);
        assert!(
            message.contains("`c`, which is not on the route"),
            "{message}"
        );
    }

    #[test]
    fn param_given_twice_is_refused() {
        let twice = [
            parse_parameter_argument("n=1").unwrap(),
            parse_parameter_argument("n=2").unwrap(),
        ];
        assert!(build_parameters(&["a".to_string()], &twice, &[]).is_err());
    }

    #[test]
    fn tag_is_refused_with_the_way_to_get_a_digest() {
        let (kind, message) = failure_message(train_pin("127.0.0.1:5000/trains/count:0.1.0"));
        assert_eq!(kind, FailureKind::Input);
        assert!(
            message.contains(
                "submit a digest: run `pht train push` and use the REPO@sha256:… it printed"
            ),
            "{message}"
        );
    }

    #[test]
    fn digest_reference_pins_registry_repository_and_digest() {
        let pin = train_pin(&format!("127.0.0.1:5000/trains/count:0.1.0@{DIGEST}")).unwrap();
        assert_eq!(pin.repository, "127.0.0.1:5000/trains/count");
        assert_eq!(pin.digest.to_string(), DIGEST);
    }

    #[test]
    fn job_is_built_from_the_request_and_validates() {
        let now: DateTime<Utc> = "2026-11-23T12:00:00Z".parse().unwrap();
        let mut request = submit_request(&["a", "b"]);
        request.route_mode = RouteMode::Sequential;
        let recipient = recipient();
        let job = build_job(&request, recipient.clone(), Uuid::nil(), now).unwrap();
        assert_eq!(job.expires_at, now + chrono::Duration::hours(24));
        assert_eq!(job.route.mode, RouteMode::Sequential);
        assert_eq!(job.route.stations, ["a", "b"]);
        assert_eq!(job.recipient, recipient);
        assert_eq!(job.train.repository, "127.0.0.1:5000/trains/count");
    }

    #[test]
    fn duplicate_or_empty_route_is_refused() {
        let now = Utc::now();
        for route in [&["a", "a"][..], &[], &["a", ""]] {
            let (kind, _) = failure_message(build_job(
                &submit_request(route),
                recipient(),
                Uuid::nil(),
                now,
            ));
            assert_eq!(kind, FailureKind::Input, "{route:?}");
        }
    }

    #[test]
    fn recipient_file_defaults_to_the_age_pub_next_to_the_key() {
        assert_eq!(
            default_recipient_file(Path::new("keys/alice.key")),
            PathBuf::from("keys/alice.age.pub")
        );
        let dir = tempfile::tempdir().unwrap();
        let recipient = recipient();
        std::fs::write(
            dir.path().join("alice.age.pub"),
            format!("# alice\n{recipient}\n"),
        )
        .unwrap();
        let resolved = resolve_recipient(None, None, &dir.path().join("alice.key")).unwrap();
        assert_eq!(resolved, recipient);
    }

    #[test]
    fn given_recipient_wins_and_is_checked() {
        let recipient = recipient();
        let resolved =
            resolve_recipient(Some(&recipient), None, Path::new("/nonexistent/a.key")).unwrap();
        assert_eq!(resolved, recipient);
        let (kind, _) = failure_message(resolve_recipient(
            Some("age1notakey"),
            None,
            Path::new("/nonexistent/a.key"),
        ));
        assert_eq!(kind, FailureKind::Input);
    }

    #[test]
    fn missing_default_recipient_file_says_what_to_pass() {
        let (kind, message) = failure_message(resolve_recipient(
            None,
            None,
            Path::new("/nonexistent/a.key"),
        ));
        assert_eq!(kind, FailureKind::Input);
        assert!(message.contains("/nonexistent/a.age.pub"), "{message}");
        assert!(message.contains("--recipient"), "{message}");
    }

    fn stop(index: u32, station: &str, status: StopState, reason: Option<&str>) -> StopStatus {
        StopStatus {
            index,
            station: station.into(),
            status,
            reason: reason.map(str::to_string),
            updated_at: "2026-11-23T12:00:00Z".parse().unwrap(),
            input_state: None,
            result: None,
        }
    }

    fn job_status(status: JobState, stops: Vec<StopStatus>) -> JobStatus {
        let at: DateTime<Utc> = "2026-11-23T12:00:00Z".parse().unwrap();
        JobStatus {
            job_id: Uuid::nil(),
            researcher: "alice".into(),
            train: TrainSummary {
                repository: "127.0.0.1:5000/trains/count".into(),
                digest: DIGEST.parse().unwrap(),
            },
            mode: RouteMode::Parallel,
            issued_at: at,
            expires_at: at + chrono::Duration::hours(24),
            submitted_at: at,
            status,
            stops,
        }
    }

    #[test]
    fn completed_job_succeeds_and_incomplete_job_is_refused_naming_the_stop() {
        let completed = job_status(JobState::Completed, vec![]);
        assert!(job_outcome(&completed).is_ok());
        assert!(job_outcome(&job_status(JobState::Active, vec![])).is_ok());
        let incomplete = job_status(
            JobState::Incomplete,
            vec![stop(0, "b", StopState::Denied, Some("untrusted signer"))],
        );
        let (kind, message) = failure_message(job_outcome(&incomplete));
        assert_eq!(kind, FailureKind::Refused);
        assert!(message.contains("b denied (untrusted signer)"), "{message}");
    }

    #[test]
    fn watch_prints_only_what_changed() {
        let now: DateTime<Utc> = "2026-11-23T12:00:07Z".parse().unwrap();
        let before = job_status(
            JobState::Active,
            vec![
                stop(0, "a", StopState::Running, None),
                stop(1, "b", StopState::Ready, None),
            ],
        );
        let after = job_status(
            JobState::Incomplete,
            vec![
                stop(0, "a", StopState::Running, None),
                stop(
                    1,
                    "b",
                    StopState::Denied,
                    Some("policy: dataset not allowed"),
                ),
            ],
        );
        assert_eq!(
            describe_changes(&before, &after, now),
            [
                "12:00:07  stop 1 b: ready -> denied: policy: dataset not allowed",
                "12:00:07  job 00000000-0000-0000-0000-000000000000: active -> incomplete",
            ]
        );
        assert!(describe_changes(&before, &before, now).is_empty());
    }

    #[test]
    fn status_table_lists_every_stop() {
        let rendered = render_job_status(&job_status(
            JobState::Active,
            vec![
                stop(0, "umc", StopState::Running, None),
                stop(1, "radboud", StopState::Denied, Some("no")),
            ],
        ));
        let expected = format!(
            "job 00000000-0000-0000-0000-000000000000  active\n  train    127.0.0.1:5000/trains/count@{DIGEST}\n  route    parallel (2 stops)\n  expires  2026-11-24T12:00:00Z\n  stop  station  status   result  reason\n  0     umc      running  -       -\n  1     radboud  denied   -       no\n"
        );
        assert_eq!(rendered, expected);
    }
}
