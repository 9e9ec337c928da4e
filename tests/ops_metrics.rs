//! Operations, end to end: a real Prometheus scrapes a hub and a station while jobs run, and
//! PromQL over its HTTP API counts the jobs and runs; and with JSON logs on both daemons, a
//! train that prints a citizen service number (BSN) everywhere it can leaves it in no log
//! line of either.

use std::collections::BTreeMap;

use pht_core::job::RouteMode;
use pht_e2e::prometheus::{Prometheus, Target};
use pht_e2e::routes::HubWorld;
use pht_e2e::{free_port, hostile_train_dir, publish_train, workspace_root, Daemon, Hub};

fn cohort_stats(world: &HubWorld, tag: &str) -> String {
    let reference = format!("{}/trains/cohort-stats:{tag}", world.registry.address());
    let train = publish_train(
        &workspace_root().join("trains/cohort-stats"),
        &reference,
        &[],
    );
    world.alice.sign(&train);
    train
}

fn add_to_config(path: &std::path::Path, lines: &str) {
    let mut config = std::fs::read_to_string(path).unwrap();
    config.push_str(lines);
    std::fs::write(path, config).unwrap();
}

#[test]
fn prometheus_scrapes_a_hub_and_a_station_and_promql_counts_their_jobs_and_runs() {
    let world = HubWorld::with(
        "ops-prom",
        1,
        "automatic",
        "outputs:\n  release: automatic\n",
        false,
    );
    let metrics_port = free_port();
    add_to_config(
        &world.stations[0].config,
        &format!("metrics:\n  listen: 127.0.0.1:{metrics_port}\n"),
    );
    let train = cohort_stats(&world, "ops-prom");
    let prometheus = Prometheus::start(&[
        Target {
            job: "pht-hub".into(),
            address: world.hub.address().to_string(),
            labels: vec![],
        },
        Target {
            job: "pht-station".into(),
            address: format!("127.0.0.1:{metrics_port}"),
            labels: vec![("station".into(), world.ids[0].clone())],
        },
    ]);
    let daemons = world.daemons();
    let parameters = BTreeMap::from([("group_by".to_string(), serde_json::json!("sex"))]);
    for _ in 0..2 {
        let job_id = world.submit(RouteMode::Parallel, &train, parameters.clone());
        let status = world.wait_for_end(job_id, &daemons, std::time::Duration::from_secs(240));
        world.assert_completed(&status);
    }

    prometheus.wait_for_value(r#"up{job="pht-hub"}"#, 1.0);
    prometheus.wait_for_value(r#"up{job="pht-station"}"#, 1.0);
    // The hub: two jobs completed, two submissions and their stops' reports counted by route
    // template, never by job id.
    prometheus.wait_for_value(r#"pht_hub_jobs{state="completed"}"#, 2.0);
    prometheus.wait_for_value(r#"pht_hub_stops{state="done"}"#, 2.0);
    prometheus.wait_for_value(
        r#"sum(pht_hub_http_requests_total{route="/v1/jobs",method="POST"})"#,
        2.0,
    );
    let routes: Vec<String> = prometheus
        .query("pht_hub_http_requests_total")
        .iter()
        .map(|(labels, _)| labels["route"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        routes
            .iter()
            .any(|route| route == "/v1/jobs/{job_id}/stops/{station}/result"),
        "{routes:?}"
    );
    assert!(
        routes.iter().all(|route| !route.contains(&world.ids[0])),
        "a station id in a route label: {routes:?}"
    );
    prometheus.wait_for_value(r#"pht_hub_blob_bytes > bool 0"#, 1.0);
    // The station: two runs that succeeded, every step timed, checks counted by rule, the
    // hub reachable, the outbox empty and the audit log verified.
    prometheus.wait_for_value(
        r#"sum(pht_station_runs_total{station="ops-prom-station-a",outcome="succeeded"})"#,
        2.0,
    );
    prometheus.wait_for_value(
        r#"count(pht_station_step_duration_seconds_count{step=~"verify|pull|run|collect|check|seal|deliver"} >= 2)"#,
        7.0,
    );
    prometheus.wait_for_value(
        r#"count(pht_station_check_verdicts_total{verdict="pass"} > 0) > bool 0"#,
        1.0,
    );
    prometheus.wait_for_value("pht_station_hub_connected", 1.0);
    prometheus.wait_for_value("pht_station_outbox_items", 0.0);
    prometheus.wait_for_value("pht_station_audit_log_ok", 1.0);
    prometheus.wait_for_value(
        "time() - pht_station_last_poll_timestamp_seconds < bool 60",
        1.0,
    );
    prometheus.wait_for_value("pht_station_state_dir_free_bytes > bool 0", 1.0);
    // No alert of the example rules fires on a healthy hub and station.
    let firing = prometheus.query(r#"ALERTS{alertstate="firing"}"#);
    assert!(firing.is_empty(), "alerts firing: {firing:?}");
    drop(daemons);
}

/// A valid BSN (it passes the eleven-test) that appears nowhere in the fixtures.
const BSN: &str = "111222333";

#[test]
fn a_bsn_a_train_prints_everywhere_appears_in_no_daemon_log_line() {
    let hub = Hub::start_with_args("", &["--log-format", "json"]);
    let hub_url = hub.url.clone();
    let world = HubWorld::with_hub(
        "ops-bsn",
        1,
        "automatic",
        "outputs:\n  release: automatic\n",
        false,
        hub,
        hub_url,
    );
    let scratch = tempfile::tempdir().unwrap();
    let reference = format!("{}/trains/hostile:ops-bsn", world.registry.address());
    let hostile = publish_train(
        &hostile_train_dir(scratch.path()),
        &reference,
        &["--no-compile"],
    );
    world.alice.sign(&hostile);
    let daemon = Daemon::start_with(&world.stations[0].config, &["--log-format", "json"]);
    let daemons = vec![daemon];
    // Once exiting 0 with the BSN in its report (which the checks stop), once failing with it
    // on stdout and stderr (which the run record keeps the end of).
    for code in [0, 1] {
        let parameters = BTreeMap::from([
            ("mode".to_string(), serde_json::json!("print")),
            (
                "text".to_string(),
                serde_json::json!(format!("patient BSN {BSN}")),
            ),
            ("code".to_string(), serde_json::json!(code)),
        ]);
        let job_id = world.submit(RouteMode::Parallel, &hostile, parameters);
        let status = world.wait_for_end(job_id, &daemons, std::time::Duration::from_secs(240));
        assert_ne!(
            status.status,
            pht_api::v1::JobState::Completed,
            "a report holding a BSN was released: {status:#?}"
        );
        let reason = status.stops[0].reason.clone().unwrap_or_default();
        assert!(!reason.contains(BSN), "the hub was told the BSN: {reason}");
    }
    // Stopped first, so the log holds the daemon's whole life.
    let log_path = world.stations[0].config.with_extension("daemon.log");
    drop(daemons);
    let station_log = std::fs::read_to_string(&log_path).unwrap();
    let hub_log = world.hub.log();
    for (daemon, log) in [
        ("pht-station run", &station_log),
        ("pht-hub serve", &hub_log),
    ] {
        let lines: Vec<&str> = log.lines().filter(|line| !line.trim().is_empty()).collect();
        assert!(lines.len() >= 3, "{daemon} logged almost nothing:\n{log}");
        for line in &lines {
            assert!(!line.contains(BSN), "{daemon} logged the BSN: {line}");
            let parsed: Result<serde_json::Value, _> = serde_json::from_str(line);
            assert!(
                parsed.as_ref().is_ok_and(|value| value.is_object()),
                "{daemon} wrote a line that is not a JSON object with --log-format json: {line}"
            );
        }
    }
}
