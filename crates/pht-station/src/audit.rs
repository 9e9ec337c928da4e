//! The audit log: append-only JSON lines, each entry carrying the hash of the one before.
//!
//! Owns the entry format (`pht.audit.v1`), appending durably (one writer, fsync per entry), a
//! head file that records the last sequence number and hash (so deleting entries at the end is
//! detected too), and verification that finds any edited, deleted or reordered entry. Entries
//! carry hashes of outputs and names of datasets, never data values.

use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Hash that the first entry points back to.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit entry as written. `hash` covers every other field and `prev_hash`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    pub version: String,
    pub seq: u64,
    pub time: DateTime<Utc>,
    pub actor: String,
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datasets: Vec<String>,
    /// `path` → SHA-256 of each output (hashes only, never contents).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<OutputHash>,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub details: serde_json::Map<String, serde_json::Value>,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputHash {
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

/// What to record; the log adds sequence number, time and hashes.
#[derive(Debug, Clone, Default)]
pub struct AuditEvent {
    pub actor: String,
    pub event: String,
    pub run_id: Option<String>,
    pub job_id: Option<String>,
    pub train_digest: Option<String>,
    pub decision: Option<String>,
    pub reasons: Vec<String>,
    pub datasets: Vec<String>,
    pub outputs: Vec<OutputHash>,
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl AuditEvent {
    pub fn new(actor: &str, event: &str) -> AuditEvent {
        AuditEvent {
            actor: actor.to_string(),
            event: event.to_string(),
            ..AuditEvent::default()
        }
    }

    pub fn run(mut self, run_id: &str) -> AuditEvent {
        self.run_id = Some(run_id.to_string());
        self
    }

    pub fn detail(mut self, key: &str, value: impl Into<serde_json::Value>) -> AuditEvent {
        self.details.insert(key.to_string(), value.into());
        self
    }
}

/// Why the audit log could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot write the audit log {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the audit log {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the audit log {path} fails verification at line {line}: {problem}; run `pht-station audit verify` and investigate before the station writes to it again")]
    Broken {
        path: PathBuf,
        line: usize,
        problem: String,
    },
}

/// The result of verifying a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    pub entries: u64,
    pub last_hash: String,
    /// The first problem found: line number (1-based) and what is wrong.
    pub problem: Option<(usize, String)>,
}

fn entry_hash(entry: &AuditEntry) -> String {
    let mut unhashed = entry.clone();
    unhashed.hash = String::new();
    let canonical = serde_json::to_vec(&unhashed).expect("audit entries always serialise");
    hex::encode(Sha256::digest(canonical))
}

/// Verifies log text: every line parses, sequence numbers count up from 0 without gaps, every
/// entry points at the hash of the one before and its own hash is right; and, given the head
/// recorded at the last append, the log ends where the head says.
pub fn verify_text(text: &str, head: Option<(u64, String)>) -> Verification {
    let mut previous_hash = GENESIS_HASH.to_string();
    let mut n_entries = 0u64;
    for (line_idx, line) in text.lines().enumerate() {
        let line_number = line_idx + 1;
        let fail = |problem: String| Verification {
            entries: n_entries,
            last_hash: String::new(),
            problem: Some((line_number, problem)),
        };
        let entry: AuditEntry = match serde_json::from_str(line) {
            Ok(entry) => entry,
            Err(e) => return fail(format!("not a valid audit entry ({e})")),
        };
        if entry.seq != n_entries {
            return fail(format!(
                "sequence number {} where {} was expected: an entry was deleted or moved",
                entry.seq, n_entries
            ));
        }
        if entry.prev_hash != previous_hash {
            return fail("does not point at the hash of the entry before it: an entry was deleted, inserted or moved".into());
        }
        if entry_hash(&entry) != entry.hash {
            return fail("its hash does not match its contents: the entry was edited".into());
        }
        previous_hash = entry.hash;
        n_entries += 1;
    }
    if let Some((head_seq, head_hash)) = head {
        if n_entries != head_seq + 1 || previous_hash != head_hash {
            return Verification {
                entries: n_entries,
                last_hash: previous_hash,
                problem: Some((n_entries as usize + 1, format!("the log ends at entry {} but the head file records entry {head_seq}: entries were removed from the end", n_entries as i64 - 1))),
            };
        }
    }
    Verification {
        entries: n_entries,
        last_hash: previous_hash,
        problem: None,
    }
}

struct Tail {
    file: File,
    next_seq: u64,
    last_hash: String,
}

/// An open audit log. One per station process; appends are serialised.
pub struct AuditLog {
    path: PathBuf,
    head_path: PathBuf,
    tail: Mutex<Tail>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn read_head(head_path: &Path) -> Option<(u64, String)> {
    let text = std::fs::read_to_string(head_path).ok()?;
    let (seq, hash) = text.trim().split_once(' ')?;
    Some((seq.parse().ok()?, hash.to_string()))
}

impl AuditLog {
    /// Opens (or creates) the log at `path`, verifying it first: a station never appends to a
    /// log that does not verify.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        let head_path = path.with_extension("head");
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(AuditError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let verification = verify_text(&text, read_head(&head_path));
        if let Some((line, problem)) = verification.problem {
            return Err(AuditError::Broken {
                path: path.to_path_buf(),
                line,
                problem,
            });
        }
        let write_error = |source| AuditError::Write {
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(write_error)?;
        Ok(AuditLog {
            path: path.to_path_buf(),
            head_path,
            tail: Mutex::new(Tail {
                file,
                next_seq: verification.entries,
                last_hash: verification.last_hash,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends an event durably and returns the entry written. Safe across processes: the
    /// daemon and operator commands append to the same log, so each append holds an exclusive
    /// lock on `audit.lock` and continues from the head file another process may have moved.
    pub fn append(&self, event: AuditEvent) -> Result<AuditEntry, AuditError> {
        let mut tail = self.tail.lock().expect("audit log lock");
        let write_error = |source| AuditError::Write {
            path: self.path.clone(),
            source,
        };
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.path.with_extension("lock"))
            .map_err(write_error)?;
        lock_file.lock().map_err(write_error)?;
        if let Some((head_seq, head_hash)) = read_head(&self.head_path) {
            if head_seq + 1 != tail.next_seq || head_hash != tail.last_hash {
                tail.next_seq = head_seq + 1;
                tail.last_hash = head_hash;
            }
        }
        let mut entry = AuditEntry {
            version: "pht.audit.v1".into(),
            seq: tail.next_seq,
            time: Utc::now(),
            actor: event.actor,
            event: event.event,
            run_id: event.run_id,
            job_id: event.job_id,
            train_digest: event.train_digest,
            decision: event.decision,
            reasons: event.reasons,
            datasets: event.datasets,
            outputs: event.outputs,
            details: event.details,
            prev_hash: tail.last_hash.clone(),
            hash: String::new(),
        };
        entry.hash = entry_hash(&entry);
        let mut line = serde_json::to_vec(&entry).expect("audit entries always serialise");
        line.push(b'\n');
        tail.file.write_all(&line).map_err(write_error)?;
        tail.file.sync_data().map_err(write_error)?;
        let head_tmp = self.head_path.with_extension("head.tmp");
        std::fs::write(&head_tmp, format!("{} {}\n", entry.seq, entry.hash))
            .map_err(write_error)?;
        std::fs::rename(&head_tmp, &self.head_path).map_err(write_error)?;
        tail.next_seq += 1;
        tail.last_hash = entry.hash.clone();
        drop(lock_file);
        Ok(entry)
    }

    /// Verifies the log file as it is on disk now.
    pub fn verify_file(path: &Path) -> Result<Verification, AuditError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuditError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(verify_text(&text, read_head(&path.with_extension("head"))))
    }

    /// Reads every entry, optionally only those of one run.
    pub fn read_entries(path: &Path, run_id: Option<&str>) -> Result<Vec<AuditEntry>, AuditError> {
        let file = File::open(path).map_err(|source| AuditError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut entries = Vec::new();
        for (line_idx, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|source| AuditError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            let entry: AuditEntry =
                serde_json::from_str(&line).map_err(|e| AuditError::Broken {
                    path: path.to_path_buf(),
                    line: line_idx + 1,
                    problem: e.to_string(),
                })?;
            if run_id.is_none_or(|id| entry.run_id.as_deref() == Some(id)) {
                entries.push(entry);
            }
        }
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
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
}
