//! Witnessed audit checkpoints: a station's statement, signed with its station key, that its
//! audit log held entry `seq` with hash `head_hash` at `time`.
//!
//! The hash chain and head file catch partial edits of a log, but root at the station could
//! rewrite the whole log consistently. A checkpoint held by someone else (the hub, or a
//! researcher's sealed provenance) pins what the log said then: a rewritten log no longer has
//! that hash at that sequence number. Owns the payload and signing it in a DSSE envelope;
//! comparing a log with checkpoints is the station's.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::dsse::{self, Envelope};
use crate::keys::{PublicKey, SigningKey};

/// The DSSE payload type of a checkpoint.
pub const CHECKPOINT_PAYLOAD_TYPE: &str = "application/vnd.pht.audit-checkpoint.v1+json";
/// The `format` field of a checkpoint.
pub const CHECKPOINT_FORMAT: &str = "pht.audit-checkpoint.v1";

/// What a checkpoint states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub format: String,
    pub station_id: String,
    /// The sequence number of the last entry of the log.
    pub seq: u64,
    /// That entry's hash.
    pub head_hash: String,
    pub time: DateTime<Utc>,
}

/// Why a checkpoint was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("the checkpoint is not signed by the station's key: {0}")]
    Signature(#[from] dsse::DsseError),
    #[error("the checkpoint's payload is not a checkpoint: {0}")]
    Payload(String),
    #[error("the checkpoint is of station `{actual}`, not `{expected}`")]
    Station { expected: String, actual: String },
}

impl Checkpoint {
    pub fn new(station_id: &str, seq: u64, head_hash: &str, time: DateTime<Utc>) -> Checkpoint {
        Checkpoint {
            format: CHECKPOINT_FORMAT.into(),
            station_id: station_id.to_string(),
            seq,
            head_hash: head_hash.to_string(),
            time,
        }
    }

    /// The checkpoint in a DSSE envelope signed by `key`.
    pub fn sign(&self, key: &SigningKey) -> Envelope {
        let payload = serde_json::to_vec(self).expect("checkpoints always serialise");
        dsse::sign(key, CHECKPOINT_PAYLOAD_TYPE, &payload)
    }

    /// The checkpoint in `envelope`, if `station_key` signed it and it is `station_id`'s.
    pub fn verify(
        envelope: &Envelope,
        station_id: &str,
        station_key: &PublicKey,
    ) -> Result<Checkpoint, CheckpointError> {
        let trusted = [(station_id.to_string(), station_key.clone())];
        let verified = dsse::verify(envelope, CHECKPOINT_PAYLOAD_TYPE, &trusted)?;
        let checkpoint: Checkpoint = serde_json::from_slice(&verified.payload)
            .map_err(|e| CheckpointError::Payload(e.to_string()))?;
        if checkpoint.format != CHECKPOINT_FORMAT {
            return Err(CheckpointError::Payload(format!(
                "format `{}`, expected `{CHECKPOINT_FORMAT}`",
                checkpoint.format
            )));
        }
        if checkpoint.station_id != station_id {
            return Err(CheckpointError::Station {
                expected: station_id.to_string(),
                actual: checkpoint.station_id,
            });
        }
        Ok(checkpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyAlgorithm;

    #[test]
    fn a_checkpoint_verifies_only_with_its_station_key_and_id() {
        let key = SigningKey::generate(KeyAlgorithm::Ed25519);
        let other = SigningKey::generate(KeyAlgorithm::Ed25519);
        let checkpoint = Checkpoint::new("station-a", 41, &"ab".repeat(32), Utc::now());
        let envelope = checkpoint.sign(&key);
        assert_eq!(
            Checkpoint::verify(&envelope, "station-a", &key.public_key()).unwrap(),
            checkpoint
        );
        assert!(matches!(
            Checkpoint::verify(&envelope, "station-a", &other.public_key()),
            Err(CheckpointError::Signature(_))
        ));
        assert!(Checkpoint::verify(&envelope, "station-b", &key.public_key()).is_err());
    }
}
