//! Debian's Prometheus server on a free loopback port, with its data in a temporary directory,
//! scraping the targets a test names every second and loading the example alert rules
//! (`examples/ops/alerts.yml`), so rules that do not load fail the test; stopped when dropped.
//!
//! Owns starting it, waiting until it is ready, and PromQL queries over its HTTP API.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, workspace_root};

#[derive(Debug)]
pub struct Prometheus {
    dir: tempfile::TempDir,
    child: Option<Child>,
    pub url: String,
}

/// A scrape target: the job name, `host:port`, and the labels Prometheus adds to its series.
#[derive(Debug, Clone)]
pub struct Target {
    pub job: String,
    pub address: String,
    pub labels: Vec<(String, String)>,
}

impl Prometheus {
    pub fn start(targets: &[Target]) -> Prometheus {
        let binary = ["/usr/bin/prometheus", "/usr/sbin/prometheus"]
            .into_iter()
            .find(|path| std::path::Path::new(path).exists())
            .unwrap_or_else(|| {
                panic!("prometheus is missing: install Debian's `prometheus` package (scripts/install-deps.sh does)")
            });
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n",
            workspace_root().join("examples/ops/alerts.yml").display()
        );
        for target in targets {
            config.push_str(&format!(
                "  - job_name: {}\n    scrape_interval: 1s\n    static_configs:\n      - targets: ['{}']\n",
                target.job, target.address
            ));
            if !target.labels.is_empty() {
                config.push_str("        labels:\n");
                for (name, value) in &target.labels {
                    config.push_str(&format!("          {name}: {value}\n"));
                }
            }
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let prometheus = Prometheus {
            dir,
            child: Some(child),
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let ready = reqwest::blocking::get(format!("{}/-/ready", prometheus.url))
                .is_ok_and(|response| response.status().is_success());
            if ready {
                return prometheus;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("prometheus did not become ready:\n{}", prometheus.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// An instant PromQL query: each series' labels and value.
    pub fn query(&self, promql: &str) -> Vec<(serde_json::Value, f64)> {
        let response: serde_json::Value = reqwest::blocking::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", promql)])
            .send()
            .and_then(|response| response.json())
            .unwrap_or_else(|e| panic!("query {promql}: {e}"));
        assert_eq!(response["status"], "success", "{promql}: {response}");
        response["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|series| {
                let value = series["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN);
                (series["metric"].clone(), value)
            })
            .collect()
    }

    /// The value of a query that yields one series, once it equals `expected` (waiting up to
    /// 60 s for scrapes to catch up); panics with what it saw otherwise.
    pub fn wait_for_value(&self, promql: &str, expected: f64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            seen = self.query(promql);
            if seen.len() == 1 && seen[0].1 == expected {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!("{promql}: expected one series of {expected}, Prometheus says {seen:?}");
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
