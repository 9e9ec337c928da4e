//! Seal: released outputs become a bundle only the researcher can open and anyone can check
//! came from this station; state for the next stop of a sequential route becomes a bundle only
//! that station can open.
//!
//! Owns choosing what goes in (the released files the checks looked at — never declared
//! state — and the check report), the in-toto provenance (train, policy hash, dataset
//! versions, verdicts, who released and whether they overrode failed checks), signing it with
//! the station key and encrypting to the researcher's age recipient; and, for the next stop,
//! the state files sealed to the peer's recipient from this station's own configuration. The
//! archive, DSSE and age formats are `pht-core::seal`'s. Accepts only a [`ReleasedRun`], so
//! nothing is sealed for the researcher without a release decision.

use chrono::Utc;
use pht_core::intoto::{
    CheckVerdict, DatasetUse, FileVerdict, Release, ResultPredicateV1, Reviewer,
};
use pht_core::job::RouteMode;
use pht_core::Digest;
use sha2::Digest as _;
use uuid::Uuid;

use super::release::ReleasedRun;
use crate::audit::{AuditEvent, OutputHash};
use crate::error::{StateFileError, StationError};
use crate::station::Station;
use crate::store::{OutputDecision, RunRecord, SealedBundle};

/// The name of the sealed result in a run directory.
pub const RESULT_FILE: &str = "result.age";
/// The name of the sealed state for the next stop in a run directory.
pub const NEXT_STATE_FILE: &str = "state-for-next.age";

/// Why a run's results (or state) could not be sealed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("station {station_id} has no signing key in {}: create one with `pht-station keys init`", key_dir.display())]
    NoSigningKey {
        station_id: String,
        key_dir: std::path::PathBuf,
    },
    #[error("run {run_id} names no recipient to seal for (exec with --recipient age1…)")]
    NoRecipient { run_id: String },
    #[error("{}: {detail}", path.display())]
    DamagedReport {
        path: std::path::PathBuf,
        detail: String,
    },
    #[error("run {run_id}: the record's {field} is not a SHA-256 digest: {detail}")]
    DamagedRecord {
        run_id: String,
        field: &'static str,
        detail: String,
    },
    #[error("cannot seal run {run_id}: {source}")]
    Bundle {
        run_id: String,
        source: pht_core::seal::SealError,
    },
    #[error("the next stop `{next}` is not a peer in {}: its age recipient is unknown", config.display())]
    UnknownPeer {
        next: String,
        config: std::path::PathBuf,
    },
    #[error("cannot seal state for {next}: {source}")]
    State {
        next: String,
        source: pht_core::seal::SealError,
    },
}

fn verdict_of(status: pht_checks::Status) -> CheckVerdict {
    match status {
        pht_checks::Status::Pass => CheckVerdict::Pass,
        pht_checks::Status::Review => CheckVerdict::Review,
        pht_checks::Status::Fail => CheckVerdict::Fail,
    }
}

fn digest_field(run_id: &str, field: &'static str, hex: &str) -> Result<Digest, SealError> {
    Digest::from_hex(hex.trim_start_matches("sha256:")).map_err(|e| SealError::DamagedRecord {
        run_id: run_id.to_string(),
        field,
        detail: e.to_string(),
    })
}

impl<E> Station<E> {
    fn signing_key(&self) -> Result<&pht_core::SigningKey, SealError> {
        self.station_key
            .as_ref()
            .ok_or_else(|| SealError::NoSigningKey {
                station_id: self.config.station_id.clone(),
                key_dir: self.config.key_dir.clone(),
            })
    }

    /// Seals the released outputs for the researcher: the files that are not state, the check
    /// report, and provenance signed by the station key, encrypted with age to the recipient.
    pub(super) fn seal(&self, released: ReleasedRun) -> Result<RunRecord, StationError> {
        let (mut record, release) = released.into_parts();
        let station_key = self.signing_key()?;
        let recipient = record
            .recipient
            .clone()
            .ok_or_else(|| SealError::NoRecipient {
                run_id: record.run_id.clone(),
            })?;
        let run_dir = self.store.run_dir(&record.run_id);
        let report_path = run_dir.join("report.json");
        let report_json =
            std::fs::read(&report_path).map_err(StateFileError::read(&report_path))?;
        let report: pht_checks::CheckReport =
            serde_json::from_slice(&report_json).map_err(|e| SealError::DamagedReport {
                path: report_path.clone(),
                detail: e.to_string(),
            })?;
        let mut files = Vec::new();
        let mut verdicts = Vec::new();
        for output in record.outputs.iter().filter(|o| o.kind == "file") {
            // Only what the checks looked at leaves: declared state never does.
            let Some(result) = report.output(&output.path) else {
                continue;
            };
            // A remedied table leaves as its transformed copy; the original stays here.
            let remedied = record
                .remedied
                .iter()
                .find(|remedied| remedied.path == output.path);
            let directory = if remedied.is_some() {
                super::check::REMEDIED_DIR
            } else {
                "outputs"
            };
            let path = run_dir.join(directory).join(&output.path);
            let bytes = std::fs::read(&path).map_err(StateFileError::read(&path))?;
            files.push((output.path.clone(), bytes));
            verdicts.push(FileVerdict {
                path: output.path.clone(),
                verdict: verdict_of(result.status),
                transformed: remedied.map(|remedied| remedied.description.clone()),
            });
        }
        let run_id = record.run_id.clone();
        // The audit log as it stands at release: the researcher's copy witnesses it.
        let audit_checkpoint =
            self.audit
                .head()
                .map(|(seq, head_hash)| pht_core::intoto::AuditCheckpointRef {
                    seq,
                    head_hash,
                    time: Utc::now(),
                });
        let predicate = ResultPredicateV1 {
            audit_checkpoint,
            job_id: record.job.as_ref().and_then(|j| j.job_id.parse().ok()),
            run_id: run_id.clone(),
            train: pht_core::job::TrainPin {
                repository: format!("{}/{}", record.train.registry, record.train.repository),
                digest: digest_field(&run_id, "train digest", &record.train.digest)?,
            },
            station: self.config.station_id.clone(),
            policy_sha256: digest_field(
                &run_id,
                "policy hash",
                record
                    .policy_sha256
                    .as_deref()
                    .unwrap_or(self.policy.content_hash()),
            )?,
            datasets: record
                .datasets
                .iter()
                .map(|d| {
                    Ok(DatasetUse {
                        name: d.name.clone(),
                        sha256: digest_field(&run_id, "dataset version", &d.sha256)?,
                    })
                })
                .collect::<Result<_, SealError>>()?,
            started_at: record.started_at.unwrap_or(record.created_at),
            finished_at: record.finished_at.unwrap_or(record.updated_at),
            verdict: verdict_of(report.status()),
            files: verdicts,
            state_files: self.state_verdicts(&run_dir)?,
            received_state: record
                .received_state
                .as_ref()
                .map(|state| {
                    Ok::<_, SealError>(pht_core::intoto::ReceivedState {
                        from_station: state.from_station.clone(),
                        sha256: digest_field(&run_id, "received state hash", &state.sha256)?,
                    })
                })
                .transpose()?,
            released: Release {
                by: release.by.clone(),
                at: release.at,
                reason: release.reason.clone().unwrap_or_default(),
                overrides_failed_checks: release.overridden,
                reviewers: record
                    .reviews
                    .iter()
                    .filter(|review| review.decision == OutputDecision::Released)
                    .map(|review| Reviewer {
                        by: format!("operator:{}", review.operator),
                        at: review.at,
                        reason: review.reason.clone(),
                    })
                    .collect(),
            },
        };
        let sealed =
            pht_core::seal::seal_bundle(&files, &report_json, predicate, station_key, &[recipient])
                .map_err(|source| SealError::Bundle {
                    run_id: run_id.clone(),
                    source,
                })?;
        let bundle_path = run_dir.join(RESULT_FILE);
        pht_fs::write_atomic(&bundle_path, &sealed).map_err(StateFileError::write(&bundle_path))?;
        let bundle_sha256 = hex::encode(sha2::Sha256::digest(&sealed));
        record.sealed = Some(SealedBundle {
            path: bundle_path.display().to_string(),
            sha256: bundle_sha256.clone(),
            size: sealed.len() as u64,
        });
        record.updated_at = Utc::now();
        self.store.save(&record)?;
        let mut sealed_event = AuditEvent::new(&self.station_actor(), "sealed").run(&run_id);
        sealed_event.train_digest = Some(record.train.digest.clone());
        sealed_event.outputs = record
            .outputs
            .iter()
            .filter(|o| files.iter().any(|(path, _)| *path == o.path))
            .map(|o| {
                match record
                    .remedied
                    .iter()
                    .find(|remedied| remedied.path == o.path)
                {
                    Some(remedied) => OutputHash {
                        path: o.path.clone(),
                        sha256: remedied.sha256.clone(),
                        size: remedied.size,
                    },
                    None => OutputHash {
                        path: o.path.clone(),
                        sha256: o.sha256.clone(),
                        size: o.size,
                    },
                }
            })
            .collect();
        sealed_event
            .details
            .insert("bundle_sha256".into(), bundle_sha256.into());
        self.audit.append(sealed_event)?;
        Ok(record)
    }

    /// The verdict on each state file, from the state report (none when the run had no state).
    fn state_verdicts(&self, run_dir: &std::path::Path) -> Result<Vec<FileVerdict>, StationError> {
        let path = run_dir.join(super::check::STATE_REPORT_FILE);
        let json = match std::fs::read(&path) {
            Ok(json) => json,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(StateFileError::read(&path)(error).into()),
        };
        let report: pht_checks::CheckReport =
            serde_json::from_slice(&json).map_err(|e| SealError::DamagedReport {
                path: path.clone(),
                detail: e.to_string(),
            })?;
        Ok(report
            .results
            .iter()
            .map(|(uid, result)| FileVerdict {
                path: uid.clone(),
                verdict: verdict_of(result.status),
                transformed: None,
            })
            .collect())
    }

    /// The state for the next stop of a sequential route, sealed once to that peer's locally
    /// configured age recipient and kept, so a retried upload sends the same bytes. `None` for
    /// a parallel route or the last stop.
    pub fn seal_state_for_next_stop(
        &self,
        record: &RunRecord,
        job_id: Uuid,
    ) -> Result<Option<Vec<u8>>, StationError> {
        let Some(job) = &record.job else {
            return Ok(None);
        };
        let path = self.store.run_dir(&record.run_id).join(NEXT_STATE_FILE);
        if let Ok(bytes) = std::fs::read(&path) {
            return Ok(Some(bytes));
        }
        let Some(route) = &job.route else {
            return Ok(None);
        };
        if route.mode != RouteMode::Sequential {
            return Ok(None);
        }
        let Some(next) = route.stations.get(job.stop_index + 1) else {
            return Ok(None);
        };
        let peer = self
            .config
            .peers
            .get(next)
            .ok_or_else(|| SealError::UnknownPeer {
                next: next.clone(),
                config: self.config.source.clone(),
            })?;
        let key = self.signing_key()?;
        let outputs_dir = self.store.run_dir(&record.run_id).join("outputs");
        let mut files = Vec::new();
        for state_path in &record.state_paths {
            if let Ok(bytes) = std::fs::read(outputs_dir.join(state_path)) {
                files.push((state_path.clone(), bytes));
            }
        }
        let predicate = pht_core::intoto::StatePredicateV1 {
            job_id,
            run_id: record.run_id.clone(),
            train: pht_core::job::TrainPin {
                repository: format!("{}/{}", record.train.registry, record.train.repository),
                digest: digest_field(&record.run_id, "train digest", &record.train.digest)?,
            },
            station: self.config.station_id.clone(),
            next_station: next.clone(),
            stop_index: job.stop_index,
            finished_at: record.finished_at.unwrap_or_else(Utc::now),
        };
        let sealed = pht_core::seal::seal_state(&files, predicate, key, &peer.age_recipient)
            .map_err(|source| SealError::State {
                next: next.clone(),
                source,
            })?;
        pht_fs::write_atomic(&path, &sealed).map_err(StateFileError::write(&path))?;
        Ok(Some(sealed))
    }
}
