//! The compose deployment of `examples/compose/`, end to end, as its README tells an operator to
//! run it: the images built by its `build-images.sh`, its example configurations copied into
//! host directories with only their paths, ports and station id changed, the station's keys made
//! on the host, `docker-compose up -d`, the station and the researcher registered with
//! `pht-hub admin`, and the example train `trains/cohort-stats` pushed, signed, submitted,
//! watched and fetched with `pht` on this machine.
//!
//! The station runs in a container and drives this machine's Docker engine through its socket,
//! so the run only works when the datasets and the state directory are mounted at the same path
//! in its container as here (the engine resolves the station's bind mounts on this machine). The
//! operator's audit log check on this machine, against the files the container wrote, and the
//! train's counts, read from the host directory the train saw, show both are so.
//!
//! The project tears itself down (`docker-compose down -v`, the images, the station's sandbox
//! leftovers) also when the test fails, and the test checks that nothing of it is left.

use std::path::Path;
use std::time::{Duration, Instant};

use pht_e2e::compose::{compose_dir, require_compose, ComposeProject};
use pht_e2e::containers::{docker_ok, http_status};
use pht_e2e::{
    binary, count_by, free_port, pht, pht_station, publish_train, require_docker, run,
    workspace_root, Researcher,
};

/// The example dataset the station holds.
const DATASET: &str = "station-a";
/// The host directory every example configuration names; a test directory stands in for it.
const EXAMPLE_ROOT: &str = "/srv/pht";
/// The registry name the example configurations use; a free loopback port stands in for it.
const EXAMPLE_REGISTRY: &str = "127.0.0.1:5000";
/// Every wait in this test ends by then, with the services' logs on failure.
const WAIT: Duration = Duration::from_secs(180);

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `examples/compose/<relative>` with each `(from, to)` replaced; every `from` must occur, so an
/// edited example fails here instead of running with a value the test meant to replace.
fn example(relative: &str, replacements: &[(&str, &str)]) -> String {
    let mut text = read(&compose_dir().join(relative));
    for (from, to) in replacements {
        assert!(
            text.contains(from),
            "examples/compose/{relative} no longer contains `{from}`"
        );
        text = text.replace(from, to);
    }
    text
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("a file in a directory")).unwrap();
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// `counts.csv` by sex over the station's cohort, as the train writes it.
fn expected_counts() -> String {
    let csv = read(
        &workspace_root()
            .join("examples/data")
            .join(DATASET)
            .join("cohort/cohort.csv"),
    );
    std::iter::once("sex,n\n".to_string())
        .chain(
            count_by(&csv, "sex")
                .into_iter()
                .map(|(group, n)| format!("{group},{n}\n")),
        )
        .collect()
}

#[test]
fn compose_deployment_runs_the_example_train_at_its_station() {
    require_docker();
    require_compose();
    let started = Instant::now();
    // The stand-in for /srv/pht outlives the project (declared before it, dropped after it), so
    // that no container still writes into it while it is removed.
    let root = tempfile::tempdir().unwrap();
    let root_path = root.path().to_str().expect("a UTF-8 temporary path");
    let env_file = root.path().join("compose.env");
    // Made before the first Docker resource: whatever fails below, dropping the project removes
    // its containers, network, volumes and images.
    let mut project = ComposeProject::new(&env_file);
    let images = project.build_images();
    eprintln!("images {images:?} built after {:.0?}", started.elapsed());

    let station_id = format!("compose-{}", project.run_id());
    project.own_station(&station_id);
    let hub_port = free_port().to_string();
    let registry_port = free_port().to_string();
    let registry_address = format!("127.0.0.1:{registry_port}");
    let hub_url = format!("http://127.0.0.1:{hub_port}");
    // Quoted, as the examples name the registry: `registry:5000`, the endpoint, stays as it is.
    let example_registry = format!("\"{EXAMPLE_REGISTRY}\"");
    let this_registry = format!("\"{registry_address}\"");
    let to_this_run = [
        (EXAMPLE_ROOT, root_path),
        (example_registry.as_str(), this_registry.as_str()),
    ];

    // The operator's host directories, from the examples.
    write(
        &env_file,
        &example(
            "env.example",
            &[
                (EXAMPLE_ROOT, root_path),
                (
                    "PHT_IMAGE_TAG=local",
                    &format!("PHT_IMAGE_TAG={}", project.image_tag()),
                ),
                ("PHT_HUB_PORT=8080", &format!("PHT_HUB_PORT={hub_port}")),
                (
                    "PHT_REGISTRY_PORT=5000",
                    &format!("PHT_REGISTRY_PORT={registry_port}"),
                ),
            ],
        ),
    );
    let hub_dir = root.path().join("hub");
    write(&hub_dir.join("hub.yaml"), &example("hub/hub.yaml", &[]));
    let admin_token_path = hub_dir.join("admin-token");
    write(
        &admin_token_path,
        &format!("compose-admin-{}\n", uuid::Uuid::new_v4().simple()),
    );
    // Readable by the hub's user in its container (nobody) and by no one else.
    std::os::unix::fs::chown(&admin_token_path, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(
        &admin_token_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o400),
    )
    .unwrap();

    let researcher_dir = root.path().join("researcher");
    std::fs::create_dir_all(&researcher_dir).unwrap();
    let alice = Researcher::generate(&researcher_dir, "alice");

    let station_dir = root.path().join("station");
    let station_config = station_dir.join("station.yaml");
    write(
        &station_config,
        &example(
            "station/station.yaml",
            &[
                to_this_run[0],
                to_this_run[1],
                (
                    "station_id: station-a",
                    &format!("station_id: {station_id}"),
                ),
            ],
        ),
    );
    write(
        &station_dir.join("policy.yaml"),
        &example("station/policy.yaml", &to_this_run[1..]),
    );
    write(
        &station_dir.join("trusted/alice.pub"),
        &read(&alice.public_key),
    );
    write(
        &root.path().join("data/cohort/cohort.csv"),
        &read(
            &workspace_root()
                .join("examples/data")
                .join(DATASET)
                .join("cohort/cohort.csv"),
        ),
    );
    std::fs::create_dir_all(root.path().join("state")).unwrap();
    pht_station(&station_config, &["keys", "init"]).success();

    project.up();
    project.wait_for("the registry to answer /v2/", WAIT, || {
        match http_status(&registry_address, "/v2/") {
            Some(200) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    project.wait_for("the hub to answer /v1/health", WAIT, || {
        match http_status(hub_url.trim_start_matches("http://"), "/v1/health") {
            Some(200) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    eprintln!("services up after {:.0?}", started.elapsed());
    // Only the registry and the hub are published, and only on loopback.
    for (service, port) in [("registry", "5000"), ("hub", "8080")] {
        let published = docker_ok(&["port", &project.container_of(service), port]);
        assert!(
            published.lines().all(|line| line.starts_with("127.0.0.1:")),
            "{service} is published beyond loopback: {published}"
        );
    }
    assert_eq!(
        docker_ok(&["port", &project.container_of("station")]),
        "",
        "the station publishes no port"
    );

    // The hub's operator registers the station and the researcher, on this machine, with the
    // configuration the hub's container reads.
    let hub_admin = |args: &[&str]| {
        run(std::process::Command::new(binary("pht-hub"))
            .arg("admin")
            .arg("--config")
            .arg(hub_dir.join("hub.yaml"))
            .arg("--url")
            .arg(&hub_url)
            .args(args))
        .success()
    };
    let key_dir = station_dir.join("keys");
    hub_admin(&[
        "add-station",
        &station_id,
        "--public-key",
        key_dir.join("station.pub").to_str().unwrap(),
        "--age-recipient",
        key_dir.join("station.age.pub").to_str().unwrap(),
    ]);
    hub_admin(&[
        "add-researcher",
        "alice",
        "--public-key",
        alice.public_key.to_str().unwrap(),
    ]);

    // The researcher pushes through the registry's loopback port, so the train is named
    // 127.0.0.1:<port>/trains/… in its signature and in the job; the station maps that name to
    // registry:5000 on the compose network.
    let reference = format!(
        "{registry_address}/trains/cohort-stats:{}",
        project.image_tag()
    );
    project.own_image_tag(&reference);
    let cohort_stats = publish_train(
        &workspace_root().join("trains/cohort-stats"),
        &reference,
        &[],
    );
    alice.sign(&cohort_stats);
    let login = [
        "--hub",
        hub_url.as_str(),
        "--researcher",
        "alice",
        "--key",
        alice.private_key.to_str().unwrap(),
    ];
    let with_login = |args: &[&str]| -> Vec<String> {
        args.iter()
            .chain(&login)
            .map(|arg| arg.to_string())
            .collect()
    };
    let researcher = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        pht(&researcher_dir, &args)
    };
    let submitted = researcher(with_login(&[
        "--json",
        "submit",
        &cohort_stats,
        "--route",
        &station_id,
        "--param",
        "group_by=sex",
    ]))
    .success();
    let job_id = submitted.json()["job_id"]
        .as_str()
        .expect("submit prints the job id")
        .to_string();
    eprintln!("job {job_id} submitted after {:.0?}", started.elapsed());

    let timeout = format!("{}s", WAIT.as_secs());
    let watched = researcher(with_login(&[
        "--json",
        "status",
        &job_id,
        "--watch",
        "--timeout",
        &timeout,
    ]));
    if watched.code != 0 || watched.json()["status"] != "completed" {
        panic!(
            "job {job_id} did not complete (exit {}):\n{}{}\n{}",
            watched.code,
            watched.stdout,
            watched.stderr,
            project.logs()
        );
    }
    eprintln!("job completed after {:.0?}", started.elapsed());

    // Fetched, decrypted and verified against the station's key, as the researcher does.
    let results_dir = root.path().join("results");
    let station_key = format!("{station_id}={}", key_dir.join("station.pub").display());
    researcher(with_login(&[
        "results",
        &job_id,
        "--out",
        results_dir.to_str().unwrap(),
        "--identity",
        alice.age_identity.to_str().unwrap(),
        "--station-key",
        &station_key,
    ]))
    .success();
    let counts = read(&results_dir.join(&station_id).join("outputs/counts.csv"));
    assert_eq!(counts, expected_counts());

    // Both daemons log one JSON object a line, which is what a log collector reads from Docker;
    // the hub's lines name the job it handed to the station.
    let station_log = project.service_logs("station");
    let hub_log = project.service_logs("hub");
    for (service, log) in [("station", &station_log), ("hub", &hub_log)] {
        let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(!lines.is_empty(), "the {service} logged nothing");
        for line in lines {
            let parsed: Result<serde_json::Value, _> = serde_json::from_str(line);
            assert!(
                parsed.is_ok_and(|value| value.is_object()),
                "a {service} log line is not a JSON object: {line}\n{log}"
            );
        }
    }
    assert!(
        hub_log.contains(&job_id) && hub_log.contains(&station_id),
        "the hub's log does not name job {job_id} at {station_id}:\n{hub_log}"
    );

    // Stopped as an operator stops it; the daemon exits cleanly on SIGTERM.
    let station_container = project.container_of("station");
    project.compose_ok(&["stop", "--timeout", "30", "station"]);
    let exit_code = docker_ok(&[
        "inspect",
        "--format",
        "{{.State.ExitCode}}",
        &station_container,
    ]);
    assert_eq!(
        exit_code, "0",
        "the station did not stop cleanly:\n{station_log}"
    );
    // The operator's tools on this machine read the state the container wrote, at the same path.
    pht_station(&station_config, &["audit", "verify"]).success();
    let runs = pht_station(&station_config, &["--json", "runs"])
        .success()
        .json();
    let delivered: Vec<&serde_json::Value> = runs
        .as_array()
        .expect("runs prints an array")
        .iter()
        .filter(|run| run["job"]["job_id"] == job_id.as_str() && run["delivered_at"].is_string())
        .collect();
    assert_eq!(delivered.len(), 1, "one delivered run of the job: {runs:#}");

    let leftovers = project.tear_down();
    assert!(
        leftovers.is_empty(),
        "docker-compose down and the clean-up left {leftovers:?}"
    );
    eprintln!("torn down after {:.0?}", started.elapsed());
}
