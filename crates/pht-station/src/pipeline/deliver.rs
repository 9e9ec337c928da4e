//! Deliver: the hub is told where each stop stands, and a sealed result (with the sealed state
//! for the next stop) is uploaded until the hub acknowledges it.
//!
//! Owns the mapping from a run's status and output decision to the stop state the hub shows
//! the researcher, and the durable outbox: a result stays in the run directory, and a run is
//! reported again, until the hub has acknowledged; every call is idempotent. Does not trust
//! the hub with anything it could change: what is uploaded is sealed and signed already.

use chrono::Utc;
use pht_api::v1::ReportedStopState;
use uuid::Uuid;

use super::release::OutputDecision;
use super::seal::RESULT_FILE;
use crate::audit::AuditEvent;
use crate::error::StationError;
use crate::hub_link::HubLink;
use crate::station::Station;
use crate::store::{RunRecord, RunStatus};

/// A released result that could not be delivered for a reason of this station's own.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error("cannot read the sealed result of {run_id}: {source}")]
    ReadResult {
        run_id: String,
        source: std::io::Error,
    },
}

fn first_reason(record: &RunRecord) -> Option<String> {
    let reasons = record.reasons.join("; ");
    Some(if reasons.is_empty() {
        format!("run {}", record.run_id)
    } else {
        format!("run {}: {reasons}", record.run_id)
    })
}

impl<E> Station<E> {
    /// Tells the hub where a run stands, and delivers its sealed result once released.
    /// Idempotent: the outbox calls it again until the hub has acknowledged.
    pub async fn sync_run<H: HubLink>(
        &self,
        hub: &H,
        mut record: RunRecord,
    ) -> Result<(), StationError> {
        let Some(job) = record.job.clone() else {
            return Ok(());
        };
        let Ok(job_id) = job.job_id.parse::<Uuid>() else {
            return Ok(());
        };
        let decision = record.output_decision.as_ref().map(|d| d.decision);
        let (status, reason) = match (record.status, decision) {
            (RunStatus::Refused | RunStatus::Rejected, _) => {
                (ReportedStopState::Denied, first_reason(&record))
            }
            (RunStatus::Failed | RunStatus::Error, _) => {
                (ReportedStopState::Failed, first_reason(&record))
            }
            (RunStatus::Succeeded, Some(OutputDecision::Blocked)) => (
                ReportedStopState::Blocked,
                Some(format!(
                    "run {}: outputs blocked at the station",
                    record.run_id
                )),
            ),
            (RunStatus::Succeeded, Some(OutputDecision::Withheld)) => (
                ReportedStopState::Withheld,
                Some(format!(
                    "run {}: outputs withheld for review by the station operator",
                    record.run_id
                )),
            ),
            (RunStatus::Succeeded, Some(OutputDecision::Released)) if record.sealed.is_some() => {
                if record.delivered_at.is_none() {
                    self.deliver(hub, &mut record, job_id).await?;
                }
                return Ok(());
            }
            _ => (ReportedStopState::Running, None),
        };
        let status_name = format!("{status:?}");
        if record.reported.as_deref() == Some(status_name.as_str()) {
            return Ok(());
        }
        match hub
            .report(job_id, &self.config.station_id, status, reason)
            .await
        {
            Ok(()) => {
                record.reported = Some(status_name);
                self.store.save(&record)?;
            }
            Err(error) => {
                tracing::warn!(run_id = %record.run_id, %error, "could not report to the hub; will retry")
            }
        }
        Ok(())
    }

    /// Uploads the sealed result and the state for the next stop; a failed upload leaves both
    /// in the outbox for the next attempt.
    async fn deliver<H: HubLink>(
        &self,
        hub: &H,
        record: &mut RunRecord,
        job_id: Uuid,
    ) -> Result<(), StationError> {
        let run_dir = self.store.run_dir(&record.run_id);
        let result = std::fs::read(run_dir.join(RESULT_FILE)).map_err(|source| {
            DeliverError::ReadResult {
                run_id: record.run_id.clone(),
                source,
            }
        })?;
        let _timer = self.time_step(crate::metrics::PipelineStep::deliver);
        let next_state = self.seal_state_for_next_stop(record, job_id)?;
        match hub
            .upload(job_id, &self.config.station_id, result, next_state)
            .await
        {
            Ok(()) => {
                record.delivered_at = Some(Utc::now());
                record.reported = Some("Delivered".into());
                self.store.save(record)?;
                let mut event =
                    AuditEvent::new(&self.station_actor(), "delivered").run(&record.run_id);
                event.job_id = Some(job_id.to_string());
                event.details.insert(
                    "bundle_sha256".into(),
                    record
                        .sealed
                        .as_ref()
                        .map(|s| s.sha256.clone())
                        .unwrap_or_default()
                        .into(),
                );
                self.audit.append(event)?;
                // Every delivery takes a witness along: the log as it stands now.
                self.send_checkpoint(hub).await;
            }
            Err(error) => {
                tracing::warn!(run_id = %record.run_id, %error, "delivery failed; the result stays in the outbox")
            }
        }
        Ok(())
    }

    /// Signs a checkpoint of the audit log as it stands (sequence number and hash of its last
    /// entry, and the time) with the station key; `None` for an empty log or without a key.
    pub fn checkpoint(&self) -> Option<pht_core::dsse::Envelope> {
        let key = self.station_key.as_ref()?;
        let (seq, head_hash) = self.audit.head()?;
        let checkpoint = pht_core::checkpoint::Checkpoint::new(
            &self.config.station_id,
            seq,
            &head_hash,
            Utc::now(),
        );
        Some(checkpoint.sign(key))
    }

    /// Sends a checkpoint to the hub to witness. A failure is logged, not returned: the next
    /// delivery or interval sends a newer one.
    pub async fn send_checkpoint<H: HubLink>(&self, hub: &H) {
        let Some(checkpoint) = self.checkpoint() else {
            return;
        };
        if let Err(error) = hub
            .send_checkpoint(&self.config.station_id, &checkpoint)
            .await
        {
            tracing::warn!(%error, "the hub did not take the audit checkpoint; a later one will be sent");
        }
    }

    /// Reports and delivers everything the hub does not know yet (operator decisions made with
    /// `pht-station outputs …`, results whose upload failed).
    pub async fn flush_outbox<H: HubLink>(&self, hub: &H) -> Result<(), StationError> {
        // Only the newest run of a job speaks for it: an interrupted run that was resumed must
        // not report its interruption as the stop's outcome.
        let newest_by_job = self.store.newest_run_per_job()?;
        for record in newest_by_job.into_values() {
            let interrupted = record.was_interrupted();
            if record.delivered_at.is_none() && record.status != RunStatus::Running && !interrupted
            {
                self.sync_run(hub, record).await?;
            }
        }
        Ok(())
    }
}
