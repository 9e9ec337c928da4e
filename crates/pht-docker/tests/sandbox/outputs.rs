//! Scenarios about what comes back from a run: outputs collected within their caps, links
//! recorded and never followed, logs capped, exit codes and stderr reported, image volumes
//! covered, and `/output` in a volume (the fallback) and in a claimed warm spare.
//!
//! Does not attack the sandbox's isolation (`containment.rs` does).

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{anyhow, ensure};
use bollard::query_parameters::ListContainersOptionsBuilder;
use pht_docker::{DockerSandbox, RunSpec};

use crate::support::*;

pub(crate) async fn well_behaved_train_reads_its_dataset_and_its_outputs_are_collected(
    suite: Arc<Suite>,
) -> anyhow::Result<()> {
    let (outcome, report) = suite
        .run_hostile("ok", small_limits(), &with_mode("ok", dataset_params()))
        .await?;
    ensure_contained(&outcome)?;
    ensure!(outcome.exit_code == Some(0), "{outcome:?}");
    ensure!(
        report.get("dataset_read")? == "ok rows=3",
        "{}",
        report.text
    );
    ensure!(
        report.text.contains("a line on stderr"),
        "stderr is captured too: {}",
        report.text
    );
    // The outputs were written by a container that has exited: they survived it.
    ensure!(
        outcome.outputs.regular_file("result.txt") == Some(&b"rows=3\n"[..]),
        "{:?}",
        outcome.outputs
    );
    let summary = outcome
        .outputs
        .files
        .iter()
        .find(|file| file.path == "tables/summary.csv")
        .ok_or_else(|| anyhow!("nested output missing: {:?}", outcome.outputs))?;
    ensure!(
        summary.sha256 == sha256_hex(b"group,count\na,12\nb,15\n"),
        "the hash is the SHA-256 of the content: {summary:?}"
    );
    ensure!(
        outcome.outputs.regular_file("report.txt").is_some(),
        "{:?}",
        outcome.outputs
    );
    ensure!(
        !outcome.output_limit_reached && !outcome.logs_truncated,
        "{outcome:?}"
    );
    ensure!(
        outcome.outputs.refused.is_empty(),
        "{:?}",
        outcome.outputs.refused
    );
    Ok(())
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

pub(crate) async fn exit_code_and_stderr_of_a_failing_train_are_reported(
    suite: Arc<Suite>,
) -> anyhow::Result<()> {
    let (outcome, report) = suite
        .run_hostile(
            "exit",
            small_limits(),
            &[("mode", "exit".into()), ("code", 3u64.into())],
        )
        .await?;
    ensure_contained(&outcome)?;
    ensure!(outcome.exit_code == Some(3), "{outcome:?}");
    ensure!(report.text.contains("exiting with 3"), "{}", report.text);
    Ok(())
}

pub(crate) async fn big_output_is_cut_at_the_output_cap(suite: Arc<Suite>) -> anyhow::Result<()> {
    check_big_output_is_cut(&suite, &suite.sandbox(), "bigout").await
}

/// A train writing eight times its output cap gets ENOSPC, and what is collected is within the
/// cap and marked as having reached it.
pub(crate) async fn check_big_output_is_cut(
    suite: &Suite,
    sandbox: &DockerSandbox,
    tag: &str,
) -> anyhow::Result<()> {
    let limits = small_limits();
    let output_bytes = limits.output_bytes;
    let (outcome, report) = suite
        .run_hostile_in(
            sandbox,
            tag,
            limits,
            &[
                ("mode", "big-output".into()),
                ("bytes", (8 * output_bytes).into()),
            ],
        )
        .await?;
    ensure_contained(&outcome)?;
    ensure!(
        report
            .get("big_output_error")?
            .contains("No space left on device"),
        "{}",
        report.text
    );
    ensure!(outcome.output_limit_reached, "{outcome:?}");
    let big_file_bytes = outcome
        .outputs
        .regular_file("big.bin")
        .ok_or_else(|| anyhow!("big.bin was not collected: {:?}", outcome.outputs))?
        .len() as u64;
    ensure!(
        big_file_bytes <= output_bytes && big_file_bytes + 8 * 1024 >= output_bytes,
        "big.bin holds {big_file_bytes} bytes for a cap of {output_bytes}"
    );
    ensure!(
        outcome.outputs.total_bytes <= output_bytes,
        "{:?}",
        outcome.outputs
    );
    Ok(())
}

pub(crate) async fn symlink_to_etc_passwd_is_recorded_not_followed(
    suite: Arc<Suite>,
) -> anyhow::Result<()> {
    let (outcome, report) = suite
        .run_hostile(
            "linkpasswd",
            small_limits(),
            &[("mode", "symlink-passwd".into())],
        )
        .await?;
    ensure_contained(&outcome)?;
    ensure!(report.get("symlink_passwd")? == "ok", "{}", report.text);
    ensure!(
        symlink_target(&outcome, "leak") == Some("/etc/passwd"),
        "{:?}",
        outcome.outputs
    );
    ensure!(
        symlink_target(&outcome, "leak-relative") == Some("../../../../etc/passwd"),
        "{:?}",
        outcome.outputs
    );
    ensure!(
        symlink_target(&outcome, "etc") == Some("/etc"),
        "{:?}",
        outcome.outputs
    );
    let host_passwd = std::fs::read_to_string("/etc/passwd")?;
    let collected = all_collected_bytes(&outcome);
    for line in host_passwd.lines().filter(|line| !line.is_empty()) {
        ensure!(
            !contains(&collected, line.as_bytes()),
            "a line of the host's /etc/passwd was collected: {line}"
        );
    }
    Ok(())
}

pub(crate) async fn symlink_to_a_dataset_file_is_recorded_not_followed(
    suite: Arc<Suite>,
) -> anyhow::Result<()> {
    let (outcome, report) = suite
        .run_hostile(
            "linkdata",
            small_limits(),
            &with_mode("symlink-data", dataset_params()),
        )
        .await?;
    ensure_contained(&outcome)?;
    ensure!(report.get("symlink_data")? == "ok", "{}", report.text);
    report.expect_failed("hardlink_data", "cross-device")?;
    ensure!(
        symlink_target(&outcome, "leak") == Some("/data/cohort/rows.csv"),
        "{:?}",
        outcome.outputs
    );
    ensure!(
        symlink_target(&outcome, "dataset") == Some("/data/cohort"),
        "{:?}",
        outcome.outputs
    );
    ensure!(
        !contains(&all_collected_bytes(&outcome), DATASET_SECRET.as_bytes()),
        "the dataset's content was collected through a link"
    );
    Ok(())
}

pub(crate) async fn log_flood_is_capped_and_marked_truncated(
    suite: Arc<Suite>,
) -> anyhow::Result<()> {
    let limits = small_limits();
    let log_bytes = limits.log_bytes;
    let (outcome, _report) = suite
        .run_hostile(
            "logflood",
            limits,
            &[
                ("mode", "log-flood".into()),
                ("bytes", (16 * log_bytes).into()),
            ],
        )
        .await?;
    ensure_contained(&outcome)?;
    // The train was not blocked by its unread output: it finished.
    ensure!(outcome.exit_code == Some(0), "{outcome:?}");
    ensure!(outcome.logs_truncated, "{outcome:?}");
    ensure!(
        outcome.logs.len() as u64 == log_bytes,
        "kept {} bytes of logs for a cap of {log_bytes}",
        outcome.logs.len()
    );
    ensure!(
        outcome
            .logs
            .starts_with(b"mode=log-flood\nflood line 00000000"),
        "the beginning of the logs is kept: {outcome:?}"
    );
    Ok(())
}

pub(crate) async fn volumes_declared_by_the_image_get_a_capped_tmpfs(
    suite: Arc<Suite>,
) -> anyhow::Result<()> {
    let run_id = suite.run_id("imgvol");
    let limits = small_limits();
    let tmp_bytes = limits.tmp_bytes;
    let params_file = suite.write_params(
        &run_id,
        &[
            ("mode", "big-output".into()),
            ("path", "/scratch/big.bin".into()),
            ("bytes", (8 * tmp_bytes).into()),
        ],
    )?;
    let spec = RunSpec::new(&run_id, &suite.hostile_with_volume_image_id, limits)?
        .with_params_file(params_file)?;
    let outcome = suite.sandbox().run(&spec).await?;
    suite.assert_nothing_left(&run_id).await?;
    ensure_contained(&outcome)?;
    let report = Report::parse(&outcome.logs);
    ensure!(
        report
            .get("big_output_error")?
            .contains("No space left on device"),
        "the declared volume should be a capped tmpfs: {}",
        report.text
    );
    let written: u64 = report.get("big_output_written")?.parse()?;
    ensure!(
        written <= tmp_bytes,
        "{written} bytes written for a cap of {tmp_bytes}"
    );
    Ok(())
}

/// The volume fallback, used by stations that cannot mount (in a container, or without root):
/// the train's outputs are collected through the archive API, the cap holds, links are recorded.
pub(crate) async fn in_a_volume_outputs_are_collected_capped_and_links_not_followed(
    suite: Arc<Suite>,
) -> anyhow::Result<()> {
    let sandbox = suite.volume_sandbox();
    check_big_output_is_cut(&suite, &sandbox, "volbigout").await?;

    let (outcome, _) = suite
        .run_hostile_in(
            &sandbox,
            "vollink",
            small_limits(),
            &[("mode", "symlink-passwd".into())],
        )
        .await?;
    ensure_contained(&outcome)?;
    ensure!(
        symlink_target(&outcome, "leak") == Some("/etc/passwd"),
        "{:?}",
        outcome.outputs
    );
    Ok(())
}

/// Spare output slots: a second run claims the spare the first one prepared, finds it empty
/// (nothing of the first run's outputs), and `remove_spares` leaves nothing behind.
pub(crate) async fn warm_spare_slots_are_claimed_empty_and_removed(
    suite: Arc<Suite>,
) -> anyhow::Result<()> {
    // A station of its own, so no other scenario's runs touch its spares.
    let station = format!("{}-warm", suite.session_id);
    let sandbox =
        DockerSandbox::for_station(suite.docker.clone(), &station).with_warm_output_slots(1);
    let spares = || async {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("org.pht.station={station}")],
        )]);
        let listed = suite
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await?;
        anyhow::Ok(
            listed
                .into_iter()
                .flat_map(|container| container.names.unwrap_or_default())
                .filter(|name| name.trim_start_matches('/').starts_with("pht-spare-"))
                .collect::<Vec<_>>(),
        )
    };
    let result = async {
        let (first, _) = suite
            .run_hostile_in(
                &sandbox,
                "warm1",
                small_limits(),
                &[("mode", "big-output".into()), ("bytes", 1000u64.into())],
            )
            .await?;
        ensure!(
            first.outputs.regular_file("big.bin").is_some(),
            "the first run wrote big.bin: {first:?}"
        );
        sandbox.settle().await;
        let ready = spares().await?;
        ensure!(
            ready.len() == 1,
            "one spare is ready after the first run: {ready:?}"
        );

        let (second, _) = suite
            .run_hostile_in(
                &sandbox,
                "warm2",
                small_limits(),
                &[("mode", "exit".into()), ("code", 0u64.into())],
            )
            .await?;
        ensure!(second.exit_code == Some(0), "{second:?}");
        ensure!(
            second.outputs.regular_file("big.bin").is_none() && second.outputs.files.len() == 1,
            "the claimed spare held someone else's outputs: {:?}",
            second.outputs
        );
        sandbox.settle().await;
        let replaced = spares().await?;
        ensure!(
            replaced.len() == 1 && replaced != ready,
            "the claimed spare was replaced by a new one: before {ready:?}, after {replaced:?}"
        );
        Ok(())
    }
    .await;
    let removed = sandbox.remove_spares().await;
    let (containers, volumes) = suite
        .leftovers(&format!("org.pht.station={station}"))
        .await?;
    result?;
    removed?;
    ensure!(
        containers.is_empty() && volumes.is_empty(),
        "remove_spares left containers {containers:?} and volumes {volumes:?}"
    );
    Ok(())
}
