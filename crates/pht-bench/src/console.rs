//! The operator console's response times over real HTTP on loopback (issue 13): the overview
//! and an output review page with 1,000 runs in the station's history, and the first and a
//! deep page of the run list as the history grows from 1,000 to 100,000 runs. Baseline: the
//! console's stylesheet from the same server in the same run (one request through the same
//! accept loop, session-free), so the ratios say what the screens themselves cost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pht_station::run_index::RunIndex;
use pht_station::store::{
    OutputDecision, OutputDecisionRecord, OutputSummary, RunRecord, RunStatus, TrainRef,
};
use pht_station::{DockerEngine, Station, StationConfig};

const PASSWORD: &str = "bench password 123";
const SAMPLES: usize = 41;

fn record(run_id: &str, status: RunStatus) -> RunRecord {
    let now = chrono::Utc::now();
    let digest = pht_core::Digest::of(run_id.as_bytes()).to_string();
    RunRecord {
        version: "pht.run.v1".into(),
        run_id: run_id.into(),
        created_at: now,
        updated_at: now,
        status,
        train: TrainRef {
            reference: format!("127.0.0.1:9/trains/cohort-stats@{digest}"),
            registry: "127.0.0.1:9".into(),
            repository: "trains/cohort-stats".into(),
            digest,
            name: Some("cohort-stats".into()),
            version: Some("1.0.0".into()),
            description: Some("Counts and mean age by group".into()),
            purpose: Some("aggregate statistics".into()),
            datasets: vec!["cohort".into()],
            resources: None,
        },
        job: None,
        signer: Some("researcher".into()),
        base: None,
        parameters: [("group_by".to_string(), serde_json::Value::from("sex"))].into(),
        decision: None,
        reasons: Vec::new(),
        approval: None,
        outcome: None,
        outputs: Vec::new(),
        refused_outputs: Vec::new(),
        checks: Some("pass".into()),
        output_decision: None,
        reviews: Vec::new(),
        remedied: Vec::new(),
        datasets: Vec::new(),
        recipient: None,
        sealed: None,
        state_paths: Vec::new(),
        state_checks: None,
        received_state: None,
        reported: None,
        delivered_at: None,
        policy_sha256: None,
        started_at: None,
        finished_at: None,
    }
}

/// Adds runs `from..to` to the history: finished runs written as the store lays them out
/// (record file and index line; the set-up skips the fsync of each, which is not measured).
fn add_history(state_dir: &std::path::Path, from: usize, to: usize) -> anyhow::Result<()> {
    let index = RunIndex::in_state_dir(state_dir);
    for n in from..to {
        let run_id = format!("run-{n:012x}");
        let dir = state_dir.join("runs").join(&run_id);
        std::fs::create_dir_all(&dir)?;
        let mut finished = record(&run_id, RunStatus::Succeeded);
        finished.output_decision = Some(OutputDecisionRecord {
            decision: OutputDecision::Released,
            by: "station".into(),
            at: finished.created_at,
            reason: Some("checks passed".into()),
            overridden: false,
        });
        std::fs::write(
            dir.join("record.json"),
            serde_json::to_vec_pretty(&finished)?,
        )?;
        index.append(&run_id)?;
    }
    Ok(())
}

/// One withheld run with a checked 40-row table and its report, as the pipeline leaves it.
fn withheld_run(station: &Station<DockerEngine>, run_id: &str) -> anyhow::Result<()> {
    let mut table = String::from("group,age_band,n\n");
    for row in 0..40 {
        table.push_str(&format!(
            "g{},{}-{},{}\n",
            row % 4,
            20 + row,
            21 + row,
            10 + row % 7 * 3
        ));
    }
    table.push_str("g9,99-100,4\n");
    let entries = [pht_checks::OutputEntry::regular(
        "counts.csv",
        table.clone().into_bytes(),
    )];
    let declared = [pht_checks::DeclaredOutput::table("counts.csv", ["n"])];
    let report = pht_checks::check_outputs(
        &entries,
        &declared,
        &[],
        &pht_checks::CheckConfig::default(),
    );
    let run_dir = station.store().run_dir(run_id);
    std::fs::create_dir_all(run_dir.join("outputs"))?;
    std::fs::write(run_dir.join("outputs/counts.csv"), &table)?;
    std::fs::write(run_dir.join("report.json"), serde_json::to_vec(&report)?)?;
    std::fs::write(run_dir.join("logs.txt"), "grouping 1000 rows\n".repeat(50))?;
    let mut withheld = record(run_id, RunStatus::Succeeded);
    withheld.checks = Some(report.status().to_string());
    withheld.outputs = vec![OutputSummary {
        path: "counts.csv".into(),
        kind: "file".into(),
        size: table.len() as u64,
        sha256: pht_core::Digest::of(table.as_bytes()).hex().to_string(),
    }];
    withheld.output_decision = Some(OutputDecisionRecord {
        decision: OutputDecision::Withheld,
        by: "station".into(),
        at: withheld.created_at,
        reason: Some("the policy releases by hand".into()),
        overridden: false,
    });
    station.store().save(&withheld)?;
    Ok(())
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

struct Session {
    client: reqwest::Client,
    base: String,
    cookie: String,
}

impl Session {
    /// Median milliseconds of GET `path` (after two warm-up requests).
    async fn median_ms(&self, path: &str) -> anyhow::Result<f64> {
        let mut samples = Vec::new();
        for i in 0..SAMPLES + 2 {
            let started = Instant::now();
            let response = self
                .client
                .get(format!("{}{path}", self.base))
                .header("cookie", &self.cookie)
                .send()
                .await?;
            anyhow::ensure!(
                response.status().is_success(),
                "{path}: {}",
                response.status()
            );
            response.bytes().await?;
            if i >= 2 {
                samples.push(started.elapsed().as_secs_f64() * 1000.0);
            }
        }
        Ok(median(samples))
    }
}

pub fn response_times() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(measure())
}

async fn measure() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    std::fs::create_dir_all(root.join("data/cohort"))?;
    std::fs::write(root.join("data/cohort/cohort.csv"), "id,age\n1,40\n")?;
    let researcher = pht_core::SigningKey::generate(pht_core::KeyAlgorithm::Ed25519);
    std::fs::write(
        root.join("researcher.pub"),
        researcher.public_key().to_pem(),
    )?;
    std::fs::write(
        root.join("policy.yaml"),
        "version: 1\ntrusted_signers:\n  - name: researcher\n    public_key: researcher.pub\n    purposes: [\"aggregate statistics\"]\n    datasets: [cohort]\n    approval: manual\nregistries:\n  - registry: \"127.0.0.1:9\"\n    repositories: [\"trains/*\"]\noutputs:\n  release: manual\n  reviewers_required: 2\n",
    )?;
    let config = StationConfig::from_yaml(
        "version: 1\nstation_id: bench-console\nkey_dir: keys\ndatasets:\n  cohort:\n    path: data/cohort\nregistries:\n  - registry: 127.0.0.1:9\npolicy: policy.yaml\nstate_dir: state\nconsole:\n  listen: 127.0.0.1:0\n",
        &root.join("station.yaml"),
    )?;
    let state_dir = config.state_dir.clone();
    let console_config = config.console.clone().expect("configured above");
    pht_station::operators::Operators::load(&state_dir)?.add(
        "reviewer",
        pht_station::operators::Role::Reviewer,
        PASSWORD,
    )?;
    let docker = pht_docker::connect().await?;
    let engine = DockerEngine::new(docker, "bench-console", 0, None);
    let station = Arc::new(Station::open(config, engine)?);

    // 1,000 runs: 980 finished, 10 awaiting approval, 10 withheld for review.
    add_history(&state_dir, 0, 980)?;
    for n in 0..10 {
        station.store().save(&record(
            &format!("run-a{n:011x}"),
            RunStatus::AwaitingApproval,
        ))?;
        withheld_run(&station, &format!("run-b{n:011x}"))?;
    }

    let (address_tx, address_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let served = {
        let station = station.clone();
        tokio::spawn(async move {
            pht_station::console::serve(
                station,
                &console_config,
                |address| {
                    let _ = address_tx.send(address);
                },
                async move {
                    let _ = stop_rx.await;
                },
            )
            .await
        })
    };
    let base = address_rx.await?.trim_end_matches('/').to_string();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()?;
    let login = client.get(format!("{base}/login")).send().await?;
    let login_cookie = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.split(';').next()?.strip_prefix("pht_login="))
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("no sign-in cookie"))?;
    let signed_in = client
        .post(format!("{base}/login"))
        .header("cookie", format!("pht_login={login_cookie}"))
        .form(&[
            ("csrf", login_cookie.as_str()),
            ("name", "reviewer"),
            ("password", PASSWORD),
            ("next", "/"),
        ])
        .send()
        .await?;
    let cookie = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let pair = v.split(';').next()?;
            pair.starts_with("pht_session=").then(|| pair.to_string())
        })
        .ok_or_else(|| anyhow::anyhow!("signing in failed: {}", signed_in.status()))?;
    let session = Session {
        client,
        base,
        cookie,
    };

    let baseline = session.median_ms("/static/console.css").await?;
    println!("console baseline: stylesheet {baseline:.2} ms median over loopback HTTP ({SAMPLES} requests)");
    let overview = session.median_ms("/").await?;
    let review = session.median_ms("/runs/run-b00000000000/review").await?;
    println!(
        "console overview, 1,000 runs: {overview:.2} ms median ({:.1}× baseline; goal < 50 ms)",
        overview / baseline
    );
    println!(
        "console output review (40-row table, findings), 1,000 runs: {review:.2} ms median ({:.1}× baseline; goal < 50 ms)",
        review / baseline
    );
    let mut first_at_1000 = None;
    let mut size = 1_000;
    for target in [1_000usize, 10_000, 100_000] {
        if target > size {
            let started = Instant::now();
            add_history(&state_dir, size, target)?;
            eprintln!(
                "  (history grown to {target} runs in {:.0} s)",
                started.elapsed().as_secs_f64()
            );
            size = target;
        }
        let first = session.median_ms("/runs").await?;
        let deep = session.median_ms("/runs?page=15").await?;
        let base_first = *first_at_1000.get_or_insert(first);
        println!(
            "console run list, {target} runs: first page {first:.2} ms, page 15 {deep:.2} ms median ({:.2}× the first page at 1,000 runs)",
            first / base_first
        );
    }
    let _ = stop_tx.send(());
    served.await??;
    Ok(())
}
