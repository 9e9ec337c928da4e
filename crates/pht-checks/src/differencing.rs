//! Differencing: two count tables released over the same dataset version whose difference
//! reveals a small group, though each passed its own checks.
//!
//! Owns reading a released count table's cells ([`count_table`]), the in-memory ledger of
//! earlier releases with its index ([`Ledger`]) and the comparison. For every set of key columns
//! a new table shares with an earlier one (every subset of its key columns, the empty set being
//! the grand total), both tables' margins over that set are derivable from what was released;
//! where the same margin cell has two counts whose difference is nonzero and below the
//! threshold, the difference is a group that small, and the new table fails. The index maps
//! (columns, key) to the earlier counts in order, so a comparison is a range query per margin
//! cell, whatever the ledger's size. Margins that include a suppressed cell are not derivable
//! and are not compared. Storing the ledger belongs to the station; nothing here does I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::delimited::{is_blank_record, sniff_delimiter, DelimitedReader};
use crate::report::{plural, rule_result, CheckReport, RuleResult, Status};
use crate::tables::text_start;
use crate::Rule;

/// The cells of a released count table: key columns (lower-case names) and one count per key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountTable {
    /// The non-count columns, normalised (trimmed, lower case), in table order.
    pub key_columns: Vec<String>,
    /// Each row's key cells (trimmed) and its count; `None` for a suppressed count.
    pub cells: Vec<(Vec<String>, Option<u64>)>,
}

/// A count table as released, and by which run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub run_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// The output's path.
    pub output: String,
    /// Unix seconds of the release (for retention).
    pub released_at: i64,
    pub table: CountTable,
}

/// Reads the count table of a CSV or TSV output: `count_field` (1-based) is its count column;
/// `other_count_fields` are further count columns, left out of the key. `None` when the table
/// has no header or the field is absent.
pub fn count_table(
    bytes: &[u8],
    count_field: u64,
    other_count_fields: &[u64],
) -> Option<CountTable> {
    let start = text_start(bytes);
    let delimiter = sniff_delimiter(&bytes[start..]);
    let mut reader = DelimitedReader::starting_at(bytes, delimiter, start);
    let mut cells = Vec::new();
    if !reader.next_record(&mut cells) {
        return None;
    }
    let count_index = usize::try_from(count_field.checked_sub(1)?).ok()?;
    if count_index >= cells.len() {
        return None;
    }
    let key_indexes: Vec<usize> = (0..cells.len())
        .filter(|&index| index != count_index && !other_count_fields.contains(&(index as u64 + 1)))
        .collect();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes.trim_ascii()).into_owned();
    let key_columns = key_indexes
        .iter()
        .map(|&index| text(&cells[index].text).to_lowercase())
        .collect();
    let mut table = CountTable {
        key_columns,
        cells: Vec::new(),
    };
    while reader.next_record(&mut cells) {
        if is_blank_record(&cells) {
            continue;
        }
        let key = key_indexes
            .iter()
            .map(|&index| {
                cells
                    .get(index)
                    .map(|cell| text(&cell.text))
                    .unwrap_or_default()
            })
            .collect();
        let count = cells.get(count_index).and_then(|cell| {
            std::str::from_utf8(cell.text.trim_ascii())
                .ok()?
                .parse()
                .ok()
        });
        table.cells.push((key, count));
    }
    Some(table)
}

/// Margins of a table over a subset of its key columns: key → count, or `None` when a
/// suppressed cell makes the margin underivable.
fn margins(table: &CountTable, subset: &[usize]) -> BTreeMap<Vec<String>, Option<u64>> {
    let mut sums: BTreeMap<Vec<String>, Option<u64>> = BTreeMap::new();
    for (key, count) in &table.cells {
        let margin_key: Vec<String> = subset.iter().map(|&index| key[index].clone()).collect();
        let entry = sums.entry(margin_key).or_insert(Some(0));
        *entry = match (*entry, count) {
            (Some(sum), Some(count)) => Some(sum.saturating_add(*count)),
            _ => None,
        };
    }
    sums
}

/// Every subset of `0..n` (at most 2^8 of them: wider keys compare their first 8 columns).
fn subsets(n: usize) -> impl Iterator<Item = Vec<usize>> {
    let n = n.min(8);
    (0u32..(1 << n)).map(move |mask| (0..n).filter(|bit| mask & (1 << bit) != 0).collect())
}

/// (column names of a subset, margin key) — what two releases must share to be compared.
type MarginId = (Vec<String>, Vec<String>);

/// Earlier releases over one dataset version, indexed by margin.
#[derive(Debug, Default)]
pub struct Ledger {
    releases: Vec<Release>,
    /// margin → count → releases (indexes into `releases`) with that count there.
    index: HashMap<MarginId, BTreeMap<u64, Vec<u32>>>,
}

/// An earlier release whose margin differs from the new table's by a small nonzero amount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DifferencingFinding {
    /// The earlier release's run and output.
    pub earlier_run: String,
    pub earlier_output: String,
    /// The key columns the two margins share (empty: the grand totals).
    pub columns: Vec<String>,
    /// The size of the group the difference reveals (never a cell's value itself).
    pub difference: u64,
}

/// The margins of a table keyed by column names, sorted so that column order does not matter.
fn named_margins(table: &CountTable) -> Vec<(MarginId, Option<u64>)> {
    let mut found = Vec::new();
    for subset in subsets(table.key_columns.len()) {
        let mut order: Vec<usize> = (0..subset.len()).collect();
        order.sort_by(|&a, &b| table.key_columns[subset[a]].cmp(&table.key_columns[subset[b]]));
        let columns: Vec<String> = order
            .iter()
            .map(|&i| table.key_columns[subset[i]].clone())
            .collect();
        if columns.iter().collect::<BTreeSet<_>>().len() != columns.len() {
            continue; // repeated column names: no clear margin
        }
        for (key, count) in margins(table, &subset) {
            let key: Vec<String> = order.iter().map(|&i| key[i].clone()).collect();
            found.push(((columns.clone(), key), count));
        }
    }
    found
}

impl Ledger {
    /// A ledger of `releases`, in release order.
    pub fn from_releases(releases: impl IntoIterator<Item = Release>) -> Ledger {
        let mut ledger = Ledger::default();
        for release in releases {
            ledger.add(release);
        }
        ledger
    }

    /// How many releases it holds.
    pub fn len(&self) -> usize {
        self.releases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.releases.is_empty()
    }

    /// The releases, oldest first.
    pub fn releases(&self) -> &[Release] {
        &self.releases
    }

    /// Adds a release to the ledger and its index.
    pub fn add(&mut self, release: Release) {
        let position = self.releases.len() as u32;
        for (margin, count) in named_margins(&release.table) {
            if let Some(count) = count {
                self.index
                    .entry(margin)
                    .or_default()
                    .entry(count)
                    .or_default()
                    .push(position);
            }
        }
        self.releases.push(release);
    }

    /// The earlier releases `table` differs from by a group of 1 to `threshold - 1`, at most one
    /// finding per earlier release (its smallest difference), oldest first.
    pub fn compare(&self, table: &CountTable, threshold: u64) -> Vec<DifferencingFinding> {
        let mut smallest: BTreeMap<u32, (u64, Vec<String>)> = BTreeMap::new();
        if threshold <= 1 {
            return Vec::new();
        }
        for ((columns, key), count) in named_margins(table) {
            let Some(count) = count else { continue };
            let Some(counts) = self.index.get(&(columns.clone(), key)) else {
                continue;
            };
            let low = count.saturating_sub(threshold - 1);
            let high = count.saturating_add(threshold - 1);
            for (&earlier, positions) in counts.range(low..=high) {
                let difference = earlier.abs_diff(count);
                if difference == 0 {
                    continue;
                }
                for &position in positions {
                    let entry = smallest
                        .entry(position)
                        .or_insert((difference, columns.clone()));
                    if difference < entry.0 {
                        *entry = (difference, columns.clone());
                    }
                }
            }
        }
        smallest
            .into_iter()
            .map(|(position, (difference, columns))| {
                let release = &self.releases[position as usize];
                DifferencingFinding {
                    earlier_run: release.run_id.clone(),
                    earlier_output: release.output.clone(),
                    columns,
                    difference,
                }
            })
            .collect()
    }
}

/// The `differencing` rule result for one output from its findings.
pub fn differencing_result(findings: &[DifferencingFinding], threshold: u64) -> RuleResult {
    if findings.is_empty() {
        return rule_result(
            Rule::Differencing,
            Status::Pass,
            0,
            "no earlier release over this dataset version differs from this table by a small group"
                .to_string(),
        );
    }
    let named: Vec<String> = findings
        .iter()
        .take(5)
        .map(|finding| {
            let over = if finding.columns.is_empty() {
                "the grand total".to_string()
            } else {
                format!("the margin over {}", finding.columns.join(", "))
            };
            format!(
                "run {} (`{}`): {over} differs by fewer than {threshold}",
                finding.earlier_run, finding.earlier_output
            )
        })
        .collect();
    rule_result(
        Rule::Differencing,
        Status::Fail,
        findings.len() as u64,
        format!(
            "{} released earlier over the same dataset version: the difference reveals a group \
             below the threshold; {}{}",
            plural(findings.len() as u64, "table", "tables"),
            named.join("; "),
            if findings.len() > 5 { "; …" } else { "" }
        ),
    )
}

impl CheckReport {
    /// Adds a rule result to the output `uid` and recomputes that output's and the report's
    /// verdicts and summaries. Does nothing for an unknown `uid`.
    pub fn add_rule_result(&mut self, uid: &str, result: RuleResult) {
        let Some(output) = self.results.get_mut(uid) else {
            return;
        };
        if result.status != Status::Pass {
            output.status = output.status.max(result.status);
            let line = format!("{}: {}", result.rule, result.summary);
            output.summary = match output.summary.split_once("; ") {
                Some((_, rest)) => format!("{}; {rest}; {line}", output.status),
                None => format!("{}; {line}", output.status),
            };
        }
        output.checks.push(result);
        self.status = self
            .results
            .values()
            .map(|output| output.status)
            .chain([self.collection.status])
            .max()
            .unwrap_or(Status::Pass);
        if let Some((_, rest)) = self.summary.split_once("; ") {
            let counts = |wanted: Status| {
                self.results
                    .values()
                    .filter(|output| output.status == wanted)
                    .count()
            };
            let tail = rest.split_once("; ").map(|(_, tail)| tail);
            self.summary = format!(
                "{}; {}: {} fail, {} review, {} pass{}",
                self.status,
                plural(self.results.len() as u64, "output", "outputs"),
                counts(Status::Fail),
                counts(Status::Review),
                counts(Status::Pass),
                tail.map(|tail| format!("; {tail}")).unwrap_or_default()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(csv: &str) -> CountTable {
        count_table(csv.as_bytes(), 2, &[]).unwrap()
    }

    fn release(run: &str, csv: &str) -> Release {
        Release {
            run_id: run.into(),
            job_id: None,
            output: "counts.csv".into(),
            released_at: 0,
            table: table(csv),
        }
    }

    #[test]
    fn a_table_differing_by_a_group_of_three_names_the_earlier_run() {
        let ledger = Ledger::from_releases([release("run-1", "sex,n\nF,120\nM,110\n")]);
        let findings = ledger.compare(&table("sex,n\nF,117\nM,110\n"), 10);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].earlier_run, "run-1");
        assert_eq!(findings[0].difference, 3);
    }

    #[test]
    fn identical_and_far_apart_tables_pass_and_the_boundary_is_the_threshold() {
        let ledger = Ledger::from_releases([release("run-1", "sex,n\nF,120\nM,110\n")]);
        assert!(ledger
            .compare(&table("sex,n\nF,120\nM,110\n"), 10)
            .is_empty());
        assert!(ledger
            .compare(&table("sex,n\nF,150\nM,140\n"), 10)
            .is_empty());
        // A difference of exactly the threshold is a group of ten: allowed.
        assert!(ledger
            .compare(&table("sex,n\nF,130\nM,120\n"), 10)
            .is_empty());
        assert_eq!(ledger.compare(&table("sex,n\nF,129\nM,120\n"), 10).len(), 1);
    }

    #[test]
    fn margins_of_a_finer_table_are_compared_with_a_coarser_one() {
        // Earlier: by sex. Now: by sex and region, whose margin over sex is F 117.
        let ledger = Ledger::from_releases([release("run-1", "sex,n\nF,120\nM,110\n")]);
        let finer = count_table(
            b"region,sex,n\nnorth,F,60\nsouth,F,57\nnorth,M,55\nsouth,M,55\n",
            3,
            &[],
        )
        .unwrap();
        let findings = ledger.compare(&finer, 10);
        assert_eq!(findings.len(), 1, "{findings:?}");
        // The grand totals (230 and 227) differ by 3 as well; the smallest difference is kept.
        assert_eq!(findings[0].difference, 3);
    }

    #[test]
    fn suppressed_cells_make_their_margins_underivable() {
        let ledger = Ledger::from_releases([release("run-1", "sex,n\nF,\nM,110\n")]);
        // Only M is comparable (and equal); the grand total is not derivable.
        assert!(ledger
            .compare(&table("sex,n\nF,117\nM,110\n"), 10)
            .is_empty());
    }

    #[test]
    fn column_order_does_not_hide_a_difference() {
        let mut earlier = release("run-1", "sex,n\nF,1\n");
        earlier.table = count_table(b"a,b,n\nx,y,50\n", 3, &[]).unwrap();
        let ledger = Ledger::from_releases([earlier]);
        let swapped = count_table(b"b,a,n\ny,x,47\n", 3, &[]).unwrap();
        assert_eq!(ledger.compare(&swapped, 10).len(), 1);
    }

    #[test]
    fn the_rule_result_names_runs_not_values() {
        let ledger = Ledger::from_releases([release("run-1", "sex,n\nF,120\nM,110\n")]);
        let findings = ledger.compare(&table("sex,n\nF,117\nM,110\n"), 10);
        let result = differencing_result(&findings, 10);
        assert_eq!(result.status, Status::Fail);
        assert!(result.summary.contains("run-1"), "{}", result.summary);
        assert!(!result.summary.contains("117") && !result.summary.contains("120"));
    }
}
