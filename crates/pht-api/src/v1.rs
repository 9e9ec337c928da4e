//! The hub's `/v1` wire types: every JSON body that crosses between the hub, stations and
//! researchers, in one place.
//!
//! These types say what travels, not what it means: the hub's rules (who may do what, which
//! transitions are allowed) live in `pht-hub`, and a station's checks of what it receives live in
//! the station. Requests refuse unknown fields so that a typo is an error, not a silent default.

use chrono::{DateTime, Utc};
use pht_core::job::RouteMode;
use pht_core::Digest;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

/// `POST /v1/admin/stations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterStationRequest {
    /// `[A-Za-z0-9._-]`, 1 to 64 characters, starting with a letter or digit.
    pub id: String,
    /// The key the station signs its requests with: PEM SubjectPublicKeyInfo.
    pub public_key_pem: String,
    /// The station's age recipient (`age1…`); the previous stop of a sequential route encrypts
    /// the state it hands on to it.
    pub age_recipient: String,
}

/// A registered station as the admin sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StationRecord {
    pub id: String,
    pub public_key_pem: String,
    pub age_recipient: String,
    pub registered_at: DateTime<Utc>,
}

/// `GET /v1/admin/stations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StationList {
    pub stations: Vec<StationRecord>,
}

/// `POST /v1/admin/researchers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterResearcherRequest {
    /// Same alphabet as station ids.
    pub id: String,
    /// The key the researcher signs requests and job envelopes with.
    pub public_key_pem: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResearcherRecord {
    pub id: String,
    pub public_key_pem: String,
    pub registered_at: DateTime<Utc>,
}

/// `GET /v1/admin/researchers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResearcherList {
    pub researchers: Vec<ResearcherRecord>,
}

/// `GET /v1/stations/{id}`: what any registered principal may know about a station.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StationDirectoryEntry {
    pub id: String,
    pub age_recipient: String,
    pub public_key_pem: String,
}

/// Where a job stands as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Some stop still has work ahead of it.
    Active,
    /// Every stop delivered a result.
    Completed,
    /// Every stop ended, and at least one without a result (denied, failed, blocked, expired,
    /// skipped).
    Incomplete,
    /// The researcher cancelled it.
    Cancelled,
}

/// Where one stop stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopState {
    /// A later stop of a sequential route, waiting for the stops before it.
    Pending,
    /// Waiting for its station to pick it up.
    Ready,
    /// Handed to its station, which has not reported yet; offered again when the lease lapses.
    Leased,
    /// The station reported that it is working on it.
    Running,
    /// The station withheld the outputs for its operator's review.
    Withheld,
    /// The station delivered its result bundle.
    Done,
    /// The station refused the job (verification or policy).
    Denied,
    /// The run failed.
    Failed,
    /// The output checks blocked the release.
    Blocked,
    /// An earlier stop of a sequential route ended without a result.
    Skipped,
    /// Not picked up before the envelope's `expires_at`.
    Expired,
    /// The researcher cancelled the job.
    Cancelled,
}

impl StopState {
    /// Whether no further change can happen to the stop.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            StopState::Done
                | StopState::Denied
                | StopState::Failed
                | StopState::Blocked
                | StopState::Skipped
                | StopState::Expired
                | StopState::Cancelled
        )
    }
}

/// A result bundle the hub holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultSummary {
    pub station: String,
    pub stop_index: u32,
    pub digest: Digest,
    pub size_bytes: u64,
    pub uploaded_at: DateTime<Utc>,
}

/// One stop of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopStatus {
    pub index: u32,
    pub station: String,
    pub status: StopState,
    /// Why the stop is where it is, when a station or the hub said so.
    pub reason: Option<String>,
    pub updated_at: DateTime<Utc>,
    /// The state blob this stop receives from the previous one (sequential routes).
    pub input_state: Option<Digest>,
    pub result: Option<ResultSummary>,
}

/// The train a job runs, as the envelope names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSummary {
    pub repository: String,
    pub digest: Digest,
}

/// `GET /v1/jobs/{id}`, and the answer to submit and cancel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobStatus {
    pub job_id: Uuid,
    pub researcher: String,
    pub train: TrainSummary,
    pub mode: RouteMode,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub submitted_at: DateTime<Utc>,
    pub status: JobState,
    pub stops: Vec<StopStatus>,
}

/// `GET /v1/jobs/{id}/results`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultList {
    pub job_id: Uuid,
    pub results: Vec<ResultSummary>,
}

/// `GET /v1/stations/{id}/work`: the next stop for the polling station.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkItem {
    pub job_id: Uuid,
    pub stop_index: u32,
    pub station: String,
    pub mode: RouteMode,
    /// The DSSE job envelope exactly as the researcher submitted it; the station verifies it
    /// again and trusts nothing else in this item.
    pub envelope: Box<RawValue>,
    /// The previous stop's state blob for this station (sequential routes), fetched with
    /// `GET /v1/jobs/{id}/stops/{station}/state`.
    pub previous_state: Option<Digest>,
    /// Report (status or result) before this, or the stop is offered again.
    pub lease_expires_at: DateTime<Utc>,
}

impl PartialEq for WorkItem {
    fn eq(&self, other: &WorkItem) -> bool {
        self.job_id == other.job_id
            && self.stop_index == other.stop_index
            && self.station == other.station
            && self.mode == other.mode
            && self.envelope.get() == other.envelope.get()
            && self.previous_state == other.previous_state
            && self.lease_expires_at == other.lease_expires_at
    }
}

/// What a station may report about its stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportedStopState {
    Running,
    Denied,
    Failed,
    Blocked,
    Withheld,
}

impl From<ReportedStopState> for StopState {
    fn from(reported: ReportedStopState) -> StopState {
        match reported {
            ReportedStopState::Running => StopState::Running,
            ReportedStopState::Denied => StopState::Denied,
            ReportedStopState::Failed => StopState::Failed,
            ReportedStopState::Blocked => StopState::Blocked,
            ReportedStopState::Withheld => StopState::Withheld,
        }
    }
}

/// `POST /v1/jobs/{id}/stops/{station}/status`. A reason is required for every status but
/// `running`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopStatusReport {
    pub status: ReportedStopState,
    #[serde(default)]
    pub reason: Option<String>,
}

/// The answer to a result upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultReceipt {
    pub job_id: Uuid,
    pub station: String,
    pub stop_index: u32,
    pub result: ResultSummary,
    /// The state blob stored for the next stop, if one was uploaded.
    pub next_state: Option<Digest>,
    /// The stop made ready by this upload (sequential routes).
    pub next_station: Option<String>,
    /// True when this upload repeated one the hub already had (same digest).
    pub already_stored: bool,
}

/// Multipart part names of `PUT /v1/jobs/{id}/stops/{station}/result`.
pub const RESULT_PART: &str = "result";
pub const NEXT_STATE_PART: &str = "state";

/// Every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    pub status: u16,
    /// `bad_request`, `unauthenticated`, `forbidden`, `not_found`, `conflict`,
    /// `unprocessable`, `payload_too_large`, `internal`.
    pub code: String,
    pub message: String,
    pub request_id: String,
}

/// `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    pub status: String,
}

/// Response header naming the request, for matching a report to the hub's log.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
