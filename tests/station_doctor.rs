//! `pht-station doctor` against a real hub, registry and Docker: a healthy station passes
//! every check; a wrong Docker socket, a world-readable key file and an unreachable hub each
//! fail their own check, with advice, and exit 1.

use std::os::unix::fs::PermissionsExt as _;

use pht_e2e::free_port;
use pht_e2e::routes::HubWorld;

fn check<'a>(diagnosis: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    diagnosis["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["name"] == name)
        .unwrap_or_else(|| panic!("no `{name}` check in {diagnosis:#}"))
}

fn failed(diagnosis: &serde_json::Value) -> Vec<String> {
    diagnosis["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|check| check["ok"] == false)
        .map(|check| check["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn doctor_passes_a_healthy_station_and_names_each_broken_part_with_what_to_do() {
    let world = HubWorld::with(
        "doctor",
        1,
        "automatic",
        "outputs:\n  release: automatic\n",
        false,
    );
    let station = &world.stations[0];
    let healthy = station.station(&["--json", "doctor"]);
    let diagnosis = healthy.json();
    assert_eq!(failed(&diagnosis), Vec::<String>::new(), "{diagnosis:#}");
    assert_eq!(healthy.code, 0);
    assert_eq!(diagnosis["ok"], true);
    for name in [
        "docker",
        "sandbox runtime",
        "registry",
        "hub",
        "clock",
        "key files",
        "disk space",
        "policy",
        "/output",
    ] {
        assert_eq!(check(&diagnosis, name)["ok"], true, "{name}: {diagnosis:#}");
    }
    assert!(
        check(&diagnosis, "docker")["detail"]
            .as_str()
            .unwrap()
            .contains("API"),
        "{diagnosis:#}"
    );
    // The text form says the same, a line a check.
    let text = station.station(&["doctor"]).code(0);
    assert!(
        text.stdout.contains("every check passed"),
        "{}",
        text.stdout
    );

    // A private key others can read.
    let key = station.dir.path().join("keys/station.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let diagnosis = station.station(&["--json", "doctor"]).code(1).json();
    assert_eq!(failed(&diagnosis), ["key files"], "{diagnosis:#}");
    let advice = check(&diagnosis, "key files")["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(advice.contains("chmod 600"), "{advice}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    let original = std::fs::read_to_string(&station.config).unwrap();
    // Docker's socket where there is none.
    std::fs::write(
        &station.config,
        format!("{original}docker:\n  socket: /nonexistent/docker.sock\n"),
    )
    .unwrap();
    let diagnosis = station.station(&["--json", "doctor"]).code(1).json();
    let docker = check(&diagnosis, "docker");
    assert_eq!(docker["ok"], false, "{diagnosis:#}");
    let advice = docker["detail"].as_str().unwrap();
    assert!(
        advice.contains("/nonexistent/docker.sock") && advice.contains("docker.socket"),
        "{advice}"
    );
    assert_eq!(check(&diagnosis, "hub")["ok"], true, "{diagnosis:#}");

    // The hub where nothing listens.
    let dead = format!("http://127.0.0.1:{}", free_port());
    std::fs::write(&station.config, original.replace(&world.hub_url, &dead)).unwrap();
    let diagnosis = station.station(&["--json", "doctor"]).code(1).json();
    assert_eq!(failed(&diagnosis), ["hub"], "{diagnosis:#}");
    let advice = check(&diagnosis, "hub")["detail"].as_str().unwrap();
    assert!(
        advice.contains("cannot reach the hub") && advice.contains(&dead),
        "{advice}"
    );
    std::fs::write(&station.config, original).unwrap();
    station.station(&["doctor"]).code(0);
}
