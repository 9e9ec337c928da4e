//! Sealed bundles: what leaves a station, packed, signed and encrypted, and how it is opened.
//!
//! Owns the bundle layout and both directions over bytes:
//!
//! - a **result bundle** (`seal_bundle` / `open_bundle`) is an uncompressed ustar archive with
//!   `report.json` (the output checks' report), `outputs/<path>` for every released file and,
//!   last, `provenance.dsse.json`: a DSSE envelope signed by the station over an in-toto
//!   Statement whose subjects are every other member with its SHA-256 and whose predicate is
//!   [`ResultPredicate`](crate::intoto::ResultPredicate). The archive is encrypted with age
//!   (binary format) to every recipient.
//! - a **state bundle** (`seal_state` / `open_state`) is the same mechanism for the state one
//!   stop of a sequential route hands to the next: `state/<path>` members, a
//!   [`StatePredicate`](crate::intoto::StatePredicate), encrypted to the next station's age
//!   recipient.
//!
//! Opening refuses anything but regular files at safe relative paths, verifies the signature
//! against named station keys and checks that the signed subjects and the archive's members are
//! the same set with the same hashes. Every refusal says what failed and what to do.
//!
//! This module does no I/O: no files, no clock, no network. Where bundles are stored, how they
//! travel and which station keys to trust are the callers' business. It writes and reads the
//! ustar format itself, because the reader must accept only the narrow subset the writer
//! produces (no links, no PAX or GNU extension headers, no directories).
//!
//! One concern a file: `path` says which paths may appear in a bundle, `error` why sealing or
//! opening failed, `sealing` packs, signs and encrypts, `opening` decrypts and verifies (and is
//! the only maker of the opened types), and `ustar` is the archive format both directions share.
//! This file holds the layout constants and what tells the two kinds of bundle apart.

mod error;
mod opening;
mod path;
mod sealing;
#[cfg(test)]
mod tests;
mod ustar;

pub use error::{ArchiveError, BundleKind, OpenError, SealError};
pub use opening::{open_bundle, open_state, OpenedBundle, OpenedState};
pub use path::{check_relative_path, PathProblem};
pub use sealing::{seal_bundle, seal_state};

use crate::intoto::{RESULT_PREDICATE_TYPE_V1, STATE_PREDICATE_TYPE_V1};

/// The check report's path in a result bundle.
pub const REPORT_PATH: &str = "report.json";
/// The signed provenance's path in every bundle.
pub const PROVENANCE_PATH: &str = "provenance.dsse.json";
/// The directory of released outputs in a result bundle.
pub const OUTPUTS_DIR: &str = "outputs";
/// The directory of state files in a state bundle.
pub const STATE_DIR: &str = "state";

/// The most members an archive may hold when opened (bounds the work a hostile archive causes).
pub const MAX_ARCHIVE_ENTRIES: usize = 65_536;
/// The largest provenance envelope accepted when opening: ample for the entry limit above.
pub const MAX_PROVENANCE_BYTES: usize = 64 << 20;
/// The most signatures a provenance envelope may carry (a station signs once; this bounds the
/// verification work a hostile envelope causes).
pub const MAX_ENVELOPE_SIGNATURES: usize = 16;
/// The largest single file a bundle can hold: what the ustar size field can express.
pub const MAX_FILE_BYTES: u64 = 0o77777777777;

/// What distinguishes the two kinds of bundle.
struct Layout {
    kind: BundleKind,
    /// The directory the payload files live in.
    files_dir: &'static str,
    /// Whether `report.json` is part of the bundle.
    has_report: bool,
    predicate_type: &'static str,
}

const RESULT_LAYOUT: Layout = Layout {
    kind: BundleKind::Result,
    files_dir: OUTPUTS_DIR,
    has_report: true,
    predicate_type: RESULT_PREDICATE_TYPE_V1,
};

const STATE_LAYOUT: Layout = Layout {
    kind: BundleKind::State,
    files_dir: STATE_DIR,
    has_report: false,
    predicate_type: STATE_PREDICATE_TYPE_V1,
};
