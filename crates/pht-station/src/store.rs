//! The station's durable state: one JSON record per run, written atomically, and the set of job
//! ids already seen (replay protection).
//!
//! Owns the run record format (`pht.run.v1`) and its storage under the state directory. Does not
//! decide anything: the pipeline sets statuses, this module keeps them across restarts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::run_index::{Queue, RunIndex};

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Policy says an operator must approve it: `pht-station approve RUN`.
    AwaitingApproval,
    /// Verification or policy refused it.
    Refused,
    /// An operator rejected it.
    Rejected,
    /// Approved and running (or interrupted while running).
    Running,
    /// Ran and exited 0; outputs collected.
    Succeeded,
    /// Ran and failed: non-zero exit, killed at the memory or time limit.
    Failed,
    /// The station could not carry it out (Docker or registry failure).
    Error,
}

impl RunStatus {
    /// The status as records and JSON spell it (`awaiting_approval`, `succeeded`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::AwaitingApproval => "awaiting_approval",
            RunStatus::Refused => "refused",
            RunStatus::Rejected => "rejected",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Error => "error",
        }
    }

    pub fn is_final(self) -> bool {
        !matches!(self, RunStatus::AwaitingApproval | RunStatus::Running)
    }
}

/// The train a run is about, pinned by digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainRef {
    /// `registry/repository@sha256:…`.
    pub reference: String,
    pub registry: String,
    pub repository: String,
    pub digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// What the signed manifest says of itself, once verified: shown to approvers, never
    /// trusted for anything (the policy decides on the verified manifest itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datasets: Vec<String>,
    /// The resources the manifest asks for (the policy's grant is in `decision`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<pht_core::manifest::Resources>,
}

/// The base image a train is built on: the verify stage fetched it by digest and checked that
/// the train's layers begin with its layers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseRef {
    /// `registry/repository@sha256:…`.
    pub reference: String,
    /// The trusted base signer whose key verified the base's signature, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
}

/// The job a run belongs to, when it came from the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRef {
    pub job_id: String,
    pub signer: String,
    pub stop_index: usize,
    /// The route as the verified envelope gave it: where state goes next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<pht_core::job::Route>,
}

/// How the container ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeSummary {
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    pub timed_out: bool,
    pub duration_ms: u64,
    pub output_limit_reached: bool,
    pub logs_truncated: bool,
    pub log_bytes: u64,
}

/// One collected output (hash and size, never content).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputSummary {
    pub path: String,
    /// `file`, `symlink` or `special`.
    pub kind: String,
    pub size: u64,
    pub sha256: String,
}

/// An operator's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorDecision {
    pub by: String,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Everything the station knows about one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub version: String,
    pub run_id: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub status: RunStatus,
    pub train: TrainRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// The base image the train is built on, as the verify stage checked it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<BaseRef>,
    /// The parameters the train receives in `/input/params.json` (job parameters, not data).
    #[serde(default)]
    pub parameters: BTreeMap<String, serde_json::Value>,
    /// The policy decision, as the policy crate reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<serde_json::Value>,
    /// Why it was refused, rejected or failed, one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<OperatorDecision>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<OutcomeSummary>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<OutputSummary>,
    /// Entries of `/output` that were not collected, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused_outputs: Vec<String>,
    /// The overall verdict of the output checks (`pass`, `review`, `fail`); the report is
    /// `report.json` in the run directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<String>,
    /// What happened to the outputs, by whom and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_decision: Option<OutputDecisionRecord>,
    /// Every operator's review of withheld outputs, in order: a release counts once per
    /// operator toward `outputs.reviewers_required`; a block ends it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reviews: Vec<OutputReview>,
    /// Tables that leave as transformed copies (`outputs.remedy`), the originals staying here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remedied: Vec<RemediedOutput>,
    /// The mounted datasets and the SHA-256 of their contents when the run started.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datasets: Vec<DatasetVersion>,
    /// The age recipient results are sealed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// The sealed result bundle, once released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<SealedBundle>,
    /// Paths the train declared as `state` (handed to the next stop, never released).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state_paths: Vec<String>,
    /// The verdict of the checks on that state (`state-report.json` in the run directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_checks: Option<String>,
    /// The state this stop received from the previous one: sender and sealed bundle's hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_state: Option<ReceivedStateRef>,
    /// The last stop status reported to the hub, and whether the sealed result was delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<DateTime<Utc>>,
    /// The SHA-256 of the policy file that decided the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_sha256: Option<String>,
    /// When the container started and finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
}

/// What happened to a run's outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputDecision {
    /// Released to the researcher (sealed).
    Released,
    /// Waiting for an operator: `pht-station outputs release|block RUN --reason …`.
    Withheld,
    /// Not released.
    Blocked,
}

/// The decision on a run's outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputDecisionRecord {
    pub decision: OutputDecision,
    /// `station` for an automatic decision, otherwise the operator.
    pub by: String,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// An operator released outputs the checks failed.
    #[serde(default)]
    pub overridden: bool,
}

/// One operator's review of withheld outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputReview {
    pub operator: String,
    /// `released` or `blocked`.
    pub decision: OutputDecision,
    pub at: DateTime<Utc>,
    pub reason: String,
}

/// State received from the previous stop of a sequential route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedStateRef {
    pub from_station: String,
    /// SHA-256 (hex) of the sealed state bundle as it arrived.
    pub sha256: String,
}

/// A table that leaves as a transformed copy of what the train wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemediedOutput {
    /// The output's path.
    pub path: String,
    /// How it was transformed, as the provenance says it.
    pub description: String,
    /// SHA-256 and size of the transformed copy (under the run's `remedied/`).
    pub sha256: String,
    pub size: u64,
}

/// A dataset as it was when a run read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetVersion {
    pub name: String,
    pub sha256: String,
}

/// A sealed result bundle in the run directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedBundle {
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

/// The reason a daemon records on a run it finds `running` at start: the station stopped
/// mid-run. Such a run is carried out again once (see `daemon::resume_interrupted`).
pub const INTERRUPTED_REASON: &str =
    "the station stopped while this run was in progress; its container was removed";

impl RunRecord {
    /// Whether a station stop interrupted this run (rather than the run failing on its own).
    pub fn was_interrupted(&self) -> bool {
        self.status == RunStatus::Error
            && self
                .reasons
                .iter()
                .any(|reason| reason == INTERRUPTED_REASON)
    }
}

/// Why state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot write station state {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read station state {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("station state {path} is damaged: {detail}")]
    Damaged { path: PathBuf, detail: String },
    #[error("no run `{run_id}` (list runs with `pht-station runs`)")]
    UnknownRun { run_id: String },
    #[error("run {run_id} is being carried out by another pht-station process; wait for it to finish (`pht-station show {run_id}`)")]
    RunBusy { run_id: String },
    #[error("another pht-station daemon{} is running with the state directory {}; stop it first, or give this station its own state directory", pid.map(|p| format!(" (pid {p})")).unwrap_or_default(), state_dir.display())]
    DaemonRunning {
        state_dir: PathBuf,
        pid: Option<u32>,
    },
    #[error("another pht-station daemon{} is running as station `{station_id}` on this host; two stations with one id would remove each other's trains — give each its own station_id", pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    StationIdTaken {
        station_id: String,
        pid: Option<u32>,
    },
}

/// Run ids are made by the station (`run-` and hex); anything else an operator types is not one,
/// and never becomes a path.
fn valid_run_id(run_id: &str) -> bool {
    !run_id.is_empty()
        && run_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A run this process is carrying out: while it is held, no other station process takes the
/// run for interrupted, or removes its sandbox as a leftover. Released when dropped (and by
/// the kernel when the process dies, which is what makes a crashed run recognisable).
#[derive(Debug)]
pub struct RunHold {
    _lock: std::fs::File,
}

/// The daemon's claim on its state directory (and station id on this host), for its lifetime.
#[derive(Debug)]
pub struct DaemonClaim {
    _locks: Vec<std::fs::File>,
}

/// Takes an exclusive lock on `path` without waiting, writing this process's id into it;
/// `Ok(Err(pid))` when another process holds it (with that process's id, if it wrote one).
fn try_claim(path: &Path) -> Result<Result<std::fs::File, Option<u32>>, StoreError> {
    use std::io::Write as _;
    let write_error = |source| StoreError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(write_error)?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0).map_err(write_error)?;
            write!(file, "{}", std::process::id()).map_err(write_error)?;
            Ok(Ok(file))
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let pid = std::fs::read_to_string(path)
                .ok()
                .and_then(|text| text.trim().parse().ok());
            Ok(Err(pid))
        }
        Err(std::fs::TryLockError::Error(source)) => Err(write_error(source)),
    }
}

/// The run records and seen job ids under a state directory.
#[derive(Debug, Clone)]
pub struct RunStore {
    root: PathBuf,
    index: RunIndex,
}

impl RunStore {
    /// Claims a run this station knows for this process (see [`RunHold`]); refuses an unknown
    /// run, and a run another process holds.
    pub fn hold(&self, run_id: &str) -> Result<RunHold, StoreError> {
        if !self.knows(run_id) {
            return Err(StoreError::UnknownRun {
                run_id: run_id.to_string(),
            });
        }
        self.hold_new(run_id)
    }

    /// Claims a run about to be recorded (its id made by this station).
    pub fn hold_new(&self, run_id: &str) -> Result<RunHold, StoreError> {
        let dir = self.run_dir(run_id);
        std::fs::create_dir_all(&dir).map_err(|source| StoreError::Write {
            path: dir.clone(),
            source,
        })?;
        match try_claim(&dir.join("live.lock"))? {
            Ok(lock) => Ok(RunHold { _lock: lock }),
            Err(_) => Err(StoreError::RunBusy {
                run_id: run_id.to_string(),
            }),
        }
    }

    /// Whether a live station process holds the run (see [`RunHold`]).
    pub fn is_live(&self, run_id: &str) -> bool {
        let path = self.run_dir(run_id).join("live.lock");
        let Ok(file) = std::fs::OpenOptions::new().read(true).open(path) else {
            return false;
        };
        matches!(
            file.try_lock_shared(),
            Err(std::fs::TryLockError::WouldBlock)
        )
    }

    /// Whether this station's records name the run.
    pub fn knows(&self, run_id: &str) -> bool {
        valid_run_id(run_id) && self.run_dir(run_id).join("record.json").exists()
    }

    /// Claims the state directory for one daemon, and `station_id` for one daemon on this host
    /// (a lock under `/run/lock`, where the host has one). Refuses when another daemon holds
    /// either.
    pub fn claim_daemon(&self, station_id: &str) -> Result<DaemonClaim, StoreError> {
        let mut locks = Vec::new();
        match try_claim(&self.root.join("daemon.lock"))? {
            Ok(lock) => locks.push(lock),
            Err(pid) => {
                return Err(StoreError::DaemonRunning {
                    state_dir: self.root.clone(),
                    pid,
                })
            }
        }
        let host_locks = Path::new("/run/lock");
        if host_locks.is_dir() {
            let path = host_locks.join(format!("pht-station-{station_id}.lock"));
            match try_claim(&path) {
                Ok(Ok(lock)) => locks.push(lock),
                Ok(Err(pid)) => {
                    return Err(StoreError::StationIdTaken {
                        station_id: station_id.to_string(),
                        pid,
                    })
                }
                // A host lock directory this user may not write to: the state directory's
                // lock still stands.
                Err(error) => tracing::warn!(%error, "cannot take the host-wide station id lock"),
            }
        }
        Ok(DaemonClaim { _locks: locks })
    }

    pub fn open(state_dir: &Path) -> Result<RunStore, StoreError> {
        for dir in ["runs", "jobs-seen"] {
            let path = state_dir.join(dir);
            std::fs::create_dir_all(&path).map_err(|source| StoreError::Write { path, source })?;
        }
        Ok(RunStore {
            root: state_dir.to_path_buf(),
            index: RunIndex::in_state_dir(state_dir),
        })
    }

    /// The directory of one run (inputs, outputs, record).
    pub fn run_dir(&self, run_id: &str) -> PathBuf {
        self.root.join("runs").join(run_id)
    }

    pub fn save(&self, record: &RunRecord) -> Result<(), StoreError> {
        let dir = self.run_dir(&record.run_id);
        std::fs::create_dir_all(&dir).map_err(|source| StoreError::Write {
            path: dir.clone(),
            source,
        })?;
        let path = dir.join("record.json");
        let new = !path.exists();
        let bytes = serde_json::to_vec_pretty(record).expect("run records always serialise");
        pht_fs::write_atomic(&path, &bytes).map_err(|source| StoreError::Write { path, source })?;
        // The index is derived from the records: a failure to keep it costs the console a
        // rebuild (`check_index`), never the run its record.
        if new {
            if let Err(error) = self.index.append(&record.run_id) {
                tracing::warn!(run_id = %record.run_id, %error, "could not add the run to runs.index; the console rebuilds it");
            }
        }
        if let Err(error) = self.index.update_queues(record) {
            tracing::warn!(run_id = %record.run_id, %error, "could not update the run's queue markers; the console rebuilds them");
        }
        Ok(())
    }

    /// Rebuilds `runs.index` and the queue markers from the records when the index is missing
    /// or does not count as many runs as there are records (a station older than the index, or
    /// an append a full disk refused). Reads every record only then.
    pub fn check_index(&self) -> Result<bool, StoreError> {
        let runs_dir = self.root.join("runs");
        let on_disk = std::fs::read_dir(&runs_dir)
            .map_err(|source| StoreError::Read {
                path: runs_dir.clone(),
                source,
            })?
            .flatten()
            .filter(|entry| entry.path().join("record.json").exists())
            .count() as u64;
        let indexed = self.index.len().map_err(|source| StoreError::Read {
            path: self.root.join("runs.index"),
            source,
        })?;
        if indexed == on_disk {
            return Ok(false);
        }
        tracing::info!(
            indexed,
            on_disk,
            "rebuilding runs.index and the queue markers from the run records"
        );
        let records = self.list()?;
        self.index
            .rebuild(&records)
            .map_err(|source| StoreError::Write {
                path: self.root.join("runs.index"),
                source,
            })?;
        Ok(true)
    }

    /// How many runs the station has recorded.
    pub fn count(&self) -> Result<u64, StoreError> {
        self.index.len().map_err(|source| StoreError::Read {
            path: self.root.join("runs.index"),
            source,
        })
    }

    /// One page of the run history, newest first: `limit` runs after the `skip` newest. Reads
    /// only those records, however long the history.
    pub fn page(&self, skip: u64, limit: u64) -> Result<Vec<RunRecord>, StoreError> {
        let ids = self
            .index
            .newest(skip, limit)
            .map_err(|source| StoreError::Read {
                path: self.root.join("runs.index"),
                source,
            })?;
        ids.iter().map(|run_id| self.load(run_id)).collect()
    }

    /// The runs in `queue`, oldest first. A marker its record no longer backs is removed.
    pub fn queue(&self, queue: Queue) -> Result<Vec<RunRecord>, StoreError> {
        let ids = self
            .index
            .queued(queue)
            .map_err(|source| StoreError::Read {
                path: self.root.join("queues").join(queue.name()),
                source,
            })?;
        let mut records = Vec::new();
        for run_id in ids {
            match self.load(&run_id) {
                Ok(record) if queue.holds(&record) => records.push(record),
                Ok(_) | Err(StoreError::UnknownRun { .. }) => self.index.unqueue(queue, &run_id),
                Err(error) => return Err(error),
            }
        }
        records.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then(a.run_id.cmp(&b.run_id))
        });
        Ok(records)
    }

    pub fn load(&self, run_id: &str) -> Result<RunRecord, StoreError> {
        let valid = valid_run_id(run_id);
        let path = self.run_dir(run_id).join("record.json");
        if !valid || !path.exists() {
            return Err(StoreError::UnknownRun {
                run_id: run_id.to_string(),
            });
        }
        let bytes = std::fs::read(&path).map_err(|source| StoreError::Read {
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Damaged {
            path,
            detail: e.to_string(),
        })
    }

    /// Every run, oldest first.
    pub fn list(&self) -> Result<Vec<RunRecord>, StoreError> {
        let runs_dir = self.root.join("runs");
        let entries = std::fs::read_dir(&runs_dir).map_err(|source| StoreError::Read {
            path: runs_dir.clone(),
            source,
        })?;
        let mut records = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().join("record.json").exists() {
                records.push(self.load(&name)?);
            }
        }
        records.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then(a.run_id.cmp(&b.run_id))
        });
        Ok(records)
    }

    /// The newest run of every job this station ran: the one that speaks for the job (an
    /// interrupted run is superseded by its resumption).
    pub fn newest_run_per_job(&self) -> Result<BTreeMap<String, RunRecord>, StoreError> {
        let mut newest = BTreeMap::new();
        for record in self.list()? {
            if let Some(job) = &record.job {
                newest.insert(job.job_id.clone(), record);
            }
        }
        Ok(newest)
    }

    /// Records a job id as seen; returns false when it had been seen before (a replay).
    pub fn mark_job_seen(
        &self,
        job_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        use std::io::Write as _;
        let path = self.root.join("jobs-seen").join(job_id);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut file) => {
                file.write_all(expires_at.to_rfc3339().as_bytes())
                    .map_err(|source| StoreError::Write {
                        path: path.clone(),
                        source,
                    })?;
                file.sync_all()
                    .map_err(|source| StoreError::Write { path, source })?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(source) => Err(StoreError::Write { path, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_daemon_per_state_dir_and_per_station_id_on_a_host() {
        let (first_dir, second_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let first = RunStore::open(first_dir.path()).unwrap();
        let second = RunStore::open(second_dir.path()).unwrap();
        let station_id = format!("test-claim-{}", std::process::id());
        let claim = first.claim_daemon(&station_id).unwrap();
        assert!(matches!(
            first.claim_daemon("another-id"),
            Err(StoreError::DaemonRunning { pid: Some(pid), .. }) if pid == std::process::id()
        ));
        // Regression: two stations given one id on a Docker host removed each other's trains.
        assert!(
            Path::new("/run/lock").is_dir(),
            "this test needs the host's /run/lock"
        );
        assert!(matches!(
            second.claim_daemon(&station_id),
            Err(StoreError::StationIdTaken { .. })
        ));
        drop(claim);
        second.claim_daemon(&station_id).unwrap();
    }

    #[test]
    fn a_held_run_is_live_until_its_holder_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::open(dir.path()).unwrap();
        let hold = store.hold_new("run-1").unwrap();
        assert!(store.is_live("run-1"));
        assert!(matches!(
            store.hold_new("run-1"),
            Err(StoreError::RunBusy { .. })
        ));
        drop(hold);
        assert!(!store.is_live("run-1"));
        assert!(matches!(
            store.hold("../etc"),
            Err(StoreError::UnknownRun { .. })
        ));
    }
}
