//! Every output-check rule against passing and failing fixtures, through the public entry point
//! `check_outputs`. Each test renders the report compactly (output, status, then every rule that
//! did not pass with its count and positions `line:column#field`) and compares it to a snapshot.
//! The rendering and the `check_*` helpers live in `support/`, a module of this one test binary.

mod support;

use expect_test::expect;
use pht_checks::{
    check_outputs, CheckConfig, DatasetIndex, DeclaredOutput, OutputEntry, OutputKind, Status,
};
use support::{check_csv, check_report, check_text};

// ---------------------------------------------------------------------------------------------
// Tables: count cells.

#[test]
fn count_of_nine_fails() {
    check_csv(
        "group,n\na,9\nb,25\n",
        expect![[r#"
            overall: fail
            t.csv fail [Table]
              threshold fail 1 [2:3#2] 1 count cell below 10; count column: `n` (field 2, declared)
        "#]],
    );
}

#[test]
fn count_of_ten_passes() {
    check_csv(
        "group,n\na,10\nb,25\n",
        expect![[r#"
            overall: pass
            t.csv pass [Table]
        "#]],
    );
}

#[test]
fn count_of_zero_is_flagged_for_review_not_failed() {
    check_csv(
        "group,n\na,0\nb,25\n",
        expect![[r#"
            overall: review
            t.csv review [Table]
              zero review 1 [2:3#2] 1 count cell is zero
        "#]],
    );
}

#[test]
fn count_of_zero_passes_when_the_policy_allows_zeros() {
    check_report(
        &[OutputEntry::regular(
            "t.csv",
            b"group,n\na,0\nb,25\n".to_vec(),
        )],
        &[DeclaredOutput::table("t.csv", ["n"])],
        &[],
        &CheckConfig {
            flag_zero_cells: false,
            ..CheckConfig::default()
        },
        expect![[r#"
            overall: pass
            t.csv pass [Table]
        "#]],
    );
}

#[test]
fn threshold_follows_the_policy() {
    check_report(
        &[OutputEntry::regular(
            "t.csv",
            b"group,n\na,9\nb,4\n".to_vec(),
        )],
        &[DeclaredOutput::table("t.csv", ["n"])],
        &[],
        &CheckConfig {
            min_cell_count: 5,
            ..CheckConfig::default()
        },
        expect![[r#"
            overall: fail
            t.csv fail [Table]
              threshold fail 1 [3:3#2] 1 count cell below 5; count column: `n` (field 2, declared)
        "#]],
    );
}

#[test]
fn non_integer_and_negative_counts_are_flagged_for_review() {
    check_csv(
        "group,n\na,12.5\nb,<10\nc,-12\nd,12.0\ne,\nf,NA\n",
        expect![[r#"
            overall: review
            t.csv review [Table]
              non-integer review 2 [2:3#2 3:3#2] 2 count cells are not whole numbers
              negative review 1 [4:3#2] 1 count cell is negative
        "#]],
    );
}

#[test]
fn every_count_column_is_checked_and_all_positions_are_listed() {
    check_csv(
        "group,n,N_Patients\na,3,40\nb,50,7\nc,11,0\n",
        expect![[r#"
            overall: fail
            t.csv fail [Table]
              threshold fail 2 [2:3#2 3:6#3] 2 count cells below 10; count columns: `n` (field 2, declared), `n_patients` (field 3, named in the policy)
              zero review 1 [4:6#3] 1 count cell is zero
        "#]],
    );
}

#[test]
fn count_columns_named_in_the_policy_are_recognised_without_a_declaration() {
    check_report(
        &[OutputEntry::regular(
            "t.csv",
            b"sex; Count \nf;4\nm;12\n".to_vec(),
        )],
        &[DeclaredOutput::new("t.csv", OutputKind::Table)],
        &[],
        &CheckConfig::default(),
        expect![[r#"
            overall: fail
            t.csv fail [Table]
              threshold fail 1 [2:3#2] 1 count cell below 10; count column: `count` (field 2, named in the policy)
        "#]],
    );
}

#[test]
fn table_without_any_count_column_is_flagged_for_review() {
    check_report(
        &[OutputEntry::regular(
            "t.csv",
            b"variable,estimate\nage,0.12\n".to_vec(),
        )],
        &[DeclaredOutput::new("t.csv", OutputKind::Table)],
        &[],
        &CheckConfig::default(),
        expect![[r#"
            overall: review
            t.csv review [Table]
              threshold review 0 [] no count column declared, named in the policy or recognised by name or shape, so cell sizes cannot be checked
        "#]],
    );
}

#[test]
fn declared_count_column_missing_from_the_table_is_flagged_for_review() {
    check_report(
        &[OutputEntry::regular("t.csv", b"group,n\na,12\n".to_vec())],
        &[DeclaredOutput::table("t.csv", ["n", "n_deaths"])],
        &[],
        &CheckConfig::default(),
        expect![[r#"
            overall: review
            t.csv review [Table]
              threshold review 0 [] declared count columns not found in the table: `n_deaths`; count column: `n` (field 2, declared)
        "#]],
    );
}

#[test]
fn quoted_cells_semicolons_and_tsv_are_read_as_tables() {
    check_report(
        &[
            OutputEntry::regular(
                "semicolon.csv",
                "\u{feff}\"sex\";\"n\"\r\n\"f\";\"3\"\r\n"
                    .as_bytes()
                    .to_vec(),
            ),
            OutputEntry::regular("tabs.tsv", b"sex\tn\nf\t3\n".to_vec()),
        ],
        &[
            DeclaredOutput::table("semicolon.csv", ["n"]),
            DeclaredOutput::table("tabs.tsv", ["n"]),
        ],
        &[],
        &CheckConfig::default(),
        expect![[r#"
            overall: fail
            semicolon.csv fail [Table]
              threshold fail 1 [2:5#2] 1 count cell below 10; count column: `n` (field 2, declared)
            tabs.tsv fail [Table]
              threshold fail 1 [2:3#2] 1 count cell below 10; count column: `n` (field 2, declared)
        "#]],
    );
}

#[test]
fn positions_are_capped_but_the_count_stays_exact() {
    let csv = format!("group,n\n{}", "a,3\n".repeat(7));
    check_report(
        &[OutputEntry::regular("t.csv", csv.into_bytes())],
        &[DeclaredOutput::table("t.csv", ["n"])],
        &[],
        &CheckConfig {
            max_reported_positions: 2,
            ..CheckConfig::default()
        },
        expect![[r#"
            overall: fail
            t.csv fail [Table]
              threshold fail 7 [2:3#2 3:3#2] 7 count cells below 10; count column: `n` (field 2, declared)
        "#]],
    );
}

// ---------------------------------------------------------------------------------------------
// Tables: row count and leakage.

// ---------------------------------------------------------------------------------------------
// Count columns found, not declared: the train's word adds to what the checker infers.

/// A declared table without count columns, checked with a policy that names none either, so
/// every count column found is inferred.
fn check_undeclared(csv: &str, expected: expect_test::Expect) {
    let config = CheckConfig {
        count_column_names: Vec::new(),
        ..CheckConfig::default()
    };
    check_report(
        &[OutputEntry::regular("t.csv", csv.as_bytes().to_vec())],
        &[DeclaredOutput::new("t.csv", OutputKind::Table)],
        &[],
        &config,
        expected,
    );
}

#[test]
fn an_undeclared_n_is_a_count_column_by_its_name() {
    check_undeclared(
        "sex,n\nF,4\nM,20\n",
        expect![[r#"
            overall: fail
            t.csv fail [Table]
              threshold fail 1 [2:3#2] 1 count cell below 10; count column: `n` (field 2, inferred from its name)
        "#]],
    );
}

#[test]
fn an_undeclared_dutch_or_german_count_is_found_by_its_name() {
    check_undeclared(
        "geslacht;Aantal Patiënten\nV;4\nM;25\n",
        expect![[r#"
            overall: fail
            t.csv fail [Table]
              threshold fail 1 [2:3#2] 1 count cell below 10; count column: `aantal` (field 2, inferred from its name)
        "#]],
    );
    check_undeclared(
        "Geschlecht,Anzahl\nw,12\nm,0\n",
        expect![[r#"
            overall: review
            t.csv review [Table]
              zero review 1 [3:3#2] 1 count cell is zero
        "#]],
    );
}

#[test]
fn a_declared_count_column_adds_to_the_inferred_ones() {
    check_report(
        &[OutputEntry::regular(
            "t.csv",
            b"sex,n,deaths\nF,20,3\nM,30,12\n".to_vec(),
        )],
        &[DeclaredOutput::table("t.csv", ["n"])],
        &[],
        &CheckConfig::default(),
        expect![[r#"
            overall: fail
            t.csv fail [Table]
              threshold fail 1 [2:6#3] 1 count cell below 10; count columns: `n` (field 2, declared), field 3 (inferred from its shape)
        "#]],
    );
}

#[test]
fn an_integer_identifier_column_is_not_a_count_but_a_count_behind_an_identifier_name_is() {
    // Distinct record numbers are identifiers; repeated small "ids" are counts in disguise.
    check_undeclared(
        "record_id,region,n\n1,north,25\n2,south,31\n3,east,40\n",
        expect![[r#"
            overall: pass
            t.csv pass [Table]
        "#]],
    );
    check_undeclared(
        "region,group_id\nnorth,3\nsouth,3\neast,25\n",
        expect![[r#"
            overall: fail
            t.csv fail [Table]
              threshold fail 2 [2:7#2 3:7#2] 2 count cells below 10; count column: field 2 (inferred from its shape)
        "#]],
    );
}

#[test]
fn keys_row_indexes_and_indicators_are_not_counts() {
    // pandas' index column, a year key, a 0/1 indicator beside a real count.
    check_undeclared(
        ",year,smoker,region,n\n0,2020,0,north,25\n1,2020,1,north,31\n2,2021,0,south,40\n",
        expect![[r#"
            overall: pass
            t.csv pass [Table]
        "#]],
    );
}

#[test]
fn whole_numbers_without_a_key_column_go_to_review() {
    check_undeclared(
        "x,y\n1,5\n2,7\n",
        expect![[r#"
            overall: review
            t.csv review [Table]
              threshold review 0 [] whole numbers in fields 1, 2 could not be classified as counts or keys (no categorical column beside them); declare count columns in train.yaml, or a reviewer decides
        "#]],
    );
}

// ---------------------------------------------------------------------------------------------
// Leakage by quasi-identifiers, whatever the column order, names or subset.

/// 120 patients: every (city, sex, diagnosis) group has 10, but birth year, sex, diagnosis and
/// BMI together single most of them out.
fn quasi_identifier_cohort() -> String {
    let mut csv = String::from("patient_id,birth_year,sex,diagnosis,bmi,city\n");
    for i in 0..120u32 {
        csv.push_str(&format!(
            "P{i:04},{},{},{},{}.{},{}\n",
            1940 + (i * 7) % 50,
            ["F", "M"][(i % 2) as usize],
            ["copd", "asthma", "diabetes"][((i / 2) % 3) as usize],
            18 + (i * 13) % 20,
            i % 10,
            ["Utrecht", "Zwolle"][((i / 6) % 2) as usize],
        ));
    }
    csv
}

/// Rows 5, 17 and 33 of the cohort as `line(i)` writes them.
fn cohort_rows(line: impl Fn(&[&str]) -> String) -> String {
    let cohort = quasi_identifier_cohort();
    let rows: Vec<&str> = cohort.lines().collect();
    [5, 17, 33]
        .iter()
        .map(|&i| {
            let cells: Vec<&str> = rows[i + 1].split(',').collect();
            line(&cells)
        })
        .collect()
}

fn check_against_cohort(entries: &[(&str, String)], expected: expect_test::Expect) {
    let entries: Vec<OutputEntry> = entries
        .iter()
        .map(|(path, text)| OutputEntry::regular(*path, text.as_bytes().to_vec()))
        .collect();
    let declared: Vec<DeclaredOutput> = entries
        .iter()
        .map(|entry| DeclaredOutput::new(entry.path.clone(), OutputKind::Table))
        .collect();
    check_report(
        &entries,
        &declared,
        &[DatasetIndex::from_csv(
            "cohort",
            quasi_identifier_cohort().as_bytes(),
        )],
        &CheckConfig::default(),
        expected,
    );
}

#[test]
fn rows_with_columns_reordered_and_renamed_leak() {
    let reordered = String::from("town,mass_index,dx,gender,yob,ref\n")
        + &cohort_rows(|cells| {
            format!(
                "{},{},{},{},{},{}\n",
                cells[5], cells[4], cells[3], cells[2], cells[1], cells[0]
            )
        });
    check_against_cohort(
        &[("reordered.csv", reordered)],
        expect![[r#"
            overall: fail
            reordered.csv fail [Table]
              leakage fail 3 [2:1#1 3:1#1 4:1#1] 3 rows share a combination of at least 3 values with fewer than 10 rows of dataset `cohort` (compared whatever the column order, names or subset)
        "#]],
    );
}

#[test]
fn a_four_column_quasi_identifier_subset_leaks() {
    // Birth year, sex, diagnosis and BMI under other names, in another order: no identifier,
    // no row equal to a dataset row, and still one patient per row.
    let subset = String::from("body_mass,year_of_birth,condition,gender\n")
        + &cohort_rows(|cells| format!("{},{},{},{}\n", cells[4], cells[1], cells[3], cells[2]));
    check_against_cohort(
        &[("subset.csv", subset)],
        expect![[r#"
            overall: fail
            subset.csv fail [Table]
              threshold review 0 [] no count column declared, named in the policy or recognised by name or shape, so cell sizes cannot be checked
              leakage fail 3 [2:1#1 3:1#1 4:1#1] 3 rows share a combination of at least 3 values with fewer than 10 rows of dataset `cohort` (compared whatever the column order, names or subset)
        "#]],
    );
}

#[test]
fn a_harmless_aggregate_of_the_same_data_does_not_leak() {
    // Every (city, sex, diagnosis) group of the cohort has 10 patients: three shared values,
    // but shared by ten rows, and the counts themselves are not compared.
    let mut counts = String::from("city,sex,diagnosis,n\n");
    for city in ["Utrecht", "Zwolle"] {
        for sex in ["F", "M"] {
            for diagnosis in ["copd", "asthma", "diabetes"] {
                counts.push_str(&format!("{city},{sex},{diagnosis},10\n"));
            }
        }
    }
    let means = String::from("sex,diagnosis,mean_bmi,n\nF,copd,27.35,20\nM,asthma,26.9,20\n");
    check_against_cohort(
        &[("counts.csv", counts), ("means.csv", means)],
        expect![[r#"
            overall: pass
            counts.csv pass [Table]
            means.csv pass [Table]
        "#]],
    );
}

const COHORT_CSV: &str =
    "name,age,city\nJan,34,Utrecht\nPiet,51,Zwolle\nKees,29,Delft\nAnna,62,Ede\n";

#[test]
fn table_as_long_as_a_dataset_is_flagged_for_review() {
    check_report(
        &[OutputEntry::regular(
            "t.csv",
            b"group,n\na,10\nb,11\nc,12\nd,13\n".to_vec(),
        )],
        &[DeclaredOutput::table("t.csv", ["n"])],
        &[DatasetIndex::from_csv("cohort", COHORT_CSV.as_bytes())],
        &CheckConfig::default(),
        expect![[r#"
            overall: review
            t.csv review [Table]
              row-count review 1 [] the table has 4 rows, at least 90% of dataset `cohort` (4 rows)
        "#]],
    );
}

#[test]
fn a_dataset_split_over_several_tables_is_counted_per_run() {
    // Two rows per file, each far below 90% of the four-row dataset, four rows together.
    let half = |path: &str| OutputEntry::regular(path, b"group,n\na,10\nb,11\n".to_vec());
    check_report(
        &[half("first.csv"), half("second.csv")],
        &[
            DeclaredOutput::table("first.csv", ["n"]),
            DeclaredOutput::table("second.csv", ["n"]),
        ],
        &[DatasetIndex::from_csv("cohort", COHORT_CSV.as_bytes())],
        &CheckConfig::default(),
        expect![[r#"
            overall: review
            collection row-count review 1: the run's 2 tables have 4 rows together, at least 90% of dataset `cohort` (4 rows)
            first.csv pass [Table]
            second.csv pass [Table]
        "#]],
    );
}

#[test]
fn received_state_is_compared_for_leakage_but_not_for_row_count() {
    // The state a stop received is a few rows; a table as long as it is no copy of a dataset,
    // but a row copied from it is a leak.
    let state = DatasetIndex::from_csv("state from a", COHORT_CSV.as_bytes()).for_leakage_only();
    check_report(
        &[
            OutputEntry::regular("t.csv", b"group,n\na,10\nb,11\nc,12\nd,13\n".to_vec()),
            OutputEntry::regular("copy.csv", COHORT_CSV.as_bytes().to_vec()),
        ],
        &[
            DeclaredOutput::table("t.csv", ["n"]),
            DeclaredOutput::new("copy.csv", OutputKind::Table),
        ],
        &[state],
        &CheckConfig::default(),
        expect![[r#"
            overall: fail
            copy.csv fail [Table]
              threshold review 0 [] no count column declared, named in the policy or recognised by name or shape, so cell sizes cannot be checked
              leakage fail 4 [2:1#1 3:1#1 4:1#1 5:1#1] 4 rows identical to rows of dataset `state from a`
            t.csv pass [Table]
        "#]],
    );
}

#[test]
fn leaked_dataset_row_fails_even_respelled_or_behind_an_index_column() {
    // Row 1 is a dataset row in other case and spacing; row 2 carries pandas' index column.
    check_report(
        &[
            OutputEntry::regular(
                "t.csv",
                b"name,age,city\n PIET ,51.0,zwolle\nx,y,z\nq,r,s\nu,v,w\nk,l,m\n".to_vec(),
            ),
            OutputEntry::regular("indexed.csv", b",name,age,city\n0,Kees,29,Delft\n".to_vec()),
        ],
        &[
            DeclaredOutput::new("t.csv", OutputKind::Table),
            DeclaredOutput::new("indexed.csv", OutputKind::Table),
        ],
        &[DatasetIndex::from_csv("cohort", COHORT_CSV.as_bytes())],
        &CheckConfig::default(),
        expect![[r#"
            overall: fail
            collection row-count review 1: the run's 2 tables have 6 rows together, at least 90% of dataset `cohort` (4 rows)
            indexed.csv fail [Table]
              threshold review 0 [] no count column declared, named in the policy or recognised by name or shape, so cell sizes cannot be checked
              leakage fail 1 [2:1#1] 1 row identical to rows of dataset `cohort`
            t.csv fail [Table]
              threshold review 0 [] no count column declared, named in the policy or recognised by name or shape, so cell sizes cannot be checked
              row-count review 1 [] the table has 5 rows, at least 90% of dataset `cohort` (4 rows)
              leakage fail 1 [2:1#1] 1 row identical to rows of dataset `cohort`
        "#]],
    );
}

#[test]
fn aggregate_rows_do_not_match_dataset_rows() {
    check_report(
        &[OutputEntry::regular(
            "t.csv",
            b"city,mean_age,n\nUtrecht,34,12\n".to_vec(),
        )],
        &[DeclaredOutput::table("t.csv", ["n"])],
        &[DatasetIndex::from_csv("cohort", COHORT_CSV.as_bytes())],
        &CheckConfig::default(),
        expect![[r#"
            overall: pass
            t.csv pass [Table]
        "#]],
    );
}

#[test]
fn dataset_index_read_back_from_its_cache_still_finds_leaks() {
    let cached = serde_json::to_string(&DatasetIndex::from_csv("cohort", COHORT_CSV.as_bytes()))
        .expect("an index serialises");
    let dataset_index: DatasetIndex = serde_json::from_str(&cached).expect("and reads back");
    check_report(
        &[OutputEntry::regular(
            "t.json",
            br#"[{"name": "Anna", "age": 62, "city": "Ede"}]"#.to_vec(),
        )],
        &[DeclaredOutput::new("t.json", OutputKind::Table)],
        &[dataset_index],
        &CheckConfig::default(),
        expect![[r#"
            overall: fail
            t.json fail [Table]
              threshold review 0 [] no count column declared, named in the policy or recognised by name or shape, so cell sizes cannot be checked
              leakage fail 1 [1:11#1] 1 row identical to rows of dataset `cohort`
        "#]],
    );
}

// ---------------------------------------------------------------------------------------------
// JSON tables.

#[test]
fn json_array_of_records_is_checked_like_a_table() {
    check_report(
        &[OutputEntry::regular(
            "t.json",
            b"[\n  {\"sex\": \"f\", \"n\": 3},\n  {\"sex\": \"m\", \"n\": \"12\"},\n  {\"sex\": \"x\", \"n\": null},\n  {\"sex\": \"y\", \"n\": 0}\n]\n".to_vec(),
        )],
        &[DeclaredOutput::table("t.json", ["n"])],
        &[],
        &CheckConfig::default(),
        expect![[r#"
            overall: fail
            t.json fail [Table]
              threshold fail 1 [2:21#2] 1 count cell below 10; count column: `n` (field 2, declared)
              zero review 1 [5:21#2] 1 count cell is zero
        "#]],
    );
}

#[test]
fn json_that_is_not_a_table_or_not_json_goes_to_review() {
    check_report(
        &[
            OutputEntry::regular("summary.json", br#"{"mean_age": 51.2, "n": 1200}"#.to_vec()),
            OutputEntry::regular("broken.json", br#"[{"n": 12"#.to_vec()),
        ],
        &[
            DeclaredOutput::new("summary.json", OutputKind::Text),
            DeclaredOutput::new("broken.json", OutputKind::Table),
        ],
        &[],
        &CheckConfig::default(),
        expect![[r#"
            overall: review
            broken.json review [Table]
              format review 0 [] not valid JSON; scanned as free text
              human-review review 1 [] invalid JSON cannot be checked as a table
            summary.json review [Text]
              human-review review 1 [] JSON that is not an array of flat records cannot be checked as a table
        "#]],
    );
}

// ---------------------------------------------------------------------------------------------
// Identifiers.

#[test]
fn valid_bsn_with_a_context_word_fails() {
    check_text(
        "Patient BSN: 111222333\n",
        expect![[r#"
            overall: fail
            notes.txt fail [Text]
              bsn fail 1 [1:14] 1 BSN (9 digits passing the 11-test near a BSN context word)
              human-review review 1 [] free text cannot be checked automatically
        "#]],
    );
}

#[test]
fn valid_bsn_without_a_context_word_is_flagged_for_review() {
    check_csv(
        "group,n,code\na,12,111222333\n",
        expect![[r#"
            overall: review
            t.csv review [Table]
              possible-bsn review 1 [2:6#3] 1 9-digit number passing the BSN 11-test without a BSN context word nearby
        "#]],
    );
}

#[test]
fn bsn_column_header_is_a_context_word() {
    check_csv(
        &format!("BSN,n\n{}111222333,12\n", "000000000,11\n".repeat(10)),
        expect![[r#"
            overall: fail
            t.csv fail [Table]
              threshold review 0 [] whole numbers in field 1 could not be classified as counts or keys (no categorical column beside them); declare count columns in train.yaml, or a reviewer decides; count column: `n` (field 2, declared)
              bsn fail 1 [12:1#1] 1 BSN (9 digits passing the 11-test near a BSN context word)
        "#]],
    );
}

#[test]
fn invalid_bsn_with_a_context_word_is_not_a_bsn() {
    check_csv(
        "bsn,n\n111222334,12\n",
        expect![[r#"
            overall: pass
            t.csv pass [Table]
        "#]],
    );
}

#[test]
fn email_addresses_fail() {
    check_csv(
        "contact,n\njan.jansen@umc.example.nl,12\n",
        expect![[r#"
            overall: fail
            t.csv fail [Table]
              email fail 1 [2:1#1] 1 e-mail address
        "#]],
    );
}

#[test]
fn email_look_alikes_pass() {
    check_csv(
        "note,n\nuser at example dot com,12\nnumpy@1.26.4,13\nR 4.3.2,14\n@home,15\n",
        expect![[r#"
            overall: pass
            t.csv pass [Table]
        "#]],
    );
}

#[test]
fn postcodes_are_flagged_for_review_and_look_alikes_pass() {
    check_csv(
        "area,n\n1234 AB,12\n0123 AB,13\n1234 SS,14\n2023,15\n1234,16\n",
        expect![[r#"
            overall: review
            t.csv review [Table]
              postcode review 1 [2:1#1] 1 Dutch postcode
        "#]],
    );
}

#[test]
fn phone_numbers_fail() {
    check_text(
        "bel 06-12345678 of +31 20 1234567\n",
        expect![[r#"
            overall: fail
            notes.txt fail [Text]
              phone fail 2 [1:5 1:20] 2 Dutch phone numbers
              human-review review 1 [] free text cannot be checked automatically
        "#]],
    );
}

#[test]
fn dates_of_birth_fail_and_other_dates_pass() {
    check_csv(
        "geboortedatum,visit_date,n\n12-03-1980,2023-01-05,12\nfield,value,n\ngeboren,1 mei 1980,11\n",
        expect![[r#"
            overall: fail
            t.csv fail [Table]
              non-integer review 1 [3:13#3] 1 count cell is not whole numbers
              date-of-birth fail 2 [2:1#1 4:9#2] 2 dates of birth (dates near a birth context word or in a birth-date column)
        "#]],
    );
}

#[test]
fn long_digit_runs_are_flagged_for_review_but_counts_years_and_decimals_pass() {
    check_csv(
        "patient_ref,year,p,n\n12345678901,2023,0.00012345678901,1234\n",
        expect![[r#"
            overall: review
            t.csv review [Table]
              digit-run review 1 [2:1#1] 1 run of 10 or more digits
        "#]],
    );
}

#[test]
fn identifier_hidden_after_a_closing_quote_is_still_found() {
    check_csv(
        "note,n\n\"x\" mail jan@example.nl,12\n",
        expect![[r#"
            overall: fail
            t.csv fail [Table]
              email fail 1 [2:10#1] 1 e-mail address
        "#]],
    );
}

// ---------------------------------------------------------------------------------------------
// Structure, types and what needs a human.

fn tiny_png() -> Vec<u8> {
    fn chunk(png: &mut Vec<u8>, chunk_type: &[u8; 4], data: &[u8]) {
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        png.extend_from_slice(chunk_type);
        png.extend_from_slice(data);
        png.extend_from_slice(&[0, 0, 0, 0]);
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut png, b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0]);
    chunk(&mut png, b"tEXt", b"Software\0matplotlib");
    chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x9c, 0x63, 0x60, 0, 0, 0, 2, 0, 1],
    );
    chunk(&mut png, b"IEND", &[]);
    png
}

#[test]
fn png_figure_always_goes_to_review() {
    check_report(
        &[OutputEntry::regular("figures/age.png", tiny_png())],
        &[DeclaredOutput::new("figures/*.png", OutputKind::Figure)],
        &[],
        &CheckConfig::default(),
        expect![[r#"
            overall: review
            figures/age.png review [Figure]
              human-review review 1 [] figures need a human eye: nothing here reads pixels, and this one carries 1 text chunk that image viewers do not show
        "#]],
    );
}

#[test]
fn png_with_data_after_its_end_or_without_its_signature_fails() {
    let mut smuggling_png = tiny_png();
    smuggling_png.extend_from_slice(b"name,age\nJan,34\n");
    check_report(
        &[
            OutputEntry::regular("smuggling.png", smuggling_png),
            OutputEntry::regular("fake.png", b"name,age\nJan,34\n".to_vec()),
        ],
        &[DeclaredOutput::new("*.png", OutputKind::Figure)],
        &[],
        &CheckConfig::default(),
        expect![[r#"
            overall: fail
            fake.png fail [Figure]
              file-type fail 1 [] named `.png` but does not start with the PNG signature
            smuggling.png fail [Figure]
              png-structure fail 1 [] 16 bytes after the end of the image, where data can hide
              human-review review 1 [] figures need a human eye: nothing here reads pixels, and this one carries 1 text chunk that image viewers do not show
        "#]],
    );
}

#[test]
fn unknown_binary_of_an_allowed_type_goes_to_review_and_disallowed_types_fail() {
    check_report(
        &[
            OutputEntry::regular("model.bin", vec![0, 159, 146, 150, 0, 1]),
            OutputEntry::regular("data.parquet", b"PAR1\0\0".to_vec()),
        ],
        &[
            DeclaredOutput::new("model.bin", OutputKind::Model),
            DeclaredOutput::new("data.parquet", OutputKind::Table),
        ],
        &[],
        &CheckConfig {
            allowed_extensions: ["csv", "bin"].map(String::from).to_vec(),
            ..CheckConfig::default()
        },
        expect![[r#"
            overall: fail
            data.parquet fail [Table]
              file-type fail 1 [] `.parquet` is not an allowed file type (allowed: csv, bin)
            model.bin review [Model]
              human-review review 2 [] declared as a model, which can memorise rows of the data; no automatic check exists for `.bin` files
        "#]],
    );
}

#[test]
fn symlinks_and_special_files_fail() {
    check_report(
        &[
            OutputEntry::symlink("link.csv", "/data/cohort/cohort.csv"),
            OutputEntry::special("pipe.csv", "fifo"),
        ],
        &[DeclaredOutput::new("*.csv", OutputKind::Table)],
        &[],
        &CheckConfig::default(),
        expect![[r#"
            overall: fail
            link.csv fail [Custom]
              regular-file fail 1 [] a symbolic link; links are never followed or released
            pipe.csv fail [Custom]
              regular-file fail 1 [] a special file (fifo); only regular files are released
        "#]],
    );
}

#[test]
fn an_entry_the_collector_refused_is_reported_as_not_collected_not_as_a_special_file() {
    // Regression: a name with a newline or invalid UTF-8 read as "a special file".
    check_report(
        &[OutputEntry::not_collected(
            "bad?name.csv",
            "name is not UTF-8 or contains a control character",
        )],
        &[DeclaredOutput::new("*.csv", OutputKind::Table)],
        &[],
        &CheckConfig::default(),
        expect![[r#"
            overall: fail
            bad?name.csv fail [Custom]
              regular-file fail 1 [] not collected: name is not UTF-8 or contains a control character
        "#]],
    );
}

#[test]
fn paths_that_escape_or_repeat_fail() {
    let counts = b"group,n\na,12\n".to_vec();
    check_report(
        &[
            OutputEntry::regular("../etc/t.csv", counts.clone()),
            OutputEntry::regular("/abs.csv", counts.clone()),
            OutputEntry::regular("t.csv", counts.clone()),
            OutputEntry::regular("t.csv", counts),
        ],
        &[DeclaredOutput::new("t.csv", OutputKind::Table)],
        &[],
        &CheckConfig {
            review_undeclared_outputs: false,
            ..CheckConfig::default()
        },
        expect![[r#"
            overall: fail
            ../etc/t.csv fail [Table]
              path fail 1 [] the path leaves /output
            /abs.csv fail [Table]
              path fail 1 [] the path is absolute
            t.csv pass [Table]
            t.csv#4 fail [Table]
              path fail 1 [] the path occurs more than once
        "#]],
    );
}

#[test]
fn identifier_in_a_file_name_withholds_the_name() {
    check_report(
        &[OutputEntry::regular(
            "jan@example.nl.csv",
            b"group,n\na,12\n".to_vec(),
        )],
        &[],
        &[],
        &CheckConfig::default(),
        expect![[r#"
            overall: fail
            file-name-withheld-1 fail [Table]
              file-name fail 1 [] the file name holds a possible identifier (email); the name is withheld from this report
              undeclared review 1 [] no output in train.yaml declares this file
        "#]],
    );
}

#[test]
fn undeclared_outputs_are_flagged_for_review() {
    check_report(
        &[OutputEntry::regular(
            "extra.csv",
            b"group,n\na,12\n".to_vec(),
        )],
        &[DeclaredOutput::table("t.csv", ["n"])],
        &[],
        &CheckConfig::default(),
        expect![[r#"
            overall: review
            extra.csv review [Table]
              undeclared review 1 [] no output in train.yaml declares this file
        "#]],
    );
}

#[test]
fn too_many_files_or_bytes_fail_the_collection() {
    let entries: Vec<OutputEntry> = (0..3)
        .map(|index| OutputEntry::regular(format!("t{index}.csv"), b"group,n\na,12\n".to_vec()))
        .collect();
    check_report(
        &entries,
        &[DeclaredOutput::table("*.csv", ["n"])],
        &[],
        &CheckConfig {
            max_files: 2,
            max_total_bytes: 30,
            ..CheckConfig::default()
        },
        expect![[r#"
            overall: fail
            collection file-count fail 1: 3 files, more than the 2 allowed
            collection total-size fail 1: 39 bytes, more than the 30 allowed
            t0.csv pass [Table]
            t1.csv pass [Table]
            t2.csv pass [Table]
        "#]],
    );
}

#[test]
fn free_text_goes_to_review_even_when_clean() {
    check_text(
        "The model converged after 12 iterations.\n",
        expect![[r#"
            overall: review
            notes.txt review [Text]
              human-review review 1 [] free text cannot be checked automatically
        "#]],
    );
}

#[test]
fn declared_state_goes_to_review() {
    check_report(
        &[OutputEntry::regular(
            "state.json",
            br#"[{"site": "a", "n": 120}]"#.to_vec(),
        )],
        &[DeclaredOutput {
            kind: OutputKind::State,
            ..DeclaredOutput::table("state.json", ["n"])
        }],
        &[],
        &CheckConfig::default(),
        expect![[r#"
            overall: review
            state.json review [State]
              human-review review 1 [] declared as state for the next station, which can carry rows of the data
        "#]],
    );
}

// ---------------------------------------------------------------------------------------------
// Verdicts.

#[test]
fn overall_verdict_is_fail_over_review_over_pass() {
    assert!(Status::Fail > Status::Review && Status::Review > Status::Pass);
    let pass = OutputEntry::regular("pass.csv", b"group,n\na,12\n".to_vec());
    let review = OutputEntry::regular("review.csv", b"group,n\na,0\n".to_vec());
    let fail = OutputEntry::regular("fail.csv", b"group,n\na,3\n".to_vec());
    let declared = [DeclaredOutput::table("*.csv", ["n"])];
    let config = CheckConfig::default();
    let overall =
        |entries: &[OutputEntry]| check_outputs(entries, &declared, &[], &config).status();
    assert_eq!(overall(&[]), Status::Pass);
    assert_eq!(overall(std::slice::from_ref(&pass)), Status::Pass);
    assert_eq!(overall(&[pass.clone(), review.clone()]), Status::Review);
    assert_eq!(
        overall(&[review.clone(), fail.clone(), pass.clone()]),
        Status::Fail
    );
    assert_eq!(overall(&[fail, review]), Status::Fail);
}

#[test]
fn output_status_is_its_worst_rule() {
    let report = check_outputs(
        &[OutputEntry::regular(
            "t.csv",
            b"group,n\na,0\nb,3\n".to_vec(),
        )],
        &[DeclaredOutput::table("t.csv", ["n"])],
        &[],
        &CheckConfig::default(),
    );
    let output_result = report.output("t.csv").expect("the output is in the report");
    assert_eq!(output_result.status, Status::Fail);
    expect!["fail; threshold: 1 count cell below 10; count column: `n` (field 2, declared); zero: 1 count cell is zero"]
        .assert_eq(&output_result.summary);
}

// ---------------------------------------------------------------------------------------------
// Parquet outputs, when the policy allows them: converted to CSV and checked as a table.

/// The default policy with `.parquet` added to the allowed extensions.
fn config_allowing_parquet() -> CheckConfig {
    let mut config = CheckConfig::default();
    config.allowed_extensions.push("parquet".to_string());
    config
}

/// A Parquet file (snappy, as pandas writes it) of string columns `names` holding `rows`, and
/// when `counts` are given an optional `INT64` column `n` after them (`None` is a null).
fn parquet_table(names: &[&str], rows: &[&[&str]], counts: Option<&[Option<i64>]>) -> Vec<u8> {
    use parquet::basic::{Compression, LogicalType, Repetition, Type as PhysicalType};
    use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::types::Type;
    use std::sync::Arc;

    let mut fields: Vec<Arc<Type>> = names
        .iter()
        .map(|name| {
            Arc::new(
                Type::primitive_type_builder(name, PhysicalType::BYTE_ARRAY)
                    .with_repetition(Repetition::REQUIRED)
                    .with_logical_type(Some(LogicalType::String))
                    .build()
                    .unwrap(),
            )
        })
        .collect();
    if counts.is_some() {
        fields.push(Arc::new(
            Type::primitive_type_builder("n", PhysicalType::INT64)
                .with_repetition(Repetition::OPTIONAL)
                .build()
                .unwrap(),
        ));
    }
    let schema = Type::group_type_builder("table")
        .with_fields(fields)
        .build()
        .unwrap();
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut file_writer =
        SerializedFileWriter::new(Vec::new(), Arc::new(schema), Arc::new(properties)).unwrap();
    let mut row_group_writer = file_writer.next_row_group().unwrap();
    for column_index in 0..names.len() {
        let values: Vec<ByteArray> = rows
            .iter()
            .map(|row| ByteArray::from(row[column_index]))
            .collect();
        let mut column_writer = row_group_writer.next_column().unwrap().unwrap();
        column_writer
            .typed::<ByteArrayType>()
            .write_batch(&values, None, None)
            .unwrap();
        column_writer.close().unwrap();
    }
    if let Some(counts) = counts {
        let present: Vec<i64> = counts.iter().flatten().copied().collect();
        let definition_levels: Vec<i16> = counts
            .iter()
            .map(|count| i16::from(count.is_some()))
            .collect();
        let mut column_writer = row_group_writer.next_column().unwrap().unwrap();
        column_writer
            .typed::<Int64Type>()
            .write_batch(&present, Some(&definition_levels), None)
            .unwrap();
        column_writer.close().unwrap();
    }
    row_group_writer.close().unwrap();
    file_writer.into_inner().unwrap()
}

#[test]
fn parquet_output_with_a_small_count_fails_the_threshold_rule_when_parquet_is_allowed() {
    let parquet = parquet_table(
        &["group"],
        &[&["a"], &["b"], &["c"]],
        Some(&[Some(12), Some(4), None]),
    );
    let entries = [OutputEntry::regular("counts.parquet", parquet)];
    let declared = [DeclaredOutput::table("counts.parquet", ["n"])];
    check_report(
        &entries,
        &declared,
        &[],
        &config_allowing_parquet(),
        expect![[r#"
            overall: fail
            counts.parquet fail [Table]
              threshold fail 1 [3:3#2] 1 count cell below 10; count column: `n` (field 2, declared)
        "#]],
    );
    let report = check_outputs(&entries, &declared, &[], &config_allowing_parquet());
    let output_result = report.output("counts.parquet").unwrap();
    let format = output_result
        .checks
        .iter()
        .find(|rule_result| rule_result.rule.as_str() == "format")
        .unwrap();
    expect!["read as Parquet and checked as a table; positions are lines and columns of the table converted to CSV (line 1 is the header, line 2 the first row)"].assert_eq(&format.summary);
    assert_eq!(output_result.properties.format, "parquet");
}

#[test]
fn parquet_output_copying_dataset_rows_fails_the_leakage_rule() {
    let parquet = parquet_table(
        &["name", "age", "city"],
        &[&["Piet", "51", "Zwolle"], &["Kees", "29", "Delft"]],
        None,
    );
    check_report(
        &[OutputEntry::regular("rows.parquet", parquet)],
        &[DeclaredOutput::new("rows.parquet", OutputKind::Table)],
        &[DatasetIndex::from_csv("cohort", COHORT_CSV.as_bytes())],
        &config_allowing_parquet(),
        expect![[r#"
            overall: fail
            rows.parquet fail [Table]
              threshold review 0 [] no count column declared, named in the policy or recognised by name or shape, so cell sizes cannot be checked
              leakage fail 2 [2:1#1 3:1#1] 2 rows identical to rows of dataset `cohort`
        "#]],
    );
}

#[test]
fn corrupt_parquet_output_fails_the_format_rule() {
    let mut truncated = parquet_table(&["group"], &[&["a"]], Some(&[Some(12)]));
    truncated.drain(8..40);
    check_report(
        &[
            OutputEntry::regular("not-parquet.parquet", b"group,n\na,3\n".to_vec()),
            OutputEntry::regular("damaged.parquet", truncated),
        ],
        &[DeclaredOutput::table("*.parquet", ["n"])],
        &[],
        &config_allowing_parquet(),
        expect![[r#"
            overall: fail
            damaged.parquet fail [Table]
              format fail 1 [] row group 1 cannot be decoded: a page is damaged, uses an encoding that is not read here, or a string column holds bytes that are not UTF-8 (the reader's message is withheld, as it can quote cell values)
            not-parquet.parquet fail [Table]
              format fail 1 [] not a Parquet file: it does not start and end with the Parquet magic bytes `PAR1`
        "#]],
    );
}

#[test]
fn parquet_output_with_a_nested_column_fails_without_the_column_name_in_the_report() {
    // A train chooses its column names; a report on a refused file must not carry one out.
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;
    use std::sync::Arc;

    let schema = parse_message_type(
        "message nested {
            OPTIONAL group jan_jansen_1980 (LIST) {
                REPEATED group list { OPTIONAL INT64 element; }
            }
        }",
    )
    .unwrap();
    let file_writer = SerializedFileWriter::new(
        Vec::new(),
        Arc::new(schema),
        Arc::new(WriterProperties::builder().build()),
    )
    .unwrap();
    check_report(
        &[OutputEntry::regular(
            "lists.parquet",
            file_writer.into_inner().unwrap(),
        )],
        &[DeclaredOutput::new("lists.parquet", OutputKind::Table)],
        &[],
        &config_allowing_parquet(),
        expect![[r#"
            overall: fail
            lists.parquet fail [Table]
              format fail 1 [] column 1 is nested (a list, map, struct or repeated field); only flat tables are checked, so write one plain value per cell
        "#]],
    );
}
