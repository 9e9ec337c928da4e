//! The station: its configuration, policy, trusted keys, durable state, audit log and engine,
//! opened once and shared by every stage of the pipeline and by the daemon.
//!
//! Owns opening those parts (refusing an audit log that does not verify) and what every stage
//! needs from them: the actor name it audits under, appending to the audit log, finding the
//! run of a job, and marking runs a stopped daemon left `running`. The stages themselves live
//! in `pipeline/`, one file each; nothing here decides about a run.

use chrono::Utc;
use pht_core::PublicKey;
use pht_policy::Policy;
use pht_registry::{RegistryClient, RegistryOptions};

use crate::audit::{AuditEvent, AuditLog};
use crate::config::StationConfig;
use crate::engine::Engine;
use crate::error::{StateFileError, StationError};
use crate::space::Reserve;
use crate::store::{RunRecord, RunStatus, RunStore};
use crate::trust::{self, NamedKeys};

/// A station: its configuration, policy, trusted keys, state and engine.
pub struct Station<E> {
    pub(crate) config: StationConfig,
    pub(crate) policy: Policy,
    pub(crate) train_keys: NamedKeys,
    pub(crate) job_keys: NamedKeys,
    /// Keys trusted to sign base images, never trains or jobs.
    pub(crate) base_keys: NamedKeys,
    pub(crate) registry: RegistryClient,
    pub(crate) engine: E,
    pub(crate) audit: AuditLog,
    pub(crate) store: RunStore,
    /// Signs provenance of released results; a station without one cannot release.
    pub(crate) station_key: Option<pht_core::SigningKey>,
    /// Room kept back for recording failures when the disk fills.
    pub(crate) reserve: Reserve,
    /// Shown how each pull goes (a progress bar on a terminal), if anything is.
    pub(crate) pull_progress: Option<std::sync::Arc<dyn crate::pipeline::PullProgress>>,
    /// How the daemon's last exchanges with the hub went (for the console's overview).
    pub(crate) hub_contact: std::sync::Mutex<HubContact>,
    /// Kept when the configuration has `metrics:` (or a caller asked with `with_metrics`).
    pub(crate) metrics: Option<std::sync::Arc<crate::metrics::StationMetrics>>,
}

/// How the daemon's exchanges with the hub go: when it last reached the hub and the last
/// failure. Kept in memory: a station process that does not poll (`pht-station console`
/// alone) has none.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct HubContact {
    /// Whether this process polls the hub at all.
    pub polling: bool,
    pub last_contact: Option<chrono::DateTime<Utc>>,
    pub last_failure: Option<(chrono::DateTime<Utc>, String)>,
}

impl<E> std::fmt::Debug for Station<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Station")
            .field("station_id", &self.config.station_id)
            .finish_non_exhaustive()
    }
}

pub(crate) fn registry_client(config: &StationConfig) -> RegistryClient {
    RegistryClient::new(RegistryOptions {
        insecure_registries: config
            .registries
            .iter()
            .filter(|r| r.insecure)
            .map(|r| r.registry.clone())
            .collect(),
        credentials: None,
        endpoints: config
            .registries
            .iter()
            .filter_map(|r| {
                r.endpoint
                    .clone()
                    .map(|endpoint| (r.registry.clone(), endpoint))
            })
            .collect(),
    })
}

impl<E: Engine> Station<E> {
    /// Opens a station: reads its policy and keys, and opens its state and audit log (refusing
    /// a log that does not verify).
    pub fn open(config: StationConfig, engine: E) -> Result<Station<E>, StationError> {
        let trust = trust::load_policy(&config.policy)?;
        std::fs::create_dir_all(&config.state_dir)
            .map_err(StateFileError::create_directory(&config.state_dir))?;
        let store = RunStore::open(&config.state_dir)?;
        let audit = AuditLog::open_with(&config.state_dir.join("audit.log"), config.audit.clone())?;
        let registry = registry_client(&config);
        let station_key = crate::keys::read_signing_key(&config.key_dir)?;
        let reserve = Reserve::in_state_dir(&config.state_dir);
        if let Err(error) = reserve.ensure() {
            tracing::warn!(%error, state_dir = %config.state_dir.display(), "no room for the reserve that records failures on a full disk; free space in the state directory");
        }
        let config_metrics = config
            .metrics
            .as_ref()
            .map(|_| std::sync::Arc::new(crate::metrics::StationMetrics::new()));
        Ok(Station {
            config,
            policy: trust.policy,
            train_keys: trust.train_keys,
            job_keys: trust.job_keys,
            base_keys: trust.base_keys,
            registry,
            engine,
            audit,
            store,
            station_key,
            reserve,
            pull_progress: None,
            hub_contact: std::sync::Mutex::new(HubContact::default()),
            metrics: config_metrics,
        })
    }

    /// Keeps metrics (whether or not they are served).
    pub fn with_metrics(mut self) -> Station<E> {
        self.metrics = Some(std::sync::Arc::new(crate::metrics::StationMetrics::new()));
        self
    }

    /// Reports the progress of every pull to `progress` (`pht-station exec` on a terminal).
    pub fn with_pull_progress(
        mut self,
        progress: std::sync::Arc<dyn crate::pipeline::PullProgress>,
    ) -> Station<E> {
        self.pull_progress = Some(progress);
        self
    }
}

impl<E> Station<E> {
    pub fn engine(&self) -> &E {
        &self.engine
    }

    pub fn config(&self) -> &StationConfig {
        &self.config
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn store(&self) -> &RunStore {
        &self.store
    }

    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// The station's provenance signing key, if it has one.
    pub fn station_key(&self) -> Option<&pht_core::SigningKey> {
        self.station_key.as_ref()
    }

    /// The keys this station trusts to sign job envelopes.
    pub fn job_keys(&self) -> &[(String, PublicKey)] {
        &self.job_keys
    }

    /// How the daemon's exchanges with the hub have gone.
    pub fn hub_contact(&self) -> HubContact {
        self.hub_contact
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Records one exchange with the hub: `Ok` when it answered, the failure otherwise.
    pub fn note_hub_contact(&self, outcome: Result<(), String>) {
        let mut contact = self
            .hub_contact
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        contact.polling = true;
        match outcome {
            Ok(()) => contact.last_contact = Some(Utc::now()),
            Err(failure) => contact.last_failure = Some((Utc::now(), failure)),
        }
    }

    /// The station's metrics, when it keeps them.
    pub fn metrics(&self) -> Option<&std::sync::Arc<crate::metrics::StationMetrics>> {
        self.metrics.as_ref()
    }

    /// The metrics as Prometheus scrapes them, with the gauges read now; `None` when the
    /// station keeps no metrics. Blocking: it reads the run queues and the state directory,
    /// and every [`crate::metrics::AUDIT_VERIFY_EVERY`] verifies the whole audit log.
    pub fn metrics_text(&self) -> Option<String> {
        use crate::run_index::Queue;
        let metrics = self.metrics.as_ref()?;
        let queued = |queue| self.store.queue(queue).map_or(0, |runs| runs.len() as i64);
        let contact = self.hub_contact();
        let hub_connected =
            contact
                .polling
                .then(|| match (&contact.last_contact, &contact.last_failure) {
                    (Some(answered), Some((failed, _))) => answered > failed,
                    (Some(_), None) => true,
                    (None, _) => false,
                });
        if metrics.audit_check_due() {
            let ok = AuditLog::verify_file(self.audit.path())
                .map(|verification| verification.problem.is_none())
                .unwrap_or(false);
            metrics.audit_checked(ok);
        }
        let gauges = crate::metrics::StationGauges {
            approvals_waiting: queued(Queue::AwaitingApproval),
            reviews_waiting: queued(Queue::Withheld),
            outbox_items: self.store.newest_run_per_job().map_or(0, |runs| {
                runs.values()
                    .filter(|run| run.delivered_at.is_none() && run.sealed.is_some())
                    .count() as i64
            }),
            hub_connected,
            last_poll_unix_seconds: contact.last_contact.map(|at| at.timestamp()),
            audit_entries: self.audit.entry_count() as i64,
            audit_log_ok: metrics.audit_ok(),
            state_dir_free_bytes: pht_fs::free_bytes(&self.config.state_dir).ok(),
        };
        metrics.set_gauges(&gauges);
        Some(metrics.encode())
    }

    /// Times a pipeline step into the metrics (when kept) until the timer is dropped.
    pub(crate) fn time_step(
        &self,
        step: crate::metrics::PipelineStep,
    ) -> crate::metrics::StepTimer<'_> {
        crate::metrics::StepTimer::start(self.metrics.as_ref(), step)
    }

    /// The name the station itself is recorded under in the audit log.
    pub fn station_actor(&self) -> String {
        format!("station:{}", self.config.station_id)
    }

    /// Appends an event to the audit log.
    pub fn record_event(&self, event: AuditEvent) -> Result<(), StationError> {
        self.audit.append(event)?;
        Ok(())
    }

    /// The run of a job, if this station has one (the newest, when a run was interrupted and
    /// started again).
    pub fn run_for_job(&self, job_id: &str) -> Result<Option<RunRecord>, StationError> {
        Ok(self
            .store
            .list()?
            .into_iter()
            .rfind(|r| r.job.as_ref().is_some_and(|j| j.job_id == job_id)))
    }

    /// Marks runs left `running` by a station process that stopped as interrupted. Only the
    /// daemon calls this, at start: an operator command beside a running daemon must not.
    pub fn recover_interrupted_runs(&self) -> Result<(), StationError> {
        for mut record in self.store.list()? {
            // A run another station process (an operator's `exec`) is carrying out is not
            // interrupted.
            if record.status == RunStatus::Running && !self.store.is_live(&record.run_id) {
                record.status = RunStatus::Error;
                record.reasons.push(crate::store::INTERRUPTED_REASON.into());
                record.updated_at = Utc::now();
                self.store.save(&record)?;
                self.audit.append(
                    AuditEvent::new(&self.station_actor(), "run_interrupted")
                        .run(&record.run_id)
                        .detail("status", "error"),
                )?;
            }
        }
        Ok(())
    }
}
