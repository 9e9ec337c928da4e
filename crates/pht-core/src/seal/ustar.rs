//! The POSIX ustar subset a bundle uses: regular files only, names split into prefix and name,
//! no extension headers. The writer produces nothing else and the reader accepts nothing else.
//!
//! Owns the header layout, the writer and the strict reader. It knows nothing of bundles,
//! signatures or encryption: it moves named byte strings in and out of an archive and refuses
//! whatever it does not write (links, directories, PAX or GNU extension headers).

use std::collections::BTreeSet;
use std::io::{self, Write};

use super::{check_relative_path, ArchiveError, SealError, MAX_ARCHIVE_ENTRIES};

pub const BLOCK_SIZE: usize = 512;
/// Two zero blocks end an archive.
pub const END_OF_ARCHIVE: [u8; 2 * BLOCK_SIZE] = [0; 2 * BLOCK_SIZE];
const ZERO_BLOCK: [u8; BLOCK_SIZE] = [0; BLOCK_SIZE];

const NAME: std::ops::Range<usize> = 0..100;
const MODE: std::ops::Range<usize> = 100..108;
const UID: std::ops::Range<usize> = 108..116;
const GID: std::ops::Range<usize> = 116..124;
const SIZE: std::ops::Range<usize> = 124..136;
const MTIME: std::ops::Range<usize> = 136..148;
const CHECKSUM: std::ops::Range<usize> = 148..156;
const TYPEFLAG: usize = 156;
const MAGIC_AND_VERSION: std::ops::Range<usize> = 257..265;
const PREFIX: std::ops::Range<usize> = 345..500;

const POSIX_MAGIC: &[u8; 8] = b"ustar\x0000";
/// GNU tar's pre-POSIX magic; its prefix field holds other data.
const GNU_MAGIC: &[u8; 8] = b"ustar  \x00";
const REGULAR_FILE: u8 = b'0';
/// Regular file, as written by very old tars.
const REGULAR_FILE_OLD: u8 = 0;

pub fn padded_len(n_bytes: usize) -> usize {
    n_bytes.div_ceil(BLOCK_SIZE) * BLOCK_SIZE
}

/// The header of a regular file at `path` (already checked to be a safe relative path).
pub fn header(path: &str, n_bytes: u64, mtime: u64) -> Result<[u8; BLOCK_SIZE], SealError> {
    if n_bytes > super::MAX_FILE_BYTES {
        return Err(SealError::FileTooLarge {
            path: path.to_string(),
            n_bytes,
        });
    }
    let (prefix, name) = split_path(path).ok_or_else(|| SealError::PathTooLong {
        path: path.to_string(),
        n_bytes: path.len(),
    })?;
    Ok(raw_header(
        prefix.as_bytes(),
        name.as_bytes(),
        REGULAR_FILE,
        n_bytes,
        mtime,
    ))
}

/// Splits a path into ustar's prefix (≤ 155 bytes) and name (≤ 100 bytes) at a `/`.
fn split_path(path: &str) -> Option<(&str, &str)> {
    if path.len() <= NAME.len() {
        return Some(("", path));
    }
    path.match_indices('/')
        .map(|(slash_idx, _)| (&path[..slash_idx], &path[slash_idx + 1..]))
        .find(|(prefix, name)| {
            prefix.len() <= PREFIX.len() && name.len() <= NAME.len() && !name.is_empty()
        })
}

/// A header with whatever name and type it is given. Only the writer above and tests that
/// build hostile archives call it directly.
pub fn raw_header(
    prefix: &[u8],
    name: &[u8],
    typeflag: u8,
    n_bytes: u64,
    mtime: u64,
) -> [u8; BLOCK_SIZE] {
    let mut header = [0u8; BLOCK_SIZE];
    header[NAME][..name.len()].copy_from_slice(name);
    write_octal(&mut header[MODE], 0o644);
    write_octal(&mut header[UID], 0);
    write_octal(&mut header[GID], 0);
    write_octal(&mut header[SIZE], n_bytes);
    write_octal(&mut header[MTIME], mtime.min(0o77777777777));
    header[TYPEFLAG] = typeflag;
    header[MAGIC_AND_VERSION].copy_from_slice(POSIX_MAGIC);
    header[PREFIX][..prefix.len()].copy_from_slice(prefix);
    // The checksum is computed with its own field as spaces, then written as six octal
    // digits, a NUL and a space.
    header[CHECKSUM].fill(b' ');
    let checksum: u32 = header.iter().map(|&byte| u32::from(byte)).sum();
    header[CHECKSUM][..7].copy_from_slice(format!("{checksum:06o}\0").as_bytes());
    header
}

/// Zero-padded octal digits filling the field but its last byte, which stays NUL.
fn write_octal(field: &mut [u8], value: u64) {
    let n_digits = field.len() - 1;
    let digits = format!("{value:0n_digits$o}");
    field[..n_digits].copy_from_slice(digits.as_bytes());
    field[n_digits] = 0;
}

pub fn write_member<W: Write>(
    out: &mut W,
    header: &[u8; BLOCK_SIZE],
    contents: &[u8],
) -> io::Result<()> {
    out.write_all(header)?;
    out.write_all(contents)?;
    out.write_all(&ZERO_BLOCK[..padded_len(contents.len()) - contents.len()])
}

/// One regular file in an archive.
#[derive(Debug)]
pub struct Entry<'a> {
    pub path: String,
    pub contents: &'a [u8],
}

/// Octal digits, optionally led by spaces and ended by NUL or space (as tars write them).
fn parse_octal(field: &[u8]) -> Option<u64> {
    let text = field.split(|&byte| byte == 0).next().unwrap_or_default();
    let digits = std::str::from_utf8(text).ok()?.trim_matches(' ');
    if digits.is_empty() || !digits.bytes().all(|byte| (b'0'..=b'7').contains(&byte)) {
        return None;
    }
    u64::from_str_radix(digits, 8).ok()
}

fn until_nul(field: &[u8]) -> &[u8] {
    field.split(|&byte| byte == 0).next().unwrap_or_default()
}

fn kind_of(typeflag: u8) -> &'static str {
    match typeflag {
        b'1' => "hard link",
        b'2' => "symbolic link",
        b'3' => "character device",
        b'4' => "block device",
        b'5' => "directory",
        b'6' => "FIFO",
        b'7' => "contiguous file",
        b'x' | b'g' => "PAX extended header",
        b'L' | b'K' => "GNU long-name header",
        b'S' => "GNU sparse file",
        _ => "entry of unknown type",
    }
}

/// Reads every entry, refusing anything but regular files at safe, unique relative paths.
pub fn read(archive: &[u8]) -> Result<Vec<Entry<'_>>, ArchiveError> {
    let mut entries = Vec::new();
    let mut seen_paths = BTreeSet::new();
    let mut offset = 0;
    loop {
        let Some(header) = archive.get(offset..offset + BLOCK_SIZE) else {
            return Err(ArchiveError::Truncated { offset });
        };
        if header == ZERO_BLOCK {
            // The end marker; whatever follows (more zero blocks, record padding) must be
            // zero, so that nothing can hide behind it.
            if archive[offset..].iter().any(|&byte| byte != 0) {
                return Err(ArchiveError::TrailingData { offset });
            }
            return Ok(entries);
        }
        if entries.len() == MAX_ARCHIVE_ENTRIES {
            return Err(ArchiveError::TooManyEntries);
        }
        let is_posix = &header[MAGIC_AND_VERSION] == POSIX_MAGIC;
        if !is_posix && &header[MAGIC_AND_VERSION] != GNU_MAGIC {
            return Err(ArchiveError::NotUstar { offset });
        }
        let stored_checksum = parse_octal(&header[CHECKSUM]).ok_or(ArchiveError::BadField {
            offset,
            field: "checksum",
        })?;
        let computed_checksum: u64 = header
            .iter()
            .enumerate()
            .map(|(byte_idx, &byte)| {
                if CHECKSUM.contains(&byte_idx) {
                    u64::from(b' ')
                } else {
                    u64::from(byte)
                }
            })
            .sum();
        if stored_checksum != computed_checksum {
            return Err(ArchiveError::BadChecksum { offset });
        }

        let name = until_nul(&header[NAME]);
        let prefix = if is_posix {
            until_nul(&header[PREFIX])
        } else {
            &[]
        };
        let path_bytes = if prefix.is_empty() {
            name.to_vec()
        } else {
            [prefix, b"/", name].concat()
        };
        let path =
            String::from_utf8(path_bytes).map_err(|_| ArchiveError::NonUtf8Path { offset })?;
        let typeflag = header[TYPEFLAG];
        if typeflag != REGULAR_FILE && typeflag != REGULAR_FILE_OLD {
            return Err(ArchiveError::NotRegularFile {
                path,
                kind: kind_of(typeflag),
            });
        }
        if let Err(problem) = check_relative_path(&path) {
            return Err(ArchiveError::UnsafePath { path, problem });
        }
        if !seen_paths.insert(path.clone()) {
            return Err(ArchiveError::Duplicate { path });
        }
        // A size in GNU's base-256 form (high bit set) is not octal and is refused here.
        let n_bytes = parse_octal(&header[SIZE]).ok_or(ArchiveError::BadField {
            offset,
            field: "size",
        })?;
        let contents_start = offset + BLOCK_SIZE;
        let contents = usize::try_from(n_bytes)
            .ok()
            .and_then(|n_bytes| archive.get(contents_start..contents_start.checked_add(n_bytes)?))
            .ok_or_else(|| ArchiveError::TruncatedEntry {
                path: path.clone(),
                n_bytes,
            })?;
        offset = contents_start + padded_len(contents.len());
        entries.push(Entry { path, contents });
    }
}
