//! Dutch phone numbers: 10 national digits starting `0` (not `00`), or `+31`/`0031` with 9,
//! grouped like a phone (`06-12345678`, `020 123 4567`, `(020) 1234567`).
//!
//! Owns the grouping rules; it does not look at context, since a phone number fails wherever
//! it stands.

use super::{digits_end, is_followed_by_fraction};

/// A Dutch phone number starting at `start` (a digit, `+` or `(`); returns its end.
///
/// Collects digit groups joined by one space or hyphen (or a parenthesised area code), then
/// accepts the longest prefix of groups that spells a phone number, so a number followed by an
/// unrelated count (`06-12345678 12`) is still found.
pub(super) fn match_phone(bytes: &[u8], start: usize) -> Option<usize> {
    const MAX_GROUPS: usize = 8;
    const MAX_DIGITS: usize = 16;
    let n_bytes = bytes.len();
    let has_plus = bytes[start] == b'+';
    let mut cursor = if has_plus { start + 1 } else { start };
    let mut digits = [0u8; MAX_DIGITS];
    let mut n_digits = 0;
    // Per group: digits so far (cumulative) and the end of the group in the input.
    let mut groups = [(0usize, 0usize); MAX_GROUPS];
    let mut n_groups = 0;
    let mut first_group_length = 0;
    while n_groups < MAX_GROUPS {
        let opens_parenthesis = cursor < n_bytes && bytes[cursor] == b'(';
        let group_start = if opens_parenthesis {
            cursor + 1
        } else {
            cursor
        };
        let group_end = digits_end(bytes, group_start);
        if group_end == group_start || n_digits + (group_end - group_start) > MAX_DIGITS {
            break;
        }
        let mut after_group = group_end;
        if opens_parenthesis {
            if bytes.get(after_group) != Some(&b')') {
                break;
            }
            after_group += 1;
        }
        for &digit in &bytes[group_start..group_end] {
            digits[n_digits] = digit;
            n_digits += 1;
        }
        if n_groups == 0 {
            first_group_length = group_end - group_start;
        }
        groups[n_groups] = (n_digits, after_group);
        n_groups += 1;
        let next_opens_group = |index: usize| {
            index < n_bytes && (bytes[index].is_ascii_digit() || bytes[index] == b'(')
        };
        if after_group < n_bytes
            && matches!(bytes[after_group], b' ' | b'-')
            && next_opens_group(after_group + 1)
        {
            cursor = after_group + 1;
        } else if opens_parenthesis && after_group < n_bytes && bytes[after_group].is_ascii_digit()
        {
            cursor = after_group;
        } else {
            break;
        }
    }
    for group_count in (1..=n_groups).rev() {
        let (n_group_digits, group_end) = groups[group_count - 1];
        let candidate = &digits[..n_group_digits];
        if is_followed_by_fraction(bytes, group_end, false) {
            continue;
        }
        let is_phone = if has_plus {
            candidate
                .strip_prefix(b"31")
                .is_some_and(is_international_remainder)
        } else if let Some(remainder) = candidate.strip_prefix(b"0031") {
            is_international_remainder(remainder)
        } else {
            let plausible_grouping = group_count == 1 || (2..=4).contains(&first_group_length);
            candidate.len() == 10
                && candidate[0] == b'0'
                && candidate[1] != b'0'
                && plausible_grouping
        };
        if is_phone {
            return Some(group_end);
        }
    }
    None
}

/// The digits after `+31`/`0031`: 9 digits not starting with 0, or `(0)` written out (10 digits
/// starting with a single 0).
fn is_international_remainder(remainder: &[u8]) -> bool {
    (remainder.len() == 9 && remainder[0] != b'0')
        || (remainder.len() == 10 && remainder[0] == b'0' && remainder[1] != b'0')
}
