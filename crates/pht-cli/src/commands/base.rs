//! `pht base build python|r`: builds a base image for trains from Debian's own packages,
//! offline from any image registry, loads it into Docker, pushes it and signs it with the base
//! signer's key (not a researcher's: a station policy can trust bases and trains apart).
//!
//! A base is built once per machine: an image Docker already holds whose labels name the same
//! kind and package list, and whose config is exactly the one this build would write for its
//! layer, is reused (`--rebuild` builds anyway). Its compressed layer is kept in a cache by diff
//! id (`$PHT_CACHE_DIR`, else `$XDG_CACHE_HOME/pht`, else `~/.cache/pht`, under `bases/`), so
//! pushing a reused base to another registry costs no recompression either.
//!
//! Glue only: the root file system, layer and config are `pht-base`'s, Docker is `pht-docker`'s,
//! the registry and signatures `pht-registry`'s and `pht-core`'s.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use pht_base::{BaseKind, PackageList};
use pht_core::cosign;
use pht_core::oci::OCI_LAYER_GZIP;
use pht_core::Digest;
use pht_registry::{signatures, RegistryClient};
use serde::Serialize;

use super::train::{parse_reference, push_image};
use crate::exit::{fail, registry_failure, Classify as _, CommandResult, FailureKind};
use crate::keyfiles::read_signing_key;
use crate::output::Output;

/// The package lists the project keeps, built into `pht` so that `pht base build` works
/// anywhere; `--packages` replaces one.
const PYTHON_PACKAGES: &str = include_str!("../../../../trains/base/python/packages.txt");
const R_PACKAGES: &str = include_str!("../../../../trains/base/r/packages.txt");

/// The Debian mirror bases are built from unless `--mirror` says otherwise.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

#[derive(Serialize)]
struct BuiltBase {
    kind: &'static str,
    reference: String,
    digest: Digest,
    image_id: Digest,
    layer_diff_id: Digest,
    layer_digest: Digest,
    layer_bytes: u64,
    compressed_bytes: u64,
    packages_sha256: Digest,
    signer_key_id: String,
    /// Whether an image already in Docker was reused instead of building one.
    reused: bool,
    /// Seconds spent making the layer (debootstrap and packing), 0 when reused.
    build_seconds: u64,
}

/// What `pht base build` was asked to do, resolved from the command line.
pub struct BaseBuild<'a> {
    pub kind: BaseKind,
    pub tag: &'a str,
    pub key_path: &'a Path,
    pub packages_path: Option<&'a Path>,
    pub mirror: &'a str,
    /// Build even when Docker holds the same base already.
    pub rebuild: bool,
}

/// A base's layer, ready to push: its diff id, its gzip blob and the uncompressed size.
struct PackedBase {
    diff_id: Digest,
    gzip: Bytes,
    tar_bytes: u64,
}

/// Where bases' compressed layers are cached.
fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PHT_CACHE_DIR") {
        return Some(PathBuf::from(dir).join("bases"));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("pht").join("bases"))
}

/// What the cache keeps beside a layer's gzip, so a cached blob is checked before it is pushed.
#[derive(Serialize, serde::Deserialize)]
struct CachedLayer {
    gzip_sha256: Digest,
    tar_bytes: u64,
}

fn cache_paths(diff_id: &Digest) -> Option<(PathBuf, PathBuf)> {
    let dir = cache_dir()?;
    let stem = format!("sha256-{}", diff_id.hex());
    Some((
        dir.join(format!("{stem}.tar.gz")),
        dir.join(format!("{stem}.json")),
    ))
}

/// The cached gzip of the layer `diff_id`, if the cache holds it intact.
fn cached_layer(diff_id: &Digest) -> Option<PackedBase> {
    let (gzip_path, meta_path) = cache_paths(diff_id)?;
    let meta: CachedLayer = serde_json::from_slice(&std::fs::read(meta_path).ok()?).ok()?;
    let gzip = std::fs::read(gzip_path).ok()?;
    (Digest::of(&gzip) == meta.gzip_sha256).then(|| PackedBase {
        diff_id: diff_id.clone(),
        gzip: Bytes::from(gzip),
        tar_bytes: meta.tar_bytes,
    })
}

/// Keeps a layer's gzip in the cache; a cache that cannot be written only costs time later.
fn cache_layer(output: Output, packed: &PackedBase) {
    let Some((gzip_path, meta_path)) = cache_paths(&packed.diff_id) else {
        return;
    };
    let write = || -> std::io::Result<()> {
        let dir = gzip_path.parent().expect("cache files are in a directory");
        std::fs::create_dir_all(dir)?;
        // A temporary file in the same directory, renamed into place: another build writing
        // the same layer at the same time never leaves a half-written blob under its name.
        let mut staged = tempfile::NamedTempFile::new_in(dir)?;
        std::io::Write::write_all(&mut staged, &packed.gzip)?;
        staged.persist(&gzip_path).map_err(|error| error.error)?;
        let meta = CachedLayer {
            gzip_sha256: Digest::of(&packed.gzip),
            tar_bytes: packed.tar_bytes,
        };
        let mut staged = tempfile::NamedTempFile::new_in(dir)?;
        std::io::Write::write_all(
            &mut staged,
            &serde_json::to_vec(&meta).expect("a cache entry always serialises"),
        )?;
        staged.persist(&meta_path).map_err(|error| error.error)?;
        Ok(())
    };
    if let Err(error) = write() {
        output.note(format!(
            "could not cache the base's layer in {}: {error}",
            gzip_path.display()
        ));
    }
}

/// The local name of the base built from a package list: `pht.local/bases/KIND:SUITE-HASH12`.
fn local_reference(kind: BaseKind, packages: &Digest) -> String {
    format!(
        "pht.local/bases/{}:{}-{}",
        kind.name(),
        pht_base::DEBIAN_SUITE,
        &packages.hex()[..12]
    )
}

/// A base Docker already holds that this build would make again: labelled with the kind and
/// the package list's SHA-256, one layer, and exactly the config this build writes for that
/// layer (so its image id is the one a build would give).
async fn find_reusable(
    docker: &bollard::Docker,
    kind: BaseKind,
    packages: &Digest,
) -> CommandResult<Option<(Digest, Digest)>> {
    let packages_hex = packages.hex();
    // The image the last build of this list was tagged as comes first: after `--rebuild`, the
    // rebuilt image is the one reused, even if an older build of the same list (a day when
    // Debian's mirror held other package versions) is still in Docker.
    let mut candidates = Vec::new();
    if let Ok(tagged) =
        pht_docker::image::inspect_image(docker, &local_reference(kind, packages)).await
    {
        candidates.push(tagged.id);
    }
    let labelled = pht_docker::image_lookup::images_labelled(
        docker,
        &[
            (pht_base::BASE_LABEL, kind.name()),
            (pht_base::PACKAGES_LABEL, packages_hex),
        ],
    )
    .await
    .unavailable()?;
    candidates.extend(labelled);
    for image_id in candidates {
        let diff_ids = pht_docker::image_lookup::image_diff_ids(docker, &image_id.to_string())
            .await
            .unavailable()?;
        let [diff_id] = diff_ids.as_slice() else {
            continue;
        };
        if Digest::of(&pht_base::base_config(kind, diff_id, packages)) == image_id {
            return Ok(Some((image_id, diff_id.clone())));
        }
    }
    Ok(None)
}

/// The layer of a base Docker holds: from the cache, or saved from Docker and compressed again
/// (the same bytes the first build pushed: the gzip is deterministic).
async fn layer_of_local_base(
    output: Output,
    docker: &bollard::Docker,
    image_id: &Digest,
    diff_id: &Digest,
) -> CommandResult<PackedBase> {
    if let Some(cached) = cached_layer(diff_id) {
        return Ok(cached);
    }
    output.note(format!(
        "saving {image_id} from Docker and compressing its layer (once; then cached)"
    ));
    let saved = pht_docker::image::save_image(docker, &image_id.to_string())
        .await
        .unavailable()?;
    let [tar] = saved.layers.as_slice() else {
        return Err(fail(
            FailureKind::Unavailable,
            format!(
                "{image_id} has {} layers; a base has one",
                saved.layers.len()
            ),
        ));
    };
    if Digest::of(tar) != *diff_id {
        return Err(fail(
            FailureKind::Unavailable,
            format!(
                "Docker saved a layer of {image_id} that does not hash to its diff id {diff_id}"
            ),
        ));
    }
    let tar = tar.clone();
    let gzip = tokio::task::spawn_blocking(move || pht_base::gzip_layer(&tar))
        .await
        .map_err(|error| {
            fail(
                FailureKind::Unavailable,
                format!("compressing stopped: {error}"),
            )
        })?
        .map_err(|error| {
            fail(
                FailureKind::Unavailable,
                format!("cannot compress: {error}"),
            )
        })?;
    let packed = PackedBase {
        diff_id: diff_id.clone(),
        gzip: Bytes::from(gzip),
        tar_bytes: saved.layers[0].len() as u64,
    };
    cache_layer(output, &packed);
    Ok(packed)
}

/// Debootstraps, normalises and packs a base, and loads it into Docker.
async fn build_fresh(
    output: Output,
    docker: &bollard::Docker,
    kind: BaseKind,
    packages: &PackageList,
    mirror: &str,
) -> CommandResult<(Digest, PackedBase)> {
    let scratch = tempfile::tempdir().map_err(|error| {
        fail(
            FailureKind::Unavailable,
            format!("cannot make a scratch directory: {error}"),
        )
    })?;
    let root = scratch.path().join("rootfs");
    output.note(format!(
        "debootstrap: {} packages from {mirror} (a few minutes the first time)",
        packages.names().len()
    ));
    let layer = {
        let (root, packages, mirror) = (root.clone(), packages.clone(), mirror.to_string());
        tokio::task::spawn_blocking(move || {
            pht_base::debootstrap(&packages, &root, &mirror)?;
            pht_base::normalise(&root)?;
            pht_base::pack_layer(&root).map_err(|source| pht_base::RootfsError::Normalise {
                path: root.display().to_string(),
                source,
            })
        })
        .await
        .map_err(|error| {
            fail(
                FailureKind::Unavailable,
                format!("the build stopped: {error}"),
            )
        })?
        .unavailable()?
    };
    let config = pht_base::base_config(kind, &layer.diff_id, &packages.digest());
    let image_id = Digest::of(&config);

    output.note(format!("loading {image_id} into Docker"));
    // Moved, not copied: the tar of a base is a gigabyte.
    let (tar, diff_id, gzip) = (layer.tar, layer.diff_id, layer.gzip);
    let tar_bytes = tar.len() as u64;
    let loaded = pht_docker::image::load_image(docker, &config, &[Some(Bytes::from(tar))])
        .await
        .unavailable()?;
    if loaded != image_id {
        return Err(fail(
            FailureKind::Unavailable,
            format!("Docker loaded the base as {loaded}, but its config is {image_id}"),
        ));
    }
    let packed = PackedBase {
        diff_id,
        tar_bytes,
        gzip: Bytes::from(gzip),
    };
    cache_layer(output, &packed);
    Ok((image_id, packed))
}

/// Builds (or reuses), loads, pushes and signs a base; prints the pinned reference.
pub async fn build(
    output: Output,
    client: &RegistryClient,
    request: BaseBuild<'_>,
) -> CommandResult {
    let BaseBuild {
        kind,
        tag,
        key_path,
        packages_path,
        mirror,
        rebuild,
    } = request;
    let reference = parse_reference(tag)?;
    if reference.digest().is_some() {
        return Err(fail(
            FailureKind::Input,
            "give the base a tag to push to, not a digest: the digest is what the build makes",
        ));
    }
    let key = read_signing_key(key_path)?;
    let (packages_text, source_name) = match packages_path {
        Some(path) => (
            std::fs::read_to_string(path).map_err(|error| {
                fail(
                    FailureKind::Input,
                    format!("cannot read {}: {error}", path.display()),
                )
            })?,
            path.display().to_string(),
        ),
        None => (
            match kind {
                BaseKind::Python => PYTHON_PACKAGES,
                BaseKind::R => R_PACKAGES,
            }
            .to_string(),
            format!("trains/base/{}/packages.txt", kind.name()),
        ),
    };
    let packages = PackageList::parse(&packages_text, &source_name).input()?;
    let docker = pht_docker::connect().await.unavailable()?;

    let reusable = if rebuild {
        None
    } else {
        find_reusable(&docker, kind, &packages.digest()).await?
    };
    let started = std::time::Instant::now();
    let (image_id, packed, reused) = match reusable {
        Some((image_id, diff_id)) => {
            output.note(format!(
                "reusing the {} base {image_id} already in Docker (same package list, sha256 {}); --rebuild builds it again",
                kind.name(),
                packages.digest().hex()
            ));
            let packed = layer_of_local_base(output, &docker, &image_id, &diff_id).await?;
            (image_id, packed, true)
        }
        None => {
            let (image_id, packed) = build_fresh(output, &docker, kind, &packages, mirror).await?;
            (image_id, packed, false)
        }
    };
    let build_seconds = if reused {
        0
    } else {
        started.elapsed().as_secs()
    };
    // The local name says which list the base was built from, and keeps Docker from pruning
    // the base when a train built on it is removed.
    let local = local_reference(kind, &packages.digest());
    let (local_repository, local_tag) =
        local.rsplit_once(':').expect("a local reference has a tag");
    pht_docker::image_lookup::tag_image(&docker, &image_id, local_repository, local_tag)
        .await
        .unavailable()?;
    let config = pht_base::base_config(kind, &packed.diff_id, &packages.digest());
    let (digest, _) = push_image(
        output,
        client,
        &reference,
        Bytes::from(config),
        &[(packed.gzip.clone(), OCI_LAYER_GZIP)],
    )
    .await?;
    let signed = cosign::sign_image(&key, &reference.repository_path(), &digest);
    signatures::attach_signature(client, &reference, &digest, signed)
        .await
        .map_err(registry_failure)?;
    let built = BuiltBase {
        kind: kind.name(),
        reference: reference.pinned(digest.clone()).to_string(),
        digest,
        image_id,
        layer_diff_id: packed.diff_id.clone(),
        layer_digest: Digest::of(&packed.gzip),
        layer_bytes: packed.tar_bytes,
        compressed_bytes: packed.gzip.len() as u64,
        packages_sha256: packages.digest(),
        signer_key_id: key.public_key().key_id(),
        reused,
        build_seconds,
    };
    output.print(&built, || {
        format!(
            "{}\n  {}\n  layer   {} ({} MB, {} MB compressed)\n  packages sha256 {}\n  signed by key {}",
            built.reference,
            if built.reused {
                "reused the image already in Docker".to_string()
            } else {
                format!("built in {} s", built.build_seconds)
            },
            built.layer_diff_id,
            built.layer_bytes / 1_000_000,
            built.compressed_bytes / 1_000_000,
            built.packages_sha256.hex(),
            built.signer_key_id
        )
    });
    Ok(())
}
