//! The audit log across files: rotation keeps one chain, any deleted, shortened or edited file
//! is found, retention deletes only what is old enough and says so, and exports verify on
//! their own and fail after any one-byte change.

use super::*;
use chrono::TimeZone as _;

/// A clock the test moves by hand.
#[derive(Clone)]
struct TestClock(Arc<Mutex<DateTime<Utc>>>);

impl TestClock {
    fn at(year: i32, month: u32, day: u32) -> TestClock {
        TestClock(Arc::new(Mutex::new(date(year, month, day))))
    }
    fn set(&self, time: DateTime<Utc>) {
        *self.0.lock().unwrap() = time;
    }
    fn clock(&self) -> Clock {
        let time = self.0.clone();
        Arc::new(move || *time.lock().unwrap())
    }
}

fn date(year: i32, month: u32, day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(year, month, day, 12, 0, 0).unwrap()
}

fn small_files() -> AuditSettings {
    AuditSettings {
        rotate_size: Some(1500),
        rotate_every: RotateEvery::Never,
        retention_days: None,
        ..AuditSettings::default()
    }
}

fn append_n(log: &AuditLog, n: usize) {
    for idx in 0..n {
        log.append(AuditEvent::new("station", "test").detail("n", idx))
            .unwrap();
    }
}

/// A log rotated three times: three archives and an active file.
fn rotated_three_times() -> (tempfile::TempDir, PathBuf, u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open_with(&path, small_files()).unwrap();
    let mut written = 0;
    while files::archives(&path).unwrap().len() < 3 {
        append_n(&log, 1);
        written += 1;
    }
    append_n(&log, 2);
    (dir, path, written + 2)
}

fn archive(path: &Path, number: u32) -> PathBuf {
    path.with_file_name(format!("audit.{number:06}.log"))
}

#[test]
fn a_log_rotated_three_times_verifies_as_one_chain_and_goes_on() {
    let (_dir, path, written) = rotated_three_times();
    let verification = AuditLog::verify_file(&path).unwrap();
    assert_eq!(verification.problem, None);
    assert_eq!(verification.entries, written);
    assert_eq!(
        verification.files,
        [
            "audit.000001.log",
            "audit.000002.log",
            "audit.000003.log",
            "audit.log"
        ]
    );
    // Each file starts with the last hash of the one before.
    let last_of_first = files::last_entry(&archive(&path, 1)).unwrap();
    let first_of_second = files::first_entry(&archive(&path, 2)).unwrap().unwrap();
    assert_eq!(first_of_second.prev_hash, last_of_first.hash);
    assert_eq!(first_of_second.seq, last_of_first.seq + 1);
    // Another process opens it and continues the chain; every entry reads back in order.
    let log = AuditLog::open_with(&path, small_files()).unwrap();
    assert_eq!(
        log.append(AuditEvent::new("station", "again")).unwrap().seq,
        written
    );
    let seqs: Vec<u64> = AuditLog::read_entries(&path, None)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, (0..=written).collect::<Vec<_>>());
}

#[test]
fn a_deleted_archive_is_detected_wherever_it_was() {
    let (dir, path, _) = rotated_three_times();
    let keep = dir.path().join("kept");
    std::fs::create_dir(&keep).unwrap();
    let set_aside = |number: u32| {
        let from = archive(&path, number);
        let to = keep.join(from.file_name().unwrap());
        std::fs::rename(&from, &to).unwrap();
        move || std::fs::rename(&to, &from).unwrap()
    };

    let restore = set_aside(2);
    let verification = AuditLog::verify_file(&path).unwrap();
    let (line, problem) = verification.problem.clone().unwrap();
    assert_eq!(
        (verification.problem_file.as_deref(), line),
        (Some("audit.000003.log"), 1)
    );
    assert!(
        problem.contains("a file in between was deleted"),
        "{problem}"
    );
    restore();

    let restore = set_aside(1);
    let verification = AuditLog::verify_file(&path).unwrap();
    let (_, problem) = verification.problem.clone().unwrap();
    assert_eq!(
        verification.problem_file.as_deref(),
        Some("audit.000002.log")
    );
    assert!(
        problem.contains("the oldest audit files were deleted"),
        "{problem}"
    );
    restore();

    let restore = set_aside(3);
    let verification = AuditLog::verify_file(&path).unwrap();
    assert_eq!(verification.problem_file.as_deref(), Some("audit.log"));
    // The station refuses to write to it.
    assert!(matches!(
        AuditLog::open_with(&path, small_files()),
        Err(AuditError::Broken { .. })
    ));
    restore();
    assert_eq!(AuditLog::verify_file(&path).unwrap().problem, None);
}

#[test]
fn editing_any_entry_of_any_file_or_shortening_an_archive_is_detected() {
    let (_dir, path, _) = rotated_three_times();
    let all_files = files::log_files(&path).unwrap();
    for file in &all_files {
        let original = std::fs::read_to_string(file).unwrap();
        let lines: Vec<&str> = original.lines().collect();
        for idx in 0..lines.len() {
            let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            edited[idx] = edited[idx].replacen("\"test\"", "\"tesT\"", 1);
            assert_ne!(edited[idx], lines[idx]);
            std::fs::write(file, edited.join("\n") + "\n").unwrap();
            let verification = AuditLog::verify_file(&path).unwrap();
            assert_eq!(
                verification.problem.as_ref().map(|p| p.0),
                Some(idx + 1),
                "{} line {}",
                file.display(),
                idx + 1
            );
            assert_eq!(
                verification.problem_file.as_deref(),
                file.file_name().and_then(|n| n.to_str())
            );
        }
        std::fs::write(file, &original).unwrap();
    }
    // An archive with its last entry cut off.
    let first = archive(&path, 1);
    let original = std::fs::read_to_string(&first).unwrap();
    let mut lines: Vec<&str> = original.lines().collect();
    lines.pop();
    std::fs::write(&first, lines.join("\n") + "\n").unwrap();
    let verification = AuditLog::verify_file(&path).unwrap();
    assert_eq!(
        verification.problem_file.as_deref(),
        Some("audit.000002.log")
    );
    std::fs::write(&first, original).unwrap();
    assert_eq!(AuditLog::verify_file(&path).unwrap().problem, None);
}

#[test]
fn a_new_file_starts_when_the_day_or_month_has_passed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let clock = TestClock::at(2026, 3, 30);
    let daily = AuditSettings {
        rotate_size: None,
        rotate_every: RotateEvery::Day,
        retention_days: None,
        ..AuditSettings::default()
    };
    let log = AuditLog::open_with_clock(&path, daily, clock.clock()).unwrap();
    append_n(&log, 3);
    assert!(files::archives(&path).unwrap().is_empty());
    clock.set(date(2026, 3, 31));
    append_n(&log, 1);
    let archived = files::archives(&path).unwrap();
    assert_eq!(archived.len(), 1);
    assert_eq!(
        AuditLog::read_entries(&archived[0].1, None).unwrap().len(),
        3
    );

    let monthly_path = dir.path().join("monthly.log");
    let monthly = AuditSettings {
        rotate_every: RotateEvery::Month,
        ..AuditSettings::default()
    };
    let log = AuditLog::open_with_clock(&monthly_path, monthly, clock.clock()).unwrap();
    append_n(&log, 2);
    clock.set(date(2026, 3, 31) + chrono::Duration::hours(11));
    append_n(&log, 1);
    assert!(files::archives(&monthly_path).unwrap().is_empty());
    clock.set(date(2026, 4, 1));
    append_n(&log, 1);
    assert_eq!(files::archives(&monthly_path).unwrap().len(), 1);
    assert_eq!(AuditLog::verify_file(&monthly_path).unwrap().problem, None);
}

#[test]
fn retention_deletes_only_archives_wholly_older_than_the_period_and_records_it_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let clock = TestClock::at(2024, 1, 10);
    let settings = AuditSettings {
        rotate_size: None,
        rotate_every: RotateEvery::Month,
        retention_days: Some(365),
        ..AuditSettings::default()
    };
    let log = AuditLog::open_with_clock(&path, settings, clock.clock()).unwrap();
    // January 2024, then June 2024 (whose last entry is on the 30th), then December 2024.
    append_n(&log, 2);
    clock.set(date(2024, 6, 1));
    append_n(&log, 2);
    clock.set(date(2024, 6, 30));
    append_n(&log, 1);
    clock.set(date(2024, 12, 1));
    append_n(&log, 2);
    assert_eq!(
        files::archives(&path).unwrap().len(),
        2,
        "nothing a year old yet"
    );
    // June 2025: December is archived; January 2024 is more than 365 days old and goes, June
    // 2024 is not yet wholly older than a year and stays.
    clock.set(date(2025, 6, 2));
    append_n(&log, 1);
    let names: Vec<String> = files::archives(&path)
        .unwrap()
        .iter()
        .map(|(_, p)| files::file_name(p))
        .collect();
    assert_eq!(names, ["audit.000002.log", "audit.000003.log"]);
    let verification = AuditLog::verify_file(&path).unwrap();
    assert_eq!(verification.problem, None, "{verification:?}");
    let pruned: Vec<AuditEntry> = AuditLog::read_entries(&path, None)
        .unwrap()
        .into_iter()
        .filter(|e| e.event == PRUNED_EVENT)
        .collect();
    assert_eq!(pruned.len(), 1);
    assert_eq!(
        pruned[0].details["files"],
        serde_json::json!(["audit.000001.log"])
    );
    assert_eq!(pruned[0].details["next_seq"], serde_json::json!(2));

    // A year on, June 2024 may go too; the newest archive always stays.
    clock.set(date(2025, 7, 1));
    append_n(&log, 1);
    clock.set(date(2026, 8, 1));
    append_n(&log, 1);
    let remaining = files::archives(&path).unwrap();
    assert_eq!(
        remaining.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        [5],
        "the newest archive stays"
    );
    assert_eq!(AuditLog::verify_file(&path).unwrap().problem, None);

    // Deleting the oldest remaining file by hand is not retention: no record accounts for it.
    std::fs::remove_file(&remaining[0].1).unwrap();
    let verification = AuditLog::verify_file(&path).unwrap();
    assert!(verification
        .problem
        .unwrap()
        .1
        .contains("oldest audit files were deleted"),);
}

fn export_fixture() -> (tempfile::TempDir, PathBuf, pht_core::SigningKey) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let clock = TestClock::at(2026, 5, 1);
    let log = AuditLog::open_with_clock(&path, small_files(), clock.clock()).unwrap();
    for day in 1..=6 {
        clock.set(date(2026, 5, day));
        log.append(AuditEvent::new("station", "run_started").run(&format!("run-{day}")))
            .unwrap();
        log.append(AuditEvent::new("station", "run_finished").run(&format!("run-{day}")))
            .unwrap();
    }
    let key = pht_core::SigningKey::generate(pht_core::KeyAlgorithm::Ed25519);
    (dir, path, key)
}

fn day(text: &str) -> chrono::NaiveDate {
    text.parse().unwrap()
}

#[test]
fn an_export_verifies_on_its_own_and_fails_after_any_one_byte_change() {
    let (dir, path, key) = export_fixture();
    let out = dir.path().join("export.json");
    let written = write_export(
        &path,
        &out,
        "station-a",
        &key,
        day("2026-05-02"),
        day("2026-05-04"),
    )
    .unwrap();
    assert_eq!(
        (written.entries, written.first_seq, written.last_seq),
        (6, Some(2), Some(7))
    );
    let (verified, export) = verify_export(&out, None).unwrap();
    assert_eq!(verified.entries, 6);
    assert_eq!(verified.key_id, key.public_key().key_id());
    assert!(export
        .entries
        .iter()
        .all(|e| (day("2026-05-02")..=day("2026-05-04")).contains(&e.time.date_naive())));
    verify_export(&out, Some(&key.public_key())).unwrap();
    let other = pht_core::SigningKey::generate(pht_core::KeyAlgorithm::Ed25519);
    assert!(matches!(
        verify_export(&out, Some(&other.public_key())),
        Err(ExportError::Invalid { .. })
    ));

    let original = std::fs::read(&out).unwrap();
    let changed = dir.path().join("changed.json");
    for idx in 0..original.len() {
        let mut bytes = original.clone();
        bytes[idx] ^= 0x01;
        std::fs::write(&changed, &bytes).unwrap();
        assert!(
            matches!(
                verify_export(&changed, None),
                Err(ExportError::Invalid { .. })
            ),
            "a change of byte {idx} of {} went unnoticed",
            original.len()
        );
    }
}

#[test]
fn an_export_of_a_broken_log_or_a_backwards_range_is_refused() {
    let (dir, path, key) = export_fixture();
    let out = dir.path().join("export.json");
    assert!(matches!(
        write_export(
            &path,
            &out,
            "station-a",
            &key,
            day("2026-05-04"),
            day("2026-05-02")
        ),
        Err(ExportError::Range { .. })
    ));
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("run-6", "run-X", 1)).unwrap();
    assert!(matches!(
        write_export(
            &path,
            &out,
            "station-a",
            &key,
            day("2026-05-01"),
            day("2026-05-06")
        ),
        Err(ExportError::Broken { .. })
    ));
    assert!(!out.exists());
}
