//! Why a bundle could not be sealed or was not opened, and which kind of bundle it was.
//!
//! Owns the error types and their messages: each says what failed and what to do about it.
//! It decides nothing; sealing, opening and the archive reader pick the variant.

use std::fmt;

use super::{PathProblem, MAX_ARCHIVE_ENTRIES, MAX_FILE_BYTES, PROVENANCE_PATH};
use crate::intoto::{SubjectError, IN_TOTO_PAYLOAD_TYPE, STATEMENT_TYPE_V1};

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
    #[error("{0}")]
    InvalidRecipient(crate::recipient::RecipientError),
    #[error("age encryption failed: {reason}")]
    Encryption { reason: String },
}

/// Why a bundle's archive was refused. A station never writes such an archive, so each of these
/// means the bundle was altered or made by something else.
///
/// Names that have not passed [`check_relative_path`](super::check_relative_path) are printed
/// quoted and escaped, so that control characters in a hostile name cannot reach the reader's
/// terminal.
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
