//! The unit tests of the sandbox, against [`FakeEngine`]: the order of the Docker calls of a
//! run, that every failing step still removes every resource, spare slots, stale cleanup, and
//! how a full `/output` is recognised.
//!
//! Does not talk to Docker: `tests/sandbox/` runs the same sandbox against the real engine.

use std::sync::Mutex;
use std::time::Duration;

use expect_test::{expect, Expect};

use super::cleanup::{cleanup_stale_resources, remove_spare_slots};
use super::engine::ListedContainer;
use super::fake_engine::{listed, FakeEngine};
use super::output_slot::HOLDER_START_ATTEMPTS;
use super::run::{self, output_limit_reached};
use super::spares::{replenish_spares, SpareTemplate, WarmSlots};
use super::{RunOutcome, SandboxError, LABEL_STATION};
use crate::collect::{CollectedFile, CollectedKind, CollectedOutputs};
use crate::spec::{
    self, RunLimits, RunSpec, LABEL_MANAGED, LABEL_OUTPUT_SLOT, LABEL_OUTPUT_VOLUME,
    OUTPUT_MOUNT_PATH,
};

const IMAGE_ID: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn limits() -> RunLimits {
    RunLimits {
        nano_cpus: 1_000_000_000,
        memory_bytes: 64 * 1024 * 1024,
        pids: 64,
        wall_clock: Duration::from_secs(30),
        tmp_bytes: 1024 * 1024,
        output_bytes: 64 * 1024,
        output_files: 100,
        log_bytes: 16,
    }
}

fn spec_with(limits: RunLimits) -> RunSpec {
    RunSpec::new("r1", IMAGE_ID, limits).expect("valid spec")
}

/// A spare slot of the same make as `spec_with(limits())`'s, holding `volume`.
fn spare(name: &str, running: bool, volume: &str) -> ListedContainer {
    let key = spec_with(limits()).output_slot().key("sha256:holder");
    listed(
        name,
        running,
        &[(LABEL_OUTPUT_SLOT, &key), (LABEL_OUTPUT_VOLUME, volume)],
    )
}

/// What the first container created (the train, when no holder was made) mounts at
/// `/output`.
fn train_output_source(engine: &FakeEngine) -> Option<String> {
    let bodies = engine.created_bodies.lock().expect("not poisoned");
    bodies[0]
        .host_config
        .as_ref()?
        .mounts
        .as_ref()?
        .iter()
        .find(|mount| mount.target.as_deref() == Some(OUTPUT_MOUNT_PATH))?
        .source
        .clone()
}

async fn run_in_sandbox(engine: &FakeEngine, spec: &RunSpec) -> Result<RunOutcome, SandboxError> {
    run::run_in_sandbox(engine, spec, &WarmSlots::NONE).await
}

/// Runs with one warm slot; returns the outcome and the spare templates the run asked for.
async fn run_warm(engine: &FakeEngine) -> (Result<RunOutcome, SandboxError>, Vec<SpareTemplate>) {
    let requested = Mutex::new(Vec::new());
    let on_claimed = |template| requested.lock().expect("not poisoned").push(template);
    let slots = WarmSlots {
        target: 1,
        on_claimed: &on_claimed,
    };
    let outcome = run::run_in_sandbox(engine, &spec_with(limits()), &slots).await;
    (outcome, requested.into_inner().expect("not poisoned"))
}

const REMOVALS: [&str; 3] = [
    "remove_container pht-run-r1",
    "remove_container pht-run-r1-output",
    "remove_volume pht-run-r1-output",
];

#[tokio::test]
async fn a_successful_run_goes_through_every_step_then_removes_everything() {
    let engine = FakeEngine::default();
    let outcome = run_in_sandbox(&engine, &spec_with(limits()))
        .await
        .expect("the fake engine does not fail");
    expect![[r#"
        image_volume_paths sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
        output_holder_image
        create_volume pht-run-r1-output
        create_container pht-run-r1-output
        start_container pht-run-r1-output
        create_container pht-run-r1
        attach_output pht-run-r1
        oom_events pht-run-r1
        start_container pht-run-r1
        wait_container pht-run-r1
        inspect_exit pht-run-r1
        is_running pht-run-r1-output
        download_archive pht-run-r1-output /output
        remove_container pht-run-r1
        remove_container pht-run-r1-output
        remove_volume pht-run-r1-output"#]]
    .assert_eq(&engine.calls().join("\n"));
    assert_eq!(outcome.exit_code, Some(0));
    assert!(!outcome.timed_out);
    assert_eq!(
        outcome.outputs.regular_file("result.txt"),
        Some(&b"rows=3\n"[..])
    );
    assert!(!outcome.output_limit_reached, "{outcome:?}");
}

#[tokio::test]
async fn every_failing_step_still_removes_every_resource() {
    let successful_engine = FakeEngine::default();
    run_in_sandbox(&successful_engine, &spec_with(limits()))
        .await
        .expect("the fake engine does not fail");
    let steps: Vec<String> = successful_engine
        .calls()
        .into_iter()
        // Following the oom events is best effort: its failure is an outcome without the
        // late event (tested below), not a failed run.
        .filter(|call| !call.starts_with("remove_") && !call.starts_with("oom_events"))
        .collect();
    assert!(steps.len() >= 10, "{steps:?}");
    for failing_step in steps {
        let engine = FakeEngine::failing_at(&failing_step);
        let error = run_in_sandbox(&engine, &spec_with(limits()))
            .await
            .expect_err("an injected failure fails the run");
        assert!(
            error.to_string().contains("injected failure"),
            "the error of {failing_step:?} carries the cause: {error}"
        );
        let calls = engine.calls();
        // Starting the output holder is retried; the last failed attempt counts.
        let failure_idx = calls
            .iter()
            .rposition(|call| *call == failing_step)
            .expect("the failing call was made");
        let n_attempts = calls.iter().filter(|call| **call == failing_step).count();
        let expected_attempts =
            if failing_step.ends_with("-output") && failing_step.starts_with("start_container") {
                HOLDER_START_ATTEMPTS as usize
            } else {
                1
            };
        assert_eq!(
            n_attempts, expected_attempts,
            "{failing_step:?} was tried {n_attempts} times"
        );
        let calls_after_failure = &calls[failure_idx + 1..];
        assert_eq!(
            calls_after_failure, REMOVALS,
            "after {failing_step:?} fails, only the removals follow"
        );
    }
}

#[tokio::test]
async fn a_failing_removal_after_a_successful_run_is_an_error_and_the_others_still_happen() {
    let engine = FakeEngine::failing_at("remove_container pht-run-r1");
    let error = run_in_sandbox(&engine, &spec_with(limits()))
        .await
        .expect_err("a leftover container is an error");
    expect!["could not remove the sandbox of run r1 (container pht-run-r1: Docker responded with status code 500: injected failure); remove the leftovers with `docker rm -f` and `docker volume rm`, or call cleanup_stale"].assert_eq(&error.to_string());
    let calls = engine.calls();
    assert!(calls.ends_with(&REMOVALS.map(str::to_string)), "{calls:?}");
}

#[tokio::test]
async fn an_oom_kill_that_docker_state_missed_is_found_by_its_event() {
    let engine = FakeEngine {
        oom_event: true,
        ..Default::default()
    };
    let outcome = run_in_sandbox(&engine, &spec_with(limits()))
        .await
        .expect("an OOM kill is an outcome, not an error");
    assert_eq!(outcome.exit_code, Some(137));
    assert!(outcome.oom_killed, "{outcome:?}");
    assert!(!outcome.timed_out);
}

#[tokio::test]
async fn a_failing_oom_watch_leaves_the_run_to_what_docker_state_says() {
    let engine = FakeEngine::failing_at("oom_events pht-run-r1");
    let outcome = run_in_sandbox(&engine, &spec_with(limits()))
        .await
        .expect("the watch is best effort");
    assert_eq!(outcome.exit_code, Some(0));
    assert!(!outcome.oom_killed);
    assert!(engine.calls().ends_with(&REMOVALS.map(str::to_string)));
}

#[tokio::test]
async fn a_train_past_its_wall_clock_is_killed_and_removed() {
    let engine = FakeEngine {
        train_hangs: true,
        ..Default::default()
    };
    let mut run_limits = limits();
    run_limits.wall_clock = Duration::from_millis(50);
    let outcome = run_in_sandbox(&engine, &spec_with(run_limits))
        .await
        .expect("a timeout is an outcome, not an error");
    assert!(outcome.timed_out);
    assert_eq!(outcome.exit_code, Some(137));
    let calls = engine.calls();
    assert!(
        calls.contains(&"kill_container pht-run-r1".to_string()),
        "{calls:?}"
    );
    assert!(calls.ends_with(&REMOVALS.map(str::to_string)), "{calls:?}");
}

#[tokio::test]
async fn a_dropped_run_spawns_its_cleanup() {
    let engine = FakeEngine {
        train_hangs: true,
        ..Default::default()
    };
    let mut run_limits = limits();
    run_limits.wall_clock = Duration::from_secs(3600);
    let spec = spec_with(run_limits);
    let dropped =
        tokio::time::timeout(Duration::from_millis(50), run_in_sandbox(&engine, &spec)).await;
    assert!(dropped.is_err(), "the run was still waiting");
    let calls = engine.calls();
    assert_eq!(
        calls.last().map(String::as_str),
        Some("spawn_cleanup pht-run-r1"),
        "{calls:?}"
    );
}

#[tokio::test]
async fn logs_are_capped_and_marked_truncated() {
    let engine = FakeEngine::default();
    let outcome = run_in_sandbox(&engine, &spec_with(limits()))
        .await
        .expect("the fake engine does not fail");
    assert_eq!(outcome.logs, b"0123456789abcdef");
    assert!(outcome.logs_truncated);

    let mut generous_limits = limits();
    generous_limits.log_bytes = 1024;
    let outcome = run_in_sandbox(&FakeEngine::default(), &spec_with(generous_limits))
        .await
        .expect("the fake engine does not fail");
    assert_eq!(outcome.logs, b"0123456789abcdefghij");
    assert!(!outcome.logs_truncated, "{outcome:?}");
}

#[tokio::test]
async fn every_resource_carries_the_station_label() {
    let engine = FakeEngine::default();
    run_in_sandbox(&engine, &spec_with(limits()))
        .await
        .expect("the fake engine does not fail");
    let bodies = engine.created_bodies.lock().expect("not poisoned");
    assert_eq!(bodies.len(), 2);
    for body in bodies.iter() {
        let labels = body.labels.as_ref().expect("labels are always set");
        assert_eq!(labels[LABEL_STATION], "test-station");
        assert_eq!(labels[LABEL_MANAGED], "true");
    }
}

#[tokio::test]
async fn image_volumes_are_covered_by_a_capped_tmpfs() {
    let engine = FakeEngine {
        image_volume_paths: vec![
            "/scratch".to_string(),
            "/output".to_string(),
            "/tmp/".to_string(),
        ],
        ..Default::default()
    };
    run_in_sandbox(&engine, &spec_with(limits()))
        .await
        .expect("the fake engine does not fail");
    let bodies = engine.created_bodies.lock().expect("not poisoned");
    let train_body = bodies.last().expect("the train was created last");
    let tmpfs = train_body
        .host_config
        .as_ref()
        .and_then(|host_config| host_config.tmpfs.as_ref())
        .expect("tmpfs is always set");
    let mut tmpfs: Vec<_> = tmpfs.iter().collect();
    tmpfs.sort();
    expect![[r#"
        [
            (
                "/scratch",
                "size=1048576,mode=1777,noexec,nosuid,nodev",
            ),
            (
                "/tmp",
                "size=1048576,mode=1777,noexec,nosuid,nodev",
            ),
        ]"#]]
    .assert_eq(&format!("{tmpfs:#?}"));
}

#[tokio::test]
async fn cleanup_stale_removes_this_stations_leftovers() {
    let engine = FakeEngine::default();
    let cleanup = cleanup_stale_resources(&engine, &|_| true)
        .await
        .expect("the fake engine does not fail");
    expect![[r#"
        list_containers org.pht.managed=true,org.pht.station=test-station
        remove_container pht-run-old
        remove_container pht-run-old-output
        list_volumes org.pht.managed=true,org.pht.station=test-station
        remove_volume pht-run-old-output
        release_all_host_outputs"#]]
    .assert_eq(&engine.calls().join("\n"));
    assert_eq!(cleanup.removed_containers.len(), 2);
    assert_eq!(cleanup.removed_volumes.len(), 1);
}

#[tokio::test]
async fn a_daemon_removes_at_start_only_the_runs_its_records_say_are_dead() {
    // `pht-run-old` is live (a concurrent `exec`) or another station's: it stays.
    let engine = FakeEngine::default();
    let cleanup = cleanup_stale_resources(&engine, &|run_id| run_id != "old")
        .await
        .expect("the fake engine does not fail");
    expect![[r#"
        list_containers org.pht.managed=true,org.pht.station=test-station
        list_volumes org.pht.managed=true,org.pht.station=test-station
        release_all_host_outputs"#]]
    .assert_eq(&engine.calls().join("\n"));
    assert!(cleanup.removed_containers.is_empty() && cleanup.removed_volumes.is_empty());
}

#[tokio::test]
async fn with_host_outputs_a_run_mounts_binds_reads_and_releases_a_host_tmpfs() {
    let engine = FakeEngine {
        host_outputs: true,
        ..Default::default()
    };
    let outcome = run_in_sandbox(&engine, &spec_with(limits()))
        .await
        .expect("the fake engine does not fail");
    expect![[r#"
        image_volume_paths sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
        mount_host_output /outputs/r1
        create_container pht-run-r1
        attach_output pht-run-r1
        oom_events pht-run-r1
        start_container pht-run-r1
        wait_container pht-run-r1
        inspect_exit pht-run-r1
        collect_host_output /outputs/r1
        remove_container pht-run-r1
        release_host_output /outputs/r1"#]]
    .assert_eq(&engine.calls().join("\n"));
    assert_eq!(
        outcome.outputs.regular_file("result.txt"),
        Some(&b"rows=3\n"[..])
    );
    assert_eq!(train_output_source(&engine).as_deref(), Some("/outputs/r1"));
}

#[tokio::test]
async fn with_host_outputs_every_failing_step_still_removes_the_train_and_the_mount() {
    let successful_engine = FakeEngine {
        host_outputs: true,
        ..Default::default()
    };
    run_in_sandbox(&successful_engine, &spec_with(limits()))
        .await
        .expect("the fake engine does not fail");
    let steps: Vec<String> = successful_engine
        .calls()
        .into_iter()
        .filter(|call| {
            !call.starts_with("remove_")
                && !call.starts_with("release_")
                && !call.starts_with("oom_events")
        })
        .collect();
    for failing_step in steps {
        let engine = FakeEngine {
            host_outputs: true,
            fail_call: Some(failing_step.clone()),
            ..Default::default()
        };
        let error = run_in_sandbox(&engine, &spec_with(limits()))
            .await
            .expect_err("an injected failure fails the run");
        assert!(
            error.to_string().contains("injected failure"),
            "the error of {failing_step:?} carries the cause: {error}"
        );
        let calls = engine.calls();
        let expected_tail = [
            "remove_container pht-run-r1",
            "release_host_output /outputs/r1",
        ];
        assert!(
            calls.ends_with(
                &expected_tail
                    .iter()
                    .map(|call| call.to_string())
                    .collect::<Vec<_>>()
            ),
            "after {failing_step:?}: {calls:?}"
        );
    }
}

#[tokio::test]
async fn a_holder_that_stopped_during_the_run_fails_it_instead_of_reporting_no_outputs() {
    let engine = FakeEngine {
        holder_stopped: true,
        ..Default::default()
    };
    let error = run_in_sandbox(&engine, &spec_with(limits()))
        .await
        .expect_err("outputs lost with the holder");
    assert!(
        matches!(error, SandboxError::OutputHolderStopped { .. }),
        "{error}"
    );
    let calls = engine.calls();
    assert!(
        !calls
            .iter()
            .any(|call| call.starts_with("download_archive")),
        "{calls:?}"
    );
    assert!(calls.ends_with(&REMOVALS.map(str::to_string)), "{calls:?}");
}

#[tokio::test]
async fn a_run_claims_a_ready_spare_by_renaming_it_and_asks_for_the_next() {
    let engine = FakeEngine {
        listed: Some(vec![
            // Stopped: its tmpfs is gone; never claimed.
            spare("pht-spare-stopped", false, "pht-spare-stopped"),
            // Renamed to a run: claimed before, may hold that run's outputs; never claimed.
            spare("pht-run-other-output", true, "pht-spare-used"),
            // Another process renames it first.
            spare("pht-spare-raced", true, "pht-spare-raced"),
            spare("pht-spare-ready", true, "pht-spare-ready"),
        ]),
        claimed_elsewhere: vec!["pht-spare-raced".to_string()],
        ..Default::default()
    };
    let (outcome, requested) = run_warm(&engine).await;
    outcome.expect("the fake engine does not fail");
    let key = spec_with(limits()).output_slot().key("sha256:holder");
    let calls = engine.calls().join("\n").replace(&key, "KEY");
    expect![[r#"
        image_volume_paths sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
        output_holder_image
        list_containers org.pht.managed=true,org.pht.station=test-station,org.pht.output-slot=KEY
        rename_container pht-spare-raced pht-run-r1-output
        rename_container pht-spare-ready pht-run-r1-output
        create_container pht-run-r1
        attach_output pht-run-r1
        oom_events pht-run-r1
        start_container pht-run-r1
        wait_container pht-run-r1
        inspect_exit pht-run-r1
        is_running pht-run-r1-output
        download_archive pht-run-r1-output /output
        remove_container pht-run-r1
        remove_container pht-run-r1-output
        remove_volume pht-spare-ready"#]]
    .assert_eq(&calls);
    assert_eq!(
        train_output_source(&engine).as_deref(),
        Some("pht-spare-ready")
    );
    assert_eq!(
        requested,
        vec![SpareTemplate {
            slot: spec_with(limits()).output_slot(),
            holder_image_id: "sha256:holder".to_string()
        }]
    );
}

#[tokio::test]
async fn a_run_without_a_ready_spare_creates_its_own_slot_and_asks_for_the_next() {
    let engine = FakeEngine {
        listed: Some(vec![spare("pht-spare-stopped", false, "pht-spare-stopped")]),
        ..Default::default()
    };
    let (outcome, requested) = run_warm(&engine).await;
    outcome.expect("the fake engine does not fail");
    let calls = engine.calls();
    for call in [
        "create_volume pht-run-r1-output",
        "create_container pht-run-r1-output",
        "start_container pht-run-r1-output",
    ] {
        assert!(calls.contains(&call.to_string()), "{call}: {calls:?}");
    }
    assert!(
        !calls
            .iter()
            .any(|call| call.starts_with("rename_container")),
        "{calls:?}"
    );
    assert!(calls.ends_with(&REMOVALS.map(str::to_string)), "{calls:?}");
    assert_eq!(requested.len(), 1);
}

#[tokio::test]
async fn a_failing_spare_listing_does_not_fail_the_run() {
    let key = spec_with(limits()).output_slot().key("sha256:holder");
    let engine = FakeEngine::failing_at(&format!(
        "list_containers org.pht.managed=true,org.pht.station=test-station,org.pht.output-slot={key}"
    ));
    let (outcome, _) = run_warm(&engine).await;
    outcome.expect("a run creates its own slot when spares cannot be listed");
    assert!(engine
        .calls()
        .contains(&"start_container pht-run-r1-output".to_string()));
}

#[tokio::test]
async fn replenishing_makes_spares_up_to_the_target_labelled_with_their_slot() {
    let engine = FakeEngine {
        listed: Some(vec![
            spare("pht-spare-ready", true, "pht-spare-ready"),
            spare("pht-spare-stopped", false, "pht-spare-stopped"),
        ]),
        ..Default::default()
    };
    let template = SpareTemplate {
        slot: spec_with(limits()).output_slot(),
        holder_image_id: "sha256:holder".to_string(),
    };
    replenish_spares(&engine, &template, 2)
        .await
        .expect("the fake engine does not fail");
    let calls = engine.calls();
    let created: Vec<&String> = calls
        .iter()
        .filter(|call| call.starts_with("create_") || call.starts_with("start_"))
        .collect();
    assert_eq!(
        created.len(),
        3,
        "one volume, one holder, one start: {calls:?}"
    );
    let name = created[0]
        .strip_prefix("create_volume ")
        .expect("the volume first");
    assert!(name.starts_with("pht-spare-test-station-"), "{name}");
    assert_eq!(*created[1], format!("create_container {name}"));
    assert_eq!(*created[2], format!("start_container {name}"));
    let labels = engine.created_bodies.lock().expect("not poisoned")[0]
        .labels
        .clone()
        .expect("labelled");
    assert_eq!(labels[LABEL_OUTPUT_SLOT], template.key());
    assert_eq!(labels[LABEL_OUTPUT_VOLUME], name);
    assert_eq!(labels[LABEL_STATION], "test-station");
    assert!(!labels.contains_key(spec::LABEL_RUN_ID), "{labels:?}");

    // At the target already: nothing is made.
    let engine = FakeEngine {
        listed: Some(vec![spare("pht-spare-ready", true, "pht-spare-ready")]),
        ..Default::default()
    };
    replenish_spares(&engine, &template, 1)
        .await
        .expect("the fake engine does not fail");
    assert_eq!(engine.calls().len(), 1, "{:?}", engine.calls());
}

#[tokio::test]
async fn a_spare_that_cannot_be_started_is_removed_again() {
    let template = SpareTemplate {
        slot: spec_with(limits()).output_slot(),
        holder_image_id: "sha256:holder".to_string(),
    };
    // Fail the holder's creation, whatever its random name.
    let failing = FakeEngine {
        listed: Some(Vec::new()),
        fail_call: Some("create_container pht-spare-*".to_string()),
        ..Default::default()
    };
    let _ = replenish_spares(&failing, &template, 1).await;
    let calls = failing.calls();
    let name = calls
        .iter()
        .find_map(|call| call.strip_prefix("create_volume "))
        .expect("the volume was created")
        .to_string();
    assert!(
        calls.ends_with(&[
            format!("remove_container {name}"),
            format!("remove_volume {name}")
        ]),
        "{calls:?}"
    );
}

#[tokio::test]
async fn cleanup_stale_keeps_ready_spares_and_removes_claimed_and_stopped_ones() {
    let engine = FakeEngine {
        listed: Some(vec![
            listed("pht-run-old", false, &[]),
            spare("pht-run-old-output", true, "pht-spare-claimed"),
            spare("pht-spare-stopped", false, "pht-spare-stopped"),
            spare("pht-spare-ready", true, "pht-spare-ready"),
        ]),
        volumes: Some(vec![
            "pht-spare-claimed".to_string(),
            "pht-spare-stopped".to_string(),
            "pht-spare-ready".to_string(),
        ]),
        ..Default::default()
    };
    let cleanup = cleanup_stale_resources(&engine, &|_| true)
        .await
        .expect("the fake engine does not fail");
    assert_eq!(cleanup.kept_spares, ["pht-spare-ready"]);
    assert_eq!(
        cleanup.removed_containers,
        ["pht-run-old", "pht-run-old-output", "pht-spare-stopped"]
    );
    assert_eq!(
        cleanup.removed_volumes,
        ["pht-spare-claimed", "pht-spare-stopped"]
    );

    let removed = remove_spare_slots(&engine)
        .await
        .expect("the fake engine does not fail");
    assert_eq!(
        removed.removed_containers,
        ["pht-spare-stopped", "pht-spare-ready"]
    );
    assert_eq!(
        removed.removed_volumes,
        ["pht-spare-stopped", "pht-spare-ready"],
        "a claimed spare's volume belongs to its run"
    );
}

fn regular(path: &str, size: usize) -> CollectedFile {
    CollectedFile {
        path: path.to_string(),
        kind: CollectedKind::Regular {
            bytes: vec![b'x'; size],
        },
        size: size as u64,
        sha256: String::new(),
    }
}

fn check_limit(files: Vec<CollectedFile>, entries_seen: u64, expected: Expect) {
    let outputs = CollectedOutputs {
        total_bytes: files.iter().map(|file| file.size).sum(),
        files,
        entries_seen,
        ..Default::default()
    };
    // output_bytes = 64 KiB, output_files = 100
    expected.assert_eq(&output_limit_reached(&outputs, &limits()).to_string());
}

#[test]
fn output_limit_is_judged_by_the_pages_the_files_occupy() {
    check_limit(vec![regular("small", 10)], 1, expect!["false"]);
    check_limit(vec![regular("full", 64 * 1024)], 1, expect!["true"]);
    // 15 one-byte files occupy 15 pages: 60 KiB, within two pages of the cap.
    let many_small: Vec<_> = (0..15).map(|idx| regular(&idx.to_string(), 1)).collect();
    check_limit(many_small, 15, expect!["true"]);
    check_limit(vec![regular("half", 32 * 1024)], 1, expect!["false"]);
    check_limit(vec![regular("one", 1)], 100, expect!["true"]);
}
