//! Which columns of a table hold counts. A train's declaration is not trusted to be complete: a
//! column is a count column when `train.yaml` declares it, when the policy names it, when its
//! header reads as a count in English, Dutch or German (`n`, `count`, `aantal`, `Anzahl`,
//! `number_of_patients`, ...; case and separator tolerant), or when its shape says so: whole
//! numbers beside categorical key columns. Declarations add to the inferred set, never replace
//! it.
//!
//! Owns the vocabulary, the per-column tally a table pass feeds, and the classification at the
//! end of the pass. It does not judge cells (the table rules do, into the tally's findings) and
//! it never puts header text from the file into the report: a column is named by its field
//! number and, at most, the declared, policy or vocabulary spelling it matched.
//!
//! Columns that are not counts, even when they hold whole numbers:
//! - a row index (an empty, `index`, `unnamed: 0` or `rownames` header over 0, 1, 2, ... or
//!   1, 2, 3, ...), as pandas and R write by default;
//! - an identifier (`id`, `code`, `patient_number`, ...) whose values are all distinct; one
//!   whose values repeat is judged by its shape, so a count cannot hide behind the name;
//! - a key named as one (`year`, `age`, `jaar`, `Alter`, `stage`, ...);
//! - a 0/1 indicator in a table that has another count column.
//!
//! A column of whole numbers in a table without any categorical key column cannot be
//! classified; the table goes to review with a finding saying so.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::report::{Position, RuleAccumulator};

/// Why a column is treated as a count column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CountColumnSource {
    /// `count_columns` of the output in `train.yaml`.
    Declared,
    /// The policy's `count_column_names`.
    Policy,
    /// Its header reads as a count (the matched word is the column's `name`).
    InferredFromName,
    /// Whole numbers beside categorical key columns.
    InferredFromShape,
}

/// A count column of a table, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountColumn {
    /// 1-based field number in the table.
    pub field: u64,
    /// The declared or policy spelling, or the vocabulary word the header matched; never text
    /// from the file. Absent for a column inferred from its shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Declared, named by the policy, or inferred.
    pub source: CountColumnSource,
}

/// What a header says about its column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameClass {
    /// A count word (the vocabulary's spelling).
    Count(&'static str),
    Identifier,
    Key,
    RowIndex,
    /// The value column of a declared magnitude table (`aggregates`): never a count; its cells
    /// are judged on their recomputed contributors instead.
    Magnitude,
    Other,
}

/// Words that make a header a count wherever they appear as a token.
const COUNT_WORDS: &[&str] = &[
    // English
    "n",
    "count",
    "counts",
    "cnt",
    "freq",
    "frequency",
    "frequencies",
    "total",
    "totals",
    "tally",
    "patients",
    "cases",
    "persons",
    "people",
    "subjects",
    "individuals",
    "participants",
    // Dutch
    "aantal",
    "aantallen",
    "totaal",
    "frequentie",
    "patienten",
    "patiënten",
    "gevallen",
    "personen",
    "deelnemers",
    // German
    "anzahl",
    "gesamt",
    "häufigkeit",
    "haeufigkeit",
    "haufigkeit",
    "fälle",
    "faelle",
    "fallzahl",
    "teilnehmer",
];

/// Words that make a header a count when they lead it (`number_of_patients`, `num_cases`) and
/// an identifier when they follow another word (`patient_number`, `patient_no`).
const NUMBER_WORDS: &[&str] = &["number", "num", "no", "nr", "nummer"];

/// Words that make a header an identifier.
const IDENTIFIER_WORDS: &[&str] = &[
    "id",
    "ids",
    "identifier",
    "uuid",
    "guid",
    "key",
    "code",
    "bsn",
    "mrn",
    "pid",
    "ssn",
    "nhs",
    "kennung",
];

/// Words that make a header a key (a dimension, not a count).
const KEY_WORDS: &[&str] = &[
    "year",
    "years",
    "jaar",
    "jahr",
    "age",
    "ages",
    "leeftijd",
    "alter",
    "month",
    "maand",
    "monat",
    "week",
    "woche",
    "day",
    "dag",
    "tag",
    "date",
    "datum",
    "quarter",
    "kwartaal",
    "quartal",
    "period",
    "periode",
    "time",
    "tijd",
    "zeit",
    "group",
    "groep",
    "gruppe",
    "category",
    "categorie",
    "kategorie",
    "class",
    "klasse",
    "level",
    "niveau",
    "stage",
    "stadium",
    "grade",
    "graad",
    "wave",
    "visit",
];

/// Headers pandas and R give a row index.
const ROW_INDEX_HEADERS: &[&str] = &["", "index", "unnamed: 0", "rownames", "row.names"];

/// Splits a header into lower-case tokens at separators and camel-case humps.
fn header_tokens(header: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut token = String::new();
    let mut previous_is_lowercase = false;
    for character in header.chars() {
        if !character.is_alphanumeric() {
            if !token.is_empty() {
                tokens.push(std::mem::take(&mut token));
            }
            previous_is_lowercase = false;
            continue;
        }
        if character.is_uppercase() && previous_is_lowercase && !token.is_empty() {
            tokens.push(std::mem::take(&mut token));
        }
        previous_is_lowercase = character.is_lowercase() || character.is_ascii_digit();
        token.extend(character.to_lowercase());
    }
    if !token.is_empty() {
        tokens.push(token);
    }
    tokens
}

/// What a raw header (as written in the file) says about its column.
pub(crate) fn classify_header(raw_header: &str) -> NameClass {
    let trimmed = raw_header.trim_start_matches('\u{feff}').trim();
    if ROW_INDEX_HEADERS.contains(&trimmed.to_lowercase().as_str()) {
        return NameClass::RowIndex;
    }
    let tokens = header_tokens(trimmed);
    let vocabulary_word = |words: &[&'static str], token: &str| -> Option<&'static str> {
        words.iter().copied().find(|word| *word == token)
    };
    if tokens
        .iter()
        .any(|token| vocabulary_word(IDENTIFIER_WORDS, token).is_some())
    {
        return NameClass::Identifier;
    }
    for (position, token) in tokens.iter().enumerate() {
        if let Some(word) = vocabulary_word(NUMBER_WORDS, token) {
            return if position == 0 {
                NameClass::Count(word)
            } else {
                NameClass::Identifier
            };
        }
    }
    if let Some(word) = tokens
        .iter()
        .find_map(|token| vocabulary_word(COUNT_WORDS, token))
    {
        return NameClass::Count(word);
    }
    if tokens
        .iter()
        .any(|token| vocabulary_word(KEY_WORDS, token).is_some())
    {
        return NameClass::Key;
    }
    NameClass::Other
}

/// Findings in one column's cells while it may be a count column; merged into the table's
/// rules only if it is one.
#[derive(Debug)]
pub(crate) struct CountFindings {
    pub(crate) threshold: RuleAccumulator,
    pub(crate) zero: RuleAccumulator,
    pub(crate) non_integer: RuleAccumulator,
    pub(crate) negative: RuleAccumulator,
    pub(crate) n_count_cells: u64,
}

impl CountFindings {
    pub(crate) fn new(max_positions: usize) -> CountFindings {
        use crate::report::Rule;
        CountFindings {
            threshold: RuleAccumulator::new(Rule::Threshold, max_positions),
            zero: RuleAccumulator::new(Rule::Zero, max_positions),
            non_integer: RuleAccumulator::new(Rule::NonInteger, max_positions),
            negative: RuleAccumulator::new(Rule::Negative, max_positions),
            n_count_cells: 0,
        }
    }

    /// Adds another column's findings; positions stay in file order, at most `max_positions`.
    pub(crate) fn merge(&mut self, other: CountFindings) {
        merge_accumulator(&mut self.threshold, other.threshold);
        merge_accumulator(&mut self.zero, other.zero);
        merge_accumulator(&mut self.non_integer, other.non_integer);
        merge_accumulator(&mut self.negative, other.negative);
        self.n_count_cells += other.n_count_cells;
    }
}

fn merge_accumulator(into: &mut RuleAccumulator, from: RuleAccumulator) {
    into.count += from.count;
    into.positions.extend(from.positions);
    into.positions
        .sort_by_key(|position: &Position| (position.line, position.column));
    into.positions.truncate(into.max_positions());
}

/// What a table pass learns about one column.
#[derive(Debug)]
pub(crate) struct ColumnTally {
    pub(crate) name_class: NameClass,
    /// Declared or named by the policy (spelling and source): a count column whatever it holds.
    pub(crate) known: Option<(String, CountColumnSource)>,
    /// Every non-missing cell so far is a whole, non-negative number.
    pub(crate) is_whole_numbers: bool,
    /// Some cell is text (not a number).
    pub(crate) has_text: bool,
    n_values: u64,
    only_zero_and_one: bool,
    counts_from_zero: bool,
    counts_from_one: bool,
    /// Values seen, kept only for identifier-named columns (to tell an identifier from a count
    /// hiding behind the name); `None` once a value repeats.
    distinct_values: Option<HashSet<u64>>,
    pub(crate) findings: CountFindings,
}

impl ColumnTally {
    pub(crate) fn new(
        name_class: NameClass,
        known: Option<(String, CountColumnSource)>,
        max_positions: usize,
    ) -> ColumnTally {
        ColumnTally {
            name_class,
            known,
            is_whole_numbers: true,
            has_text: false,
            n_values: 0,
            only_zero_and_one: true,
            counts_from_zero: true,
            counts_from_one: true,
            distinct_values: (name_class == NameClass::Identifier).then(HashSet::new),
            findings: CountFindings::new(max_positions),
        }
    }

    /// Whether the table pass still has to look at this column's cells.
    pub(crate) fn is_active(&self) -> bool {
        self.known.is_some() || self.is_whole_numbers
    }

    /// Records a whole number in row `row_index` (0-based).
    pub(crate) fn add_value(&mut self, value: u64, row_index: u64) {
        self.n_values += 1;
        self.only_zero_and_one &= value <= 1;
        self.counts_from_zero &= value == row_index;
        self.counts_from_one &= value == row_index + 1;
        if let Some(distinct_values) = &mut self.distinct_values {
            if !distinct_values.insert(value) {
                self.distinct_values = None;
            }
        }
    }

    /// Records an empty cell or missing marker.
    pub(crate) fn add_missing(&mut self) {
        self.counts_from_zero = false;
        self.counts_from_one = false;
    }

    /// Records a cell that is not a whole non-negative number; `is_text` when it is not a
    /// number at all. Findings gathered while the column looked like counts are dropped unless
    /// the column is a known count column.
    pub(crate) fn add_non_count(&mut self, is_text: bool) {
        self.has_text |= is_text;
        if self.is_whole_numbers && self.known.is_none() {
            self.findings = CountFindings::new(self.findings.threshold.max_positions());
            self.distinct_values = None;
        }
        self.is_whole_numbers = false;
    }
}

/// The role of a column once the whole table has been read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ColumnRole {
    Count(CountColumnSource, Option<String>),
    /// Whole numbers that could not be told apart from counts or keys.
    Unclassified,
    /// Anything else: keys, identifiers, row indexes, measures, text, empty columns.
    NotCount,
}

/// Decides each column's role from the tallies of a complete pass.
pub(crate) fn classify_columns(tallies: &[ColumnTally]) -> Vec<ColumnRole> {
    #[derive(Clone, Copy, PartialEq)]
    enum Pending {
        Decided,
        Numbers,
        Indicator,
    }
    let mut roles = Vec::with_capacity(tallies.len());
    let mut pending = Vec::with_capacity(tallies.len());
    let mut has_key_column = false;
    for tally in tallies {
        let (role, state) = if let Some((name, source)) = &tally.known {
            (
                ColumnRole::Count(*source, Some(name.clone())),
                Pending::Decided,
            )
        } else if !tally.is_whole_numbers || tally.n_values == 0 {
            has_key_column |= tally.has_text;
            (ColumnRole::NotCount, Pending::Decided)
        } else {
            match tally.name_class {
                NameClass::Count(word) => (
                    ColumnRole::Count(CountColumnSource::InferredFromName, Some(word.to_string())),
                    Pending::Decided,
                ),
                NameClass::RowIndex if tally.counts_from_zero || tally.counts_from_one => {
                    (ColumnRole::NotCount, Pending::Decided)
                }
                NameClass::Identifier if tally.distinct_values.is_some() => {
                    (ColumnRole::NotCount, Pending::Decided)
                }
                NameClass::Key => {
                    has_key_column = true;
                    (ColumnRole::NotCount, Pending::Decided)
                }
                NameClass::Magnitude => (ColumnRole::NotCount, Pending::Decided),
                _ if tally.only_zero_and_one => (ColumnRole::Unclassified, Pending::Indicator),
                _ => (ColumnRole::Unclassified, Pending::Numbers),
            }
        };
        roles.push(role);
        pending.push(state);
    }
    if !has_key_column {
        return roles;
    }
    for (role, state) in roles.iter_mut().zip(&pending) {
        if *state == Pending::Numbers {
            *role = ColumnRole::Count(CountColumnSource::InferredFromShape, None);
        }
    }
    let has_count_column = roles
        .iter()
        .any(|role| matches!(role, ColumnRole::Count(..)));
    for (role, state) in roles.iter_mut().zip(&pending) {
        if *state == Pending::Indicator {
            *role = if has_count_column {
                ColumnRole::NotCount
            } else {
                ColumnRole::Count(CountColumnSource::InferredFromShape, None)
            };
        }
    }
    roles
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_read_as_counts_identifiers_keys_or_row_indexes() {
        let cases: &[(&str, NameClass)] = &[
            ("n", NameClass::Count("n")),
            (" N ", NameClass::Count("n")),
            ("aantal", NameClass::Count("aantal")),
            ("Aantal_Patienten", NameClass::Count("aantal")),
            ("Anzahl", NameClass::Count("anzahl")),
            ("nPatients", NameClass::Count("n")),
            ("number_of_patients", NameClass::Count("number")),
            ("num-cases", NameClass::Count("num")),
            ("n_events", NameClass::Count("n")),
            ("Häufigkeit", NameClass::Count("häufigkeit")),
            ("patient_number", NameClass::Identifier),
            ("patient_id", NameClass::Identifier),
            ("PatientID", NameClass::Identifier),
            ("geboorte_jaar", NameClass::Key),
            ("age", NameClass::Key),
            ("", NameClass::RowIndex),
            ("Unnamed: 0", NameClass::RowIndex),
            ("bmi", NameClass::Other),
            ("region", NameClass::Other),
        ];
        for &(header, expected) in cases {
            assert_eq!(classify_header(header), expected, "{header:?}");
        }
    }

    fn tally(header: &str, values: &[Option<u64>], text: bool) -> ColumnTally {
        let mut tally = ColumnTally::new(classify_header(header), None, 10);
        for (row_index, value) in values.iter().enumerate() {
            match value {
                Some(value) => tally.add_value(*value, row_index as u64),
                None => tally.add_missing(),
            }
        }
        if text {
            tally.add_non_count(true);
        }
        tally
    }

    #[test]
    fn shape_makes_whole_numbers_beside_keys_counts_and_leaves_the_rest_unclassified() {
        let sex = tally("sex", &[], true);
        let females = tally("female", &[Some(12), Some(30)], false);
        let row_index = tally("", &[Some(0), Some(1)], false);
        let patient_id = tally("patient_id", &[Some(17), Some(4)], false);
        let disguised = tally("group_id", &[Some(3), Some(3)], false);
        let indicator = tally("diabetes", &[Some(0), Some(1)], false);
        let roles = classify_columns(&[sex, females, row_index, patient_id, disguised, indicator]);
        let shape = ColumnRole::Count(CountColumnSource::InferredFromShape, None);
        assert_eq!(
            roles,
            [
                ColumnRole::NotCount,
                shape.clone(),
                ColumnRole::NotCount,
                ColumnRole::NotCount,
                shape,
                ColumnRole::NotCount,
            ]
        );
        let without_keys = classify_columns(&[
            tally("x", &[Some(1), Some(5)], false),
            tally("y", &[Some(2), Some(2)], false),
        ]);
        assert_eq!(
            without_keys,
            [ColumnRole::Unclassified, ColumnRole::Unclassified]
        );
        let indicator_alone = classify_columns(&[
            tally("sex", &[], true),
            tally("diabetes", &[Some(0), Some(1)], false),
        ]);
        assert_eq!(
            indicator_alone[1],
            ColumnRole::Count(CountColumnSource::InferredFromShape, None)
        );
    }
}
