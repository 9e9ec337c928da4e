//! End to end, with real Docker, a real registry, a real hub and real station daemons: the
//! example trains in Python (`trains/cohort-stats-py`, pandas) and R (`trains/logistic-r`,
//! glm) built by `pht train build` on the project's bases (`pht base build`, once per machine),
//! pushed, signed, run on a parallel and on a sequential route, their sealed results fetched,
//! opened and checked against the same computation done here. Also: a train on the same base
//! pulls only its own layers; a requirements.txt without hashes is refused at build time.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use pht_core::job::RouteMode;
use pht_e2e::bases::{ensure_base, train_on_base, BaseImage, BaseKind};
use pht_e2e::routes::{base_policy, dataset, HubWorld, STATIONS};
use pht_e2e::{
    pht, publish_train, require_docker, workspace_root, PolicySigner, Registry, Researcher,
    StationFixture,
};

/// Rows of a CSV as maps of column → value.
fn rows(csv: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = csv.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split(',')
        .map(str::to_string)
        .collect();
    lines
        .filter(|line| !line.is_empty())
        .map(|line| {
            header
                .iter()
                .cloned()
                .zip(line.split(',').map(str::to_string))
                .collect()
        })
        .collect()
}

fn number(row: &BTreeMap<String, String>, column: &str) -> f64 {
    row[column]
        .parse()
        .unwrap_or_else(|_| panic!("`{column}` is no number in {row:?}"))
}

fn publish_on_base(
    world_dir: &Path,
    train: &str,
    base: &BaseImage,
    registry: &Registry,
    alice: &Researcher,
) -> String {
    let dir = train_on_base(
        &workspace_root().join("trains").join(train),
        &base.reference,
        world_dir,
    );
    let pinned = publish_train(
        &dir,
        &format!("{}/trains/{train}:test", registry.address()),
        &[],
    );
    alice.sign(&pinned);
    pinned
}

// ---------------------------------------------------------------------------------------------
// cohort-stats-py

const MIN_CELL: u64 = 10;

/// Patients and BMI sums by `column` in one dataset.
fn groups(csv: &str, column: &str) -> BTreeMap<String, (u64, f64)> {
    let mut groups: BTreeMap<String, (u64, f64)> = BTreeMap::new();
    for row in rows(csv) {
        let entry = groups.entry(row[column].clone()).or_default();
        entry.0 += 1;
        entry.1 += number(&row, "bmi");
    }
    groups
}

/// What cohort-stats-py releases at each stop: a parallel route counts each dataset alone; a
/// sequential one adds each stop's groups to the totals handed on, and leaves out (of the
/// release and of what it hands on) every group under the threshold.
fn expected_py(
    route: &[&str],
    column: &str,
    sequential: bool,
) -> Vec<BTreeMap<String, (u64, f64)>> {
    let mut carried: BTreeMap<String, (u64, f64)> = BTreeMap::new();
    let mut per_stop = Vec::new();
    for data in route {
        let mut totals = if sequential {
            carried.clone()
        } else {
            BTreeMap::new()
        };
        for (group, (n, sum)) in groups(&dataset(data), column) {
            let entry = totals.entry(group).or_default();
            entry.0 += n;
            entry.1 += sum;
        }
        totals.retain(|_, (n, _)| *n >= MIN_CELL);
        carried = totals.clone();
        per_stop.push(totals);
    }
    per_stop
}

fn assert_counts(csv: &str, column: &str, expected: &BTreeMap<String, (u64, f64)>, stop: &str) {
    let released = rows(csv);
    let groups: Vec<&str> = released.iter().map(|row| row[column].as_str()).collect();
    let expected_groups: Vec<&str> = expected.keys().map(String::as_str).collect();
    assert_eq!(groups, expected_groups, "{stop}: groups in\n{csv}");
    for row in &released {
        let (n, sum) = expected[&row[column]];
        assert_eq!(number(row, "n") as u64, n, "{stop}: {row:?}");
        let mean = sum / n as f64;
        assert!(
            (number(row, "mean_bmi") - mean).abs() <= 0.005 + 1e-9,
            "{stop}: mean BMI {} where the test computes {mean}",
            row["mean_bmi"]
        );
    }
}

#[test]
fn python_train_counts_and_mean_bmi_on_parallel_and_sequential_routes() {
    let world = HubWorld::new("py");
    let base = ensure_base(
        BaseKind::Python,
        &world.registry,
        &world.base_signer.private_key,
    );
    let scratch = tempfile::tempdir().unwrap();
    let train = publish_on_base(
        scratch.path(),
        "cohort-stats-py",
        &base,
        &world.registry,
        &world.alice,
    );
    let daemons = world.daemons();
    // By diagnosis: the rare diagnosis has fewer than ten patients at every station, so the
    // train itself must leave it out (the station would block the release otherwise).
    let parameters = BTreeMap::from([("group_by".to_string(), serde_json::json!("diagnosis"))]);

    let job_id = world.submit(RouteMode::Parallel, &train, parameters.clone());
    let status = world.wait_for_end(job_id, &daemons, Duration::from_secs(300));
    world.assert_completed(&status);
    let results = world.results(job_id, &scratch.path().join("parallel"));
    let expected = expected_py(&STATIONS, "diagnosis", false);
    for (stop, data) in STATIONS.iter().enumerate() {
        assert!(!results[*data]["counts.csv"].contains("rare-disease"));
        assert_counts(
            &results[*data]["counts.csv"],
            "diagnosis",
            &expected[stop],
            data,
        );
    }

    let job_id = world.submit(RouteMode::Sequential, &train, parameters);
    let status = world.wait_for_end(job_id, &daemons, Duration::from_secs(300));
    world.assert_completed(&status);
    let results = world.results(job_id, &scratch.path().join("sequential"));
    let expected = expected_py(&STATIONS, "diagnosis", true);
    for (stop, data) in STATIONS.iter().enumerate() {
        assert_counts(
            &results[*data]["counts.csv"],
            "diagnosis",
            &expected[stop],
            data,
        );
    }
    drop(daemons);
    for station in &world.stations {
        station.station(&["audit", "verify"]).success();
    }
}

// ---------------------------------------------------------------------------------------------
// logistic-r

/// The terms of `diabetes ~ age + bmi + sex + smoker`, as R names them.
const TERMS: [&str; 5] = ["(Intercept)", "age", "bmi", "sexM", "smokeryes"];

/// A logistic regression fitted by iteratively reweighted least squares, as glm does.
struct Fit {
    estimates: [f64; 5],
    std_errors: [f64; 5],
    n_obs: usize,
}

/// Inverts a symmetric positive definite 5×5 matrix (Gauss–Jordan).
fn invert(matrix: [[f64; 5]; 5]) -> [[f64; 5]; 5] {
    let mut left = matrix;
    let mut right = [[0.0; 5]; 5];
    for (i, row) in right.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    for col in 0..5 {
        let pivot = (col..5)
            .max_by(|a, b| left[*a][col].abs().total_cmp(&left[*b][col].abs()))
            .unwrap();
        left.swap(col, pivot);
        right.swap(col, pivot);
        let scale = left[col][col];
        for k in 0..5 {
            left[col][k] /= scale;
            right[col][k] /= scale;
        }
        for row in 0..5 {
            if row != col {
                let factor = left[row][col];
                for k in 0..5 {
                    left[row][k] -= factor * left[col][k];
                    right[row][k] -= factor * right[col][k];
                }
            }
        }
    }
    right
}

fn fit_logistic(csv: &str, outcome: &str) -> Fit {
    let data: Vec<([f64; 5], f64)> = rows(csv)
        .iter()
        .map(|row| {
            let x = [
                1.0,
                number(row, "age"),
                number(row, "bmi"),
                f64::from(u8::from(row["sex"] == "M")),
                f64::from(u8::from(row["smoker"] == "yes")),
            ];
            (x, f64::from(u8::from(row["diagnosis"] == outcome)))
        })
        .collect();
    let mut beta = [0.0; 5];
    let mut covariance = [[0.0; 5]; 5];
    for _ in 0..50 {
        let mut xtwx = [[0.0; 5]; 5];
        let mut xtwz = [0.0; 5];
        for (x, y) in &data {
            let eta: f64 = x.iter().zip(&beta).map(|(a, b)| a * b).sum();
            let mu = 1.0 / (1.0 + (-eta).exp());
            let weight = mu * (1.0 - mu);
            let z = eta + (y - mu) / weight;
            for i in 0..5 {
                xtwz[i] += x[i] * weight * z;
                for j in 0..5 {
                    xtwx[i][j] += x[i] * weight * x[j];
                }
            }
        }
        covariance = invert(xtwx);
        let mut next = [0.0; 5];
        for (i, value) in next.iter_mut().enumerate() {
            *value = (0..5).map(|j| covariance[i][j] * xtwz[j]).sum();
        }
        let change = next
            .iter()
            .zip(&beta)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        beta = next;
        if change < 1e-12 {
            break;
        }
    }
    let mut std_errors = [0.0; 5];
    for (i, se) in std_errors.iter_mut().enumerate() {
        *se = covariance[i][i].sqrt();
    }
    Fit {
        estimates: beta,
        std_errors,
        n_obs: data.len(),
    }
}

/// The R train's numbers are rounded to 6 decimals and glm stops at a relative deviance change
/// of 1e-8; the test's fit runs to convergence.
fn close(actual: f64, expected: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= 1e-4 * expected.abs().max(1.0),
        "{what}: the train says {actual}, the test computes {expected}"
    );
}

fn assert_coefficients(
    csv: &str,
    n: usize,
    estimates: &[f64; 5],
    std_errors: &[f64; 5],
    stop: &str,
) {
    let released = rows(csv);
    for row in &released {
        assert_eq!(number(row, "n") as usize, n, "{stop}: {row:?}");
    }
    let terms: Vec<&str> = released.iter().map(|row| row["term"].as_str()).collect();
    assert_eq!(terms, TERMS, "{stop}:\n{csv}");
    for (idx, row) in released.iter().enumerate() {
        close(
            number(row, "estimate"),
            estimates[idx],
            &format!("{stop} {} estimate", TERMS[idx]),
        );
        close(
            number(row, "std_error"),
            std_errors[idx],
            &format!("{stop} {} standard error", TERMS[idx]),
        );
    }
}

fn assert_model(csv: &str, fit: &Fit, stop: &str) {
    let model = rows(csv);
    assert_eq!(model.len(), 1, "{stop}:\n{csv}");
    let model = &model[0];
    assert_eq!(
        model["model"], "diabetes ~ age + bmi + sex + smoker",
        "{stop}"
    );
    assert_eq!(number(model, "n") as usize, fit.n_obs, "{stop}:\n{csv}");
    assert_eq!(
        number(model, "df_null") as usize,
        fit.n_obs - 1,
        "{stop}:\n{csv}"
    );
    assert_eq!(
        number(model, "df_residual") as usize,
        fit.n_obs - TERMS.len(),
        "{stop}:\n{csv}"
    );
}

#[test]
fn r_logistic_regression_on_parallel_and_sequential_routes() {
    let world = HubWorld::new("r");
    let base = ensure_base(BaseKind::R, &world.registry, &world.base_signer.private_key);
    let scratch = tempfile::tempdir().unwrap();
    let train = publish_on_base(
        scratch.path(),
        "logistic-r",
        &base,
        &world.registry,
        &world.alice,
    );
    let daemons = world.daemons();
    let fits: Vec<Fit> = STATIONS
        .iter()
        .map(|data| fit_logistic(&dataset(data), "diabetes"))
        .collect();
    let parameters = BTreeMap::from([("outcome".to_string(), serde_json::json!("diabetes"))]);

    let job_id = world.submit(RouteMode::Parallel, &train, parameters.clone());
    let status = world.wait_for_end(job_id, &daemons, Duration::from_secs(300));
    world.assert_completed(&status);
    let results = world.results(job_id, &scratch.path().join("parallel"));
    for (fit, data) in fits.iter().zip(STATIONS) {
        assert_coefficients(
            &results[data]["coefficients.csv"],
            fit.n_obs,
            &fit.estimates,
            &fit.std_errors,
            data,
        );
        assert_model(&results[data]["model.csv"], fit, data);
    }

    let job_id = world.submit(RouteMode::Sequential, &train, parameters);
    let status = world.wait_for_end(job_id, &daemons, Duration::from_secs(300));
    world.assert_completed(&status);
    let results = world.results(job_id, &scratch.path().join("sequential"));
    for (stop, data) in STATIONS.iter().enumerate() {
        assert_coefficients(
            &results[*data]["coefficients.csv"],
            fits[stop].n_obs,
            &fits[stop].estimates,
            &fits[stop].std_errors,
            data,
        );
        // Fixed-effect pooling over the stops so far: each estimate weighted by 1/SE².
        let mut pooled = [0.0; 5];
        let mut pooled_se = [0.0; 5];
        for term in 0..5 {
            let weights: Vec<f64> = fits[..=stop]
                .iter()
                .map(|f| f.std_errors[term].powi(-2))
                .collect();
            let total: f64 = weights.iter().sum();
            pooled[term] = fits[..=stop]
                .iter()
                .zip(&weights)
                .map(|(f, w)| w * f.estimates[term])
                .sum::<f64>()
                / total;
            pooled_se[term] = (1.0 / total).sqrt();
        }
        assert_coefficients(
            &results[*data]["pooled.csv"],
            fits[..=stop].iter().map(|fit| fit.n_obs).sum(),
            &pooled,
            &pooled_se,
            &format!("{data} pooled"),
        );
    }
    drop(daemons);
    for station in &world.stations {
        station.station(&["audit", "verify"]).success();
    }
}

// ---------------------------------------------------------------------------------------------
// Pulls and builds

/// The `pulled` audit event of a run.
fn pulled(station: &StationFixture, run_id: &str) -> serde_json::Value {
    station
        .audit_of(run_id)
        .into_iter()
        .find(|e| e["event"] == "pulled")
        .unwrap_or_else(|| panic!("no `pulled` event for {run_id}"))
}

/// The sizes of an image's layers in the registry, bottom first.
fn layer_sizes(pinned: &str) -> Vec<u64> {
    let reference: pht_core::ImageReference = pinned.parse().unwrap();
    let client = pht_registry::RegistryClient::new(Default::default());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fetched = runtime
        .block_on(client.get_manifest(&reference, &reference.manifest_selector()))
        .unwrap();
    let manifest = fetched.image_manifest(reference.registry()).unwrap();
    manifest.layers.iter().map(|layer| layer.size).collect()
}

#[test]
fn a_second_train_on_the_same_base_pulls_only_its_own_layers() {
    require_docker();
    let registry = Registry::start();
    let keys = tempfile::tempdir().unwrap();
    let alice = Researcher::generate(keys.path(), "alice");
    let base_signer = Researcher::generate(keys.path(), "bases-test");
    let base = ensure_base(BaseKind::Python, &registry, &base_signer.private_key);
    let scratch = tempfile::tempdir().unwrap();
    // Docker's build cache would give a train built by another test the same layers, which the
    // station would then find present; a comment of this test's own in requirements.txt (the
    // first file a Python train copies) makes every layer above the base new.
    let mark = |dir: &Path| {
        let path = dir.join("requirements.txt");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            format!("{text}# built for {}\n", uuid::Uuid::new_v4()),
        )
        .unwrap();
    };
    let first_dir = train_on_base(
        &workspace_root().join("trains/cohort-stats-py"),
        &base.reference,
        scratch.path(),
    );
    mark(&first_dir);
    let first = publish_train(
        &first_dir,
        &format!("{}/trains/cohort-stats-py:test", registry.address()),
        &[],
    );
    alice.sign(&first);
    // The second train is the scaffold `pht train init --lang python` writes, on the same base.
    pht(
        scratch.path(),
        &[
            "train",
            "init",
            "second-py",
            "--lang",
            "python",
            "--base",
            &base.reference,
        ],
    )
    .success();
    mark(&scratch.path().join("second-py"));
    // Its defaults (512 MiB, 5 minutes) are more than this station's policy gives.
    let second_yaml = scratch.path().join("second-py/train.yaml");
    let text = std::fs::read_to_string(&second_yaml).unwrap();
    std::fs::write(
        &second_yaml,
        text.replace("memory: 512MiB", "memory: 256MiB")
            .replace("wall_clock: 5m", "wall_clock: 2m"),
    )
    .unwrap();
    let second = publish_train(
        &scratch.path().join("second-py"),
        &format!("{}/trains/second-py:test", registry.address()),
        &[],
    );
    alice.sign(&second);
    // The station must fetch the trains (they were built here): only the base stays in Docker.
    for tag in ["cohort-stats-py", "second-py"] {
        pht_e2e::containers::docker_ok(&[
            "rmi",
            &format!("{}/trains/{tag}:test", registry.address()),
        ]);
    }

    let signer = PolicySigner {
        name: "alice",
        public_key: &alice.public_key,
        datasets: "[cohort]",
        approval: "automatic",
    };
    let station = StationFixture::new(
        "pull-station",
        "station-a",
        registry.address(),
        &[signer],
        &base_policy(&base_signer),
    );
    for (train, params) in [(&first, "group_by=sex"), (&second, "group_by=region")] {
        let record = station
            .station(&["--json", "exec", train, "--param", params])
            .success()
            .json();
        assert_eq!(record["status"], "succeeded", "{record:#}");
        let event = pulled(&station, record["run_id"].as_str().unwrap());
        let details = &event["details"];
        let sizes = layer_sizes(train);
        let own_bytes: u64 = sizes[1..].iter().sum();
        assert_eq!(details["base"], base.reference.as_str(), "{event:#}");
        assert_eq!(
            details["layers_present"], 1,
            "the base's layer is held already: {event:#}"
        );
        assert_eq!(details["layers_fetched"], sizes.len() - 1, "{event:#}");
        assert_eq!(details["bytes_fetched"], own_bytes, "{event:#}");
        assert!(
            own_bytes * 100 < base.compressed_bytes,
            "the train's own layers ({own_bytes} bytes) are not small beside the base's ({} bytes)",
            base.compressed_bytes
        );
        eprintln!(
            "{train}: fetched {own_bytes} bytes in {} layers; the base ({} bytes) was held",
            sizes.len() - 1,
            base.compressed_bytes
        );
    }
    station.station(&["audit", "verify"]).success();
}

#[test]
fn a_requirement_without_its_hash_is_refused_at_build_time() {
    let scratch = tempfile::tempdir().unwrap();
    let digest = format!("sha256:{}", "ab".repeat(32));
    let base = format!("127.0.0.1:5000/bases/python@{digest}");
    let dir = train_on_base(
        &workspace_root().join("trains/cohort-stats-py"),
        &base,
        scratch.path(),
    );
    std::fs::write(
        dir.join("requirements.txt"),
        "# pinned\ntabulate==0.9.0 --hash=sha256:024ca478df22e9340661486f85298cff5f6dcdba14f3813e8830015b9ed1948f\nrequests==2.32.3\n",
    )
    .unwrap();
    let refused = pht(
        &workspace_root(),
        &[
            "train",
            "build",
            dir.to_str().unwrap(),
            "--tag",
            "pht.local/unhashed:1",
        ],
    )
    .code(3);
    assert!(
        refused
            .stderr
            .contains("requirements.txt:3: `requests==2.32.3` has no --hash=sha256:")
            && refused
                .stderr
                .contains("pin every requirement with its hash"),
        "{}",
        refused.stderr
    );
    // Refused before Docker was asked: no image was built.
    let listed = pht_e2e::containers::docker(&["images", "-q", "pht.local/unhashed:1"]);
    assert_eq!(listed.stdout.trim(), "");
}
