//! Normalised row hashes: the one definition shared by the dataset index and the leakage rule,
//! so a dataset row and the same row written out by a train hash alike.
//!
//! Owns cell normalisation and the hash encoding. It does not read CSV (the delimited reader
//! does) or decide anything about leakage (the table rules do).
//!
//! Normalisation of one cell, in order:
//! 1. trim ASCII whitespace (quotes were already removed by the reader);
//! 2. lower-case (ASCII fast path; full Unicode lower-casing when the cell is non-ASCII UTF-8);
//! 3. missing-value markers `""`, `na`, `n/a`, `nan`, `null`, `none`, `<na>` become empty, because
//!    R writes `NA` where pandas writes nothing;
//! 4. plain decimal numbers get one canonical spelling: no `+`, no leading zeros, no trailing
//!    fractional zeros, `-0` is `0` (`012.50` -> `12.5`, `7.0` -> `7`), and a decimal comma
//!    becomes a point when the file's delimiter is not a comma.
//!
//! A row is hashed as SHA-256 over the cell count and each cell's length and bytes (so cell
//! boundaries are unambiguous), truncated to 16 bytes. Cell order matters, so does the number of
//! cells.

use sha2::{Digest, Sha256};

/// Bytes kept of each row's SHA-256.
pub(crate) const ROW_HASH_BYTES: usize = 16;

/// A truncated SHA-256 of a normalised row.
pub(crate) type RowHash = [u8; ROW_HASH_BYTES];

/// A reusable buffer for hashing rows without allocating per row.
#[derive(Debug, Default)]
pub(crate) struct RowHasher {
    encoded_row: Vec<u8>,
}

impl RowHasher {
    /// Hashes a row given as its raw cells.
    pub(crate) fn hash_row<'c>(
        &mut self,
        cells: impl ExactSizeIterator<Item = &'c [u8]>,
        comma_is_decimal: bool,
    ) -> RowHash {
        self.encoded_row.clear();
        self.encoded_row
            .extend_from_slice(&(cells.len() as u32).to_le_bytes());
        for cell in cells {
            // Each cell is normalised in place after room for its length, filled in after.
            let length_at = self.encoded_row.len();
            self.encoded_row.extend_from_slice(&[0; 4]);
            normalise_cell(cell, comma_is_decimal, &mut self.encoded_row);
            let cell_length = (self.encoded_row.len() - length_at - 4) as u32;
            self.encoded_row[length_at..length_at + 4].copy_from_slice(&cell_length.to_le_bytes());
        }
        let digest = Sha256::digest(&self.encoded_row);
        let mut row_hash = [0u8; ROW_HASH_BYTES];
        row_hash.copy_from_slice(&digest[..ROW_HASH_BYTES]);
        row_hash
    }
}

/// Appends the normalised form of `cell` to `normalised`.
pub(crate) fn normalise_cell(cell: &[u8], comma_is_decimal: bool, normalised: &mut Vec<u8>) {
    let cell = cell.trim_ascii();
    // One pass classifies the cell; most cells are plain counts or plain ASCII words.
    let (mut is_ascii, mut is_all_digits) = (true, true);
    for &byte in cell {
        is_ascii &= byte.is_ascii();
        is_all_digits &= byte.is_ascii_digit();
    }
    let is_canonical_integer =
        !cell.is_empty() && is_all_digits && (cell.len() == 1 || cell[0] != b'0');
    if is_canonical_integer {
        normalised.extend_from_slice(cell);
        return;
    }
    let start = normalised.len();
    if is_ascii {
        normalised.extend_from_slice(cell);
        normalised[start..].make_ascii_lowercase();
    } else if let Ok(text) = std::str::from_utf8(cell) {
        normalised.extend_from_slice(text.to_lowercase().as_bytes());
    } else {
        normalised.extend_from_slice(cell);
        normalised[start..].make_ascii_lowercase();
    }
    if normalised.len() - start <= 4 && is_missing_marker(&normalised[start..]) {
        normalised.truncate(start);
        return;
    }
    if matches!(normalised.get(start), Some(b'0'..=b'9' | b'-' | b'+')) {
        canonicalise_number(normalised, start, comma_is_decimal);
    }
}

/// Whether an already lower-cased cell spells a missing value.
pub(crate) fn is_missing_marker(lowercase_cell: &[u8]) -> bool {
    matches!(
        lowercase_cell,
        b"" | b"na" | b"n/a" | b"nan" | b"null" | b"none" | b"<na>"
    )
}

/// Rewrites `buffer[start..]` in canonical decimal form if it is a plain decimal number
/// (`[+-]?digits([.,]digits)?`); leaves anything else alone.
fn canonicalise_number(buffer: &mut Vec<u8>, start: usize, comma_is_decimal: bool) {
    let text = &buffer[start..];
    let (negative, unsigned) = match text.first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let separator_index = unsigned
        .iter()
        .position(|&byte| byte == b'.' || (byte == b',' && comma_is_decimal));
    let (integer_part, fraction_part) = match separator_index {
        Some(index) => (&unsigned[..index], &unsigned[index + 1..]),
        None => (unsigned, &[][..]),
    };
    let is_plain_number = !integer_part.is_empty()
        && integer_part.iter().all(u8::is_ascii_digit)
        && (separator_index.is_none()
            || (!fraction_part.is_empty() && fraction_part.iter().all(u8::is_ascii_digit)));
    if !is_plain_number {
        return;
    }
    let integer_digits = match integer_part.iter().position(|&byte| byte != b'0') {
        Some(first_non_zero) => &integer_part[first_non_zero..],
        None => &b"0"[..],
    };
    let fraction_digits = match fraction_part.iter().rposition(|&byte| byte != b'0') {
        Some(last_non_zero) => &fraction_part[..=last_non_zero],
        None => &[][..],
    };
    let is_zero = integer_digits == b"0" && fraction_digits.is_empty();
    // The canonical form is never longer than the text, so it is assembled in a small array.
    let mut canonical = [0u8; 64];
    let canonical_length = 1 + integer_digits.len() + 1 + fraction_digits.len();
    if canonical_length > canonical.len() {
        return;
    }
    let mut length = 0;
    let mut append = |part: &[u8]| {
        canonical[length..length + part.len()].copy_from_slice(part);
        length += part.len();
    };
    if negative && !is_zero {
        append(b"-");
    }
    append(integer_digits);
    if !fraction_digits.is_empty() {
        append(b".");
        append(fraction_digits);
    }
    buffer.truncate(start);
    buffer.extend_from_slice(&canonical[..length]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(cell: &str, comma_is_decimal: bool, expected: &str) {
        let mut normalised = Vec::new();
        normalise_cell(cell.as_bytes(), comma_is_decimal, &mut normalised);
        assert_eq!(
            String::from_utf8(normalised).unwrap(),
            expected,
            "cell {cell:?}"
        );
    }

    #[test]
    fn cells_are_trimmed_lowercased_and_numbers_canonical() {
        check("  Amsterdam ", false, "amsterdam");
        check("ÉCOLE", false, "école");
        check("NA", false, "");
        check(" null ", false, "");
        check("012.50", false, "12.5");
        check("7.0", false, "7");
        check("+3", false, "3");
        check("-0.00", false, "0");
        check("-4.20", false, "-4.2");
        check("12,5", true, "12.5");
        check("12,5", false, "12,5");
        check("1.2.3", false, "1.2.3");
        check("1e5", false, "1e5");
        check("0", false, "0");
        check(".5", false, ".5");
    }

    #[test]
    fn equal_rows_hash_alike_and_cell_boundaries_matter() {
        let mut row_hasher = RowHasher::default();
        let first = row_hasher.hash_row([&b" Jan "[..], b"34.0"].into_iter(), false);
        let second = row_hasher.hash_row([&b"jan"[..], b"34"].into_iter(), false);
        let shifted = row_hasher.hash_row([&b"ja"[..], b"n34"].into_iter(), false);
        let longer = row_hasher.hash_row([&b"jan"[..], b"34", b""].into_iter(), false);
        assert_eq!(first, second);
        assert_ne!(first, shifted);
        assert_ne!(first, longer);
    }
}
