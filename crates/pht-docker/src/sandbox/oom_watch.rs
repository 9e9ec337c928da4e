//! Whether the kernel killed a train for memory, when Docker's container state does not say.
//!
//! Owns: [`OomWatch`], which follows a container's `oom` events from before its start, and the
//! grace it gives a late event. Docker sets `State.OOMKilled` only when containerd's OOM event
//! reaches it before the exit event; under load the two race and the state says `false` for a
//! train the kernel did kill (exit code 137, no kill of ours). The `oom` event itself is
//! published either way, so a run whose state is silent asks the watch.
//!
//! Does not decide what a kill means for the run (`run.rs` does) and never fails a run: a watch
//! whose stream errors has simply seen nothing.

use std::time::Duration;

use bollard::errors::Error as DockerError;
use futures_util::stream::{BoxStream, StreamExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a run whose train died of SIGKILL waits for a late `oom` event. Seen late by tens
/// of milliseconds; the wait is paid only by such runs.
pub(super) const LATE_OOM_EVENT_GRACE: Duration = Duration::from_secs(2);

/// Follows one container's `oom` events in the background until dropped.
pub(super) struct OomWatch {
    seen: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl OomWatch {
    pub(super) fn start(mut events: BoxStream<'static, Result<(), DockerError>>) -> Self {
        let (sender, seen) = watch::channel(false);
        let task = tokio::spawn(async move {
            match events.next().await {
                Some(Ok(())) => {
                    let _ = sender.send(true);
                }
                Some(Err(error)) => {
                    tracing::debug!(%error, "the container's oom events could not be followed");
                }
                None => {}
            }
        });
        OomWatch { seen, task }
    }

    /// Whether an `oom` event arrived, waiting up to `grace` for one.
    pub(super) async fn seen_within(&mut self, grace: Duration) -> bool {
        let seen = tokio::time::timeout(grace, self.seen.wait_for(|seen| *seen)).await;
        matches!(seen, Ok(Ok(_)))
    }
}

impl Drop for OomWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
