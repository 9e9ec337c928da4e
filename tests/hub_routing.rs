//! End to end through the hub, with real processes on loopback: `pht-hub`, three `pht-station
//! run` daemons driving real Docker, a real registry. A parallel job returns three verified
//! result bundles; a sequential job hands state from stop to stop and returns the running
//! totals; a daemon killed mid-job and restarted still finishes it once; a hub restarted
//! mid-job loses nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use pht_api::v1::JobState;
use pht_api::{Credentials, HubClient};
use pht_core::job::{JobV1, Route, RouteMode, TrainPin};
use pht_core::{PublicKey, SigningKey};
use pht_e2e::lossy_proxy::{LoseFirstAnswer, LossyProxy};
use pht_e2e::{
    count_by, free_port, hostile_train_dir, pht, publish_train, require_docker, workspace_root,
    Daemon, Hub, PolicySigner, Registry, Researcher, StationFixture,
};

/// The example datasets; each test names its stations `<tag>-station-a` … so that tests running
/// at once on one Docker engine never share a station id (a daemon cleans up its own id's
/// leftover containers when it starts).
const STATIONS: [&str; 3] = ["station-a", "station-b", "station-c"];

struct World {
    runtime: tokio::runtime::Runtime,
    registry: Registry,
    _keys: tempfile::TempDir,
    alice: Researcher,
    cohort_stats: String,
    hub: Hub,
    stations: Vec<StationFixture>,
    ids: Vec<String>,
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

impl World {
    fn new(tag: &str) -> World {
        require_docker();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let registry = Registry::start();
        let keys = tempfile::tempdir().unwrap();
        let alice = Researcher::generate(keys.path(), "alice");
        let reference = format!("{}/trains/cohort-stats:{tag}", registry.address());
        let cohort_stats = publish_train(
            &workspace_root().join("trains/cohort-stats"),
            &reference,
            &[],
        );
        alice.sign(&cohort_stats);
        let hub = Hub::start();
        let signer = PolicySigner {
            name: "alice",
            public_key: &alice.public_key,
            datasets: "[cohort]",
            approval: "automatic",
        };
        let ids: Vec<String> = STATIONS
            .iter()
            .map(|data| format!("{tag}-{data}"))
            .collect();
        let stations: Vec<StationFixture> = STATIONS
            .iter()
            .zip(&ids)
            .map(|(data, id)| {
                let station = StationFixture::new(
                    id,
                    data,
                    registry.address(),
                    std::slice::from_ref(&signer),
                    "outputs:\n  release: automatic\n",
                );
                station.station(&["keys", "init"]).success();
                station
            })
            .collect();
        // Every station knows its peers' keys from its own configuration, never from the hub.
        let mut peers = String::from("peers:\n");
        for (id, station) in ids.iter().zip(&stations) {
            let key_dir = station.dir.path().join("keys");
            peers.push_str(&format!(
                "  {id}:\n    public_key: {}\n    age_recipient: {}\n",
                key_dir.join("station.pub").display(),
                read(&key_dir.join("station.age.pub")).trim()
            ));
        }
        let admin = hub.admin();
        for (id, station) in ids.iter().zip(&stations) {
            let mut config = read(&station.config);
            config.push_str(&format!(
                "hub:\n  url: {}\n  poll_wait: 2s\n  concurrency: 2\n{peers}",
                hub.url
            ));
            std::fs::write(&station.config, config).unwrap();
            // Registered as a hub operator would: `pht-hub admin`, reading the hub's config.
            let key_dir = station.dir.path().join("keys");
            let public_key = key_dir.join("station.pub").display().to_string();
            let age_recipient = key_dir.join("station.age.pub").display().to_string();
            let registered = hub
                .admin_cli(&[
                    "add-station",
                    id,
                    "--public-key",
                    &public_key,
                    "--age-recipient",
                    &age_recipient,
                ])
                .success();
            assert!(
                registered
                    .stdout
                    .contains(&format!("registered station {id}")),
                "{}",
                registered.stdout
            );
        }
        let researcher_key = alice.public_key.display().to_string();
        hub.admin_cli(&["add-researcher", "alice", "--public-key", &researcher_key])
            .success();
        let listed = runtime.block_on(admin.list_stations()).unwrap();
        assert_eq!(listed.len(), ids.len(), "{listed:?}");
        World {
            runtime,
            registry,
            _keys: keys,
            alice,
            cohort_stats,
            hub,
            stations,
            ids,
        }
    }

    /// A daemon for every station.
    /// Gives every station `urls` as the hub's addresses instead of the hub's own.
    fn point_stations_at(&self, urls: &[String]) {
        let quoted: Vec<String> = urls.iter().map(|url| format!("\"{url}\"")).collect();
        for station in &self.stations {
            let config = read(&station.config).replace(
                &format!("  url: {}\n", self.hub.url),
                &format!("  urls: [{}]\n", quoted.join(", ")),
            );
            assert!(config.contains("  urls: ["), "{config}");
            std::fs::write(&station.config, config).unwrap();
        }
    }

    fn daemons(&self) -> Vec<Daemon> {
        self.stations
            .iter()
            .map(|station| Daemon::start(&station.config))
            .collect()
    }

    /// The hostile test train, published to this world's registry and signed by alice.
    fn hostile_train(&self, scratch: &Path) -> String {
        let reference = publish_train(
            &hostile_train_dir(scratch),
            &format!("{}/trains/hostile:routes", self.registry.address()),
            &["--no-compile"],
        );
        self.alice.sign(&reference);
        reference
    }

    fn researcher(&self) -> HubClient {
        let key = SigningKey::from_pkcs8_pem(&read(&self.alice.private_key), None).unwrap();
        HubClient::new(
            &self.hub.url,
            Credentials::Researcher {
                researcher_id: "alice".into(),
                key,
            },
        )
        .unwrap()
    }

    fn submit(&self, mode: RouteMode) -> uuid::Uuid {
        self.submit_with(mode, 0)
    }

    fn submit_with(&self, mode: RouteMode, delay_seconds: u64) -> uuid::Uuid {
        let parameters = BTreeMap::from([
            ("group_by".to_string(), serde_json::json!("sex")),
            (
                "delay_seconds".to_string(),
                serde_json::json!(delay_seconds),
            ),
        ]);
        self.submit_train(mode, &self.cohort_stats.clone(), parameters)
    }

    /// Submits `train` (`repository@digest`) over every station, with `parameters` for all.
    fn submit_train(
        &self,
        mode: RouteMode,
        train: &str,
        parameters: BTreeMap<String, serde_json::Value>,
    ) -> uuid::Uuid {
        let stations = &self.ids;
        let (repository, digest) = train.split_once('@').unwrap();
        let now = chrono::Utc::now();
        let job = JobV1 {
            job_id: uuid::Uuid::new_v4(),
            issued_at: now,
            expires_at: now + chrono::Duration::hours(1),
            train: TrainPin {
                repository: repository.to_string(),
                digest: digest.parse().unwrap(),
            },
            route: Route {
                mode,
                stations: stations.iter().map(|s| s.to_string()).collect(),
            },
            parameters: BTreeMap::from([("*".to_string(), parameters)]),
            recipient: self.alice.age_recipient.clone(),
        };
        let key = SigningKey::from_pkcs8_pem(&read(&self.alice.private_key), None).unwrap();
        self.runtime
            .block_on(self.researcher().submit_job(&job.sign(&key)))
            .unwrap();
        job.job_id
    }

    fn wait_for_end(&self, job_id: uuid::Uuid, daemons: &[Daemon]) -> pht_api::v1::JobStatus {
        self.wait_until(job_id, daemons, "finish", |status| {
            status.status != JobState::Active
        })
    }

    /// Polls the job until `reached` holds (three minutes at most), and returns its status.
    fn wait_until(
        &self,
        job_id: uuid::Uuid,
        daemons: &[Daemon],
        what: &str,
        reached: impl Fn(&pht_api::v1::JobStatus) -> bool,
    ) -> pht_api::v1::JobStatus {
        let researcher = self.researcher();
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let status = self
                .runtime
                .block_on(researcher.job_status(job_id))
                .unwrap();
            if reached(&status) {
                return status;
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = daemons.iter().map(Daemon::log).collect();
                panic!(
                    "job {job_id} did not {what}: {status:#?}\ndaemon logs:\n{}",
                    logs.join("\n-----\n")
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Downloads and verifies every station's bundle; returns `station → counts.csv`.
    fn verified_results(&self, job_id: uuid::Uuid) -> BTreeMap<String, String> {
        let researcher = self.researcher();
        let identity: age::x25519::Identity = read(&self.alice.age_identity)
            .lines()
            .find(|l| l.starts_with("AGE-SECRET-KEY-"))
            .unwrap()
            .parse()
            .unwrap();
        let listed = self
            .runtime
            .block_on(researcher.list_results(job_id))
            .unwrap();
        let mut counts = BTreeMap::new();
        for result in listed.results {
            let station_index = self.ids.iter().position(|s| *s == result.station).unwrap();
            let station_key = PublicKey::from_pem(&read(
                &self.stations[station_index]
                    .dir
                    .path()
                    .join("keys/station.pub"),
            ))
            .unwrap();
            let bundle = self
                .runtime
                .block_on(researcher.download_result(job_id, &result.station))
                .unwrap();
            let opened = pht_core::seal::open_bundle(
                &bundle,
                &identity,
                &[(result.station.clone(), station_key)],
            )
            .unwrap();
            assert_eq!(opened.predicate().job_id, Some(job_id));
            assert_eq!(opened.predicate().station, result.station);
            let csv = opened
                .files()
                .iter()
                .find(|(p, _)| p == "counts.csv")
                .map(|(_, b)| String::from_utf8(b.clone()).unwrap())
                .unwrap();
            counts.insert(STATIONS[station_index].to_string(), csv);
        }
        counts
    }
}

fn expected_counts(stations: &[&str]) -> String {
    let mut total: BTreeMap<String, u64> = BTreeMap::new();
    for station in stations {
        let csv = std::fs::read_to_string(
            workspace_root()
                .join("examples/data")
                .join(station)
                .join("cohort/cohort.csv"),
        )
        .unwrap();
        for (group, n) in count_by(&csv, "sex") {
            *total.entry(group).or_default() += n;
        }
    }
    std::iter::once("sex,n\n".to_string())
        .chain(total.into_iter().map(|(g, n)| format!("{g},{n}\n")))
        .collect()
}

/// `pht-hub admin`: registers and lists with the hub's own configuration, and says clearly what
/// is wrong: a taken id (1), a key file that is no key (3), a hub that is down (4).
#[test]
fn hub_admin_cli_registers_lists_and_refuses_clearly() {
    let hub = Hub::start();
    let keys = tempfile::tempdir().unwrap();
    let alice = Researcher::generate(keys.path(), "alice");
    let bob = Researcher::generate(keys.path(), "bob");
    let alice_key = alice.public_key.display().to_string();
    let bob_key = bob.public_key.display().to_string();

    let added = hub
        .admin_cli(&["add-researcher", "alice", "--public-key", &alice_key])
        .success();
    assert!(
        added
            .stdout
            .starts_with("registered researcher alice (key id "),
        "{}",
        added.stdout
    );

    let taken = hub.admin_cli(&["add-researcher", "alice", "--public-key", &bob_key]);
    assert_eq!(taken.code, 1, "{}{}", taken.stdout, taken.stderr);
    assert!(taken.stderr.contains("alice"), "{}", taken.stderr);

    let not_a_key = keys.path().join("alice.age.pub");
    let not_a_key_text = not_a_key.display().to_string();
    let refused = hub.admin_cli(&["add-researcher", "carol", "--public-key", &not_a_key_text]);
    assert_eq!(refused.code, 3, "{}{}", refused.stdout, refused.stderr);
    assert!(
        refused.stderr.contains(&not_a_key_text),
        "{}",
        refused.stderr
    );

    let bad_recipient = hub.admin_cli(&[
        "add-station",
        "umc",
        "--public-key",
        &bob_key,
        "--age-recipient",
        "age1notarecipient",
    ]);
    assert_eq!(bad_recipient.code, 3, "{}", bad_recipient.stderr);
    assert!(
        bad_recipient.stderr.contains("--age-recipient"),
        "{}",
        bad_recipient.stderr
    );

    // Given the identity (the secret key) where the recipient belongs, it says so and never
    // prints the key.
    let identity = keys.path().join("bob.age");
    let identity_text = identity.display().to_string();
    let secret_given = hub.admin_cli(&[
        "add-station",
        "umc",
        "--public-key",
        &bob_key,
        "--age-recipient",
        &identity_text,
    ]);
    assert_eq!(secret_given.code, 3, "{}", secret_given.stderr);
    assert!(
        secret_given.stderr.contains("age identity") && secret_given.stderr.contains(".age.pub"),
        "{}",
        secret_given.stderr
    );
    assert!(
        !secret_given.stderr.contains("AGE-SECRET-KEY-"),
        "the secret key was printed: {}",
        secret_given.stderr
    );

    let listed = hub.admin_cli(&["researchers", "--json"]).success();
    let researchers: Vec<pht_api::v1::ResearcherRecord> =
        serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(researchers.len(), 1);
    assert_eq!(researchers[0].id, "alice");
    assert_eq!(researchers[0].public_key_pem, read(&alice.public_key));

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = hub.admin_cli(&["--url", &format!("http://127.0.0.1:{port}"), "stations"]);
    assert_eq!(down.code, 4, "{}{}", down.stdout, down.stderr);
}

#[test]
fn parallel_job_returns_three_verified_results() {
    let world = World::new("parallel");
    let daemons = world.daemons();
    let job_id = world.submit(RouteMode::Parallel);
    let status = world.wait_for_end(job_id, &daemons);
    assert_eq!(status.status, JobState::Completed, "{status:#?}");
    let results = world.verified_results(job_id);
    assert_eq!(results.len(), 3);
    for station in STATIONS {
        assert_eq!(results[station], expected_counts(&[station]), "{station}");
    }
    drop(daemons);
    for station in &world.stations {
        station.station(&["audit", "verify"]).success();
    }
}

#[test]
fn sequential_job_passes_state_from_stop_to_stop() {
    let world = World::new("sequential");
    let daemons = world.daemons();
    let job_id = world.submit(RouteMode::Sequential);
    let status = world.wait_for_end(job_id, &daemons);
    assert_eq!(status.status, JobState::Completed, "{status:#?}");
    let results = world.verified_results(job_id);
    // Each stop's counts are cumulative: the last one holds the totals of all three cohorts.
    assert_eq!(results["station-a"], expected_counts(&STATIONS[..1]));
    assert_eq!(results["station-b"], expected_counts(&STATIONS[..2]));
    assert_eq!(results["station-c"], expected_counts(&STATIONS));
}

/// Clients that know several addresses of a hub, one of them down, behind a proxy that loses
/// the first answer of every submission, status report and upload after the hub did the work
/// (a replica dying mid-answer): `pht submit` and the station daemons try the next address and
/// send again, signed afresh (a reused nonce would be refused as a replay); the hub answers each
/// repeat as the first time; the job completes once, with one verified result per station.
#[test]
fn lost_answers_and_a_dead_address_are_retried_signed_afresh_and_done_once() {
    let world = World::new("failover");
    let dead = format!("http://127.0.0.1:{}", free_port());
    let proxy = LossyProxy::start(
        &world.hub.url,
        vec![
            LoseFirstAnswer {
                method: "POST",
                path_suffix: "/v1/jobs",
            },
            LoseFirstAnswer {
                method: "POST",
                path_suffix: "/status",
            },
            LoseFirstAnswer {
                method: "PUT",
                path_suffix: "/result",
            },
        ],
    );
    world.point_stations_at(&[dead.clone(), proxy.url.clone()]);
    let daemons = world.daemons();

    let addresses = format!("{dead},{}", proxy.url);
    let key = world.alice.private_key.display().to_string();
    let scratch = tempfile::tempdir().unwrap();
    let route = world.ids.join(",");
    let login = [
        "--hub",
        addresses.as_str(),
        "--researcher",
        "alice",
        "--key",
        key.as_str(),
    ];
    let submitted = pht(
        scratch.path(),
        &[
            "--json",
            "submit",
            &world.cohort_stats,
            "--route",
            &route,
            "--param",
            "group_by=sex",
            "--param",
            "delay_seconds=0",
            "--recipient",
            &world.alice.age_recipient,
        ]
        .iter()
        .chain(&login)
        .copied()
        .collect::<Vec<_>>(),
    )
    .success();
    let job_id: uuid::Uuid = submitted.json()["job_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let forwarded = proxy.forwarded();
    assert_eq!(
        forwarded.get("POST /v1/jobs"),
        Some(&2),
        "the submission whose answer was lost is sent once more, and accepted: {forwarded:?}"
    );

    let status = world.wait_for_end(job_id, &daemons);
    assert_eq!(status.status, JobState::Completed, "{status:#?}");
    let results = world.verified_results(job_id);
    assert_eq!(results.len(), 3, "one result per station: {results:?}");
    for station in STATIONS {
        assert_eq!(results[station], expected_counts(&[station]), "{station}");
    }
    // The hub completes the job on the first upload (only its answer was lost), so a station
    // may still be sending it again when the job shows completed: wait for the repeats.
    let lost = proxy.lost();
    for id in &world.ids {
        let upload = format!("PUT /v1/jobs/{job_id}/stops/{id}/result");
        assert!(lost.contains(&upload), "{upload} lost no answer: {lost:?}");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let forwarded = proxy.forwarded();
            if forwarded.get(&upload).copied().unwrap_or(0) >= 2 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{upload} was not sent again: {forwarded:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // The CLI's status, through the same addresses, agrees.
    let job = job_id.to_string();
    let shown = pht(
        scratch.path(),
        &["--json", "status", job.as_str()]
            .iter()
            .chain(&login)
            .copied()
            .collect::<Vec<_>>(),
    )
    .success();
    assert_eq!(shown.json()["status"], "completed", "{}", shown.stdout);
    drop(daemons);
    for station in &world.stations {
        station.station(&["audit", "verify"]).success();
    }
}

#[test]
fn station_killed_mid_run_and_hub_restarted_lose_nothing() {
    let mut world = World::new("restarts");
    let mut daemons = world.daemons();
    // Each stop takes a few seconds, so the second station can be killed while its train runs.
    let job_id = world.submit_with(RouteMode::Sequential, 3);
    let researcher = world.researcher();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = world
            .runtime
            .block_on(researcher.job_status(job_id))
            .unwrap();
        if status.stops[1].status == pht_api::v1::StopState::Running {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stop 1 never started: {status:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1000));
    // The station crashes mid-run (SIGKILL, no graceful stop), and the hub restarts too.
    daemons[1].kill();
    world.hub.restart();
    daemons[1].restart();
    let status = world.wait_for_end(job_id, &daemons);
    assert_eq!(status.status, JobState::Completed, "{status:#?}");
    let results = world.verified_results(job_id);
    assert_eq!(results["station-c"], expected_counts(&STATIONS));
    // Every station delivered exactly one result for the job; station-b resumed its run.
    for station in &world.stations {
        let runs = station.station(&["--json", "runs"]).success().json();
        let delivered = runs
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["delivered_at"].is_string())
            .count();
        assert_eq!(delivered, 1, "{runs:#}");
    }
    let resumed: Vec<_> = world.stations[1]
        .station(&["--json", "audit", "show"])
        .success()
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "run_resumed")
        .cloned()
        .collect();
    let audit = world.stations[1]
        .station(&["audit", "show"])
        .success()
        .stdout;
    assert_eq!(
        resumed.len(),
        1,
        "station-b resumes its interrupted run once; its audit log:\n{audit}"
    );
}

/// Idle and slow clients cannot take the hub down: with its connection cap reached by hundreds
/// of connections that never send a request, `/v1/health` still answers (the idle ones are
/// closed after the header timeout, and the hub logs that its limit was reached); a client
/// sending its headers a byte at a time is disconnected too.
#[test]
fn idle_and_slow_connections_never_keep_the_hub_from_answering() {
    use std::io::{Read as _, Write as _};
    let hub = Hub::start_with("header_read_timeout_secs: 2\nmax_connections: 50\n");
    let idle: Vec<std::net::TcpStream> = (0..300)
        .filter_map(|_| std::net::TcpStream::connect(hub.address()).ok())
        .collect();
    assert!(
        idle.len() >= 250,
        "only {} idle connections opened",
        idle.len()
    );

    let started = std::time::Instant::now();
    let mut answered = false;
    while started.elapsed() < std::time::Duration::from_secs(30) {
        if let Ok(mut stream) = std::net::TcpStream::connect(hub.address()) {
            stream
                .set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            let mut response = String::new();
            if stream.write_all(b"GET /v1/health HTTP/1.0\r\n\r\n").is_ok()
                && stream.read_to_string(&mut response).is_ok()
                && response.contains(" 200 ")
            {
                answered = true;
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(answered, "/v1/health never answered: {}", hub.log());
    assert!(
        hub.log().contains("connection limit reached"),
        "{}",
        hub.log()
    );

    // The idle connections the hub served were closed by it.
    let mut closed_by_hub = 0;
    for mut stream in idle.into_iter().take(10) {
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut buffer = [0u8; 16];
        if matches!(stream.read(&mut buffer), Ok(0)) {
            closed_by_hub += 1;
        }
    }
    assert!(
        closed_by_hub > 0,
        "no idle connection was closed by the hub"
    );

    // Headers dribbled a byte a second never finish within the timeout: disconnected.
    let mut slow = std::net::TcpStream::connect(hub.address()).unwrap();
    let mut disconnected = false;
    for byte in b"GET /v1/health HTTP/1.1\r\nHost: hub\r\n".iter() {
        if slow.write_all(&[*byte]).is_err() {
            disconnected = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    if !disconnected {
        slow.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut buffer = [0u8; 64];
        disconnected = matches!(slow.read(&mut buffer), Ok(0) | Err(_));
    }
    assert!(disconnected, "a client sending its headers slowly was kept");
}

/// Regression: an invalid hub.yaml made `pht-hub` exit 1 with a backtrace; the README promises 3
/// and a message naming the file, line and column.
#[test]
fn an_invalid_hub_configuration_exits_3_with_its_location_and_no_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hub.yaml");
    std::fs::write(
        &config,
        "listen: 127.0.0.1:8080\nstate_dir: state\ncolour: red\n",
    )
    .unwrap();
    for command in ["check-config", "serve"] {
        let finished = pht_e2e::run(
            std::process::Command::new(pht_e2e::binary("pht-hub"))
                .arg(command)
                .arg("--config")
                .arg(&config)
                .env("RUST_BACKTRACE", "1"),
        );
        assert_eq!(finished.code, 3, "{command}: {}", finished.stderr);
        assert!(
            finished.stderr.contains("hub.yaml:3:"),
            "{command}: {}",
            finished.stderr
        );
        assert!(
            !finished.stderr.contains("backtrace"),
            "{command}: {}",
            finished.stderr
        );
    }
}

/// Waits until a stop of `job_id` reaches `wanted`, and returns the job's status then.
fn wait_for_stop(
    world: &World,
    job_id: uuid::Uuid,
    stop_index: usize,
    wanted: pht_api::v1::StopState,
    daemons: &[Daemon],
) -> pht_api::v1::JobStatus {
    let what = format!("bring stop {stop_index} to {wanted:?}");
    world.wait_until(job_id, daemons, &what, |status| {
        status.stops[stop_index].status == wanted
    })
}

/// Parameters of the hostile train's `smuggle` mode over the cohort, with `extra` ones.
fn smuggle(extra: &[(&str, serde_json::Value)]) -> BTreeMap<String, serde_json::Value> {
    [
        ("mode", serde_json::json!("smuggle")),
        ("dataset", serde_json::json!("cohort")),
        ("file", serde_json::json!("cohort.csv")),
    ]
    .iter()
    .chain(extra)
    .map(|(name, value)| (name.to_string(), value.clone()))
    .collect()
}

/// The audit events of a station's run, in order.
fn run_events(station: &StationFixture, run_id: &str) -> Vec<String> {
    station
        .audit_of(run_id)
        .iter()
        .map(|entry| entry["event"].as_str().unwrap().to_string())
        .collect()
}

/// The newest run of a station, as JSON.
fn newest_run(station: &StationFixture) -> serde_json::Value {
    let runs = station.station(&["--json", "runs"]).success().json();
    runs.as_array().unwrap().last().cloned().unwrap()
}

/// State is an output: a train that writes its whole dataset into the state for the next stop
/// is stopped at the first station; the second never receives it; the job shows the failed
/// stop with its reason. Regression: the state was never checked, and the next stop released
/// the first station's 400 rows.
#[test]
fn a_train_that_puts_its_dataset_in_state_is_stopped_at_the_first_station() {
    let world = World::new("state-copy");
    let scratch = tempfile::tempdir().unwrap();
    let hostile = world.hostile_train(scratch.path());
    let daemons = world.daemons();
    let job_id = world.submit_train(RouteMode::Sequential, &hostile, smuggle(&[]));
    let status = world.wait_for_end(job_id, &daemons);
    assert_eq!(status.status, JobState::Incomplete, "{status:#?}");
    let first = &status.stops[0];
    assert_eq!(first.status, pht_api::v1::StopState::Failed, "{status:#?}");
    let reason = first.reason.clone().unwrap_or_default();
    assert!(reason.contains("state.checks"), "{reason}");
    // Nothing was handed on, and the next stations never ran the train.
    assert!(status.stops[1].input_state.is_none(), "{status:#?}");
    for station in &world.stations[1..] {
        let runs = station.station(&["--json", "runs"]).success().json();
        assert!(runs.as_array().unwrap().is_empty(), "{runs:#}");
    }
    // The station's own record and audit log say why.
    let run = newest_run(&world.stations[0]);
    assert_eq!(run["state_checks"], "fail", "{run:#}");
    let events = run_events(&world.stations[0], run["run_id"].as_str().unwrap());
    assert!(events.contains(&"state_checked".to_string()), "{events:?}");
    assert!(!events.contains(&"delivered".to_string()), "{events:?}");
}

/// A few rows disguised past the first station's checks, carried in state and released at the
/// next stop split over two files, are blocked there by the leakage check against the state
/// the stop received. The received state's sender and digest are in the audit log and the
/// record, and the received state is gone from the run directory once the run has ended.
#[test]
fn rows_smuggled_through_state_are_blocked_at_the_next_station() {
    let world = World::new("state-smuggle");
    let scratch = tempfile::tempdir().unwrap();
    let hostile = world.hostile_train(scratch.path());
    let daemons = world.daemons();
    let parameters = smuggle(&[
        ("rows", serde_json::json!(6)),
        ("disguise", serde_json::json!("true")),
    ]);
    let job_id = world.submit_train(RouteMode::Sequential, &hostile, parameters);
    // The hostile train's report.txt is free text and its state a table without counts, so the
    // first stop waits for its operator, who releases it: the disguised rows match nothing of
    // this station's data, so no check fails there.
    wait_for_stop(
        &world,
        job_id,
        0,
        pht_api::v1::StopState::Withheld,
        &daemons,
    );
    let first_run = newest_run(&world.stations[0]);
    assert_ne!(first_run["state_checks"], "fail", "{first_run:#}");
    world.stations[0]
        .station(&[
            "outputs",
            "release",
            first_run["run_id"].as_str().unwrap(),
            "--reason",
            "report reviewed",
        ])
        .success();
    let status = wait_for_stop(&world, job_id, 1, pht_api::v1::StopState::Blocked, &daemons);
    assert!(status.stops[1].input_state.is_some(), "{status:#?}");

    let second = &world.stations[1];
    let second_run = newest_run(second);
    let run_id = second_run["run_id"].as_str().unwrap();
    assert_eq!(second_run["checks"], "fail", "{second_run:#}");
    assert_eq!(
        second_run["received_state"]["from_station"],
        world.ids[0].as_str(),
        "{second_run:#}"
    );
    let report = second
        .station(&["outputs", "show", run_id])
        .success()
        .stdout;
    assert!(report.contains("leakage"), "{report}");
    let events = run_events(second, run_id);
    for event in [
        "state_received",
        "received_state_deleted",
        "outputs_blocked",
    ] {
        assert!(events.contains(&event.to_string()), "{event}: {events:?}");
    }
    let received_dir = second
        .dir
        .path()
        .join("state/runs")
        .join(run_id)
        .join("input/state");
    assert!(!received_dir.exists(), "the received state was kept");
}
