//! End to end, real Docker and registry: outputs that fail the disclosure checks are not
//! released until an operator overrides with a reason; outputs an operator must release wait;
//! released results are sealed so that Debian's `age` decrypts them and `pht results open`
//! verifies them, refusing a changed byte or another station's key; and a train that copies its
//! dataset to /output is blocked.

use std::collections::BTreeMap;
use std::process::Command;

use pht_e2e::{
    hostile_train_dir, pht, publish_train, require_docker, run, workspace_root, PolicySigner,
    Registry, Researcher, StationFixture,
};

struct World {
    registry: Registry,
    keys: tempfile::TempDir,
    alice: Researcher,
    cohort_stats: String,
    /// `<tag>-station`: tests running at once never share a station id (see station_pipeline).
    station_id: String,
}

impl World {
    fn new(tag: &str) -> World {
        require_docker();
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
        World {
            registry,
            keys,
            alice,
            cohort_stats,
            station_id: format!("{tag}-station"),
        }
    }

    /// Decrypts a sealed bundle with Debian's `age` and the researcher's identity into
    /// `dir/bundle.tar`, and returns that path.
    fn decrypt(&self, bundle: &str, dir: &std::path::Path) -> std::path::PathBuf {
        let tar_path = dir.join("bundle.tar");
        run(Command::new("age")
            .args(["-d", "-i"])
            .arg(&self.alice.age_identity)
            .arg("-o")
            .arg(&tar_path)
            .arg(bundle))
        .success();
        tar_path
    }

    fn station(&self, release: &str) -> StationFixture {
        self.station_with_outputs(&format!("outputs:\n  release: {release}\n"))
    }

    /// A station whose policy has `outputs` (YAML, with its `outputs:` line).
    fn station_with_outputs(&self, outputs: &str) -> StationFixture {
        let signer = PolicySigner {
            name: "alice",
            public_key: &self.alice.public_key,
            datasets: "[cohort]",
            approval: "automatic",
        };
        let station = StationFixture::new(
            &self.station_id,
            "station-a",
            self.registry.address(),
            &[signer],
            outputs,
        );
        station.station(&["keys", "init"]).success();
        station
    }
}

fn station_public_key(station: &StationFixture) -> String {
    station
        .dir
        .path()
        .join("keys/station.pub")
        .display()
        .to_string()
}

fn bundle_path(record: &serde_json::Value) -> String {
    record["sealed"]["path"]
        .as_str()
        .unwrap_or_else(|| panic!("run is not sealed: {record:#}"))
        .to_string()
}

#[test]
fn small_counts_are_blocked_until_an_operator_overrides_and_the_sealed_bundle_verifies() {
    let world = World::new("sealed");
    let station = world.station("automatic");
    let recipient = world.alice.age_recipient.clone();

    // The rare diagnosis has fewer than 10 patients: the checks fail, nothing is sealed.
    let record = station
        .station(&[
            "--json",
            "exec",
            &world.cohort_stats,
            "--param",
            "group_by=diagnosis",
            "--recipient",
            &recipient,
        ])
        .success()
        .json();
    let run_id = record["run_id"].as_str().unwrap().to_string();
    assert_eq!(record["checks"], "fail", "{record:#}");
    assert_eq!(record["output_decision"]["decision"], "blocked");
    assert!(record["sealed"].is_null());
    let report = station.station(&["outputs", "show", &run_id]).success();
    assert!(report.stdout.contains("fail"), "{}", report.stdout);
    assert!(
        !report.stdout.contains("rare-disease"),
        "the report must not show values: {}",
        report.stdout
    );

    // An override needs a reason; then the bundle is sealed and the override is on record.
    station
        .station(&["outputs", "release", &run_id, "--reason", ""])
        .code(3);
    let released = station
        .station(&[
            "--json",
            "outputs",
            "release",
            &run_id,
            "--reason",
            "suppressed by agreement with the data owner",
        ])
        .success()
        .json();
    assert_eq!(released["output_decision"]["overridden"], true);
    let bundle = bundle_path(&released);
    let events: Vec<String> = station
        .audit_of(&run_id)
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect();
    for event in [
        "outputs_checked",
        "outputs_blocked",
        "outputs_released",
        "sealed",
    ] {
        assert!(
            events.contains(&event.to_string()),
            "no {event} in {events:?}"
        );
    }

    // Debian's age decrypts it with the researcher's identity: a tar of report, provenance, outputs.
    let scratch = tempfile::tempdir().unwrap();
    let tar_path = world.decrypt(&bundle, scratch.path());
    let listing = run(Command::new("tar").arg("-tf").arg(&tar_path)).success();
    for member in ["report.json", "outputs/counts.csv", "provenance.dsse.json"] {
        assert!(
            listing.stdout.lines().any(|l| l == member),
            "{member} not in {}",
            listing.stdout
        );
    }
    assert!(
        !listing.stdout.contains("state.csv"),
        "state is never released as a result"
    );

    // pht results open verifies and extracts.
    let out = scratch.path().join("opened");
    let identity = world.alice.age_identity.display().to_string();
    let opened = pht(
        scratch.path(),
        &[
            "--json",
            "results",
            "open",
            &bundle,
            "--identity",
            &identity,
            "--station-key",
            &station_public_key(&station),
            "--out",
            out.to_str().unwrap(),
        ],
    )
    .success()
    .json();
    assert!(opened.to_string().contains(&run_id), "{opened:#}");
    let counts = std::fs::read_to_string(out.join("outputs/counts.csv")).unwrap();
    assert!(
        counts.starts_with("diagnosis,n\n") && counts.contains("rare-disease,"),
        "{counts}"
    );

    // One changed byte anywhere is refused.
    let mut tampered = std::fs::read(&bundle).unwrap();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x01;
    let tampered_path = scratch.path().join("tampered.age");
    std::fs::write(&tampered_path, tampered).unwrap();
    let tampered_path = tampered_path.display().to_string();
    let refused = pht(
        scratch.path(),
        &[
            "results",
            "open",
            &tampered_path,
            "--identity",
            &identity,
            "--station-key",
            &station_public_key(&station),
            "--out",
            scratch.path().join("t").to_str().unwrap(),
        ],
    );
    assert_ne!(refused.code, 0, "a tampered bundle opened");

    // Signed by another station's key: refused.
    let other = world.station("automatic");
    let refused = pht(
        scratch.path(),
        &[
            "results",
            "open",
            &bundle,
            "--identity",
            &identity,
            "--station-key",
            &station_public_key(&other),
            "--out",
            scratch.path().join("o").to_str().unwrap(),
        ],
    )
    .code(1);
    assert!(refused.stderr.contains("key"), "{}", refused.stderr);
    station.station(&["audit", "verify"]).success();
    let _ = &world.keys;
}

#[test]
fn passing_outputs_wait_for_a_manual_release_and_can_be_blocked() {
    let world = World::new("manual");
    let station = world.station("manual");
    let recipient = world.alice.age_recipient.clone();
    let first = station
        .station(&[
            "--json",
            "exec",
            &world.cohort_stats,
            "--recipient",
            &recipient,
        ])
        .success()
        .json();
    assert_eq!(first["checks"], "pass", "{first:#}");
    assert_eq!(first["output_decision"]["decision"], "withheld");
    let run_id = first["run_id"].as_str().unwrap();
    let released = station
        .station(&[
            "--json",
            "outputs",
            "release",
            run_id,
            "--reason",
            "looked at the table",
        ])
        .success()
        .json();
    assert_eq!(released["output_decision"]["overridden"], false);
    assert!(std::path::Path::new(&bundle_path(&released)).exists());

    let second = station
        .station(&[
            "--json",
            "exec",
            &world.cohort_stats,
            "--recipient",
            &recipient,
        ])
        .success()
        .json();
    let second_id = second["run_id"].as_str().unwrap();
    let blocked = station
        .station(&[
            "--json",
            "outputs",
            "block",
            second_id,
            "--reason",
            "not needed",
        ])
        .success()
        .json();
    assert_eq!(blocked["output_decision"]["decision"], "blocked");
    assert!(blocked["sealed"].is_null());
    // Blocked by an operator is final for `block`, and a release must override with a reason.
    station
        .station(&["outputs", "block", second_id, "--reason", "again"])
        .code(3);
}

#[test]
fn two_distinct_reviewers_release_where_the_policy_asks_for_two_and_both_are_signed_in() {
    let world = World::new("two-reviewers");
    let station = world.station("manual\n  reviewers_required: 2");
    let recipient = world.alice.age_recipient.clone();
    let exec = || {
        station
            .station(&[
                "--json",
                "exec",
                &world.cohort_stats,
                "--recipient",
                &recipient,
            ])
            .success()
            .json()
    };
    let review = |run_id: &str, operator: &str, action: &str, reason: &str| {
        station.station(&[
            "--json",
            "--operator",
            operator,
            "outputs",
            action,
            run_id,
            "--reason",
            reason,
        ])
    };
    let first = exec();
    let run_id = first["run_id"].as_str().unwrap().to_string();
    assert_eq!(first["output_decision"]["decision"], "withheld");

    // One review leaves the run withheld; the same operator again still counts once.
    let once = review(&run_id, "jansen", "release", "table checked")
        .success()
        .json();
    assert_eq!(once["output_decision"]["decision"], "withheld", "{once:#}");
    assert_eq!(once["reviews"].as_array().unwrap().len(), 1);
    assert!(once["sealed"].is_null());
    let twice = review(&run_id, "jansen", "release", "checked again").code(3);
    assert!(
        twice.stderr.contains("another operator must release it"),
        "{}",
        twice.stderr
    );

    // A second, distinct reviewer releases it: sealed, and both are in the signed provenance.
    let released = review(&run_id, "de-vries", "release", "agree")
        .success()
        .json();
    assert_eq!(
        released["output_decision"]["decision"], "released",
        "{released:#}"
    );
    let scratch = tempfile::tempdir().unwrap();
    let tar_path = world.decrypt(&bundle_path(&released), scratch.path());
    run(Command::new("tar")
        .arg("-xf")
        .arg(&tar_path)
        .arg("-C")
        .arg(scratch.path())
        .arg("provenance.dsse.json"))
    .success();
    let envelope: serde_json::Value = serde_json::from_slice(
        &std::fs::read(scratch.path().join("provenance.dsse.json")).unwrap(),
    )
    .unwrap();
    use base64::Engine as _;
    let statement: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(envelope["payload"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    let reviewers: Vec<&str> = statement["predicate"]["released"]["reviewers"]
        .as_array()
        .unwrap_or_else(|| panic!("no reviewers in {statement:#}"))
        .iter()
        .map(|reviewer| reviewer["by"].as_str().unwrap())
        .collect();
    assert_eq!(reviewers, ["operator:jansen", "operator:de-vries"]);
    let reviewed: Vec<serde_json::Value> = station
        .audit_of(&run_id)
        .into_iter()
        .filter(|entry| entry["event"] == "output_reviewed")
        .collect();
    assert_eq!(reviewed.len(), 2, "{reviewed:#?}");

    // A block by the second reviewer blocks it, whatever the first said.
    let second = exec();
    let second_id = second["run_id"].as_str().unwrap().to_string();
    review(&second_id, "jansen", "release", "fine").success();
    let blocked = review(
        &second_id,
        "de-vries",
        "block",
        "group too small for this purpose",
    )
    .success()
    .json();
    assert_eq!(blocked["output_decision"]["decision"], "blocked");
    assert!(blocked["sealed"].is_null());
}

#[test]
fn train_copying_its_dataset_to_output_is_blocked() {
    let world = World::new("leak");
    let scratch = tempfile::tempdir().unwrap();
    let hostile = publish_train(
        &hostile_train_dir(scratch.path()),
        &format!("{}/trains/hostile:leak", world.registry.address()),
        &["--no-compile"],
    );
    world.alice.sign(&hostile);
    let station = world.station("automatic");
    let record = station
        .station(&[
            "--json",
            "exec",
            &hostile,
            "--param",
            "mode=copy-data",
            "--param",
            "dataset=cohort",
            "--param",
            "file=cohort.csv",
            "--recipient",
            &world.alice.age_recipient,
        ])
        .success()
        .json();
    assert!(
        record["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["path"] == "cohort.csv"),
        "{record:#}"
    );
    assert_eq!(record["checks"], "fail", "{record:#}");
    assert_eq!(record["output_decision"]["decision"], "blocked");
    assert!(record["sealed"].is_null());
    let report = station
        .station(&[
            "--json",
            "outputs",
            "show",
            record["run_id"].as_str().unwrap(),
        ])
        .success()
        .json();
    assert!(
        report.to_string().contains("leak"),
        "the report names the leakage rule: {report}"
    );
}

/// The hostile program's `count` mode as a signed train: `counts.csv` (patients per value of a
/// column, leaving out the first `offset` rows) and its `report.txt`.
fn counts_train(registry: &str, alice: &Researcher, scratch: &std::path::Path) -> String {
    let train_dir = hostile_train_dir(scratch);
    std::fs::write(
        train_dir.join("train.yaml"),
        "name: counts\nversion: 0.1.0\ndescription: counts patients by region\nauthors: []\npurpose: aggregate statistics\ndatasets: [cohort]\n\
parameters:\n  - {name: mode, type: string, required: true}\n  - {name: dataset, type: string}\n  - {name: file, type: string}\n  - {name: name, type: string}\n  - {name: offset, type: integer}\n\
outputs:\n  - {path: counts.csv, kind: table, count_columns: [n]}\n  - {path: report.txt, kind: text}\n\
resources: {memory: 64MiB, wall_clock: 10s}\nentrypoint: [\"/hostile\"]\n",
    )
    .unwrap();
    let train = publish_train(
        &train_dir,
        &format!("{registry}/trains/counts:1"),
        &["--no-compile"],
    );
    alice.sign(&train);
    train
}

/// A cohort of `regions` (name, patients) in a new directory under `scratch`.
fn write_cohort(scratch: &std::path::Path, regions: &[(&str, usize)]) -> std::path::PathBuf {
    let data = scratch.join("cohort");
    std::fs::create_dir_all(&data).unwrap();
    let mut csv = String::from("patient_id,region\n");
    let mut patient = 0;
    for (region, n) in regions {
        for _ in 0..*n {
            csv.push_str(&format!("P{patient:03},{region}\n"));
            patient += 1;
        }
    }
    std::fs::write(data.join("cohort.csv"), csv).unwrap();
    data
}

/// `exec` of the counts train, counting by region and leaving out `offset` rows.
fn exec_counts(
    station: &StationFixture,
    train: &str,
    recipient: &str,
    offset: &str,
) -> serde_json::Value {
    station
        .station(&[
            "--json",
            "exec",
            train,
            "--recipient",
            recipient,
            "--param",
            "mode=count",
            "--param",
            "dataset=cohort",
            "--param",
            "file=cohort.csv",
            "--param",
            "name=region",
            "--param",
            &format!("offset={offset}"),
        ])
        .success()
        .json()
}

/// Points the station's `cohort` dataset at `data` (a directory this test wrote).
fn use_dataset(station: &StationFixture, data: &std::path::Path) {
    let example = workspace_root().join("examples/data/station-a/cohort");
    let config = std::fs::read_to_string(&station.config).unwrap();
    assert!(config.contains(&example.display().to_string()), "{config}");
    std::fs::write(
        &station.config,
        config.replace(&example.display().to_string(), &data.display().to_string()),
    )
    .unwrap();
}

#[test]
fn a_second_table_differing_from_a_released_one_by_three_patients_is_blocked_naming_the_first_run()
{
    let world = World::new("differencing");
    let scratch = tempfile::tempdir().unwrap();
    let train = counts_train(world.registry.address(), &world.alice, scratch.path());
    let station = world.station("manual");
    let data = write_cohort(scratch.path(), &[("north", 20), ("south", 20)]);
    use_dataset(&station, &data);
    let recipient = world.alice.age_recipient.clone();
    let exec = |offset: &str| exec_counts(&station, &train, &recipient, offset);

    // The first job: north 20, south 20, released by an operator (its text output needs an eye).
    let first = exec("0");
    assert_eq!(first["checks"], "review", "{first:#}");
    let first_id = first["run_id"].as_str().unwrap().to_string();
    station
        .station(&["outputs", "release", &first_id, "--reason", "looked at it"])
        .success();

    // A second job in a new station process (every `exec` starts one, reading the ledger from
    // the state directory): north 17, south 20. Each table alone passes; their difference is
    // the three patients left out.
    let second = exec("3");
    assert_eq!(second["checks"], "fail", "{second:#}");
    let report = station
        .station(&[
            "--json",
            "outputs",
            "show",
            second["run_id"].as_str().unwrap(),
        ])
        .success()
        .json();
    let checks = report["results"]["counts.csv"]["checks"]
        .as_array()
        .unwrap();
    let differencing = checks
        .iter()
        .find(|check| check["rule"] == "differencing")
        .unwrap_or_else(|| panic!("no differencing rule: {report:#}"));
    assert_eq!(differencing["status"], "fail", "{differencing:#}");
    let summary = differencing["summary"].as_str().unwrap();
    assert!(
        summary.contains(&first_id),
        "names the first run: {summary}"
    );
    let threshold = checks
        .iter()
        .find(|check| check["rule"] == "threshold")
        .unwrap();
    assert_eq!(threshold["status"], "pass", "each table alone passes");

    // A blocked second table never enters the ledger: a third identical to the first passes.
    let third = exec("0");
    assert_eq!(third["checks"], "review", "{third:#}");
}

#[test]
fn a_table_with_a_cell_of_four_is_released_suppressed_and_rounded_and_says_so() {
    let world = World::new("remedy");
    let scratch = tempfile::tempdir().unwrap();
    let train = counts_train(world.registry.address(), &world.alice, scratch.path());
    let station =
        world.station_with_outputs("outputs:\n  release: manual\n  remedy: suppress-and-round\n");
    let data = write_cohort(scratch.path(), &[("north", 4), ("south", 23), ("west", 12)]);
    use_dataset(&station, &data);
    let recipient = world.alice.age_recipient.clone();

    let record = exec_counts(&station, &train, &recipient, "0");
    // The copy passes; the run waits only for its free text to be looked at.
    assert_eq!(record["checks"], "review", "{record:#}");
    let run_id = record["run_id"].as_str().unwrap().to_string();
    let report = station
        .station(&["--json", "outputs", "show", &run_id])
        .success()
        .json();
    let checks = report["results"]["counts.csv"]["checks"]
        .as_array()
        .unwrap();
    let rounding = checks
        .iter()
        .find(|check| check["rule"] == "rounding")
        .unwrap_or_else(|| panic!("no rounding rule: {report:#}"));
    assert_eq!(rounding["count"], 3, "three cells changed: {rounding:#}");
    assert!(
        !report.to_string().contains("north,4"),
        "the report lists positions, never the original values"
    );
    let released = station
        .station(&[
            "--json",
            "outputs",
            "release",
            &run_id,
            "--reason",
            "read the log",
        ])
        .success()
        .json();
    let bundle = bundle_path(&released);

    let out = scratch.path().join("opened");
    let identity = world.alice.age_identity.display().to_string();
    let opened = pht(
        scratch.path(),
        &[
            "--json",
            "results",
            "open",
            &bundle,
            "--identity",
            &identity,
            "--station-key",
            &station_public_key(&station),
            "--out",
            out.to_str().unwrap(),
        ],
    )
    .success()
    .json();
    let counts = std::fs::read_to_string(out.join("outputs/counts.csv")).unwrap();
    assert_eq!(counts, "region,n\nnorth,<=7\nsouth,25\nwest,10\n");
    let transformed = opened["transformed"]
        .as_array()
        .unwrap_or_else(|| panic!("{opened:#}"));
    assert_eq!(transformed.len(), 1, "{opened:#}");
    assert_eq!(transformed[0]["path"], "counts.csv");
    assert!(
        transformed[0]["transformed"]
            .as_str()
            .unwrap()
            .starts_with("suppress-and-round"),
        "{opened:#}"
    );
    // And the human summary says which file the researcher got.
    let human = pht(
        scratch.path(),
        &[
            "results",
            "open",
            &bundle,
            "--identity",
            &identity,
            "--station-key",
            &station_public_key(&station),
            "--out",
            scratch.path().join("opened-again").to_str().unwrap(),
        ],
    )
    .success();
    assert!(
        human.stdout.contains("transformed  counts.csv"),
        "{}",
        human.stdout
    );
}

/// The first run of `station` whose record names the hub job `job_id`, once it has one.
fn run_of_job(
    station: &StationFixture,
    job_id: uuid::Uuid,
    daemons: &[pht_e2e::Daemon],
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let runs = station.station(&["--json", "runs"]).success().json();
        let found = runs.as_array().unwrap().iter().find(|run| {
            run["job"]["job_id"] == job_id.to_string()
                && run["output_decision"]["decision"].is_string()
        });
        if let Some(run) = found {
            return run.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no decided run of job {job_id}: {runs:#}\n{}",
            daemons
                .iter()
                .map(pht_e2e::Daemon::log)
                .collect::<Vec<_>>()
                .join("\n---\n")
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

#[test]
fn a_second_hub_job_differing_by_three_patients_is_blocked_after_the_station_restarts() {
    use pht_core::job::RouteMode;
    let world = pht_e2e::routes::HubWorld::with(
        "diff-job",
        1,
        "automatic",
        "outputs:\n  release: manual\n",
        false,
    );
    let scratch = tempfile::tempdir().unwrap();
    let train = counts_train(world.registry.address(), &world.alice, scratch.path());
    let station = &world.stations[0];
    let data = write_cohort(scratch.path(), &[("north", 20), ("south", 20)]);
    use_dataset(station, &data);
    let parameters = |offset: u64| {
        BTreeMap::from([
            ("mode".to_string(), serde_json::json!("count")),
            ("dataset".to_string(), serde_json::json!("cohort")),
            ("file".to_string(), serde_json::json!("cohort.csv")),
            ("name".to_string(), serde_json::json!("region")),
            ("offset".to_string(), serde_json::json!(offset)),
        ])
    };

    let daemons = world.daemons();
    let first_job = world.submit(RouteMode::Parallel, &train, parameters(0));
    let first = run_of_job(station, first_job, &daemons);
    assert_eq!(first["checks"], "review", "{first:#}");
    let first_id = first["run_id"].as_str().unwrap().to_string();
    station
        .station(&["outputs", "release", &first_id, "--reason", "looked at it"])
        .success();
    world.assert_completed(&world.wait_for_end_after_review(
        first_job,
        &daemons,
        std::time::Duration::from_secs(120),
    ));

    // The station restarts between the jobs: the ledger comes back from its state directory.
    drop(daemons);
    let daemons = world.daemons();
    let second_job = world.submit(RouteMode::Parallel, &train, parameters(3));
    let second = run_of_job(station, second_job, &daemons);
    assert_eq!(second["checks"], "fail", "{second:#}");
    assert_eq!(
        second["output_decision"]["decision"], "blocked",
        "{second:#}"
    );
    let report = station
        .station(&[
            "--json",
            "outputs",
            "show",
            second["run_id"].as_str().unwrap(),
        ])
        .success()
        .json();
    let differencing = report["results"]["counts.csv"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["rule"] == "differencing")
        .cloned()
        .unwrap_or_else(|| panic!("no differencing rule: {report:#}"));
    assert_eq!(differencing["status"], "fail", "{differencing:#}");
    assert!(
        differencing["summary"]
            .as_str()
            .unwrap()
            .contains(&first_id),
        "{differencing:#}"
    );
    drop(daemons);
}
