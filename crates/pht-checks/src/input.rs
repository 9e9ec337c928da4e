//! What the output checks are given: the collected files of a run and the outputs the train
//! declared in its `train.yaml`.
//!
//! Owns the input types and the matching of a file to its declaration. It does not read files
//! (the station's collector does that, without following links) and does not parse `train.yaml`
//! (the core crate does; the station converts its outputs into [`DeclaredOutput`]s).

use serde::{Deserialize, Serialize};

use crate::magnitude::{AggregateDeclaration, ModelDeclaration};

/// One file (or something that is not a file) found under `/output` after a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputEntry {
    /// Path relative to `/output`, segments separated by `/`, e.g. `tables/counts.csv`.
    pub path: String,
    /// What the collector found at that path.
    pub content: EntryContent,
}

impl OutputEntry {
    /// A regular file with its bytes.
    pub fn regular(path: impl Into<String>, bytes: impl Into<Vec<u8>>) -> OutputEntry {
        OutputEntry {
            path: path.into(),
            content: EntryContent::Regular(bytes.into()),
        }
    }

    /// A symbolic link. Links are never followed and never released.
    pub fn symlink(path: impl Into<String>, target: impl Into<String>) -> OutputEntry {
        OutputEntry {
            path: path.into(),
            content: EntryContent::Symlink {
                target: target.into(),
            },
        }
    }

    /// Something the collector found but did not collect, with why (a name that is not UTF-8,
    /// a path that escapes, a hard link, a cap reached). Never released.
    pub fn not_collected(path: impl Into<String>, reason: impl Into<String>) -> OutputEntry {
        OutputEntry {
            path: path.into(),
            content: EntryContent::NotCollected {
                reason: reason.into(),
            },
        }
    }

    /// A device, fifo, socket or anything else that is neither a file nor a link.
    pub fn special(path: impl Into<String>, description: impl Into<String>) -> OutputEntry {
        OutputEntry {
            path: path.into(),
            content: EntryContent::Special {
                description: description.into(),
            },
        }
    }
}

/// The content of an [`OutputEntry`].
///
/// Regular files are owned bytes: the station reads them once (bounded by the output size limit)
/// and lends the whole slice of entries to [`crate::check_outputs`], so nothing is copied here.
#[derive(Clone, PartialEq, Eq)]
pub enum EntryContent {
    /// A regular file and all of its bytes.
    Regular(Vec<u8>),
    /// A symbolic link; the target is kept for the station's own log, never put in the report.
    Symlink { target: String },
    /// A device, fifo, socket or other special file, described by the collector (e.g. `fifo`).
    Special { description: String },
    /// An entry the collector refused to collect, and why (its own words, never file content).
    NotCollected { reason: String },
}

impl std::fmt::Debug for EntryContent {
    // Printing a whole output file in a debug message would copy data into logs; show its size.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EntryContent::Regular(bytes) => write!(formatter, "Regular({} bytes)", bytes.len()),
            EntryContent::Symlink { .. } => write!(formatter, "Symlink"),
            EntryContent::Special { description } => write!(formatter, "Special({description})"),
            EntryContent::NotCollected { reason } => write!(formatter, "NotCollected({reason})"),
        }
    }
}

/// The kind of an output as declared in `train.yaml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// A table of aggregates (CSV, TSV or a JSON array of flat records).
    Table,
    /// A figure (PNG).
    Figure,
    /// Free text, e.g. a log of the analysis.
    Text,
    /// A fitted model; it can memorise rows, so it always needs a human eye.
    Model,
    /// State handed to the next station of a sequential route.
    State,
}

/// An output the train promised in `train.yaml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredOutput {
    /// Path relative to `/output`. A leading `/output/`, `/` or `./` is ignored, and `*` matches
    /// any run of characters within one path segment (`figures/*.png`).
    pub path: String,
    /// What kind of output this is.
    pub kind: OutputKind,
    /// For tables: the columns that hold counts (matched case-insensitively).
    pub count_columns: Vec<String>,
    /// For tables: the cells aggregate a dataset column; the station recomputes and judges them.
    pub aggregates: Option<AggregateDeclaration>,
    /// For models: how many observations and parameters it was fitted with.
    pub model: Option<ModelDeclaration>,
}

impl DeclaredOutput {
    /// A declaration without count columns.
    pub fn new(path: impl Into<String>, kind: OutputKind) -> DeclaredOutput {
        DeclaredOutput {
            path: path.into(),
            kind,
            count_columns: Vec::new(),
            aggregates: None,
            model: None,
        }
    }

    /// A table declaration with its count columns.
    pub fn table<S: Into<String>>(
        path: impl Into<String>,
        count_columns: impl IntoIterator<Item = S>,
    ) -> DeclaredOutput {
        DeclaredOutput {
            path: path.into(),
            kind: OutputKind::Table,
            count_columns: count_columns.into_iter().map(Into::into).collect(),
            aggregates: None,
            model: None,
        }
    }

    /// A magnitude table: its cells aggregate a dataset column as `aggregates` says.
    pub fn magnitude(path: impl Into<String>, aggregates: AggregateDeclaration) -> DeclaredOutput {
        DeclaredOutput {
            aggregates: Some(aggregates),
            ..DeclaredOutput::new(path, OutputKind::Table)
        }
    }

    /// A model fitted with `model`'s observations and parameters.
    pub fn model(path: impl Into<String>, model: ModelDeclaration) -> DeclaredOutput {
        DeclaredOutput {
            model: Some(model),
            ..DeclaredOutput::new(path, OutputKind::Model)
        }
    }

    /// Whether this declaration covers the collected file at `path`.
    pub fn matches(&self, path: &str) -> bool {
        let pattern = strip_output_prefix(&self.path);
        let pattern_segments: Vec<&str> = pattern.split('/').collect();
        let path_segments: Vec<&str> = path.split('/').collect();
        pattern_segments.len() == path_segments.len()
            && pattern_segments
                .iter()
                .zip(&path_segments)
                .all(|(pattern_segment, path_segment)| {
                    segment_matches(pattern_segment.as_bytes(), path_segment.as_bytes())
                })
    }
}

/// The first declaration that covers `path`, if any.
pub(crate) fn find_declaration<'d>(
    declared: &'d [DeclaredOutput],
    path: &str,
) -> Option<&'d DeclaredOutput> {
    declared
        .iter()
        .find(|declared_output| declared_output.matches(path))
}

fn strip_output_prefix(path: &str) -> &str {
    let path = path.strip_prefix("/output/").unwrap_or(path);
    let path = path.strip_prefix("./").unwrap_or(path);
    path.strip_prefix('/').unwrap_or(path)
}

/// Matches one path segment against a pattern in which `*` stands for any run of bytes.
fn segment_matches(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| segment_matches(rest, &text[skip..])),
        Some((first, rest)) => text.first() == Some(first) && segment_matches(rest, &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pattern: &str, path: &str, expected: bool) {
        let declared_output = DeclaredOutput::new(pattern, OutputKind::Table);
        assert_eq!(
            declared_output.matches(path),
            expected,
            "pattern {pattern:?} path {path:?}"
        );
    }

    #[test]
    fn declared_paths_match_exactly_or_by_segment_glob() {
        check("counts.csv", "counts.csv", true);
        check("/output/counts.csv", "counts.csv", true);
        check("./tables/counts.csv", "tables/counts.csv", true);
        check("counts.csv", "tables/counts.csv", false);
        check("figures/*.png", "figures/age.png", true);
        check("figures/*.png", "figures/sub/age.png", false);
        check("*.csv", "counts.tsv", false);
        check("table_*_by_*.csv", "table_age_by_sex.csv", true);
    }

    #[test]
    fn debug_output_of_a_file_shows_its_size_not_its_bytes() {
        let entry = OutputEntry::regular("a.csv", b"secret,1\n".to_vec());
        assert_eq!(
            format!("{entry:?}"),
            r#"OutputEntry { path: "a.csv", content: Regular(9 bytes) }"#
        );
    }
}
