//! The operator console in a real browser: Debian's Chromium driven over WebDriver
//! (`chromedriver`), against a real `pht-station run` daemon serving its console on loopback, a
//! real hub, registry and Docker. An approver approves the pending run of the example train;
//! two different reviewers release its withheld outputs (the policy asks for two); the
//! researcher's sealed result then arrives through the hub and its signed provenance names both
//! reviewers. Screenshots of every screen are saved under `target/console-screenshots/`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use pht_core::job::RouteMode;
use pht_e2e::routes::HubWorld;
use pht_e2e::{binary, free_port, publish_train, workspace_root, Daemon};

const PASSWORD: &str = "a long test password";

/// `chromedriver` on a free loopback port, stopped when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Driver {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (Debian package chromium-driver; scripts/install-deps.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Driver { child, port }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn add_operator(config: &Path, name: &str, role: &str) {
    let mut child = Command::new(binary("pht-station"))
        .arg("--config")
        .arg(config)
        .args(["operators", "add", name, "--role", role, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "operators add {name}");
}

/// The newest run record of a station whose status (or output decision) is `wanted`.
fn wait_for_run(
    state_dir: &Path,
    daemon: &Daemon,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        for entry in std::fs::read_dir(state_dir.join("runs"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(bytes) = std::fs::read(entry.path().join("record.json")) {
                if let Ok(record) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                    if wanted(&record) {
                        return record;
                    }
                }
            }
        }
        if Instant::now() > deadline {
            let records: Vec<String> = std::fs::read_dir(state_dir.join("runs"))
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|entry| std::fs::read_to_string(entry.path().join("record.json")).ok())
                .collect();
            panic!(
                "no run reached the state waited for; runs:\n{}\ndaemon log:\n{}",
                records.join("\n"),
                daemon.log()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct Browser {
    client: Client,
    base: String,
    shots: PathBuf,
}

impl Browser {
    async fn open(driver: &Driver, base: String) -> Browser {
        let capabilities: serde_json::Map<String, serde_json::Value> =
            serde_json::from_value(serde_json::json!({
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": "/usr/bin/chromium",
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--window-size=1280,1400"]
                }
            }))
            .unwrap();
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
            .expect("a Chromium session");
        let shots = workspace_root().join("target/console-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        Browser {
            client,
            base,
            shots,
        }
    }

    async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{}", self.base, path.trim_start_matches('/')))
            .await
            .unwrap();
    }

    async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    async fn page(&self) -> String {
        self.client.source().await.unwrap()
    }

    /// The page once it contains `text` (a click's navigation may still be under way).
    async fn page_with(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let page = self.page().await;
            if page.contains(text) {
                return page;
            }
            assert!(
                Instant::now() < deadline,
                "the page never showed {text:?}: {page}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn sign_in(&self, name: &str) {
        self.goto("/login").await;
        self.client
            .find(Locator::Id("name"))
            .await
            .unwrap()
            .send_keys(name)
            .await
            .unwrap();
        self.client
            .find(Locator::Id("password"))
            .await
            .unwrap()
            .send_keys(PASSWORD)
            .await
            .unwrap();
        self.client
            .find(Locator::Css("button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        self.page_with(&format!("<strong>{name}</strong>")).await;
    }

    async fn sign_out(&self) {
        self.client
            .find(Locator::Css("header form button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        self.page_with("Sign in to the station console").await;
    }

    /// Types `reason` into the form posting to `action` and submits it.
    async fn decide(&self, action: &str, reason: &str) {
        let form = self
            .client
            .find(Locator::Css(&format!("form[action=\"{action}\"]")))
            .await
            .unwrap_or_else(|_| panic!("no form for {action}"));
        form.find(Locator::Css("input[name=reason]"))
            .await
            .unwrap()
            .send_keys(reason)
            .await
            .unwrap();
        form.find(Locator::Css("button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }
}

#[test]
fn approver_and_two_reviewers_release_through_the_console_and_the_result_names_both() {
    let world = HubWorld::with(
        "console",
        1,
        "manual",
        "outputs:\n  release: manual\n  reviewers_required: 2\n",
        false,
    );
    let train = publish_train(
        &workspace_root().join("trains/cohort-stats"),
        &format!("{}/trains/cohort-stats:console", world.registry.address()),
        &[],
    );
    world.alice.sign(&train);
    let station = &world.stations[0];
    for (name, role) in [
        ("anna", "approver"),
        ("rita", "reviewer"),
        ("rob", "reviewer"),
    ] {
        add_operator(&station.config, name, role);
    }
    let port = free_port();
    let mut config = std::fs::read_to_string(&station.config).unwrap();
    config.push_str(&format!("console:\n  listen: 127.0.0.1:{port}\n"));
    std::fs::write(&station.config, config).unwrap();
    let daemon = Daemon::start(&station.config);
    let driver = Driver::start();
    let state_dir = station.dir.path().join("state");

    let job_id = world.submit(
        RouteMode::Parallel,
        &train,
        BTreeMap::from([("group_by".to_string(), serde_json::json!("sex"))]),
    );
    let pending = wait_for_run(&state_dir, &daemon, |record| {
        record["status"] == "awaiting_approval"
    });
    let run_id = pending["run_id"].as_str().unwrap().to_string();

    world.runtime.block_on(async {
        let browser = Browser::open(&driver, format!("http://127.0.0.1:{port}/")).await;
        // Not signed in: every screen leads to the sign-in page.
        browser.goto("/approvals").await;
        browser.page_with("Sign in to the station console").await;
        browser.shot("01-sign-in").await;

        browser.sign_in("anna").await;
        browser.shot("02-overview").await;
        browser.goto("/approvals").await;
        let page = browser.page().await;
        assert!(page.contains(&run_id), "{page}");
        assert!(
            page.contains("aggregate statistics"),
            "the purpose is shown: {page}"
        );
        browser.shot("03-approvals").await;
        browser
            .decide(
                &format!("/runs/{run_id}/approve"),
                "purpose and datasets as agreed",
            )
            .await;
        browser.page_with("Approved.").await;
        browser.shot("04-run-approved").await;
        browser.sign_out().await;
    });

    let withheld = wait_for_run(&state_dir, &daemon, |record| {
        record["run_id"] == run_id.as_str() && record["output_decision"]["decision"] == "withheld"
    });
    assert_eq!(withheld["approval"]["by"], "anna");

    world.runtime.block_on(async {
        let browser = Browser::open(&driver, format!("http://127.0.0.1:{port}/")).await;
        browser.sign_in("rita").await;
        browser.goto("/review").await;
        assert!(browser.page().await.contains(&run_id));
        browser.shot("05-review-queue").await;
        browser.goto(&format!("/runs/{run_id}/review")).await;
        let page = browser.page().await;
        assert!(page.contains("0 of 2 distinct releases needed"), "{page}");
        assert!(
            !page.contains(&format!("/runs/{run_id}/approve")),
            "a reviewer sees no approval"
        );
        browser.shot("06-output-review").await;
        browser
            .decide(
                &format!("/runs/{run_id}/release"),
                "counts checked against the protocol",
            )
            .await;
        browser.page_with("Your release is recorded").await;
        browser.shot("07-first-release").await;
        browser.sign_out().await;

        browser.sign_in("rob").await;
        browser.goto(&format!("/runs/{run_id}/review")).await;
        browser
            .decide(&format!("/runs/{run_id}/release"), "second review, agree")
            .await;
        browser.page_with("Released. The outputs were sealed").await;
        browser.shot("08-released").await;
        browser.goto(&format!("/runs/{run_id}")).await;
        browser.shot("09-run-detail").await;
        browser.goto(&format!("/audit?run={run_id}")).await;
        let page = browser.page().await;
        assert!(
            page.contains("output_reviewed") && page.contains("operator:rob"),
            "{page}"
        );
        browser.shot("10-audit").await;
        browser.goto("/runs").await;
        browser.shot("11-runs").await;
        browser.client.clone().close().await.unwrap();
    });

    let status = world.wait_for_end_after_review(
        job_id,
        std::slice::from_ref(&daemon),
        Duration::from_secs(120),
    );
    world.assert_completed(&status);
    let out = tempfile::tempdir().unwrap();
    world.results(job_id, out.path());
    let provenance: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.path().join(&world.ids[0]).join("provenance.json")).unwrap(),
    )
    .unwrap();
    let reviewers: Vec<&str> = provenance["predicate"]["released"]["reviewers"]
        .as_array()
        .unwrap_or_else(|| panic!("no reviewers in {provenance:#}"))
        .iter()
        .map(|reviewer| reviewer["by"].as_str().unwrap())
        .collect();
    assert_eq!(reviewers, ["operator:rita", "operator:rob"]);
    drop(daemon);
}
