//! The root file system of a base: made by Debian's `debootstrap` (minbase, the listed packages
//! and what they depend on, from a Debian mirror), then normalised so that two builds from the
//! same package versions hold the same bytes: caches, logs and package lists removed; the
//! host's name, resolver and machine id replaced by fixed ones; password-change dates (the day
//! of the build) fixed; device nodes removed (a container gets its own `/dev`).
//!
//! Owns running `debootstrap` (a host program; it needs root) and the normalisation. Does not
//! pack the tree (`layer.rs`).

use std::path::Path;
use std::process::Command;

use crate::packages::PackageList;

/// Why a root file system could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("cannot run debootstrap ({source}); install it with `apt-get install debootstrap`")]
    Missing { source: std::io::Error },
    #[error("debootstrap could not build the base from {mirror} (exit {code:?}); its log ends:\n{log_tail}")]
    Failed {
        mirror: String,
        code: Option<i32>,
        log_tail: String,
    },
    #[error("building a base needs root (debootstrap creates files owned by root and device nodes); run `pht base build` as root")]
    NotRoot,
    #[error("cannot normalise {path}: {source}")]
    Normalise {
        path: String,
        source: std::io::Error,
    },
}

/// Runs `debootstrap --variant=minbase --include=<packages>` into `target` from `mirror`.
pub fn debootstrap(packages: &PackageList, target: &Path, mirror: &str) -> Result<(), RootfsError> {
    if !is_root() {
        return Err(RootfsError::NotRoot);
    }
    let output = Command::new("debootstrap")
        .arg("--variant=minbase")
        .arg(format!("--include={}", packages.names().join(",")))
        .arg("--components=main")
        .arg(crate::DEBIAN_SUITE)
        .arg(target)
        .arg(mirror)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("SOURCE_DATE_EPOCH", crate::SOURCE_DATE_EPOCH.to_string())
        // Maintainer scripts byte-compile Python modules; a fixed hash seed keeps the order of
        // sets in the compiled constants the same from build to build.
        .env("PYTHONHASHSEED", "0")
        .output()
        .map_err(|source| RootfsError::Missing { source })?;
    if !output.status.success() {
        let log = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = log.lines().collect();
        return Err(RootfsError::Failed {
            mirror: mirror.to_string(),
            code: output.status.code(),
            log_tail: lines[lines.len().saturating_sub(20)..].join("\n"),
        });
    }
    Ok(())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("Uid:"))
                .and_then(|line| line.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// Paths whose content is removed (the directory stays): written during the build, never read
/// by a train.
const EMPTIED: &[&str] = &[
    "dev",
    "tmp",
    "var/tmp",
    "var/log",
    "var/cache/apt",
    "var/cache/debconf",
    "var/lib/apt/lists",
    "var/cache/ldconfig",
    // fontconfig's caches record directory times of the build; it rescans without them.
    "var/cache/fontconfig",
    "run",
];

/// Files removed outright.
const REMOVED: &[&str] = &[
    "etc/machine-id",
    "var/lib/dbus/machine-id",
    "etc/shadow-",
    "etc/gshadow-",
    "etc/passwd-",
    "etc/group-",
    "var/lib/dpkg/status-old",
    "var/lib/dpkg/diversions-old",
    "var/lib/dpkg/statoverride-old",
    "root/.bash_history",
];

/// Files given fixed contents: what debootstrap copies from the building host.
const FIXED: &[(&str, &str)] = &[
    ("etc/hostname", "train\n"),
    ("etc/hosts", "127.0.0.1 localhost\n::1 localhost\n"),
    ("etc/resolv.conf", ""),
];

/// Normalises the tree under `root` (see the module documentation).
pub fn normalise(root: &Path) -> Result<(), RootfsError> {
    let error = |path: &Path| {
        let path = path.display().to_string();
        move |source| RootfsError::Normalise { path, source }
    };
    for relative in EMPTIED {
        let dir = root.join(relative);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let entry = entry.map_err(error(&dir))?;
            let path = entry.path();
            let removed = if entry.file_type().map_err(error(&path))?.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(error(&path))?;
        }
    }
    for relative in REMOVED {
        match std::fs::remove_file(root.join(relative)) {
            Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
                return Err(error(&root.join(relative))(source))
            }
            _ => {}
        }
    }
    for (relative, contents) in FIXED {
        let path = root.join(relative);
        // resolv.conf may be a link to the host's; replace whatever is there.
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, contents).map_err(error(&path))?;
    }
    for relative in ["etc/shadow", "etc/gshadow"] {
        fix_password_dates(&root.join(relative)).map_err(error(&root.join(relative)))?;
    }
    Ok(())
}

/// Sets the "last password change" field of every `shadow` entry (the build's day) to the
/// day of [`SOURCE_DATE_EPOCH`](crate::SOURCE_DATE_EPOCH).
fn fix_password_dates(path: &Path) -> std::io::Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    let day = (crate::SOURCE_DATE_EPOCH / 86_400).to_string();
    let is_shadow = path.file_name().is_some_and(|name| name == "shadow");
    let fixed: String = text
        .lines()
        .map(|line| {
            let mut fields: Vec<&str> = line.split(':').collect();
            if is_shadow && fields.len() > 2 && !fields[2].is_empty() {
                fields[2] = &day;
            }
            format!("{}\n", fields.join(":"))
        })
        .collect();
    std::fs::write(path, fixed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalising_empties_caches_fixes_host_files_and_password_dates() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        for dir in ["var/log/apt", "var/cache/apt", "etc", "tmp"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        std::fs::write(root.join("var/log/apt/history.log"), "installed today").unwrap();
        std::fs::write(root.join("var/cache/apt/pkgcache.bin"), "cache").unwrap();
        std::fs::write(root.join("etc/machine-id"), "0123").unwrap();
        std::fs::write(root.join("etc/hostname"), "build-host-42\n").unwrap();
        std::fs::write(
            root.join("etc/shadow"),
            "root:*:20423:0:99999:7:::\nnobody:*:20423:0:99999:7:::\n",
        )
        .unwrap();
        normalise(root).unwrap();
        assert!(std::fs::read_dir(root.join("var/log"))
            .unwrap()
            .next()
            .is_none());
        assert!(std::fs::read_dir(root.join("var/cache/apt"))
            .unwrap()
            .next()
            .is_none());
        assert!(!root.join("etc/machine-id").exists());
        assert_eq!(
            std::fs::read_to_string(root.join("etc/hostname")).unwrap(),
            "train\n"
        );
        let day = crate::SOURCE_DATE_EPOCH / 86_400;
        assert_eq!(
            std::fs::read_to_string(root.join("etc/shadow")).unwrap(),
            format!("root:*:{day}:0:99999:7:::\nnobody:*:{day}:0:99999:7:::\n")
        );
    }
}
