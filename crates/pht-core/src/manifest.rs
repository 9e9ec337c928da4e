//! The train manifest: `train.yaml` as the researcher writes it, and the JSON stored in the image
//! label `org.pht.train.v1`.
//!
//! Owns the schema and its validation. Values are checked while they are deserialised (through
//! validating newtypes), so an error carries the line and column of the offending value. Does not
//! read files: callers pass the text and a name for it.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::units;
use crate::Digest;

/// The image label that carries the manifest as JSON.
pub const TRAIN_LABEL: &str = "org.pht.train.v1";

/// A validated train manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainManifest {
    pub name: TrainName,
    pub version: TrainVersion,
    pub description: String,
    pub authors: Vec<String>,
    /// The use the data holder agrees to; matched against the station policy.
    pub purpose: NonEmpty,
    /// Dataset names, mounted read-only under `/data/<name>/`.
    #[serde(default)]
    pub datasets: Vec<DatasetName>,
    #[serde(default)]
    pub parameters: Vec<Parameter>,
    pub outputs: Vec<Output>,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// The base image the train is built on, by digest: recorded by `pht train build` from the
    /// Dockerfile's `FROM` (absent for a train `FROM scratch`). A station's policy may restrict
    /// bases (`base_images:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<BaseImage>,
}

/// A base image, by repository and manifest digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseImage {
    /// `registry/repository`.
    pub repository: String,
    pub digest: Digest,
}

macro_rules! validated_string {
    ($(#[$doc:meta])* $name:ident, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> Result<Self, String> {
                let check: fn(&str) -> Result<(), String> = $check;
                check(&value)?;
                Ok($name(value))
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

fn is_slug(value: &str, max_len: usize) -> bool {
    !value.is_empty()
        && value.len() <= max_len
        && value.as_bytes()[0].is_ascii_lowercase()
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

validated_string!(
    /// A train name: lower-case letters, digits, `-` and `_`, starting with a letter.
    TrainName,
    |value| if is_slug(value, 64) { Ok(()) } else {
        Err(format!("invalid train name `{value}`: use lower-case letters, digits, `-` or `_`, starting with a letter (at most 64)"))
    }
);

validated_string!(
    /// A version `MAJOR.MINOR.PATCH` with an optional `-prerelease`.
    TrainVersion,
    |value| {
        let core = value.split_once('-').map_or(value, |(core, _)| core);
        let parts: Vec<&str> = core.split('.').collect();
        if parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) {
            Ok(())
        } else {
            Err(format!("invalid version `{value}`: expected MAJOR.MINOR.PATCH, e.g. `0.1.0`"))
        }
    }
);

validated_string!(
    /// A dataset name as stations know it: it becomes the directory `/data/<name>/`.
    DatasetName,
    |value| if is_slug(value, 64) { Ok(()) } else {
        Err(format!("invalid dataset name `{value}`: use lower-case letters, digits, `-` or `_`, starting with a letter"))
    }
);

validated_string!(
    /// A string that must say something.
    NonEmpty,
    |value| if value.trim().is_empty() { Err("must not be empty".to_string()) } else { Ok(()) }
);

validated_string!(
    /// A path under `/output/`, relative, without `..`.
    OutputPath,
    |value| {
        let escapes = value.starts_with('/') || value.split('/').any(|c| c == ".." || c == "." || c.is_empty());
        if value.is_empty() || escapes || value.contains('\0') {
            Err(format!("invalid output path `{value}`: give a path relative to /output, without `..`, e.g. `counts.csv`"))
        } else {
            Ok(())
        }
    }
);

validated_string!(
    /// A parameter name: it becomes a key of `/input/params.json`.
    ParameterName,
    |value| if is_slug(value, 64) { Ok(()) } else {
        Err(format!("invalid parameter name `{value}`: use lower-case letters, digits, `-` or `_`, starting with a letter"))
    }
);

/// A parameter the job supplies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawParameter", into = "RawParameter")]
pub struct Parameter {
    pub name: ParameterName,
    pub parameter_type: ParameterType,
    pub required: bool,
    pub default: Option<serde_json::Value>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParameter {
    name: ParameterName,
    #[serde(rename = "type")]
    parameter_type: ParameterType,
    #[serde(default)]
    required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
}

impl TryFrom<RawParameter> for Parameter {
    type Error = String;
    fn try_from(raw: RawParameter) -> Result<Parameter, String> {
        if let Some(default) = &raw.default {
            if !raw.parameter_type.accepts(default) {
                return Err(format!(
                    "parameter `{}`: default {default} is not of type {}",
                    raw.name, raw.parameter_type
                ));
            }
            if raw.required {
                return Err(format!(
                    "parameter `{}`: a required parameter cannot have a default",
                    raw.name
                ));
            }
        }
        Ok(Parameter {
            name: raw.name,
            parameter_type: raw.parameter_type,
            required: raw.required,
            default: raw.default,
            description: raw.description,
        })
    }
}

impl From<Parameter> for RawParameter {
    fn from(parameter: Parameter) -> RawParameter {
        RawParameter {
            name: parameter.name,
            parameter_type: parameter.parameter_type,
            required: parameter.required,
            default: parameter.default,
            description: parameter.description,
        }
    }
}

/// The type of a parameter value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParameterType {
    String,
    Integer,
    Number,
    Boolean,
}

impl ParameterType {
    /// Whether a JSON value is of this type.
    pub fn accepts(&self, value: &serde_json::Value) -> bool {
        match self {
            ParameterType::String => value.is_string(),
            ParameterType::Integer => value.is_i64() || value.is_u64(),
            ParameterType::Number => value.is_number(),
            ParameterType::Boolean => value.is_boolean(),
        }
    }
}

impl fmt::Display for ParameterType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParameterType::String => "string",
            ParameterType::Integer => "integer",
            ParameterType::Number => "number",
            ParameterType::Boolean => "boolean",
        })
    }
}

/// An expected file under `/output/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Output {
    pub path: OutputPath,
    pub kind: OutputKind,
    /// For tables: the columns that hold counts (checked against the disclosure threshold).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub count_columns: Vec<String>,
    /// For tables of magnitudes: which dataset column the cells aggregate, and how. The station
    /// recomputes every cell from the dataset and judges it on its own contributors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregates: Option<Aggregates>,
    /// For models: the observations and parameters it was fitted with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `aggregates:` of a table output: its cells are `function` of dataset `column`, one per group
/// of `group_by`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Aggregates {
    pub dataset: DatasetName,
    pub column: String,
    pub function: AggregateFunction,
    #[serde(default)]
    pub group_by: Vec<String>,
    /// The table column holding the aggregate, when it is not named like `column`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_column: Option<String>,
}

/// How a magnitude table's cells aggregate their column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AggregateFunction {
    Sum,
    Mean,
    Median,
    Min,
    Max,
}

/// `model:` of a model output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSize {
    pub n_obs: u64,
    pub n_params: u64,
    /// The dataset it was fitted on, when the train mounts more than one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<DatasetName>,
}

/// What an output is, which decides how it is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    Table,
    Figure,
    Text,
    Model,
    /// State for the next stop of a sequential route; encrypted to that station, not released.
    State,
}

/// A byte size written with a unit (`256MiB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ByteSize(pub u64);

impl TryFrom<String> for ByteSize {
    type Error = String;
    fn try_from(value: String) -> Result<ByteSize, String> {
        units::parse_bytes(&value)
            .map(ByteSize)
            .map_err(|e| e.to_string())
    }
}

impl From<ByteSize> for String {
    fn from(value: ByteSize) -> String {
        units::format_bytes(value.0)
    }
}

/// A duration written with a unit (`5m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DurationSpec(pub Duration);

impl TryFrom<String> for DurationSpec {
    type Error = String;
    fn try_from(value: String) -> Result<DurationSpec, String> {
        units::parse_duration(&value)
            .map(DurationSpec)
            .map_err(|e| e.to_string())
    }
}

impl From<DurationSpec> for String {
    fn from(value: DurationSpec) -> String {
        format!("{}s", value.0.as_secs_f64())
    }
}

/// What the train asks for; the station grants at most its policy's ceilings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_clock: Option<DurationSpec>,
}

/// A manifest that could not be read, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ManifestError {
    /// The file (or label) the text came from.
    pub source_name: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => {
                write!(f, "{}:{line}:{column}: {}", self.source_name, self.message)
            }
            _ => write!(f, "{}: {}", self.source_name, self.message),
        }
    }
}

impl TrainManifest {
    /// Parses and validates `train.yaml` text. `source_name` names the file in errors.
    pub fn from_yaml(text: &str, source_name: &str) -> Result<TrainManifest, ManifestError> {
        let manifest: TrainManifest = serde_yaml_ng::from_str(text).map_err(|error| {
            let message = strip_location(&error.to_string());
            let (line, column) = match error.location() {
                Some(location) => refine_location(text, location.index(), &message),
                None => (None, None),
            };
            ManifestError {
                source_name: source_name.to_string(),
                line,
                column,
                message,
            }
        })?;
        manifest.check_consistency().map_err(|(message, needle)| {
            let (line, column) = locate(text, &needle);
            ManifestError {
                source_name: source_name.to_string(),
                line,
                column,
                message,
            }
        })?;
        Ok(manifest)
    }

    /// Reads the manifest from the JSON of the image label.
    pub fn from_label_json(json: &str) -> Result<TrainManifest, ManifestError> {
        let manifest: TrainManifest =
            serde_json::from_str(json).map_err(|error| ManifestError {
                source_name: format!("image label {TRAIN_LABEL}"),
                line: Some(error.line()),
                column: Some(error.column()),
                message: error.to_string(),
            })?;
        manifest
            .check_consistency()
            .map_err(|(message, _)| ManifestError {
                source_name: format!("image label {TRAIN_LABEL}"),
                line: None,
                column: None,
                message,
            })?;
        Ok(manifest)
    }

    /// The JSON stored in the image label.
    pub fn to_label_json(&self) -> String {
        serde_json::to_string(self).expect("a manifest always serialises")
    }

    /// The standard `org.opencontainers.image.*` labels derived from the manifest.
    pub fn standard_labels(&self) -> Vec<(String, String)> {
        let mut labels = vec![
            (
                "org.opencontainers.image.title".to_string(),
                self.name.to_string(),
            ),
            (
                "org.opencontainers.image.version".to_string(),
                self.version.to_string(),
            ),
            (
                "org.opencontainers.image.description".to_string(),
                self.description.clone(),
            ),
        ];
        if !self.authors.is_empty() {
            labels.push((
                "org.opencontainers.image.authors".to_string(),
                self.authors.join(", "),
            ));
        }
        labels
    }

    /// Checks across fields; on failure returns the message and a snippet to locate in the text.
    fn check_consistency(&self) -> Result<(), (String, String)> {
        if self.outputs.is_empty() {
            return Err((
                "outputs: a train must declare at least one output".into(),
                "outputs".into(),
            ));
        }
        let mut seen = BTreeSet::new();
        for output in &self.outputs {
            if !seen.insert(output.path.as_str()) {
                return Err((
                    format!("outputs: path `{}` is declared twice", output.path),
                    output.path.to_string(),
                ));
            }
            if let Some(aggregates) = &output.aggregates {
                if output.kind != OutputKind::Table {
                    return Err((
                        format!(
                            "outputs: `{}` has aggregates but is not a table",
                            output.path
                        ),
                        output.path.to_string(),
                    ));
                }
                if !self.datasets.contains(&aggregates.dataset) {
                    return Err((
                        format!(
                            "outputs: `{}` aggregates dataset `{}`, which `datasets:` does not list",
                            output.path, aggregates.dataset
                        ),
                        aggregates.dataset.to_string(),
                    ));
                }
            }
            if let Some(model) = &output.model {
                if output.kind != OutputKind::Model {
                    return Err((
                        format!(
                            "outputs: `{}` has model: but is not `kind: model`",
                            output.path
                        ),
                        output.path.to_string(),
                    ));
                }
                if let Some(dataset) = model
                    .dataset
                    .as_ref()
                    .filter(|d| !self.datasets.contains(d))
                {
                    return Err((
                        format!(
                            "outputs: the model `{}` names dataset `{dataset}`, which `datasets:` does not list",
                            output.path
                        ),
                        dataset.to_string(),
                    ));
                }
            }
            if output.kind != OutputKind::Table && !output.count_columns.is_empty() {
                return Err((
                    format!(
                        "outputs: `{}` has count_columns but is not a table",
                        output.path
                    ),
                    output.path.to_string(),
                ));
            }
        }
        let mut seen = BTreeSet::new();
        for parameter in &self.parameters {
            if !seen.insert(parameter.name.as_str()) {
                return Err((
                    format!("parameters: `{}` is declared twice", parameter.name),
                    parameter.name.to_string(),
                ));
            }
        }
        let mut seen = BTreeSet::new();
        for dataset in &self.datasets {
            if !seen.insert(dataset.as_str()) {
                return Err((
                    format!("datasets: `{dataset}` is listed twice"),
                    dataset.to_string(),
                ));
            }
        }
        if let Some(cpus) = self.resources.cpus {
            if !(cpus > 0.0 && cpus <= 1024.0) {
                return Err((
                    format!("resources.cpus: {cpus} is not between 0 and 1024"),
                    "cpus".into(),
                ));
            }
        }
        Ok(())
    }
}

/// serde_yaml_ng appends " at line L column C"; the error already says where in its own fields.
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_string(),
        None => message.to_string(),
    }
}

/// Errors raised while validating a value are reported by the YAML parser at the start of the
/// enclosing mapping. When the message quotes the offending value in backticks, point at that
/// value instead: it is the first occurrence at or after the reported position.
fn refine_location(
    text: &str,
    reported_index: usize,
    message: &str,
) -> (Option<usize>, Option<usize>) {
    let quoted = message.split('`').nth(1).filter(|q| !q.is_empty());
    let offset = quoted
        .and_then(|q| {
            text.get(reported_index..)?
                .find(q)
                .map(|i| i + reported_index)
        })
        .unwrap_or(reported_index);
    line_and_column(text, offset)
}

fn line_and_column(text: &str, offset: usize) -> (Option<usize>, Option<usize>) {
    let Some(before) = text.get(..offset) else {
        return (None, None);
    };
    let line = before.matches('\n').count() + 1;
    let column = before.chars().count()
        - before
            .rfind('\n')
            .map_or(0, |i| before[..=i].chars().count())
        + 1;
    (Some(line), Some(column))
}

/// The line and column (1-based) of the last occurrence of `needle` in `text`: duplicates are
/// reported where they are repeated.
fn locate(text: &str, needle: &str) -> (Option<usize>, Option<usize>) {
    match text.rfind(needle) {
        Some(offset) => line_and_column(text, offset),
        None => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    use super::*;

    const GOOD: &str = "\
name: cohort-stats
version: 0.1.0
description: Counts patients by group.
authors: [\"A. Researcher <a@example.org>\"]
purpose: aggregate statistics
datasets: [cohort]
parameters:
  - name: group_by
    type: string
    default: sex
outputs:
  - path: counts.csv
    kind: table
    count_columns: [n]
resources:
  cpus: 0.5
  memory: 128MiB
  wall_clock: 2m
entrypoint: [\"/cohort-stats\"]
";

    fn check_error(text: &str, expected: Expect) {
        let error = TrainManifest::from_yaml(text, "train.yaml").unwrap_err();
        expected.assert_eq(&error.to_string());
    }

    #[test]
    fn good_manifest_parses_and_round_trips_through_the_label() {
        let manifest = TrainManifest::from_yaml(GOOD, "train.yaml").unwrap();
        assert_eq!(manifest.resources.memory, Some(ByteSize(128 << 20)));
        assert_eq!(
            manifest.resources.wall_clock,
            Some(DurationSpec(Duration::from_secs(120)))
        );
        let label = manifest.to_label_json();
        assert_eq!(TrainManifest::from_label_json(&label).unwrap(), manifest);
    }

    #[test]
    fn missing_field_is_refused_with_location() {
        check_error(
            &GOOD.replace("purpose: aggregate statistics\n", ""),
            expect!["train.yaml:1:1: missing field `purpose`"],
        );
    }

    #[test]
    fn unknown_field_is_refused_with_location() {
        check_error(
            &GOOD.replace("  cpus: 0.5", "  cpus: 0.5\n  gpus: 1"),
            expect!["train.yaml:17:3: resources: unknown field `gpus`, expected one of `cpus`, `memory`, `wall_clock`"],
        );
    }

    #[test]
    fn bad_type_is_refused_with_location() {
        check_error(
            &GOOD.replace("cpus: 0.5", "cpus: lots"),
            expect!["train.yaml:16:9: resources.cpus: invalid type: string \"lots\", expected f64"],
        );
    }

    #[test]
    fn bad_output_kind_is_refused_with_expected_values() {
        check_error(
            &GOOD.replace("kind: table", "kind: tabel"),
            expect!["train.yaml:13:11: outputs[0].kind: unknown variant `tabel`, expected one of `table`, `figure`, `text`, `model`, `state`"],
        );
    }

    #[test]
    fn bad_unit_is_refused_with_location() {
        check_error(
            &GOOD.replace("memory: 128MiB", "memory: 128 parsecs"),
            expect!["train.yaml:17:11: resources: invalid size `128 parsecs`: expected a number with an optional unit (B, KiB, MiB, GiB, KB, MB, GB), e.g. `512MiB`"],
        );
    }

    #[test]
    fn escaping_output_path_is_refused() {
        check_error(
            &GOOD.replace("path: counts.csv", "path: ../etc/passwd"),
            expect!["train.yaml:12:11: outputs[0]: invalid output path `../etc/passwd`: give a path relative to /output, without `..`, e.g. `counts.csv`"],
        );
    }

    #[test]
    fn default_of_wrong_type_is_refused() {
        check_error(
            &GOOD.replace("type: string", "type: integer"),
            expect![[
                r#"train.yaml:8:11: parameters: parameter `group_by`: default "sex" is not of type integer"#
            ]],
        );
    }

    #[test]
    fn duplicate_output_is_refused_where_it_is_repeated() {
        check_error(
            &GOOD.replace(
                "    count_columns: [n]\n",
                "    count_columns: [n]\n  - path: counts.csv\n    kind: table\n",
            ),
            expect!["train.yaml:15:11: outputs: path `counts.csv` is declared twice"],
        );
    }
}
