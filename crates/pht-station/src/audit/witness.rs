//! Checking the audit log against checkpoints someone else holds: the hub's (each signed by
//! this station's key when it was sent) or the one in a sealed provenance a researcher has.
//!
//! A log rewritten whole and consistently (every hash and the head recomputed, as root at the
//! station could) passes the chain check, but no longer has the witnessed hash at a witnessed
//! sequence number, or ends before one. Owns reading checkpoints and that comparison.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use pht_core::checkpoint::Checkpoint;
use pht_core::dsse::Envelope;
use pht_core::intoto::AuditCheckpointRef;
use pht_core::PublicKey;
use serde::Serialize;

use super::{AuditError, AuditLog};

/// A checkpoint to compare the log with, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Witnessed {
    pub seq: u64,
    pub head_hash: String,
    pub time: DateTime<Utc>,
    pub source: String,
}

/// What the comparison found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WitnessCheck {
    /// Checkpoints the log agrees with.
    pub agreed: usize,
    /// Checkpoints of entries retention has since deleted (nothing to compare).
    pub pruned: usize,
    /// One sentence per checkpoint the log contradicts.
    pub problems: Vec<String>,
}

/// Checkpoints signed by the station (`key`), as the hub returns them.
pub fn from_envelopes(
    envelopes: &[Envelope],
    station_id: &str,
    key: &PublicKey,
    source: &str,
) -> Result<Vec<Witnessed>, String> {
    envelopes
        .iter()
        .enumerate()
        .map(|(idx, envelope)| {
            let checkpoint = Checkpoint::verify(envelope, station_id, key)
                .map_err(|e| format!("checkpoint {} from {source}: {e}", idx + 1))?;
            Ok(Witnessed {
                seq: checkpoint.seq,
                head_hash: checkpoint.head_hash,
                time: checkpoint.time,
                source: source.to_string(),
            })
        })
        .collect()
}

/// Reads a checkpoints file: a JSON array (or one item) of signed checkpoints (DSSE envelopes,
/// as `GET …/checkpoints` returns them, verified with `key`) or of `{seq, head_hash, time}`
/// records as a sealed provenance's `audit_checkpoint` holds them (taken as given: the
/// provenance they came from is verified by whoever took them out).
pub fn read_file(path: &Path, station_id: &str, key: &PublicKey) -> Result<Vec<Witnessed>, String> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {source}: {e}"))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{source}: not JSON ({e})"))?;
    let items = match value {
        serde_json::Value::Array(items) => items,
        item => vec![item],
    };
    let mut witnessed = Vec::new();
    for (idx, item) in items.into_iter().enumerate() {
        if item.get("payloadType").is_some() {
            let envelope: Envelope = serde_json::from_value(item)
                .map_err(|e| format!("{source}: item {}: not a DSSE envelope ({e})", idx + 1))?;
            witnessed.extend(from_envelopes(&[envelope], station_id, key, &source)?);
        } else {
            let reference: AuditCheckpointRef = serde_json::from_value(item).map_err(|e| {
                format!("{source}: item {}: neither a signed checkpoint nor {{seq, head_hash, time}} ({e})", idx + 1)
            })?;
            witnessed.push(Witnessed {
                seq: reference.seq,
                head_hash: reference.head_hash,
                time: reference.time,
                source: source.clone(),
            });
        }
    }
    Ok(witnessed)
}

/// Compares the log at `path` (every file) with `witnessed`.
pub fn check(path: &Path, witnessed: &[Witnessed]) -> Result<WitnessCheck, AuditError> {
    Ok(check_entries(
        &AuditLog::read_entries(path, None)?,
        witnessed,
        true,
    ))
}

/// Compares `entries` (a log, or an export's stretch of one) with `witnessed`. With
/// `whole_log`, a checkpoint beyond the last entry means entries were removed; for an export
/// such checkpoints (and those before its first entry) lie outside it and are not counted.
pub fn check_entries(
    entries: &[super::AuditEntry],
    witnessed: &[Witnessed],
    whole_log: bool,
) -> WitnessCheck {
    let first_seq = entries.first().map_or(0, |entry| entry.seq);
    let last_seq = entries.last().map(|entry| entry.seq);
    let hashes: BTreeMap<u64, &str> = entries
        .iter()
        .map(|entry| (entry.seq, entry.hash.as_str()))
        .collect();
    let mut result = WitnessCheck {
        agreed: 0,
        pruned: 0,
        problems: Vec::new(),
    };
    for checkpoint in witnessed {
        if checkpoint.seq < first_seq {
            result.pruned += usize::from(whole_log);
            continue;
        }
        if !whole_log && last_seq.is_none_or(|last| checkpoint.seq > last) {
            continue;
        }
        match hashes.get(&checkpoint.seq) {
            Some(hash) if *hash == checkpoint.head_hash => result.agreed += 1,
            Some(hash) => result.problems.push(format!(
                "entry {} has hash {hash}, but {} witnessed {} at {}: the log was rewritten",
                checkpoint.seq, checkpoint.source, checkpoint.head_hash, checkpoint.time
            )),
            None => result.problems.push(format!(
                "{} witnessed entry {} at {}, but the log ends at entry {}: entries were removed",
                checkpoint.source,
                checkpoint.seq,
                checkpoint.time,
                last_seq.map_or("none".to_string(), |seq| seq.to_string())
            )),
        }
    }
    result
}
