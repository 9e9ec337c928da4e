//! The audit log's own tests: tampering is found, interrupted appends are repaired, and a full
//! disk never breaks the chain.

use super::*;

fn log_with_entries(n_entries: usize) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(&path).unwrap();
    for idx in 0..n_entries {
        log.append(
            AuditEvent::new("station", "test")
                .run(&format!("run-{idx}"))
                .detail("n", idx),
        )
        .unwrap();
    }
    (dir, path)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(
        path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
}

#[test]
fn untouched_log_verifies_and_reopens() {
    let (_dir, path) = log_with_entries(5);
    let verification = AuditLog::verify_file(&path).unwrap();
    assert_eq!((verification.entries, verification.problem), (5, None));
    let log = AuditLog::open(&path).unwrap();
    assert_eq!(
        log.append(AuditEvent::new("station", "again")).unwrap().seq,
        5
    );
}

#[test]
fn edited_entry_is_detected() {
    let (_dir, path) = log_with_entries(5);
    let mut lines = lines(&path);
    lines[2] = lines[2].replace("run-2", "run-X");
    write_lines(&path, &lines);
    let problem = AuditLog::verify_file(&path).unwrap().problem.unwrap();
    assert_eq!(problem.0, 3);
    assert!(problem.1.contains("edited"), "{problem:?}");
}

#[test]
fn deleted_entry_is_detected() {
    let (_dir, path) = log_with_entries(5);
    let mut lines = lines(&path);
    lines.remove(1);
    write_lines(&path, &lines);
    assert_eq!(AuditLog::verify_file(&path).unwrap().problem.unwrap().0, 2);
}

#[test]
fn reordered_entries_are_detected() {
    let (_dir, path) = log_with_entries(5);
    let mut lines = lines(&path);
    lines.swap(1, 3);
    write_lines(&path, &lines);
    assert_eq!(AuditLog::verify_file(&path).unwrap().problem.unwrap().0, 2);
}

#[test]
fn truncated_tail_is_detected_through_the_head_file() {
    let (_dir, path) = log_with_entries(5);
    let mut lines = lines(&path);
    lines.truncate(3);
    write_lines(&path, &lines);
    let problem = AuditLog::verify_file(&path).unwrap().problem.unwrap();
    assert!(problem.1.contains("removed from the end"), "{problem:?}");
}

#[test]
fn rehashed_forgery_without_the_head_is_still_caught_by_the_head() {
    // An attacker who edits an entry and recomputes every later hash still leaves the head
    // file pointing at the old last hash.
    let (_dir, path) = log_with_entries(3);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut entries: Vec<AuditEntry> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    entries[1].actor = "someone else".into();
    let mut previous = GENESIS_HASH.to_string();
    for entry in &mut entries {
        entry.prev_hash = previous.clone();
        entry.hash = entry_hash(entry);
        previous = entry.hash.clone();
    }
    let forged: Vec<String> = entries
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    write_lines(&path, &forged);
    assert!(AuditLog::verify_file(&path).unwrap().problem.is_some());
}

#[test]
fn two_writers_on_one_log_keep_one_chain() {
    // The daemon and an operator command each hold the log open; their entries interleave.
    let (_dir, path) = log_with_entries(1);
    let daemon = AuditLog::open(&path).unwrap();
    let operator = AuditLog::open(&path).unwrap();
    for idx in 0..3 {
        daemon
            .append(AuditEvent::new("station", "daemon").detail("n", idx))
            .unwrap();
        operator
            .append(AuditEvent::new("operator:x", "release").detail("n", idx))
            .unwrap();
    }
    let verification = AuditLog::verify_file(&path).unwrap();
    assert_eq!((verification.entries, verification.problem), (7, None));
}

/// Processes opening the log while others append (operator commands beside the daemon): an
/// open verifies and repairs under the appenders' lock, so it never cuts off a line being
/// written as torn, nor moves the head file back to what it read before an append landed.
#[test]
fn logs_opened_while_others_append_keep_one_chain() {
    let (_dir, path) = log_with_entries(1);
    let threads: Vec<_> = (0..6)
        .map(|writer| {
            let path = path.clone();
            std::thread::spawn(move || {
                for round in 0..40 {
                    let log = AuditLog::open(&path).unwrap();
                    log.append(
                        AuditEvent::new("station", "test")
                            .detail("writer", writer)
                            .detail("round", round),
                    )
                    .unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let verification = AuditLog::verify_file(&path).unwrap();
    assert_eq!(verification.problem, None);
    assert_eq!(verification.interrupted_append, None);
    assert_eq!(verification.entries, 1 + 6 * 40);
}

#[test]
fn broken_log_is_not_appended_to() {
    let (_dir, path) = log_with_entries(2);
    let mut lines = lines(&path);
    lines[0] = lines[0].replace("station", "stati0n");
    write_lines(&path, &lines);
    assert!(matches!(
        AuditLog::open(&path),
        Err(AuditError::Broken { line: 1, .. })
    ));
}

#[test]
fn torn_append_is_repaired_and_recorded_not_taken_for_tampering() {
    let (_dir, path) = log_with_entries(3);
    let mut file = OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(b"{\"version\":\"pht.audit.v1\",\"seq\":3,\"ti")
        .unwrap();
    let verification = AuditLog::verify_file(&path).unwrap();
    assert_eq!(verification.problem, None);
    assert!(verification.interrupted_append.is_some());
    let log = AuditLog::open(&path).unwrap();
    let entry = log.append(AuditEvent::new("station", "after")).unwrap();
    assert_eq!(entry.seq, 4);
    let events: Vec<_> = AuditLog::read_entries(&path, None)
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(events[3], "recovered");
    let verification = AuditLog::verify_file(&path).unwrap();
    assert_eq!((verification.entries, verification.problem), (5, None));
    assert_eq!(verification.interrupted_append, None);
}

#[test]
fn unacknowledged_append_is_acknowledged_and_recorded() {
    let (_dir, path) = log_with_entries(3);
    let head_path = path.with_extension("head");
    let old_head = std::fs::read(&head_path).unwrap();
    AuditLog::open(&path)
        .unwrap()
        .append(AuditEvent::new("station", "last"))
        .unwrap();
    std::fs::write(&head_path, old_head).unwrap();
    assert!(AuditLog::verify_file(&path)
        .unwrap()
        .interrupted_append
        .is_some());
    // Another process's next append repairs it first.
    let other = AuditLog::open(&path).unwrap();
    other.append(AuditEvent::new("station", "next")).unwrap();
    let events: Vec<_> = AuditLog::read_entries(&path, None)
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(events[3..], ["last", "recovered", "next"]);
    assert_eq!(AuditLog::verify_file(&path).unwrap().problem, None);
}

#[test]
fn two_entries_beyond_the_head_are_tampering_not_an_interrupted_append() {
    let (_dir, path) = log_with_entries(3);
    let head_path = path.with_extension("head");
    let old_head = std::fs::read(&head_path).unwrap();
    let log = AuditLog::open(&path).unwrap();
    log.append(AuditEvent::new("station", "one")).unwrap();
    log.append(AuditEvent::new("station", "two")).unwrap();
    std::fs::write(&head_path, old_head).unwrap();
    assert!(AuditLog::verify_file(&path).unwrap().problem.is_some());
    assert!(matches!(
        AuditLog::open(&path),
        Err(AuditError::Broken { .. })
    ));
}

#[test]
fn an_append_with_the_log_grown_behind_a_writer_is_still_one_chain() {
    // A head from before lengths were recorded makes the next append read the log.
    let (_dir, path) = log_with_entries(2);
    let head_path = path.with_extension("head");
    let head = read_head(&head_path).unwrap();
    std::fs::write(&head_path, format!("{} {}\n", head.seq, head.hash)).unwrap();
    let log = AuditLog::open(&path).unwrap();
    assert_eq!(log.append(AuditEvent::new("station", "x")).unwrap().seq, 2);
    assert_eq!(AuditLog::verify_file(&path).unwrap().problem, None);
}

/// A tmpfs of a few pages, mounted for one test (the tests run as root, as in CI).
struct SmallDisk {
    _dir: tempfile::TempDir,
    mount_point: PathBuf,
}

impl SmallDisk {
    fn mount(n_bytes: u64) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let mount_point = dir.path().join("disk");
        std::fs::create_dir(&mount_point).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={n_bytes}"))
            .arg("tmpfs")
            .arg(&mount_point)
            .status()
            .unwrap();
        assert!(status.success(), "mounting a test tmpfs needs root");
        SmallDisk {
            _dir: dir,
            mount_point,
        }
    }

    /// Fills the disk completely; returns the filler, to be removed to free the space.
    fn fill(&self) -> PathBuf {
        let filler = self.mount_point.join("filler");
        let mut file = File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        while file.write_all(&chunk).is_ok() {}
        while file.write_all(&[0]).is_ok() {}
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(&self.mount_point)
            .status();
    }
}

#[test]
fn a_full_disk_never_breaks_the_audit_log() {
    let disk = SmallDisk::mount(64 * 1024);
    let path = disk.mount_point.join("audit.log");
    let log = AuditLog::open(&path).unwrap();
    // Entries of different sizes, so the disk fills once while writing an entry (no room in
    // its page) and once while moving the head (the entry fits, the head's new file does not).
    for (idx, padding) in [0usize, 1500, 3000, 4000].into_iter().enumerate() {
        log.append(AuditEvent::new("station", "before").detail("n", idx))
            .unwrap();
        let filler = disk.fill();
        let failed =
            log.append(AuditEvent::new("station", "full").detail("pad", "x".repeat(padding)));
        assert!(failed.is_err(), "an append on a full disk cannot succeed");
        let verification = AuditLog::verify_file(&path).unwrap();
        assert_eq!(verification.problem, None, "padding {padding}");
        assert_eq!(verification.interrupted_append, None);
        std::fs::remove_file(filler).unwrap();
        log.append(AuditEvent::new("station", "space is back"))
            .unwrap();
        assert_eq!(AuditLog::verify_file(&path).unwrap().problem, None);
        // A new process opens it too.
        AuditLog::open(&path).unwrap();
    }
    let events: Vec<_> = AuditLog::read_entries(&path, None)
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert!(!events.contains(&"full".to_string()));
}
