use super::*;
use crate::{check_outputs_with_data, DatasetIndex, DeclaredOutput, OutputEntry};

/// A cost dataset: region `north` has ten patients with equal costs; `south` ten where one
/// patient dominates; `east` nine patients.
fn cost_dataset() -> DatasetTable {
    let mut csv = String::from("patient,region,cost\n");
    for patient in 0..10 {
        csv.push_str(&format!("n{patient},north,100\n"));
    }
    for patient in 0..9 {
        csv.push_str(&format!("s{patient},south,10\n"));
    }
    csv.push_str("s9,south,5000\n");
    for patient in 0..9 {
        csv.push_str(&format!("e{patient},east,50\n"));
    }
    DatasetTable {
        name: "costs".into(),
        files: vec![csv.into_bytes()],
    }
}

fn sum_of_cost() -> AggregateDeclaration {
    AggregateDeclaration {
        dataset: "costs".into(),
        column: "cost".into(),
        function: AggregateFunction::Sum,
        group_by: vec!["region".into()],
        value_column: None,
    }
}

fn check(table: &str, declaration: AggregateDeclaration) -> Vec<RuleResult> {
    check_magnitude_table(
        "costs.csv",
        table.as_bytes(),
        &declaration,
        &[cost_dataset()],
        &CheckConfig::default(),
    )
}

fn result(results: &[RuleResult], rule: Rule) -> &RuleResult {
    results
        .iter()
        .find(|result| result.rule == rule)
        .unwrap_or_else(|| panic!("no {rule} in {results:#?}"))
}

#[test]
fn a_dominated_cell_fails_dominance_and_p_ratio_and_the_others_pass() {
    let results = check("region,cost\nnorth,1000\nsouth,5090\n", sum_of_cost());
    assert_eq!(result(&results, Rule::Aggregate).status, Status::Pass);
    let dominance = result(&results, Rule::Dominance);
    assert_eq!(
        (dominance.status, dominance.count),
        (Status::Fail, 1),
        "{dominance:#?}"
    );
    assert_eq!(dominance.positions[0].line, 3);
    assert_eq!(dominance.positions[0].field, Some(2));
    assert_eq!(result(&results, Rule::PRatio).count, 1);
    assert_eq!(result(&results, Rule::Threshold).status, Status::Pass);
}

#[test]
fn a_misdeclared_cell_is_a_mismatch_and_no_value_is_reported() {
    let results = check("region,cost\nnorth,1200\nsouth,5090\n", sum_of_cost());
    let mismatch = result(&results, Rule::Aggregate);
    assert_eq!((mismatch.status, mismatch.count), (Status::Fail, 1));
    assert_eq!(mismatch.positions[0].line, 2);
    let text = format!("{results:?}");
    assert!(!text.contains("1200") && !text.contains("1000"), "{text}");
}

#[test]
fn a_group_the_dataset_lacks_is_a_mismatch() {
    let results = check("region,cost\nwest,0\n", sum_of_cost());
    assert_eq!(result(&results, Rule::Aggregate).count, 1);
}

#[test]
fn nine_contributors_fail_the_threshold() {
    let results = check("region,cost\neast,450\n", sum_of_cost());
    assert_eq!(result(&results, Rule::Aggregate).status, Status::Pass);
    assert_eq!(result(&results, Rule::Threshold).count, 1);
}

#[test]
fn rounded_means_match_within_their_shown_decimals() {
    let declaration = AggregateDeclaration {
        function: AggregateFunction::Mean,
        ..sum_of_cost()
    };
    // south: 5090 / 10 = 509
    let results = check(
        "region,cost\nnorth,100.0\nsouth,509.00\n",
        declaration.clone(),
    );
    assert_eq!(result(&results, Rule::Aggregate).status, Status::Pass);
    let results = check("region,cost\nsouth,509.4\n", declaration);
    assert_eq!(result(&results, Rule::Aggregate).status, Status::Fail);
}

#[test]
fn medians_are_recomputed() {
    let declaration = AggregateDeclaration {
        function: AggregateFunction::Median,
        ..sum_of_cost()
    };
    let results = check("region,cost\nsouth,10\nnorth,100\n", declaration);
    assert_eq!(result(&results, Rule::Aggregate).status, Status::Pass);
}

#[test]
fn min_and_max_fail_unless_the_policy_allows_them() {
    let declaration = AggregateDeclaration {
        function: AggregateFunction::Max,
        ..sum_of_cost()
    };
    let results = check("region,cost\nnorth,100\n", declaration.clone());
    assert_eq!(result(&results, Rule::ExtremeValue).status, Status::Fail);
    let mut config = CheckConfig::default();
    config.magnitude.allow_extremes = true;
    let results = check_magnitude_table(
        "costs.csv",
        b"region,cost\nnorth,100\n",
        &declaration,
        &[cost_dataset()],
        &config,
    );
    assert_eq!(result(&results, Rule::ExtremeValue).status, Status::Pass);
}

#[test]
fn a_missing_dataset_or_column_fails_with_what_to_fix() {
    let mut declaration = sum_of_cost();
    declaration.dataset = "elsewhere".into();
    let results = check("region,cost\nnorth,1000\n", declaration);
    assert!(results[0].summary.contains("`elsewhere`"), "{results:#?}");
    let mut declaration = sum_of_cost();
    declaration.column = "price".into();
    let results = check("region,cost\nnorth,1000\n", declaration);
    assert!(
        results[0].summary.contains("no column `price`"),
        "{results:#?}"
    );
}

#[test]
fn suppressed_cells_are_not_judged() {
    let results = check("region,cost\nsouth,\neast,NA\nnorth,1000\n", sum_of_cost());
    assert!(results.iter().all(|result| result.status == Status::Pass));
}

#[test]
fn model_dof_fails_below_the_minimum_and_passes_at_it() {
    let config = CheckConfig::default();
    let rows = [("cohort".to_string(), 100)];
    let model = |n_obs, n_params| ModelDeclaration {
        n_obs,
        n_params,
        dataset: Some("cohort".into()),
    };
    assert_eq!(
        check_model(&model(15, 5), &rows, &config).status,
        Status::Pass
    );
    assert_eq!(
        check_model(&model(14, 5), &rows, &config).status,
        Status::Fail
    );
    let too_many = check_model(&model(101, 5), &rows, &config);
    assert_eq!(too_many.status, Status::Fail);
    assert!(too_many.summary.contains("more than the 100 rows"));
}

#[test]
fn a_magnitude_table_through_check_outputs_is_not_read_as_counts() {
    let entries = [OutputEntry::regular(
        "costs.csv",
        b"region,cost\nnorth,1000\n".to_vec(),
    )];
    let declared = [DeclaredOutput::magnitude("costs.csv", sum_of_cost())];
    let index = DatasetIndex::from_csv("costs", &cost_dataset().files[0]);
    let report = check_outputs_with_data(
        &entries,
        &declared,
        &[index],
        &[cost_dataset()],
        &CheckConfig::default(),
    );
    let output = report.results.values().next().unwrap();
    assert_eq!(output.status, Status::Pass, "{output:#?}");
    assert!(output
        .checks
        .iter()
        .any(|check| check.rule == Rule::Dominance));
}
