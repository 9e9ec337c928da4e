//! The end-to-end test harness: real processes, a real registry, real Docker.
//!
//! Owns starting and stopping Debian's `docker-registry` on a free loopback port, locating the
//! project's built binaries, and running them with captured output. Tests never skip: a missing
//! prerequisite fails with a message saying how to provide it (`make test` provides all).

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod bases;
pub mod compose;
pub mod containers;
pub mod lossy_proxy;
pub mod nginx;
pub mod postgres;
pub mod prometheus;
pub mod routes;
pub mod signing_proxy;

/// The repository root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

/// The `shared/` directory beside the checkout (interop vectors).
pub fn shared_dir() -> PathBuf {
    workspace_root().join("../shared")
}

/// A project executable: `pht`, `pht-hub` or `pht-station`, which `cargo test --workspace` (and
/// `make test`) builds beside the tests, as `cargo build --bins` does.
pub fn binary(name: &str) -> PathBuf {
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let path = target_dir.join("debug").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo test --workspace --no-run` or `cargo build --bins` first (`make test` does)",
        path.display()
    );
    path
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind an ephemeral loopback port")
        .local_addr()
        .expect("local address")
        .port()
}

/// What a finished command printed and how it exited.
#[derive(Debug)]
pub struct Finished {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// Panics with both streams unless the command succeeded.
    pub fn success(self) -> Finished {
        assert_eq!(
            self.code, 0,
            "command failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Panics unless the command exited with `code`.
    pub fn code(self, code: i32) -> Finished {
        assert_eq!(
            self.code, code,
            "unexpected exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Stdout parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Polls `probe` every 250 ms until it returns a value; after `timeout`, panics with what it
/// waited for, the last thing the probe saw, and `context()` (logs, say).
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
    context: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let last_seen = match probe() {
            Ok(value) => return value,
            Err(last_seen) => last_seen,
        };
        if Instant::now() > deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}\nlast seen: {last_seen}\n{}",
                context()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Runs a command to completion, capturing its output.
pub fn run(command: &mut Command) -> Finished {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    Finished {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `pht` with the given arguments, in `dir`, with an empty key passphrase unless set.
pub fn pht(dir: &Path, args: &[&str]) -> Finished {
    let mut command = Command::new(binary("pht"));
    command.current_dir(dir).args(args);
    if std::env::var_os("PHT_KEY_PASSWORD").is_none() {
        command.env("PHT_KEY_PASSWORD", "");
    }
    run(&mut command)
}

/// Debian's `docker-registry` (distribution 2.8), serving on a free loopback port from a
/// temporary directory, with deletes enabled. Stopped when dropped.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    address: String,
    _storage: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        let storage = tempfile::tempdir().expect("temporary directory for the registry");
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {address}\n",
            storage.path().join("data").display()
        );
        let config_path = storage.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write the registry config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start `docker-registry`: install it with `apt-get install docker-registry` (make test does)");
        let registry = Registry {
            child,
            address,
            _storage: storage,
        };
        registry.wait_ready();
        registry
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(mut stream) = TcpStream::connect(&self.address) {
                let request = format!("GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", self.address);
                let mut response = String::new();
                if stream.write_all(request.as_bytes()).is_ok()
                    && stream.read_to_string(&mut response).is_ok()
                    && response.starts_with("HTTP/1.")
                    && response.contains(" 200 ")
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "docker-registry on {} did not become ready within 20 s",
            self.address
        );
    }

    /// `127.0.0.1:<port>`.
    pub fn address(&self) -> &str {
        &self.address
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the Docker daemon answers; tests call this first so a missing daemon fails loudly.
pub fn require_docker() {
    let finished = run(Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]));
    assert_eq!(
        finished.code, 0,
        "Docker is not reachable (is the daemon running and /var/run/docker.sock readable?): {}",
        finished.stderr
    );
}

/// `pht-station --config CONFIG ARGS…`.
pub fn pht_station(config: &Path, args: &[&str]) -> Finished {
    let mut command = Command::new(binary("pht-station"));
    command
        .arg("--config")
        .arg(config)
        .args(args)
        .env("PHT_OPERATOR", "test-operator");
    run(&mut command)
}

/// Builds `tests/hostile` as a static binary (once per test process) and returns its path.
pub fn hostile_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = workspace_root();
            let target_dir = root.join("target/static");
            let finished = run(Command::new(
                std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()),
            )
            .args([
                "build",
                "--release",
                "--quiet",
                "--target",
                "x86_64-unknown-linux-gnu",
                "--manifest-path",
            ])
            .arg(root.join("tests/hostile/Cargo.toml"))
            .arg("--target-dir")
            .arg(&target_dir)
            .env("RUSTFLAGS", "-C target-feature=+crt-static"));
            assert_eq!(
                finished.code, 0,
                "building tests/hostile failed:\n{}",
                finished.stderr
            );
            target_dir.join("x86_64-unknown-linux-gnu/release/hostile")
        })
        .clone()
}

/// A signing identity made with `pht key generate` (unencrypted).
#[derive(Debug)]
pub struct Researcher {
    pub name: String,
    pub private_key: PathBuf,
    pub public_key: PathBuf,
    pub age_identity: PathBuf,
    pub age_recipient: String,
}

impl Researcher {
    pub fn generate(dir: &Path, name: &str) -> Researcher {
        pht(dir, &["key", "generate", "--name", name]).success();
        Researcher {
            name: name.to_string(),
            private_key: dir.join(format!("{name}.key")),
            public_key: dir.join(format!("{name}.pub")),
            age_identity: dir.join(format!("{name}.age")),
            age_recipient: std::fs::read_to_string(dir.join(format!("{name}.age.pub")))
                .unwrap()
                .trim()
                .to_string(),
        }
    }

    /// Signs a train reference.
    pub fn sign(&self, reference: &str) {
        pht(
            &workspace_root(),
            &[
                "train",
                "sign",
                reference,
                "--key",
                &self.private_key.display().to_string(),
            ],
        )
        .success();
    }
}

/// Builds the train in `dir` tagged `reference`, pushes it and returns `REPO@sha256:…`.
pub fn publish_train(dir: &Path, reference: &str, extra_build_args: &[&str]) -> String {
    let mut build_args = vec![
        "train",
        "build",
        dir.to_str().expect("UTF-8 path"),
        "--tag",
        reference,
    ];
    build_args.extend_from_slice(extra_build_args);
    pht(&workspace_root(), &build_args).success();
    let pushed = pht(&workspace_root(), &["--json", "train", "push", reference])
        .success()
        .json();
    pushed["pinned"]
        .as_str()
        .expect("push prints the pinned reference")
        .to_string()
}

/// A train directory for the hostile program: its binary, a Dockerfile and a train.yaml that
/// declares the `cohort` dataset and a `mode` parameter.
pub fn hostile_train_dir(parent: &Path) -> PathBuf {
    let dir = parent.join("hostile-train");
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::copy(hostile_binary(), dir.join("bin/hostile")).unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM scratch\nCOPY bin/hostile /hostile\nUSER 65534:65534\nENTRYPOINT [\"/hostile\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("train.yaml"),
        "name: hostile\nversion: 0.1.0\ndescription: tries to escape\nauthors: []\npurpose: aggregate statistics\ndatasets: [cohort]\n\
parameters:\n  - {name: mode, type: string, required: true}\n  - {name: host, type: string}\n  - {name: port, type: integer}\n  - {name: dataset, type: string}\n  - {name: file, type: string}\n  - {name: bytes, type: integer}\n  - {name: name, type: string}\n  - {name: rows, type: integer}\n  - {name: parts, type: integer}\n  - {name: disguise, type: string}\n  - {name: text, type: string}\n  - {name: code, type: integer}\n\
outputs:\n  - {path: report.txt, kind: text}\n  - {path: state.csv, kind: state}\n  - {path: \"part-*.csv\", kind: table}\nresources: {memory: 64MiB, wall_clock: 3s}\nentrypoint: [\"/hostile\"]\n",
    )
    .unwrap();
    dir
}

/// A station on this machine: a directory with `station.yaml`, a policy, state, and the
/// synthetic cohort of `examples/data/<dataset_source>`.
#[derive(Debug)]
pub struct StationFixture {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

/// One trusted signer in a generated policy.
#[derive(Debug, Clone)]
pub struct PolicySigner<'a> {
    pub name: &'a str,
    pub public_key: &'a Path,
    pub datasets: &'a str,
    pub approval: &'a str,
}

impl StationFixture {
    /// A station `station_id` holding `examples/data/<data>/cohort`, trusting `signers`, pulling
    /// from `registry`. `extra_policy` is appended to the policy file (e.g. `outputs:` settings).
    pub fn new(
        station_id: &str,
        data: &str,
        registry: &str,
        signers: &[PolicySigner<'_>],
        extra_policy: &str,
    ) -> StationFixture {
        let dir = tempfile::tempdir().unwrap();
        let mut policy = String::from("version: 1\ntrusted_signers:\n");
        for signer in signers {
            policy.push_str(&format!(
                "  - name: {}\n    public_key: {}\n    purposes: [\"aggregate statistics\"]\n    datasets: {}\n    approval: {}\n",
                signer.name,
                signer.public_key.display(),
                signer.datasets,
                signer.approval
            ));
        }
        policy.push_str(&format!(
            "registries:\n  - registry: \"{registry}\"\n    repositories: [\"trains/*\"]\nresources: {{cpus: 1, memory: 256MiB, pids: 64, wall_clock: 2m, output_size: 1MiB, tmp_size: 16MiB, log_size: 64KiB}}\n{extra_policy}"
        ));
        std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
        let data_path = workspace_root()
            .join("examples/data")
            .join(data)
            .join("cohort");
        let config = format!(
            "version: 1\nstation_id: {station_id}\nkey_dir: keys\ndatasets:\n  cohort:\n    path: {}\n    format: csv\nregistries:\n  - registry: \"{registry}\"\npolicy: policy.yaml\nstate_dir: state\n",
            data_path.display()
        );
        let config_path = dir.path().join("station.yaml");
        std::fs::write(&config_path, config).unwrap();
        StationFixture {
            dir,
            config: config_path,
        }
    }

    /// `pht-station` against this station.
    pub fn station(&self, args: &[&str]) -> Finished {
        pht_station(&self.config, args)
    }

    /// The audit entries of a run, as JSON.
    pub fn audit_of(&self, run_id: &str) -> Vec<serde_json::Value> {
        let shown = self
            .station(&["--json", "audit", "show", "--run", run_id])
            .success()
            .json();
        shown
            .as_array()
            .expect("audit show prints an array")
            .clone()
    }

    /// A file collected from a run's `/output`.
    pub fn output(&self, run_id: &str, path: &str) -> Vec<u8> {
        std::fs::read(
            self.dir
                .path()
                .join("state/runs")
                .join(run_id)
                .join("outputs")
                .join(path),
        )
        .unwrap_or_default()
    }

    pub fn audit_log(&self) -> PathBuf {
        self.dir.path().join("state/audit.log")
    }
}

/// Counts rows of a CSV by the values of `column`, as the example train should.
pub fn count_by(csv: &str, column: &str) -> std::collections::BTreeMap<String, u64> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let index = header
        .iter()
        .position(|c| *c == column)
        .expect("column exists");
    let mut counts = std::collections::BTreeMap::new();
    for line in lines.filter(|l| !l.is_empty()) {
        *counts
            .entry(line.split(',').nth(index).unwrap_or("").to_string())
            .or_insert(0) += 1;
    }
    counts
}

/// A `pht-hub` process on a free loopback port, with its state in a temporary directory.
/// Stopped when dropped.
#[derive(Debug)]
pub struct Hub {
    child: Option<Child>,
    pub url: String,
    pub admin_token: String,
    pub dir: tempfile::TempDir,
    config: PathBuf,
    /// Arguments after `pht-hub serve --config FILE` (`--log-format json`, say).
    serve_args: Vec<String>,
}

impl Hub {
    pub fn start() -> Hub {
        Hub::start_with("")
    }

    /// A hub whose configuration has `extra_config` appended (YAML lines).
    pub fn start_with(extra_config: &str) -> Hub {
        Hub::start_with_args(extra_config, &[])
    }

    /// [`Hub::start_with`], serving with `serve_args` too.
    pub fn start_with_args(extra_config: &str, serve_args: &[&str]) -> Hub {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let admin_token = "test-admin-token-0123456789".to_string();
        let config = dir.path().join("hub.yaml");
        std::fs::write(
            &config,
            {
                // Settings `extra_config` names replace these defaults.
                let defaults: String = ["long_poll_max_wait_secs: 5", "pickup_lease_secs: 20"]
                    .iter()
                    .filter(|line| !extra_config.contains(line.split(':').next().unwrap_or("")))
                    .map(|line| format!("{line}\n"))
                    .collect();
                format!("listen: 127.0.0.1:{port}\nstate_dir: state\nadmin_token: {admin_token}\n{defaults}{extra_config}")
            },
        )
        .unwrap();
        let mut hub = Hub {
            child: None,
            url: format!("http://127.0.0.1:{port}"),
            admin_token,
            dir,
            config,
            serve_args: serve_args.iter().map(|a| a.to_string()).collect(),
        };
        hub.spawn();
        hub
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("hub.log"))
            .unwrap();
        // The hub logs to stdout (as a service under systemd would), errors to stderr.
        let child = Command::new(binary("pht-hub"))
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .args(&self.serve_args)
            .env("NO_COLOR", "1")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let address = self.url.trim_start_matches("http://").to_string();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(mut stream) = TcpStream::connect(&address) {
                let mut response = String::new();
                if stream.write_all(b"GET /v1/health HTTP/1.0\r\n\r\n").is_ok()
                    && stream.read_to_string(&mut response).is_ok()
                    && response.contains(" 200 ")
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "pht-hub did not become ready: {}",
            std::fs::read_to_string(self.dir.path().join("hub.log")).unwrap_or_default()
        );
    }

    /// The hub's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("hub.log")).unwrap_or_default()
    }

    /// The hub's `host:port`.
    pub fn address(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    /// Stops the hub process and starts it again on the same state.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Kills the hub at once (SIGKILL), as a lost machine would; [`Hub::start_again`] brings it
    /// back on the same port and state.
    pub fn kill(&mut self) {
        self.stop();
    }

    /// Stops the hub as its service manager would (SIGTERM: long-polls end, requests in progress
    /// finish) and waits for it to exit.
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Starts the hub again after [`Hub::kill`] or [`Hub::terminate`].
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the hub is running");
        self.spawn();
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `pht-hub admin --config <this hub's config> ARGS…`, as its operator would run it.
    pub fn admin_cli(&self, args: &[&str]) -> Finished {
        run(Command::new(binary("pht-hub"))
            .arg("admin")
            .arg("--config")
            .arg(&self.config)
            .args(args))
    }

    pub fn admin(&self) -> pht_api::HubClient {
        pht_api::HubClient::new(
            &self.url,
            pht_api::Credentials::Admin {
                token: self.admin_token.clone(),
            },
        )
        .unwrap()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `pht-station run` daemon. Stopped with SIGTERM (graceful) when dropped.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    config: PathBuf,
    log: PathBuf,
    /// Global arguments before `run` (`--log-format json`, say).
    args: Vec<String>,
}

impl Daemon {
    pub fn start(config: &Path) -> Daemon {
        Daemon::start_with(config, &[])
    }

    /// [`Daemon::start`] with global arguments `args` before `run`.
    pub fn start_with(config: &Path, args: &[&str]) -> Daemon {
        let mut daemon = Daemon {
            child: None,
            config: config.to_path_buf(),
            log: config.with_extension("daemon.log"),
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        daemon.spawn();
        daemon
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(binary("pht-station"))
            .arg("--config")
            .arg(&self.config)
            .args(&self.args)
            .arg("run")
            .env("PHT_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Kills the daemon at once (no graceful shutdown), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
