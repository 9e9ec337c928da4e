//! The output checks on whatever a train writes: the input is one output file, checked as a
//! declared table (CSV and JSON), as free text, and against a dataset index built from itself.
#![no_main]

use pht_checks::{CheckConfig, DatasetIndex, DeclaredOutput, OutputEntry, OutputKind};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let config = CheckConfig::default();
    let declared = vec![
        DeclaredOutput::table("counts.csv", ["n"]),
        DeclaredOutput::table("counts.json", ["n"]),
        DeclaredOutput::new("notes.txt", OutputKind::Text),
    ];
    let entries = vec![
        OutputEntry::regular("counts.csv", data.to_vec()),
        OutputEntry::regular("counts.json", data.to_vec()),
        OutputEntry::regular("notes.txt", data.to_vec()),
        OutputEntry::regular("unknown.bin", data.to_vec()),
    ];
    let index = DatasetIndex::from_csv("cohort", data);
    let report = pht_checks::check_outputs(&entries, &declared, &[index], &config);
    let _ = report.render_text();
    let _ = serde_json::to_vec(&report);
});
