//! Scenarios about what a run leaves behind when it goes wrong: a missing image, entrypoint,
//! runtime or dataset directory, a run dropped half way, and the start-up cleanup of a crashed
//! station, which must remove only its own station's resources.
//!
//! Does not look at outputs (`outputs.rs` does).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure};
use bollard::models::{ContainerCreateBody, HostConfig, VolumeCreateRequest};
use bollard::query_parameters::{CreateContainerOptionsBuilder, ListContainersOptionsBuilder};
use pht_docker::sandbox::StaleCleanup;
use pht_docker::{DockerSandbox, RunSpec};

use crate::support::*;

pub(crate) async fn a_missing_image_fails_and_leaves_nothing(
    suite: Arc<Suite>,
) -> anyhow::Result<()> {
    let run_id = suite.run_id("noimage");
    let missing_image = format!("sha256:{}", "0".repeat(64));
    let spec = RunSpec::new(&run_id, &missing_image, small_limits())?;
    let error = match suite.sandbox().run(&spec).await {
        Ok(outcome) => bail!("a missing image ran: {outcome:?}"),
        Err(error) => error.to_string(),
    };
    ensure!(
        error.contains("inspect the train image") && error.contains(&run_id),
        "{error}"
    );
    suite.assert_nothing_left(&run_id).await
}

pub(crate) async fn a_missing_entrypoint_exits_127_and_leaves_nothing(
    suite: Arc<Suite>,
) -> anyhow::Result<()> {
    // With `init: true` the container starts (the init process exists) and the init reports
    // that it cannot run the entrypoint: an outcome, not a sandbox error.
    let run_id = suite.run_id("noentry");
    let spec = suite
        .spec(&run_id, small_limits(), &[("mode", "ok".into())])?
        .with_entrypoint(vec!["/does-not-exist".to_string()]);
    let outcome = suite.sandbox().run(&spec).await?;
    suite.assert_nothing_left(&run_id).await?;
    ensure!(outcome.exit_code == Some(127), "{outcome:?}");
    ensure!(
        contains(&outcome.logs, b"/does-not-exist"),
        "the logs say what could not run: {outcome:?}"
    );
    Ok(())
}

pub(crate) async fn an_unknown_runtime_fails_and_leaves_nothing(
    suite: Arc<Suite>,
) -> anyhow::Result<()> {
    // Fails when the train container is created, after the volume and the holder exist.
    let run_id = suite.run_id("noruntime");
    let spec = suite
        .spec(&run_id, small_limits(), &[("mode", "ok".into())])?
        .with_runtime("pht-no-such-runtime")?;
    let error = match suite.sandbox().run(&spec).await {
        Ok(outcome) => bail!("a run with an unknown runtime ran: {outcome:?}"),
        Err(error) => error.to_string(),
    };
    ensure!(error.contains("create the train container"), "{error}");
    suite.assert_nothing_left(&run_id).await
}

pub(crate) async fn a_missing_dataset_directory_fails_and_leaves_nothing(
    suite: Arc<Suite>,
) -> anyhow::Result<()> {
    let run_id = suite.run_id("nodata");
    let missing_directory = suite.scratch_directory.path().join("no-such-dataset");
    let spec = suite
        .spec(&run_id, small_limits(), &[("mode", "ok".into())])?
        .with_dataset("missing", &missing_directory)?;
    let error = match suite.sandbox().run(&spec).await {
        Ok(outcome) => bail!("a run with a missing dataset ran: {outcome:?}"),
        Err(error) => error.to_string(),
    };
    ensure!(error.contains("create the train container"), "{error}");
    suite.assert_nothing_left(&run_id).await
}

pub(crate) async fn a_dropped_run_is_cleaned_up_in_the_background(
    suite: Arc<Suite>,
) -> anyhow::Result<()> {
    let run_id = suite.run_id("dropped");
    let mut limits = small_limits();
    limits.wall_clock = Duration::from_secs(600);
    let spec = suite.spec(&run_id, limits, &[("mode", "spin".into())])?;
    let sandbox = suite.sandbox();
    let run_task = tokio::spawn(async move { sandbox.run(&spec).await });

    let train_filter = format!("org.pht.run-id={run_id}");
    let waited = wait_for(
        Duration::from_secs(60),
        "the train to be running",
        || async {
            let filters = HashMap::from([
                ("label".to_string(), vec![train_filter.clone()]),
                ("status".to_string(), vec!["running".to_string()]),
            ]);
            let running = suite
                .docker
                .list_containers(Some(
                    ListContainersOptionsBuilder::new()
                        .filters(&filters)
                        .build(),
                ))
                .await?;
            ensure!(
                !run_task.is_finished(),
                "the run ended before it could be dropped"
            );
            // The train, and the holder when /output is a volume.
            let expected = if suite.host_outputs.is_some() { 1 } else { 2 };
            Ok(running.len() == expected)
        },
    )
    .await;
    if let Err(error) = waited {
        if run_task.is_finished() {
            let run_result = run_task.await;
            bail!("{error:#}; the run ended on its own: {run_result:?}");
        }
        run_task.abort();
        return Err(error);
    }

    run_task.abort();
    ensure!(
        run_task.await.is_err_and(|error| error.is_cancelled()),
        "the run was cancelled"
    );
    wait_for(
        Duration::from_secs(60),
        "the dropped run's cleanup",
        || async {
            let (containers, volumes) = suite.leftovers(&train_filter).await?;
            Ok(containers.is_empty()
                && volumes.is_empty()
                && suite.assert_nothing_left(&run_id).await.is_ok())
        },
    )
    .await
}

pub(crate) async fn cleanup_stale_removes_only_this_stations_leftovers(
    suite: Arc<Suite>,
) -> anyhow::Result<()> {
    let crashed_station = format!("{}-crashed", suite.session_id);
    let other_station = format!("{}-other", suite.session_id);
    let leftover_labels = |station: &str, name: &str| {
        HashMap::from([
            ("org.pht.managed".to_string(), "true".to_string()),
            ("org.pht.station".to_string(), station.to_string()),
            ("org.pht.run-id".to_string(), name.to_string()),
            (LABEL_TEST_SESSION.to_string(), suite.session_id.clone()),
        ])
    };
    let crashed_container = format!("{crashed_station}-run");
    let other_container = format!("{other_station}-run");
    for (station, name) in [
        (&crashed_station, &crashed_container),
        (&other_station, &other_container),
    ] {
        let body = ContainerCreateBody {
            image: Some(suite.hostile_image_id.clone()),
            labels: Some(leftover_labels(station, name)),
            host_config: Some(HostConfig {
                network_mode: Some("none".to_string()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::new().name(name).build();
        suite.docker.create_container(Some(options), body).await?;
    }
    let crashed_volume = format!("{crashed_station}-output");
    suite
        .docker
        .create_volume(VolumeCreateRequest {
            name: Some(crashed_volume.clone()),
            labels: Some(leftover_labels(&crashed_station, &crashed_volume)),
            ..Default::default()
        })
        .await?;

    let crashed_sandbox = DockerSandbox::for_station(suite.docker.clone(), &crashed_station);
    let cleanup = crashed_sandbox.cleanup_stale().await;
    let other_left = suite
        .leftovers(&format!("org.pht.run-id={other_container}"))
        .await?;
    suite.force_remove_container(&other_container).await?;

    ensure!(
        cleanup?
            == StaleCleanup {
                removed_containers: vec![crashed_container.clone()],
                removed_volumes: vec![crashed_volume.clone()],
                ..Default::default()
            },
        "cleanup_stale removed something else"
    );
    suite.assert_nothing_left(&crashed_container).await?;
    suite.assert_nothing_left(&crashed_volume).await?;
    ensure!(
        other_left.0.len() == 1,
        "another station's container must survive: {other_left:?}"
    );
    Ok(())
}
