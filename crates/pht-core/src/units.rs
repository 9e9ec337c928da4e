//! Human units in configuration files: byte sizes (`512MiB`, `2GB`) and durations (`30s`, `10m`).
//! Owns parsing and printing; knows nothing about which field uses them.

use std::time::Duration;

/// Why a size or duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("invalid size `{0}`: expected a number with an optional unit (B, KiB, MiB, GiB, KB, MB, GB), e.g. `512MiB`")]
    Size(String),
    #[error(
        "invalid duration `{0}`: expected a number with a unit (ms, s, m, h), e.g. `30s` or `10m`"
    )]
    Duration(String),
}

fn split_number(input: &str) -> Option<(f64, &str)> {
    let trimmed = input.trim();
    let unit_start = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(unit_start);
    let value: f64 = number.parse().ok()?;
    (value.is_finite() && value >= 0.0).then_some((value, unit.trim()))
}

/// Parses a byte size such as `512MiB`, `1.5GiB`, `100MB` or `4096`.
pub fn parse_bytes(input: &str) -> Result<u64, UnitError> {
    let error = || UnitError::Size(input.to_string());
    let (value, unit) = split_number(input).ok_or_else(error)?;
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        _ => return Err(error()),
    };
    let bytes = value * multiplier as f64;
    if bytes > u64::MAX as f64 {
        return Err(error());
    }
    Ok(bytes.round() as u64)
}

/// Parses a duration such as `30s`, `10m`, `1h` or `250ms`.
pub fn parse_duration(input: &str) -> Result<Duration, UnitError> {
    let error = || UnitError::Duration(input.to_string());
    let (value, unit) = split_number(input).ok_or_else(error)?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(error()),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| error())
}

/// Prints a byte count with a binary unit, as an operator would write it.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (name, size) in UNITS {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{name}", bytes / size);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("1.5KiB"), Ok(1536));
        assert!(parse_bytes("12 parsecs").is_err());
        assert!(parse_bytes("-1MiB").is_err());
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("10").is_err());
    }

    #[test]
    fn byte_counts_print_in_the_largest_exact_unit() {
        assert_eq!(format_bytes(512 << 20), "512MiB");
        assert_eq!(format_bytes(1000), "1000B");
    }
}
