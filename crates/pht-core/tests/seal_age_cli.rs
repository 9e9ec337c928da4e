//! Interoperability of sealed bundles with the reference tools: Debian's `age` command decrypts a
//! bundle with an identity file in age's own format, and GNU `tar` lists and extracts the
//! decrypted archive with the expected members and contents.
//!
//! This test runs real processes and writes to a temporary directory; it does not test refusals
//! (the unit tests in `seal/tests.rs` do). It fails, and does not skip, when `age` or `tar` is
//! missing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use age::secrecy::ExposeSecret as _;
use pht_core::intoto::{CheckVerdict, Release, ResultPredicate};
use pht_core::seal::{open_bundle, seal_bundle};
use pht_core::{KeyAlgorithm, SigningKey};

/// A directory under the system temporary directory, removed when dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(label: &str) -> ScratchDir {
        let path = std::env::temp_dir().join(format!(
            "pht-{label}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir(&path).unwrap();
        ScratchDir(path)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a reference tool, failing the test with an installation hint when it is missing.
fn run(program: &str, args: &[&Path], package: &str) -> Vec<u8> {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| {
            panic!("cannot run `{program}` ({error}); install it with `apt-get install {package}`")
        });
    assert!(
        output.status.success(),
        "`{program} {args:?}` failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn predicate(released: &[(String, Vec<u8>)]) -> ResultPredicate {
    let files: Vec<(&str, CheckVerdict)> = released
        .iter()
        .map(|(path, _)| (path.as_str(), CheckVerdict::Pass))
        .collect();
    let mut predicate = ResultPredicate::example(CheckVerdict::Pass, &files);
    predicate.run_id = "run-interop".into();
    predicate.released = Release {
        by: "policy".into(),
        at: predicate.finished_at,
        reason: "all checks passed".into(),
        overrides_failed_checks: false,
        reviewers: Vec::new(),
    };
    predicate
}

#[test]
fn age_command_decrypts_a_sealed_bundle_into_a_tar_that_gnu_tar_reads() {
    let scratch = ScratchDir::new("seal-age-cli");
    let station_key = SigningKey::generate(KeyAlgorithm::P256);
    let identity = age::x25519::Identity::generate();
    // A path longer than 100 bytes exercises the ustar prefix field.
    let long_path = format!("{}/{}.csv", "nested".repeat(20), "table".repeat(15));
    let released = vec![
        ("counts.csv".to_string(), b"group,n\na,12\nb,15\n".to_vec()),
        (
            "figures/histogram.png".to_string(),
            (0..=255u8).cycle().take(70_000).collect(),
        ),
        (long_path.clone(), b"x,y\n1,2\n".to_vec()),
    ];
    let report_json = br#"{"version":"pht.checks.v1","status":"pass"}"#;
    let sealed = seal_bundle(
        &released,
        report_json,
        predicate(&released),
        &station_key,
        &[identity.to_public().to_string()],
    )
    .unwrap();

    let bundle_path = scratch.0.join("result.age");
    let identity_path = scratch.0.join("identity.txt");
    let archive_path = scratch.0.join("result.tar");
    std::fs::write(&bundle_path, &sealed).unwrap();
    std::fs::write(
        &identity_path,
        format!(
            "# created: 2026-11-23T12:00:00Z\n# public key: {}\n{}\n",
            identity.to_public(),
            identity.to_string().expose_secret()
        ),
    )
    .unwrap();

    let archive = run(
        "age",
        &[
            Path::new("-d"),
            Path::new("-i"),
            &identity_path,
            &bundle_path,
        ],
        "age",
    );
    std::fs::write(&archive_path, &archive).unwrap();

    let listing = run("tar", &[Path::new("-tf"), &archive_path], "tar");
    let members: BTreeSet<String> = String::from_utf8(listing)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let mut expected: BTreeSet<String> = released
        .iter()
        .map(|(path, _)| format!("outputs/{path}"))
        .collect();
    expected.insert("report.json".into());
    expected.insert("provenance.dsse.json".into());
    assert_eq!(members, expected);

    let extracted = scratch.0.join("extracted");
    std::fs::create_dir(&extracted).unwrap();
    run(
        "tar",
        &[Path::new("-xf"), &archive_path, Path::new("-C"), &extracted],
        "tar",
    );
    assert_eq!(
        std::fs::read(extracted.join("report.json")).unwrap(),
        report_json
    );
    for (path, contents) in &released {
        assert_eq!(
            &std::fs::read(extracted.join("outputs").join(path)).unwrap(),
            contents,
            "outputs/{path} as extracted by tar"
        );
    }
    let envelope: serde_json::Value =
        serde_json::from_slice(&std::fs::read(extracted.join("provenance.dsse.json")).unwrap())
            .unwrap();
    assert_eq!(envelope["payloadType"], "application/vnd.in-toto+json");

    // And the same bytes open in-process, so the tools and the library agree on one bundle.
    let station_keys = vec![("umc-utrecht".to_string(), station_key.public_key())];
    let opened = open_bundle(&sealed, &identity, &station_keys).unwrap();
    let mut sorted_released = released.clone();
    sorted_released.sort();
    assert_eq!(opened.files(), sorted_released.as_slice());
}
