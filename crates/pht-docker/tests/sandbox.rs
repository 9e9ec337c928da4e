//! End-to-end tests of the sandbox against the real Docker engine.
//!
//! Owns: building the hostile test program (`tests/hostile`) as a static binary and a
//! `FROM scratch` image of it, a Docker network with a TCP listener for the network scenarios,
//! the scenarios themselves (each runs one attack through [`DockerSandbox`] and checks that it
//! was contained and that nothing of the run is left in Docker), and removing everything it
//! created once the last scenario is done.
//!
//! It runs under its own small runner (`harness = false` in Cargo.toml) rather than libtest, so
//! that the shared image, network and listener are built once and removed after the last
//! scenario; the scenarios run concurrently. Name filters work as with libtest
//! (`cargo test -p pht-docker --test sandbox -- forkbomb`). It never skips: without Docker, or
//! without the static toolchain, it fails and says why.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context};
use bollard::models::{ContainerCreateBody, HostConfig, NetworkCreateRequest, VolumeCreateRequest};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateContainerOptionsBuilder, ListContainersOptionsBuilder,
    ListVolumesOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveImageOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use pht_docker::sandbox::StaleCleanup;
use pht_docker::{CollectedKind, DockerSandbox, HostOutputs, RunLimits, RunOutcome, RunSpec};

/// Label on everything this suite creates outside the sandbox (images, network, helper
/// containers), so teardown can find it all.
const LABEL_TEST_SESSION: &str = "org.pht.test-session";
const DATASET_NAME: &str = "cohort";
const DATASET_FILE: &str = "rows.csv";
/// A marker that exists only in the synthetic dataset: it must never show up in outputs or logs.
const DATASET_SECRET: &str = "SECRET-PATIENT-ROW-4711";
const LISTENER_PORT: u16 = 7000;
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(240);
const CONCURRENT_SCENARIOS: usize = 4;

type ScenarioFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

struct Scenario {
    name: &'static str,
    body: fn(Arc<Suite>) -> ScenarioFuture,
}

macro_rules! scenario {
    ($name:ident) => {
        Scenario {
            name: stringify!($name),
            body: |suite| Box::pin($name(suite)),
        }
    };
}

fn scenarios() -> Vec<Scenario> {
    vec![
        scenario!(well_behaved_train_reads_its_dataset_and_its_outputs_are_collected),
        scenario!(exit_code_and_stderr_of_a_failing_train_are_reported),
        scenario!(tcp_to_a_container_on_a_docker_network_is_unreachable),
        scenario!(tcp_to_the_hosts_loopback_is_unreachable),
        scenario!(dns_resolution_fails),
        scenario!(forkbomb_hits_the_pids_limit),
        scenario!(memory_hog_is_oom_killed),
        scenario!(spinning_train_is_killed_at_the_wall_clock),
        scenario!(datasets_are_read_only),
        scenario!(root_filesystem_and_params_are_read_only_and_tmp_is_noexec),
        scenario!(big_output_is_cut_at_the_output_cap),
        scenario!(symlink_to_etc_passwd_is_recorded_not_followed),
        scenario!(symlink_to_a_dataset_file_is_recorded_not_followed),
        scenario!(docker_socket_is_absent),
        scenario!(train_runs_as_nobody_without_capabilities),
        scenario!(log_flood_is_capped_and_marked_truncated),
        scenario!(volumes_declared_by_the_image_get_a_capped_tmpfs),
        scenario!(a_missing_image_fails_and_leaves_nothing),
        scenario!(a_missing_entrypoint_exits_127_and_leaves_nothing),
        scenario!(an_unknown_runtime_fails_and_leaves_nothing),
        scenario!(a_missing_dataset_directory_fails_and_leaves_nothing),
        scenario!(a_dropped_run_is_cleaned_up_in_the_background),
        scenario!(cleanup_stale_removes_only_this_stations_leftovers),
        scenario!(in_a_volume_outputs_are_collected_capped_and_links_not_followed),
        scenario!(warm_spare_slots_are_claimed_empty_and_removed),
    ]
}

fn main() -> ExitCode {
    let selection = match Selection::from_arguments(std::env::args().skip(1)) {
        Ok(selection) => selection,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let selected: Vec<Scenario> = scenarios()
        .into_iter()
        .filter(|scenario| selection.selects(scenario.name))
        .collect();
    if selection.list_only {
        for scenario in &selected {
            println!("{}: test", scenario.name);
        }
        return ExitCode::SUCCESS;
    }
    println!("\nrunning {} sandbox scenarios", selected.len());
    if selected.is_empty() {
        println!("\ntest result: ok. 0 passed; 0 failed\n");
        return ExitCode::SUCCESS;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime can be built");
    runtime.block_on(run_scenarios(selected))
}

/// Which scenarios to run, from libtest-style arguments.
struct Selection {
    filters: Vec<String>,
    skips: Vec<String>,
    exact: bool,
    list_only: bool,
    ignored_only: bool,
}

impl Selection {
    fn from_arguments(arguments: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut selection = Selection {
            filters: Vec::new(),
            skips: Vec::new(),
            exact: false,
            list_only: false,
            ignored_only: false,
        };
        let mut arguments = arguments.peekable();
        while let Some(argument) = arguments.next() {
            match argument.as_str() {
                "--list" => selection.list_only = true,
                "--exact" => selection.exact = true,
                "--ignored" => selection.ignored_only = true,
                "--skip" => selection
                    .skips
                    .push(arguments.next().ok_or("--skip needs a value")?),
                // libtest options that take a value; they do not change what this suite runs.
                "--test-threads" | "--format" | "--color" | "--logfile" | "-Z"
                | "--report-time" => {
                    arguments.next();
                }
                flag if flag.starts_with('-') => {}
                filter => selection.filters.push(filter.to_string()),
            }
        }
        Ok(selection)
    }

    fn selects(&self, name: &str) -> bool {
        // No scenario is ignored, so `--ignored` selects none.
        if self.ignored_only || self.skips.iter().any(|skip| name.contains(skip.as_str())) {
            return false;
        }
        self.filters.is_empty()
            || self.filters.iter().any(|filter| {
                if self.exact {
                    name == filter
                } else {
                    name.contains(filter.as_str())
                }
            })
    }
}

async fn run_scenarios(selected: Vec<Scenario>) -> ExitCode {
    let suite_started = Instant::now();
    let suite = match Suite::set_up().await {
        Ok(suite) => Arc::new(suite),
        Err(error) => {
            println!("\nsandbox suite setup FAILED: {error:#}\n");
            return ExitCode::from(101);
        }
    };

    let n_scenarios = selected.len();
    let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_SCENARIOS));
    let mut handles = Vec::new();
    for scenario in selected {
        let suite = Arc::clone(&suite);
        let permits = Arc::clone(&permits);
        handles.push((
            scenario.name,
            tokio::spawn(async move {
                let _permit = permits.acquire_owned().await.expect("never closed");
                let started = Instant::now();
                let result = tokio::time::timeout(SCENARIO_TIMEOUT, (scenario.body)(suite))
                    .await
                    .unwrap_or_else(|_| Err(anyhow!("timed out after {SCENARIO_TIMEOUT:?}")));
                let elapsed = started.elapsed();
                let verdict = if result.is_ok() { "ok" } else { "FAILED" };
                println!("test {} ... {verdict} ({elapsed:.1?})", scenario.name);
                result
            }),
        ));
    }

    let mut failures = Vec::new();
    for (name, handle) in handles {
        match handle.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => failures.push(format!("{name}: {error:#}")),
            Err(join_error) => {
                println!("test {name} ... FAILED (panicked)");
                failures.push(format!("{name}: panicked: {join_error}"));
            }
        }
    }

    let n_passed = n_scenarios - failures.len();
    let teardown_result = suite.tear_down().await;
    if let Err(error) = &teardown_result {
        failures.push(format!("teardown: {error:#}"));
    }

    if failures.is_empty() {
        println!(
            "\ntest result: ok. {n_passed} passed; 0 failed; finished in {:.1?}\n",
            suite_started.elapsed()
        );
        ExitCode::SUCCESS
    } else {
        println!("\nfailures:\n");
        for failure in &failures {
            println!("---- {failure}\n");
        }
        println!(
            "test result: FAILED. {n_passed} passed; {} failed; finished in {:.1?}\n",
            failures.len(),
            suite_started.elapsed()
        );
        ExitCode::from(101)
    }
}

/// What every scenario shares: a Docker client, the hostile image, a dataset, a network with a
/// listener, and a session id that makes every name unique to this test process.
struct Suite {
    docker: Docker,
    session_id: String,
    hostile_image_id: String,
    /// The hostile image plus `VOLUME /scratch`.
    hostile_with_volume_image_id: String,
    dataset_directory: tempfile::TempDir,
    scratch_directory: tempfile::TempDir,
    network_name: String,
    listener_container: String,
    listener_ip: String,
    /// Where `/output` tmpfs mounts go when this process may mount them (root, same mount
    /// namespace as Docker); the scenarios then run that way, as a station on the host does,
    /// and the volume fallback has scenarios of its own.
    host_outputs: Option<HostOutputs>,
}

impl Suite {
    async fn set_up() -> anyhow::Result<Suite> {
        let docker = pht_docker::connect()
            .await
            .context("the sandbox suite needs a running Docker engine")?;
        let session_id = format!(
            "t{}x{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|elapsed| elapsed.subsec_micros())
                .unwrap_or(0)
        );

        let hostile_binary = tokio::task::spawn_blocking(build_hostile_binary)
            .await
            .context("the hostile build task panicked")??;
        let hostile_image_id = build_image(
            &docker,
            &format!(
                "FROM scratch\n\
                 LABEL {LABEL_TEST_SESSION}={session_id}\n\
                 COPY hostile /hostile\n\
                 ENTRYPOINT [\"/hostile\"]\n"
            ),
            Some(std::fs::read(&hostile_binary).with_context(|| {
                format!("reading the hostile binary {}", hostile_binary.display())
            })?),
        )
        .await
        .context("building the hostile image")?;
        let hostile_with_volume_image_id = build_image(
            &docker,
            &format!("FROM {hostile_image_id}\nVOLUME [\"/scratch\"]\n"),
            None,
        )
        .await
        .context("building the hostile image with a declared volume")?;

        let dataset_directory = tempfile::Builder::new()
            .prefix("pht-sandbox-dataset-")
            .tempdir()?;
        // World-writable on the host, so that only the read-only mount can stop the train.
        std::fs::set_permissions(
            dataset_directory.path(),
            std::fs::Permissions::from_mode(0o777),
        )?;
        let dataset_file = dataset_directory.path().join(DATASET_FILE);
        std::fs::write(
            &dataset_file,
            format!("id,note\n1,{DATASET_SECRET}\n2,ordinary row\n"),
        )?;
        std::fs::set_permissions(&dataset_file, std::fs::Permissions::from_mode(0o666))?;
        let scratch_directory = tempfile::Builder::new()
            .prefix("pht-sandbox-scratch-")
            .tempdir()?;
        std::fs::set_permissions(
            scratch_directory.path(),
            std::fs::Permissions::from_mode(0o755),
        )?;

        let network_name = format!("pht-test-{session_id}");
        docker
            .create_network(NetworkCreateRequest {
                name: network_name.clone(),
                driver: Some("bridge".to_string()),
                internal: Some(true),
                labels: Some(HashMap::from([(
                    LABEL_TEST_SESSION.to_string(),
                    session_id.clone(),
                )])),
                ..Default::default()
            })
            .await
            .context("creating the test network")?;

        let host_outputs = match HostOutputs::probe(&scratch_directory.path().join("outputs")) {
            Ok(outputs) => {
                println!("/output: host tmpfs under {}", outputs.root().display());
                Some(outputs)
            }
            Err(why) => {
                println!("/output: volumes (host tmpfs unavailable: {why})");
                None
            }
        };
        let mut suite = Suite {
            docker,
            session_id,
            hostile_image_id,
            hostile_with_volume_image_id,
            dataset_directory,
            scratch_directory,
            listener_container: String::new(),
            listener_ip: String::new(),
            network_name,
            host_outputs,
        };
        suite
            .start_listener()
            .await
            .context("starting the TCP listener")?;
        Ok(suite)
    }

    async fn start_listener(&mut self) -> anyhow::Result<()> {
        let name = format!("pht-test-{}-listener", self.session_id);
        let params_file = self.write_params(
            "listener",
            &[("mode", "listen".into()), ("port", LISTENER_PORT.into())],
        )?;
        self.create_helper_container(&name, &params_file).await?;
        self.docker.start_container(&name, None).await?;
        let inspected = self.docker.inspect_container(&name, None).await?;
        let listener_ip = inspected
            .network_settings
            .and_then(|settings| settings.networks)
            .and_then(|networks| networks.get(&self.network_name).cloned())
            .and_then(|endpoint| endpoint.ip_address)
            .filter(|ip| !ip.is_empty())
            .ok_or_else(|| anyhow!("the listener has no address on {}", self.network_name))?;
        self.listener_container = name;
        self.listener_ip = listener_ip;
        wait_for(
            Duration::from_secs(30),
            "the listener to listen",
            || async {
                Ok(self
                    .container_logs(&self.listener_container)
                    .await?
                    .contains("listen=ok"))
            },
        )
        .await
    }

    /// A plain container on the test network, outside the sandbox: the control that shows what
    /// the sandbox takes away.
    async fn create_helper_container(&self, name: &str, params_file: &Path) -> anyhow::Result<()> {
        let body = ContainerCreateBody {
            image: Some(self.hostile_image_id.clone()),
            user: Some("65534:65534".to_string()),
            labels: Some(HashMap::from([(
                LABEL_TEST_SESSION.to_string(),
                self.session_id.clone(),
            )])),
            host_config: Some(HostConfig {
                network_mode: Some(self.network_name.clone()),
                binds: Some(vec![format!(
                    "{}:/input/params.json:ro",
                    params_file.display()
                )]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::new().name(name).build();
        self.docker
            .create_container(Some(options), body)
            .await
            .with_context(|| format!("creating helper container {name}"))?;
        Ok(())
    }

    /// Runs the hostile program unsandboxed on the test network and returns its logs.
    async fn run_control(&self, tag: &str, params: &[(&str, Param)]) -> anyhow::Result<String> {
        let name = format!("pht-test-{}-control-{tag}", self.session_id);
        let params_file = self.write_params(&format!("control-{tag}"), params)?;
        self.create_helper_container(&name, &params_file).await?;
        let result = async {
            self.docker.start_container(&name, None).await?;
            let mut wait = self.docker.wait_container(&name, None);
            while wait.next().await.is_some() {}
            self.container_logs(&name).await
        }
        .await;
        self.force_remove_container(&name).await?;
        result
    }

    async fn container_logs(&self, name: &str) -> anyhow::Result<String> {
        let options = LogsOptionsBuilder::new().stdout(true).stderr(true).build();
        let mut log_stream = self.docker.logs(name, Some(options));
        let mut logs = Vec::new();
        while let Some(chunk) = log_stream.next().await {
            logs.extend_from_slice(&chunk?.into_bytes());
        }
        Ok(String::from_utf8_lossy(&logs).into_owned())
    }

    async fn force_remove_container(&self, name: &str) -> anyhow::Result<()> {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(error) => Err(error).with_context(|| format!("removing container {name}")),
        }
    }

    fn write_params(&self, tag: &str, params: &[(&str, Param)]) -> anyhow::Result<PathBuf> {
        let object: serde_json::Map<String, serde_json::Value> = params
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_json()))
            .collect();
        let path = self.scratch_directory.path().join(format!("{tag}.json"));
        std::fs::write(&path, serde_json::to_vec(&object)?)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        Ok(path)
    }

    fn station_id(&self) -> String {
        format!("{}-station", self.session_id)
    }

    /// The sandbox a station on this host would use: host tmpfs outputs where possible.
    fn sandbox(&self) -> DockerSandbox {
        let sandbox = self.volume_sandbox();
        match &self.host_outputs {
            Some(outputs) => sandbox.with_host_outputs(outputs.clone()),
            None => sandbox,
        }
    }

    /// The fallback: `/output` a tmpfs volume kept mounted by a holder container.
    fn volume_sandbox(&self) -> DockerSandbox {
        DockerSandbox::for_station(self.docker.clone(), &self.station_id())
    }

    fn run_id(&self, tag: &str) -> String {
        format!("{}-{tag}", self.session_id)
    }

    /// A spec for the hostile image with the suite's dataset and a params file.
    fn spec(
        &self,
        run_id: &str,
        limits: RunLimits,
        params: &[(&str, Param)],
    ) -> anyhow::Result<RunSpec> {
        let params_file = self.write_params(run_id, params)?;
        Ok(RunSpec::new(run_id, &self.hostile_image_id, limits)?
            .with_dataset(DATASET_NAME, self.dataset_directory.path())?
            .with_params_file(params_file)?)
    }

    /// Runs the hostile program in `mode` through the sandbox and checks that nothing of the run
    /// is left in Docker afterwards.
    async fn run_hostile(
        &self,
        tag: &str,
        limits: RunLimits,
        params: &[(&str, Param)],
    ) -> anyhow::Result<(RunOutcome, Report)> {
        self.run_hostile_in(&self.sandbox(), tag, limits, params)
            .await
    }

    async fn run_hostile_in(
        &self,
        sandbox: &DockerSandbox,
        tag: &str,
        limits: RunLimits,
        params: &[(&str, Param)],
    ) -> anyhow::Result<(RunOutcome, Report)> {
        let run_id = self.run_id(tag);
        let spec = self.spec(&run_id, limits, params)?;
        let outcome = sandbox
            .run(&spec)
            .await
            .with_context(|| format!("running {run_id} in the sandbox"))?;
        self.assert_nothing_left(&run_id).await?;
        let report = Report::parse(&outcome.logs);
        Ok((outcome, report))
    }

    async fn leftovers(&self, label: &str) -> anyhow::Result<(Vec<String>, Vec<String>)> {
        let filters = HashMap::from([("label".to_string(), vec![label.to_string()])]);
        let containers = self
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await?
            .into_iter()
            .map(|container| container.names.unwrap_or_default().join(","))
            .collect();
        let volumes = self
            .docker
            .list_volumes(Some(
                ListVolumesOptionsBuilder::new().filters(&filters).build(),
            ))
            .await?
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|volume| volume.name)
            .collect();
        Ok((containers, volumes))
    }

    async fn assert_nothing_left(&self, run_id: &str) -> anyhow::Result<()> {
        let (containers, volumes) = self.leftovers(&format!("org.pht.run-id={run_id}")).await?;
        ensure!(
            containers.is_empty() && volumes.is_empty(),
            "run {run_id} left containers {containers:?} and volumes {volumes:?}"
        );
        if let Some(outputs) = &self.host_outputs {
            let dir = outputs.root().join(run_id);
            ensure!(!dir.exists(), "run {run_id} left {}", dir.display());
            let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
            ensure!(
                !mounts.contains(&dir.display().to_string()),
                "run {run_id} left {} mounted",
                dir.display()
            );
        }
        Ok(())
    }

    async fn tear_down(&self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        // Nothing any sandbox of this session created may remain.
        let (containers, volumes) = self
            .leftovers(&format!("org.pht.station={}", self.station_id()))
            .await?;
        if !containers.is_empty() || !volumes.is_empty() {
            problems.push(format!(
                "sandbox leftovers: containers {containers:?}, volumes {volumes:?}"
            ));
        }
        let (helpers, _) = self
            .leftovers(&format!("{LABEL_TEST_SESSION}={}", self.session_id))
            .await?;
        for helper in helpers {
            for name in helper.split(',') {
                if let Err(error) = self
                    .force_remove_container(name.trim_start_matches('/'))
                    .await
                {
                    problems.push(format!("{error:#}"));
                }
            }
        }
        if let Err(error) = self.docker.remove_network(&self.network_name).await {
            problems.push(format!("removing network {}: {error}", self.network_name));
        }
        for image_id in [&self.hostile_with_volume_image_id, &self.hostile_image_id] {
            let options = RemoveImageOptionsBuilder::new().force(true).build();
            // Removing the derived image also prunes its untagged parent: 404 is fine.
            match self
                .docker
                .remove_image(image_id, Some(options), None)
                .await
            {
                Ok(_)
                | Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => {}
                Err(error) => problems.push(format!("removing image {image_id}: {error}")),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            bail!("{}", problems.join("; "))
        }
    }
}

/// A value in the hostile program's params.json.
enum Param {
    Text(String),
    Number(u64),
}

impl Param {
    fn to_json(&self) -> serde_json::Value {
        match self {
            Param::Text(text) => serde_json::Value::from(text.as_str()),
            Param::Number(number) => serde_json::Value::from(*number),
        }
    }
}

impl From<&str> for Param {
    fn from(text: &str) -> Self {
        Param::Text(text.to_string())
    }
}

impl From<String> for Param {
    fn from(text: String) -> Self {
        Param::Text(text)
    }
}

impl From<u64> for Param {
    fn from(number: u64) -> Self {
        Param::Number(number)
    }
}

impl From<u16> for Param {
    fn from(number: u16) -> Self {
        Param::Number(u64::from(number))
    }
}

/// The `key=value` lines the hostile program printed, in its logs.
struct Report {
    values: BTreeMap<String, String>,
    text: String,
}

impl Report {
    fn parse(logs: &[u8]) -> Report {
        let text = String::from_utf8_lossy(logs).into_owned();
        let values = text
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        Report { values, text }
    }

    fn get(&self, key: &str) -> anyhow::Result<&str> {
        self.values
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("the report has no {key:?}; logs:\n{}", self.text))
    }

    fn expect_failed(&self, key: &str, reason: &str) -> anyhow::Result<()> {
        let value = self.get(key)?;
        ensure!(
            value.starts_with("failed:") && value.contains(reason),
            "{key} should have failed with {reason:?}, but reported {value:?}; logs:\n{}",
            self.text
        );
        Ok(())
    }
}

fn small_limits() -> RunLimits {
    RunLimits {
        nano_cpus: RunLimits::nano_cpus_from_cpus(0.5),
        memory_bytes: 64 * 1024 * 1024,
        pids: 64,
        wall_clock: Duration::from_secs(60),
        tmp_bytes: 1024 * 1024,
        output_bytes: 1024 * 1024,
        output_files: 64,
        log_bytes: 64 * 1024,
    }
}

fn dataset_params() -> Vec<(&'static str, Param)> {
    vec![
        ("dataset", DATASET_NAME.into()),
        ("file", DATASET_FILE.into()),
    ]
}

fn with_mode(mode: &str, mut params: Vec<(&'static str, Param)>) -> Vec<(&'static str, Param)> {
    params.insert(0, ("mode", mode.into()));
    params
}

fn ensure_contained(outcome: &RunOutcome) -> anyhow::Result<()> {
    ensure!(
        !outcome.timed_out && !outcome.oom_killed,
        "the run should have ended on its own: {outcome:?}"
    );
    Ok(())
}

/// Every collected byte, regular files, link targets and logs alike.
fn all_collected_bytes(outcome: &RunOutcome) -> Vec<u8> {
    let mut bytes = outcome.logs.clone();
    for file in &outcome.outputs.files {
        match &file.kind {
            CollectedKind::Regular { bytes: content } => bytes.extend_from_slice(content),
            CollectedKind::Symlink { target } => bytes.extend_from_slice(target.as_bytes()),
            CollectedKind::Special { description } => {
                bytes.extend_from_slice(description.as_bytes())
            }
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

fn symlink_target<'a>(outcome: &'a RunOutcome, path: &str) -> Option<&'a str> {
    outcome
        .outputs
        .files
        .iter()
        .find_map(|file| match &file.kind {
            CollectedKind::Symlink { target } if file.path == path => Some(target.as_str()),
            _ => None,
        })
}

async fn wait_for<F, Fut>(timeout: Duration, what: &str, mut condition: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("gave up waiting for {what} after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---- scenarios ------------------------------------------------------------------------------

async fn well_behaved_train_reads_its_dataset_and_its_outputs_are_collected(
    suite: Arc<Suite>,
) -> anyhow::Result<()> {
    let (outcome, report) = suite
        .run_hostile("ok", small_limits(), &with_mode("ok", dataset_params()))
        .await?;
    ensure_contained(&outcome)?;
    ensure!(outcome.exit_code == Some(0), "{outcome:?}");
    ensure!(
        report.get("dataset_read")? == "ok rows=3",
        "{}",
        report.text
    );
    ensure!(
        report.text.contains("a line on stderr"),
        "stderr is captured too: {}",
        report.text
    );
    // The outputs were written by a container that has exited: they survived it.
    ensure!(
        outcome.outputs.regular_file("result.txt") == Some(&b"rows=3\n"[..]),
        "{:?}",
        outcome.outputs
    );
    let summary = outcome
        .outputs
        .files
        .iter()
        .find(|file| file.path == "tables/summary.csv")
        .ok_or_else(|| anyhow!("nested output missing: {:?}", outcome.outputs))?;
    ensure!(
        summary.sha256 == sha256_hex(b"group,count\na,12\nb,15\n"),
        "the hash is the SHA-256 of the content: {summary:?}"
    );
    ensure!(
        outcome.outputs.regular_file("report.txt").is_some(),
        "{:?}",
        outcome.outputs
    );
    ensure!(
        !outcome.output_limit_reached && !outcome.logs_truncated,
        "{outcome:?}"
    );
    ensure!(
        outcome.outputs.refused.is_empty(),
        "{:?}",
        outcome.outputs.refused
    );
    Ok(())
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

async fn exit_code_and_stderr_of_a_failing_train_are_reported(
    suite: Arc<Suite>,
) -> anyhow::Result<()> {
    let (outcome, report) = suite
        .run_hostile(
            "exit",
            small_limits(),
            &[("mode", "exit".into()), ("code", 3u64.into())],
        )
        .await?;
    ensure_contained(&outcome)?;
    ensure!(outcome.exit_code == Some(3), "{outcome:?}");
    ensure!(report.text.contains("exiting with 3"), "{}", report.text);
    Ok(())
}

async fn tcp_to_a_container_on_a_docker_network_is_unreachable(
    suite: Arc<Suite>,
) -> anyhow::Result<()> {
    let target = vec![
        ("host", Param::from(suite.listener_ip.clone())),
        ("port", LISTENER_PORT.into()),
    ];
    let (outcome, report) = suite
        .run_hostile("nettcp", small_limits(), &with_mode("net-tcp", target))
        .await?;
    ensure_contained(&outcome)?;
    report.expect_failed("tcp_connect", "unreachable")?;
    let listener_logs = suite.container_logs(&suite.listener_container).await?;
    ensure!(
        !listener_logs.contains("accepted="),
        "the listener saw a connection from the sandbox: {listener_logs}"
    );

    // Control: the same program outside the sandbox reaches the listener, and it says so.
    let control_logs = suite
        .run_control(
            "nettcp",
            &with_mode(
                "net-tcp",
                vec![
                    ("host", suite.listener_ip.clone().into()),
                    ("port", LISTENER_PORT.into()),
                ],
            ),
        )
        .await?;
    ensure!(
        control_logs.contains("tcp_connect=connected"),
        "control: {control_logs}"
    );
    wait_for(
        Duration::from_secs(10),
        "the listener to log the control",
        || async {
            Ok(suite
                .container_logs(&suite.listener_container)
                .await?
                .contains("accepted="))
        },
    )
    .await
}

async fn tcp_to_the_hosts_loopback_is_unreachable(suite: Arc<Suite>) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let (outcome, report) = suite
        .run_hostile(
            "netlo",
            small_limits(),
            &[("mode", "net-loopback".into()), ("port", port.into())],
        )
        .await?;
    ensure_contained(&outcome)?;
    report.expect_failed("tcp_connect", "Connection refused")?;
    match listener.accept() {
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
        other => bail!("the host listener saw a connection from the sandbox: {other:?}"),
    }
    // Control: the listener does accept connections that reach it.
    let _client = std::net::TcpStream::connect(("127.0.0.1", port))?;
    wait_for(
        Duration::from_secs(5),
        "the host listener to accept",
        || async { Ok(listener.accept().is_ok()) },
    )
    .await
}

async fn dns_resolution_fails(suite: Arc<Suite>) -> anyhow::Result<()> {
    let name = suite.listener_container.clone();
    let (outcome, report) = suite
        .run_hostile(
            "dns",
            small_limits(),
            &[("mode", "dns".into()), ("name", name.clone().into())],
        )
        .await?;
    ensure_contained(&outcome)?;
    report.expect_failed("dns", "")?;

    // Control: on the network, outside the sandbox, the name resolves.
    let control_logs = suite
        .run_control("dns", &[("mode", "dns".into()), ("name", name.into())])
        .await?;
    ensure!(
        control_logs.contains(&format!("dns=resolved {}", suite.listener_ip)),
        "control: {control_logs}"
    );
    Ok(())
}

async fn forkbomb_hits_the_pids_limit(suite: Arc<Suite>) -> anyhow::Result<()> {
    let limits = small_limits();
    let pids_limit = limits.pids;
    let (outcome, report) = suite
        .run_hostile("forkbomb", limits, &[("mode", "forkbomb".into())])
        .await?;
    ensure_contained(&outcome)?;
    let threads_spawned: u64 = report.get("threads_spawned")?.parse()?;
    ensure!(
        threads_spawned > 0 && threads_spawned < pids_limit,
        "{threads_spawned} threads against a limit of {pids_limit}"
    );
    ensure!(
        report
            .get("thread_error")?
            .contains("Resource temporarily unavailable"),
        "{}",
        report.text
    );
    report.expect_failed("process_spawn", "Resource temporarily unavailable")?;
    Ok(())
}

async fn memory_hog_is_oom_killed(suite: Arc<Suite>) -> anyhow::Result<()> {
    let (outcome, report) = suite
        .run_hostile(
            "memhog",
            small_limits(),
            &[("mode", "memhog".into()), ("max_mib", 2048u64.into())],
        )
        .await?;
    ensure!(outcome.oom_killed, "{outcome:?}");
    ensure!(!outcome.timed_out, "{outcome:?}");
    ensure!(outcome.exit_code == Some(137), "{outcome:?}");
    ensure!(
        report.text.contains("allocated_mib=16"),
        "it did allocate: {}",
        report.text
    );
    ensure!(
        !report.text.contains("memhog=not killed"),
        "{}",
        report.text
    );
    Ok(())
}

async fn spinning_train_is_killed_at_the_wall_clock(suite: Arc<Suite>) -> anyhow::Result<()> {
    let mut limits = small_limits();
    limits.wall_clock = Duration::from_secs(3);
    let (outcome, report) = suite
        .run_hostile("spin", limits, &[("mode", "spin".into())])
        .await?;
    ensure!(outcome.timed_out, "{outcome:?}");
    ensure!(outcome.exit_code == Some(137), "{outcome:?}");
    ensure!(
        outcome.duration >= Duration::from_secs(3) && outcome.duration < Duration::from_secs(60),
        "{outcome:?}"
    );
    ensure!(report.get("spin")? == "started", "{}", report.text);
    Ok(())
}

async fn datasets_are_read_only(suite: Arc<Suite>) -> anyhow::Result<()> {
    let dataset_file = suite.dataset_directory.path().join(DATASET_FILE);
    let dataset_before = std::fs::read(&dataset_file)?;
    let (outcome, report) = suite
        .run_hostile(
            "writedata",
            small_limits(),
            &with_mode("write-data", dataset_params()),
        )
        .await?;
    ensure_contained(&outcome)?;
    for key in [
        "write_data_create",
        "write_data_append",
        "write_data_remove",
    ] {
        report.expect_failed(key, "Read-only file system")?;
    }
    ensure!(std::fs::read(&dataset_file)? == dataset_before);
    ensure!(!suite.dataset_directory.path().join("x").exists());
    Ok(())
}

async fn root_filesystem_and_params_are_read_only_and_tmp_is_noexec(
    suite: Arc<Suite>,
) -> anyhow::Result<()> {
    let mut limits = small_limits();
    // Room in /tmp for a copy of the hostile program, so that only noexec can stop it running.
    limits.tmp_bytes = 16 * 1024 * 1024;
    let (outcome, report) = suite
        .run_hostile("writeroot", limits, &[("mode", "write-root".into())])
        .await?;
    ensure_contained(&outcome)?;
    report.expect_failed("write_root", "Read-only file system")?;
    report.expect_failed("write_input", "Read-only file system")?;
    ensure!(report.get("tmp_write")? == "ok", "{}", report.text);
    report.expect_failed("tmp_exec", "Permission denied")?;
    Ok(())
}

async fn big_output_is_cut_at_the_output_cap(suite: Arc<Suite>) -> anyhow::Result<()> {
    check_big_output_is_cut(&suite, &suite.sandbox(), "bigout").await
}

/// A train writing eight times its output cap gets ENOSPC, and what is collected is within the
/// cap and marked as having reached it.
async fn check_big_output_is_cut(
    suite: &Suite,
    sandbox: &DockerSandbox,
    tag: &str,
) -> anyhow::Result<()> {
    let limits = small_limits();
    let output_bytes = limits.output_bytes;
    let (outcome, report) = suite
        .run_hostile_in(
            sandbox,
            tag,
            limits,
            &[
                ("mode", "big-output".into()),
                ("bytes", (8 * output_bytes).into()),
            ],
        )
        .await?;
    ensure_contained(&outcome)?;
    ensure!(
        report
            .get("big_output_error")?
            .contains("No space left on device"),
        "{}",
        report.text
    );
    ensure!(outcome.output_limit_reached, "{outcome:?}");
    let big_file_bytes = outcome
        .outputs
        .regular_file("big.bin")
        .ok_or_else(|| anyhow!("big.bin was not collected: {:?}", outcome.outputs))?
        .len() as u64;
    ensure!(
        big_file_bytes <= output_bytes && big_file_bytes + 8 * 1024 >= output_bytes,
        "big.bin holds {big_file_bytes} bytes for a cap of {output_bytes}"
    );
    ensure!(
        outcome.outputs.total_bytes <= output_bytes,
        "{:?}",
        outcome.outputs
    );
    Ok(())
}

async fn symlink_to_etc_passwd_is_recorded_not_followed(suite: Arc<Suite>) -> anyhow::Result<()> {
    let (outcome, report) = suite
        .run_hostile(
            "linkpasswd",
            small_limits(),
            &[("mode", "symlink-passwd".into())],
        )
        .await?;
    ensure_contained(&outcome)?;
    ensure!(report.get("symlink_passwd")? == "ok", "{}", report.text);
    ensure!(
        symlink_target(&outcome, "leak") == Some("/etc/passwd"),
        "{:?}",
        outcome.outputs
    );
    ensure!(
        symlink_target(&outcome, "leak-relative") == Some("../../../../etc/passwd"),
        "{:?}",
        outcome.outputs
    );
    ensure!(
        symlink_target(&outcome, "etc") == Some("/etc"),
        "{:?}",
        outcome.outputs
    );
    let host_passwd = std::fs::read_to_string("/etc/passwd")?;
    let collected = all_collected_bytes(&outcome);
    for line in host_passwd.lines().filter(|line| !line.is_empty()) {
        ensure!(
            !contains(&collected, line.as_bytes()),
            "a line of the host's /etc/passwd was collected: {line}"
        );
    }
    Ok(())
}

async fn symlink_to_a_dataset_file_is_recorded_not_followed(
    suite: Arc<Suite>,
) -> anyhow::Result<()> {
    let (outcome, report) = suite
        .run_hostile(
            "linkdata",
            small_limits(),
            &with_mode("symlink-data", dataset_params()),
        )
        .await?;
    ensure_contained(&outcome)?;
    ensure!(report.get("symlink_data")? == "ok", "{}", report.text);
    report.expect_failed("hardlink_data", "cross-device")?;
    ensure!(
        symlink_target(&outcome, "leak") == Some("/data/cohort/rows.csv"),
        "{:?}",
        outcome.outputs
    );
    ensure!(
        symlink_target(&outcome, "dataset") == Some("/data/cohort"),
        "{:?}",
        outcome.outputs
    );
    ensure!(
        !contains(&all_collected_bytes(&outcome), DATASET_SECRET.as_bytes()),
        "the dataset's content was collected through a link"
    );
    Ok(())
}

async fn docker_socket_is_absent(suite: Arc<Suite>) -> anyhow::Result<()> {
    let (outcome, report) = suite
        .run_hostile("sock", small_limits(), &[("mode", "docker-socket".into())])
        .await?;
    ensure_contained(&outcome)?;
    for key in ["docker_sock_var_run", "docker_sock_run"] {
        ensure!(report.get(key)? == "absent", "{}", report.text);
        report.expect_failed(&format!("{key}_connect"), "")?;
    }
    Ok(())
}

async fn train_runs_as_nobody_without_capabilities(suite: Arc<Suite>) -> anyhow::Result<()> {
    let (outcome, report) = suite
        .run_hostile("whoami", small_limits(), &[("mode", "whoami".into())])
        .await?;
    ensure_contained(&outcome)?;
    let expected = [
        ("Uid", "65534 65534 65534 65534"),
        ("Gid", "65534 65534 65534 65534"),
        ("CapInh", "0000000000000000"),
        ("CapPrm", "0000000000000000"),
        ("CapEff", "0000000000000000"),
        ("CapBnd", "0000000000000000"),
        ("CapAmb", "0000000000000000"),
        ("NoNewPrivs", "1"),
        // 2: a seccomp filter is in force (Docker's default profile).
        ("Seccomp", "2"),
    ];
    for (key, value) in expected {
        ensure!(
            report.get(key)? == value,
            "{key} should be {value:?}; logs:\n{}",
            report.text
        );
    }
    report.expect_failed("root_fs_writable", "Read-only file system")?;
    Ok(())
}

async fn log_flood_is_capped_and_marked_truncated(suite: Arc<Suite>) -> anyhow::Result<()> {
    let limits = small_limits();
    let log_bytes = limits.log_bytes;
    let (outcome, _report) = suite
        .run_hostile(
            "logflood",
            limits,
            &[
                ("mode", "log-flood".into()),
                ("bytes", (16 * log_bytes).into()),
            ],
        )
        .await?;
    ensure_contained(&outcome)?;
    // The train was not blocked by its unread output: it finished.
    ensure!(outcome.exit_code == Some(0), "{outcome:?}");
    ensure!(outcome.logs_truncated, "{outcome:?}");
    ensure!(
        outcome.logs.len() as u64 == log_bytes,
        "kept {} bytes of logs for a cap of {log_bytes}",
        outcome.logs.len()
    );
    ensure!(
        outcome
            .logs
            .starts_with(b"mode=log-flood\nflood line 00000000"),
        "the beginning of the logs is kept: {outcome:?}"
    );
    Ok(())
}

async fn volumes_declared_by_the_image_get_a_capped_tmpfs(suite: Arc<Suite>) -> anyhow::Result<()> {
    let run_id = suite.run_id("imgvol");
    let limits = small_limits();
    let tmp_bytes = limits.tmp_bytes;
    let params_file = suite.write_params(
        &run_id,
        &[
            ("mode", "big-output".into()),
            ("path", "/scratch/big.bin".into()),
            ("bytes", (8 * tmp_bytes).into()),
        ],
    )?;
    let spec = RunSpec::new(&run_id, &suite.hostile_with_volume_image_id, limits)?
        .with_params_file(params_file)?;
    let outcome = suite.sandbox().run(&spec).await?;
    suite.assert_nothing_left(&run_id).await?;
    ensure_contained(&outcome)?;
    let report = Report::parse(&outcome.logs);
    ensure!(
        report
            .get("big_output_error")?
            .contains("No space left on device"),
        "the declared volume should be a capped tmpfs: {}",
        report.text
    );
    let written: u64 = report.get("big_output_written")?.parse()?;
    ensure!(
        written <= tmp_bytes,
        "{written} bytes written for a cap of {tmp_bytes}"
    );
    Ok(())
}

async fn a_missing_image_fails_and_leaves_nothing(suite: Arc<Suite>) -> anyhow::Result<()> {
    let run_id = suite.run_id("noimage");
    let missing_image = format!("sha256:{}", "0".repeat(64));
    let spec = RunSpec::new(&run_id, &missing_image, small_limits())?;
    let error = match suite.sandbox().run(&spec).await {
        Ok(outcome) => bail!("a missing image ran: {outcome:?}"),
        Err(error) => error.to_string(),
    };
    ensure!(
        error.contains("inspect the train image") && error.contains(&run_id),
        "{error}"
    );
    suite.assert_nothing_left(&run_id).await
}

async fn a_missing_entrypoint_exits_127_and_leaves_nothing(
    suite: Arc<Suite>,
) -> anyhow::Result<()> {
    // With `init: true` the container starts (the init process exists) and the init reports
    // that it cannot run the entrypoint: an outcome, not a sandbox error.
    let run_id = suite.run_id("noentry");
    let spec = suite
        .spec(&run_id, small_limits(), &[("mode", "ok".into())])?
        .with_entrypoint(vec!["/does-not-exist".to_string()]);
    let outcome = suite.sandbox().run(&spec).await?;
    suite.assert_nothing_left(&run_id).await?;
    ensure!(outcome.exit_code == Some(127), "{outcome:?}");
    ensure!(
        contains(&outcome.logs, b"/does-not-exist"),
        "the logs say what could not run: {outcome:?}"
    );
    Ok(())
}

async fn an_unknown_runtime_fails_and_leaves_nothing(suite: Arc<Suite>) -> anyhow::Result<()> {
    // Fails when the train container is created, after the volume and the holder exist.
    let run_id = suite.run_id("noruntime");
    let spec = suite
        .spec(&run_id, small_limits(), &[("mode", "ok".into())])?
        .with_runtime("pht-no-such-runtime")?;
    let error = match suite.sandbox().run(&spec).await {
        Ok(outcome) => bail!("a run with an unknown runtime ran: {outcome:?}"),
        Err(error) => error.to_string(),
    };
    ensure!(error.contains("create the train container"), "{error}");
    suite.assert_nothing_left(&run_id).await
}

async fn a_missing_dataset_directory_fails_and_leaves_nothing(
    suite: Arc<Suite>,
) -> anyhow::Result<()> {
    let run_id = suite.run_id("nodata");
    let missing_directory = suite.scratch_directory.path().join("no-such-dataset");
    let spec = suite
        .spec(&run_id, small_limits(), &[("mode", "ok".into())])?
        .with_dataset("missing", &missing_directory)?;
    let error = match suite.sandbox().run(&spec).await {
        Ok(outcome) => bail!("a run with a missing dataset ran: {outcome:?}"),
        Err(error) => error.to_string(),
    };
    ensure!(error.contains("create the train container"), "{error}");
    suite.assert_nothing_left(&run_id).await
}

async fn a_dropped_run_is_cleaned_up_in_the_background(suite: Arc<Suite>) -> anyhow::Result<()> {
    let run_id = suite.run_id("dropped");
    let mut limits = small_limits();
    limits.wall_clock = Duration::from_secs(600);
    let spec = suite.spec(&run_id, limits, &[("mode", "spin".into())])?;
    let sandbox = suite.sandbox();
    let run_task = tokio::spawn(async move { sandbox.run(&spec).await });

    let train_filter = format!("org.pht.run-id={run_id}");
    let waited = wait_for(
        Duration::from_secs(60),
        "the train to be running",
        || async {
            let filters = HashMap::from([
                ("label".to_string(), vec![train_filter.clone()]),
                ("status".to_string(), vec!["running".to_string()]),
            ]);
            let running = suite
                .docker
                .list_containers(Some(
                    ListContainersOptionsBuilder::new()
                        .filters(&filters)
                        .build(),
                ))
                .await?;
            ensure!(
                !run_task.is_finished(),
                "the run ended before it could be dropped"
            );
            // The train, and the holder when /output is a volume.
            let expected = if suite.host_outputs.is_some() { 1 } else { 2 };
            Ok(running.len() == expected)
        },
    )
    .await;
    if let Err(error) = waited {
        if run_task.is_finished() {
            let run_result = run_task.await;
            bail!("{error:#}; the run ended on its own: {run_result:?}");
        }
        run_task.abort();
        return Err(error);
    }

    run_task.abort();
    ensure!(
        run_task.await.is_err_and(|error| error.is_cancelled()),
        "the run was cancelled"
    );
    wait_for(
        Duration::from_secs(60),
        "the dropped run's cleanup",
        || async {
            let (containers, volumes) = suite.leftovers(&train_filter).await?;
            Ok(containers.is_empty()
                && volumes.is_empty()
                && suite.assert_nothing_left(&run_id).await.is_ok())
        },
    )
    .await
}

async fn cleanup_stale_removes_only_this_stations_leftovers(
    suite: Arc<Suite>,
) -> anyhow::Result<()> {
    let crashed_station = format!("{}-crashed", suite.session_id);
    let other_station = format!("{}-other", suite.session_id);
    let leftover_labels = |station: &str, name: &str| {
        HashMap::from([
            ("org.pht.managed".to_string(), "true".to_string()),
            ("org.pht.station".to_string(), station.to_string()),
            ("org.pht.run-id".to_string(), name.to_string()),
            (LABEL_TEST_SESSION.to_string(), suite.session_id.clone()),
        ])
    };
    let crashed_container = format!("{crashed_station}-run");
    let other_container = format!("{other_station}-run");
    for (station, name) in [
        (&crashed_station, &crashed_container),
        (&other_station, &other_container),
    ] {
        let body = ContainerCreateBody {
            image: Some(suite.hostile_image_id.clone()),
            labels: Some(leftover_labels(station, name)),
            host_config: Some(HostConfig {
                network_mode: Some("none".to_string()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::new().name(name).build();
        suite.docker.create_container(Some(options), body).await?;
    }
    let crashed_volume = format!("{crashed_station}-output");
    suite
        .docker
        .create_volume(VolumeCreateRequest {
            name: Some(crashed_volume.clone()),
            labels: Some(leftover_labels(&crashed_station, &crashed_volume)),
            ..Default::default()
        })
        .await?;

    let crashed_sandbox = DockerSandbox::for_station(suite.docker.clone(), &crashed_station);
    let cleanup = crashed_sandbox.cleanup_stale().await;
    let other_left = suite
        .leftovers(&format!("org.pht.run-id={other_container}"))
        .await?;
    suite.force_remove_container(&other_container).await?;

    ensure!(
        cleanup?
            == StaleCleanup {
                removed_containers: vec![crashed_container.clone()],
                removed_volumes: vec![crashed_volume.clone()],
                ..Default::default()
            },
        "cleanup_stale removed something else"
    );
    suite.assert_nothing_left(&crashed_container).await?;
    suite.assert_nothing_left(&crashed_volume).await?;
    ensure!(
        other_left.0.len() == 1,
        "another station's container must survive: {other_left:?}"
    );
    Ok(())
}

// ---- building the hostile program and its image ---------------------------------------------

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root exists")
}

/// Builds `tests/hostile` as a static binary, as the brief for trains prescribes.
fn build_hostile_binary() -> anyhow::Result<PathBuf> {
    const TARGET: &str = "x86_64-unknown-linux-gnu";
    let root = workspace_root();
    let target_directory = root.join("target/static");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let output = Command::new(&cargo)
        .arg("build")
        .arg("--release")
        .arg("--target")
        .arg(TARGET)
        .arg("--target-dir")
        .arg(&target_directory)
        .arg("--manifest-path")
        .arg(root.join("tests/hostile/Cargo.toml"))
        // The explicit --target keeps build scripts and proc-macros dynamic.
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .with_context(|| format!("running {cargo} to build tests/hostile"))?;
    ensure!(
        output.status.success(),
        "building tests/hostile failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let binary = target_directory.join(TARGET).join("release/hostile");
    ensure!(
        binary.is_file(),
        "the build did not produce {}",
        binary.display()
    );
    Ok(binary)
}

/// Builds an image from `dockerfile` (and the hostile binary, if given) with Docker's legacy
/// builder, which builds `FROM scratch` offline, and returns its id.
async fn build_image(
    docker: &Docker,
    dockerfile: &str,
    hostile_binary: Option<Vec<u8>>,
) -> anyhow::Result<String> {
    let mut context = tar::Builder::new(Vec::new());
    let mut files = vec![("Dockerfile", 0o644, dockerfile.as_bytes().to_vec())];
    if let Some(binary) = hostile_binary {
        files.push(("hostile", 0o755, binary));
    }
    for (path, mode, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(mode);
        header.set_cksum();
        context.append_data(&mut header, path, content.as_slice())?;
    }
    let context = context.into_inner()?;
    let options = BuildImageOptionsBuilder::new()
        .dockerfile("Dockerfile")
        .rm(true)
        .forcerm(true)
        .build();
    let mut build_stream =
        docker.build_image(options, None, Some(bollard::body_full(context.into())));
    let mut image_id = None;
    let mut build_log = String::new();
    while let Some(build_info) = build_stream.next().await {
        let build_info =
            build_info.with_context(|| format!("docker build failed:\n{build_log}"))?;
        if let Some(stream) = build_info.stream {
            build_log.push_str(&stream);
        }
        if let Some(id) = build_info.aux.and_then(|aux| aux.id) {
            image_id = Some(id);
        }
    }
    image_id.ok_or_else(|| anyhow!("docker build reported no image id:\n{build_log}"))
}

/// The volume fallback, used by stations that cannot mount (in a container, or without root):
/// the train's outputs are collected through the archive API, the cap holds, links are recorded.
async fn in_a_volume_outputs_are_collected_capped_and_links_not_followed(
    suite: Arc<Suite>,
) -> anyhow::Result<()> {
    let sandbox = suite.volume_sandbox();
    check_big_output_is_cut(&suite, &sandbox, "volbigout").await?;

    let (outcome, _) = suite
        .run_hostile_in(
            &sandbox,
            "vollink",
            small_limits(),
            &[("mode", "symlink-passwd".into())],
        )
        .await?;
    ensure_contained(&outcome)?;
    ensure!(
        symlink_target(&outcome, "leak") == Some("/etc/passwd"),
        "{:?}",
        outcome.outputs
    );
    Ok(())
}

/// Spare output slots: a second run claims the spare the first one prepared, finds it empty
/// (nothing of the first run's outputs), and `remove_spares` leaves nothing behind.
async fn warm_spare_slots_are_claimed_empty_and_removed(suite: Arc<Suite>) -> anyhow::Result<()> {
    // A station of its own, so no other scenario's runs touch its spares.
    let station = format!("{}-warm", suite.session_id);
    let sandbox =
        DockerSandbox::for_station(suite.docker.clone(), &station).with_warm_output_slots(1);
    let spares = || async {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("org.pht.station={station}")],
        )]);
        let listed = suite
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await?;
        anyhow::Ok(
            listed
                .into_iter()
                .flat_map(|container| container.names.unwrap_or_default())
                .filter(|name| name.trim_start_matches('/').starts_with("pht-spare-"))
                .collect::<Vec<_>>(),
        )
    };
    let result = async {
        let (first, _) = suite
            .run_hostile_in(
                &sandbox,
                "warm1",
                small_limits(),
                &[("mode", "big-output".into()), ("bytes", 1000u64.into())],
            )
            .await?;
        ensure!(
            first.outputs.regular_file("big.bin").is_some(),
            "the first run wrote big.bin: {first:?}"
        );
        sandbox.settle().await;
        let ready = spares().await?;
        ensure!(
            ready.len() == 1,
            "one spare is ready after the first run: {ready:?}"
        );

        let (second, _) = suite
            .run_hostile_in(
                &sandbox,
                "warm2",
                small_limits(),
                &[("mode", "exit".into()), ("code", 0u64.into())],
            )
            .await?;
        ensure!(second.exit_code == Some(0), "{second:?}");
        ensure!(
            second.outputs.regular_file("big.bin").is_none() && second.outputs.files.len() == 1,
            "the claimed spare held someone else's outputs: {:?}",
            second.outputs
        );
        sandbox.settle().await;
        let replaced = spares().await?;
        ensure!(
            replaced.len() == 1 && replaced != ready,
            "the claimed spare was replaced by a new one: before {ready:?}, after {replaced:?}"
        );
        Ok(())
    }
    .await;
    let removed = sandbox.remove_spares().await;
    let (containers, volumes) = suite
        .leftovers(&format!("org.pht.station={station}"))
        .await?;
    result?;
    removed?;
    ensure!(
        containers.is_empty() && volumes.is_empty(),
        "remove_spares left containers {containers:?} and volumes {volumes:?}"
    );
    Ok(())
}
