//! End to end across hosts: the hub, three stations and the registry each run as their own
//! container (`FROM scratch` images of the workspace's own builds and of Debian's
//! `docker-registry`, each with exactly the shared libraries it links) on a private Docker network this test creates. The researcher stays on
//! this machine and reaches the registry and the hub through loopback ports; the stations reach
//! them by name on the network and drive this machine's Docker engine through its socket, so
//! every path they bind-mount into a train lives at the same path here and in their container.
//!
//! A station cut off the network (`docker network disconnect`) in the middle of a parallel job
//! keeps its result and delivers it once it is connected again; the job completes with three
//! verified bundles.
//!
//! A sequential job hands its state from station container to station container while the
//! second station's container is killed mid-run (`docker kill`) and started again and the hub's
//! container restarts: the job completes with the running totals, every station delivers once,
//! and the killed station resumes its run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pht_api::v1::{
    JobState, JobStatus, RegisterResearcherRequest, RegisterStationRequest, StopState,
};
use pht_api::{Credentials, HubClient};
use pht_core::job::{JobV1, Route, RouteMode, TrainPin};
use pht_core::{PublicKey, SigningKey};
use pht_e2e::containers::{
    docker_ok, http_status, Container, ContainerSpec, DockerScope, HUB_PORT, REGISTRY_PORT,
};
use pht_e2e::{count_by, pht_station, publish_train, require_docker, workspace_root, Researcher};

/// The example datasets, one per station.
const DATASETS: [&str; 3] = ["station-a", "station-b", "station-c"];
/// Every wait in this test ends by then, with the containers' logs on failure.
const WAIT: Duration = Duration::from_secs(180);
/// The host's Docker socket, mounted into every station container.
const DOCKER_SOCKET: &str = "/var/run/docker.sock";

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A station's directory on this machine, mounted at the identical path in its container:
/// `station.yaml`, `policy.yaml`, `keys/`, `state/` and its cohort under `data/cohort/`.
struct StationHost {
    dataset: &'static str,
    station_id: String,
    dir: PathBuf,
    container: Option<Container>,
}

impl StationHost {
    fn config(&self) -> PathBuf {
        self.dir.join("station.yaml")
    }

    /// `pht-station` on this machine against the same files the container uses.
    fn operator(&self, args: &[&str]) -> pht_e2e::Finished {
        pht_station(&self.config(), args)
    }

    fn container(&self) -> &Container {
        self.container.as_ref().expect("the station was started")
    }
}

/// `counts.csv` by sex over the cohorts of `datasets` together (a sequential job's running
/// totals; one dataset for a parallel job's stop).
fn expected_counts(datasets: &[&str]) -> String {
    let mut total: BTreeMap<String, u64> = BTreeMap::new();
    for dataset in datasets {
        let csv = read(
            &workspace_root()
                .join("examples/data")
                .join(dataset)
                .join("cohort/cohort.csv"),
        );
        for (group, n) in count_by(&csv, "sex") {
            *total.entry(group).or_default() += n;
        }
    }
    std::iter::once("sex,n\n".to_string())
        .chain(total.into_iter().map(|(group, n)| format!("{group},{n}\n")))
        .collect()
}

fn stop_of<'a>(status: &'a JobStatus, station_id: &str) -> &'a pht_api::v1::StopStatus {
    status
        .stops
        .iter()
        .find(|stop| stop.station == station_id)
        .unwrap_or_else(|| panic!("job has no stop at {station_id}: {status:#?}"))
}

/// The hub, the registry and the three station containers of one test, up and registered, with
/// the researcher's train published and signed.
struct Cluster {
    network: String,
    hub: Container,
    hub_url: String,
    alice: Researcher,
    cohort_stats: String,
    stations: Vec<StationHost>,
}

/// Builds the images and starts the containers of [`Cluster`] in `scope`, with station
/// directories under `root_path`. The station of `manual_release`'s dataset releases outputs
/// only by its operator's hand; `with_peers` gives every station its peers' keys (which a
/// sequential job needs).
fn start_cluster(
    scope: &DockerScope,
    runtime: &tokio::runtime::Runtime,
    root_path: &Path,
    started: Instant,
    manual_release: Option<&str>,
    with_peers: bool,
) -> Cluster {
    let run_id = scope.run_id().to_string();
    let network = scope.create_network();
    let registry_image = scope.registry_image();
    let admin_token = format!("multi-host-admin-{run_id}");
    let hub_image = scope.hub_image(&admin_token);
    let station_image = scope.station_image();
    eprintln!("images built after {:.0?}", started.elapsed());

    let registry = scope.run_container(ContainerSpec {
        name: "registry",
        image: &registry_image,
        network: Some(&network),
        network_alias: Some("registry"),
        publish_on_loopback: Some(REGISTRY_PORT),
        ..ContainerSpec::default()
    });
    let hub = scope.run_container(ContainerSpec {
        name: "hub",
        image: &hub_image,
        network: Some(&network),
        network_alias: Some("hub"),
        publish_on_loopback: Some(HUB_PORT),
        ..ContainerSpec::default()
    });
    let registry_address = registry.published_address(REGISTRY_PORT);
    let hub_url = format!("http://{}", hub.published_address(HUB_PORT));
    scope.wait_for(
        "the registry container to answer /v2/",
        WAIT,
        || match http_status(&registry_address, "/v2/") {
            Some(200) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    scope.wait_for(
        "the hub container to answer /v1/health",
        WAIT,
        || match http_status(hub_url.trim_start_matches("http://"), "/v1/health") {
            Some(200) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );

    // The researcher, on this machine: builds, pushes and signs through the loopback port, so
    // the train is named `127.0.0.1:<port>/trains/…` everywhere, stations included.
    let researcher_dir = root_path.join("researcher");
    std::fs::create_dir_all(&researcher_dir).unwrap();
    let alice = Researcher::generate(&researcher_dir, "alice");
    let reference = format!("{registry_address}/trains/cohort-stats:mh-{run_id}");
    scope.own_image_tag(&reference);
    let cohort_stats = publish_train(
        &workspace_root().join("trains/cohort-stats"),
        &reference,
        &[],
    );
    alice.sign(&cohort_stats);

    // What every station may read: the researcher's public key (never the private one).
    let public_dir = root_path.join("public");
    std::fs::create_dir_all(&public_dir).unwrap();
    let alice_public_key = public_dir.join("alice.pub");
    std::fs::copy(&alice.public_key, &alice_public_key).unwrap();

    let admin = HubClient::new(
        &hub_url,
        Credentials::Admin {
            token: admin_token.clone(),
        },
    )
    .unwrap();
    let mut stations: Vec<StationHost> = DATASETS
        .iter()
        .map(|dataset| {
            let station_id = format!("mh-{run_id}-{dataset}");
            scope.own_station(&station_id);
            let dir = root_path.join("stations").join(&station_id);
            let data_dir = dir.join("data/cohort");
            std::fs::create_dir_all(&data_dir).unwrap();
            std::fs::copy(
                workspace_root()
                    .join("examples/data")
                    .join(dataset)
                    .join("cohort/cohort.csv"),
                data_dir.join("cohort.csv"),
            )
            .unwrap();
            let release = if Some(*dataset) == manual_release {
                "manual"
            } else {
                "automatic"
            };
            std::fs::write(
                dir.join("policy.yaml"),
                format!(
                    "version: 1\ntrusted_signers:\n  - name: alice\n    public_key: {}\n    purposes: [\"aggregate statistics\"]\n    datasets: [cohort]\n    approval: automatic\nregistries:\n  - registry: \"{registry_address}\"\n    repositories: [\"trains/*\"]\nresources: {{cpus: 1, memory: 256MiB, pids: 64, wall_clock: 2m, output_size: 1MiB, tmp_size: 16MiB, log_size: 64KiB}}\noutputs:\n  release: {release}\n",
                    alice_public_key.display()
                ),
            )
            .unwrap();
            // The train names the registry by its loopback address; on the network the station
            // reaches the same registry as `registry:5000`.
            std::fs::write(
                dir.join("station.yaml"),
                format!(
                    "version: 1\nstation_id: {station_id}\nkey_dir: keys\ndatasets:\n  cohort:\n    path: {}\n    format: csv\nregistries:\n  - registry: \"{registry_address}\"\n    insecure: true\n    endpoint: \"registry:{REGISTRY_PORT}\"\npolicy: policy.yaml\nstate_dir: state\nhub:\n  url: http://hub:{HUB_PORT}\n  poll_wait: 2s\n  concurrency: 2\n",
                    data_dir.display()
                ),
            )
            .unwrap();
            let station = StationHost {
                dataset,
                station_id,
                dir,
                container: None,
            };
            station.operator(&["keys", "init"]).success();
            let key_dir = station.dir.join("keys");
            let request = RegisterStationRequest {
                id: station.station_id.clone(),
                public_key_pem: read(&key_dir.join("station.pub")),
                age_recipient: read(&key_dir.join("station.age.pub")).trim().to_string(),
            };
            runtime.block_on(admin.register_station(&request)).unwrap();
            station
        })
        .collect();
    runtime
        .block_on(admin.register_researcher(&RegisterResearcherRequest {
            id: "alice".into(),
            public_key_pem: read(&alice.public_key),
        }))
        .unwrap();
    if with_peers {
        // A sequential job hands its state from stop to stop, sealed for the next station: every
        // station knows its peers' keys from its own configuration (copies in the read-only
        // public directory), never from the hub.
        let mut peers = String::from("peers:\n");
        for station in &stations {
            let key_dir = station.dir.join("keys");
            let public_key = public_dir.join(format!("{}.pub", station.station_id));
            std::fs::copy(key_dir.join("station.pub"), &public_key).unwrap();
            peers.push_str(&format!(
                "  {}:\n    public_key: {}\n    age_recipient: {}\n",
                station.station_id,
                public_key.display(),
                read(&key_dir.join("station.age.pub")).trim()
            ));
        }
        for station in &stations {
            let mut config = read(&station.config());
            config.push_str(&peers);
            std::fs::write(station.config(), config).unwrap();
        }
    }

    for station in &mut stations {
        let container = scope.run_container(ContainerSpec {
            name: station.dataset,
            image: &station_image,
            network: Some(&network),
            mounts: vec![
                (DOCKER_SOCKET.into(), DOCKER_SOCKET.into(), false),
                // Identical paths: the station hands these paths to the host's engine as bind
                // mounts of its trains (the dataset, /input/params.json).
                (station.dir.clone(), station.dir.clone(), false),
                (public_dir.clone(), public_dir.clone(), true),
            ],
            env: vec![("PHT_LOG", "info".into())],
            args: vec![
                "--config".into(),
                station.config().display().to_string(),
                "run".into(),
            ],
            ..ContainerSpec::default()
        });
        station.container = Some(container);
    }
    eprintln!(
        "hub, registry and three stations up after {:.0?}",
        started.elapsed()
    );
    Cluster {
        network,
        hub,
        hub_url,
        alice,
        cohort_stats,
        stations,
    }
}

impl Cluster {
    /// The researcher's client of the hub at its current address.
    fn researcher(&self) -> HubClient {
        HubClient::new(
            &self.hub_url,
            Credentials::Researcher {
                researcher_id: "alice".into(),
                key: SigningKey::from_pkcs8_pem(&read(&self.alice.private_key), None).unwrap(),
            },
        )
        .unwrap()
    }

    /// Signs and submits a job of the train through every station, with `group_by: sex` and
    /// `extra` parameters for every stop.
    fn submit(
        &self,
        runtime: &tokio::runtime::Runtime,
        mode: RouteMode,
        extra: &[(&str, serde_json::Value)],
    ) -> uuid::Uuid {
        let (repository, digest) = self.cohort_stats.split_once('@').unwrap();
        let now = chrono::Utc::now();
        let mut parameters = BTreeMap::from([("group_by".to_string(), serde_json::json!("sex"))]);
        for (key, value) in extra {
            parameters.insert(key.to_string(), value.clone());
        }
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
                stations: self.stations.iter().map(|s| s.station_id.clone()).collect(),
            },
            parameters: BTreeMap::from([("*".to_string(), parameters)]),
            recipient: self.alice.age_recipient.clone(),
        };
        let signing_key = SigningKey::from_pkcs8_pem(&read(&self.alice.private_key), None).unwrap();
        runtime
            .block_on(self.researcher().submit_job(&job.sign(&signing_key)))
            .unwrap();
        job.job_id
    }

    /// Every station's bundle of `job_id`, opened with the researcher's age identity and
    /// verified against the key of the station that sealed it: `station id → counts.csv`.
    fn verified_counts(
        &self,
        runtime: &tokio::runtime::Runtime,
        job_id: uuid::Uuid,
    ) -> BTreeMap<String, String> {
        let researcher = self.researcher();
        let identity: age::x25519::Identity = read(&self.alice.age_identity)
            .lines()
            .find(|l| l.starts_with("AGE-SECRET-KEY-"))
            .unwrap()
            .parse()
            .unwrap();
        let listed = runtime.block_on(researcher.list_results(job_id)).unwrap();
        assert_eq!(listed.results.len(), 3, "{listed:#?}");
        let mut counts = BTreeMap::new();
        for station in &self.stations {
            let station_key =
                PublicKey::from_pem(&read(&station.dir.join("keys/station.pub"))).unwrap();
            let bundle = runtime
                .block_on(researcher.download_result(job_id, &station.station_id))
                .unwrap();
            let opened = pht_core::seal::open_bundle(
                &bundle,
                &identity,
                &[(station.station_id.clone(), station_key)],
            )
            .unwrap_or_else(|e| {
                panic!("the bundle of {} does not verify: {e}", station.station_id)
            });
            assert_eq!(opened.predicate().job_id, Some(job_id));
            assert_eq!(opened.predicate().station, station.station_id);
            let csv = opened
                .files()
                .iter()
                .find(|(path, _)| path == "counts.csv")
                .map(|(_, bytes)| String::from_utf8(bytes.clone()).unwrap())
                .unwrap_or_else(|| panic!("no counts.csv from {}", station.station_id));
            counts.insert(station.station_id.clone(), csv);
        }
        counts
    }
}

#[test]
fn containerised_stations_deliver_a_parallel_job_across_a_network_cut() {
    require_docker();
    let started = Instant::now();
    // The station directories outlive the scope (declared before it, dropped after it), so
    // that no container still writes into them while they are removed.
    let root = tempfile::tempdir().unwrap();
    let root_path = root.path().to_path_buf();
    // Made before the first Docker resource: whatever fails below, dropping the scope removes
    // every container, the network and every image of this run.
    let scope = DockerScope::new();
    let runtime = tokio::runtime::Runtime::new().unwrap();

    let cluster = start_cluster(
        &scope,
        &runtime,
        &root_path,
        started,
        // Station C's operator reviews outputs by hand: its result is sealed only when the
        // operator releases it, which this test does while the station is cut off.
        Some("station-c"),
        false,
    );
    let (network, stations) = (&cluster.network, &cluster.stations);
    let researcher = cluster.researcher();
    let job_id = cluster.submit(&runtime, RouteMode::Parallel, &[]);
    let job_status = || runtime.block_on(researcher.job_status(job_id)).unwrap();

    // Stations A and B deliver; station C ran the train and withholds its outputs for review.
    let (station_a, station_b, station_c) = (&stations[0], &stations[1], &stations[2]);
    scope.wait_for(
        "stations a and b to deliver and station c to withhold for review",
        WAIT,
        || {
            let status = job_status();
            let states: Vec<StopState> = [station_a, station_b, station_c]
                .iter()
                .map(|s| stop_of(&status, &s.station_id).status)
                .collect();
            if states == [StopState::Done, StopState::Done, StopState::Withheld] {
                Ok(())
            } else {
                Err(format!("{status:#?}"))
            }
        },
    );
    eprintln!(
        "a and b delivered, c withheld after {:.0?}",
        started.elapsed()
    );

    // Station C is cut off the network while the job is under way; its operator releases the
    // outputs meanwhile (on the station's machine, against the station's own files).
    station_c.container().disconnect(network);
    let runs = station_c.operator(&["--json", "runs"]).success().json();
    let run_of_job = |runs: &serde_json::Value| -> serde_json::Value {
        runs.as_array()
            .unwrap()
            .iter()
            .find(|r| r["job"]["job_id"] == job_id.to_string())
            .unwrap_or_else(|| panic!("station c has no run of job {job_id}: {runs:#}"))
            .clone()
    };
    let run_c = run_of_job(&runs)["run_id"].as_str().unwrap().to_string();
    station_c
        .operator(&[
            "outputs",
            "release",
            &run_c,
            "--reason",
            "reviewed: aggregate counts only",
        ])
        .success();
    // The daemon tries to deliver, cannot reach the hub, and keeps the sealed result.
    scope.wait_for("station c to fail a delivery while cut off", WAIT, || {
        let logs = station_c.container().logs();
        if logs.contains("delivery failed; the result stays in the outbox") {
            Ok(())
        } else {
            Err("no failed delivery in the station's log yet".into())
        }
    });
    let while_cut_off = job_status();
    assert_eq!(while_cut_off.status, JobState::Active, "{while_cut_off:#?}");
    assert_eq!(
        stop_of(&while_cut_off, &station_c.station_id).status,
        StopState::Withheld,
        "{while_cut_off:#?}"
    );
    assert!(
        run_of_job(&station_c.operator(&["--json", "runs"]).success().json())["delivered_at"]
            .is_null()
    );
    eprintln!(
        "c failed to deliver while cut off after {:.0?}",
        started.elapsed()
    );

    let reconnected_at = chrono::Utc::now();
    station_c.container().connect(network);
    let finished = scope.wait_for("the job to end", WAIT, || {
        let status = job_status();
        if status.status == JobState::Active {
            Err(format!("{status:#?}"))
        } else {
            Ok(status)
        }
    });
    assert_eq!(finished.status, JobState::Completed, "{finished:#?}");
    eprintln!("job completed after {:.0?}", started.elapsed());
    let delivered_at: chrono::DateTime<chrono::Utc> = serde_json::from_value(
        run_of_job(&station_c.operator(&["--json", "runs"]).success().json())["delivered_at"]
            .clone(),
    )
    .expect("station c records when it delivered");
    assert!(
        delivered_at >= reconnected_at,
        "station c delivered at {delivered_at}, before it was reconnected at {reconnected_at}"
    );

    // Three bundles, each opened with the researcher's age identity and verified against the
    // key of the station that sealed it.
    let counts = cluster.verified_counts(&runtime, job_id);
    for station in stations {
        assert_eq!(
            counts[&station.station_id],
            expected_counts(&[station.dataset]),
            "{}",
            station.station_id
        );
    }

    // The daemons stop cleanly on SIGTERM, and each audit log still verifies on this machine.
    for station in stations {
        let exit_code = station.container().stop(Duration::from_secs(20));
        assert_eq!(
            exit_code,
            0,
            "{} did not stop cleanly:\n{}",
            station.station_id,
            station.container().logs()
        );
        station.operator(&["audit", "verify"]).success();
    }
    eprintln!("done after {:.0?}", started.elapsed());
}

#[test]
fn containerised_sequential_job_survives_a_killed_station_and_a_restarted_hub() {
    require_docker();
    let started = Instant::now();
    // As above: the station directories outlive the scope, the scope removes every container,
    // the network and every image of this run (its own run id, so its own station ids).
    let root = tempfile::tempdir().unwrap();
    let root_path = root.path().to_path_buf();
    let scope = DockerScope::new();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut cluster = start_cluster(&scope, &runtime, &root_path, started, None, true);

    // Each stop takes a few seconds, so station B can be killed while its train runs.
    let job_id = cluster.submit(
        &runtime,
        RouteMode::Sequential,
        &[("delay_seconds", serde_json::json!(3))],
    );
    let station_b_id = cluster.stations[1].station_id.clone();
    {
        let researcher = cluster.researcher();
        scope.wait_for("station b's stop to be running", WAIT, || {
            let status = runtime.block_on(researcher.job_status(job_id)).unwrap();
            match stop_of(&status, &station_b_id).status {
                StopState::Running => Ok(()),
                _ => Err(format!("{status:#?}")),
            }
        });
    }
    eprintln!("station b running its stop after {:.0?}", started.elapsed());
    std::thread::sleep(Duration::from_millis(1000));

    // Station B's container dies mid-run (SIGKILL, no graceful stop), the hub's container
    // restarts, and station B's container starts again on the same files.
    let station_b = cluster.stations[1].container().clone();
    station_b.kill();
    let killed_state = docker_ok(&["inspect", "--format", "{{.State.Running}}", &station_b.name]);
    assert_eq!(killed_state, "false", "station b's container still runs");
    cluster.hub.restart();
    // The hub's loopback port may have moved with the restart.
    cluster.hub_url = format!("http://{}", cluster.hub.published_address(HUB_PORT));
    scope.wait_for(
        "the restarted hub container to answer /v1/health",
        WAIT,
        || match http_status(cluster.hub_url.trim_start_matches("http://"), "/v1/health") {
            Some(200) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    station_b.start();
    eprintln!(
        "station b killed and started, hub restarted after {:.0?}",
        started.elapsed()
    );

    let researcher = cluster.researcher();
    let finished = scope.wait_for("the job to end", WAIT, || {
        let status = runtime.block_on(researcher.job_status(job_id)).unwrap();
        if status.status == JobState::Active {
            Err(format!("{status:#?}"))
        } else {
            Ok(status)
        }
    });
    assert_eq!(finished.status, JobState::Completed, "{finished:#?}");
    eprintln!("job completed after {:.0?}", started.elapsed());

    // The state went from stop to stop: each stop's counts are cumulative, the last one holds
    // the totals of all three cohorts.
    let counts = cluster.verified_counts(&runtime, job_id);
    for (index, station) in cluster.stations.iter().enumerate() {
        assert_eq!(
            counts[&station.station_id],
            expected_counts(&DATASETS[..=index]),
            "{}",
            station.station_id
        );
    }

    // Every station delivered exactly one result for the job (station B did not run its stop
    // twice); station B resumed its interrupted run, once.
    for station in &cluster.stations {
        let runs = station.operator(&["--json", "runs"]).success().json();
        let delivered = runs
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["job"]["job_id"] == job_id.to_string() && r["delivered_at"].is_string())
            .count();
        assert_eq!(delivered, 1, "{}: {runs:#}", station.station_id);
    }
    let station_b_host = &cluster.stations[1];
    let resumed = station_b_host
        .operator(&["--json", "audit", "show"])
        .success()
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "run_resumed")
        .count();
    assert_eq!(
        resumed,
        1,
        "station b resumes its interrupted run once; its audit log:\n{}",
        station_b_host.operator(&["audit", "show"]).success().stdout
    );

    for station in &cluster.stations {
        let exit_code = station.container().stop(Duration::from_secs(20));
        assert_eq!(
            exit_code,
            0,
            "{} did not stop cleanly:\n{}",
            station.station_id,
            station.container().logs()
        );
        station.operator(&["audit", "verify"]).success();
    }
    eprintln!("done after {:.0?}", started.elapsed());
}
