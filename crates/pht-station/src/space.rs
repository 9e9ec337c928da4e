//! Room on the state directory's file system: a run starts only when its outputs and records
//! fit, and a small reserve file is kept so that, should the disk fill anyway (another program
//! wrote to it, logs grew), the station can still record that a run failed and why.
//!
//! Owns the reserve file (`<state_dir>/reserve`, re-made whenever there is room again) and the
//! check before a run. Does not clean anything up on its own: what to delete is the operator's
//! decision (and `retention` in the policy for failed runs' outputs).

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The reserve kept for recording failures: a run record and a few audit entries take a few
/// KiB; 1 MiB leaves room for many.
pub const RESERVE_BYTES: u64 = 1 << 20;
/// Room a run needs beyond its output cap: logs, record, report, sealed bundle overhead.
pub const RECORD_MARGIN_BYTES: u64 = 4 << 20;

/// The state directory has no room for a run.
#[derive(Debug, thiserror::Error)]
pub enum SpaceError {
    #[error("the state directory {} has {free} bytes free, but a run needs up to {needed} (its output cap of {output_cap} and {RECORD_MARGIN_BYTES} for its records): free space there, or lower resources.output_size in the policy, then run it again", state_dir.display())]
    NoRoom {
        state_dir: PathBuf,
        free: u64,
        needed: u64,
        output_cap: u64,
    },
    #[error("cannot tell how much room the state directory {} has: {source}", state_dir.display())]
    Statvfs {
        state_dir: PathBuf,
        source: std::io::Error,
    },
}

/// The reserve file of a state directory.
#[derive(Debug, Clone)]
pub struct Reserve {
    path: PathBuf,
}

impl Reserve {
    pub fn in_state_dir(state_dir: &Path) -> Reserve {
        Reserve {
            path: state_dir.join("reserve"),
        }
    }

    /// Makes the reserve if it is missing (after a release, or on a new station). Fails, and
    /// leaves nothing half made, when there is no room for it.
    pub fn ensure(&self) -> std::io::Result<()> {
        if std::fs::metadata(&self.path).is_ok_and(|m| m.len() == RESERVE_BYTES) {
            return Ok(());
        }
        let partial = self.path.with_extension("partial");
        let made = (|| {
            let mut file = std::fs::File::create(&partial)?;
            let chunk = vec![0u8; 64 << 10];
            for _ in 0..RESERVE_BYTES / chunk.len() as u64 {
                file.write_all(&chunk)?;
            }
            file.sync_all()?;
            std::fs::rename(&partial, &self.path)
        })();
        if made.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        made
    }

    /// Gives the reserve's room back to the file system; returns whether there was one.
    pub fn release(&self) -> bool {
        std::fs::remove_file(&self.path).is_ok()
    }
}

/// Checks that a run with an output cap of `output_cap` bytes fits in the state directory.
pub fn check_room(state_dir: &Path, output_cap: u64) -> Result<(), SpaceError> {
    let free = pht_fs::free_bytes(state_dir).map_err(|source| SpaceError::Statvfs {
        state_dir: state_dir.to_path_buf(),
        source,
    })?;
    let needed = output_cap.saturating_add(RECORD_MARGIN_BYTES);
    if free < needed {
        return Err(SpaceError::NoRoom {
            state_dir: state_dir.to_path_buf(),
            free,
            needed,
            output_cap,
        });
    }
    Ok(())
}
