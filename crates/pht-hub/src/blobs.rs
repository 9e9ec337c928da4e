//! Content-addressed blob storage: [`Blobs`], the small interface the hub needs (store bytes
//! under their SHA-256, read them back checked), and [`BlobStore`], its implementation on a
//! filesystem: `<root>/sha256/<hex>`, on a directory every replica mounts (NFS, CephFS, …).
//! An object store (S3, Azure Blob, GCS) would be another implementation of [`Blobs`]: a blob's
//! name is its digest, so a `put` is idempotent and needs no coordination between replicas.
//!
//! Owns durability of result bundles and state blobs: a blob is written to a temporary file,
//! fsynced, renamed into place and its directory fsynced, so that once `put` returns the blob
//! survives a crash. Knows nothing about jobs; the database records which blob belongs where.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use pht_core::Digest;

/// Why a blob could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob store I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("blob {digest} on disk does not match its name; the file at {path} is damaged")]
    Damaged { digest: Digest, path: PathBuf },
    #[error("blob store task failed: {0}")]
    Task(String),
}

/// A future a [`Blobs`] implementation returns.
pub type BlobFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, BlobError>> + Send + 'a>>;

/// Where the hub keeps result bundles and state blobs, named by their SHA-256.
pub trait Blobs: std::fmt::Debug + Send + Sync {
    /// Stores `bytes` durably (once `put` returns, a crash does not lose them) and returns their
    /// digest; storing the same bytes again is a no-op.
    fn put(&self, bytes: bytes::Bytes) -> BlobFuture<'_, Digest>;
    /// The blob's bytes, checked against `digest`, or `None` if it is not stored.
    fn get<'a>(&'a self, digest: &'a Digest) -> BlobFuture<'a, Option<bytes::Bytes>>;
    /// The bytes of every stored blob together, for `/metrics`. Read at each call, so it is as
    /// costly as the implementation makes it; a scrape interval of seconds is what it is for.
    fn stored_bytes(&self) -> BlobFuture<'_, u64>;
}

impl Blobs for BlobStore {
    fn put(&self, bytes: bytes::Bytes) -> BlobFuture<'_, Digest> {
        Box::pin(BlobStore::put(self, bytes))
    }

    fn get<'a>(&'a self, digest: &'a Digest) -> BlobFuture<'a, Option<bytes::Bytes>> {
        Box::pin(BlobStore::get(self, digest))
    }

    fn stored_bytes(&self) -> BlobFuture<'_, u64> {
        Box::pin(BlobStore::stored_bytes(self))
    }
}

/// A directory of blobs named by their SHA-256.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> BlobError + '_ {
    move |source| BlobError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl BlobStore {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> Result<BlobStore, BlobError> {
        for dir in [root.join("sha256"), root.join("tmp")] {
            std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        }
        Ok(BlobStore {
            root: root.to_path_buf(),
        })
    }

    fn path_of(&self, digest: &Digest) -> PathBuf {
        self.root.join("sha256").join(digest.hex())
    }

    /// Stores `bytes` durably and returns their digest; storing the same bytes again is a no-op.
    pub async fn put(&self, bytes: bytes::Bytes) -> Result<Digest, BlobError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.put_blocking(&bytes))
            .await
            .map_err(|error| BlobError::Task(error.to_string()))?
    }

    fn put_blocking(&self, bytes: &[u8]) -> Result<Digest, BlobError> {
        let digest = Digest::of(bytes);
        let final_path = self.path_of(&digest);
        if final_path.exists() {
            return Ok(digest);
        }
        let temp_path = self.root.join("tmp").join(format!(
            "{}.{}",
            digest.hex(),
            uuid::Uuid::new_v4().simple()
        ));
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&temp_path)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            Ok(())
        };
        if let Err(source) = write() {
            let _ = std::fs::remove_file(&temp_path);
            return Err(BlobError::Io {
                path: temp_path,
                source,
            });
        }
        std::fs::rename(&temp_path, &final_path).map_err(io_error(&final_path))?;
        let directory = self.root.join("sha256");
        std::fs::File::open(&directory)
            .and_then(|dir| dir.sync_all())
            .map_err(io_error(&directory))?;
        Ok(digest)
    }

    /// The blob's bytes, checked against its digest, or `None` if it is not stored.
    pub async fn get(&self, digest: &Digest) -> Result<Option<bytes::Bytes>, BlobError> {
        let path = self.path_of(digest);
        let digest = digest.clone();
        tokio::task::spawn_blocking(move || match std::fs::read(&path) {
            Ok(bytes) if digest.matches(&bytes) => Ok(Some(bytes::Bytes::from(bytes))),
            Ok(_) => Err(BlobError::Damaged { digest, path }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(BlobError::Io { path, source }),
        })
        .await
        .map_err(|error| BlobError::Task(error.to_string()))?
    }

    /// The sizes of the files under `<root>/sha256` added up, by walking the directory on a
    /// blocking thread at every call: one `stat` per blob, which a scrape every few seconds
    /// affords up to some hundred thousand blobs, and which stays right whichever replica
    /// wrote them (no count to keep in step). Files being written (`<root>/tmp`) are not
    /// blobs yet; a blob removed during the walk is skipped.
    pub async fn stored_bytes(&self) -> Result<u64, BlobError> {
        let directory = self.root.join("sha256");
        tokio::task::spawn_blocking(move || {
            let mut n_bytes = 0u64;
            for entry in std::fs::read_dir(&directory).map_err(io_error(&directory))? {
                let entry = entry.map_err(io_error(&directory))?;
                match entry.metadata() {
                    Ok(metadata) if metadata.is_file() => n_bytes += metadata.len(),
                    Ok(_) => {}
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => {
                        return Err(BlobError::Io {
                            path: entry.path(),
                            source,
                        })
                    }
                }
            }
            Ok(n_bytes)
        })
        .await
        .map_err(|error| BlobError::Task(error.to_string()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn blob_round_trips_and_is_named_by_its_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let digest = store
            .put(bytes::Bytes::from_static(b"bundle"))
            .await
            .unwrap();
        assert_eq!(digest, Digest::of(b"bundle"));
        assert!(dir.path().join("sha256").join(digest.hex()).is_file());
        assert_eq!(
            store
                .put(bytes::Bytes::from_static(b"bundle"))
                .await
                .unwrap(),
            digest
        );
        assert_eq!(store.get(&digest).await.unwrap().unwrap(), &b"bundle"[..]);
        assert_eq!(store.get(&Digest::of(b"other")).await.unwrap(), None);
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[tokio::test]
    async fn stored_bytes_add_up_blobs_and_not_files_being_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        assert_eq!(store.stored_bytes().await.unwrap(), 0);
        store
            .put(bytes::Bytes::from_static(b"bundle"))
            .await
            .unwrap();
        store
            .put(bytes::Bytes::from_static(b"state!!"))
            .await
            .unwrap();
        store
            .put(bytes::Bytes::from_static(b"bundle"))
            .await
            .unwrap();
        std::fs::write(dir.path().join("tmp").join("half-written"), b"0123456789").unwrap();
        assert_eq!(store.stored_bytes().await.unwrap(), 6 + 7);
    }

    #[tokio::test]
    async fn damaged_blob_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let digest = store
            .put(bytes::Bytes::from_static(b"bundle"))
            .await
            .unwrap();
        std::fs::write(dir.path().join("sha256").join(digest.hex()), b"tampered").unwrap();
        assert!(matches!(
            store.get(&digest).await,
            Err(BlobError::Damaged { .. })
        ));
    }
}
