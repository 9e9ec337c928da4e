//! Which paths may appear in a bundle: plain relative paths that stay below the directory they
//! are joined to.
//!
//! Owns the rule and the reasons a path breaks it. It does not know where a path comes from
//! (a train's output directory when sealing, an archive entry when opening); the callers turn a
//! [`PathProblem`] into their own error.

/// Why a path may not appear in a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathProblem {
    #[error("it is empty")]
    Empty,
    #[error("it is absolute")]
    Absolute,
    #[error("it has an empty component (`//` or a trailing `/`)")]
    EmptyComponent,
    #[error("it has a `.` or `..` component")]
    DotComponent,
    #[error("it contains a backslash, which some systems read as a separator")]
    Backslash,
    #[error("it contains a NUL byte or another control character")]
    ControlCharacter,
}

/// Checks that `path` is a plain relative path: non-empty, not absolute, no empty, `.` or `..`
/// components, no backslashes or control characters. Such a path stays below any directory it
/// is joined to.
pub fn check_relative_path(path: &str) -> Result<(), PathProblem> {
    if path.is_empty() {
        return Err(PathProblem::Empty);
    }
    if path.starts_with('/') {
        return Err(PathProblem::Absolute);
    }
    if path.contains('\\') {
        return Err(PathProblem::Backslash);
    }
    if path.chars().any(char::is_control) {
        return Err(PathProblem::ControlCharacter);
    }
    for component in path.split('/') {
        match component {
            "" => return Err(PathProblem::EmptyComponent),
            "." | ".." => return Err(PathProblem::DotComponent),
            _ => {}
        }
    }
    Ok(())
}
