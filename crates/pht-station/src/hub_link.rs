//! The hub, as the station uses it: report a stop's status, fetch the state the previous stop
//! handed over, upload a sealed result. Behind a trait so the daemon's refusal and delivery
//! logic is testable with a fake hub.
//!
//! Owns only the seam; the signed HTTP requests are `pht_api::HubClient`'s. Errors are text:
//! the station logs them and retries, it never acts on what the hub says went wrong.

use std::future::Future;

use bytes::Bytes;
use pht_api::v1::{ReportedStopState, StopStatusReport};
use pht_api::HubClient;
use uuid::Uuid;

/// The hub, as the daemon uses it: behind a trait so the refusal logic is testable with a fake.
pub trait HubLink: Send + Sync {
    fn report(
        &self,
        job_id: Uuid,
        station: &str,
        status: ReportedStopState,
        reason: Option<String>,
    ) -> impl Future<Output = Result<(), String>> + Send;
    fn fetch_state(
        &self,
        job_id: Uuid,
        station: &str,
    ) -> impl Future<Output = Result<Bytes, String>> + Send;
    fn upload(
        &self,
        job_id: Uuid,
        station: &str,
        result: Vec<u8>,
        next_state: Option<Vec<u8>>,
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// Hands the hub a signed checkpoint of the audit log to witness.
    fn send_checkpoint(
        &self,
        station: &str,
        checkpoint: &pht_core::dsse::Envelope,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

impl HubLink for HubClient {
    async fn report(
        &self,
        job_id: Uuid,
        station: &str,
        status: ReportedStopState,
        reason: Option<String>,
    ) -> Result<(), String> {
        self.report_stop_status(job_id, station, &StopStatusReport { status, reason })
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    async fn fetch_state(&self, job_id: Uuid, station: &str) -> Result<Bytes, String> {
        self.fetch_stop_state(job_id, station)
            .await
            .map_err(|e| e.to_string())
    }

    async fn upload(
        &self,
        job_id: Uuid,
        station: &str,
        result: Vec<u8>,
        next_state: Option<Vec<u8>>,
    ) -> Result<(), String> {
        self.upload_result(job_id, station, &result, next_state.as_deref())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    async fn send_checkpoint(
        &self,
        station: &str,
        checkpoint: &pht_core::dsse::Envelope,
    ) -> Result<(), String> {
        self.submit_checkpoint(station, checkpoint)
            .await
            .map_err(|e| e.to_string())
    }
}
