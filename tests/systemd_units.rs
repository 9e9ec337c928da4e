//! The systemd units in `examples/systemd/` as an operator would install them: systemd's own
//! checker accepts them without a warning, its offline security review rates each at 2.0 or
//! below (a unit with the hardening taken out rates far higher, so the bar can fail), and the
//! commands they run are the commands the binaries take: the hub's `ExecStartPre` and
//! `ExecStart` start a hub that becomes ready and stops cleanly on SIGTERM, as `systemctl stop`
//! sends; each daemon's command exits 3 on a configuration it cannot use, which the units'
//! `RestartPreventExitStatus` names, so a broken configuration is not restarted for ever.
//!
//! Only the binary directory and the configuration path are replaced (`/usr/local/bin` by the
//! build's, `/etc/...yaml` by a temporary file); every other line is the example's.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pht_e2e::{binary, free_port, run, wait_for, workspace_root, Finished};

/// systemd-analyze's exposure scale is 0–100 on the command line, 0.0–10.0 in its report.
const MOST_EXPOSURE: &str = "20";

fn unit_text(name: &str) -> String {
    let path = workspace_root().join("examples/systemd").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// The unit with its binaries in this build's directory and `config` for its configuration.
fn installed(name: &str, dir: &Path, config_in_unit: &str, config: &Path) -> PathBuf {
    let bin_dir = binary("pht-hub").parent().unwrap().to_path_buf();
    let text = unit_text(name)
        .replace("/usr/local/bin/", &format!("{}/", bin_dir.display()))
        .replace(config_in_unit, &config.display().to_string());
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `systemd-analyze ARGS UNIT` (Debian's systemd package; scripts/install-deps.sh installs it).
fn analyze(args: &[&str], unit: &Path) -> Finished {
    run(Command::new("systemd-analyze").args(args).arg(unit))
}

fn exposure(unit: &Path) -> (i32, String) {
    let Finished {
        code,
        stdout,
        stderr,
    } = analyze(
        &[
            "security",
            "--offline=true",
            &format!("--threshold={MOST_EXPOSURE}"),
            "--no-pager",
        ],
        unit,
    );
    let overall = stdout
        .lines()
        .find(|line| line.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no overall exposure level in:\n{stdout}{stderr}"))
        .trim()
        .to_string();
    (code, overall)
}

/// The lines of `key=` in the unit's `[Service]` section, in order.
fn service_lines(unit: &Path, key: &str) -> Vec<String> {
    std::fs::read_to_string(unit)
        .unwrap()
        .lines()
        .filter_map(|line| line.strip_prefix(&format!("{key}=")))
        .map(str::to_string)
        .collect()
}

/// The unit's one `key=` command line.
fn the_command(unit: &Path, key: &str) -> String {
    let [line] = &service_lines(unit, key)[..] else {
        panic!("not one {key} in {}", unit.display())
    };
    line.clone()
}

/// The exit codes after which systemd does not restart the unit.
fn restart_prevented(unit: &Path) -> Vec<String> {
    service_lines(unit, "RestartPreventExitStatus")
        .iter()
        .flat_map(|line| line.split_whitespace())
        .map(str::to_string)
        .collect()
}

/// A process killed when dropped, should the test fail while it runs.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn command_of(line: &str) -> Command {
    let mut words = line.split_whitespace();
    let mut command = Command::new(words.next().expect("an empty command line"));
    command.args(words);
    command
}

#[test]
fn both_units_pass_systemds_checks_and_keep_their_hardening() {
    let dir = tempfile::tempdir().unwrap();
    let units = [
        installed(
            "pht-hub.service",
            dir.path(),
            "/etc/pht-hub/hub.yaml",
            &dir.path().join("hub.yaml"),
        ),
        installed(
            "pht-station.service",
            dir.path(),
            "/etc/pht-station/station.yaml",
            &dir.path().join("station.yaml"),
        ),
    ];
    for unit in &units {
        let verified = analyze(&["verify", "--man=no"], unit);
        assert_eq!(
            (
                verified.code,
                verified.stdout.trim(),
                verified.stderr.trim()
            ),
            (0, "", ""),
            "{}",
            unit.display()
        );
        let (code, overall) = exposure(unit);
        eprintln!("{overall}");
        assert_eq!(
            code,
            0,
            "{}: {overall}, above {MOST_EXPOSURE}",
            unit.display()
        );
    }

    // The checks can fail: a misspelt directive, and the same unit without its sandbox.
    let hub_unit = std::fs::read_to_string(&units[0]).unwrap();
    let misspelt = dir.path().join("misspelt.service");
    std::fs::write(
        &misspelt,
        hub_unit.replace("ProtectHome=yes", "ProtectHme=yes"),
    )
    .unwrap();
    let complaint = analyze(&["verify", "--man=no"], &misspelt).stderr;
    assert!(complaint.contains("ProtectHme"), "{complaint}");
    let unhardened: String = hub_unit
        .lines()
        .filter(|line| {
            ![
                "Protect",
                "Private",
                "Restrict",
                "SystemCall",
                "Capability",
                "NoNewPrivileges",
            ]
            .iter()
            .any(|directive| line.starts_with(directive))
        })
        .map(|line| format!("{line}\n"))
        .collect();
    let unhardened_unit = dir.path().join("unhardened.service");
    std::fs::write(&unhardened_unit, unhardened).unwrap();
    let (code, overall) = exposure(&unhardened_unit);
    assert_ne!(code, 0, "the unhardened unit passed: {overall}");
}

#[test]
fn the_hub_units_commands_start_a_ready_hub_that_stops_on_sigterm_and_refuse_a_broken_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hub.yaml");
    let port = free_port();
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\nstate_dir: {}\nadmin_token: unit-test-admin-token-0123456789\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let unit = installed(
        "pht-hub.service",
        dir.path(),
        "/etc/pht-hub/hub.yaml",
        &config,
    );
    let prevented = restart_prevented(&unit);
    assert!(prevented.contains(&"3".to_string()), "{prevented:?}");

    let pre = the_command(&unit, "ExecStartPre");
    run(&mut command_of(&pre)).success();

    let start = the_command(&unit, "ExecStart");
    let log_path = dir.path().join("hub.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut hub = Stopped(
        command_of(&start)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let readyz = format!("http://127.0.0.1:{port}/readyz");
    let client = reqwest::blocking::Client::new();
    wait_for(
        "the hub to be ready",
        Duration::from_secs(20),
        || match client.get(&readyz).send() {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(response.status().to_string()),
            Err(error) => Err(error.to_string()),
        },
        || std::fs::read_to_string(&log_path).unwrap_or_default(),
    );
    let journal = std::fs::read_to_string(&log_path).unwrap();
    let first = journal.lines().next().expect("the hub logged nothing");
    serde_json::from_str::<serde_json::Value>(first)
        .unwrap_or_else(|error| panic!("--log-format json wrote `{first}`: {error}"));

    Command::new("kill")
        .args(["-TERM", &hub.0.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = hub.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the hub outlived the unit's TimeoutStopSec=30s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");

    // A configuration it cannot use: 3, which stops systemd from restarting it.
    std::fs::write(&config, "listen: [not, an, address]\n").unwrap();
    for line in [&pre, &start] {
        let said = run(&mut command_of(line)).code(3).stderr;
        assert!(said.contains("hub.yaml"), "{line}: {said}");
    }
    // A configuration that is not there at all: 3 too, and the reason said once.
    std::fs::remove_file(&config).unwrap();
    let said = run(&mut command_of(&pre)).code(3).stderr;
    assert_eq!(said.matches("cannot read").count(), 1, "{said}");
    assert_eq!(said.matches("No such file").count(), 1, "{said}");
}

#[test]
fn the_station_units_command_parses_and_refuses_a_broken_config_with_3() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("station.yaml");
    std::fs::write(&config, "station_id: [not, a, name]\n").unwrap();
    let unit = installed(
        "pht-station.service",
        dir.path(),
        "/etc/pht-station/station.yaml",
        &config,
    );
    let prevented = restart_prevented(&unit);
    assert!(prevented.contains(&"3".to_string()), "{prevented:?}");
    let said = run(&mut command_of(&the_command(&unit, "ExecStart")))
        .code(3)
        .stderr;
    // --log-format json: even the refusal is one JSON object, naming the file.
    let line = said.lines().last().unwrap_or_default();
    let refusal: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON: `{said}`: {error}"));
    assert_eq!(refusal["exit_code"], 3);
    assert!(
        refusal["error"].as_str().unwrap().contains("station.yaml"),
        "{refusal}"
    );
}
