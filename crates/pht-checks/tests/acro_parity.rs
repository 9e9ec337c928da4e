//! Parity with ACRO (SACRO's output checker, the `acro` package from PyPI, which
//! `scripts/install-deps.sh` installs into a virtual environment): the same synthetic cases
//! (`scripts/acro_verdicts.example.json`) go to ACRO through `scripts/acro_verdicts.py` and to
//! this crate's checks, and every cell's verdict is compared for the count threshold, zeros, n,k
//! dominance and the p-ratio, and every model's for its residual degrees of freedom. A verdict
//! ACRO does not give (it runs no dominance rules for medians, and none at all in a table with
//! a negative contributor) is not compared; ARCHITECTURE.md ("Parity with ACRO") says where
//! and why the checks are stricter. Not skipped when ACRO is missing: it fails, naming the fix.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use pht_checks::{
    check_outputs_with_data, AggregateDeclaration, AggregateFunction, CheckConfig, DatasetIndex,
    DatasetTable, DeclaredOutput, ModelDeclaration, OutputEntry, Status,
};
use serde_json::Value;

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn acro_python() -> PathBuf {
    let tools = std::env::var_os("PHT_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/pht-tools")
        });
    let python = tools.join("acro/bin/python");
    assert!(
        python.exists(),
        "{} is missing: `scripts/install-deps.sh` installs ACRO (make test does)",
        python.display()
    );
    python
}

/// ACRO's verdicts on the example cases.
fn acro_verdicts(cases: &Value) -> Value {
    let mut child = Command::new(acro_python())
        .arg(workspace_root().join("scripts/acro_verdicts.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ACRO");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(cases.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "acro_verdicts.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("ACRO's verdicts are JSON")
}

fn cell_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Our verdicts on one cell: whether each rule flagged it.
struct Verdicts {
    threshold: bool,
    nk: bool,
    p: bool,
    zero: bool,
}

/// Our verdicts for one table case, per cell in ACRO's order.
fn our_table_verdicts(case: &Value, acro_cells: &[Value]) -> Vec<Verdicts> {
    // A crosstab's column variables are keys of the long table a train writes.
    let group_by: Vec<String> = case["group_by"]
        .as_array()
        .unwrap()
        .iter()
        .chain(case["columns"].as_array().into_iter().flatten())
        .map(|g| g.as_str().unwrap().to_string())
        .collect();
    let value = case["value"].as_str().unwrap();
    let function = case["function"].as_str().unwrap();
    let mut dataset = format!("{},{value}\n", group_by.join(","));
    for row in case["data"].as_array().unwrap() {
        let keys: Vec<String> = group_by.iter().map(|g| cell_text(&row[g])).collect();
        dataset.push_str(&format!("{},{}\n", keys.join(","), cell_text(&row[value])));
    }
    let is_count = function == "count";
    let value_column = if is_count { "n" } else { value };
    let mut table = format!("{},{value_column}\n", group_by.join(","));
    for cell in acro_cells {
        let keys: Vec<String> = group_by
            .iter()
            .map(|g| cell_text(&cell["key"][g]))
            .collect();
        let shown = match cell["value"].as_f64() {
            Some(number) if is_count => format!("{}", number as u64),
            Some(number) => format!("{number}"),
            None => String::new(),
        };
        table.push_str(&format!("{},{shown}\n", keys.join(",")));
    }
    let entries = [OutputEntry::regular("t.csv", table.into_bytes())];
    let declared = if is_count {
        DeclaredOutput::table("t.csv", ["n"])
    } else {
        DeclaredOutput::magnitude(
            "t.csv",
            AggregateDeclaration {
                dataset: "d".into(),
                column: value.into(),
                function: match function {
                    "sum" => AggregateFunction::Sum,
                    "mean" => AggregateFunction::Mean,
                    "median" => AggregateFunction::Median,
                    other => panic!("no function {other}"),
                },
                group_by: group_by.clone(),
                value_column: None,
            },
        )
    };
    let tables = [DatasetTable {
        name: "d".into(),
        files: vec![dataset.clone().into_bytes()],
    }];
    let index = DatasetIndex::from_csv("d", dataset.as_bytes());
    let report = check_outputs_with_data(
        &entries,
        &[declared],
        &[index],
        &tables,
        &CheckConfig::default(),
    );
    let output = report.output("t.csv").expect("the table was checked");
    if !is_count {
        let mismatch = output
            .checks
            .iter()
            .find(|check| check.rule == pht_checks::Rule::Aggregate)
            .unwrap();
        assert_eq!(
            mismatch.status,
            Status::Pass,
            "{}: ACRO's cells must recompute: {}",
            case["name"],
            mismatch.summary
        );
    }
    let flagged_lines = |rule: pht_checks::Rule| -> Vec<u64> {
        output
            .checks
            .iter()
            .filter(|check| check.rule == rule && check.status != Status::Pass)
            .flat_map(|check| check.positions.iter().map(|position| position.line))
            .collect()
    };
    let threshold = flagged_lines(pht_checks::Rule::Threshold);
    let nk = flagged_lines(pht_checks::Rule::Dominance);
    let p = flagged_lines(pht_checks::Rule::PRatio);
    let zero = flagged_lines(pht_checks::Rule::Zero);
    (0..acro_cells.len() as u64)
        .map(|index| {
            let line = index + 2;
            Verdicts {
                threshold: threshold.contains(&line),
                nk: nk.contains(&line),
                p: p.contains(&line),
                zero: zero.contains(&line),
            }
        })
        .collect()
}

#[test]
fn cell_and_model_verdicts_agree_with_acro() {
    let example: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("scripts/acro_verdicts.example.json"))
            .unwrap(),
    )
    .unwrap();
    // Tables (a crosstab of counts, whose empty combinations ACRO shows as zero cells, is
    // written out in long form with those zeros), and models given by their size. A crosstab of
    // sums is not: its empty combinations have no value a train could write.
    let cases: Vec<Value> = example["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|case| {
            (case["kind"] == "table"
                && (case.get("columns").is_none() || case["function"] == "count"))
                || (case["kind"] == "regression" && case.get("n_obs").is_some())
        })
        .cloned()
        .collect();
    assert!(cases.len() >= 6, "the example cases went missing");
    let acro = acro_verdicts(&serde_json::json!({ "cases": cases }));
    let mut compared = 0;
    let mut known = 0;
    let mut disagreements = Vec::new();
    for (case, verdict) in cases.iter().zip(acro["cases"].as_array().unwrap()) {
        assert_eq!(case["name"], verdict["name"]);
        if case["kind"] == "regression" {
            let model = ModelDeclaration {
                n_obs: case["n_obs"].as_u64().unwrap(),
                n_params: case["n_params"].as_u64().unwrap(),
                dataset: None,
            };
            let entries = [OutputEntry::regular("model.txt", b"coefficients".to_vec())];
            let report = check_outputs_with_data(
                &entries,
                &[DeclaredOutput::model("model.txt", model)],
                &[],
                &[],
                &CheckConfig::default(),
            );
            let ours = report
                .output("model.txt")
                .unwrap()
                .checks
                .iter()
                .find(|check| check.rule == pht_checks::Rule::DegreesOfFreedom)
                .unwrap()
                .status
                == Status::Fail;
            let theirs = verdict["status"] == "fail";
            compared += 1;
            if ours != theirs {
                disagreements.push(format!("{}: dof ours {ours}, ACRO {theirs}", case["name"]));
            }
            continue;
        }
        let cells: Vec<Value> = verdict["cells"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|cell| cell["value"].is_number())
            .cloned()
            .collect();
        let ours = our_table_verdicts(case, &cells);
        for (cell, verdicts) in cells.iter().zip(ours) {
            let is_zero_count = case["function"] == "count" && cell["value"].as_f64() == Some(0.0);
            for (rule, our_verdict) in [
                ("threshold", verdicts.threshold),
                ("nk-rule", verdicts.nk),
                ("p-ratio", verdicts.p),
                ("zeros", verdicts.zero),
            ] {
                let Some(theirs) = cell[rule].as_bool() else {
                    continue;
                };
                compared += 1;
                // The one known difference (ARCHITECTURE.md, "Parity with ACRO"): a count of 0
                // is ACRO's threshold failure as well as its zeros finding; here it is only the
                // zero rule's (review), since 0 is not a small group but possibly a structural
                // zero a reviewer judges.
                if is_zero_count && rule == "threshold" && theirs && !our_verdict {
                    known += 1;
                    continue;
                }
                if theirs != our_verdict {
                    disagreements.push(format!(
                        "{} cell {}: {rule} ours {our_verdict}, ACRO {theirs}",
                        case["name"], cell["key"]
                    ));
                }
            }
        }
    }
    eprintln!(
        "{compared} verdicts compared with ACRO {}: {} differ, {known} by the known difference",
        acro["acro_version"],
        disagreements.len()
    );
    assert!(compared >= 50, "only {compared} verdicts compared");
    assert!(
        disagreements.is_empty(),
        "{} of {compared} verdicts differ from ACRO {}:\n{}",
        disagreements.len(),
        acro["acro_version"],
        disagreements.join("\n")
    );
}
