//! The hub's API called in-process (the router, no socket), each test on SQLite in a temporary
//! directory and again on a PostgreSQL server of its own:
//! job flows, authentication and tenancy, leases, expiry, idempotent uploads and restarts.
//!
//! One file over the project's ~800-line rule on purpose: every file in `tests/` is its own
//! test binary, linked against the hub, axum and SQLite, and CI pays for each link. The harness
//! already lives in `support/`; what is left is one test per behaviour, in the groups above.

mod support;

use std::time::Duration;

use axum::http::StatusCode;
use pht_api::{requests, v1, Credentials};
use pht_core::job::RouteMode;
use pht_core::{Digest, KeyAlgorithm, SigningKey};
use support::{admin, envelope_bytes, job, station_id, TestHub, PICKUP_LEASE};
use uuid::Uuid;

const NO_WAIT: Duration = Duration::ZERO;

async fn parallel_job_runs_at_three_stations_and_results_come_back(hub: TestHub) {
    let stations = [
        hub.add_station("umc-a", KeyAlgorithm::Ed25519).await,
        hub.add_station("umc-b", KeyAlgorithm::P256).await,
        hub.add_station("umc-c", KeyAlgorithm::Ed25519).await,
    ];
    let (researcher, researcher_key) = hub.add_researcher("alice").await;
    let job_id = Uuid::new_v4();
    let envelope = job(
        job_id,
        RouteMode::Parallel,
        &["umc-a", "umc-b", "umc-c"],
        hub.clock.now(),
    )
    .sign(&researcher_key);
    let submitted_bytes = envelope_bytes(&envelope);
    let submitted: v1::JobStatus = hub
        .call(
            &requests::submit_job_bytes(submitted_bytes.clone()),
            &researcher,
        )
        .await
        .expect_status(StatusCode::CREATED)
        .json();
    assert_eq!(submitted.status, v1::JobState::Active);
    assert!(submitted
        .stops
        .iter()
        .all(|stop| stop.status == v1::StopState::Ready));

    for (station_idx, station) in stations.iter().enumerate() {
        let item = hub
            .poll(station, NO_WAIT)
            .await
            .expect("work for every station");
        assert_eq!((item.job_id, item.stop_index), (job_id, station_idx as u32));
        assert_eq!(item.envelope.get().as_bytes(), submitted_bytes.as_slice());
        assert_eq!(item.previous_state, None);
        let running = hub
            .call(
                &requests::report_stop_status(
                    job_id,
                    &station_id(station),
                    &v1::StopStatusReport {
                        status: v1::ReportedStopState::Running,
                        reason: None,
                    },
                ),
                station,
            )
            .await
            .expect_status(StatusCode::OK)
            .json::<v1::StopStatus>();
        assert_eq!(running.status, v1::StopState::Running);
    }
    for station in &stations {
        let bundle = format!("sealed bundle of {}", station_id(station));
        let receipt: v1::ResultReceipt = hub
            .upload(station, job_id, bundle.as_bytes(), None)
            .await
            .expect_status(StatusCode::OK)
            .json();
        assert_eq!(receipt.result.digest, Digest::of(bundle.as_bytes()));
        assert!(!receipt.already_stored);
    }
    let status = hub.status(&researcher, job_id).await;
    assert_eq!(status.status, v1::JobState::Completed);
    let results: v1::ResultList = hub
        .call(&requests::list_results(job_id), &researcher)
        .await
        .expect_status(StatusCode::OK)
        .json();
    assert_eq!(results.results.len(), 3);
    let downloaded = hub
        .call(&requests::download_result(job_id, "umc-b"), &researcher)
        .await
        .expect_status(StatusCode::OK);
    assert_eq!(downloaded.body.as_ref(), b"sealed bundle of umc-b");
    assert_eq!(
        downloaded.headers["content-digest"].to_str().unwrap(),
        pht_core::httpsig::content_digest(b"sealed bundle of umc-b")
    );
}

async fn sequential_job_hands_state_on_and_readies_each_stop_only_after_the_previous_upload(
    hub: TestHub,
) {
    let first = hub.add_station("first", KeyAlgorithm::Ed25519).await;
    let second = hub.add_station("second", KeyAlgorithm::Ed25519).await;
    let third = hub.add_station("third", KeyAlgorithm::Ed25519).await;
    let (researcher, researcher_key) = hub.add_researcher("alice").await;
    let job_id = Uuid::new_v4();
    let envelope = job(
        job_id,
        RouteMode::Sequential,
        &["first", "second", "third"],
        hub.clock.now(),
    )
    .sign(&researcher_key);
    hub.call(&requests::submit_job(&envelope), &researcher)
        .await
        .expect_status(StatusCode::CREATED);

    assert!(hub.poll(&second, NO_WAIT).await.is_none());
    assert!(hub.poll(&third, NO_WAIT).await.is_none());
    let item = hub.poll(&first, NO_WAIT).await.unwrap();
    assert_eq!(item.stop_index, 0);
    let early = hub.upload(&second, job_id, b"too early", None).await;
    assert_eq!(
        early.expect_status(StatusCode::CONFLICT).error().code,
        "conflict"
    );

    let receipt: v1::ResultReceipt = hub
        .upload(&first, job_id, b"result 1", Some(b"state for second"))
        .await
        .expect_status(StatusCode::OK)
        .json();
    assert_eq!(receipt.next_station.as_deref(), Some("second"));
    assert_eq!(receipt.next_state, Some(Digest::of(b"state for second")));
    assert!(hub.poll(&third, NO_WAIT).await.is_none());

    let item = hub.poll(&second, NO_WAIT).await.unwrap();
    assert_eq!(item.stop_index, 1);
    assert_eq!(item.previous_state, Some(Digest::of(b"state for second")));
    let state = hub
        .call(&requests::fetch_stop_state(job_id, "second"), &second)
        .await
        .expect_status(StatusCode::OK);
    assert_eq!(state.body.as_ref(), b"state for second");
    hub.call(&requests::fetch_stop_state(job_id, "first"), &first)
        .await
        .expect_status(StatusCode::NOT_FOUND);

    hub.upload(&second, job_id, b"result 2", Some(b"state for third"))
        .await
        .expect_status(StatusCode::OK);
    let item = hub.poll(&third, NO_WAIT).await.unwrap();
    assert_eq!(item.previous_state, Some(Digest::of(b"state for third")));
    let last = hub
        .upload(&third, job_id, b"result 3", Some(b"no next stop"))
        .await;
    assert!(last
        .expect_status(StatusCode::UNPROCESSABLE_ENTITY)
        .error()
        .message
        .starts_with("`state`"));
    hub.upload(&third, job_id, b"result 3", None)
        .await
        .expect_status(StatusCode::OK);
    assert_eq!(
        hub.status(&researcher, job_id).await.status,
        v1::JobState::Completed
    );
}

async fn denied_stop_ends_a_sequential_route_and_skips_the_rest(hub: TestHub) {
    let first = hub.add_station("first", KeyAlgorithm::Ed25519).await;
    hub.add_station("second", KeyAlgorithm::Ed25519).await;
    let (researcher, researcher_key) = hub.add_researcher("alice").await;
    let job_id = Uuid::new_v4();
    let envelope = job(
        job_id,
        RouteMode::Sequential,
        &["first", "second"],
        hub.clock.now(),
    )
    .sign(&researcher_key);
    hub.call(&requests::submit_job(&envelope), &researcher)
        .await
        .expect_status(StatusCode::CREATED);
    hub.poll(&first, NO_WAIT).await.unwrap();
    let without_reason = hub
        .call(
            &requests::report_stop_status(
                job_id,
                "first",
                &v1::StopStatusReport {
                    status: v1::ReportedStopState::Denied,
                    reason: None,
                },
            ),
            &first,
        )
        .await;
    assert!(without_reason
        .expect_status(StatusCode::UNPROCESSABLE_ENTITY)
        .error()
        .message
        .starts_with("`reason`"));
    hub.call(
        &requests::report_stop_status(
            job_id,
            "first",
            &v1::StopStatusReport {
                status: v1::ReportedStopState::Denied,
                reason: Some("train signer not trusted by policy".into()),
            },
        ),
        &first,
    )
    .await
    .expect_status(StatusCode::OK);
    let status = hub.status(&researcher, job_id).await;
    assert_eq!(status.status, v1::JobState::Incomplete);
    assert_eq!(status.stops[0].status, v1::StopState::Denied);
    assert_eq!(
        status.stops[0].reason.as_deref(),
        Some("train signer not trusted by policy")
    );
    assert_eq!(status.stops[1].status, v1::StopState::Skipped);
    assert_eq!(
        status.stops[1].reason.as_deref(),
        Some("stop 0 at station `first` ended as denied")
    );
}

async fn unsigned_request_is_refused(hub: TestHub) {
    hub.add_station("a", KeyAlgorithm::Ed25519).await;
    let answer = hub
        .call(
            &requests::poll_work("a", NO_WAIT),
            &pht_api::Credentials::Anonymous,
        )
        .await
        .expect_status(StatusCode::UNAUTHORIZED);
    let error = answer.error();
    assert_eq!(error.code, "unauthenticated");
    assert!(
        error.message.contains("signature-input"),
        "{}",
        error.message
    );
    assert_eq!(
        answer.headers["x-request-id"].to_str().unwrap(),
        error.request_id
    );
}

async fn request_signed_with_the_wrong_key_is_refused(hub: TestHub) {
    hub.add_station("a", KeyAlgorithm::Ed25519).await;
    let impostor = pht_api::Credentials::Station {
        station_id: "a".into(),
        key: SigningKey::generate(KeyAlgorithm::Ed25519),
    };
    let answer = hub
        .call(&requests::poll_work("a", NO_WAIT), &impostor)
        .await
        .expect_status(StatusCode::UNAUTHORIZED);
    assert!(answer.error().message.contains("does not verify"));
}

async fn request_with_a_tampered_body_is_refused(hub: TestHub) {
    let station = hub.add_station("a", KeyAlgorithm::Ed25519).await;
    let report = v1::StopStatusReport {
        status: v1::ReportedStopState::Running,
        reason: None,
    };
    let request = requests::report_stop_status(Uuid::new_v4(), "a", &report);
    let headers = station
        .authentication_headers(&request, hub.clock.now(), "n-1")
        .unwrap();
    let tampered = pht_api::HubRequest {
        body: br#"{"status":"failed","reason":"x"}"#.to_vec(),
        ..request
    };
    let answer = hub
        .call_with_headers(&tampered, &headers)
        .await
        .expect_status(StatusCode::UNAUTHORIZED);
    assert!(answer.error().message.contains("content-digest"));
}

async fn replayed_nonce_is_refused(hub: TestHub) {
    let station = hub.add_station("a", KeyAlgorithm::Ed25519).await;
    let request = requests::poll_work("a", NO_WAIT);
    let now = hub.clock.now();
    hub.call_signed(&request, &station, now, "once")
        .await
        .expect_status(StatusCode::NO_CONTENT);
    let replay = hub
        .call_signed(&request, &station, now, "once")
        .await
        .expect_status(StatusCode::UNAUTHORIZED);
    assert!(replay.error().message.contains("replayed"));
}

/// Nonces are written in batches of whatever requests arrived together: among concurrent
/// requests that repeat one nonce exactly one is served, and every request with its own is.
async fn concurrent_replays_are_refused_but_one_and_fresh_nonces_all_pass(hub: TestHub) {
    let station = hub.add_station("a", KeyAlgorithm::Ed25519).await;
    let request = requests::poll_work("a", NO_WAIT);
    let now = hub.clock.now();
    let replays = (0..12).map(|_| hub.call_signed(&request, &station, now, "shared-nonce"));
    let own: Vec<String> = (0..12).map(|i| format!("own-{i}")).collect();
    let fresh = own
        .iter()
        .map(|nonce| hub.call_signed(&request, &station, now, nonce));
    let (replays, fresh) = tokio::join!(
        futures_util::future::join_all(replays),
        futures_util::future::join_all(fresh)
    );
    let served = |answers: &[support::Answer]| {
        answers
            .iter()
            .filter(|answer| answer.status == StatusCode::NO_CONTENT)
            .count()
    };
    assert_eq!(served(&replays), 1);
    for refused in replays
        .iter()
        .filter(|a| a.status != StatusCode::NO_CONTENT)
    {
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        assert!(refused.error().message.contains("replayed"));
    }
    assert_eq!(served(&fresh), 12);
    // And later, once written, each is a replay.
    hub.call_signed(&request, &station, now, "own-3")
        .await
        .expect_status(StatusCode::UNAUTHORIZED);
}

/// A replica keeps the stations and researchers it has read, but not that one was missing: one
/// registered through another replica is known at once.
async fn registration_through_one_replica_is_known_on_another_at_once(hub: TestHub) {
    let other = hub.replica().await;
    let key = SigningKey::generate(KeyAlgorithm::Ed25519);
    let station = Credentials::Station {
        station_id: "late".into(),
        key: SigningKey::from_pkcs8_pem(&key.to_pkcs8_pem(None).unwrap(), None).unwrap(),
    };
    other
        .call(&requests::poll_work("late", NO_WAIT), &station)
        .await
        .expect_status(StatusCode::UNAUTHORIZED);
    let registration = v1::RegisterStationRequest {
        id: "late".into(),
        public_key_pem: key.public_key().to_pem(),
        age_recipient: age::x25519::Identity::generate().to_public().to_string(),
    };
    hub.call(&requests::register_station(&registration), &admin())
        .await
        .expect_status(StatusCode::CREATED);
    other
        .call(&requests::poll_work("late", NO_WAIT), &station)
        .await
        .expect_status(StatusCode::NO_CONTENT);
    // A job naming it, submitted through the replica that first found it missing, is taken.
    let (alice, alice_key) = hub.add_researcher("alice").await;
    let envelope = job(
        Uuid::new_v4(),
        RouteMode::Parallel,
        &["late"],
        hub.clock.now(),
    )
    .sign(&alice_key);
    other
        .call(&requests::submit_job(&envelope), &alice)
        .await
        .expect_status(StatusCode::CREATED);
    drop(other);
}

/// The submission's answer is built from what was stored, not read back: it must equal the
/// status read afterwards, stop for stop.
async fn submission_answer_equals_the_stored_status(hub: TestHub) {
    for id in ["a", "b", "c"] {
        hub.add_station(id, KeyAlgorithm::Ed25519).await;
    }
    let (alice, alice_key) = hub.add_researcher("alice").await;
    for mode in [RouteMode::Parallel, RouteMode::Sequential] {
        let job_id = Uuid::new_v4();
        let envelope = job(job_id, mode, &["a", "b", "c"], hub.clock.now()).sign(&alice_key);
        let answered: v1::JobStatus = hub
            .call(&requests::submit_job(&envelope), &alice)
            .await
            .expect_status(StatusCode::CREATED)
            .json();
        assert_eq!(answered, hub.status(&alice, job_id).await);
        assert_eq!(answered.stops.len(), 3);
    }
}

async fn signature_created_outside_the_clock_skew_is_refused(hub: TestHub) {
    let station = hub.add_station("a", KeyAlgorithm::Ed25519).await;
    let request = requests::poll_work("a", NO_WAIT);
    for offset in [chrono::Duration::minutes(-6), chrono::Duration::minutes(6)] {
        let answer = hub
            .call_signed(
                &request,
                &station,
                hub.clock.now() + offset,
                &pht_api::auth::random_nonce(),
            )
            .await
            .expect_status(StatusCode::UNAUTHORIZED);
        assert!(answer.error().message.contains("clock"), "{offset}");
    }
}

async fn nobody_sees_another_tenants_work_or_jobs(hub: TestHub) {
    let station_a = hub.add_station("a", KeyAlgorithm::Ed25519).await;
    hub.add_station("b", KeyAlgorithm::Ed25519).await;
    let (alice, alice_key) = hub.add_researcher("alice").await;
    let (mallory, _) = hub.add_researcher("mallory").await;
    let job_id = Uuid::new_v4();
    let envelope = job(job_id, RouteMode::Parallel, &["a", "b"], hub.clock.now()).sign(&alice_key);
    hub.call(&requests::submit_job(&envelope), &alice)
        .await
        .expect_status(StatusCode::CREATED);

    let forbidden = [
        (requests::poll_work("b", NO_WAIT), &station_a),
        (requests::fetch_stop_state(job_id, "b"), &station_a),
        (requests::upload_result(job_id, "b", b"x", None), &station_a),
        (requests::job_status(job_id), &station_a),
        (requests::job_status(job_id), &mallory),
        (requests::list_results(job_id), &mallory),
        (requests::download_result(job_id, "a"), &mallory),
        (requests::cancel_job(job_id), &mallory),
        (requests::poll_work("a", NO_WAIT), &alice),
    ];
    for (request, credentials) in forbidden {
        let answer = hub.call(&request, credentials).await;
        assert_eq!(
            answer.status,
            StatusCode::FORBIDDEN,
            "{} {} as {:?}: {}",
            request.method,
            request.path,
            credentials.keyid(),
            String::from_utf8_lossy(&answer.body)
        );
    }
    hub.call(&requests::job_status(Uuid::new_v4()), &alice)
        .await
        .expect_status(StatusCode::NOT_FOUND);
    hub.call(&requests::station_directory("nowhere"), &alice)
        .await
        .expect_status(StatusCode::NOT_FOUND);
    let directory: v1::StationDirectoryEntry = hub
        .call(&requests::station_directory("b"), &station_a)
        .await
        .expect_status(StatusCode::OK)
        .json();
    assert!(directory.age_recipient.starts_with("age1"));
}

async fn envelope_signed_by_an_unregistered_key_is_refused(hub: TestHub) {
    hub.add_station("a", KeyAlgorithm::Ed25519).await;
    let (alice, _) = hub.add_researcher("alice").await;
    let stranger = SigningKey::generate(KeyAlgorithm::Ed25519);
    let envelope =
        job(Uuid::new_v4(), RouteMode::Parallel, &["a"], hub.clock.now()).sign(&stranger);
    let answer = hub
        .call(&requests::submit_job(&envelope), &alice)
        .await
        .expect_status(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(answer.error().message.starts_with("`signatures`"));
}

async fn invalid_submissions_name_the_field(hub: TestHub) {
    hub.add_station("a", KeyAlgorithm::Ed25519).await;
    let (alice, alice_key) = hub.add_researcher("alice").await;
    let now = hub.clock.now();
    let unregistered = job(Uuid::new_v4(), RouteMode::Parallel, &["a", "ghost"], now);
    let mut expired = job(Uuid::new_v4(), RouteMode::Parallel, &["a"], now);
    expired.issued_at = now - chrono::Duration::hours(2);
    expired.expires_at = now - chrono::Duration::hours(1);
    // Regression: a job whose recipient is no age recipient was accepted with 201, and its
    // stations ran the train on their data before sealing failed.
    let mut garbage_recipient = job(Uuid::new_v4(), RouteMode::Parallel, &["a"], now);
    garbage_recipient.recipient = "age1garbage".into();
    for (job, field) in [
        (unregistered, "`route.stations`"),
        (expired, "`expires_at`"),
        (garbage_recipient, "`recipient`"),
    ] {
        let answer = hub
            .call(&requests::submit_job(&job.sign(&alice_key)), &alice)
            .await
            .expect_status(StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            answer.error().message.starts_with(field),
            "{}",
            answer.error().message
        );
    }
    let malformed = hub
        .call(
            &requests::submit_job_bytes(br#"{"payload": "e30="}"#.to_vec()),
            &alice,
        )
        .await
        .expect_status(StatusCode::BAD_REQUEST);
    let message = malformed.error().message;
    assert!(message.contains("missing field `payloadType`"), "{message}");
    let job_id = Uuid::new_v4();
    let envelope = job(job_id, RouteMode::Parallel, &["a"], now).sign(&alice_key);
    let first: v1::JobStatus = hub
        .call(&requests::submit_job(&envelope), &alice)
        .await
        .expect_status(StatusCode::CREATED)
        .json();
    // The same envelope again is a client's retry: answered as before, no second job.
    let retried: v1::JobStatus = hub
        .call(&requests::submit_job(&envelope), &alice)
        .await
        .expect_status(StatusCode::OK)
        .json();
    assert_eq!(retried.job_id, first.job_id);
    assert_eq!(retried.stops.len(), first.stops.len());
    // The same id with another envelope is refused.
    let other = job(
        job_id,
        RouteMode::Parallel,
        &["a"],
        now + chrono::Duration::seconds(1),
    )
    .sign(&alice_key);
    let refused = hub
        .call(&requests::submit_job(&other), &alice)
        .await
        .expect_status(StatusCode::CONFLICT);
    assert!(
        refused.error().message.contains("another envelope"),
        "{}",
        refused.error().message
    );
}

async fn work_not_picked_up_before_the_job_expires_expires(hub: TestHub) {
    let station = hub.add_station("a", KeyAlgorithm::Ed25519).await;
    hub.add_station("b", KeyAlgorithm::Ed25519).await;
    let (alice, alice_key) = hub.add_researcher("alice").await;
    let job_id = Uuid::new_v4();
    let envelope =
        job(job_id, RouteMode::Sequential, &["a", "b"], hub.clock.now()).sign(&alice_key);
    hub.call(&requests::submit_job(&envelope), &alice)
        .await
        .expect_status(StatusCode::CREATED);
    hub.advance(Duration::from_secs(2 * 3600));
    assert!(hub.poll(&station, NO_WAIT).await.is_none());
    let status = hub.status(&alice, job_id).await;
    assert_eq!(status.status, v1::JobState::Incomplete);
    assert!(status
        .stops
        .iter()
        .all(|stop| stop.status == v1::StopState::Expired));
}

async fn a_leased_stop_is_offered_once_and_again_after_the_lease_lapses(hub: TestHub) {
    let station = hub.add_station("a", KeyAlgorithm::Ed25519).await;
    let (alice, alice_key) = hub.add_researcher("alice").await;
    let job_id = Uuid::new_v4();
    let envelope = job(job_id, RouteMode::Parallel, &["a"], hub.clock.now()).sign(&alice_key);
    hub.call(&requests::submit_job(&envelope), &alice)
        .await
        .expect_status(StatusCode::CREATED);
    let first = hub.poll(&station, NO_WAIT).await.unwrap();
    assert!(hub.poll(&station, NO_WAIT).await.is_none());
    assert_eq!(
        hub.status(&alice, job_id).await.stops[0].status,
        v1::StopState::Leased
    );
    hub.advance(PICKUP_LEASE + Duration::from_secs(1));
    let again = hub.poll(&station, NO_WAIT).await.unwrap();
    assert_eq!(
        (again.job_id, again.stop_index),
        (first.job_id, first.stop_index)
    );
    assert!(again.lease_expires_at > first.lease_expires_at);
    assert!(hub.poll(&station, NO_WAIT).await.is_none());
}

/// Polls one after another, with no wait, take a station's stops one each, then
/// find none; work submitted after an empty poll is handed to the next poll at once.
async fn back_to_back_polls_get_every_stop_and_new_work_at_once(hub: TestHub) {
    let station = hub.add_station("a", KeyAlgorithm::Ed25519).await;
    let (alice, alice_key) = hub.add_researcher("alice").await;
    let mut submitted = Vec::new();
    for _ in 0..3 {
        let job_id = Uuid::new_v4();
        let envelope = job(job_id, RouteMode::Parallel, &["a"], hub.clock.now()).sign(&alice_key);
        hub.call(&requests::submit_job(&envelope), &alice)
            .await
            .expect_status(StatusCode::CREATED);
        submitted.push(job_id);
    }
    let mut handed_out = Vec::new();
    for _ in 0..3 {
        handed_out.push(
            hub.poll(&station, NO_WAIT)
                .await
                .expect("a stop left")
                .job_id,
        );
    }
    assert!(hub.poll(&station, NO_WAIT).await.is_none());
    assert!(hub.poll(&station, NO_WAIT).await.is_none());
    handed_out.sort();
    submitted.sort();
    assert_eq!(handed_out, submitted);
    let job_id = Uuid::new_v4();
    let envelope = job(job_id, RouteMode::Parallel, &["a"], hub.clock.now()).sign(&alice_key);
    hub.call(&requests::submit_job(&envelope), &alice)
        .await
        .expect_status(StatusCode::CREATED);
    assert_eq!(
        hub.poll(&station, NO_WAIT)
            .await
            .expect("the new job")
            .job_id,
        job_id
    );
    assert!(hub.poll(&station, NO_WAIT).await.is_none());
}

async fn concurrent_polls_never_share_a_stop(hub: TestHub) {
    let station = hub.add_station("a", KeyAlgorithm::Ed25519).await;
    let (alice, alice_key) = hub.add_researcher("alice").await;
    let n_jobs = 5;
    for _ in 0..n_jobs {
        let envelope =
            job(Uuid::new_v4(), RouteMode::Parallel, &["a"], hub.clock.now()).sign(&alice_key);
        hub.call(&requests::submit_job(&envelope), &alice)
            .await
            .expect_status(StatusCode::CREATED);
    }
    let polls = (0..3 * n_jobs).map(|_| hub.poll(&station, NO_WAIT));
    let items: Vec<_> = futures_util::future::join_all(polls)
        .await
        .into_iter()
        .flatten()
        .collect();
    let mut job_ids: Vec<Uuid> = items.iter().map(|item| item.job_id).collect();
    job_ids.sort();
    job_ids.dedup();
    assert_eq!((items.len(), job_ids.len()), (n_jobs, n_jobs));
}

async fn long_poll_wakes_when_work_arrives(hub: TestHub) {
    let station = hub.add_station("a", KeyAlgorithm::Ed25519).await;
    let (alice, alice_key) = hub.add_researcher("alice").await;
    let job_id = Uuid::new_v4();
    let envelope = job(job_id, RouteMode::Parallel, &["a"], hub.clock.now()).sign(&alice_key);
    let poll = hub.poll(&station, Duration::from_secs(30));
    let submit = async {
        tokio::task::yield_now().await;
        hub.call(&requests::submit_job(&envelope), &alice)
            .await
            .expect_status(StatusCode::CREATED);
    };
    let (item, ()) = tokio::join!(poll, submit);
    assert_eq!(item.unwrap().job_id, job_id);
}

async fn repeated_result_upload_is_stored_once(hub: TestHub) {
    let station = hub.add_station("a", KeyAlgorithm::Ed25519).await;
    let (alice, alice_key) = hub.add_researcher("alice").await;
    let job_id = Uuid::new_v4();
    let envelope = job(job_id, RouteMode::Parallel, &["a"], hub.clock.now()).sign(&alice_key);
    hub.call(&requests::submit_job(&envelope), &alice)
        .await
        .expect_status(StatusCode::CREATED);
    hub.poll(&station, NO_WAIT).await.unwrap();
    let first: v1::ResultReceipt = hub
        .upload(&station, job_id, b"bundle", None)
        .await
        .expect_status(StatusCode::OK)
        .json();
    hub.advance(Duration::from_secs(5));
    let retry: v1::ResultReceipt = hub
        .upload(&station, job_id, b"bundle", None)
        .await
        .expect_status(StatusCode::OK)
        .json();
    assert!(retry.already_stored);
    assert_eq!(retry.result, first.result);
    hub.upload(&station, job_id, b"another bundle", None)
        .await
        .expect_status(StatusCode::CONFLICT);
    let results: v1::ResultList = hub
        .call(&requests::list_results(job_id), &alice)
        .await
        .json();
    assert_eq!(results.results.len(), 1);
    let n_blobs = std::fs::read_dir(hub.dir.path().join("blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(n_blobs, 1);
}

async fn hub_restart_loses_no_job_or_result(hub: TestHub) {
    let station_a = hub.add_station("a", KeyAlgorithm::Ed25519).await;
    let station_b = hub.add_station("b", KeyAlgorithm::Ed25519).await;
    let (alice, alice_key) = hub.add_researcher("alice").await;
    let job_id = Uuid::new_v4();
    let envelope =
        job(job_id, RouteMode::Sequential, &["a", "b"], hub.clock.now()).sign(&alice_key);
    hub.call(&requests::submit_job(&envelope), &alice)
        .await
        .expect_status(StatusCode::CREATED);
    hub.poll(&station_a, NO_WAIT).await.unwrap();
    hub.upload(&station_a, job_id, b"bundle a", Some(b"state for b"))
        .await
        .expect_status(StatusCode::OK);
    let before = hub.status(&alice, job_id).await;

    let hub = hub.restart().await;
    assert_eq!(hub.status(&alice, job_id).await, before);
    let downloaded = hub
        .call(&requests::download_result(job_id, "a"), &alice)
        .await
        .expect_status(StatusCode::OK);
    assert_eq!(downloaded.body.as_ref(), b"bundle a");
    let item = hub.poll(&station_b, NO_WAIT).await.unwrap();
    assert_eq!(item.previous_state, Some(Digest::of(b"state for b")));
    let state = hub
        .call(&requests::fetch_stop_state(job_id, "b"), &station_b)
        .await
        .expect_status(StatusCode::OK);
    assert_eq!(state.body.as_ref(), b"state for b");
}

async fn cancelled_job_refuses_further_results(hub: TestHub) {
    let station = hub.add_station("a", KeyAlgorithm::Ed25519).await;
    let (alice, alice_key) = hub.add_researcher("alice").await;
    let job_id = Uuid::new_v4();
    let envelope = job(job_id, RouteMode::Parallel, &["a"], hub.clock.now()).sign(&alice_key);
    hub.call(&requests::submit_job(&envelope), &alice)
        .await
        .expect_status(StatusCode::CREATED);
    hub.poll(&station, NO_WAIT).await.unwrap();
    let cancelled: v1::JobStatus = hub
        .call(&requests::cancel_job(job_id), &alice)
        .await
        .expect_status(StatusCode::OK)
        .json();
    assert_eq!(cancelled.status, v1::JobState::Cancelled);
    assert_eq!(cancelled.stops[0].status, v1::StopState::Cancelled);
    hub.upload(&station, job_id, b"late", None)
        .await
        .expect_status(StatusCode::CONFLICT);
}

async fn admin_endpoints_need_the_token_and_validate_registrations(hub: TestHub) {
    let wrong = pht_api::Credentials::Admin {
        token: "not-the-admin-token".into(),
    };
    hub.call(&requests::list_stations(), &wrong)
        .await
        .expect_status(StatusCode::UNAUTHORIZED);
    let key = SigningKey::generate(KeyAlgorithm::Ed25519);
    let bad_recipient = v1::RegisterStationRequest {
        id: "a".into(),
        public_key_pem: key.public_key().to_pem(),
        age_recipient: "age1nope".into(),
    };
    let answer = hub
        .call(&requests::register_station(&bad_recipient), &admin())
        .await
        .expect_status(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(answer.error().message.starts_with("`age_recipient`"));
    let bad_id = v1::RegisterStationRequest {
        id: "../etc".into(),
        age_recipient: age::x25519::Identity::generate().to_public().to_string(),
        ..bad_recipient
    };
    let answer = hub
        .call(&requests::register_station(&bad_id), &admin())
        .await
        .expect_status(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(answer.error().message.starts_with("`id`"));
    let unknown_field = pht_api::HubRequest {
        body: br#"{"id":"a","public_key_pem":"x","age_recipient":"y","colour":"red"}"#.to_vec(),
        ..requests::register_station(&bad_id)
    };
    let answer = hub
        .call(&unknown_field, &admin())
        .await
        .expect_status(StatusCode::BAD_REQUEST);
    assert!(answer.error().message.contains("unknown field `colour`"));
    let good = v1::RegisterStationRequest {
        id: "a".into(),
        ..bad_id
    };
    hub.call(&requests::register_station(&good), &admin())
        .await
        .expect_status(StatusCode::CREATED);
    hub.call(&requests::register_station(&good), &admin())
        .await
        .expect_status(StatusCode::OK);
    let rekeyed = v1::RegisterStationRequest {
        public_key_pem: SigningKey::generate(KeyAlgorithm::Ed25519)
            .public_key()
            .to_pem(),
        ..good
    };
    hub.call(&requests::register_station(&rekeyed), &admin())
        .await
        .expect_status(StatusCode::CONFLICT);
    let stations: v1::StationList = hub
        .call(&requests::list_stations(), &admin())
        .await
        .expect_status(StatusCode::OK)
        .json();
    assert_eq!(stations.stations.len(), 1);
}

async fn job_status_response_snapshot(hub: TestHub) {
    let station_a = hub.add_station("umc-a", KeyAlgorithm::Ed25519).await;
    let station_b = hub.add_station("umc-b", KeyAlgorithm::Ed25519).await;
    let (alice, alice_key) = hub.add_researcher("alice").await;
    let job_id = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
    let envelope = job(
        job_id,
        RouteMode::Parallel,
        &["umc-a", "umc-b"],
        hub.clock.now(),
    )
    .sign(&alice_key);
    hub.call(&requests::submit_job(&envelope), &alice)
        .await
        .expect_status(StatusCode::CREATED);
    hub.advance(Duration::from_secs(10));
    hub.poll(&station_a, NO_WAIT).await.unwrap();
    hub.upload(&station_a, job_id, b"sealed", None)
        .await
        .expect_status(StatusCode::OK);
    hub.advance(Duration::from_secs(10));
    hub.poll(&station_b, NO_WAIT).await.unwrap();
    hub.call(
        &requests::report_stop_status(
            job_id,
            "umc-b",
            &v1::StopStatusReport {
                status: v1::ReportedStopState::Withheld,
                reason: Some("free text output needs review".into()),
            },
        ),
        &station_b,
    )
    .await
    .expect_status(StatusCode::OK);
    let answer = hub
        .call(&requests::job_status(job_id), &alice)
        .await
        .expect_status(StatusCode::OK);
    // Parsed into the wire type (which refuses unknown fields) to keep its field order.
    let pretty = serde_json::to_string_pretty(&answer.json::<v1::JobStatus>()).unwrap();
    expect_test::expect![[r#"
        {
          "job_id": "01234567-89ab-cdef-0123-456789abcdef",
          "researcher": "alice",
          "train": {
            "repository": "127.0.0.1:5000/trains/count",
            "digest": "sha256:9298acbd35f28db71ba06226fea80ed9690681b5252cdeaab37e5ee635596785"
          },
          "mode": "parallel",
          "issued_at": "2026-11-23T12:00:00Z",
          "expires_at": "2026-11-23T13:00:00Z",
          "submitted_at": "2026-11-23T12:00:00Z",
          "status": "active",
          "stops": [
            {
              "index": 0,
              "station": "umc-a",
              "status": "done",
              "reason": null,
              "updated_at": "2026-11-23T12:00:10Z",
              "input_state": null,
              "result": {
                "station": "umc-a",
                "stop_index": 0,
                "digest": "sha256:c9d0036bed6744bcdf692fc980d8717d7e5f5a4f4e8266b4a84982602fb1cd09",
                "size_bytes": 6,
                "uploaded_at": "2026-11-23T12:00:10Z"
              }
            },
            {
              "index": 1,
              "station": "umc-b",
              "status": "withheld",
              "reason": "free text output needs review",
              "updated_at": "2026-11-23T12:00:20Z",
              "input_state": null,
              "result": null
            }
          ]
        }"#]]
    .assert_eq(&pretty);
}

async fn internal_failure_answers_500_with_a_request_id_and_no_internals(hub: TestHub) {
    let station = hub.add_station("a", KeyAlgorithm::Ed25519).await;
    let (alice, alice_key) = hub.add_researcher("alice").await;
    let job_id = Uuid::new_v4();
    let envelope = job(job_id, RouteMode::Parallel, &["a"], hub.clock.now()).sign(&alice_key);
    hub.call(&requests::submit_job(&envelope), &alice)
        .await
        .expect_status(StatusCode::CREATED);
    hub.upload(&station, job_id, b"bundle", None)
        .await
        .expect_status(StatusCode::OK);
    let blob_path = hub
        .dir
        .path()
        .join("blobs/sha256")
        .join(Digest::of(b"bundle").hex());
    std::fs::write(&blob_path, b"damaged on disk").unwrap();
    let answer = hub
        .call(&requests::download_result(job_id, "a"), &alice)
        .await
        .expect_status(StatusCode::INTERNAL_SERVER_ERROR);
    let error = answer.error();
    assert_eq!(error.code, "internal");
    assert_eq!(
        answer.headers["x-request-id"].to_str().unwrap(),
        error.request_id
    );
    assert!(!error.message.contains("sha256"), "{}", error.message);
    assert!(!error.message.contains(hub.dir.path().to_str().unwrap()));
}

// Every test above, once on each store.
crate::on_both_stores!(
    parallel_job_runs_at_three_stations_and_results_come_back,
    back_to_back_polls_get_every_stop_and_new_work_at_once,
    sequential_job_hands_state_on_and_readies_each_stop_only_after_the_previous_upload,
    denied_stop_ends_a_sequential_route_and_skips_the_rest,
    unsigned_request_is_refused,
    request_signed_with_the_wrong_key_is_refused,
    request_with_a_tampered_body_is_refused,
    replayed_nonce_is_refused,
    concurrent_replays_are_refused_but_one_and_fresh_nonces_all_pass,
    registration_through_one_replica_is_known_on_another_at_once,
    submission_answer_equals_the_stored_status,
    signature_created_outside_the_clock_skew_is_refused,
    nobody_sees_another_tenants_work_or_jobs,
    envelope_signed_by_an_unregistered_key_is_refused,
    invalid_submissions_name_the_field,
    work_not_picked_up_before_the_job_expires_expires,
    a_leased_stop_is_offered_once_and_again_after_the_lease_lapses,
    concurrent_polls_never_share_a_stop,
    long_poll_wakes_when_work_arrives,
    repeated_result_upload_is_stored_once,
    hub_restart_loses_no_job_or_result,
    cancelled_job_refuses_further_results,
    admin_endpoints_need_the_token_and_validate_registrations,
    job_status_response_snapshot,
    internal_failure_answers_500_with_a_request_id_and_no_internals,
);
