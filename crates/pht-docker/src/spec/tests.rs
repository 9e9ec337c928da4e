//! The unit tests of the container specification: snapshots of the request bodies a typical
//! run produces (what a reviewer should see change), and one check per refusal with its message.

use super::*;
use expect_test::{expect, Expect};

const IMAGE_ID: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const HOLDER_IMAGE_ID: &str =
    "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

fn typical_limits() -> RunLimits {
    RunLimits {
        nano_cpus: RunLimits::nano_cpus_from_cpus(1.5),
        memory_bytes: 512 * 1024 * 1024,
        pids: 128,
        wall_clock: Duration::from_secs(3600),
        tmp_bytes: 64 * 1024 * 1024,
        output_bytes: 16 * 1024 * 1024,
        output_files: 1000,
        log_bytes: 1024 * 1024,
    }
}

fn typical_spec() -> RunSpec {
    RunSpec::new("job-42.station-a", IMAGE_ID, typical_limits())
        .and_then(|spec| spec.with_dataset("cohort", "/srv/pht/datasets/cohort"))
        .and_then(|spec| spec.with_dataset("registry_2024", "/srv/pht/datasets/registry"))
        .and_then(|spec| spec.with_params_file("/var/lib/pht/runs/job-42/params.json"))
        .expect("the typical spec is valid")
}

/// JSON with every object's keys sorted, so that Docker's `HashMap`s snapshot stably.
fn canonical_json(value: &impl serde::Serialize) -> String {
    fn sort_keys(value: serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::Object(map) => {
                let sorted: BTreeMap<String, serde_json::Value> = map
                    .into_iter()
                    .map(|(key, value)| (key, sort_keys(value)))
                    .collect();
                serde_json::Value::Object(sorted.into_iter().collect())
            }
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.into_iter().map(sort_keys).collect())
            }
            other => other,
        }
    }
    let value = serde_json::to_value(value).expect("bollard models serialize");
    serde_json::to_string_pretty(&sort_keys(value)).expect("json values serialize")
}

#[test]
fn output_on_a_host_tmpfs_is_a_writable_private_bind_of_that_directory_alone() {
    let body = container_body(
        &typical_spec(),
        OutputMount::HostDir("/var/lib/pht/outputs/job-42.station-a"),
    );
    let mounts = body
        .host_config
        .and_then(|host_config| host_config.mounts)
        .expect("mounts are always set");
    let output_mount = mounts
        .iter()
        .find(|mount| mount.target.as_deref() == Some(OUTPUT_MOUNT_PATH))
        .expect("/output is mounted");
    expect![[r#"
        {
          "BindOptions": {
            "NonRecursive": true,
            "Propagation": "rprivate"
          },
          "ReadOnly": false,
          "Source": "/var/lib/pht/outputs/job-42.station-a",
          "Target": "/output",
          "Type": "bind"
        }"#]]
    .assert_eq(&canonical_json(output_mount));
}

#[test]
fn train_container_body_of_a_typical_run() {
    let body = container_body(
        &typical_spec(),
        OutputMount::Volume("pht-run-job-42.station-a-output"),
    );
    expect![[r#"
        {
          "AttachStderr": true,
          "AttachStdin": false,
          "AttachStdout": true,
          "HostConfig": {
            "AutoRemove": false,
            "CapDrop": [
              "ALL"
            ],
            "CgroupnsMode": "private",
            "Init": true,
            "IpcMode": "private",
            "LogConfig": {
              "Config": {
                "max-file": "1",
                "max-size": "1048576"
              },
              "Type": "json-file"
            },
            "Memory": 536870912,
            "MemorySwap": 536870912,
            "Mounts": [
              {
                "BindOptions": {
                  "NonRecursive": true,
                  "Propagation": "rprivate"
                },
                "ReadOnly": true,
                "Source": "/srv/pht/datasets/cohort",
                "Target": "/data/cohort",
                "Type": "bind"
              },
              {
                "BindOptions": {
                  "NonRecursive": true,
                  "Propagation": "rprivate"
                },
                "ReadOnly": true,
                "Source": "/srv/pht/datasets/registry",
                "Target": "/data/registry_2024",
                "Type": "bind"
              },
              {
                "BindOptions": {
                  "NonRecursive": true,
                  "Propagation": "rprivate"
                },
                "ReadOnly": true,
                "Source": "/var/lib/pht/runs/job-42/params.json",
                "Target": "/input/params.json",
                "Type": "bind"
              },
              {
                "ReadOnly": false,
                "Source": "pht-run-job-42.station-a-output",
                "Target": "/output",
                "Type": "volume",
                "VolumeOptions": {
                  "NoCopy": true
                }
              }
            ],
            "NanoCpus": 1500000000,
            "NetworkMode": "none",
            "PidsLimit": 128,
            "Privileged": false,
            "PublishAllPorts": false,
            "ReadonlyRootfs": true,
            "RestartPolicy": {
              "Name": "no"
            },
            "SecurityOpt": [
              "no-new-privileges"
            ],
            "ShmSize": 67108864,
            "Tmpfs": {
              "/tmp": "size=67108864,mode=1777,noexec,nosuid,nodev"
            },
            "Ulimits": [
              {
                "Hard": 0,
                "Name": "core",
                "Soft": 0
              }
            ]
          },
          "Image": "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
          "Labels": {
            "org.pht.managed": "true",
            "org.pht.role": "train",
            "org.pht.run-id": "job-42.station-a"
          },
          "OpenStdin": false,
          "Tty": false,
          "User": "65534:65534"
        }"#]]
    .assert_eq(&canonical_json(&body));
}

#[test]
fn output_volume_of_a_typical_run_is_a_capped_tmpfs_owned_by_the_train_user() {
    let request = output_volume_request(&typical_spec(), "pht-run-job-42.station-a-output");
    expect![[r#"
        {
          "Driver": "local",
          "DriverOpts": {
            "device": "tmpfs",
            "o": "size=16777216,nr_inodes=1001,uid=65534,gid=65534,mode=0700,noexec,nosuid,nodev",
            "type": "tmpfs"
          },
          "Labels": {
            "org.pht.managed": "true",
            "org.pht.role": "output",
            "org.pht.run-id": "job-42.station-a"
          },
          "Name": "pht-run-job-42.station-a-output"
        }"#]]
    .assert_eq(&canonical_json(&request));
}

#[test]
fn output_holder_of_a_typical_run_mounts_the_volume_read_only() {
    let body = output_holder_body(
        &typical_spec(),
        HOLDER_IMAGE_ID,
        "pht-run-job-42.station-a-output",
    );
    expect![[r#"
        {
          "AttachStderr": false,
          "AttachStdin": false,
          "AttachStdout": false,
          "HostConfig": {
            "AutoRemove": false,
            "CapDrop": [
              "ALL"
            ],
            "IpcMode": "private",
            "LogConfig": {
              "Type": "none"
            },
            "Memory": 16777216,
            "MemorySwap": 16777216,
            "Mounts": [
              {
                "ReadOnly": true,
                "Source": "pht-run-job-42.station-a-output",
                "Target": "/output",
                "Type": "volume",
                "VolumeOptions": {
                  "NoCopy": true
                }
              }
            ],
            "NanoCpus": 250000000,
            "NetworkMode": "none",
            "PidsLimit": 4,
            "Privileged": false,
            "ReadonlyRootfs": true,
            "RestartPolicy": {
              "Name": "no"
            },
            "SecurityOpt": [
              "no-new-privileges"
            ]
          },
          "Image": "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210",
          "Labels": {
            "org.pht.managed": "true",
            "org.pht.role": "output-holder",
            "org.pht.run-id": "job-42.station-a"
          },
          "OpenStdin": false,
          "Tty": false,
          "User": "65534:65534"
        }"#]]
    .assert_eq(&canonical_json(&body));
}

#[test]
fn runtime_gpu_user_and_overrides_reach_the_container_body() {
    let spec = typical_spec()
        .with_runtime("runsc")
        .and_then(|spec| spec.with_user("1000:1000"))
        .expect("valid runtime and user")
        .with_gpu(true)
        .with_entrypoint(vec!["/bin/analysis".to_string()])
        .with_cmd(vec!["--fast".to_string()]);
    let body = container_body(&spec, OutputMount::Volume("volume"));
    let host_config = body.host_config.expect("host config is always set");
    assert_eq!(host_config.runtime.as_deref(), Some("runsc"));
    assert_eq!(body.user.as_deref(), Some("1000:1000"));
    assert_eq!(body.entrypoint, Some(vec!["/bin/analysis".to_string()]));
    assert_eq!(body.cmd, Some(vec!["--fast".to_string()]));
    expect![[r#"
        [
          {
            "Capabilities": [
              [
                "gpu"
              ]
            ],
            "Count": -1,
            "Driver": ""
          }
        ]"#]]
    .assert_eq(&canonical_json(&host_config.device_requests));
    let volume = output_volume_request(&spec, "volume");
    let driver_opts = volume.driver_opts.expect("driver options are always set");
    assert!(
        driver_opts["o"].contains("uid=1000,gid=1000"),
        "the output volume belongs to the train's user: {}",
        driver_opts["o"]
    );
}

#[test]
fn no_devices_without_gpu() {
    let body = container_body(&typical_spec(), OutputMount::Volume("volume"));
    let host_config = body.host_config.expect("host config is always set");
    assert_eq!(host_config.device_requests, None);
    assert_eq!(host_config.devices, None);
}

fn check_refused(result: Result<RunSpec, SpecError>, expected: Expect) {
    match result {
        Ok(spec) => panic!("expected a refusal, got {spec:?}"),
        Err(error) => expected.assert_eq(&error.to_string()),
    }
}

#[test]
fn root_users_are_refused() {
    check_refused(
        typical_spec().with_user("0"),
        expect![[r#"user "0" is root: trains never run with uid or gid 0"#]],
    );
    check_refused(
        typical_spec().with_user("root"),
        expect![[r#"user "root" is root: trains never run with uid or gid 0"#]],
    );
    check_refused(
        typical_spec().with_user("0:65534"),
        expect![[r#"user "0:65534" is root: trains never run with uid or gid 0"#]],
    );
    check_refused(
        typical_spec().with_user("65534:0"),
        expect![[r#"user "65534:0" is root: trains never run with uid or gid 0"#]],
    );
    check_refused(
        typical_spec().with_user("1000"),
        expect![[
            r#"user "1000" must be numeric `uid:gid`: a user name would be resolved through the image's /etc/passwd, which the train controls"#
        ]],
    );
    check_refused(
        typical_spec().with_user("nobody:nogroup"),
        expect![[
            r#"user "nobody:nogroup" must be numeric `uid:gid`: a user name would be resolved through the image's /etc/passwd, which the train controls"#
        ]],
    );
}

#[test]
fn default_user_is_nobody() {
    assert_eq!(typical_spec().user().to_string(), "65534:65534");
}

#[test]
fn docker_socket_is_never_mounted() {
    check_refused(
        typical_spec().with_dataset("sock", "/var/run/docker.sock"),
        expect![[
            r#"host path "/var/run/docker.sock" is or contains the Docker socket, which is never mounted into a train"#
        ]],
    );
    check_refused(
        typical_spec().with_dataset("sock", "/home/someone/.docker/run/docker.sock"),
        expect![[
            r#"host path "/home/someone/.docker/run/docker.sock" is or contains the Docker socket, which is never mounted into a train"#
        ]],
    );
    check_refused(
        typical_spec().with_dataset("run", "/run"),
        expect![[
            r#"host path "/run" is or contains the Docker socket, which is never mounted into a train"#
        ]],
    );
    check_refused(
        typical_spec().with_dataset("root", "/"),
        expect![[
            r#"host path "/" is or contains the Docker socket, which is never mounted into a train"#
        ]],
    );
    check_refused(
        typical_spec().with_params_file("/var/run/docker.sock"),
        expect![[
            r#"host path "/var/run/docker.sock" is or contains the Docker socket, which is never mounted into a train"#
        ]],
    );
}

#[test]
fn host_paths_must_be_absolute_and_normalized() {
    check_refused(
        typical_spec().with_dataset("cohort2", "datasets/cohort"),
        expect![[r#"host path "datasets/cohort" must be absolute"#]],
    );
    check_refused(
        typical_spec().with_dataset("cohort2", "/srv/pht/../../var/run"),
        expect![[r#"host path "/srv/pht/../../var/run" must not contain `..` or `.` components"#]],
    );
}

#[test]
fn dataset_names_are_validated() {
    check_refused(
        typical_spec().with_dataset("../etc", "/srv/x"),
        expect![[r#"dataset name "../etc" must be 1 to 64 characters of [a-z0-9_-]"#]],
    );
    check_refused(
        typical_spec().with_dataset("Cohort", "/srv/x"),
        expect![[r#"dataset name "Cohort" must be 1 to 64 characters of [a-z0-9_-]"#]],
    );
    check_refused(
        typical_spec().with_dataset("", "/srv/x"),
        expect![[r#"dataset name "" must be 1 to 64 characters of [a-z0-9_-]"#]],
    );
    check_refused(
        typical_spec().with_dataset("cohort", "/srv/elsewhere"),
        expect![[r#"dataset "cohort" is mounted twice"#]],
    );
}

#[test]
fn image_must_be_referenced_by_id() {
    check_refused(
        RunSpec::new("run-1", "registry.example/train:latest", typical_limits()),
        expect![[
            r#"image id "registry.example/train:latest" must be a local image id, `sha256:` and 64 lowercase hex digits (images are referenced by id, never by tag)"#
        ]],
    );
    check_refused(
        RunSpec::new("run-1", "sha256:ABC", typical_limits()),
        expect![[
            r#"image id "sha256:ABC" must be a local image id, `sha256:` and 64 lowercase hex digits (images are referenced by id, never by tag)"#
        ]],
    );
}

#[test]
fn run_ids_are_validated() {
    check_refused(
        RunSpec::new("-run", IMAGE_ID, typical_limits()),
        expect![[
            r#"run id "-run" must be 1 to 64 characters of [A-Za-z0-9_.-] starting with a letter or digit"#
        ]],
    );
    check_refused(
        RunSpec::new("run/1", IMAGE_ID, typical_limits()),
        expect![[
            r#"run id "run/1" must be 1 to 64 characters of [A-Za-z0-9_.-] starting with a letter or digit"#
        ]],
    );
}

#[test]
fn limits_docker_cannot_enforce_are_refused() {
    let check_limits = |change: fn(&mut RunLimits), expected: Expect| {
        let mut limits = typical_limits();
        change(&mut limits);
        check_refused(RunSpec::new("run-1", IMAGE_ID, limits), expected);
    };
    check_limits(
        |limits| limits.memory_bytes = 1024,
        expect![
            "run limit memory_bytes is 1024, but must be between 6291456 and 9223372036854775807"
        ],
    );
    check_limits(
        |limits| limits.nano_cpus = 0,
        expect!["run limit nano_cpus is 0, but must be between 10000000 and 9223372036854775807"],
    );
    check_limits(
        |limits| limits.pids = u64::MAX,
        expect![
            "run limit pids is 18446744073709551615, but must be between 2 and 9223372036854775807"
        ],
    );
    check_limits(|limits| limits.wall_clock = Duration::ZERO, expect!["run limit wall_clock is 0ns, but must be between 1ns and 18446744073709551615.999999999s"]);
    check_limits(
        |limits| limits.output_bytes = 100,
        expect!["run limit output_bytes is 100, but must be between 4096 and 9223372036854775807"],
    );
}

#[test]
fn runtime_names_are_validated() {
    check_refused(
        typical_spec().with_runtime("runsc --debug"),
        expect![[r#"runtime "runsc --debug" must be 1 to 64 characters of [A-Za-z0-9_.-]"#]],
    );
}
