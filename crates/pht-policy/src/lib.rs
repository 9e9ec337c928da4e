//! Station policy: the operator's YAML file, parsed and validated, and its evaluation of a run
//! request into a decision (allow, needs approval, deny) with reasons.
//!
//! The crate does no I/O. It takes the policy text with the path it came from, and run requests
//! built by the station from what verification established; it returns values. It does not read
//! key files, verify signatures, pull images, run containers or keep state: the station does all
//! of that and asks this crate only "may this run, and with what?".
//!
//! `Err` ([`PolicyError`]) is only for a policy file that is not valid. A refusal to run is a
//! [`Decision::Deny`] listing every rule that failed, each with the expected and actual value.
//! A [`Grant`] (the effective sandbox limits) can only come from [`Policy::evaluate`], and never
//! exceeds the policy's ceilings.
//!
//! ```
//! use pht_policy::{Decision, Policy, ResourceRequest, RunRequest};
//!
//! let policy = Policy::from_yaml_str(
//!     r#"
//! version: 1
//! trusted_signers:
//!   - name: alice
//!     public_key: keys/alice.pub
//!     purposes: ["aggregate statistics"]
//!     datasets: [cohort]
//!     approval: automatic
//! registries:
//!   - registry: "127.0.0.1:5000"
//!     repositories: ["trains/*"]
//! resources:
//!   memory: 512MiB
//! "#,
//!     "/etc/pht/policy.yaml",
//! )?;
//! let request = RunRequest {
//!     train_signer: Some("alice".into()),
//!     job_signer: Some("alice".into()),
//!     registry: "127.0.0.1:5000".into(),
//!     repository: "trains/cohort-stats".into(),
//!     manifest_digest: format!("sha256:{}", "ab".repeat(32)).parse()?,
//!     purpose: "aggregate statistics".into(),
//!     datasets: vec!["cohort".into()],
//!     resources: ResourceRequest { memory_bytes: Some(256 << 20), ..ResourceRequest::default() },
//!     gpu: false,
//!     runtime: None,
//!     parameters_bytes: 120,
//!     base: None,
//! };
//! let Decision::Allow(grant) = policy.evaluate(&request) else { panic!("alice's run is allowed") };
//! assert_eq!(grant.memory_bytes(), 256 << 20);
//! assert_eq!(grant.pids(), 256);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod decision;
mod error;
mod evaluate;
mod glob;
mod policy;
mod raw;
mod request;
mod values;

pub use decision::{Decision, Grant, Reason, Rule};
pub use error::PolicyError;
pub use policy::{
    AllowedBase, BasePolicy, OutputPolicy, Policy, RegistryRule, ResourceCeilings,
    TrustedBaseSigner, TrustedSigner, DEFAULT_MAX_PARAMETERS_BYTES, DEFAULT_MAX_STATE_BYTES,
};
pub use request::{BaseRequest, ResourceRequest, RunRequest};
pub use values::{AllowList, Approval, Keep, Release, Remedy, Role, Runtime};

/// Re-exported so callers can name the embedded output-check settings without a direct dependency.
pub use pht_checks::CheckConfig;
