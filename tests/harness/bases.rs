//! The project's Python and R base images for end-to-end tests: built at most once per machine
//! and pushed and signed into each test's own registry.
//!
//! Owns the once-per-machine rule: a file lock under the base cache (`$PHT_CACHE_DIR/bases`,
//! else `~/.cache/pht/bases`, where `pht base build` keeps compressed layers) is held while a
//! base is built or reused, so test binaries running at once wait for the first build instead of
//! debootstrapping twice; later calls find the image in Docker and `pht base build` reuses it.
//! Does not build anything itself: `pht base build` does, as a user would run it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::{pht, workspace_root, Registry};

/// The bases the project builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseKind {
    Python,
    R,
}

impl BaseKind {
    pub fn name(self) -> &'static str {
        match self {
            BaseKind::Python => "python",
            BaseKind::R => "r",
        }
    }
}

/// A base published into a test's registry and signed there.
#[derive(Debug, Clone)]
pub struct BaseImage {
    /// `REGISTRY/bases/KIND@sha256:…`.
    pub reference: String,
    /// The manifest digest, `sha256:…`.
    pub digest: String,
    /// The config digest (the id Docker knows it by).
    pub image_id: String,
    /// The layer's diff id and its size, uncompressed and compressed.
    pub layer_diff_id: String,
    /// The digest of the compressed layer blob the manifest names.
    pub layer_digest: String,
    pub layer_bytes: u64,
    pub compressed_bytes: u64,
    /// Whether `pht base build` reused an image Docker held (false: it debootstrapped).
    pub reused: bool,
    /// Seconds the build took (0 when reused).
    pub build_seconds: u64,
}

impl BaseImage {
    pub fn from_json(built: &serde_json::Value) -> BaseImage {
        let text = |field: &str| {
            built[field]
                .as_str()
                .unwrap_or_else(|| panic!("pht base build printed no `{field}`: {built}"))
                .to_string()
        };
        BaseImage {
            reference: text("reference"),
            digest: text("digest"),
            image_id: text("image_id"),
            layer_diff_id: text("layer_diff_id"),
            layer_digest: text("layer_digest"),
            layer_bytes: built["layer_bytes"].as_u64().unwrap_or_default(),
            compressed_bytes: built["compressed_bytes"].as_u64().unwrap_or_default(),
            reused: built["reused"].as_bool().unwrap_or_default(),
            build_seconds: built["build_seconds"].as_u64().unwrap_or_default(),
        }
    }
}

/// Where `pht base build` caches layers, and where the lock lives.
pub fn base_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PHT_CACHE_DIR") {
        return PathBuf::from(dir).join("bases");
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME is set");
    cache.join("pht").join("bases")
}

/// The base of `kind` in `registry` (`bases/<kind>:test`), signed with the base signer's `key`:
/// built the first time on this machine, reused from Docker after that.
pub fn ensure_base(kind: BaseKind, registry: &Registry, key: &Path) -> BaseImage {
    ensure_base_locked(kind, registry, key)
}

/// `pht base build KIND --rebuild` into `registry`: a second debootstrap, whatever Docker
/// holds. Takes no lock: a base built meanwhile by another test is as good as this one.
pub fn rebuild_base(kind: BaseKind, registry: &Registry, key: &Path) -> BaseImage {
    run_base_build(kind, registry, key, &["--rebuild"])
}

/// `ensure_base` under the machine-wide lock for `kind`.
fn ensure_base_locked(kind: BaseKind, registry: &Registry, key: &Path) -> BaseImage {
    let dir = base_cache_dir();
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot make the base cache {}: {e}", dir.display()));
    let lock_path = dir.join(format!("{}.lock", kind.name()));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", lock_path.display()));
    let waited = Instant::now();
    // Held until the function returns (the file is closed, which releases it), also when a
    // build fails: the next test then tries again rather than finding a half-made base.
    lock.lock()
        .unwrap_or_else(|e| panic!("cannot lock {}: {e}", lock_path.display()));
    let waited = waited.elapsed();
    if waited.as_secs() > 0 {
        eprintln!(
            "base {}: waited {waited:.0?} for another test's build",
            kind.name()
        );
    }
    let base = run_base_build(kind, registry, key, &[]);
    drop(lock);
    base
}

fn run_base_build(
    kind: BaseKind,
    registry: &Registry,
    key: &Path,
    extra_args: &[&str],
) -> BaseImage {
    let tag = format!("{}/bases/{}:test", registry.address(), kind.name());
    let key = key.display().to_string();
    let mut args = vec![
        "--json",
        "base",
        "build",
        kind.name(),
        "--tag",
        &tag,
        "--key",
        &key,
    ];
    args.extend_from_slice(extra_args);
    let started = Instant::now();
    let built = pht(&workspace_root(), &args).success();
    let base = BaseImage::from_json(&built.json());
    eprintln!(
        "base {}: {} in {:.0?}; {}",
        kind.name(),
        if base.reused { "reused" } else { "built" },
        started.elapsed(),
        base.reference
    );
    base
}

/// Where two local images' single layers differ: the paths whose entry (type, mode, owner,
/// size, link target or content hash) is not the same, at most `limit` of them. For the
/// message of a reproducibility test that failed, so its cause is in the CI log.
pub fn layer_differences(first_image: &str, second_image: &str, limit: usize) -> Vec<String> {
    let (first, second) = (layer_entries(first_image), layer_entries(second_image));
    let mut differences = Vec::new();
    for (path, entry) in &first {
        match second.get(path) {
            Some(other) if other == entry => {}
            Some(other) => differences.push(format!("{path}: {entry} / {other}")),
            None => differences.push(format!("{path}: only in the first")),
        }
    }
    for path in second.keys().filter(|path| !first.contains_key(*path)) {
        differences.push(format!("{path}: only in the second"));
    }
    differences.truncate(limit);
    differences
}

/// Every entry of an image's layers, `docker save`d, as a one-line description by path.
fn layer_entries(image: &str) -> std::collections::BTreeMap<String, String> {
    use sha2::{Digest as _, Sha256};
    use std::io::Read as _;
    let saved = tempfile::NamedTempFile::new().unwrap();
    let status = std::process::Command::new("docker")
        .args(["save", "-o"])
        .arg(saved.path())
        .arg(image)
        .status()
        .expect("docker runs");
    assert!(status.success(), "docker save {image} failed");
    let mut entries = std::collections::BTreeMap::new();
    let mut outer = tar::Archive::new(std::fs::File::open(saved.path()).unwrap());
    for layer in outer.entries().unwrap() {
        let layer = layer.unwrap();
        let name = layer.path().unwrap().display().to_string();
        if !name.ends_with("layer.tar") {
            continue;
        }
        let mut inner = tar::Archive::new(layer);
        for entry in inner.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().display().to_string();
            let header = entry.header().clone();
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            let link = entry
                .link_name()
                .ok()
                .flatten()
                .map(|link| link.display().to_string())
                .unwrap_or_default();
            entries.insert(
                path,
                format!(
                    "{:?} mode {:o} uid {} gid {} mtime {} size {} link {link:?} sha256 {}",
                    header.entry_type(),
                    header.mode().unwrap_or_default(),
                    header.uid().unwrap_or_default(),
                    header.gid().unwrap_or_default(),
                    header.mtime().unwrap_or_default(),
                    content.len(),
                    &hex::encode(Sha256::digest(&content))[..16]
                ),
            );
        }
    }
    entries
}

/// A copy of the train in `source` (a directory of the repository, e.g. `trains/cohort-stats-py`)
/// under `parent`, its Dockerfile's `FROM` line naming `base` (`REPO@sha256:…`): the example
/// trains' Dockerfiles name the base of the machine they were written on, and a test builds on
/// the base it published into its own registry.
pub fn train_on_base(source: &Path, base: &str, parent: &Path) -> PathBuf {
    let name = source.file_name().expect("a train directory has a name");
    let destination = parent.join(name);
    copy_tree(source, &destination);
    let dockerfile = destination.join("Dockerfile");
    let text = std::fs::read_to_string(&dockerfile).unwrap();
    let rebased: String = text
        .lines()
        .map(|line| {
            if line.split_whitespace().next() == Some("FROM") {
                format!("FROM {base}\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    std::fs::write(&dockerfile, rebased).unwrap();
    destination
}

fn copy_tree(source: &Path, destination: &Path) {
    std::fs::create_dir_all(destination).unwrap();
    for entry in std::fs::read_dir(source).unwrap() {
        let entry = entry.unwrap();
        let target = destination.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
