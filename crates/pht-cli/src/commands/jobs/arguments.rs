//! The arguments of the job commands as typed: the value parsers clap calls for `--param`,
//! `--param-for`, `--station-key` and durations.
//!
//! Owns the syntax of each argument and the station-id alphabet. It reads no files and checks
//! nothing against a route or the hub; the commands resolve what was typed.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

/// One `--param NAME=VALUE`.
#[derive(Debug, Clone, PartialEq)]
pub struct ParameterArgument {
    pub name: String,
    pub value: Value,
}

/// One `--param-for STATION:NAME=VALUE`.
#[derive(Debug, Clone, PartialEq)]
pub struct StationParameterArgument {
    pub station: String,
    pub parameter: ParameterArgument,
}

/// One `--station-key STATION=PUBKEY`.
#[derive(Debug, Clone, PartialEq)]
pub struct StationKeyArgument {
    pub station: String,
    pub public_key_path: PathBuf,
}

/// Parses `NAME=VALUE`. The value is a JSON number or boolean when it reads as one (`10`,
/// `0.5`, `true`), otherwise the string as typed.
pub fn parse_parameter_argument(text: &str) -> Result<ParameterArgument, String> {
    let (name, value_text) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not NAME=VALUE"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("`{text}` has no parameter name before `=`"));
    }
    let value = match serde_json::from_str::<Value>(value_text) {
        Ok(typed @ (Value::Number(_) | Value::Bool(_))) => typed,
        _ => Value::String(value_text.to_string()),
    };
    Ok(ParameterArgument {
        name: name.to_string(),
        value,
    })
}

/// Parses `STATION:NAME=VALUE`.
pub fn parse_station_parameter_argument(text: &str) -> Result<StationParameterArgument, String> {
    let (station, parameter_text) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}` is not STATION:NAME=VALUE"))?;
    check_station_id(station).map_err(|problem| format!("`{text}`: {problem}"))?;
    Ok(StationParameterArgument {
        station: station.to_string(),
        parameter: parse_parameter_argument(parameter_text)?,
    })
}

/// Parses `STATION=PUBKEY`: the public key (PEM) that station `STATION` seals its results with.
pub fn parse_station_key_argument(text: &str) -> Result<StationKeyArgument, String> {
    let (station, path) = text.split_once('=').ok_or_else(|| {
        format!("`{text}` is not STATION=PUBKEY (e.g. umc=keys/umc.pub): each key must name its station")
    })?;
    check_station_id(station).map_err(|problem| format!("`{text}`: {problem}"))?;
    if path.is_empty() {
        return Err(format!("`{text}` names no public key file after `=`"));
    }
    Ok(StationKeyArgument {
        station: station.to_string(),
        public_key_path: PathBuf::from(path),
    })
}

/// Parses a duration such as `30s`, `10m` or `24h`.
pub fn parse_duration_argument(text: &str) -> Result<Duration, String> {
    pht_core::units::parse_duration(text).map_err(|error| error.to_string())
}

/// Station ids use the hub's alphabet: `[A-Za-z0-9._-]`, 1 to 64 characters, starting with a
/// letter or digit. Checking it here also keeps a station id safe as a directory name.
pub(super) fn check_station_id(station: &str) -> Result<(), String> {
    let well_formed = (1..=64).contains(&station.len())
        && station
            .chars()
            .next()
            .is_some_and(|first| first.is_ascii_alphanumeric())
        && station
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if well_formed {
        Ok(())
    } else {
        Err(format!(
            "`{station}` is not a station id (letters, digits, `.`, `_`, `-`; at most 64; starting with a letter or digit)"
        ))
    }
}
