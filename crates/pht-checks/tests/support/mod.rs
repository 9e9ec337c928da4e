//! Helpers of the rule tests: run `check_outputs` on inline fixtures and render the report
//! compactly for an `expect!` snapshot.
//!
//! Kept apart so that `rules.rs` reads as the list of rules and their fixtures; this module
//! asserts nothing itself beyond comparing the rendering with the snapshot it is given.

use expect_test::Expect;
use pht_checks::{
    check_outputs, CheckConfig, CheckReport, DatasetIndex, DeclaredOutput, OutputEntry, OutputKind,
    Status,
};

/// Compact rendering: overall status, then per output its status, type and non-passing rules.
fn render(report: &CheckReport) -> String {
    let mut rendered = format!("overall: {}\n", report.status());
    for rule_result in report
        .collection
        .checks
        .iter()
        .filter(|rule| rule.status != Status::Pass)
    {
        rendered.push_str(&format!(
            "collection {} {} {}: {}\n",
            rule_result.rule, rule_result.status, rule_result.count, rule_result.summary
        ));
    }
    for output_result in report.results.values() {
        rendered.push_str(&format!(
            "{} {} [{:?}]\n",
            output_result.uid, output_result.status, output_result.output_type
        ));
        for rule_result in output_result
            .checks
            .iter()
            .filter(|rule| rule.status != Status::Pass)
        {
            let positions: Vec<String> = rule_result
                .positions
                .iter()
                .map(|position| match position.field {
                    Some(field) => format!("{}:{}#{}", position.line, position.column, field),
                    None => format!("{}:{}", position.line, position.column),
                })
                .collect();
            rendered.push_str(&format!(
                "  {} {} {} [{}] {}\n",
                rule_result.rule,
                rule_result.status,
                rule_result.count,
                positions.join(" "),
                rule_result.summary
            ));
        }
    }
    rendered
}

pub fn check_report(
    entries: &[OutputEntry],
    declared: &[DeclaredOutput],
    datasets: &[DatasetIndex],
    config: &CheckConfig,
    expected: Expect,
) {
    let report = check_outputs(entries, declared, datasets, config);
    expected.assert_eq(&render(&report));
}

/// A declared table `t.csv` whose count column is `n`.
pub fn check_csv(csv: &str, expected: Expect) {
    check_report(
        &[OutputEntry::regular("t.csv", csv.as_bytes().to_vec())],
        &[DeclaredOutput::table("t.csv", ["n"])],
        &[],
        &CheckConfig::default(),
        expected,
    );
}

/// A declared free-text output `notes.txt`.
pub fn check_text(text: &str, expected: Expect) {
    check_report(
        &[OutputEntry::regular("notes.txt", text.as_bytes().to_vec())],
        &[DeclaredOutput::new("notes.txt", OutputKind::Text)],
        &[],
        &CheckConfig::default(),
        expected,
    );
}
