//! Pull: the signed image is made present in the container engine, by digest.
//!
//! Owns fetching every layer the verified manifest names that the engine lacks, checking each
//! (its blob digest by `pht-registry`, its diff id here, after decompression), streaming it into
//! the engine, and the check that the image the engine will run is the one that was signed: its
//! id must equal the signed manifest's config digest. A present image with that id is not
//! fetched again (content-addressed), nor is a layer the engine holds (by chain id). Never lets
//! the engine contact a registry itself.
//!
//! What is held in memory: a layer's bytes stream from the registry to the engine a chunk at a
//! time; beside them, a blocking task decompresses a copy of each chunk (bounded queue) to hash
//! the tar. A layer's stream ends only once both its digest and its diff id have checked, and
//! the engine reads the image's manifest only after every layer's stream has ended, so a layer
//! that fails a check is never loaded. Docker keeps its own copy of the archive on disk while
//! it unpacks it, as `docker pull` does.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt as _;
use pht_core::oci::ImageConfig;
use pht_core::Digest;
use pht_registry::RegistryError;

use super::decide::ApprovedRun;
use crate::audit::AuditEvent;
use crate::engine::{Engine, EngineError, LoadLayer};
use crate::error::StationError;
use crate::station::Station;

/// Largest single layer pulled, compressed or not.
const MAX_LAYER_BYTES: u64 = 4 << 30;

/// Chunks of one layer waiting to be decompressed and hashed: enough to keep the engine's
/// upload going while the hashing catches up, small enough to hold (tens of KiB each).
const VERIFY_QUEUE_CHUNKS: usize = 64;

/// The signed image could not be made present.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("registry: {source}")]
    Registry {
        layer: Digest,
        #[source]
        source: RegistryError,
    },
    #[error("container engine: {0}")]
    Engine(#[from] EngineError),
    #[error("container engine: the engine loaded image {loaded}, but the signed manifest's config is {expected}: refusing to run it")]
    ImageIdMismatch { loaded: Digest, expected: Digest },
    #[error("layer {layer} does not unpack to the layer the signed config names ({expected}, it unpacks to {actual}): refusing to run it")]
    DiffIdMismatch {
        layer: Digest,
        expected: Digest,
        actual: Digest,
    },
    #[error("the train's image: {0}")]
    Malformed(String),
    #[error("layer {layer} is {media_type}, which this station does not read (it reads tar and gzip layers)")]
    UnknownMediaType { layer: Digest, media_type: String },
    #[error("layer {layer} is not valid gzip: {detail}")]
    BadGzip { layer: Digest, detail: String },
    #[error("layer {layer} is larger than the {limit}-byte limit")]
    TooLarge { layer: Digest, limit: u64 },
}

/// What a pull fetched and what the engine held already.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PullCount {
    pub layers_fetched: usize,
    pub layers_present: usize,
    pub bytes_fetched: u64,
}

/// Told how a pull goes, for a progress display (`pht-station exec` on a terminal). The pull
/// works the same without one.
pub trait PullProgress: Send + Sync {
    /// `n_layers` layers of `n_bytes` (compressed) in all are to be fetched.
    fn fetching(&self, n_layers: usize, n_bytes: u64);
    /// `n_bytes` more have arrived.
    fn fetched(&self, n_bytes: u64);
    /// Every layer has arrived and checked, and the engine is unpacking them.
    fn unpacking(&self);
    /// The pull is over, whether it succeeded or not.
    fn finished(&self);
}

/// How a layer's blob is made into its tar, to check its diff id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LayerEncoding {
    Tar,
    Gzip,
}

fn layer_encoding(media_type: &str, layer: &Digest) -> Result<LayerEncoding, PullError> {
    match media_type {
        pht_core::oci::OCI_LAYER_TAR | pht_core::oci::DOCKER_LAYER_TAR => Ok(LayerEncoding::Tar),
        pht_core::oci::OCI_LAYER_GZIP | pht_core::oci::DOCKER_LAYER_GZIP => Ok(LayerEncoding::Gzip),
        other => Err(PullError::UnknownMediaType {
            layer: layer.clone(),
            media_type: other.to_string(),
        }),
    }
}

/// A `Write` that hashes what it is given and refuses more than `limit` bytes.
struct HashingWriter {
    hasher: sha2::Sha256,
    n_bytes: u64,
    limit: u64,
}

impl std::io::Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest as _;
        self.n_bytes += buf.len() as u64;
        if self.n_bytes > self.limit {
            return Err(std::io::ErrorKind::FileTooLarge.into());
        }
        self.hasher.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Decompresses gzip chunks as they come and returns the SHA-256 of the tar (the diff id).
/// Runs on a blocking thread: decompressing is the one CPU-heavy step of a pull.
fn gzip_diff_id(
    mut chunks: tokio::sync::mpsc::Receiver<Bytes>,
    layer: &Digest,
) -> Result<Digest, PullError> {
    let writer = HashingWriter {
        hasher: <sha2::Sha256 as sha2::Digest>::new(),
        n_bytes: 0,
        limit: MAX_LAYER_BYTES,
    };
    let bad_gzip = |error: std::io::Error| {
        if error.kind() == std::io::ErrorKind::FileTooLarge {
            PullError::TooLarge {
                layer: layer.clone(),
                limit: MAX_LAYER_BYTES,
            }
        } else {
            PullError::BadGzip {
                layer: layer.clone(),
                detail: error.to_string(),
            }
        }
    };
    // Multi-member gzip (as `pigz` may write) is one stream to Docker too.
    let mut decoder = flate2::write::MultiGzDecoder::new(writer);
    while let Some(chunk) = chunks.blocking_recv() {
        decoder.write_all(&chunk).map_err(bad_gzip)?;
    }
    let writer = decoder.finish().map_err(bad_gzip)?;
    Ok(Digest::from_hasher(writer.hasher))
}

/// What checks a layer's stream: shared by every layer of one pull.
#[derive(Clone)]
struct PullWatch {
    /// The first check that failed; the engine's own error is only the consequence.
    failure: Arc<Mutex<Option<PullError>>>,
    bytes_fetched: Arc<AtomicU64>,
    progress: Option<Arc<dyn PullProgress>>,
}

impl PullWatch {
    fn fail(&self, error: PullError) -> std::io::Error {
        let message = error.to_string();
        let mut failure = self.failure.lock().expect("pull failure lock");
        failure.get_or_insert(error);
        std::io::Error::other(message)
    }
}

/// Where a layer's chunks go to be decompressed and hashed, and the task doing it.
type Verifier = (
    tokio::sync::mpsc::Sender<Bytes>,
    tokio::task::JoinHandle<Result<Digest, PullError>>,
);

/// A layer's blob as it streams from the registry, ending only once its digest (checked by
/// the registry client, which holds back the last chunk until then) and its diff id have
/// checked; a failure ends it with an error and is recorded in `watch`.
fn checked_layer(
    blob: pht_registry::BlobStream,
    layer: Digest,
    encoding: LayerEncoding,
    diff_id: Digest,
    watch: PullWatch,
) -> pht_docker::image::LayerBody {
    let verifier = match encoding {
        // A plain tar's digest is its diff id: checked before fetching.
        LayerEncoding::Tar => None,
        LayerEncoding::Gzip => {
            let (sender, receiver) = tokio::sync::mpsc::channel(VERIFY_QUEUE_CHUNKS);
            let layer = layer.clone();
            let task = tokio::task::spawn_blocking(move || gzip_diff_id(receiver, &layer));
            Some((sender, task))
        }
    };
    struct State {
        blob: pht_registry::BlobStream,
        verifier: Option<Verifier>,
        done: bool,
    }
    let start = State {
        blob,
        verifier,
        done: false,
    };
    let stream = futures_util::stream::unfold(start, move |mut state| {
        let (watch, layer, diff_id) = (watch.clone(), layer.clone(), diff_id.clone());
        async move {
            if state.done {
                return None;
            }
            match state.blob.next().await {
                Some(Ok(chunk)) => {
                    if let Some((sender, _)) = &state.verifier {
                        // A closed queue means the decompressor stopped on an error, which
                        // its result reports at the end.
                        let _ = sender.send(chunk.clone()).await;
                    }
                    watch
                        .bytes_fetched
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    if let Some(progress) = &watch.progress {
                        progress.fetched(chunk.len() as u64);
                    }
                    Some((Ok(chunk), state))
                }
                Some(Err(source)) => {
                    state.done = true;
                    let error = watch.fail(PullError::Registry { layer, source });
                    Some((Err(error), state))
                }
                None => {
                    state.done = true;
                    let (sender, task) = state.verifier.take()?;
                    drop(sender);
                    let checked = match task.await {
                        Ok(Ok(actual)) if actual == diff_id => return None,
                        Ok(Ok(actual)) => PullError::DiffIdMismatch {
                            layer,
                            expected: diff_id,
                            actual,
                        },
                        Ok(Err(error)) => error,
                        Err(join_error) => PullError::Malformed(format!(
                            "checking layer {layer} stopped: {join_error}"
                        )),
                    };
                    Some((Err(watch.fail(checked)), state))
                }
            }
        }
    });
    Box::pin(stream)
}

/// An approved run whose signed image is present in the engine under `image_id`. Only
/// [`Station::pull`] makes one.
#[derive(Debug)]
pub struct PulledRun {
    approved: ApprovedRun,
    image_id: Digest,
}

impl PulledRun {
    pub(super) fn into_parts(self) -> (ApprovedRun, Digest) {
        (self.approved, self.image_id)
    }
}

impl<E: Engine> Station<E> {
    /// Pulls the approved run's image; a failure fails the run.
    pub(super) async fn pull(&self, approved: ApprovedRun) -> Result<PulledRun, StationError> {
        let pulled = self.pull_image(&approved).await;
        if let Some(progress) = &self.pull_progress {
            progress.finished();
        }
        let (image_id, count) = match pulled {
            Ok(pulled) => pulled,
            Err(error) => return self.fail(approved.into_record(), error.into()),
        };
        let train = approved.train();
        let mut pulled =
            AuditEvent::new(&self.station_actor(), "pulled").run(&approved.record().run_id);
        pulled.train_digest = Some(train.digest().to_string());
        pulled
            .details
            .insert("image_id".into(), image_id.to_string().into());
        pulled
            .details
            .insert("layers_fetched".into(), count.layers_fetched.into());
        pulled
            .details
            .insert("layers_present".into(), count.layers_present.into());
        pulled
            .details
            .insert("bytes_fetched".into(), count.bytes_fetched.into());
        if let Some(base) = train.base() {
            pulled
                .details
                .insert("base".into(), base.reference().to_string().into());
        }
        self.audit.append(pulled)?;
        Ok(PulledRun { approved, image_id })
    }

    async fn pull_image(&self, approved: &ApprovedRun) -> Result<(Digest, PullCount), PullError> {
        let train = approved.train();
        let image_id = train.image_manifest().config.digest.clone();
        let mut count = PullCount::default();
        if self.engine.has_image(&image_id).await? {
            count.layers_present = train.image_manifest().layers.len();
            return Ok((image_id, count));
        }
        let config: ImageConfig =
            serde_json::from_slice(train.config_bytes()).map_err(|error| {
                PullError::Malformed(format!("the image config is not JSON: {error}"))
            })?;
        let diff_ids = config.diff_ids();
        let manifest_layers = &train.image_manifest().layers;
        if diff_ids.len() != manifest_layers.len() {
            return Err(PullError::Malformed(format!(
                "the manifest names {} layers but the config {}",
                manifest_layers.len(),
                diff_ids.len()
            )));
        }
        // Layers the engine holds (by chain id) are neither fetched nor sent again: a train on
        // a base the station has run before fetches only its own layers.
        let present = self.engine.layer_chains().await?;
        let chains = pht_core::oci::chain_ids(diff_ids);
        let watch = PullWatch {
            failure: Arc::default(),
            bytes_fetched: Arc::default(),
            progress: self.pull_progress.clone(),
        };
        let mut to_fetch = Vec::new();
        for ((layer, diff_id), chain_id) in manifest_layers.iter().zip(diff_ids).zip(&chains) {
            if present.contains(chain_id) {
                count.layers_present += 1;
                to_fetch.push(None);
                continue;
            }
            if layer.size > MAX_LAYER_BYTES {
                return Err(PullError::TooLarge {
                    layer: layer.digest.clone(),
                    limit: MAX_LAYER_BYTES,
                });
            }
            let encoding = layer_encoding(&layer.media_type, &layer.digest)?;
            if encoding == LayerEncoding::Tar && layer.digest != *diff_id {
                return Err(PullError::DiffIdMismatch {
                    layer: layer.digest.clone(),
                    expected: diff_id.clone(),
                    actual: layer.digest.clone(),
                });
            }
            count.layers_fetched += 1;
            to_fetch.push(Some((layer, encoding, diff_id)));
        }
        if let Some(progress) = &self.pull_progress {
            let n_bytes = to_fetch
                .iter()
                .flatten()
                .map(|(layer, ..)| layer.size)
                .sum();
            progress.fetching(count.layers_fetched, n_bytes);
        }
        let mut layers = Vec::with_capacity(to_fetch.len());
        for fetch in to_fetch {
            let Some((layer, encoding, diff_id)) = fetch else {
                layers.push(LoadLayer::Present);
                continue;
            };
            // Each layer's request is made when the engine is ready for its bytes, not before,
            // so the registry is never asked for more than one layer at a time.
            let (registry, reference) = (self.registry.clone(), train.reference().clone());
            let (digest, size) = (layer.digest.clone(), layer.size);
            let opened = {
                let (watch, digest) = (watch.clone(), digest.clone());
                async move {
                    registry
                        .get_blob_stream(&reference, &digest, size)
                        .await
                        .map_err(|source| {
                            watch.fail(PullError::Registry {
                                layer: digest,
                                source,
                            })
                        })
                }
            };
            let (watch, diff_id) = (watch.clone(), diff_id.clone());
            let body = futures_util::stream::once(opened)
                .map(move |opened| {
                    opened.map(|blob| {
                        checked_layer(
                            blob,
                            digest.clone(),
                            encoding,
                            diff_id.clone(),
                            watch.clone(),
                        )
                    })
                })
                .flat_map(|opened| match opened {
                    Ok(body) => body,
                    Err(error) => Box::pin(futures_util::stream::iter([Err(error)])),
                });
            layers.push(LoadLayer::Stream {
                size,
                body: Box::pin(body),
            });
        }
        let unpacking = {
            let progress = self.pull_progress.clone();
            move || {
                if let Some(progress) = &progress {
                    progress.unpacking();
                }
            }
        };
        let loaded = self
            .engine
            .load_image_streamed(train.config_bytes().clone(), layers)
            .await;
        unpacking();
        count.bytes_fetched = watch.bytes_fetched.load(Ordering::Relaxed);
        let failure = watch.failure.lock().expect("pull failure lock").take();
        let loaded = match (loaded, failure) {
            // A layer that failed its check is the reason; the engine's error only follows.
            (_, Some(failure)) => return Err(failure),
            (Err(error), None) => return Err(error.into()),
            (Ok(loaded), None) => loaded,
        };
        if loaded != image_id {
            return Err(PullError::ImageIdMismatch {
                loaded,
                expected: image_id,
            });
        }
        Ok((image_id, count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    /// The diff id `gzip_diff_id` computes from `blob` fed in chunks of `chunk_size`.
    fn diff_id_of(blob: Vec<u8>, chunk_size: usize) -> Result<Digest, PullError> {
        let (sender, receiver) = tokio::sync::mpsc::channel(blob.len() / chunk_size + 2);
        for chunk in blob.chunks(chunk_size) {
            sender.try_send(Bytes::copy_from_slice(chunk)).unwrap();
        }
        drop(sender);
        gzip_diff_id(receiver, &Digest::of(b"layer"))
    }

    #[test]
    fn a_gzip_layers_diff_id_is_the_digest_of_its_tar_however_it_is_chunked() {
        let tar = b"a tar, as bytes. ".repeat(5000);
        for chunk_size in [1, 7, 4096, 1 << 20] {
            assert_eq!(
                diff_id_of(gzip(&tar), chunk_size).unwrap(),
                Digest::of(&tar)
            );
        }
    }

    #[test]
    fn a_multi_member_gzip_layer_is_one_tar() {
        let (first, second) = (b"first half ".repeat(100), b"second half".repeat(100));
        let mut blob = gzip(&first);
        blob.extend(gzip(&second));
        assert_eq!(
            diff_id_of(blob, 64).unwrap(),
            Digest::of(&[first, second].concat())
        );
    }

    #[test]
    fn a_layer_that_is_not_gzip_is_refused_as_bad_gzip() {
        let error = diff_id_of(b"not gzip at all".to_vec(), 4).unwrap_err();
        assert!(matches!(error, PullError::BadGzip { .. }), "{error}");
    }

    #[test]
    fn a_zstd_layer_is_refused_by_media_type() {
        let error = layer_encoding(
            "application/vnd.oci.image.layer.v1.tar+zstd",
            &Digest::of(b"l"),
        )
        .unwrap_err();
        assert!(
            matches!(error, PullError::UnknownMediaType { .. }),
            "{error}"
        );
    }
}
