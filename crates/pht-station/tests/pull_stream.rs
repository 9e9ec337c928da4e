//! In-process tests of the station's pull against a real registry (Debian's `docker-registry`)
//! and a fake engine that consumes the layer streams it is given, as Docker would, and records
//! how each ended. A train's layers are gzip blobs; the base's layer is one the engine holds.
//! The pull fetches only the train's own layer, checks its digest and its diff id as it
//! streams, counts what it fetched, and reports progress; a layer that does not unpack to the
//! signed diff id ends its stream with an error, so the engine never loads it.

use std::collections::HashSet;
use std::io::Write as _;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt as _;
use pht_core::oci::{Descriptor, ImageManifest, OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST};
use pht_core::{cosign, Digest, ImageReference, KeyAlgorithm, SigningKey, TrainManifest};
use pht_docker::{RunOutcome, RunSpec};
use pht_e2e::Registry;
use pht_registry::{signatures, RegistryClient, RegistryOptions};
use pht_station::audit::AuditLog;
use pht_station::engine::LoadLayer;
use pht_station::pipeline::PullProgress;
use pht_station::{Engine, EngineError, GivenParameters, Station, StationConfig, Submission};

/// How one layer stream given to the engine ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Streamed {
    Present,
    /// Every byte arrived and the stream ended cleanly: this many bytes.
    Whole(u64),
    /// The stream ended with an error after this many bytes.
    Failed(u64),
}

/// An engine that holds the layers with `chains`, consumes streams like Docker's load would,
/// loads an image only when every stream ended cleanly, and runs nothing.
#[derive(Debug, Default)]
struct StreamingEngine {
    chains: HashSet<Digest>,
    loads: Mutex<Vec<Vec<Streamed>>>,
}

impl Engine for StreamingEngine {
    async fn has_image(&self, _image_id: &Digest) -> Result<bool, EngineError> {
        Ok(false)
    }

    async fn layer_chains(&self) -> Result<HashSet<Digest>, EngineError> {
        Ok(self.chains.clone())
    }

    async fn load_image(
        &self,
        _config: &[u8],
        _layers: &[Option<Bytes>],
    ) -> Result<Digest, EngineError> {
        Err(EngineError("this engine only loads streamed layers".into()))
    }

    async fn load_image_streamed(
        &self,
        config: Bytes,
        layers: Vec<LoadLayer>,
    ) -> Result<Digest, EngineError> {
        let mut streamed = Vec::new();
        for layer in layers {
            let LoadLayer::Stream { mut body, .. } = layer else {
                streamed.push(Streamed::Present);
                continue;
            };
            let mut n_bytes = 0u64;
            let mut failed = false;
            while let Some(chunk) = body.next().await {
                match chunk {
                    Ok(chunk) => n_bytes += chunk.len() as u64,
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            streamed.push(if failed {
                Streamed::Failed(n_bytes)
            } else {
                Streamed::Whole(n_bytes)
            });
        }
        let all_whole = !streamed.iter().any(|s| matches!(s, Streamed::Failed(_)));
        self.loads.lock().unwrap().push(streamed);
        if all_whole {
            Ok(Digest::of(&config))
        } else {
            Err(EngineError("a layer stream failed: nothing loaded".into()))
        }
    }

    async fn run(&self, _spec: &RunSpec) -> Result<RunOutcome, EngineError> {
        Err(EngineError("the fake engine runs nothing".into()))
    }
}

/// Progress as it was reported.
#[derive(Debug, Default)]
struct RecordedProgress {
    events: Mutex<Vec<String>>,
    n_bytes: Mutex<u64>,
}

impl PullProgress for RecordedProgress {
    fn fetching(&self, n_layers: usize, n_bytes: u64) {
        self.events
            .lock()
            .unwrap()
            .push(format!("fetching {n_layers} layers, {n_bytes} bytes"));
    }

    fn fetched(&self, n_bytes: u64) {
        *self.n_bytes.lock().unwrap() += n_bytes;
    }

    fn unpacking(&self) {
        self.events.lock().unwrap().push("unpacking".into());
    }

    fn finished(&self) {
        self.events.lock().unwrap().push("finished".into());
    }
}

/// A tar holding one file, as a layer.
fn layer_tar(path: &str, contents: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(contents.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    builder.append_data(&mut header, path, contents).unwrap();
    builder.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

struct World {
    registry: Registry,
    client: RegistryClient,
    dir: tempfile::TempDir,
    researcher: SigningKey,
}

impl World {
    fn new() -> World {
        let researcher = SigningKey::generate(KeyAlgorithm::Ed25519);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("researcher.pub"),
            researcher.public_key().to_pem(),
        )
        .unwrap();
        World {
            registry: Registry::start(),
            client: RegistryClient::new(RegistryOptions::default()),
            dir,
            researcher,
        }
    }

    /// Pushes and signs a train whose layers are the gzip `blobs`, with `diff_ids` in its
    /// config (the digests of the tars, unless a test lies).
    async fn train(&self, blobs: &[Vec<u8>], diff_ids: &[Digest]) -> ImageReference {
        let manifest = TrainManifest::from_yaml(
            "name: streamed\nversion: 0.1.0\ndescription: counts\nauthors: []\npurpose: aggregate statistics\noutputs:\n  - {path: counts.csv, kind: table}\n",
            "train.yaml",
        )
        .unwrap();
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"User": "65534:65534", "Labels": {
                pht_core::manifest::TRAIN_LABEL: manifest.to_label_json(),
            }},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let reference: ImageReference = format!("{}/trains/streamed", self.registry.address())
            .parse()
            .unwrap();
        for blob in blobs.iter().chain(std::iter::once(&config)) {
            self.client
                .push_blob(&reference, Bytes::from(blob.clone()), None)
                .await
                .unwrap();
        }
        let descriptor = |media_type: &str, bytes: &[u8]| Descriptor {
            media_type: media_type.to_string(),
            digest: Digest::of(bytes),
            size: bytes.len() as u64,
            annotations: None,
        };
        let image = ImageManifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.to_string()),
            config: descriptor(OCI_CONFIG, &config),
            layers: blobs
                .iter()
                .map(|blob| descriptor(OCI_LAYER_GZIP, blob))
                .collect(),
            annotations: None,
            subject: None,
        };
        let bytes = serde_json::to_vec(&image).unwrap();
        let digest = Digest::of(&bytes);
        self.client
            .put_manifest(&reference, &digest.to_string(), OCI_MANIFEST, bytes)
            .await
            .unwrap();
        let signed = cosign::sign_image(&self.researcher, &reference.repository_path(), &digest);
        signatures::attach_signature(&self.client, &reference, &digest, signed)
            .await
            .unwrap();
        reference.pinned(digest)
    }

    /// A station that approves the researcher's trains automatically, with `engine`.
    fn station(&self, engine: StreamingEngine) -> Station<StreamingEngine> {
        let root = self.dir.path().join("station");
        std::fs::create_dir_all(&root).unwrap();
        let address = self.registry.address();
        std::fs::write(
            root.join("policy.yaml"),
            format!(
                "version: 1\ntrusted_signers:\n  - name: researcher\n    public_key: {}/researcher.pub\n    purposes: [\"aggregate statistics\"]\n    datasets: []\n    approval: automatic\nregistries:\n  - registry: \"{address}\"\n    repositories: [\"trains/*\"]\n",
                self.dir.path().display()
            ),
        )
        .unwrap();
        let config = format!(
            "version: 1\nstation_id: pull-stream-station\nkey_dir: keys\nregistries:\n  - registry: \"{address}\"\npolicy: policy.yaml\nstate_dir: state\n"
        );
        let config = StationConfig::from_yaml(&config, &root.join("station.yaml")).unwrap();
        Station::open(config, engine).unwrap()
    }
}

async fn exec(station: &Station<StreamingEngine>, train: &ImageReference) -> String {
    let submitted = station
        .submit(Submission {
            reference: train.clone(),
            parameters: GivenParameters::CommandLine(Vec::new()),
            job: None,
            recipient: None,
            input_state: Vec::new(),
            received_state: None,
            actor: "operator:test".into(),
        })
        .await;
    // The fake engine runs nothing, so every run here ends in an error: after the pull, or at it.
    submitted.unwrap_err().to_string()
}

#[tokio::test]
async fn only_the_trains_own_layer_is_fetched_checked_counted_and_reported() {
    let world = World::new();
    let (base_tar, own_tar) = (
        layer_tar("etc/base-release", &b"a base, large in life\n".repeat(1000)),
        layer_tar("train/analysis.py", &b"print('counts')\n".repeat(5000)),
    );
    let (base_gzip, own_gzip) = (gzip(&base_tar), gzip(&own_tar));
    let diff_ids = [Digest::of(&base_tar), Digest::of(&own_tar)];
    let train = world.train(&[base_gzip, own_gzip.clone()], &diff_ids).await;
    let engine = StreamingEngine {
        chains: pht_core::oci::chain_ids(&diff_ids[..1])
            .into_iter()
            .collect(),
        ..StreamingEngine::default()
    };
    let progress = Arc::new(RecordedProgress::default());
    let station = world.station(engine).with_pull_progress(progress.clone());

    let error = exec(&station, &train).await;
    assert!(error.contains("the fake engine runs nothing"), "{error}");
    assert_eq!(
        *station.engine().loads.lock().unwrap(),
        [vec![
            Streamed::Present,
            Streamed::Whole(own_gzip.len() as u64)
        ]]
    );
    let pulled = AuditLog::read_entries(station.audit().path(), None)
        .unwrap()
        .into_iter()
        .find(|entry| entry.event == "pulled")
        .expect("a pulled event");
    assert_eq!(pulled.details["layers_fetched"], 1);
    assert_eq!(pulled.details["layers_present"], 1);
    assert_eq!(pulled.details["bytes_fetched"], own_gzip.len() as u64);
    assert_eq!(
        *progress.events.lock().unwrap(),
        [
            format!("fetching 1 layers, {} bytes", own_gzip.len()),
            "unpacking".to_string(),
            "finished".to_string()
        ]
    );
    assert_eq!(*progress.n_bytes.lock().unwrap(), own_gzip.len() as u64);
}

#[tokio::test]
async fn a_layer_that_does_not_unpack_to_its_signed_diff_id_is_never_loaded() {
    let world = World::new();
    let own_tar = layer_tar("train/analysis.py", &b"print('counts')\n".repeat(50_000));
    let claimed_tar = layer_tar("train/analysis.py", b"print('something else')\n");
    let own_gzip = gzip(&own_tar);
    // The blob matches its digest; the config the researcher signed names another tar.
    let train = world
        .train(std::slice::from_ref(&own_gzip), &[Digest::of(&claimed_tar)])
        .await;
    let station = world.station(StreamingEngine::default());

    let error = exec(&station, &train).await;
    assert!(
        error.contains(&format!(
            "layer {} does not unpack to the layer the signed config names ({}, it unpacks to {})",
            Digest::of(&own_gzip),
            Digest::of(&claimed_tar),
            Digest::of(&own_tar)
        )),
        "{error}"
    );
    // Every byte of the blob went by, but its stream ended with the error, not cleanly.
    assert_eq!(
        *station.engine().loads.lock().unwrap(),
        [vec![Streamed::Failed(own_gzip.len() as u64)]]
    );
    assert!(!AuditLog::read_entries(station.audit().path(), None)
        .unwrap()
        .iter()
        .any(|entry| entry.event == "pulled"));
}
