//! A [`SandboxEngine`] for the unit tests: it records every call as one line, answers as a
//! well-behaved Docker would, and fails the call it is told to.
//!
//! Owns: the fake and the canned answers (an archive of `/output` holding `result.txt`, two log
//! chunks, a crashed run's leftovers). Does not assert anything: the tests in `tests.rs` do.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, VolumeCreateRequest};
use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};

use super::cleanup::RunResources;
use super::engine::{ExitState, ListedContainer, SandboxEngine};
use super::error::RemovalFailure;
use crate::collect::{self, CollectError, CollectLimits, CollectedOutputs};
use crate::spec::{OutputSlotSpec, LABEL_OUTPUT_VOLUME};

/// An archive of /output holding `result.txt`.
fn output_archive() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_size(0);
    header.set_mode(0o700);
    header.set_cksum();
    builder
        .append_data(&mut header, "output/", std::io::empty())
        .expect("in-memory tar");
    let content = b"rows=3\n";
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "output/result.txt", &content[..])
        .expect("in-memory tar");
    builder.into_inner().expect("in-memory tar")
}

/// Records every call as one line and fails the call whose line equals `fail_call`.
#[derive(Default)]
pub(super) struct FakeEngine {
    pub(super) calls: Mutex<Vec<String>>,
    pub(super) fail_call: Option<String>,
    /// The train never exits on its own; only a kill ends it.
    pub(super) train_hangs: bool,
    /// The kernel kills the train for memory, and Docker's state misses it: only the `oom`
    /// event tells.
    pub(super) oom_event: bool,
    pub(super) killed: AtomicBool,
    pub(super) image_volume_paths: Vec<String>,
    pub(super) created_bodies: Mutex<Vec<ContainerCreateBody>>,
    /// What `list_containers` and `list_volumes` answer; `None`: a crashed run's leftovers.
    pub(super) listed: Option<Vec<ListedContainer>>,
    pub(super) volumes: Option<Vec<String>>,
    /// Containers whose rename fails with 409, as when another process claimed them first.
    pub(super) claimed_elsewhere: Vec<String>,
    /// The output holder is no longer running when the train exits.
    pub(super) holder_stopped: bool,
    /// The sandbox mounts `/output` on the host instead of using a volume.
    pub(super) host_outputs: bool,
}

impl FakeEngine {
    pub(super) fn failing_at(call: &str) -> Self {
        FakeEngine {
            fail_call: Some(call.to_string()),
            ..Default::default()
        }
    }

    /// `fail_call` ending in `*` fails every call starting with what precedes it.
    fn record(&self, call: String) -> Result<(), DockerError> {
        let fails = match self.fail_call.as_deref() {
            Some(pattern) => match pattern.strip_suffix('*') {
                Some(prefix) => call.starts_with(prefix),
                None => pattern == call,
            },
            None => false,
        };
        self.calls.lock().expect("not poisoned").push(call);
        if fails {
            Err(DockerError::DockerResponseServerError {
                status_code: 500,
                message: "injected failure".to_string(),
            })
        } else {
            Ok(())
        }
    }

    pub(super) fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("not poisoned").clone()
    }
}

impl SandboxEngine for FakeEngine {
    fn station_id(&self) -> &str {
        "test-station"
    }

    async fn output_holder_image(&self) -> Result<String, DockerError> {
        self.record("output_holder_image".to_string())?;
        Ok("sha256:holder".to_string())
    }

    async fn image_volume_paths(&self, image_id: &str) -> Result<Vec<String>, DockerError> {
        self.record(format!("image_volume_paths {image_id}"))?;
        Ok(self.image_volume_paths.clone())
    }

    async fn create_volume(&self, request: VolumeCreateRequest) -> Result<(), DockerError> {
        self.record(format!(
            "create_volume {}",
            request.name.unwrap_or_default()
        ))
    }

    async fn create_container(
        &self,
        name: &str,
        body: ContainerCreateBody,
    ) -> Result<(), DockerError> {
        self.created_bodies.lock().expect("not poisoned").push(body);
        self.record(format!("create_container {name}"))
    }

    async fn attach_output(
        &self,
        name: &str,
    ) -> Result<BoxStream<'static, Result<LogOutput, DockerError>>, DockerError> {
        self.record(format!("attach_output {name}"))?;
        let chunks = vec![
            Ok(LogOutput::StdOut {
                message: Bytes::from_static(b"0123456789"),
            }),
            Ok(LogOutput::StdErr {
                message: Bytes::from_static(b"abcdefghij"),
            }),
        ];
        Ok(futures_util::stream::iter(chunks).boxed())
    }

    async fn rename_container(&self, name: &str, new_name: &str) -> Result<(), DockerError> {
        self.record(format!("rename_container {name} {new_name}"))?;
        if self.claimed_elsewhere.iter().any(|claimed| claimed == name) {
            return Err(DockerError::DockerResponseServerError {
                status_code: 409,
                message: "name in use".to_string(),
            });
        }
        Ok(())
    }

    async fn is_running(&self, name: &str) -> Result<bool, DockerError> {
        self.record(format!("is_running {name}"))?;
        Ok(!self.holder_stopped)
    }

    fn host_output_dir(&self, run_id: &str) -> Option<String> {
        self.host_outputs.then(|| format!("/outputs/{run_id}"))
    }

    fn mount_host_output(&self, dir: &str, _slot: &OutputSlotSpec) -> io::Result<()> {
        self.record(format!("mount_host_output {dir}"))
            .map_err(io::Error::other)
    }

    async fn collect_host_output(
        &self,
        dir: &str,
        limits: CollectLimits,
    ) -> Result<CollectedOutputs, CollectError> {
        self.record(format!("collect_host_output {dir}"))
            .map_err(|error| CollectError::Walk {
                dir: dir.to_string(),
                source: io::Error::other(error),
            })?;
        Ok(
            collect::collect_outputs(output_archive().as_slice(), "output", &limits)
                .expect("a valid archive"),
        )
    }

    fn release_host_output(&self, dir: &str) -> io::Result<()> {
        self.record(format!("release_host_output {dir}"))
            .map_err(io::Error::other)
    }

    fn release_stale_host_outputs(
        &self,
        _is_stale: &dyn Fn(&str) -> bool,
    ) -> (Vec<String>, Vec<RemovalFailure>) {
        let _ = self.record("release_all_host_outputs".to_string());
        (Vec::new(), Vec::new())
    }

    async fn start_container(&self, name: &str) -> Result<(), DockerError> {
        self.record(format!("start_container {name}"))
    }

    async fn wait_container(&self, name: &str) -> Result<(), DockerError> {
        self.record(format!("wait_container {name}"))?;
        if self.train_hangs && !self.killed.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        Ok(())
    }

    async fn kill_container(&self, name: &str) -> Result<(), DockerError> {
        self.killed.store(true, Ordering::SeqCst);
        self.record(format!("kill_container {name}"))
    }

    async fn inspect_exit(&self, name: &str) -> Result<ExitState, DockerError> {
        self.record(format!("inspect_exit {name}"))?;
        let killed = self.killed.load(Ordering::SeqCst);
        Ok(ExitState {
            exit_code: Some(if killed || self.oom_event { 137 } else { 0 }),
            oom_killed: false,
        })
    }

    fn oom_events(&self, name: &str) -> BoxStream<'static, Result<(), DockerError>> {
        match self.record(format!("oom_events {name}")) {
            Ok(()) if self.oom_event => futures_util::stream::iter(vec![Ok(())]).boxed(),
            Ok(()) => futures_util::stream::pending().boxed(),
            Err(error) => futures_util::stream::iter(vec![Err(error)]).boxed(),
        }
    }

    fn download_archive(
        &self,
        name: &str,
        path: &str,
    ) -> BoxStream<'static, Result<Bytes, DockerError>> {
        match self.record(format!("download_archive {name} {path}")) {
            Ok(()) => {
                let chunks: Vec<Result<Bytes, DockerError>> = output_archive()
                    .chunks(700)
                    .map(|chunk| Ok(Bytes::copy_from_slice(chunk)))
                    .collect();
                futures_util::stream::iter(chunks).boxed()
            }
            Err(error) => futures_util::stream::iter(vec![Err(error)]).boxed(),
        }
    }

    async fn remove_container(&self, name: &str) -> Result<(), DockerError> {
        self.record(format!("remove_container {name}"))
    }

    async fn remove_volume(&self, name: &str) -> Result<(), DockerError> {
        self.record(format!("remove_volume {name}"))
    }

    async fn list_containers(
        &self,
        labels: &[String],
    ) -> Result<Vec<ListedContainer>, DockerError> {
        self.record(format!("list_containers {}", labels.join(",")))?;
        Ok(self.listed.clone().unwrap_or_else(|| {
            vec![
                listed("pht-run-old", false, &[]),
                listed(
                    "pht-run-old-output",
                    true,
                    &[(LABEL_OUTPUT_VOLUME, "pht-run-old-output")],
                ),
            ]
        }))
    }

    async fn list_volumes(&self, labels: &[String]) -> Result<Vec<String>, DockerError> {
        self.record(format!("list_volumes {}", labels.join(",")))?;
        Ok(self
            .volumes
            .clone()
            .unwrap_or_else(|| vec!["pht-run-old-output".to_string()]))
    }

    fn spawn_cleanup(&self, resources: RunResources) {
        let _ = self.record(format!("spawn_cleanup {}", resources.train_container));
    }
}

pub(super) fn listed(name: &str, running: bool, labels: &[(&str, &str)]) -> ListedContainer {
    ListedContainer {
        name: name.to_string(),
        running,
        labels: labels
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect(),
    }
}
