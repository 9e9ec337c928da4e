//! Unit tests of the identifier scan: each pattern, its look-alikes that must pass, and context
//! in free text and in tables.
//!
//! They go through `IdentifierScan` as the table and text checks do, not through the detectors
//! one by one, so a test names the behaviour a reviewer sees in a report.

use super::*;
use expect_test::{expect, Expect};

/// Scans `text` as free text and lists every non-empty rule as `rule count [line:column...]`.
fn check(text: &str, expected: Expect) {
    check_with(text, None, expected);
}

/// With `table_columns`, `text` is read as a comma-separated table and scanned cell by cell.
fn check_with(text: &str, table_columns: Option<TableColumns>, expected: Expect) {
    let settings = ScanSettings {
        max_digit_run: 10,
        context_chars: 40,
        comma_is_decimal: false,
    };
    let mut identifier_scan = IdentifierScan::new(text.as_bytes(), "f", settings, 10);
    match table_columns {
        None => identifier_scan.scan_all(),
        Some(table_columns) => {
            identifier_scan.set_table_columns(table_columns);
            let mut reader = crate::delimited::DelimitedReader::new(text.as_bytes(), b',');
            let mut cells = Vec::new();
            while reader.next_record(&mut cells) {
                for (field_index, cell) in cells.iter().enumerate() {
                    if cell.may_hold_identifier(ShortestPatterns::for_max_digit_run(10)) {
                        identifier_scan.scan_cell(cell, field_index);
                    }
                }
            }
        }
    }
    let rendered: Vec<String> = identifier_scan
        .into_results()
        .into_iter()
        .filter(|rule_result| rule_result.count > 0)
        .map(|rule_result| {
            let positions: Vec<String> = rule_result
                .positions
                .iter()
                .map(|position| match position.field {
                    Some(field) => format!("{}:{}#{}", position.line, position.column, field),
                    None => format!("{}:{}", position.line, position.column),
                })
                .collect();
            format!(
                "{} {} {} [{}]",
                rule_result.rule,
                rule_result.status,
                rule_result.count,
                positions.join(" ")
            )
        })
        .collect();
    expected.assert_eq(&rendered.join("\n"));
}

#[test]
fn valid_bsn_near_a_context_word_fails() {
    check("BSN: 111222333", expect!["bsn fail 1 [1:6]"]);
    check(
        "burgerservicenummer van de patiënt is 1234.56.782",
        expect!["bsn fail 1 [1:39]"],
    );
    check("sofinummer 123-456-782", expect!["bsn fail 1 [1:12]"]);
}

#[test]
fn valid_bsn_without_context_is_a_possible_bsn_for_review() {
    check(
        "patient 111222333 seen",
        expect!["possible-bsn review 1 [1:9]"],
    );
}

#[test]
fn invalid_bsn_with_context_is_not_a_bsn() {
    check("bsn 111222334", expect![""]);
}

#[test]
fn context_word_far_away_does_not_count() {
    check(
        "bsn is not recorded in this analysis, which is fine and long; 111222333",
        expect!["possible-bsn review 1 [1:63]"],
    );
}

#[test]
fn bsn_column_header_lends_context() {
    let table_columns = TableColumns::from_header([&b"group"[..], b"patient_bsn"].into_iter());
    let table = format!("group,patient_bsn\n{}a,111222333\n", "x,1\n".repeat(20));
    check_with(&table, Some(table_columns), expect!["bsn fail 1 [22:3#2]"]);
}

#[test]
fn decimals_are_numbers_not_identifiers() {
    check("p = 0.111222333 and 0.12345678901234566", expect![""]);
    check("estimate 1112223334.5", expect![""]);
}

#[test]
fn email_addresses_fail_and_look_alikes_pass() {
    check(
        "contact: jan.de-vries+ct@umc.example.nl.",
        expect!["email fail 1 [1:10]"],
    );
    check(
        "user at example dot com, numpy@1.26.4, foo@bar, a@b.c, @home.nl, x.@y.nl",
        expect![""],
    );
}

#[test]
fn phone_numbers_fail_in_common_dutch_spellings() {
    check(
        "06-12345678; +31 6 12345678; 020-1234567; 0031 20 1234567; (020) 123 4567; \
         0612345678 12; +31 (0)6 12345678",
        expect!["phone fail 7 [1:1 1:14 1:30 1:43 1:60 1:76 1:91]"],
    );
}

#[test]
fn numbers_that_merely_start_with_zero_are_not_phones() {
    check(
        "0 12 345 6789; 0.123456789; 0031; 006 1234567; 017",
        expect![""],
    );
}

#[test]
fn postcodes_are_flagged_for_review_and_look_alikes_pass() {
    check(
        "1234 AB and 1234AB",
        expect!["postcode review 2 [1:1 1:13]"],
    );
    check(
        "0123 AB, 1234 SS, 1234 ab, 1234 ABC, X1234 AB, in 2020 we saw 1500 cases",
        expect![""],
    );
}

#[test]
fn dates_fail_only_with_a_birth_context() {
    check(
        "geboortedatum: 12-03-1980\ndob 1980-03-12\nborn on 12 maart 1980\nDOB=19800312",
        expect!["date-of-birth fail 4 [1:16 2:5 3:9 4:5]"],
    );
    check(
        "visit 12-03-2020, period 2019-01-01 to 2019-12-31",
        expect![""],
    );
    check("dobbelsteen 12-03-2020", expect![""]);
}

#[test]
fn each_identifier_in_a_table_is_counted_once() {
    // Regression: a cell's scan ran on past the cell to the end of the file, so every
    // earlier scanned cell counted the e-mail again (and big tables took quadratic time).
    let table_columns = TableColumns::from_header([&b"a"[..], b"b", b"mail"].into_iter());
    check_with(
        "a,b,mail\nx1,y2,jan@example.nl\nx3,y4,z\n",
        Some(table_columns),
        expect!["email fail 1 [2:7#3]"],
    );
}

#[test]
fn context_words_match_separators_and_camel_case_but_not_mere_birth() {
    check(
        "date_of_birth 12-03-1980\nDateOfBirth 12-03-1980\npatientDOB 12-03-1980\n\
         geb. 12-03-1980\nBirth-Date: 12-03-1980",
        expect!["date-of-birth fail 5 [1:15 2:13 3:12 4:6 5:13]"],
    );
    check(
        "birth_weight 3200 visit 12-03-2020\ngeboortegewicht 12-03-2020\n\
         birth_year 1980 12-03-2020",
        expect![""],
    );
    check(
        "patientBSN 111222333\nburger_service_nummer 111222333",
        expect!["bsn fail 2 [1:12 2:23]"],
    );
}

#[test]
fn date_of_birth_column_lends_context() {
    let table_columns = TableColumns::from_header([&b"Geboortedatum"[..], b"n"].into_iter());
    let table = format!("Geboortedatum,n\n{}12/03/1980,11\n", "x,1\n".repeat(20));
    check_with(
        &table,
        Some(table_columns),
        expect!["date-of-birth fail 1 [22:1#1]"],
    );
}

#[test]
fn long_digit_runs_are_flagged_but_counts_and_years_pass() {
    check(
        "id 12345678901 and 1234 and 2023 and 987654321",
        expect!["digit-run review 1 [1:4]"],
    );
    check("count,year\n1234,2023\n", expect![""]);
}

#[test]
fn positions_count_characters_not_bytes() {
    check("é ü jan@example.nl", expect!["email fail 1 [1:5]"]);
}
