//! Benchmark input: a generated counts table of a given size, for `examples/throughput.rs` and
//! the project's `make bench`.
//!
//! Owns only the generator. It does not time anything (the example does) and uses no randomness
//! source: the table is the same on every run, so throughput figures are comparable.

use std::io::Write;

/// The header of [`generate_benchmark_csv`]'s table; `n` and `n_events` are its count columns.
pub const BENCHMARK_CSV_HEADER: &str = "age_group,sex,region,n,n_events";

/// A counts table of at least `n_bytes` bytes (it stops after the row that crosses the size):
/// age group, sex and province labels with two count columns, every count at least 10, so the
/// default checks pass it.
pub fn generate_benchmark_csv(n_bytes: usize) -> Vec<u8> {
    const AGE_GROUPS: [&str; 8] = [
        "0-17", "18-29", "30-39", "40-49", "50-59", "60-69", "70-79", "80+",
    ];
    const SEXES: [&str; 2] = ["female", "male"];
    const REGIONS: [&str; 12] = [
        "drenthe",
        "flevoland",
        "friesland",
        "gelderland",
        "groningen",
        "limburg",
        "noord-brabant",
        "noord-holland",
        "overijssel",
        "utrecht",
        "zeeland",
        "zuid-holland",
    ];
    let mut csv = Vec::with_capacity(n_bytes + 64);
    csv.extend_from_slice(BENCHMARK_CSV_HEADER.as_bytes());
    csv.push(b'\n');
    // A fixed linear congruential generator (Knuth's MMIX constants) keeps the table reproducible.
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        state >> 33
    };
    while csv.len() < n_bytes {
        let random = next();
        let age_group = AGE_GROUPS[(random % 8) as usize];
        let sex = SEXES[((random >> 3) % 2) as usize];
        let region = REGIONS[((random >> 4) % 12) as usize];
        let n = 10 + next() % 9_990;
        let n_events = 10 + next() % (n - 9);
        writeln!(csv, "{age_group},{sex},{region},{n},{n_events}")
            .expect("writing to a Vec cannot fail");
    }
    csv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn benchmark_table_has_the_requested_size_and_counts_of_at_least_ten() {
        let csv = generate_benchmark_csv(10_000);
        assert!(
            csv.len() >= 10_000 && csv.len() < 10_100,
            "{} bytes",
            csv.len()
        );
        let text = String::from_utf8(csv).unwrap();
        for line in text.lines().skip(1) {
            let cells: Vec<&str> = line.split(',').collect();
            assert_eq!(cells.len(), 5, "{line}");
            assert!(cells[3].parse::<u64>().unwrap() >= 10, "{line}");
            assert!(cells[4].parse::<u64>().unwrap() >= 10, "{line}");
        }
    }
}
