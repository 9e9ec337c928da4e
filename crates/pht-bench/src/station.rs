//! Station overhead: `pht-station exec` of the example train (signed, image already local)
//! against a plain `docker run --rm --network none` of the same image with the same dataset
//! mount, medians of repeated runs in the same bench run. Runs the release binaries against a
//! local `docker-registry`, as an operator would.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 10;

pub(crate) struct Registry(Child);

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub(crate) fn start_registry(dir: &Path) -> anyhow::Result<(Registry, String)> {
    let address = format!("127.0.0.1:{}", free_port()?);
    let config = dir.join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog: {{level: error, accesslog: {{disabled: true}}}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: {address}}}\n",
            dir.join("registry").display()
        ),
    )?;
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let registry = Registry(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(mut stream) = std::net::TcpStream::connect(&address) {
            let mut response = String::new();
            if stream.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n").is_ok()
                && stream.read_to_string(&mut response).is_ok()
                && response.contains(" 200 ")
            {
                return Ok((registry, address));
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    anyhow::bail!("docker-registry did not start on {address}")
}

pub(crate) fn run_ok(command: &mut Command) -> anyhow::Result<String> {
    let output = command.stdin(Stdio::null()).output()?;
    if !output.status.success() {
        anyhow::bail!(
            "{command:?} failed: {}{}",
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn median_seconds(mut run_once: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = Instant::now();
        run_once()?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[RUNS / 2])
}

pub fn overhead() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let bin = root.join("target/release");
    let pht = bin.join("pht");
    let pht_station = bin.join("pht-station");
    if !pht.exists() || !pht_station.exists() {
        println!(
            "station overhead: not measured — build the release binaries first (`make bench` does)"
        );
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let (_registry, address) = start_registry(dir.path())?;
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys)?;
    run_ok(
        Command::new(&pht)
            .args(["key", "generate", "--name", "bench", "--dir"])
            .arg(&keys)
            .env("PHT_KEY_PASSWORD", ""),
    )?;
    let reference = format!("{address}/trains/cohort-stats:bench");
    let built = run_ok(Command::new(&pht).current_dir(&root).args([
        "--json",
        "train",
        "build",
        "trains/cohort-stats",
        "--tag",
        &reference,
    ]))?;
    let image_id = serde_json::from_str::<serde_json::Value>(&built)?["image_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let pushed = run_ok(Command::new(&pht).args(["--json", "train", "push", &reference]))?;
    let pinned = serde_json::from_str::<serde_json::Value>(&pushed)?["pinned"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    run_ok(
        Command::new(&pht)
            .args(["train", "sign", &pinned, "--key"])
            .arg(keys.join("bench.key"))
            .env("PHT_KEY_PASSWORD", ""),
    )?;
    let recipient = std::fs::read_to_string(keys.join("bench.age.pub"))?
        .trim()
        .to_string();

    let dataset = root.join("examples/data/station-a/cohort").canonicalize()?;
    std::fs::write(
        dir.path().join("policy.yaml"),
        format!(
            "version: 1\ntrusted_signers:\n  - name: bench\n    public_key: {}\n    purposes: [\"aggregate statistics\"]\n    datasets: [cohort]\n    approval: automatic\nregistries:\n  - registry: \"{address}\"\n    repositories: [\"trains/*\"]\noutputs:\n  release: automatic\n",
            keys.join("bench.pub").display()
        ),
    )?;
    let config = dir.path().join("station.yaml");
    std::fs::write(
        &config,
        format!(
            "version: 1\nstation_id: bench\nkey_dir: station-keys\ndatasets:\n  cohort:\n    path: {}\nregistries:\n  - registry: \"{address}\"\npolicy: policy.yaml\nstate_dir: state\n",
            dataset.display()
        ),
    )?;
    run_ok(
        Command::new(&pht_station)
            .arg("--config")
            .arg(&config)
            .args(["keys", "init"]),
    )?;
    let exec = || {
        run_ok(
            Command::new(&pht_station)
                .arg("--config")
                .arg(&config)
                .args(["exec", &pinned, "--recipient", &recipient]),
        )
        .map(|_| ())
    };
    exec()?; // warm: dataset index cached, output-holder image present

    let station_seconds = median_seconds(exec)?;
    let outputs = dir.path().join("raw-output");
    let docker_seconds = median_seconds(|| {
        let _ = std::fs::remove_dir_all(&outputs);
        std::fs::create_dir_all(&outputs)?;
        std::fs::set_permissions(
            &outputs,
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )?;
        run_ok(
            Command::new("docker")
                .args(["run", "--rm", "--network", "none", "-v"])
                .arg(format!("{}:/data/cohort:ro", dataset.display()))
                .arg("-v")
                .arg(format!("{}:/output", outputs.display()))
                .arg(&image_id),
        )
        .map(|_| ())
    })?;
    let storage = if pht_docker::HostOutputs::probe(&dir.path().join("probe-outputs")).is_ok() {
        "/output a host tmpfs: the station runs as root beside dockerd"
    } else {
        "/output a tmpfs volume: the station cannot mount here"
    };
    println!(
        "station overhead: `pht-station exec` {:.0} ms vs `docker run --rm --network none` {:.0} ms (medians of {RUNS}); ratio {:.2}x (goal <= 1.25x); exec includes signature and policy checks, sandbox set-up, output checks, sealing and fsynced audit entries; {storage}",
        station_seconds * 1e3,
        docker_seconds * 1e3,
        station_seconds / docker_seconds
    );

    // Metrics cost: the same exec with metrics kept (`metrics:` configured) and without,
    // interleaved so drift on the machine lands on both.
    let metrics_config = dir.path().join("station-metrics.yaml");
    std::fs::write(
        &metrics_config,
        format!(
            "{}metrics:\n  listen: 127.0.0.1:{}\n",
            std::fs::read_to_string(&config)?,
            free_port()?
        ),
    )?;
    let exec_with = |config: &Path| -> anyhow::Result<f64> {
        let started = std::time::Instant::now();
        run_ok(
            Command::new(&pht_station)
                .arg("--config")
                .arg(config)
                .args(["exec", &pinned, "--recipient", &recipient]),
        )?;
        Ok(started.elapsed().as_secs_f64())
    };
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        off.push(exec_with(&config)?);
        on.push(exec_with(&metrics_config)?);
    }
    let median = |mut times: Vec<f64>| {
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    };
    let (off, on) = (median(off), median(on));
    println!(
        "station metrics cost: `pht-station exec` {:.0} ms with metrics kept vs {:.0} ms without (medians of {RUNS}, interleaved); {:+.1}% (goal <= 2%)",
        on * 1e3,
        off * 1e3,
        (on / off - 1.0) * 100.0
    );

    // The fallback a station in a container (or without root) uses: a tmpfs volume kept by a
    // holder container, with one spare slot kept ready.
    let volume_config = dir.path().join("station-volume.yaml");
    std::fs::write(
        &volume_config,
        format!(
            "{}docker:\n  output_storage: volume\n  warm_output_slots: 1\n",
            std::fs::read_to_string(&config)?
        ),
    )?;
    let exec_volume = || {
        run_ok(
            Command::new(&pht_station)
                .arg("--config")
                .arg(&volume_config)
                .args(["exec", &pinned, "--recipient", &recipient]),
        )
        .map(|_| ())
    };
    exec_volume()?; // warm: the first spare slot
    let volume_seconds = median_seconds(exec_volume)?;
    run_ok(
        Command::new(&pht_station)
            .arg("--config")
            .arg(&volume_config)
            .arg("cleanup"),
    )?;
    println!(
        "station overhead with the volume fallback (a station in a container): `pht-station exec` {:.0} ms, ratio {:.2}x against the same `docker run`",
        volume_seconds * 1e3,
        volume_seconds / docker_seconds
    );
    hub_job(&bin, dir.path(), &config, &keys, &pinned, docker_seconds)
}

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        std::thread::sleep(Duration::from_millis(300));
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A trivial one-station job end to end: signed submission to the hub, the daemon's long-poll
/// pickup, the full station pipeline, sealed delivery, until the hub reports the job completed.
fn hub_job(
    bin: &Path,
    dir: &Path,
    station_config: &Path,
    keys: &Path,
    pinned: &str,
    docker_seconds: f64,
) -> anyhow::Result<()> {
    use pht_api::v1::{JobState, RegisterResearcherRequest, RegisterStationRequest};
    use pht_api::{Credentials, HubClient};
    let port = free_port()?;
    let hub_url = format!("http://127.0.0.1:{port}");
    let token = "bench-admin-token-0123456789";
    let hub_config = dir.join("hub.yaml");
    std::fs::write(&hub_config, format!("listen: 127.0.0.1:{port}\nstate_dir: hub-state\nadmin_token: {token}\nlong_poll_max_wait_secs: 30\n"))?;
    let _hub = Process(
        Command::new(bin.join("pht-hub"))
            .arg("serve")
            .arg("--config")
            .arg(&hub_config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let runtime = tokio::runtime::Runtime::new()?;
    let admin = HubClient::new(
        &hub_url,
        Credentials::Admin {
            token: token.into(),
        },
    )?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while runtime.block_on(admin.health()).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "pht-hub did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let station_keys = dir.join("station-keys");
    runtime.block_on(
        admin.register_station(&RegisterStationRequest {
            id: "bench".into(),
            public_key_pem: std::fs::read_to_string(station_keys.join("station.pub"))?,
            age_recipient: std::fs::read_to_string(station_keys.join("station.age.pub"))?
                .trim()
                .to_string(),
        }),
    )?;
    runtime.block_on(admin.register_researcher(&RegisterResearcherRequest {
        id: "bench".into(),
        public_key_pem: std::fs::read_to_string(keys.join("bench.pub"))?,
    }))?;
    let mut config_text = std::fs::read_to_string(station_config)?;
    config_text.push_str(&format!("hub:\n  url: {hub_url}\n  poll_wait: 25s\n"));
    std::fs::write(station_config, config_text)?;
    let _daemon = Process(
        Command::new(bin.join("pht-station"))
            .arg("--config")
            .arg(station_config)
            .arg("run")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    std::thread::sleep(Duration::from_millis(500));

    let key = pht_core::SigningKey::from_pkcs8_pem(
        &std::fs::read_to_string(keys.join("bench.key"))?,
        None,
    )?;
    let researcher_key = pht_core::SigningKey::from_pkcs8_pem(
        &std::fs::read_to_string(keys.join("bench.key"))?,
        None,
    )?;
    let researcher = HubClient::new(
        &hub_url,
        Credentials::Researcher {
            researcher_id: "bench".into(),
            key: researcher_key,
        },
    )?;
    let recipient = std::fs::read_to_string(keys.join("bench.age.pub"))?
        .trim()
        .to_string();
    let (repository, digest) = pinned
        .split_once('@')
        .expect("pinned references carry a digest");
    const JOBS: usize = 5;
    let mut times = Vec::with_capacity(JOBS);
    for _ in 0..JOBS {
        let now = chrono::Utc::now();
        let job = pht_core::job::JobV1 {
            job_id: uuid::Uuid::new_v4(),
            issued_at: now,
            expires_at: now + chrono::Duration::hours(1),
            train: pht_core::job::TrainPin {
                repository: repository.to_string(),
                digest: digest.parse()?,
            },
            route: pht_core::job::Route {
                mode: pht_core::job::RouteMode::Parallel,
                stations: vec!["bench".into()],
            },
            parameters: Default::default(),
            recipient: recipient.clone(),
        };
        let start = Instant::now();
        runtime.block_on(researcher.submit_job(&job.sign(&key)))?;
        loop {
            let status = runtime.block_on(researcher.job_status(job.job_id))?;
            if status.status != JobState::Active {
                anyhow::ensure!(
                    status.status == JobState::Completed,
                    "bench job ended {:?}",
                    status.status
                );
                break;
            }
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(120),
                "bench job did not finish"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = times[JOBS / 2];
    println!(
        "hub job end to end (one station, submit -> completed with a sealed, delivered result): {:.0} ms vs `docker run` {:.0} ms (medians of {JOBS}); ratio {:.2}x (goal <= 1.5x)",
        median * 1e3,
        docker_seconds * 1e3,
        median / docker_seconds
    );
    Ok(())
}
