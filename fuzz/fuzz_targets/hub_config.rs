//! The hub configuration file (the admin token file is not read: a fixed token stands in).
#![no_main]

use std::path::Path;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = pht_hub::config::HubConfig::parse(
            text,
            Path::new("/etc/pht/hub.yaml"),
            Path::new("/etc/pht"),
            |_| Ok("0123456789abcdef0123456789abcdef\n".to_string()),
        );
    }
});
