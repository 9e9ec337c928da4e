//! A job envelope from the hub: the DSSE JSON, its signature against a trusted key, and the job
//! payload itself (parsed and validated on its own, since random bytes never carry a valid
//! signature).
#![no_main]

use std::sync::OnceLock;

use pht_core::{KeyAlgorithm, PublicKey, SigningKey};

fn trusted() -> &'static [(String, PublicKey)] {
    static KEYS: OnceLock<Vec<(String, PublicKey)>> = OnceLock::new();
    KEYS.get_or_init(|| {
        vec![(
            "alice".to_string(),
            SigningKey::generate(KeyAlgorithm::Ed25519).public_key(),
        )]
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = serde_json::from_slice::<pht_core::dsse::Envelope>(data) {
        let _ = pht_core::job::verify_job(&envelope, trusted(), "station-a", chrono::Utc::now());
    }
    if let Ok(job) = serde_json::from_slice::<pht_core::job::JobV1>(data) {
        let _ = job.validate();
    }
});
