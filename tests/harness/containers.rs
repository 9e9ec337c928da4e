//! Multi-host fixtures: the project's own components as containers on a private Docker network.
//!
//! Owns the `FROM scratch` images of the hub, the station (the workspace's own builds, with the
//! shared libraries they link) and Debian's `docker-registry`, the network and
//! the containers of one test run, and removing every one of them again. Everything a run creates
//! carries the label `org.pht.test.run=<run id>`, and [`DockerScope`] removes by that label when
//! dropped, so a failing test cleans up as well as a passing one.
//!
//! Does not know what the containers are for: station configuration, policies and jobs belong to
//! the tests. Talks to Docker through the `docker` CLI only (as an operator would), never through
//! the sandbox crate under test.

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use crate::{run, Finished};

/// The label every network, container and image of a test run carries; its value is the run id.
pub const LABEL_TEST_RUN: &str = "org.pht.test.run";
/// The label the station's sandbox puts on the containers and volumes of its runs.
const LABEL_SANDBOX_STATION: &str = "org.pht.station";
/// The uid and gid the hub and the registry run as inside their containers (`nobody`).
const UNPRIVILEGED_USER: &str = "65534:65534";
/// The port the registry listens on inside its container.
pub const REGISTRY_PORT: u16 = 5000;
/// The port the hub listens on inside its container.
pub const HUB_PORT: u16 = 8080;

/// `docker ARGS…`, captured.
pub fn docker(args: &[&str]) -> Finished {
    run(Command::new("docker").args(args))
}

/// `docker ARGS…`; panics with its stderr unless it succeeded. Returns stdout, trimmed.
pub fn docker_ok(args: &[&str]) -> String {
    let finished = docker(args);
    assert_eq!(
        finished.code,
        0,
        "`docker {}` failed:\n{}{}",
        args.join(" "),
        finished.stdout,
        finished.stderr
    );
    finished.stdout.trim().to_string()
}

/// The workspace's own build of a daemon (`target/debug/NAME`, which `make test` builds) at
/// `image_path`, and beside it exactly the shared libraries `ldd` lists, at their host paths, so
/// that it runs in a `FROM scratch` image. Using the build the other tests use, rather than a
/// separate static build, saves compiling the whole dependency tree a second time.
fn daemon_files(name: &str, image_path: &str) -> Vec<ContextFile> {
    let binary = crate::binary(name);
    let mut files = vec![ContextFile {
        source: binary.clone(),
        image_path: image_path.into(),
    }];
    let libraries = shared_libraries(&binary);
    // Without its loader a dynamically linked binary fails in `FROM scratch` with a bare "no
    // such file or directory"; say what is wrong instead.
    assert!(
        libraries
            .iter()
            .any(|library| library.to_string_lossy().contains("ld-linux")),
        "`ldd {}` named no dynamic loader: {libraries:?}",
        binary.display()
    );
    files.extend(libraries.into_iter().map(|library| ContextFile {
        image_path: library.display().to_string(),
        source: library,
    }));
    files
}

/// The shared libraries `ldd` lists for `binary` (with the dynamic loader), as absolute paths;
/// empty for a static binary.
pub fn shared_libraries(binary: &Path) -> Vec<PathBuf> {
    let finished = run(Command::new("ldd").arg(binary));
    // ldd exits non-zero for "not a dynamic executable".
    finished
        .stdout
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, resolved)) => resolved.trim(),
                None => line,
            };
            let path = path.split(" (").next().unwrap_or_default().trim();
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// One file of an image's build context: where it comes from on this machine, where it goes in
/// the image.
struct ContextFile {
    source: PathBuf,
    image_path: String,
}

/// Everything one test run creates in Docker. Every resource is labelled with the run id;
/// dropping the scope removes the containers (and what the stations' sandboxes left), the
/// network and the images, on success and on panic alike.
#[derive(Debug)]
pub struct DockerScope {
    run_id: String,
    network: Mutex<Option<String>>,
    containers: Mutex<Vec<String>>,
    station_ids: Mutex<Vec<String>>,
    image_tags: Mutex<Vec<String>>,
    contexts: tempfile::TempDir,
}

impl DockerScope {
    /// A scope with a fresh run id.
    pub fn new() -> DockerScope {
        let run_id = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
        DockerScope {
            run_id,
            network: Mutex::new(None),
            containers: Mutex::new(Vec::new()),
            station_ids: Mutex::new(Vec::new()),
            image_tags: Mutex::new(Vec::new()),
            contexts: tempfile::tempdir().expect("a temporary directory for build contexts"),
        }
    }

    /// The run id: unique per run, short, lower-case hex.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    fn label(&self) -> String {
        format!("{LABEL_TEST_RUN}={}", self.run_id)
    }

    /// `pht-mh-<run id>-<what>`: a name for a container or network of this run.
    pub fn name(&self, what: &str) -> String {
        format!("pht-mh-{}-{what}", self.run_id)
    }

    /// Creates the run's private bridge network and returns its name.
    pub fn create_network(&self) -> String {
        let name = self.name("net");
        docker_ok(&["network", "create", "--label", &self.label(), &name]);
        *self.network.lock().unwrap() = Some(name.clone());
        name
    }

    /// Removes `tag` when the scope ends (an image the test made some other way, such as a
    /// train built by `pht train build`).
    pub fn own_image_tag(&self, tag: &str) {
        self.image_tags.lock().unwrap().push(tag.to_string());
    }

    /// Removes the sandbox containers and volumes of `station_id` when the scope ends (a station
    /// stopped mid-run leaves them behind; a running one removes its own).
    pub fn own_station(&self, station_id: &str) {
        self.station_ids
            .lock()
            .unwrap()
            .push(station_id.to_string());
    }

    /// Builds a `FROM scratch` image from `files` and the `Dockerfile` lines after the COPYs,
    /// with the legacy builder (offline), tagged `pht-test-<component>:<run id>`.
    fn build_image(&self, component: &str, files: &[ContextFile], instructions: &str) -> String {
        let context = self.contexts.path().join(component);
        let mut dockerfile = String::from("FROM scratch\n");
        for file in files {
            let relative = file.image_path.trim_start_matches('/');
            let destination = context.join(relative);
            std::fs::create_dir_all(destination.parent().expect("a file in a directory")).unwrap();
            // The image gets the file a symbolic link names (a library), not the link. A hard
            // link saves copying a debug binary of a hundred megabytes or more.
            let source = std::fs::canonicalize(&file.source).unwrap_or_else(|e| {
                panic!("{}: {e}", file.source.display());
            });
            if std::fs::hard_link(&source, &destination).is_err() {
                std::fs::copy(&source, &destination).unwrap_or_else(|e| {
                    panic!(
                        "cannot copy {} into the {component} image: {e}",
                        source.display()
                    )
                });
            }
            dockerfile.push_str(&format!("COPY {relative} {}\n", file.image_path));
        }
        // An empty directory, for the writable directories an image needs.
        std::fs::create_dir_all(context.join("empty")).unwrap();
        dockerfile.push_str(instructions);
        std::fs::write(context.join("Dockerfile"), dockerfile).unwrap();
        let tag = format!("pht-test-{component}:{}", self.run_id);
        // The tag is registered before building, so that a build which fails half-way still
        // has its image removed.
        self.own_image_tag(&tag);
        let finished = run(Command::new("docker")
            .args(["build", "--quiet", "--force-rm", "--label"])
            .arg(self.label())
            .args(["--tag", &tag])
            .arg(&context)
            .env("DOCKER_BUILDKIT", "0"));
        assert_eq!(
            finished.code, 0,
            "building the {component} image failed:\n{}",
            finished.stderr
        );
        tag
    }

    /// Debian's `docker-registry` with exactly the shared libraries `ldd` lists, serving plain
    /// HTTP on port [`REGISTRY_PORT`] from `/var/lib/registry`, as `nobody`.
    pub fn registry_image(&self) -> String {
        let binary = PathBuf::from("/usr/bin/docker-registry");
        assert!(
            binary.exists(),
            "{} is missing: install it with `apt-get install docker-registry` (make test does)",
            binary.display()
        );
        let mut files = vec![ContextFile {
            source: binary.clone(),
            image_path: binary.display().to_string(),
        }];
        for library in shared_libraries(&binary) {
            files.push(ContextFile {
                image_path: library.display().to_string(),
                source: library,
            });
        }
        let config = self.contexts.path().join("registry-config.yml");
        std::fs::write(
            &config,
            format!("version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/registry\n  delete:\n    enabled: true\nhttp:\n  addr: 0.0.0.0:{REGISTRY_PORT}\n"),
        )
        .unwrap();
        files.push(ContextFile {
            source: config,
            image_path: "/etc/docker/registry/config.yml".into(),
        });
        self.build_image(
            "registry",
            &files,
            &format!(
                "COPY --chown={UNPRIVILEGED_USER} empty /var/lib/registry\nUSER {UNPRIVILEGED_USER}\nEXPOSE {REGISTRY_PORT}\nENTRYPOINT [\"/usr/bin/docker-registry\", \"serve\", \"/etc/docker/registry/config.yml\"]\n"
            ),
        )
    }

    /// `pht-hub` with its configuration baked in (the image lives as long as the
    /// run), listening on `0.0.0.0:`[`HUB_PORT`], state in `/var/lib/pht-hub`, as `nobody`.
    pub fn hub_image(&self, admin_token: &str) -> String {
        let config = self.contexts.path().join("hub.yaml");
        std::fs::write(
            &config,
            format!("listen: 0.0.0.0:{HUB_PORT}\nstate_dir: /var/lib/pht-hub\nadmin_token: {admin_token}\nlong_poll_max_wait_secs: 5\npickup_lease_secs: 20\n"),
        )
        .unwrap();
        let mut files = daemon_files("pht-hub", "/pht-hub");
        files.push(ContextFile {
            source: config,
            image_path: "/etc/pht-hub/hub.yaml".into(),
        });
        self.build_image(
            "hub",
            &files,
            &format!(
                "COPY --chown={UNPRIVILEGED_USER} empty /var/lib/pht-hub\nCOPY --chown={UNPRIVILEGED_USER} empty /tmp\nUSER {UNPRIVILEGED_USER}\nEXPOSE {HUB_PORT}\nENTRYPOINT [\"/pht-hub\", \"serve\", \"--config\", \"/etc/pht-hub/hub.yaml\"]\n"
            ),
        )
    }

    /// `pht-station`. It runs as root: the daemon drives the host's Docker engine
    /// through its socket (the trains it starts stay sandboxed and non-root).
    pub fn station_image(&self) -> String {
        let files = daemon_files("pht-station", "/pht-station");
        self.build_image(
            "station",
            &files,
            "COPY empty /tmp\nENTRYPOINT [\"/pht-station\"]\n",
        )
    }

    /// Starts a detached container of this run.
    pub fn run_container(&self, spec: ContainerSpec<'_>) -> Container {
        let name = self.name(spec.name);
        // Registered first: a container that fails to start is still removed.
        self.containers.lock().unwrap().push(name.clone());
        let mut args: Vec<String> = vec![
            "run".into(),
            "--detach".into(),
            "--name".into(),
            name.clone(),
            "--label".into(),
            self.label(),
        ];
        if let Some(network) = spec.network {
            args.extend(["--network".into(), network.into()]);
        }
        if let Some(alias) = spec.network_alias {
            args.extend(["--network-alias".into(), alias.into()]);
        }
        if let Some(port) = spec.publish_on_loopback {
            args.extend(["--publish".into(), format!("127.0.0.1:0:{port}")]);
        }
        for (host_path, container_path, read_only) in &spec.mounts {
            args.extend([
                "--volume".into(),
                format!(
                    "{}:{}{}",
                    host_path.display(),
                    container_path.display(),
                    if *read_only { ":ro" } else { "" }
                ),
            ]);
        }
        for (key, value) in &spec.env {
            args.extend(["--env".into(), format!("{key}={value}")]);
        }
        args.push(spec.image.into());
        args.extend(spec.args.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker_ok(&args);
        Container { name }
    }

    /// The last lines of every container of this run, for a failure message.
    pub fn logs(&self) -> String {
        self.containers
            .lock()
            .unwrap()
            .iter()
            .map(|name| {
                let logs = docker(&["logs", "--tail", "150", name]);
                format!("===== docker logs {name}\n{}{}", logs.stdout, logs.stderr)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Polls `probe` every 250 ms until it returns a value; after `timeout`, panics with what it
    /// waited for, the last thing the probe saw, and every container's logs.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        probe: impl FnMut() -> Result<T, String>,
    ) -> T {
        crate::wait_for(what, timeout, probe, || self.logs())
    }

    fn remove_everything(&self) {
        let label_filter = format!("label={}", self.label());
        let mut containers: BTreeSet<String> =
            self.containers.lock().unwrap().iter().cloned().collect();
        containers.extend(list_ids(&[
            "ps",
            "--all",
            "--quiet",
            "--filter",
            &label_filter,
        ]));
        let station_ids = self.station_ids.lock().unwrap().clone();
        for station_id in &station_ids {
            let filter = format!("label={LABEL_SANDBOX_STATION}={station_id}");
            containers.extend(list_ids(&["ps", "--all", "--quiet", "--filter", &filter]));
        }
        if !containers.is_empty() {
            let mut args = vec!["rm", "--force", "--volumes"];
            args.extend(containers.iter().map(String::as_str));
            let _ = docker(&args);
        }
        for station_id in &station_ids {
            let filter = format!("label={LABEL_SANDBOX_STATION}={station_id}");
            for volume in list_ids(&["volume", "ls", "--quiet", "--filter", &filter]) {
                let _ = docker(&["volume", "rm", "--force", &volume]);
            }
        }
        let mut networks: BTreeSet<String> = self.network.lock().unwrap().iter().cloned().collect();
        networks.extend(list_ids(&[
            "network",
            "ls",
            "--quiet",
            "--filter",
            &label_filter,
        ]));
        for network in networks {
            let _ = docker(&["network", "rm", &network]);
        }
        // Tags first: untagging removes an image only when nothing else (another test's tag)
        // still names it.
        for tag in self.image_tags.lock().unwrap().iter() {
            let _ = docker(&["rmi", tag]);
        }
        for image in list_ids(&["images", "--quiet", "--filter", &label_filter]) {
            let _ = docker(&["rmi", "--force", &image]);
        }
        let leftovers: Vec<String> = [
            list_ids(&["ps", "--all", "--quiet", "--filter", &label_filter]),
            list_ids(&["network", "ls", "--quiet", "--filter", &label_filter]),
            list_ids(&["images", "--quiet", "--filter", &label_filter]),
        ]
        .concat();
        if !leftovers.is_empty() {
            eprintln!(
                "warning: docker resources labelled {} are left: {leftovers:?}",
                self.label()
            );
        }
    }
}

impl Default for DockerScope {
    fn default() -> DockerScope {
        DockerScope::new()
    }
}

impl Drop for DockerScope {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The panic message holds the logs when a wait timed out; other panics (a failed
            // assertion) get them here, before the containers are gone.
            eprintln!("{}", self.logs());
        }
        self.remove_everything();
    }
}

/// Ids that a `docker … --quiet` listing prints, one per line.
fn list_ids(args: &[&str]) -> Vec<String> {
    docker(args)
        .stdout
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect()
}

/// What [`DockerScope::run_container`] starts.
#[derive(Debug, Default)]
pub struct ContainerSpec<'a> {
    /// Short name; the container is called `pht-mh-<run id>-<name>`.
    pub name: &'a str,
    pub image: &'a str,
    pub network: Option<&'a str>,
    /// The name other containers on the network reach this one by.
    pub network_alias: Option<&'a str>,
    /// A container port to publish on a free loopback port of this machine.
    pub publish_on_loopback: Option<u16>,
    /// `(host path, container path, read-only)`.
    pub mounts: Vec<(PathBuf, PathBuf, bool)>,
    pub env: Vec<(&'a str, String)>,
    /// Arguments after the image (to its entrypoint).
    pub args: Vec<String>,
}

/// A container of a [`DockerScope`]; removed by the scope, not by this handle.
#[derive(Debug, Clone)]
pub struct Container {
    pub name: String,
}

impl Container {
    /// `127.0.0.1:<port>` where `container_port` is published on this machine.
    pub fn published_address(&self, container_port: u16) -> String {
        let ports = docker_ok(&["port", &self.name, &format!("{container_port}/tcp")]);
        ports
            .lines()
            .map(str::trim)
            .find(|line| line.starts_with("127.0.0.1:"))
            .unwrap_or_else(|| {
                panic!(
                    "{}: port {container_port} is not published on loopback: {ports:?}",
                    self.name
                )
            })
            .to_string()
    }

    pub fn logs(&self) -> String {
        let logs = docker(&["logs", &self.name]);
        format!("{}{}", logs.stdout, logs.stderr)
    }

    /// Cuts the container off `network` (`docker network disconnect`).
    pub fn disconnect(&self, network: &str) {
        docker_ok(&["network", "disconnect", network, &self.name]);
    }

    /// Puts the container back on `network` (`docker network connect`).
    pub fn connect(&self, network: &str) {
        docker_ok(&["network", "connect", network, &self.name]);
    }

    /// Kills the container with SIGKILL (`docker kill`): no graceful stop.
    pub fn kill(&self) {
        docker_ok(&["kill", &self.name]);
    }

    /// Starts the stopped container again (`docker start`), with its filesystem and networks.
    pub fn start(&self) {
        docker_ok(&["start", &self.name]);
    }

    /// Restarts the container (`docker restart`: SIGTERM, then a start). A port published on
    /// loopback may move to another host port; ask [`Container::published_address`] again.
    pub fn restart(&self) {
        docker_ok(&["restart", &self.name]);
    }

    /// Stops the container with SIGTERM, SIGKILL after `grace`; returns its exit code.
    pub fn stop(&self, grace: Duration) -> i64 {
        docker_ok(&["stop", "--time", &grace.as_secs().to_string(), &self.name]);
        docker_ok(&["inspect", "--format", "{{.State.ExitCode}}", &self.name])
            .parse()
            .expect("docker inspect prints the exit code as a number")
    }
}

/// The status code of `GET path` on `address` (`host:port`), or `None` when nothing answers.
pub fn http_status(address: &str, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}
