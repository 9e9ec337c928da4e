//! One deterministic image layer from a directory: entries sorted by path, every time set to
//! [`SOURCE_DATE_EPOCH`](crate::SOURCE_DATE_EPOCH), owners kept as numbers, no user or group
//! names, hard links kept as links; gzip with no timestamp or file name. The same tree gives the
//! same bytes, so the same digests.
//!
//! Owns reading the tree (without following links) and packing it. Does not decide what the
//! tree holds (`rootfs.rs` normalises it first); device nodes, sockets and fifos are left out,
//! since a container gets its own `/dev`.

use std::collections::HashMap;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use pht_core::Digest;

use crate::SOURCE_DATE_EPOCH;

/// A packed layer: the tar as Docker computes its diff id, and the gzip as a registry stores it.
#[derive(Clone)]
pub struct Layer {
    pub tar: Vec<u8>,
    /// SHA-256 of `tar`: the layer's diff id in the image config.
    pub diff_id: Digest,
    pub gzip: Vec<u8>,
    /// SHA-256 of `gzip`: the layer's blob digest in the manifest.
    pub gzip_digest: Digest,
}

impl std::fmt::Debug for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layer")
            .field("tar_bytes", &self.tar.len())
            .field("diff_id", &self.diff_id)
            .field("gzip_bytes", &self.gzip.len())
            .field("gzip_digest", &self.gzip_digest)
            .finish()
    }
}

/// Every path under `root` (relative, `/`-separated), sorted, directories before their content.
fn sorted_paths(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let mut children: Vec<PathBuf> = std::fs::read_dir(root.join(&relative))?
            .map(|entry| entry.map(|entry| relative.join(entry.file_name())))
            .collect::<Result<_, _>>()?;
        children.sort();
        for child in children.iter().rev() {
            if std::fs::symlink_metadata(root.join(child))?.is_dir() {
                pending.push(child.clone());
            }
        }
        paths.extend(children);
    }
    // Byte order of the whole path, which puts a directory before everything in it.
    paths.sort_by(|a, b| {
        a.as_os_str()
            .as_encoded_bytes()
            .cmp(b.as_os_str().as_encoded_bytes())
    });
    Ok(paths)
}

fn header_for(metadata: &std::fs::Metadata, entry_type: tar::EntryType, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(entry_type);
    header.set_mode(metadata.permissions().mode() & 0o7777);
    header.set_uid(u64::from(metadata.uid()));
    header.set_gid(u64::from(metadata.gid()));
    header.set_mtime(SOURCE_DATE_EPOCH);
    header.set_size(size);
    header
}

/// Packs the tree under `root` into a layer.
pub fn pack_layer(root: &Path) -> std::io::Result<Layer> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    // The first path of each (device, inode) with more than one link; later ones link to it.
    let mut first_links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    for relative in sorted_paths(root)? {
        let path = root.join(&relative);
        let metadata = std::fs::symlink_metadata(&path)?;
        let file_type = metadata.file_type();
        if file_type.is_dir() {
            let mut header = header_for(&metadata, tar::EntryType::Directory, 0);
            builder.append_data(&mut header, &relative, std::io::empty())?;
        } else if file_type.is_symlink() {
            let target = std::fs::read_link(&path)?;
            let mut header = header_for(&metadata, tar::EntryType::Symlink, 0);
            builder.append_link(&mut header, &relative, &target)?;
        } else if file_type.is_file() {
            if metadata.nlink() > 1 {
                let key = (metadata.dev(), metadata.ino());
                if let Some(first) = first_links.get(&key) {
                    let mut header = header_for(&metadata, tar::EntryType::Link, 0);
                    builder.append_link(&mut header, &relative, first)?;
                    continue;
                }
                first_links.insert(key, relative.clone());
            }
            let mut header = header_for(&metadata, tar::EntryType::Regular, metadata.len());
            let file = std::fs::File::open(&path)?;
            builder.append_data(&mut header, &relative, file)?;
        }
        // Devices, sockets and fifos are left out: a container gets its own /dev.
    }
    let tar = builder.into_inner()?;
    let diff_id = Digest::of(&tar);
    let gzip = gzip_layer(&tar)?;
    let gzip_digest = Digest::of(&gzip);
    Ok(Layer {
        tar,
        diff_id,
        gzip,
        gzip_digest,
    })
}

/// The layer's gzip as a registry stores it: no timestamp or file name, level 6, so the same
/// tar always compresses to the same bytes (a base found in Docker is pushed as the same blob
/// its first build pushed).
pub fn gzip_layer(tar: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::new(6));
    encoder.write_all(tar)?;
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(root: &Path) {
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::write(root.join("usr/bin/tool"), b"#!/bin/sh\n").unwrap();
        std::fs::write(root.join("a.txt"), b"a").unwrap();
        std::os::unix::fs::symlink("usr/bin/tool", root.join("link")).unwrap();
        std::fs::hard_link(root.join("a.txt"), root.join("b.txt")).unwrap();
    }

    #[test]
    fn the_same_tree_made_twice_packs_to_the_same_digests() {
        let (first, second) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        tree(first.path());
        // Different times and creation order do not matter.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::create_dir_all(second.path().join("usr/bin")).unwrap();
        std::fs::write(second.path().join("a.txt"), b"a").unwrap();
        std::fs::write(second.path().join("usr/bin/tool"), b"#!/bin/sh\n").unwrap();
        std::os::unix::fs::symlink("usr/bin/tool", second.path().join("link")).unwrap();
        std::fs::hard_link(second.path().join("a.txt"), second.path().join("b.txt")).unwrap();
        let (one, two) = (
            pack_layer(first.path()).unwrap(),
            pack_layer(second.path()).unwrap(),
        );
        assert_eq!(one.diff_id, two.diff_id);
        assert_eq!(one.gzip_digest, two.gzip_digest);
    }

    #[test]
    fn entries_are_sorted_links_kept_and_times_fixed() {
        let root = tempfile::tempdir().unwrap();
        tree(root.path());
        let layer = pack_layer(root.path()).unwrap();
        let mut archive = tar::Archive::new(layer.tar.as_slice());
        let listed: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                assert_eq!(entry.header().mtime().unwrap(), SOURCE_DATE_EPOCH);
                format!(
                    "{} {:?}",
                    entry.path().unwrap().display(),
                    entry.header().entry_type()
                )
            })
            .collect();
        expect_test::expect![[r#"
            [
                "a.txt Regular",
                "b.txt Link",
                "link Symlink",
                "usr Directory",
                "usr/bin Directory",
                "usr/bin/tool Regular",
            ]
        "#]]
        .assert_debug_eq(&listed);
    }
}
