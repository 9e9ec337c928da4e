//! Magnitude tables (issue 14): recomputing a 1,000-cell table of sums from a 1,000,000-row
//! dataset and judging every cell (dominance, p-ratio, contributors), against building the
//! dataset's leakage index from the same bytes, which every run already pays once per dataset
//! version.

use std::time::Instant;

use pht_checks::{
    check_outputs_with_data, AggregateDeclaration, AggregateFunction, CheckConfig, DatasetIndex,
    DatasetTable, DeclaredOutput, OutputEntry, Status,
};

const N_ROWS: usize = 1_000_000;
const N_GROUPS: usize = 1_000;

/// `patient,region,cost` with costs from a fixed generator, and the correct table of sums.
fn dataset_and_table() -> (Vec<u8>, Vec<u8>) {
    let mut csv = String::with_capacity(N_ROWS * 24);
    csv.push_str("patient,region,cost\n");
    let mut sums = vec![0u64; N_GROUPS];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for row in 0..N_ROWS {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let group = row % N_GROUPS;
        let cost = 100 + state % 900;
        sums[group] += cost;
        csv.push_str(&format!("p{row},r{group},{cost}\n"));
    }
    let mut table = String::from("region,cost\n");
    for (group, sum) in sums.iter().enumerate() {
        table.push_str(&format!("r{group},{sum}\n"));
    }
    (csv.into_bytes(), table.into_bytes())
}

fn median_seconds(runs: usize, mut work: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            work();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

pub fn recomputation() {
    let (dataset, table) = dataset_and_table();
    let tables = [DatasetTable {
        name: "costs".into(),
        files: vec![dataset.clone()],
    }];
    let entries = [OutputEntry::regular("costs.csv", table)];
    let declared = [DeclaredOutput::magnitude(
        "costs.csv",
        AggregateDeclaration {
            dataset: "costs".into(),
            column: "cost".into(),
            function: AggregateFunction::Sum,
            group_by: vec!["region".into()],
            value_column: None,
        },
    )];
    let config = CheckConfig::default();
    let report = check_outputs_with_data(&entries, &declared, &[], &tables, &config);
    let output = report.results.values().next().expect("one output");
    assert_eq!(
        output.status,
        Status::Pass,
        "the bench table must pass: {}",
        output.summary
    );
    let baseline = median_seconds(3, || {
        std::hint::black_box(DatasetIndex::from_csv("costs", &dataset));
    });
    let recompute = median_seconds(3, || {
        std::hint::black_box(check_outputs_with_data(
            &entries,
            &declared,
            &[],
            &tables,
            &config,
        ));
    });
    println!(
        "magnitude table recomputed ({N_GROUPS} cells from {N_ROWS} rows, {} MB): {:.0} ms (goal < 1000 ms); baseline leakage index of the same dataset {:.0} ms; ratio {:.2}",
        dataset.len() >> 20,
        recompute * 1e3,
        baseline * 1e3,
        recompute / baseline
    );
}

/// A count table by sex and region with counts from `seed`.
fn release_table(seed: u64) -> pht_checks::CountTable {
    let mut csv = String::from("sex,region,n\n");
    let mut state = seed | 1;
    for sex in ["F", "M"] {
        for region in ["north", "east", "south", "west", "centre"] {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            csv.push_str(&format!("{sex},{region},{}\n", 10 + state % 10_000));
        }
    }
    pht_checks::count_table(csv.as_bytes(), 3, &[]).expect("a count table")
}

/// The differencing ledger: comparing a new 10-cell table (every margin: 4 column subsets)
/// with 10,000 earlier releases, against comparing it with a ledger of one.
pub fn ledger() {
    let releases = (0..10_000u64).map(|index| pht_checks::Release {
        run_id: format!("run-{index}"),
        job_id: None,
        output: "counts.csv".into(),
        released_at: 0,
        table: release_table(index + 1),
    });
    let started = Instant::now();
    let ledger = pht_checks::Ledger::from_releases(releases);
    let load = started.elapsed().as_secs_f64();
    let small = pht_checks::Ledger::from_releases([pht_checks::Release {
        run_id: "run-0".into(),
        job_id: None,
        output: "counts.csv".into(),
        released_at: 0,
        table: release_table(1),
    }]);
    let new_table = release_table(123_456_789);
    let per_table = |ledger: &pht_checks::Ledger| {
        let runs = 200;
        let started = Instant::now();
        for _ in 0..runs {
            std::hint::black_box(ledger.compare(&new_table, 10));
        }
        started.elapsed().as_secs_f64() / runs as f64
    };
    let large = per_table(&ledger);
    let baseline = per_table(&small);
    println!(
        "differencing ledger: a new table compared with {} earlier releases in {:.3} ms (goal < 50 ms); baseline against 1 release {:.3} ms; ratio {:.1}; indexing the 10,000 releases {:.0} ms (once per station process and dataset version)",
        ledger.len(),
        large * 1e3,
        baseline * 1e3,
        large / baseline,
        load * 1e3
    );
}
