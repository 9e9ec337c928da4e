//! The validated station policy, built from the raw file with every default filled in.
//!
//! Owns loading (`Policy::from_yaml_str`), the defaults, the content hash the station records in
//! provenance, and read access for the station. It does not read files: public key paths are
//! resolved against the policy file's directory and handed out as paths; the station reads and
//! parses the keys. Evaluation lives in `evaluate`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use pht_checks::CheckConfig;
use pht_core::Digest;

use crate::error::PolicyError;
use crate::glob;
use crate::raw::{
    DeclaredNames, RawAllowedBase, RawBaseImages, RawBaseSigner, RawPolicy, RawRegistry,
    RawResources, RawSigner,
};
use crate::values::{self, declared, AllowList, Approval, Keep, Release, Remedy, Role, Runtime};

/// A station operator's policy: who is trusted to sign what, which registries trains may come
/// from, the sandbox ceilings, and how outputs are released.
#[derive(Debug, Clone)]
pub struct Policy {
    version: u64,
    source_name: String,
    content_hash: String,
    trusted_signers: Vec<TrustedSigner>,
    registries: Vec<RegistryRule>,
    resources: ResourceCeilings,
    runtime: Runtime,
    gpu_allowed: bool,
    outputs: OutputPolicy,
    max_parameters_bytes: u64,
    failed_outputs: Keep,
    received_state: Keep,
    trusted_base_signers: Vec<TrustedBaseSigner>,
    base_images: Option<BasePolicy>,
}

/// A key the station trusts to sign base images (`trusted_base_signers`), and nothing else: a
/// base signer's key never verifies a train or a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedBaseSigner {
    name: String,
    public_key_path: PathBuf,
}

/// Which base images trains may be built on (`base_images:`). Without it any base is allowed,
/// and so is a train without one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasePolicy {
    required: bool,
    allowed: Option<Vec<AllowedBase>>,
}

/// One entry of `base_images.allowed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedBase {
    /// The base with this manifest digest.
    Digest(Digest),
    /// Any base whose signature a trusted base signer's key verified.
    Signer(String),
}

/// A signer whose public key the station trusts, and what its signatures are good for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedSigner {
    name: String,
    public_key_path: PathBuf,
    may_sign: Vec<Role>,
    purposes: AllowList,
    datasets: AllowList,
    approval: Approval,
}

/// A registry trains may come from, and the repositories in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRule {
    registry: String,
    repository_patterns: Vec<String>,
}

/// The most a train may get. A train asks for less or gets these; it never gets more.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResourceCeilings {
    pub cpus: f64,
    pub memory_bytes: u64,
    pub pids: u64,
    pub wall_clock: Duration,
    pub output_bytes: u64,
    pub tmp_bytes: u64,
    pub log_bytes: u64,
}

/// How outputs leave the station.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputPolicy {
    release: Release,
    checks: CheckConfig,
    max_state_bytes: u64,
    reviewers_required: u32,
    remedy: Remedy,
}

/// The most state a stop hands on unless the policy says otherwise: running counts and model
/// parameters fit; a dataset does not.
pub const DEFAULT_MAX_STATE_BYTES: u64 = 1 << 20;

impl Default for ResourceCeilings {
    /// Strict defaults for a hospital: enough for aggregate statistics over a cohort table.
    fn default() -> Self {
        ResourceCeilings {
            cpus: 1.0,
            memory_bytes: 1 << 30,
            pids: 256,
            wall_clock: Duration::from_secs(10 * 60),
            output_bytes: 100 << 20,
            tmp_bytes: 64 << 20,
            log_bytes: 1 << 20,
        }
    }
}

/// The default ceiling on a job's parameters for one station (`/input/params.json`).
pub const DEFAULT_MAX_PARAMETERS_BYTES: u64 = 64 << 10;

impl Policy {
    /// Parses and validates a policy. `source_name` is the path the text was read from: it names
    /// the file in errors, and relative `public_key` paths are resolved against its directory.
    pub fn from_yaml_str(text: &str, source_name: &str) -> Result<Policy, PolicyError> {
        // The signer names first, so a reference to one is refused where it is written.
        let declared = serde_yaml_ng::from_str::<DeclaredNames>(text)
            .ok()
            .map(DeclaredNames::into_declared);
        let raw: RawPolicy = declared::during(declared, || serde_yaml_ng::from_str(text))
            .map_err(|error| PolicyError::from_yaml(source_name, &error))?;
        check_base_signer_names(&raw, source_name)?;
        let policy_dir = Path::new(source_name).parent().unwrap_or(Path::new(""));
        Ok(Policy::from_raw(
            raw,
            source_name,
            policy_dir,
            content_hash(text),
        ))
    }

    fn from_raw(
        raw: RawPolicy,
        source_name: &str,
        policy_dir: &Path,
        content_hash: String,
    ) -> Policy {
        let RawPolicy {
            version,
            trusted_signers,
            registries,
            resources,
            runtime,
            gpu,
            outputs,
            max_parameters_size,
            retention,
            trusted_base_signers,
            base_images,
        } = raw;
        Policy {
            version: version.0,
            source_name: source_name.to_string(),
            content_hash,
            trusted_signers: trusted_signers
                .into_iter()
                .map(|signer| TrustedSigner::from_raw(signer, policy_dir))
                .collect(),
            registries: registries.into_iter().map(RegistryRule::from_raw).collect(),
            resources: ResourceCeilings::from_raw(resources),
            runtime: runtime.unwrap_or_default(),
            gpu_allowed: gpu.allowed,
            outputs: OutputPolicy {
                release: outputs.release,
                checks: outputs.checks,
                max_state_bytes: outputs
                    .max_state_size
                    .map_or(DEFAULT_MAX_STATE_BYTES, |size| size.0),
                reviewers_required: outputs.reviewers_required.map_or(1, |required| required.0),
                remedy: outputs.remedy,
            },
            max_parameters_bytes: max_parameters_size
                .map_or(DEFAULT_MAX_PARAMETERS_BYTES, |size| size.0),
            failed_outputs: retention.failed_outputs,
            received_state: retention.received_state,
            trusted_base_signers: trusted_base_signers
                .into_iter()
                .map(|signer| TrustedBaseSigner::from_raw(signer, policy_dir))
                .collect(),
            base_images: base_images.map(BasePolicy::from_raw),
        }
    }

    /// The policy format version (`version:` in the file); always 1 today.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The name the policy was loaded under (its path).
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// SHA-256 (lower-case hex) of the policy file's bytes exactly as given, comments included:
    /// it equals `sha256sum` of the file, so an auditor can tell which file decided a run.
    pub fn content_hash(&self) -> &str {
        &self.content_hash
    }

    /// Every trusted signer, in file order.
    pub fn trusted_signers(&self) -> &[TrustedSigner] {
        &self.trusted_signers
    }

    /// The trusted signer with this name.
    pub fn signer(&self, name: &str) -> Option<&TrustedSigner> {
        self.trusted_signers
            .iter()
            .find(|signer| signer.name == name)
    }

    /// The allowed registries, in file order.
    pub fn registries(&self) -> &[RegistryRule] {
        &self.registries
    }

    /// The sandbox ceilings.
    pub fn resources(&self) -> &ResourceCeilings {
        &self.resources
    }

    /// The runtime every train runs under.
    pub fn runtime(&self) -> Runtime {
        self.runtime
    }

    /// Whether a train may be given GPUs.
    pub fn gpu_allowed(&self) -> bool {
        self.gpu_allowed
    }

    /// How outputs are checked and released.
    pub fn outputs(&self) -> &OutputPolicy {
        &self.outputs
    }

    /// The largest parameters document a job may carry for this station.
    pub fn max_parameters_bytes(&self) -> u64 {
        self.max_parameters_bytes
    }

    /// What the station keeps of what a failed run wrote (`retention.failed_outputs`).
    pub fn failed_outputs(&self) -> Keep {
        self.failed_outputs
    }

    /// What the station keeps of the state a stop received, once its run has ended
    /// (`retention.received_state`).
    pub fn received_state(&self) -> Keep {
        self.received_state
    }

    /// Every trusted base signer, in file order.
    pub fn trusted_base_signers(&self) -> &[TrustedBaseSigner] {
        &self.trusted_base_signers
    }

    /// Which bases trains may be built on; `None` when the policy has no `base_images:` (any
    /// base, or none).
    pub fn base_images(&self) -> Option<&BasePolicy> {
        self.base_images.as_ref()
    }

    /// The rules that name `registry` (host names compare case-insensitively).
    pub(crate) fn registry_rules_for<'policy>(
        &'policy self,
        registry: &'policy str,
    ) -> impl Iterator<Item = &'policy RegistryRule> + 'policy {
        self.registries
            .iter()
            .filter(move |rule| rule.registry.eq_ignore_ascii_case(registry))
    }
}

/// The same rules the parse applies to signer names as it reads them (`values::BaseSignerName`,
/// `values::BaseSignerRef`), applied to the parsed file: they hold even when the lenient first
/// pass could not read the names, only without a line and column then.
fn check_base_signer_names(raw: &RawPolicy, source_name: &str) -> Result<(), PolicyError> {
    let refuse = |message: String| PolicyError::InvalidAnywhere {
        source_name: source_name.to_string(),
        message,
    };
    let base_signers: Vec<String> = raw
        .trusted_base_signers
        .iter()
        .map(|signer| signer.name.0.clone())
        .collect();
    for (signer_idx, name) in base_signers.iter().enumerate() {
        if raw
            .trusted_signers
            .iter()
            .any(|signer| signer.name.0 == *name)
        {
            return Err(refuse(format!(
                "trusted_base_signers[{signer_idx}].name: {}",
                values::train_signer_name_clash(name)
            )));
        }
    }
    let allowed = raw
        .base_images
        .iter()
        .flat_map(|base_images| base_images.allowed.iter().flatten());
    for (entry_idx, entry) in allowed.enumerate() {
        if let RawAllowedBase::Signer(signer) = entry {
            if !base_signers.contains(&signer.0) {
                return Err(refuse(format!(
                    "base_images.allowed[{entry_idx}].signer: {}",
                    values::unknown_base_signer(&signer.0, &base_signers)
                )));
            }
        }
    }
    Ok(())
}

fn content_hash(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

impl TrustedSigner {
    fn from_raw(raw: RawSigner, policy_dir: &Path) -> TrustedSigner {
        TrustedSigner {
            name: raw.name.0,
            // `join` leaves an absolute path as it is. No canonicalisation: that would be I/O.
            public_key_path: policy_dir.join(raw.public_key.0),
            may_sign: raw.may_sign,
            purposes: raw.purposes,
            datasets: raw.datasets,
            approval: raw.approval,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The PEM SubjectPublicKeyInfo file, resolved against the policy file's directory. It may not
    /// exist; the station reads it and refuses to start when it cannot.
    pub fn public_key_path(&self) -> &Path {
        &self.public_key_path
    }

    /// Whether this signer's key is trusted for `role`.
    pub fn may_sign(&self, role: Role) -> bool {
        self.may_sign.contains(&role)
    }

    /// The roles this signer's key is trusted for, sorted.
    pub fn roles(&self) -> &[Role] {
        &self.may_sign
    }

    /// The purposes this signer's trains may declare.
    pub fn purposes(&self) -> &AllowList {
        &self.purposes
    }

    /// The datasets this signer's trains may read.
    pub fn datasets(&self) -> &AllowList {
        &self.datasets
    }

    pub fn approval(&self) -> Approval {
        self.approval
    }
}

impl TrustedBaseSigner {
    fn from_raw(raw: RawBaseSigner, policy_dir: &Path) -> TrustedBaseSigner {
        TrustedBaseSigner {
            name: raw.name.0,
            public_key_path: policy_dir.join(raw.public_key.0),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The PEM SubjectPublicKeyInfo file, resolved against the policy file's directory; the
    /// station reads it.
    pub fn public_key_path(&self) -> &Path {
        &self.public_key_path
    }
}

impl BasePolicy {
    fn from_raw(raw: RawBaseImages) -> BasePolicy {
        BasePolicy {
            required: raw.required,
            allowed: raw.allowed.map(|entries| {
                entries
                    .into_iter()
                    .map(|entry| match entry {
                        RawAllowedBase::Digest(digest) => AllowedBase::Digest(digest.0),
                        RawAllowedBase::Signer(signer) => AllowedBase::Signer(signer.0),
                    })
                    .collect()
            }),
        }
    }

    /// Whether a train without a base (a static binary `FROM scratch`) is refused.
    pub fn required(&self) -> bool {
        self.required
    }

    /// The allowed bases, in file order; `None` allows any base.
    pub fn allowed(&self) -> Option<&[AllowedBase]> {
        self.allowed.as_deref()
    }

    /// Whether the base with `digest`, whose signature `signer`'s key verified (if any), is
    /// allowed.
    pub fn allows(&self, digest: &Digest, signer: Option<&str>) -> bool {
        let Some(allowed) = &self.allowed else {
            return true;
        };
        allowed.iter().any(|entry| match entry {
            AllowedBase::Digest(allowed_digest) => allowed_digest == digest,
            AllowedBase::Signer(allowed_signer) => signer == Some(allowed_signer.as_str()),
        })
    }
}

impl std::fmt::Display for AllowedBase {
    /// `` digest `sha256:…` `` or `` a base signed by `bases-2026` ``, as reasons show them.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AllowedBase::Digest(digest) => write!(formatter, "digest `{digest}`"),
            AllowedBase::Signer(signer) => write!(formatter, "a base signed by `{signer}`"),
        }
    }
}

impl RegistryRule {
    fn from_raw(raw: RawRegistry) -> RegistryRule {
        RegistryRule {
            registry: raw.registry.0,
            repository_patterns: raw
                .repositories
                .into_iter()
                .map(|pattern| pattern.0)
                .collect(),
        }
    }

    /// The registry host (lower case), e.g. `127.0.0.1:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// Patterns in which `*` stands for any run of characters, `/` included.
    pub fn repository_patterns(&self) -> &[String] {
        &self.repository_patterns
    }

    /// Whether `repository` matches one of the patterns.
    pub fn allows_repository(&self, repository: &str) -> bool {
        self.repository_patterns
            .iter()
            .any(|pattern| glob::matches(pattern, repository))
    }
}

impl ResourceCeilings {
    fn from_raw(raw: RawResources) -> ResourceCeilings {
        let defaults = ResourceCeilings::default();
        ResourceCeilings {
            cpus: raw.cpus.map_or(defaults.cpus, |cpus| cpus.0),
            memory_bytes: raw.memory.map_or(defaults.memory_bytes, |size| size.0),
            pids: raw.pids.map_or(defaults.pids, |pids| pids.0),
            wall_clock: raw
                .wall_clock
                .map_or(defaults.wall_clock, |wall_clock| wall_clock.0),
            output_bytes: raw.output_size.map_or(defaults.output_bytes, |size| size.0),
            tmp_bytes: raw.tmp_size.map_or(defaults.tmp_bytes, |size| size.0),
            log_bytes: raw.log_size.map_or(defaults.log_bytes, |size| size.0),
        }
    }
}

impl OutputPolicy {
    /// Whether a pass verdict leaves without an operator.
    pub fn release(&self) -> Release {
        self.release
    }

    /// The thresholds of the output checks.
    pub fn checks(&self) -> &CheckConfig {
        &self.checks
    }

    /// The most bytes of state a stop may hand to the next one (`outputs.max_state_size`).
    pub fn max_state_bytes(&self) -> u64 {
        self.max_state_bytes
    }

    /// How many distinct operators must each release a withheld result
    /// (`outputs.reviewers_required`, default 1). A block by any one of them stops it.
    pub fn reviewers_required(&self) -> u32 {
        self.reviewers_required
    }

    /// What happens to a count table failing only on small cells (`outputs.remedy`).
    pub fn remedy(&self) -> Remedy {
        self.remedy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "version: 1\ntrusted_signers: []\nregistries: []\n";

    #[test]
    fn absent_sections_get_the_strict_defaults() {
        let policy = Policy::from_yaml_str(MINIMAL, "policies/minimal.yaml").unwrap();
        assert_eq!(*policy.resources(), ResourceCeilings::default());
        assert_eq!(policy.runtime(), Runtime::Runc);
        assert!(!policy.gpu_allowed());
        assert_eq!(policy.outputs().release(), Release::Manual);
        assert_eq!(*policy.outputs().checks(), CheckConfig::default());
        assert_eq!(policy.max_parameters_bytes(), DEFAULT_MAX_PARAMETERS_BYTES);
        assert_eq!(policy.outputs().reviewers_required(), 1);
        assert_eq!(policy.outputs().remedy(), Remedy::None);
    }

    #[test]
    fn the_remedy_and_the_sdc_parameters_are_read_and_a_misspelling_is_named() {
        let text = format!(
            "{MINIMAL}outputs:\n  remedy: suppress-and-round\n  checks:\n    magnitude: {{nk_k: 0.8}}\n    rounding: {{base: 10}}\n"
        );
        let policy = Policy::from_yaml_str(&text, "sdc.yaml").unwrap();
        assert_eq!(policy.outputs().remedy(), Remedy::SuppressAndRound);
        assert_eq!(policy.outputs().checks().magnitude.nk_k, 0.8);
        assert_eq!(policy.outputs().checks().magnitude.nk_n, 2);
        assert_eq!(policy.outputs().checks().rounding.base, 10);
        let misspelt = format!("{MINIMAL}outputs:\n  remedy: round\n");
        let error = Policy::from_yaml_str(&misspelt, "misspelt.yaml").unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with("misspelt.yaml:") && message.contains("suppress-and-round"),
            "{message}"
        );
    }

    #[test]
    fn reviewers_required_is_read_and_kept_between_one_and_ten() {
        let two = format!("{MINIMAL}outputs:\n  reviewers_required: 2\n");
        let policy = Policy::from_yaml_str(&two, "two.yaml").unwrap();
        assert_eq!(policy.outputs().reviewers_required(), 2);
        let none = format!("{MINIMAL}outputs:\n  reviewers_required: 0\n");
        let error = Policy::from_yaml_str(&none, "none.yaml").unwrap_err();
        expect_test::expect![
            "none.yaml:5:3: outputs: 0 reviewers: a release needs from 1 to 10 distinct reviewers"
        ]
        .assert_eq(&error.to_string());
    }

    #[test]
    fn the_content_hash_is_sha256_of_the_exact_bytes() {
        let policy = Policy::from_yaml_str(MINIMAL, "minimal.yaml").unwrap();
        assert_eq!(
            policy.content_hash(),
            hex::encode(Sha256::digest(MINIMAL.as_bytes()))
        );
        // A comment is part of the file an auditor holds, so it changes the hash.
        let commented = format!("# reviewed by the data steward\n{MINIMAL}");
        let commented_policy = Policy::from_yaml_str(&commented, "minimal.yaml").unwrap();
        assert_ne!(policy.content_hash(), commented_policy.content_hash());
    }

    /// The first pass only places the refusal; without it the rules still hold.
    #[test]
    fn base_signer_names_are_checked_even_without_the_first_pass() {
        let text = "version: 1\nregistries: []\ntrusted_signers:\n  - name: alice\n    public_key: alice.pub\n    purposes: ['*']\n    datasets: []\ntrusted_base_signers:\n  - name: alice\n    public_key: bases.pub\nbase_images:\n  allowed:\n    - signer: bases-2026\n";
        let raw: RawPolicy = declared::during(None, || serde_yaml_ng::from_str(text)).unwrap();
        expect_test::expect!["station.yaml: trusted_base_signers[0].name: `alice` is also the name of a trusted signer: a base signer signs base images, never trains or jobs; give it a name of its own"]
            .assert_eq(&check_base_signer_names(&raw, "station.yaml").unwrap_err().to_string());
        let text = text.replace(
            "  - name: alice\n    public_key: bases.pub",
            "  - name: bases-2025\n    public_key: bases.pub",
        );
        let raw: RawPolicy = declared::during(None, || serde_yaml_ng::from_str(&text)).unwrap();
        expect_test::expect!["station.yaml: base_images.allowed[0].signer: base signer `bases-2026` is not among `trusted_base_signers` (`bases-2025`)"]
            .assert_eq(&check_base_signer_names(&raw, "station.yaml").unwrap_err().to_string());
    }

    #[test]
    fn key_paths_resolve_against_the_policy_directory_without_touching_the_disk() {
        let text = "version: 1\nregistries: []\ntrusted_signers:\n  - name: alice\n    public_key: ../examples/keys/alice.pub\n    purposes: ['*']\n    datasets: []\n  - name: bob\n    public_key: /etc/pht/keys/bob.pub\n    purposes: ['*']\n    datasets: []\n";
        let policy = Policy::from_yaml_str(text, "/srv/station/policies/station.yaml").unwrap();
        assert_eq!(
            policy.signer("alice").unwrap().public_key_path(),
            Path::new("/srv/station/policies/../examples/keys/alice.pub")
        );
        assert_eq!(
            policy.signer("bob").unwrap().public_key_path(),
            Path::new("/etc/pht/keys/bob.pub")
        );
        let bare = Policy::from_yaml_str(text, "station.yaml").unwrap();
        assert_eq!(
            bare.signer("alice").unwrap().public_key_path(),
            Path::new("../examples/keys/alice.pub")
        );
    }
}
