//! Image references as a job or an operator gives them, and what the station asks of them.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(reference) = text.parse::<pht_core::ImageReference>() {
        let _ = reference.is_loopback_registry();
        let _ = reference.to_string();
        let _ = reference.repository_path();
    }
    let _ = pht_core::reference::is_loopback_registry_name(text);
    // A registry name straight from a job envelope never went through parsing.
    let digest = pht_core::Digest::of(data);
    let _ = pht_core::ImageReference::with_digest(text, "trains/x", digest).is_loopback_registry();
});
