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
    self, AllowList, Approval, BaseDigest, BaseSignerName, BaseSignerRef, ByteSize, Cpus, Keep,
    KeyPath, Pids, PolicyVersion, RegistryHost, Release, Remedy, RepositoryPattern, Role, Runtime,
    SignerName, WallClock,
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
    #[serde(default, deserialize_with = "unique_base_signers")]
    pub trusted_base_signers: Vec<RawBaseSigner>,
    #[serde(default)]
    pub base_images: Option<RawBaseImages>,
}

/// A key trusted to sign base images, and only base images: never trains or jobs.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a trusted base signer: a mapping with `name` and `public_key`"
)]
pub(crate) struct RawBaseSigner {
    pub name: BaseSignerName,
    pub public_key: KeyPath,
}

/// `base_images:`, which bases trains may be built on.
#[derive(Debug)]
pub(crate) struct RawBaseImages {
    pub required: bool,
    /// `None`: any base; `Some([])`: none (only trains without a base).
    pub allowed: Option<Vec<RawAllowedBase>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBaseImagesFields {
    #[serde(default)]
    required: bool,
    #[serde(default)]
    allowed: Option<Vec<RawAllowedBase>>,
}

impl<'de> Deserialize<'de> for RawBaseImages {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(CheckedMap {
            expecting: "base_images: a mapping with `required` and `allowed`",
            check: |fields: RawBaseImagesFields| {
                if fields.required && fields.allowed.as_ref().is_some_and(Vec::is_empty) {
                    return Err("`required: true` with an empty `allowed` list refuses every train; list the bases to allow, or set `required: false` to run only trains without a base".to_string());
                }
                Ok(RawBaseImages {
                    required: fields.required,
                    allowed: fields.allowed,
                })
            },
        })
    }
}

/// One entry of `base_images.allowed`: a base by its digest, or any base a trusted base signer
/// signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawAllowedBase {
    Digest(BaseDigest),
    Signer(BaseSignerRef),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAllowedBaseFields {
    #[serde(default)]
    digest: Option<BaseDigest>,
    #[serde(default)]
    signer: Option<BaseSignerRef>,
}

impl<'de> Deserialize<'de> for RawAllowedBase {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(CheckedMap {
            expecting: "an allowed base: a mapping with `digest` or `signer`",
            check: |fields: RawAllowedBaseFields| match (fields.digest, fields.signer) {
                (Some(digest), None) => Ok(RawAllowedBase::Digest(digest)),
                (None, Some(signer)) => Ok(RawAllowedBase::Signer(signer)),
                (Some(_), Some(_)) => Err("an allowed base names either a `digest` or a `signer`, not both; write two entries to allow both".to_string()),
                (None, None) => Err("an allowed base needs a `digest: sha256:…` or a `signer:` naming one of `trusted_base_signers`".to_string()),
            },
        })
    }
}

/// Reads a mapping into `Fields` (derived, refusing unknown fields) and checks the fields
/// together. Both happen inside the mapping's own deserialisation, so a refusal of the
/// combination is placed at the mapping; `#[serde(try_from)]` would place it at the enclosing
/// node instead.
struct CheckedMap<Fields, T> {
    expecting: &'static str,
    check: fn(Fields) -> Result<T, String>,
}

impl<'de, Fields: Deserialize<'de>, T> Visitor<'de> for CheckedMap<Fields, T> {
    type Value = T;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.expecting)
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        let fields = Fields::deserialize(de::value::MapAccessDeserializer::new(map))?;
        (self.check)(fields).map_err(de::Error::custom)
    }
}

/// What the first, lenient pass over a policy file reads (see `values::declared`): the signer
/// names and nothing else. Unknown fields are ignored here; the full parse refuses them.
#[derive(Debug, Deserialize)]
pub(crate) struct DeclaredNames {
    #[serde(default)]
    trusted_signers: Vec<NameOnly>,
    #[serde(default)]
    trusted_base_signers: Vec<NameOnly>,
}

#[derive(Debug, Deserialize)]
struct NameOnly {
    name: String,
}

impl DeclaredNames {
    pub(crate) fn into_declared(self) -> values::declared::Declared {
        values::declared::Declared {
            train_signers: self.trusted_signers.into_iter().map(|s| s.name).collect(),
            base_signers: self
                .trusted_base_signers
                .into_iter()
                .map(|s| s.name)
                .collect(),
        }
    }
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
    /// Distinct operators who must each release a withheld result (default 1).
    #[serde(default)]
    pub reviewers_required: Option<ReviewersRequired>,
    /// What to do with a count table that fails only on small cells.
    #[serde(default)]
    pub remedy: Remedy,
    #[serde(default)]
    pub checks: CheckConfig,
}

/// `outputs.reviewers_required`: a whole number from 1 to 10.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReviewersRequired(pub u32);

impl<'de> Deserialize<'de> for ReviewersRequired {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = u32::deserialize(deserializer)?;
        if (1..=10).contains(&value) {
            Ok(ReviewersRequired(value))
        } else {
            Err(serde::de::Error::custom(format!(
                "{value} reviewers: a release needs from 1 to 10 distinct reviewers"
            )))
        }
    }
}

/// An entry of a list whose names must be unique.
trait Named {
    fn name(&self) -> &str;
}

impl Named for RawSigner {
    fn name(&self) -> &str {
        &self.name.0
    }
}

impl Named for RawBaseSigner {
    fn name(&self) -> &str {
        &self.name.0
    }
}

/// Reads `trusted_signers:` and refuses a name listed twice: the audit log and the approval
/// rules identify signers by name, so two entries with one name would be ambiguous.
fn unique_signers<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<RawSigner>, D::Error> {
    deserializer.deserialize_seq(UniqueNames {
        expecting: "a list of trusted signers",
        what: "signer",
        entries: std::marker::PhantomData,
    })
}

/// Reads `trusted_base_signers:`, refusing a name listed twice as `unique_signers` does.
fn unique_base_signers<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<RawBaseSigner>, D::Error> {
    deserializer.deserialize_seq(UniqueNames {
        expecting: "a list of trusted base signers",
        what: "base signer",
        entries: std::marker::PhantomData,
    })
}

struct UniqueNames<Entry> {
    expecting: &'static str,
    what: &'static str,
    entries: std::marker::PhantomData<Entry>,
}

impl<'de, Entry: Named + Deserialize<'de>> Visitor<'de> for UniqueNames<Entry> {
    type Value = Vec<Entry>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.expecting)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut sequence: A) -> Result<Vec<Entry>, A::Error> {
        let mut entries: Vec<Entry> = Vec::new();
        while let Some(entry) = sequence.next_element::<Entry>()? {
            if let Some(first_idx) = entries.iter().position(|seen| seen.name() == entry.name()) {
                // serde_yaml_ng can only place this error at the start of the list; the
                // message names the entries so the operator finds them anyway.
                return Err(de::Error::custom(format!(
                    "{} `{}` is listed twice (entries [{first_idx}] and [{}]); {} names must be unique",
                    self.what,
                    entry.name(),
                    entries.len(),
                    self.what
                )));
            }
            entries.push(entry);
        }
        Ok(entries)
    }
}
