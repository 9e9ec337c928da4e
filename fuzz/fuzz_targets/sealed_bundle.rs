//! A sealed result bundle and a sealed state bundle, as a researcher or the next station opens
//! them. The input is the plaintext the age layer protects (random bytes never decrypt), so the
//! target encrypts it to a fixed identity first and fuzzes the archive, DSSE and provenance
//! readers behind it; the raw bytes are also tried as ciphertext for the age header parser.
#![no_main]

use std::io::Write as _;
use std::sync::OnceLock;

use pht_core::{KeyAlgorithm, PublicKey, SigningKey};

struct Fixed {
    identity: age::x25519::Identity,
    stations: Vec<(String, PublicKey)>,
}

fn fixed() -> &'static Fixed {
    static FIXED: OnceLock<Fixed> = OnceLock::new();
    FIXED.get_or_init(|| Fixed {
        identity: age::x25519::Identity::generate(),
        stations: vec![(
            "umc".to_string(),
            SigningKey::generate(KeyAlgorithm::Ed25519).public_key(),
        )],
    })
}

fn encrypt(plaintext: &[u8], recipient: &age::x25519::Recipient) -> Vec<u8> {
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(recipient as &dyn age::Recipient))
            .expect("one recipient");
    let mut sealed = Vec::new();
    let mut writer = encryptor.wrap_output(&mut sealed).expect("in memory");
    writer.write_all(plaintext).expect("in memory");
    writer.finish().expect("in memory");
    sealed
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let fixed = fixed();
    let _ = pht_core::seal::open_bundle(data, &fixed.identity, &fixed.stations);
    let sealed = encrypt(data, &fixed.identity.to_public());
    let _ = pht_core::seal::open_bundle(&sealed, &fixed.identity, &fixed.stations);
    let _ = pht_core::seal::open_state(&sealed, &fixed.identity, &fixed.stations);
});
