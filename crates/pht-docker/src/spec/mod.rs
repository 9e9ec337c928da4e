//! The container specification of one sandboxed run, built from a fully resolved [`RunSpec`].
//!
//! Owns: validating what the station hands over (run id, image id, user, dataset mounts, limits)
//! and turning it into the exact Docker request bodies of a run — the train container
//! ([`container_body`]), its per-run `/output` volume ([`output_volume_request`]) and the small
//! container that keeps that volume mounted until the outputs are collected
//! ([`output_holder_body`]). Pure: no Docker calls, no file system access, no clock.
//!
//! Does not decide *which* limits, mounts or runtime a run gets: that is the station's policy,
//! already applied when a `RunSpec` reaches this module. What this module does decide is that
//! every run gets the sandbox defaults of `DESIGN.md`, which no `RunSpec` can switch off.
//!
//! The checks on each input are in `validate.rs`; the snapshot and refusal tests in `tests.rs`.

#[cfg(test)]
mod tests;
mod validate;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, DeviceRequest, HostConfig, HostConfigCgroupnsModeEnum,
    HostConfigLogConfig, Mount, MountBindOptions, MountBindOptionsPropagationEnum, MountType,
    MountVolumeOptions, ResourcesUlimits, RestartPolicy, RestartPolicyNameEnum,
    VolumeCreateRequest,
};
use sha2::{Digest as _, Sha256};

use self::validate::{
    validate_dataset_name, validate_host_path, validate_image_id, validate_limits, validate_run_id,
    validate_runtime,
};

/// Label carrying the run id on every container and volume of a run.
pub const LABEL_RUN_ID: &str = "org.pht.run-id";
/// Label marking every container and volume this crate creates, so leftovers can be found.
pub const LABEL_MANAGED: &str = "org.pht.managed";
/// Label saying what a resource is for: [`ROLE_TRAIN`], [`ROLE_OUTPUT_HOLDER`] or
/// [`ROLE_OUTPUT_VOLUME`].
pub const LABEL_ROLE: &str = "org.pht.role";
pub const ROLE_TRAIN: &str = "train";
pub const ROLE_OUTPUT_HOLDER: &str = "output-holder";
pub const ROLE_OUTPUT_VOLUME: &str = "output";
/// Label on a spare output slot (holder and volume): its [`OutputSlotSpec::key`].
pub const LABEL_OUTPUT_SLOT: &str = "org.pht.output-slot";
/// Label on an output holder naming the volume it keeps mounted.
pub const LABEL_OUTPUT_VOLUME: &str = "org.pht.output-volume";

/// Where the train finds its inputs and leaves its outputs.
pub const DATA_MOUNT_ROOT: &str = "/data";
pub const PARAMS_MOUNT_PATH: &str = "/input/params.json";
/// Where the previous stop's state is mounted, read-only.
const STATE_MOUNT_PATH: &str = "/input/state";
pub const OUTPUT_MOUNT_PATH: &str = "/output";
pub const TMP_MOUNT_PATH: &str = "/tmp";

/// The user a train runs as unless the station says otherwise: `nobody:nogroup`.
pub const DEFAULT_USER: ContainerUser = ContainerUser {
    uid: 65534,
    gid: 65534,
};

/// The output holder only sleeps; these limits keep it from doing anything else.
const OUTPUT_HOLDER_MEMORY_BYTES: i64 = 16 * 1024 * 1024;
// The holder only sleeps, but runc starts it inside its cgroup: at 0.01 CPU the start itself was
// throttled to about 2 s (measured), which doubled a trivial run. A quarter CPU starts it in
// the same time as an unlimited container and still caps a holder that misbehaved.
const OUTPUT_HOLDER_NANO_CPUS: i64 = 250_000_000;
const OUTPUT_HOLDER_PIDS: i64 = 4;

/// What can be wrong with a run specification. Every message names the offending input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("run id {run_id:?} must be 1 to 64 characters of [A-Za-z0-9_.-] starting with a letter or digit")]
    InvalidRunId { run_id: String },
    #[error("image id {image_id:?} must be a local image id, `sha256:` and 64 lowercase hex digits (images are referenced by id, never by tag)")]
    InvalidImageId { image_id: String },
    #[error("user {user:?} must be numeric `uid:gid`: a user name would be resolved through the image's /etc/passwd, which the train controls")]
    InvalidUser { user: String },
    #[error("user {user:?} is root: trains never run with uid or gid 0")]
    RootUser { user: String },
    #[error("dataset name {name:?} must be 1 to 64 characters of [a-z0-9_-]")]
    InvalidDatasetName { name: String },
    #[error("dataset {name:?} is mounted twice")]
    DuplicateDataset { name: String },
    #[error("host path {path:?} must be absolute")]
    RelativeHostPath { path: PathBuf },
    #[error("host path {path:?} must not contain `..` or `.` components")]
    UnnormalizedHostPath { path: PathBuf },
    #[error("host path {path:?} is not valid UTF-8, which Docker's mount API cannot carry")]
    NonUtf8HostPath { path: PathBuf },
    #[error(
        "host path {path:?} is or contains the Docker socket, which is never mounted into a train"
    )]
    DockerSocketMount { path: PathBuf },
    #[error("runtime {runtime:?} must be 1 to 64 characters of [A-Za-z0-9_.-]")]
    InvalidRuntime { runtime: String },
    #[error("run limit {limit_name} is {value}, but must be between {minimum} and {maximum}")]
    LimitOutOfRange {
        limit_name: &'static str,
        value: String,
        minimum: String,
        maximum: String,
    },
}

/// The limits of one run. The station fills them in from its policy; [`RunSpec::new`] checks
/// that Docker can enforce them.
///
/// `/tmp`, `/dev/shm` and `/output` are tmpfs: what the train writes there is RAM, charged to
/// the train's memory limit. A train that writes more than `memory_bytes` allows is OOM-killed
/// before it reaches `output_bytes`, so a policy gives `memory_bytes` room for the outputs on
/// top of the working set. Until the outputs are collected, each running train can hold up to
/// `output_bytes` of the host's memory.
#[derive(Debug, Clone, PartialEq)]
pub struct RunLimits {
    /// CPU time in billionths of a CPU: `1_000_000_000` is one full CPU.
    pub nano_cpus: u64,
    /// Memory, with no swap on top.
    pub memory_bytes: u64,
    /// Processes and threads together, the init process included.
    pub pids: u64,
    /// Time from start to kill.
    pub wall_clock: Duration,
    /// Size of the `/tmp` tmpfs.
    pub tmp_bytes: u64,
    /// Size of the `/output` file system; the kernel refuses writes beyond it.
    pub output_bytes: u64,
    /// Files, directories and links `/output` may hold.
    pub output_files: u64,
    /// Bytes of stdout and stderr kept; the rest is counted, not kept.
    pub log_bytes: u64,
}

impl RunLimits {
    /// Converts a CPU count such as `1.5` into [`RunLimits::nano_cpus`], rounding down.
    pub fn nano_cpus_from_cpus(cpus: f64) -> u64 {
        if cpus.is_finite() && cpus > 0.0 {
            (cpus * 1e9) as u64
        } else {
            0
        }
    }
}

/// The numeric user a train runs as. Never root; see [`SpecError::RootUser`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerUser {
    uid: u32,
    gid: u32,
}

impl ContainerUser {
    /// Parses `uid:gid`. Both parts are required: with the group left out, Docker falls back to
    /// the image's /etc/passwd, or to group 0 when the image has none.
    pub fn parse(user: &str) -> Result<Self, SpecError> {
        let invalid = || SpecError::InvalidUser {
            user: user.to_string(),
        };
        let is_root = |text: &str| {
            text == "root" || (!text.is_empty() && text.bytes().all(|byte| byte == b'0'))
        };
        if user.split(':').any(is_root) {
            return Err(SpecError::RootUser {
                user: user.to_string(),
            });
        }
        let (uid_text, gid_text) = user.split_once(':').ok_or_else(invalid)?;
        let parse_id = |text: &str| {
            if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
                return Err(invalid());
            }
            text.parse::<u32>().map_err(|_| invalid())
        };
        let container_user = ContainerUser {
            uid: parse_id(uid_text)?,
            gid: parse_id(gid_text)?,
        };
        if container_user.uid == 0 || container_user.gid == 0 {
            return Err(SpecError::RootUser {
                user: user.to_string(),
            });
        }
        Ok(container_user)
    }

    pub fn uid(&self) -> u32 {
        self.uid
    }

    pub fn gid(&self) -> u32 {
        self.gid
    }
}

impl fmt::Display for ContainerUser {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}:{}", self.uid, self.gid)
    }
}

/// A dataset directory on the host, mounted read-only at `/data/<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetMount {
    name: String,
    host_path: String,
}

impl DatasetMount {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn host_path(&self) -> &Path {
        Path::new(&self.host_path)
    }

    pub fn container_path(&self) -> String {
        format!("{DATA_MOUNT_ROOT}/{}", self.name)
    }
}

/// A fully resolved, validated run: what the station hands the sandbox once policy has approved
/// it. Built with [`RunSpec::new`] and the `with_*` methods, each of which validates its input,
/// so a `RunSpec` that exists is one Docker can run as specified.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSpec {
    run_id: String,
    image_id: String,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    user: ContainerUser,
    datasets: Vec<DatasetMount>,
    params_file: Option<String>,
    state_dir: Option<String>,
    limits: RunLimits,
    runtime: Option<String>,
    gpu: bool,
}

impl RunSpec {
    /// A run of the local image `image_id` (`sha256:<hex>`) as `65534:65534`, with no datasets,
    /// no params file, the image's own entrypoint and command, the engine's default runtime and
    /// no GPU.
    pub fn new(run_id: &str, image_id: &str, limits: RunLimits) -> Result<Self, SpecError> {
        validate_run_id(run_id)?;
        validate_image_id(image_id)?;
        validate_limits(&limits)?;
        Ok(RunSpec {
            run_id: run_id.to_string(),
            image_id: image_id.to_string(),
            entrypoint: None,
            cmd: None,
            user: DEFAULT_USER,
            datasets: Vec::new(),
            params_file: None,
            state_dir: None,
            limits,
            runtime: None,
            gpu: false,
        })
    }

    /// Runs the train as `uid:gid` instead of `65534:65534`; root is refused.
    pub fn with_user(mut self, user: &str) -> Result<Self, SpecError> {
        self.user = ContainerUser::parse(user)?;
        Ok(self)
    }

    /// Replaces the image's entrypoint.
    pub fn with_entrypoint(mut self, entrypoint: Vec<String>) -> Self {
        self.entrypoint = Some(entrypoint);
        self
    }

    /// Replaces the image's command.
    pub fn with_cmd(mut self, cmd: Vec<String>) -> Self {
        self.cmd = Some(cmd);
        self
    }

    /// Mounts the host directory `host_path` read-only at `/data/<name>`.
    pub fn with_dataset(
        mut self,
        name: &str,
        host_path: impl Into<PathBuf>,
    ) -> Result<Self, SpecError> {
        validate_dataset_name(name)?;
        if self.datasets.iter().any(|dataset| dataset.name == name) {
            return Err(SpecError::DuplicateDataset {
                name: name.to_string(),
            });
        }
        let host_path = validate_host_path(host_path.into())?;
        self.datasets.push(DatasetMount {
            name: name.to_string(),
            host_path,
        });
        Ok(self)
    }

    /// Mounts the host file `host_path` read-only at `/input/params.json`.
    pub fn with_params_file(mut self, host_path: impl Into<PathBuf>) -> Result<Self, SpecError> {
        self.params_file = Some(validate_host_path(host_path.into())?);
        Ok(self)
    }

    /// Runs the train under another OCI runtime registered with the engine, such as `runsc`.
    pub fn with_runtime(mut self, runtime: &str) -> Result<Self, SpecError> {
        validate_runtime(runtime)?;
        self.runtime = Some(runtime.to_string());
        Ok(self)
    }

    /// Gives the train every GPU of the host, where policy grants it.
    pub fn with_gpu(mut self, gpu: bool) -> Self {
        self.gpu = gpu;
        self
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub fn image_id(&self) -> &str {
        &self.image_id
    }

    pub fn entrypoint(&self) -> Option<&[String]> {
        self.entrypoint.as_deref()
    }

    pub fn cmd(&self) -> Option<&[String]> {
        self.cmd.as_deref()
    }

    pub fn user(&self) -> ContainerUser {
        self.user
    }

    pub fn datasets(&self) -> &[DatasetMount] {
        &self.datasets
    }

    /// Mounts the host directory `host_path` read-only at `/input/state`: the state the
    /// previous stop of a sequential route handed over.
    pub fn with_state_dir(mut self, host_path: impl Into<PathBuf>) -> Result<Self, SpecError> {
        self.state_dir = Some(validate_host_path(host_path.into())?);
        Ok(self)
    }

    pub fn state_dir(&self) -> Option<&Path> {
        self.state_dir.as_deref().map(Path::new)
    }

    pub fn params_file(&self) -> Option<&Path> {
        self.params_file.as_deref().map(Path::new)
    }

    pub fn limits(&self) -> &RunLimits {
        &self.limits
    }

    pub fn runtime(&self) -> Option<&str> {
        self.runtime.as_deref()
    }

    pub fn gpu(&self) -> bool {
        self.gpu
    }

    /// The labels every resource of this run carries (plus a role label per resource).
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_RUN_ID.to_string(), self.run_id.clone()),
            (LABEL_MANAGED.to_string(), "true".to_string()),
        ])
    }

    /// The names of the Docker resources of this run, derived from the run id so that a second
    /// run with the same id fails loudly instead of sharing them.
    pub fn resource_names(&self) -> RunResourceNames {
        RunResourceNames {
            train_container: format!("pht-run-{}", self.run_id),
            output_holder_container: format!("pht-run-{}-output", self.run_id),
            output_volume: format!("pht-run-{}-output", self.run_id),
        }
    }
}

/// The Docker names of one run's resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunResourceNames {
    pub train_container: String,
    /// The holder and volume of a run whose `/output` is a volume; a run whose `/output` is a
    /// host tmpfs has neither (the sandbox's output slot says which a run has).
    pub output_holder_container: String,
    pub output_volume: String,
}

/// Where a train's `/output` comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMount<'a> {
    /// A named tmpfs volume (see [`output_volume_request`]), kept mounted by a holder.
    Volume(&'a str),
    /// A host directory: the tmpfs the station mounted itself (see [`crate::host_output`]).
    HostDir(&'a str),
}

/// The train container: every sandbox default of `DESIGN.md`, with the run's limits and mounts.
///
/// The caller creates what `output` names first and removes it afterwards.
pub fn container_body(spec: &RunSpec, output: OutputMount<'_>) -> ContainerCreateBody {
    let limits = spec.limits();
    let mut mounts: Vec<Mount> = spec
        .datasets()
        .iter()
        .map(|dataset| read_only_bind_mount(&dataset.host_path, &dataset.container_path()))
        .collect();
    if let Some(state_dir) = &spec.state_dir {
        mounts.push(read_only_bind_mount(state_dir, STATE_MOUNT_PATH));
    }
    if let Some(params_file) = &spec.params_file {
        mounts.push(read_only_bind_mount(params_file, PARAMS_MOUNT_PATH));
    }
    mounts.push(match output {
        OutputMount::Volume(volume) => output_volume_mount(volume, false),
        OutputMount::HostDir(dir) => Mount {
            target: Some(OUTPUT_MOUNT_PATH.to_string()),
            source: Some(dir.to_string()),
            typ: Some(MountType::BIND),
            read_only: Some(false),
            bind_options: Some(MountBindOptions {
                propagation: Some(MountBindOptionsPropagationEnum::RPRIVATE),
                non_recursive: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        },
    });

    let device_requests = spec.gpu().then(|| {
        // The same request as `docker run --gpus all`.
        vec![DeviceRequest {
            driver: Some(String::new()),
            count: Some(-1),
            capabilities: Some(vec![vec!["gpu".to_string()]]),
            ..Default::default()
        }]
    });

    ContainerCreateBody {
        image: Some(spec.image_id().to_string()),
        entrypoint: spec.entrypoint.clone(),
        cmd: spec.cmd.clone(),
        user: Some(spec.user().to_string()),
        labels: Some(labels_with_role(spec, ROLE_TRAIN)),
        attach_stdin: Some(false),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        open_stdin: Some(false),
        tty: Some(false),
        host_config: Some(HostConfig {
            network_mode: Some("none".to_string()),
            cap_drop: Some(vec!["ALL".to_string()]),
            security_opt: Some(vec!["no-new-privileges".to_string()]),
            privileged: Some(false),
            readonly_rootfs: Some(true),
            ipc_mode: Some("private".to_string()),
            cgroupns_mode: Some(HostConfigCgroupnsModeEnum::PRIVATE),
            // A small init reaps the zombies a train's helper processes leave behind, which
            // would otherwise count against the pids limit, and gives the train the signal
            // handling a process expects.
            init: Some(true),
            pids_limit: Some(saturating_i64(limits.pids)),
            memory: Some(saturating_i64(limits.memory_bytes)),
            // Equal to `memory`: no swap on top of the memory limit.
            memory_swap: Some(saturating_i64(limits.memory_bytes)),
            nano_cpus: Some(saturating_i64(limits.nano_cpus)),
            // A crashing train must not hand a memory image of the data to the host's core
            // dump handler.
            ulimits: Some(vec![ResourcesUlimits {
                name: Some("core".to_string()),
                soft: Some(0),
                hard: Some(0),
            }]),
            tmpfs: Some(HashMap::from([(
                TMP_MOUNT_PATH.to_string(),
                format!("size={},mode=1777,noexec,nosuid,nodev", limits.tmp_bytes),
            )])),
            // /dev/shm is the other writable tmpfs; it gets no more room than /tmp.
            shm_size: Some(saturating_i64(limits.tmp_bytes)),
            mounts: Some(mounts),
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".to_string()),
                config: Some(HashMap::from([
                    ("max-size".to_string(), limits.log_bytes.to_string()),
                    ("max-file".to_string(), "1".to_string()),
                ])),
            }),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            auto_remove: Some(false),
            publish_all_ports: Some(false),
            device_requests,
            runtime: spec.runtime().map(str::to_string),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What a run's `/output` slot (its tmpfs volume and the holder container keeping it mounted) is
/// made of. Two runs whose slot specs are equal can use each other's spare slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputSlotSpec {
    pub output_bytes: u64,
    pub output_files: u64,
    pub user: ContainerUser,
}

impl OutputSlotSpec {
    /// A short fingerprint of the slot and the holder image it runs, put on spare slots as
    /// [`LABEL_OUTPUT_SLOT`]: a spare is only ever handed to a run whose key is the same.
    pub fn key(&self, holder_image_id: &str) -> String {
        let canonical = format!(
            "output_bytes={};output_files={};user={};holder={holder_image_id}",
            self.output_bytes, self.output_files, self.user
        );
        let digest = Sha256::digest(canonical.as_bytes());
        hex::encode(&digest[..8])
    }
}

impl OutputSlotSpec {
    /// The tmpfs options that enforce the slot's caps, whoever mounts it: at most
    /// `output_bytes`, at most `output_files` entries, and a root only the train's user can use.
    pub fn tmpfs_options(&self) -> String {
        format!(
            "size={},nr_inodes={},uid={},gid={},mode=0700",
            self.output_bytes,
            // The root directory of the file system takes one inode.
            self.output_files.saturating_add(1),
            self.user.uid(),
            self.user.gid(),
        )
    }
}

impl RunSpec {
    pub fn output_slot(&self) -> OutputSlotSpec {
        OutputSlotSpec {
            output_bytes: self.limits.output_bytes,
            output_files: self.limits.output_files,
            user: self.user,
        }
    }
}

/// The per-run `/output` volume: a tmpfs of `output_bytes` holding at most `output_files`
/// entries, owned by the train's user. The kernel refuses writes beyond the cap with ENOSPC, so
/// the limit holds however fast the train writes.
pub fn output_volume_request(spec: &RunSpec, volume_name: &str) -> VolumeCreateRequest {
    output_slot_volume_request(
        &spec.output_slot(),
        volume_name,
        labels_with_role(spec, ROLE_OUTPUT_VOLUME),
    )
}

/// [`output_volume_request`] for a slot, with the labels given.
pub fn output_slot_volume_request(
    slot: &OutputSlotSpec,
    volume_name: &str,
    labels: HashMap<String, String>,
) -> VolumeCreateRequest {
    let mount_options = format!("{},noexec,nosuid,nodev", slot.tmpfs_options());
    VolumeCreateRequest {
        name: Some(volume_name.to_string()),
        driver: Some("local".to_string()),
        driver_opts: Some(HashMap::from([
            ("type".to_string(), "tmpfs".to_string()),
            ("device".to_string(), "tmpfs".to_string()),
            ("o".to_string(), mount_options),
        ])),
        labels: Some(labels),
        ..Default::default()
    }
}

/// The output holder: a container that does nothing but keep the `/output` volume mounted.
///
/// Docker's local driver mounts a tmpfs volume when its first container starts and unmounts it,
/// contents and all, when its last container stops. The holder is started before the train and
/// outlives it, so what the train wrote is still there to be collected through the archive API.
/// It mounts the volume read-only, has no network, no capabilities and no room to do anything
/// else, and runs `holder_image_id`, an image the sandbox builds itself.
pub fn output_holder_body(
    spec: &RunSpec,
    holder_image_id: &str,
    output_volume: &str,
) -> ContainerCreateBody {
    output_slot_holder_body(
        &spec.output_slot(),
        holder_image_id,
        output_volume,
        labels_with_role(spec, ROLE_OUTPUT_HOLDER),
    )
}

/// [`output_holder_body`] for a slot, with the labels given.
pub fn output_slot_holder_body(
    slot: &OutputSlotSpec,
    holder_image_id: &str,
    output_volume: &str,
    labels: HashMap<String, String>,
) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(holder_image_id.to_string()),
        user: Some(slot.user.to_string()),
        labels: Some(labels),
        attach_stdin: Some(false),
        attach_stdout: Some(false),
        attach_stderr: Some(false),
        open_stdin: Some(false),
        tty: Some(false),
        host_config: Some(HostConfig {
            network_mode: Some("none".to_string()),
            cap_drop: Some(vec!["ALL".to_string()]),
            security_opt: Some(vec!["no-new-privileges".to_string()]),
            privileged: Some(false),
            readonly_rootfs: Some(true),
            ipc_mode: Some("private".to_string()),
            pids_limit: Some(OUTPUT_HOLDER_PIDS),
            memory: Some(OUTPUT_HOLDER_MEMORY_BYTES),
            memory_swap: Some(OUTPUT_HOLDER_MEMORY_BYTES),
            nano_cpus: Some(OUTPUT_HOLDER_NANO_CPUS),
            mounts: Some(vec![output_volume_mount(output_volume, true)]),
            log_config: Some(HostConfigLogConfig {
                typ: Some("none".to_string()),
                config: None,
            }),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            auto_remove: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn labels_with_role(spec: &RunSpec, role: &str) -> HashMap<String, String> {
    let mut labels: HashMap<String, String> = spec.labels().into_iter().collect();
    labels.insert(LABEL_ROLE.to_string(), role.to_string());
    labels
}

fn read_only_bind_mount(host_path: &str, container_path: &str) -> Mount {
    Mount {
        target: Some(container_path.to_string()),
        source: Some(host_path.to_string()),
        typ: Some(MountType::BIND),
        read_only: Some(true),
        bind_options: Some(MountBindOptions {
            propagation: Some(MountBindOptionsPropagationEnum::RPRIVATE),
            // Docker 20.10 makes only the top of a bind read-only, not the mounts below it.
            // Leaving those out keeps every path under /data read-only.
            non_recursive: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn output_volume_mount(output_volume: &str, read_only: bool) -> Mount {
    Mount {
        target: Some(OUTPUT_MOUNT_PATH.to_string()),
        source: Some(output_volume.to_string()),
        typ: Some(MountType::VOLUME),
        read_only: Some(read_only),
        volume_options: Some(MountVolumeOptions {
            // Never copy what the image has at /output into the volume: only the run's own
            // writes are outputs.
            no_copy: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
