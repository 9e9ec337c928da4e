//! The policy file as written: serde types that mirror the YAML one to one.
//!
//! Unknown fields are refused everywhere, and every leaf value is validated while it is read (see
//! `values`), so whatever reaches the validated `Policy` is already known to be good and every
//! refusal carries a line and column. Defaults are not filled in here: an absent field stays
//! `None`, and `policy` decides what it means. Nothing here is public.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use pht_checks::CheckConfig;

use crate::values::{
    self, AllowList, Approval, ByteSize, Cpus, Keep, KeyPath, Pids, PolicyVersion, RegistryHost,
    Release, RepositoryPattern, Role, Runtime, SignerName, WallClock,
};

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a station policy: a mapping with `version`, `trusted_signers` and `registries`"
)]
pub(crate) struct RawPolicy {
    pub version: PolicyVersion,
    #[serde(deserialize_with = "unique_signers")]
    pub trusted_signers: Vec<RawSigner>,
    pub registries: Vec<RawRegistry>,
    #[serde(default)]
    pub resources: RawResources,
    #[serde(default)]
    pub runtime: Option<Runtime>,
    #[serde(default)]
    pub gpu: RawGpu,
    #[serde(default)]
    pub outputs: RawOutputs,
    #[serde(default)]
    pub max_parameters_size: Option<ByteSize>,
    #[serde(default)]
    pub retention: RawRetention,
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "retention: a mapping with `failed_outputs` and `received_state`"
)]
pub(crate) struct RawRetention {
    /// What happens to what a failed run wrote to `/output`.
    #[serde(default)]
    pub failed_outputs: Keep,
    /// What happens to the state a stop received, once its run has ended.
    #[serde(default)]
    pub received_state: Keep,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a trusted signer: a mapping with `name`, `public_key`, `purposes` and `datasets`"
)]
pub(crate) struct RawSigner {
    pub name: SignerName,
    pub public_key: KeyPath,
    #[serde(default = "values::both_roles", deserialize_with = "values::may_sign")]
    pub may_sign: Vec<Role>,
    #[serde(deserialize_with = "values::purposes")]
    pub purposes: AllowList,
    #[serde(deserialize_with = "values::datasets")]
    pub datasets: AllowList,
    #[serde(default)]
    pub approval: Approval,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an allowed registry: a mapping with `registry` and `repositories`"
)]
pub(crate) struct RawRegistry {
    pub registry: RegistryHost,
    #[serde(deserialize_with = "values::repository_patterns")]
    pub repositories: Vec<RepositoryPattern>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "resource ceilings: a mapping with any of `cpus`, `memory`, `pids`, `wall_clock`, `output_size`, `tmp_size`, `log_size`"
)]
pub(crate) struct RawResources {
    pub cpus: Option<Cpus>,
    pub memory: Option<ByteSize>,
    pub pids: Option<Pids>,
    pub wall_clock: Option<WallClock>,
    pub output_size: Option<ByteSize>,
    pub tmp_size: Option<ByteSize>,
    pub log_size: Option<ByteSize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping such as `{ allowed: false }`"
)]
pub(crate) struct RawGpu {
    #[serde(default)]
    pub allowed: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `release` and `checks`"
)]
pub(crate) struct RawOutputs {
    #[serde(default)]
    pub release: Release,
    /// The most bytes of state a stop may hand to the next one.
    #[serde(default)]
    pub max_state_size: Option<ByteSize>,
    #[serde(default)]
    pub checks: CheckConfig,
}

/// Reads `trusted_signers:` and refuses a name listed twice: the audit log and the approval
/// rules identify signers by name, so two entries with one name would be ambiguous.
fn unique_signers<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<RawSigner>, D::Error> {
    struct SignersVisitor;

    impl<'de> Visitor<'de> for SignersVisitor {
        type Value = Vec<RawSigner>;

        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("a list of trusted signers")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut sequence: A) -> Result<Vec<RawSigner>, A::Error> {
            let mut signers: Vec<RawSigner> = Vec::new();
            while let Some(signer) = sequence.next_element::<RawSigner>()? {
                if let Some(first_idx) = signers.iter().position(|seen| seen.name == signer.name) {
                    // serde_yaml_ng can only place this error at the start of the list; the
                    // message names the entries so the operator finds them anyway.
                    return Err(de::Error::custom(format!(
                        "signer `{}` is listed twice (entries [{first_idx}] and [{}]); signer names must be unique",
                        signer.name.0,
                        signers.len()
                    )));
                }
                signers.push(signer);
            }
            Ok(signers)
        }
    }

    deserializer.deserialize_seq(SignersVisitor)
}
