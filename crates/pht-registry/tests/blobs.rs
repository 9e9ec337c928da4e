//! Blob traffic against a real registry (Debian's `docker-registry`, CNCF distribution 2.x):
//! existence checks before upload, cross-repository mounts and their fallback to an upload
//! when the registry answers 202, and streamed fetches checked against digest and size.
//!
//! Each test starts its own registry on a free loopback port, in a temporary directory.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt as _;
use pht_core::{Digest, ImageReference};
use pht_registry::{BlobCopy, Mount, RegistryClient, RegistryError, RegistryOptions};

/// A `docker-registry` process serving from a temporary directory; killed when dropped.
struct Registry {
    child: Child,
    address: String,
    _storage: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        let storage = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {address}\n",
            storage.path().join("data").display()
        );
        let config_path = storage.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start `docker-registry`: install it with `apt-get install docker-registry` (make test does)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&address).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry {
            child,
            address,
            _storage: storage,
        }
    }

    fn reference(&self, repository: &str) -> ImageReference {
        format!("{}/{repository}:1", self.address).parse().unwrap()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> RegistryClient {
    RegistryClient::new(RegistryOptions::default())
}

fn blob(seed: &str, n_bytes: usize) -> Bytes {
    Bytes::from(seed.bytes().cycle().take(n_bytes).collect::<Vec<u8>>())
}

#[tokio::test]
async fn a_blob_the_repository_has_is_not_uploaded_again() {
    let registry = Registry::start();
    let (client, train) = (client(), registry.reference("trains/a"));
    let layer = blob("layer", 100_000);
    assert!(client.push_blob(&train, layer.clone(), None).await.unwrap());
    let progress = std::sync::Mutex::new(Vec::new());
    let report = |n: u64| progress.lock().unwrap().push(n);
    assert!(!client
        .push_blob(&train, layer, Some(&report))
        .await
        .unwrap());
    // The progress bar still reaches its end for a layer that was already there.
    assert_eq!(*progress.lock().unwrap(), [100_000]);
}

#[tokio::test]
async fn a_base_layer_is_mounted_from_the_base_repository_without_sending_it() {
    let registry = Registry::start();
    let client = client();
    let (base, train) = (
        registry.reference("bases/python"),
        registry.reference("trains/t"),
    );
    let layer = blob("base layer", 300_000);
    let digest = Digest::of(&layer);
    client.push_blob(&base, layer.clone(), None).await.unwrap();
    assert!(!client.blob_exists(&train, &digest).await.unwrap());

    let mount = client
        .mount_blob(&train, &digest, base.repository())
        .await
        .unwrap();
    assert!(matches!(mount, Mount::Mounted), "{mount:?}");
    assert!(client.blob_exists(&train, &digest).await.unwrap());
    let fetched = client
        .get_blob(&train, &digest, 1 << 20, None)
        .await
        .unwrap();
    assert_eq!(fetched, layer);
}

#[tokio::test]
async fn a_mount_the_registry_answers_with_202_falls_back_to_an_upload_into_that_session() {
    let registry = Registry::start();
    let client = client();
    let train = registry.reference("trains/t");
    let layer = blob("not in the base", 50_000);
    let digest = Digest::of(&layer);
    // The repository named as the source lacks the blob: the registry opens an upload.
    let mount = client
        .mount_blob(&train, &digest, "bases/empty")
        .await
        .unwrap();
    let Mount::NotMounted(session) = mount else {
        panic!("mounted a blob that is nowhere: {mount:?}");
    };
    client
        .upload_blob(&train, session, layer.clone(), None)
        .await
        .unwrap();
    assert!(client.blob_exists(&train, &digest).await.unwrap());
}

#[tokio::test]
async fn copy_blob_mounts_within_a_registry_and_uploads_across_registries() {
    let (first, second) = (Registry::start(), Registry::start());
    let client = client();
    let base = first.reference("bases/r");
    let layer = blob("r base", 200_000);
    let digest = Digest::of(&layer);
    client.push_blob(&base, layer.clone(), None).await.unwrap();

    let same_registry = first.reference("trains/glm");
    let copied = client
        .copy_blob(&same_registry, &base, &digest, 1 << 20, None)
        .await
        .unwrap();
    assert_eq!(copied, BlobCopy::Mounted);
    let again = client
        .copy_blob(&same_registry, &base, &digest, 1 << 20, None)
        .await
        .unwrap();
    assert_eq!(again, BlobCopy::Present);

    let other_registry = second.reference("trains/glm");
    let copied = client
        .copy_blob(&other_registry, &base, &digest, 1 << 20, None)
        .await
        .unwrap();
    assert_eq!(copied, BlobCopy::Uploaded(200_000));
    assert_eq!(
        client
            .get_blob(&other_registry, &digest, 1 << 20, None)
            .await
            .unwrap(),
        layer
    );
}

async fn collect(
    client: &RegistryClient,
    reference: &ImageReference,
    digest: &Digest,
    size: u64,
) -> Result<Vec<u8>, RegistryError> {
    let mut stream = client.get_blob_stream(reference, digest, size).await?;
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk?);
    }
    Ok(bytes)
}

#[tokio::test]
async fn a_streamed_blob_is_the_blob_and_a_wrong_size_ends_the_stream_with_an_error() {
    let registry = Registry::start();
    let (client, train) = (client(), registry.reference("trains/big"));
    let layer = blob("a large layer", 3 << 20);
    let digest = Digest::of(&layer);
    client.push_blob(&train, layer.clone(), None).await.unwrap();

    let streamed = collect(&client, &train, &digest, layer.len() as u64)
        .await
        .unwrap();
    assert_eq!(streamed, layer);

    let too_small = collect(&client, &train, &digest, layer.len() as u64 - 1)
        .await
        .unwrap_err();
    assert!(
        matches!(too_small, RegistryError::TooLarge { .. }),
        "{too_small}"
    );
    let too_large = collect(&client, &train, &digest, layer.len() as u64 + 1)
        .await
        .unwrap_err();
    assert!(
        too_large
            .to_string()
            .contains("bytes where its descriptor gives"),
        "{too_large}"
    );
}
