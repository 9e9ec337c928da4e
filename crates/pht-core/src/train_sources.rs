//! The files beside `train.yaml` that `pht train build` checks before Docker sees them: the
//! Dockerfile's base image, which must be named by digest (or be `scratch`), and a Python
//! train's `requirements.txt`, where every requirement must be pinned with `--hash`, so that
//! the build installs exactly what the researcher reviewed.
//!
//! Owns those two checks, over text, with the line in every error. Does not read files or run
//! a build.

use crate::reference::ImageReference;

/// Why the sources of a train cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourcesError {
    #[error("Dockerfile: no FROM line")]
    NoFrom,
    #[error("Dockerfile:{line}: FROM {image}: name the base by digest (REPOSITORY@sha256:…), never by tag, so the train's signature covers the base")]
    BaseByTag { line: usize, image: String },
    #[error("Dockerfile:{line}: FROM {image}: {problem}")]
    BadBase {
        line: usize,
        image: String,
        problem: String,
    },
    #[error("Dockerfile:{line}: more than one FROM (a multi-stage build); a train is one stage on one base")]
    SeveralFrom { line: usize },
    #[error("requirements.txt:{line}: `{requirement}` has no --hash=sha256:…; pin every requirement with its hash (`pip hash FILE`, or `pip-compile --generate-hashes`)")]
    Unhashed { line: usize, requirement: String },
}

/// The base image a Dockerfile builds on: `None` for `FROM scratch`.
pub fn dockerfile_base(dockerfile: &str) -> Result<Option<ImageReference>, SourcesError> {
    let mut base = None;
    for (line_idx, line) in dockerfile.lines().enumerate() {
        let mut words = line.split_whitespace();
        let Some(instruction) = words.next() else {
            continue;
        };
        if !instruction.eq_ignore_ascii_case("FROM") {
            continue;
        }
        let line_number = line_idx + 1;
        if base.is_some() {
            return Err(SourcesError::SeveralFrom { line: line_number });
        }
        // `FROM --platform=… image AS name`: the image is the first word that is no flag.
        let image = words
            .find(|word| !word.starts_with("--"))
            .unwrap_or_default()
            .to_string();
        if image == "scratch" {
            base = Some(None);
            continue;
        }
        let reference: ImageReference =
            image
                .parse()
                .map_err(
                    |error: crate::reference::ReferenceError| SourcesError::BadBase {
                        line: line_number,
                        image: image.clone(),
                        problem: error.to_string(),
                    },
                )?;
        if reference.digest().is_none() {
            return Err(SourcesError::BaseByTag {
                line: line_number,
                image,
            });
        }
        base = Some(Some(reference));
    }
    base.ok_or(SourcesError::NoFrom)
}

/// Checks that every requirement in a `requirements.txt` carries `--hash`.
pub fn check_requirements(requirements: &str) -> Result<(), SourcesError> {
    // Continued lines (`\` at the end) form one requirement, reported at its first line.
    let mut logical = String::new();
    let mut first_line = 0;
    let check = |text: &str, line: usize| {
        let text = text.split(" #").next().unwrap_or_default().trim();
        if text.is_empty() || text.starts_with('#') || text.starts_with('-') {
            // Options such as `--index-url` or `-r other.txt` are not requirements.
            return Ok(());
        }
        if text.contains("--hash=sha256:") {
            return Ok(());
        }
        Err(SourcesError::Unhashed {
            line,
            requirement: text
                .split_whitespace()
                .next()
                .unwrap_or(text)
                .chars()
                .take(80)
                .collect(),
        })
    };
    for (line_idx, line) in requirements.lines().enumerate() {
        if logical.is_empty() {
            first_line = line_idx + 1;
        }
        match line.strip_suffix('\\') {
            Some(continued) => {
                logical.push_str(continued);
                logical.push(' ');
            }
            None => {
                logical.push_str(line);
                check(&logical, first_line)?;
                logical.clear();
            }
        }
    }
    check(&logical, first_line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_is_named_by_digest_or_is_scratch() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let text = format!("# a train\nFROM 127.0.0.1:5000/bases/python@{digest}\nCOPY . /train\n");
        let base = dockerfile_base(&text).unwrap().unwrap();
        assert_eq!(base.repository(), "bases/python");
        assert_eq!(dockerfile_base("FROM scratch\n").unwrap(), None);
        assert_eq!(
            dockerfile_base("FROM 127.0.0.1:5000/bases/python:bookworm\n").unwrap_err().to_string(),
            "Dockerfile:1: FROM 127.0.0.1:5000/bases/python:bookworm: name the base by digest (REPOSITORY@sha256:…), never by tag, so the train's signature covers the base"
        );
        assert!(matches!(
            dockerfile_base(&format!("{text}FROM scratch\n")),
            Err(SourcesError::SeveralFrom { line: 4 })
        ));
    }

    #[test]
    fn a_requirement_without_its_hash_is_refused_with_its_line() {
        let hashed = "# extras\ntabulate==0.9.0 \\\n    --hash=sha256:024ca478df22e9340661486f85298cff5f6dcdba14f3813e8830015b9ed1948f\n";
        check_requirements(hashed).unwrap();
        check_requirements("# nothing extra\n\n").unwrap();
        let error = check_requirements(&format!("{hashed}requests==2.32.3\n")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "requirements.txt:4: `requests==2.32.3` has no --hash=sha256:…; pin every requirement with its hash (`pip hash FILE`, or `pip-compile --generate-hashes`)"
        );
    }
}
