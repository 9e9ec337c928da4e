//! End to end with real Docker and a real registry: every hostile behaviour of the static
//! hostile train (`tests/hostile`) that applies to an interpreter, tried from Python
//! (`tests/hostile-py/hostile.py` on the project's Python base) — network, writes to `/data`,
//! `/` and `/input`, a fork bomb, a memory hog, reading `/proc/1/environ`, symlinks out of
//! `/output` — is contained exactly as it is for the static train: each mode runs in both, and
//! the test asserts the same outcome of both.

use std::path::{Path, PathBuf};

use pht_e2e::bases::{ensure_base, BaseKind};
use pht_e2e::routes::base_policy;
use pht_e2e::{
    hostile_train_dir, publish_train, require_docker, workspace_root, PolicySigner, Registry,
    Researcher, StationFixture,
};

/// A train directory for the Python hostile program on `base`, with the static hostile train's
/// contract (datasets, parameters, outputs, 64 MiB, 3 s) and Python as its entrypoint.
fn python_hostile_dir(parent: &Path, base: &str) -> PathBuf {
    let static_dir = hostile_train_dir(&parent.join("static-for-yaml"));
    let dir = parent.join("hostile-py");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        workspace_root().join("tests/hostile-py/hostile.py"),
        dir.join("hostile.py"),
    )
    .unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        format!("FROM {base}\nCOPY hostile.py /train/hostile.py\nUSER 65534:65534\nENTRYPOINT [\"python3\", \"/train/hostile.py\"]\n"),
    )
    .unwrap();
    let yaml = std::fs::read_to_string(static_dir.join("train.yaml"))
        .unwrap()
        .replace("name: hostile\n", "name: hostile-py\n")
        .replace(
            "entrypoint: [\"/hostile\"]",
            "entrypoint: [\"python3\", \"/train/hostile.py\"]",
        );
    std::fs::write(dir.join("train.yaml"), yaml).unwrap();
    dir
}

struct Run {
    record: serde_json::Value,
    report: String,
}

impl Run {
    /// The value of `key=` in the report, if it is there.
    fn value(&self, key: &str) -> Option<&str> {
        self.report
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{key}=")))
    }

    fn failed(&self, key: &str) -> bool {
        self.value(key).is_some_and(|v| v.starts_with("failed"))
    }
}

fn run(station: &StationFixture, train: &str, params: &[&str]) -> Run {
    let mut args = vec!["--json", "exec", train];
    for param in params {
        args.push("--param");
        args.push(param);
    }
    let finished = station.station(&args);
    assert!(
        finished.code == 0 || finished.code == 5,
        "the station must record the run, got exit {}: {}",
        finished.code,
        finished.stderr
    );
    let record = finished.json();
    let report =
        String::from_utf8_lossy(&station.output(record["run_id"].as_str().unwrap(), "report.txt"))
            .into_owned();
    Run { record, report }
}

/// Environment variables a train may see: the image's own and what Docker sets.
const EXPECTED_ENVIRONMENT: &[&str] = &[
    "PATH",
    "HOME",
    "HOSTNAME",
    "TMPDIR",
    "LANG",
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONUNBUFFERED",
    "MPLCONFIGDIR",
    "PIP_DISABLE_PIP_VERSION_CHECK",
];

#[test]
fn hostile_python_is_contained_exactly_as_the_static_train() {
    require_docker();
    let registry = Registry::start();
    let keys = tempfile::tempdir().unwrap();
    let alice = Researcher::generate(keys.path(), "alice");
    let base_signer = Researcher::generate(keys.path(), "bases-test");
    let base = ensure_base(BaseKind::Python, &registry, &base_signer.private_key);
    let scratch = tempfile::tempdir().unwrap();
    let static_train = publish_train(
        &hostile_train_dir(scratch.path()),
        &format!("{}/trains/hostile:static", registry.address()),
        &["--no-compile"],
    );
    alice.sign(&static_train);
    let python_train = publish_train(
        &python_hostile_dir(scratch.path(), &base.reference),
        &format!("{}/trains/hostile-py:1", registry.address()),
        &[],
    );
    alice.sign(&python_train);
    let signer = PolicySigner {
        name: "alice",
        public_key: &alice.public_key,
        datasets: "[cohort]",
        approval: "automatic",
    };
    let station = StationFixture::new(
        "hostile-py-station",
        "station-a",
        registry.address(),
        &[signer],
        &format!(
            "trusted_base_signers:\n  - name: bases-test\n    public_key: {}\n",
            base_signer.public_key.display()
        ),
    );
    let _ = base_policy;
    let both = |params: &[&str]| -> [Run; 2] {
        [
            run(&station, &static_train, params),
            run(&station, &python_train, params),
        ]
    };

    // Network: no loopback service, no route out, no name resolution.
    for run in both(&["mode=net-loopback", "port=7000"]) {
        assert!(run.failed("tcp_connect"), "{}", run.report);
    }
    for run in both(&["mode=net-tcp", "host=1.1.1.1", "port=80"]) {
        assert!(run.failed("tcp_connect"), "{}", run.report);
    }
    for run in both(&["mode=dns", "name=example.com"]) {
        assert!(run.failed("dns"), "{}", run.report);
    }

    // Writes: the dataset, the root file system and the input are read-only; /tmp is writable
    // scratch space from which nothing can be executed.
    for run in both(&["mode=write-data", "dataset=cohort", "file=cohort.csv"]) {
        for key in [
            "write_data_create",
            "write_data_append",
            "write_data_remove",
        ] {
            assert!(run.failed(key), "{key}: {}", run.report);
        }
    }
    for run in both(&["mode=write-root"]) {
        assert!(run.failed("write_root"), "{}", run.report);
        assert!(run.failed("write_input"), "{}", run.report);
        assert_eq!(run.value("tmp_write"), Some("ok"), "{}", run.report);
        assert!(run.failed("tmp_exec"), "{}", run.report);
    }
    let dataset =
        std::fs::read(workspace_root().join("examples/data/station-a/cohort/cohort.csv")).unwrap();
    assert!(!dataset.ends_with(b"pwned\n"), "the dataset was written to");

    // A fork bomb stops at the pids limit (64 in this policy), threads and processes alike.
    for run in both(&["mode=forkbomb"]) {
        let spawned: u64 = run
            .value("threads_spawned")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{}", run.report));
        assert!(spawned < 64, "{spawned} threads: {}", run.report);
        assert_ne!(run.value("thread_error"), Some("none"), "{}", run.report);
        assert!(run.failed("process_spawn"), "{}", run.report);
    }

    // A memory hog is killed at the train's 64 MiB and the run says why.
    for run in both(&["mode=memhog"]) {
        assert_eq!(run.record["status"], "failed", "{:#}", run.record);
        assert_eq!(
            run.record["outcome"]["oom_killed"], true,
            "{:#}",
            run.record
        );
        assert!(run.record["reasons"]
            .to_string()
            .contains("resources.memory"));
    }

    // /proc/1/environ is the train's own (its PID namespace): nothing of the station's.
    let station_environment: Vec<(String, String)> = std::env::vars()
        .filter(|(name, value)| !EXPECTED_ENVIRONMENT.contains(&name.as_str()) && value.len() >= 6)
        .collect();
    for run in both(&["mode=environ"]) {
        assert_eq!(run.value("environ_pid1"), Some("read"), "{}", run.report);
        for name in run.value("environ_names").unwrap().split(',') {
            assert!(
                EXPECTED_ENVIRONMENT.contains(&name),
                "the train sees `{name}`: {}",
                run.report
            );
        }
        let environment = run.value("environ").unwrap();
        assert!(!environment.contains("test-operator"), "{environment}");
        for (name, value) in &station_environment {
            assert!(
                !environment.contains(value.as_str()),
                "the station's {name} leaked: {environment}"
            );
        }
    }

    // Symlinks out of /output are recorded as links, never followed.
    for run in both(&["mode=symlink-passwd"]) {
        let outputs = run.record["outputs"].as_array().unwrap().clone();
        assert!(
            outputs.iter().any(|o| o["kind"] == "symlink"),
            "{:#}",
            run.record
        );
        let run_id = run.record["run_id"].as_str().unwrap();
        let collected: Vec<u8> = outputs
            .iter()
            .filter(|o| o["kind"] == "file")
            .flat_map(|o| station.output(run_id, o["path"].as_str().unwrap()))
            .collect();
        assert!(
            !String::from_utf8_lossy(&collected).contains("root:x:0:0"),
            "a symlink was followed"
        );
    }

    station.station(&["audit", "verify"]).success();
    let leftovers = pht_e2e::containers::docker(&[
        "ps",
        "-aq",
        "--filter",
        "label=org.pht.station=hostile-py-station",
    ]);
    assert_eq!(leftovers.stdout.trim(), "", "containers left behind");
}
