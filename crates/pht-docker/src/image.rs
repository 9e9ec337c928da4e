//! Images through the Docker Engine: build a train from its directory, save a built image into
//! its config and layers for pushing (and compress them, deterministically), load verified blobs
//! back as an image — whole, or streamed as they arrive — and inspect one.
//!
//! Owns the Docker build context, the `docker save`/`docker load` archive format and image
//! inspection. Does not talk to registries: the registry client moves the blobs, and the station
//! checks that what Docker holds is what was signed.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::Path;

use bollard::query_parameters::{BuildImageOptions, ImportImageOptions};
use bollard::Docker;
use bytes::Bytes;
use futures_util::StreamExt as _;
use pht_core::Digest;
use serde::Deserialize;

/// What went wrong with an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot read the build context {path}: {source}")]
    Context {
        path: String,
        source: std::io::Error,
    },
    #[error("docker build of {context} failed: {message}")]
    Build { context: String, message: String },
    #[error(
        "image {image} not found in the local Docker engine (build it first, or check the name)"
    )]
    NotFound { image: String },
    #[error("docker engine error while {operation}: {source}")]
    Engine {
        operation: String,
        source: bollard::errors::Error,
    },
    #[error("the docker save archive of {image} is malformed: {detail}")]
    Archive { image: String, detail: String },
    #[error("docker load produced image {actual}, expected {expected}: the blobs do not match the signed config")]
    LoadedIdMismatch { expected: Digest, actual: String },
    #[error("the image labels take {n_bytes} bytes (label `{largest}` most of them), but Docker's build API carries labels in its request URI, which holds at most {MAX_BUILD_LABEL_BYTES}: shorten the longest texts (descriptions) in train.yaml")]
    LabelsTooLarge { n_bytes: usize, largest: String },
}

/// The most label bytes (JSON, as sent) a build request carries: Docker reads them from the
/// request URI, percent-encoded (up to three bytes each), and refuses a URI past 64 KiB or so
/// ("uri too long"); this leaves room for the rest of the query.
pub const MAX_BUILD_LABEL_BYTES: usize = 16 * 1024;

/// The labels, user and command of a local image, and its id (the config digest).
#[derive(Debug, Clone)]
pub struct LocalImage {
    pub id: Digest,
    pub labels: HashMap<String, String>,
    pub repo_digests: Vec<String>,
}

/// A local image as its parts: the config bytes (whose SHA-256 is the image id) and the layer
/// tars in order (uncompressed, so each layer's digest is its diff id).
#[derive(Debug, Clone)]
pub struct SavedImage {
    pub config: Bytes,
    pub layers: Vec<Bytes>,
}

/// A saved layer compressed for a registry: gzip at level 6 with no timestamp, file name or
/// comment in its header, so the same tar always gives the same blob (and the same digest, so a
/// registry that has it is not sent it again). gzip rather than zstd: Docker 20.10 cannot load
/// zstd layers.
pub fn gzip_layer(tar: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::GzBuilder::new().mtime(0).write(
        Vec::with_capacity(tar.len() / 3),
        flate2::Compression::new(6),
    );
    encoder
        .write_all(tar)
        .and_then(|()| encoder.finish())
        .expect("writing into memory cannot fail")
}

/// Pulls `reference` (`REPOSITORY@sha256:…`) into the local engine, as `docker pull` does; the
/// engine checks every blob against the digest. For a researcher's build machine, to get a
/// train's base: a station never lets the engine contact a registry (it pulls blobs itself).
pub async fn pull_image(docker: &Docker, reference: &str) -> Result<(), ImageError> {
    let options = bollard::query_parameters::CreateImageOptionsBuilder::new()
        .from_image(reference)
        .build();
    let mut progress = docker.create_image(Some(options), None, None);
    while let Some(item) = progress.next().await {
        item.map_err(|source| ImageError::Engine {
            operation: format!("pulling {reference}"),
            source,
        })?;
    }
    Ok(())
}

/// Lines of `docker build` output, as they come.
pub type BuildLog<'a> = &'a mut (dyn FnMut(&str) + Send);

/// Builds the image in `context_dir` (which holds a `Dockerfile`) with `tag` and `labels`,
/// returning its id. Directories named `target` or `.git` are left out of the context.
pub async fn build_image(
    docker: &Docker,
    context_dir: &Path,
    tag: &str,
    labels: HashMap<String, String>,
    log: BuildLog<'_>,
) -> Result<Digest, ImageError> {
    let n_label_bytes = serde_json::to_vec(&labels).map_or(usize::MAX, |json| json.len());
    if n_label_bytes > MAX_BUILD_LABEL_BYTES {
        let largest = labels
            .iter()
            .max_by_key(|(key, value)| key.len() + value.len())
            .map(|(key, _)| key.clone())
            .unwrap_or_default();
        return Err(ImageError::LabelsTooLarge {
            n_bytes: n_label_bytes,
            largest,
        });
    }
    let context = build_context(context_dir)?;
    let options = BuildImageOptions {
        t: Some(tag.to_string()),
        labels: Some(labels),
        rm: true,
        forcerm: true,
        ..Default::default()
    };
    let context_name = context_dir.display().to_string();
    let mut stream = docker.build_image(
        options,
        None,
        Some(bollard::body_full(Bytes::from(context))),
    );
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| ImageError::Build {
            context: context_name.clone(),
            message: e.to_string(),
        })?;
        if let Some(error) = info.error_detail.and_then(|d| d.message) {
            return Err(ImageError::Build {
                context: context_name,
                message: error,
            });
        }
        if let Some(line) = info.stream {
            log(line.trim_end());
        }
    }
    Ok(inspect_image(docker, tag).await?.id)
}

/// A tar of the build context, leaving out `target/`, `.git/` and `.…tmp` staging files at any
/// depth.
fn build_context(context_dir: &Path) -> Result<Vec<u8>, ImageError> {
    let context_error = |source| ImageError::Context {
        path: context_dir.display().to_string(),
        source,
    };
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    let mut pending = vec![context_dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .map_err(context_error)?
            .collect::<Result<_, _>>()
            .map_err(context_error)?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let name = entry.file_name();
            // `.…tmp` files are binaries another build is still copying in (see `pht train build`).
            let is_staging = name
                .to_str()
                .is_some_and(|n| n.starts_with('.') && n.ends_with(".tmp"));
            if name == "target" || name == ".git" || is_staging {
                continue;
            }
            let relative = path
                .strip_prefix(context_dir)
                .expect("walked below the context");
            if entry.file_type().map_err(context_error)?.is_dir() {
                builder.append_dir(relative, &path).map_err(context_error)?;
                pending.push(path);
            } else {
                builder
                    .append_path_with_name(&path, relative)
                    .map_err(context_error)?;
            }
        }
    }
    builder.into_inner().map_err(context_error)
}

/// Inspects a local image by name, tag or id.
pub async fn inspect_image(docker: &Docker, image: &str) -> Result<LocalImage, ImageError> {
    let inspected = match docker.inspect_image(image).await {
        Ok(inspected) => inspected,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => {
            return Err(ImageError::NotFound {
                image: image.to_string(),
            })
        }
        Err(source) => {
            return Err(ImageError::Engine {
                operation: format!("inspecting {image}"),
                source,
            })
        }
    };
    let id_text = inspected.id.unwrap_or_default();
    let id = id_text.parse().map_err(|_| ImageError::Archive {
        image: image.to_string(),
        detail: format!("image id `{id_text}` is not a sha256 digest"),
    })?;
    Ok(LocalImage {
        id,
        labels: inspected.config.and_then(|c| c.labels).unwrap_or_default(),
        repo_digests: inspected.repo_digests.unwrap_or_default(),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SaveManifestEntry {
    config: String,
    layers: Vec<String>,
}

/// Saves a local image (`docker save`) and splits the archive into config and layers.
pub async fn save_image(docker: &Docker, image: &str) -> Result<SavedImage, ImageError> {
    let local = inspect_image(docker, image).await?;
    let mut archive = Vec::new();
    let mut stream = docker.export_image(image);
    while let Some(chunk) = stream.next().await {
        archive.extend_from_slice(&chunk.map_err(|source| ImageError::Engine {
            operation: format!("saving {image}"),
            source,
        })?);
    }
    let saved = split_save_archive(image, &archive)?;
    if Digest::of(&saved.config) != local.id {
        return Err(ImageError::Archive {
            image: image.to_string(),
            detail: "the saved config does not hash to the image id".into(),
        });
    }
    Ok(saved)
}

/// Splits a `docker save` archive (one image) into its config and layers.
pub fn split_save_archive(image: &str, archive: &[u8]) -> Result<SavedImage, ImageError> {
    let malformed = |detail: String| ImageError::Archive {
        image: image.to_string(),
        detail,
    };
    let mut files: HashMap<String, Bytes> = HashMap::new();
    let mut reader = tar::Archive::new(archive);
    for entry in reader.entries().map_err(|e| malformed(e.to_string()))? {
        let mut entry = entry.map_err(|e| malformed(e.to_string()))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry
            .path()
            .map_err(|e| malformed(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| malformed(e.to_string()))?;
        files.insert(path, Bytes::from(bytes));
    }
    let manifest = files
        .get("manifest.json")
        .ok_or_else(|| malformed("no manifest.json".into()))?;
    let entries: Vec<SaveManifestEntry> =
        serde_json::from_slice(manifest).map_err(|e| malformed(e.to_string()))?;
    let [entry] = entries.as_slice() else {
        return Err(malformed(format!(
            "expected one image, found {}",
            entries.len()
        )));
    };
    let take = |name: &str| {
        files
            .get(name)
            .cloned()
            .ok_or_else(|| malformed(format!("{name} is missing")))
    };
    Ok(SavedImage {
        config: take(&entry.config)?,
        layers: entry
            .layers
            .iter()
            .map(|l| take(l))
            .collect::<Result<_, _>>()?,
    })
}

/// Builds a `docker load` archive from a config and its layers (plain or gzip tars).
///
/// A layer given as `None` is one the engine holds already (by chain id, see
/// [`local_layer_chains`]): its file is left out, and the engine takes its own copy.
pub fn load_archive(config: &[u8], layers: &[Option<Bytes>]) -> Result<Vec<u8>, std::io::Error> {
    let layer_names: Vec<String> = (0..layers.len()).map(|i| format!("layer{i}.tar")).collect();
    let manifest =
        serde_json::json!([{ "Config": "config.json", "RepoTags": null, "Layers": layer_names }]);
    let mut builder = tar::Builder::new(Vec::new());
    let mut append = |name: &str, bytes: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, bytes)
    };
    append("manifest.json", manifest.to_string().as_bytes())?;
    append("config.json", config)?;
    for (name, layer) in layer_names.iter().zip(layers) {
        if let Some(layer) = layer {
            append(name, layer)?;
        }
    }
    builder.into_inner()
}

/// A layer's bytes as they arrive (a plain or gzip tar), for [`load_image_streamed`]; an error
/// item aborts the load.
pub type LayerBody =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// A layer of an image to load as it streams in.
pub enum LoadLayer {
    /// The engine holds this layer already (by chain id): nothing is sent for it.
    Present,
    /// A blob of exactly `size` bytes, a plain or gzip tar (the engine decompresses it).
    Stream { size: u64, body: LayerBody },
}

impl std::fmt::Debug for LoadLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadLayer::Present => f.write_str("Present"),
            LoadLayer::Stream { size, .. } => write!(f, "Stream({size} bytes)"),
        }
    }
}

/// A tar header for a regular file `name` of `size` bytes in a `docker load` archive.
fn archive_header(name: &str, size: u64) -> Result<Bytes, std::io::Error> {
    let mut header = tar::Header::new_gnu();
    header.set_path(name)?;
    header.set_size(size);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    Ok(Bytes::copy_from_slice(header.as_bytes()))
}

/// The zeros that pad a tar entry of `size` bytes to a whole 512-byte block.
fn archive_padding(size: u64) -> Bytes {
    Bytes::from(vec![0u8; ((512 - size % 512) % 512) as usize])
}

/// `body`, refused unless it gives exactly `size` bytes: a tar entry's length is fixed by its
/// header before its first byte is sent.
fn exact_length(name: String, size: u64, body: LayerBody) -> LayerBody {
    use std::sync::atomic::{AtomicU64, Ordering};
    let seen = std::sync::Arc::new(AtomicU64::new(0));
    let counted = {
        let (seen, name) = (seen.clone(), name.clone());
        body.map(move |item| {
            let chunk = item?;
            let n_bytes =
                seen.fetch_add(chunk.len() as u64, Ordering::Relaxed) + chunk.len() as u64;
            if n_bytes > size {
                return Err(std::io::Error::other(format!(
                    "{name} gave more than its {size} bytes"
                )));
            }
            Ok(chunk)
        })
    };
    let end = futures_util::stream::once(async move {
        let n_bytes = seen.load(Ordering::Relaxed);
        if n_bytes == size {
            Ok(Bytes::new())
        } else {
            Err(std::io::Error::other(format!(
                "{name} gave {n_bytes} of its {size} bytes"
            )))
        }
    });
    Box::pin(
        counted
            .chain(end)
            .filter(|item| std::future::ready(item.as_ref().map_or(true, |c| !c.is_empty()))),
    )
}

/// A `docker load` archive as a stream: each layer sent (header, its bytes as they come,
/// padding), then `config.json`, then `manifest.json` last. Docker unpacks the whole archive
/// before it reads the manifest, so an archive cut off by an error in a layer's stream — a
/// layer that failed its check — is never loaded.
pub fn load_archive_stream(config: Bytes, layers: Vec<LoadLayer>) -> LayerBody {
    let layer_names: Vec<String> = (0..layers.len()).map(|i| format!("layer{i}.tar")).collect();
    let manifest = Bytes::from(
        serde_json::json!([{ "Config": "config.json", "RepoTags": null, "Layers": layer_names }])
            .to_string(),
    );
    let mut parts: Vec<LayerBody> = Vec::new();
    let whole = |name: &str, bytes: Bytes| -> LayerBody {
        let header = archive_header(name, bytes.len() as u64);
        let padding = archive_padding(bytes.len() as u64);
        Box::pin(futures_util::stream::iter([header, Ok(bytes), Ok(padding)]))
    };
    for (name, layer) in layer_names.iter().zip(layers) {
        if let LoadLayer::Stream { size, body } = layer {
            parts.push(Box::pin(futures_util::stream::iter([archive_header(
                name, size,
            )])));
            parts.push(exact_length(name.clone(), size, body));
            parts.push(Box::pin(futures_util::stream::iter([Ok(archive_padding(
                size,
            ))])));
        }
    }
    parts.push(whole("config.json", config));
    parts.push(whole("manifest.json", manifest));
    // The end of the archive: two zero blocks.
    parts.push(Box::pin(futures_util::stream::iter([Ok(Bytes::from(
        vec![0u8; 1024],
    ))])));
    Box::pin(futures_util::stream::iter(parts).flatten())
}

/// Loads an image from its config and layers as they stream in (see [`load_archive_stream`])
/// and checks that Docker's image id is the config digest. Nothing but the chunks in flight is
/// held in memory; Docker keeps its own copy of the archive on disk while it unpacks it.
pub async fn load_image_streamed(
    docker: &Docker,
    config: Bytes,
    layers: Vec<LoadLayer>,
) -> Result<Digest, ImageError> {
    let expected = Digest::of(&config);
    let archive = load_archive_stream(config, layers);
    let mut stream = docker.import_image(
        ImportImageOptions {
            quiet: true,
            ..Default::default()
        },
        bollard::body_try_stream(archive),
        None,
    );
    while let Some(item) = stream.next().await {
        let info = item.map_err(|source| ImageError::Engine {
            operation: format!("loading image {expected}"),
            source,
        })?;
        if let Some(message) = info.error_detail.and_then(|detail| detail.message) {
            return Err(ImageError::Archive {
                image: expected.to_string(),
                detail: message,
            });
        }
    }
    let loaded = inspect_image(docker, &expected.to_string()).await?;
    if loaded.id != expected {
        return Err(ImageError::LoadedIdMismatch {
            expected,
            actual: loaded.id.to_string(),
        });
    }
    Ok(loaded.id)
}

/// The chain ids of every layer the engine holds, from its images' root file systems: a layer
/// whose chain id is here need not be fetched or sent again.
pub async fn local_layer_chains(
    docker: &Docker,
) -> Result<std::collections::HashSet<Digest>, ImageError> {
    let engine_error = |source| ImageError::Engine {
        operation: "listing the local images".into(),
        source,
    };
    let images = docker
        .list_images(None::<bollard::query_parameters::ListImagesOptions>)
        .await
        .map_err(engine_error)?;
    let mut chains = std::collections::HashSet::new();
    for image in images {
        let Ok(inspected) = docker.inspect_image(&image.id).await else {
            // Removed since it was listed: it holds nothing for us any more.
            continue;
        };
        let diff_ids: Vec<Digest> = inspected
            .root_fs
            .and_then(|root_fs| root_fs.layers)
            .unwrap_or_default()
            .iter()
            .filter_map(|layer| layer.parse().ok())
            .collect();
        chains.extend(pht_core::oci::chain_ids(&diff_ids));
    }
    Ok(chains)
}

/// Loads an image from its config and layers and checks that Docker's image id is the config
/// digest, i.e. that what Docker will run is exactly what was fetched and verified. A layer
/// given as `None` is one the engine holds already (see [`load_archive`]).
pub async fn load_image(
    docker: &Docker,
    config: &[u8],
    layers: &[Option<Bytes>],
) -> Result<Digest, ImageError> {
    let expected = Digest::of(config);
    let archive = load_archive(config, layers).map_err(|e| ImageError::Archive {
        image: expected.to_string(),
        detail: e.to_string(),
    })?;
    let mut stream = docker.import_image(
        ImportImageOptions {
            quiet: true,
            ..Default::default()
        },
        bollard::body_full(Bytes::from(archive)),
        None,
    );
    while let Some(item) = stream.next().await {
        item.map_err(|source| ImageError::Engine {
            operation: format!("loading image {expected}"),
            source,
        })?;
    }
    let loaded = inspect_image(docker, &expected.to_string()).await?;
    if loaded.id != expected {
        return Err(ImageError::LoadedIdMismatch {
            expected,
            actual: loaded.id.to_string(),
        });
    }
    Ok(loaded.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_train_yaml_too_large_for_a_label_is_refused_before_docker_is_asked() {
        // Regression: a train.yaml over ~32 KB failed with Docker's "uri too long".
        // A client for the engine on this machine; nothing is sent to it.
        let docker = Docker::connect_with_socket_defaults().unwrap();
        let labels = HashMap::from([("org.pht.train.v1".to_string(), "x".repeat(40 * 1024))]);
        let mut log = |_: &str| {};
        let error = build_image(&docker, Path::new("/nonexistent"), "t:1", labels, &mut log)
            .await
            .unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("org.pht.train.v1") && message.contains("train.yaml"),
            "{message}"
        );
    }

    #[test]
    fn load_archive_round_trips_through_the_save_format() {
        let config = Bytes::from_static(b"{\"rootfs\":{}}");
        let layers = vec![
            Bytes::from_static(b"layer-a"),
            Bytes::from_static(b"layer-b"),
        ];
        let archive = load_archive(
            &config,
            &layers.iter().cloned().map(Some).collect::<Vec<_>>(),
        )
        .unwrap();
        let saved = split_save_archive("test", &archive).unwrap();
        assert_eq!(saved.config, config);
        assert_eq!(saved.layers, layers);
    }

    #[tokio::test]
    async fn a_streamed_load_archive_holds_the_same_files_as_the_whole_one() {
        let config = Bytes::from_static(b"{\"rootfs\":{}}");
        let layer = Bytes::from(vec![7u8; 1300]);
        let halves = vec![
            Ok(layer.slice(..600)),
            Ok(Bytes::new()),
            Ok(layer.slice(600..)),
        ];
        let layers = vec![
            LoadLayer::Present,
            LoadLayer::Stream {
                size: layer.len() as u64,
                body: Box::pin(futures_util::stream::iter(halves)),
            },
        ];
        let mut archive = Vec::new();
        let mut stream = load_archive_stream(config.clone(), layers);
        while let Some(chunk) = stream.next().await {
            archive.extend_from_slice(&chunk.unwrap());
        }
        let whole = load_archive(&config, &[None, Some(layer)]).unwrap();
        let files = |archive: &[u8]| -> Vec<(String, Vec<u8>)> {
            tar::Archive::new(archive)
                .entries()
                .unwrap()
                .map(|entry| {
                    let mut entry = entry.unwrap();
                    let name = entry.path().unwrap().to_string_lossy().into_owned();
                    let mut bytes = Vec::new();
                    entry.read_to_end(&mut bytes).unwrap();
                    (name, bytes)
                })
                .collect()
        };
        let mut streamed = files(&archive);
        let last = streamed.last().unwrap().0.clone();
        assert_eq!(
            last, "manifest.json",
            "the manifest comes after every layer"
        );
        let mut expected = files(&whole);
        streamed.sort();
        expected.sort();
        assert_eq!(streamed, expected);
    }

    #[tokio::test]
    async fn a_layer_stream_that_fails_or_comes_up_short_cuts_the_archive_before_its_manifest() {
        let short = LoadLayer::Stream {
            size: 10,
            body: Box::pin(futures_util::stream::iter([Ok(Bytes::from_static(
                b"12345",
            ))])),
        };
        let failing = LoadLayer::Stream {
            size: 5,
            body: Box::pin(futures_util::stream::iter([Err(std::io::Error::other(
                "diff id mismatch",
            ))])),
        };
        for layer in [short, failing] {
            let mut stream = load_archive_stream(Bytes::from_static(b"{}"), vec![layer]);
            let mut sent = Vec::new();
            let mut error = None;
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(chunk) => sent.extend_from_slice(&chunk),
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
            assert!(error.is_some());
            assert!(!String::from_utf8_lossy(&sent).contains("manifest.json"));
        }
    }

    #[test]
    fn a_layer_compresses_to_the_same_gzip_every_time_and_back_to_its_tar() {
        let tar = b"a layer's tar, several times over. ".repeat(1000);
        let (first, second) = (gzip_layer(&tar), gzip_layer(&tar));
        assert_eq!(first, second);
        assert!(first.len() < tar.len() / 10);
        // No timestamp (bytes 4..8) and no file name flag (FNAME, bit 3 of byte 3).
        assert_eq!(&first[4..8], &[0, 0, 0, 0]);
        assert_eq!(first[3] & 0x08, 0);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(first.as_slice())
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, tar);
    }

    #[test]
    fn build_context_leaves_out_target_and_git() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::create_dir_all(dir.path().join("target/release")).unwrap();
        std::fs::write(dir.path().join("target/release/big"), "x").unwrap();
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        std::fs::write(dir.path().join("bin/tool"), "y").unwrap();
        let context = build_context(dir.path()).unwrap();
        let mut names: Vec<String> = tar::Archive::new(context.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["Dockerfile", "bin", "bin/tool"]);
    }
}
