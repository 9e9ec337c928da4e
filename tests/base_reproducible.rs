//! The bases rebuilt from their package lists give the same image: `pht base build` (built once
//! per machine, or reused) and `pht base build --rebuild` (a second debootstrap from the same
//! mirror) push the same manifest digest, config and layer. In a test binary of its own, as it
//! debootstraps each base once more (minutes).

use pht_e2e::bases::{ensure_base, layer_differences, rebuild_base, BaseKind};
use pht_e2e::{require_docker, Registry, Researcher};

fn rebuild_gives_the_same_digest(kind: BaseKind) {
    require_docker();
    let registry = Registry::start();
    let keys = tempfile::tempdir().unwrap();
    let signer = Researcher::generate(keys.path(), "bases-test");
    let first = ensure_base(kind, &registry, &signer.private_key);
    let second = rebuild_base(kind, &registry, &signer.private_key);
    assert!(!second.reused, "--rebuild must build");
    eprintln!(
        "{}: rebuilt in {} s; layer {} ({} bytes, {} compressed)",
        kind.name(),
        second.build_seconds,
        second.layer_diff_id,
        second.layer_bytes,
        second.compressed_bytes
    );
    if (&first.layer_diff_id, &first.image_id, &first.digest)
        != (&second.layer_diff_id, &second.image_id, &second.digest)
    {
        let differences = layer_differences(&first.image_id, &second.image_id, 40);
        panic!(
            "the {} base is not reproducible: first build {} (layer {}), rebuild {} (layer {}); \
             entries that differ (first / rebuild):\n  {}\n(if Debian updated a package \
             between the two builds, the cached base is stale: remove pht.local/bases/{} and \
             build again)",
            kind.name(),
            first.digest,
            first.layer_diff_id,
            second.digest,
            second.layer_diff_id,
            differences.join("\n  "),
            kind.name()
        );
    }
    // Built once per machine: after any build, the next one reuses it.
    let third = ensure_base(kind, &registry, &signer.private_key);
    assert!(third.reused, "a base in Docker must be reused");
    assert_eq!(
        (&third.image_id, &third.layer_digest, &third.digest),
        (&second.image_id, &second.layer_digest, &second.digest),
        "the {} base reused after a rebuild is not the rebuilt one (config, layer blob, manifest)",
        kind.name()
    );
}

#[test]
fn python_base_rebuilt_from_its_package_list_has_the_same_digest() {
    rebuild_gives_the_same_digest(BaseKind::Python);
}

#[test]
fn r_base_rebuilt_from_its_package_list_has_the_same_digest() {
    rebuild_gives_the_same_digest(BaseKind::R);
}
