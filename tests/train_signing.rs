//! End to end, with real Docker and a real registry: build the example train, push it, sign it
//! with Ed25519 and P-256 keys, and verify it — and see verification refuse, with its reason,
//! a wrong key, a moved tag, a copied signature and a deleted signature. Also the cosign
//! interoperability vectors through `pht verify-blob`.

use std::path::Path;

use pht_e2e::{pht, require_docker, shared_dir, workspace_root, Registry};

struct Keys {
    dir: tempfile::TempDir,
}

impl Keys {
    /// Generates `ed` (Ed25519, passphrase-encrypted), `p2` (P-256, plain) and `other`.
    fn generate() -> Keys {
        let dir = tempfile::tempdir().unwrap();
        let generate = |name: &str, algorithm: &str, passphrase: &str| {
            let finished = pht_with_password(
                dir.path(),
                &[
                    "--json",
                    "key",
                    "generate",
                    "--name",
                    name,
                    "--algorithm",
                    algorithm,
                ],
                passphrase,
            )
            .success();
            assert_eq!(finished.json()["encrypted"], !passphrase.is_empty());
        };
        generate("ed", "ed25519", "s3cret");
        generate("p2", "p256", "");
        generate("other", "ed25519", "");
        Keys { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.path().join(file).display().to_string()
    }
}

fn pht_with_password(dir: &Path, args: &[&str], passphrase: &str) -> pht_e2e::Finished {
    let mut command = std::process::Command::new(pht_e2e::binary("pht"));
    command
        .current_dir(dir)
        .args(args)
        .env("PHT_KEY_PASSWORD", passphrase);
    pht_e2e::run(&mut command)
}

/// Builds and pushes the example train; returns the pinned reference `REPO@sha256:…`.
fn build_and_push_example(registry: &Registry, tag: &str) -> (String, String) {
    let root = workspace_root();
    let reference = format!("{}/trains/cohort-stats:{tag}", registry.address());
    let built = pht(
        &root,
        &[
            "--json",
            "train",
            "build",
            "trains/cohort-stats",
            "--tag",
            &reference,
        ],
    )
    .success();
    assert_eq!(built.json()["manifest"]["name"], "cohort-stats");
    let pushed = pht(&root, &["--json", "train", "push", &reference])
        .success()
        .json();
    let pinned = pushed["pinned"].as_str().unwrap().to_string();
    assert!(
        pinned.starts_with(&format!(
            "{}/trains/cohort-stats@sha256:",
            registry.address()
        )),
        "{pinned}"
    );
    (reference, pinned)
}

#[test]
fn example_train_signed_with_both_key_types_verifies_only_under_its_keys() {
    require_docker();
    let registry = Registry::start();
    let keys = Keys::generate();
    let (reference, pinned) = build_and_push_example(&registry, "0.1.0");
    let root = workspace_root();

    // The encrypted Ed25519 key needs its passphrase; the P-256 key has none.
    pht_with_password(
        &root,
        &["train", "sign", &reference, "--key", &keys.path("ed.key")],
        "wrong",
    )
    .code(3);
    pht_with_password(
        &root,
        &["train", "sign", &reference, "--key", &keys.path("ed.key")],
        "s3cret",
    )
    .success();
    pht(
        &root,
        &["train", "sign", &pinned, "--key", &keys.path("p2.key")],
    )
    .success();

    for public_key in ["ed.pub", "p2.pub"] {
        let verified = pht(
            &root,
            &[
                "--json",
                "train",
                "verify",
                &reference,
                "--key",
                &keys.path(public_key),
            ],
        )
        .success();
        assert_eq!(verified.json()["verified"], true);
        assert_eq!(verified.json()["signatures_found"], 2);
    }

    let refused = pht(
        &root,
        &[
            "train",
            "verify",
            &reference,
            "--key",
            &keys.path("other.pub"),
        ],
    )
    .code(1);
    assert!(
        refused.stderr.contains("signed by another key"),
        "{}",
        refused.stderr
    );

    let inspected = pht(
        &root,
        &[
            "--json",
            "train",
            "inspect",
            &pinned,
            "--key",
            &keys.path("ed.pub"),
            "--key",
            &keys.path("p2.pub"),
        ],
    )
    .success()
    .json();
    assert_eq!(inspected["train"]["name"], "cohort-stats");
    assert_eq!(
        inspected["labels"]["org.opencontainers.image.title"],
        "cohort-stats"
    );
    let signers: Vec<String> = inspected["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["verified_by"].as_str().unwrap().to_string())
        .collect();
    assert!(
        signers[0].ends_with("ed.pub") && signers[1].ends_with("p2.pub"),
        "{signers:?}"
    );
}

#[test]
fn moved_tag_and_copied_signature_are_refused() {
    require_docker();
    let registry = Registry::start();
    let keys = Keys::generate();
    let (reference, signed_pinned) = build_and_push_example(&registry, "1.0.0");
    let root = workspace_root();
    pht(
        &root,
        &["train", "sign", &reference, "--key", &keys.path("p2.key")],
    )
    .success();
    pht(
        &root,
        &["train", "verify", &reference, "--key", &keys.path("p2.pub")],
    )
    .success();

    // Move the tag to a different image: a freshly scaffolded train pushed to the same tag.
    let scratch = tempfile::tempdir().unwrap();
    pht(scratch.path(), &["train", "init", "impostor"]).success();
    pht(
        scratch.path(),
        &["train", "build", "impostor", "--tag", &reference],
    )
    .success();
    let moved = pht(&root, &["--json", "train", "push", &reference])
        .success()
        .json();
    let moved_digest = moved["digest"].as_str().unwrap().to_string();
    assert_ne!(moved["pinned"].as_str().unwrap(), signed_pinned);
    let refused = pht(
        &root,
        &["train", "verify", &reference, "--key", &keys.path("p2.pub")],
    )
    .code(1);
    assert!(
        refused.stderr.contains("no signature"),
        "{}",
        refused.stderr
    );

    // An attacker who also copies the old signature next to the new image is refused too: the
    // signed payload names the old digest.
    let signed_digest = signed_pinned.split('@').nth(1).unwrap();
    let client = pht_registry::RegistryClient::new(Default::default());
    let repository: pht_core::ImageReference = reference.parse().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let old_tag = signed_digest
            .parse::<pht_core::Digest>()
            .unwrap()
            .cosign_signature_tag();
        let new_tag = moved_digest
            .parse::<pht_core::Digest>()
            .unwrap()
            .cosign_signature_tag();
        let signature = client.get_manifest(&repository, &old_tag).await.unwrap();
        client
            .put_manifest(
                &repository,
                &new_tag,
                &signature.media_type,
                signature.bytes,
            )
            .await
            .unwrap();
    });
    let refused = pht(
        &root,
        &["train", "verify", &reference, "--key", &keys.path("p2.pub")],
    )
    .code(1);
    assert!(
        refused.stderr.contains("belongs to another image"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains(signed_digest), "{}", refused.stderr);

    // The original image, by digest, still verifies.
    pht(
        &root,
        &[
            "train",
            "verify",
            &signed_pinned,
            "--key",
            &keys.path("p2.pub"),
        ],
    )
    .success();
}

#[test]
fn deleted_signature_tag_is_reported_as_no_signature() {
    require_docker();
    let registry = Registry::start();
    let keys = Keys::generate();
    let (_, pinned) = build_and_push_example(&registry, "2.0.0");
    let root = workspace_root();
    let signed = pht(
        &root,
        &[
            "--json",
            "train",
            "sign",
            &pinned,
            "--key",
            &keys.path("p2.key"),
        ],
    )
    .success()
    .json();
    pht(
        &root,
        &["train", "verify", &pinned, "--key", &keys.path("p2.pub")],
    )
    .success();

    let client = pht_registry::RegistryClient::new(Default::default());
    let repository: pht_core::ImageReference = pinned.parse().unwrap();
    let signature_manifest: pht_core::Digest = signed["signature_manifest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(client.delete_manifest(&repository, &signature_manifest))
        .unwrap();

    let refused = pht(
        &root,
        &["train", "verify", &pinned, "--key", &keys.path("p2.pub")],
    )
    .code(1);
    assert!(
        refused.stderr.contains("no signature"),
        "{}",
        refused.stderr
    );
}

#[test]
fn cosign_interop_vector_verifies_with_verify_blob() {
    let vectors = shared_dir().join("interop/cosign");
    let path = |name: &str| vectors.join(name).display().to_string();
    let root = workspace_root();
    pht(
        &root,
        &[
            "verify-blob",
            "--key",
            &path("cosign.pub"),
            "--signature",
            &path("payload.json.sig"),
            &path("payload.json"),
        ],
    )
    .success();

    let refused = pht(
        &root,
        &[
            "verify-blob",
            "--key",
            &path("other.pub"),
            "--signature",
            &path("payload.json.sig"),
            &path("payload.json"),
        ],
    )
    .code(1);
    assert!(
        refused.stderr.contains("does not verify"),
        "{}",
        refused.stderr
    );

    let scratch = tempfile::tempdir().unwrap();
    let changed = scratch.path().join("payload.json");
    let mut payload = std::fs::read(vectors.join("payload.json")).unwrap();
    payload[10] ^= 0x20;
    std::fs::write(&changed, payload).unwrap();
    pht(
        &root,
        &[
            "verify-blob",
            "--key",
            &path("cosign.pub"),
            "--signature",
            &path("payload.json.sig"),
            &changed.display().to_string(),
        ],
    )
    .code(1);
}

#[test]
fn sign_blob_output_verifies_with_verify_blob_for_both_key_types() {
    let keys = Keys::generate();
    let root = workspace_root();
    let file = keys.dir.path().join("results.csv");
    std::fs::write(&file, "group,n\nF,12\n").unwrap();
    let file = file.display().to_string();
    for (private_key, public_key, passphrase) in
        [("ed.key", "ed.pub", "s3cret"), ("p2.key", "p2.pub", "")]
    {
        let signature = keys.path(&format!("{private_key}.sig"));
        pht_with_password(
            &root,
            &[
                "sign-blob",
                "--key",
                &keys.path(private_key),
                "--output-signature",
                &signature,
                &file,
            ],
            passphrase,
        )
        .success();
        pht(
            &root,
            &[
                "verify-blob",
                "--key",
                &keys.path(public_key),
                "--signature",
                &signature,
                &file,
            ],
        )
        .success();
        pht(
            &root,
            &[
                "verify-blob",
                "--key",
                &keys.path("other.pub"),
                "--signature",
                &signature,
                &file,
            ],
        )
        .code(1);
    }
}
