//! In-process tests of a station facing a hostile hub: a work item whose job envelope was
//! altered, re-signed by a stranger, expired, addressed elsewhere, contradicted by the work item
//! or replayed is refused, the refusal is audited (and the audit log still verifies), the hub is
//! told why, and nothing reaches the container engine.
//!
//! No registry, Docker or network is used. The hub and the engine are fakes that record calls;
//! signed trains point at a registry the policy does not allow (`127.0.0.1:9`), so a job that
//! passes every envelope check is still refused before the station contacts any registry.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use chrono::{Duration, Utc};
use pht_api::v1::{ReportedStopState, WorkItem};
use pht_core::dsse::Envelope;
use pht_core::job::{JobV1, Route, RouteMode, TrainPin};
use pht_core::{Digest, KeyAlgorithm, SigningKey};
use pht_docker::{RunOutcome, RunSpec};
use pht_station::audit::{AuditEntry, AuditLog};
use pht_station::daemon::{handle_work, HubLink};
use pht_station::{Engine, EngineError, Station, StationConfig};
use serde_json::value::RawValue;
use tempfile::TempDir;
use uuid::Uuid;

const STATION_ID: &str = "hostile-hub-station";
/// A registry the fixture policy does not allow: a job for it is refused before any pull.
const UNLISTED_TRAIN_REPOSITORY: &str = "127.0.0.1:9/trains/x";

/// An engine that records every call and runs nothing.
#[derive(Debug, Default)]
struct FakeEngine {
    calls: Mutex<Vec<String>>,
}

impl FakeEngine {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn refuse(&self, call: String) -> EngineError {
        self.calls.lock().unwrap().push(call);
        EngineError("the fake engine runs nothing".into())
    }
}

impl Engine for FakeEngine {
    async fn has_image(&self, image_id: &Digest) -> Result<bool, EngineError> {
        Err(self.refuse(format!("has_image {image_id}")))
    }

    async fn layer_chains(&self) -> Result<std::collections::HashSet<Digest>, EngineError> {
        Err(self.refuse("layer_chains".into()))
    }

    async fn load_image(
        &self,
        _config: &[u8],
        layers: &[Option<Bytes>],
    ) -> Result<Digest, EngineError> {
        Err(self.refuse(format!("load_image ({} layers)", layers.len())))
    }

    async fn run(&self, _spec: &RunSpec) -> Result<RunOutcome, EngineError> {
        Err(self.refuse("run".into()))
    }
}

/// One status report the station sent to the hub.
#[derive(Debug, Clone, PartialEq)]
struct Report {
    job_id: Uuid,
    station: String,
    status: ReportedStopState,
    reason: Option<String>,
}

/// A hub that records what the station tells it and holds no state to hand over.
#[derive(Debug, Default)]
struct FakeHub {
    reports: Mutex<Vec<Report>>,
    uploads: Mutex<Vec<Uuid>>,
    state_fetches: Mutex<Vec<Uuid>>,
}

impl FakeHub {
    fn reports(&self) -> Vec<Report> {
        self.reports.lock().unwrap().clone()
    }
}

impl HubLink for FakeHub {
    async fn report(
        &self,
        job_id: Uuid,
        station: &str,
        status: ReportedStopState,
        reason: Option<String>,
    ) -> Result<(), String> {
        self.reports.lock().unwrap().push(Report {
            job_id,
            station: station.to_string(),
            status,
            reason,
        });
        Ok(())
    }

    async fn fetch_state(&self, job_id: Uuid, _station: &str) -> Result<Bytes, String> {
        self.state_fetches.lock().unwrap().push(job_id);
        Err("the fake hub holds no state".into())
    }

    async fn upload(
        &self,
        job_id: Uuid,
        _station: &str,
        _result: Vec<u8>,
        _next_state: Option<Vec<u8>>,
    ) -> Result<(), String> {
        self.uploads.lock().unwrap().push(job_id);
        Ok(())
    }

    async fn send_checkpoint(
        &self,
        _station: &str,
        _checkpoint: &pht_core::dsse::Envelope,
    ) -> Result<(), String> {
        Ok(())
    }
}

/// A station trusting one researcher, its fake engine, a fake hub, and the temporary directory
/// they live in.
struct Fixture {
    _dir: TempDir,
    researcher: SigningKey,
    station: Station<FakeEngine>,
    hub: FakeHub,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let researcher = SigningKey::generate(KeyAlgorithm::Ed25519);
    let researcher_pub = root.join("researcher.pub");
    std::fs::write(&researcher_pub, researcher.public_key().to_pem()).unwrap();
    std::fs::create_dir_all(root.join("data/cohort")).unwrap();
    std::fs::write(root.join("data/cohort/cohort.csv"), "id,age\n1,40\n2,51\n").unwrap();
    let policy = format!(
        r#"version: 1
trusted_signers:
  - name: researcher
    public_key: {}
    purposes: ["aggregate statistics"]
    datasets: [cohort]
    approval: automatic
registries:
  - registry: "127.0.0.1:5000"
    repositories: ["trains/*"]
"#,
        researcher_pub.display()
    );
    std::fs::write(root.join("policy.yaml"), policy).unwrap();
    let config_text = format!(
        "version: 1
station_id: {STATION_ID}
key_dir: keys
datasets:
  cohort:
    path: data/cohort
    format: csv
registries:
  - registry: 127.0.0.1:5000
policy: policy.yaml
state_dir: state
"
    );
    let config = StationConfig::from_yaml(&config_text, &root.join("station.yaml")).unwrap();
    let station = Station::open(config, FakeEngine::default()).unwrap();
    Fixture {
        _dir: dir,
        researcher,
        station,
        hub: FakeHub::default(),
    }
}

/// A job for `stations` that is valid now, running a train in a registry the policy does not
/// allow.
fn job_for(stations: &[&str]) -> JobV1 {
    let now = Utc::now();
    JobV1 {
        job_id: Uuid::new_v4(),
        issued_at: now - Duration::minutes(1),
        expires_at: now + Duration::hours(1),
        train: TrainPin {
            repository: UNLISTED_TRAIN_REPOSITORY.into(),
            digest: Digest::of(b"the signed train manifest"),
        },
        route: Route {
            mode: RouteMode::Parallel,
            stations: stations.iter().map(|s| s.to_string()).collect(),
        },
        parameters: BTreeMap::new(),
        recipient: age::x25519::Identity::generate().to_public().to_string(),
    }
}

/// The work item an honest hub would send this station for `job`, carrying `envelope`.
fn work_item(job: &JobV1, envelope: &Envelope) -> WorkItem {
    let stop_index = job
        .route
        .stations
        .iter()
        .position(|s| s == STATION_ID)
        .unwrap_or(0);
    WorkItem {
        job_id: job.job_id,
        stop_index: stop_index as u32,
        station: STATION_ID.into(),
        mode: job.route.mode,
        envelope: RawValue::from_string(serde_json::to_string(envelope).unwrap()).unwrap(),
        previous_state: None,
        lease_expires_at: Utc::now() + Duration::minutes(5),
    }
}

/// `envelope` with its payload decoded, edited as the hub likes, and re-encoded under the
/// original signature.
fn tampered(envelope: &Envelope, edit: impl FnOnce(&mut JobV1)) -> Envelope {
    let payload = BASE64.decode(&envelope.payload).unwrap();
    let mut job: JobV1 = serde_json::from_slice(&payload).unwrap();
    edit(&mut job);
    Envelope {
        payload: BASE64.encode(serde_json::to_vec(&job).unwrap()),
        ..envelope.clone()
    }
}

fn audit_path(fixture: &Fixture) -> PathBuf {
    fixture.station.audit().path().to_path_buf()
}

fn audit_entries(fixture: &Fixture) -> Vec<AuditEntry> {
    AuditLog::read_entries(&audit_path(fixture), None).unwrap()
}

fn assert_audit_verifies(path: &Path) {
    let verification = AuditLog::verify_file(path).unwrap();
    assert_eq!(verification.problem, None, "the audit log must verify");
}

/// Delivers `item` and checks the refusal: exactly one `Denied` report to the hub whose reason
/// contains every one of `reason_parts`, a `job_refused` audit entry for the job, no run record,
/// no engine call, and an audit log that still verifies.
async fn check_refused(fixture: &Fixture, item: WorkItem, reason_parts: &[&str]) {
    let job_id = item.job_id;
    handle_work(&fixture.station, &fixture.hub, item)
        .await
        .unwrap();

    let reports = fixture.hub.reports();
    assert_eq!(reports.len(), 1, "one report to the hub: {reports:?}");
    let report = &reports[0];
    assert_eq!(
        (report.job_id, report.station.as_str(), report.status),
        (job_id, STATION_ID, ReportedStopState::Denied)
    );
    let reason = report.reason.as_deref().unwrap_or_default();
    for part in reason_parts {
        assert!(
            reason.contains(part),
            "`{part}` not in the reason: {reason}"
        );
    }

    let refused: Vec<AuditEntry> = audit_entries(fixture)
        .into_iter()
        .filter(|e| e.event == "job_refused")
        .collect();
    assert_eq!(refused.len(), 1, "one job_refused audit entry: {refused:?}");
    assert_eq!(refused[0].job_id, Some(job_id.to_string()));
    assert_eq!(refused[0].reasons, vec![reason.to_string()]);
    assert_audit_verifies(&audit_path(fixture));

    assert!(fixture.station.store().list().unwrap().is_empty());
    assert!(fixture.hub.uploads.lock().unwrap().is_empty());
    assert_eq!(fixture.station.engine().calls(), Vec::<String>::new());
}

#[tokio::test]
async fn envelope_with_swapped_train_digest_is_refused_and_audited() {
    let fixture = fixture();
    let job = job_for(&[STATION_ID]);
    let envelope = tampered(&job.sign(&fixture.researcher), |job| {
        job.train.digest = Digest::of(b"the hub's own train");
    });
    check_refused(
        &fixture,
        work_item(&job, &envelope),
        &["job.envelope", "signature"],
    )
    .await;
}

#[tokio::test]
async fn envelope_with_changed_route_is_refused() {
    let fixture = fixture();
    let job = job_for(&[STATION_ID]);
    let envelope = tampered(&job.sign(&fixture.researcher), |job| {
        job.route.stations.push("station-evil".into());
    });
    check_refused(
        &fixture,
        work_item(&job, &envelope),
        &["job.envelope", "signature"],
    )
    .await;
}

#[tokio::test]
async fn work_item_disagreeing_with_the_envelope_is_refused() {
    let job = job_for(&[STATION_ID, "station-b"]);

    let wrong_stop = fixture();
    let mut item = work_item(&job, &job.sign(&wrong_stop.researcher));
    item.stop_index = 1;
    check_refused(
        &wrong_stop,
        item,
        &["job.work_item", "disagrees", "stop 1", "stop 0"],
    )
    .await;

    let wrong_mode = fixture();
    let mut item = work_item(&job, &job.sign(&wrong_mode.researcher));
    item.mode = RouteMode::Sequential;
    check_refused(
        &wrong_mode,
        item,
        &["job.work_item", "disagrees", "Sequential", "Parallel"],
    )
    .await;
}

#[tokio::test]
async fn refused_work_item_does_not_use_up_the_job() {
    // A hub that garbles one work item must not stop the honest one from running later: the
    // job is only marked as seen once the item has been checked against the envelope.
    let fixture = fixture();
    let job = job_for(&[STATION_ID]);
    let envelope = job.sign(&fixture.researcher);
    let mut garbled = work_item(&job, &envelope);
    garbled.mode = RouteMode::Sequential;
    handle_work(&fixture.station, &fixture.hub, garbled)
        .await
        .unwrap();

    handle_work(&fixture.station, &fixture.hub, work_item(&job, &envelope))
        .await
        .unwrap();
    let runs = fixture.station.store().list().unwrap();
    assert_eq!(runs.len(), 1, "the honest item reached the pipeline");
    assert!(runs[0]
        .reasons
        .iter()
        .any(|r| r.contains("registry.allowed")));
    assert_eq!(fixture.station.engine().calls(), Vec::<String>::new());
}

#[tokio::test]
async fn envelope_signed_by_an_untrusted_key_is_refused() {
    let fixture = fixture();
    let job = job_for(&[STATION_ID]);
    let stranger = SigningKey::generate(KeyAlgorithm::Ed25519);
    check_refused(
        &fixture,
        work_item(&job, &job.sign(&stranger)),
        &["job.envelope", "no signature by a trusted key"],
    )
    .await;
}

#[tokio::test]
async fn expired_envelope_is_refused() {
    let fixture = fixture();
    let mut job = job_for(&[STATION_ID]);
    job.issued_at = Utc::now() - Duration::hours(2);
    job.expires_at = Utc::now() - Duration::hours(1);
    check_refused(
        &fixture,
        work_item(&job, &job.sign(&fixture.researcher)),
        &["job.envelope", "expired"],
    )
    .await;
}

#[tokio::test]
async fn envelope_for_another_station_is_refused() {
    let fixture = fixture();
    let job = job_for(&["station-b"]);
    check_refused(
        &fixture,
        work_item(&job, &job.sign(&fixture.researcher)),
        &[
            "job.envelope",
            "not addressed to station `hostile-hub-station`",
        ],
    )
    .await;
}

#[tokio::test]
async fn replayed_envelope_is_not_run_twice_and_the_replay_is_audited() {
    let fixture = fixture();
    let job = job_for(&[STATION_ID]);
    let envelope = job.sign(&fixture.researcher);

    handle_work(&fixture.station, &fixture.hub, work_item(&job, &envelope))
        .await
        .unwrap();
    let runs = fixture.station.store().list().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, pht_station::RunStatus::Refused);
    assert!(runs[0]
        .reasons
        .iter()
        .any(|r| r.contains("registry.allowed")));
    let statuses: Vec<ReportedStopState> = fixture.hub.reports().iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [ReportedStopState::Running, ReportedStopState::Denied]
    );

    handle_work(&fixture.station, &fixture.hub, work_item(&job, &envelope))
        .await
        .unwrap();
    let runs_after = fixture.station.store().list().unwrap();
    assert_eq!(runs_after.len(), 1, "the replay made no second run");
    assert_eq!(runs_after[0].run_id, runs[0].run_id);
    let replays: Vec<AuditEntry> = audit_entries(&fixture)
        .into_iter()
        .filter(|e| e.event == "replay_refused")
        .collect();
    assert_eq!(replays.len(), 1, "one replay_refused entry: {replays:?}");
    assert_eq!(replays[0].job_id, Some(job.job_id.to_string()));
    assert_eq!(replays[0].run_id, Some(runs[0].run_id.clone()));
    // The hub already knows the stop was denied; a replay does not report it running again.
    assert_eq!(fixture.hub.reports().len(), 2);
    assert_audit_verifies(&audit_path(&fixture));
    assert_eq!(fixture.station.engine().calls(), Vec::<String>::new());
}

#[tokio::test]
async fn audit_log_verifies_after_every_refusal() {
    let fixture = fixture();
    let path = audit_path(&fixture);
    let researcher = &fixture.researcher;
    let stranger = SigningKey::generate(KeyAlgorithm::Ed25519);
    let mut expired = job_for(&[STATION_ID]);
    expired.issued_at = Utc::now() - Duration::hours(2);
    expired.expires_at = Utc::now() - Duration::hours(1);
    let elsewhere = job_for(&["station-b"]);
    let valid = job_for(&[STATION_ID]);
    let valid_envelope = valid.sign(researcher);
    let mut disagreeing = work_item(&valid, &valid_envelope);
    disagreeing.stop_index = 3;
    let swapped = job_for(&[STATION_ID]);
    let rerouted = job_for(&[STATION_ID]);

    let hostile_items = [
        work_item(
            &swapped,
            &tampered(&swapped.sign(researcher), |job| {
                job.train.digest = Digest::of(b"the hub's own train");
            }),
        ),
        work_item(
            &rerouted,
            &tampered(&rerouted.sign(researcher), |job| {
                job.route.stations.reverse();
                job.route.stations.push("station-evil".into());
            }),
        ),
        disagreeing,
        work_item(&valid, &valid.sign(&stranger)),
        work_item(&expired, &expired.sign(researcher)),
        work_item(&elsewhere, &elsewhere.sign(researcher)),
        // The same valid item twice: a run refused by policy, then its replay.
        work_item(&valid, &valid_envelope),
        work_item(&valid, &valid_envelope),
    ];
    let mut n_entries_before = AuditLog::verify_file(&path).unwrap().entries;
    for (item_idx, item) in hostile_items.into_iter().enumerate() {
        handle_work(&fixture.station, &fixture.hub, item)
            .await
            .unwrap();
        let verification = AuditLog::verify_file(&path).unwrap();
        assert_eq!(verification.problem, None, "after item {item_idx}");
        assert!(
            verification.entries > n_entries_before,
            "item {item_idx} left no audit entry"
        );
        n_entries_before = verification.entries;
    }
    let events: Vec<String> = audit_entries(&fixture)
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(events.iter().filter(|e| *e == "job_refused").count(), 6);
    assert_eq!(events.iter().filter(|e| *e == "replay_refused").count(), 1);
    assert_eq!(fixture.station.engine().calls(), Vec::<String>::new());
}
