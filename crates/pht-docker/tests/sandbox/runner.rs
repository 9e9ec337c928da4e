//! The suite's own small runner, in place of libtest (`harness = false` in Cargo.toml).
//!
//! Owns: reading libtest's arguments (name filters, `--exact`, `--skip`, `--list`), setting up
//! the [`Suite`] once, running the selected scenarios concurrently, each with a timeout,
//! tearing the suite down after the last one, and printing results the way libtest does.
//!
//! Does not know any scenario: `sandbox.rs` hands it the list.

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;

use crate::support::Suite;

const SCENARIO_TIMEOUT: Duration = Duration::from_secs(240);

const CONCURRENT_SCENARIOS: usize = 4;

pub(crate) type ScenarioFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

pub(crate) struct Scenario {
    pub(crate) name: &'static str,
    pub(crate) body: fn(Arc<Suite>) -> ScenarioFuture,
}

/// Runs the scenarios the command line selects, as libtest would, and says how it went.
pub(crate) fn run(scenarios: Vec<Scenario>) -> ExitCode {
    let selection = match Selection::from_arguments(std::env::args().skip(1)) {
        Ok(selection) => selection,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let selected: Vec<Scenario> = scenarios
        .into_iter()
        .filter(|scenario| selection.selects(scenario.name))
        .collect();
    if selection.list_only {
        for scenario in &selected {
            println!("{}: test", scenario.name);
        }
        return ExitCode::SUCCESS;
    }
    println!("\nrunning {} sandbox scenarios", selected.len());
    if selected.is_empty() {
        println!("\ntest result: ok. 0 passed; 0 failed\n");
        return ExitCode::SUCCESS;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime can be built");
    runtime.block_on(run_scenarios(selected))
}

/// Which scenarios to run, from libtest-style arguments.
struct Selection {
    filters: Vec<String>,
    skips: Vec<String>,
    exact: bool,
    list_only: bool,
    ignored_only: bool,
}

impl Selection {
    fn from_arguments(arguments: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut selection = Selection {
            filters: Vec::new(),
            skips: Vec::new(),
            exact: false,
            list_only: false,
            ignored_only: false,
        };
        let mut arguments = arguments.peekable();
        while let Some(argument) = arguments.next() {
            match argument.as_str() {
                "--list" => selection.list_only = true,
                "--exact" => selection.exact = true,
                "--ignored" => selection.ignored_only = true,
                "--skip" => selection
                    .skips
                    .push(arguments.next().ok_or("--skip needs a value")?),
                // libtest options that take a value; they do not change what this suite runs.
                "--test-threads" | "--format" | "--color" | "--logfile" | "-Z"
                | "--report-time" => {
                    arguments.next();
                }
                flag if flag.starts_with('-') => {}
                filter => selection.filters.push(filter.to_string()),
            }
        }
        Ok(selection)
    }

    fn selects(&self, name: &str) -> bool {
        // No scenario is ignored, so `--ignored` selects none.
        if self.ignored_only || self.skips.iter().any(|skip| name.contains(skip.as_str())) {
            return false;
        }
        self.filters.is_empty()
            || self.filters.iter().any(|filter| {
                if self.exact {
                    name == filter
                } else {
                    name.contains(filter.as_str())
                }
            })
    }
}

async fn run_scenarios(selected: Vec<Scenario>) -> ExitCode {
    let suite_started = Instant::now();
    let suite = match Suite::set_up().await {
        Ok(suite) => Arc::new(suite),
        Err(error) => {
            println!("\nsandbox suite setup FAILED: {error:#}\n");
            return ExitCode::from(101);
        }
    };

    let n_scenarios = selected.len();
    let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_SCENARIOS));
    let mut handles = Vec::new();
    for scenario in selected {
        let suite = Arc::clone(&suite);
        let permits = Arc::clone(&permits);
        handles.push((
            scenario.name,
            tokio::spawn(async move {
                let _permit = permits.acquire_owned().await.expect("never closed");
                let started = Instant::now();
                let result = tokio::time::timeout(SCENARIO_TIMEOUT, (scenario.body)(suite))
                    .await
                    .unwrap_or_else(|_| Err(anyhow!("timed out after {SCENARIO_TIMEOUT:?}")));
                let elapsed = started.elapsed();
                let verdict = if result.is_ok() { "ok" } else { "FAILED" };
                println!("test {} ... {verdict} ({elapsed:.1?})", scenario.name);
                result
            }),
        ));
    }

    let mut failures = Vec::new();
    for (name, handle) in handles {
        match handle.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => failures.push(format!("{name}: {error:#}")),
            Err(join_error) => {
                println!("test {name} ... FAILED (panicked)");
                failures.push(format!("{name}: panicked: {join_error}"));
            }
        }
    }

    let n_passed = n_scenarios - failures.len();
    let teardown_result = suite.tear_down().await;
    if let Err(error) = &teardown_result {
        failures.push(format!("teardown: {error:#}"));
    }

    if failures.is_empty() {
        println!(
            "\ntest result: ok. {n_passed} passed; 0 failed; finished in {:.1?}\n",
            suite_started.elapsed()
        );
        ExitCode::SUCCESS
    } else {
        println!("\nfailures:\n");
        for failure in &failures {
            println!("---- {failure}\n");
        }
        println!(
            "test result: FAILED. {n_passed} passed; {} failed; finished in {:.1?}\n",
            failures.len(),
            suite_started.elapsed()
        );
        ExitCode::from(101)
    }
}
