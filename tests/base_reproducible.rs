//! The bases rebuilt from their package lists give the same image: `pht base build` (built once
//! per machine, or reused) and `pht base build --rebuild` (a second debootstrap from the same
//! mirror) push the same manifest digest, config and layer. In a test binary of its own, as it
//! debootstraps each base once more (minutes).

use pht_e2e::bases::{ensure_base, rebuild_base, BaseKind};
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
    // Built once per machine: after any build, the next one reuses it.
    let third = ensure_base(kind, &registry, &signer.private_key);
    assert!(third.reused, "a base in Docker must be reused");
    assert_eq!(third.digest, second.digest);
    assert_eq!(
        (&first.layer_diff_id, &first.image_id, &first.digest),
        (&second.layer_diff_id, &second.image_id, &second.digest),
        "the {} base is not reproducible (if Debian updated a package between the two builds, the cached base is stale: remove pht.local/bases/{} and build again)",
        kind.name(),
        kind.name()
    );
}

#[test]
fn python_base_rebuilt_from_its_package_list_has_the_same_digest() {
    rebuild_gives_the_same_digest(BaseKind::Python);
}

// The R base is not yet shown reproducible: in the full suite of 2026-12-02 (04:49–05:03 UTC,
// beside the other end-to-end tests) its rebuild pushed the first build's digest, but the reuse
// after it pushed another manifest digest (sha256:e0a785a6… against sha256:bfbd9ce9…). Until
// the cause is found the R base is checked by the end-to-end R train tests only; see
// ARCHITECTURE.md ("Bases are reproducible") and issue 12's note.
