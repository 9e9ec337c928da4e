//! Context words: the names near a number that make it a BSN or a date of birth, looked for in
//! the text around a match and in a table's column headers.
//!
//! Owns the word lists and how a word matches (word boundaries, camel case, separators). It
//! does not find numbers or dates; the scan asks it whether a window holds context.

/// For tables: which columns lend context to a BSN or a date found in them.
#[derive(Debug, Default)]
pub(crate) struct TableColumns {
    pub(crate) is_bsn_column: Vec<bool>,
    pub(crate) is_date_of_birth_column: Vec<bool>,
}

impl TableColumns {
    /// Classifies header names (as written in the file).
    pub(crate) fn from_header<'h>(header_names: impl Iterator<Item = &'h [u8]>) -> TableColumns {
        let mut table_columns = TableColumns::default();
        for header_name in header_names {
            let whole_name = 0..header_name.len();
            table_columns.is_bsn_column.push(contains_context_word(
                header_name,
                whole_name.clone(),
                BSN_WORDS,
            ));
            table_columns
                .is_date_of_birth_column
                .push(contains_context_word(
                    header_name,
                    whole_name,
                    DATE_OF_BIRTH_WORDS,
                ));
        }
        table_columns
    }
}

/// A context word, and whether it must also end at a word boundary (`dob`, not `dobbelsteen`).
/// Every word starts at a word boundary (after a non-alphanumeric byte, or at a camel-case
/// hump: `patientBSN`). A space in a word matches up to two separators (space, `_`, `-`, `.`)
/// or none, so `date of birth` also matches `date_of_birth` and `DateOfBirth`.
type ContextWord = (&'static [u8], bool);

pub(super) const BSN_WORDS: &[ContextWord] = &[
    (b"bsn", false),
    (b"burger service nummer", false),
    (b"burger service nr", false),
    (b"sofi nummer", false),
    (b"sofi nr", false),
    (b"citizen service number", false),
];

/// Words that name a date of birth, not merely birth: `birth_weight`, `birth_year` and
/// `geboortegewicht` are common perinatal columns whose neighbours are not birth dates.
pub(super) const DATE_OF_BIRTH_WORDS: &[ContextWord] = &[
    (b"dob", true),
    (b"d.o.b", false),
    (b"date of birth", false),
    (b"birth date", false),
    (b"birth dt", false),
    (b"birthday", false),
    (b"born", true),
    (b"geboorte datum", false),
    (b"geboren", true),
    (b"geb datum", false),
    (b"geb dat", true),
    (b"geb", true),
];

/// Whether `bytes[window]` contains one of `words` (see [`ContextWord`]), case-insensitively.
pub(super) fn contains_context_word(
    bytes: &[u8],
    window: std::ops::Range<usize>,
    words: &[ContextWord],
) -> bool {
    let window_end = window.end;
    let is_word_byte = |index: usize| bytes.get(index).is_some_and(u8::is_ascii_alphanumeric);
    for index in window {
        let starts_word = index == 0
            || !is_word_byte(index - 1)
            || (bytes[index].is_ascii_uppercase() && bytes[index - 1].is_ascii_lowercase());
        if !starts_word {
            continue;
        }
        let first_byte = bytes[index].to_ascii_lowercase();
        for &(word, needs_end_boundary) in words {
            if word[0] != first_byte {
                continue;
            }
            let Some(word_end) = match_context_word(bytes, index, window_end, word) else {
                continue;
            };
            let ends_word = !is_word_byte(word_end)
                || (bytes[word_end].is_ascii_uppercase()
                    && bytes[word_end - 1].is_ascii_lowercase());
            if !needs_end_boundary || ends_word {
                return true;
            }
        }
    }
    false
}

/// Matches `word` at `bytes[start..window_end]`; returns the end of the match.
fn match_context_word(bytes: &[u8], start: usize, window_end: usize, word: &[u8]) -> Option<usize> {
    const MAX_SEPARATORS: usize = 2;
    let mut position = start;
    for &word_byte in word {
        if word_byte == b' ' {
            let mut n_separators = 0;
            while n_separators < MAX_SEPARATORS
                && position < window_end
                && matches!(bytes[position], b' ' | b'_' | b'-' | b'.')
            {
                position += 1;
                n_separators += 1;
            }
            continue;
        }
        if position >= window_end || bytes[position].to_ascii_lowercase() != word_byte {
            return None;
        }
        position += 1;
    }
    Some(position)
}
