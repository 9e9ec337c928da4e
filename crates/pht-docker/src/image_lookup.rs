//! Finding local images by what their labels say, and reading a local image's layer diff ids:
//! what `pht base build` needs to reuse a base Docker already holds instead of building it again.
//!
//! Owns those two queries. Does not decide whether an image may be reused (the caller checks
//! that its config is the one it would build) and never changes what Docker holds.

use std::collections::HashMap;

use bollard::query_parameters::ListImagesOptionsBuilder;
use bollard::Docker;
use pht_core::Digest;

use crate::image::ImageError;

/// The ids of the local images whose labels hold every `(name, value)` of `labels`, in the
/// order Docker lists them (newest first).
pub async fn images_labelled(
    docker: &Docker,
    labels: &[(&str, &str)],
) -> Result<Vec<Digest>, ImageError> {
    let filters: HashMap<&str, Vec<String>> = HashMap::from([(
        "label",
        labels
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect(),
    )]);
    let options = ListImagesOptionsBuilder::default()
        .filters(&filters)
        .build();
    let listed = docker
        .list_images(Some(options))
        .await
        .map_err(|source| ImageError::Engine {
            operation: "listing images by label".into(),
            source,
        })?;
    Ok(listed
        .into_iter()
        // Docker filters already; checking again keeps a daemon that ignores a filter honest.
        .filter(|image| {
            labels
                .iter()
                .all(|(name, value)| image.labels.get(*name).map(String::as_str) == Some(*value))
        })
        .filter_map(|image| image.id.parse().ok())
        .collect())
}

/// The diff ids (uncompressed layer digests) of a local image, bottom layer first.
pub async fn image_diff_ids(docker: &Docker, image: &str) -> Result<Vec<Digest>, ImageError> {
    let inspected = docker
        .inspect_image(image)
        .await
        .map_err(|source| match source {
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            } => ImageError::NotFound {
                image: image.to_string(),
            },
            source => ImageError::Engine {
                operation: format!("inspecting {image}"),
                source,
            },
        })?;
    inspected
        .root_fs
        .and_then(|root_fs| root_fs.layers)
        .unwrap_or_default()
        .iter()
        .map(|layer| {
            layer.parse().map_err(|_| ImageError::Archive {
                image: image.to_string(),
                detail: format!("layer `{layer}` is not a sha256 digest"),
            })
        })
        .collect()
}

/// Tags the local image `image_id` as `repository:tag`. A tag keeps a base from being pruned
/// when a train built on it is removed (`docker rmi` removes untagged parents), and names it
/// in `docker images`.
pub async fn tag_image(
    docker: &Docker,
    image_id: &Digest,
    repository: &str,
    tag: &str,
) -> Result<(), ImageError> {
    let options = bollard::query_parameters::TagImageOptionsBuilder::default()
        .repo(repository)
        .tag(tag)
        .build();
    docker
        .tag_image(&image_id.to_string(), Some(options))
        .await
        .map_err(|source| ImageError::Engine {
            operation: format!("tagging {image_id} as {repository}:{tag}"),
            source,
        })
}
