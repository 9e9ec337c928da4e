//! Dutch citizen service numbers (BSN): the shapes a BSN is written in and the 11-test.
//!
//! Owns recognising the number. Whether a BSN fails or is only flagged for review depends on a
//! context word nearby, which is the scan's and `context`'s business, not this file's.

use super::{digits_end, is_decimal_separator, is_followed_by_fraction};

/// A BSN-shaped number starting at the digit run `start..run_end`: 9 plain digits or three
/// groups (`4.2.3` with dots, `3-3-3` with one of space, hyphen or dot). Returns its end and its
/// nine digits.
pub(super) fn match_bsn_shape(
    bytes: &[u8],
    start: usize,
    run_end: usize,
    comma_is_decimal: bool,
) -> Option<(usize, [u8; 9])> {
    let run_length = run_end - start;
    let mut bsn_digits = [0u8; 9];
    if run_length == 9 {
        if is_followed_by_fraction(bytes, run_end, comma_is_decimal) {
            return None;
        }
        bsn_digits.copy_from_slice(&bytes[start..run_end]);
        return Some((run_end, bsn_digits));
    }
    let separator = *bytes.get(run_end)?;
    let later_group_lengths: &[usize] = match (run_length, separator) {
        (4, b'.') => &[2, 3],
        (3, b' ' | b'-' | b'.') => &[3, 3],
        _ => return None,
    };
    bsn_digits[..run_length].copy_from_slice(&bytes[start..run_end]);
    let mut n_digits = run_length;
    let mut cursor = run_end;
    for &group_length in later_group_lengths {
        if bytes.get(cursor) != Some(&separator) {
            return None;
        }
        let group_start = cursor + 1;
        let group_end = digits_end(bytes, group_start);
        if group_end - group_start != group_length {
            return None;
        }
        bsn_digits[n_digits..n_digits + group_length]
            .copy_from_slice(&bytes[group_start..group_end]);
        n_digits += group_length;
        cursor = group_end;
    }
    // A fourth group means a longer number written in groups, not a BSN.
    let continues = cursor + 1 < bytes.len()
        && (bytes[cursor] == separator || is_decimal_separator(bytes[cursor], comma_is_decimal))
        && bytes[cursor + 1].is_ascii_digit();
    (!continues).then_some((cursor, bsn_digits))
}

/// The BSN 11-test. All zeros passes arithmetically but is no number anyone has.
pub(super) fn passes_eleven_test(bsn_digits: &[u8; 9]) -> bool {
    if bsn_digits.iter().all(|&digit| digit == b'0') {
        return false;
    }
    let weighted_sum: i64 = bsn_digits[..8]
        .iter()
        .zip((2..=9).rev())
        .map(|(&digit, weight)| i64::from(digit - b'0') * weight)
        .sum::<i64>()
        - i64::from(bsn_digits[8] - b'0');
    weighted_sum % 11 == 0
}
