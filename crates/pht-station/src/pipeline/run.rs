//! Run: the approved train runs in the sandbox on the data it was granted.
//!
//! Owns what the run is given: the dataset versions (recorded for provenance) and row indexes
//! (for the leakage check) taken just before the run, so the train sees the same files; the
//! `/input/params.json` it reads; the fully resolved [`RunSpec`] built from the policy's grant
//! (limits, read-only datasets, the state handed over, runtime, GPU); and handing that spec to
//! the engine. Does not decide any limit (the grant did) and makes no Docker call itself: the
//! sandbox is `pht-docker`'s, reached through [`Engine`].

use pht_checks::DatasetIndex;
use pht_core::Digest;
use pht_docker::{RunLimits, RunOutcome, RunSpec, SpecError};

use super::decide::ApprovedRun;
use super::pull::PulledRun;
use crate::audit::AuditEvent;
use crate::datasets;
use crate::engine::{Engine, EngineError};
use crate::error::{StateFileError, StationError};
use crate::station::Station;
use crate::store::DatasetVersion;

/// The run could not be prepared or carried out.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot read dataset `{name}` at {}: {source}", path.display())]
    Dataset {
        name: String,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("run {run_id}: {source}")]
    Spec { run_id: String, source: SpecError },
    #[error("container engine: {0}")]
    Engine(#[from] EngineError),
}

/// A run the sandbox carried out (whatever its exit), with the dataset indexes taken before it.
/// Only [`Station::run`] makes one.
#[derive(Debug)]
pub struct FinishedRun {
    approved: ApprovedRun,
    outcome: RunOutcome,
    indexes: Vec<DatasetIndex>,
}

impl FinishedRun {
    pub(super) fn into_parts(self) -> (ApprovedRun, RunOutcome, Vec<DatasetIndex>) {
        (self.approved, self.outcome, self.indexes)
    }
}

impl<E: Engine> Station<E> {
    /// Runs a pulled train in the sandbox; anything that keeps it from running fails the run.
    pub(super) async fn run(&self, pulled: PulledRun) -> Result<FinishedRun, StationError> {
        let (mut approved, image_id) = pulled.into_parts();
        let indexes = match self.read_datasets(&mut approved) {
            Ok(indexes) => indexes,
            Err(error) => return self.fail(approved.into_record(), error.into()),
        };
        let spec = match self.run_spec(&approved, &image_id) {
            Ok(spec) => spec,
            Err(error) => return self.fail(approved.into_record(), error),
        };
        let grant = approved.grant();
        let record = approved.record();
        let mut started = AuditEvent::new(&self.station_actor(), "run_started").run(&record.run_id);
        started.train_digest = Some(approved.train().digest().to_string());
        started.datasets = grant.datasets().to_vec();
        started.details.insert(
            "limits".into(),
            serde_json::to_value(grant).expect("grants always serialise"),
        );
        started.details.insert(
            "dataset_versions".into(),
            serde_json::to_value(&record.datasets).expect("versions always serialise"),
        );
        self.audit.append(started)?;
        approved.record_mut().started_at = Some(chrono::Utc::now());

        let outcome = match self.engine.run(&spec).await {
            Ok(outcome) => outcome,
            Err(error) => return self.fail(approved.into_record(), RunError::from(error).into()),
        };
        approved.record_mut().finished_at = Some(chrono::Utc::now());
        Ok(FinishedRun {
            approved,
            outcome,
            indexes,
        })
    }

    /// The versions of the granted datasets (into the record) and their row indexes.
    fn read_datasets(&self, approved: &mut ApprovedRun) -> Result<Vec<DatasetIndex>, RunError> {
        let mut indexes = Vec::new();
        let mut versions = Vec::new();
        for name in approved.grant().datasets() {
            let dataset = &self.config.datasets[name.as_str()];
            let (dataset_indexes, version) =
                datasets::dataset_indexes(&self.config.state_dir.join("dataset-index"), dataset)
                    .map_err(|source| RunError::Dataset {
                        name: name.clone(),
                        path: dataset.path.clone(),
                        source,
                    })?;
            indexes.extend(dataset_indexes);
            versions.push(DatasetVersion {
                name: name.clone(),
                sha256: version,
            });
        }
        approved.record_mut().datasets = versions;
        indexes.extend(self.received_state_indexes(approved.record()));
        Ok(indexes)
    }

    /// Row indexes of the state this stop received (tables only), so that this stop's outputs
    /// are checked for leakage against the previous stations' data as far as it came in.
    fn received_state_indexes(&self, record: &crate::store::RunRecord) -> Vec<DatasetIndex> {
        let Some(received) = &record.received_state else {
            return Vec::new();
        };
        let state_dir = self
            .store
            .run_dir(&record.run_id)
            .join("input")
            .join("state");
        let Ok(entries) = std::fs::read_dir(&state_dir) else {
            return Vec::new();
        };
        let mut indexes = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let is_table = path
                .extension()
                .is_some_and(|extension| extension == "csv" || extension == "tsv");
            if let (true, Ok(bytes)) = (is_table, std::fs::read(&path)) {
                let name = format!(
                    "state from {} ({})",
                    received.from_station,
                    entry.file_name().to_string_lossy()
                );
                indexes.push(DatasetIndex::from_csv(name, &bytes).for_leakage_only());
            }
        }
        indexes
    }

    fn run_spec(&self, approved: &ApprovedRun, image_id: &Digest) -> Result<RunSpec, StationError> {
        let (record, train, grant) = (approved.record(), approved.train(), approved.grant());
        let spec_error = |source: SpecError| RunError::Spec {
            run_id: record.run_id.clone(),
            source,
        };
        let limits = RunLimits {
            nano_cpus: RunLimits::nano_cpus_from_cpus(grant.cpus()),
            memory_bytes: grant.memory_bytes(),
            pids: grant.pids(),
            wall_clock: grant.wall_clock(),
            tmp_bytes: grant.tmp_bytes(),
            output_bytes: grant.output_bytes(),
            output_files: self.policy.outputs().checks().max_files as u64 * 4 + 16,
            log_bytes: grant.log_bytes(),
        };
        let input_dir = self.store.run_dir(&record.run_id).join("input");
        std::fs::create_dir_all(&input_dir)
            .map_err(StateFileError::create_directory(&input_dir))?;
        let params_path = input_dir.join("params.json");
        let params =
            serde_json::to_vec_pretty(&record.parameters).expect("parameters always serialise");
        std::fs::write(&params_path, params).map_err(StateFileError::write(&params_path))?;
        let mut spec = RunSpec::new(&record.run_id, &image_id.to_string(), limits)
            .map_err(spec_error)?
            .with_params_file(&params_path)
            .map_err(spec_error)?;
        for dataset in grant.datasets() {
            let held = &self.config.datasets[dataset.as_str()];
            spec = spec.with_dataset(dataset, &held.path).map_err(spec_error)?;
        }
        let state_dir = input_dir.join("state");
        if state_dir.is_dir() {
            spec = spec.with_state_dir(&state_dir).map_err(spec_error)?;
        }
        if let Some(entrypoint) = &train.manifest().entrypoint {
            spec = spec.with_entrypoint(entrypoint.clone());
        }
        if let Some(command) = &train.manifest().command {
            spec = spec.with_cmd(command.clone());
        }
        if grant.runtime() == pht_policy::Runtime::Runsc {
            spec = spec.with_runtime("runsc").map_err(spec_error)?;
        }
        Ok(spec.with_gpu(grant.gpu()))
    }
}
