//! The output checks on whatever a train writes: the input is one output file, checked as a
//! declared table (CSV and JSON), as free text, as a magnitude table recomputed from a dataset
//! that is the input itself (both sides untrusted), against a dataset index built from itself,
//! read as a count table for the differencing ledger, and put through suppress-and-round.
#![no_main]

use pht_checks::{
    AggregateDeclaration, AggregateFunction, CheckConfig, DatasetIndex, DatasetTable,
    DeclaredOutput, Ledger, OutputEntry, OutputKind, RoundingConfig,
};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let config = CheckConfig::default();
    let declared = vec![
        DeclaredOutput::table("counts.csv", ["n"]),
        DeclaredOutput::table("counts.json", ["n"]),
        DeclaredOutput::new("notes.txt", OutputKind::Text),
        DeclaredOutput::magnitude(
            "sums.csv",
            AggregateDeclaration {
                dataset: "cohort".into(),
                column: "cost".into(),
                function: AggregateFunction::Median,
                group_by: vec!["region".into()],
                value_column: None,
            },
        ),
    ];
    let entries = vec![
        OutputEntry::regular("counts.csv", data.to_vec()),
        OutputEntry::regular("counts.json", data.to_vec()),
        OutputEntry::regular("notes.txt", data.to_vec()),
        OutputEntry::regular("sums.csv", data.to_vec()),
        OutputEntry::regular("unknown.bin", data.to_vec()),
    ];
    let index = DatasetIndex::from_csv("cohort", data);
    let tables = [DatasetTable {
        name: "cohort".into(),
        files: vec![data.to_vec()],
    }];
    let report =
        pht_checks::check_outputs_with_data(&entries, &declared, &[index], &tables, &config);
    let _ = report.render_text();
    let _ = serde_json::to_vec(&report);
    if let Some(table) = pht_checks::count_table(data, 2, &[3]) {
        let ledger = Ledger::from_releases([pht_checks::Release {
            run_id: "earlier".into(),
            job_id: None,
            output: "counts.csv".into(),
            released_at: 0,
            table: table.clone(),
        }]);
        let _ = ledger.compare(&table, 10);
    }
    let _ =
        pht_checks::suppress_and_round("counts.csv", data, &[2], &RoundingConfig::default(), 10);
});
