//! The hub's database: stations, researchers, jobs, stops and seen nonces, over sqlx, on SQLite
//! (one machine) or PostgreSQL (several hub replicas), chosen by the URL's scheme.
//!
//! Owns every SQL statement, written in portable SQL (`$n` binds, `ON CONFLICT … DO NOTHING`,
//! TEXT/BIGINT columns, times as Unix milliseconds) so that both backends run the same migrations
//! through sqlx's `Any` driver, and nearly all the same statements. The hot path is a few
//! statements per job, because on a small machine each round trip and commit is what dispatch
//! costs: a job and its stops are stored in one statement on PostgreSQL (a `WITH … INSERT` that
//! also announces the ready stops with `pg_notify`, so an announcement goes out exactly when the
//! job commits), in one transaction on SQLite; a lease is one conditional `UPDATE … RETURNING`
//! whose candidate row is, on PostgreSQL, locked `FOR UPDATE SKIP LOCKED` (replicas polling for
//! one station never queue on the same row) and joined with its job in the same statement;
//! request nonces of concurrent requests are written in one `INSERT` ([`nonces`]); registered
//! stations and researchers, which never change, are read once per replica ([`Registered`]).
//! Every other state change is an `UPDATE … WHERE status = <the state read>` whose row count
//! says whether it won, so one stop can never be held by two leases on either backend. Every
//! transaction starts with a write, which SQLite needs to avoid upgrade deadlocks. Decides
//! nothing about what is allowed: that is [`crate::rules`].

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use pht_api::v1::StopState;
use pht_core::job::RouteMode;
use pht_core::Digest;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor as _, Row};
use uuid::Uuid;

mod nonces;

use crate::rules::{state_from_name, state_name, unfinished_stop_states, JobProgress};

/// Why the database could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `url` is shown without its password ([`redact_url`]).
    #[error("cannot open the database `{url}`: {source}")]
    Open {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("`{url}`: the store must be a sqlite:// or postgres:// URL")]
    Scheme { url: String },
    #[error("cannot migrate the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error while trying to {operation}: {source}")]
    Query {
        operation: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// One failure answered to every request of a batch ([`nonces`]).
    #[error("database error while trying to {operation}: {source}")]
    Shared {
        operation: &'static str,
        #[source]
        source: Arc<sqlx::Error>,
    },
    #[error("{what} has stopped; restart the hub")]
    Stopped { what: &'static str },
    #[error("the database holds a value the hub cannot read: {what}")]
    Corrupt { what: String },
}

fn query_error(operation: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { operation, source }
}

/// A station's audit checkpoint as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRow {
    pub station_id: String,
    pub seq: u64,
    pub head_hash: String,
    pub checkpoint_time: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    /// The DSSE envelope's JSON as the station sent it.
    pub envelope: String,
}

/// What keeping a checkpoint did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointInsert {
    New,
    Repeated,
    Contradicts { kept_hash: String },
}

fn millis(time: DateTime<Utc>) -> i64 {
    time.timestamp_millis()
}

fn from_millis(column: &str, value: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(value).ok_or_else(|| StoreError::Corrupt {
        what: format!("{column} = {value} is not a time"),
    })
}

fn parse_digest(column: &str, value: &str) -> Result<Digest, StoreError> {
    Digest::from_str(value).map_err(|_| StoreError::Corrupt {
        what: format!("{column} = `{value}` is not a digest"),
    })
}

fn mode_name(mode: RouteMode) -> &'static str {
    match mode {
        RouteMode::Sequential => "sequential",
        RouteMode::Parallel => "parallel",
    }
}

fn parse_mode(value: &str) -> Result<RouteMode, StoreError> {
    match value {
        "sequential" => Ok(RouteMode::Sequential),
        "parallel" => Ok(RouteMode::Parallel),
        other => Err(StoreError::Corrupt {
            what: format!("route mode `{other}`"),
        }),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StationRow {
    pub id: String,
    pub public_key_pem: String,
    pub age_recipient: String,
    pub registered_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResearcherRow {
    pub id: String,
    pub public_key_pem: String,
    pub registered_at: DateTime<Utc>,
}

/// A new job as the hub accepted it.
#[derive(Debug, Clone)]
pub struct JobRow {
    pub job_id: Uuid,
    pub researcher_id: String,
    pub envelope: String,
    pub mode: RouteMode,
    pub train_repository: String,
    pub train_digest: Digest,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub submitted_at: DateTime<Utc>,
    pub cancelled_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResult {
    pub digest: Digest,
    pub size_bytes: u64,
    pub uploaded_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopRow {
    pub job_id: Uuid,
    pub stop_index: u32,
    pub station_id: String,
    pub status: StopState,
    pub reason: Option<String>,
    pub updated_at: DateTime<Utc>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
    pub input_state: Option<Digest>,
    pub result: Option<StoredResult>,
}

/// The outcome of registering an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration<T> {
    Created(T),
    /// The id was already registered; here is what it holds.
    Existing(T),
}

const STOP_COLUMNS: &str = "job_id, stop_index, station_id, status, reason, updated_at, \
     lease_expires_at, expires_at, input_state_digest, result_digest, result_size_bytes, \
     result_uploaded_at";

const JOB_COLUMNS: &str = "job_id, researcher_id, envelope, mode, train_repository, \
     train_digest, issued_at, expires_at, submitted_at, cancelled_at";

fn stop_from_row(row: &AnyRow) -> Result<StopRow, StoreError> {
    let read = |error: sqlx::Error| StoreError::Corrupt {
        what: format!("stop row: {error}"),
    };
    let job_id: String = row.try_get("job_id").map_err(read)?;
    let status: String = row.try_get("status").map_err(read)?;
    let optional_time = |column: &str| -> Result<Option<DateTime<Utc>>, StoreError> {
        let value: Option<i64> = row.try_get(column).map_err(read)?;
        value.map(|value| from_millis(column, value)).transpose()
    };
    let result_digest: Option<String> = row.try_get("result_digest").map_err(read)?;
    let result = match result_digest {
        None => None,
        Some(digest) => {
            let size: i64 = row.try_get("result_size_bytes").map_err(read)?;
            let uploaded_at: i64 = row.try_get("result_uploaded_at").map_err(read)?;
            Some(StoredResult {
                digest: parse_digest("result_digest", &digest)?,
                size_bytes: u64::try_from(size).unwrap_or_default(),
                uploaded_at: from_millis("result_uploaded_at", uploaded_at)?,
            })
        }
    };
    let input_state: Option<String> = row.try_get("input_state_digest").map_err(read)?;
    let stop_index: i64 = row.try_get("stop_index").map_err(read)?;
    Ok(StopRow {
        job_id: Uuid::parse_str(&job_id).map_err(|_| StoreError::Corrupt {
            what: format!("job id `{job_id}`"),
        })?,
        stop_index: u32::try_from(stop_index).map_err(|_| StoreError::Corrupt {
            what: format!("stop index {stop_index}"),
        })?,
        station_id: row.try_get("station_id").map_err(read)?,
        status: state_from_name(&status).ok_or_else(|| StoreError::Corrupt {
            what: format!("stop status `{status}`"),
        })?,
        reason: row.try_get("reason").map_err(read)?,
        updated_at: from_millis("updated_at", row.try_get("updated_at").map_err(read)?)?,
        lease_expires_at: optional_time("lease_expires_at")?,
        expires_at: from_millis("expires_at", row.try_get("expires_at").map_err(read)?)?,
        input_state: input_state
            .map(|digest| parse_digest("input_state_digest", &digest))
            .transpose()?,
        result,
    })
}

fn job_from_row(row: &AnyRow) -> Result<JobRow, StoreError> {
    let read = |error: sqlx::Error| StoreError::Corrupt {
        what: format!("job row: {error}"),
    };
    let job_id: String = row.try_get("job_id").map_err(read)?;
    let mode: String = row.try_get("mode").map_err(read)?;
    let train_digest: String = row.try_get("train_digest").map_err(read)?;
    let cancelled_at: Option<i64> = row.try_get("cancelled_at").map_err(read)?;
    Ok(JobRow {
        job_id: Uuid::parse_str(&job_id).map_err(|_| StoreError::Corrupt {
            what: format!("job id `{job_id}`"),
        })?,
        researcher_id: row.try_get("researcher_id").map_err(read)?,
        envelope: row.try_get("envelope").map_err(read)?,
        mode: parse_mode(&mode)?,
        train_repository: row.try_get("train_repository").map_err(read)?,
        train_digest: parse_digest("train_digest", &train_digest)?,
        issued_at: from_millis("issued_at", row.try_get("issued_at").map_err(read)?)?,
        expires_at: from_millis("expires_at", row.try_get("expires_at").map_err(read)?)?,
        submitted_at: from_millis("submitted_at", row.try_get("submitted_at").map_err(read)?)?,
        cancelled_at: cancelled_at
            .map(|value| from_millis("cancelled_at", value))
            .transpose()?,
    })
}

/// Which database the store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a store URL names, if any.
    pub fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// `url` with any password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_string(),
        // Not a URL the store could open either; show its scheme only, in case it holds a secret.
        Err(_) => format!("{}:…", url.split(':').next().unwrap_or_default()),
    }
}

/// The channel on which PostgreSQL replicas announce new work: the payload is a station id.
pub const WORK_CHANNEL: &str = "pht_work";

/// The hub's database handle.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// This replica's name in its announcements, so that it does not wake its own polls twice.
    replica: Arc<str>,
    registered: Arc<Registered>,
    nonces: nonces::NonceWriter,
}

/// Stations and researchers read from the database, kept for the replica's lifetime: a
/// registration is never changed or removed (`ON CONFLICT DO NOTHING`, and no statement updates
/// or deletes one), so a kept row can never be stale. Only rows found are kept, so an id
/// registered through another replica is seen at once. At most one entry per registered id.
/// A future key rotation or revocation must forget the row here on every replica (announced
/// like work) before it can be relied on.
#[derive(Debug, Default)]
struct Registered {
    stations: Mutex<HashMap<String, StationRow>>,
    researchers: Mutex<HashMap<String, ResearcherRow>>,
}

/// The row kept for `id`, or what `read` finds, kept when found.
async fn read_once<T: Clone>(
    kept: &Mutex<HashMap<String, T>>,
    id: &str,
    read: impl std::future::Future<Output = Result<Option<T>, StoreError>>,
) -> Result<Option<T>, StoreError> {
    let lock = || kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(row) = lock().get(id) {
        return Ok(Some(row.clone()));
    }
    let row = read.await?;
    if let Some(row) = &row {
        lock().insert(id.to_string(), row.clone());
    }
    Ok(row)
}

/// A stop just leased, with what its work item carries from the job.
#[derive(Debug, Clone)]
pub struct Lease {
    pub stop: StopRow,
    pub envelope: String,
    pub mode: RouteMode,
}

/// The announcement payload: `<replica> <station>` (station ids hold no spaces). The
/// submission statement builds the same in SQL (`$replica || ' ' || station_id`).
pub fn announcement(replica: &str, station: &str) -> String {
    format!("{replica} {station}")
}

/// The station of an announcement, unless `replica` made it (it woke its own polls already).
pub fn announced_station<'a>(payload: &'a str, replica: &str) -> Option<&'a str> {
    match payload.split_once(' ') {
        Some((from, _)) if from == replica => None,
        Some((_, station)) => Some(station),
        // From a replica that names no sender.
        None => Some(payload),
    }
}

/// A state change of one stop that another request may have raced.
#[derive(Debug, Clone)]
pub struct StopTransition<'a> {
    pub job_id: Uuid,
    pub stop_index: u32,
    pub from: StopState,
    pub to: StopState,
    pub reason: Option<&'a str>,
    pub now: DateTime<Utc>,
}

/// What a completed stop hands on.
#[derive(Debug, Clone)]
pub struct Completion<'a> {
    pub transition: StopTransition<'a>,
    pub result: StoredResult,
    /// For a sequential route: the next stop's index and the state blob it receives.
    pub next_stop: Option<(u32, Option<&'a Digest>)>,
}

impl Store {
    /// Opens the database at `url` (a SQLite file is created if needed) and migrates it. On
    /// PostgreSQL, replicas starting at once migrate one after another (sqlx holds an advisory
    /// lock while migrating). `connections` bounds a PostgreSQL pool (default
    /// [`crate::config::DEFAULT_STORE_CONNECTIONS`]); SQLite's is fixed.
    pub async fn open(url: &str, connections: Option<u32>) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url).ok_or_else(|| StoreError::Scheme {
            url: redact_url(url),
        })?;
        let open_error = |source| StoreError::Open {
            url: redact_url(url),
            source,
        };
        let pool = match backend {
            Backend::Sqlite => {
                let url = if url.contains("mode=") {
                    url.to_string()
                } else if url.contains('?') {
                    format!("{url}&mode=rwc")
                } else {
                    format!("{url}?mode=rwc")
                };
                // WAL with FULL synchronous: a commit is acknowledged only once it is on disk
                // (NORMAL would let the last commits vanish on power loss). Foreign keys on, and
                // writers wait for each other rather than fail.
                AnyPoolOptions::new()
                    .max_connections(4)
                    .after_connect(|connection, _| {
                        Box::pin(async move {
                            connection
                                .execute(
                                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                                     PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                                )
                                .await
                                .map(|_| ())
                        })
                    })
                    .connect(&url)
                    .await
                    .map_err(open_error)?
            }
            // PostgreSQL's own defaults are durable (fsync on, synchronous_commit on).
            Backend::Postgres => AnyPoolOptions::new()
                .max_connections(connections.unwrap_or(crate::config::DEFAULT_STORE_CONNECTIONS))
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await
                .map_err(open_error)?,
        };
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Store {
            backend,
            replica: Uuid::new_v4().simple().to_string().into(),
            registered: Arc::default(),
            nonces: nonces::NonceWriter::start(pool.clone()),
            pool,
        })
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// This replica's name in its announcements of work.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Whether the database answers: for `/readyz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(query_error("answer a readiness check"))?;
        Ok(())
    }

    /// Tells every replica listening on PostgreSQL that `station` has work offered. A no-op on
    /// SQLite (one hub). A lost announcement only delays the work until the next sweep.
    pub async fn announce_work(&self, station: &str) -> Result<(), StoreError> {
        if self.backend != Backend::Postgres {
            return Ok(());
        }
        // Counted, not selected: the Any driver reads every result column, and pg_notify's
        // is `void`, a type it has no value for.
        sqlx::query("SELECT count(*) AS sent FROM (SELECT pg_notify($1, $2)) AS notified")
            .bind(WORK_CHANNEL)
            .bind(announcement(&self.replica, station))
            .execute(&self.pool)
            .await
            .map_err(query_error("announce work to the other replicas"))?;
        Ok(())
    }

    /// The stations that have a stop offered now (ready, or leased with a lapsed lease): the
    /// sweep's re-check, which wakes their long-polls in case an announcement was lost.
    pub async fn stations_with_work(&self, now: DateTime<Utc>) -> Result<Vec<String>, StoreError> {
        sqlx::query(
            "SELECT DISTINCT station_id FROM stops WHERE expires_at > $1 \
             AND (status = 'ready' OR (status = 'leased' AND lease_expires_at <= $1))",
        )
        .bind(millis(now))
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("find stations with work"))?
        .iter()
        .map(|row| row.try_get::<String, _>("station_id"))
        .collect::<Result<_, _>>()
        .map_err(query_error("read stations with work"))
    }

    /// How many stops are in each state; states without stops are left out. One
    /// `COUNT … GROUP BY` over the `stops_by_status` index, for `/metrics`.
    pub async fn count_stops_by_state(&self) -> Result<Vec<(StopState, u64)>, StoreError> {
        sqlx::query("SELECT status, COUNT(*) AS n_stops FROM stops GROUP BY status")
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("count stops by state"))?
            .iter()
            .map(|row| {
                let read = |error: sqlx::Error| StoreError::Corrupt {
                    what: format!("stop count row: {error}"),
                };
                let status: String = row.try_get("status").map_err(read)?;
                let n_stops: i64 = row.try_get("n_stops").map_err(read)?;
                let state = state_from_name(&status).ok_or_else(|| StoreError::Corrupt {
                    what: format!("stop status `{status}`"),
                })?;
                Ok((state, u64::try_from(n_stops).unwrap_or_default()))
            })
            .collect()
    }

    /// How many jobs share each [`JobProgress`]; progresses without jobs are left out. One
    /// `COUNT … GROUP BY` over the jobs, each probing its stops by the primary key, for
    /// `/metrics`. Which progress is which job state stays [`crate::rules`]'s to say; which
    /// stop states are unfinished is bound from [`unfinished_stop_states`], not written here.
    pub async fn count_jobs_by_progress(&self) -> Result<Vec<(JobProgress, u64)>, StoreError> {
        let unfinished: Vec<&'static str> = unfinished_stop_states().map(state_name).collect();
        // `$1` is `done`; the unfinished states follow from `$2`.
        let unfinished_binds = (2..unfinished.len() + 2)
            .map(|bind_idx| format!("${bind_idx}"))
            .collect::<Vec<_>>()
            .join(", ");
        // The flags are integers, not booleans: SQLite has no boolean type, and a CASE gives
        // the same column type on both backends.
        let statement = format!(
            "SELECT cancelled, any_unfinished, any_not_done, COUNT(*) AS n_jobs FROM (\
                 SELECT \
                 CASE WHEN jobs.cancelled_at IS NULL THEN 0 ELSE 1 END AS cancelled, \
                 CASE WHEN EXISTS (SELECT 1 FROM stops WHERE stops.job_id = jobs.job_id \
                     AND stops.status IN ({unfinished_binds})) THEN 1 ELSE 0 END AS any_unfinished, \
                 CASE WHEN EXISTS (SELECT 1 FROM stops WHERE stops.job_id = jobs.job_id \
                     AND stops.status <> $1) THEN 1 ELSE 0 END AS any_not_done \
                 FROM jobs) AS job_progress \
             GROUP BY cancelled, any_unfinished, any_not_done"
        );
        let mut query = sqlx::query(&statement).bind(state_name(StopState::Done));
        for state in unfinished {
            query = query.bind(state);
        }
        query
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("count jobs by state"))?
            .iter()
            .map(|row| {
                let read = |error: sqlx::Error| StoreError::Corrupt {
                    what: format!("job count row: {error}"),
                };
                let flag = |column: &str| -> Result<bool, StoreError> {
                    Ok(row.try_get::<i64, _>(column).map_err(read)? != 0)
                };
                let n_jobs: i64 = row.try_get("n_jobs").map_err(read)?;
                Ok((
                    JobProgress {
                        cancelled: flag("cancelled")?,
                        any_unfinished: flag("any_unfinished")?,
                        any_not_done: flag("any_not_done")?,
                    },
                    u64::try_from(n_jobs).unwrap_or_default(),
                ))
            })
            .collect()
    }

    pub async fn register_station(
        &self,
        station: &StationRow,
    ) -> Result<Registration<StationRow>, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO stations (id, public_key_pem, age_recipient, registered_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&station.id)
        .bind(&station.public_key_pem)
        .bind(&station.age_recipient)
        .bind(millis(station.registered_at))
        .execute(&self.pool)
        .await
        .map_err(query_error("register a station"))?
        .rows_affected();
        let stored = self
            .station(&station.id)
            .await?
            .ok_or_else(|| StoreError::Corrupt {
                what: format!("station `{}` vanished after registration", station.id),
            })?;
        Ok(if inserted == 1 {
            Registration::Created(stored)
        } else {
            Registration::Existing(stored)
        })
    }

    fn station_from_row(row: &AnyRow) -> Result<StationRow, StoreError> {
        let read = |error: sqlx::Error| StoreError::Corrupt {
            what: format!("station row: {error}"),
        };
        Ok(StationRow {
            id: row.try_get("id").map_err(read)?,
            public_key_pem: row.try_get("public_key_pem").map_err(read)?,
            age_recipient: row.try_get("age_recipient").map_err(read)?,
            registered_at: from_millis(
                "registered_at",
                row.try_get("registered_at").map_err(read)?,
            )?,
        })
    }

    fn researcher_from_row(row: &AnyRow) -> Result<ResearcherRow, StoreError> {
        let read = |error: sqlx::Error| StoreError::Corrupt {
            what: format!("researcher row: {error}"),
        };
        Ok(ResearcherRow {
            id: row.try_get("id").map_err(read)?,
            public_key_pem: row.try_get("public_key_pem").map_err(read)?,
            registered_at: from_millis(
                "registered_at",
                row.try_get("registered_at").map_err(read)?,
            )?,
        })
    }

    /// The registered station `id`, read once per replica (see [`Registered`]).
    pub async fn station(&self, id: &str) -> Result<Option<StationRow>, StoreError> {
        read_once(&self.registered.stations, id, async {
            sqlx::query(
                "SELECT id, public_key_pem, age_recipient, registered_at FROM stations \
                 WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error("read a station"))?
            .as_ref()
            .map(Store::station_from_row)
            .transpose()
        })
        .await
    }

    pub async fn stations(&self) -> Result<Vec<StationRow>, StoreError> {
        sqlx::query(
            "SELECT id, public_key_pem, age_recipient, registered_at FROM stations ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("list stations"))?
        .iter()
        .map(Store::station_from_row)
        .collect()
    }

    /// Which of `ids` are not registered stations.
    pub async fn unregistered_stations(&self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        let mut missing = Vec::new();
        for id in ids {
            if self.station(id).await?.is_none() {
                missing.push(id.clone());
            }
        }
        Ok(missing)
    }

    /// Keeps a station's checkpoint (append-only). A repeat of a kept checkpoint is
    /// [`CheckpointInsert::Repeated`]; another hash at a sequence number already witnessed is
    /// [`CheckpointInsert::Contradicts`] and changes nothing: the station's log was rewritten.
    pub async fn insert_checkpoint(
        &self,
        checkpoint: &CheckpointRow,
    ) -> Result<CheckpointInsert, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO audit_checkpoints \
             (station_id, seq, head_hash, checkpoint_time, received_at, envelope) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (station_id, seq) DO NOTHING",
        )
        .bind(&checkpoint.station_id)
        .bind(i64::try_from(checkpoint.seq).unwrap_or(i64::MAX))
        .bind(&checkpoint.head_hash)
        .bind(millis(checkpoint.checkpoint_time))
        .bind(millis(checkpoint.received_at))
        .bind(&checkpoint.envelope)
        .execute(&self.pool)
        .await
        .map_err(query_error("keep an audit checkpoint"))?
        .rows_affected();
        if inserted == 1 {
            return Ok(CheckpointInsert::New);
        }
        let kept: Option<String> = sqlx::query_scalar(
            "SELECT head_hash FROM audit_checkpoints WHERE station_id = $1 AND seq = $2",
        )
        .bind(&checkpoint.station_id)
        .bind(i64::try_from(checkpoint.seq).unwrap_or(i64::MAX))
        .fetch_optional(&self.pool)
        .await
        .map_err(query_error("read an audit checkpoint"))?;
        Ok(match kept {
            Some(hash) if hash == checkpoint.head_hash => CheckpointInsert::Repeated,
            Some(hash) => CheckpointInsert::Contradicts { kept_hash: hash },
            None => {
                return Err(StoreError::Corrupt {
                    what: "an audit checkpoint neither inserted nor found".into(),
                })
            }
        })
    }

    /// A station's checkpoints as signed (DSSE envelopes), oldest sequence number first.
    pub async fn checkpoints(&self, station_id: &str) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT envelope FROM audit_checkpoints WHERE station_id = $1 ORDER BY seq",
        )
        .bind(station_id)
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("list audit checkpoints"))
    }

    pub async fn register_researcher(
        &self,
        researcher: &ResearcherRow,
    ) -> Result<Registration<ResearcherRow>, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO researchers (id, public_key_pem, registered_at) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&researcher.id)
        .bind(&researcher.public_key_pem)
        .bind(millis(researcher.registered_at))
        .execute(&self.pool)
        .await
        .map_err(query_error("register a researcher"))?
        .rows_affected();
        let stored = self
            .researcher(&researcher.id)
            .await?
            .ok_or_else(|| StoreError::Corrupt {
                what: format!("researcher `{}` vanished after registration", researcher.id),
            })?;
        Ok(if inserted == 1 {
            Registration::Created(stored)
        } else {
            Registration::Existing(stored)
        })
    }

    /// The registered researcher `id`, read once per replica (see [`Registered`]).
    pub async fn researcher(&self, id: &str) -> Result<Option<ResearcherRow>, StoreError> {
        read_once(&self.registered.researchers, id, async {
            sqlx::query("SELECT id, public_key_pem, registered_at FROM researchers WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(query_error("read a researcher"))?
                .as_ref()
                .map(Store::researcher_from_row)
                .transpose()
        })
        .await
    }

    pub async fn researchers(&self) -> Result<Vec<ResearcherRow>, StoreError> {
        sqlx::query("SELECT id, public_key_pem, registered_at FROM researchers ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("list researchers"))?
            .iter()
            .map(Store::researcher_from_row)
            .collect()
    }

    /// Records a signature's nonce; `false` when `keyid` already used it (a replay). Written
    /// with the nonces of concurrent requests in one statement ([`nonces`]).
    pub async fn remember_nonce(
        &self,
        keyid: &str,
        nonce: &str,
        forget_after: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.nonces
            .remember(keyid, nonce, millis(forget_after))
            .await
    }

    /// Drops nonces whose signatures can no longer pass the clock-skew check.
    pub async fn forget_nonces_before(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("DELETE FROM seen_nonces WHERE forget_after < $1")
                .bind(millis(now))
                .execute(&self.pool)
                .await
                .map_err(query_error("forget old nonces"))?
                .rows_affected(),
        )
    }

    /// Stores a new job and its stops, and returns the stops; `None` when the job id is
    /// already taken. On PostgreSQL the stations of the stops that are ready are announced to
    /// every replica (not to this one: the caller wakes its own polls) in the same statement,
    /// so an announcement is sent exactly when the job is committed.
    pub async fn insert_job(
        &self,
        job: &JobRow,
        stations: &[String],
    ) -> Result<Option<Vec<StopRow>>, StoreError> {
        // The times as stored (milliseconds), so that the stops returned equal those read later.
        let submitted_at = from_millis("submitted_at", millis(job.submitted_at))?;
        let expires_at = from_millis("expires_at", millis(job.expires_at))?;
        let stops: Vec<StopRow> = stations
            .iter()
            .enumerate()
            .map(|(stop_index, station)| StopRow {
                job_id: job.job_id,
                stop_index: stop_index as u32,
                station_id: station.clone(),
                status: if job.mode == RouteMode::Parallel || stop_index == 0 {
                    StopState::Ready
                } else {
                    StopState::Pending
                },
                reason: None,
                updated_at: submitted_at,
                lease_expires_at: None,
                expires_at,
                input_state: None,
                result: None,
            })
            .collect();
        // (A job always has stops; without, there would be nothing to announce either.)
        let inserted = match self.backend {
            Backend::Postgres if !stops.is_empty() => {
                self.insert_job_announced(job, &stops).await?
            }
            _ => self.insert_job_in_transaction(job, &stops).await?,
        };
        Ok(inserted.then_some(stops))
    }

    /// The job's columns and its stops' `VALUES` rows, from bind `$first` on: the statement
    /// text depends only on the number of stops.
    fn stop_values(first: usize, n_stops: usize) -> String {
        (0..n_stops)
            .map(|i| {
                let n = first + 4 * i;
                format!(
                    "(CAST(${n} AS INTEGER), CAST(${} AS TEXT), CAST(${} AS TEXT), CAST(${} AS BIGINT))",
                    n + 1,
                    n + 2,
                    n + 3
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn bind_job<'q>(
        query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
        job: &'q JobRow,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        query
            .bind(job.job_id.to_string())
            .bind(&job.researcher_id)
            .bind(&job.envelope)
            .bind(mode_name(job.mode))
            .bind(&job.train_repository)
            .bind(job.train_digest.to_string())
            .bind(millis(job.issued_at))
            .bind(millis(job.expires_at))
            .bind(millis(job.submitted_at))
            .bind(job.cancelled_at.map(millis))
    }

    fn bind_stops<'q>(
        mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
        stops: &'q [StopRow],
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        for stop in stops {
            let ready = stop.status == StopState::Ready;
            query = query
                .bind(i64::from(stop.stop_index))
                .bind(&stop.station_id)
                .bind(state_name(stop.status))
                .bind(ready.then(|| millis(stop.updated_at)));
        }
        query
    }

    /// [`Store::insert_job`] on PostgreSQL: the job, its stops and the announcements in one
    /// statement (one round trip, one commit).
    async fn insert_job_announced(
        &self,
        job: &JobRow,
        stops: &[StopRow],
    ) -> Result<bool, StoreError> {
        let n = 10;
        let sql = format!(
            "WITH job AS (\
                 INSERT INTO jobs ({JOB_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (job_id) DO NOTHING RETURNING job_id, submitted_at, expires_at), \
             stop AS (\
                 INSERT INTO stops (job_id, stop_index, station_id, status, updated_at, ready_at, \
                 expires_at) \
                 SELECT job.job_id, s.stop_index, s.station_id, s.status, job.submitted_at, \
                 s.ready_at, job.expires_at \
                 FROM job, (VALUES {values}) AS s (stop_index, station_id, status, ready_at) \
                 RETURNING station_id, status), \
             announced AS (\
                 SELECT pg_notify(${channel}, ${replica} || ' ' || station_id) FROM stop \
                 WHERE status = 'ready') \
             SELECT (SELECT count(*) FROM job) AS jobs, (SELECT count(*) FROM announced) AS sent",
            values = Store::stop_values(n + 1, stops.len()),
            channel = n + 1 + 4 * stops.len(),
            replica = n + 2 + 4 * stops.len(),
        );
        let query = Store::bind_stops(Store::bind_job(sqlx::query(&sql), job), stops)
            .bind(WORK_CHANNEL)
            .bind(&*self.replica);
        let row = query
            .fetch_one(&self.pool)
            .await
            .map_err(query_error("store a job"))?;
        let jobs: i64 = row.try_get("jobs").map_err(query_error("store a job"))?;
        Ok(jobs == 1)
    }

    /// [`Store::insert_job`] on SQLite: the job and its stops in one transaction, which
    /// announces nothing (one hub).
    async fn insert_job_in_transaction(
        &self,
        job: &JobRow,
        stops: &[StopRow],
    ) -> Result<bool, StoreError> {
        let mut transaction = self
            .pool
            .begin()
            .await
            .map_err(query_error("begin storing a job"))?;
        let inserted = Store::bind_job(
            sqlx::query(&format!(
                "INSERT INTO jobs ({JOB_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (job_id) DO NOTHING"
            )),
            job,
        )
        .execute(&mut *transaction)
        .await
        .map_err(query_error("store a job"))?
        .rows_affected();
        if inserted == 0 {
            return Ok(false);
        }
        if stops.is_empty() {
            transaction
                .commit()
                .await
                .map_err(query_error("commit a job"))?;
            return Ok(true);
        }
        let sql = format!(
            "INSERT INTO stops (job_id, stop_index, station_id, status, updated_at, ready_at, \
             expires_at) \
             SELECT $1, s.column1, s.column2, s.column3, $2, s.column4, $3 FROM (VALUES {}) AS s",
            Store::stop_values(4, stops.len())
        );
        Store::bind_stops(
            sqlx::query(&sql)
                .bind(job.job_id.to_string())
                .bind(millis(job.submitted_at))
                .bind(millis(job.expires_at)),
            stops,
        )
        .execute(&mut *transaction)
        .await
        .map_err(query_error("store a job's stops"))?;
        transaction
            .commit()
            .await
            .map_err(query_error("commit a job"))?;
        Ok(true)
    }

    pub async fn job(&self, job_id: Uuid) -> Result<Option<JobRow>, StoreError> {
        sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE job_id = $1"))
            .bind(job_id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error("read a job"))?
            .as_ref()
            .map(job_from_row)
            .transpose()
    }

    pub async fn stops(&self, job_id: Uuid) -> Result<Vec<StopRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {STOP_COLUMNS} FROM stops WHERE job_id = $1 ORDER BY stop_index"
        ))
        .bind(job_id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("read a job's stops"))?
        .iter()
        .map(stop_from_row)
        .collect()
    }

    pub async fn stop_of_station(
        &self,
        job_id: Uuid,
        station_id: &str,
    ) -> Result<Option<StopRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {STOP_COLUMNS} FROM stops WHERE job_id = $1 AND station_id = $2"
        ))
        .bind(job_id.to_string())
        .bind(station_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_error("read a stop"))?
        .as_ref()
        .map(stop_from_row)
        .transpose()
    }

    /// Leases the station's oldest offerable stop (ready, or leased with a lapsed lease, and not
    /// expired) until `lease_until`, with what its work item needs from the job. One
    /// conditional `UPDATE` picks and takes the stop, so one stop is never held by two leases,
    /// even across hub replicas: on PostgreSQL its candidate row is locked `FOR UPDATE SKIP
    /// LOCKED`, so concurrent polls each take a different stop or none, and the job is joined in
    /// the same statement; on SQLite writes are serialised anyway, and the job is read after.
    pub async fn lease_next_stop(
        &self,
        station_id: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<Lease>, StoreError> {
        let (lock, join_job) = match self.backend {
            Backend::Postgres => (" FOR UPDATE SKIP LOCKED", true),
            Backend::Sqlite => ("", false),
        };
        let update = format!(
            "UPDATE stops SET status = 'leased', lease_expires_at = $1, updated_at = $2, \
             reason = NULL \
             WHERE (job_id, stop_index) = (\
                 SELECT job_id, stop_index FROM stops \
                 WHERE station_id = $3 AND expires_at > $2 \
                 AND (status = 'ready' OR (status = 'leased' AND lease_expires_at <= $2)) \
                 ORDER BY ready_at, job_id, stop_index LIMIT 1{lock}) \
             AND expires_at > $2 \
             AND (status = 'ready' OR (status = 'leased' AND lease_expires_at <= $2)) \
             RETURNING {STOP_COLUMNS}"
        );
        let sql = if join_job {
            format!(
                "WITH leased AS ({update}) SELECT leased.*, jobs.envelope, jobs.mode \
                 FROM leased JOIN jobs ON jobs.job_id = leased.job_id"
            )
        } else {
            update
        };
        let Some(row) = sqlx::query(&sql)
            .bind(millis(lease_until))
            .bind(millis(now))
            .bind(station_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error("lease a stop"))?
        else {
            return Ok(None);
        };
        let stop = stop_from_row(&row)?;
        let (envelope, mode) = if join_job {
            let read = || query_error("read a leased stop's job");
            let envelope: String = row.try_get("envelope").map_err(read())?;
            let mode: String = row.try_get("mode").map_err(read())?;
            (envelope, parse_mode(&mode)?)
        } else {
            let job = self
                .job(stop.job_id)
                .await?
                .ok_or_else(|| StoreError::Corrupt {
                    what: format!("stop of missing job {}", stop.job_id),
                })?;
            (job.envelope, job.mode)
        };
        Ok(Some(Lease {
            stop,
            envelope,
            mode,
        }))
    }

    /// Applies a status report; `false` when the stop was no longer in `from` (a race).
    /// `skip_later_with` skips the later pending stops of a sequential route with that reason.
    pub async fn transition_stop(
        &self,
        transition: &StopTransition<'_>,
        skip_later_with: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut transaction = self
            .pool
            .begin()
            .await
            .map_err(query_error("begin a stop update"))?;
        let updated = sqlx::query(
            "UPDATE stops SET status = $1, reason = $2, updated_at = $3, lease_expires_at = NULL \
             WHERE job_id = $4 AND stop_index = $5 AND status = $6",
        )
        .bind(state_name(transition.to))
        .bind(transition.reason)
        .bind(millis(transition.now))
        .bind(transition.job_id.to_string())
        .bind(i64::from(transition.stop_index))
        .bind(state_name(transition.from))
        .execute(&mut *transaction)
        .await
        .map_err(query_error("update a stop"))?
        .rows_affected();
        if updated == 0 {
            return Ok(false);
        }
        if let Some(reason) = skip_later_with {
            sqlx::query(
                "UPDATE stops SET status = 'skipped', reason = $1, updated_at = $2 \
                 WHERE job_id = $3 AND stop_index > $4 AND status = 'pending'",
            )
            .bind(reason)
            .bind(millis(transition.now))
            .bind(transition.job_id.to_string())
            .bind(i64::from(transition.stop_index))
            .execute(&mut *transaction)
            .await
            .map_err(query_error("skip the rest of a route"))?;
        }
        transaction
            .commit()
            .await
            .map_err(query_error("commit a stop update"))?;
        Ok(true)
    }

    /// Records a delivered result and, for a sequential route, makes the next stop ready with
    /// its state. `false` when the stop changed meanwhile.
    pub async fn complete_stop(&self, completion: &Completion<'_>) -> Result<bool, StoreError> {
        let transition = &completion.transition;
        let mut transaction = self
            .pool
            .begin()
            .await
            .map_err(query_error("begin storing a result"))?;
        let updated = sqlx::query(
            "UPDATE stops SET status = 'done', reason = NULL, updated_at = $1, \
             lease_expires_at = NULL, result_digest = $2, result_size_bytes = $3, \
             result_uploaded_at = $1 \
             WHERE job_id = $4 AND stop_index = $5 AND status = $6",
        )
        .bind(millis(transition.now))
        .bind(completion.result.digest.to_string())
        .bind(i64::try_from(completion.result.size_bytes).unwrap_or(i64::MAX))
        .bind(transition.job_id.to_string())
        .bind(i64::from(transition.stop_index))
        .bind(state_name(transition.from))
        .execute(&mut *transaction)
        .await
        .map_err(query_error("store a result"))?
        .rows_affected();
        if updated == 0 {
            return Ok(false);
        }
        if let Some((next_index, next_state)) = completion.next_stop {
            sqlx::query(
                "UPDATE stops SET status = 'ready', ready_at = $1, updated_at = $1, \
                 input_state_digest = $2 \
                 WHERE job_id = $3 AND stop_index = $4 AND status = 'pending'",
            )
            .bind(millis(transition.now))
            .bind(next_state.map(ToString::to_string))
            .bind(transition.job_id.to_string())
            .bind(i64::from(next_index))
            .execute(&mut *transaction)
            .await
            .map_err(query_error("advance a sequential route"))?;
        }
        transaction
            .commit()
            .await
            .map_err(query_error("commit a result"))?;
        Ok(true)
    }

    /// Marks the job cancelled and ends its unfinished stops.
    pub async fn cancel_job(&self, job_id: Uuid, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut transaction = self
            .pool
            .begin()
            .await
            .map_err(query_error("begin cancelling a job"))?;
        sqlx::query("UPDATE jobs SET cancelled_at = $1 WHERE job_id = $2 AND cancelled_at IS NULL")
            .bind(millis(now))
            .bind(job_id.to_string())
            .execute(&mut *transaction)
            .await
            .map_err(query_error("cancel a job"))?;
        sqlx::query(
            "UPDATE stops SET status = 'cancelled', reason = 'cancelled by the researcher', \
             updated_at = $1, lease_expires_at = NULL \
             WHERE job_id = $2 AND status IN ('pending', 'ready', 'leased', 'running', 'withheld')",
        )
        .bind(millis(now))
        .bind(job_id.to_string())
        .execute(&mut *transaction)
        .await
        .map_err(query_error("cancel a job's stops"))?;
        transaction
            .commit()
            .await
            .map_err(query_error("commit a cancellation"))?;
        Ok(())
    }

    /// Returns lapsed leases to `ready` and expires work not picked up before its job's
    /// `expires_at`, for one job or all. Returns the stations that have work offered again.
    pub async fn release_and_expire(
        &self,
        now: DateTime<Utc>,
        job_id: Option<Uuid>,
    ) -> Result<Vec<String>, StoreError> {
        let job_filter = job_id.map(|job_id| job_id.to_string());
        let released_stations: Vec<String> = sqlx::query(
            "SELECT DISTINCT station_id FROM stops \
             WHERE status = 'leased' AND lease_expires_at <= $1 AND expires_at > $1 \
             AND ($2 IS NULL OR job_id = $2)",
        )
        .bind(millis(now))
        .bind(job_filter.as_deref())
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("find lapsed leases"))?
        .iter()
        .map(|row| row.try_get::<String, _>("station_id"))
        .collect::<Result<_, _>>()
        .map_err(query_error("read lapsed leases"))?;
        sqlx::query(
            "UPDATE stops SET status = 'ready', lease_expires_at = NULL, updated_at = $1, \
             reason = 'the station did not report within its lease; offered again' \
             WHERE status = 'leased' AND lease_expires_at <= $1 AND expires_at > $1 \
             AND ($2 IS NULL OR job_id = $2)",
        )
        .bind(millis(now))
        .bind(job_filter.as_deref())
        .execute(&self.pool)
        .await
        .map_err(query_error("release lapsed leases"))?;
        sqlx::query(
            "UPDATE stops SET status = 'expired', lease_expires_at = NULL, updated_at = $1, \
             reason = 'not picked up before the job expired' \
             WHERE expires_at <= $1 \
             AND (status IN ('pending', 'ready') OR (status = 'leased' AND lease_expires_at <= $1)) \
             AND ($2 IS NULL OR job_id = $2)",
        )
        .bind(millis(now))
        .bind(job_filter.as_deref())
        .execute(&self.pool)
        .await
        .map_err(query_error("expire work"))?;
        Ok(released_stations)
    }
}

#[cfg(test)]
mod tests {
    use super::{announced_station, announcement};

    #[test]
    fn a_replica_skips_its_own_announcements_and_hears_the_others() {
        let payload = announcement("replica-a", "umc-utrecht");
        assert_eq!(announced_station(&payload, "replica-a"), None);
        assert_eq!(
            announced_station(&payload, "replica-b"),
            Some("umc-utrecht")
        );
        // An announcement naming no replica wakes the station.
        assert_eq!(
            announced_station("umc-utrecht", "replica-a"),
            Some("umc-utrecht")
        );
    }
}
