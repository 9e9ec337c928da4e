//! Parameters: what a job or an operator passes to a train, checked against what the train's
//! manifest declares, with declared defaults filled in.
//!
//! Pure: values in, values (or a refusal naming the parameter) out.

use std::collections::BTreeMap;

use pht_core::manifest::{Parameter, ParameterType};

/// Why parameters were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParameterRefusal {
    #[error("parameter `{name}` is not declared by the train (it declares: {declared})")]
    Unknown { name: String, declared: String },
    #[error("parameter `{name}` must be of type {expected}, got {actual}")]
    WrongType {
        name: String,
        expected: String,
        actual: String,
    },
    #[error("parameter `{name}` is required by the train and was not given")]
    Missing { name: String },
}

/// Checks `given` against the declaration and returns the complete parameter set.
pub fn resolve(
    declared: &[Parameter],
    given: &BTreeMap<String, serde_json::Value>,
) -> Result<BTreeMap<String, serde_json::Value>, ParameterRefusal> {
    let names: Vec<&str> = declared.iter().map(|p| p.name.as_str()).collect();
    for name in given.keys() {
        if !names.contains(&name.as_str()) {
            return Err(ParameterRefusal::Unknown {
                name: name.clone(),
                declared: if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                },
            });
        }
    }
    let mut resolved = BTreeMap::new();
    for parameter in declared {
        let name = parameter.name.as_str();
        match (given.get(name), &parameter.default) {
            (Some(value), _) => {
                if !parameter.parameter_type.accepts(value) {
                    return Err(ParameterRefusal::WrongType {
                        name: name.to_string(),
                        expected: parameter.parameter_type.to_string(),
                        actual: json_type(value).to_string(),
                    });
                }
                resolved.insert(name.to_string(), value.clone());
            }
            (None, Some(default)) => {
                resolved.insert(name.to_string(), default.clone());
            }
            (None, None) if parameter.required => {
                return Err(ParameterRefusal::Missing {
                    name: name.to_string(),
                })
            }
            (None, None) => {}
        }
    }
    Ok(resolved)
}

fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// Reads `k=v` from the command line as the declared type (strings stay strings; an undeclared
/// name is kept as a string so `resolve` can refuse it by name).
pub fn parse_command_line(
    declared: &[Parameter],
    pairs: &[String],
) -> Result<BTreeMap<String, serde_json::Value>, String> {
    let mut parsed = BTreeMap::new();
    for pair in pairs {
        let (name, text) = pair
            .split_once('=')
            .ok_or_else(|| format!("--param `{pair}`: expected NAME=VALUE"))?;
        let declared_type = declared
            .iter()
            .find(|p| p.name.as_str() == name)
            .map(|p| p.parameter_type);
        let value = match declared_type {
            Some(ParameterType::Integer) => text
                .parse::<i64>()
                .map(serde_json::Value::from)
                .map_err(|_| format!("--param {name}: `{text}` is not an integer"))?,
            Some(ParameterType::Number) => text
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(serde_json::Value::Number)
                .ok_or_else(|| format!("--param {name}: `{text}` is not a number"))?,
            Some(ParameterType::Boolean) => text
                .parse::<bool>()
                .map(serde_json::Value::from)
                .map_err(|_| format!("--param {name}: `{text}` is not true or false"))?,
            Some(ParameterType::String) | None => serde_json::Value::from(text),
        };
        parsed.insert(name.to_string(), value);
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared() -> Vec<Parameter> {
        let manifest = pht_core::TrainManifest::from_yaml(
            "name: t\nversion: 0.1.0\ndescription: d\nauthors: []\npurpose: p\noutputs: [{path: a.csv, kind: table}]\nparameters:\n  - {name: group_by, type: string, default: sex}\n  - {name: min_age, type: integer, required: true}\n",
            "train.yaml",
        )
        .unwrap();
        manifest.parameters
    }

    #[test]
    fn defaults_are_filled_and_types_parsed_from_the_command_line() {
        let given = parse_command_line(&declared(), &["min_age=18".into()]).unwrap();
        let resolved = resolve(&declared(), &given).unwrap();
        assert_eq!(resolved["group_by"], "sex");
        assert_eq!(resolved["min_age"], 18);
    }

    #[test]
    fn undeclared_parameter_is_refused_by_name() {
        let given =
            parse_command_line(&declared(), &["min_age=1".into(), "evil=1".into()]).unwrap();
        assert!(
            matches!(resolve(&declared(), &given), Err(ParameterRefusal::Unknown { name, .. }) if name == "evil")
        );
    }

    #[test]
    fn missing_required_and_wrong_type_are_refused() {
        assert!(matches!(
            resolve(&declared(), &BTreeMap::new()),
            Err(ParameterRefusal::Missing { .. })
        ));
        let given = BTreeMap::from([("min_age".to_string(), serde_json::json!("old"))]);
        assert!(matches!(
            resolve(&declared(), &given),
            Err(ParameterRefusal::WrongType { .. })
        ));
        assert!(parse_command_line(&declared(), &["min_age=old".into()]).is_err());
    }
}
