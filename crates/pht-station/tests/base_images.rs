//! In-process tests of the station's policy on base images, against a real registry (Debian's
//! `docker-registry`): a base is a one-layer image pushed and cosign-signed with a base
//! signer's key; a train built on it has the base's layer first, then its own. Trains that name
//! a base falsely, or a base the policy does not allow, are refused with the rule and the
//! digests; allowed ones stop at the operator's approval (the signer's `approval: manual`).
//!
//! The engine is a fake that records calls. No run here gets past approval, so none may reach
//! it: a refusal comes before any layer is pulled or any container is created.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use pht_core::manifest::BaseImage;
use pht_core::oci::{Descriptor, ImageManifest, OCI_CONFIG, OCI_LAYER_TAR, OCI_MANIFEST};
use pht_core::{cosign, Digest, ImageReference, KeyAlgorithm, SigningKey, TrainManifest};
use pht_docker::{RunOutcome, RunSpec};
use pht_e2e::Registry;
use pht_registry::{signatures, RegistryClient, RegistryOptions};
use pht_station::audit::{AuditEntry, AuditLog};
use pht_station::{
    Engine, EngineError, GivenParameters, RunRecord, RunStatus, Station, StationConfig, Submission,
};
use tempfile::TempDir;

/// An engine that records every call and runs nothing.
#[derive(Debug, Default)]
struct FakeEngine {
    calls: Mutex<Vec<String>>,
}

impl FakeEngine {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn refuse(&self, call: String) -> EngineError {
        self.calls.lock().unwrap().push(call);
        EngineError("the fake engine runs nothing".into())
    }
}

impl Engine for FakeEngine {
    async fn has_image(&self, image_id: &Digest) -> Result<bool, EngineError> {
        Err(self.refuse(format!("has_image {image_id}")))
    }

    async fn layer_chains(&self) -> Result<std::collections::HashSet<Digest>, EngineError> {
        Err(self.refuse("layer_chains".into()))
    }

    async fn load_image(
        &self,
        _config: &[u8],
        layers: &[Option<Bytes>],
    ) -> Result<Digest, EngineError> {
        Err(self.refuse(format!("load_image ({} layers)", layers.len())))
    }

    async fn run(&self, _spec: &RunSpec) -> Result<RunOutcome, EngineError> {
        Err(self.refuse("run".into()))
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

/// An image pushed to the test registry, pinned by digest.
#[derive(Debug, Clone)]
struct Pushed {
    reference: ImageReference,
}

impl Pushed {
    fn digest(&self) -> &Digest {
        self.reference.digest().unwrap()
    }
}

/// The registry, the keys, and the base every train here is built on.
struct World {
    registry: Registry,
    client: RegistryClient,
    dir: TempDir,
    researcher: SigningKey,
    /// The base's one layer.
    base_layer: Vec<u8>,
    /// A one-layer base signed by `bases-2026`.
    base: Pushed,
    /// Stations made so far, each in a directory of its own.
    n_stations: AtomicUsize,
}

/// Pushes an image of `layers` to `repository` (an OCI manifest, uncompressed layers); `train`
/// puts a train manifest in its label.
async fn push(
    client: &RegistryClient,
    registry: &str,
    repository: &str,
    layers: &[Vec<u8>],
    train: Option<&TrainManifest>,
) -> Pushed {
    let diff_ids: Vec<String> = layers.iter().map(|l| Digest::of(l).to_string()).collect();
    let mut config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"User": "65534:65534"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    if let Some(train) = train {
        config["config"]["Labels"] = serde_json::json!({
            pht_core::manifest::TRAIN_LABEL: train.to_label_json(),
        });
    }
    let config = serde_json::to_vec(&config).unwrap();
    let reference: ImageReference = format!("{registry}/{repository}").parse().unwrap();
    let descriptor = |media_type: &str, bytes: &[u8]| Descriptor {
        media_type: media_type.to_string(),
        digest: Digest::of(bytes),
        size: bytes.len() as u64,
        annotations: None,
    };
    for blob in layers.iter().chain(std::iter::once(&config)) {
        client
            .push_blob(&reference, Bytes::from(blob.clone()), None)
            .await
            .unwrap();
    }
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.to_string()),
        config: descriptor(OCI_CONFIG, &config),
        layers: layers
            .iter()
            .map(|l| descriptor(OCI_LAYER_TAR, l))
            .collect(),
        annotations: None,
        subject: None,
    };
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let digest = Digest::of(&bytes);
    client
        .put_manifest(&reference, &digest.to_string(), OCI_MANIFEST, bytes)
        .await
        .unwrap();
    Pushed {
        reference: reference.pinned(digest),
    }
}

async fn sign(client: &RegistryClient, image: &Pushed, key: &SigningKey) {
    let signed = cosign::sign_image(key, &image.reference.repository_path(), image.digest());
    signatures::attach_signature(client, &image.reference, image.digest(), signed)
        .await
        .unwrap();
}

impl World {
    async fn new() -> World {
        let registry = Registry::start();
        let client = RegistryClient::new(RegistryOptions::default());
        let dir = tempfile::tempdir().unwrap();
        let researcher = SigningKey::generate(KeyAlgorithm::Ed25519);
        let base_signer = SigningKey::generate(KeyAlgorithm::P256);
        std::fs::write(
            dir.path().join("researcher.pub"),
            researcher.public_key().to_pem(),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("bases-2026.pub"),
            base_signer.public_key().to_pem(),
        )
        .unwrap();
        let base_layer = layer_tar("etc/base-release", b"tiny base 1\n");
        let base = push(
            &client,
            registry.address(),
            "bases/tiny",
            std::slice::from_ref(&base_layer),
            None,
        )
        .await;
        sign(&client, &base, &base_signer).await;
        World {
            registry,
            client,
            dir,
            researcher,
            base_layer,
            base,
            n_stations: AtomicUsize::new(0),
        }
    }

    async fn push(&self, repository: &str, layers: &[Vec<u8>]) -> Pushed {
        push(
            &self.client,
            self.registry.address(),
            repository,
            layers,
            None,
        )
        .await
    }

    async fn sign(&self, image: &Pushed, key: &SigningKey) {
        sign(&self.client, image, key).await;
    }

    /// A train signed by the researcher, naming `base` as its base, whose image is `layers`.
    async fn train(&self, name: &str, base: Option<&Pushed>, layers: &[Vec<u8>]) -> Pushed {
        let mut manifest = TrainManifest::from_yaml(
            &format!(
                "name: {name}\nversion: 0.1.0\ndescription: counts\nauthors: []\npurpose: aggregate statistics\noutputs:\n  - {{path: counts.csv, kind: table}}\n"
            ),
            "train.yaml",
        )
        .unwrap();
        manifest.base = base.map(|base| BaseImage {
            repository: base.reference.repository_path(),
            digest: base.digest().clone(),
        });
        let train = push(
            &self.client,
            self.registry.address(),
            &format!("trains/{name}"),
            layers,
            Some(&manifest),
        )
        .await;
        self.sign(&train, &self.researcher).await;
        train
    }

    /// A train built on `base`: the base's layer first, then one of its own.
    async fn train_on_base(&self, name: &str, base: &Pushed) -> Pushed {
        let own_layer = layer_tar("train", format!("{name}\n").as_bytes());
        self.train(name, Some(base), &[self.base_layer.clone(), own_layer])
            .await
    }

    /// A station trusting the researcher's trains (each run awaiting an operator) and the
    /// base signer, with `base_images` (YAML lines, may be empty) in its policy.
    fn station(&self, base_images: &str) -> Station<FakeEngine> {
        let station_idx = self.n_stations.fetch_add(1, Ordering::Relaxed);
        let root = self.dir.path().join(format!("station-{station_idx}"));
        std::fs::create_dir_all(&root).unwrap();
        let address = self.registry.address();
        let policy = format!(
            r#"version: 1
trusted_signers:
  - name: researcher
    public_key: {keys}/researcher.pub
    purposes: ["aggregate statistics"]
    datasets: []
    approval: manual
registries:
  - registry: "{address}"
    repositories: ["trains/*"]
trusted_base_signers:
  - name: bases-2026
    public_key: {keys}/bases-2026.pub
{base_images}"#,
            keys = self.dir.path().display()
        );
        std::fs::write(root.join("policy.yaml"), policy).unwrap();
        let config = format!(
            "version: 1\nstation_id: base-images-station\nkey_dir: keys\nregistries:\n  - registry: \"{address}\"\npolicy: policy.yaml\nstate_dir: state\n"
        );
        let config = StationConfig::from_yaml(&config, &root.join("station.yaml")).unwrap();
        Station::open(config, FakeEngine::default()).unwrap()
    }
}

async fn exec(station: &Station<FakeEngine>, train: &Pushed) -> RunRecord {
    station
        .submit(Submission {
            reference: train.reference.clone(),
            parameters: GivenParameters::CommandLine(Vec::new()),
            job: None,
            recipient: None,
            input_state: Vec::new(),
            received_state: None,
            actor: "operator:test".into(),
        })
        .await
        .unwrap()
}

fn audit_of(station: &Station<FakeEngine>, run_id: &str) -> Vec<AuditEntry> {
    AuditLog::read_entries(station.audit().path(), Some(run_id)).unwrap()
}

/// The run waits for the operator with its base recorded, and the `verified` event names the
/// base (and its signer, when one verified it); nothing reached the engine.
fn assert_allowed(
    station: &Station<FakeEngine>,
    record: &RunRecord,
    base: &Pushed,
    signer: Option<&str>,
) {
    assert_eq!(
        record.status,
        RunStatus::AwaitingApproval,
        "{:?}",
        record.reasons
    );
    let recorded = record.base.as_ref().expect("the run record names the base");
    assert_eq!(recorded.reference, base.reference.to_string());
    assert_eq!(recorded.signer.as_deref(), signer);
    let decision = record.decision.as_ref().unwrap();
    assert_eq!(decision["outcome"], "needs_approval");
    let verified = audit_of(station, &record.run_id)
        .into_iter()
        .find(|entry| entry.event == "verified")
        .expect("a verified event");
    assert_eq!(
        verified.details["base"],
        serde_json::json!(base.reference.to_string())
    );
    assert_eq!(
        verified.details.get("base_signer"),
        signer.map(|s| serde_json::json!(s)).as_ref()
    );
    assert_eq!(station.engine().calls(), Vec::<String>::new());
}

/// The run is refused with exactly one reason, which `check` inspects; the refusal is audited,
/// the audit log verifies, and nothing reached the engine.
fn assert_refused(station: &Station<FakeEngine>, record: &RunRecord) -> String {
    assert_eq!(record.status, RunStatus::Refused, "{record:?}");
    assert_eq!(record.reasons.len(), 1, "{:?}", record.reasons);
    let refused: Vec<AuditEntry> = audit_of(station, &record.run_id)
        .into_iter()
        .filter(|entry| entry.event == "refused")
        .collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].reasons, record.reasons);
    assert_eq!(
        AuditLog::verify_file(station.audit().path())
            .unwrap()
            .problem,
        None
    );
    assert_eq!(station.engine().calls(), Vec::<String>::new());
    record.reasons[0].clone()
}

#[tokio::test]
async fn a_base_allowed_by_digest_is_recorded_and_waits_for_the_operator() {
    let world = World::new().await;
    // A base nobody signed, allowed by its digest alone.
    let unsigned_layer = layer_tar("etc/base-release", b"unsigned base\n");
    let unsigned_base = world
        .push("bases/unsigned", std::slice::from_ref(&unsigned_layer))
        .await;
    let own_layer = layer_tar("train", b"by digest\n");
    let train = world
        .train(
            "by-digest",
            Some(&unsigned_base),
            &[unsigned_layer, own_layer],
        )
        .await;
    let station = world.station(&format!(
        "base_images:\n  required: true\n  allowed:\n    - digest: {}\n",
        unsigned_base.digest()
    ));
    let record = exec(&station, &train).await;
    assert_allowed(&station, &record, &unsigned_base, None);
}

#[tokio::test]
async fn a_base_signed_by_an_allowed_base_signer_is_recorded_with_its_signer() {
    let world = World::new().await;
    let train = world.train_on_base("by-signer", &world.base).await;
    let station = world.station("base_images:\n  allowed:\n    - signer: bases-2026\n");
    let record = exec(&station, &train).await;
    assert_allowed(&station, &record, &world.base, Some("bases-2026"));
}

#[tokio::test]
async fn a_base_the_policy_does_not_allow_is_refused_with_base_allowed() {
    let world = World::new().await;
    // Signed, but by the researcher's key: a train signer's key never vouches for a base.
    let other_layer = layer_tar("etc/base-release", b"another base\n");
    let other_base = world
        .push("bases/other", std::slice::from_ref(&other_layer))
        .await;
    world.sign(&other_base, &world.researcher).await;
    let own_layer = layer_tar("train", b"on another base\n");
    let train = world
        .train("on-other", Some(&other_base), &[other_layer, own_layer])
        .await;
    let station = world.station(&format!(
        "base_images:\n  allowed:\n    - digest: {}\n    - signer: bases-2026\n",
        world.base.digest()
    ));
    let record = exec(&station, &train).await;
    let reason = assert_refused(&station, &record);
    assert_eq!(
        reason,
        format!(
            "base.allowed: the train is built on {}, which is not a base this policy allows (expected one of digest `{}`, a base signed by `bases-2026`, actual `{}`, signed by no trusted base signer)",
            other_base.reference,
            world.base.digest(),
            other_base.digest()
        )
    );
    let decided = audit_of(&station, &record.run_id)
        .into_iter()
        .find(|entry| entry.event == "policy_decided")
        .unwrap();
    assert_eq!(decided.decision.as_deref(), Some("deny"));
    assert_eq!(
        record.base.as_ref().unwrap().reference,
        other_base.reference.to_string()
    );
}

#[tokio::test]
async fn a_train_without_a_base_is_refused_where_a_base_is_required() {
    let world = World::new().await;
    let scratch = world
        .train("static", None, &[layer_tar("train", b"static binary\n")])
        .await;
    let permissive = world.station("base_images:\n  allowed:\n    - signer: bases-2026\n");
    let record = exec(&permissive, &scratch).await;
    assert_eq!(record.status, RunStatus::AwaitingApproval);
    assert_eq!(record.base, None);

    let strict =
        world.station("base_images:\n  required: true\n  allowed:\n    - signer: bases-2026\n");
    let record = exec(&strict, &scratch).await;
    let reason = assert_refused(&strict, &record);
    assert_eq!(
        reason,
        "base.allowed: the train is built on no base image; this policy requires one (base_images.required) (expected a base signed by `bases-2026`, actual no base)"
    );
}

#[tokio::test]
async fn a_train_whose_layers_do_not_begin_with_its_bases_is_refused_with_base_mismatch() {
    let world = World::new().await;
    // The train names the signed base but was not built on it: its first layer is another.
    let own_layer = layer_tar("train", b"impostor\n");
    let impostor_layer = layer_tar("etc/base-release", b"not the base\n");
    let impostor = world
        .train(
            "impostor",
            Some(&world.base),
            &[impostor_layer.clone(), own_layer.clone()],
        )
        .await;
    // Checked whatever the policy says about bases: the train's word is never taken.
    let station = world.station("");
    let record = exec(&station, &impostor).await;
    let reason = assert_refused(&station, &record);
    assert_eq!(
        reason,
        format!(
            "base.mismatch: the train's layers do not begin with the layers of {}, the base it names (expected first layers {}, actual {})",
            world.base.reference,
            Digest::of(&world.base_layer),
            Digest::of(&impostor_layer)
        )
    );
    assert_eq!(record.base, None, "an unverified base is not recorded");
    assert!(
        !audit_of(&station, &record.run_id)
            .iter()
            .any(|entry| entry.event == "policy_decided"),
        "refused before the policy is asked"
    );

    // The base's layer present but not first is no better.
    let reordered = world
        .train(
            "reordered",
            Some(&world.base),
            &[own_layer, world.base_layer.clone()],
        )
        .await;
    let record = exec(&station, &reordered).await;
    assert!(
        assert_refused(&station, &record).starts_with("base.mismatch:"),
        "{:?}",
        record.reasons
    );
}

#[tokio::test]
async fn a_base_in_a_registry_the_policy_does_not_name_is_refused_before_it_is_contacted() {
    let world = World::new().await;
    let elsewhere: ImageReference = format!("127.0.0.1:9/bases/tiny@{}", world.base.digest())
        .parse()
        .unwrap();
    let train = world
        .train(
            "elsewhere",
            Some(&Pushed {
                reference: elsewhere,
            }),
            &[world.base_layer.clone(), layer_tar("train", b"elsewhere\n")],
        )
        .await;
    let station = world.station("");
    let record = exec(&station, &train).await;
    let reason = assert_refused(&station, &record);
    assert!(
        reason.starts_with(&format!(
            "base.registry: the train's base 127.0.0.1:9/bases/tiny@{} is in registry 127.0.0.1:9, which this station's policy does not name",
            world.base.digest()
        )),
        "{reason}"
    );
}
