//! The leaf values of a policy file (sizes, durations, CPU counts, names, patterns, keywords),
//! each validated while it is deserialised.
//!
//! Validating here rather than after parsing is what gives every refusal the line and column of
//! the offending value: serde_yaml_ng attaches the position of the node being read when the error
//! is raised inside its `deserialize_*` call. This module knows nothing about which section a value
//! sits in, and nothing about evaluation. The one thing a value may be checked against is the
//! signer names the file declares (`declared`): a base signer's name and a reference to one.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, SeqAccess, Unexpected, Visitor};
use serde::Deserialize;

use pht_core::manifest::DatasetName;
use pht_core::{units, Digest};

/// A YAML scalar as the visitor received it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scalar<'a> {
    Text(&'a str),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
}

/// Why a scalar was refused: the wrong kind of value, or the right kind with a bad content.
#[derive(Debug)]
pub(crate) enum ScalarRefusal {
    WrongType,
    Invalid(String),
}

impl Scalar<'_> {
    fn unexpected(&self) -> Unexpected<'_> {
        match *self {
            Scalar::Text(text) => Unexpected::Str(text),
            Scalar::Unsigned(value) => Unexpected::Unsigned(value),
            Scalar::Signed(value) => Unexpected::Signed(value),
            Scalar::Float(value) => Unexpected::Float(value),
        }
    }
}

/// Reads one scalar and hands it to `parse`; non-scalars are refused with `expecting`.
struct ScalarVisitor<T> {
    expecting: &'static str,
    parse: fn(Scalar<'_>) -> Result<T, ScalarRefusal>,
}

impl<T> ScalarVisitor<T> {
    fn finish<E: de::Error>(self, scalar: Scalar<'_>) -> Result<T, E> {
        match (self.parse)(scalar) {
            Ok(value) => Ok(value),
            Err(ScalarRefusal::WrongType) => Err(E::invalid_type(scalar.unexpected(), &self)),
            Err(ScalarRefusal::Invalid(message)) => Err(E::custom(message)),
        }
    }
}

impl<'de, T> Visitor<'de> for ScalarVisitor<T> {
    type Value = T;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<T, E> {
        self.finish(Scalar::Text(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<T, E> {
        self.finish(Scalar::Unsigned(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<T, E> {
        self.finish(Scalar::Signed(value))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<T, E> {
        self.finish(Scalar::Float(value))
    }
}

fn deserialize_scalar<'de, D: Deserializer<'de>, T>(
    deserializer: D,
    expecting: &'static str,
    parse: fn(Scalar<'_>) -> Result<T, ScalarRefusal>,
) -> Result<T, D::Error> {
    deserializer.deserialize_any(ScalarVisitor { expecting, parse })
}

/// The same, as a seed, so list items are refused at their own position.
struct ScalarSeed<T> {
    expecting: &'static str,
    parse: fn(Scalar<'_>) -> Result<T, ScalarRefusal>,
}

impl<'de, T> de::DeserializeSeed<'de> for ScalarSeed<T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        deserialize_scalar(deserializer, self.expecting, self.parse)
    }
}

fn text(scalar: Scalar<'_>) -> Result<&str, ScalarRefusal> {
    match scalar {
        Scalar::Text(text) => Ok(text),
        _ => Err(ScalarRefusal::WrongType),
    }
}

/// The `version:` of the policy format. Only version 1 exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PolicyVersion(pub u64);

pub(crate) const SUPPORTED_VERSION: u64 = 1;

impl<'de> Deserialize<'de> for PolicyVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_scalar(
            deserializer,
            "the policy format version, `1`",
            |scalar| match scalar {
                Scalar::Unsigned(SUPPORTED_VERSION) => Ok(PolicyVersion(SUPPORTED_VERSION)),
                Scalar::Unsigned(other) => Err(ScalarRefusal::Invalid(format!(
                "unsupported policy version {other}: this station reads version {SUPPORTED_VERSION}"
            ))),
                _ => Err(ScalarRefusal::WrongType),
            },
        )
    }
}

/// A byte size above zero, written `512MiB`, `2GiB`, `100MB` or as a plain number of bytes.
/// Zero is refused because Docker reads a zero limit as "no limit".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_scalar(
            deserializer,
            "a size such as `512MiB` or `2GiB`",
            |scalar| {
                let bytes = match scalar {
                    Scalar::Text(text) => units::parse_bytes(text)
                        .map_err(|error| ScalarRefusal::Invalid(error.to_string()))?,
                    Scalar::Unsigned(bytes) => bytes,
                    _ => return Err(ScalarRefusal::WrongType),
                };
                if bytes == 0 {
                    return Err(ScalarRefusal::Invalid(
                    "a size of 0 is not allowed: Docker reads 0 as \"no limit\"; give a size above zero".to_string(),
                ));
                }
                Ok(ByteSize(bytes))
            },
        )
    }
}

/// A duration above zero with a unit: `30s`, `10m`, `1h`, `250ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WallClock(pub Duration);

impl<'de> Deserialize<'de> for WallClock {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_scalar(
            deserializer,
            "a duration with a unit such as `30s` or `10m`",
            |scalar| {
                let duration = match scalar {
                Scalar::Text(text) => units::parse_duration(text).map_err(|error| ScalarRefusal::Invalid(error.to_string()))?,
                // A bare number is refused on purpose: `10` could mean seconds or minutes.
                Scalar::Unsigned(number) => {
                    return Err(ScalarRefusal::Invalid(format!(
                        "invalid duration `{number}`: a duration needs a unit (ms, s, m, h), e.g. `{number}s` or `{number}m`"
                    )))
                }
                _ => return Err(ScalarRefusal::WrongType),
            };
                if duration.is_zero() {
                    return Err(ScalarRefusal::Invalid(
                        "a duration of 0 is not allowed: give a duration above zero".to_string(),
                    ));
                }
                Ok(WallClock(duration))
            },
        )
    }
}

/// The largest CPU count a policy may name; far above any real host, it only catches typos.
pub(crate) const MAX_CPUS: f64 = 1024.0;

/// A number of CPUs above zero (fractions allowed, e.g. `0.5`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Cpus(pub f64);

impl<'de> Deserialize<'de> for Cpus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_scalar(
            deserializer,
            "a number of CPUs such as `1` or `0.5`",
            |scalar| {
                let cpus = match scalar {
                    Scalar::Unsigned(number) => number as f64,
                    Scalar::Signed(number) => number as f64,
                    Scalar::Float(number) => number,
                    Scalar::Text(_) => return Err(ScalarRefusal::WrongType),
                };
                if !(cpus > 0.0 && cpus <= MAX_CPUS) {
                    return Err(ScalarRefusal::Invalid(format!(
                    "invalid CPU count {cpus}: expected a number above 0 and at most {MAX_CPUS}"
                )));
                }
                Ok(Cpus(cpus))
            },
        )
    }
}

/// The largest process count a policy may name (Linux's own `pid_max` ceiling).
const MAX_PIDS: u64 = 4_194_304;

/// A process count of at least one. Zero is refused: Docker reads it as "no limit".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pids(pub u64);

impl<'de> Deserialize<'de> for Pids {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_scalar(
            deserializer,
            "a number of processes such as `256`",
            |scalar| {
                match scalar {
            Scalar::Unsigned(pids) if (1..=MAX_PIDS).contains(&pids) => Ok(Pids(pids)),
            Scalar::Unsigned(pids) => Err(ScalarRefusal::Invalid(format!(
                "invalid process count {pids}: expected at least 1 and at most {MAX_PIDS} (Docker reads 0 as \"no limit\")"
            ))),
            Scalar::Signed(pids) => Err(ScalarRefusal::Invalid(format!(
                "invalid process count {pids}: expected at least 1 and at most {MAX_PIDS}"
            ))),
            _ => Err(ScalarRefusal::WrongType),
        }
            },
        )
    }
}

/// The name of a trusted signer, as it appears in the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SignerName(pub String);

const SIGNER_NAME_EXPECTING: &str = "a signer name such as `alice` or `alice@example.org`";

fn parse_signer_name(scalar: Scalar<'_>) -> Result<String, ScalarRefusal> {
    let name = text(scalar)?;
    let valid = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
    if !valid {
        return Err(ScalarRefusal::Invalid(format!(
            "invalid signer name `{name}`: use letters, digits, `.`, `_`, `-` or `@` (at most 128)"
        )));
    }
    Ok(name.to_string())
}

impl<'de> Deserialize<'de> for SignerName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_scalar(deserializer, SIGNER_NAME_EXPECTING, |scalar| {
            parse_signer_name(scalar).map(SignerName)
        })
    }
}

/// The name of a trusted base signer (`trusted_base_signers[].name`): a signer name that is not
/// also the name of a trusted signer, so that a name in the audit log says which key it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BaseSignerName(pub String);

impl<'de> Deserialize<'de> for BaseSignerName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Checked inside the scalar's own deserialisation, so the refusal points at the name.
        deserialize_scalar(deserializer, SIGNER_NAME_EXPECTING, |scalar| {
            let name = parse_signer_name(scalar)?;
            if declared::with(|declared| declared.train_signers.contains(&name)) == Some(true) {
                return Err(ScalarRefusal::Invalid(train_signer_name_clash(&name)));
            }
            Ok(BaseSignerName(name))
        })
    }
}

/// Why a base signer's name is refused when a trusted signer has it.
pub(crate) fn train_signer_name_clash(name: &str) -> String {
    format!("`{name}` is also the name of a trusted signer: a base signer signs base images, never trains or jobs; give it a name of its own")
}

/// A reference to a trusted base signer (`base_images.allowed[].signer`): the name must be one of
/// `trusted_base_signers`. Checked while it is read when the declared names are known (see
/// `declared`); `Policy` checks again after parsing, so the rule never depends on that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BaseSignerRef(pub String);

impl<'de> Deserialize<'de> for BaseSignerRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_scalar(
            deserializer,
            "the name of one of `trusted_base_signers`",
            |scalar| {
                let name = parse_signer_name(scalar)?;
                let undeclared = declared::with(|declared| {
                    (!declared.base_signers.contains(&name)).then(|| declared.base_signers.clone())
                });
                if let Some(Some(base_signers)) = undeclared {
                    return Err(ScalarRefusal::Invalid(unknown_base_signer(
                        &name,
                        &base_signers,
                    )));
                }
                Ok(BaseSignerRef(name))
            },
        )
    }
}
/// Why a `signer:` in `base_images.allowed` is refused.
pub(crate) fn unknown_base_signer(name: &str, base_signers: &[String]) -> String {
    if base_signers.is_empty() {
        format!("base signer `{name}` is not declared: add it to `trusted_base_signers` (a name and the public key that signs your base images)")
    } else {
        format!(
            "base signer `{name}` is not among `trusted_base_signers` ({})",
            quoted(base_signers)
        )
    }
}

/// The manifest digest of a base image, `sha256:` and 64 lower-case hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BaseDigest(pub Digest);

impl<'de> Deserialize<'de> for BaseDigest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_scalar(
            deserializer,
            "a manifest digest such as `sha256:` followed by 64 hex digits",
            |scalar| {
                text(scalar)?
                    .parse::<Digest>()
                    .map(BaseDigest)
                    .map_err(|error| ScalarRefusal::Invalid(error.to_string()))
            },
        )
    }
}

/// The signer names a policy file declares, read by a first, lenient pass over the file before
/// the full one, so that a name referring to another part of the file can be refused at the
/// line and column where it is written. serde gives a `Deserialize` impl no way to receive
/// context, and the file's sections may come in any order, so the names are put where the
/// impls above can see them for the duration of one parse, on the parsing thread only.
pub(crate) mod declared {
    use std::cell::RefCell;

    /// Names declared in the file being parsed.
    #[derive(Debug, Clone, Default)]
    pub(crate) struct Declared {
        pub train_signers: Vec<String>,
        pub base_signers: Vec<String>,
    }

    thread_local! {
        static DECLARED: RefCell<Option<Declared>> = const { RefCell::new(None) };
    }

    /// Runs `parse` with `declared` visible to the impls in this module, and restores what was
    /// there before, also when `parse` panics.
    pub(crate) fn during<T>(declared: Option<Declared>, parse: impl FnOnce() -> T) -> T {
        struct Restore(Option<Declared>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let previous = self.0.take();
                DECLARED.with(|cell| *cell.borrow_mut() = previous);
            }
        }
        let previous = DECLARED.with(|cell| cell.replace(declared));
        let _restore = Restore(previous);
        parse()
    }

    /// `check` applied to the names of the file being parsed; `None` when they are not known
    /// (the lenient pass failed: then the full parse fails too, or `Policy` checks afterwards).
    pub(crate) fn with<T>(check: impl FnOnce(&Declared) -> T) -> Option<T> {
        DECLARED.with(|cell| cell.borrow().as_ref().map(check))
    }
}

/// A path to a PEM public key file, not yet resolved against the policy's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyPath(pub String);

impl<'de> Deserialize<'de> for KeyPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_scalar(
            deserializer,
            "a path to a PEM public key file, e.g. `keys/alice.pub`",
            |scalar| {
                let path = text(scalar)?;
                if path.trim().is_empty() || path.contains('\0') {
                    return Err(ScalarRefusal::Invalid(
                    "invalid public key path: expected a path to a PEM public key file, e.g. `keys/alice.pub`".to_string(),
                ));
                }
                Ok(KeyPath(path.to_string()))
            },
        )
    }
}

/// A registry host with an optional port, as it appears in an image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RegistryHost(pub String);

impl<'de> Deserialize<'de> for RegistryHost {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_scalar(
            deserializer,
            "a registry host such as `127.0.0.1:5000`",
            |scalar| {
                let host = text(scalar)?;
                let valid = !host.is_empty()
                    && host.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                    });
                if !valid {
                    return Err(ScalarRefusal::Invalid(format!(
                    "invalid registry `{host}`: expected a host with an optional port and no scheme or path, e.g. `127.0.0.1:5000` or `registry.example.org`"
                )));
                }
                Ok(RegistryHost(host.to_ascii_lowercase()))
            },
        )
    }
}

/// A repository pattern: a repository path in which `*` stands for any run of characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RepositoryPattern(pub String);

fn parse_repository_pattern(scalar: Scalar<'_>) -> Result<RepositoryPattern, ScalarRefusal> {
    let pattern = text(scalar)?;
    let valid = !pattern.is_empty()
        && pattern.bytes().all(|b| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || matches!(b, b'.' | b'_' | b'-' | b'/' | b'*')
        });
    if !valid {
        return Err(ScalarRefusal::Invalid(format!(
            "invalid repository pattern `{pattern}`: use lower-case letters, digits, `.`, `_`, `-`, `/` and `*` for any run of characters, e.g. `trains/*`"
        )));
    }
    Ok(RepositoryPattern(pattern.to_string()))
}

/// Reads `repositories:`, a non-empty list of patterns.
pub(crate) fn repository_patterns<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<RepositoryPattern>, D::Error> {
    deserializer.deserialize_seq(ListVisitor {
        expecting: "a list of repository patterns such as `[\"trains/*\"]`",
        item_expecting: "a repository pattern such as `trains/*`",
        parse: parse_repository_pattern,
        finish: |patterns| {
            if patterns.is_empty() {
                return Err("the list is empty: name at least one repository pattern, e.g. `trains/*`, or `*` for all".to_string());
            }
            Ok(patterns)
        },
    })
}

/// Reads a YAML sequence, each item through `parse` at its own position, then the whole list
/// through `finish`. Both run inside the sequence's own deserialisation, so a refusal of the list
/// as a whole is placed at the list (a check after `deserialize_seq` returned would be placed at
/// the enclosing mapping instead).
struct ListVisitor<Item, List> {
    expecting: &'static str,
    item_expecting: &'static str,
    parse: fn(Scalar<'_>) -> Result<Item, ScalarRefusal>,
    finish: fn(Vec<Item>) -> Result<List, String>,
}

impl<'de, Item, List> Visitor<'de> for ListVisitor<Item, List> {
    type Value = List;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.expecting)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut sequence: A) -> Result<List, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = sequence.next_element_seed(ScalarSeed {
            expecting: self.item_expecting,
            parse: self.parse,
        })? {
            items.push(item);
        }
        (self.finish)(items).map_err(de::Error::custom)
    }
}

/// A list that either names what is allowed or allows anything (`["*"]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowList {
    /// `["*"]`: anything.
    Any,
    /// Exactly these entries (possibly none).
    Only(Vec<String>),
}

impl AllowList {
    /// Whether `entry` is allowed. Entries are compared exactly, case and spacing included.
    pub fn allows(&self, entry: &str) -> bool {
        match self {
            AllowList::Any => true,
            AllowList::Only(entries) => entries.iter().any(|allowed| allowed == entry),
        }
    }
}

impl fmt::Display for AllowList {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowList::Any => formatter.write_str("any"),
            AllowList::Only(entries) if entries.is_empty() => formatter.write_str("none"),
            AllowList::Only(entries) => write!(formatter, "one of {}", quoted(entries)),
        }
    }
}

/// `` `a`, `b` ``: list entries as reasons and messages show them.
pub(crate) fn quoted(entries: &[String]) -> String {
    entries
        .iter()
        .map(|entry| format!("`{entry}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `*` entry that allows anything.
const ANY: &str = "*";

fn into_allow_list(entries: Vec<String>, what: &str) -> Result<AllowList, String> {
    match entries.iter().position(|entry| entry == ANY) {
        None => Ok(AllowList::Only(entries)),
        Some(_) if entries.len() == 1 => Ok(AllowList::Any),
        Some(_) => Err(format!(
            "`*` allows every {what} and must be the only entry; remove it or the other entries"
        )),
    }
}

fn parse_purpose(scalar: Scalar<'_>) -> Result<String, ScalarRefusal> {
    let purpose = text(scalar)?;
    if purpose.trim().is_empty() {
        return Err(ScalarRefusal::Invalid(
            "a purpose must not be empty".to_string(),
        ));
    }
    Ok(purpose.to_string())
}

/// Reads `purposes:`, a non-empty list of purpose strings or `["*"]`.
pub(crate) fn purposes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<AllowList, D::Error> {
    deserializer.deserialize_seq(ListVisitor {
        expecting: "a list of purposes such as `[\"aggregate statistics\"]`, or `[\"*\"]`",
        item_expecting: "a purpose such as `aggregate statistics`",
        parse: parse_purpose,
        finish: |entries| {
            if entries.is_empty() {
                return Err("the list is empty: name at least one purpose this signer's trains may declare, or `*` for any".to_string());
            }
            into_allow_list(entries, "purpose")
        },
    })
}

fn parse_dataset(scalar: Scalar<'_>) -> Result<String, ScalarRefusal> {
    let name = text(scalar)?;
    if name == ANY {
        return Ok(name.to_string());
    }
    // The same rule as dataset names in `train.yaml`, so a policy entry can always match one.
    DatasetName::try_from(name.to_string())
        .map(String::from)
        .map_err(ScalarRefusal::Invalid)
}

/// Reads `datasets:`, a list of dataset names (possibly empty: no datasets) or `["*"]`.
pub(crate) fn datasets<'de, D: Deserializer<'de>>(deserializer: D) -> Result<AllowList, D::Error> {
    deserializer.deserialize_seq(ListVisitor {
        expecting: "a list of dataset names such as `[cohort]`, `[]` for none, or `[\"*\"]`",
        item_expecting: "a dataset name such as `cohort`",
        parse: parse_dataset,
        finish: |entries| into_allow_list(entries, "dataset"),
    })
}

/// What a trusted signer's key may sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Train images (cosign signatures in the registry).
    Trains,
    /// Job envelopes (DSSE, submitted through the hub).
    Jobs,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Trains => "trains",
            Role::Jobs => "jobs",
        }
    }
}

fn parse_role(scalar: Scalar<'_>) -> Result<Role, ScalarRefusal> {
    match text(scalar)? {
        "trains" => Ok(Role::Trains),
        "jobs" => Ok(Role::Jobs),
        other => Err(ScalarRefusal::Invalid(format!(
            "unknown role `{other}`, expected `trains` or `jobs`"
        ))),
    }
}

/// Reads `may_sign:`, a non-empty list of roles.
pub(crate) fn may_sign<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Role>, D::Error> {
    deserializer.deserialize_seq(ListVisitor {
        expecting: "a list of roles: `[trains]`, `[jobs]` or `[trains, jobs]`",
        item_expecting: "`trains` or `jobs`",
        parse: parse_role,
        finish: |mut roles| {
            if roles.is_empty() {
                return Err("the list is empty: a signer may sign `trains`, `jobs` or both; remove the signer if it may sign neither".to_string());
            }
            roles.sort();
            roles.dedup();
            Ok(roles)
        },
    })
}

/// The default of `may_sign`: researchers sign both their train images and their job envelopes.
pub(crate) fn both_roles() -> Vec<Role> {
    vec![Role::Trains, Role::Jobs]
}

/// Declares a keyword enum read from a YAML string, with its `as_str` and `Display`.
macro_rules! keyword_enum {
    ($(#[$doc:meta])* $name:ident, $expecting:literal, default = $default:ident, { $($(#[$variant_doc:meta])* $variant:ident => $keyword:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $($(#[$variant_doc])* $variant),+
        }

        impl $name {
            /// The keyword as written in the policy file.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $keyword),+
                }
            }
        }

        impl Default for $name {
            fn default() -> Self {
                $name::$default
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserialize_scalar(deserializer, $expecting, |scalar| match text(scalar)? {
                    $($keyword => Ok($name::$variant),)+
                    other => Err(ScalarRefusal::Invalid(format!("unknown value `{other}`, expected {}", $expecting))),
                })
            }
        }
    };
}

keyword_enum!(
    /// Whether a signer's runs start without an operator.
    Approval, "`automatic` or `manual`", default = Manual, {
        /// Runs start as soon as the policy allows them.
        Automatic => "automatic",
        /// An operator approves or rejects every run.
        Manual => "manual",
    }
);

keyword_enum!(
    /// Whether outputs whose checks pass leave the station without an operator.
    Release, "`automatic` or `manual`", default = Manual, {
        /// A pass verdict is released at once; review and fail verdicts still wait or block.
        Automatic => "automatic",
        /// An operator releases every result, pass verdicts included.
        Manual => "manual",
    }
);

keyword_enum!(
    /// What the station keeps of a run that failed (`retention.failed_outputs`).
    Keep, "`delete` or `keep`", default = Delete, {
        /// Deleted once the run's record (hashes and sizes) is written: never checked or released.
        Delete => "delete",
        /// Kept in the run directory for an operator to look at.
        Keep => "keep",
    }
);

keyword_enum!(
    /// The OCI runtime the station starts trains with (Docker's `--runtime`).
    Runtime, "`runc` or `runsc`", default = Runc, {
        /// Docker's default runtime.
        Runc => "runc",
        /// gVisor: a user-space kernel between the train and the host.
        Runsc => "runsc",
    }
);

/// Prints a duration the way an operator writes one: `10m`, `30s`, `1h`, `250ms`.
pub(crate) fn format_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if duration.subsec_nanos() != 0 {
        return format!("{}ms", duration.as_millis());
    }
    match seconds {
        0 => "0s".to_string(),
        _ if seconds.is_multiple_of(3600) => format!("{}h", seconds / 3600),
        _ if seconds.is_multiple_of(60) => format!("{}m", seconds / 60),
        _ => format!("{seconds}s"),
    }
}

/// `outputs.remedy`: `none` (default) or `suppress-and-round` — a count table failing only on
/// small cells leaves as a copy with those suppressed and every other count rounded
/// (`outputs.checks.rounding`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Remedy {
    #[default]
    None,
    SuppressAndRound,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_in_the_largest_exact_unit() {
        assert_eq!(format_duration(Duration::from_secs(600)), "10m");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn allow_lists_compare_entries_exactly() {
        let purposes = AllowList::Only(vec!["aggregate statistics".to_string()]);
        assert!(purposes.allows("aggregate statistics"));
        assert!(!purposes.allows("Aggregate statistics"));
        assert!(!purposes.allows("aggregate statistics "));
        assert!(AllowList::Any.allows("anything at all"));
        assert!(!AllowList::Only(vec![]).allows("cohort"));
    }
}
