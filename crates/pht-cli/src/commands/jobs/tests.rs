//! Unit tests of the job commands' pure parts: argument parsing, building a job, resolving the
//! recipient, and rendering a status and its exit code.
//!
//! No hub is started here; the commands against a real hub are the workspace's end-to-end tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use pht_api::v1::{JobState, JobStatus, StopState, StopStatus, TrainSummary};
use pht_core::job::RouteMode;
use serde_json::{json, Value};
use uuid::Uuid;

use super::status::{describe_changes, job_outcome, render_job_status, waiting_for_operators};
use super::submit::{
    build_job, build_parameters, default_recipient_file, resolve_recipient, train_pin,
};
use super::*;
use crate::exit::{CommandResult, FailureKind};

const DIGEST: &str = "sha256:05b3abf2579a5eb66403cd78be557fd860633a1fe2103c7642030defe32c657f";

fn recipient() -> String {
    age::x25519::Identity::generate().to_public().to_string()
}

fn submit_request(route: &[&str]) -> SubmitRequest {
    SubmitRequest {
        train_reference: format!("127.0.0.1:5000/trains/count@{DIGEST}"),
        route_stations: route.iter().map(|station| station.to_string()).collect(),
        route_mode: RouteMode::Parallel,
        parameters: Vec::new(),
        station_parameters: Vec::new(),
        recipient: None,
        recipient_file: None,
        expires_in: Duration::from_secs(24 * 3600),
    }
}

fn failure_message(result: CommandResult<impl std::fmt::Debug>) -> (FailureKind, String) {
    let failure = result.expect_err("expected a failure");
    (failure.kind, format!("{:#}", failure.error))
}

#[test]
fn param_values_are_typed_when_they_read_as_numbers_or_booleans() {
    let check = |text: &str, expected: Value| {
        assert_eq!(
            parse_parameter_argument(text).unwrap().value,
            expected,
            "{text}"
        );
    };
    check("n=10", json!(10));
    check("alpha=0.05", json!(0.05));
    check("strict=true", json!(true));
    check("cohort=adults", json!("adults"));
    check("missing=null", json!("null"));
    check("list=[1,2]", json!("[1,2]"));
    check("expression=a=b", json!("a=b"));
    check("empty=", json!(""));
    assert_eq!(parse_parameter_argument("n=1").unwrap().name, "n");
}

#[test]
fn param_without_name_or_equals_sign_is_a_usage_error() {
    assert!(parse_parameter_argument("=1").is_err());
    assert!(parse_parameter_argument("n").is_err());
}

#[test]
fn param_for_names_a_station_then_a_parameter() {
    let parsed = parse_station_parameter_argument("umc-1:threshold=5").unwrap();
    assert_eq!(parsed.station, "umc-1");
    assert_eq!(parsed.parameter.name, "threshold");
    assert_eq!(parsed.parameter.value, json!(5));
    assert!(parse_station_parameter_argument("threshold=5").is_err());
    assert!(parse_station_parameter_argument(":threshold=5").is_err());
    assert!(parse_station_parameter_argument("../x:threshold=5").is_err());
}

#[test]
fn station_key_must_name_its_station() {
    let parsed = parse_station_key_argument("umc=keys/umc.pub").unwrap();
    assert_eq!(parsed.station, "umc");
    assert_eq!(parsed.public_key_path, PathBuf::from("keys/umc.pub"));
    assert!(parse_station_key_argument("keys/umc.pub").is_err());
    assert!(parse_station_key_argument("umc=").is_err());
    assert!(parse_station_key_argument("..=keys/umc.pub").is_err());
}

#[test]
fn station_parameters_are_overlaid_on_the_parameters_for_every_station() {
    let stations = vec!["a".to_string(), "b".to_string()];
    let parameters = build_parameters(
        &stations,
        &[
            parse_parameter_argument("n=10").unwrap(),
            parse_parameter_argument("label=x").unwrap(),
        ],
        &[parse_station_parameter_argument("b:n=20").unwrap()],
    )
    .unwrap();
    assert_eq!(
        serde_json::to_value(&parameters).unwrap(),
        json!({"*": {"n": 10, "label": "x"}, "b": {"n": 20, "label": "x"}})
    );
}

#[test]
fn no_parameters_give_an_empty_map() {
    let parameters = build_parameters(&["a".to_string()], &[], &[]).unwrap();
    assert!(parameters.is_empty());
}

#[test]
fn param_for_a_station_off_the_route_is_refused() {
    let (kind, message) = failure_message(build_parameters(
        &["a".to_string()],
        &[],
        &[parse_station_parameter_argument("c:n=1").unwrap()],
    ));
    assert_eq!(kind, FailureKind::Input);
    assert!(
        message.contains("`c`, which is not on the route"),
        "{message}"
    );
}

#[test]
fn param_given_twice_is_refused() {
    let twice = [
        parse_parameter_argument("n=1").unwrap(),
        parse_parameter_argument("n=2").unwrap(),
    ];
    assert!(build_parameters(&["a".to_string()], &twice, &[]).is_err());
}

#[test]
fn tag_is_refused_with_the_way_to_get_a_digest() {
    let (kind, message) = failure_message(train_pin("127.0.0.1:5000/trains/count:0.1.0"));
    assert_eq!(kind, FailureKind::Input);
    assert!(
        message
            .contains("submit a digest: run `pht train push` and use the REPO@sha256:… it printed"),
        "{message}"
    );
}

#[test]
fn digest_reference_pins_registry_repository_and_digest() {
    let pin = train_pin(&format!("127.0.0.1:5000/trains/count:0.1.0@{DIGEST}")).unwrap();
    assert_eq!(pin.repository, "127.0.0.1:5000/trains/count");
    assert_eq!(pin.digest.to_string(), DIGEST);
}

#[test]
fn job_is_built_from_the_request_and_validates() {
    let now: DateTime<Utc> = "2026-11-23T12:00:00Z".parse().unwrap();
    let mut request = submit_request(&["a", "b"]);
    request.route_mode = RouteMode::Sequential;
    let recipient = recipient();
    let job = build_job(&request, recipient.clone(), Uuid::nil(), now).unwrap();
    assert_eq!(job.expires_at, now + chrono::Duration::hours(24));
    assert_eq!(job.route.mode, RouteMode::Sequential);
    assert_eq!(job.route.stations, ["a", "b"]);
    assert_eq!(job.recipient, recipient);
    assert_eq!(job.train.repository, "127.0.0.1:5000/trains/count");
}

#[test]
fn duplicate_or_empty_route_is_refused() {
    let now = Utc::now();
    for route in [&["a", "a"][..], &[], &["a", ""]] {
        let (kind, _) = failure_message(build_job(
            &submit_request(route),
            recipient(),
            Uuid::nil(),
            now,
        ));
        assert_eq!(kind, FailureKind::Input, "{route:?}");
    }
}

#[test]
fn recipient_file_defaults_to_the_age_pub_next_to_the_key() {
    assert_eq!(
        default_recipient_file(Path::new("keys/alice.key")),
        PathBuf::from("keys/alice.age.pub")
    );
    let dir = tempfile::tempdir().unwrap();
    let recipient = recipient();
    std::fs::write(
        dir.path().join("alice.age.pub"),
        format!("# alice\n{recipient}\n"),
    )
    .unwrap();
    let resolved = resolve_recipient(None, None, &dir.path().join("alice.key")).unwrap();
    assert_eq!(resolved, recipient);
}

#[test]
fn an_identity_file_given_as_the_recipient_file_is_named_and_its_secret_never_printed() {
    use age::secrecy::ExposeSecret as _;
    let dir = tempfile::tempdir().unwrap();
    let identity = age::x25519::Identity::generate();
    let secret = identity.to_string().expose_secret().to_string();
    let path = dir.path().join("alice.age");
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    let (kind, message) = failure_message(resolve_recipient(
        None,
        Some(&path),
        Path::new("/nonexistent/a.key"),
    ));
    assert_eq!(kind, FailureKind::Input);
    assert!(message.contains("age identity"), "{message}");
    assert!(!message.contains("AGE-SECRET-KEY-"), "{message}");
}

#[test]
fn given_recipient_wins_and_is_checked() {
    let recipient = recipient();
    let resolved =
        resolve_recipient(Some(&recipient), None, Path::new("/nonexistent/a.key")).unwrap();
    assert_eq!(resolved, recipient);
    let (kind, _) = failure_message(resolve_recipient(
        Some("age1notakey"),
        None,
        Path::new("/nonexistent/a.key"),
    ));
    assert_eq!(kind, FailureKind::Input);
}

#[test]
fn missing_default_recipient_file_says_what_to_pass() {
    let (kind, message) = failure_message(resolve_recipient(
        None,
        None,
        Path::new("/nonexistent/a.key"),
    ));
    assert_eq!(kind, FailureKind::Input);
    assert!(message.contains("/nonexistent/a.age.pub"), "{message}");
    assert!(message.contains("--recipient"), "{message}");
}

fn stop(index: u32, station: &str, status: StopState, reason: Option<&str>) -> StopStatus {
    StopStatus {
        index,
        station: station.into(),
        status,
        reason: reason.map(str::to_string),
        updated_at: "2026-11-23T12:00:00Z".parse().unwrap(),
        input_state: None,
        result: None,
    }
}

fn job_status(status: JobState, stops: Vec<StopStatus>) -> JobStatus {
    let at: DateTime<Utc> = "2026-11-23T12:00:00Z".parse().unwrap();
    JobStatus {
        job_id: Uuid::nil(),
        researcher: "alice".into(),
        train: TrainSummary {
            repository: "127.0.0.1:5000/trains/count".into(),
            digest: DIGEST.parse().unwrap(),
        },
        mode: RouteMode::Parallel,
        issued_at: at,
        expires_at: at + chrono::Duration::hours(24),
        submitted_at: at,
        status,
        stops,
    }
}

#[test]
fn completed_job_succeeds_and_incomplete_job_is_refused_naming_the_stop() {
    let completed = job_status(JobState::Completed, vec![]);
    assert!(job_outcome(&completed).is_ok());
    assert!(job_outcome(&job_status(JobState::Active, vec![])).is_ok());
    let incomplete = job_status(
        JobState::Incomplete,
        vec![stop(0, "b", StopState::Denied, Some("untrusted signer"))],
    );
    let (kind, message) = failure_message(job_outcome(&incomplete));
    assert_eq!(kind, FailureKind::Refused);
    assert!(message.contains("b denied (untrusted signer)"), "{message}");
}

#[test]
fn watch_ends_on_a_withheld_stop_that_nothing_else_can_move() {
    // Regression: `pht status --watch` never ended while a stop waited for review.
    let withheld = job_status(
        JobState::Active,
        vec![
            stop(0, "a", StopState::Done, None),
            stop(1, "b", StopState::Withheld, Some("outputs withheld")),
        ],
    );
    assert_eq!(
        waiting_for_operators(&withheld),
        Some(vec!["b".to_string()])
    );
    let still_running = job_status(
        JobState::Active,
        vec![
            stop(0, "a", StopState::Running, None),
            stop(1, "b", StopState::Withheld, None),
        ],
    );
    assert_eq!(waiting_for_operators(&still_running), None);
}

#[test]
fn watch_prints_only_what_changed() {
    let now: DateTime<Utc> = "2026-11-23T12:00:07Z".parse().unwrap();
    let before = job_status(
        JobState::Active,
        vec![
            stop(0, "a", StopState::Running, None),
            stop(1, "b", StopState::Ready, None),
        ],
    );
    let after = job_status(
        JobState::Incomplete,
        vec![
            stop(0, "a", StopState::Running, None),
            stop(
                1,
                "b",
                StopState::Denied,
                Some("policy: dataset not allowed"),
            ),
        ],
    );
    assert_eq!(
        describe_changes(&before, &after, now),
        [
            "12:00:07  stop 1 b: ready -> denied: policy: dataset not allowed",
            "12:00:07  job 00000000-0000-0000-0000-000000000000: active -> incomplete",
        ]
    );
    assert!(describe_changes(&before, &before, now).is_empty());
}

#[test]
fn status_table_lists_every_stop() {
    let rendered = render_job_status(&job_status(
        JobState::Active,
        vec![
            stop(0, "umc", StopState::Running, None),
            stop(1, "radboud", StopState::Denied, Some("no")),
        ],
    ));
    let expected = format!(
        "job 00000000-0000-0000-0000-000000000000  active\n  train    127.0.0.1:5000/trains/count@{DIGEST}\n  route    parallel (2 stops)\n  expires  2026-11-24T12:00:00Z\n  stop  station  status   result  reason\n  0     umc      running  -       -\n  1     radboud  denied   -       no\n"
    );
    assert_eq!(rendered, expected);
}
