//! `GET /metrics` on a hub called in-process: requests counted under their route templates
//! (never a job, station or researcher id), jobs and stops by state on both stores, the blob
//! bytes, long-polls counted while they wait — also when their caller goes away, in-process and
//! over a real socket — and a hub with `metrics: false` answering 404.

mod support;

use std::time::Duration;

use axum::http::StatusCode;
use pht_api::requests::HttpMethod;
use pht_api::{requests, v1, Credentials, HubRequest};
use pht_core::job::RouteMode;
use pht_core::KeyAlgorithm;
use support::{job, station_id, TestHub};
use uuid::Uuid;

const NO_WAIT: Duration = Duration::ZERO;

fn get(path: &str) -> HubRequest {
    HubRequest {
        method: HttpMethod::Get,
        path: path.into(),
        query: None,
        content_type: None,
        body: Vec::new(),
        timeout: Duration::from_secs(5),
    }
}

async fn scrape(hub: &TestHub) -> String {
    let answer = hub
        .call(&get("/metrics"), &Credentials::Anonymous)
        .await
        .expect_status(StatusCode::OK);
    assert_eq!(
        answer.headers["content-type"].to_str().unwrap(),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    String::from_utf8(answer.body.to_vec()).unwrap()
}

/// The exposition's lines that start with `prefix`, sorted (series come in no fixed order).
fn lines(text: &str, prefix: &str) -> String {
    let mut selected: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with(prefix))
        .collect();
    selected.sort();
    selected.join("\n")
}

async fn waiting_polls(hub: &TestHub) -> String {
    lines(&scrape(hub).await, "pht_hub_waiting_polls ")
}

/// Drives `poll` until the hub counts `expected` waiting polls; the poll must not answer first.
async fn until_waiting<F: std::future::Future>(
    hub: &TestHub,
    poll: &mut std::pin::Pin<&mut F>,
    expected: &str,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        tokio::select! {
            _ = poll.as_mut() => panic!("the long-poll answered before it was seen waiting"),
            () = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
        if waiting_polls(hub).await == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never saw `{expected}`"
        );
    }
}

fn report(status: v1::ReportedStopState, reason: Option<&str>) -> v1::StopStatusReport {
    v1::StopStatusReport {
        status,
        reason: reason.map(Into::into),
    }
}

async fn requests_are_counted_by_route_template_and_jobs_and_stops_by_state(hub: TestHub) {
    let umc_a = hub.add_station("umc-a", KeyAlgorithm::Ed25519).await;
    let umc_b = hub.add_station("umc-b", KeyAlgorithm::Ed25519).await;
    let (alice, alice_key) = hub.add_researcher("alice").await;
    let submit = |job_id: Uuid, mode: RouteMode, stations: &[&str]| {
        let envelope = job(job_id, mode, stations, hub.clock.now()).sign(&alice_key);
        let alice = &alice;
        let hub = &hub;
        async move {
            hub.call(&requests::submit_job(&envelope), alice)
                .await
                .expect_status(StatusCode::CREATED);
        }
    };

    // Completed: umc-a takes it, runs it and delivers.
    let completed = Uuid::new_v4();
    submit(completed, RouteMode::Parallel, &["umc-a"]).await;
    assert_eq!(hub.poll(&umc_a, NO_WAIT).await.unwrap().job_id, completed);
    hub.call(
        &requests::report_stop_status(
            completed,
            "umc-a",
            &report(v1::ReportedStopState::Running, None),
        ),
        &umc_a,
    )
    .await
    .expect_status(StatusCode::OK);
    let bundle = b"sealed bundle of umc-a";
    hub.upload(&umc_a, completed, bundle, None)
        .await
        .expect_status(StatusCode::OK);
    // Incomplete: umc-b's only stop fails.
    let incomplete = Uuid::new_v4();
    submit(incomplete, RouteMode::Parallel, &["umc-b"]).await;
    assert_eq!(hub.poll(&umc_b, NO_WAIT).await.unwrap().job_id, incomplete);
    hub.call(
        &requests::report_stop_status(
            incomplete,
            "umc-b",
            &report(v1::ReportedStopState::Failed, Some("the train exited 1")),
        ),
        &umc_b,
    )
    .await
    .expect_status(StatusCode::OK);
    // Active: two stops ready.
    let active = Uuid::new_v4();
    submit(active, RouteMode::Parallel, &["umc-a", "umc-b"]).await;
    // Cancelled: its ready and its pending stop end cancelled.
    let cancelled = Uuid::new_v4();
    submit(cancelled, RouteMode::Sequential, &["umc-b", "umc-a"]).await;
    hub.call(&requests::cancel_job(cancelled), &alice)
        .await
        .expect_status(StatusCode::OK);
    hub.status(&alice, active).await;
    // A path no route matches, with a station id in it.
    hub.call(&get("/v1/nowhere/umc-a"), &Credentials::Anonymous)
        .await
        .expect_status(StatusCode::NOT_FOUND);

    let text = scrape(&hub).await;
    expect_test::expect![[r#"
        pht_hub_jobs{state="active"} 1
        pht_hub_jobs{state="cancelled"} 1
        pht_hub_jobs{state="completed"} 1
        pht_hub_jobs{state="incomplete"} 1"#]]
    .assert_eq(&lines(&text, "pht_hub_jobs{"));
    expect_test::expect![[r#"
        pht_hub_stops{state="blocked"} 0
        pht_hub_stops{state="cancelled"} 2
        pht_hub_stops{state="denied"} 0
        pht_hub_stops{state="done"} 1
        pht_hub_stops{state="expired"} 0
        pht_hub_stops{state="failed"} 1
        pht_hub_stops{state="leased"} 0
        pht_hub_stops{state="pending"} 0
        pht_hub_stops{state="ready"} 2
        pht_hub_stops{state="running"} 0
        pht_hub_stops{state="skipped"} 0
        pht_hub_stops{state="withheld"} 0"#]]
    .assert_eq(&lines(&text, "pht_hub_stops{"));
    expect_test::expect![[r#"
        pht_hub_http_requests_total{route="/v1/admin/researchers",method="POST",status="201"} 1
        pht_hub_http_requests_total{route="/v1/admin/stations",method="POST",status="201"} 2
        pht_hub_http_requests_total{route="/v1/jobs",method="POST",status="201"} 4
        pht_hub_http_requests_total{route="/v1/jobs/{job_id}",method="GET",status="200"} 1
        pht_hub_http_requests_total{route="/v1/jobs/{job_id}/cancel",method="POST",status="200"} 1
        pht_hub_http_requests_total{route="/v1/jobs/{job_id}/stops/{station}/result",method="PUT",status="200"} 1
        pht_hub_http_requests_total{route="/v1/jobs/{job_id}/stops/{station}/status",method="POST",status="200"} 2
        pht_hub_http_requests_total{route="/v1/stations/{station}/work",method="GET",status="200"} 2
        pht_hub_http_requests_total{route="unmatched",method="GET",status="404"} 1"#]]
    .assert_eq(&lines(&text, "pht_hub_http_requests_total{"));
    assert!(
        text.contains(
            "pht_hub_http_request_duration_seconds_count{route=\"/v1/jobs\",method=\"POST\"} 4\n"
        ),
        "{text}"
    );
    assert_eq!(
        lines(&text, "pht_hub_blob_bytes "),
        format!("pht_hub_blob_bytes {}", bundle.len())
    );
    assert_eq!(
        lines(&text, "pht_hub_checkpoints_total "),
        "pht_hub_checkpoints_total 0"
    );
    for id in [completed, incomplete, active, cancelled] {
        assert!(!text.contains(&id.to_string()), "job id {id} in:\n{text}");
    }
    for id in ["umc-a", "umc-b", "alice"] {
        assert!(!text.contains(id), "`{id}` in:\n{text}");
    }
    // The scrape before is counted under its own route.
    assert!(scrape(&hub).await.contains(
        "pht_hub_http_requests_total{route=\"/metrics\",method=\"GET\",status=\"200\"} 1\n"
    ));
}

crate::on_both_stores!(requests_are_counted_by_route_template_and_jobs_and_stops_by_state);

#[tokio::test]
async fn a_waiting_long_poll_is_counted_until_it_answers_or_its_caller_drops_it() {
    let hub = TestHub::start().await;
    let station = hub.add_station("a", KeyAlgorithm::Ed25519).await;
    let (alice, alice_key) = hub.add_researcher("alice").await;
    assert_eq!(waiting_polls(&hub).await, "pht_hub_waiting_polls 0");

    let answered = hub.poll(&station, Duration::from_secs(30));
    tokio::pin!(answered);
    until_waiting(&hub, &mut answered, "pht_hub_waiting_polls 1").await;
    let job_id = Uuid::new_v4();
    let envelope = job(job_id, RouteMode::Parallel, &["a"], hub.clock.now()).sign(&alice_key);
    hub.call(&requests::submit_job(&envelope), &alice)
        .await
        .expect_status(StatusCode::CREATED);
    assert_eq!(answered.await.unwrap().job_id, job_id);
    assert_eq!(waiting_polls(&hub).await, "pht_hub_waiting_polls 0");

    {
        // Dropped at the end of this block, as a caller giving up drops its request.
        let abandoned = hub.poll(&station, Duration::from_secs(30));
        tokio::pin!(abandoned);
        until_waiting(&hub, &mut abandoned, "pht_hub_waiting_polls 1").await;
    }
    assert_eq!(waiting_polls(&hub).await, "pht_hub_waiting_polls 0");
}

#[tokio::test]
async fn a_long_poll_whose_connection_closes_is_no_longer_counted() {
    use tokio::io::AsyncWriteExt as _;

    let hub = TestHub::start().await;
    let station = hub.add_station("a", KeyAlgorithm::Ed25519).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let limits = pht_hub::server::ServeLimits {
        header_read_timeout: Duration::from_secs(10),
        max_connections: 16,
        shutdown_grace: Duration::from_secs(1),
    };
    let server = tokio::spawn(pht_hub::server::serve(
        listener,
        hub.router.clone(),
        limits,
        std::future::pending(),
    ));
    let poll = requests::poll_work(&station_id(&station), Duration::from_secs(30));
    let headers = station
        .authentication_headers(&poll, hub.clock.now(), &pht_api::auth::random_nonce())
        .unwrap();
    let mut request = format!(
        "GET {} HTTP/1.1\r\nhost: {address}\r\n",
        poll.path_and_query()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut connection = tokio::net::TcpStream::connect(address).await.unwrap();
    connection.write_all(request.as_bytes()).await.unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while waiting_polls(&hub).await != "pht_hub_waiting_polls 1" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the poll never waited"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(connection);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while waiting_polls(&hub).await != "pht_hub_waiting_polls 0" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the poll still counts as waiting 10 s after its connection closed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.abort();
}

#[tokio::test]
async fn with_metrics_off_metrics_answers_404_and_nothing_is_recorded() {
    let hub = TestHub::start_with(support::Store::Sqlite, false).await;
    hub.call(&requests::health(), &Credentials::Anonymous)
        .await
        .expect_status(StatusCode::OK);
    let answer = hub
        .call(&get("/metrics"), &Credentials::Anonymous)
        .await
        .expect_status(StatusCode::NOT_FOUND);
    assert_eq!(answer.error().message, "metrics are turned off on this hub");
    assert!(hub.hub.state().metrics.is_none());
}
