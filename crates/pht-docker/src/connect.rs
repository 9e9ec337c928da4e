//! Connecting to the local Docker daemon.
//!
//! Owns: finding the daemon's unix socket (`DOCKER_HOST=unix:///…`, else `/var/run/docker.sock`),
//! connecting, and negotiating the API version down to what the daemon speaks (Debian's 20.10
//! engine answers at most 1.41, while bollard asks for a newer one by default).
//!
//! Does not talk to remote daemons over TCP or SSH: a station runs next to its own engine, and
//! the sandbox guarantees assume the engine is local.

use std::path::{Path, PathBuf};

use bollard::{ClientVersion, Docker, API_DEFAULT_VERSION};

/// The socket used when `DOCKER_HOST` is not set.
pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// The oldest API the sandbox is written against (Docker 20.10).
const MINIMUM_API_VERSION: ClientVersion = ClientVersion {
    major_version: 1,
    minor_version: 41,
};

/// Seconds bollard waits for the head of a response. Long-running calls (waiting for a train,
/// streaming its output) receive their head at once, so this does not limit a run.
const REQUEST_TIMEOUT_SECONDS: u64 = 120;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("DOCKER_HOST={docker_host:?} is not a unix socket: the station only uses a local Docker daemon (set DOCKER_HOST=unix:///path/to/docker.sock, or unset it for {DEFAULT_DOCKER_SOCKET})")]
    UnsupportedDockerHost { docker_host: String },
    #[error("docker socket {socket_path:?} does not exist: is the Docker daemon running? (if it listens elsewhere, set DOCKER_HOST=unix:///path/to/docker.sock)")]
    SocketMissing { socket_path: PathBuf },
    #[error("could not talk to the docker daemon at {socket_path:?}: {source}: is the Docker daemon running? is {socket_path:?} readable by this user (e.g. a member of the docker group)?")]
    Unreachable {
        socket_path: PathBuf,
        source: bollard::errors::Error,
    },
    #[error("the docker daemon at {socket_path:?} speaks API {api_version}, but the sandbox needs at least 1.41 (Docker 20.10): upgrade the Docker engine")]
    DaemonTooOld {
        socket_path: PathBuf,
        api_version: String,
    },
}

/// Connects to the local Docker daemon and negotiates the API version.
pub async fn connect() -> Result<Docker, ConnectError> {
    let docker_host = std::env::var("DOCKER_HOST").ok();
    let socket_path = socket_path_from_docker_host(docker_host.as_deref())?;
    connect_to_socket(&socket_path).await
}

/// Connects to the Docker daemon listening on `socket_path` and negotiates the API version.
pub async fn connect_to_socket(socket_path: &Path) -> Result<Docker, ConnectError> {
    if !socket_path.exists() {
        return Err(ConnectError::SocketMissing {
            socket_path: socket_path.to_path_buf(),
        });
    }
    let unreachable = |source| ConnectError::Unreachable {
        socket_path: socket_path.to_path_buf(),
        source,
    };
    let socket_text = socket_path.to_string_lossy();
    let docker =
        Docker::connect_with_unix(&socket_text, REQUEST_TIMEOUT_SECONDS, API_DEFAULT_VERSION)
            .map_err(unreachable)?;
    let docker = docker.negotiate_version().await.map_err(unreachable)?;
    let api_version = docker.client_version();
    if api_version < MINIMUM_API_VERSION {
        return Err(ConnectError::DaemonTooOld {
            socket_path: socket_path.to_path_buf(),
            api_version: api_version.to_string(),
        });
    }
    Ok(docker)
}

/// The socket `DOCKER_HOST` names: `unix:///path` or a bare absolute path; unset or empty means
/// [`DEFAULT_DOCKER_SOCKET`].
fn socket_path_from_docker_host(docker_host: Option<&str>) -> Result<PathBuf, ConnectError> {
    let docker_host = match docker_host.map(str::trim) {
        None | Some("") => return Ok(PathBuf::from(DEFAULT_DOCKER_SOCKET)),
        Some(docker_host) => docker_host,
    };
    let path = docker_host.strip_prefix("unix://").unwrap_or(docker_host);
    if path.starts_with('/') {
        Ok(PathBuf::from(path))
    } else {
        Err(ConnectError::UnsupportedDockerHost {
            docker_host: docker_host.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    fn check(docker_host: Option<&str>, expected: Expect) {
        let actual = match socket_path_from_docker_host(docker_host) {
            Ok(path) => format!("socket {}", path.display()),
            Err(error) => format!("error: {error}"),
        };
        expected.assert_eq(&actual);
    }

    #[test]
    fn docker_host_selects_the_socket() {
        check(None, expect!["socket /var/run/docker.sock"]);
        check(Some(""), expect!["socket /var/run/docker.sock"]);
        check(
            Some("unix:///run/user/1000/docker.sock"),
            expect!["socket /run/user/1000/docker.sock"],
        );
        check(Some("/srv/docker.sock"), expect!["socket /srv/docker.sock"]);
    }

    #[test]
    fn remote_docker_hosts_are_refused() {
        check(
            Some("tcp://10.0.0.5:2376"),
            expect![[
                r#"error: DOCKER_HOST="tcp://10.0.0.5:2376" is not a unix socket: the station only uses a local Docker daemon (set DOCKER_HOST=unix:///path/to/docker.sock, or unset it for /var/run/docker.sock)"#
            ]],
        );
        check(
            Some("ssh://admin@host"),
            expect![[
                r#"error: DOCKER_HOST="ssh://admin@host" is not a unix socket: the station only uses a local Docker daemon (set DOCKER_HOST=unix:///path/to/docker.sock, or unset it for /var/run/docker.sock)"#
            ]],
        );
    }

    #[tokio::test]
    async fn a_missing_socket_says_what_to_do() {
        let error = connect_to_socket(Path::new("/nonexistent/docker.sock"))
            .await
            .expect_err("there is no daemon there");
        expect![[r#"docker socket "/nonexistent/docker.sock" does not exist: is the Docker daemon running? (if it listens elsewhere, set DOCKER_HOST=unix:///path/to/docker.sock)"#]].assert_eq(&error.to_string());
    }
}
