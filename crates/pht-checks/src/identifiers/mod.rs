//! Direct identifiers in text: Dutch BSN, e-mail addresses, Dutch phone numbers, Dutch postcodes,
//! dates of birth and long digit runs, found by one hand-written pass over the bytes.
//!
//! Owns the patterns, their context words and what each finding means (fail or review). It does
//! not know file types: callers hand it a whole text, or the cells of a table one by one with
//! which columns are named like a BSN or a date of birth. It records rule, count and position
//! only, never the matched text.
//!
//! Why a scanner and not regular expressions: the scan runs over every text output (100 MB
//! tables included) and almost every byte is boring; a lookup table skips those, the digit
//! patterns share one look at each run of digits, and in tables only cells that can hold a
//! pattern are visited at all.
//!
//! What it cannot do: it catches identifiers written plainly, by mistake. A train that encodes
//! data on purpose (JSON `\u` escapes, base64, digits spelled out) gets past it; signatures,
//! policy and the human review of flagged outputs are the defences against that.
//!
//! Decisions that keep false positives sane:
//! - fractional digits (`0.123456789`) and integer parts of decimals (`1234567890.5`) are numbers,
//!   never identifiers;
//! - a BSN is 9 digits (or `1234.56.782`, `123-456-782`, `123 456 782`) passing the 11-test
//!   (`9*d1 + 8*d2 + ... + 2*d8 - d9` divisible by 11, not all zeros); with a BSN context word
//!   within `identifier_context_chars` it fails, without one it is flagged for review because a
//!   random 9-digit number passes the test one time in eleven; an invalid one is not a BSN;
//! - a phone number needs 10 national digits starting `0` (not `00`), or `+31`/`0031` with 9
//!   digits, grouped like a phone (`06-12345678`, `020 123 4567`, `(020) 1234567`);
//! - a postcode is `1234AB` or `1234 AB`: first digit not 0, upper-case letters, not SA/SD/SS,
//!   standing alone (`1500 MG`-style false positives are accepted as reviews; lower-case is not
//!   matched, so `2020 we` in prose does not trip it);
//! - a date (`12-03-1980`, `12/03/1980`, `12.03.1980`, `1980-03-12`, `19800312`, `12 maart 1980`)
//!   is only flagged near a date-of-birth context word or in a column so named; other dates pass;
//! - "near" is within `identifier_context_chars` characters; in a table only on the same row,
//!   plus the column's header, so a birth-date column does not taint the visit date beside it;
//! - obfuscated e-mail (`user at example dot com`) and version strings (`pkg@1.2.3`) are not
//!   e-mail addresses: the domain needs a dot and an alphabetic top-level label.
//!
//! The files: `scan` is the machinery (the byte loop, context windows, positions) and calls one
//! detector a pattern: `bsn`, `email`, `phone`, `postcode`, `dates`; `context` holds the
//! context words and the table columns named like them; `findings` turns what was flagged into
//! rule results. This file holds the scan's settings and the digit helpers the detectors share.

mod bsn;
mod context;
mod dates;
mod email;
mod findings;
mod phone;
mod postcode;
mod scan;
#[cfg(test)]
mod tests;

pub(crate) use context::TableColumns;
pub(crate) use scan::{can_start_pattern, IdentifierScan, ShortestPatterns};

/// Settings of one scan.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScanSettings {
    pub(crate) max_digit_run: usize,
    pub(crate) context_chars: usize,
    /// Whether `,` between digits is a decimal separator (semicolon and tab separated tables).
    pub(crate) comma_is_decimal: bool,
}

fn digits_end(bytes: &[u8], start: usize) -> usize {
    let mut end = start;
    while end < bytes.len() && bytes[end].is_ascii_digit() {
        end += 1;
    }
    end
}

fn is_decimal_separator(byte: u8, comma_is_decimal: bool) -> bool {
    byte == b'.' || (comma_is_decimal && byte == b',')
}

fn is_followed_by_fraction(bytes: &[u8], end: usize, comma_is_decimal: bool) -> bool {
    end + 1 < bytes.len()
        && is_decimal_separator(bytes[end], comma_is_decimal)
        && bytes[end + 1].is_ascii_digit()
}
