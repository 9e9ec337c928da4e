//! The audit log: append-only JSON lines, each entry carrying the hash of the one before.
//!
//! Owns the entry format (`pht.audit.v1`), appending durably (one writer, fsync per entry), a
//! head file that records the last sequence number and hash (so deleting entries at the end is
//! detected too), and verification that finds any edited, deleted or reordered entry. Entries
//! carry hashes of outputs and names of datasets, never data values.
//!
//! The log is a chain across files: the active file (`audit.log`) is archived as
//! `audit.000001.log`, `audit.000002.log`, … when it grows past a size or a day or month ends
//! (`files.rs`), and the next file's first entry points at the last entry of the one before.
//! Retention deletes only the oldest archives whose every entry is older than the retention
//! period, and records that it did so first. `export.rs` writes a signed extract for auditors.

mod export;
mod files;
pub mod witness;

pub use export::{verify_export, write_export, AuditExport, ExportError, ExportSummary};
pub use files::{
    AuditSettings, RotateEvery, DEFAULT_ROTATE_SIZE, MIN_RETENTION_DAYS, MIN_ROTATE_SIZE,
    PRUNED_EVENT,
};

use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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
    /// An append a crash or a full disk interrupted, which the station repairs (not tampering).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted_append: Option<String>,
    /// The files walked, oldest first (archives, then the active file).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// The file the problem is in, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem_file: Option<String>,
}

/// Where a file's part of the chain starts: the sequence number of its first entry and the
/// hash that entry must point back to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainStart {
    pub seq: u64,
    pub prev_hash: String,
}

impl ChainStart {
    /// The start of a log: entry 0, pointing at the genesis hash.
    pub fn genesis() -> ChainStart {
        ChainStart {
            seq: 0,
            prev_hash: GENESIS_HASH.to_string(),
        }
    }

    /// The start of the file after one whose last entry is `entry`.
    fn after(entry: &AuditEntry) -> ChainStart {
        ChainStart {
            seq: entry.seq + 1,
            prev_hash: entry.hash.clone(),
        }
    }
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
    verify_chain(text, &ChainStart::genesis(), head, &mut |_| {})
}

/// [`verify_text`] for a file whose part of the chain begins at `start`; `seen` is shown every
/// entry that verifies.
fn verify_chain(
    text: &str,
    start: &ChainStart,
    head: Option<(u64, String)>,
    seen: &mut dyn FnMut(&AuditEntry),
) -> Verification {
    let mut previous_hash = start.prev_hash.clone();
    let mut n_entries = 0u64;
    for (line_idx, line) in text.lines().enumerate() {
        let line_number = line_idx + 1;
        let fail = |problem: String| Verification {
            entries: n_entries,
            last_hash: String::new(),
            problem: Some((line_number, problem)),
            interrupted_append: None,
            files: Vec::new(),
            problem_file: None,
        };
        let entry: AuditEntry = match serde_json::from_str(line) {
            Ok(entry) => entry,
            Err(e) => return fail(format!("not a valid audit entry ({e})")),
        };
        let expected_seq = start.seq + n_entries;
        if entry.seq != expected_seq {
            return fail(format!(
                "sequence number {} where {expected_seq} was expected: an entry was deleted or moved",
                entry.seq
            ));
        }
        if entry.prev_hash != previous_hash {
            return fail("does not point at the hash of the entry before it: an entry was deleted, inserted or moved".into());
        }
        if entry_hash(&entry) != entry.hash {
            return fail("its hash does not match its contents: the entry was edited".into());
        }
        seen(&entry);
        previous_hash = entry.hash;
        n_entries += 1;
    }
    if let Some((head_seq, head_hash)) = head {
        if start.seq + n_entries != head_seq + 1 || previous_hash != head_hash {
            return Verification {
                entries: n_entries,
                last_hash: previous_hash,
                problem: Some((n_entries as usize + 1, format!("the log ends at entry {} but the head file records entry {head_seq}: entries were removed from the end", (start.seq + n_entries) as i64 - 1))),
                interrupted_append: None,
                files: Vec::new(),
                problem_file: None,
            };
        }
    }
    Verification {
        entries: n_entries,
        last_hash: previous_hash,
        problem: None,
        interrupted_append: None,
        files: Vec::new(),
        problem_file: None,
    }
}

struct Tail {
    next_seq: u64,
    last_hash: String,
}

/// The time entries are stamped with (a fixed clock in tests).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// An open audit log. One per station process; appends are serialised.
pub struct AuditLog {
    path: PathBuf,
    head_path: PathBuf,
    settings: AuditSettings,
    clock: Clock,
    tail: Mutex<Tail>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The head file: the last acknowledged entry's sequence number and hash, and the length of the
/// log up to and including it (absent in heads written before lengths were recorded).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Head {
    seq: u64,
    hash: String,
    log_len: Option<u64>,
}

fn read_head(head_path: &Path) -> Option<Head> {
    let text = std::fs::read_to_string(head_path).ok()?;
    let mut fields = text.split_whitespace();
    let seq = fields.next()?.parse().ok()?;
    let hash = fields.next()?.to_string();
    let log_len = match fields.next() {
        Some(len) => Some(len.parse().ok()?),
        None => None,
    };
    Some(Head { seq, hash, log_len })
}

fn write_head(head_path: &Path, seq: u64, hash: &str, log_len: u64) -> std::io::Result<()> {
    pht_fs::write_atomic(head_path, format!("{seq} {hash} {log_len}\n").as_bytes())
}

/// What the log repaired before appending: an append that a crash or a full disk interrupted.
/// Anything else that does not verify is tampering, and the log refuses to go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    /// Part of a line was written and never acknowledged: the fragment was cut off.
    TornAppend { bytes_removed: u64 },
    /// A whole entry was written, chaining onto the head's entry, but the head file was not
    /// moved on to it: the head now records it.
    UnacknowledgedAppend { seq: u64 },
}

impl Repair {
    fn event(&self) -> AuditEvent {
        let event = AuditEvent::new("audit-log", "recovered");
        match self {
            Repair::TornAppend { bytes_removed } => event
                .detail("repaired", "torn_append")
                .detail("bytes_removed", *bytes_removed),
            Repair::UnacknowledgedAppend { seq } => event
                .detail("repaired", "unacknowledged_append")
                .detail("seq", *seq),
        }
    }
}

/// What is on disk, judged: the verification of the acknowledged entries, the length they
/// take, and the repair an interrupted append needs; `Err` is the first sign of tampering.
/// `seen` is shown each entry that verifies (some twice, when an unacknowledged append is
/// judged on a second pass).
fn classify(
    bytes: &[u8],
    start: &ChainStart,
    head: Option<&Head>,
    seen: &mut dyn FnMut(&AuditEntry),
) -> Result<(Verification, u64, Option<Repair>), (usize, String)> {
    let complete_len = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let complete = String::from_utf8_lossy(&bytes[..complete_len]);
    let fragment_len = (bytes.len() - complete_len) as u64;
    let verification = verify_chain(
        &complete,
        start,
        head.map(|h| (h.seq, h.hash.clone())),
        seen,
    );
    if verification.problem.is_none() {
        let repair = (fragment_len > 0).then_some(Repair::TornAppend {
            bytes_removed: fragment_len,
        });
        return Ok((verification, complete_len as u64, repair));
    }
    if let (Some(head), 0) = (head, fragment_len) {
        let unheaded = verify_chain(&complete, start, None, seen);
        if unheaded.problem.is_none() && start.seq + unheaded.entries == head.seq + 2 {
            let repair = Repair::UnacknowledgedAppend { seq: head.seq + 1 };
            return Ok((unheaded, complete_len as u64, Some(repair)));
        }
    }
    Err(verification.problem.expect("checked above"))
}

fn read_log(path: &Path) -> Result<Vec<u8>, AuditError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(AuditError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Verifies the log on disk and repairs an interrupted append; `Err(Broken)` for anything else.
fn verify_and_repair(
    path: &Path,
    head_path: &Path,
) -> Result<(Tail, u64, Option<Repair>), AuditError> {
    let write_error = |source| AuditError::Write {
        path: path.to_path_buf(),
        source,
    };
    let start = files::active_start(path)?;
    let (verification, log_len, repair) = classify(
        &read_log(path)?,
        &start,
        read_head(head_path).as_ref(),
        &mut |_| {},
    )
    .map_err(|(line, problem)| AuditError::Broken {
        path: path.to_path_buf(),
        line,
        problem,
    })?;
    match &repair {
        None => {}
        Some(Repair::TornAppend { .. }) => {
            let file = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(write_error)?;
            file.set_len(log_len).map_err(write_error)?;
            file.sync_all().map_err(write_error)?;
        }
        Some(Repair::UnacknowledgedAppend { seq }) => {
            write_head(head_path, *seq, &verification.last_hash, log_len).map_err(write_error)?;
        }
    }
    let tail = Tail {
        next_seq: start.seq + verification.entries,
        last_hash: verification.last_hash,
    };
    Ok((tail, log_len, repair))
}

/// `audit.lock` beside the log at `path`, held exclusively (released when dropped): every
/// process that appends to or repairs the log holds it.
fn open_lock(path: &Path) -> Result<File, AuditError> {
    let write_error = |source| AuditError::Write {
        path: path.to_path_buf(),
        source,
    };
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path.with_extension("lock"))
        .map_err(write_error)?;
    lock_file.lock().map_err(write_error)?;
    Ok(lock_file)
}

impl AuditLog {
    /// Opens (or creates) the log at `path`, verifying it first: a station never appends to a
    /// log that does not verify. An append a crash or a full disk interrupted is repaired, and
    /// the repair is recorded as a `recovered` entry.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        AuditLog::open_with(path, AuditSettings::default())
    }

    /// [`AuditLog::open`] with rotation and retention settings (`audit:` in the configuration).
    pub fn open_with(path: &Path, settings: AuditSettings) -> Result<AuditLog, AuditError> {
        AuditLog::open_with_clock(path, settings, Arc::new(Utc::now))
    }

    /// [`AuditLog::open_with`], stamping entries with `clock` instead of the system's time.
    pub fn open_with_clock(
        path: &Path,
        settings: AuditSettings,
        clock: Clock,
    ) -> Result<AuditLog, AuditError> {
        let head_path = path.with_extension("head");
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| AuditError::Write {
                path: path.to_path_buf(),
                source,
            })?;
        // Verified and repaired under the same lock appends hold: another process appending
        // meanwhile must not see its half-written line cut off as torn, nor its head file moved
        // back by a repair judged on an older read of the log.
        let (tail, _, repair) = {
            let lock_file = open_lock(path)?;
            let judged = verify_and_repair(path, &head_path);
            drop(lock_file);
            judged?
        };
        let log = AuditLog {
            path: path.to_path_buf(),
            head_path,
            settings,
            clock,
            tail: Mutex::new(tail),
        };
        if let Some(repair) = repair {
            log.append(repair.event())?;
        }
        Ok(log)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The log's last entry now (sequence number and hash), as its head records; `None` for an
    /// empty log.
    pub fn head(&self) -> Option<(u64, String)> {
        match read_head(&self.head_path) {
            Some(head) => Some((head.seq, head.hash)),
            None => {
                let tail = self
                    .tail
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                tail.next_seq
                    .checked_sub(1)
                    .map(|seq| (seq, tail.last_hash.clone()))
            }
        }
    }

    /// How many entries the log holds now (as its head records, which every process that
    /// appends moves on).
    pub fn entry_count(&self) -> u64 {
        match read_head(&self.head_path) {
            Some(head) => head.seq + 1,
            None => {
                self.tail
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .next_seq
            }
        }
    }

    /// Appends an event durably and returns the entry written. Safe across processes: the
    /// daemon and operator commands append to the same log, so each append holds an exclusive
    /// lock on `audit.lock` and continues from the head file another process may have moved.
    ///
    /// An append lands whole or not at all: the entry is acknowledged (the head file moved on
    /// to it) only after it is on disk, and when writing the entry or the head fails (a full
    /// disk) the log is cut back to where it was. An append another process left unfinished is
    /// repaired first, and recorded.
    pub fn append(&self, event: AuditEvent) -> Result<AuditEntry, AuditError> {
        let mut tail = self
            .tail
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let write_error = |source| AuditError::Write {
            path: self.path.clone(),
            source,
        };
        let lock_file = open_lock(&self.path)?;
        let log_len = match std::fs::metadata(&self.path) {
            Ok(metadata) => metadata.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(write_error(e)),
        };
        let head = read_head(&self.head_path);
        let mut repair = None;
        let mut log_len = log_len;
        match &head {
            Some(head) if head.log_len == Some(log_len) => {
                tail.next_seq = head.seq + 1;
                tail.last_hash = head.hash.clone();
            }
            None if log_len == 0 => {}
            _ => {
                // Another process's append did not finish, or the head predates recorded
                // lengths: read the whole log once.
                let (verified, verified_len, repaired) =
                    verify_and_repair(&self.path, &self.head_path)?;
                *tail = verified;
                log_len = verified_len;
                repair = repaired;
            }
        }
        if let Some(repair) = repair {
            let recovered = self.write_entry(&mut tail, repair.event(), log_len)?;
            log_len += recovered.1;
        }
        if log_len > 0
            && self
                .settings
                .rotation_due(&self.path, log_len, (self.clock)())?
        {
            let pruned = self.rotate(&tail)?;
            log_len = 0;
            if let Some(pruned) = pruned {
                let recorded = self.write_entry(&mut tail, pruned.event(), log_len)?;
                log_len += recorded.1;
                pruned.delete();
            }
        }
        let (entry, _) = self.write_entry(&mut tail, event, log_len)?;
        drop(lock_file);
        Ok(entry)
    }

    /// Writes one entry at the end of a log of `log_len` bytes and moves the head on to it, or
    /// leaves the log as it was. Returns the entry and the bytes it took.
    fn write_entry(
        &self,
        tail: &mut Tail,
        event: AuditEvent,
        log_len: u64,
    ) -> Result<(AuditEntry, u64), AuditError> {
        let write_error = |source| AuditError::Write {
            path: self.path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(write_error)?;
        let mut entry = AuditEntry {
            version: "pht.audit.v1".into(),
            seq: tail.next_seq,
            time: (self.clock)(),
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
        let new_len = log_len + line.len() as u64;
        let written = file
            .write_all(&line)
            .and_then(|()| file.sync_data())
            .and_then(|()| write_head(&self.head_path, entry.seq, &entry.hash, new_len));
        if let Err(source) = written {
            // Cut back what was written: the entry was never acknowledged. Shrinking a file
            // needs no free space, so this works on a full disk too.
            let _ = file.set_len(log_len).and_then(|()| file.sync_data());
            return Err(write_error(source));
        }
        tail.next_seq += 1;
        tail.last_hash = entry.hash.clone();
        Ok((entry, line.len() as u64))
    }

    /// Verifies the whole log as it is on disk now, changing nothing: every archived file and
    /// the active one, as one chain. An append that a crash or a full disk interrupted is not
    /// a problem (the station repairs it when it next writes) but is reported in
    /// [`Verification::interrupted_append`].
    pub fn verify_file(path: &Path) -> Result<Verification, AuditError> {
        files::verify_all(path)
    }

    /// Reads every entry of every file, oldest first, optionally only those of one run.
    pub fn read_entries(path: &Path, run_id: Option<&str>) -> Result<Vec<AuditEntry>, AuditError> {
        let mut entries = Vec::new();
        for file_path in files::log_files(path)? {
            let file = File::open(&file_path).map_err(|source| AuditError::Read {
                path: file_path.clone(),
                source,
            })?;
            for (line_idx, line) in BufReader::new(file).lines().enumerate() {
                let line = line.map_err(|source| AuditError::Read {
                    path: file_path.clone(),
                    source,
                })?;
                let entry: AuditEntry =
                    serde_json::from_str(&line).map_err(|e| AuditError::Broken {
                        path: file_path.clone(),
                        line: line_idx + 1,
                        problem: e.to_string(),
                    })?;
                if run_id.is_none_or(|id| entry.run_id.as_deref() == Some(id)) {
                    entries.push(entry);
                }
            }
        }
        Ok(entries)
    }
}

#[cfg(test)]
mod rotation_tests;
#[cfg(test)]
mod tests;
