//! `pht submit`: builds the job from what was typed, signs it and hands it to the hub.
//!
//! Owns turning arguments into a `JobV1` (the train pin, the route, parameters overlaid per
//! station, the expiry, the age recipient). Whether the job may run is not decided here: the
//! job's own validation, the hub and each station's policy decide that.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use pht_core::job::{JobV1, Route, RouteMode, TrainPin};
use pht_core::ImageReference;
use serde_json::Value;
use uuid::Uuid;

use super::arguments::check_station_id;
use super::status::render_job_status;
use super::{hub_failure, HubLogin, ParameterArgument, StationParameterArgument};
use crate::exit::{fail, Classify as _, CommandResult, FailureKind};
use crate::keyfiles::read_signing_key;
use crate::output::Output;

/// The parameter key that applies to every station of the route.
const EVERY_STATION: &str = "*";

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
pub(super) fn build_job(
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
pub(super) fn train_pin(reference_text: &str) -> CommandResult<TrainPin> {
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
pub(super) fn build_parameters(
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
pub(super) fn default_recipient_file(key_path: &Path) -> PathBuf {
    let stem = key_path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    key_path.with_file_name(format!("{stem}.age.pub"))
}

/// The age recipient results are encrypted to: `--recipient`, else the first recipient in
/// `--recipient-file`, else the `.age.pub` file next to the signing key.
pub(super) fn resolve_recipient(
    recipient: Option<&str>,
    recipient_file: Option<&Path>,
    key_path: &Path,
) -> CommandResult<String> {
    let (text, origin) = match (recipient, recipient_file) {
        (Some(recipient), _) => (recipient.to_string(), "--recipient".to_string()),
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
            (text, path.display().to_string())
        }
    };
    let recipient = pht_core::recipient::parse_recipient(&text)
        .map_err(|error| fail(FailureKind::Input, format!("{origin}: {error}")))?
        .to_string();
    Ok(recipient)
}
