//! cohort-stats: counts patients by a grouping column.
//!
//! Reads every `*.csv` under `/data/cohort/`, the parameter `group_by` from
//! `/input/params.json`, and (on a sequential route) the previous stop's running counts from
//! `/input/state/state.csv`. Writes `/output/counts.csv` (group, n) and `/output/state.csv`.
//! Uses only the standard library so it builds as a static binary for a `FROM scratch` image.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::ExitCode;

fn parameter(params_json: &str, name: &str) -> Option<String> {
    // params.json is a flat object written by the station; a string value is all we need here.
    let key = format!("\"{name}\"");
    let after_key = &params_json[params_json.find(&key)? + key.len()..];
    let after_colon = after_key.trim_start().strip_prefix(':')?.trim_start();
    let value = after_colon.strip_prefix('"')?;
    Some(value[..value.find('"')?].to_string())
}

fn integer_parameter(params_json: &str, name: &str) -> Option<u64> {
    let key = format!("\"{name}\"");
    let after_key = &params_json[params_json.find(&key)? + key.len()..];
    let after_colon = after_key.trim_start().strip_prefix(':')?.trim_start();
    let digits: String = after_colon.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn count_csv(text: &str, group_by: &str, counts: &mut BTreeMap<String, u64>) -> Result<(), String> {
    let mut lines = text.lines();
    let header = lines.next().ok_or("empty CSV file")?;
    let column = header
        .split(',')
        .position(|name| name.trim() == group_by)
        .ok_or_else(|| format!("column `{group_by}` not in the dataset"))?;
    for line in lines.filter(|line| !line.trim().is_empty()) {
        let value = line.split(',').nth(column).unwrap_or("").trim();
        let group = if value.is_empty() { "unknown" } else { value };
        *counts.entry(group.to_string()).or_insert(0) += 1;
    }
    Ok(())
}

fn run() -> Result<(), String> {
    let params = fs::read_to_string("/input/params.json").unwrap_or_else(|_| "{}".to_string());
    let group_by = parameter(&params, "group_by").unwrap_or_else(|| "sex".to_string());
    // Stands in for a long analysis (demos and restart tests); 0 by default.
    if let Some(seconds) = integer_parameter(&params, "delay_seconds").filter(|s| *s > 0) {
        std::thread::sleep(std::time::Duration::from_secs(seconds.min(600)));
    }
    let mut counts = BTreeMap::new();
    if let Ok(state) = fs::read_to_string("/input/state/state.csv") {
        for line in state.lines().skip(1) {
            if let Some((group, n)) = line.rsplit_once(',') {
                let n: u64 = n.trim().parse().map_err(|_| format!("bad count in state: {line}"))?;
                *counts.entry(group.to_string()).or_insert(0) += n;
            }
        }
    }
    let data_dir = Path::new("/data/cohort");
    let mut entries: Vec<_> = fs::read_dir(data_dir)
        .map_err(|e| format!("cannot read {}: {e}", data_dir.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "csv"))
        .collect();
    entries.sort();
    if entries.is_empty() {
        return Err(format!("no CSV file in {}", data_dir.display()));
    }
    for path in &entries {
        let text = fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        count_csv(&text, &group_by, &mut counts).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let mut table = format!("{group_by},n\n");
    for (group, n) in &counts {
        table.push_str(&format!("{group},{n}\n"));
    }
    fs::write("/output/counts.csv", &table).map_err(|e| format!("cannot write counts: {e}"))?;
    fs::write("/output/state.csv", &table).map_err(|e| format!("cannot write state: {e}"))?;
    eprintln!("cohort-stats: {} groups from {} file(s)", counts.len(), entries.len());
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("cohort-stats: {message}");
            ExitCode::FAILURE
        }
    }
}
