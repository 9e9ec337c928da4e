//! A base image's package list (`trains/base/<kind>/packages.txt`): Debian package names, one a
//! line, `#` comments. Its SHA-256 (over the sorted, de-duplicated names) labels the image, so
//! a station can tell which list a base was built from.
//!
//! Owns parsing and the list's hash; installing is `rootfs.rs`'s.

use pht_core::Digest;

/// A package list that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PackagesError {
    #[error("{source_name}:{line}: `{name}` is not a Debian package name (lower-case letters, digits, `+`, `-`, `.`; starting with a letter or digit)")]
    BadName {
        source_name: String,
        line: usize,
        name: String,
    },
    #[error("{source_name}: names no package")]
    Empty { source_name: String },
}

/// The packages of one base, sorted and de-duplicated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageList {
    names: Vec<String>,
}

fn valid_name(name: &str) -> bool {
    name.len() >= 2
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.')
        })
}

impl PackageList {
    /// Parses a package list; `source_name` names the file in errors.
    pub fn parse(text: &str, source_name: &str) -> Result<PackageList, PackagesError> {
        let mut names = Vec::new();
        for (line_idx, line) in text.lines().enumerate() {
            let name = line.split('#').next().unwrap_or_default().trim();
            if name.is_empty() {
                continue;
            }
            if !valid_name(name) {
                return Err(PackagesError::BadName {
                    source_name: source_name.to_string(),
                    line: line_idx + 1,
                    name: name.chars().take(64).collect(),
                });
            }
            names.push(name.to_string());
        }
        names.sort();
        names.dedup();
        if names.is_empty() {
            return Err(PackagesError::Empty {
                source_name: source_name.to_string(),
            });
        }
        Ok(PackageList { names })
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The SHA-256 of the names, one a line, sorted: what the image's label records.
    pub fn digest(&self) -> Digest {
        let mut text = self.names.join("\n");
        text.push('\n');
        Digest::of(text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_order_and_repeats_do_not_change_the_list_or_its_digest() {
        let first = PackageList::parse("# base\npython3\npython3-numpy # arrays\n", "a").unwrap();
        let second = PackageList::parse("python3-numpy\n\npython3\npython3\n", "b").unwrap();
        assert_eq!(first, second);
        assert_eq!(first.digest(), second.digest());
        assert_eq!(first.names(), ["python3", "python3-numpy"]);
    }

    #[test]
    fn a_name_that_is_no_package_is_refused_with_its_line() {
        let error = PackageList::parse("python3\nrm -rf /\n", "packages.txt").unwrap_err();
        assert_eq!(
            error.to_string(),
            "packages.txt:2: `rm -rf /` is not a Debian package name (lower-case letters, digits, `+`, `-`, `.`; starting with a letter or digit)"
        );
    }
}
