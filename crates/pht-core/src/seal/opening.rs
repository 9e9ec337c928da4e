//! Opening: decrypting a bundle, verifying its signed provenance against named station keys,
//! and checking that the archive holds exactly the signed members.
//!
//! Owns [`OpenedBundle`] and [`OpenedState`]: only the functions here make them, so holding one
//! means the checks passed. It does not choose which station keys to trust (the caller names
//! them) and does not parse the archive format itself (`ustar`).

use std::fmt;
use std::io::Read as _;

use age::x25519;

use super::{
    ustar, BundleKind, Layout, OpenError, MAX_ENVELOPE_SIGNATURES, MAX_PROVENANCE_BYTES,
    PROVENANCE_PATH, REPORT_PATH, RESULT_LAYOUT, STATE_LAYOUT,
};
use crate::digest::Digest;
use crate::dsse::{self, DsseError, Envelope};
use crate::intoto::{
    ResultPredicate, StatePredicate, Statement, IN_TOTO_PAYLOAD_TYPE, STATEMENT_TYPE_V1,
};
use crate::keys::PublicKey;

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

/// What [`open_archive`] found, before the predicate is read as its type.
struct OpenedArchive {
    signer: String,
    statement: Statement,
    report_json: Option<Vec<u8>>,
    files: Vec<(String, Vec<u8>)>,
}

pub(super) fn decrypt(sealed: &[u8], identity: &x25519::Identity) -> Result<Vec<u8>, OpenError> {
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
