//! `pht train …`: scaffold, build, push, sign, verify and inspect trains.
//!
//! Glue only: manifest validation and signatures come from `pht-core`, registry traffic from
//! `pht-registry`, Docker from `pht-docker`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;
use pht_core::cosign::{self, CosignError};
use pht_core::manifest::TRAIN_LABEL;
use pht_core::oci::{
    Descriptor, ImageConfig, ImageManifest, OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST,
};
use pht_core::{Digest, ImageReference, TrainManifest};
use pht_registry::{signatures, RegistryClient};
use serde::Serialize;

use crate::exit::{fail, registry_failure, Classify as _, CommandResult, FailureKind};
use crate::keyfiles::{read_public_key, read_signing_key};
use crate::output::Output;

/// Largest image config read when inspecting (configs are a few KiB).
const MAX_CONFIG_BYTES: u64 = 8 << 20;

/// The static target trains are compiled for: the only one the toolchain here has, and one a
/// `FROM scratch` image can run.
const STATIC_TARGET: &str = "x86_64-unknown-linux-gnu";

pub fn parse_reference(text: &str) -> CommandResult<ImageReference> {
    text.parse::<ImageReference>().input()
}

async fn docker() -> CommandResult<bollard::Docker> {
    pht_docker::connect().await.unavailable()
}

// ---------------------------------------------------------------------------------------------
// init

pub fn init(
    output: Output,
    name: &str,
    dir: Option<&Path>,
    language: super::scaffold::Language,
    base: Option<&str>,
) -> CommandResult {
    let dir = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(name));
    let base = base.map(parse_reference).transpose()?;
    let files = super::scaffold::files(language, name, base.as_ref())
        .map_err(|message| fail(FailureKind::Input, message))?;
    let manifest_text = files[0].1.clone();
    // Validate the name the same way a build would, before writing anything.
    TrainManifest::from_yaml(&manifest_text, "train.yaml").map_err(|e| {
        fail(
            FailureKind::Input,
            format!("cannot scaffold a train named `{name}`: {}", e.message),
        )
    })?;
    if dir.exists()
        && std::fs::read_dir(&dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(fail(
            FailureKind::Input,
            format!(
                "{} exists and is not empty; choose another directory with --dir",
                dir.display()
            ),
        ));
    }
    for (relative, contents) in &files {
        let path = dir.join(relative);
        std::fs::create_dir_all(path.parent().expect("files are below the train directory"))
            .input()?;
        std::fs::write(&path, contents)
            .with_context(|| format!("cannot write {}", path.display()))
            .input()?;
    }
    #[derive(Serialize)]
    struct Initialised {
        name: String,
        directory: PathBuf,
        files: Vec<&'static str>,
    }
    let result = Initialised {
        name: name.to_string(),
        directory: dir.clone(),
        files: files.iter().map(|(f, _)| *f).collect(),
    };
    output.print(&result, || {
        format!(
            "created train `{name}` in {dir}\n  edit {program} (reads /data/<dataset>/, writes /output/) and train.yaml, then:\n  pht train build {dir} --tag <registry>/<repository>:<version>",
            dir = result.directory.display(),
            program = language.program_file()
        )
    });
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// build

#[derive(Serialize)]
struct Built {
    image_id: Digest,
    tag: String,
    manifest: TrainManifest,
}

/// Compiles the train's static binary into `bin/<name>` when the train is a Cargo project.
fn compile_static_binary(output: Output, dir: &Path, name: &str) -> CommandResult {
    output.note(format!(
        "compiling {name} as a static binary (cargo build --release --target {STATIC_TARGET})"
    ));
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--release",
            "--quiet",
            "--target",
            STATIC_TARGET,
            "--manifest-path",
        ])
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(dir.join("target"))
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .status()
        .context("cannot run cargo to compile the train (is the Rust toolchain installed?)")
        .unavailable()?;
    if !status.success() {
        return Err(fail(
            FailureKind::Input,
            format!(
                "compiling {} failed ({status}); fix the errors above",
                dir.display()
            ),
        ));
    }
    let binary = dir
        .join("target")
        .join(STATIC_TARGET)
        .join("release")
        .join(name);
    let destination = dir.join("bin").join(name);
    std::fs::create_dir_all(dir.join("bin")).input()?;
    // Copy beside the destination, then rename: a build of the same train running at the same
    // time must never put a half-written binary into its image.
    let staging = dir
        .join("bin")
        .join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::copy(&binary, &staging)
        .with_context(|| format!("the build made no binary {} (the Cargo package must be named `{name}`, like the train)", binary.display()))
        .input()?;
    std::fs::rename(&staging, &destination)
        .with_context(|| format!("cannot move the binary into {}", destination.display()))
        .input()?;
    Ok(())
}

pub async fn build(output: Output, dir: &Path, tag: Option<&str>, compile: bool) -> CommandResult {
    let manifest_path = dir.join("train.yaml");
    let text = std::fs::read_to_string(&manifest_path)
        .with_context(|| {
            format!(
                "cannot read {} (is {} a train directory?)",
                manifest_path.display(),
                dir.display()
            )
        })
        .input()?;
    let mut manifest =
        TrainManifest::from_yaml(&text, &manifest_path.display().to_string()).input()?;
    let sources = pht_core::train_sources::check_requirements(
        &std::fs::read_to_string(dir.join("requirements.txt")).unwrap_or_default(),
    )
    .and_then(|()| {
        pht_core::train_sources::dockerfile_base(
            &std::fs::read_to_string(dir.join("Dockerfile")).unwrap_or_default(),
        )
    });
    let base =
        sources.map_err(|error| fail(FailureKind::Input, format!("{}: {error}", dir.display())))?;
    if compile && dir.join("Cargo.toml").exists() {
        compile_static_binary(output, dir, manifest.name.as_str())?;
    }
    let docker = docker().await?;
    if let Some(base) = &base {
        let recorded = pht_core::manifest::BaseImage {
            repository: base.repository_path(),
            digest: base
                .digest()
                .cloned()
                .expect("dockerfile_base names bases by digest"),
        };
        if manifest
            .base
            .as_ref()
            .is_some_and(|declared| *declared != recorded)
        {
            return Err(fail(
                FailureKind::Input,
                format!(
                    "train.yaml names the base {}, but the Dockerfile builds FROM {base}",
                    manifest
                        .base
                        .as_ref()
                        .map(|b| format!("{}@{}", b.repository, b.digest))
                        .unwrap_or_default()
                ),
            ));
        }
        manifest.base = Some(recorded);
        if pht_docker::image::inspect_image(&docker, &base.to_string())
            .await
            .is_err()
        {
            output.note(format!("fetching the base {base}"));
            pht_docker::image::pull_image(&docker, &base.to_string())
                .await
                .unavailable()?;
        }
    }
    let tag = match tag {
        Some(tag) => parse_reference(tag)?.to_string(),
        None => format!("pht.local/{}:{}", manifest.name, manifest.version),
    };
    let mut labels: HashMap<String, String> = manifest.standard_labels().into_iter().collect();
    labels.insert(TRAIN_LABEL.to_string(), manifest.to_label_json());
    let json = output.json;
    let mut log = |line: &str| {
        if !json && !line.is_empty() {
            eprintln!("  {line}");
        }
    };
    let image_id = pht_docker::image::build_image(&docker, dir, &tag, labels, &mut log)
        .await
        .input()?;
    let built = Built {
        image_id,
        tag,
        manifest,
    };
    output.print(&built, || {
        format!(
            "built train {} {} as {}\n  image id {}\n  next: pht train push {}",
            built.manifest.name, built.manifest.version, built.tag, built.image_id, built.tag
        )
    });
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// push

#[derive(Serialize)]
struct Pushed {
    reference: String,
    digest: Digest,
    pinned: String,
    bytes_uploaded: u64,
    /// Layers the registry took from the base's repository without their bytes being sent.
    layers_mounted: usize,
}

/// Largest base layer fetched to copy it where the registry will not mount it.
const MAX_BASE_LAYER_BYTES: u64 = 4 << 30;

pub async fn push(
    output: Output,
    client: &RegistryClient,
    reference_text: &str,
    local_image: Option<&str>,
) -> CommandResult {
    let reference = parse_reference(reference_text)?;
    if reference.digest().is_some() {
        return Err(fail(
            FailureKind::Input,
            "push to a tag, not a digest: the digest is what the push produces",
        ));
    }
    let local_name = local_image.unwrap_or(reference_text);
    let docker = docker().await?;
    let local = pht_docker::image::inspect_image(&docker, local_name)
        .await
        .input()?;
    let label = local.labels.get(TRAIN_LABEL).ok_or_else(|| {
        fail(FailureKind::Input, format!("{local_name} has no {TRAIN_LABEL} label: build it with `pht train build`, which validates train.yaml"))
    })?;
    let train = TrainManifest::from_label_json(label).input()?;
    output.note(format!("saving {local_name} from Docker"));
    let saved = pht_docker::image::save_image(&docker, local_name)
        .await
        .input()?;
    let config: ImageConfig = serde_json::from_slice(&saved.config)
        .context("the saved image config is not JSON")
        .input()?;

    let base_layers = match &train.base {
        Some(base) => base_layers(output, client, base, config.diff_ids()).await,
        None => Vec::new(),
    };
    let mut layers: Vec<PushLayer> = base_layers
        .into_iter()
        .map(|(base, descriptor)| PushLayer::FromBase { base, descriptor })
        .collect();
    for layer in &saved.layers[layers.len()..] {
        // Train layers are small beside their base; compressing them on this thread is brief.
        layers.push(PushLayer::Blob(
            bytes::Bytes::from(pht_docker::image::gzip_layer(layer)),
            OCI_LAYER_GZIP,
        ));
    }
    let pushed = push_layers(output, client, &reference, saved.config.clone(), layers).await?;
    let pushed = Pushed {
        reference: reference.to_string(),
        pinned: reference.pinned(pushed.digest.clone()).to_string(),
        digest: pushed.digest,
        bytes_uploaded: pushed.bytes_uploaded,
        layers_mounted: pushed.layers_mounted,
    };
    output.print(&pushed, || pushed.pinned.clone());
    Ok(())
}

/// The base's layers as its registry holds them (blob descriptors, compressed as the base was
/// pushed), when the train's layers begin with them; the train pushes these by mounting them
/// from the base's repository instead of compressing and sending them again. Empty (with a
/// note) when the base cannot be read or the train was not built on it: every layer is then
/// pushed as the train's own.
async fn base_layers(
    output: Output,
    client: &RegistryClient,
    base: &pht_core::manifest::BaseImage,
    train_diff_ids: &[Digest],
) -> Vec<(ImageReference, Descriptor)> {
    let reference = match format!("{}@{}", base.repository, base.digest).parse::<ImageReference>() {
        Ok(reference) => reference,
        Err(error) => {
            output.note(format!(
                "the base {} is not a reference ({error}): pushing every layer",
                base.repository
            ));
            return Vec::new();
        }
    };
    let layers = async {
        let fetched = client
            .get_manifest(&reference, &base.digest.to_string())
            .await?;
        let manifest = fetched.image_manifest(reference.registry())?;
        let config_bytes = client
            .get_blob(&reference, &manifest.config.digest, MAX_CONFIG_BYTES, None)
            .await?;
        Ok::<_, pht_registry::RegistryError>((manifest, config_bytes))
    }
    .await;
    let (manifest, config_bytes) = match layers {
        Ok(layers) => layers,
        Err(error) => {
            output.note(format!(
                "cannot read the base {reference} ({error}): pushing its layers with the train's"
            ));
            return Vec::new();
        }
    };
    let base_diff_ids = serde_json::from_slice::<ImageConfig>(&config_bytes)
        .map(|config| config.diff_ids().to_vec())
        .unwrap_or_default();
    if base_diff_ids.is_empty()
        || base_diff_ids.len() != manifest.layers.len()
        || !train_diff_ids.starts_with(&base_diff_ids)
    {
        output.note(format!("the image's layers do not begin with those of its base {reference}: pushing every layer (a station will refuse it with base.mismatch)"));
        return Vec::new();
    }
    manifest
        .layers
        .into_iter()
        .map(|descriptor| (reference.clone(), descriptor))
        .collect()
}

/// A layer as [`push_layers`] sends it.
pub(crate) enum PushLayer {
    /// A blob in memory and its media type; not sent when the registry has it.
    Blob(bytes::Bytes, &'static str),
    /// A blob in the base's repository, mounted from there (or, where the registry will not
    /// mount or the base is in another registry, fetched and uploaded).
    FromBase {
        base: ImageReference,
        descriptor: Descriptor,
    },
}

/// What [`push_layers`] did.
pub(crate) struct PushedImage {
    pub digest: Digest,
    pub bytes_uploaded: u64,
    pub layers_mounted: usize,
}

/// Pushes an image — its layers (blob and media type), then its config, then the manifest —
/// to `reference`, with a progress bar per layer; returns the manifest digest and how many
/// layer bytes were uploaded (blobs the registry already had are not sent again).
pub(crate) async fn push_image(
    output: Output,
    client: &RegistryClient,
    reference: &ImageReference,
    config: bytes::Bytes,
    layers: &[(bytes::Bytes, &'static str)],
) -> CommandResult<(Digest, u64)> {
    let layers = layers
        .iter()
        .map(|(bytes, media_type)| PushLayer::Blob(bytes.clone(), media_type))
        .collect();
    let pushed = push_layers(output, client, reference, config, layers).await?;
    Ok((pushed.digest, pushed.bytes_uploaded))
}

/// Pushes an image's layers, its config and its manifest. A blob the repository has is not
/// sent again (HEAD first); a base's layer is mounted from the base's repository; every layer
/// that is uploaded has a progress bar (hidden with `--json` or off a terminal).
pub(crate) async fn push_layers(
    output: Output,
    client: &RegistryClient,
    reference: &ImageReference,
    config: bytes::Bytes,
    layers: Vec<PushLayer>,
) -> CommandResult<PushedImage> {
    let mut descriptors = Vec::new();
    let mut bytes_uploaded = 0u64;
    let mut layers_mounted = 0usize;
    for (index, layer) in layers.into_iter().enumerate() {
        let label = format!("layer {}", index + 1);
        match layer {
            PushLayer::Blob(bytes, media_type) => {
                let bar = output.bytes_bar(bytes.len() as u64, &label);
                let progress = |done: u64| bar.set_position(done);
                let uploaded = client
                    .push_blob(reference, bytes.clone(), Some(&progress))
                    .await
                    .map_err(registry_failure)?;
                bar.finish_and_clear();
                if uploaded {
                    bytes_uploaded += bytes.len() as u64;
                }
                descriptors.push(Descriptor {
                    media_type: media_type.to_string(),
                    digest: Digest::of(&bytes),
                    size: bytes.len() as u64,
                    annotations: None,
                });
            }
            PushLayer::FromBase { base, descriptor } => {
                let bar = output.bytes_bar(descriptor.size, &label);
                let progress = |done: u64| bar.set_position(done);
                let copied = client
                    .copy_blob(
                        reference,
                        &base,
                        &descriptor.digest,
                        MAX_BASE_LAYER_BYTES,
                        Some(&progress),
                    )
                    .await
                    .map_err(registry_failure)?;
                bar.finish_and_clear();
                match copied {
                    pht_registry::BlobCopy::Present => {}
                    pht_registry::BlobCopy::Mounted => {
                        layers_mounted += 1;
                        output.note(format!(
                            "{label}: mounted from {} (the base's, not sent again)",
                            base.repository_path()
                        ));
                    }
                    pht_registry::BlobCopy::Uploaded(n_bytes) => bytes_uploaded += n_bytes,
                }
                descriptors.push(descriptor);
            }
        }
    }
    client
        .push_blob(reference, config.clone(), None)
        .await
        .map_err(registry_failure)?;
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.to_string()),
        config: Descriptor {
            media_type: OCI_CONFIG.to_string(),
            digest: Digest::of(&config),
            size: config.len() as u64,
            annotations: None,
        },
        layers: descriptors,
        annotations: None,
        subject: None,
    };
    let manifest_bytes = serde_json::to_vec(&manifest).expect("a manifest always serialises");
    let digest = client
        .put_manifest(
            reference,
            &reference.manifest_selector(),
            OCI_MANIFEST,
            manifest_bytes,
        )
        .await
        .map_err(registry_failure)?;
    Ok(PushedImage {
        digest,
        bytes_uploaded,
        layers_mounted,
    })
}

// ---------------------------------------------------------------------------------------------
// sign

/// Fetches and parses the manifest and config of a train in a registry.
async fn fetch_train(
    client: &RegistryClient,
    reference: &ImageReference,
) -> CommandResult<(Digest, ImageManifest, ImageConfig)> {
    let fetched = client
        .get_manifest(reference, &reference.manifest_selector())
        .await
        .map_err(registry_failure)?;
    let manifest = fetched
        .image_manifest(reference.registry())
        .map_err(registry_failure)?;
    let config_bytes = client
        .get_blob(reference, &manifest.config.digest, MAX_CONFIG_BYTES, None)
        .await
        .map_err(registry_failure)?;
    let config: ImageConfig = serde_json::from_slice(&config_bytes)
        .with_context(|| format!("the image config of {reference} is not valid JSON"))
        .refused()?;
    Ok((fetched.digest, manifest, config))
}

#[derive(Serialize)]
struct Signed {
    reference: String,
    digest: Digest,
    key_id: String,
    algorithm: pht_core::KeyAlgorithm,
    signature_tag: String,
    signature_manifest: Digest,
}

pub async fn sign(
    output: Output,
    client: &RegistryClient,
    reference_text: &str,
    key_path: &Path,
) -> CommandResult {
    let reference = parse_reference(reference_text)?;
    let key = read_signing_key(key_path)?;
    let (digest, _, config) = fetch_train(client, &reference).await?;
    let label = config.labels().get(TRAIN_LABEL).cloned().ok_or_else(|| {
        fail(
            FailureKind::Input,
            format!("{reference} is not a train: its config has no {TRAIN_LABEL} label"),
        )
    })?;
    TrainManifest::from_label_json(&label).input()?;
    if reference.digest().is_none() {
        output.note(format!(
            "{reference} resolves to {digest}; the signature binds that digest, not the tag"
        ));
    }
    let signed = cosign::sign_image(&key, &reference.repository_path(), &digest);
    let signature_manifest = signatures::attach_signature(client, &reference, &digest, signed)
        .await
        .map_err(registry_failure)?;
    let result = Signed {
        reference: reference.pinned(digest.clone()).to_string(),
        signature_tag: format!(
            "{}:{}",
            reference.repository_path(),
            digest.cosign_signature_tag()
        ),
        digest,
        key_id: key.public_key().key_id(),
        algorithm: key.algorithm(),
        signature_manifest,
    };
    output.print(&result, || {
        format!(
            "signed {} with {} key {}\n  signature at {}",
            result.reference, result.algorithm, result.key_id, result.signature_tag
        )
    });
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// verify

#[derive(Serialize)]
struct Verification {
    reference: String,
    digest: Digest,
    verified: bool,
    key_id: String,
    signatures_found: usize,
    /// Why each signature that did not verify was rejected, in order.
    rejected: Vec<String>,
    docker_reference: Option<String>,
}

fn explain(error: &CosignError) -> String {
    match error {
        CosignError::Signature(pht_core::keys::SignatureError::Mismatch { .. }) => {
            format!("{error} — signed by another key (wrong --key, or an untrusted signer)")
        }
        CosignError::DigestMismatch { .. } => {
            format!("{error} — the signature belongs to another image (was the tag moved, or the signature copied?)")
        }
        _ => error.to_string(),
    }
}

pub async fn verify(
    output: Output,
    client: &RegistryClient,
    reference_text: &str,
    key_path: &Path,
) -> CommandResult {
    let reference = parse_reference(reference_text)?;
    let key = read_public_key(key_path)?;
    let digest = client.resolve(&reference).await.map_err(registry_failure)?;
    let found = signatures::fetch_signatures(client, &reference, &digest)
        .await
        .map_err(registry_failure)?;
    let mut verification = Verification {
        reference: reference.pinned(digest.clone()).to_string(),
        digest: digest.clone(),
        verified: false,
        key_id: key.key_id(),
        signatures_found: found.len(),
        rejected: Vec::new(),
        docker_reference: None,
    };
    for signed in &found {
        match cosign::verify_image_signature(&key, signed, &digest) {
            Ok(payload) => {
                verification.verified = true;
                verification.docker_reference = Some(payload.critical.identity.docker_reference);
                break;
            }
            Err(error) => verification.rejected.push(explain(&error)),
        }
    }
    if verification.verified {
        output.print(&verification, || {
            format!(
                "Verified OK: {} is signed by key {} ({})",
                verification.reference,
                verification.key_id,
                key.algorithm()
            )
        });
        return Ok(());
    }
    let reason = if found.is_empty() {
        format!(
            "no signature: {} has no tag {} for {digest} (the tag may point at an image nobody signed; sign it with `pht train sign`)",
            reference.repository_path(),
            digest.cosign_signature_tag()
        )
    } else {
        let reasons: Vec<String> = verification
            .rejected
            .iter()
            .enumerate()
            .map(|(i, r)| format!("  signature {}: {r}", i + 1))
            .collect();
        format!(
            "none of the {} signature(s) on {} verifies under key {}:\n{}",
            found.len(),
            verification.reference,
            key.key_id(),
            reasons.join("\n")
        )
    };
    if output.json {
        output.print(&verification, String::new);
    }
    Err(fail(FailureKind::Refused, reason))
}

// ---------------------------------------------------------------------------------------------
// inspect

#[derive(Serialize)]
struct InspectedSignature {
    docker_reference: Option<String>,
    signed_digest: Option<String>,
    /// The key file that verified it, if one of the given keys did.
    verified_by: Option<String>,
    problem: Option<String>,
}

#[derive(Serialize)]
struct Inspected {
    reference: String,
    digest: Digest,
    media_type: String,
    config_digest: Digest,
    layers: Vec<Descriptor>,
    labels: std::collections::BTreeMap<String, String>,
    train: Option<TrainManifest>,
    train_problem: Option<String>,
    signatures: Vec<InspectedSignature>,
}

pub async fn inspect(
    output: Output,
    client: &RegistryClient,
    reference_text: &str,
    key_paths: &[PathBuf],
) -> CommandResult {
    let reference = parse_reference(reference_text)?;
    let keys = key_paths
        .iter()
        .map(|p| Ok((p.display().to_string(), read_public_key(p)?)))
        .collect::<CommandResult<Vec<_>>>()?;
    let (digest, manifest, config) = fetch_train(client, &reference).await?;
    let labels = config.labels();
    let (train, train_problem) = match labels
        .get(TRAIN_LABEL)
        .map(|l| TrainManifest::from_label_json(l))
    {
        Some(Ok(train)) => (Some(train), None),
        Some(Err(error)) => (None, Some(error.to_string())),
        None => (None, Some(format!("no {TRAIN_LABEL} label: not a train"))),
    };
    let found = signatures::fetch_signatures(client, &reference, &digest)
        .await
        .map_err(registry_failure)?;
    let signatures = found
        .iter()
        .map(|signed| {
            let payload: Option<cosign::SimpleSigningPayload> =
                serde_json::from_slice(&signed.payload).ok();
            let verified_by = keys
                .iter()
                .find(|(_, key)| cosign::verify_image_signature(key, signed, &digest).is_ok())
                .map(|(name, _)| name.clone());
            let problem = payload.as_ref().and_then(|p| {
                (p.critical.image.docker_manifest_digest != digest.to_string())
                    .then(|| "signed for another digest".to_string())
            });
            InspectedSignature {
                docker_reference: payload
                    .as_ref()
                    .map(|p| p.critical.identity.docker_reference.clone()),
                signed_digest: payload.map(|p| p.critical.image.docker_manifest_digest),
                verified_by,
                problem,
            }
        })
        .collect();
    let inspected = Inspected {
        reference: reference.pinned(digest.clone()).to_string(),
        digest,
        media_type: manifest.media_type.clone().unwrap_or_default(),
        config_digest: manifest.config.digest.clone(),
        layers: manifest.layers.clone(),
        labels,
        train,
        train_problem,
        signatures,
    };
    output.print(&inspected, || render_inspection(&inspected));
    Ok(())
}

fn render_inspection(inspected: &Inspected) -> String {
    let mut text = format!(
        "{}\n  config  {}\n",
        inspected.reference, inspected.config_digest
    );
    for layer in &inspected.layers {
        text.push_str(&format!(
            "  layer   {} ({} bytes)\n",
            layer.digest, layer.size
        ));
    }
    match (&inspected.train, &inspected.train_problem) {
        (Some(train), _) => {
            text.push_str(&format!(
                "train {} {}: {}\n  purpose  {}\n",
                train.name, train.version, train.description, train.purpose
            ));
            let datasets: Vec<&str> = train.datasets.iter().map(|d| d.as_str()).collect();
            text.push_str(&format!("  datasets {}\n", datasets.join(", ")));
            for output in &train.outputs {
                text.push_str(&format!("  output   {} ({:?})\n", output.path, output.kind));
            }
        }
        (None, Some(problem)) => text.push_str(&format!("train: {problem}\n")),
        (None, None) => {}
    }
    if inspected.signatures.is_empty() {
        text.push_str("signatures: none\n");
    }
    for (index, signature) in inspected.signatures.iter().enumerate() {
        let signer = signature
            .verified_by
            .as_deref()
            .map_or("not verified by any --key given".to_string(), |k| {
                format!("verified by {k}")
            });
        text.push_str(&format!(
            "signature {}: {} ({}){}\n",
            index + 1,
            signature
                .docker_reference
                .as_deref()
                .unwrap_or("unreadable payload"),
            signer,
            signature
                .problem
                .as_deref()
                .map(|p| format!(" — {p}"))
                .unwrap_or_default()
        ));
    }
    text
}
