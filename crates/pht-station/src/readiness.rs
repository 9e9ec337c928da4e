//! Everything a station needs before it can run anything, checked without running anything:
//! what `pht-station check-config` reports, and what `exec` and `run` would otherwise refuse at
//! start or, worse, after a train had touched the data.
//!
//! Owns the list of checks and their wording (each failure says what to do). Does not contact
//! Docker, a registry or the hub: the output storage probe is the caller's (it needs root and
//! the engine's mount namespace), and reachability checks belong to `doctor`.

use std::path::Path;

use serde::Serialize;

use crate::audit::AuditLog;
use crate::config::StationConfig;
use crate::trust::{self, Trust};

/// One check: what was checked, whether it holds, and the detail or what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

impl Check {
    pub(crate) fn pass(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            ok: true,
            detail: detail.into(),
        }
    }

    pub(crate) fn fail(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            ok: false,
            detail: detail.into(),
        }
    }
}

/// The checks, in the order an operator would fix them; the policy and its keys too, when they
/// load (`None` when they do not).
pub fn check(config: &StationConfig) -> (Vec<Check>, Option<Trust>) {
    let mut checks = Vec::new();
    let trust = match trust::load_policy(&config.policy) {
        Ok(trust) => {
            checks.push(Check::pass(
                "policy",
                format!(
                    "{} (sha256 {}), {} train signer(s), {} job signer(s){}",
                    config.policy.display(),
                    &trust.policy.content_hash()[..16],
                    trust.train_keys.len(),
                    trust.job_keys.len(),
                    match trust.base_keys.len() {
                        0 => String::new(),
                        n => format!(", {n} base signer(s)"),
                    }
                ),
            ));
            Some(trust)
        }
        Err(error) => {
            checks.push(Check::fail("policy", error.to_string()));
            None
        }
    };
    checks.push(datasets(config));
    checks.push(state_dir(&config.state_dir));
    checks.push(audit_log(&config.state_dir.join("audit.log")));
    checks.push(station_key(config, trust.as_ref()));
    if !config.peers.is_empty() {
        checks.push(age_identity(config));
        checks.push(peer_keys(config));
    }
    (checks, trust)
}

fn datasets(config: &StationConfig) -> Check {
    let missing: Vec<String> = config
        .datasets
        .values()
        .filter(|d| !d.path.is_dir())
        .map(|d| format!("{} ({})", d.name, d.path.display()))
        .collect();
    if missing.is_empty() {
        let names: Vec<&str> = config.datasets.keys().map(String::as_str).collect();
        Check::pass("datasets", names.join(", "))
    } else {
        Check::fail(
            "datasets",
            format!(
                "dataset directories missing: {}; mount them or fix `datasets:` in {}",
                missing.join(", "),
                config.source.display()
            ),
        )
    }
}

fn state_dir(state_dir: &Path) -> Check {
    if state_dir.exists() && !state_dir.is_dir() {
        return Check::fail(
            "state dir",
            format!(
                "{} is not a directory; point `state_dir:` at a directory",
                state_dir.display()
            ),
        );
    }
    let probe = state_dir.join(format!(".check-{}", std::process::id()));
    let writable = std::fs::create_dir_all(state_dir)
        .and_then(|()| pht_fs::write_atomic(&probe, b"check"))
        .and_then(|()| std::fs::remove_file(&probe));
    match writable {
        Err(error) => Check::fail(
            "state dir",
            format!(
                "cannot write in {}: {error}; give the station's user a writable state directory",
                state_dir.display()
            ),
        ),
        Ok(()) => {
            let free = pht_fs::free_bytes(state_dir)
                .map(|bytes| format!("{} MiB free", bytes >> 20))
                .unwrap_or_else(|error| format!("free space unknown: {error}"));
            Check::pass("state dir", format!("{} ({free})", state_dir.display()))
        }
    }
}

fn audit_log(path: &Path) -> Check {
    if !path.exists() {
        return Check::pass("audit log", "not started yet");
    }
    match AuditLog::verify_file(path) {
        Ok(verification) => match verification.problem {
            None => Check::pass(
                "audit log",
                format!("{} entries verify", verification.entries),
            ),
            Some((line, problem)) => Check::fail(
                "audit log",
                format!(
                    "{} is broken at line {line}: {problem}; investigate before the station writes to it again",
                    path.display()
                ),
            ),
        },
        Err(error) => Check::fail("audit log", error.to_string()),
    }
}

fn station_key(config: &StationConfig, trust: Option<&Trust>) -> Check {
    // Without a key nothing can be sealed: the daemon cannot start and a release cannot be
    // signed. A station that only runs trains by hand under manual release can still work, so
    // there a missing key is a note, not a failure.
    let releases_automatically = trust
        .is_some_and(|trust| trust.policy.outputs().release() == pht_policy::Release::Automatic);
    let key_needed = config.hub.is_some() || releases_automatically;
    let missing = |detail: String| {
        if key_needed {
            Check::fail("station key", detail)
        } else {
            Check::pass("station key", format!("none yet: {detail}"))
        }
    };
    if !config.key_dir.is_dir() {
        return missing(format!(
            "the key directory {} does not exist, so no result can be sealed; create the station's keys with `pht-station keys init`",
            config.key_dir.display()
        ));
    }
    match crate::keys::read_signing_key(&config.key_dir) {
        Ok(Some(key)) => Check::pass(
            "station key",
            format!("{} (key id {})", key.algorithm(), key.public_key().key_id()),
        ),
        Ok(None) => missing(format!(
            "no station.key in {}, so no result can be sealed; create one with `pht-station keys init`",
            config.key_dir.display()
        )),
        Err(error) => Check::fail("station key", error.to_string()),
    }
}

fn age_identity(config: &StationConfig) -> Check {
    match crate::keys::read_age_identity(&config.key_dir) {
        Ok(Some(_)) => Check::pass("age identity", "state from the previous stop can be opened"),
        Ok(None) => Check::fail(
            "age identity",
            "peers are configured but this station has no station.age, so state handed over cannot be opened; run `pht-station keys init`",
        ),
        Err(error) => Check::fail("age identity", error.to_string()),
    }
}

fn peer_keys(config: &StationConfig) -> Check {
    let mut problems = Vec::new();
    for peer in config.peers.values() {
        let read = std::fs::read_to_string(&peer.public_key)
            .map_err(|e| e.to_string())
            .and_then(|pem| pht_core::PublicKey::from_pem(&pem).map_err(|e| e.to_string()));
        if let Err(error) = read {
            problems.push(format!(
                "peer `{}`: {}: {error}",
                peer.station_id,
                peer.public_key.display()
            ));
        }
    }
    if problems.is_empty() {
        Check::pass("peer keys", format!("{} peer(s)", config.peers.len()))
    } else {
        Check::fail("peer keys", problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A station directory with a permissive policy and no keys yet.
    fn station_dir() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("data/cohort")).unwrap();
        std::fs::write(
            root.join("policy.yaml"),
            "version: 1\ntrusted_signers: []\nregistries: []\n",
        )
        .unwrap();
        let config = root.join("station.yaml");
        std::fs::write(
            &config,
            "version: 1\nstation_id: a\nkey_dir: keys\ndatasets:\n  cohort:\n    path: data/cohort\npolicy: policy.yaml\nstate_dir: state\n",
        )
        .unwrap();
        (dir, config)
    }

    fn failing(config: &Path) -> Vec<(String, String)> {
        let config = StationConfig::load(config).unwrap();
        check(&config)
            .0
            .into_iter()
            .filter(|check| !check.ok)
            .map(|check| (check.name.to_string(), check.detail))
            .collect()
    }

    #[test]
    fn a_station_with_keys_and_a_writable_state_dir_is_ready() {
        let (dir, config) = station_dir();
        crate::keys::init(&dir.path().join("keys")).unwrap();
        assert_eq!(failing(&config), []);
    }

    #[test]
    fn check_config_fails_where_exec_would_refuse_a_missing_key_dir() {
        let (_dir, config) = station_dir();
        // A station that only runs trains by hand can do without a key for now.
        assert_eq!(failing(&config), []);
        // The daemon cannot: it signs its requests to the hub with the key.
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str("hub:\n  url: http://127.0.0.1:9\n");
        std::fs::write(&config, text).unwrap();
        let failures = failing(&config);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert_eq!(failures[0].0, "station key");
        assert!(failures[0].1.contains("keys init"), "{failures:?}");
    }

    #[test]
    fn check_config_fails_on_an_empty_or_rsa_station_key() {
        let (dir, config) = station_dir();
        let keys = dir.path().join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        std::fs::write(keys.join("station.key"), "").unwrap();
        let failures = failing(&config);
        assert!(failures[0].1.contains("empty"), "{failures:?}");
        // An RSA key as `openssl genpkey -algorithm RSA` writes it (PKCS#8, rsaEncryption).
        let rsa = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:1024",
            ])
            .output()
            .expect("openssl is installed");
        std::fs::write(keys.join("station.key"), rsa.stdout).unwrap();
        let failures = failing(&config);
        assert!(failures[0].1.contains("RSA"), "{failures:?}");
    }

    #[test]
    fn check_config_fails_on_a_state_dir_that_is_a_file() {
        let (dir, config) = station_dir();
        crate::keys::init(&dir.path().join("keys")).unwrap();
        std::fs::write(dir.path().join("state"), "not a directory").unwrap();
        let failures = failing(&config);
        assert_eq!(failures[0].0, "state dir", "{failures:?}");
        assert!(failures[0].1.contains("not a directory"), "{failures:?}");
    }
}
