//! The job envelope: what a researcher submits, signed, and what every station checks again.
//!
//! Owns the `application/vnd.pht.job.v1+json` payload and the checks a station can make without
//! state: signature by a trusted key, time window, addressee and well-formedness. Replay
//! detection needs the station's memory of seen jobs and lives in the station.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::digest::Digest;
use crate::dsse::{self, DsseError, Envelope};
use crate::keys::{PublicKey, SigningKey};

/// DSSE payload type of a job.
pub const JOB_PAYLOAD_TYPE: &str = "application/vnd.pht.job.v1+json";

/// How a job moves through its stations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteMode {
    /// Stations in order, each receiving the previous stop's state.
    Sequential,
    /// Every station independently.
    Parallel,
}

/// The route: a mode and the ordered station ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub mode: RouteMode,
    pub stations: Vec<String>,
}

/// The train a job runs, always by digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainPin {
    /// `registry/repository`.
    pub repository: String,
    pub digest: Digest,
}

/// The job payload, version 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobV1 {
    pub job_id: Uuid,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub train: TrainPin,
    pub route: Route,
    /// Parameters per station id; the key `*` applies to every station not named.
    #[serde(default)]
    pub parameters: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
    /// The researcher's age recipient (`age1…`); results are encrypted to it.
    pub recipient: String,
}

/// Why a station refuses a job envelope. Every variant names what it expected and found.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobRefusal {
    #[error("job envelope signature: {0}")]
    Signature(#[from] DsseError),
    #[error("the job payload is malformed: {0}")]
    Malformed(String),
    #[error("the job expired at {expires_at} (now {now})")]
    Expired {
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    },
    #[error(
        "the job was issued in the future ({issued_at}, now {now}); check the researcher's clock"
    )]
    NotYetValid {
        issued_at: DateTime<Utc>,
        now: DateTime<Utc>,
    },
    #[error("the job is not addressed to station `{station}` (route: {route})")]
    NotAddressed { station: String, route: String },
    #[error("the job's route is invalid: {0}")]
    BadRoute(String),
    #[error("the job's recipient: {0}")]
    Recipient(crate::recipient::RecipientError),
}

/// A job whose envelope was signed by a trusted key, is within its time window and names this
/// station. Only [`verify_job`] makes one.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedJob {
    job: JobV1,
    signer: String,
    stop_index: usize,
}

impl VerifiedJob {
    pub fn job(&self) -> &JobV1 {
        &self.job
    }

    /// The name of the trusted key that signed the envelope.
    pub fn signer(&self) -> &str {
        &self.signer
    }

    /// This station's position in the route.
    pub fn stop_index(&self) -> usize {
        self.stop_index
    }

    /// The parameters for `station`: its own entry, else the `*` entry, else none.
    pub fn parameters_for(&self, station: &str) -> BTreeMap<String, serde_json::Value> {
        let parameters = &self.job.parameters;
        parameters
            .get(station)
            .or_else(|| parameters.get("*"))
            .cloned()
            .unwrap_or_default()
    }
}

/// Allowed clock difference between the researcher's machine and the station.
pub const CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(5);

impl JobV1 {
    /// Well-formedness that does not depend on who checks: a non-empty route without duplicates,
    /// a time window that closes after it opens, an age recipient.
    pub fn validate(&self) -> Result<(), JobRefusal> {
        if self.route.stations.is_empty() {
            return Err(JobRefusal::BadRoute("it names no station".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for station in &self.route.stations {
            if !seen.insert(station) {
                return Err(JobRefusal::BadRoute(format!(
                    "station `{station}` appears twice"
                )));
            }
        }
        if self.expires_at <= self.issued_at {
            return Err(JobRefusal::Malformed(
                "expires_at is not after issued_at".into(),
            ));
        }
        crate::recipient::parse_recipient(&self.recipient).map_err(JobRefusal::Recipient)?;
        Ok(())
    }

    /// Signs the job as a DSSE envelope.
    pub fn sign(&self, key: &SigningKey) -> Envelope {
        let payload = serde_json::to_vec(self).expect("a job always serialises");
        dsse::sign(key, JOB_PAYLOAD_TYPE, &payload)
    }
}

/// Checks a job envelope for `station` at time `now` against the station's trusted job signers.
pub fn verify_job(
    envelope: &Envelope,
    trusted_keys: &[(String, PublicKey)],
    station: &str,
    now: DateTime<Utc>,
) -> Result<VerifiedJob, JobRefusal> {
    let verified = dsse::verify(envelope, JOB_PAYLOAD_TYPE, trusted_keys)?;
    let job: JobV1 = serde_json::from_slice(&verified.payload)
        .map_err(|e| JobRefusal::Malformed(e.to_string()))?;
    job.validate()?;
    if now >= job.expires_at {
        return Err(JobRefusal::Expired {
            expires_at: job.expires_at,
            now,
        });
    }
    if job.issued_at > now + CLOCK_SKEW {
        return Err(JobRefusal::NotYetValid {
            issued_at: job.issued_at,
            now,
        });
    }
    let stop_index = job
        .route
        .stations
        .iter()
        .position(|s| s == station)
        .ok_or_else(|| JobRefusal::NotAddressed {
            station: station.to_string(),
            route: job.route.stations.join(","),
        })?;
    Ok(VerifiedJob {
        signer: verified.signer.to_string(),
        job,
        stop_index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyAlgorithm;

    fn job(now: DateTime<Utc>) -> JobV1 {
        JobV1 {
            job_id: Uuid::nil(),
            issued_at: now,
            expires_at: now + chrono::Duration::hours(1),
            train: TrainPin {
                repository: "127.0.0.1:5000/trains/x".into(),
                digest: Digest::of(b"m"),
            },
            route: Route {
                mode: RouteMode::Sequential,
                stations: vec!["a".into(), "b".into()],
            },
            parameters: BTreeMap::from([(
                "*".into(),
                BTreeMap::from([("k".into(), serde_json::json!(1))]),
            )]),
            recipient: "age175g0ksqujt32anura8w5z7uygzspy28h2cvdrfjwh9ss5elnrefs4278nk".into(),
        }
    }

    fn setup() -> (SigningKey, Vec<(String, PublicKey)>, DateTime<Utc>) {
        let key = SigningKey::generate(KeyAlgorithm::Ed25519);
        let trusted = vec![("alice".to_string(), key.public_key())];
        (key, trusted, "2026-11-23T12:00:00Z".parse().unwrap())
    }

    #[test]
    fn valid_job_is_accepted_with_its_stop() {
        let (key, trusted, now) = setup();
        let verified = verify_job(&job(now).sign(&key), &trusted, "b", now).unwrap();
        assert_eq!((verified.signer(), verified.stop_index()), ("alice", 1));
        assert_eq!(verified.parameters_for("b")["k"], serde_json::json!(1));
    }

    #[test]
    fn expired_envelope_is_refused() {
        let (key, trusted, now) = setup();
        let later = now + chrono::Duration::hours(2);
        assert!(matches!(
            verify_job(&job(now).sign(&key), &trusted, "a", later),
            Err(JobRefusal::Expired { .. })
        ));
    }

    #[test]
    fn envelope_for_another_station_is_refused() {
        let (key, trusted, now) = setup();
        assert!(matches!(
            verify_job(&job(now).sign(&key), &trusted, "c", now),
            Err(JobRefusal::NotAddressed { .. })
        ));
    }

    #[test]
    fn rerouted_envelope_fails_its_signature() {
        let (key, trusted, now) = setup();
        let mut envelope = job(now).sign(&key);
        let mut tampered = job(now);
        tampered.route.stations.push("evil".into());
        envelope.payload = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            serde_json::to_vec(&tampered).unwrap(),
        );
        assert!(matches!(
            verify_job(&envelope, &trusted, "a", now),
            Err(JobRefusal::Signature(_))
        ));
    }

    #[test]
    fn duplicate_station_in_route_is_refused() {
        let (key, trusted, now) = setup();
        let mut duplicated = job(now);
        duplicated.route.stations = vec!["a".into(), "a".into()];
        assert!(matches!(
            verify_job(&duplicated.sign(&key), &trusted, "a", now),
            Err(JobRefusal::BadRoute(_))
        ));
    }
}
