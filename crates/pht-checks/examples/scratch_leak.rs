//! Scratch (not committed).
use pht_checks::*;
fn main() {
    let csv = generate_benchmark_csv(100_000_000);
    let entries = [OutputEntry::regular("counts.csv", csv)];
    let declared = [DeclaredOutput::table("counts.csv", ["n", "n_events"])];
    let datasets = [DatasetIndex::from_csv(
        "cohort",
        b"id,sex,region,age,bmi\n1,female,utrecht,34,22.5\n",
    )];
    let config = CheckConfig {
        row_count_ratio: f64::INFINITY,
        ..CheckConfig::default()
    };
    for _ in 0..2 {
        let started = std::time::Instant::now();
        let report = check_outputs(&entries, &declared, &datasets, &config);
        eprintln!("{:?} {:?}", report.status(), started.elapsed());
    }
}
