//! What an exit code means, and the error type that carries one out of a command.
//!
//! 0 success · 1 refused (a verification or check said no) · 2 usage (bad arguments, from clap)
//! · 3 invalid input (a file, manifest or key that cannot be used) · 4 unavailable (Docker, a
//! registry or the hub could not be reached or failed).

use std::process::ExitCode;

/// The class of a failure, which decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Refused,
    Input,
    Unavailable,
}

impl FailureKind {
    pub fn exit_code(self) -> ExitCode {
        ExitCode::from(match self {
            FailureKind::Refused => 1,
            FailureKind::Input => 3,
            FailureKind::Unavailable => 4,
        })
    }

    pub fn label(self) -> &'static str {
        match self {
            FailureKind::Refused => "refused",
            FailureKind::Input => "invalid input",
            FailureKind::Unavailable => "unavailable",
        }
    }
}

/// A command failure: what went wrong, and which class it is.
#[derive(Debug)]
pub struct Failure {
    pub kind: FailureKind,
    pub error: anyhow::Error,
}

pub type CommandResult<T = ()> = Result<T, Failure>;

/// Classifies errors at the point where the class is known.
pub trait Classify<T> {
    fn input(self) -> CommandResult<T>;
    fn unavailable(self) -> CommandResult<T>;
    fn refused(self) -> CommandResult<T>;
}

impl<T, E: Into<anyhow::Error>> Classify<T> for Result<T, E> {
    fn input(self) -> CommandResult<T> {
        self.map_err(|e| Failure {
            kind: FailureKind::Input,
            error: e.into(),
        })
    }
    fn unavailable(self) -> CommandResult<T> {
        self.map_err(|e| Failure {
            kind: FailureKind::Unavailable,
            error: e.into(),
        })
    }
    fn refused(self) -> CommandResult<T> {
        self.map_err(|e| Failure {
            kind: FailureKind::Refused,
            error: e.into(),
        })
    }
}

/// Shorthand for a failure from a message.
pub fn fail(kind: FailureKind, message: impl std::fmt::Display) -> Failure {
    Failure {
        kind,
        error: anyhow::anyhow!("{message}"),
    }
}

/// Classifies a registry error: a missing manifest or signature is input the user named wrongly,
/// a digest mismatch is a refusal, the rest is the registry being unavailable.
pub fn registry_failure(error: pht_registry::RegistryError) -> Failure {
    use pht_registry::RegistryError as E;
    let kind = match &error {
        E::NotFound { .. } | E::InsecureRefused { .. } => FailureKind::Input,
        E::DigestMismatch { .. } | E::Malformed { .. } | E::TooLarge { .. } => FailureKind::Refused,
        _ => FailureKind::Unavailable,
    };
    Failure {
        kind,
        error: error.into(),
    }
}
