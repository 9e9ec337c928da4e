//! One run, step by step: the order of the Docker calls, and what the outcome reports.
//!
//! Owns: [`run_in_sandbox`], which arms the cleanup guard, runs the steps and removes the run's
//! resources whatever happened; the steps themselves ([`run_steps`]: prepare `/output`, create
//! the train container, attach, start, wait with the wall-clock limit then kill, inspect the
//! exit (asking for a late `oom` event when the exit was a SIGKILL not ours), collect); covering
//! the volumes a train image declares with a capped tmpfs; and judging from what was collected
//! whether `/output` was full.
//!
//! Does not know which kind of `/output` the run has ([`OutputSlot`] does), how logs are capped
//! ([`super::logs`]), or how anything is removed ([`super::cleanup`]).

use std::collections::HashMap;
use std::time::Instant;

use bollard::models::HostConfig;

use super::add_station_label;
use super::cleanup::{remove_run_resources, CleanupOnDrop, RunResources};
use super::engine::SandboxEngine;
use super::error::{joined, RunStep, SandboxError};
use super::logs::LogCapture;
use super::oom_watch::{OomWatch, LATE_OOM_EVENT_GRACE};
use super::output_slot::OutputSlot;
use super::spares::WarmSlots;
use super::RunOutcome;
use crate::collect::{CollectLimits, CollectedKind, CollectedOutputs};
use crate::spec::{self, RunLimits, RunSpec, OUTPUT_MOUNT_PATH, PARAMS_MOUNT_PATH, TMP_MOUNT_PATH};

/// A process killed by SIGKILL (9) exits with 128 + 9.
const SIGKILL_EXIT_CODE: i64 = 137;
/// tmpfs allocates whole pages.
const TMPFS_PAGE_BYTES: u64 = 4096;
/// A `/output` this close to its cap counts as full: the last write that failed could not have
/// added more than a page or two.
const OUTPUT_FULL_SLACK_BYTES: u64 = 2 * TMPFS_PAGE_BYTES;
/// tmpfs keeps symbolic link targets shorter than this in the inode, longer ones in a page.
const TMPFS_INLINE_SYMLINK_BYTES: usize = 128;

/// Runs `spec` and removes its resources, whatever happens; if this future is dropped first, the
/// removal is spawned instead.
pub(super) async fn run_in_sandbox<E: SandboxEngine>(
    engine: &E,
    spec: &RunSpec,
    slots: &WarmSlots<'_>,
) -> Result<RunOutcome, SandboxError> {
    let names = spec.resource_names();
    let mut cleanup_guard = CleanupOnDrop::arm(
        engine,
        RunResources {
            output_slot: OutputSlot::for_run(engine, spec.run_id(), &names),
            train_container: names.train_container,
        },
    );
    let run_result = run_steps(engine, spec, cleanup_guard.resources_mut(), slots).await;
    let resources = cleanup_guard.disarm();
    let cleanup_result = remove_run_resources(engine, &resources).await;
    match (run_result, cleanup_result) {
        (Ok(outcome), Ok(())) => Ok(outcome),
        (Ok(_), Err(failures)) => Err(SandboxError::Cleanup {
            run_id: spec.run_id().to_string(),
            failures,
        }),
        (Err(run_error), Ok(())) => Err(run_error),
        (Err(run_error), Err(failures)) => {
            // The run's own error says more about what went wrong; the cleanup failures are
            // still worth an operator's attention.
            tracing::warn!(
                run_id = spec.run_id(),
                failures = joined(&failures),
                "could not remove the sandbox of a failed run"
            );
            Err(run_error)
        }
    }
}

/// The run's steps. `resources` is what the cleanup removes; claiming a spare slot changes the
/// volume in its output slot.
async fn run_steps<E: SandboxEngine>(
    engine: &E,
    spec: &RunSpec,
    resources: &mut RunResources,
    slots: &WarmSlots<'_>,
) -> Result<RunOutcome, SandboxError> {
    let limits = spec.limits();
    let run_id = spec.run_id();
    let train = resources.train_container.as_str();
    let output_slot = &mut resources.output_slot;

    let image_volume_paths = engine
        .image_volume_paths(spec.image_id())
        .await
        .map_err(SandboxError::at_step(run_id, RunStep::InspectTrainImage))?;
    output_slot.prepare(engine, spec, slots).await?;

    let mut train_body = spec::container_body(spec, output_slot.mount());
    add_station_label(&mut train_body.labels, engine.station_id());
    if let Some(host_config) = train_body.host_config.as_mut() {
        cover_image_volumes(host_config, &image_volume_paths, limits.tmp_bytes);
    }
    engine
        .create_container(train, train_body)
        .await
        .map_err(SandboxError::at_step(run_id, RunStep::CreateTrainContainer))?;

    // Attach before starting, as `docker run` does, so no output is missed. The capture reads
    // the container's streams directly rather than the log file, whose rotation at its size
    // cap would silently drop the beginning.
    let log_stream = engine
        .attach_output(train)
        .await
        .map_err(SandboxError::at_step(run_id, RunStep::AttachToTrain))?;
    let log_capture = LogCapture::start(log_stream, limits.log_bytes);
    let mut oom_watch = OomWatch::start(engine.oom_events(train));

    engine
        .start_container(train)
        .await
        .map_err(SandboxError::at_step(run_id, RunStep::StartTrain))?;
    let started_at = Instant::now();
    let timed_out =
        match tokio::time::timeout(limits.wall_clock, engine.wait_container(train)).await {
            Ok(wait_result) => {
                wait_result.map_err(SandboxError::at_step(run_id, RunStep::WaitForTrain))?;
                false
            }
            Err(_elapsed) => {
                engine
                    .kill_container(train)
                    .await
                    .map_err(SandboxError::at_step(run_id, RunStep::KillTrain))?;
                engine
                    .wait_container(train)
                    .await
                    .map_err(SandboxError::at_step(run_id, RunStep::WaitForTrain))?;
                true
            }
        };
    let duration = started_at.elapsed();

    let exit_state = engine
        .inspect_exit(train)
        .await
        .map_err(SandboxError::at_step(run_id, RunStep::InspectTrain))?;
    // SIGKILL that was not ours: Docker's state may have missed the kernel's OOM kill.
    let oom_killed = exit_state.oom_killed
        || (!timed_out
            && exit_state.exit_code == Some(SIGKILL_EXIT_CODE)
            && oom_watch.seen_within(LATE_OOM_EVENT_GRACE).await);
    drop(oom_watch);
    if oom_killed && !exit_state.oom_killed {
        tracing::info!(
            run_id,
            "the container's state missed the kernel's OOM kill; Docker's oom event shows it"
        );
    }
    output_slot.ensure_held(engine, run_id).await?;

    let (logs, logs_truncated) = log_capture.finish().await;

    let outputs = output_slot
        .collect(engine, run_id, collect_limits(limits))
        .await?;
    let output_limit_reached = output_limit_reached(&outputs, limits);
    let output_file_limit_reached = outputs.entries_seen >= limits.output_files;

    Ok(RunOutcome {
        exit_code: exit_state.exit_code,
        oom_killed,
        timed_out,
        duration,
        logs,
        logs_truncated,
        outputs,
        output_limit_reached,
        output_file_limit_reached,
    })
}

/// Puts a small tmpfs over every path the train image declares as a volume. Docker would
/// otherwise give each one an anonymous, writable, disk-backed volume that no limit caps.
/// Paths the sandbox mounts itself are left to those mounts.
fn cover_image_volumes(
    host_config: &mut HostConfig,
    image_volume_paths: &[String],
    tmp_bytes: u64,
) {
    let sandbox_targets: Vec<String> = host_config
        .mounts
        .iter()
        .flatten()
        .filter_map(|mount| mount.target.clone())
        .chain([
            TMP_MOUNT_PATH.to_string(),
            OUTPUT_MOUNT_PATH.to_string(),
            PARAMS_MOUNT_PATH.to_string(),
        ])
        .collect();
    let tmpfs = host_config.tmpfs.get_or_insert_with(HashMap::new);
    for path in image_volume_paths {
        let path = path.trim_end_matches('/');
        if path.is_empty() || sandbox_targets.iter().any(|target| target == path) {
            continue;
        }
        tmpfs.insert(
            path.to_string(),
            format!("size={tmp_bytes},mode=1777,noexec,nosuid,nodev"),
        );
    }
}

fn collect_limits(limits: &RunLimits) -> CollectLimits {
    CollectLimits {
        // The tmpfs holds whole pages, so it can hold up to a page more than asked for.
        max_total_bytes: round_up_to_page(limits.output_bytes),
        max_entries: limits.output_files,
    }
}

fn round_up_to_page(bytes: u64) -> u64 {
    bytes
        .div_ceil(TMPFS_PAGE_BYTES)
        .saturating_mul(TMPFS_PAGE_BYTES)
}

/// Whether `/output` was full, judged from what was collected: the tmpfs counts whole pages per
/// file, so the pages the collected files occupy tell how close the train came to the cap.
pub(super) fn output_limit_reached(outputs: &CollectedOutputs, limits: &RunLimits) -> bool {
    if outputs.truncated || outputs.entries_seen >= limits.output_files {
        return true;
    }
    let occupied_bytes: u64 = outputs
        .files
        .iter()
        .map(|file| match &file.kind {
            CollectedKind::Regular { .. } => round_up_to_page(file.size),
            CollectedKind::Symlink { target } if target.len() >= TMPFS_INLINE_SYMLINK_BYTES => {
                TMPFS_PAGE_BYTES
            }
            CollectedKind::Symlink { .. } | CollectedKind::Special { .. } => 0,
        })
        .sum();
    occupied_bytes.saturating_add(OUTPUT_FULL_SLACK_BYTES) >= limits.output_bytes
}
