//! Serving the hub's router on a TCP listener with the limits a service on a network needs:
//! a client must send each request's headers within `header_read_timeout` (which also closes
//! idle keep-alive connections and slow senders), at most `max_connections` are served at once
//! (the next wait in the listen backlog, and the hub says so in its log once), the process's
//! file-descriptor limit is raised to fit them, and a graceful shutdown lets requests in
//! progress — long-polls included — finish.
//!
//! Owns only the accept loop; routes, bodies and authentication are the router's. Long-polls
//! are unaffected by the header timeout: they wait after their headers have arrived.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// What the accept loop enforces.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    /// How long a shutdown waits for requests in progress.
    pub shutdown_grace: Duration,
}

/// Raises the soft file-descriptor limit so `max_connections` fit (up to the hard limit), and
/// returns the number of connections that can be served: `max_connections`, or fewer when the
/// hard limit leaves less room (with a warning saying so).
pub fn fit_connection_limit(max_connections: usize) -> usize {
    use rustix::process::{getrlimit, setrlimit, Resource};
    // Beyond connections: the database, blob files, the listener, logs.
    const RESERVED_FDS: u64 = 256;
    let wanted = max_connections as u64 + RESERVED_FDS;
    let mut limit = getrlimit(Resource::Nofile);
    let current = limit.current.unwrap_or(u64::MAX);
    if current < wanted {
        let ceiling = limit.maximum.unwrap_or(u64::MAX);
        limit.current = Some(wanted.min(ceiling));
        if let Err(error) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(%error, "cannot raise the open-files limit");
        }
    }
    let available = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    let fitting = available.saturating_sub(RESERVED_FDS).max(1) as usize;
    if fitting < max_connections {
        tracing::warn!(
            max_connections,
            serving = fitting,
            open_files_limit = available,
            "the open-files limit leaves room for fewer connections than max_connections; raise `ulimit -n` (LimitNOFILE= under systemd)"
        );
        return fitting;
    }
    max_connections
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets requests in progress
/// finish (for at most `limits.shutdown_grace`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()>,
) {
    // HTTP/1.1 only: hyper-util's automatic HTTP/2 detection waits for a client's first bytes
    // with no timeout, which is exactly what an idle client never sends (`axum::serve` does
    // that). Stations and `pht` speak HTTP/1.1.
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let builder = Arc::new(builder);
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let at_limit_logged = Arc::new(AtomicBool::new(false));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        if permits.available_permits() == 0 && !at_limit_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                max_connections = limits.max_connections,
                "connection limit reached: new connections wait until one closes (idle ones close after the header timeout)"
            );
        }
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                // Out of file descriptors, or a connection reset before it was accepted: the
                // listener itself is fine, so wait a moment and go on.
                tracing::warn!(%error, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let builder = builder.clone();
        let at_limit_logged = at_limit_logged.clone();
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(permit);
            at_limit_logged.store(false, Ordering::Relaxed);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!("requests still in progress at the end of the shutdown grace period were cut off");
        }
    }
}
