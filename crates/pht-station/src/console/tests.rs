//! In-process tests of every console route: a real `Station` over a temporary state directory
//! (a fake engine that runs nothing), requests sent straight to the router.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use chrono::Utc;
use tower::ServiceExt as _;

use super::auth::{FREE_FAILURES, LOGIN_COOKIE, SESSION_COOKIE};
use super::Console;
use crate::engine::{Engine, EngineError};
use crate::operators::{Operators, Role};
use crate::store::{
    OutputDecision, OutputDecisionRecord, OutputSummary, RunRecord, RunStatus, TrainRef,
};
use crate::{Station, StationConfig};

const PASSWORD: &str = "correct horse battery";
const HOSTILE: &str = "<script>alert(1)</script>\"><img src=x onerror=alert(2)>";

/// An engine that runs nothing and says so.
#[derive(Debug, Default)]
struct IdleEngine;

impl Engine for IdleEngine {
    async fn has_image(&self, _: &pht_core::Digest) -> Result<bool, EngineError> {
        Err(EngineError("runs nothing".into()))
    }
    async fn layer_chains(
        &self,
    ) -> Result<std::collections::HashSet<pht_core::Digest>, EngineError> {
        Err(EngineError("runs nothing".into()))
    }
    async fn load_image(
        &self,
        _: &[u8],
        _: &[Option<bytes::Bytes>],
    ) -> Result<pht_core::Digest, EngineError> {
        Err(EngineError("runs nothing".into()))
    }
    async fn run(&self, _: &pht_docker::RunSpec) -> Result<pht_docker::RunOutcome, EngineError> {
        Err(EngineError("runs nothing".into()))
    }
    async fn version(&self) -> Result<String, EngineError> {
        Ok("Idle 1.0".into())
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    station: Arc<Station<IdleEngine>>,
    router: Router,
    age_identity: age::x25519::Identity,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let researcher = pht_core::SigningKey::generate(pht_core::KeyAlgorithm::Ed25519);
    std::fs::write(
        root.join("researcher.pub"),
        researcher.public_key().to_pem(),
    )
    .unwrap();
    std::fs::create_dir_all(root.join("data/cohort")).unwrap();
    std::fs::write(root.join("data/cohort/cohort.csv"), "id,age\n1,40\n").unwrap();
    std::fs::write(
        root.join("policy.yaml"),
        "version: 1
trusted_signers:
  - name: researcher
    public_key: researcher.pub
    purposes: [\"aggregate statistics\"]
    datasets: [cohort]
    approval: manual
registries:
  - registry: \"127.0.0.1:9\"
    repositories: [\"trains/*\"]
outputs:
  release: manual
  reviewers_required: 2
",
    )
    .unwrap();
    let config = StationConfig::from_yaml(
        "version: 1
station_id: station-a
key_dir: keys
datasets:
  cohort:
    path: data/cohort
registries:
  - registry: 127.0.0.1:9
    insecure: true
policy: policy.yaml
state_dir: state
console: {}
",
        &root.join("station.yaml"),
    )
    .unwrap();
    crate::keys::init(&config.key_dir).unwrap();
    let mut operators = Operators::load(&config.state_dir).unwrap();
    for (name, role) in [
        ("alice", Role::Approver),
        ("rita", Role::Reviewer),
        ("rob", Role::Reviewer),
        ("ada", Role::Admin),
    ] {
        operators.add(name, role, PASSWORD).unwrap();
    }
    let station = Arc::new(Station::open(config, IdleEngine).unwrap());
    let console = Console::new(station.clone(), false).unwrap();
    let router = console.router();
    Fixture {
        _dir: dir,
        station,
        router,
        age_identity: age::x25519::Identity::generate(),
    }
}

fn record(run_id: &str, status: RunStatus) -> RunRecord {
    let now = Utc::now();
    let digest = pht_core::Digest::of(run_id.as_bytes()).to_string();
    RunRecord {
        version: "pht.run.v1".into(),
        run_id: run_id.into(),
        created_at: now,
        updated_at: now,
        status,
        train: TrainRef {
            reference: format!("127.0.0.1:9/trains/t@{digest}"),
            registry: "127.0.0.1:9".into(),
            repository: "trains/t".into(),
            digest,
            name: Some(HOSTILE.into()),
            version: Some("1.0.0".into()),
            description: Some(HOSTILE.into()),
            purpose: Some("aggregate statistics".into()),
            datasets: vec!["cohort".into()],
            resources: None,
        },
        job: None,
        signer: Some("researcher".into()),
        base: None,
        parameters: [("group".to_string(), serde_json::Value::from(HOSTILE))].into(),
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
        recipient: None,
        sealed: None,
        state_paths: Vec::new(),
        state_checks: None,
        received_state: None,
        reported: None,
        delivered_at: None,
        policy_sha256: None,
        started_at: None,
        finished_at: None,
    }
}

/// A succeeded run with one checked table (a hostile cell and file name among them, and a
/// cell of 3 below the threshold) withheld for review, sealed for the fixture's age identity
/// once released.
fn withheld_run(fixture: &Fixture, run_id: &str) {
    withheld_run_with(fixture, run_id, 3);
}

/// The same, with `small` as the second group's count (10 or more passes the checks).
fn withheld_run_with(fixture: &Fixture, run_id: &str, small: u32) {
    let name = "counts<i>x.csv".to_string();
    let table = format!("group,n\n\"{HOSTILE}\",12\nb,{small}\n");
    let entries = [pht_checks::OutputEntry::regular(
        &name,
        table.clone().into_bytes(),
    )];
    let declared = [pht_checks::DeclaredOutput::table(&name, ["n"])];
    let report = pht_checks::check_outputs(
        &entries,
        &declared,
        &[],
        &pht_checks::CheckConfig::default(),
    );
    let run_dir = fixture.station.store().run_dir(run_id);
    std::fs::create_dir_all(run_dir.join("outputs")).unwrap();
    std::fs::write(run_dir.join("outputs").join(&name), &table).unwrap();
    std::fs::write(
        run_dir.join("report.json"),
        serde_json::to_vec(&report).unwrap(),
    )
    .unwrap();
    std::fs::write(run_dir.join("logs.txt"), format!("log line {HOSTILE}\n")).unwrap();
    let mut record = record(run_id, RunStatus::Succeeded);
    record.outputs = vec![OutputSummary {
        path: name,
        kind: "file".into(),
        size: table.len() as u64,
        sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(table.as_bytes())),
    }];
    record.checks = Some(report.status().to_string());
    record.recipient = Some(fixture.age_identity.to_public().to_string());
    record.output_decision = Some(OutputDecisionRecord {
        decision: OutputDecision::Withheld,
        by: "station".into(),
        at: Utc::now(),
        reason: Some("the policy releases by hand".into()),
        overridden: false,
    });
    fixture.station.store().save(&record).unwrap();
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Reply {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .map_or("", |v| v.to_str().unwrap())
    }

    fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| super::auth::cookie(v.split(';').next().unwrap(), name))
            .map(str::to_string)
    }

    /// The value of the first `name="csrf"` hidden field.
    fn csrf(&self) -> String {
        let at = self.body.find("name=\"csrf\" value=\"").expect("a form");
        let rest = &self.body[at + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').unwrap()].to_string()
    }
}

async fn send(router: &Router, request: Request<Body>) -> Reply {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 1 << 24)
        .await
        .unwrap();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

async fn get(router: &Router, path: &str, session: Option<&str>) -> Reply {
    let mut request = Request::get(path);
    if let Some(session) = session {
        request = request.header(header::COOKIE, format!("{SESSION_COOKIE}={session}"));
    }
    send(router, request.body(Body::empty()).unwrap()).await
}

async fn post(router: &Router, path: &str, cookie: Option<String>, form: &[(&str, &str)]) -> Reply {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut request =
        Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    send(router, request.body(Body::from(body)).unwrap()).await
}

async fn try_login(router: &Router, name: &str, password: &str) -> Reply {
    let form = get(router, "/login", None).await;
    let token = form.cookie(LOGIN_COOKIE).unwrap();
    post(
        router,
        "/login",
        Some(format!("{LOGIN_COOKIE}={token}")),
        &[
            ("csrf", &token),
            ("name", name),
            ("password", password),
            ("next", "/"),
        ],
    )
    .await
}

/// Signs in; returns the session cookie's value and the session's CSRF token.
async fn login(router: &Router, name: &str) -> (String, String) {
    let reply = try_login(router, name, PASSWORD).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let session = reply.cookie(SESSION_COOKIE).expect("a session cookie");
    let page = get(router, "/", Some(&session)).await;
    assert_eq!(page.status, StatusCode::OK);
    (session.clone(), page.csrf())
}

async fn act(router: &Router, path: &str, session: &(String, String), reason: &str) -> Reply {
    post(
        router,
        path,
        Some(format!("{SESSION_COOKIE}={}", session.0)),
        &[("csrf", &session.1), ("reason", reason)],
    )
    .await
}

#[tokio::test]
async fn every_page_sends_someone_not_signed_in_to_the_sign_in_page() {
    let fixture = fixture();
    withheld_run(&fixture, "run-000000000001");
    for path in [
        "/",
        "/approvals",
        "/review",
        "/runs",
        "/runs?page=2",
        "/runs/run-000000000001",
        "/runs/run-000000000001/review",
        "/runs/run-000000000001/figure?path=a.png",
        "/audit",
        "/no-such-page",
    ] {
        let reply = get(&fixture.router, path, None).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{path}");
        assert!(
            reply.location().starts_with("/login?next="),
            "{path}: {}",
            reply.location()
        );
        let reply = get(&fixture.router, path, Some("forged-session")).await;
        assert_eq!(
            reply.status,
            StatusCode::SEE_OTHER,
            "{path} with a forged cookie"
        );
    }
    for path in [
        "/logout",
        "/runs/run-000000000001/approve",
        "/runs/run-000000000001/reject",
        "/runs/run-000000000001/release",
        "/runs/run-000000000001/block",
        "/runs/run-000000000001/override",
        "/audit/verify",
    ] {
        let reply = post(
            &fixture.router,
            path,
            None,
            &[("csrf", "x"), ("reason", "r")],
        )
        .await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(reply.location(), "/login", "{path}");
    }
    let record = fixture.station.store().load("run-000000000001").unwrap();
    assert!(record.reviews.is_empty());
    // The sign-in page and the stylesheet are open; a `next` elsewhere is not followed.
    assert_eq!(
        get(&fixture.router, "/login", None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(&fixture.router, "/static/console.css", None)
            .await
            .status,
        StatusCode::OK
    );
    // A browser's second visit to the sign-in page keeps the token its open form holds.
    let first = get(&fixture.router, "/login", None).await;
    let token = first.cookie(LOGIN_COOKIE).unwrap();
    let again = send(
        &fixture.router,
        Request::get("/login")
            .header(header::COOKIE, format!("{LOGIN_COOKIE}={token}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(again.csrf(), token);
    assert_eq!(
        get(&fixture.router, "/favicon.ico", None).await.status,
        StatusCode::NOT_FOUND
    );
    let form = get(&fixture.router, "/login?next=//evil.example/x", None).await;
    assert!(
        form.body.contains("name=\"next\" value=\"/\""),
        "{}",
        form.body
    );
}

#[tokio::test]
async fn signing_in_checks_the_password_the_form_and_slows_repeated_failures() {
    let fixture = fixture();
    let wrong = try_login(&fixture.router, "rita", "not the password at all").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("The name or password is wrong."));
    assert!(wrong.cookie(SESSION_COOKIE).is_none());
    // A form that did not come from this browser's sign-in page is refused.
    let forged = post(
        &fixture.router,
        "/login",
        Some(format!("{LOGIN_COOKIE}=aaaa")),
        &[("csrf", "bbbb"), ("name", "rita"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(forged.cookie(SESSION_COOKIE).is_none());
    for _ in 1..FREE_FAILURES {
        let reply = try_login(&fixture.router, "rita", "still not the password").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    // The next failure locks the name out; then even the right password waits.
    let reply = try_login(&fixture.router, "rita", "still not the password").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let locked = try_login(&fixture.router, "rita", PASSWORD).await;
    assert_eq!(
        locked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        locked.body
    );
    assert!(locked.headers.contains_key(header::RETRY_AFTER));
    assert!(locked.cookie(SESSION_COOKIE).is_none());
    // Another operator is not held back.
    let (session, _) = login(&fixture.router, "rob").await;
    assert!(!session.is_empty());
    // The audit log names known operators' failures, never what was typed as a password.
    let log = std::fs::read_to_string(fixture.station.audit().path()).unwrap();
    assert!(log.contains("console_sign_in_failed"));
    assert!(log.contains("console_signed_in"));
    assert!(
        !log.contains("not the password"),
        "a password in the audit log"
    );
    // Cookies are HttpOnly and SameSite=Strict.
    let reply = try_login(&fixture.router, "ada", PASSWORD).await;
    let set = reply
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with(SESSION_COOKIE))
        .unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
}

#[tokio::test]
async fn roles_decide_who_approves_who_releases_and_who_overrides() {
    let fixture = fixture();
    let router = &fixture.router;
    fixture
        .station
        .store()
        .save(&record("run-00000000000a", RunStatus::AwaitingApproval))
        .unwrap();
    withheld_run(&fixture, "run-00000000000b");
    let reviewer = login(router, "rita").await;
    let approver = login(router, "alice").await;
    let admin = login(router, "ada").await;

    // A reviewer cannot approve or reject.
    for action in ["approve", "reject"] {
        let reply = act(
            router,
            &format!("/runs/run-00000000000a/{action}"),
            &reviewer,
            "r",
        )
        .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{action}");
        assert!(
            reply.body.contains("Your role (reviewer) may not"),
            "{}",
            reply.body
        );
    }
    // An approver cannot release or block.
    for action in ["release", "block"] {
        let reply = act(
            router,
            &format!("/runs/run-00000000000b/{action}"),
            &approver,
            "r",
        )
        .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{action}");
    }
    let record = fixture.station.store().load("run-00000000000b").unwrap();
    assert!(record.reviews.is_empty());
    assert_eq!(
        fixture
            .station
            .store()
            .load("run-00000000000a")
            .unwrap()
            .status,
        RunStatus::AwaitingApproval
    );
    // The approvals page shows the approver the forms, the reviewer none.
    let page = get(router, "/approvals", Some(&approver.0)).await;
    assert!(page.body.contains("/runs/run-00000000000a/approve"));
    let page = get(router, "/approvals", Some(&reviewer.0)).await;
    assert!(!page.body.contains("/runs/run-00000000000a/approve"));

    // A reviewer's block stops the release; only an admin overrides it.
    let reply = act(
        router,
        "/runs/run-00000000000b/block",
        &reviewer,
        "a cell of 3",
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let reply = act(router, "/runs/run-00000000000b/override", &reviewer, "mine").await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let reply = act(router, "/runs/run-00000000000b/release", &admin, "mine").await;
    assert_eq!(
        reply.status,
        StatusCode::CONFLICT,
        "a release is not an override"
    );
    let reply = act(
        router,
        "/runs/run-00000000000b/override",
        &admin,
        "agreed with the researcher",
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let record = fixture.station.store().load("run-00000000000b").unwrap();
    let decision = record.output_decision.unwrap();
    assert_eq!(decision.decision, OutputDecision::Released);
    assert!(decision.overridden);
    assert!(record.sealed.is_some(), "an override seals the outputs");

    // An approver approves: the run is carried out (here refused, as its registry is not
    // reachable) and the approval names the approver.
    let reply = act(
        router,
        "/runs/run-00000000000a/approve",
        &approver,
        "looked fine",
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let mut approved = None;
    for _ in 0..200 {
        let record = fixture.station.store().load("run-00000000000a").unwrap();
        if record.status != RunStatus::AwaitingApproval
            && !fixture.station.store().is_live("run-00000000000a")
        {
            approved = Some(record);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let approved = approved.expect("the approved run was carried on");
    assert_eq!(approved.approval.unwrap().by, "alice");
}

#[tokio::test]
async fn a_form_without_this_sessions_csrf_token_does_nothing() {
    let fixture = fixture();
    withheld_run(&fixture, "run-000000000001");
    let (session, csrf) = login(&fixture.router, "rita").await;
    let (_, other_csrf) = login(&fixture.router, "rob").await;
    for token in ["", "0000", other_csrf.as_str()] {
        let reply = post(
            &fixture.router,
            "/runs/run-000000000001/block",
            Some(format!("{SESSION_COOKIE}={session}")),
            &[("csrf", token), ("reason", "r")],
        )
        .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "token {token:?}");
    }
    let record = fixture.station.store().load("run-000000000001").unwrap();
    assert!(record.reviews.is_empty());
    assert_eq!(
        record.output_decision.unwrap().decision,
        OutputDecision::Withheld
    );
    // Signing out needs the token too, and ends the session.
    let reply = post(
        &fixture.router,
        "/logout",
        Some(format!("{SESSION_COOKIE}={session}")),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(reply.location(), "/login");
    let after = get(&fixture.router, "/", Some(&session)).await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn two_distinct_reviewers_release_the_same_one_twice_counts_once_and_a_block_stops_it() {
    let fixture = fixture();
    let router = &fixture.router;
    withheld_run_with(&fixture, "run-000000000001", 15);
    withheld_run_with(&fixture, "run-000000000002", 15);
    let rita = login(router, "rita").await;
    let rob = login(router, "rob").await;

    let reply = act(
        router,
        "/runs/run-000000000001/release",
        &rita,
        "counts fine",
    )
    .await;
    assert_eq!(
        reply.location(),
        "/runs/run-000000000001/review?done=reviewed"
    );
    let record = fixture.station.store().load("run-000000000001").unwrap();
    assert_eq!(
        record.output_decision.as_ref().unwrap().decision,
        OutputDecision::Withheld
    );
    let again = act(
        router,
        "/runs/run-000000000001/release",
        &rita,
        "still fine",
    )
    .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(
        again.body.contains("has already released"),
        "{}",
        again.body
    );
    let page = get(router, "/runs/run-000000000001/review", Some(&rita.0)).await;
    assert!(
        page.body.contains("1 of 2 distinct releases needed"),
        "{}",
        page.body
    );
    let reply = act(router, "/runs/run-000000000001/release", &rob, "agree").await;
    assert_eq!(
        reply.location(),
        "/runs/run-000000000001/review?done=released",
        "{}",
        reply.body
    );
    let record = fixture.station.store().load("run-000000000001").unwrap();
    assert_eq!(
        record.output_decision.as_ref().unwrap().decision,
        OutputDecision::Released
    );
    assert!(record.sealed.is_some());
    let reviewers: Vec<&str> = record.reviews.iter().map(|r| r.operator.as_str()).collect();
    assert_eq!(reviewers, ["rita", "rob"]);

    act(router, "/runs/run-000000000002/release", &rita, "fine").await;
    let reply = act(router, "/runs/run-000000000002/block", &rob, "a cell of 3").await;
    assert_eq!(
        reply.location(),
        "/runs/run-000000000002/review?done=blocked"
    );
    let record = fixture.station.store().load("run-000000000002").unwrap();
    assert_eq!(
        record.output_decision.unwrap().decision,
        OutputDecision::Blocked
    );
    assert!(record.sealed.is_none());
    // Both queues are empty now.
    let page = get(router, "/review", Some(&rita.0)).await;
    assert!(
        page.body.contains("No outputs are waiting for review."),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn everything_a_train_supplied_is_shown_escaped() {
    let fixture = fixture();
    let router = &fixture.router;
    let mut pending = record("run-00000000000a", RunStatus::AwaitingApproval);
    pending.reasons = vec![format!("approval.signer: {HOSTILE}")];
    fixture.station.store().save(&pending).unwrap();
    withheld_run(&fixture, "run-00000000000b");
    let admin = login(router, "ada").await;
    for path in [
        "/",
        "/approvals",
        "/review",
        "/runs",
        "/runs/run-00000000000a",
        "/runs/run-00000000000b",
        "/runs/run-00000000000b/review",
        "/audit",
        "/audit?run=%3Cscript%3E",
    ] {
        let page = get(router, path, Some(&admin.0)).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(!page.body.contains("<script"), "{path}: unescaped script");
        assert!(
            !page.body.contains("<img src=x"),
            "{path}: unescaped attribute break-out"
        );
        assert!(!page.body.contains("<i>x"), "{path}: unescaped file name");
        let csp = page.headers.get(header::CONTENT_SECURITY_POLICY).unwrap();
        assert!(csp.to_str().unwrap().contains("default-src 'none'"));
    }
    let review = get(router, "/runs/run-00000000000b/review", Some(&admin.0)).await;
    // The hostile cell is there, escaped, and the small cell is highlighted.
    assert!(
        review
            .body
            .contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        review.body
    );
    assert!(
        review.body.contains("class=\"flagged num\""),
        "{}",
        review.body
    );
    let detail = get(router, "/runs/run-00000000000b", Some(&admin.0)).await;
    assert!(
        detail.body.contains("log line &lt;script&gt;"),
        "{}",
        detail.body
    );
    let approvals = get(router, "/approvals", Some(&admin.0)).await;
    assert!(approvals
        .body
        .contains("&quot;&gt;&lt;img src=x onerror=alert(2)&gt;"));
}

#[tokio::test]
async fn the_run_list_pages_through_the_history_newest_first() {
    let fixture = fixture();
    for n in 0..120 {
        fixture
            .station
            .store()
            .save(&record(&format!("run-{n:012}"), RunStatus::Refused))
            .unwrap();
    }
    let admin = login(&fixture.router, "ada").await;
    let first = get(&fixture.router, "/runs", Some(&admin.0)).await;
    assert!(first.body.contains("120 runs recorded"));
    assert!(first.body.contains("run-000000000119"));
    assert!(!first.body.contains("run-000000000069"));
    let third = get(&fixture.router, "/runs?page=3", Some(&admin.0)).await;
    assert!(third.body.contains("run-000000000000"));
    assert!(!third.body.contains("run-000000000020"));
    // Removing the index rebuilds it from the records.
    std::fs::remove_file(fixture.station.config().state_dir.join("runs.index")).unwrap();
    assert!(fixture.station.store().check_index().unwrap());
    assert_eq!(fixture.station.store().count().unwrap(), 120);
}

#[tokio::test]
async fn the_overview_counts_queues_and_verifies_the_audit_log() {
    let fixture = fixture();
    fixture
        .station
        .store()
        .save(&record("run-00000000000a", RunStatus::AwaitingApproval))
        .unwrap();
    withheld_run(&fixture, "run-00000000000b");
    let admin = login(&fixture.router, "ada").await;
    let page = get(&fixture.router, "/", Some(&admin.0)).await;
    assert!(page.body.contains("Idle 1.0"), "{}", page.body);
    assert!(page.body.contains("Not verified yet"));
    let reply = act(&fixture.router, "/audit/verify", &admin, "").await;
    assert_eq!(reply.location(), "/?done=verified");
    let page = get(&fixture.router, "/?done=verified", Some(&admin.0)).await;
    assert!(page.body.contains("entries verify"), "{}", page.body);
    assert!(page.body.contains("The audit log was verified just now."));
    // Awaiting approval 1, withheld 1.
    let counts: Vec<&str> = page
        .body
        .match_indices("<td class=\"num\">")
        .map(|(at, _)| &page.body[at + 16..at + 17])
        .collect();
    assert_eq!(&counts[..2], ["1", "1"], "{}", page.body);
}

/// Serves the fixture's console as `config` says until the returned sender is dropped;
/// returns the address it printed.
async fn serve_console(
    fixture: &Fixture,
    config: crate::config::ConsoleConfig,
) -> (String, tokio::sync::oneshot::Sender<()>) {
    let (address_tx, address_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let station = fixture.station.clone();
    tokio::spawn(async move {
        super::serve(
            station,
            &config,
            |address| {
                let _ = address_tx.send(address);
            },
            async move {
                let _ = stop_rx.await;
            },
        )
        .await
        .unwrap();
    });
    (address_rx.await.unwrap(), stop_tx)
}

#[tokio::test]
async fn with_tls_the_console_serves_https_and_marks_cookies_secure() {
    let fixture = fixture();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=station-console"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let config = crate::config::ConsoleConfig {
        listen: crate::config::ConsoleListen::Tcp("127.0.0.1:0".parse().unwrap()),
        tls: Some(crate::config::ConsoleTls {
            cert: cert.clone(),
            key,
        }),
        session_idle: crate::config::DEFAULT_SESSION_IDLE,
    };
    let (address, _stop) = serve_console(&fixture, config).await;
    assert!(address.starts_with("https://127.0.0.1:"), "{address}");
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap(),
        )
        .build()
        .unwrap();
    let response = client.get(format!("{address}login")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let set_cookie = response.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(set_cookie.ends_with("; Secure"), "{set_cookie}");
    // Plain HTTP to the TLS port gets no page.
    let plain = reqwest::get(format!("{}login", address.replace("https", "http"))).await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
}

#[tokio::test]
async fn on_a_unix_socket_the_console_is_reachable_by_its_owner_and_group_only() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let fixture = fixture();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("console.sock");
    let config = crate::config::ConsoleConfig {
        listen: crate::config::ConsoleListen::Unix(socket.clone()),
        tls: None,
        session_idle: crate::config::DEFAULT_SESSION_IDLE,
    };
    let (address, stop) = serve_console(&fixture, config).await;
    assert_eq!(address, format!("unix:{}", socket.display()));
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777,
        0o660
    );
    let mut stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
    stream
        .write_all(b"GET /login HTTP/1.1\r\nHost: console\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("Sign in to the station console"));
    assert!(!reply.contains("; Secure"));
    drop(stop);
    for _ in 0..100 {
        if !socket.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        !socket.exists(),
        "the socket is removed when the console stops"
    );
}
