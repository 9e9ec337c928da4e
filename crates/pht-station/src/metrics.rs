//! The station's Prometheus metrics: what it did (runs by outcome, how long each step took,
//! check verdicts by rule) and how it is (approvals and reviews waiting, the outbox, the hub
//! connection, the audit log, free space in the state directory).
//!
//! Owns the metric names and labels and serving them. The station stays outbound-only: metrics
//! are served only when `metrics.listen` is configured, and only on a loopback address or a
//! Unix socket (`config.rs` refuses anything else), for a Prometheus or an agent on the same
//! host. No label carries a run id, job id, researcher, dataset name or any value from data:
//! rule names, step names and outcomes are fixed words of this program.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A step of the pipeline, as the duration histogram names it.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum PipelineStep {
    verify,
    pull,
    run,
    collect,
    check,
    seal,
    deliver,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    step: PipelineStep,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    rule: &'static str,
    verdict: &'static str,
}

/// What the station reports when scraped (filled in by [`crate::Station::refresh_metrics`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StationGauges {
    pub approvals_waiting: i64,
    pub reviews_waiting: i64,
    pub outbox_items: i64,
    /// `None` when this process does not poll a hub.
    pub hub_connected: Option<bool>,
    pub last_poll_unix_seconds: Option<i64>,
    pub audit_entries: i64,
    /// `None` until the audit log was first verified.
    pub audit_log_ok: Option<bool>,
    pub state_dir_free_bytes: Option<u64>,
}

/// The station's metrics. One per process; cheap to record into from any task.
pub struct StationMetrics {
    registry: Registry,
    runs: Family<OutcomeLabels, Counter>,
    steps: Family<StepLabels, Histogram>,
    verdicts: Family<VerdictLabels, Counter>,
    approvals_waiting: Gauge,
    reviews_waiting: Gauge,
    outbox_items: Gauge,
    hub_connected: Gauge,
    last_poll: Gauge,
    audit_entries: Gauge,
    audit_log_ok: Gauge,
    state_dir_free_bytes: Gauge<u64, AtomicU64>,
    /// When the audit log was last verified for `pht_station_audit_log_ok`, and the answer.
    audit_checked: Mutex<Option<(Instant, bool)>>,
}

impl std::fmt::Debug for StationMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StationMetrics").finish_non_exhaustive()
    }
}

/// How often a scrape verifies the whole audit log again (it reads every file).
pub const AUDIT_VERIFY_EVERY: Duration = Duration::from_secs(300);

impl Default for StationMetrics {
    fn default() -> StationMetrics {
        StationMetrics::new()
    }
}

impl StationMetrics {
    pub fn new() -> StationMetrics {
        let mut registry = Registry::with_prefix("pht_station");
        let runs = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "runs",
            "Runs that ended, by outcome (succeeded, failed, refused, rejected, error)",
            runs.clone(),
        );
        let steps = Family::<StepLabels, Histogram>::new_with_constructor(|| {
            // 10 ms to about 45 minutes.
            Histogram::new(exponential_buckets(0.01, 2.5, 14))
        });
        registry.register(
            "step_duration_seconds",
            "How long each step of the pipeline took",
            steps.clone(),
        );
        let verdicts = Family::<VerdictLabels, Counter>::default();
        registry.register(
            "check_verdicts",
            "Verdicts of the output checks, by rule and verdict (pass, review, fail)",
            verdicts.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let gauge = Gauge::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        let approvals_waiting = gauge(
            &mut registry,
            "approvals_waiting",
            "Runs waiting for an operator's approval",
        );
        let reviews_waiting = gauge(
            &mut registry,
            "reviews_waiting",
            "Runs whose outputs are withheld for a reviewer",
        );
        let outbox_items = gauge(
            &mut registry,
            "outbox_items",
            "Sealed results not yet delivered to the hub",
        );
        let hub_connected = gauge(
            &mut registry,
            "hub_connected",
            "1 when the last exchange with the hub succeeded, 0 when it failed",
        );
        let last_poll = gauge(
            &mut registry,
            "last_poll_timestamp_seconds",
            "Unix time of the last successful exchange with the hub",
        );
        let audit_entries = gauge(&mut registry, "audit_entries", "Entries in the audit log");
        let audit_log_ok = gauge(
            &mut registry,
            "audit_log_ok",
            "1 when the audit log verified at the last check, 0 when it is broken",
        );
        let state_dir_free_bytes = Gauge::<u64, AtomicU64>::default();
        registry.register(
            "state_dir_free_bytes",
            "Free bytes on the file system of the state directory",
            state_dir_free_bytes.clone(),
        );
        StationMetrics {
            registry,
            runs,
            steps,
            verdicts,
            approvals_waiting,
            reviews_waiting,
            outbox_items,
            hub_connected,
            last_poll,
            audit_entries,
            audit_log_ok,
            state_dir_free_bytes,
            audit_checked: Mutex::new(None),
        }
    }

    /// A run ended with `outcome` (a run status word).
    pub fn run_ended(&self, outcome: &'static str) {
        self.runs.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// A step took `elapsed`.
    pub fn step_took(&self, step: PipelineStep, elapsed: Duration) {
        self.steps
            .get_or_create(&StepLabels { step })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts every rule verdict of a check report.
    pub fn checked(&self, report: &pht_checks::CheckReport) {
        let results = report.collection.checks.iter().chain(
            report
                .results
                .values()
                .flat_map(|output| output.checks.iter()),
        );
        for result in results {
            let labels = VerdictLabels {
                rule: result.rule.as_str(),
                verdict: result.status.as_str(),
            };
            self.verdicts.get_or_create(&labels).inc();
        }
    }

    /// Whether the audit log is due another full verification for the metrics.
    pub fn audit_check_due(&self) -> bool {
        self.audit_checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_none_or(|(at, _)| at.elapsed() >= AUDIT_VERIFY_EVERY)
    }

    /// Records a full verification of the audit log.
    pub fn audit_checked(&self, ok: bool) {
        *self
            .audit_checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((Instant::now(), ok));
    }

    /// The last verification's answer.
    pub fn audit_ok(&self) -> Option<bool> {
        self.audit_checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .map(|(_, ok)| ok)
    }

    /// Sets the gauges read at scrape time.
    pub fn set_gauges(&self, gauges: &StationGauges) {
        self.approvals_waiting.set(gauges.approvals_waiting);
        self.reviews_waiting.set(gauges.reviews_waiting);
        self.outbox_items.set(gauges.outbox_items);
        self.hub_connected
            .set(gauges.hub_connected.map_or(0, i64::from));
        self.last_poll
            .set(gauges.last_poll_unix_seconds.unwrap_or(0));
        self.audit_entries.set(gauges.audit_entries);
        self.audit_log_ok
            .set(gauges.audit_log_ok.map_or(0, i64::from));
        self.state_dir_free_bytes
            .set(gauges.state_dir_free_bytes.unwrap_or(0));
    }

    /// The text exposition (OpenMetrics).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// The content type of [`StationMetrics::encode`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Times a step into `metrics`, when there are metrics.
pub(crate) struct StepTimer<'m> {
    metrics: Option<&'m StationMetrics>,
    step: PipelineStep,
    started: Instant,
}

impl<'m> StepTimer<'m> {
    pub(crate) fn start(metrics: Option<&'m Arc<StationMetrics>>, step: PipelineStep) -> Self {
        StepTimer {
            metrics: metrics.map(|m| m.as_ref()),
            step,
            started: Instant::now(),
        }
    }
}

impl Drop for StepTimer<'_> {
    fn drop(&mut self) {
        if let Some(metrics) = self.metrics {
            metrics.step_took(self.step, self.started.elapsed());
        }
    }
}

/// Why metrics cannot be served.
#[derive(Debug, thiserror::Error)]
#[error(
    "metrics.listen: cannot listen on {listen}: {source}; is another station or program using it?"
)]
pub struct MetricsServeError {
    listen: String,
    source: std::io::Error,
}

/// Serves `GET /metrics` on `listen` (loopback or a Unix socket) until `shutdown` completes.
/// Every scrape reads the gauges afresh.
pub async fn serve<E: crate::engine::Engine + 'static>(
    station: Arc<crate::Station<E>>,
    listen: &crate::config::ConsoleListen,
    announce: impl FnOnce(&str),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), MetricsServeError> {
    use axum::routing::get;
    let router =
        axum::Router::new()
            .route(
                "/metrics",
                get(
                    |axum::extract::State(station): axum::extract::State<
                        Arc<crate::Station<E>>,
                    >| async move {
                        let text = tokio::task::spawn_blocking(move || station.metrics_text())
                            .await
                            .unwrap_or_default();
                        match text {
                            Some(text) => {
                                ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], text)
                                    .into_response()
                            }
                            None => axum::http::StatusCode::NOT_FOUND.into_response(),
                        }
                    },
                ),
            )
            .with_state(station);
    use axum::response::IntoResponse as _;
    let listen_text = listen.to_string();
    let failed = |source| MetricsServeError {
        listen: listen_text.clone(),
        source,
    };
    match listen {
        crate::config::ConsoleListen::Tcp(address) => {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .map_err(failed)?;
            let bound = listener.local_addr().map_err(failed)?;
            announce(&format!("http://{bound}/metrics"));
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
                .map_err(failed)
        }
        crate::config::ConsoleListen::Unix(path) => {
            // A socket left by an earlier process is replaced; any other file is not.
            if std::fs::symlink_metadata(path)
                .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
            {
                let _ = std::fs::remove_file(path);
            }
            let listener = tokio::net::UnixListener::bind(path).map_err(failed)?;
            announce(&format!("unix:{}", path.display()));
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
                .map_err(failed)
        }
    }
}
