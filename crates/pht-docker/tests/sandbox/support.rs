//! What the scenarios share: the [`Suite`] (a Docker client, the hostile image built from
//! `tests/hostile`, a dataset, a Docker network with a TCP listener, a session id that makes
//! every name unique to this process), the hostile program's params and report, small checks
//! on a [`RunOutcome`], and building the hostile binary and its images.
//!
//! Does not hold a scenario: those are in `containment.rs`, `outputs.rs` and `leftovers.rs`.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context};
use bollard::models::{ContainerCreateBody, HostConfig, NetworkCreateRequest};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateContainerOptionsBuilder, ListContainersOptionsBuilder,
    ListVolumesOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveImageOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use pht_docker::{CollectedKind, DockerSandbox, HostOutputs, RunLimits, RunOutcome, RunSpec};

/// Label on everything this suite creates outside the sandbox (images, network, helper
/// containers), so teardown can find it all.
pub(crate) const LABEL_TEST_SESSION: &str = "org.pht.test-session";

pub(crate) const DATASET_NAME: &str = "cohort";

pub(crate) const DATASET_FILE: &str = "rows.csv";

/// A marker that exists only in the synthetic dataset: it must never show up in outputs or logs.
pub(crate) const DATASET_SECRET: &str = "SECRET-PATIENT-ROW-4711";

pub(crate) const LISTENER_PORT: u16 = 7000;

/// What every scenario shares: a Docker client, the hostile image, a dataset, a network with a
/// listener, and a session id that makes every name unique to this test process.
pub(crate) struct Suite {
    pub(crate) docker: Docker,
    pub(crate) session_id: String,
    pub(crate) hostile_image_id: String,
    /// The hostile image plus `VOLUME /scratch`.
    pub(crate) hostile_with_volume_image_id: String,
    pub(crate) dataset_directory: tempfile::TempDir,
    pub(crate) scratch_directory: tempfile::TempDir,
    pub(crate) network_name: String,
    pub(crate) listener_container: String,
    pub(crate) listener_ip: String,
    /// Where `/output` tmpfs mounts go when this process may mount them (root, same mount
    /// namespace as Docker); the scenarios then run that way, as a station on the host does,
    /// and the volume fallback has scenarios of its own.
    pub(crate) host_outputs: Option<HostOutputs>,
}

impl Suite {
    pub(crate) async fn set_up() -> anyhow::Result<Suite> {
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

    pub(crate) async fn start_listener(&mut self) -> anyhow::Result<()> {
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
    pub(crate) async fn create_helper_container(
        &self,
        name: &str,
        params_file: &Path,
    ) -> anyhow::Result<()> {
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
    pub(crate) async fn run_control(
        &self,
        tag: &str,
        params: &[(&str, Param)],
    ) -> anyhow::Result<String> {
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

    pub(crate) async fn container_logs(&self, name: &str) -> anyhow::Result<String> {
        let options = LogsOptionsBuilder::new().stdout(true).stderr(true).build();
        let mut log_stream = self.docker.logs(name, Some(options));
        let mut logs = Vec::new();
        while let Some(chunk) = log_stream.next().await {
            logs.extend_from_slice(&chunk?.into_bytes());
        }
        Ok(String::from_utf8_lossy(&logs).into_owned())
    }

    pub(crate) async fn force_remove_container(&self, name: &str) -> anyhow::Result<()> {
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

    pub(crate) fn write_params(
        &self,
        tag: &str,
        params: &[(&str, Param)],
    ) -> anyhow::Result<PathBuf> {
        let object: serde_json::Map<String, serde_json::Value> = params
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_json()))
            .collect();
        let path = self.scratch_directory.path().join(format!("{tag}.json"));
        std::fs::write(&path, serde_json::to_vec(&object)?)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        Ok(path)
    }

    pub(crate) fn station_id(&self) -> String {
        format!("{}-station", self.session_id)
    }

    /// The sandbox a station on this host would use: host tmpfs outputs where possible.
    pub(crate) fn sandbox(&self) -> DockerSandbox {
        let sandbox = self.volume_sandbox();
        match &self.host_outputs {
            Some(outputs) => sandbox.with_host_outputs(outputs.clone()),
            None => sandbox,
        }
    }

    /// The fallback: `/output` a tmpfs volume kept mounted by a holder container.
    pub(crate) fn volume_sandbox(&self) -> DockerSandbox {
        DockerSandbox::for_station(self.docker.clone(), &self.station_id())
    }

    pub(crate) fn run_id(&self, tag: &str) -> String {
        format!("{}-{tag}", self.session_id)
    }

    /// A spec for the hostile image with the suite's dataset and a params file.
    pub(crate) fn spec(
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
    pub(crate) async fn run_hostile(
        &self,
        tag: &str,
        limits: RunLimits,
        params: &[(&str, Param)],
    ) -> anyhow::Result<(RunOutcome, Report)> {
        self.run_hostile_in(&self.sandbox(), tag, limits, params)
            .await
    }

    pub(crate) async fn run_hostile_in(
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

    pub(crate) async fn leftovers(
        &self,
        label: &str,
    ) -> anyhow::Result<(Vec<String>, Vec<String>)> {
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

    pub(crate) async fn assert_nothing_left(&self, run_id: &str) -> anyhow::Result<()> {
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

    pub(crate) async fn tear_down(&self) -> anyhow::Result<()> {
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
pub(crate) enum Param {
    Text(String),
    Number(u64),
}

impl Param {
    pub(crate) fn to_json(&self) -> serde_json::Value {
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
pub(crate) struct Report {
    pub(crate) values: BTreeMap<String, String>,
    pub(crate) text: String,
}

impl Report {
    pub(crate) fn parse(logs: &[u8]) -> Report {
        let text = String::from_utf8_lossy(logs).into_owned();
        let values = text
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        Report { values, text }
    }

    pub(crate) fn get(&self, key: &str) -> anyhow::Result<&str> {
        self.values
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("the report has no {key:?}; logs:\n{}", self.text))
    }

    pub(crate) fn expect_failed(&self, key: &str, reason: &str) -> anyhow::Result<()> {
        let value = self.get(key)?;
        ensure!(
            value.starts_with("failed:") && value.contains(reason),
            "{key} should have failed with {reason:?}, but reported {value:?}; logs:\n{}",
            self.text
        );
        Ok(())
    }
}

pub(crate) fn small_limits() -> RunLimits {
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

pub(crate) fn dataset_params() -> Vec<(&'static str, Param)> {
    vec![
        ("dataset", DATASET_NAME.into()),
        ("file", DATASET_FILE.into()),
    ]
}

pub(crate) fn with_mode(
    mode: &str,
    mut params: Vec<(&'static str, Param)>,
) -> Vec<(&'static str, Param)> {
    params.insert(0, ("mode", mode.into()));
    params
}

pub(crate) fn ensure_contained(outcome: &RunOutcome) -> anyhow::Result<()> {
    ensure!(
        !outcome.timed_out && !outcome.oom_killed,
        "the run should have ended on its own: {outcome:?}"
    );
    Ok(())
}

/// Every collected byte, regular files, link targets and logs alike.
pub(crate) fn all_collected_bytes(outcome: &RunOutcome) -> Vec<u8> {
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

pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

pub(crate) fn symlink_target<'a>(outcome: &'a RunOutcome, path: &str) -> Option<&'a str> {
    outcome
        .outputs
        .files
        .iter()
        .find_map(|file| match &file.kind {
            CollectedKind::Symlink { target } if file.path == path => Some(target.as_str()),
            _ => None,
        })
}

pub(crate) async fn wait_for<F, Fut>(
    timeout: Duration,
    what: &str,
    mut condition: F,
) -> anyhow::Result<()>
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

pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root exists")
}

/// Builds `tests/hostile` as a static binary, as the brief for trains prescribes.
pub(crate) fn build_hostile_binary() -> anyhow::Result<PathBuf> {
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
pub(crate) async fn build_image(
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
