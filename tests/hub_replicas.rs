//! The hub at consortium scale, end to end: three `pht-hub` replicas on one real PostgreSQL
//! server and one shared blob directory, behind a real nginx (`examples/hub/nginx.conf`), three
//! `pht-station run` daemons and a researcher reaching them only through nginx. While a parallel
//! and a sequential job run, one replica is killed (SIGKILL), another is restarted, and
//! PostgreSQL itself is restarted. Every job completes; every stop ran exactly once at its
//! station; every result is stored once and opens and verifies with `pht results`. And a
//! replica holds no more database connections than its `store_connections` says.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use pht_api::v1::StopState;
use pht_core::job::RouteMode;
use pht_e2e::nginx::Nginx;
use pht_e2e::postgres::PostgresServer;
use pht_e2e::routes::{HubWorld, STATIONS};
use pht_e2e::{count_by, publish_train, require_docker, workspace_root, Hub};

fn parameters() -> BTreeMap<String, serde_json::Value> {
    BTreeMap::from([
        ("group_by".to_string(), serde_json::json!("sex")),
        // Each stop takes a few seconds, so that the faults land while the jobs run.
        ("delay_seconds".to_string(), serde_json::json!(3)),
    ])
}

/// `sex → n` over the example datasets of `stations`.
fn expected_counts(stations: &[&str]) -> BTreeMap<String, u64> {
    let mut total = BTreeMap::new();
    for station in stations {
        for (group, n) in count_by(&pht_e2e::routes::dataset(station), "sex") {
            *total.entry(group).or_default() += n;
        }
    }
    total
}

/// `group → n` from a released counts.csv (`sex,n` rows).
fn released_counts(csv: &str) -> BTreeMap<String, u64> {
    csv.lines()
        .skip(1)
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (group, n) = line.split_once(',').unwrap();
            (group.to_string(), n.trim().parse().unwrap())
        })
        .collect()
}

#[test]
fn three_replicas_behind_nginx_lose_no_work_when_one_is_killed_one_restarted_and_postgres_restarts()
{
    require_docker();
    let mut postgres = PostgresServer::start();
    let store = postgres.create_database("pht_hub");
    let blobs = tempfile::tempdir().unwrap();
    let shared = format!("store: {store}\nblob_dir: {}\n", blobs.path().display());
    let first = Hub::start_with(&shared);
    let mut second = Hub::start_with(&shared);
    let mut third = Hub::start_with(&shared);
    let nginx = Nginx::start(&[first.address(), second.address(), third.address()]);
    let world = HubWorld::with_hub(
        "replicas",
        3,
        "automatic",
        "outputs:\n  release: automatic\n",
        false,
        first,
        nginx.url.clone(),
    );
    let reference = format!("{}/trains/cohort-stats:replicas", world.registry.address());
    let train = publish_train(
        &workspace_root().join("trains/cohort-stats"),
        &reference,
        &[],
    );
    world.alice.sign(&train);
    let daemons = world.daemons();

    let parallel = world.submit(RouteMode::Parallel, &train, parameters());
    let sequential = world.submit(RouteMode::Sequential, &train, parameters());

    // Mid-job: once the sequential route's first stop runs.
    let researcher = world.researcher();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let status = world
            .runtime
            .block_on(researcher.job_status(sequential))
            .unwrap();
        if status.stops[0].status == StopState::Running {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sequential job's first stop never ran: {status:#?}\nnginx: {}",
            nginx.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A machine lost: no graceful shutdown, its long-polls and requests cut off.
    second.kill();
    // A replica upgraded: SIGTERM (its long-polls end at once), then started again.
    third.terminate();
    third.start_again();
    // The database restarted: every replica's connections (and LISTEN) are cut.
    postgres.stop();
    std::thread::sleep(Duration::from_secs(1));
    postgres.start_again();

    for job_id in [parallel, sequential] {
        let status = world.wait_for_end(job_id, &daemons, Duration::from_secs(300));
        world.assert_completed(&status);
    }

    // Every stop ran exactly once: one run per job at each station, delivered.
    for (station, id) in world.stations.iter().zip(&world.ids) {
        let runs = station.station(&["--json", "runs"]).success().json();
        for job_id in [parallel, sequential] {
            let of_job: Vec<_> = runs
                .as_array()
                .unwrap()
                .iter()
                .filter(|run| run["job"]["job_id"] == job_id.to_string())
                .collect();
            assert_eq!(
                of_job.len(),
                1,
                "{id} ran job {job_id} other than once: {runs:#}"
            );
            assert!(of_job[0]["delivered_at"].is_string(), "{runs:#}");
        }
    }
    // The hub's records: one stored result per stop, all stops done.
    let stored = postgres.query(
        "pht_hub",
        "SELECT count(*), count(result_digest), count(DISTINCT (job_id, stop_index)) \
         FROM stops WHERE status = 'done'",
    );
    assert_eq!(stored.trim(), "6|6|6");
    // Every result opens and verifies as the researcher reads it, through nginx.
    let out = tempfile::tempdir().unwrap();
    let parallel_results = world.results(parallel, &out.path().join("parallel"));
    for station in STATIONS {
        let csv = &parallel_results[station]["counts.csv"];
        assert_eq!(
            released_counts(csv),
            expected_counts(&[station]),
            "{station}"
        );
    }
    let sequential_results = world.results(sequential, &out.path().join("sequential"));
    assert_eq!(
        released_counts(&sequential_results["station-c"]["counts.csv"]),
        expected_counts(&STATIONS),
        "the route's running totals"
    );
    // The load balancer spread the work: every live replica answered requests.
    let access = nginx.access_log();
    for hub in [&world.hub, &third] {
        assert!(
            access.contains(&format!("upstream={}", hub.address())),
            "no request reached {}:\n{access}",
            hub.address()
        );
    }
    drop(daemons);
}

/// The connections one replica holds to `database` once a burst of readiness checks (each a
/// database round trip) is over: the pool keeps what it opened.
fn connections_after_a_burst(postgres: &PostgresServer, database: &str, hub: &Hub) -> u32 {
    let readyz = format!("{}/readyz", hub.url);
    std::thread::scope(|scope| {
        for _ in 0..32 {
            let readyz = &readyz;
            scope.spawn(move || {
                let client = reqwest::blocking::Client::new();
                for _ in 0..40 {
                    let status = client.get(readyz).send().unwrap().status();
                    assert!(status.is_success(), "/readyz answered {status}");
                }
            });
        }
    });
    postgres
        .query(
            database,
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .trim()
        .parse()
        .unwrap()
}

/// Replicas × `store_connections` (+ one listening connection each) is what an operator sizes
/// PostgreSQL's `max_connections` by, so a replica must hold no more, however busy.
#[test]
fn a_replica_holds_no_more_database_connections_than_store_connections() {
    let postgres = PostgresServer::start();
    let bounded = postgres.create_database("bounded");
    let roomy = postgres.create_database("roomy");
    let bounded_hub = Hub::start_with(&format!("store: {bounded}\nstore_connections: 2\n"));
    let roomy_hub = Hub::start_with(&format!("store: {roomy}\nstore_connections: 12\n"));
    let held = connections_after_a_burst(&postgres, "bounded", &bounded_hub);
    // Two in the pool and the one that listens for other replicas' work.
    assert!(held <= 3, "{held} connections with store_connections: 2");
    // The same burst makes a roomier pool grow past that, so the bound above was tested.
    let held = connections_after_a_burst(&postgres, "roomy", &roomy_hub);
    assert!(held > 3, "{held} connections with store_connections: 12");
}
