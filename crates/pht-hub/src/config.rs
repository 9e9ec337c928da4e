//! The hub's YAML configuration file: parsing (unknown fields refused, with file, line and
//! column), defaults, and resolving relative paths against the file's directory.
//!
//! Reads the config file and the admin token file; opens nothing else. What the settings do is
//! up to [`crate::Hub`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::store::Backend;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHubConfig {
    listen: String,
    state_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; `database_url` is the older name.
    #[serde(alias = "database_url")]
    store: Option<String>,
    store_connections: Option<u32>,
    blob_dir: Option<PathBuf>,
    admin_token: Option<String>,
    admin_token_file: Option<PathBuf>,
    long_poll_max_wait_secs: Option<u64>,
    pickup_lease_secs: Option<u64>,
    max_upload_bytes: Option<u64>,
    header_read_timeout_secs: Option<u64>,
    max_connections: Option<usize>,
    metrics: Option<bool>,
}

/// The admin token; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    pub fn new(token: impl Into<String>) -> AdminToken {
        AdminToken(token.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// Defaults for settings the file may leave out.
pub const DEFAULT_LONG_POLL_MAX_WAIT: Duration = Duration::from_secs(60);
pub const DEFAULT_PICKUP_LEASE: Duration = Duration::from_secs(300);
pub const DEFAULT_MAX_UPLOAD_BYTES: usize = 256 * 1024 * 1024;
/// A client that has not sent a request's headers in this long (idle between requests, or
/// sending them slowly) is disconnected. Long-polls are unaffected: they wait after the headers.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the kernel's backlog (a long-poll holds one).
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Connections each replica keeps to a `postgres://` store, at most.
pub const DEFAULT_STORE_CONNECTIONS: u32 = 16;
/// More connections than this per replica is a typo, not a plan.
pub const MAX_STORE_CONNECTIONS: u32 = 1000;
/// Shortest admin token accepted; a short one could be guessed.
pub const MIN_ADMIN_TOKEN_LENGTH: usize = 16;

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct HubConfig {
    pub listen: SocketAddr,
    pub state_dir: PathBuf,
    /// The `store`: `sqlite://<state_dir>/hub.db` unless the file says otherwise, or a
    /// `postgres://` URL shared by several replicas. May hold a password: show it only through
    /// [`crate::store::redact_url`].
    pub database_url: String,
    /// On a `postgres://` store, the connections this replica keeps at most (besides the one
    /// that listens for other replicas' work). Every replica's, plus one each, must fit in the
    /// server's `max_connections`. `None` on SQLite, whose pool is the hub's own.
    pub store_connections: Option<u32>,
    /// `<state_dir>/blobs` unless the file says otherwise.
    pub blob_dir: PathBuf,
    pub admin_token: AdminToken,
    /// The longest a station's long-poll waits, whatever it asks for.
    pub long_poll_max_wait: Duration,
    /// How long a handed-out stop stays leased to its station before it is offered again,
    /// unless the station reports.
    pub pickup_lease: Duration,
    pub max_upload_bytes: usize,
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    /// Whether the hub counts requests and serves `GET /metrics` (Prometheus); on by default.
    pub metrics: bool,
}

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The reason is part of the message, not a source: the hub prints the whole chain, and
    /// would say it twice.
    #[error("cannot read {path}: {reason}")]
    Read {
        path: PathBuf,
        reason: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    SyntaxWithoutLocation { path: PathBuf, message: String },
    #[error("{path}: `{field}`: {message}")]
    Invalid {
        path: PathBuf,
        field: &'static str,
        message: String,
    },
}

impl HubConfig {
    /// Reads and validates the file at `path`, and the admin token file it names.
    pub fn load(path: &Path) -> Result<HubConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|reason| ConfigError::Read {
            path: path.to_path_buf(),
            reason,
        })?;
        let base_dir = path.parent().unwrap_or(Path::new("."));
        HubConfig::parse(&text, path, base_dir, |token_path| {
            std::fs::read_to_string(token_path)
        })
    }

    /// Parses `text` (read from `path`); relative paths resolve against `base_dir`, and
    /// `read_token_file` reads the admin token file if one is named.
    pub fn parse(
        text: &str,
        path: &Path,
        base_dir: &Path,
        read_token_file: impl Fn(&Path) -> std::io::Result<String>,
    ) -> Result<HubConfig, ConfigError> {
        let raw: RawHubConfig =
            serde_yaml_ng::from_str(text).map_err(|error| match error.location() {
                Some(location) => {
                    // serde_yaml_ng repeats the location at the end of its message; the error
                    // already leads with `file:line:column`.
                    let message = error.to_string();
                    let suffix =
                        format!(" at line {} column {}", location.line(), location.column());
                    ConfigError::Syntax {
                        path: path.to_path_buf(),
                        line: location.line(),
                        column: location.column(),
                        message: message
                            .strip_suffix(&suffix)
                            .unwrap_or(&message)
                            .to_string(),
                    }
                }
                None => ConfigError::SyntaxWithoutLocation {
                    path: path.to_path_buf(),
                    message: error.to_string(),
                },
            })?;
        let invalid = |field: &'static str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            field,
            message,
        };
        let listen: SocketAddr = raw.listen.parse().map_err(|_| {
            invalid(
                "listen",
                format!("`{}` is not an address like 127.0.0.1:8080", raw.listen),
            )
        })?;
        let state_dir = base_dir.join(&raw.state_dir);
        let database_url = raw
            .store
            .unwrap_or_else(|| format!("sqlite://{}", state_dir.join("hub.db").display()));
        let Some(backend) = Backend::of_url(&database_url) else {
            return Err(invalid(
                "store",
                format!(
                    "`{}` is neither a sqlite:// nor a postgres:// URL (for example \
                     sqlite:///var/lib/pht-hub/hub.db, or postgres://pht@db.example.org/pht_hub \
                     for replicas sharing one database)",
                    crate::store::redact_url(&database_url)
                ),
            ));
        };
        let store_connections = match (backend, raw.store_connections) {
            (_, Some(0)) => {
                return Err(invalid("store_connections", "must be at least 1".into()));
            }
            (_, Some(n)) if n > MAX_STORE_CONNECTIONS => {
                return Err(invalid(
                    "store_connections",
                    format!(
                        "{n} is more than {MAX_STORE_CONNECTIONS}; PostgreSQL serves each \
                         connection with a process of its own"
                    ),
                ));
            }
            (Backend::Sqlite, Some(_)) => {
                return Err(invalid(
                    "store_connections",
                    "applies to a postgres:// store only; remove it, or set `store` to the \
                     PostgreSQL database"
                        .into(),
                ));
            }
            (Backend::Sqlite, None) => None,
            (Backend::Postgres, n) => Some(n.unwrap_or(DEFAULT_STORE_CONNECTIONS)),
        };
        let blob_dir = raw
            .blob_dir
            .map(|dir| base_dir.join(dir))
            .unwrap_or_else(|| state_dir.join("blobs"));
        let admin_token = match (raw.admin_token, raw.admin_token_file) {
            (Some(token), None) => token,
            (None, Some(token_path)) => {
                let token_path = base_dir.join(token_path);
                read_token_file(&token_path)
                    .map_err(|error| {
                        invalid(
                            "admin_token_file",
                            format!("cannot read {}: {error}", token_path.display()),
                        )
                    })?
                    .trim()
                    .to_string()
            }
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "admin_token",
                    "give either admin_token or admin_token_file, not both".into(),
                ))
            }
            (None, None) => {
                return Err(invalid(
                    "admin_token",
                    "give admin_token or admin_token_file".into(),
                ))
            }
        };
        if admin_token.len() < MIN_ADMIN_TOKEN_LENGTH {
            return Err(invalid(
                "admin_token",
                format!("the token must have at least {MIN_ADMIN_TOKEN_LENGTH} characters"),
            ));
        }
        let long_poll_max_wait = raw
            .long_poll_max_wait_secs
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_LONG_POLL_MAX_WAIT);
        let pickup_lease = raw
            .pickup_lease_secs
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_PICKUP_LEASE);
        if pickup_lease.is_zero() {
            return Err(invalid("pickup_lease_secs", "must be at least 1".into()));
        }
        let max_upload_bytes = match raw.max_upload_bytes {
            None => DEFAULT_MAX_UPLOAD_BYTES,
            Some(bytes) => usize::try_from(bytes)
                .map_err(|_| invalid("max_upload_bytes", "too large".into()))?,
        };
        let header_read_timeout = raw
            .header_read_timeout_secs
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_HEADER_READ_TIMEOUT);
        if header_read_timeout.is_zero() {
            return Err(invalid(
                "header_read_timeout_secs",
                "must be at least 1".into(),
            ));
        }
        let max_connections = raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if max_connections == 0 {
            return Err(invalid("max_connections", "must be at least 1".into()));
        }
        Ok(HubConfig {
            listen,
            state_dir,
            database_url,
            store_connections,
            blob_dir,
            admin_token: AdminToken(admin_token),
            long_poll_max_wait,
            pickup_lease,
            max_upload_bytes,
            header_read_timeout,
            max_connections,
            metrics: raw.metrics.unwrap_or(true),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<HubConfig, ConfigError> {
        HubConfig::parse(
            text,
            Path::new("/etc/pht/hub.yaml"),
            Path::new("/etc/pht"),
            |path| {
                if path == Path::new("/etc/pht/token") {
                    Ok("0123456789abcdef0123\n".into())
                } else {
                    Err(std::io::Error::new(std::io::ErrorKind::NotFound, "absent"))
                }
            },
        )
    }

    #[test]
    fn defaults_derive_from_the_state_dir() {
        let config =
            parse("listen: 127.0.0.1:8080\nstate_dir: state\nadmin_token_file: token\n").unwrap();
        assert_eq!(config.database_url, "sqlite:///etc/pht/state/hub.db");
        assert_eq!(config.blob_dir, Path::new("/etc/pht/state/blobs"));
        assert_eq!(config.admin_token.expose(), "0123456789abcdef0123");
        assert_eq!(config.long_poll_max_wait, DEFAULT_LONG_POLL_MAX_WAIT);
        assert_eq!(config.pickup_lease, DEFAULT_PICKUP_LEASE);
    }

    #[test]
    fn unknown_field_is_refused_with_line_and_column() {
        let error = parse(
            "listen: 127.0.0.1:8080\nstate_dir: /s\nadmin_token: 0123456789abcdef\nlong_pol_max_wait_secs: 5\n",
        )
        .unwrap_err();
        let message = error.to_string();
        assert!(message.starts_with("/etc/pht/hub.yaml:4:"), "{message}");
        assert!(
            message.contains("unknown field `long_pol_max_wait_secs`"),
            "{message}"
        );
    }

    #[test]
    fn store_chooses_the_backend_and_an_unknown_scheme_is_refused_without_its_password() {
        let config = parse(
            "listen: 127.0.0.1:8080\nstate_dir: /s\nadmin_token_file: token\n\
             store: postgres://hub:secret@db.internal:5432/pht\n",
        )
        .unwrap();
        assert_eq!(
            crate::store::Backend::of_url(&config.database_url),
            Some(crate::store::Backend::Postgres)
        );
        let old_name = parse(
            "listen: 127.0.0.1:8080\nstate_dir: /s\nadmin_token_file: token\n\
             database_url: sqlite:///s/hub.db\n",
        )
        .unwrap();
        assert_eq!(old_name.database_url, "sqlite:///s/hub.db");
        let error = parse(
            "listen: 127.0.0.1:8080\nstate_dir: /s\nadmin_token_file: token\n\
             store: mysql://hub:secret@db.internal/pht\n",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("`store`"), "{error}");
        assert!(!error.contains("secret"), "{error}");
    }

    #[test]
    fn store_connections_bound_a_postgres_pool_and_are_refused_where_they_cannot_apply() {
        let base = "listen: 127.0.0.1:8080\nstate_dir: /s\nadmin_token_file: token\n";
        let postgres = "store: postgres://hub@db.internal:5432/pht\n";
        let default = parse(&format!("{base}{postgres}")).unwrap();
        assert_eq!(default.store_connections, Some(DEFAULT_STORE_CONNECTIONS));
        let set = parse(&format!("{base}{postgres}store_connections: 4\n")).unwrap();
        assert_eq!(set.store_connections, Some(4));
        assert_eq!(parse(base).unwrap().store_connections, None);
        for (text, says) in [
            (
                format!("{base}{postgres}store_connections: 0\n"),
                "at least 1",
            ),
            (
                format!("{base}{postgres}store_connections: 5000\n"),
                "more than 1000",
            ),
            (
                format!("{base}store_connections: 4\n"),
                "postgres:// store only",
            ),
        ] {
            let error = parse(&text).unwrap_err().to_string();
            assert!(error.contains("`store_connections`"), "{error}");
            assert!(error.contains(says), "{error}");
        }
        let error = parse(&format!("{base}{postgres}store_connections: many\n"))
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("/etc/pht/hub.yaml:5:"), "{error}");
    }

    #[test]
    fn metrics_are_on_unless_turned_off_and_a_value_not_a_boolean_is_refused_at_its_line() {
        let base = "listen: 127.0.0.1:8080\nstate_dir: /s\nadmin_token_file: token\n";
        assert!(parse(base).unwrap().metrics);
        assert!(!parse(&format!("{base}metrics: false\n")).unwrap().metrics);
        let error = parse(&format!("{base}metrics: sometimes\n"))
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("/etc/pht/hub.yaml:4:"), "{error}");
        assert!(error.contains("metrics"), "{error}");
    }

    #[test]
    fn short_admin_token_is_refused() {
        let error =
            parse("listen: 127.0.0.1:8080\nstate_dir: /s\nadmin_token: short\n").unwrap_err();
        assert!(matches!(
            error,
            ConfigError::Invalid {
                field: "admin_token",
                ..
            }
        ));
    }

    #[test]
    fn example_configuration_parses() {
        let text = include_str!("../../../examples/hub/hub.yaml");
        let config = HubConfig::parse(
            text,
            Path::new("examples/hub/hub.yaml"),
            Path::new("examples/hub"),
            |_| Ok("example-admin-token-change-me".into()),
        )
        .unwrap();
        assert_eq!(config.listen.port(), 8080);
    }
}
