//! Capturing the train's stdout and stderr, capped.
//!
//! Owns: reading the attached output stream to its end on a task of its own, keeping the first
//! `log_bytes` bytes and counting the rest, and, once the train has exited, giving the stream a
//! short grace to deliver what is still in flight before it is cut ([`LogCapture::finish`]).
//!
//! Does not attach to the container (the run does, before the start, so nothing is missed) and
//! does not read Docker's log file, whose rotation at its size cap would silently drop the
//! beginning.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use futures_util::stream::{BoxStream, StreamExt};

/// How long the log stream may trail the container's exit before it is cut.
const LOG_DRAIN_GRACE: Duration = Duration::from_secs(5);

/// The capture of one train's output, running from [`start`](Self::start) until
/// [`finish`](Self::finish). Dropped early (a cancelled run), it stops reading.
pub(super) struct LogCapture {
    task: AbortOnDrop<()>,
    captured: Arc<Mutex<CapturedLogs>>,
}

impl LogCapture {
    /// Starts reading `log_stream` on a task of its own.
    pub(super) fn start(
        log_stream: BoxStream<'static, Result<LogOutput, DockerError>>,
        log_bytes: u64,
    ) -> Self {
        let captured = Arc::new(Mutex::new(CapturedLogs::default()));
        let task = AbortOnDrop(tokio::spawn(capture_logs(
            log_stream,
            log_bytes,
            Arc::clone(&captured),
        )));
        LogCapture { task, captured }
    }

    /// Waits (a little) for the stream to end, then returns the logs kept and whether they are
    /// truncated: more was written than kept, or the stream failed or was cut.
    pub(super) async fn finish(mut self) -> (Vec<u8>, bool) {
        let log_drain = tokio::time::timeout(LOG_DRAIN_GRACE, &mut self.task.0).await;
        drop(self.task);
        let mut captured = self
            .captured
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if log_drain.is_err() {
            // The stream outlived the container; what it had not delivered is lost.
            captured.incomplete = true;
        }
        let logs_truncated = captured.is_truncated();
        (std::mem::take(&mut captured.bytes), logs_truncated)
    }
}

#[derive(Debug, Default)]
struct CapturedLogs {
    bytes: Vec<u8>,
    n_bytes_seen: u64,
    /// The stream failed or was cut before it ended.
    incomplete: bool,
}

impl CapturedLogs {
    fn is_truncated(&self) -> bool {
        self.incomplete || self.n_bytes_seen > self.bytes.len() as u64
    }
}

/// Reads the stream to its end, keeping the first `log_bytes` bytes and counting the rest. It
/// never stops reading early: a train blocks when nobody reads its output.
async fn capture_logs(
    mut log_stream: BoxStream<'static, Result<LogOutput, DockerError>>,
    log_bytes: u64,
    captured: Arc<Mutex<CapturedLogs>>,
) {
    let log_bytes = usize::try_from(log_bytes).unwrap_or(usize::MAX);
    while let Some(item) = log_stream.next().await {
        let mut captured = captured
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match item {
            Ok(log_output) => {
                let message = log_output.into_bytes();
                captured.n_bytes_seen += message.len() as u64;
                let room = log_bytes.saturating_sub(captured.bytes.len());
                let kept = room.min(message.len());
                captured.bytes.extend_from_slice(&message[..kept]);
            }
            Err(error) => {
                tracing::warn!(%error, "the train's output stream failed; its logs are incomplete");
                captured.incomplete = true;
                return;
            }
        }
    }
}

/// Aborts a spawned task when dropped, so a cancelled run leaves no task behind.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
