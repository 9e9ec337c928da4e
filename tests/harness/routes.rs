//! A hub world for end-to-end tests of trains on routes: a registry, a hub, three stations
//! (the example datasets `station-a`, `-b`, `-c`) each with its own `pht-station run` daemon,
//! a researcher (`alice`) whose trains they run automatically and release automatically, and a
//! base signer (`bases-test`) whose bases their policies allow.
//!
//! Owns setting that world up, submitting a signed job and reading its results the way a
//! researcher does (`pht results`: download, decrypt, verify). Does not judge results: tests do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pht_api::v1::{JobState, JobStatus};
use pht_api::{Credentials, HubClient};
use pht_core::job::{JobV1, Route, RouteMode, TrainPin};
use pht_core::SigningKey;

use crate::{pht, require_docker, Daemon, Hub, PolicySigner, Registry, Researcher, StationFixture};

/// The example datasets, in route order.
pub const STATIONS: [&str; 3] = ["station-a", "station-b", "station-c"];

#[derive(Debug)]
pub struct HubWorld {
    pub runtime: tokio::runtime::Runtime,
    pub registry: Registry,
    pub keys: tempfile::TempDir,
    pub alice: Researcher,
    pub base_signer: Researcher,
    /// The hub its operator administers (`pht-hub admin` reads this one's configuration).
    pub hub: Hub,
    /// Where stations and the researcher reach the hub: `hub`'s own URL, or a load balancer
    /// in front of several replicas.
    pub hub_url: String,
    pub stations: Vec<StationFixture>,
    /// Station ids, `<tag>-station-a` …: tests running at once never share one.
    pub ids: Vec<String>,
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The policy lines that trust `signer` for bases and allow only bases it signed.
pub fn base_policy(signer: &Researcher) -> String {
    format!(
        "trusted_base_signers:\n  - name: {}\n    public_key: {}\nbase_images:\n  required: true\n  allowed:\n    - signer: {}\n",
        signer.name,
        signer.public_key.display(),
        signer.name
    )
}

impl HubWorld {
    /// Three stations that approve and release automatically.
    pub fn new(tag: &str) -> HubWorld {
        HubWorld::with(
            tag,
            3,
            "automatic",
            "outputs:\n  release: automatic\n",
            true,
        )
    }

    /// The first `n_stations` of [`STATIONS`], alice's trains approved as `approval` says
    /// (`automatic` or `manual`), with `outputs` as the policy's `outputs:` section; with
    /// `only_signed_bases`, trains must be built on a base `bases-test` signed.
    pub fn with(
        tag: &str,
        n_stations: usize,
        approval: &str,
        outputs: &str,
        only_signed_bases: bool,
    ) -> HubWorld {
        require_docker();
        let hub = Hub::start();
        let hub_url = hub.url.clone();
        HubWorld::with_hub(
            tag,
            n_stations,
            approval,
            outputs,
            only_signed_bases,
            hub,
            hub_url,
        )
    }

    /// [`HubWorld::with`] on a hub started by the test, which stations and the researcher reach
    /// at `hub_url` (a load balancer in front of replicas, say).
    pub fn with_hub(
        tag: &str,
        n_stations: usize,
        approval: &str,
        outputs: &str,
        only_signed_bases: bool,
        hub: Hub,
        hub_url: String,
    ) -> HubWorld {
        require_docker();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let registry = Registry::start();
        let keys = tempfile::tempdir().unwrap();
        let alice = Researcher::generate(keys.path(), "alice");
        let base_signer = Researcher::generate(keys.path(), "bases-test");
        let signer = PolicySigner {
            name: "alice",
            public_key: &alice.public_key,
            datasets: "[cohort]",
            approval,
        };
        let extra_policy = if only_signed_bases {
            format!("{outputs}{}", base_policy(&base_signer))
        } else {
            outputs.to_string()
        };
        let ids: Vec<String> = STATIONS[..n_stations]
            .iter()
            .map(|data| format!("{tag}-{data}"))
            .collect();
        let stations: Vec<StationFixture> = STATIONS[..n_stations]
            .iter()
            .zip(&ids)
            .map(|(data, id)| {
                let station = StationFixture::new(
                    id,
                    data,
                    registry.address(),
                    std::slice::from_ref(&signer),
                    &extra_policy,
                );
                station.station(&["keys", "init"]).success();
                station
            })
            .collect();
        let mut peers = String::from("peers:\n");
        for (id, station) in ids.iter().zip(&stations) {
            let key_dir = station.dir.path().join("keys");
            peers.push_str(&format!(
                "  {id}:\n    public_key: {}\n    age_recipient: {}\n",
                key_dir.join("station.pub").display(),
                read(&key_dir.join("station.age.pub")).trim()
            ));
        }
        for (id, station) in ids.iter().zip(&stations) {
            let mut config = read(&station.config);
            config.push_str(&format!(
                "hub:\n  url: {hub_url}\n  poll_wait: 2s\n  concurrency: 2\n{peers}"
            ));
            std::fs::write(&station.config, config).unwrap();
            let key_dir = station.dir.path().join("keys");
            hub.admin_cli(&[
                "add-station",
                id,
                "--public-key",
                &key_dir.join("station.pub").display().to_string(),
                "--age-recipient",
                &key_dir.join("station.age.pub").display().to_string(),
            ])
            .success();
        }
        hub.admin_cli(&[
            "add-researcher",
            "alice",
            "--public-key",
            &alice.public_key.display().to_string(),
        ])
        .success();
        HubWorld {
            runtime,
            registry,
            keys,
            alice,
            base_signer,
            hub,
            hub_url,
            stations,
            ids,
        }
    }

    /// A daemon for every station.
    pub fn daemons(&self) -> Vec<Daemon> {
        self.stations
            .iter()
            .map(|station| Daemon::start(&station.config))
            .collect()
    }

    /// Alice's client, reaching the hub at [`HubWorld::hub_url`].
    pub fn researcher(&self) -> HubClient {
        let key = SigningKey::from_pkcs8_pem(&read(&self.alice.private_key), None).unwrap();
        HubClient::new(
            &self.hub_url,
            Credentials::Researcher {
                researcher_id: "alice".into(),
                key,
            },
        )
        .unwrap()
    }

    /// Submits `train` (`repository@digest`) over every station in order, with `parameters`
    /// for all, signed by alice.
    pub fn submit(
        &self,
        mode: RouteMode,
        train: &str,
        parameters: BTreeMap<String, serde_json::Value>,
    ) -> uuid::Uuid {
        let (repository, digest) = train.split_once('@').unwrap();
        let now = chrono::Utc::now();
        let job = JobV1 {
            job_id: uuid::Uuid::new_v4(),
            issued_at: now,
            expires_at: now + chrono::Duration::hours(1),
            train: TrainPin {
                repository: repository.to_string(),
                digest: digest.parse().unwrap(),
            },
            route: Route {
                mode,
                stations: self.ids.clone(),
            },
            parameters: BTreeMap::from([("*".to_string(), parameters)]),
            recipient: self.alice.age_recipient.clone(),
        };
        let key = SigningKey::from_pkcs8_pem(&read(&self.alice.private_key), None).unwrap();
        self.runtime
            .block_on(self.researcher().submit_job(&job.sign(&key)))
            .unwrap();
        job.job_id
    }

    /// Polls the job until it is no longer active (`limit` at most) and returns its status.
    /// A stop withheld for review fails at once: nobody in these tests reviews.
    pub fn wait_for_end(
        &self,
        job_id: uuid::Uuid,
        daemons: &[Daemon],
        limit: Duration,
    ) -> JobStatus {
        self.wait(job_id, daemons, limit, false)
    }

    /// Like [`HubWorld::wait_for_end`], for a job whose withheld stops operators are
    /// releasing: a withheld stop is waited for as well.
    pub fn wait_for_end_after_review(
        &self,
        job_id: uuid::Uuid,
        daemons: &[Daemon],
        limit: Duration,
    ) -> JobStatus {
        self.wait(job_id, daemons, limit, true)
    }

    fn wait(
        &self,
        job_id: uuid::Uuid,
        daemons: &[Daemon],
        limit: Duration,
        reviewed: bool,
    ) -> JobStatus {
        let researcher = self.researcher();
        let deadline = Instant::now() + limit;
        loop {
            let status = self
                .runtime
                .block_on(researcher.job_status(job_id))
                .unwrap();
            if status.status != JobState::Active {
                return status;
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = daemons.iter().map(Daemon::log).collect();
                panic!(
                    "job {job_id} did not finish: {status:#?}\ndaemon logs:\n{}\n{}",
                    logs.join("\n-----\n"),
                    self.reports()
                );
            }
            // A stop withheld for review waits for an operator nobody in a test will be.
            if !reviewed
                && status
                    .stops
                    .iter()
                    .any(|stop| matches!(stop.status, pht_api::v1::StopState::Withheld))
            {
                panic!(
                    "job {job_id} waits for review: {status:#?}\n{}",
                    self.reports()
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Panics, with every station's check reports for the job's runs, unless it completed.
    pub fn assert_completed(&self, status: &JobStatus) {
        if status.status != JobState::Completed {
            panic!("the job did not complete: {status:#?}\n{}", self.reports());
        }
    }

    /// Every station's check reports and run records, for a failure message.
    fn reports(&self) -> String {
        let mut reports = String::new();
        for station in &self.stations {
            let runs = station.dir.path().join("state/runs");
            for entry in std::fs::read_dir(&runs).into_iter().flatten().flatten() {
                for file in ["report.json", "state-report.json", "record.json"] {
                    if let Ok(text) = std::fs::read_to_string(entry.path().join(file)) {
                        reports.push_str(&format!(
                            "--- {}\n{text}\n",
                            entry.path().join(file).display()
                        ));
                    }
                }
            }
        }
        reports
    }

    /// Fetches, decrypts and verifies every stop's result with `pht results`, as the researcher
    /// would, into `out`; returns `dataset (station-a …) → file → contents`.
    pub fn results(
        &self,
        job_id: uuid::Uuid,
        out: &Path,
    ) -> BTreeMap<String, BTreeMap<String, String>> {
        let mut args: Vec<String> = vec![
            "results".into(),
            job_id.to_string(),
            "--out".into(),
            out.display().to_string(),
            "--identity".into(),
            self.alice.age_identity.display().to_string(),
            "--hub".into(),
            self.hub_url.clone(),
            "--researcher".into(),
            "alice".into(),
            "--key".into(),
            self.alice.private_key.display().to_string(),
        ];
        for (id, station) in self.ids.iter().zip(&self.stations) {
            args.push("--station-key".into());
            args.push(format!(
                "{id}={}",
                station.dir.path().join("keys/station.pub").display()
            ));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        pht(self.keys.path(), &args).success();
        let mut results = BTreeMap::new();
        for (data, id) in STATIONS.iter().zip(&self.ids) {
            let outputs: PathBuf = out.join(id).join("outputs");
            let mut files = BTreeMap::new();
            if let Ok(entries) = std::fs::read_dir(&outputs) {
                for entry in entries {
                    let entry = entry.unwrap();
                    files.insert(
                        entry.file_name().to_string_lossy().into_owned(),
                        read(&entry.path()),
                    );
                }
            }
            results.insert(data.to_string(), files);
        }
        results
    }
}

/// The example dataset of a station (`station-a` …), as text.
pub fn dataset(data: &str) -> String {
    read(
        &crate::workspace_root()
            .join("examples/data")
            .join(data)
            .join("cohort/cohort.csv"),
    )
}
