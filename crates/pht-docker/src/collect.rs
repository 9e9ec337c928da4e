//! Safe collection of a run's `/output` from a tar stream, such as Docker's archive API returns.
//!
//! Owns: reading the archive without trusting it. Links are recorded, never followed; special
//! files, hard links and paths that would leave `/output` are refused and recorded with a
//! reason; collection stops at a size cap and an entry-count cap. Every regular file keeps its
//! bytes, size and SHA-256. Pure over [`std::io::Read`]: no Docker, no file system, so it is tested
//! with hand-made archives.
//!
//! Does not judge the outputs (file types, counts, identifiers: that is the output checks'
//! job) and never writes anything to disk.

use std::collections::BTreeSet;
use std::fmt;
use std::io::{self, Read};

use sha2::{Digest, Sha256};

/// How much of an archive the collector is willing to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectLimits {
    /// Bytes of regular-file content kept, all files together.
    pub max_total_bytes: u64,
    /// Entries read, directories and refused entries included, the root excluded.
    pub max_entries: u64,
}

impl CollectLimits {
    /// Archive bytes the collector reads at most: the content cap plus generous room for the
    /// headers of every entry (a PAX or GNU long-name header, then the entry's own header, each
    /// with a path of up to 4 KiB), so a hostile archive cannot make it read forever.
    fn max_archive_bytes(&self) -> u64 {
        const PER_ENTRY_OVERHEAD_BYTES: u64 = 4 * 512 + 2 * 4096;
        const SLACK_BYTES: u64 = 1024 * 1024;
        self.max_total_bytes
            .saturating_add(
                self.max_entries
                    .saturating_add(2)
                    .saturating_mul(PER_ENTRY_OVERHEAD_BYTES),
            )
            .saturating_add(SLACK_BYTES)
    }
}

/// Everything collected from one `/output`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollectedOutputs {
    /// The inventory of `/output` at safe paths: regular files with their bytes, symbolic links
    /// with their targets, special files with a description. In archive order.
    pub files: Vec<CollectedFile>,
    /// Every entry whose content was not collected, and why.
    pub refused: Vec<RefusedEntry>,
    /// Collection stopped early at a cap: there may be more in `/output` than listed here.
    pub truncated: bool,
    /// Bytes of regular-file content collected.
    pub total_bytes: u64,
    /// Archive entries seen, directories and refused entries included, the root excluded.
    pub entries_seen: u64,
}

impl CollectedOutputs {
    /// The collected regular file at `path`, if there is one.
    pub fn regular_file(&self, path: &str) -> Option<&[u8]> {
        self.files.iter().find_map(|file| match &file.kind {
            CollectedKind::Regular { bytes } if file.path == path => Some(bytes.as_slice()),
            _ => None,
        })
    }
}

/// One entry of `/output`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectedFile {
    /// Relative to `/output`, `/`-separated, without `.` or `..` components.
    pub path: String,
    pub kind: CollectedKind,
    /// Bytes of content: the file's bytes for a regular file, the target's bytes for a link,
    /// zero for a special file.
    pub size: u64,
    /// SHA-256 (lowercase hex) of the same content `size` counts.
    pub sha256: String,
}

#[derive(Clone, PartialEq, Eq)]
pub enum CollectedKind {
    Regular {
        bytes: Vec<u8>,
    },
    /// A symbolic link, recorded with its target and never resolved.
    Symlink {
        target: String,
    },
    /// A device, fifo, hard link or other entry whose content is never collected.
    Special {
        description: String,
    },
}

impl fmt::Debug for CollectedKind {
    // Outputs can be large; a debug print shows their size, not their bytes.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CollectedKind::Regular { bytes } => write!(formatter, "Regular({} bytes)", bytes.len()),
            CollectedKind::Symlink { target } => write!(formatter, "Symlink({target:?})"),
            CollectedKind::Special { description } => {
                write!(formatter, "Special({description:?})")
            }
        }
    }
}

/// An entry of the archive that was not collected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedEntry {
    /// Relative to `/output` when the path is safe; otherwise as the archive named it, lossily
    /// decoded.
    pub path: String,
    pub reason: RefusalReason,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefusalReason {
    /// An absolute path, a `..` component or a path outside the archive's root.
    PathEscape,
    /// A name that is not UTF-8 or contains a control character.
    UnsafeName,
    /// A second entry at a path already collected.
    Duplicate,
    /// A device, fifo or other special file.
    SpecialFile { description: String },
    /// A hard link; its target's content is never copied through it.
    HardLink { target: String },
    /// A regular file that would take the collected bytes past the cap.
    SizeCap { size: u64, max_total_bytes: u64 },
    /// An entry past the entry-count cap.
    EntryCap { max_entries: u64 },
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefusalReason::PathEscape => write!(formatter, "path leaves the output directory"),
            RefusalReason::UnsafeName => {
                write!(
                    formatter,
                    "name is not UTF-8 or contains a control character"
                )
            }
            RefusalReason::Duplicate => write!(formatter, "second entry at the same path"),
            RefusalReason::SpecialFile { description } => {
                write!(formatter, "special file ({description}) is never collected")
            }
            RefusalReason::HardLink { target } => {
                write!(formatter, "hard link to {target:?} is never followed")
            }
            RefusalReason::SizeCap {
                size,
                max_total_bytes,
            } => write!(
                formatter,
                "file of {size} bytes would exceed the output cap of {max_total_bytes} bytes"
            ),
            RefusalReason::EntryCap { max_entries } => {
                write!(formatter, "more than {max_entries} entries in the output")
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("could not read the output archive after {entries_read} entries (last: {last_path:?}): {source}")]
    Archive {
        entries_read: u64,
        last_path: String,
        source: io::Error,
    },
    #[error("could not read the outputs in {dir}: {source}")]
    Walk { dir: String, source: io::Error },
}

/// Collects the outputs under `root` (the archive's top directory, `output` for Docker's archive
/// of `/output`) from a tar stream.
pub fn collect_outputs(
    archive: impl Read,
    root: &str,
    limits: &CollectLimits,
) -> Result<CollectedOutputs, CollectError> {
    let limited_archive = LimitedReader::new(archive, limits.max_archive_bytes());
    let mut tar_archive = tar::Archive::new(limited_archive);
    let mut outputs = CollectedOutputs::default();
    let mut seen_paths: BTreeSet<String> = BTreeSet::new();
    let mut entries_read: u64 = 0;
    let mut last_path = String::new();

    let archive_error =
        |entries_read: u64, last_path: &str, source: io::Error| CollectError::Archive {
            entries_read,
            last_path: last_path.to_string(),
            source,
        };

    let entries = tar_archive
        .entries()
        .map_err(|source| archive_error(0, "", source))?;
    for entry in entries {
        let mut entry = match entry {
            Ok(entry) => entry,
            Err(source) if is_limit_reached(&source) => {
                outputs.truncated = true;
                break;
            }
            Err(source) => return Err(archive_error(entries_read, &last_path, source)),
        };
        entries_read += 1;
        let raw_path = entry.path_bytes().into_owned();
        last_path = String::from_utf8_lossy(&raw_path).into_owned();

        let relative_path = relative_output_path(&raw_path, root);
        if matches!(relative_path, Ok(RelativePath::Root)) {
            continue;
        }
        if outputs.entries_seen >= limits.max_entries {
            let path = match &relative_path {
                Ok(RelativePath::Below(path)) => path.clone(),
                _ => last_path.clone(),
            };
            outputs.refused.push(RefusedEntry {
                path,
                reason: RefusalReason::EntryCap {
                    max_entries: limits.max_entries,
                },
            });
            outputs.truncated = true;
            break;
        }
        outputs.entries_seen += 1;
        let relative_path = match relative_path {
            Ok(RelativePath::Root) => continue,
            Ok(RelativePath::Below(path)) => path,
            Err(reason) => {
                outputs.refused.push(RefusedEntry {
                    path: last_path.clone(),
                    reason,
                });
                continue;
            }
        };

        let entry_type = entry.header().entry_type();
        if entry_type.is_dir() {
            continue;
        }
        if !seen_paths.insert(relative_path.clone()) {
            outputs.refused.push(RefusedEntry {
                path: relative_path,
                reason: RefusalReason::Duplicate,
            });
            continue;
        }

        match entry_type {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry
                    .header()
                    .size()
                    .map_err(|source| archive_error(entries_read, &last_path, source))?;
                if outputs.total_bytes.saturating_add(size) > limits.max_total_bytes {
                    outputs.refused.push(RefusedEntry {
                        path: relative_path,
                        reason: RefusalReason::SizeCap {
                            size,
                            max_total_bytes: limits.max_total_bytes,
                        },
                    });
                    outputs.truncated = true;
                    break;
                }
                let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
                match entry.read_to_end(&mut bytes) {
                    Ok(_) => {}
                    Err(source) if is_limit_reached(&source) => {
                        outputs.truncated = true;
                        break;
                    }
                    Err(source) => return Err(archive_error(entries_read, &last_path, source)),
                }
                outputs.total_bytes += bytes.len() as u64;
                outputs.files.push(CollectedFile {
                    path: relative_path,
                    size: bytes.len() as u64,
                    sha256: sha256_hex(&bytes),
                    kind: CollectedKind::Regular { bytes },
                });
            }
            tar::EntryType::Symlink => {
                let target = link_target(&entry);
                outputs.files.push(CollectedFile {
                    path: relative_path,
                    size: target.len() as u64,
                    sha256: sha256_hex(target.as_bytes()),
                    kind: CollectedKind::Symlink { target },
                });
            }
            tar::EntryType::Link => {
                let target = link_target(&entry);
                outputs.files.push(special_file(
                    &relative_path,
                    format!("hard link to {target:?}"),
                ));
                outputs.refused.push(RefusedEntry {
                    path: relative_path,
                    reason: RefusalReason::HardLink { target },
                });
            }
            other => {
                let description = describe_special(other, entry.header());
                outputs
                    .files
                    .push(special_file(&relative_path, description.clone()));
                outputs.refused.push(RefusedEntry {
                    path: relative_path,
                    reason: RefusalReason::SpecialFile { description },
                });
            }
        }
    }
    Ok(outputs)
}

enum RelativePath {
    Root,
    Below(String),
}

/// `output/tables/a.csv` → `tables/a.csv`; refuses anything that is not plainly below `root`.
fn relative_output_path(raw_path: &[u8], root: &str) -> Result<RelativePath, RefusalReason> {
    let path = std::str::from_utf8(raw_path).map_err(|_| RefusalReason::UnsafeName)?;
    if path.chars().any(char::is_control) {
        return Err(RefusalReason::UnsafeName);
    }
    if path.starts_with('/') {
        return Err(RefusalReason::PathEscape);
    }
    let mut components = Vec::new();
    for component in path.split('/') {
        match component {
            "" | "." => continue,
            ".." => return Err(RefusalReason::PathEscape),
            normal => components.push(normal),
        }
    }
    match components.split_first() {
        Some((first, rest)) if *first == root => {
            if rest.is_empty() {
                Ok(RelativePath::Root)
            } else {
                Ok(RelativePath::Below(rest.join("/")))
            }
        }
        _ => Err(RefusalReason::PathEscape),
    }
}

fn link_target<R: Read>(entry: &tar::Entry<'_, R>) -> String {
    entry
        .link_name_bytes()
        .map(|target| String::from_utf8_lossy(&target).into_owned())
        .unwrap_or_default()
}

fn special_file(path: &str, description: String) -> CollectedFile {
    CollectedFile {
        path: path.to_string(),
        size: 0,
        sha256: sha256_hex(b""),
        kind: CollectedKind::Special { description },
    }
}

fn describe_special(entry_type: tar::EntryType, header: &tar::Header) -> String {
    let device = || match (
        header.device_major().ok().flatten(),
        header.device_minor().ok().flatten(),
    ) {
        (Some(major), Some(minor)) => format!(" {major}:{minor}"),
        _ => String::new(),
    };
    match entry_type {
        tar::EntryType::Char => format!("character device{}", device()),
        tar::EntryType::Block => format!("block device{}", device()),
        tar::EntryType::Fifo => "fifo".to_string(),
        tar::EntryType::GNUSparse => "sparse file".to_string(),
        other => format!("entry of type {:?}", other.as_byte() as char),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Message of the error [`LimitedReader`] returns once its budget is spent.
const ARCHIVE_LIMIT_MESSAGE: &str = "archive is larger than the collector reads";

fn is_limit_reached(error: &io::Error) -> bool {
    // The tar reader may wrap our error in its own; look at the message chain.
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = current {
        if error.to_string().contains(ARCHIVE_LIMIT_MESSAGE) {
            return true;
        }
        current = error.source();
    }
    false
}

/// A reader that fails, rather than ends, once `remaining` bytes have been read, so that a cut
/// archive is told apart from a complete one.
struct LimitedReader<R> {
    inner: R,
    remaining: u64,
}

impl<R> LimitedReader<R> {
    fn new(inner: R, limit: u64) -> Self {
        LimitedReader {
            inner,
            remaining: limit,
        }
    }
}

impl<R: Read> Read for LimitedReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        if buffer.is_empty() {
            return Ok(0);
        }
        if self.remaining == 0 {
            return Err(io::Error::other(ARCHIVE_LIMIT_MESSAGE));
        }
        let allowed = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(buffer.len());
        let n_bytes = self.inner.read(&mut buffer[..allowed])?;
        self.remaining -= n_bytes as u64;
        Ok(n_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    /// One entry of a hand-made archive.
    enum TestEntry<'a> {
        Directory(&'a str),
        File(&'a str, &'a [u8]),
        Symlink(&'a str, &'a str),
        HardLink(&'a str, &'a str),
        Fifo(&'a str),
        CharDevice(&'a str, u32, u32),
    }

    /// Builds a tar archive byte by byte through the `tar` crate's header API, with names set
    /// raw so that hostile paths (`..`, absolute) survive into the archive.
    fn archive(entries: &[TestEntry<'_>]) -> Vec<u8> {
        let mut archive_bytes = Vec::new();
        for entry in entries {
            let mut header = tar::Header::new_old();
            let (name, entry_type, content, link): (&str, tar::EntryType, &[u8], Option<&str>) =
                match entry {
                    TestEntry::Directory(name) => (name, tar::EntryType::Directory, b"", None),
                    TestEntry::File(name, content) => {
                        (name, tar::EntryType::Regular, content, None)
                    }
                    TestEntry::Symlink(name, target) => {
                        (name, tar::EntryType::Symlink, b"", Some(target))
                    }
                    TestEntry::HardLink(name, target) => {
                        (name, tar::EntryType::Link, b"", Some(target))
                    }
                    TestEntry::Fifo(name) => (name, tar::EntryType::Fifo, b"", None),
                    TestEntry::CharDevice(name, _, _) => (name, tar::EntryType::Char, b"", None),
                };
            let name_field = &mut header.as_old_mut().name;
            name_field[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(link) = link {
                let link_field = &mut header.as_old_mut().linkname;
                link_field[..link.len()].copy_from_slice(link.as_bytes());
            }
            header.set_entry_type(entry_type);
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            if let TestEntry::CharDevice(_, major, minor) = entry {
                // Old-style headers carry no device numbers; switch to ustar for this one.
                let mut ustar = tar::Header::new_ustar();
                ustar.as_mut_bytes()[..100].copy_from_slice(&header.as_bytes()[..100]);
                ustar.set_entry_type(entry_type);
                ustar.set_size(0);
                ustar.set_mode(0o644);
                ustar
                    .set_device_major(*major)
                    .expect("ustar has device fields");
                ustar
                    .set_device_minor(*minor)
                    .expect("ustar has device fields");
                header = ustar;
            }
            header.set_cksum();
            archive_bytes.extend_from_slice(header.as_bytes());
            archive_bytes.extend_from_slice(content);
            let padding = (512 - content.len() % 512) % 512;
            archive_bytes.extend(std::iter::repeat_n(0u8, padding));
        }
        archive_bytes.extend(std::iter::repeat_n(0u8, 1024));
        archive_bytes
    }

    const GENEROUS: CollectLimits = CollectLimits {
        max_total_bytes: 1024 * 1024,
        max_entries: 100,
    };

    /// A readable summary of what was collected, one line per file and per refusal.
    fn summary(outputs: &CollectedOutputs) -> String {
        let mut lines = Vec::new();
        for file in &outputs.files {
            let content = match &file.kind {
                CollectedKind::Regular { bytes } => {
                    let text = String::from_utf8_lossy(bytes);
                    let shown: String = text.chars().take(24).collect();
                    let ellipsis = if text.chars().count() > 24 { "…" } else { "" };
                    format!("regular {shown:?}{ellipsis}")
                }
                CollectedKind::Symlink { target } => format!("symlink -> {target}"),
                CollectedKind::Special { description } => format!("special {description}"),
            };
            lines.push(format!(
                "file {}: {content} size={} sha256={}…",
                file.path,
                file.size,
                &file.sha256[..12]
            ));
        }
        for refused in &outputs.refused {
            lines.push(format!("refused {:?}: {}", refused.path, refused.reason));
        }
        lines.push(format!(
            "truncated={} total_bytes={} entries_seen={}",
            outputs.truncated, outputs.total_bytes, outputs.entries_seen
        ));
        lines.join("\n")
    }

    fn check(entries: &[TestEntry<'_>], limits: &CollectLimits, expected: Expect) {
        let outputs = collect_outputs(archive(entries).as_slice(), "output", limits)
            .expect("hand-made archives are readable");
        expected.assert_eq(&summary(&outputs));
    }

    #[test]
    fn regular_files_keep_their_bytes_and_hashes() {
        check(
            &[
                TestEntry::Directory("output/"),
                TestEntry::File("output/result.txt", b"rows=3\n"),
                TestEntry::Directory("output/tables/"),
                TestEntry::File("output/tables/summary.csv", b"group,count\na,12\n"),
                TestEntry::File("output/empty", b""),
            ],
            &GENEROUS,
            expect![[r#"
                file result.txt: regular "rows=3\n" size=7 sha256=66e49110cf7f…
                file tables/summary.csv: regular "group,count\na,12\n" size=17 sha256=83e388002b08…
                file empty: regular "" size=0 sha256=e3b0c44298fc…
                truncated=false total_bytes=24 entries_seen=4"#]],
        );
    }

    #[test]
    fn symlink_to_etc_passwd_is_recorded_not_followed() {
        check(
            &[
                TestEntry::Directory("output/"),
                TestEntry::Symlink("output/leak", "/etc/passwd"),
                TestEntry::Symlink("output/up", "../../../etc/shadow"),
            ],
            &GENEROUS,
            expect![[r#"
                file leak: symlink -> /etc/passwd size=11 sha256=74acf3184453…
                file up: symlink -> ../../../etc/shadow size=19 sha256=de5e4f0f30c9…
                truncated=false total_bytes=0 entries_seen=2"#]],
        );
    }

    #[test]
    fn path_escapes_are_refused() {
        check(
            &[
                TestEntry::File("output/../escape", b"outside"),
                TestEntry::File("/etc/cron.d/evil", b"* * * * * root sh"),
                TestEntry::File("elsewhere/file", b"not under the root"),
                TestEntry::File("output/ok", b"fine"),
            ],
            &GENEROUS,
            expect![[r#"
                file ok: regular "fine" size=4 sha256=d14a58bae804…
                refused "output/../escape": path leaves the output directory
                refused "/etc/cron.d/evil": path leaves the output directory
                refused "elsewhere/file": path leaves the output directory
                truncated=false total_bytes=4 entries_seen=4"#]],
        );
    }

    #[test]
    fn fifos_devices_and_hard_links_are_refused() {
        check(
            &[
                TestEntry::File("output/data.csv", b"a,b\n"),
                TestEntry::Fifo("output/pipe"),
                TestEntry::CharDevice("output/mem", 1, 1),
                TestEntry::HardLink("output/hard", "output/data.csv"),
            ],
            &GENEROUS,
            expect![[r#"
                file data.csv: regular "a,b\n" size=4 sha256=5be08c9684a1…
                file pipe: special fifo size=0 sha256=e3b0c44298fc…
                file mem: special character device 1:1 size=0 sha256=e3b0c44298fc…
                file hard: special hard link to "output/data.csv" size=0 sha256=e3b0c44298fc…
                refused "pipe": special file (fifo) is never collected
                refused "mem": special file (character device 1:1) is never collected
                refused "hard": hard link to "output/data.csv" is never followed
                truncated=false total_bytes=4 entries_seen=4"#]],
        );
    }

    #[test]
    fn oversize_output_stops_collection_at_the_cap() {
        check(
            &[
                TestEntry::File("output/a", &[b'a'; 600]),
                TestEntry::File("output/b", &[b'b'; 600]),
                TestEntry::File("output/c", b"never read"),
            ],
            &CollectLimits {
                max_total_bytes: 1000,
                max_entries: 100,
            },
            expect![[r#"
                file a: regular "aaaaaaaaaaaaaaaaaaaaaaaa"… size=600 sha256=ba35c1707294…
                refused "b": file of 600 bytes would exceed the output cap of 1000 bytes
                truncated=true total_bytes=600 entries_seen=2"#]],
        );
    }

    #[test]
    fn too_many_entries_stop_collection_at_the_cap() {
        check(
            &[
                TestEntry::File("output/1", b"1"),
                TestEntry::Directory("output/d/"),
                TestEntry::File("output/d/2", b"2"),
                TestEntry::File("output/3", b"3"),
            ],
            &CollectLimits {
                max_total_bytes: 1000,
                max_entries: 2,
            },
            expect![[r#"
                file 1: regular "1" size=1 sha256=6b86b273ff34…
                refused "d/2": more than 2 entries in the output
                truncated=true total_bytes=1 entries_seen=2"#]],
        );
    }

    #[test]
    fn duplicate_and_unsafe_names_are_refused() {
        check(
            &[
                TestEntry::File("output/a", b"first"),
                TestEntry::File("output/./a", b"second"),
                TestEntry::File("output/line\nbreak", b"x"),
            ],
            &GENEROUS,
            expect![[r#"
                file a: regular "first" size=5 sha256=a7937b64b8ca…
                refused "a": second entry at the same path
                refused "output/line\nbreak": name is not UTF-8 or contains a control character
                truncated=false total_bytes=5 entries_seen=3"#]],
        );
    }

    #[test]
    fn an_archive_larger_than_its_budget_is_cut_not_read_forever() {
        // A PAX extension header is read into memory whole; this one claims more bytes than the
        // collector's whole budget.
        let limits = CollectLimits {
            max_total_bytes: 1024,
            max_entries: 10,
        };
        let claimed_bytes = limits.max_archive_bytes() + 10_000;
        let mut header = tar::Header::new_ustar();
        header.set_path("output/pax").expect("short path");
        header.set_entry_type(tar::EntryType::XHeader);
        header.set_size(claimed_bytes);
        header.set_cksum();
        let mut bytes = header.as_bytes().to_vec();
        bytes.extend(std::iter::repeat_n(b'9', claimed_bytes as usize));
        let outputs =
            collect_outputs(bytes.as_slice(), "output", &limits).expect("a cut archive is data");
        assert!(outputs.truncated, "{outputs:?}");
        assert!(outputs.files.is_empty(), "{outputs:?}");
    }

    #[test]
    fn garbage_is_an_error_naming_the_archive() {
        let garbage = vec![b'g'; 2048];
        let error = collect_outputs(garbage.as_slice(), "output", &GENEROUS)
            .expect_err("garbage is not a tar archive");
        expect![[r#"could not read the output archive after 0 entries (last: ""): numeric field was not a number: gggggggg when getting cksum for gggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggg"#]].assert_eq(&error.to_string());
    }
}
