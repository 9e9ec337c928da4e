//! The station's errors, aggregated: one enum per module where that module can fail, gathered
//! here into [`StationError`] so a caller (the CLI, the daemon) can tell a configuration
//! problem from a full disk, an unreachable registry or an operator acting on the wrong run.
//!
//! Owns only the aggregation and the one error shape shared by every stage: a file in the
//! state directory that could not be read or written ([`StateFileError`]). A refusal to run is
//! not an error: it is a run record with reasons (see `pipeline`).

use std::path::{Path, PathBuf};

pub use crate::audit::AuditError;
pub use crate::config::ConfigError;
pub use crate::keys::KeyError;
pub use crate::pipeline::approve::ApproveError;
pub use crate::pipeline::deliver::DeliverError;
pub use crate::pipeline::pull::PullError;
pub use crate::pipeline::release::ReleaseError;
pub use crate::pipeline::run::RunError;
pub use crate::pipeline::seal::SealError;
pub use crate::pipeline::verify::VerifyError;
pub use crate::space::SpaceError;
pub use crate::store::StoreError;
pub use crate::trust::TrustError;

/// What went wrong in the station itself (not a refusal: refusals are run records).
#[derive(Debug, thiserror::Error)]
pub enum StationError {
    /// The station configuration file cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The policy file, or a key it trusts, cannot be used.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// The station's own key files cannot be read or created.
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file of a run (inputs, logs, outputs, report, sealed bundle) could not be read or
    /// written.
    #[error(transparent)]
    StateFile(#[from] StateFileError),
    /// The state directory has no room for a run.
    #[error(transparent)]
    Space(#[from] SpaceError),
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error(transparent)]
    Pull(#[from] PullError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Approve(#[from] ApproveError),
    #[error(transparent)]
    Release(#[from] ReleaseError),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error(transparent)]
    Deliver(#[from] DeliverError),
}

impl StationError {
    /// Whether this error means the state directory's file system is full.
    pub fn is_disk_full(&self) -> bool {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(error) = source {
            if let Some(io) = error.downcast_ref::<std::io::Error>() {
                if pht_fs::is_disk_full(io) {
                    return true;
                }
            }
            source = error.source();
        }
        matches!(self, StationError::Space(SpaceError::NoRoom { .. }))
    }
}

/// What the station was doing with a file when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileAction {
    Read,
    Write,
    CreateDirectory,
}

impl std::fmt::Display for FileAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileAction::Read => "read",
            FileAction::Write => "write",
            FileAction::CreateDirectory => "create",
        })
    }
}

/// A file under the station's state directory that could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {source}", path.display())]
pub struct StateFileError {
    pub action: FileAction,
    pub path: PathBuf,
    pub source: std::io::Error,
}

impl StateFileError {
    pub fn read(path: &Path) -> impl FnOnce(std::io::Error) -> StateFileError + '_ {
        move |source| StateFileError {
            action: FileAction::Read,
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn write(path: &Path) -> impl FnOnce(std::io::Error) -> StateFileError + '_ {
        move |source| StateFileError {
            action: FileAction::Write,
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn create_directory(path: &Path) -> impl FnOnce(std::io::Error) -> StateFileError + '_ {
        move |source| StateFileError {
            action: FileAction::CreateDirectory,
            path: path.to_path_buf(),
            source,
        }
    }
}
