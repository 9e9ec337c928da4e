//! Hub benchmark on loopback with a real listener: pickup latency (submit to a long-polling
//! station receiving the work), dispatch throughput, and the hub process's resident memory with
//! 1,000 stations long-polling at once.
//!
//! Run with `cargo run --release -p pht-hub --example bench_hub`. The hub runs in a child
//! process (this binary re-executed with `serve-hub`) so that its memory is measured apart from
//! the clients'. Every loop is bounded in count and time; the child is killed at the end.

use std::io::BufRead as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use pht_api::{v1, Credentials, HubClient};
use pht_core::job::{JobV1, Route, RouteMode, TrainPin};
use pht_core::{Digest, KeyAlgorithm, SigningKey};
use pht_hub::clock::SystemClock;
use pht_hub::config::AdminToken;
use pht_hub::{Hub, HubOptions, Settings};
use uuid::Uuid;

const ADMIN_TOKEN: &str = "bench-admin-token-0123456789";
const N_LATENCY_SAMPLES: usize = 50;
const N_DISPATCH_JOBS: usize = 500;
const N_DISPATCH_STATIONS: usize = 10;
const N_SUBMITTERS: usize = 8;
const N_IDLE_STATIONS: usize = 1000;
const LONG_POLL_WAIT: Duration = Duration::from_secs(30);

async fn serve_hub(state_dir: &str) -> anyhow::Result<()> {
    let state_dir = std::path::Path::new(state_dir);
    let options = HubOptions {
        database_url: format!("sqlite://{}", state_dir.join("hub.db").display()),
        blob_dir: state_dir.join("blobs"),
        settings: Settings {
            admin_token: AdminToken::new(ADMIN_TOKEN),
            long_poll_max_wait: Duration::from_secs(60),
            pickup_lease: Duration::from_secs(300),
            max_upload_bytes: 64 * 1024 * 1024,
        },
    };
    let hub = Hub::open(options, Arc::new(SystemClock)).await?;
    let _sweeper = hub.spawn_sweeper(Duration::from_secs(1));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening {}", listener.local_addr()?);
    axum::serve(listener, hub.router()).await?;
    Ok(())
}

fn resident_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .context("no VmRSS line")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("malformed VmRSS")?
        .parse()?)
}

fn station_client(
    base_url: &str,
    http: &reqwest::Client,
    station_id: &str,
    key: SigningKey,
) -> anyhow::Result<HubClient> {
    Ok(HubClient::with_http_client(
        base_url,
        Credentials::Station {
            station_id: station_id.into(),
            key,
        },
        http.clone(),
    )?)
}

async fn register_station(admin: &HubClient, station_id: &str) -> anyhow::Result<SigningKey> {
    let key = SigningKey::generate(KeyAlgorithm::Ed25519);
    admin
        .register_station(&v1::RegisterStationRequest {
            id: station_id.into(),
            public_key_pem: key.public_key().to_pem(),
            age_recipient: age::x25519::Identity::generate().to_public().to_string(),
        })
        .await?;
    Ok(key)
}

fn signed_job(researcher_key: &SigningKey, station_id: &str) -> pht_core::dsse::Envelope {
    let now = chrono::Utc::now();
    JobV1 {
        job_id: Uuid::new_v4(),
        issued_at: now,
        expires_at: now + chrono::Duration::hours(1),
        train: TrainPin {
            repository: "127.0.0.1:5000/trains/bench".into(),
            digest: Digest::of(b"bench train"),
        },
        route: Route {
            mode: RouteMode::Parallel,
            stations: vec![station_id.into()],
        },
        parameters: Default::default(),
        recipient: "age175g0ksqujt32anura8w5z7uygzspy28h2cvdrfjwh9ss5elnrefs4278nk".into(),
    }
    .sign(researcher_key)
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let arguments: Vec<String> = std::env::args().collect();
    if arguments.get(1).map(String::as_str) == Some("serve-hub") {
        return serve_hub(&arguments[2]).await;
    }
    let state_dir = tempfile::tempdir()?;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .arg("serve-hub")
        .arg(state_dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("cannot start the hub child process")?;
    let result = run_benchmarks(&mut child).await;
    child.kill().ok();
    child.wait().ok();
    result
}

async fn run_benchmarks(child: &mut std::process::Child) -> anyhow::Result<()> {
    let stdout = child.stdout.take().context("no child stdout")?;
    let mut first_line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut first_line)?;
    let Some(address) = first_line.trim().strip_prefix("listening ") else {
        bail!("the hub child said `{first_line}`");
    };
    let base_url = format!("http://{address}");
    let hub_pid = child.id();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(2 * N_IDLE_STATIONS)
        .build()?;
    let admin = HubClient::with_http_client(
        &base_url,
        Credentials::Admin {
            token: ADMIN_TOKEN.into(),
        },
        http.clone(),
    )?;
    let researcher_key = SigningKey::generate(KeyAlgorithm::Ed25519);
    admin
        .register_researcher(&v1::RegisterResearcherRequest {
            id: "bench".into(),
            public_key_pem: researcher_key.public_key().to_pem(),
        })
        .await?;
    let researcher = Arc::new(HubClient::with_http_client(
        &base_url,
        Credentials::Researcher {
            researcher_id: "bench".into(),
            key: SigningKey::from_pkcs8_pem(&researcher_key.to_pkcs8_pem(None)?, None)?,
        },
        http.clone(),
    )?);
    let researcher_key = Arc::new(researcher_key);

    // 1. Pickup latency: a station long-polls; a job for it is submitted; time to receipt.
    let latency_key = register_station(&admin, "latency").await?;
    let latency_station = Arc::new(station_client(&base_url, &http, "latency", latency_key)?);
    let mut latencies = Vec::with_capacity(N_LATENCY_SAMPLES);
    for _ in 0..N_LATENCY_SAMPLES {
        let station = latency_station.clone();
        let poll = tokio::spawn(async move {
            let item = station.poll_work("latency", LONG_POLL_WAIT).await;
            (item, Instant::now())
        });
        // Let the poll reach the hub and park before the job arrives.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let submitted_at = Instant::now();
        researcher
            .submit_job(&signed_job(&researcher_key, "latency"))
            .await?;
        let (item, received_at) = poll.await?;
        if item?.is_none() {
            bail!("the long-poll ended without the job");
        }
        latencies.push(received_at - submitted_at);
    }
    let p90 = {
        let mut sorted = latencies.clone();
        sorted.sort();
        sorted[sorted.len() * 9 / 10]
    };
    println!(
        "pickup latency (submit -> long-polling station has the work): median {:.2} ms, p90 {:.2} ms over {N_LATENCY_SAMPLES} jobs",
        median(&mut latencies).as_secs_f64() * 1e3,
        p90.as_secs_f64() * 1e3
    );

    // 2. Dispatch throughput: submitters and long-polling stations at once.
    let mut dispatch_stations = Vec::new();
    for station_idx in 0..N_DISPATCH_STATIONS {
        let station_id = format!("dispatch-{station_idx}");
        let key = register_station(&admin, &station_id).await?;
        dispatch_stations.push((
            station_id.clone(),
            station_client(&base_url, &http, &station_id, key)?,
        ));
    }
    let handed_out = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    let mut pollers = Vec::new();
    for (station_id, client) in dispatch_stations {
        let handed_out = handed_out.clone();
        pollers.push(tokio::spawn(async move {
            let mut last_handout = None;
            while handed_out.load(std::sync::atomic::Ordering::SeqCst) < N_DISPATCH_JOBS
                && Instant::now() < deadline
            {
                if let Ok(Some(_)) = client.poll_work(&station_id, Duration::from_secs(2)).await {
                    handed_out.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    last_handout = Some(Instant::now());
                }
            }
            last_handout
        }));
    }
    let mut submitters = Vec::new();
    for submitter_idx in 0..N_SUBMITTERS {
        let researcher = researcher.clone();
        let researcher_key = researcher_key.clone();
        submitters.push(tokio::spawn(async move {
            let mut job_idx = submitter_idx;
            while job_idx < N_DISPATCH_JOBS {
                let station_id = format!("dispatch-{}", job_idx % N_DISPATCH_STATIONS);
                researcher
                    .submit_job(&signed_job(&researcher_key, &station_id))
                    .await?;
                job_idx += N_SUBMITTERS;
            }
            anyhow::Ok(())
        }));
    }
    for submitter in submitters {
        submitter.await??;
    }
    let submit_elapsed = started.elapsed();
    let mut last_handout = started;
    for poller in pollers {
        if let Some(handout) = poller.await? {
            last_handout = last_handout.max(handout);
        }
    }
    // Up to the last handout, not the pollers' trailing empty waits.
    let dispatch_elapsed = last_handout - started;
    let n_handed_out = handed_out.load(std::sync::atomic::Ordering::SeqCst);
    println!(
        "dispatch throughput: {:.0} jobs/s submitted, {:.0} jobs/s submitted and handed out ({n_handed_out}/{N_DISPATCH_JOBS} jobs, {N_SUBMITTERS} submitters, {N_DISPATCH_STATIONS} long-polling stations, {:.2} s)",
        N_DISPATCH_JOBS as f64 / submit_elapsed.as_secs_f64(),
        n_handed_out as f64 / dispatch_elapsed.as_secs_f64(),
        dispatch_elapsed.as_secs_f64()
    );

    // 3. Memory with 1,000 stations long-polling at once.
    let mut idle_stations = Vec::with_capacity(N_IDLE_STATIONS);
    for station_idx in 0..N_IDLE_STATIONS {
        let station_id = format!("idle-{station_idx}");
        let key = register_station(&admin, &station_id).await?;
        idle_stations.push((
            station_id.clone(),
            station_client(&base_url, &http, &station_id, key)?,
        ));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline_kib = resident_kib(hub_pid)?;
    let mut idle_polls = Vec::with_capacity(N_IDLE_STATIONS);
    for (station_id, client) in idle_stations {
        idle_polls.push(tokio::spawn(async move {
            client.poll_work(&station_id, LONG_POLL_WAIT).await
        }));
    }
    // Give every poll time to connect, authenticate and park; none has work, so all wait.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let n_still_waiting = idle_polls.iter().filter(|poll| !poll.is_finished()).count();
    let polling_kib = resident_kib(hub_pid)?;
    println!(
        "hub resident memory: {:.1} MiB with {n_still_waiting} of {N_IDLE_STATIONS} stations long-polling at once ({:.1} MiB before they connected, {:.1} KiB per waiting poll)",
        polling_kib as f64 / 1024.0,
        baseline_kib as f64 / 1024.0,
        (polling_kib.saturating_sub(baseline_kib)) as f64 / n_still_waiting.max(1) as f64
    );
    for poll in idle_polls {
        poll.abort();
    }
    Ok(())
}
