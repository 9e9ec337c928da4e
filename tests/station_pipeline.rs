//! End to end through `pht-station` with real Docker and a real registry: the example train
//! counts the synthetic cohort; every kind of refusal is recorded with its reason and audited;
//! approval waits in durable state; hostile trains are contained with the station still healthy;
//! and `audit verify` catches every kind of tampering.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use pht_e2e::{
    binary, count_by, hostile_train_dir, pht, publish_train, require_docker, run, workspace_root,
    Daemon, Hub, PolicySigner, Registry, Researcher, StationFixture,
};

struct World {
    registry: Registry,
    keys: tempfile::TempDir,
    alice: Researcher,
    mallory: Researcher,
    /// The example train, signed by alice.
    cohort_stats: String,
    /// `<tag>-station`: tests running at once (threads here, other binaries in other lanes)
    /// never share a station id, so never see or clean up each other's containers.
    station_id: String,
}

impl World {
    fn new(tag: &str) -> World {
        require_docker();
        let registry = Registry::start();
        let keys = tempfile::tempdir().unwrap();
        let alice = Researcher::generate(keys.path(), "alice");
        let mallory = Researcher::generate(keys.path(), "mallory");
        let reference = format!("{}/trains/cohort-stats:{tag}", registry.address());
        let cohort_stats = publish_train(
            &workspace_root().join("trains/cohort-stats"),
            &reference,
            &[],
        );
        alice.sign(&cohort_stats);
        World {
            registry,
            keys,
            alice,
            mallory,
            cohort_stats,
            station_id: format!("{tag}-station"),
        }
    }

    fn station(&self, datasets: &str, approval: &str) -> StationFixture {
        self.station_with_policy(datasets, approval, "")
    }

    /// A station with `extra_policy` appended to its policy (e.g. `outputs:` settings).
    fn station_with_policy(
        &self,
        datasets: &str,
        approval: &str,
        extra_policy: &str,
    ) -> StationFixture {
        let signer = PolicySigner {
            name: "alice",
            public_key: &self.alice.public_key,
            datasets,
            approval,
        };
        StationFixture::new(
            &self.station_id,
            "station-a",
            self.registry.address(),
            &[signer],
            extra_policy,
        )
    }
}

fn reasons(record: &serde_json::Value) -> String {
    record["reasons"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|x| x.as_str().unwrap_or("").to_string())
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .unwrap_or_default()
}

fn events(station: &StationFixture, run_id: &str) -> Vec<String> {
    station
        .audit_of(run_id)
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn example_train_counts_the_synthetic_cohort() {
    let world = World::new("counts");
    let station = world.station("[cohort]", "automatic");
    let checked = station.station(&["check-config"]).success();
    // Where /output lives is part of what an operator checks; which one depends on the host.
    assert!(
        checked.stdout.contains("/output       host tmpfs under")
            || checked.stdout.contains("/output       tmpfs volumes"),
        "{}",
        checked.stdout
    );

    let record = station
        .station(&[
            "--json",
            "exec",
            &world.cohort_stats,
            "--param",
            "group_by=sex",
        ])
        .success()
        .json();
    assert_eq!(record["status"], "succeeded", "{record:#}");
    assert_eq!(record["signer"], "alice");
    let run_id = record["run_id"].as_str().unwrap();

    let dataset =
        std::fs::read_to_string(workspace_root().join("examples/data/station-a/cohort/cohort.csv"))
            .unwrap();
    let expected: String = std::iter::once("sex,n\n".to_string())
        .chain(
            count_by(&dataset, "sex")
                .into_iter()
                .map(|(group, n)| format!("{group},{n}\n")),
        )
        .collect();
    assert_eq!(
        String::from_utf8(station.output(run_id, "counts.csv")).unwrap(),
        expected
    );

    let events = events(&station, run_id);
    for event in [
        "received",
        "verified",
        "policy_decided",
        "pulled",
        "run_started",
        "run_finished",
    ] {
        assert!(
            events.contains(&event.to_string()),
            "no `{event}` in {events:?}"
        );
    }
    let finished = station
        .audit_of(run_id)
        .into_iter()
        .find(|e| e["event"] == "run_finished")
        .unwrap();
    assert_eq!(finished["datasets"], serde_json::json!(["cohort"]));
    let counts_hash = finished["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["path"] == "counts.csv")
        .unwrap()["sha256"]
        .clone();
    assert_eq!(
        counts_hash,
        serde_json::json!(hex_sha256(expected.as_bytes()))
    );
    // The audit log holds hashes, never the counts themselves.
    let log = std::fs::read_to_string(station.audit_log()).unwrap();
    assert!(!log.contains("sex,n"), "audit log contains output data");
    station.station(&["audit", "verify"]).success();
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn assert_refused(station: &StationFixture, reference: &str, expected_rule: &str) {
    let finished = station.station(&["--json", "exec", reference]).code(1);
    let record = finished.json();
    assert_eq!(record["status"], "refused", "{record:#}");
    assert!(
        reasons(&record).contains(expected_rule),
        "expected `{expected_rule}` in: {}",
        reasons(&record)
    );
    let run_id = record["run_id"].as_str().unwrap();
    let refused: Vec<_> = station
        .audit_of(run_id)
        .into_iter()
        .filter(|e| e["event"] == "refused")
        .collect();
    assert_eq!(refused.len(), 1, "one refusal audited for {run_id}");
    let audited_reasons = refused[0]["reasons"].to_string();
    assert!(
        audited_reasons.contains(expected_rule),
        "audit reasons {audited_reasons} lack `{expected_rule}`"
    );
}

#[test]
fn each_refusal_is_recorded_with_its_reason_and_audited() {
    let world = World::new("refusals");
    let station = world.station("[cohort]", "automatic");
    let root = workspace_root();
    let address = world.registry.address();

    // Unsigned: the same train pushed to another repository, never signed.
    let unsigned = publish_train(
        &root.join("trains/cohort-stats"),
        &format!("{address}/trains/unsigned:1"),
        &[],
    );
    assert_refused(&station, &unsigned, "signature.present");

    // Signed by a key the policy does not trust.
    let by_mallory = publish_train(
        &root.join("trains/cohort-stats"),
        &format!("{address}/trains/by-mallory:1"),
        &[],
    );
    world.mallory.sign(&by_mallory);
    assert_refused(&station, &by_mallory, "signature.trusted");

    // Signer trusted, but not for this dataset.
    let narrow = world.station("[registry-extract]", "automatic");
    assert_refused(&narrow, &world.cohort_stats, "dataset.allowed");

    // Re-tagged after signing: the tag now names another image, which nobody signed …
    let scratch = tempfile::tempdir().unwrap();
    pht(scratch.path(), &["train", "init", "impostor"]).success();
    std::fs::write(
        scratch.path().join("impostor/train.yaml"),
        std::fs::read_to_string(scratch.path().join("impostor/train.yaml"))
            .unwrap()
            .replace("datasets: [cohort]", "datasets: [cohort]\n"),
    )
    .unwrap();
    let retagged_reference = format!("{address}/trains/cohort-stats:refusals");
    let impostor = publish_train(&scratch.path().join("impostor"), &retagged_reference, &[]);
    assert_refused(&station, &impostor, "signature.present");
    // … and copying alice's signature next to it does not help: it names the old digest.
    copy_signature(&world.cohort_stats, &impostor);
    assert_refused(&station, &impostor, "signature.valid");

    // A registry the policy does not name is refused before it is contacted.
    let elsewhere = format!(
        "127.0.0.1:9/trains/cohort-stats@{}",
        world.cohort_stats.split('@').nth(1).unwrap()
    );
    assert_refused(&station, &elsewhere, "registry.allowed");

    // A tag alone is refused: stations run digests.
    let finished = station
        .station(&["--json", "exec", &retagged_reference])
        .code(1);
    assert!(reasons(&finished.json()).contains("reference.digest"));

    station.station(&["audit", "verify"]).success();
    let _ = &world.keys;
}

fn copy_signature(from_pinned: &str, to_pinned: &str) {
    let from: pht_core::ImageReference = from_pinned.parse().unwrap();
    let to: pht_core::ImageReference = to_pinned.parse().unwrap();
    let client = pht_registry::RegistryClient::new(Default::default());
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let signature = client
            .get_manifest(&from, &from.digest().unwrap().cosign_signature_tag())
            .await
            .unwrap();
        client
            .put_manifest(
                &to,
                &to.digest().unwrap().cosign_signature_tag(),
                &signature.media_type,
                signature.bytes,
            )
            .await
            .unwrap();
    });
}

#[test]
fn approval_waits_in_durable_state_until_an_operator_decides() {
    let world = World::new("approval");
    let station = world.station("[cohort]", "manual");

    let waiting = station
        .station(&["--json", "exec", &world.cohort_stats])
        .code(10)
        .json();
    assert_eq!(waiting["status"], "awaiting_approval");
    let run_id = waiting["run_id"].as_str().unwrap().to_string();
    assert!(
        reasons(&waiting).contains("approval.signer"),
        "{}",
        reasons(&waiting)
    );

    // Each command is a new process: the run waits in the state directory, not in memory.
    let runs = station.station(&["--json", "runs"]).success().json();
    assert_eq!(
        runs.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] == "awaiting_approval")
            .count(),
        1
    );

    let approved = station
        .station(&[
            "--json",
            "approve",
            &run_id,
            "--reason",
            "reviewed the code",
        ])
        .success()
        .json();
    assert_eq!(approved["status"], "succeeded", "{approved:#}");
    assert_eq!(approved["approval"]["by"], "test-operator");
    assert!(!station.output(&run_id, "counts.csv").is_empty());
    // A decided run cannot be approved again.
    station.station(&["approve", &run_id]).code(3);

    let second = station
        .station(&["--json", "exec", &world.cohort_stats])
        .code(10)
        .json();
    let second_id = second["run_id"].as_str().unwrap();
    let rejected = station
        .station(&["--json", "reject", second_id, "--reason", "purpose unclear"])
        .success()
        .json();
    assert_eq!(rejected["status"], "rejected");
    let events = events(&station, second_id);
    assert!(
        events.contains(&"awaiting_approval".to_string())
            && events.contains(&"rejected".to_string()),
        "{events:?}"
    );
    assert!(
        station.output(second_id, "counts.csv").is_empty(),
        "a rejected run never ran"
    );
    station.station(&["audit", "verify"]).success();
}

fn hostile_report(station: &StationFixture, run_id: &str) -> String {
    String::from_utf8_lossy(&station.output(run_id, "report.txt")).into_owned()
}

fn run_hostile(station: &StationFixture, train: &str, params: &[&str]) -> serde_json::Value {
    let mut args = vec!["--json", "exec", train];
    for param in params {
        args.push("--param");
        args.push(param);
    }
    let finished = station.station(&args);
    assert!(
        finished.code == 0 || finished.code == 5,
        "station must record the run, got exit {}: {}",
        finished.code,
        finished.stderr
    );
    finished.json()
}

#[test]
fn hostile_trains_are_contained_and_the_station_stays_healthy() {
    let world = World::new("hostile");
    let scratch = tempfile::tempdir().unwrap();
    let hostile_dir = hostile_train_dir(scratch.path());
    let hostile = publish_train(
        &hostile_dir,
        &format!("{}/trains/hostile:1", world.registry.address()),
        &["--no-compile"],
    );
    world.alice.sign(&hostile);
    let station = world.station("[cohort]", "automatic");

    let spin = run_hostile(&station, &hostile, &["mode=spin"]);
    assert_eq!(spin["status"], "failed");
    assert_eq!(spin["outcome"]["timed_out"], true, "{spin:#}");
    assert!(reasons(&spin).contains("resources.wall_clock"));

    let memhog = run_hostile(&station, &hostile, &["mode=memhog"]);
    assert_eq!(memhog["outcome"]["oom_killed"], true, "{memhog:#}");
    assert!(reasons(&memhog).contains("resources.memory"));

    let forkbomb = run_hostile(&station, &hostile, &["mode=forkbomb"]);
    let report = hostile_report(&station, forkbomb["run_id"].as_str().unwrap());
    assert!(
        report.contains("process_spawn=failed") || report.contains("thread_error="),
        "{report}"
    );

    let loopback = run_hostile(&station, &hostile, &["mode=net-loopback", "port=7000"]);
    assert!(
        hostile_report(&station, loopback["run_id"].as_str().unwrap())
            .contains("tcp_connect=failed")
    );

    let write_data = run_hostile(
        &station,
        &hostile,
        &["mode=write-data", "dataset=cohort", "file=cohort.csv"],
    );
    let report = hostile_report(&station, write_data["run_id"].as_str().unwrap());
    assert!(
        report.contains("write_data_create=failed") && report.contains("write_data_append=failed"),
        "{report}"
    );
    let write_root = run_hostile(&station, &hostile, &["mode=write-root"]);
    assert!(
        hostile_report(&station, write_root["run_id"].as_str().unwrap())
            .contains("write_root=failed")
    );

    let symlink = run_hostile(&station, &hostile, &["mode=symlink-passwd"]);
    let outputs = symlink["outputs"].as_array().unwrap();
    assert!(
        outputs.iter().any(|o| o["kind"] == "symlink"),
        "{symlink:#}"
    );
    let collected: Vec<u8> = outputs
        .iter()
        .filter(|o| o["kind"] == "file")
        .flat_map(|o| {
            station.output(
                symlink["run_id"].as_str().unwrap(),
                o["path"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        !String::from_utf8_lossy(&collected).contains("root:x:0:0"),
        "a symlink was followed"
    );

    let socket = run_hostile(&station, &hostile, &["mode=docker-socket"]);
    let report = hostile_report(&station, socket["run_id"].as_str().unwrap());
    assert!(
        report.contains("docker_sock_var_run=absent") && report.contains("docker_sock_run=absent"),
        "{report}"
    );

    let whoami = run_hostile(&station, &hostile, &["mode=whoami"]);
    let report = hostile_report(&station, whoami["run_id"].as_str().unwrap());
    assert!(report.contains("Uid=65534 65534 65534 65534"), "{report}");
    assert!(
        report.contains("CapEff=0000000000000000") && report.contains("NoNewPrivs=1"),
        "{report}"
    );

    let big = run_hostile(&station, &hostile, &["mode=big-output", "bytes=4000000"]);
    assert_eq!(big["outcome"]["output_limit_reached"], true, "{big:#}");

    // The station is still healthy: a well-behaved train runs, and the log verifies.
    let ok = station
        .station(&["--json", "exec", &world.cohort_stats])
        .success()
        .json();
    assert_eq!(ok["status"], "succeeded");
    station.station(&["audit", "verify"]).success();
    let leftovers = pht_e2e::run(std::process::Command::new("docker").args([
        "ps",
        "-aq",
        "--filter",
        &format!("label=org.pht.station={}", world.station_id),
    ]));
    assert_eq!(leftovers.stdout.trim(), "", "containers left behind");
}

/// A change an attacker makes to the lines of the audit log.
type Tampering = Box<dyn FnOnce(&mut Vec<String>)>;

fn tamper(log: &Path, change: impl FnOnce(&mut Vec<String>)) {
    let mut lines: Vec<String> = std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    change(&mut lines);
    std::fs::write(
        log,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
}

#[test]
fn audit_verify_detects_each_kind_of_tampering() {
    let world = World::new("audit");
    let station = world.station("[cohort]", "automatic");
    station.station(&["exec", &world.cohort_stats]).success();
    station.station(&["exec", &world.cohort_stats]).success();
    station.station(&["audit", "verify"]).success();
    let log = station.audit_log();
    let original = std::fs::read(&log).unwrap();

    let station_id = world.station_id.clone();
    let cases: Vec<(&str, Tampering)> = vec![
        (
            "edited",
            Box::new(move |lines: &mut Vec<String>| {
                lines[3] = lines[3].replace(&station_id, "station-elsewhere")
            }),
        ),
        (
            "deleted",
            Box::new(|lines: &mut Vec<String>| {
                lines.remove(2);
            }),
        ),
        (
            "reordered",
            Box::new(|lines: &mut Vec<String>| lines.swap(1, 4)),
        ),
        (
            "truncated",
            Box::new(|lines: &mut Vec<String>| lines.truncate(lines.len() - 2)),
        ),
    ];
    for (name, change) in cases {
        tamper(&log, change);
        let finished = station.station(&["audit", "verify"]).code(1);
        assert!(
            finished.stdout.contains("BROKEN"),
            "{name}: {}",
            finished.stdout
        );
        // A station refuses to append to a broken log.
        let refused = station.station(&["exec", &world.cohort_stats]);
        assert_eq!(
            refused.code, 3,
            "{name}: station wrote to a broken log: {}",
            refused.stderr
        );
        std::fs::write(&log, &original).unwrap();
    }
    station.station(&["audit", "verify"]).success();
}

/// A tmpfs mounted at a station's state directory for one test, with an inode limit the test
/// moves (the tests run as root, as in CI).
struct SmallStateDisk {
    mount_point: std::path::PathBuf,
}

impl SmallStateDisk {
    fn mount(mount_point: &Path) -> SmallStateDisk {
        std::fs::create_dir_all(mount_point).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256m,nr_inodes=100000", "tmpfs"])
            .arg(mount_point)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mounting a tmpfs for the state directory needs root"
        );
        SmallStateDisk {
            mount_point: mount_point.to_path_buf(),
        }
    }

    /// Inodes in use now.
    fn inodes_used(&self) -> u64 {
        let output = Command::new("stat")
            .args(["-f", "--format=%c %d"])
            .arg(&self.mount_point)
            .output()
            .unwrap();
        let text = String::from_utf8(output.stdout).unwrap();
        let mut fields = text.split_whitespace().map(|n| n.parse::<u64>().unwrap());
        let (total, free) = (fields.next().unwrap(), fields.next().unwrap());
        total - free
    }

    /// Lets the file system hold `n_inodes` files and directories at most.
    fn limit_inodes(&self, n_inodes: u64) {
        let status = Command::new("mount")
            .arg("-o")
            .arg(format!("remount,nr_inodes={n_inodes}"))
            .arg(&self.mount_point)
            .status()
            .unwrap();
        assert!(status.success(), "remount with nr_inodes={n_inodes}");
    }
}

impl Drop for SmallStateDisk {
    fn drop(&mut self) {
        // Any /output tmpfs a run left below, then the state directory itself.
        let _ = Command::new("umount")
            .arg("--recursive")
            .arg("--lazy")
            .arg(&self.mount_point)
            .status();
    }
}

fn assert_no_run_left_running(station: &StationFixture, context: &str) {
    let runs = station.station(&["--json", "runs"]).success().json();
    for run in runs.as_array().unwrap() {
        assert_ne!(run["status"], "running", "{context}: {run:#}");
    }
}

/// The disk under the state directory fills at every point where the station creates a file:
/// the audit log's head, run records, input files, logs, outputs, the check report, the sealed
/// bundle. However far a run got, the audit log still verifies, no run is left `running`, and
/// once there is room again the next run succeeds and seals its result.
#[test]
fn a_full_disk_at_any_write_point_never_breaks_the_audit_log_or_leaves_a_run_running() {
    let world = World::new("disk-full");
    let station =
        world.station_with_policy("[cohort]", "automatic", "outputs:\n  release: automatic\n");
    station.station(&["keys", "init"]).success();
    let disk = SmallStateDisk::mount(&station.dir.path().join("state"));
    let exec = |station: &StationFixture| {
        station.station(&[
            "--json",
            "exec",
            &world.cohort_stats,
            "--recipient",
            &world.alice.age_recipient,
        ])
    };
    // One run with room, to learn how many inodes a run takes at its peak.
    let before = disk.inodes_used();
    let first = exec(&station).success().json();
    assert!(first["sealed"].is_object(), "{first:#}");
    let per_run = disk.inodes_used() - before + 4;

    let mut outcomes = std::collections::BTreeMap::<i32, u32>::new();
    for spare_inodes in 0..per_run {
        let used = disk.inodes_used();
        disk.limit_inodes(used + spare_inodes);
        let attempt = exec(&station);
        let context = format!("{spare_inodes} spare inodes: {}", attempt.stderr);
        assert!(!attempt.stderr.contains("panicked"), "{context}");
        *outcomes.entry(attempt.code).or_default() += 1;
        station.station(&["audit", "verify"]).success();
        assert_no_run_left_running(&station, &context);

        disk.limit_inodes(100_000);
        let after = exec(&station).success().json();
        assert_eq!(after["status"], "succeeded", "{context}: {after:#}");
        assert!(after["sealed"].is_object(), "{context}: {after:#}");
        station.station(&["audit", "verify"]).success();
    }
    // The sweep reached both runs that could not finish and runs that could.
    assert!(outcomes.keys().any(|code| *code != 0), "{outcomes:?}");
    assert!(outcomes.contains_key(&0), "{outcomes:?}");
}

/// Eight operator `exec`s and a daemon starting while they run, all on one state directory: the
/// daemon takes none of them for interrupted and removes none of their sandboxes; every run
/// succeeds; one audit chain holds every entry. A second daemon on the same state directory is
/// refused.
#[test]
fn eight_concurrent_execs_and_a_starting_daemon_share_one_state_dir() {
    let world = World::new("concurrent");
    let station = world.station("[cohort]", "automatic");
    station.station(&["keys", "init"]).success();
    let hub = Hub::start();
    let key_dir = station.dir.path().join("keys");
    hub.admin_cli(&[
        "add-station",
        &world.station_id,
        "--public-key",
        &key_dir.join("station.pub").display().to_string(),
        "--age-recipient",
        &key_dir.join("station.age.pub").display().to_string(),
    ])
    .success();
    let mut config = std::fs::read_to_string(&station.config).unwrap();
    config.push_str(&format!("hub:\n  url: {}\n  poll_wait: 1s\n", hub.url));
    std::fs::write(&station.config, config).unwrap();

    let execs: Vec<_> = (0..8)
        .map(|_| {
            let config = station.config.clone();
            let train = world.cohort_stats.clone();
            std::thread::spawn(move || {
                pht_e2e::pht_station(
                    &config,
                    &["--json", "exec", &train, "--param", "delay_seconds=3"],
                )
            })
        })
        .collect();
    // The daemon starts while the execs run: its start-up recovery and cleanup must leave them.
    std::thread::sleep(Duration::from_millis(1500));
    let daemon = Daemon::start(&station.config);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !daemon.log().contains("polling") {
        assert!(
            Instant::now() < deadline,
            "the daemon did not start: {}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let second = run(Command::new("timeout")
        .arg("30")
        .arg(binary("pht-station"))
        .arg("--config")
        .arg(&station.config)
        .arg("run"));
    assert_eq!(second.code, 3, "{}", second.stderr);
    assert!(
        second.stderr.contains("another pht-station daemon"),
        "{}",
        second.stderr
    );

    for exec in execs {
        let finished = exec.join().unwrap();
        assert_eq!(finished.code, 0, "{}", finished.stderr);
        assert_eq!(finished.json()["status"], "succeeded");
    }
    drop(daemon);
    station.station(&["audit", "verify"]).success();
    let entries = station
        .station(&["--json", "audit", "show"])
        .success()
        .json();
    let count = |event: &str| {
        entries
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == event)
            .count()
    };
    assert_eq!(count("run_finished"), 8);
    assert_eq!(count("run_interrupted"), 0);
    assert_eq!(count("daemon_started"), 1);
}

/// Work that could never finish never touches the data: a run whose results could not be
/// sealed (no recipient under automatic release, a recipient that is not one, no station key)
/// is refused before the policy, so nothing is pulled or run. Regression: the train ran, its
/// outputs were "released", then sealing failed and the run said `succeeded`.
#[test]
fn a_run_whose_results_could_never_be_sealed_is_refused_before_it_runs() {
    let world = World::new("unsealable");
    let station =
        world.station_with_policy("[cohort]", "automatic", "outputs:\n  release: automatic\n");
    let cases: [(&[&str], &str); 2] = [
        (&[], "seal.recipient"),
        (&["--recipient", "age1garbage"], "seal.recipient"),
    ];
    station.station(&["keys", "init"]).success();
    for (extra, rule) in cases {
        let mut args = vec!["--json", "exec", world.cohort_stats.as_str()];
        args.extend_from_slice(extra);
        let refused = station.station(&args).code(1).json();
        assert!(reasons(&refused).contains(rule), "{refused:#}");
        let events = events(&station, refused["run_id"].as_str().unwrap());
        assert!(
            !events.iter().any(|e| e == "pulled" || e == "run_started"),
            "{events:?}"
        );
    }
    // No station key: nothing could be signed, so nothing runs.
    std::fs::remove_file(station.dir.path().join("keys/station.key")).unwrap();
    let refused = station
        .station(&[
            "--json",
            "exec",
            &world.cohort_stats,
            "--recipient",
            &world.alice.age_recipient,
        ])
        .code(1)
        .json();
    assert!(
        reasons(&refused).contains("seal.station_key"),
        "{refused:#}"
    );
}

/// What a failed run wrote is deleted once its record holds the hashes (policy
/// `retention.failed_outputs`, default `delete`), and the deletion is audited; `keep` keeps it.
#[test]
fn a_failed_runs_outputs_are_deleted_unless_the_policy_keeps_them() {
    let world = World::new("retention");
    let scratch = tempfile::tempdir().unwrap();
    let hostile = publish_train(
        &hostile_train_dir(scratch.path()),
        &format!("{}/trains/hostile:retention", world.registry.address()),
        &["--no-compile"],
    );
    world.alice.sign(&hostile);
    for (retention, kept) in [("", false), ("retention:\n  failed_outputs: keep\n", true)] {
        let station = world.station_with_policy("[cohort]", "automatic", retention);
        // An unknown mode: the train writes its report.txt to /output, then exits 2.
        let failed = run_hostile(&station, &hostile, &["mode=fail-after-writing"]);
        assert_eq!(failed["status"], "failed", "{failed:#}");
        let run_id = failed["run_id"].as_str().unwrap();
        let outputs_dir = station
            .dir
            .path()
            .join("state/runs")
            .join(run_id)
            .join("outputs");
        assert_eq!(outputs_dir.join("report.txt").exists(), kept, "{failed:#}");
        let deleted = events(&station, run_id).contains(&"outputs_deleted".to_string());
        assert_eq!(deleted, !kept);
    }
}

/// A train built by `pht train build` on a base that `pht train push` and `pht train sign`
/// published under a base signer's key: the station checks the base against the train's layers,
/// runs it where the policy allows bases by that signer, names the base in the run record, the
/// `verified` and `pulled` events and `show`, and refuses it, before pulling or running
/// anything, where the policy allows another base only.
#[test]
fn a_train_on_a_signed_base_runs_only_where_the_policy_allows_that_base() {
    let world = World::new("on-base");
    let address = world.registry.address();
    let root = workspace_root();

    // The base: the example train's image (its static binary, one layer) in a base repository,
    // signed with the base signer's key.
    let base_signer = Researcher::generate(world.keys.path(), "bases-2026");
    let base = publish_train(
        &root.join("trains/cohort-stats"),
        &format!("{address}/bases/cohort-stats:on-base"),
        &[],
    );
    base_signer.sign(&base);

    // The train: FROM the base by digest, adding its own layer; `pht train build` fetches the
    // base from the registry and records it in the train manifest.
    let scratch = tempfile::tempdir().unwrap();
    let train_dir = scratch.path().join("on-base");
    std::fs::create_dir_all(&train_dir).unwrap();
    let train_yaml = std::fs::read_to_string(root.join("trains/cohort-stats/train.yaml"))
        .unwrap()
        .replace("name: cohort-stats", "name: counts-on-base");
    std::fs::write(train_dir.join("train.yaml"), train_yaml).unwrap();
    std::fs::write(
        train_dir.join("Dockerfile"),
        format!("FROM {base}\nCOPY train.yaml /etc/pht/train.yaml\nUSER 65534:65534\nENTRYPOINT [\"/cohort-stats\"]\n"),
    )
    .unwrap();
    let train = publish_train(
        &train_dir,
        &format!("{address}/trains/counts-on-base:1"),
        &[],
    );
    world.alice.sign(&train);

    let base_policy = |allowed: &str| {
        format!(
            "trusted_base_signers:\n  - name: bases-2026\n    public_key: {}\nbase_images:\n  required: true\n  allowed:\n    - {allowed}\n",
            base_signer.public_key.display()
        )
    };
    let station =
        world.station_with_policy("[cohort]", "automatic", &base_policy("signer: bases-2026"));
    let record = station
        .station(&["--json", "exec", &train, "--param", "group_by=sex"])
        .success()
        .json();
    assert_eq!(record["status"], "succeeded", "{record:#}");
    assert_eq!(
        record["base"],
        serde_json::json!({"reference": base, "signer": "bases-2026"})
    );
    let run_id = record["run_id"].as_str().unwrap();
    assert!(!station.output(run_id, "counts.csv").is_empty());
    let audit = station.audit_of(run_id);
    let event = |name: &str| {
        audit
            .iter()
            .find(|e| e["event"] == name)
            .unwrap_or_else(|| panic!("no `{name}` event"))
            .clone()
    };
    assert_eq!(event("verified")["details"]["base"], base.as_str());
    assert_eq!(event("verified")["details"]["base_signer"], "bases-2026");
    assert_eq!(event("pulled")["details"]["base"], base.as_str());
    let shown = station.station(&["show", run_id]).success();
    assert!(
        shown
            .stdout
            .contains(&format!("  base      {base} (signed by bases-2026)")),
        "{}",
        shown.stdout
    );

    // Another station allows one other base, by digest: refused before anything is pulled.
    let other_digest = format!("sha256:{}", "0".repeat(64));
    let narrow = world.station_with_policy(
        "[cohort]",
        "automatic",
        &base_policy(&format!("digest: {other_digest}")),
    );
    assert_refused(&narrow, &train, "base.allowed");
    let refused = narrow
        .station(&["--json", "runs"])
        .success()
        .json()
        .as_array()
        .unwrap()[0]
        .clone();
    assert!(
        reasons(&refused).contains(&format!(
            "actual `{}`, signed by `bases-2026`",
            base.split('@').nth(1).unwrap()
        )),
        "{}",
        reasons(&refused)
    );
    let events = events(&narrow, refused["run_id"].as_str().unwrap());
    assert!(
        !events.iter().any(|e| e == "pulled" || e == "run_started"),
        "{events:?}"
    );
    narrow.station(&["audit", "verify"]).success();
    station.station(&["audit", "verify"]).success();
}

/// A train (the hostile program's `sum` mode) whose `sums.csv` declares itself the sum of `cost`
/// by `region` over the cohort, so the station recomputes its cells.
fn magnitude_train_dir(parent: &Path) -> std::path::PathBuf {
    let dir = hostile_train_dir(parent);
    std::fs::write(
        dir.join("train.yaml"),
        "name: costs\nversion: 0.1.0\ndescription: sums costs by region\nauthors: []\npurpose: aggregate statistics\ndatasets: [cohort]\n\
parameters:\n  - {name: mode, type: string, required: true}\n  - {name: dataset, type: string}\n  - {name: file, type: string}\n  - {name: name, type: string}\n  - {name: column, type: string}\n  - {name: offset, type: integer}\n\
outputs:\n  - path: sums.csv\n    kind: table\n    aggregates: {dataset: cohort, column: cost, function: sum, group_by: [region]}\n  - {path: report.txt, kind: text}\n\
resources: {memory: 64MiB, wall_clock: 10s}\nentrypoint: [\"/hostile\"]\n",
    )
    .unwrap();
    dir
}

/// Every rule result in a run's check report: `(output, rule, status, count, summary)`.
fn rule_results(
    station: &StationFixture,
    run_id: &str,
) -> Vec<(String, String, String, u64, String)> {
    let report = station
        .station(&["--json", "outputs", "show", run_id])
        .success()
        .json();
    let mut found = Vec::new();
    for (output, result) in report["results"].as_object().expect("results by output") {
        for check in result["checks"].as_array().unwrap() {
            found.push((
                output.clone(),
                check["rule"].as_str().unwrap().to_string(),
                check["status"].as_str().unwrap().to_string(),
                check["count"].as_u64().unwrap(),
                check["summary"].as_str().unwrap().to_string(),
            ));
        }
    }
    found
}

#[test]
fn a_magnitude_table_is_recomputed_from_the_dataset_a_dominated_cell_fails_and_a_misdeclared_one_is_named(
) {
    let world = World::new("magnitude");
    let scratch = tempfile::tempdir().unwrap();
    let train = publish_train(
        &magnitude_train_dir(scratch.path()),
        &format!("{}/trains/costs:1", world.registry.address()),
        &["--no-compile"],
    );
    world.alice.sign(&train);
    let station = world.station("[cohort]", "automatic");
    // The station's cohort: twelve patients in the north with equal costs; twelve in the south,
    // one of whom makes up nearly all of the region's total.
    let data = scratch.path().join("costs");
    std::fs::create_dir_all(&data).unwrap();
    let mut csv = String::from("patient_id,region,cost\n");
    for patient in 0..12 {
        csv.push_str(&format!("N{patient:03},north,100\n"));
    }
    for patient in 0..11 {
        csv.push_str(&format!("S{patient:03},south,10\n"));
    }
    csv.push_str("S011,south,5000\n");
    std::fs::write(data.join("cohort.csv"), csv).unwrap();
    let example = workspace_root().join("examples/data/station-a/cohort");
    let config = std::fs::read_to_string(&station.config).unwrap();
    assert!(config.contains(&example.display().to_string()));
    std::fs::write(
        &station.config,
        config.replace(&example.display().to_string(), &data.display().to_string()),
    )
    .unwrap();

    let params = [
        "mode=sum",
        "dataset=cohort",
        "file=cohort.csv",
        "name=region",
        "column=cost",
    ];
    let dominated = run_hostile(&station, &train, &params);
    assert_eq!(dominated["checks"], "fail", "{dominated:#}");
    let results = rule_results(&station, dominated["run_id"].as_str().unwrap());
    let of = |rule: &str| {
        results
            .iter()
            .find(|(output, found, ..)| output == "sums.csv" && found == rule)
            .unwrap_or_else(|| panic!("no {rule} for sums.csv in {results:#?}"))
            .clone()
    };
    assert_eq!(of("aggregate").2, "pass", "{results:#?}");
    let dominance = of("dominance");
    assert_eq!(
        (dominance.2.as_str(), dominance.3),
        ("fail", 1),
        "{results:#?}"
    );
    assert_eq!(of("threshold").2, "pass", "{results:#?}");
    // The report names positions and rules, never the costs.
    assert!(!format!("{results:?}").contains("5110"), "{results:#?}");

    let mut misdeclared_params = params.to_vec();
    misdeclared_params.push("offset=7");
    let misdeclared = run_hostile(&station, &train, &misdeclared_params);
    assert_eq!(misdeclared["checks"], "fail", "{misdeclared:#}");
    let results = rule_results(&station, misdeclared["run_id"].as_str().unwrap());
    let mismatch = results
        .iter()
        .find(|(output, rule, ..)| output == "sums.csv" && rule == "aggregate")
        .unwrap_or_else(|| panic!("no aggregate rule in {results:#?}"));
    assert_eq!(
        (mismatch.2.as_str(), mismatch.3),
        ("fail", 1),
        "{results:#?}"
    );
    assert!(
        mismatch.4.contains("do not match the sum of `cost`"),
        "{}",
        mismatch.4
    );
}
