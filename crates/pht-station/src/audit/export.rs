//! A signed extract of the audit log for an auditor: the entries of a date range, the log's
//! head when exported, and the station's public key, in a DSSE envelope signed by the station
//! key. It verifies on its own (`pht-station audit verify-export`): the signature, that the
//! file is byte for byte what the station wrote, and the hash chain of the entries it holds.

use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};
use pht_core::{PublicKey, SigningKey};
use serde::{Deserialize, Serialize};

use super::{entry_hash, AuditEntry, AuditError, AuditLog};

/// The DSSE payload type of an export.
pub const EXPORT_PAYLOAD_TYPE: &str = "application/vnd.pht.audit-export.v1+json";
/// The `format` field of an export's payload.
pub const EXPORT_FORMAT: &str = "pht.audit-export.v1";

/// The last entry of the whole log when the extract was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogHead {
    pub seq: u64,
    pub hash: String,
}

/// What an export holds (the signed payload).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditExport {
    pub format: String,
    pub station_id: String,
    /// First and last day included (UTC), as asked.
    pub since: NaiveDate,
    pub until: NaiveDate,
    pub exported_at: DateTime<Utc>,
    /// The whole log's last entry at export; `None` for an empty log.
    pub log_head: Option<LogHead>,
    /// The station's public key (PEM), which signed this extract.
    pub station_key: String,
    pub entries: Vec<AuditEntry>,
}

/// What was written or verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportSummary {
    pub file: PathBuf,
    pub station_id: String,
    pub since: NaiveDate,
    pub until: NaiveDate,
    pub entries: usize,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// The id of the key that signed it (compare with the station's published `station.pub`).
    pub key_id: String,
    /// Whether the signing key was checked against one the auditor gave (`--key`).
    pub key_pinned: bool,
}

/// Why an export could not be written, or does not verify.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("the audit log does not verify ({problem}); an export would lend it credibility, so none was written. Run `pht-station audit verify` and investigate")]
    Broken { problem: String },
    #[error("--since {since} is after --until {until}")]
    Range { since: NaiveDate, until: NaiveDate },
    #[error("the station has no signing key in its key directory; run `pht-station keys init`")]
    NoKey,
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the audit export {} does NOT verify: {problem}", path.display())]
    Invalid { path: PathBuf, problem: String },
}

/// Writes the entries of days `since..=until` (UTC) of the log at `log_path` to `out`, signed
/// with `key`. Refuses a log that does not verify.
pub fn write_export(
    log_path: &Path,
    out: &Path,
    station_id: &str,
    key: &SigningKey,
    since: NaiveDate,
    until: NaiveDate,
) -> Result<ExportSummary, ExportError> {
    if since > until {
        return Err(ExportError::Range { since, until });
    }
    let verification = AuditLog::verify_file(log_path)?;
    if let Some((line, problem)) = &verification.problem {
        let file = verification.problem_file.as_deref().unwrap_or("audit.log");
        return Err(ExportError::Broken {
            problem: format!("{file} line {line}: {problem}"),
        });
    }
    let all = AuditLog::read_entries(log_path, None)?;
    let log_head = all.last().map(|entry| LogHead {
        seq: entry.seq,
        hash: entry.hash.clone(),
    });
    // A contiguous stretch of the chain: from the first entry of the range to the last, so a
    // clock set back meanwhile cannot leave holes in it.
    let in_range = |entry: &AuditEntry| (since..=until).contains(&entry.time.date_naive());
    let entries = match (
        all.iter().position(in_range),
        all.iter().rposition(in_range),
    ) {
        (Some(first), Some(last)) => all[first..=last].to_vec(),
        _ => Vec::new(),
    };
    let export = AuditExport {
        format: EXPORT_FORMAT.into(),
        station_id: station_id.to_string(),
        since,
        until,
        exported_at: Utc::now(),
        log_head,
        station_key: key.public_key().to_pem(),
        entries,
    };
    let payload = serde_json::to_vec(&export).expect("exports always serialise");
    let envelope = pht_core::dsse::sign(key, EXPORT_PAYLOAD_TYPE, &payload);
    let mut bytes = serde_json::to_vec(&envelope).expect("envelopes always serialise");
    bytes.push(b'\n');
    pht_fs::write_atomic(out, &bytes).map_err(|source| ExportError::Write {
        path: out.to_path_buf(),
        source,
    })?;
    Ok(summary(out, &export, key.public_key().key_id(), false))
}

fn summary(file: &Path, export: &AuditExport, key_id: String, key_pinned: bool) -> ExportSummary {
    ExportSummary {
        file: file.to_path_buf(),
        station_id: export.station_id.clone(),
        since: export.since,
        until: export.until,
        entries: export.entries.len(),
        first_seq: export.entries.first().map(|e| e.seq),
        last_seq: export.entries.last().map(|e| e.seq),
        key_id,
        key_pinned,
    }
}

/// Verifies an export on its own: the station's signature (by `pinned` when given, otherwise
/// by the key the export names, whose id is reported for the auditor to compare), that the
/// file is exactly what the station wrote, and the hash chain of its entries.
pub fn verify_export(
    path: &Path,
    pinned: Option<&PublicKey>,
) -> Result<(ExportSummary, AuditExport), ExportError> {
    let invalid = |problem: String| ExportError::Invalid {
        path: path.to_path_buf(),
        problem,
    };
    let bytes = std::fs::read(path).map_err(|source| ExportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let envelope: pht_core::dsse::Envelope = serde_json::from_slice(&bytes)
        .map_err(|e| invalid(format!("not a DSSE envelope ({e})")))?;
    let mut canonical = serde_json::to_vec(&envelope).expect("envelopes always serialise");
    canonical.push(b'\n');
    if canonical != bytes {
        return Err(invalid(
            "the file is not byte for byte the envelope the station wrote (its layout or encoding was changed)".into(),
        ));
    }
    use base64::Engine as _;
    let payload = base64::engine::general_purpose::STANDARD
        .decode(&envelope.payload)
        .map_err(|_| invalid("its payload is not valid base64".into()))?;
    let export: AuditExport = serde_json::from_slice(&payload)
        .map_err(|e| invalid(format!("its payload is not an audit export ({e})")))?;
    if serde_json::to_vec(&export).expect("exports always serialise") != payload {
        return Err(invalid(
            "its payload is not in the form the station writes".into(),
        ));
    }
    if export.format != EXPORT_FORMAT {
        return Err(invalid(format!(
            "format `{}`, expected `{EXPORT_FORMAT}`",
            export.format
        )));
    }
    let named = PublicKey::from_pem(&export.station_key)
        .map_err(|e| invalid(format!("station_key is not a public key ({e})")))?;
    let key = match pinned {
        Some(pinned) if pinned.key_id() != named.key_id() => {
            return Err(invalid(format!(
                "it was signed by key {}, not by the station key you gave ({})",
                named.key_id(),
                pinned.key_id()
            )))
        }
        Some(pinned) => pinned.clone(),
        None => named,
    };
    let key_id = key.key_id();
    if envelope.signatures.len() != 1 || envelope.signatures[0].keyid != key_id {
        return Err(invalid(format!(
            "it must carry exactly one signature, by key {key_id}"
        )));
    }
    let trusted = [("station".to_string(), key)];
    pht_core::dsse::verify(&envelope, EXPORT_PAYLOAD_TYPE, &trusted)
        .map_err(|e| invalid(format!("the signature does not verify ({e})")))?;
    let mut previous: Option<&AuditEntry> = None;
    for entry in &export.entries {
        if entry_hash(entry) != entry.hash {
            return Err(invalid(format!(
                "entry {}: its hash does not match its contents",
                entry.seq
            )));
        }
        if let Some(previous) = previous {
            if entry.seq != previous.seq + 1 || entry.prev_hash != previous.hash {
                return Err(invalid(format!(
                    "entry {} does not follow entry {}: the extract has a hole",
                    entry.seq, previous.seq
                )));
            }
        }
        previous = Some(entry);
    }
    if let (Some(last), Some(head)) = (export.entries.last(), &export.log_head) {
        if last.seq > head.seq {
            return Err(invalid(format!(
                "entry {} lies beyond the log's head at export ({})",
                last.seq, head.seq
            )));
        }
    }
    let summary = summary(path, &export, key_id, pinned.is_some());
    Ok((summary, export))
}
