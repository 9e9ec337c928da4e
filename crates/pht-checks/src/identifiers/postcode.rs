//! Dutch postcodes: `1234AB` or `1234 AB`, upper-case letters, not SA/SD/SS, standing alone.
//!
//! Owns the letters after the four digits; the scan checks the digits and what stands before.

/// A postcode's letters after the four digits ending at `run_end`; returns its end.
pub(super) fn match_postcode(bytes: &[u8], run_end: usize) -> Option<usize> {
    let letters_start = if bytes.get(run_end) == Some(&b' ') {
        run_end + 1
    } else {
        run_end
    };
    let letters = bytes.get(letters_start..letters_start + 2)?;
    let letters_end = letters_start + 2;
    let is_postcode = letters.iter().all(u8::is_ascii_uppercase)
        && !matches!(letters, b"SA" | b"SD" | b"SS")
        && !bytes
            .get(letters_end)
            .is_some_and(u8::is_ascii_alphanumeric);
    is_postcode.then_some(letters_end)
}
