//! The report as it leaves the checks: its JSON shape (snapshot of one mixed case), its text
//! rendering, its version, and the promise that no flagged value ever appears in it.

use expect_test::expect;
use pht_checks::{
    check_outputs, CheckConfig, CheckReport, DatasetIndex, DeclaredOutput, OutputEntry, OutputKind,
    Status, REPORT_VERSION,
};

fn tiny_png() -> Vec<u8> {
    fn chunk(png: &mut Vec<u8>, chunk_type: &[u8; 4], data: &[u8]) {
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        png.extend_from_slice(chunk_type);
        png.extend_from_slice(data);
        png.extend_from_slice(&[0, 0, 0, 0]);
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut png, b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0]);
    chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x9c, 0x63, 0x60, 0, 0, 0, 2, 0, 1],
    );
    chunk(&mut png, b"IEND", &[]);
    png
}

/// A table with a small and a zero cell, a figure, and a symlink.
fn mixed_report() -> CheckReport {
    check_outputs(
        &[
            OutputEntry::regular("counts.csv", b"sex,n\nf,12\nm,4\nx,0\n".to_vec()),
            OutputEntry::regular("age.png", tiny_png()),
            OutputEntry::symlink("data.csv", "/data/cohort/cohort.csv"),
        ],
        &[
            DeclaredOutput::table("counts.csv", ["n"]),
            DeclaredOutput::new("age.png", OutputKind::Figure),
        ],
        &[DatasetIndex::from_csv(
            "cohort",
            b"id,sex,age\n1,f,34\n2,m,51\n3,f,29\n4,m,62\n5,f,40\n",
        )],
        &CheckConfig::default(),
    )
}

#[test]
fn json_report_of_a_mixed_case() {
    let json = serde_json::to_string_pretty(&mixed_report()).expect("a report serialises");
    expect![[r#"
        {
          "version": "pht.checks.v1",
          "status": "fail",
          "summary": "fail; 3 outputs: 2 fail, 1 review, 0 pass",
          "collection": {
            "status": "pass",
            "n_files": 3,
            "n_bytes": 86,
            "checks": [
              {
                "rule": "file-count",
                "status": "pass",
                "summary": "3 files, within the limit of 50",
                "count": 0
              },
              {
                "rule": "total-size",
                "status": "pass",
                "summary": "86 bytes, within the limit of 104857600",
                "count": 0
              },
              {
                "rule": "row-count",
                "status": "pass",
                "summary": "1 table, judged on its own",
                "count": 0
              }
            ]
          },
          "results": {
            "age.png": {
              "uid": "age.png",
              "status": "review",
              "type": "figure",
              "properties": {
                "format": "png",
                "declared_kind": "figure",
                "n_bytes": 67
              },
              "files": [
                {
                  "name": "age.png",
                  "n_bytes": 67
                }
              ],
              "checks": [
                {
                  "rule": "path",
                  "status": "pass",
                  "summary": "a plain relative path",
                  "count": 0
                },
                {
                  "rule": "file-name",
                  "status": "pass",
                  "summary": "no identifier in the file name",
                  "count": 0
                },
                {
                  "rule": "regular-file",
                  "status": "pass",
                  "summary": "a regular file",
                  "count": 0
                },
                {
                  "rule": "file-type",
                  "status": "pass",
                  "summary": "`.png` is an allowed file type",
                  "count": 0
                },
                {
                  "rule": "undeclared",
                  "status": "pass",
                  "summary": "declared in train.yaml as a figure",
                  "count": 0
                },
                {
                  "rule": "png-structure",
                  "status": "pass",
                  "summary": "3 chunks, nothing after the image end",
                  "count": 0
                },
                {
                  "rule": "human-review",
                  "status": "review",
                  "summary": "figures need a human eye: nothing here reads pixels",
                  "count": 1
                }
              ],
              "summary": "review; human-review: figures need a human eye: nothing here reads pixels",
              "comments": [],
              "exception": ""
            },
            "counts.csv": {
              "uid": "counts.csv",
              "status": "fail",
              "type": "table",
              "properties": {
                "format": "csv",
                "declared_kind": "table",
                "n_bytes": 19,
                "n_rows": 3,
                "n_columns": 2,
                "count_columns": [
                  {
                    "field": 2,
                    "name": "n",
                    "source": "declared"
                  }
                ]
              },
              "files": [
                {
                  "name": "counts.csv",
                  "n_bytes": 19
                }
              ],
              "checks": [
                {
                  "rule": "path",
                  "status": "pass",
                  "summary": "a plain relative path",
                  "count": 0
                },
                {
                  "rule": "file-name",
                  "status": "pass",
                  "summary": "no identifier in the file name",
                  "count": 0
                },
                {
                  "rule": "regular-file",
                  "status": "pass",
                  "summary": "a regular file",
                  "count": 0
                },
                {
                  "rule": "file-type",
                  "status": "pass",
                  "summary": "`.csv` is an allowed file type",
                  "count": 0
                },
                {
                  "rule": "undeclared",
                  "status": "pass",
                  "summary": "declared in train.yaml as a table",
                  "count": 0
                },
                {
                  "rule": "format",
                  "status": "pass",
                  "summary": "read as a table separated by comma",
                  "count": 0
                },
                {
                  "rule": "threshold",
                  "status": "fail",
                  "summary": "1 count cell below 10; count column: `n` (field 2, declared)",
                  "count": 1,
                  "positions": [
                    {
                      "file": "counts.csv",
                      "line": 3,
                      "column": 3,
                      "field": 2
                    }
                  ]
                },
                {
                  "rule": "zero",
                  "status": "review",
                  "summary": "1 count cell is zero",
                  "count": 1,
                  "positions": [
                    {
                      "file": "counts.csv",
                      "line": 4,
                      "column": 3,
                      "field": 2
                    }
                  ]
                },
                {
                  "rule": "non-integer",
                  "status": "pass",
                  "summary": "all count cells are whole numbers or empty",
                  "count": 0
                },
                {
                  "rule": "negative",
                  "status": "pass",
                  "summary": "no negative count cells",
                  "count": 0
                },
                {
                  "rule": "row-count",
                  "status": "pass",
                  "summary": "3 rows, fewer than 90% of the rows of every mounted dataset",
                  "count": 0
                },
                {
                  "rule": "leakage",
                  "status": "pass",
                  "summary": "no row identical to a row of a mounted dataset or singling out fewer rows than the threshold",
                  "count": 0
                },
                {
                  "rule": "bsn",
                  "status": "pass",
                  "summary": "no BSNs found",
                  "count": 0
                },
                {
                  "rule": "possible-bsn",
                  "status": "pass",
                  "summary": "no 9-digit numbers passing the BSN 11-test found",
                  "count": 0
                },
                {
                  "rule": "email",
                  "status": "pass",
                  "summary": "no e-mail addresses found",
                  "count": 0
                },
                {
                  "rule": "phone",
                  "status": "pass",
                  "summary": "no Dutch phone numbers found",
                  "count": 0
                },
                {
                  "rule": "postcode",
                  "status": "pass",
                  "summary": "no Dutch postcodes found",
                  "count": 0
                },
                {
                  "rule": "date-of-birth",
                  "status": "pass",
                  "summary": "no dates of birth found",
                  "count": 0
                },
                {
                  "rule": "digit-run",
                  "status": "pass",
                  "summary": "no runs of 10 or more digits found",
                  "count": 0
                },
                {
                  "rule": "human-review",
                  "status": "pass",
                  "summary": "fully checked automatically",
                  "count": 0
                }
              ],
              "summary": "fail; threshold: 1 count cell below 10; count column: `n` (field 2, declared); zero: 1 count cell is zero",
              "comments": [],
              "exception": ""
            },
            "data.csv": {
              "uid": "data.csv",
              "status": "fail",
              "type": "custom",
              "properties": {
                "format": "symlink",
                "n_bytes": 0
              },
              "files": [
                {
                  "name": "data.csv",
                  "n_bytes": 0
                }
              ],
              "checks": [
                {
                  "rule": "path",
                  "status": "pass",
                  "summary": "a plain relative path",
                  "count": 0
                },
                {
                  "rule": "file-name",
                  "status": "pass",
                  "summary": "no identifier in the file name",
                  "count": 0
                },
                {
                  "rule": "regular-file",
                  "status": "fail",
                  "summary": "a symbolic link; links are never followed or released",
                  "count": 1
                }
              ],
              "summary": "fail; regular-file: a symbolic link; links are never followed or released",
              "comments": [],
              "exception": ""
            }
          }
        }"#]].assert_eq(&json);
}

#[test]
fn text_rendering_of_a_mixed_case() {
    expect![[r#"
        output checks (pht.checks.v1): FAIL
        fail; 3 outputs: 2 fail, 1 review, 0 pass
        collection: pass (3 files, 86 bytes)
        REVIEW  age.png [figure]
                human-review (review): figures need a human eye: nothing here reads pixels
        FAIL    counts.csv [table]
                threshold (fail): 1 count cell below 10; count column: `n` (field 2, declared) at counts.csv:3:3
                zero (review): 1 count cell is zero at counts.csv:4:3
        FAIL    data.csv [custom]
                regular-file (fail): a symbolic link; links are never followed or released
    "#]]
    .assert_eq(&mixed_report().render_text());
}

#[test]
fn report_round_trips_through_json() {
    let report = mixed_report();
    let json = serde_json::to_vec(&report).expect("a report serialises");
    let read_back: CheckReport = serde_json::from_slice(&json).expect("and reads back");
    assert_eq!(read_back, report);
    assert_eq!(read_back.status(), Status::Fail);
}

#[test]
fn report_of_another_version_is_refused() {
    let json = serde_json::to_string(&mixed_report()).expect("a report serialises");
    assert!(
        json.starts_with(&format!(r#"{{"version":"{REPORT_VERSION}""#)),
        "{json}"
    );
    let older = json.replacen(REPORT_VERSION, "pht.checks.v0", 1);
    let error = serde_json::from_str::<CheckReport>(&older).expect_err("another version");
    expect![[r#"unsupported check report version "pht.checks.v0", expected "pht.checks.v1" at line 1 column 26"#]]
        .assert_eq(&error.to_string());
}

#[test]
fn report_never_contains_a_flagged_value() {
    let bsn = "111222333";
    let possible_bsn = "123456782";
    let email = "jan.jansen@umc.example.nl";
    let phone = "06-98765432";
    let postcode = "9711 LM";
    let date_of_birth = "17-08-1957";
    let digit_run = "98765432101234";
    let leaked_name = "Wilhelmina";
    let small_count = "7";
    // The possible BSN comes last, further than 40 characters from the word "BSN".
    let text = format!(
        "BSN {bsn}\nmail {email}\ntel {phone}\nadres {postcode}\n\
         geboren {date_of_birth}\nid {digit_run}\nref {possible_bsn}\n"
    );
    let table = format!("name,city,n\n{leaked_name},Zaandam,{small_count}\n");
    let report = check_outputs(
        &[
            OutputEntry::regular("notes.txt", text.into_bytes()),
            OutputEntry::regular("t.csv", table.into_bytes()),
            OutputEntry::regular(format!("mail-{email}.csv"), b"sex,n\nf,12\n".to_vec()),
            OutputEntry::symlink("link.csv", format!("/data/{bsn}.csv")),
        ],
        &[
            DeclaredOutput::new("notes.txt", OutputKind::Text),
            DeclaredOutput::table("t.csv", ["n"]),
        ],
        &[DatasetIndex::from_csv(
            "cohort",
            format!("name,city,n\n{leaked_name},Zaandam,7\n").as_bytes(),
        )],
        &CheckConfig::default(),
    );

    // Every rule that should have caught something did, so the values were really seen...
    let flagged_rules: Vec<String> = report
        .results
        .values()
        .flat_map(|output_result| &output_result.checks)
        .filter(|rule_result| rule_result.count > 0 && rule_result.status != Status::Pass)
        .map(|rule_result| rule_result.rule.to_string())
        .collect();
    for rule in [
        "bsn",
        "possible-bsn",
        "email",
        "phone",
        "postcode",
        "date-of-birth",
        "digit-run",
        "leakage",
        "threshold",
        "file-name",
        "regular-file",
    ] {
        assert!(
            flagged_rules.iter().any(|flagged| flagged == rule),
            "{rule} not flagged"
        );
    }

    // ...and none of them appears in what leaves the station.
    let json = serde_json::to_string(&report).expect("a report serialises");
    let text = report.render_text();
    for value in [
        bsn,
        possible_bsn,
        email,
        phone,
        postcode,
        date_of_birth,
        digit_run,
        leaked_name,
    ] {
        assert!(!json.contains(value), "{value} appears in the JSON report");
        assert!(!text.contains(value), "{value} appears in the text report");
    }
    assert!(
        !json.contains("Zaandam") && !json.contains("/data/"),
        "{json}"
    );
}
