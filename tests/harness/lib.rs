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

/// A project binary built by `cargo build --bins` (which `make test` runs first).
pub fn binary(name: &str) -> PathBuf {
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let path = target_dir.join("debug").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --bins` first (`make test` does)",
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
