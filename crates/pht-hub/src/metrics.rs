//! The hub's Prometheus metrics, served by `GET /metrics` in the OpenMetrics text format: what
//! this replica counts as it serves (requests by route template, their durations, long-polls
//! waiting now, audit checkpoints received) and what is read at each scrape (jobs and stops by
//! state, bytes of stored blobs).
//!
//! Owns the metric names (a Grafana dashboard and alert rules use them), their labels and the
//! duration buckets. Every label value comes from a closed set: a route template (never the
//! request's path, which carries job and station ids), `unmatched`, an HTTP method, a status
//! code, a state name. No label carries a station, job or researcher id, or anything from a
//! request body. Reads no database and no files: the `/metrics` handler hands it the
//! scrape-time counts as [`ScrapedCounts`].

use std::time::Duration;

use axum::http::{Method, StatusCode};
use pht_api::v1::{JobState, StopState};
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::rules::{job_state_name, state_name, ALL_JOB_STATES, ALL_STOP_STATES};

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `route` of a request no route matched (the fallback's 404).
pub const UNMATCHED_ROUTE: &str = "unmatched";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// The methods named in the `method` label; any other is `other`, so that a client inventing
/// methods cannot make new series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// Request durations from 1 ms up to 65.5 s, doubling: a long-poll waits up to 60 s.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// What `/metrics` reads from the store and the blob directory at each scrape. `None` for a
/// source that could not be read: its metric is left out of that scrape rather than shown with
/// an old value, and the rest is served.
#[derive(Debug, Clone, Default)]
pub struct ScrapedCounts {
    /// Jobs by state; a state may appear more than once (its counts add up) or not at all.
    pub jobs: Option<Vec<(JobState, u64)>>,
    /// Stops by state, likewise.
    pub stops: Option<Vec<(StopState, u64)>>,
    pub blob_bytes: Option<u64>,
}

/// This replica's metrics. Counters and the waiting-poll gauge live here; the scrape-time
/// gauges are built afresh for each scrape from [`ScrapedCounts`].
#[derive(Debug)]
pub struct HubMetrics {
    registry: Registry,
    http_requests: Family<RequestLabels, Counter>,
    http_request_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    waiting_polls: Gauge,
    checkpoints: Counter,
}

impl Default for HubMetrics {
    fn default() -> HubMetrics {
        HubMetrics::new()
    }
}

impl HubMetrics {
    pub fn new() -> HubMetrics {
        let mut registry = Registry::default();
        let http_requests = Family::<RequestLabels, Counter>::default();
        // The `_total` suffix is the library's: it adds it to every counter's name.
        registry.register(
            "pht_hub_http_requests",
            "HTTP requests answered, by route template, method and status code",
            http_requests.clone(),
        );
        let http_request_duration =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram,
            );
        registry.register_with_unit(
            "pht_hub_http_request_duration",
            "Time from a request's arrival to its response's headers, by route template and method",
            Unit::Seconds,
            http_request_duration.clone(),
        );
        let waiting_polls = Gauge::default();
        registry.register(
            "pht_hub_waiting_polls",
            "Station long-polls waiting for work on this replica now",
            waiting_polls.clone(),
        );
        let checkpoints = Counter::default();
        registry.register(
            "pht_hub_checkpoints",
            "Audit checkpoints received from stations",
            checkpoints.clone(),
        );
        HubMetrics {
            registry,
            http_requests,
            http_request_duration,
            waiting_polls,
            checkpoints,
        }
    }

    /// Counts one answered request. `route` is the matched route's template (axum's
    /// `MatchedPath`), `None` when no route matched.
    pub fn record_request(
        &self,
        route: Option<&str>,
        method: &Method,
        status: StatusCode,
        elapsed: Duration,
    ) {
        let route = route.unwrap_or(UNMATCHED_ROUTE);
        let method = method_label(method);
        self.http_requests
            .get_or_create(&RequestLabels {
                route: route.to_string(),
                method,
                status: status.as_u16(),
            })
            .inc();
        self.http_request_duration
            .get_or_create(&RouteLabels {
                route: route.to_string(),
                method,
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a long-poll as waiting until the returned guard is dropped: when the poll
    /// answers, or when its connection drops and the server drops the handler with it.
    pub fn poll_waiting(&self) -> WaitingPoll {
        self.waiting_polls.inc();
        WaitingPoll {
            waiting_polls: self.waiting_polls.clone(),
        }
    }

    /// Counts an audit checkpoint received from a station.
    pub fn checkpoint_received(&self) {
        self.checkpoints.inc();
    }

    /// The exposition: this replica's counters, then the scrape-time gauges from `scraped`,
    /// with every known state present (0 when no job or stop is in it).
    pub fn encode(&self, scraped: &ScrapedCounts) -> Result<String, std::fmt::Error> {
        let mut scrape_time = Registry::default();
        if let Some(jobs) = &scraped.jobs {
            let by_state = Family::<StateLabels, Gauge>::default();
            for state in ALL_JOB_STATES {
                let n_jobs = jobs
                    .iter()
                    .filter(|(counted, _)| *counted == state)
                    .map(|(_, n_jobs)| *n_jobs)
                    .sum();
                by_state
                    .get_or_create(&StateLabels {
                        state: job_state_name(state),
                    })
                    .set(gauge_value(n_jobs));
            }
            scrape_time.register("pht_hub_jobs", "Jobs by state", by_state);
        }
        if let Some(stops) = &scraped.stops {
            let by_state = Family::<StateLabels, Gauge>::default();
            for state in ALL_STOP_STATES {
                let n_stops = stops
                    .iter()
                    .filter(|(counted, _)| *counted == state)
                    .map(|(_, n_stops)| *n_stops)
                    .sum();
                by_state
                    .get_or_create(&StateLabels {
                        state: state_name(state),
                    })
                    .set(gauge_value(n_stops));
            }
            scrape_time.register("pht_hub_stops", "Stops by state", by_state);
        }
        if let Some(blob_bytes) = scraped.blob_bytes {
            let gauge: Gauge = Gauge::default();
            gauge.set(gauge_value(blob_bytes));
            scrape_time.register_with_unit(
                "pht_hub_blob",
                "Bytes of stored blobs (result bundles and state), in the directory every replica shares",
                Unit::Bytes,
                gauge,
            );
        }
        let mut text = String::new();
        encode_registry(&mut text, &self.registry)?;
        encode_registry(&mut text, &scrape_time)?;
        encode_eof(&mut text)?;
        Ok(text)
    }
}

fn gauge_value(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// A long-poll counted in `pht_hub_waiting_polls`; dropping it stops counting it.
#[derive(Debug)]
#[must_use = "the poll counts as waiting only while the guard lives"]
pub struct WaitingPoll {
    waiting_polls: Gauge,
}

impl Drop for WaitingPoll {
    fn drop(&mut self) {
        self.waiting_polls.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exposition's lines that start with `prefix`, sorted (families list their series in
    /// no fixed order).
    fn lines(text: &str, prefix: &str) -> String {
        let mut selected: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with(prefix))
            .collect();
        selected.sort();
        selected.join("\n")
    }

    #[test]
    fn every_state_is_shown_and_counts_of_one_state_add_up() {
        let metrics = HubMetrics::new();
        let text = metrics
            .encode(&ScrapedCounts {
                jobs: Some(vec![
                    (JobState::Incomplete, 2),
                    (JobState::Active, 3),
                    (JobState::Incomplete, 1),
                ]),
                stops: Some(vec![(StopState::Done, 4)]),
                blob_bytes: Some(1234),
            })
            .unwrap();
        expect_test::expect![[r#"
            pht_hub_jobs{state="active"} 3
            pht_hub_jobs{state="cancelled"} 0
            pht_hub_jobs{state="completed"} 0
            pht_hub_jobs{state="incomplete"} 3"#]]
        .assert_eq(&lines(&text, "pht_hub_jobs"));
        assert_eq!(lines(&text, "pht_hub_stops{").lines().count(), 12);
        assert!(text.contains("pht_hub_stops{state=\"done\"} 4\n"), "{text}");
        assert!(
            text.contains("pht_hub_stops{state=\"leased\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("# UNIT pht_hub_blob_bytes bytes\n"), "{text}");
        assert!(text.contains("pht_hub_blob_bytes 1234\n"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn a_source_that_could_not_be_read_is_left_out_and_the_rest_served() {
        let metrics = HubMetrics::new();
        metrics.checkpoint_received();
        let text = metrics
            .encode(&ScrapedCounts {
                jobs: None,
                stops: Some(Vec::new()),
                blob_bytes: None,
            })
            .unwrap();
        assert!(!text.contains("pht_hub_jobs"), "{text}");
        assert!(!text.contains("pht_hub_blob_bytes"), "{text}");
        assert!(
            text.contains("pht_hub_stops{state=\"ready\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("pht_hub_checkpoints_total 1\n"), "{text}");
    }

    #[test]
    fn requests_are_counted_by_template_and_unknown_methods_and_routes_are_folded() {
        let metrics = HubMetrics::new();
        let elapsed = Duration::from_millis(3);
        metrics.record_request(
            Some("/v1/jobs/{job_id}"),
            &Method::GET,
            StatusCode::OK,
            elapsed,
        );
        metrics.record_request(
            Some("/v1/jobs/{job_id}"),
            &Method::GET,
            StatusCode::OK,
            elapsed,
        );
        metrics.record_request(
            None,
            &Method::from_bytes(b"BREW").unwrap(),
            StatusCode::NOT_FOUND,
            elapsed,
        );
        let text = metrics.encode(&ScrapedCounts::default()).unwrap();
        expect_test::expect![[r#"
            pht_hub_http_requests_total{route="/v1/jobs/{job_id}",method="GET",status="200"} 2
            pht_hub_http_requests_total{route="unmatched",method="other",status="404"} 1"#]]
        .assert_eq(&lines(&text, "pht_hub_http_requests_total"));
        assert!(
            text.contains(
                "pht_hub_http_request_duration_seconds_bucket{le=\"0.004\",route=\"/v1/jobs/{job_id}\",method=\"GET\"} 2\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_waiting_poll_is_counted_until_its_guard_drops() {
        let metrics = HubMetrics::new();
        let first = metrics.poll_waiting();
        let second = metrics.poll_waiting();
        let waiting = |metrics: &HubMetrics| {
            lines(
                &metrics.encode(&ScrapedCounts::default()).unwrap(),
                "pht_hub_waiting_polls ",
            )
        };
        assert_eq!(waiting(&metrics), "pht_hub_waiting_polls 2");
        drop(first);
        assert_eq!(waiting(&metrics), "pht_hub_waiting_polls 1");
        drop(second);
        assert_eq!(waiting(&metrics), "pht_hub_waiting_polls 0");
    }
}
