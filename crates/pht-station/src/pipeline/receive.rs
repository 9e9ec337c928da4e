//! Receive: a request to run a train becomes a run record, saved and audited before anything
//! else happens. Requests come from an operator (`pht-station exec`) or from the hub (a work
//! item the daemon long-polled for).
//!
//! Owns the [`Submission`] (what was asked), the new run record, the state files a previous
//! stop handed over (written under the run's `input/state/`), and the checks a work item from
//! the hub must pass before it becomes a submission: its DSSE envelope verified with this
//! station's own job keys, its expiry and addressee, the work item agreeing with the signed
//! job, and state from the previous stop signed by that peer's locally configured key. Does not
//! contact a registry: verifying the train is the next stage's.

use std::collections::BTreeMap;

use chrono::Utc;
use pht_api::v1::WorkItem;
use pht_core::dsse::Envelope;
use pht_core::job::{verify_job, VerifiedJob};
use pht_core::{Digest, ImageReference, PublicKey};
use sha2::Digest as _;
use uuid::Uuid;

use crate::audit::AuditEvent;
use crate::error::{StateFileError, StationError};
use crate::hub_link::HubLink;
use crate::station::Station;
use crate::store::{JobRef, ReceivedStateRef, RunHold, RunRecord, RunStatus, TrainRef};

/// Parameters as they arrive: typed JSON from a job, or `k=v` text from the command line.
#[derive(Debug, Clone)]
pub enum GivenParameters {
    Json(BTreeMap<String, serde_json::Value>),
    CommandLine(Vec<String>),
}

/// One request to run a train: from an operator's `exec`, or a stop of a job from the hub.
#[derive(Debug, Clone)]
pub struct Submission {
    pub reference: ImageReference,
    pub parameters: GivenParameters,
    pub job: Option<JobRef>,
    /// The age recipient released results are sealed for.
    pub recipient: Option<String>,
    /// Files the previous stop handed over, mounted read-only at `/input/state`.
    pub input_state: Vec<(String, Vec<u8>)>,
    /// Who handed them over, and the hash of the sealed bundle they came in.
    pub received_state: Option<ReceivedStateRef>,
    /// Who asked (recorded in the audit log).
    pub actor: String,
}

/// State the previous stop handed over, opened and verified.
#[derive(Debug, Clone)]
pub struct IncomingState {
    pub files: Vec<(String, Vec<u8>)>,
    pub from: ReceivedStateRef,
}

/// A run that has been received: its record saved (status `running`) and audited.
#[derive(Debug)]
pub struct Received {
    record: RunRecord,
    reference: ImageReference,
    parameters: GivenParameters,
}

impl Received {
    pub fn run_id(&self) -> &str {
        &self.record.run_id
    }

    pub(super) fn into_parts(self) -> (RunRecord, ImageReference, GivenParameters) {
        (self.record, self.reference, self.parameters)
    }
}

fn new_run_id() -> String {
    format!("run-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

fn new_record(submission: &Submission) -> RunRecord {
    let now = Utc::now();
    let reference = &submission.reference;
    RunRecord {
        version: "pht.run.v1".into(),
        run_id: new_run_id(),
        created_at: now,
        updated_at: now,
        status: RunStatus::Running,
        train: TrainRef {
            reference: reference.to_string(),
            registry: reference.registry().to_string(),
            repository: reference.repository().to_string(),
            digest: reference
                .digest()
                .map(Digest::to_string)
                .unwrap_or_default(),
            name: None,
            version: None,
            description: None,
            purpose: None,
            datasets: Vec::new(),
            resources: None,
        },
        job: submission.job.clone(),
        signer: None,
        base: None,
        parameters: BTreeMap::new(),
        decision: None,
        reasons: Vec::new(),
        approval: None,
        outcome: None,
        outputs: Vec::new(),
        refused_outputs: Vec::new(),
        checks: None,
        output_decision: None,
        reviews: Vec::new(),
        remedied: Vec::new(),
        datasets: Vec::new(),
        recipient: submission.recipient.clone(),
        sealed: None,
        started_at: None,
        finished_at: None,
        policy_sha256: None,
        state_paths: Vec::new(),
        state_checks: None,
        received_state: submission.received_state.clone(),
        reported: None,
        delivered_at: None,
    }
}

impl<E> Station<E> {
    /// Records a new run for `submission`: the state handed over is written to the run
    /// directory, the receipt is audited, and the record is saved before any registry traffic,
    /// so a stop the hub offers again while this run is still fetching finds it instead of
    /// taking it for a replay.
    pub(super) fn receive(
        &self,
        submission: Submission,
    ) -> Result<(Received, RunHold), StationError> {
        let record = new_record(&submission);
        // Held before the record exists, so no other station process ever sees this run
        // `running` without a live holder.
        let hold = self.store.hold_new(&record.run_id)?;
        if !submission.input_state.is_empty() {
            let state_dir = self
                .store
                .run_dir(&record.run_id)
                .join("input")
                .join("state");
            for (path, bytes) in &submission.input_state {
                // Paths were checked when the state bundle was opened.
                let target = state_dir.join(path);
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(StateFileError::create_directory(parent))?;
                }
                std::fs::write(&target, bytes).map_err(StateFileError::write(&target))?;
            }
        }
        if let Some(state) = &submission.received_state {
            let mut event =
                AuditEvent::new(&self.station_actor(), "state_received").run(&record.run_id);
            event.job_id = submission.job.as_ref().map(|j| j.job_id.clone());
            event.outputs = submission
                .input_state
                .iter()
                .map(|(path, bytes)| crate::audit::OutputHash {
                    path: path.clone(),
                    sha256: hex::encode(sha2::Sha256::digest(bytes)),
                    size: bytes.len() as u64,
                })
                .collect();
            event
                .details
                .insert("from_station".into(), state.from_station.clone().into());
            event
                .details
                .insert("bundle_sha256".into(), state.sha256.clone().into());
            self.audit.append(event)?;
        }
        let mut received = AuditEvent::new(&submission.actor, "received").run(&record.run_id);
        received.train_digest = submission.reference.digest().map(Digest::to_string);
        received.job_id = submission.job.as_ref().map(|j| j.job_id.clone());
        received
            .details
            .insert("reference".into(), submission.reference.to_string().into());
        self.audit.append(received)?;
        self.store.save(&record)?;
        Ok((
            Received {
                record,
                reference: submission.reference,
                parameters: submission.parameters,
            },
            hold,
        ))
    }

    /// Checks a work item from the hub against the signed job it carries: the envelope must
    /// verify with a job key this station trusts, be unexpired and address this station, and
    /// the hub's work item must agree with it. `Err` is the refusal, to be audited and
    /// reported.
    pub fn check_work_item(&self, item: &WorkItem) -> Result<VerifiedJob, String> {
        let station_id = &self.config.station_id;
        let envelope: Envelope = serde_json::from_str(item.envelope.get()).map_err(|error| {
            format!("job.envelope: the hub sent an envelope that is not DSSE JSON: {error}")
        })?;
        let verified = verify_job(&envelope, &self.job_keys, station_id, Utc::now())
            .map_err(|refusal| format!("job.envelope: {refusal}"))?;
        let job = verified.job();
        if item.job_id != job.job_id
            || item.stop_index as usize != verified.stop_index()
            || item.mode != job.route.mode
            || item.station != *station_id
        {
            return Err(format!(
                "job.work_item: the hub's work item (job {}, stop {}, {:?}, for station `{}`) disagrees with the signed job (job {}, stop {}, {:?}, this station `{}`)",
                item.job_id,
                item.stop_index,
                item.mode,
                item.station,
                job.job_id,
                verified.stop_index(),
                job.route.mode,
                station_id
            ));
        }
        Ok(verified)
    }

    /// The state the previous stop `previous` handed over for this job: fetched from the hub,
    /// opened with this station's age identity, and accepted only when signed by the key the
    /// local configuration gives for `previous` and addressed from it to this station.
    pub async fn receive_state<H: HubLink>(
        &self,
        hub: &H,
        job_id: Uuid,
        previous: &str,
    ) -> Result<IncomingState, String> {
        let station_id = &self.config.station_id;
        let peer = self.config.peers.get(previous).ok_or_else(|| {
            format!(
                "no peer `{previous}` in the station configuration: its state cannot be verified"
            )
        })?;
        let pem = std::fs::read_to_string(&peer.public_key)
            .map_err(|e| format!("cannot read {}: {e}", peer.public_key.display()))?;
        let key =
            PublicKey::from_pem(&pem).map_err(|e| format!("{}: {e}", peer.public_key.display()))?;
        let identity = crate::keys::read_age_identity(&self.config.key_dir)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                "this station has no age identity (station.age): run `pht-station keys init`"
                    .to_string()
            })?;
        let sealed = hub.fetch_state(job_id, station_id).await?;
        let opened = pht_core::seal::open_state(&sealed, &identity, &[(previous.to_string(), key)])
            .map_err(|e| e.to_string())?;
        let predicate = opened.predicate();
        if predicate.job_id != job_id
            || predicate.next_station != *station_id
            || predicate.station != previous
        {
            return Err(format!(
                "the state is for job {} from {} to {}, not job {job_id} from {previous} to {station_id}",
                predicate.job_id, predicate.station, predicate.next_station,
            ));
        }
        Ok(IncomingState {
            files: opened
                .files()
                .iter()
                .map(|(path, bytes)| (path.trim_start_matches("state/").to_string(), bytes.clone()))
                .collect(),
            from: ReceivedStateRef {
                from_station: previous.to_string(),
                sha256: hex::encode(sha2::Sha256::digest(&sealed)),
            },
        })
    }
}
