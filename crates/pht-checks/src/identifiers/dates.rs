//! Dates (`12-03-1980`, `12/03/1980`, `12.03.1980`, `1980-03-12`, `19800312`, `12 maart 1980`),
//! Dutch and English month names included.
//!
//! Owns the date shapes and what counts as a plausible day, month and year. It does not decide
//! that a date is a date of birth: the scan flags one only near a birth context word.

use super::digits_end;

fn parse_digits(digits: &[u8]) -> u32 {
    digits
        .iter()
        .fold(0, |value, &digit| value * 10 + u32::from(digit - b'0'))
}

fn is_plausible_date(first: u32, second: u32, year: u32) -> bool {
    let is_day_month = (1..=31).contains(&first) && (1..=12).contains(&second);
    let is_month_day = (1..=12).contains(&first) && (1..=31).contains(&second);
    (1900..=2100).contains(&year) && (is_day_month || is_month_day)
}

const MONTH_NAMES: &[&[u8]] = &[
    b"januari",
    b"februari",
    b"maart",
    b"april",
    b"mei",
    b"juni",
    b"juli",
    b"augustus",
    b"september",
    b"oktober",
    b"november",
    b"december",
    b"january",
    b"february",
    b"march",
    b"may",
    b"june",
    b"july",
    b"august",
    b"october",
    b"jan",
    b"feb",
    b"mrt",
    b"mar",
    b"apr",
    b"jun",
    b"jul",
    b"aug",
    b"sep",
    b"sept",
    b"okt",
    b"oct",
    b"nov",
    b"dec",
];

/// A date starting at the digit run `start..run_end`; returns its end.
pub(super) fn match_date(bytes: &[u8], start: usize, run_end: usize) -> Option<usize> {
    let run_length = run_end - start;
    if run_length == 8 {
        let year = parse_digits(&bytes[start..start + 4]);
        let month = parse_digits(&bytes[start + 4..start + 6]);
        let day = parse_digits(&bytes[start + 6..start + 8]);
        return ((1900..=2100).contains(&year)
            && (1..=12).contains(&month)
            && (1..=31).contains(&day))
        .then_some(run_end);
    }
    let separator = *bytes.get(run_end)?;
    if matches!(separator, b'-' | b'/' | b'.') && matches!(run_length, 1 | 2 | 4) {
        let second_start = run_end + 1;
        let second_end = digits_end(bytes, second_start);
        if !(1..=2).contains(&(second_end - second_start))
            || bytes.get(second_end) != Some(&separator)
        {
            return None;
        }
        let third_start = second_end + 1;
        let third_end = digits_end(bytes, third_start);
        let first = parse_digits(&bytes[start..run_end]);
        let second = parse_digits(&bytes[second_start..second_end]);
        let third_length = third_end - third_start;
        let is_date = if run_length == 4 {
            (1..=2).contains(&third_length)
                && is_plausible_date(parse_digits(&bytes[third_start..third_end]), second, first)
        } else {
            third_length == 4
                && is_plausible_date(first, second, parse_digits(&bytes[third_start..third_end]))
        };
        return is_date.then_some(third_end);
    }
    if separator == b' ' && matches!(run_length, 1 | 2) {
        let name_start = run_end + 1;
        let mut name_end = name_start;
        while name_end < bytes.len() && bytes[name_end].is_ascii_alphabetic() {
            name_end += 1;
        }
        let month_name = &bytes[name_start..name_end];
        if !MONTH_NAMES
            .iter()
            .any(|name| name.eq_ignore_ascii_case(month_name))
        {
            return None;
        }
        let mut cursor = name_end;
        if bytes.get(cursor) == Some(&b'.') {
            cursor += 1;
        }
        if bytes.get(cursor) != Some(&b' ') {
            return None;
        }
        let year_start = cursor + 1;
        let year_end = digits_end(bytes, year_start);
        let day = parse_digits(&bytes[start..run_end]);
        return (year_end - year_start == 4
            && (1..=31).contains(&day)
            && (1900..=2100).contains(&parse_digits(&bytes[year_start..year_end])))
        .then_some(year_end);
    }
    None
}
