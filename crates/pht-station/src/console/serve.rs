//! Serving the console: on a TCP address (loopback unless TLS protects it, as `config.rs`
//! enforces), with TLS from a configured certificate and key (rustls), or on a Unix socket.
//!
//! Owns the accept loop: a client has 10 s to send a request's headers (idle connections
//! close), at most 64 connections are served at once, a TLS handshake happens in the
//! connection's own task (a slow handshake holds up no one else), and shutdown lets requests in
//! progress finish. Verifies the audit log at start and every 10 minutes for the overview.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};

use super::pages::Peer;
use super::Console;
use crate::config::{ConsoleConfig, ConsoleListen, ConsoleTls};
use crate::engine::Engine;

const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CONNECTIONS: usize = 64;
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
const AUDIT_CHECK_EVERY: Duration = Duration::from_secs(600);

/// Why the console cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("console.listen: cannot listen on {listen}: {source}; is another console or program using it?")]
    Listen {
        listen: String,
        source: std::io::Error,
    },
    #[error("console.tls: {path}: {problem}")]
    Tls { path: PathBuf, problem: String },
    #[error(transparent)]
    Station(#[from] crate::StationError),
}

fn tls_acceptor(tls: &ConsoleTls) -> Result<tokio_rustls::TlsAcceptor, ServeError> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let problem = |path: &Path, problem: String| ServeError::Tls {
        path: path.to_path_buf(),
        problem,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .map_err(|e| problem(&tls.cert, format!("cannot read the certificate: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| problem(&tls.cert, format!("not a PEM certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(problem(&tls.cert, "holds no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| problem(&tls.key, format!("not a PEM private key: {e}")))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| problem(&tls.cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            problem(
                &tls.key,
                format!("the key does not fit the certificate: {e}"),
            )
        })?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener, PathBuf),
}

/// Serves the console of `station` as `config` says until `shutdown` resolves. `ready` is
/// called with the address it listens on (for a port of 0, the one the system chose).
pub async fn serve<E: Engine + 'static>(
    station: Arc<crate::Station<E>>,
    config: &ConsoleConfig,
    ready: impl FnOnce(String),
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let acceptor = config.tls.as_ref().map(tls_acceptor).transpose()?;
    let console = Console::new(station, acceptor.is_some())?;
    let listen_error = |source| ServeError::Listen {
        listen: config.listen.to_string(),
        source,
    };
    let listener = match &config.listen {
        ConsoleListen::Tcp(address) => Listener::Tcp(
            tokio::net::TcpListener::bind(address)
                .await
                .map_err(listen_error)?,
        ),
        ConsoleListen::Unix(path) => {
            // A socket left by a console that stopped is removed; anything else is not.
            if let Ok(metadata) = std::fs::symlink_metadata(path) {
                use std::os::unix::fs::FileTypeExt as _;
                if metadata.file_type().is_socket() {
                    let _ = std::fs::remove_file(path);
                }
            }
            let listener = tokio::net::UnixListener::bind(path).map_err(listen_error)?;
            // Operators reach it through the socket's permissions: owner and group only.
            use std::os::unix::fs::PermissionsExt as _;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660));
            Listener::Unix(listener, path.clone())
        }
    };
    let shown = match &listener {
        Listener::Tcp(tcp) => {
            let address = tcp.local_addr().map_err(listen_error)?;
            format!(
                "{}://{address}/",
                if acceptor.is_some() { "https" } else { "http" }
            )
        }
        Listener::Unix(_, path) => format!("unix:{}", path.display()),
    };
    ready(shown);

    let auditor = {
        let console = console.clone();
        tokio::spawn(async move {
            loop {
                console.verify_audit().await;
                tokio::time::sleep(AUDIT_CHECK_EVERY).await;
            }
        })
    };
    let router = console.router();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let builder = Arc::new(builder);
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            accepted = accept(&listener) => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "the console cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let router = router.clone().layer(axum::Extension(Peer(peer)));
        let (builder, acceptor, watcher) = (builder.clone(), acceptor.clone(), graceful.watcher());
        tokio::spawn(async move {
            let served = match (stream, acceptor) {
                (Stream::Tcp(tcp), Some(acceptor)) => {
                    match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => serve_connection(&builder, watcher, tls, router).await,
                        Ok(Err(error)) => {
                            tracing::debug!(%error, "TLS handshake failed");
                            Ok(())
                        }
                        Err(_) => Ok(()),
                    }
                }
                (Stream::Tcp(tcp), None) => serve_connection(&builder, watcher, tcp, router).await,
                (Stream::Unix(unix), _) => serve_connection(&builder, watcher, unix, router).await,
            };
            if let Err(error) = served {
                tracing::debug!(%error, "console connection ended with an error");
            }
            drop(permit);
        });
    }
    auditor.abort();
    if let Listener::Unix(_, path) = &listener {
        let _ = std::fs::remove_file(path);
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {}
    }
    Ok(())
}

enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &Listener) -> std::io::Result<(Stream, Option<std::net::SocketAddr>)> {
    match listener {
        Listener::Tcp(tcp) => {
            let (stream, peer) = tcp.accept().await?;
            let _ = stream.set_nodelay(true);
            Ok((Stream::Tcp(stream), Some(peer)))
        }
        Listener::Unix(unix, _) => {
            let (stream, _) = unix.accept().await?;
            Ok((Stream::Unix(stream), None))
        }
    }
}

async fn serve_connection<S>(
    builder: &http1::Builder,
    watcher: hyper_util::server::graceful::Watcher,
    stream: S,
    router: Router,
) -> Result<(), hyper::Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(router);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    watcher.watch(connection).await
}
