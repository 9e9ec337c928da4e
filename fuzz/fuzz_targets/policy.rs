//! The station policy file, parsed and, when it parses, evaluated against a fixed request.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = pht_policy::Policy::from_yaml_str(text, "policy.yaml");
    }
});
