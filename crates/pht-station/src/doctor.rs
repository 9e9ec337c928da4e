//! `pht-station doctor`: everything `check-config` checks, and then what only a live look can
//! tell — Docker and its API version, the sandbox runtime the policy names, each registry,
//! the hub (reachable, and does it know this station's key), the clock against the hub's, the
//! key files' permissions and the free space in the state directory.
//!
//! Owns those checks and their advice (each failure says what to do). Changes nothing: no
//! container is started, nothing is written outside a probe file in the state directory.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::config::StationConfig;
use crate::readiness::{self, Check};

/// What `doctor` found.
#[derive(Debug, Clone, Serialize)]
pub struct Diagnosis {
    pub station_id: String,
    /// True only when every check passed.
    pub ok: bool,
    pub checks: Vec<Check>,
}

/// Free space below this in the state directory fails the disk check.
pub const MIN_FREE_BYTES: u64 = 1 << 30;
/// A clock this far from the hub's fails the clock check, well inside the signatures' window.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(30);

/// Runs every check. `output_storage` is the caller's verdict on where `/output` would live
/// (it needs the station's own decision logic, in `main.rs`).
pub async fn diagnose(config: &StationConfig, output_storage: Check) -> Diagnosis {
    let (mut checks, trust) = readiness::check(config);
    checks.push(output_storage);
    checks.push(key_permissions(&config.key_dir));
    checks.push(disk_space(&config.state_dir));
    let docker = match &config.docker_socket {
        Some(socket) => pht_docker::connect_to_socket(socket).await,
        None => pht_docker::connect().await,
    };
    match docker {
        Ok(docker) => {
            checks.push(docker_version(&docker).await);
            if let Some(trust) = &trust {
                checks.push(runtime(&docker, trust.policy.runtime()).await);
            }
        }
        Err(error) => checks.push(Check::fail(
            "docker",
            format!(
                "{error}; start Docker, or set `docker.socket` in {} to the engine's socket",
                config.source.display()
            ),
        )),
    }
    for registry in &config.registries {
        checks.push(registry_check(config, &registry.registry).await);
    }
    if let Some(hub) = &config.hub {
        let (reached, clock) = hub_checks(config, &hub.urls).await;
        checks.push(reached);
        checks.extend(clock);
    }
    Diagnosis {
        station_id: config.station_id.clone(),
        ok: checks.iter().all(|check| check.ok),
        checks,
    }
}

async fn docker_version(docker: &bollard::Docker) -> Check {
    match docker.version().await {
        Ok(version) => Check::pass(
            "docker",
            format!(
                "Docker Engine {}, API {} (this station speaks {})",
                version.version.unwrap_or_default(),
                version.api_version.unwrap_or_default(),
                docker.client_version()
            ),
        ),
        Err(error) => Check::fail(
            "docker",
            format!("the engine does not answer ({error}); is dockerd running and healthy?"),
        ),
    }
}

async fn runtime(docker: &bollard::Docker, wanted: pht_policy::Runtime) -> Check {
    let wanted = wanted.to_string();
    match docker.info().await {
        Ok(info) => {
            let runtimes: Vec<String> = info
                .runtimes
                .map(|runtimes| runtimes.into_keys().collect())
                .unwrap_or_default();
            if runtimes.contains(&wanted) {
                Check::pass("sandbox runtime", format!("{wanted}, as the policy asks"))
            } else {
                Check::fail(
                    "sandbox runtime",
                    format!(
                        "the policy runs trains under `{wanted}`, which Docker does not have (it has: {}); install it and register it under `runtimes` in /etc/docker/daemon.json, then restart Docker",
                        runtimes.join(", ")
                    ),
                )
            }
        }
        Err(error) => Check::fail(
            "sandbox runtime",
            format!("cannot ask Docker for its runtimes ({error})"),
        ),
    }
}

/// The station's private keys must be readable by its own user only.
fn key_permissions(key_dir: &Path) -> Check {
    use std::os::unix::fs::PermissionsExt as _;
    let mut problems = Vec::new();
    let mut checked = Vec::new();
    for name in ["station.key", "station.age"] {
        let path = key_dir.join(name);
        match std::fs::metadata(&path) {
            Ok(metadata) => {
                let mode = metadata.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    problems.push(format!(
                        "{} is readable or writable by others (mode {mode:03o}); run `chmod 600 {}`",
                        path.display(),
                        path.display()
                    ));
                } else {
                    checked.push(format!("{name} {mode:03o}"));
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => problems.push(format!("cannot read {}: {error}", path.display())),
        }
    }
    if let Ok(metadata) = std::fs::metadata(key_dir) {
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o022 != 0 {
            problems.push(format!(
                "the key directory {} can be written by others (mode {mode:03o}); run `chmod 700 {}`",
                key_dir.display(),
                key_dir.display()
            ));
        }
    }
    if problems.is_empty() {
        let detail = if checked.is_empty() {
            "no private key files yet".to_string()
        } else {
            format!("{} (owner only)", checked.join(", "))
        };
        Check::pass("key files", detail)
    } else {
        Check::fail("key files", problems.join("; "))
    }
}

fn disk_space(state_dir: &Path) -> Check {
    match pht_fs::free_bytes(state_dir) {
        Ok(free) if free >= MIN_FREE_BYTES => Check::pass(
            "disk space",
            format!("{} free in {}", gib(free), state_dir.display()),
        ),
        Ok(free) => Check::fail(
            "disk space",
            format!(
                "only {} free in {}, less than {}; runs would be refused for lack of room: free space or move `state_dir:`",
                gib(free),
                state_dir.display(),
                gib(MIN_FREE_BYTES)
            ),
        ),
        Err(error) => Check::fail(
            "disk space",
            format!("cannot tell the free space in {}: {error}", state_dir.display()),
        ),
    }
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
}

async fn registry_check(config: &StationConfig, registry: &str) -> Check {
    let client = crate::station::registry_client(config);
    match client.ping(registry).await {
        Ok(200 | 401) => Check::pass("registry", format!("{registry} answers")),
        Ok(status) => Check::fail(
            "registry",
            format!("{registry} answered HTTP {status} at /v2/, which is not a registry's answer; check `registries:` (and `endpoint:`)"),
        ),
        Err(error) => Check::fail(
            "registry",
            format!("{error}; check the address in `registries:` and that this host may connect to it"),
        ),
    }
}

/// The hub: does it answer a request signed with the station key (so it knows this station),
/// and how far is this host's clock from the hub's?
async fn hub_checks(config: &StationConfig, urls: &[String]) -> (Check, Option<Check>) {
    let address = urls.join(",");
    let key = match crate::keys::read_signing_key(&config.key_dir) {
        Ok(Some(key)) => key,
        _ => {
            return (
                Check::fail("hub", "no station key to sign requests to the hub with; run `pht-station keys init` and register station.pub with the hub"),
                None,
            )
        }
    };
    let credentials = pht_api::Credentials::Station {
        station_id: config.station_id.clone(),
        key,
    };
    let client = match pht_api::HubClient::new(&address, credentials) {
        Ok(client) => client,
        Err(error) => return (Check::fail("hub", error.to_string()), None),
    };
    let reached = match client.station_directory(&config.station_id).await {
        Ok(_) => Check::pass(
            "hub",
            format!("{} knows this station ({}) and its key", urls.join(", "), config.station_id),
        ),
        Err(error) => match error.status() {
            Some(401 | 403) => Check::fail(
                "hub",
                format!("the hub refused this station's signature ({error}); ask the hub operator to register station {} with this station's station.pub (`pht-hub admin add-station`)", config.station_id),
            ),
            Some(404) => Check::fail(
                "hub",
                format!("the hub does not know station {} ({error}); ask the hub operator to register it", config.station_id),
            ),
            _ => Check::fail(
                "hub",
                format!("cannot reach the hub at {} ({error}); check `hub.url` and that this host may connect out to it", urls.join(", ")),
            ),
        },
    };
    (reached, clock_skew(urls).await)
}

/// The hub's `Date` header against this host's clock; `None` when no address answered.
async fn clock_skew(urls: &[String]) -> Option<Check> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .ok()?;
    for url in urls {
        let asked = chrono::Utc::now();
        let Ok(response) = http.get(format!("{url}/v1/health")).send().await else {
            continue;
        };
        let answered = chrono::Utc::now();
        let date = response
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| chrono::DateTime::parse_from_rfc2822(text).ok())?;
        // The hub's second-resolution Date against the middle of the exchange.
        let here = asked + (answered - asked) / 2;
        let skew = (here - date.with_timezone(&chrono::Utc))
            .num_milliseconds()
            .abs();
        let skew = Duration::from_millis(skew as u64);
        return Some(if skew <= MAX_CLOCK_SKEW + Duration::from_secs(1) {
            Check::pass("clock", format!("within {} s of the hub's", skew.as_secs()))
        } else {
            Check::fail(
                "clock",
                format!(
                    "{} s away from the hub's clock; requests more than {} minutes off are refused. Keep the clock in sync (systemd-timesyncd or chrony)",
                    skew.as_secs(),
                    pht_core::httpsig::ALLOWED_CLOCK_SKEW.num_minutes()
                ),
            )
        });
    }
    None
}
