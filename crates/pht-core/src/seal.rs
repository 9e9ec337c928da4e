//! Sealed bundles: what leaves a station, packed, signed and encrypted, and how it is opened.
//!
//! Owns the bundle layout and both directions over bytes:
//!
//! - a **result bundle** (`seal_bundle` / `open_bundle`) is an uncompressed ustar archive with
//!   `report.json` (the output checks' report), `outputs/<path>` for every released file and,
//!   last, `provenance.dsse.json`: a DSSE envelope signed by the station over an in-toto
//!   Statement whose subjects are every other member with its SHA-256 and whose predicate is
//!   [`ResultPredicate`]. The archive is encrypted with age (binary format) to every recipient.
//! - a **state bundle** (`seal_state` / `open_state`) is the same mechanism for the state one
//!   stop of a sequential route hands to the next: `state/<path>` members, a
//!   [`StatePredicate`], encrypted to the next station's age recipient.
//!
//! Opening refuses anything but regular files at safe relative paths, verifies the signature
//! against named station keys and checks that the signed subjects and the archive's members are
//! the same set with the same hashes. Every refusal says what failed and what to do.
//!
//! This module does no I/O: no files, no clock, no network. Where bundles are stored, how they
//! travel and which station keys to trust are the callers' business. It writes and reads the
//! ustar format itself, because the reader must accept only the narrow subset the writer
//! produces (no links, no PAX or GNU extension headers, no directories).

use std::collections::BTreeSet;
use std::fmt;
use std::io::{Read as _, Write};

use age::x25519;

use crate::digest::Digest;
use crate::dsse::{self, DsseError, Envelope};
use crate::intoto::{
    CheckVerdict, ResultPredicate, StatePredicate, Statement, Subject, SubjectError,
    IN_TOTO_PAYLOAD_TYPE, RESULT_PREDICATE_TYPE_V1, STATEMENT_TYPE_V1, STATE_PREDICATE_TYPE_V1,
};
use crate::keys::{PublicKey, SigningKey};

/// The check report's path in a result bundle.
pub const REPORT_PATH: &str = "report.json";
/// The signed provenance's path in every bundle.
pub const PROVENANCE_PATH: &str = "provenance.dsse.json";
/// The directory of released outputs in a result bundle.
pub const OUTPUTS_DIR: &str = "outputs";
/// The directory of state files in a state bundle.
pub const STATE_DIR: &str = "state";

/// The most members an archive may hold when opened (bounds the work a hostile archive causes).
pub const MAX_ARCHIVE_ENTRIES: usize = 65_536;
/// The largest provenance envelope accepted when opening: ample for the entry limit above.
pub const MAX_PROVENANCE_BYTES: usize = 64 << 20;
/// The most signatures a provenance envelope may carry (a station signs once; this bounds the
/// verification work a hostile envelope causes).
pub const MAX_ENVELOPE_SIGNATURES: usize = 16;
/// The largest single file a bundle can hold: what the ustar size field can express.
pub const MAX_FILE_BYTES: u64 = 0o77777777777;

// ---------------------------------------------------------------------------------------------
// Paths

/// Why a path may not appear in a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathProblem {
    #[error("it is empty")]
    Empty,
    #[error("it is absolute")]
    Absolute,
    #[error("it has an empty component (`//` or a trailing `/`)")]
    EmptyComponent,
    #[error("it has a `.` or `..` component")]
    DotComponent,
    #[error("it contains a backslash, which some systems read as a separator")]
    Backslash,
    #[error("it contains a NUL byte or another control character")]
    ControlCharacter,
}

/// Checks that `path` is a plain relative path: non-empty, not absolute, no empty, `.` or `..`
/// components, no backslashes or control characters. Such a path stays below any directory it
/// is joined to.
pub fn check_relative_path(path: &str) -> Result<(), PathProblem> {
    if path.is_empty() {
        return Err(PathProblem::Empty);
    }
    if path.starts_with('/') {
        return Err(PathProblem::Absolute);
    }
    if path.contains('\\') {
        return Err(PathProblem::Backslash);
    }
    if path.chars().any(char::is_control) {
        return Err(PathProblem::ControlCharacter);
    }
    for component in path.split('/') {
        match component {
            "" => return Err(PathProblem::EmptyComponent),
            "." | ".." => return Err(PathProblem::DotComponent),
            _ => {}
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Errors

/// Why a bundle could not be sealed. These are the sealing station's mistakes, not attacks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error(
        "file {path:?} cannot be sealed: {problem}; give paths relative to the output directory"
    )]
    UnsafePath { path: String, problem: PathProblem },
    #[error("file `{path}` is given twice; each file is sealed once")]
    DuplicatePath { path: String },
    #[error("file `{path}` has a path too long for the bundle archive ({n_bytes} bytes in the bundle; at most 255, with a last component of at most 100)")]
    PathTooLong { path: String, n_bytes: usize },
    #[error(
        "file `{path}` is {n_bytes} bytes; a bundle member can hold at most {MAX_FILE_BYTES} bytes"
    )]
    FileTooLarge { path: String, n_bytes: u64 },
    #[error("the check report is not JSON ({reason}); seal the report the output checks wrote")]
    ReportNotJson { reason: String },
    #[error("file `{path}` has the check verdict fail and must not be released; withhold it")]
    FailedFileReleased { path: String },
    #[error("file `{path}` has no verdict in the provenance; only checked files may be released")]
    UncheckedFileReleased { path: String },
    #[error("no age recipient was given; a bundle is encrypted to at least one recipient")]
    NoRecipients,
    #[error("`{recipient}` is not an age X25519 recipient (`age1…`): {reason}")]
    InvalidRecipient {
        recipient: String,
        reason: &'static str,
    },
    #[error("age encryption failed: {reason}")]
    Encryption { reason: String },
}

/// Why a bundle's archive was refused. A station never writes such an archive, so each of these
/// means the bundle was altered or made by something else.
///
/// Names that have not passed [`check_relative_path`] are printed quoted and escaped, so that
/// control characters in a hostile name cannot reach the reader's terminal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    #[error("it ends at byte {offset} without an end-of-archive marker")]
    Truncated { offset: usize },
    #[error("entry `{path}` claims {n_bytes} bytes but the archive ends first")]
    TruncatedEntry { path: String, n_bytes: u64 },
    #[error("the header at byte {offset} is not a ustar header")]
    NotUstar { offset: usize },
    #[error("the header at byte {offset} has a wrong checksum")]
    BadChecksum { offset: usize },
    #[error("the header at byte {offset} has an unreadable {field} field")]
    BadField { offset: usize, field: &'static str },
    #[error("entry {path:?} is a {kind}; only regular files are accepted")]
    NotRegularFile { path: String, kind: &'static str },
    #[error("entry {path:?} is refused: {problem}")]
    UnsafePath { path: String, problem: PathProblem },
    #[error("the entry name at byte {offset} is not UTF-8")]
    NonUtf8Path { offset: usize },
    #[error("entry `{path}` appears twice")]
    Duplicate { path: String },
    #[error("it holds more than {MAX_ARCHIVE_ENTRIES} entries")]
    TooManyEntries,
    #[error("it has data after the end-of-archive marker at byte {offset}")]
    TrailingData { offset: usize },
}

/// Why a bundle was not opened. Each variant names what failed and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("cannot decrypt: not encrypted to this identity (recipient {recipient}), or its header was altered; use the age identity whose recipient the job named")]
    NotForThisIdentity { recipient: String },
    #[error("cannot decrypt: this is not an age-encrypted bundle ({detail}); pass the bundle file as it came from the hub")]
    NotAgeEncrypted { detail: String },
    #[error("cannot decrypt: the bundle is damaged or was altered after sealing ({detail}); fetch it again, and if that fails ask the station to deliver it again")]
    Damaged { detail: String },
    #[error("the bundle's archive is refused: {0}; the bundle was altered or not made by a PHT station, do not use it")]
    Archive(#[from] ArchiveError),
    #[error("the bundle has no `{path}`; it is incomplete or was not made by a PHT station")]
    MissingEntry { path: &'static str },
    #[error(
        "the bundle holds `{path}`, which has no place in a {kind}; it was altered after sealing"
    )]
    UnexpectedEntry { path: String, kind: BundleKind },
    #[error("`{PROVENANCE_PATH}` is not a usable DSSE envelope ({reason}); the bundle was altered or not made by a PHT station")]
    MalformedEnvelope { reason: String },
    #[error("the provenance has DSSE payload type `{actual}`, expected `{IN_TOTO_PAYLOAD_TYPE}`; this is not a PHT bundle")]
    WrongPayloadType { actual: String },
    #[error("provenance is signed by a key that is not among the given station keys (key id {signer_key_ids}; given: {trusted_key_ids}); pass the signing station's public key, or do not trust this bundle")]
    UntrustedSigner {
        signer_key_ids: String,
        trusted_key_ids: String,
    },
    #[error("the signed provenance is not an in-toto statement ({reason}); the station that signed it is broken")]
    MalformedStatement { reason: String },
    #[error("the signed statement has type `{actual}`, expected `{STATEMENT_TYPE_V1}`; this reader is too old or the bundle is not a PHT bundle")]
    WrongStatementType { actual: String },
    #[error("the signed statement has predicate type `{actual}`, expected `{expected}`: this is not a {kind}")]
    WrongPredicateType {
        expected: &'static str,
        actual: String,
        kind: BundleKind,
    },
    #[error("the signed predicate is not a valid {kind} provenance ({reason}); the station that signed it is broken")]
    MalformedPredicate { kind: BundleKind, reason: String },
    #[error("{0}; the station that signed it is broken")]
    Subjects(#[from] SubjectError),
    #[error("{path}: sha256 is {actual} but the signed statement says {signed} — the bundle was altered after sealing")]
    Altered {
        path: String,
        actual: String,
        signed: String,
    },
    #[error(
        "{path} is in the bundle but not in the signed statement — a file was added after sealing"
    )]
    Unlisted { path: String },
    #[error("the signed statement lists {path} but the bundle does not contain it — a file was removed after sealing")]
    Missing { path: String },
}

/// Which kind of bundle, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleKind {
    Result,
    State,
}

impl fmt::Display for BundleKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            BundleKind::Result => "result bundle",
            BundleKind::State => "state bundle",
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Public API

/// A result bundle whose signature verified under a given station key and whose files are
/// exactly the signed ones. Only [`open_bundle`] makes one.
#[derive(Clone)]
pub struct OpenedBundle {
    station: String,
    statement: Statement,
    predicate: ResultPredicate,
    report_json: Vec<u8>,
    files: Vec<(String, Vec<u8>)>,
}

impl OpenedBundle {
    /// The name the caller gave the station key that verified the provenance.
    pub fn station(&self) -> &str {
        &self.station
    }

    /// The signed in-toto statement.
    pub fn statement(&self) -> &Statement {
        &self.statement
    }

    /// The signed provenance predicate.
    pub fn predicate(&self) -> &ResultPredicate {
        &self.predicate
    }

    /// The output checks' report, as the station sealed it.
    pub fn report_json(&self) -> &[u8] {
        &self.report_json
    }

    /// The released files, by path relative to the train's output directory, in path order.
    pub fn files(&self) -> &[(String, Vec<u8>)] {
        &self.files
    }

    /// The released files, taken out of the bundle.
    pub fn into_files(self) -> Vec<(String, Vec<u8>)> {
        self.files
    }
}

impl fmt::Debug for OpenedBundle {
    // File contents are left out: they can be large, and they are results, not diagnostics.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("OpenedBundle")
            .field("station", &self.station)
            .field("predicate", &self.predicate)
            .field("n_report_bytes", &self.report_json.len())
            .field("files", &file_sizes(&self.files))
            .finish()
    }
}

/// A state bundle whose signature verified under a given station key and whose files are
/// exactly the signed ones. Only [`open_state`] makes one.
#[derive(Clone)]
pub struct OpenedState {
    station: String,
    statement: Statement,
    predicate: StatePredicate,
    files: Vec<(String, Vec<u8>)>,
}

impl OpenedState {
    /// The name the caller gave the station key that verified the provenance.
    pub fn station(&self) -> &str {
        &self.station
    }

    pub fn statement(&self) -> &Statement {
        &self.statement
    }

    pub fn predicate(&self) -> &StatePredicate {
        &self.predicate
    }

    /// The state files, by path relative to the state directory, in path order.
    pub fn files(&self) -> &[(String, Vec<u8>)] {
        &self.files
    }

    pub fn into_files(self) -> Vec<(String, Vec<u8>)> {
        self.files
    }
}

impl fmt::Debug for OpenedState {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("OpenedState")
            .field("station", &self.station)
            .field("predicate", &self.predicate)
            .field("files", &file_sizes(&self.files))
            .finish()
    }
}

fn file_sizes(files: &[(String, Vec<u8>)]) -> Vec<(&str, usize)> {
    files
        .iter()
        .map(|(path, contents)| (path.as_str(), contents.len()))
        .collect()
}

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

/// Opens a result bundle with the researcher's age identity and checks it against the given
/// named station keys.
pub fn open_bundle(
    sealed: &[u8],
    identity: &x25519::Identity,
    station_keys: &[(String, PublicKey)],
) -> Result<OpenedBundle, OpenError> {
    let opened = open_archive(&RESULT_LAYOUT, sealed, identity, station_keys)?;
    let predicate = serde_json::from_value::<ResultPredicate>(opened.statement.predicate.clone())
        .map_err(|error| OpenError::MalformedPredicate {
        kind: BundleKind::Result,
        reason: error.to_string(),
    })?;
    Ok(OpenedBundle {
        station: opened.signer,
        statement: opened.statement,
        predicate,
        report_json: opened
            .report_json
            .expect("the result layout requires a report"),
        files: opened.files,
    })
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

/// Opens a state bundle with this station's age identity and checks it against the keys of the
/// stations that may precede it.
pub fn open_state(
    sealed: &[u8],
    identity: &x25519::Identity,
    station_keys: &[(String, PublicKey)],
) -> Result<OpenedState, OpenError> {
    let opened = open_archive(&STATE_LAYOUT, sealed, identity, station_keys)?;
    let predicate = serde_json::from_value::<StatePredicate>(opened.statement.predicate.clone())
        .map_err(|error| OpenError::MalformedPredicate {
            kind: BundleKind::State,
            reason: error.to_string(),
        })?;
    Ok(OpenedState {
        station: opened.signer,
        statement: opened.statement,
        predicate,
        files: opened.files,
    })
}

// ---------------------------------------------------------------------------------------------
// The shared mechanism

/// What distinguishes the two kinds of bundle.
struct Layout {
    kind: BundleKind,
    /// The directory the payload files live in.
    files_dir: &'static str,
    /// Whether `report.json` is part of the bundle.
    has_report: bool,
    predicate_type: &'static str,
}

const RESULT_LAYOUT: Layout = Layout {
    kind: BundleKind::Result,
    files_dir: OUTPUTS_DIR,
    has_report: true,
    predicate_type: RESULT_PREDICATE_TYPE_V1,
};

const STATE_LAYOUT: Layout = Layout {
    kind: BundleKind::State,
    files_dir: STATE_DIR,
    has_report: false,
    predicate_type: STATE_PREDICATE_TYPE_V1,
};

fn parse_recipients(recipients: &[String]) -> Result<Vec<x25519::Recipient>, SealError> {
    if recipients.is_empty() {
        return Err(SealError::NoRecipients);
    }
    recipients
        .iter()
        .map(|recipient| {
            recipient
                .trim()
                .parse::<x25519::Recipient>()
                .map_err(|reason| SealError::InvalidRecipient {
                    recipient: recipient.clone(),
                    reason,
                })
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

/// What [`open_archive`] found, before the predicate is read as its type.
struct OpenedArchive {
    signer: String,
    statement: Statement,
    report_json: Option<Vec<u8>>,
    files: Vec<(String, Vec<u8>)>,
}

fn decrypt(sealed: &[u8], identity: &x25519::Identity) -> Result<Vec<u8>, OpenError> {
    let decryptor = age::Decryptor::new_buffered(sealed).map_err(|error| match error {
        age::DecryptError::UnknownFormat | age::DecryptError::InvalidHeader => {
            OpenError::NotAgeEncrypted {
                detail: error.to_string(),
            }
        }
        other => OpenError::Damaged {
            detail: other.to_string(),
        },
    })?;
    let mut reader = decryptor
        .decrypt(std::iter::once(identity as &dyn age::Identity))
        .map_err(|error| match error {
            age::DecryptError::NoMatchingKeys => OpenError::NotForThisIdentity {
                recipient: identity.to_public().to_string(),
            },
            other => OpenError::Damaged {
                detail: other.to_string(),
            },
        })?;
    let mut plaintext = Vec::with_capacity(sealed.len());
    reader
        .read_to_end(&mut plaintext)
        .map_err(|error| OpenError::Damaged {
            detail: format!("the encrypted payload does not authenticate: {error}"),
        })?;
    Ok(plaintext)
}

fn open_archive(
    layout: &Layout,
    sealed: &[u8],
    identity: &x25519::Identity,
    station_keys: &[(String, PublicKey)],
) -> Result<OpenedArchive, OpenError> {
    let plaintext = decrypt(sealed, identity)?;
    let entries = ustar::read(&plaintext)?;

    let envelope_bytes = entries
        .iter()
        .find(|entry| entry.path == PROVENANCE_PATH)
        .map(|entry| entry.contents)
        .ok_or(OpenError::MissingEntry {
            path: PROVENANCE_PATH,
        })?;
    let (signer, statement) = verify_provenance(layout, envelope_bytes, station_keys)?;

    let mut signed_digests = statement.sha256_subjects()?;
    let mut report_json = None;
    let mut files = Vec::with_capacity(entries.len());
    let files_prefix = format!("{}/", layout.files_dir);
    for entry in &entries {
        if entry.path == PROVENANCE_PATH {
            continue;
        }
        let file_path = entry.path.strip_prefix(&files_prefix);
        let is_report = layout.has_report && entry.path == REPORT_PATH;
        if file_path.is_none() && !is_report {
            return Err(OpenError::UnexpectedEntry {
                path: entry.path.clone(),
                kind: layout.kind,
            });
        }
        let signed =
            signed_digests
                .remove(entry.path.as_str())
                .ok_or_else(|| OpenError::Unlisted {
                    path: entry.path.clone(),
                })?;
        let actual = Digest::of(entry.contents);
        if actual != signed {
            return Err(OpenError::Altered {
                path: entry.path.clone(),
                actual: actual.hex().to_string(),
                signed: signed.hex().to_string(),
            });
        }
        match file_path {
            Some(file_path) => files.push((file_path.to_string(), entry.contents.to_vec())),
            None => report_json = Some(entry.contents.to_vec()),
        }
    }
    if let Some((path, _)) = signed_digests.into_iter().next() {
        return Err(OpenError::Missing {
            path: path.to_string(),
        });
    }
    if layout.has_report && report_json.is_none() {
        return Err(OpenError::MissingEntry { path: REPORT_PATH });
    }
    files.sort_by(|left, right| left.0.cmp(&right.0));
    Ok(OpenedArchive {
        signer,
        statement,
        report_json,
        files,
    })
}

/// Verifies the provenance envelope and returns the verifying key's name and the statement,
/// checked to be an in-toto v1 statement with this layout's predicate type.
fn verify_provenance(
    layout: &Layout,
    envelope_bytes: &[u8],
    station_keys: &[(String, PublicKey)],
) -> Result<(String, Statement), OpenError> {
    if envelope_bytes.len() > MAX_PROVENANCE_BYTES {
        return Err(OpenError::MalformedEnvelope {
            reason: format!(
                "it is {} bytes, more than the {MAX_PROVENANCE_BYTES} accepted",
                envelope_bytes.len()
            ),
        });
    }
    let envelope: Envelope =
        serde_json::from_slice(envelope_bytes).map_err(|error| OpenError::MalformedEnvelope {
            reason: error.to_string(),
        })?;
    if envelope.signatures.len() > MAX_ENVELOPE_SIGNATURES {
        return Err(OpenError::MalformedEnvelope {
            reason: format!(
                "it carries {} signatures, more than the {MAX_ENVELOPE_SIGNATURES} accepted",
                envelope.signatures.len()
            ),
        });
    }
    let verified = dsse::verify(&envelope, IN_TOTO_PAYLOAD_TYPE, station_keys).map_err(
        |error| match error {
            DsseError::PayloadType { actual, .. } => OpenError::WrongPayloadType { actual },
            DsseError::Encoding { field } => OpenError::MalformedEnvelope {
                reason: format!("its {field} is not valid base64"),
            },
            DsseError::Untrusted { trusted, .. } => OpenError::UntrustedSigner {
                signer_key_ids: envelope
                    .signatures
                    .iter()
                    .map(|signature| {
                        if signature.keyid.is_empty() {
                            "(none given)"
                        } else {
                            signature.keyid.as_str()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                trusted_key_ids: if trusted.is_empty() {
                    "no keys".to_string()
                } else {
                    trusted
                },
            },
        },
    )?;
    let statement: Statement = serde_json::from_slice(&verified.payload).map_err(|error| {
        OpenError::MalformedStatement {
            reason: error.to_string(),
        }
    })?;
    if statement.statement_type != STATEMENT_TYPE_V1 {
        return Err(OpenError::WrongStatementType {
            actual: statement.statement_type,
        });
    }
    if statement.predicate_type != layout.predicate_type {
        return Err(OpenError::WrongPredicateType {
            expected: layout.predicate_type,
            actual: statement.predicate_type,
            kind: layout.kind,
        });
    }
    Ok((verified.signer.to_string(), statement))
}

// ---------------------------------------------------------------------------------------------
// The archive format

/// The POSIX ustar subset a bundle uses: regular files only, names split into prefix and name,
/// no extension headers. The writer produces nothing else and the reader accepts nothing else.
mod ustar {
    use std::collections::BTreeSet;
    use std::io::{self, Write};

    use super::{check_relative_path, ArchiveError, SealError, MAX_ARCHIVE_ENTRIES};

    pub const BLOCK_SIZE: usize = 512;
    /// Two zero blocks end an archive.
    pub const END_OF_ARCHIVE: [u8; 2 * BLOCK_SIZE] = [0; 2 * BLOCK_SIZE];
    const ZERO_BLOCK: [u8; BLOCK_SIZE] = [0; BLOCK_SIZE];

    const NAME: std::ops::Range<usize> = 0..100;
    const MODE: std::ops::Range<usize> = 100..108;
    const UID: std::ops::Range<usize> = 108..116;
    const GID: std::ops::Range<usize> = 116..124;
    const SIZE: std::ops::Range<usize> = 124..136;
    const MTIME: std::ops::Range<usize> = 136..148;
    const CHECKSUM: std::ops::Range<usize> = 148..156;
    const TYPEFLAG: usize = 156;
    const MAGIC_AND_VERSION: std::ops::Range<usize> = 257..265;
    const PREFIX: std::ops::Range<usize> = 345..500;

    const POSIX_MAGIC: &[u8; 8] = b"ustar\x0000";
    /// GNU tar's pre-POSIX magic; its prefix field holds other data.
    const GNU_MAGIC: &[u8; 8] = b"ustar  \x00";
    const REGULAR_FILE: u8 = b'0';
    /// Regular file, as written by very old tars.
    const REGULAR_FILE_OLD: u8 = 0;

    pub fn padded_len(n_bytes: usize) -> usize {
        n_bytes.div_ceil(BLOCK_SIZE) * BLOCK_SIZE
    }

    /// The header of a regular file at `path` (already checked to be a safe relative path).
    pub fn header(path: &str, n_bytes: u64, mtime: u64) -> Result<[u8; BLOCK_SIZE], SealError> {
        if n_bytes > super::MAX_FILE_BYTES {
            return Err(SealError::FileTooLarge {
                path: path.to_string(),
                n_bytes,
            });
        }
        let (prefix, name) = split_path(path).ok_or_else(|| SealError::PathTooLong {
            path: path.to_string(),
            n_bytes: path.len(),
        })?;
        Ok(raw_header(
            prefix.as_bytes(),
            name.as_bytes(),
            REGULAR_FILE,
            n_bytes,
            mtime,
        ))
    }

    /// Splits a path into ustar's prefix (≤ 155 bytes) and name (≤ 100 bytes) at a `/`.
    fn split_path(path: &str) -> Option<(&str, &str)> {
        if path.len() <= NAME.len() {
            return Some(("", path));
        }
        path.match_indices('/')
            .map(|(slash_idx, _)| (&path[..slash_idx], &path[slash_idx + 1..]))
            .find(|(prefix, name)| {
                prefix.len() <= PREFIX.len() && name.len() <= NAME.len() && !name.is_empty()
            })
    }

    /// A header with whatever name and type it is given. Only the writer above and tests that
    /// build hostile archives call it directly.
    pub fn raw_header(
        prefix: &[u8],
        name: &[u8],
        typeflag: u8,
        n_bytes: u64,
        mtime: u64,
    ) -> [u8; BLOCK_SIZE] {
        let mut header = [0u8; BLOCK_SIZE];
        header[NAME][..name.len()].copy_from_slice(name);
        write_octal(&mut header[MODE], 0o644);
        write_octal(&mut header[UID], 0);
        write_octal(&mut header[GID], 0);
        write_octal(&mut header[SIZE], n_bytes);
        write_octal(&mut header[MTIME], mtime.min(0o77777777777));
        header[TYPEFLAG] = typeflag;
        header[MAGIC_AND_VERSION].copy_from_slice(POSIX_MAGIC);
        header[PREFIX][..prefix.len()].copy_from_slice(prefix);
        // The checksum is computed with its own field as spaces, then written as six octal
        // digits, a NUL and a space.
        header[CHECKSUM].fill(b' ');
        let checksum: u32 = header.iter().map(|&byte| u32::from(byte)).sum();
        header[CHECKSUM][..7].copy_from_slice(format!("{checksum:06o}\0").as_bytes());
        header
    }

    /// Zero-padded octal digits filling the field but its last byte, which stays NUL.
    fn write_octal(field: &mut [u8], value: u64) {
        let n_digits = field.len() - 1;
        let digits = format!("{value:0n_digits$o}");
        field[..n_digits].copy_from_slice(digits.as_bytes());
        field[n_digits] = 0;
    }

    pub fn write_member<W: Write>(
        out: &mut W,
        header: &[u8; BLOCK_SIZE],
        contents: &[u8],
    ) -> io::Result<()> {
        out.write_all(header)?;
        out.write_all(contents)?;
        out.write_all(&ZERO_BLOCK[..padded_len(contents.len()) - contents.len()])
    }

    /// One regular file in an archive.
    #[derive(Debug)]
    pub struct Entry<'a> {
        pub path: String,
        pub contents: &'a [u8],
    }

    /// Octal digits, optionally led by spaces and ended by NUL or space (as tars write them).
    fn parse_octal(field: &[u8]) -> Option<u64> {
        let text = field.split(|&byte| byte == 0).next().unwrap_or_default();
        let digits = std::str::from_utf8(text).ok()?.trim_matches(' ');
        if digits.is_empty() || !digits.bytes().all(|byte| (b'0'..=b'7').contains(&byte)) {
            return None;
        }
        u64::from_str_radix(digits, 8).ok()
    }

    fn until_nul(field: &[u8]) -> &[u8] {
        field.split(|&byte| byte == 0).next().unwrap_or_default()
    }

    fn kind_of(typeflag: u8) -> &'static str {
        match typeflag {
            b'1' => "hard link",
            b'2' => "symbolic link",
            b'3' => "character device",
            b'4' => "block device",
            b'5' => "directory",
            b'6' => "FIFO",
            b'7' => "contiguous file",
            b'x' | b'g' => "PAX extended header",
            b'L' | b'K' => "GNU long-name header",
            b'S' => "GNU sparse file",
            _ => "entry of unknown type",
        }
    }

    /// Reads every entry, refusing anything but regular files at safe, unique relative paths.
    pub fn read(archive: &[u8]) -> Result<Vec<Entry<'_>>, ArchiveError> {
        let mut entries = Vec::new();
        let mut seen_paths = BTreeSet::new();
        let mut offset = 0;
        loop {
            let Some(header) = archive.get(offset..offset + BLOCK_SIZE) else {
                return Err(ArchiveError::Truncated { offset });
            };
            if header == ZERO_BLOCK {
                // The end marker; whatever follows (more zero blocks, record padding) must be
                // zero, so that nothing can hide behind it.
                if archive[offset..].iter().any(|&byte| byte != 0) {
                    return Err(ArchiveError::TrailingData { offset });
                }
                return Ok(entries);
            }
            if entries.len() == MAX_ARCHIVE_ENTRIES {
                return Err(ArchiveError::TooManyEntries);
            }
            let is_posix = &header[MAGIC_AND_VERSION] == POSIX_MAGIC;
            if !is_posix && &header[MAGIC_AND_VERSION] != GNU_MAGIC {
                return Err(ArchiveError::NotUstar { offset });
            }
            let stored_checksum = parse_octal(&header[CHECKSUM]).ok_or(ArchiveError::BadField {
                offset,
                field: "checksum",
            })?;
            let computed_checksum: u64 = header
                .iter()
                .enumerate()
                .map(|(byte_idx, &byte)| {
                    if CHECKSUM.contains(&byte_idx) {
                        u64::from(b' ')
                    } else {
                        u64::from(byte)
                    }
                })
                .sum();
            if stored_checksum != computed_checksum {
                return Err(ArchiveError::BadChecksum { offset });
            }

            let name = until_nul(&header[NAME]);
            let prefix = if is_posix {
                until_nul(&header[PREFIX])
            } else {
                &[]
            };
            let path_bytes = if prefix.is_empty() {
                name.to_vec()
            } else {
                [prefix, b"/", name].concat()
            };
            let path =
                String::from_utf8(path_bytes).map_err(|_| ArchiveError::NonUtf8Path { offset })?;
            let typeflag = header[TYPEFLAG];
            if typeflag != REGULAR_FILE && typeflag != REGULAR_FILE_OLD {
                return Err(ArchiveError::NotRegularFile {
                    path,
                    kind: kind_of(typeflag),
                });
            }
            if let Err(problem) = check_relative_path(&path) {
                return Err(ArchiveError::UnsafePath { path, problem });
            }
            if !seen_paths.insert(path.clone()) {
                return Err(ArchiveError::Duplicate { path });
            }
            // A size in GNU's base-256 form (high bit set) is not octal and is refused here.
            let n_bytes = parse_octal(&header[SIZE]).ok_or(ArchiveError::BadField {
                offset,
                field: "size",
            })?;
            let contents_start = offset + BLOCK_SIZE;
            let contents = usize::try_from(n_bytes)
                .ok()
                .and_then(|n_bytes| {
                    archive.get(contents_start..contents_start.checked_add(n_bytes)?)
                })
                .ok_or_else(|| ArchiveError::TruncatedEntry {
                    path: path.clone(),
                    n_bytes,
                })?;
            offset = contents_start + padded_len(contents.len());
            entries.push(Entry { path, contents });
        }
    }
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use age::secrecy::ExposeSecret as _;
    use expect_test::{expect, Expect};

    use super::*;
    use crate::intoto::{DatasetUse, FileVerdict, Release};
    use crate::job::TrainPin;
    use crate::keys::KeyAlgorithm;

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
        ResultPredicate {
            job_id: Some(uuid::Uuid::nil()),
            run_id: "run-1".into(),
            train: TrainPin {
                repository: "127.0.0.1:5000/trains/count".into(),
                digest: Digest::of(b"manifest"),
            },
            station: "umc-utrecht".into(),
            policy_sha256: Digest::of(b"policy"),
            datasets: vec![DatasetUse {
                name: "cohort".into(),
                sha256: Digest::of(b"cohort"),
            }],
            started_at: "2026-11-23T12:00:00Z".parse().unwrap(),
            finished_at: "2026-11-23T12:01:00Z".parse().unwrap(),
            verdict: CheckVerdict::Review,
            files: vec![
                FileVerdict {
                    path: "counts.csv".into(),
                    verdict: CheckVerdict::Pass,
                },
                FileVerdict {
                    path: "figures/age.png".into(),
                    verdict: CheckVerdict::Review,
                },
                FileVerdict {
                    path: "rows.csv".into(),
                    verdict: CheckVerdict::Fail,
                },
            ],
            released: Release {
                by: "operator:jansen".into(),
                at: "2026-11-23T12:05:00Z".parse().unwrap(),
                reason: "figure reviewed".into(),
                overrides_failed_checks: false,
            },
        }
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
                    let mut envelope: Envelope =
                        serde_json::from_slice(&provenance.contents).unwrap();
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
        let check =
            |archive: Vec<u8>| match parties.open(&encrypt_to(&parties.recipient(), &archive)) {
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
}
