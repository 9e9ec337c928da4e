//! `train.yaml` and the `org.pht.train.v1` image label: never a panic, whatever the bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = pht_core::TrainManifest::from_yaml(text, "train.yaml");
        let _ = pht_core::TrainManifest::from_label_json(text);
    }
});
