//! Hub benchmark on loopback with real listeners: pickup latency (submit to a long-polling
//! station receiving the work), dispatch throughput, and resident memory with many stations
//! long-polling at once, on SQLite and on PostgreSQL with one and with two replicas, side by
//! side in one run; and what the metrics cost: SQLite dispatch with `metrics` off and on in
//! alternating rounds (the hub's default, on, everywhere else).
//!
//! Run with `cargo run --release -p pht-hub --example bench_hub` (`make bench`), or with the
//! argument `metrics-cost` for the metrics comparison alone (no PostgreSQL), or `dispatch` for
//! the dispatch throughputs alone. Each hub replica runs in a child process (this binary
//! re-executed with `serve-hub`), so that its memory is measured apart from the clients'. PostgreSQL is a real server started for the run with its
//! durable defaults (fsync and synchronous commit on), as SQLite runs in WAL mode with FULL
//! synchronous: a job is acknowledged only once it is on disk, on both. Every loop is bounded in
//! count and time; children and the server are stopped at the end.

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
const N_DISPATCH_JOBS: usize = 1000;
/// Dispatch rounds per configuration; the median is the figure. One round is about a second,
/// short enough for a neighbour on the machine to move it by a third.
const N_DISPATCH_ROUNDS: usize = 5;
const N_DISPATCH_STATIONS: usize = 20;
const N_SUBMITTERS: usize = 16;
const N_IDLE_STATIONS: usize = 1000;
/// Stations long-polling at once over two PostgreSQL replicas, and pickups timed among them.
const N_SCALE_STATIONS: usize = 10_000;
const N_SCALE_SAMPLES: usize = 200;
const LONG_POLL_WAIT: Duration = Duration::from_secs(30);
/// Dispatch rounds with metrics off, and as many on, interleaved (off, on, off, on, …), so that
/// a machine getting slower or faster during the run weighs on both alike.
const N_METRICS_ROUNDS: usize = 5;
/// How often the rounds with metrics on are scraped: more often than Prometheus' default 15 s,
/// so that the scrape's own queries (jobs and stops counted, the blob directory walked) count.
const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);
/// Scrapes timed after each round with metrics on.
const N_TIMED_SCRAPES: usize = 5;

async fn serve_hub(state_dir: &str, store: &str, metrics: bool) -> anyhow::Result<()> {
    let state_dir = std::path::Path::new(state_dir);
    let options = HubOptions {
        database_url: store.to_string(),
        store_connections: None,
        blob_dir: state_dir.join("blobs"),
        settings: Settings {
            admin_token: AdminToken::new(ADMIN_TOKEN),
            long_poll_max_wait: Duration::from_secs(60),
            pickup_lease: Duration::from_secs(300),
            max_upload_bytes: 64 * 1024 * 1024,
        },
        metrics,
    };
    let hub = Hub::open(options, Arc::new(SystemClock)).await?;
    let _sweeper = hub.spawn_sweeper(Duration::from_secs(1));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening {}", listener.local_addr()?);
    // The hub's own accept loop, as `pht-hub serve` runs it.
    let limits = pht_hub::server::ServeLimits {
        header_read_timeout: Duration::from_secs(10),
        max_connections: pht_hub::server::fit_connection_limit(2 * N_SCALE_STATIONS),
        shutdown_grace: Duration::from_secs(1),
    };
    pht_hub::server::serve(listener, hub.router(), limits, std::future::pending()).await;
    Ok(())
}

/// A hub replica in a child process; killed when dropped.
struct Replica {
    child: std::process::Child,
    url: String,
    _state: tempfile::TempDir,
}

impl Replica {
    /// A replica with its metrics on, as a hub runs by default.
    fn start(store: &str, blobs: &std::path::Path) -> anyhow::Result<Replica> {
        Replica::start_with(store, blobs, true)
    }

    fn start_with(store: &str, blobs: &std::path::Path, metrics: bool) -> anyhow::Result<Replica> {
        let state = tempfile::tempdir()?;
        // Replicas share the blob directory: a symlink in each state directory.
        std::os::unix::fs::symlink(blobs, state.path().join("blobs"))?;
        let store = if store.is_empty() {
            format!("sqlite://{}", state.path().join("hub.db").display())
        } else {
            store.to_string()
        };
        let mut child = std::process::Command::new(std::env::current_exe()?)
            .arg("serve-hub")
            .arg(state.path())
            .arg(&store)
            .arg(if metrics { "metrics" } else { "no-metrics" })
            .stdout(std::process::Stdio::piped())
            .spawn()
            .context("cannot start a hub child process")?;
        let stdout = child.stdout.take().context("no child stdout")?;
        let mut first_line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut first_line)?;
        let Some(address) = first_line.trim().strip_prefix("listening ") else {
            child.kill().ok();
            bail!("the hub child said `{first_line}`");
        };
        Ok(Replica {
            url: format!("http://{address}"),
            child,
            _state: state,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
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

/// CPU time (user and system) used so far by process `pid`, from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the command name, which is in parentheses and may hold spaces.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    // `sysconf(_SC_CLK_TCK)`, 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// CPU time used so far by every `postgres` process (the server, its workers and backends).
fn postgres_cpu_time() -> Duration {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Duration::ZERO;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "postgres")
        })
        .map(cpu_time)
        .sum()
}

/// Where a run's CPU time went: the hub replicas, PostgreSQL, and this process (the load).
struct CpuUse {
    replicas: Vec<u32>,
    started: (Duration, Duration, Duration),
}

impl CpuUse {
    fn start(replicas: &[u32]) -> CpuUse {
        let mut usage = CpuUse {
            replicas: replicas.to_vec(),
            started: Default::default(),
        };
        usage.started = usage.now();
        usage
    }

    fn now(&self) -> (Duration, Duration, Duration) {
        (
            self.replicas.iter().map(|pid| cpu_time(*pid)).sum(),
            postgres_cpu_time(),
            cpu_time(std::process::id()),
        )
    }

    /// CPU milliseconds per job since [`CpuUse::start`], for `n_jobs` jobs.
    fn per_job(&self, n_jobs: usize) -> String {
        let (hub, postgres, load) = self.now();
        let per_job = |now: Duration, then: Duration| ms(now.saturating_sub(then)) / n_jobs as f64;
        format!(
            "CPU per job: hub {:.2} ms, PostgreSQL {:.2} ms, load generator {:.2} ms",
            per_job(hub, self.started.0),
            per_job(postgres, self.started.1),
            per_job(load, self.started.2)
        )
    }
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

fn percentile(sorted: &[Duration], per_mille: usize) -> Duration {
    sorted[(sorted.len() * per_mille / 1000).min(sorted.len() - 1)]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// The clients of one configuration: an admin and the researcher, on each replica's URL.
struct Clients {
    http: reqwest::Client,
    urls: Vec<String>,
    admins: Vec<HubClient>,
    researchers: Vec<Arc<HubClient>>,
    researcher_key: Arc<SigningKey>,
}

impl Clients {
    async fn set_up(urls: &[&str], http: &reqwest::Client) -> anyhow::Result<Clients> {
        let admins = urls
            .iter()
            .map(|url| {
                HubClient::with_http_client(
                    url,
                    Credentials::Admin {
                        token: ADMIN_TOKEN.into(),
                    },
                    http.clone(),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let researcher_key = SigningKey::generate(KeyAlgorithm::Ed25519);
        admins[0]
            .register_researcher(&v1::RegisterResearcherRequest {
                id: "bench".into(),
                public_key_pem: researcher_key.public_key().to_pem(),
            })
            .await?;
        let mut researchers = Vec::new();
        for url in urls {
            researchers.push(Arc::new(HubClient::with_http_client(
                url,
                Credentials::Researcher {
                    researcher_id: "bench".into(),
                    key: SigningKey::from_pkcs8_pem(&researcher_key.to_pkcs8_pem(None)?, None)?,
                },
                http.clone(),
            )?));
        }
        Ok(Clients {
            http: http.clone(),
            urls: urls.iter().map(|url| url.to_string()).collect(),
            admins,
            researchers,
            researcher_key: Arc::new(researcher_key),
        })
    }

    /// Registers `n` stations `<prefix>-<i>`, 32 at a time, through the replicas in turn.
    async fn register_stations(
        &self,
        prefix: &str,
        n: usize,
    ) -> anyhow::Result<Vec<(String, SigningKey)>> {
        use futures_util::StreamExt as _;
        let registered: Vec<anyhow::Result<(String, SigningKey)>> =
            futures_util::stream::iter(0..n)
                .map(|i| async move {
                    let station_id = format!("{prefix}-{i}");
                    let admin = &self.admins[i % self.admins.len()];
                    let key = register_station(admin, &station_id).await?;
                    Ok((station_id, key))
                })
                .buffered(32)
                .collect()
                .await;
        registered.into_iter().collect()
    }
}

/// Pickup latency on one replica: a station long-polls; a job for it is submitted; time to
/// receipt.
async fn pickup_latency(clients: &Clients) -> anyhow::Result<(Duration, Duration)> {
    let (station_id, key) = clients
        .register_stations("latency", 1)
        .await?
        .pop()
        .context("one station")?;
    let station = Arc::new(station_client(
        &clients.urls[0],
        &clients.http,
        &station_id,
        key,
    )?);
    let mut latencies = Vec::with_capacity(N_LATENCY_SAMPLES);
    for _ in 0..N_LATENCY_SAMPLES {
        let poller = station.clone();
        let id = station_id.clone();
        let poll = tokio::spawn(async move {
            let item = poller.poll_work(&id, LONG_POLL_WAIT).await;
            (item, Instant::now())
        });
        // Let the poll reach the hub and park before the job arrives.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let submitted_at = Instant::now();
        clients.researchers[0]
            .submit_job(&signed_job(&clients.researcher_key, &station_id))
            .await?;
        let (item, received_at) = poll.await?;
        if item?.is_none() {
            bail!("the long-poll ended without the job");
        }
        latencies.push(received_at - submitted_at);
    }
    latencies.sort();
    Ok((percentile(&latencies, 500), percentile(&latencies, 900)))
}

/// Jobs submitted and handed out per second: submitters and long-polling stations at once,
/// each on the replicas in turn.
/// Also says where the CPU time went, per job.
async fn dispatch(clients: &Clients, pids: &[u32], prefix: &str) -> anyhow::Result<(f64, String)> {
    let mut pollers = Vec::new();
    let handed_out = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stations = clients
        .register_stations(prefix, N_DISPATCH_STATIONS)
        .await?;
    let cpu = CpuUse::start(pids);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    for (index, (station_id, key)) in stations.into_iter().enumerate() {
        let url = &clients.urls[index % clients.urls.len()];
        let client = station_client(url, &clients.http, &station_id, key)?;
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
        let researcher = clients.researchers[submitter_idx % clients.researchers.len()].clone();
        let researcher_key = clients.researcher_key.clone();
        let prefix = prefix.to_string();
        submitters.push(tokio::spawn(async move {
            let mut job_idx = submitter_idx;
            while job_idx < N_DISPATCH_JOBS {
                let station_id = format!("{prefix}-{}", job_idx % N_DISPATCH_STATIONS);
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
    let mut last_handout = started;
    for poller in pollers {
        if let Some(handout) = poller.await? {
            last_handout = last_handout.max(handout);
        }
    }
    let n_handed_out = handed_out.load(std::sync::atomic::Ordering::SeqCst);
    if n_handed_out < N_DISPATCH_JOBS {
        bail!("only {n_handed_out} of {N_DISPATCH_JOBS} jobs were handed out within 2 minutes");
    }
    // Up to the last handout, not the pollers' trailing empty waits.
    Ok((
        N_DISPATCH_JOBS as f64 / (last_handout - started).as_secs_f64(),
        cpu.per_job(N_DISPATCH_JOBS),
    ))
}

/// Resident memory of each replica with `n` stations long-polling at once (spread over the
/// replicas), and pickup latency among them: a job for a waiting station, submitted through
/// another replica than the one its poll waits on.
async fn many_waiting(
    clients: &Clients,
    pids: &[u32],
    prefix: &str,
    n: usize,
    n_samples: usize,
) -> anyhow::Result<()> {
    let stations = clients.register_stations(prefix, n).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before: Vec<u64> = pids
        .iter()
        .map(|pid| resident_kib(*pid))
        .collect::<Result<_, _>>()?;
    let (received_tx, mut received_rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
    let mut polls = Vec::with_capacity(n);
    for (index, (station_id, key)) in stations.into_iter().enumerate() {
        let url = &clients.urls[index % clients.urls.len()];
        let client = station_client(url, &clients.http, &station_id, key)?;
        let received_tx = received_tx.clone();
        polls.push(tokio::spawn(async move {
            loop {
                if let Ok(Some(_)) = client.poll_work(&station_id, LONG_POLL_WAIT).await {
                    let _ = received_tx.send((index, Instant::now()));
                }
            }
        }));
    }
    // Every poll connects, authenticates and parks; none has work, so all wait.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let waiting: Vec<u64> = pids
        .iter()
        .map(|pid| resident_kib(*pid))
        .collect::<Result<_, _>>()?;
    let mut latencies = Vec::with_capacity(n_samples);
    for sample in 0..n_samples {
        // Sample stations spread over the replicas; submitted through the next replica.
        let index = sample * (n / n_samples);
        let through = &clients.researchers[(index + 1) % clients.researchers.len()];
        let submitted_at = Instant::now();
        through
            .submit_job(&signed_job(
                &clients.researcher_key,
                &format!("{prefix}-{index}"),
            ))
            .await?;
        loop {
            let (received, at) = tokio::time::timeout(Duration::from_secs(10), received_rx.recv())
                .await
                .context("a waiting station did not get its work within 10 s")?
                .context("the polls ended")?;
            if received == index {
                latencies.push(at - submitted_at);
                break;
            }
        }
        // Let the station's next poll park again before the next sample.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for poll in &polls {
        poll.abort();
    }
    latencies.sort();
    for (replica, (before, waiting)) in before.iter().zip(&waiting).enumerate() {
        let n_here = n / pids.len();
        println!(
            "  replica {replica}: {:.1} MiB resident with {n_here} stations long-polling ({:.1} MiB before they connected, {:.1} KiB per waiting poll)",
            *waiting as f64 / 1024.0,
            *before as f64 / 1024.0,
            waiting.saturating_sub(*before) as f64 / n_here.max(1) as f64
        );
    }
    let through = if pids.len() > 1 {
        "submitted through another replica than the poll waits on"
    } else {
        "submitted while they all wait"
    };
    println!(
        "  pickup latency among them ({through}): median {:.2} ms, p99 {:.2} ms over {n_samples} jobs",
        ms(percentile(&latencies, 500)),
        ms(percentile(&latencies, 990))
    );
    Ok(())
}

fn median(values: &[f64]) -> f64 {
    values[median_index(values)]
}

/// The index of the median of `values` (the upper one of an even count).
fn median_index(values: &[f64]) -> usize {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    order[values.len() / 2]
}

/// Scrapes `url` every `interval`, as Prometheus would, until aborted or a scrape fails.
async fn scrape_every(
    http: reqwest::Client,
    url: String,
    interval: Duration,
) -> anyhow::Result<()> {
    let mut ticker = tokio::time::interval(interval);
    loop {
        ticker.tick().await;
        http.get(&url)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
    }
}

/// SQLite dispatch throughput with metrics off and on, in alternating rounds, each on a fresh
/// hub; the rounds with metrics on are scraped every [`SCRAPE_INTERVAL`] meanwhile.
async fn metrics_cost(http: &reqwest::Client, blobs: &std::path::Path) -> anyhow::Result<()> {
    let mut rates_off = Vec::with_capacity(N_METRICS_ROUNDS);
    let mut rates_on = Vec::with_capacity(N_METRICS_ROUNDS);
    let mut scrape_times = Vec::with_capacity(N_METRICS_ROUNDS * N_TIMED_SCRAPES);
    for round_idx in 0..2 * N_METRICS_ROUNDS {
        let metrics = round_idx % 2 == 1;
        let replica = Replica::start_with("", blobs, metrics)?;
        let clients = Clients::set_up(&[&replica.url], http).await?;
        let scraper = metrics.then(|| {
            tokio::spawn(scrape_every(
                http.clone(),
                format!("{}/metrics", replica.url),
                SCRAPE_INTERVAL,
            ))
        });
        let (rate, _) = dispatch(&clients, &[replica.pid()], "dispatch").await?;
        if let Some(scraper) = scraper {
            if scraper.is_finished() {
                scraper.await??;
                bail!("the scraper stopped");
            }
            scraper.abort();
        }
        if metrics {
            rates_on.push(rate);
            // What one scrape costs once the round's jobs are stored.
            for _ in 0..N_TIMED_SCRAPES {
                let started = Instant::now();
                http.get(format!("{}/metrics", replica.url))
                    .send()
                    .await?
                    .error_for_status()?
                    .bytes()
                    .await?;
                scrape_times.push(started.elapsed());
            }
        } else {
            rates_off.push(rate);
        }
    }
    scrape_times.sort();
    let (median_off, median_on) = (median(&rates_off), median(&rates_on));
    let rounds = |rates: &[f64]| {
        rates
            .iter()
            .map(|rate| format!("{rate:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "  dispatch throughput, metrics off: median {median_off:.0} jobs/s (rounds: {})",
        rounds(&rates_off)
    );
    println!(
        "  dispatch throughput, metrics on (scraped every {} s): median {median_on:.0} jobs/s (rounds: {}); on/off {:.3}",
        SCRAPE_INTERVAL.as_secs(),
        rounds(&rates_on),
        median_on / median_off
    );
    println!(
        "  one scrape of /metrics after a round ({N_DISPATCH_JOBS} jobs stored): median {:.2} ms, max {:.2} ms",
        ms(percentile(&scrape_times, 500)),
        ms(scrape_times[scrape_times.len() - 1])
    );
    println!(
        "  metrics cost: {:.1}% (goal <= 2%)",
        (1.0 - median_on / median_off) * 100.0
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let arguments: Vec<String> = std::env::args().collect();
    if arguments.get(1).map(String::as_str) == Some("serve-hub") {
        let metrics = arguments.get(4).map(String::as_str) != Some("no-metrics");
        return serve_hub(&arguments[2], &arguments[3], metrics).await;
    }
    let only_metrics_cost = arguments.get(1).map(String::as_str) == Some("metrics-cost");
    // Dispatch throughput on the three configurations alone: no latency, memory or metrics.
    let only_dispatch = arguments.get(1).map(String::as_str) == Some("dispatch");
    // Room for the clients' side of every waiting poll.
    pht_hub::server::fit_connection_limit(2 * N_SCALE_STATIONS);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(2 * N_SCALE_STATIONS)
        .build()?;
    let blobs = tempfile::tempdir()?;

    if only_metrics_cost {
        println!(
            "hub on SQLite, metrics off and on in alternating rounds ({N_METRICS_ROUNDS} each):"
        );
        return metrics_cost(&http, blobs.path()).await;
    }

    if !only_dispatch {
        println!("hub on SQLite (WAL, synchronous FULL), one process:");
    }
    let sqlite = Replica::start("", blobs.path())?;
    let sqlite_clients = Clients::set_up(&[&sqlite.url], &http).await?;
    if !only_dispatch {
        let (median, p90) = pickup_latency(&sqlite_clients).await?;
        println!(
            "  pickup latency (submit -> long-polling station has the work): median {:.2} ms, p90 {:.2} ms over {N_LATENCY_SAMPLES} jobs",
            ms(median),
            ms(p90)
        );
        many_waiting(
            &sqlite_clients,
            &[sqlite.pid()],
            "idle",
            N_IDLE_STATIONS,
            20,
        )
        .await?;
        println!(
            "hub on SQLite, metrics off and on in alternating rounds ({N_METRICS_ROUNDS} each):"
        );
        metrics_cost(&http, blobs.path()).await?;
    }

    // The three configurations' dispatch rounds, interleaved (SQLite, one PostgreSQL replica,
    // two), all hubs up throughout, so that the machine's drift weighs on each alike.
    let postgres =
        tokio::task::spawn_blocking(pht_e2e::postgres::PostgresServer::start_durable).await?;
    let one = Replica::start(&postgres.create_database("bench_one"), blobs.path())?;
    let one_clients = Clients::set_up(&[&one.url], &http).await?;
    let two_store = postgres.create_database("bench_two");
    let first = Replica::start(&two_store, blobs.path())?;
    let second = Replica::start(&two_store, blobs.path())?;
    let two_clients = Clients::set_up(&[&first.url, &second.url], &http).await?;
    let configurations: [(&str, &Clients, Vec<u32>); 3] = [
        (
            "hub on SQLite (WAL, synchronous FULL), one process",
            &sqlite_clients,
            vec![sqlite.pid()],
        ),
        (
            "hub on PostgreSQL (fsync and synchronous_commit on), one replica",
            &one_clients,
            vec![one.pid()],
        ),
        (
            "hub on PostgreSQL, two replicas (submitters and stations on both)",
            &two_clients,
            vec![first.pid(), second.pid()],
        ),
    ];
    let mut rates = vec![Vec::new(); configurations.len()];
    let mut cpu = vec![Vec::new(); configurations.len()];
    for round_idx in 0..N_DISPATCH_ROUNDS {
        for (config_idx, (_, clients, pids)) in configurations.iter().enumerate() {
            let (rate, usage) = dispatch(clients, pids, &format!("dispatch{round_idx}")).await?;
            rates[config_idx].push(rate);
            cpu[config_idx].push(usage);
        }
    }
    let medians: Vec<f64> = rates.iter().map(|rates| median(rates)).collect();
    for (config_idx, (name, _, _)) in configurations.iter().enumerate() {
        let rounds = rates[config_idx]
            .iter()
            .map(|rate| format!("{rate:.0}"))
            .collect::<Vec<_>>()
            .join(", ");
        let relative = match config_idx {
            0 => String::new(),
            1 => format!(" ({:.2}x SQLite)", medians[1] / medians[0]),
            _ => format!(
                " ({:.2}x SQLite, {:.2}x one replica)",
                medians[2] / medians[0],
                medians[2] / medians[1]
            ),
        };
        println!("{name}:");
        println!(
            "  dispatch throughput: median {:.0} jobs/s submitted and handed out{relative}; rounds: {rounds} ({N_DISPATCH_JOBS} jobs each, {N_SUBMITTERS} submitters, {N_DISPATCH_STATIONS} long-polling stations)",
            medians[config_idx]
        );
        // The CPU split of the median round.
        let round = median_index(&rates[config_idx]);
        println!("  {} (round {})", cpu[config_idx][round], round + 1);
    }
    let met = |met: bool| if met { "met" } else { "not met" };
    println!(
        "  goals: two replicas >= 1000 jobs/s ({}), SQLite >= 320 jobs/s ({})",
        met(medians[2] >= 1000.0),
        met(medians[0] >= 320.0)
    );
    drop(one_clients);
    drop(one);
    drop(sqlite_clients);
    drop(sqlite);
    let clients = two_clients;
    if only_dispatch {
        return Ok(());
    }
    println!("hub on PostgreSQL, two replicas, {N_SCALE_STATIONS} stations long-polling at once:");
    many_waiting(
        &clients,
        &[first.pid(), second.pid()],
        "waiting",
        N_SCALE_STATIONS,
        N_SCALE_SAMPLES,
    )
    .await?;
    Ok(())
}
