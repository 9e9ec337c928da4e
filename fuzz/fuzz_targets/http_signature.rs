//! RFC 9421 request signature headers: `Signature-Input`, `Signature` and `Content-Digest`, as
//! an unauthenticated client sends them. The input is split into the three headers at newlines.
#![no_main]

use pht_core::httpsig::ReceivedSignatureHeaders;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.splitn(3, '\n');
    let headers = ReceivedSignatureHeaders {
        signature_input: lines.next(),
        signature: lines.next(),
        content_digest: lines.next(),
    };
    let _ = pht_core::httpsig::parse_signature(&headers);
    if let Some(digest) = headers.content_digest {
        let _ = pht_core::httpsig::check_content_digest(digest, b"{}");
    }
});
