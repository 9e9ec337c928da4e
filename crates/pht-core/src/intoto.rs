//! in-toto attestations: the Statement v1 layer and the project's provenance predicates.
//!
//! Owns the JSON shape of an in-toto Statement (`https://in-toto.io/Statement/v1`: `_type`,
//! `subject` with name and digest set, `predicateType`, `predicate`), the DSSE payload type it
//! travels under, and the two predicates a station signs: the provenance of a released result
//! (`https://pht.dev/provenance/result/v1`) and of the state handed to the next stop of a
//! sequential route (`https://pht.dev/provenance/state/v1`). These types cross the trust
//! boundary between station and researcher, so they are versioned by their type URIs.
//!
//! It does not sign, encrypt or pack anything (see `seal`), and it does not decide what a
//! verdict is (the output checks do); it only carries them.
//!
//! Parsing follows the in-toto rules: unknown fields in the statement and in the predicates are
//! ignored, so that minor versions can add fields without breaking older readers.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::digest::Digest;
use crate::job::TrainPin;

/// The `_type` of every in-toto Statement of version 1.
pub const STATEMENT_TYPE_V1: &str = "https://in-toto.io/Statement/v1";

/// The DSSE payload type of an in-toto Statement serialised as JSON.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// The predicate type of a released result's provenance, version 1.
pub const RESULT_PREDICATE_TYPE_V1: &str = "https://pht.dev/provenance/result/v1";

/// The predicate type of the provenance of a sequential route's state, version 1.
pub const STATE_PREDICATE_TYPE_V1: &str = "https://pht.dev/provenance/state/v1";

/// The name of the SHA-256 algorithm in an in-toto digest set.
pub const SHA256_ALGORITHM: &str = "sha256";

/// An in-toto Statement: the subjects (artifacts by digest) and a typed predicate about them.
///
/// The predicate is kept as JSON here; the typed predicates below are read from it once the
/// predicate type is known.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    /// Always [`STATEMENT_TYPE_V1`] for statements this crate makes; checked by readers.
    #[serde(rename = "_type")]
    pub statement_type: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// Unset is the same as empty, per the specification.
    #[serde(default)]
    pub predicate: serde_json::Value,
}

/// A subject: the part of an in-toto ResourceDescriptor this project uses (name and digest set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// The artifact's path inside the bundle, such as `outputs/counts.csv`.
    pub name: String,
    /// Algorithm name to lower-case hex digest, such as `{"sha256": "e3b0…"}`.
    pub digest: BTreeMap<String, String>,
}

/// Why a statement's subjects cannot be used to check a set of files.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    #[error("the signed statement lists subject `{name}` twice")]
    DuplicateName { name: String },
    #[error("the signed statement's subject `{name}` has no valid sha256 digest")]
    MissingSha256 { name: String },
}

impl Subject {
    /// A subject named `name` with its SHA-256 digest.
    pub fn sha256(name: impl Into<String>, digest: &Digest) -> Subject {
        Subject {
            name: name.into(),
            digest: BTreeMap::from([(SHA256_ALGORITHM.to_string(), digest.hex().to_string())]),
        }
    }

    /// The subject's SHA-256 digest, when it has a well-formed one.
    pub fn sha256_digest(&self) -> Option<Digest> {
        let hex_digits = self.digest.get(SHA256_ALGORITHM)?;
        Digest::from_hex(hex_digits).ok()
    }
}

impl Statement {
    /// A version 1 statement over `subject` with a predicate of type `predicate_type`.
    pub fn new(
        subject: Vec<Subject>,
        predicate_type: &str,
        predicate: serde_json::Value,
    ) -> Statement {
        Statement {
            statement_type: STATEMENT_TYPE_V1.to_string(),
            subject,
            predicate_type: predicate_type.to_string(),
            predicate,
        }
    }

    /// The subjects by name with their SHA-256 digests. Every subject must have a unique name
    /// and a SHA-256 digest, because the bundle check matches files to subjects by name.
    pub fn sha256_subjects(&self) -> Result<BTreeMap<&str, Digest>, SubjectError> {
        let mut digest_by_name = BTreeMap::new();
        for subject in &self.subject {
            let digest = subject
                .sha256_digest()
                .ok_or_else(|| SubjectError::MissingSha256 {
                    name: subject.name.clone(),
                })?;
            if digest_by_name
                .insert(subject.name.as_str(), digest)
                .is_some()
            {
                return Err(SubjectError::DuplicateName {
                    name: subject.name.clone(),
                });
            }
        }
        Ok(digest_by_name)
    }
}

/// The output checks' verdict, on one file or overall: fail beats review beats pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckVerdict {
    Pass,
    Review,
    Fail,
}

impl CheckVerdict {
    /// The lower-case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckVerdict::Pass => "pass",
            CheckVerdict::Review => "review",
            CheckVerdict::Fail => "fail",
        }
    }
}

impl fmt::Display for CheckVerdict {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A dataset the run read, by name and content hash (never its contents).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetUse {
    pub name: String,
    #[serde(with = "sha256_hex")]
    pub sha256: Digest,
}

/// The checks' verdict on one output file, released or withheld.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileVerdict {
    /// The path relative to `/output`, or the check report's withheld label when the name
    /// itself was held back.
    pub path: String,
    pub verdict: CheckVerdict,
    /// Set when the file left as a transformed copy of what the train wrote (for example
    /// `suppress-and-round`): how it was transformed. The original never leaves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transformed: Option<String>,
}

/// Who let the result leave the station, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// An operator's name, or the station's policy for an automatic release.
    pub by: String,
    pub at: DateTime<Utc>,
    pub reason: String,
    /// An operator released files the checks failed, taking responsibility in `reason`. Signed
    /// with the rest of the provenance, so the researcher (and any later reader) sees it.
    #[serde(default)]
    pub overrides_failed_checks: bool,
    /// Every operator who reviewed and released the result, in order, when the station's
    /// policy asks for reviewers (`outputs.reviewers_required`); empty for an automatic release.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reviewers: Vec<Reviewer>,
}

/// One operator's release of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reviewer {
    pub by: String,
    pub at: DateTime<Utc>,
    pub reason: String,
}

/// The provenance of a released result (`https://pht.dev/provenance/result/v1`): which train
/// ran where, under which policy, on which data, what the checks said and who released it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultPredicateV1 {
    /// The hub job, or null for a local run (`pht-station exec`) that had none.
    #[serde(default)]
    pub job_id: Option<Uuid>,
    /// The station's own id for this run.
    pub run_id: String,
    pub train: TrainPin,
    /// The id of the station that ran the train.
    pub station: String,
    /// SHA-256 (hex) of the station policy file the run was decided under.
    #[serde(with = "sha256_hex")]
    pub policy_sha256: Digest,
    pub datasets: Vec<DatasetUse>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// The overall verdict of the output checks.
    pub verdict: CheckVerdict,
    /// The verdict on every output file, including the ones that were withheld.
    pub files: Vec<FileVerdict>,
    /// The verdict on every state file handed to the next stop of a sequential route (state is
    /// checked like any output before it leaves; it goes to the next station, not here).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state_files: Vec<FileVerdict>,
    /// The state this stop received from the previous one: who sent it and the SHA-256 of the
    /// sealed bundle as it arrived. The stop's outputs were also checked against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_state: Option<ReceivedState>,
    pub released: Release,
    /// The station's audit log when it released this result (the station signs the whole
    /// statement, so this witnesses the log: a log rewritten later no longer has `head_hash` at
    /// `seq`). Absent in provenance from stations before checkpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_checkpoint: Option<AuditCheckpointRef>,
}

/// The audit log's last entry at release, as provenance records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditCheckpointRef {
    pub seq: u64,
    pub head_hash: String,
    pub time: DateTime<Utc>,
}

/// State a stop received from the previous stop of its route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedState {
    /// The station that sealed and signed it.
    pub from_station: String,
    /// SHA-256 (hex) of the sealed state bundle.
    #[serde(with = "sha256_hex")]
    pub sha256: Digest,
}

impl ResultPredicateV1 {
    /// A complete example, for documentation and tests: run `run-1` of
    /// `127.0.0.1:5000/trains/count` at station `umc-utrecht` on dataset `cohort`, from
    /// 2026-11-23 12:00 to 12:01 UTC, released by `operator:jansen` at 12:05, with `files`
    /// as the file verdicts and `verdict` overall. Change the fields a case is about.
    pub fn example(verdict: CheckVerdict, files: &[(&str, CheckVerdict)]) -> ResultPredicateV1 {
        let at = |seconds_after_noon: i64| {
            // 2026-11-23T12:00:00Z
            DateTime::from_timestamp(1_795_435_200 + seconds_after_noon, 0).unwrap_or_default()
        };
        ResultPredicateV1 {
            job_id: None,
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
            started_at: at(0),
            finished_at: at(60),
            verdict,
            files: files
                .iter()
                .map(|(path, verdict)| FileVerdict {
                    path: path.to_string(),
                    verdict: *verdict,
                    transformed: None,
                })
                .collect(),
            state_files: Vec::new(),
            received_state: None,
            released: Release {
                by: "operator:jansen".into(),
                at: at(300),
                reason: "reviewed".into(),
                overrides_failed_checks: false,
                reviewers: Vec::new(),
            },
            audit_checkpoint: None,
        }
    }
}

/// The current result predicate; callers name this so that a new version is one edit here.
pub type ResultPredicate = ResultPredicateV1;

/// The provenance of a sequential route's state (`https://pht.dev/provenance/state/v1`): what
/// one stop hands to the next, encrypted to the next station.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatePredicateV1 {
    pub job_id: Uuid,
    /// The producing station's id for its run.
    pub run_id: String,
    pub train: TrainPin,
    /// The station that produced the state.
    pub station: String,
    /// The station the state is encrypted to.
    pub next_station: String,
    /// The producing station's position in the route (0 for the first stop).
    pub stop_index: usize,
    pub finished_at: DateTime<Utc>,
}

/// The current state predicate.
pub type StatePredicate = StatePredicateV1;

impl ResultPredicateV1 {
    /// The per-file verdicts by path.
    pub fn verdict_by_path(&self) -> BTreeMap<&str, CheckVerdict> {
        self.files
            .iter()
            .map(|file| (file.path.as_str(), file.verdict))
            .collect()
    }
}

/// A [`Digest`] written as bare hex, as in-toto digest sets and the predicates' hash fields are.
mod sha256_hex {
    use serde::{Deserialize as _, Deserializer, Serializer};

    use crate::digest::Digest;

    pub fn serialize<S: Serializer>(digest: &Digest, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(digest.hex())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        let hex_digits = String::deserialize(deserializer)?;
        Digest::from_hex(&hex_digits).map_err(|_| {
            serde::de::Error::custom(format!(
                "`{hex_digits}` is not a sha256 digest (64 lower-case hex digits)"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

    fn result_predicate() -> ResultPredicateV1 {
        let mut predicate = ResultPredicateV1::example(
            CheckVerdict::Review,
            &[
                ("counts.csv", CheckVerdict::Pass),
                ("notes.txt", CheckVerdict::Review),
            ],
        );
        predicate.job_id = Some(Uuid::nil());
        predicate.station = "umc".into();
        predicate.released.reason = "notes reviewed".into();
        predicate
    }

    #[test]
    fn statement_has_the_in_toto_v1_shape() {
        let statement = Statement::new(
            vec![Subject::sha256("report.json", &Digest::of(b""))],
            RESULT_PREDICATE_TYPE_V1,
            serde_json::to_value(result_predicate()).unwrap(),
        );
        let json = serde_json::to_string_pretty(&statement).unwrap();
        expect![[r#"
            {
              "_type": "https://in-toto.io/Statement/v1",
              "subject": [
                {
                  "name": "report.json",
                  "digest": {
                    "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
                  }
                }
              ],
              "predicateType": "https://pht.dev/provenance/result/v1",
              "predicate": {
                "datasets": [
                  {
                    "name": "cohort",
                    "sha256": "16accdf4ccc09faa5795285f06e167024b4b8c61ed48f7deb0a9b82ef4d6ec9c"
                  }
                ],
                "files": [
                  {
                    "path": "counts.csv",
                    "verdict": "pass"
                  },
                  {
                    "path": "notes.txt",
                    "verdict": "review"
                  }
                ],
                "finished_at": "2026-11-23T12:01:00Z",
                "job_id": "00000000-0000-0000-0000-000000000000",
                "policy_sha256": "823412d1eacb67956220e532959f0104603057c88704863ca38e7cd188fda812",
                "released": {
                  "at": "2026-11-23T12:05:00Z",
                  "by": "operator:jansen",
                  "overrides_failed_checks": false,
                  "reason": "notes reviewed"
                },
                "run_id": "run-1",
                "started_at": "2026-11-23T12:00:00Z",
                "station": "umc",
                "train": {
                  "digest": "sha256:05b3abf2579a5eb66403cd78be557fd860633a1fe2103c7642030defe32c657f",
                  "repository": "127.0.0.1:5000/trains/count"
                },
                "verdict": "review"
              }
            }"#]]
        .assert_eq(&json);
    }

    #[test]
    fn result_predicate_round_trips_and_ignores_unknown_fields() {
        let mut json = serde_json::to_value(result_predicate()).unwrap();
        json["added_in_v1_1"] = serde_json::json!("ignored");
        let parsed: ResultPredicateV1 = serde_json::from_value(json).unwrap();
        assert_eq!(parsed, result_predicate());
    }

    #[test]
    fn local_run_without_a_job_has_a_null_job_id() {
        let mut predicate = result_predicate();
        predicate.job_id = None;
        let json = serde_json::to_value(&predicate).unwrap();
        assert_eq!(json["job_id"], serde_json::Value::Null);
        let parsed: ResultPredicateV1 = serde_json::from_value(json).unwrap();
        assert_eq!(parsed.job_id, None);
    }

    #[test]
    fn malformed_hashes_in_a_predicate_are_refused() {
        let mut json = serde_json::to_value(result_predicate()).unwrap();
        json["policy_sha256"] = serde_json::json!("sha256:abc");
        let error = serde_json::from_value::<ResultPredicateV1>(json).unwrap_err();
        expect![[r#"`sha256:abc` is not a sha256 digest (64 lower-case hex digits)"#]]
            .assert_eq(&error.to_string());
    }

    #[test]
    fn subjects_must_be_unique_and_carry_sha256() {
        let digest = Digest::of(b"x");
        let check = |subject: Vec<Subject>| {
            Statement::new(subject, STATE_PREDICATE_TYPE_V1, serde_json::Value::Null)
                .sha256_subjects()
                .map(|subjects| subjects.len())
                .map_err(|error| error.to_string())
        };
        assert_eq!(
            check(vec![
                Subject::sha256("a", &digest),
                Subject::sha256("b", &digest)
            ]),
            Ok(2)
        );
        assert_eq!(
            check(vec![
                Subject::sha256("a", &digest),
                Subject::sha256("a", &digest)
            ]),
            Err("the signed statement lists subject `a` twice".to_string())
        );
        let sha512_only = Subject {
            name: "a".into(),
            digest: BTreeMap::from([("sha512".to_string(), "00".to_string())]),
        };
        assert_eq!(
            check(vec![sha512_only]),
            Err("the signed statement's subject `a` has no valid sha256 digest".to_string())
        );
    }
}
