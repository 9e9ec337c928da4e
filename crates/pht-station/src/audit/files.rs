//! The audit log across files: archiving the active file by size or by date, retention that
//! deletes only the oldest archives, and verifying every file as one chain.
//!
//! `audit.log` is the active file. Archiving renames it `audit.000001.log`, `audit.000002.log`,
//! … (numbered in order, never reused), and the next entry, written to a new `audit.log`,
//! points at the last entry of the archive. Deleting or shortening any archive but the oldest
//! breaks the chain where the next file starts. Retention deletes the oldest archives only
//! when every entry in them is older than the retention period, never the newest archive (it
//! anchors the active file), and appends an `audit_pruned` entry naming them *before* deleting
//! them, so verification can tell retention from someone deleting the oldest files.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike as _, Utc};

use super::{
    classify, read_head, read_log, verify_chain, write_head, AuditEntry, AuditError, AuditEvent,
    AuditLog, ChainStart, Repair, Tail, Verification,
};

/// The event retention records before deleting archives.
pub const PRUNED_EVENT: &str = "audit_pruned";
/// The active file is archived once it is this large, unless `audit.rotate_size` says otherwise.
pub const DEFAULT_ROTATE_SIZE: u64 = 64 << 20;
/// The smallest `audit.rotate_size` the configuration accepts.
pub const MIN_ROTATE_SIZE: u64 = 64 << 10;
/// The shortest retention the station accepts: EHDS (Regulation (EU) 2025/327, Art. 73) asks
/// that access and activity logs be kept for at least a year.
pub const MIN_RETENTION_DAYS: u32 = 365;

/// When the active file is archived, by date as well as by size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RotateEvery {
    #[default]
    Never,
    Day,
    Month,
}

/// How the log is kept (`audit:` in the station configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    /// Archive the active file once it holds this many bytes; `None` never by size.
    pub rotate_size: Option<u64>,
    /// Archive the active file when the day or month of its first entry has passed.
    pub rotate_every: RotateEvery,
    /// Delete archives whose every entry is older than this many days; `None` keeps everything.
    pub retention_days: Option<u32>,
    /// How often the daemon sends the hub a signed checkpoint of the log (besides one with
    /// every delivery).
    pub checkpoint_every: std::time::Duration,
}

/// How often the daemon sends a checkpoint unless `audit.checkpoint_every` says otherwise.
pub const DEFAULT_CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

impl Default for AuditSettings {
    fn default() -> AuditSettings {
        AuditSettings {
            rotate_size: Some(DEFAULT_ROTATE_SIZE),
            rotate_every: RotateEvery::Never,
            retention_days: None,
            checkpoint_every: DEFAULT_CHECKPOINT_EVERY,
        }
    }
}

impl AuditSettings {
    /// Whether the active file, `log_len` bytes long, is to be archived before the next entry.
    pub(super) fn rotation_due(
        &self,
        path: &Path,
        log_len: u64,
        now: DateTime<Utc>,
    ) -> Result<bool, AuditError> {
        if self.rotate_size.is_some_and(|max| log_len >= max) {
            return Ok(true);
        }
        if self.rotate_every == RotateEvery::Never {
            return Ok(false);
        }
        let Some(first) = first_entry(path)? else {
            return Ok(false);
        };
        let (then, now) = (first.time.date_naive(), now.date_naive());
        Ok(match self.rotate_every {
            RotateEvery::Never => false,
            RotateEvery::Day => then != now,
            RotateEvery::Month => (then.year(), then.month()) != (now.year(), now.month()),
        })
    }
}

fn read_error(path: &Path) -> impl FnOnce(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Read {
        path: path.to_path_buf(),
        source,
    }
}

fn write_error(path: &Path) -> impl FnOnce(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Write {
        path: path.to_path_buf(),
        source,
    }
}

/// `audit.000042.log` for the active file `audit.log` and number 42.
fn archive_path(path: &Path, number: u32) -> PathBuf {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!("{stem}.{number:06}.log"))
}

/// The archives of the active file at `path`, oldest first, with their numbers.
pub(super) fn archives(path: &Path) -> Result<Vec<(u32, PathBuf)>, AuditError> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let prefix = format!("{stem}.");
    let mut found = Vec::new();
    let listing = match std::fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(read_error(dir)(e)),
    };
    for item in listing {
        let item = item.map_err(read_error(dir))?;
        let name = item.file_name().to_string_lossy().into_owned();
        let number = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".log"))
            .filter(|digits| digits.len() >= 6 && digits.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|digits| digits.parse::<u32>().ok());
        if let Some(number) = number {
            found.push((number, item.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// Every file of the log, oldest first: the archives, then the active file if it exists.
pub(super) fn log_files(path: &Path) -> Result<Vec<PathBuf>, AuditError> {
    let mut files: Vec<PathBuf> = archives(path)?.into_iter().map(|(_, p)| p).collect();
    if path.exists() || files.is_empty() {
        files.push(path.to_path_buf());
    }
    Ok(files)
}

fn parse_line(path: &Path, line_number: usize, line: &str) -> Result<AuditEntry, AuditError> {
    serde_json::from_str(line).map_err(|e| AuditError::Broken {
        path: path.to_path_buf(),
        line: line_number,
        problem: format!("not a valid audit entry ({e})"),
    })
}

/// The first entry of a file, if it has one.
pub(super) fn first_entry(path: &Path) -> Result<Option<AuditEntry>, AuditError> {
    use std::io::BufRead as _;
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_error(path)(e)),
    };
    let mut line = String::new();
    std::io::BufReader::new(file)
        .read_line(&mut line)
        .map_err(read_error(path))?;
    if !line.ends_with('\n') {
        return Ok(None);
    }
    parse_line(path, 1, line.trim_end()).map(Some)
}

/// The last entry of an archive (archives hold whole lines only).
pub(super) fn last_entry(path: &Path) -> Result<AuditEntry, AuditError> {
    let text = std::fs::read_to_string(path).map_err(read_error(path))?;
    let n_lines = text.lines().count();
    match text.lines().last() {
        Some(line) => parse_line(path, n_lines, line),
        None => Err(AuditError::Broken {
            path: path.to_path_buf(),
            line: 1,
            problem: "an archived audit file holds no entries".into(),
        }),
    }
}

/// Where the active file's part of the chain starts: after the newest archive's last entry.
pub(super) fn active_start(path: &Path) -> Result<ChainStart, AuditError> {
    match archives(path)?.last() {
        Some((_, newest)) => Ok(ChainStart::after(&last_entry(newest)?)),
        None => Ok(ChainStart::genesis()),
    }
}

/// Archives the retention period lets go, and the `audit_pruned` entry that records it.
#[derive(Debug)]
pub(super) struct Pruned {
    files: Vec<PathBuf>,
    next: ChainStart,
    retention_days: u32,
    cutoff: DateTime<Utc>,
}

impl Pruned {
    pub(super) fn event(&self) -> AuditEvent {
        let names: Vec<String> = self.files.iter().map(|p| file_name(p)).collect();
        AuditEvent::new("audit-log", PRUNED_EVENT)
            .detail("files", names)
            .detail("next_seq", self.next.seq)
            .detail("next_prev_hash", self.next.prev_hash.clone())
            .detail("retention_days", self.retention_days)
            .detail("older_than", self.cutoff.to_rfc3339())
    }

    /// Deletes the archives (after [`Pruned::event`] is in the log). A file that cannot be
    /// deleted stays, which verification accepts; retention tries again at the next rotation.
    pub(super) fn delete(self) {
        for path in &self.files {
            if let Err(error) = std::fs::remove_file(path) {
                tracing::warn!(file = %path.display(), %error, "retention could not delete an archived audit file; it is kept");
            }
        }
        if let Some(first) = self.files.first() {
            let _ = pht_fs::sync_parent(first);
        }
    }
}

pub(super) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

impl AuditLog {
    /// Archives the active file (held under the log's lock), and returns what retention lets
    /// go, which the caller records and then deletes.
    pub(super) fn rotate(&self, tail: &Tail) -> Result<Option<Pruned>, AuditError> {
        let mut archived = archives(&self.path)?;
        let number = archived.last().map_or(1, |(n, _)| n + 1);
        let target = archive_path(&self.path, number);
        std::fs::rename(&self.path, &target).map_err(write_error(&self.path))?;
        pht_fs::sync_parent(&self.path).map_err(write_error(&self.path))?;
        // The head now describes an empty active file after the archive's last entry. A crash
        // before this line leaves a head whose length is the archive's, which the next append
        // resolves by reading the (empty) active file.
        write_head(
            &self.head_path,
            tail.next_seq.saturating_sub(1),
            &tail.last_hash,
            0,
        )
        .map_err(write_error(&self.head_path))?;
        tracing::info!(archive = %target.display(), "audit log archived; a new file continues the chain");
        archived.push((number, target));
        let Some(days) = self.settings.retention_days else {
            return Ok(None);
        };
        let cutoff = (self.clock)() - chrono::Duration::days(i64::from(days));
        let mut doomed = Vec::new();
        let mut next = None;
        // The newest archive is never deleted: it anchors the active file's chain.
        for (_, archive) in &archived[..archived.len() - 1] {
            let last = last_entry(archive)?;
            if last.time >= cutoff {
                break;
            }
            doomed.push(archive.clone());
            next = Some(ChainStart::after(&last));
        }
        Ok(next.map(|next| Pruned {
            files: doomed,
            next,
            retention_days: days,
            cutoff,
        }))
    }
}

/// The start a file's own first line claims (used only for the oldest file, which retention
/// may have left starting after entry 0).
fn claimed_start(text: &str) -> ChainStart {
    text.lines()
        .next()
        .and_then(|line| serde_json::from_str::<AuditEntry>(line).ok())
        .map_or_else(ChainStart::genesis, |entry| ChainStart {
            seq: entry.seq,
            prev_hash: entry.prev_hash,
        })
}

fn broken(
    mut files: Vec<String>,
    file: String,
    entries: u64,
    line: usize,
    problem: String,
) -> Verification {
    if !files.contains(&file) {
        files.push(file.clone());
    }
    Verification {
        entries,
        last_hash: String::new(),
        problem: Some((line, problem)),
        interrupted_append: None,
        files,
        problem_file: Some(file),
    }
}

/// Where the chain begins after the deletion an `audit_pruned` entry records.
fn pruned_to_of(entry: &AuditEntry) -> Option<ChainStart> {
    if entry.event != PRUNED_EVENT {
        return None;
    }
    let seq = entry.details.get("next_seq")?.as_u64()?;
    let prev_hash = entry.details.get("next_prev_hash")?.as_str()?.to_string();
    Some(ChainStart { seq, prev_hash })
}

/// Verifies every file of the log at `path` as one chain (see [`AuditLog::verify_file`]).
pub(super) fn verify_all(path: &Path) -> Result<Verification, AuditError> {
    let archived = archives(path)?;
    let mut files = Vec::new();
    let mut start: Option<ChainStart> = None;
    let mut first: Option<(ChainStart, String)> = None;
    let mut pruned_to: Vec<ChainStart> = Vec::new();
    let mut total = 0u64;
    let continuity = |problem: String, line: usize, previous: Option<&String>| {
        match previous {
        Some(previous) if line == 1 => format!(
            "{problem}; this file does not continue the chain where {previous} ends: a file in between was deleted, or that one was cut short"
        ),
        _ => problem,
    }
    };
    for (_, archive) in &archived {
        let name = file_name(archive);
        let text = std::fs::read_to_string(archive).map_err(read_error(archive))?;
        let file_start = match &start {
            Some(start) => start.clone(),
            None => {
                let claimed = claimed_start(&text);
                first = Some((claimed.clone(), name.clone()));
                claimed
            }
        };
        let verification = verify_chain(&text, &file_start, None, &mut |entry| {
            pruned_to.extend(pruned_to_of(entry))
        });
        if let Some((line, problem)) = verification.problem {
            let problem = continuity(problem, line, files.last());
            return Ok(broken(files, name, total, line, problem));
        }
        if verification.entries == 0 || !text.ends_with('\n') {
            let problem = "an archived audit file must hold whole entries and at least one".into();
            return Ok(broken(files, name, total, 1, problem));
        }
        total += verification.entries;
        start = Some(ChainStart {
            seq: file_start.seq + verification.entries,
            prev_hash: verification.last_hash,
        });
        files.push(name);
    }
    if archived.is_empty() && !path.exists() {
        return Err(read_error(path)(std::io::Error::from(
            std::io::ErrorKind::NotFound,
        )));
    }
    let name = file_name(path);
    let bytes = read_log(path)?;
    let active_start = match &start {
        Some(start) => start.clone(),
        None => {
            let claimed = claimed_start(&String::from_utf8_lossy(&bytes));
            first = Some((claimed.clone(), name.clone()));
            claimed
        }
    };
    let head = read_head(&path.with_extension("head"));
    let judged = classify(&bytes, &active_start, head.as_ref(), &mut |entry| {
        pruned_to.extend(pruned_to_of(entry))
    });
    let mut verification = match judged {
        Ok((mut verification, _, repair)) => {
            verification.interrupted_append = repair.map(|repair| match repair {
                Repair::TornAppend { bytes_removed } => format!("the last append was cut off after {bytes_removed} bytes; the station removes them when it next writes"),
                Repair::UnacknowledgedAppend { seq } => format!("entry {seq} was written but not acknowledged in the head file; the station acknowledges it when it next writes"),
            });
            verification
        }
        Err((line, problem)) => {
            let problem = continuity(problem, line, files.last());
            return Ok(broken(files, name, total, line, problem));
        }
    };
    files.push(name);
    if let Some((first_start, first_file)) = first {
        if first_start != ChainStart::genesis() && !pruned_to.contains(&first_start) {
            let problem = format!(
                "the log begins at entry {} instead of entry 0, and no retention record (`{PRUNED_EVENT}`) accounts for the entries before it: the oldest audit files were deleted",
                first_start.seq
            );
            return Ok(broken(files, first_file, 0, 1, problem));
        }
    }
    verification.entries += total;
    verification.files = files;
    Ok(verification)
}
