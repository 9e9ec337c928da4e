//! The OCI image config of a base: one layer, run as the unprivileged user 65534 with `HOME`,
//! `TMPDIR` and every cache under `/tmp` (the sandbox's only writable place besides
//! `/output`), Python told not to write bytecode, no entrypoint (a train names its own), and
//! labels naming the kind and the package list's SHA-256. Its creation time is fixed, so the
//! same layer gives the same config, hence the same image id.
//!
//! Owns the config's contents. Does not build the layer (`layer.rs`) or load the image.

use pht_core::Digest;
use serde_json::json;

/// Label naming the kind of base (`python` or `r`).
pub const BASE_LABEL: &str = "org.pht.base.v1";
/// Label holding the SHA-256 of the package list the base was built from.
pub const PACKAGES_LABEL: &str = "org.pht.base.packages.sha256";

/// The bases the project builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseKind {
    Python,
    R,
}

impl BaseKind {
    pub fn parse(text: &str) -> Option<BaseKind> {
        match text {
            "python" => Some(BaseKind::Python),
            "r" => Some(BaseKind::R),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BaseKind::Python => "python",
            BaseKind::R => "r",
        }
    }
}

/// The config JSON (the image id is its SHA-256).
pub fn base_config(kind: BaseKind, diff_id: &Digest, packages: &Digest) -> Vec<u8> {
    let created = chrono_free_rfc3339(crate::SOURCE_DATE_EPOCH);
    let mut env = vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME=/tmp",
        "TMPDIR=/tmp",
        "LANG=C.UTF-8",
    ];
    match kind {
        BaseKind::Python => env.extend([
            "PYTHONDONTWRITEBYTECODE=1",
            "PYTHONUNBUFFERED=1",
            "MPLCONFIGDIR=/tmp/matplotlib",
            "PIP_DISABLE_PIP_VERSION_CHECK=1",
        ]),
        BaseKind::R => env.extend(["R_LIBS_USER=/tmp/R", "R_HISTFILE=/tmp/.Rhistory"]),
    }
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {
            "User": "65534:65534",
            "Env": env,
            "WorkingDir": "/tmp",
            "Labels": {
                BASE_LABEL: kind.name(),
                PACKAGES_LABEL: packages.hex(),
                "org.opencontainers.image.title": format!("pht {} base", kind.name()),
                "org.opencontainers.image.description": format!("Debian {} packages for PHT trains in {}", crate::DEBIAN_SUITE, kind.name()),
            },
        },
        "rootfs": { "type": "layers", "diff_ids": [diff_id.to_string()] },
        "history": [{ "created": created, "created_by": format!("pht base build {}", kind.name()) }],
    });
    // serde_json's map keeps keys sorted (no `preserve_order`), so the bytes are stable.
    serde_json::to_vec(&config).expect("a config always serialises")
}

/// RFC 3339 of a Unix time, in UTC, without a clock dependency.
fn chrono_free_rfc3339(seconds: u64) -> String {
    let days = seconds / 86_400;
    let second_of_day = seconds % 86_400;
    // Civil from days (Howard Hinnant's algorithm), for dates after 1970.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_is_the_same_bytes_for_the_same_layer() {
        let (layer, packages) = (Digest::of(b"layer"), Digest::of(b"packages"));
        assert_eq!(
            base_config(BaseKind::Python, &layer, &packages),
            base_config(BaseKind::Python, &layer, &packages)
        );
        let config: serde_json::Value =
            serde_json::from_slice(&base_config(BaseKind::Python, &layer, &packages)).unwrap();
        assert_eq!(config["created"], "2026-01-01T00:00:00Z");
        assert_eq!(config["config"]["User"], "65534:65534");
        assert_eq!(config["config"]["Labels"][PACKAGES_LABEL], packages.hex());
    }
}
