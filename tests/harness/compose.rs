//! docker-compose projects of `examples/compose/`: its images built by its own
//! `build-images.sh`, the project brought up under a name no other test uses, and everything it
//! made removed again.
//!
//! Owns the `docker-compose` command line (project name, compose file, env file), the image tags
//! of a run, and tearing down: `docker-compose down -v`, then by label whatever a half-started
//! project or a killed station left (containers, volumes, networks of the project; the sandbox
//! containers and volumes of its stations), then the images. [`ComposeProject`] does all of it
//! when dropped, so a failing test cleans up as well as a passing one.
//!
//! Does not write the deployment's configuration (which paths, ports and keys a test uses belongs
//! to the test) and never talks to the hub or the station: only to Docker, through the
//! `docker` and `docker-compose` command lines an operator uses.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use crate::containers::{docker, LABEL_TEST_RUN};
use crate::{run, workspace_root, Finished};

/// The label docker-compose puts on the containers, networks and volumes of a project.
const LABEL_COMPOSE_PROJECT: &str = "com.docker.compose.project";
/// The label the station's sandbox puts on the containers and volumes of its runs.
const LABEL_SANDBOX_STATION: &str = "org.pht.station";
/// The image a station's sandbox builds for its `/output` holders (in the `volume` storage a
/// station in a container uses), shared by every station on the engine.
const OUTPUT_HOLDER_IMAGE: &str = "pht-output-holder:v1";
/// The images `build-images.sh` builds, as `<name>:<tag>`.
const IMAGE_NAMES: [&str; 3] = ["pht-hub", "pht-station", "pht-registry"];
/// How long `docker-compose down` lets the station finish before it kills it.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// `examples/compose/`.
pub fn compose_dir() -> PathBuf {
    workspace_root().join("examples/compose")
}

/// Whether `docker-compose` (v1, Debian's) runs; a missing one fails with how to install it.
pub fn require_compose() {
    let finished = run(Command::new("docker-compose").arg("version"));
    assert_eq!(
        finished.code, 0,
        "docker-compose does not run (install it with `apt-get install docker-compose`): {}",
        finished.stderr
    );
}

/// One docker-compose project of `examples/compose/docker-compose.yml` with its settings in an
/// env file; torn down when dropped.
#[derive(Debug)]
pub struct ComposeProject {
    run_id: String,
    env_file: PathBuf,
    image_tags: Mutex<Vec<String>>,
    station_ids: Mutex<Vec<String>>,
    /// Whether the output holder image was there before `up`: only one this run made is removed.
    holder_image_existed: Mutex<Option<bool>>,
    /// The build contexts of the images.
    contexts: tempfile::TempDir,
    torn_down: bool,
}

impl ComposeProject {
    /// A project with a fresh run id, reading its settings from `env_file` (which the test writes
    /// before [`ComposeProject::up`]).
    pub fn new(env_file: &Path) -> ComposeProject {
        ComposeProject {
            run_id: uuid::Uuid::new_v4().simple().to_string()[..10].to_string(),
            env_file: env_file.to_path_buf(),
            image_tags: Mutex::new(Vec::new()),
            station_ids: Mutex::new(Vec::new()),
            holder_image_existed: Mutex::new(None),
            contexts: tempfile::tempdir().expect("a temporary directory for build contexts"),
            torn_down: false,
        }
    }

    /// Unique per run, short, lower-case hex.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// `pht-compose-<run id>`: the compose project name, so no two runs share a container,
    /// network or volume name.
    pub fn name(&self) -> String {
        format!("pht-compose-{}", self.run_id)
    }

    /// `compose-<run id>`: the tag of this run's images (`PHT_IMAGE_TAG` in the env file).
    pub fn image_tag(&self) -> String {
        format!("compose-{}", self.run_id)
    }

    /// Removes `tag` when the project is torn down (an image the test made some other way, such
    /// as a train built by `pht train build`).
    pub fn own_image_tag(&self, tag: &str) {
        self.image_tags.lock().unwrap().push(tag.to_string());
    }

    /// Removes the sandbox containers and volumes of `station_id` when the project is torn down
    /// (a station killed mid-run leaves them behind; one stopped in time removes its own).
    pub fn own_station(&self, station_id: &str) {
        self.station_ids
            .lock()
            .unwrap()
            .push(station_id.to_string());
    }

    /// Builds the deployment's images with `examples/compose/build-images.sh` from the
    /// workspace's own `target/debug` binaries, writing the build contexts into a temporary
    /// directory; returns the images, `pht-hub:<tag>` ….
    pub fn build_images(&self) -> Vec<String> {
        let bin_dir = crate::binary("pht-hub")
            .parent()
            .expect("a binary lives in a directory")
            .to_path_buf();
        // Registered before building, so that a build failing half-way still has its images
        // removed.
        let images: Vec<String> = IMAGE_NAMES
            .iter()
            .map(|name| format!("{name}:{}", self.image_tag()))
            .collect();
        for image in &images {
            self.own_image_tag(image);
        }
        let finished = run(Command::new(compose_dir().join("build-images.sh"))
            .arg(&bin_dir)
            .env("PHT_IMAGE_TAG", self.image_tag())
            .env("PHT_BUILD_DIR", self.contexts.path())
            .env(
                "PHT_IMAGE_LABEL",
                format!("{LABEL_TEST_RUN}={}", self.run_id),
            ));
        assert_eq!(
            finished.code, 0,
            "build-images.sh failed:\n{}{}",
            finished.stdout, finished.stderr
        );
        let built: Vec<String> = finished.stdout.lines().map(str::to_string).collect();
        assert_eq!(built, images, "build-images.sh printed other images");
        images
    }

    /// `docker-compose -p <name> -f examples/compose/docker-compose.yml --env-file <env> ARGS…`.
    pub fn compose(&self, args: &[&str]) -> Finished {
        run(Command::new("docker-compose")
            .arg("--project-name")
            .arg(self.name())
            .arg("--file")
            .arg(compose_dir().join("docker-compose.yml"))
            .arg("--env-file")
            .arg(&self.env_file)
            .args(args))
    }

    /// [`ComposeProject::compose`]; panics with its output unless it succeeded. Returns stdout.
    pub fn compose_ok(&self, args: &[&str]) -> String {
        let finished = self.compose(args);
        assert_eq!(
            finished.code,
            0,
            "`docker-compose {}` failed:\n{}{}",
            args.join(" "),
            finished.stdout,
            finished.stderr
        );
        finished.stdout
    }

    /// `docker-compose up -d`: every service started, detached.
    pub fn up(&self) {
        *self.holder_image_existed.lock().unwrap() =
            Some(docker(&["image", "inspect", OUTPUT_HOLDER_IMAGE]).code == 0);
        self.compose_ok(&["up", "--detach", "--no-build"]);
    }

    /// The id of `service`'s container.
    pub fn container_of(&self, service: &str) -> String {
        let id = self
            .compose_ok(&["ps", "--quiet", service])
            .trim()
            .to_string();
        assert!(!id.is_empty(), "service {service} has no container");
        id
    }

    /// What `service` wrote to stdout and stderr, without docker-compose's prefixes.
    pub fn service_logs(&self, service: &str) -> String {
        let finished = docker(&["logs", &self.container_of(service)]);
        format!("{}{}", finished.stdout, finished.stderr)
    }

    /// The last lines of every service and their states, for a failure message.
    pub fn logs(&self) -> String {
        let states = self.compose(&["ps", "--all"]);
        let logs = self.compose(&["logs", "--no-color", "--tail", "150"]);
        format!(
            "===== docker-compose ps\n{}{}\n===== docker-compose logs\n{}{}",
            states.stdout, states.stderr, logs.stdout, logs.stderr
        )
    }

    /// Polls `probe` every 250 ms until it returns a value; after `timeout`, panics with what it
    /// waited for, the last thing the probe saw, and the services' logs.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        probe: impl FnMut() -> Result<T, String>,
    ) -> T {
        crate::wait_for(what, timeout, probe, || self.logs())
    }

    /// `docker-compose down -v`, then whatever is left of this run (see the module comment);
    /// returns what could not be removed, empty when all is gone. Dropping the project does this
    /// too; a second call does nothing.
    pub fn tear_down(&mut self) -> Vec<String> {
        if std::mem::replace(&mut self.torn_down, true) {
            return Vec::new();
        }
        let grace = STOP_GRACE.as_secs().to_string();
        // Fails harmlessly when the env file was never written: nothing was brought up then.
        let down = self.compose(&["down", "--volumes", "--remove-orphans", "--timeout", &grace]);
        if down.code != 0 {
            eprintln!(
                "docker-compose down failed (removing by label):\n{}",
                down.stderr
            );
        }
        let project_filter = format!("label={LABEL_COMPOSE_PROJECT}={}", self.name());
        let station_filters: Vec<String> = self
            .station_ids
            .lock()
            .unwrap()
            .iter()
            .map(|station_id| format!("label={LABEL_SANDBOX_STATION}={station_id}"))
            .collect();
        let mut containers = list_ids(&["ps", "--all", "--quiet", "--filter", &project_filter]);
        for filter in &station_filters {
            containers.extend(list_ids(&["ps", "--all", "--quiet", "--filter", filter]));
        }
        if !containers.is_empty() {
            let mut args = vec!["rm", "--force", "--volumes"];
            args.extend(containers.iter().map(String::as_str));
            let _ = docker(&args);
        }
        let mut volumes = list_ids(&["volume", "ls", "--quiet", "--filter", &project_filter]);
        for filter in &station_filters {
            volumes.extend(list_ids(&["volume", "ls", "--quiet", "--filter", filter]));
        }
        for volume in &volumes {
            let _ = docker(&["volume", "rm", "--force", volume]);
        }
        for network in list_ids(&["network", "ls", "--quiet", "--filter", &project_filter]) {
            let _ = docker(&["network", "rm", &network]);
        }
        // Untagging removes an image only when no other tag (another test's) still names it.
        let image_tags = self.image_tags.lock().unwrap().clone();
        for tag in &image_tags {
            let _ = docker(&["rmi", tag]);
        }
        // The holder image this run's station built; without --force, so that it stays while
        // another test's holder still uses it.
        if *self.holder_image_existed.lock().unwrap() == Some(false) {
            let _ = docker(&["rmi", OUTPUT_HOLDER_IMAGE]);
        }
        self.leftovers(&station_filters, &image_tags)
    }

    /// What of this run Docker still holds.
    fn leftovers(&self, station_filters: &[String], image_tags: &[String]) -> Vec<String> {
        let project_filter = format!("label={LABEL_COMPOSE_PROJECT}={}", self.name());
        let mut filters = vec![project_filter];
        filters.extend(station_filters.iter().cloned());
        let mut leftovers = BTreeSet::new();
        for filter in &filters {
            for (kind, listing) in [
                (
                    "container",
                    vec!["ps", "--all", "--quiet", "--filter", filter],
                ),
                (
                    "volume",
                    vec!["volume", "ls", "--quiet", "--filter", filter],
                ),
                (
                    "network",
                    vec!["network", "ls", "--quiet", "--filter", filter],
                ),
            ] {
                leftovers.extend(
                    list_ids(&listing)
                        .into_iter()
                        .map(|id| format!("{kind} {id}")),
                );
            }
        }
        let run_filter = format!("label={LABEL_TEST_RUN}={}", self.run_id);
        leftovers.extend(
            list_ids(&["images", "--quiet", "--filter", &run_filter])
                .into_iter()
                .map(|id| format!("image {id}")),
        );
        for tag in image_tags {
            if docker(&["image", "inspect", tag]).code == 0 {
                leftovers.insert(format!("image {tag}"));
            }
        }
        leftovers.into_iter().collect()
    }
}

impl Drop for ComposeProject {
    fn drop(&mut self) {
        if self.torn_down {
            return;
        }
        if std::thread::panicking() {
            // A timed-out wait printed the logs already; a failed assertion gets them here,
            // before the containers are gone.
            eprintln!("{}", self.logs());
        }
        let leftovers = self.tear_down();
        if !leftovers.is_empty() {
            eprintln!(
                "warning: compose project {} left {leftovers:?}",
                self.name()
            );
        }
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
