//! Measures the output checks on a generated counts table (~100 MB by default; pass a size in
//! bytes as the first argument) and prints `output checks: N MB/s`.
//!
//! Two runs: the plain table, and the same table with a mounted dataset whose rows have as many
//! cells as the table's, so every row is also hashed for the leakage rule (the worst case). Only
//! timing lives here; the table comes from `pht_checks::generate_benchmark_csv`.
//!
//! `cargo run --release -p pht-checks --example throughput`

use std::time::Instant;

use pht_checks::{
    check_outputs, generate_benchmark_csv, CheckConfig, DatasetIndex, DeclaredOutput, OutputEntry,
    Status,
};

fn main() {
    let n_bytes: usize = std::env::args()
        .nth(1)
        .map(|argument| {
            argument
                .parse()
                .expect("the size must be a number of bytes")
        })
        .unwrap_or(100_000_000);
    let csv = generate_benchmark_csv(n_bytes);
    let n_megabytes = csv.len() as f64 / 1_000_000.0;
    let entries = [OutputEntry::regular("counts.csv", csv)];
    let declared = [DeclaredOutput::table("counts.csv", ["n", "n_events"])];
    let config = CheckConfig::default();

    let seconds = time_checks(&entries, &declared, &[], &config);
    println!("table: {n_megabytes:.1} MB in {seconds:.3} s");
    println!("output checks: {:.0} MB/s", n_megabytes / seconds);

    // A five-column dataset makes every row of the five-column table a leakage candidate. It is
    // tiny, so the table is as long as it and rightly flagged `row-count`; a ratio above any
    // possible one keeps that out of this measurement.
    let dataset_csv = b"id,sex,region,age,bmi\n1,female,utrecht,34,22.5\n2,male,zeeland,51,27.1\n";
    let datasets = [DatasetIndex::from_csv("cohort", dataset_csv)];
    let config_without_row_count = CheckConfig {
        row_count_ratio: f64::INFINITY,
        ..config
    };
    let seconds = time_checks(&entries, &declared, &datasets, &config_without_row_count);
    println!(
        "output checks, every row hashed for leakage: {:.0} MB/s",
        n_megabytes / seconds
    );
}

fn time_checks(
    entries: &[OutputEntry],
    declared: &[DeclaredOutput],
    datasets: &[DatasetIndex],
    config: &CheckConfig,
) -> f64 {
    let started = Instant::now();
    let report = check_outputs(entries, declared, datasets, config);
    let seconds = started.elapsed().as_secs_f64();
    // A benchmark that silently measured a failing path would measure the wrong thing.
    assert_eq!(report.status(), Status::Pass, "{}", report.render_text());
    seconds
}
