//! Unit tests of sealing and opening: round trips, and what an attacker holding the
//! recipient's identity can and cannot get past the checks.
//!
//! They build hostile archives with the `ustar` writer's raw headers; they do not test the
//! callers (station, CLI), which have their own tests.

use age::secrecy::ExposeSecret as _;
use age::x25519;
use expect_test::{expect, Expect};

use super::opening::decrypt;
use super::*;
use crate::dsse::Envelope;
use crate::intoto::{CheckVerdict, FileVerdict, ResultPredicate, StatePredicate};
use crate::keys::{KeyAlgorithm, PublicKey, SigningKey};

/// A station, its trusted key as a researcher names it, and the researcher's age identity.
struct Parties {
    station_key: SigningKey,
    station_keys: Vec<(String, PublicKey)>,
    identity: x25519::Identity,
}

impl Parties {
    fn new() -> Parties {
        let station_key = SigningKey::generate(KeyAlgorithm::Ed25519);
        Parties {
            station_keys: vec![("umc-utrecht".to_string(), station_key.public_key())],
            station_key,
            identity: x25519::Identity::generate(),
        }
    }

    fn recipient(&self) -> String {
        self.identity.to_public().to_string()
    }

    fn seal(&self, files: &[(String, Vec<u8>)]) -> Vec<u8> {
        seal_bundle(
            files,
            REPORT,
            predicate(),
            &self.station_key,
            &[self.recipient()],
        )
        .unwrap()
    }

    fn open(&self, sealed: &[u8]) -> Result<OpenedBundle, OpenError> {
        open_bundle(sealed, &self.identity, &self.station_keys)
    }

    /// What an attacker holding the recipient's identity can do: decrypt, edit the
    /// archive's members, and encrypt the result to the recipient again.
    fn tamper(&self, sealed: &[u8], edit: Edit<'_>) -> Vec<u8> {
        let plaintext = decrypt(sealed, &self.identity).unwrap();
        let mut members: Vec<RawMember> = ustar::read(&plaintext)
            .unwrap()
            .into_iter()
            .map(|entry| RawMember::file(&entry.path, entry.contents))
            .collect();
        edit(&mut members);
        let mut archive = Vec::new();
        for member in &members {
            let header = ustar::raw_header(
                b"",
                member.name.as_bytes(),
                member.typeflag,
                member.contents.len() as u64,
                0,
            );
            ustar::write_member(&mut archive, &header, &member.contents).unwrap();
        }
        archive.extend_from_slice(&ustar::END_OF_ARCHIVE);
        encrypt_to(&self.recipient(), &archive)
    }
}

/// An archive member as an attacker may write it: any name, any type.
struct RawMember {
    name: String,
    typeflag: u8,
    contents: Vec<u8>,
}

impl RawMember {
    fn file(name: &str, contents: &[u8]) -> RawMember {
        RawMember {
            name: name.to_string(),
            typeflag: b'0',
            contents: contents.to_vec(),
        }
    }
}

fn encrypt_to(recipient: &str, plaintext: &[u8]) -> Vec<u8> {
    let recipient: x25519::Recipient = recipient.parse().unwrap();
    age::encrypt(&recipient, plaintext).unwrap()
}

const REPORT: &[u8] = br#"{"version":"pht.checks.v1","status":"pass"}"#;

fn outputs() -> Vec<(String, Vec<u8>)> {
    vec![
        ("counts.csv".to_string(), b"group,n\na,12\nb,15\n".to_vec()),
        (
            "figures/age.png".to_string(),
            vec![0x89, b'P', b'N', b'G', 0, 1, 2],
        ),
    ]
}

fn predicate() -> ResultPredicate {
    let mut predicate = ResultPredicate::example(
        CheckVerdict::Review,
        &[
            ("counts.csv", CheckVerdict::Pass),
            ("figures/age.png", CheckVerdict::Review),
            ("rows.csv", CheckVerdict::Fail),
        ],
    );
    predicate.job_id = Some(uuid::Uuid::nil());
    predicate.released.reason = "figure reviewed".into();
    predicate
}

fn state_predicate() -> StatePredicate {
    StatePredicate {
        job_id: uuid::Uuid::nil(),
        run_id: "run-1".into(),
        train: predicate().train,
        station: "umc-utrecht".into(),
        next_station: "radboudumc".into(),
        stop_index: 0,
        finished_at: "2026-11-23T12:01:00Z".parse().unwrap(),
    }
}

#[test]
fn failed_file_is_sealed_only_under_a_signed_override() {
    let parties = Parties::new();
    let failed = vec![("rows.csv".to_string(), b"id\n1\n".to_vec())];
    let plain = seal_bundle(
        &failed,
        REPORT,
        predicate(),
        &parties.station_key,
        &[parties.recipient()],
    );
    assert!(
        matches!(plain, Err(SealError::FailedFileReleased { .. })),
        "{plain:?}"
    );
    let mut overridden = predicate();
    overridden.released.overrides_failed_checks = true;
    let sealed = seal_bundle(
        &failed,
        REPORT,
        overridden,
        &parties.station_key,
        &[parties.recipient()],
    )
    .unwrap();
    let opened = parties.open(&sealed).unwrap();
    assert!(opened.predicate().released.overrides_failed_checks);
}

#[test]
fn sealed_bundle_opens_with_the_same_contents_and_names_the_station() {
    let parties = Parties::new();
    let opened = parties.open(&parties.seal(&outputs())).unwrap();
    assert_eq!(opened.station(), "umc-utrecht");
    assert_eq!(opened.files(), outputs().as_slice());
    assert_eq!(opened.report_json(), REPORT);
    assert_eq!(opened.predicate(), &predicate());
    let subjects: Vec<String> = opened
        .statement()
        .subject
        .iter()
        .map(|subject| format!("{} {}", subject.name, subject.digest["sha256"]))
        .collect();
    expect![[r#"
        report.json f6110ee7dfdb2524df82bcc8b6d49f319960b0a0362d32af0f271aaa56601b06
        outputs/counts.csv c1a52e12fb758e8c846f0fd22b3fe2e92c2185a7c586e93b9ca8a424166fd08d
        outputs/figures/age.png a9c74dcaf10fa87b290d88c7e48b779a33e9c987926b209d24ddaa8d99dc8c69"#]]
    .assert_eq(&subjects.join("\n"));
}

#[test]
fn files_are_sealed_in_path_order_whatever_order_they_come_in() {
    let parties = Parties::new();
    let mut reversed = outputs();
    reversed.reverse();
    let opened = parties.open(&parties.seal(&reversed)).unwrap();
    assert_eq!(opened.files(), outputs().as_slice());
}

#[test]
fn bundle_opens_for_every_recipient_and_only_for_them() {
    let parties = Parties::new();
    let co_researcher = x25519::Identity::generate();
    let sealed = seal_bundle(
        &outputs(),
        REPORT,
        predicate(),
        &parties.station_key,
        &[parties.recipient(), co_researcher.to_public().to_string()],
    )
    .unwrap();
    for identity in [&parties.identity, &co_researcher] {
        let opened = open_bundle(&sealed, identity, &parties.station_keys).unwrap();
        assert_eq!(opened.files(), outputs().as_slice());
    }
    let outsider = x25519::Identity::generate();
    let error = open_bundle(&sealed, &outsider, &parties.station_keys).unwrap_err();
    assert_eq!(
        error,
        OpenError::NotForThisIdentity {
            recipient: outsider.to_public().to_string()
        }
    );
    assert!(error
        .to_string()
        .starts_with("cannot decrypt: not encrypted to this identity"));
}

#[test]
fn long_nested_paths_survive_the_archive() {
    let parties = Parties::new();
    let long_path = format!("{}/{}.csv", "d".repeat(120), "f".repeat(90));
    let files = vec![(long_path.clone(), b"x".to_vec())];
    let mut predicate = predicate();
    predicate.files.push(FileVerdict {
        path: long_path.clone(),
        verdict: CheckVerdict::Pass,
        transformed: None,
    });
    let sealed = seal_bundle(
        &files,
        REPORT,
        predicate,
        &parties.station_key,
        &[parties.recipient()],
    )
    .unwrap();
    assert_eq!(parties.open(&sealed).unwrap().files(), files.as_slice());
}

#[test]
fn one_flipped_byte_anywhere_in_the_ciphertext_is_refused() {
    let parties = Parties::new();
    let sealed = parties.seal(&outputs());
    for byte_idx in 0..sealed.len() {
        let mut flipped = sealed.clone();
        flipped[byte_idx] ^= 0x01;
        let result = parties.open(&flipped);
        assert!(
            result.is_err(),
            "a bundle with byte {byte_idx} of {} flipped was opened",
            sealed.len()
        );
    }
}

#[test]
fn bundle_signed_by_another_station_key_is_refused() {
    let parties = Parties::new();
    let impostor_key = SigningKey::generate(KeyAlgorithm::P256);
    let sealed = seal_bundle(
        &outputs(),
        REPORT,
        predicate(),
        &impostor_key,
        &[parties.recipient()],
    )
    .unwrap();
    let error = parties.open(&sealed).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "provenance is signed by a key that is not among the given station keys (key id {}; given: {}); pass the signing station's public key, or do not trust this bundle",
            impostor_key.public_key().key_id(),
            parties.station_key.public_key().key_id()
        )
    );
}

/// Applies each edit to a genuine bundle, as an attacker holding the recipient key would,
/// and records what opening the result says.
/// A change an attacker makes to the archive's members.
type Edit<'a> = &'a dyn Fn(&mut Vec<RawMember>);

fn check_tampering(cases: &[(&str, Edit<'_>)], expect: Expect) {
    let parties = Parties::new();
    let sealed = parties.seal(&outputs());
    let outcomes: Vec<String> = cases
        .iter()
        .map(|(case, edit)| {
            let outcome = match parties.open(&parties.tamper(&sealed, edit)) {
                Ok(_) => "OPENED".to_string(),
                Err(error) => error.to_string(),
            };
            format!("{case}: {outcome}")
        })
        .collect();
    expect.assert_eq(&outcomes.join("\n"));
}

fn member<'a>(members: &'a mut [RawMember], name: &str) -> &'a mut RawMember {
    members
        .iter_mut()
        .find(|member| member.name == name)
        .unwrap()
}

#[test]
fn re_encrypted_bundles_with_changed_members_are_refused() {
    check_tampering(
        &[
            ("unchanged", &|_| {}),
            ("extra file", &|members| {
                members.insert(0, RawMember::file("outputs/extra.csv", b"a,1\n"))
            }),
            ("missing file", &|members| {
                members.retain(|member| member.name != "outputs/counts.csv")
            }),
            ("changed file", &|members| {
                member(members, "outputs/counts.csv").contents = b"group,n\na,2\n".to_vec()
            }),
            ("changed report", &|members| {
                member(members, "report.json").contents = br#"{"status":"fail"}"#.to_vec()
            }),
            ("renamed file", &|members| {
                member(members, "outputs/counts.csv").name = "outputs/totals.csv".into()
            }),
            ("missing report", &|members| {
                members.retain(|member| member.name != "report.json")
            }),
            ("missing provenance", &|members| {
                members.retain(|member| member.name != PROVENANCE_PATH)
            }),
            ("file outside outputs", &|members| {
                members.push(RawMember::file("run.sh", b"rm -rf ~\n"))
            }),
            ("provenance not json", &|members| {
                member(members, PROVENANCE_PATH).contents = b"{".to_vec()
            }),
            ("provenance with many signatures", &|members| {
                let provenance = member(members, PROVENANCE_PATH);
                let mut envelope: Envelope = serde_json::from_slice(&provenance.contents).unwrap();
                envelope.signatures = vec![envelope.signatures[0].clone(); 17];
                provenance.contents = serde_json::to_vec(&envelope).unwrap();
            }),
        ],
        expect![[r#"
            unchanged: OPENED
            extra file: outputs/extra.csv is in the bundle but not in the signed statement — a file was added after sealing
            missing file: the signed statement lists outputs/counts.csv but the bundle does not contain it — a file was removed after sealing
            changed file: outputs/counts.csv: sha256 is 370f74029e40f44e32a416a19d49128d045070337d9727895aa0f1c6ec02d931 but the signed statement says c1a52e12fb758e8c846f0fd22b3fe2e92c2185a7c586e93b9ca8a424166fd08d — the bundle was altered after sealing
            changed report: report.json: sha256 is afaf00cbf93b64c2c27eaf134c4d6223712c0386bbdb93bf0f677b77ec1405d1 but the signed statement says f6110ee7dfdb2524df82bcc8b6d49f319960b0a0362d32af0f271aaa56601b06 — the bundle was altered after sealing
            renamed file: outputs/totals.csv is in the bundle but not in the signed statement — a file was added after sealing
            missing report: the signed statement lists report.json but the bundle does not contain it — a file was removed after sealing
            missing provenance: the bundle has no `provenance.dsse.json`; it is incomplete or was not made by a PHT station
            file outside outputs: the bundle holds `run.sh`, which has no place in a result bundle; it was altered after sealing
            provenance not json: `provenance.dsse.json` is not a usable DSSE envelope (EOF while parsing an object at line 1 column 1); the bundle was altered or not made by a PHT station
            provenance with many signatures: `provenance.dsse.json` is not a usable DSSE envelope (it carries 17 signatures, more than the 16 accepted); the bundle was altered or not made by a PHT station"#]],
    );
}

#[test]
fn archive_entries_that_escape_or_are_not_files_are_refused() {
    let link = |typeflag| {
        move |members: &mut Vec<RawMember>| {
            members.push(RawMember {
                name: "outputs/link".into(),
                typeflag,
                contents: Vec::new(),
            })
        }
    };
    check_tampering(
        &[
            ("parent escape", &|members| {
                members.push(RawMember::file("../evil.sh", b"x"))
            }),
            ("escape inside outputs", &|members| {
                members.push(RawMember::file("outputs/../../evil.sh", b"x"))
            }),
            ("absolute path", &|members| {
                members.push(RawMember::file("/etc/cron.d/evil", b"x"))
            }),
            ("empty component", &|members| {
                members.push(RawMember::file("outputs//counts.csv", b"x"))
            }),
            ("terminal escape in a name", &|members| {
                members.push(RawMember::file("outputs/\x1b[2Jcounts.csv", b"x"))
            }),
            ("duplicate entry", &|members| {
                members.push(RawMember::file("outputs/counts.csv", b"x"))
            }),
            ("symbolic link", &link(b'2')),
            ("hard link", &link(b'1')),
            ("directory", &link(b'5')),
            ("pax header", &link(b'x')),
        ],
        expect![[r#"
            parent escape: the bundle's archive is refused: entry "../evil.sh" is refused: it has a `.` or `..` component; the bundle was altered or not made by a PHT station, do not use it
            escape inside outputs: the bundle's archive is refused: entry "outputs/../../evil.sh" is refused: it has a `.` or `..` component; the bundle was altered or not made by a PHT station, do not use it
            absolute path: the bundle's archive is refused: entry "/etc/cron.d/evil" is refused: it is absolute; the bundle was altered or not made by a PHT station, do not use it
            empty component: the bundle's archive is refused: entry "outputs//counts.csv" is refused: it has an empty component (`//` or a trailing `/`); the bundle was altered or not made by a PHT station, do not use it
            terminal escape in a name: the bundle's archive is refused: entry "outputs/\u{1b}[2Jcounts.csv" is refused: it contains a NUL byte or another control character; the bundle was altered or not made by a PHT station, do not use it
            duplicate entry: the bundle's archive is refused: entry `outputs/counts.csv` appears twice; the bundle was altered or not made by a PHT station, do not use it
            symbolic link: the bundle's archive is refused: entry "outputs/link" is a symbolic link; only regular files are accepted; the bundle was altered or not made by a PHT station, do not use it
            hard link: the bundle's archive is refused: entry "outputs/link" is a hard link; only regular files are accepted; the bundle was altered or not made by a PHT station, do not use it
            directory: the bundle's archive is refused: entry "outputs/link" is a directory; only regular files are accepted; the bundle was altered or not made by a PHT station, do not use it
            pax header: the bundle's archive is refused: entry "outputs/link" is a PAX extended header; only regular files are accepted; the bundle was altered or not made by a PHT station, do not use it"#]],
    );
}

#[test]
fn malformed_archives_are_refused() {
    let parties = Parties::new();
    let genuine = decrypt(&parties.seal(&outputs()), &parties.identity).unwrap();
    let check = |archive: Vec<u8>| match parties.open(&encrypt_to(&parties.recipient(), &archive)) {
        Ok(_) => "OPENED".to_string(),
        Err(error) => error.to_string(),
    };
    let mut bad_checksum = genuine.clone();
    bad_checksum[0] ^= 0x01;
    let mut trailing_data = genuine.clone();
    trailing_data.extend_from_slice(b"hidden");
    let mut not_ustar = genuine.clone();
    not_ustar[257] = b'X';
    let outcomes = [
        ("empty", check(Vec::new())),
        (
            "no end marker",
            check(genuine[..genuine.len() - 1024].to_vec()),
        ),
        // Headers at 0 (report.json) and 1024 (outputs/counts.csv, contents from 1536).
        ("cut inside a file", check(genuine[..1540].to_vec())),
        ("bad checksum", check(bad_checksum)),
        ("trailing data", check(trailing_data)),
        ("not ustar", check(not_ustar)),
        (
            "record padding",
            check([genuine.as_slice(), &[0; 8192]].concat()),
        ),
    ];
    expect![[r#"
        empty: the bundle's archive is refused: it ends at byte 0 without an end-of-archive marker; the bundle was altered or not made by a PHT station, do not use it
        no end marker: the bundle's archive is refused: it ends at byte 5632 without an end-of-archive marker; the bundle was altered or not made by a PHT station, do not use it
        cut inside a file: the bundle's archive is refused: entry `outputs/counts.csv` claims 18 bytes but the archive ends first; the bundle was altered or not made by a PHT station, do not use it
        bad checksum: the bundle's archive is refused: the header at byte 0 has a wrong checksum; the bundle was altered or not made by a PHT station, do not use it
        trailing data: the bundle's archive is refused: it has data after the end-of-archive marker at byte 5632; the bundle was altered or not made by a PHT station, do not use it
        not ustar: the bundle's archive is refused: the header at byte 0 is not a ustar header; the bundle was altered or not made by a PHT station, do not use it
        record padding: OPENED"#]].assert_eq(
        &outcomes
            .iter()
            .map(|(case, outcome)| format!("{case}: {outcome}"))
            .collect::<Vec<_>>()
            .join("\n"),
    );
}

#[test]
fn unsafe_or_unreleasable_files_are_not_sealed() {
    let parties = Parties::new();
    // Each case: a released path and the verdict the checks gave it (none: not checked).
    let check = |path: &str, verdict: Option<CheckVerdict>| {
        let mut predicate = predicate();
        predicate.files.retain(|file| file.path != path);
        if let Some(verdict) = verdict {
            predicate.files.push(FileVerdict {
                path: path.to_string(),
                verdict,
                transformed: None,
            });
        }
        let files = vec![(path.to_string(), b"x".to_vec())];
        let outcome = match seal_bundle(
            &files,
            REPORT,
            predicate,
            &parties.station_key,
            &[parties.recipient()],
        ) {
            Ok(_) => "sealed".to_string(),
            Err(error) => error.to_string(),
        };
        format!("{path:?}: {outcome}")
    };
    let pass = Some(CheckVerdict::Pass);
    let long_name = "n".repeat(101);
    let outcomes = [
        check("", pass),
        check("../escape.csv", pass),
        check("a/../../escape.csv", pass),
        check("/etc/passwd", pass),
        check("a//b.csv", pass),
        check("a/./b.csv", pass),
        check("dir/", pass),
        check("a\\..\\b.csv", pass),
        check("a\nb.csv", pass),
        check(&long_name, pass),
        check("reviewed.txt", Some(CheckVerdict::Review)),
        check("rows.csv", Some(CheckVerdict::Fail)),
        check("unchecked.csv", None),
    ];
    expect![[r#"
        "": file "" cannot be sealed: it is empty; give paths relative to the output directory
        "../escape.csv": file "../escape.csv" cannot be sealed: it has a `.` or `..` component; give paths relative to the output directory
        "a/../../escape.csv": file "a/../../escape.csv" cannot be sealed: it has a `.` or `..` component; give paths relative to the output directory
        "/etc/passwd": file "/etc/passwd" cannot be sealed: it is absolute; give paths relative to the output directory
        "a//b.csv": file "a//b.csv" cannot be sealed: it has an empty component (`//` or a trailing `/`); give paths relative to the output directory
        "a/./b.csv": file "a/./b.csv" cannot be sealed: it has a `.` or `..` component; give paths relative to the output directory
        "dir/": file "dir/" cannot be sealed: it has an empty component (`//` or a trailing `/`); give paths relative to the output directory
        "a\\..\\b.csv": file "a\\..\\b.csv" cannot be sealed: it contains a backslash, which some systems read as a separator; give paths relative to the output directory
        "a\nb.csv": file "a\nb.csv" cannot be sealed: it contains a NUL byte or another control character; give paths relative to the output directory
        "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn": file `outputs/nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn` has a path too long for the bundle archive (109 bytes in the bundle; at most 255, with a last component of at most 100)
        "reviewed.txt": sealed
        "rows.csv": file `rows.csv` has the check verdict fail and must not be released; withhold it
        "unchecked.csv": file `unchecked.csv` has no verdict in the provenance; only checked files may be released"#]].assert_eq(&outcomes.join("\n"));
}

#[test]
fn duplicate_paths_bad_recipients_and_non_json_reports_are_not_sealed() {
    let parties = Parties::new();
    let seal = |files: &[(String, Vec<u8>)], report: &[u8], recipients: &[String]| {
        seal_bundle(files, report, predicate(), &parties.station_key, recipients)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let mut duplicated = outputs();
    duplicated.push(outputs()[0].clone());
    let outcomes = [
        seal(&duplicated, REPORT, &[parties.recipient()]),
        seal(&outputs(), REPORT, &[]),
        seal(&outputs(), REPORT, &["age1notakey".to_string()]),
        seal(&outputs(), b"not json", &[parties.recipient()]),
    ];
    expect![[r#"
        file `counts.csv` is given twice; each file is sealed once
        no age recipient was given; a bundle is encrypted to at least one recipient
        `age1notakey` is not an age X25519 recipient (`age1…`): invalid Bech32 encoding
        the check report is not JSON (expected ident at line 1 column 2); seal the report the output checks wrote"#]].assert_eq(&outcomes.join("\n"));
}

#[test]
fn state_opens_at_the_next_station_and_not_as_a_result() {
    let parties = Parties::new();
    let next_station = x25519::Identity::generate();
    let state_files = vec![("model.json".to_string(), br#"{"sum":27}"#.to_vec())];
    let sealed = seal_state(
        &state_files,
        state_predicate(),
        &parties.station_key,
        &next_station.to_public().to_string(),
    )
    .unwrap();
    let opened = open_state(&sealed, &next_station, &parties.station_keys).unwrap();
    assert_eq!(
        (opened.station(), opened.files(), opened.predicate()),
        ("umc-utrecht", state_files.as_slice(), &state_predicate())
    );
    assert!(matches!(
        open_state(&sealed, &parties.identity, &parties.station_keys),
        Err(OpenError::NotForThisIdentity { .. })
    ));
    let error = open_bundle(&sealed, &next_station, &parties.station_keys).unwrap_err();
    expect!["the signed statement has predicate type `https://pht.dev/provenance/state/v1`, expected `https://pht.dev/provenance/result/v1`: this is not a result bundle"].assert_eq(&error.to_string());
    let result = parties.seal(&outputs());
    let error = open_state(&result, &parties.identity, &parties.station_keys).unwrap_err();
    expect!["the signed statement has predicate type `https://pht.dev/provenance/result/v1`, expected `https://pht.dev/provenance/state/v1`: this is not a state bundle"].assert_eq(&error.to_string());
}

#[test]
fn opening_with_no_station_keys_is_refused() {
    let parties = Parties::new();
    let error = open_bundle(&parties.seal(&outputs()), &parties.identity, &[]).unwrap_err();
    assert!(
        matches!(error, OpenError::UntrustedSigner { .. }),
        "{error}"
    );
}

#[test]
fn identity_round_trips_through_its_text_form() {
    // The CLI and the age command read identities from text; the sealed bundle must open
    // with an identity parsed back from `AGE-SECRET-KEY-1…`.
    let parties = Parties::new();
    let text = parties.identity.to_string();
    let parsed: x25519::Identity = text.expose_secret().parse().unwrap();
    assert!(open_bundle(&parties.seal(&outputs()), &parsed, &parties.station_keys).is_ok());
}
