//! The checks [`RunSpec`](super::RunSpec)'s constructors make on what the station hands over.
//!
//! Owns: one function per input (run id, image id, dataset name, host path, runtime, limits),
//! each returning the [`SpecError`] that names the input and says what it must be, and the
//! bounds below which Docker cannot enforce a limit. Lexical only: no file system access, so a
//! host path's symbolic links are the station's to resolve before it builds a `RunSpec`.
//!
//! Does not check the user: [`ContainerUser::parse`](super::ContainerUser::parse) does, where
//! the type is.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::{RunLimits, SpecError};

/// Docker refuses memory limits below 6 MiB.
const MINIMUM_MEMORY_BYTES: u64 = 6 * 1024 * 1024;
/// Docker refuses CPU limits below 0.01 CPU.
const MINIMUM_NANO_CPUS: u64 = 10_000_000;
/// The init process (`docker-init`) and the train each need one pid.
const MINIMUM_PIDS: u64 = 2;
/// One tmpfs page: a smaller `/output` could not hold a single file.
const MINIMUM_OUTPUT_BYTES: u64 = 4096;
/// Host paths whose parents must never be mounted: mounting `/run` would mount the socket too.
const DOCKER_SOCKET_PATHS: [&str; 2] = ["/var/run/docker.sock", "/run/docker.sock"];

pub(super) fn validate_run_id(run_id: &str) -> Result<(), SpecError> {
    let starts_well = run_id
        .bytes()
        .next()
        .is_some_and(|byte| byte.is_ascii_alphanumeric());
    if starts_well && is_short_name(run_id) {
        Ok(())
    } else {
        Err(SpecError::InvalidRunId {
            run_id: run_id.to_string(),
        })
    }
}

pub(super) fn validate_image_id(image_id: &str) -> Result<(), SpecError> {
    let is_valid = image_id.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
    });
    if is_valid {
        Ok(())
    } else {
        Err(SpecError::InvalidImageId {
            image_id: image_id.to_string(),
        })
    }
}

pub(super) fn validate_dataset_name(name: &str) -> Result<(), SpecError> {
    let is_valid = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|byte| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || matches!(byte, b'_' | b'-')
        });
    if is_valid {
        Ok(())
    } else {
        Err(SpecError::InvalidDatasetName {
            name: name.to_string(),
        })
    }
}

/// Checks a host path lexically. Symbolic links on the host are not resolved here (this module
/// does no I/O); the station resolves paths before it builds a `RunSpec`.
pub(super) fn validate_host_path(path: PathBuf) -> Result<String, SpecError> {
    if !path.is_absolute() {
        return Err(SpecError::RelativeHostPath { path });
    }
    if path
        .components()
        .any(|component| matches!(component, Component::ParentDir | Component::CurDir))
    {
        return Err(SpecError::UnnormalizedHostPath { path });
    }
    let Some(path_text) = path.to_str() else {
        return Err(SpecError::NonUtf8HostPath { path });
    };
    let trimmed = path_text.trim_end_matches('/');
    let exposes_socket = trimmed.ends_with("docker.sock")
        || DOCKER_SOCKET_PATHS
            .iter()
            .any(|socket| Path::new(socket).starts_with(&path));
    if exposes_socket {
        return Err(SpecError::DockerSocketMount { path });
    }
    Ok(path_text.to_string())
}

pub(super) fn validate_limits(limits: &RunLimits) -> Result<(), SpecError> {
    let maximum = i64::MAX as u64;
    let check = |limit_name: &'static str, value: u64, minimum: u64| {
        if (minimum..=maximum).contains(&value) {
            Ok(())
        } else {
            Err(SpecError::LimitOutOfRange {
                limit_name,
                value: value.to_string(),
                minimum: minimum.to_string(),
                maximum: maximum.to_string(),
            })
        }
    };
    check("nano_cpus", limits.nano_cpus, MINIMUM_NANO_CPUS)?;
    check("memory_bytes", limits.memory_bytes, MINIMUM_MEMORY_BYTES)?;
    check("pids", limits.pids, MINIMUM_PIDS)?;
    check("tmp_bytes", limits.tmp_bytes, 1)?;
    check("output_bytes", limits.output_bytes, MINIMUM_OUTPUT_BYTES)?;
    check("output_files", limits.output_files, 1)?;
    check("log_bytes", limits.log_bytes, 1)?;
    if limits.wall_clock.is_zero() {
        return Err(SpecError::LimitOutOfRange {
            limit_name: "wall_clock",
            value: format!("{:?}", limits.wall_clock),
            minimum: "1ns".to_string(),
            maximum: format!("{:?}", Duration::MAX),
        });
    }
    Ok(())
}

pub(super) fn validate_runtime(runtime: &str) -> Result<(), SpecError> {
    if is_short_name(runtime) {
        Ok(())
    } else {
        Err(SpecError::InvalidRuntime {
            runtime: runtime.to_string(),
        })
    }
}

/// 1 to 64 characters of `[A-Za-z0-9_.-]`: safe in a Docker name or a command line as it is.
fn is_short_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-'))
}
