//! The station configuration file: who the station is, where its data, keys, policy and state
//! live, and which registries (and hub) it talks to.
//!
//! Owns parsing and validation with file, line and column in errors. Reading the policy and the
//! keys it names happens in `trust.rs`; this module only resolves paths.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// A configuration file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => {
                write!(f, "{}:{line}:{column}: {}", self.file, self.message)
            }
            _ => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    version: u32,
    station_id: String,
    key_dir: PathBuf,
    #[serde(default)]
    datasets: BTreeMap<String, RawDataset>,
    #[serde(default)]
    registries: Vec<RawRegistry>,
    policy: PathBuf,
    state_dir: PathBuf,
    #[serde(default)]
    hub: Option<RawHub>,
    #[serde(default)]
    docker: Option<RawDocker>,
    #[serde(default)]
    peers: BTreeMap<String, RawPeer>,
    #[serde(default)]
    console: Option<RawConsole>,
    #[serde(default)]
    audit: Option<RawAudit>,
    #[serde(default)]
    metrics: Option<RawMetrics>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    #[serde(default)]
    rotate_size: Option<String>,
    #[serde(default)]
    rotate_every: Option<crate::audit::RotateEvery>,
    #[serde(default)]
    retention_days: Option<u32>,
    #[serde(default)]
    checkpoint_every: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConsole {
    #[serde(default)]
    listen: Option<String>,
    #[serde(default)]
    tls: Option<RawTls>,
    #[serde(default)]
    session_idle: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    public_key: PathBuf,
    age_recipient: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDataset {
    path: PathBuf,
    #[serde(default = "default_format")]
    format: DatasetFormat,
    #[serde(default)]
    description: Option<String>,
}

fn default_format() -> DatasetFormat {
    DatasetFormat::Csv
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    registry: String,
    #[serde(default)]
    insecure: bool,
    /// Where this station reaches the registry, when that differs from the name in train
    /// references (for example a registry on a private network).
    #[serde(default)]
    endpoint: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHub {
    #[serde(default)]
    url: Option<String>,
    /// Several addresses of one hub (replicas or load balancers), tried in turn.
    #[serde(default)]
    urls: Option<Vec<String>>,
    #[serde(default)]
    poll_wait: Option<String>,
    #[serde(default)]
    concurrency: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocker {
    #[serde(default)]
    socket: Option<PathBuf>,
    /// Spare output slots kept ready for the next runs (see `pht_docker::sandbox`).
    #[serde(default)]
    warm_output_slots: Option<usize>,
    #[serde(default)]
    output_storage: OutputStorage,
}

/// Where a train's `/output` lives (`docker.output_storage`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputStorage {
    /// `host-tmpfs` where this station can (root, and in the same mount namespace as Docker),
    /// otherwise `volume`.
    #[default]
    Auto,
    /// A capped tmpfs the station mounts under `<state_dir>/outputs` and bind-mounts: fastest;
    /// refused at start-up where it cannot work.
    HostTmpfs,
    /// A capped tmpfs volume kept mounted by a holder container: works from inside a container
    /// and without root.
    Volume,
}

/// One spare output slot takes the holder's start (about as long as the train's own) off each
/// run's path, for one paused 129-byte container and an empty tmpfs.
pub const DEFAULT_WARM_OUTPUT_SLOTS: usize = 1;
/// More spares than this only hold memory: one run rarely claims more than one at a time.
const MAX_WARM_OUTPUT_SLOTS: usize = 16;

/// The format of a dataset's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetFormat {
    Csv,
    Tsv,
    Parquet,
    Other,
}

/// A dataset this station holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    pub name: String,
    pub path: PathBuf,
    pub format: DatasetFormat,
    pub description: Option<String>,
}

/// A registry the station may pull from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryAccess {
    pub registry: String,
    pub insecure: bool,
    pub endpoint: Option<String>,
}

/// Another station of a sequential route: state from it must be signed by `public_key`, state
/// for it is encrypted to `age_recipient`. Configured locally, never taken from the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub station_id: String,
    pub public_key: PathBuf,
    pub age_recipient: String,
}

/// How the daemon reaches the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubAccess {
    /// The hub's addresses, at least one; the client fails over from one to the next.
    pub urls: Vec<String>,
    pub poll_wait: Duration,
    pub concurrency: usize,
}

impl HubAccess {
    /// The addresses as the hub client takes them: separated by commas.
    pub fn client_address(&self) -> String {
        self.urls.join(",")
    }

    /// The addresses for people: separated by commas and spaces.
    pub fn display_address(&self) -> String {
        self.urls.join(", ")
    }
}

/// Where the operator console listens (`console.listen`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleListen {
    Tcp(std::net::SocketAddr),
    /// `unix:/path`: a Unix socket, reachable by whoever may open it.
    Unix(PathBuf),
}

impl fmt::Display for ConsoleListen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConsoleListen::Tcp(address) => write!(f, "{address}"),
            ConsoleListen::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// The console's certificate and key (PEM), for serving it with TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The operator console (`console:`): served by `pht-station run` when configured, and by
/// `pht-station console`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleConfig {
    pub listen: ConsoleListen,
    pub tls: Option<ConsoleTls>,
    /// A session unused this long ends.
    pub session_idle: Duration,
}

impl Default for ConsoleConfig {
    /// `console: {}`: loopback on the default port, no TLS, the default idle time.
    fn default() -> ConsoleConfig {
        ConsoleConfig {
            listen: ConsoleListen::Tcp(
                DEFAULT_CONSOLE_LISTEN
                    .parse()
                    .expect("the default console address parses"),
            ),
            tls: None,
            session_idle: DEFAULT_SESSION_IDLE,
        }
    }
}

/// Where the console listens unless `console.listen` says otherwise: loopback only.
pub const DEFAULT_CONSOLE_LISTEN: &str = "127.0.0.1:8470";
/// How long a console session may sit unused.
pub const DEFAULT_SESSION_IDLE: Duration = Duration::from_secs(30 * 60);

/// A validated station configuration with every path resolved against the file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StationConfig {
    pub source: PathBuf,
    pub station_id: String,
    pub key_dir: PathBuf,
    pub datasets: BTreeMap<String, Dataset>,
    pub registries: Vec<RegistryAccess>,
    pub policy: PathBuf,
    pub state_dir: PathBuf,
    pub hub: Option<HubAccess>,
    pub docker_socket: Option<PathBuf>,
    /// Spare output slots to keep ready; 0 makes every run create its own.
    pub warm_output_slots: usize,
    pub output_storage: OutputStorage,
    pub peers: BTreeMap<String, Peer>,
    /// The operator console, if configured.
    pub console: Option<ConsoleConfig>,
    /// When the audit log starts a new file, and how long archived files are kept.
    pub audit: crate::audit::AuditSettings,
    /// Where `pht-station run` serves Prometheus metrics (`metrics.listen`): loopback or a
    /// Unix socket only. `None`: no metrics are kept or served.
    pub metrics: Option<ConsoleListen>,
}

fn valid_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && value.as_bytes()[0].is_ascii_alphanumeric()
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl StationConfig {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<StationConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: None,
            column: None,
            message: format!("cannot read the station configuration: {e}"),
        })?;
        StationConfig::from_yaml(&text, path)
    }

    /// Parses configuration text; `path` names the file in errors and anchors relative paths.
    pub fn from_yaml(text: &str, path: &Path) -> Result<StationConfig, ConfigError> {
        let file = path.display().to_string();
        let error = |message: String| ConfigError {
            file: file.clone(),
            line: None,
            column: None,
            message,
        };
        let raw: RawConfig = serde_yaml_ng::from_str(text).map_err(|e| {
            let location = e.location();
            let message = e.to_string();
            let message = message
                .rfind(" at line ")
                .map_or(message.clone(), |i| message[..i].to_string());
            ConfigError {
                file: file.clone(),
                line: location.as_ref().map(|l| l.line()),
                column: location.as_ref().map(|l| l.column()),
                message,
            }
        })?;
        if raw.version != 1 {
            return Err(error(format!(
                "version: this station reads configuration version 1, the file says {}",
                raw.version
            )));
        }
        if !valid_id(&raw.station_id) {
            return Err(error(format!(
                "station_id: `{}` must be lower-case letters, digits, `-` or `_`",
                raw.station_id
            )));
        }
        // Relative paths in the file are relative to the file, wherever the station was started.
        let base = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => {
                std::path::absolute(parent).unwrap_or_else(|_| parent.to_path_buf())
            }
            _ => std::env::current_dir().unwrap_or_default(),
        };
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let mut datasets = BTreeMap::new();
        for (name, dataset) in raw.datasets {
            if !valid_id(&name) || !name.as_bytes()[0].is_ascii_lowercase() {
                return Err(error(format!("datasets: `{name}` must be lower-case letters, digits, `-` or `_`, starting with a letter")));
            }
            datasets.insert(
                name.clone(),
                Dataset {
                    name,
                    path: resolve(&dataset.path),
                    format: dataset.format,
                    description: dataset.description,
                },
            );
        }
        let hub = match raw.hub {
            None => None,
            Some(hub) => {
                let poll_wait = match hub.poll_wait {
                    Some(text) => pht_core::units::parse_duration(&text)
                        .map_err(|e| error(format!("hub.poll_wait: {e}")))?,
                    None => Duration::from_secs(30),
                };
                let concurrency = hub.concurrency.unwrap_or(1);
                if concurrency == 0 {
                    return Err(error("hub.concurrency: must be at least 1".into()));
                }
                let (field, urls) = match (hub.url, hub.urls) {
                    (Some(url), None) => ("hub.url", vec![url]),
                    (None, Some(urls)) if !urls.is_empty() => ("hub.urls", urls),
                    (None, Some(_)) => {
                        return Err(error(
                            "hub.urls: give at least one address of the hub".into(),
                        ))
                    }
                    (None, None) => {
                        return Err(error(
                            "hub: give the hub's address as `url`, or several as `urls`".into(),
                        ))
                    }
                    (Some(_), Some(_)) => {
                        return Err(error("hub: give either `url` or `urls`, not both".into()))
                    }
                };
                for url in &urls {
                    match url::Url::parse(url) {
                        Ok(parsed)
                            if matches!(parsed.scheme(), "http" | "https")
                                && parsed.has_host()
                                && !url.contains(',') => {}
                        Ok(_) | Err(_) => {
                            return Err(error(format!(
                                "{field}: `{url}` is not an http:// or https:// URL of the hub"
                            )))
                        }
                    }
                }
                Some(HubAccess {
                    urls: urls
                        .iter()
                        .map(|url| url.trim_end_matches('/').to_string())
                        .collect(),
                    poll_wait,
                    concurrency,
                })
            }
        };
        let warm_output_slots = match raw.docker.as_ref().and_then(|d| d.warm_output_slots) {
            None => DEFAULT_WARM_OUTPUT_SLOTS,
            Some(count) if count <= MAX_WARM_OUTPUT_SLOTS => count,
            Some(count) => {
                return Err(error(format!(
                    "docker.warm_output_slots: {count} is more than {MAX_WARM_OUTPUT_SLOTS}; 1 is enough for one run at a time, 0 turns spares off"
                )))
            }
        };
        let console = match raw.console {
            None => None,
            Some(console) => Some(console_config(console, &resolve).map_err(error)?),
        };
        let metrics = match raw.metrics {
            None => None,
            Some(metrics) => Some(metrics_listen(&metrics.listen, &resolve).map_err(error)?),
        };
        let audit = match raw.audit {
            None => crate::audit::AuditSettings::default(),
            Some(audit) => audit_settings(audit).map_err(error)?,
        };
        for (station_id, peer) in &raw.peers {
            pht_core::recipient::parse_recipient(&peer.age_recipient)
                .map_err(|e| error(format!("peers.{station_id}.age_recipient: {e}")))?;
        }
        Ok(StationConfig {
            source: path.to_path_buf(),
            station_id: raw.station_id,
            key_dir: resolve(&raw.key_dir),
            datasets,
            registries: raw
                .registries
                .into_iter()
                .map(|r| RegistryAccess {
                    registry: r.registry,
                    insecure: r.insecure,
                    endpoint: r.endpoint,
                })
                .collect(),
            policy: resolve(&raw.policy),
            state_dir: resolve(&raw.state_dir),
            hub,
            output_storage: raw
                .docker
                .as_ref()
                .map(|d| d.output_storage)
                .unwrap_or_default(),
            docker_socket: raw.docker.and_then(|d| d.socket),
            warm_output_slots,
            peers: raw
                .peers
                .into_iter()
                .map(|(station_id, peer)| {
                    let peer = Peer {
                        station_id: station_id.clone(),
                        public_key: resolve(&peer.public_key),
                        age_recipient: peer.age_recipient,
                    };
                    (station_id, peer)
                })
                .collect(),
            console,
            audit,
            metrics,
        })
    }
}

/// The example in messages about `metrics.listen`.
pub const EXAMPLE_METRICS_LISTEN: &str = "127.0.0.1:9464";

/// Validates `metrics.listen`: a loopback address or a Unix socket. The station accepts no
/// connection from another machine; a Prometheus elsewhere scrapes through an agent or a
/// tunnel on this host.
fn metrics_listen(text: &str, resolve: &dyn Fn(&Path) -> PathBuf) -> Result<ConsoleListen, String> {
    match text.strip_prefix("unix:") {
        Some(path) if !path.is_empty() => Ok(ConsoleListen::Unix(resolve(Path::new(path)))),
        Some(_) => Err(
            "metrics.listen: `unix:` needs a socket path, e.g. unix:/run/pht/metrics.sock".into(),
        ),
        None => {
            let address: std::net::SocketAddr = text.parse().map_err(|_| {
                format!("metrics.listen: `{text}` is not an address and port (e.g. {EXAMPLE_METRICS_LISTEN}) or unix:/path")
            })?;
            if !address.ip().is_loopback() {
                return Err(format!(
                    "metrics.listen: {address} is reachable from other machines, and a station only connects outbound; listen on 127.0.0.1 (or a Unix socket) and let an agent on this host forward the metrics"
                ));
            }
            Ok(ConsoleListen::Tcp(address))
        }
    }
}

/// Validates `audit:`: the size and date at which a new file starts, and retention of at
/// least a year.
fn audit_settings(raw: RawAudit) -> Result<crate::audit::AuditSettings, String> {
    use crate::audit::{AuditSettings, MIN_RETENTION_DAYS, MIN_ROTATE_SIZE};
    let defaults = AuditSettings::default();
    let rotate_size = match raw.rotate_size {
        None => defaults.rotate_size,
        Some(text) if text == "never" => None,
        Some(text) => {
            let size = pht_core::units::parse_bytes(&text)
                .map_err(|e| format!("audit.rotate_size: {e}, or `never`"))?;
            if size < MIN_ROTATE_SIZE {
                return Err(format!(
                    "audit.rotate_size: {text} is smaller than {}; a file per handful of entries helps no one",
                    pht_core::units::format_bytes(MIN_ROTATE_SIZE)
                ));
            }
            Some(size)
        }
    };
    if let Some(days) = raw.retention_days {
        if days < MIN_RETENTION_DAYS {
            return Err(format!(
                "audit.retention_days: {days} is less than {MIN_RETENTION_DAYS}; EHDS (Regulation (EU) 2025/327, Art. 73) asks that access and activity logs be kept for at least a year. Leave it out to keep every file"
            ));
        }
    }
    let checkpoint_every = match raw.checkpoint_every {
        None => defaults.checkpoint_every,
        Some(text) => {
            let every = pht_core::units::parse_duration(&text)
                .map_err(|e| format!("audit.checkpoint_every: {e}"))?;
            if every < Duration::from_secs(60) {
                return Err(format!(
                    "audit.checkpoint_every: {text} is less than a minute"
                ));
            }
            every
        }
    };
    Ok(AuditSettings {
        rotate_size,
        rotate_every: raw.rotate_every.unwrap_or(defaults.rotate_every),
        retention_days: raw.retention_days,
        checkpoint_every,
    })
}

/// Validates `console:`: a listen address (loopback unless TLS protects it), TLS files, and
/// the idle time of sessions.
fn console_config(
    raw: RawConsole,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> Result<ConsoleConfig, String> {
    let tls = raw.tls.map(|tls| ConsoleTls {
        cert: resolve(&tls.cert),
        key: resolve(&tls.key),
    });
    let text = raw.listen.as_deref().unwrap_or(DEFAULT_CONSOLE_LISTEN);
    let listen = match text.strip_prefix("unix:") {
        Some(path) if !path.is_empty() => ConsoleListen::Unix(resolve(Path::new(path))),
        Some(_) => {
            return Err(
                "console.listen: `unix:` needs a socket path, e.g. unix:/run/pht/console.sock"
                    .into(),
            )
        }
        None => {
            let address: std::net::SocketAddr = text.parse().map_err(|_| {
                format!("console.listen: `{text}` is not an address and port (e.g. {DEFAULT_CONSOLE_LISTEN}) or unix:/path")
            })?;
            if !address.ip().is_loopback() && tls.is_none() {
                return Err(format!(
                    "console.listen: {address} is reachable from other machines, and operators' passwords would cross the network in clear; add console.tls (cert and key), or listen on 127.0.0.1"
                ));
            }
            ConsoleListen::Tcp(address)
        }
    };
    let session_idle = match raw.session_idle {
        None => DEFAULT_SESSION_IDLE,
        Some(text) => {
            let idle = pht_core::units::parse_duration(&text)
                .map_err(|e| format!("console.session_idle: {e}"))?;
            if idle < Duration::from_secs(60) || idle > Duration::from_secs(24 * 3600) {
                return Err(format!("console.session_idle: {text} is outside 1m to 24h"));
            }
            idle
        }
    };
    Ok(ConsoleConfig {
        listen,
        tls,
        session_idle,
    })
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    use super::*;

    const GOOD: &str = "\
version: 1
station_id: station-a
key_dir: keys
datasets:
  cohort:
    path: data/cohort
    format: csv
registries:
  - registry: 127.0.0.1:5000
policy: policy.yaml
state_dir: state
";

    fn check_error(text: &str, expected: Expect) {
        let error = StationConfig::from_yaml(text, Path::new("/etc/pht/station.yaml")).unwrap_err();
        expected.assert_eq(&error.to_string());
    }

    #[test]
    fn a_hub_url_that_is_not_a_url_is_refused_at_load() {
        let text = format!("{GOOD}hub:\n  url: hub.example.org:8080\n");
        let error =
            StationConfig::from_yaml(&text, Path::new("/etc/pht/station.yaml")).unwrap_err();
        assert!(error.to_string().contains("hub.url"), "{error}");
    }

    #[test]
    fn a_hub_may_have_several_addresses_each_checked() {
        let text = format!(
            "{GOOD}hub:\n  urls: [\"https://hub-a.example.org/\", \"https://hub-b.example.org:8443\"]\n"
        );
        let config = StationConfig::from_yaml(&text, Path::new("/etc/pht/station.yaml")).unwrap();
        let hub = config.hub.unwrap();
        assert_eq!(
            hub.client_address(),
            "https://hub-a.example.org,https://hub-b.example.org:8443"
        );
        for (hub, expected) in [
            (
                "  urls: [\"https://hub-a.example.org\", \"hub-b:8080\"]\n",
                "hub.urls: `hub-b:8080` is not",
            ),
            ("  urls: []\n", "hub.urls: give at least one"),
            (
                "  url: https://a.example.org\n  urls: [\"https://b.example.org\"]\n",
                "not both",
            ),
            ("  poll_wait: 30s\n", "hub: give the hub's address"),
        ] {
            let text = format!("{GOOD}hub:\n{hub}");
            let error =
                StationConfig::from_yaml(&text, Path::new("/etc/pht/station.yaml")).unwrap_err();
            assert!(error.to_string().contains(expected), "{error}");
        }
    }

    #[test]
    fn a_peer_recipient_that_is_not_one_is_refused_at_load_without_echoing_a_secret() {
        for (recipient, expected) in [
            ("age1garbage", "peers.b.age_recipient"),
            (
                "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ",
                "age identity",
            ),
        ] {
            let text = format!(
                "{GOOD}peers:\n  b:\n    public_key: b.pub\n    age_recipient: {recipient}\n"
            );
            let error = StationConfig::from_yaml(&text, Path::new("/etc/pht/station.yaml"))
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{error}");
            assert!(!error.contains("AGE-SECRET-KEY-1"), "{error}");
        }
    }

    #[test]
    fn the_console_listens_on_loopback_unless_tls_protects_it() {
        let config = StationConfig::from_yaml(
            &format!("{GOOD}console: {{}}\n"),
            Path::new("/etc/pht/s.yaml"),
        )
        .unwrap();
        let console = config.console.unwrap();
        assert_eq!(console.listen.to_string(), DEFAULT_CONSOLE_LISTEN);
        assert_eq!(console.session_idle, DEFAULT_SESSION_IDLE);
        check_error(
            &format!("{GOOD}console:\n  listen: 0.0.0.0:8470\n"),
            expect![[
                r#"/etc/pht/station.yaml: console.listen: 0.0.0.0:8470 is reachable from other machines, and operators' passwords would cross the network in clear; add console.tls (cert and key), or listen on 127.0.0.1"#
            ]],
        );
        let config = StationConfig::from_yaml(
            &format!(
                "{GOOD}console:\n  listen: 0.0.0.0:8470\n  tls:\n    cert: c.pem\n    key: k.pem\n"
            ),
            Path::new("/etc/pht/station.yaml"),
        )
        .unwrap();
        assert_eq!(
            config.console.unwrap().tls.unwrap().key,
            Path::new("/etc/pht/k.pem")
        );
        let config = StationConfig::from_yaml(
            &format!("{GOOD}console:\n  listen: unix:state/console.sock\n"),
            Path::new("/etc/pht/station.yaml"),
        )
        .unwrap();
        assert_eq!(
            config.console.unwrap().listen,
            ConsoleListen::Unix(PathBuf::from("/etc/pht/state/console.sock"))
        );
        check_error(
            &format!("{GOOD}console:\n  listen: localhost\n"),
            expect![[
                r#"/etc/pht/station.yaml: console.listen: `localhost` is not an address and port (e.g. 127.0.0.1:8470) or unix:/path"#
            ]],
        );
    }

    #[test]
    fn relative_paths_resolve_against_the_file() {
        let config = StationConfig::from_yaml(GOOD, Path::new("/etc/pht/station.yaml")).unwrap();
        assert_eq!(
            config.datasets["cohort"].path,
            Path::new("/etc/pht/data/cohort")
        );
        assert_eq!(config.policy, Path::new("/etc/pht/policy.yaml"));
        assert_eq!(config.state_dir, Path::new("/etc/pht/state"));
    }

    #[test]
    fn the_commented_example_configuration_parses_with_every_field() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/station/station.yaml");
        let config = StationConfig::load(&path).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(config.station_id, "station-a");
        assert_eq!(config.datasets["cohort"].format, DatasetFormat::Csv);
        assert_eq!(config.output_storage, OutputStorage::Auto);
        assert_eq!(config.warm_output_slots, 1);
        assert_eq!(config.hub.as_ref().map(|hub| hub.concurrency), Some(1));
        assert!(config.peers.contains_key("station-b"));
        assert!(config.policy.ends_with("policies/default.yaml"));
        assert_eq!(
            config.audit,
            crate::audit::AuditSettings {
                rotate_size: Some(64 << 20),
                rotate_every: crate::audit::RotateEvery::Month,
                retention_days: Some(730),
                checkpoint_every: std::time::Duration::from_secs(1800),
            }
        );
    }

    #[test]
    fn metrics_listen_only_on_loopback_or_a_unix_socket() {
        for (listen, expected) in [
            ("0.0.0.0:9464", "reachable from other machines"),
            ("192.168.1.5:9464", "reachable from other machines"),
            ("metrics", "not an address"),
            ("unix:", "needs a socket path"),
        ] {
            let text = format!("{GOOD}metrics:\n  listen: \"{listen}\"\n");
            let error = StationConfig::from_yaml(&text, Path::new("station.yaml")).unwrap_err();
            assert!(error.message.contains(expected), "{listen}: {error}");
        }
        let text = format!("{GOOD}metrics:\n  listen: \"[::1]:9464\"\n");
        let config = StationConfig::from_yaml(&text, Path::new("station.yaml")).unwrap();
        assert_eq!(
            config.metrics,
            Some(ConsoleListen::Tcp("[::1]:9464".parse().unwrap()))
        );
        let config = StationConfig::from_yaml(GOOD, Path::new("station.yaml")).unwrap();
        assert_eq!(config.metrics, None, "off unless configured");
    }

    #[test]
    fn audit_retention_under_a_year_and_tiny_files_are_refused() {
        for (audit, expected) in [
            ("retention_days: 30", "at least a year"),
            ("rotate_size: 1KiB", "smaller than"),
            ("rotate_size: lots", "invalid size"),
            ("rotate_every: hour", "unknown variant"),
        ] {
            let text = format!("{GOOD}audit:\n  {audit}\n");
            let error = StationConfig::from_yaml(&text, Path::new("station.yaml")).unwrap_err();
            assert!(error.message.contains(expected), "{audit}: {error}");
        }
        let text = format!("{GOOD}audit:\n  rotate_size: never\n  retention_days: 365\n");
        let config = StationConfig::from_yaml(&text, Path::new("station.yaml")).unwrap();
        assert_eq!(config.audit.rotate_size, None);
    }

    #[test]
    fn a_config_named_by_a_relative_path_still_gives_absolute_paths() {
        let cwd = std::env::current_dir().unwrap();
        for (config_path, base) in [
            ("station.yaml", cwd.clone()),
            ("./station.yaml", cwd.clone()),
            ("conf/station.yaml", cwd.join("conf")),
            ("./conf/station.yaml", cwd.join("conf")),
        ] {
            let config = StationConfig::from_yaml(GOOD, Path::new(config_path)).unwrap();
            assert_eq!(config.state_dir, base.join("state"), "{config_path}");
            assert!(
                config
                    .state_dir
                    .components()
                    .all(|part| !matches!(part, std::path::Component::CurDir)),
                "{config_path}: {}",
                config.state_dir.display()
            );
        }
    }

    #[test]
    fn warm_output_slots_default_to_one_and_are_bounded() {
        let path = Path::new("/etc/pht/station.yaml");
        let config = StationConfig::from_yaml(GOOD, path).unwrap();
        assert_eq!(config.warm_output_slots, DEFAULT_WARM_OUTPUT_SLOTS);
        let off = format!("{GOOD}docker:\n  warm_output_slots: 0\n");
        assert_eq!(
            StationConfig::from_yaml(&off, path)
                .unwrap()
                .warm_output_slots,
            0
        );
        check_error(
            &format!("{GOOD}docker:\n  warm_output_slots: 100\n"),
            expect!["/etc/pht/station.yaml: docker.warm_output_slots: 100 is more than 16; 1 is enough for one run at a time, 0 turns spares off"],
        );
    }

    #[test]
    fn unknown_field_is_refused_with_line_and_column() {
        check_error(
            &GOOD.replace("    format: csv", "    format: csv\n    owner: me"),
            expect!["/etc/pht/station.yaml:8:5: datasets.cohort: unknown field `owner`, expected one of `path`, `format`, `description`"],
        );
    }

    #[test]
    fn bad_dataset_format_is_refused() {
        check_error(
            &GOOD.replace("format: csv", "format: xls"),
            expect!["/etc/pht/station.yaml:7:13: datasets.cohort.format: unknown variant `xls`, expected one of `csv`, `tsv`, `parquet`, `other`"],
        );
    }

    #[test]
    fn bad_station_id_is_refused() {
        check_error(
            &GOOD.replace("station-a", "Station A"),
            expect!["/etc/pht/station.yaml: station_id: `Station A` must be lower-case letters, digits, `-` or `_`"],
        );
    }
}
