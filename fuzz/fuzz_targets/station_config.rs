//! The station configuration file.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = pht_station::StationConfig::from_yaml(text, std::path::Path::new("/etc/pht/station.yaml"));
    }
});
