//! Sealing: a station packs files into the archive, signs their provenance and encrypts the
//! whole to its recipients.
//!
//! Owns the checks a station must pass before anything leaves it (safe, unique paths; only
//! checked files released; a JSON report; valid recipients) and the bundle's member order, so
//! that a bundle depends only on its contents. It does not verify or open bundles (`opening`)
//! and does not write the archive's bytes itself (`ustar`).

use std::collections::BTreeSet;
use std::io::Write;

use age::x25519;

use super::{
    check_relative_path, ustar, Layout, SealError, PROVENANCE_PATH, REPORT_PATH, RESULT_LAYOUT,
    STATE_LAYOUT,
};
use crate::digest::Digest;
use crate::dsse;
use crate::intoto::{
    CheckVerdict, ResultPredicate, StatePredicate, Statement, Subject, IN_TOTO_PAYLOAD_TYPE,
};
use crate::keys::SigningKey;

/// Seals a result: `files` (paths relative to the output directory) and the check report,
/// with provenance signed by `station_key`, encrypted to every age recipient (`age1…`).
///
/// Refuses to release a file whose verdict in `predicate.files` is fail or missing, so that
/// only checked files can leave through this function.
pub fn seal_bundle(
    files: &[(String, Vec<u8>)],
    report_json: &[u8],
    predicate: ResultPredicate,
    station_key: &SigningKey,
    recipients: &[String],
) -> Result<Vec<u8>, SealError> {
    let recipients = parse_recipients(recipients)?;
    serde_json::from_slice::<serde::de::IgnoredAny>(report_json).map_err(|error| {
        SealError::ReportNotJson {
            reason: error.to_string(),
        }
    })?;
    let verdict_by_path = predicate.verdict_by_path();
    for (path, _) in files {
        match verdict_by_path.get(path.as_str()) {
            Some(CheckVerdict::Pass | CheckVerdict::Review) => {}
            Some(CheckVerdict::Fail) if predicate.released.overrides_failed_checks => {}
            Some(CheckVerdict::Fail) => {
                return Err(SealError::FailedFileReleased { path: path.clone() })
            }
            None => return Err(SealError::UncheckedFileReleased { path: path.clone() }),
        }
    }
    let predicate_json = serde_json::to_value(&predicate).expect("a predicate always serialises");
    seal_archive(
        &RESULT_LAYOUT,
        Some(report_json),
        files,
        predicate_json,
        archive_mtime(predicate.finished_at),
        station_key,
        &recipients,
    )
}

/// Seals the state for the next stop of a sequential route, encrypted to that station's age
/// recipient.
pub fn seal_state(
    files: &[(String, Vec<u8>)],
    predicate: StatePredicate,
    station_key: &SigningKey,
    recipient: &str,
) -> Result<Vec<u8>, SealError> {
    let recipients = parse_recipients(&[recipient.to_string()])?;
    let predicate_json = serde_json::to_value(&predicate).expect("a predicate always serialises");
    seal_archive(
        &STATE_LAYOUT,
        None,
        files,
        predicate_json,
        archive_mtime(predicate.finished_at),
        station_key,
        &recipients,
    )
}

fn parse_recipients(recipients: &[String]) -> Result<Vec<x25519::Recipient>, SealError> {
    if recipients.is_empty() {
        return Err(SealError::NoRecipients);
    }
    recipients
        .iter()
        .map(|recipient| {
            crate::recipient::parse_recipient(recipient).map_err(SealError::InvalidRecipient)
        })
        .collect()
}

/// The archive members' modification time: when the run finished, so that a bundle depends
/// only on its inputs.
fn archive_mtime(finished_at: chrono::DateTime<chrono::Utc>) -> u64 {
    u64::try_from(finished_at.timestamp()).unwrap_or(0)
}

fn seal_archive(
    layout: &Layout,
    report_json: Option<&[u8]>,
    files: &[(String, Vec<u8>)],
    predicate: serde_json::Value,
    mtime: u64,
    station_key: &SigningKey,
    recipients: &[x25519::Recipient],
) -> Result<Vec<u8>, SealError> {
    let mut seen_paths = BTreeSet::new();
    for (path, _) in files {
        check_relative_path(path).map_err(|problem| SealError::UnsafePath {
            path: path.clone(),
            problem,
        })?;
        if !seen_paths.insert(path.as_str()) {
            return Err(SealError::DuplicatePath { path: path.clone() });
        }
    }
    // Members in a fixed order (report, then files by path, provenance last) so that a bundle
    // depends only on its contents. Provenance goes last because it is computed from the rest.
    let mut members: Vec<(String, &[u8])> = Vec::with_capacity(files.len() + 1);
    if let Some(report_json) = report_json {
        members.push((REPORT_PATH.to_string(), report_json));
    }
    let mut sorted_files: Vec<&(String, Vec<u8>)> = files.iter().collect();
    sorted_files.sort_by(|left, right| left.0.cmp(&right.0));
    for (path, contents) in sorted_files {
        members.push((format!("{}/{path}", layout.files_dir), contents.as_slice()));
    }
    let headers = members
        .iter()
        .map(|(path, contents)| ustar::header(path, contents.len() as u64, mtime))
        .collect::<Result<Vec<_>, _>>()?;

    let n_member_bytes: usize = members
        .iter()
        .map(|(_, contents)| ustar::BLOCK_SIZE + ustar::padded_len(contents.len()))
        .sum();
    // The provenance adds about 200 bytes per subject; age adds a 16-byte tag to every 64 KiB
    // chunk and a header of a few hundred bytes.
    let n_archive_bytes_estimate = n_member_bytes + 256 * members.len() + 8192;
    let n_sealed_bytes_estimate = n_archive_bytes_estimate + n_archive_bytes_estimate / 4096;

    let encryption_error = |error: std::io::Error| SealError::Encryption {
        reason: error.to_string(),
    };
    let encryptor = age::Encryptor::with_recipients(
        recipients
            .iter()
            .map(|recipient| recipient as &dyn age::Recipient),
    )
    .map_err(|error| SealError::Encryption {
        reason: error.to_string(),
    })?;
    let mut writer = encryptor
        .wrap_output(Vec::with_capacity(n_sealed_bytes_estimate))
        .map_err(encryption_error)?;
    // Hashing and encryption each read every byte once and are independent until the
    // provenance, which goes last: hash on a second thread while the members are encrypted.
    // When no thread can be started, hash afterwards on this one.
    let hash_members = || {
        members
            .iter()
            .map(|(path, contents)| Subject::sha256(path.clone(), &Digest::of(contents)))
            .collect::<Vec<Subject>>()
    };
    let subjects = std::thread::scope(|scope| {
        let hashing = std::thread::Builder::new()
            .name("seal-hash".into())
            .spawn_scoped(scope, hash_members)
            .ok();
        for (header, (_, contents)) in headers.iter().zip(&members) {
            ustar::write_member(&mut writer, header, contents).map_err(encryption_error)?;
        }
        Ok(match hashing {
            Some(hashing) => hashing.join().expect("hashing does not panic"),
            None => hash_members(),
        })
    })?;
    let statement = Statement::new(subjects, layout.predicate_type, predicate);
    let statement_json = serde_json::to_vec(&statement).expect("a statement always serialises");
    let envelope = dsse::sign(station_key, IN_TOTO_PAYLOAD_TYPE, &statement_json);
    let envelope_json = serde_json::to_vec(&envelope).expect("an envelope always serialises");
    let provenance_header = ustar::header(PROVENANCE_PATH, envelope_json.len() as u64, mtime)?;
    ustar::write_member(&mut writer, &provenance_header, &envelope_json)
        .map_err(encryption_error)?;
    writer
        .write_all(&ustar::END_OF_ARCHIVE)
        .map_err(encryption_error)?;
    writer.finish().map_err(encryption_error)
}
