//! `pht status JOB [--watch]`: prints a job's stops as the hub reports them and, watching,
//! only what changed.
//!
//! Owns the rendering of a job status and the exit code it maps to. It changes nothing at the
//! hub and judges no stop: the states are the hub's.

use std::time::Duration;

use chrono::{DateTime, Utc};
use pht_api::v1::{JobState, JobStatus, StopState, StopStatus};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::{hub_failure, HubLogin};
use crate::exit::{fail, CommandResult, FailureKind};
use crate::keyfiles::read_signing_key;
use crate::output::Output;

/// How often `pht status --watch` asks the hub again.
const WATCH_POLL_INTERVAL: Duration = Duration::from_secs(1);

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
        if let Some(stations) = waiting_for_operators(&job_status) {
            // Nothing moves until a data steward reviews the withheld outputs, which can take
            // days: stop watching and say so.
            output.print(&job_status, String::new);
            if !output.json {
                eprintln!(
                    "job {job_id} waits for the operator of {} to review withheld outputs; run `pht status {job_id} --watch` again later",
                    stations.join(", ")
                );
            }
            return Ok(());
        }
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

/// The stations whose operators the job waits for, when nothing else can move: some stop is
/// withheld for review and none is ready, leased or running.
pub(super) fn waiting_for_operators(job_status: &JobStatus) -> Option<Vec<String>> {
    let moving = job_status.stops.iter().any(|stop| {
        matches!(
            stop.status,
            StopState::Ready | StopState::Leased | StopState::Running
        )
    });
    let withheld: Vec<String> = job_status
        .stops
        .iter()
        .filter(|stop| stop.status == StopState::Withheld)
        .map(|stop| stop.station.clone())
        .collect();
    (!moving && !withheld.is_empty()).then_some(withheld)
}

/// Exit 0 for a completed or still active job, exit 1 (refused) for a job that ended without
/// every result, naming the stops that did not deliver.
pub(super) fn job_outcome(job_status: &JobStatus) -> CommandResult {
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
pub(super) fn describe_changes(
    previous: &JobStatus,
    next: &JobStatus,
    now: DateTime<Utc>,
) -> Vec<String> {
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

pub(super) fn render_job_status(job_status: &JobStatus) -> String {
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
