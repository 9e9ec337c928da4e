//! Two hub replicas on one PostgreSQL database, in-process: 50 stations long-poll both (each
//! with two polls at once, as a station with `concurrency: 2` does, each poll on the other
//! replica than its last) while 500 jobs are submitted through both. Every
//! work item is handed out exactly once: no stop reaches two stations or one station twice, none
//! is lost, and the hub's records agree with what the stations received.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use pht_api::{requests, v1, Credentials};
use pht_core::job::RouteMode;
use pht_core::{Digest, KeyAlgorithm};
use support::{job, station_id, Store, TestHub};
use uuid::Uuid;

const STATIONS: usize = 50;
const JOBS: usize = 500;

/// Job `k`'s route: every fifth job is sequential over three stations, the others parallel over
/// two, so that both a submission and a delivered result (readying the next stop, perhaps on the
/// other replica) wake polls.
fn route(k: usize) -> (RouteMode, Vec<String>) {
    if k.is_multiple_of(5) {
        let stations = [k % STATIONS, (k + 11) % STATIONS, (k + 23) % STATIONS];
        (
            RouteMode::Sequential,
            stations.iter().map(|i| format!("station-{i:02}")).collect(),
        )
    } else {
        let stations = [k % STATIONS, (k + 7) % STATIONS];
        (
            RouteMode::Parallel,
            stations.iter().map(|i| format!("station-{i:02}")).collect(),
        )
    }
}

/// What one station was handed: (job, stop index), in order.
type Received = Arc<Mutex<Vec<(Uuid, u32)>>>;

async fn run_station(
    replicas: [Arc<TestHub>; 2],
    credentials: Arc<Credentials>,
    received: Received,
    delivered: Arc<std::sync::atomic::AtomicUsize>,
    expected: usize,
    mut turn: usize,
) {
    while delivered.load(std::sync::atomic::Ordering::SeqCst) < expected {
        turn += 1;
        let replica = &replicas[turn % 2];
        let Some(item) = replica.poll(&credentials, Duration::from_secs(2)).await else {
            continue;
        };
        received
            .lock()
            .unwrap()
            .push((item.job_id, item.stop_index));
        let bundle = format!("result of {} stop {}", item.job_id, item.stop_index);
        let state = format!("state after {} stop {}", item.job_id, item.stop_index);
        // Sequential routes here have three stops: the last hands no state on.
        let next_state =
            (item.mode == RouteMode::Sequential && item.stop_index < 2).then_some(state.as_bytes());
        // Deliver through the other replica than the one that handed the work out.
        let receipt: v1::ResultReceipt = replicas[(turn + 1) % 2]
            .upload(&credentials, item.job_id, bundle.as_bytes(), next_state)
            .await
            .expect_status(StatusCode::OK)
            .json();
        assert!(
            !receipt.already_stored,
            "a stop was delivered twice: {receipt:?}"
        );
        delivered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_stations_on_two_replicas_get_every_work_item_of_500_jobs_exactly_once() {
    let first = TestHub::start_on(Store::Postgres).await;
    let second = first.replica().await;
    let mut stations = Vec::new();
    for i in 0..STATIONS {
        let id = format!("station-{i:02}");
        let algorithm = if i.is_multiple_of(2) {
            KeyAlgorithm::Ed25519
        } else {
            KeyAlgorithm::P256
        };
        stations.push(first.add_station(&id, algorithm).await);
    }
    let (alice, alice_key) = first.add_researcher("alice").await;
    let jobs: Vec<(Uuid, RouteMode, Vec<String>)> = (0..JOBS)
        .map(|k| {
            let (mode, route) = route(k);
            (Uuid::new_v4(), mode, route)
        })
        .collect();
    let expected: usize = jobs.iter().map(|(_, _, route)| route.len()).sum();

    let first = Arc::new(first);
    let second = Arc::new(second);
    let delivered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut received = BTreeMap::new();
    let mut tasks = Vec::new();
    for (index, credentials) in stations.into_iter().enumerate() {
        let credentials = Arc::new(credentials);
        let record: Received = Arc::default();
        received.insert(station_id(&credentials), record.clone());
        for poller in 0..2 {
            tasks.push(tokio::spawn(run_station(
                [first.clone(), second.clone()],
                credentials.clone(),
                record.clone(),
                delivered.clone(),
                expected,
                index + poller,
            )));
        }
    }
    // Submitted through both replicas at once, while the stations poll.
    let submit = |replica: Arc<TestHub>, jobs: Vec<(Uuid, RouteMode, Vec<String>)>| {
        let alice = match &alice {
            Credentials::Researcher { researcher_id, key } => Credentials::Researcher {
                researcher_id: researcher_id.clone(),
                key: pht_core::SigningKey::from_pkcs8_pem(&key.to_pkcs8_pem(None).unwrap(), None)
                    .unwrap(),
            },
            _ => unreachable!("alice is a researcher"),
        };
        let key =
            pht_core::SigningKey::from_pkcs8_pem(&alice_key.to_pkcs8_pem(None).unwrap(), None)
                .unwrap();
        tokio::spawn(async move {
            for (job_id, mode, route) in jobs {
                let stations: Vec<&str> = route.iter().map(String::as_str).collect();
                let envelope = job(job_id, mode, &stations, replica.clock.now()).sign(&key);
                replica
                    .call(&requests::submit_job(&envelope), &alice)
                    .await
                    .expect_status(StatusCode::CREATED);
            }
        })
    };
    let (evens, odds): (Vec<_>, Vec<_>) = jobs
        .iter()
        .cloned()
        .enumerate()
        .partition(|(k, _)| k.is_multiple_of(2));
    let submitters = [
        submit(
            first.clone(),
            evens.into_iter().map(|(_, job)| job).collect(),
        ),
        submit(
            second.clone(),
            odds.into_iter().map(|(_, job)| job).collect(),
        ),
    ];
    for submitter in submitters {
        submitter.await.unwrap();
    }
    // The first station to fail ends the test, with its panic.
    tokio::time::timeout(
        Duration::from_secs(300),
        futures_util::future::try_join_all(tasks),
    )
    .await
    .expect("every work item was delivered within 5 minutes")
    .unwrap();

    // The stations' records: every stop of every job, each once, at its own station.
    let mut handed_out: BTreeMap<(Uuid, u32), Vec<String>> = BTreeMap::new();
    for (station, record) in &received {
        for item in record.lock().unwrap().iter() {
            handed_out.entry(*item).or_default().push(station.clone());
        }
    }
    let doubled: Vec<_> = handed_out
        .iter()
        .filter(|(_, stations)| stations.len() > 1)
        .collect();
    assert!(doubled.is_empty(), "handed out more than once: {doubled:?}");
    let wanted: BTreeSet<(Uuid, u32)> = jobs
        .iter()
        .flat_map(|(job_id, _, route)| (0..route.len() as u32).map(move |i| (*job_id, i)))
        .collect();
    let got: BTreeSet<(Uuid, u32)> = handed_out.keys().copied().collect();
    assert_eq!(wanted.difference(&got).count(), 0, "work never handed out");
    assert_eq!(got.len(), expected);
    for ((job_id, stop_index), stations) in &handed_out {
        let (_, _, route) = jobs.iter().find(|(id, _, _)| id == job_id).unwrap();
        assert_eq!(
            &route[*stop_index as usize], &stations[0],
            "job {job_id} stop {stop_index} went to the wrong station"
        );
    }

    // The hub's records, read through either replica: every job completed, every stop holds the
    // result its station delivered.
    for (k, (job_id, _, route)) in jobs.iter().enumerate() {
        let replica = if k.is_multiple_of(2) { &first } else { &second };
        let status = replica.status(&alice, *job_id).await;
        assert_eq!(status.status, v1::JobState::Completed, "{status:#?}");
        for (index, stop) in status.stops.iter().enumerate() {
            assert_eq!(stop.station, route[index]);
            let result = stop.result.as_ref().expect("a stored result");
            assert_eq!(
                result.digest,
                Digest::of(format!("result of {job_id} stop {index}").as_bytes())
            );
        }
    }
    let database = first.postgres.as_ref().unwrap();
    let counts = database.query(
        "pht_hub",
        "SELECT status, count(*) FROM stops GROUP BY status ORDER BY status",
    );
    assert_eq!(counts.trim(), format!("done|{expected}"));
    drop(second);
}
