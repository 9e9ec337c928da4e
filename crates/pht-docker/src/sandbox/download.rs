//! Reading a volume slot's `/output` through Docker's archive API.
//!
//! Owns: streaming the archive of the holder's `/output` into the collector, which runs on a
//! blocking thread and reads the bytes as they arrive ([`ChannelReader`]), so the archive is
//! never held in memory twice, and stopping the download as soon as the collector stops at a
//! cap.
//!
//! Does not judge a single entry: [`crate::collect::collect_outputs`] does, for this archive and
//! for the walk of a host tmpfs alike.

use std::io::{self, Read};

use bytes::Bytes;
use futures_util::stream::StreamExt;
use tokio::sync::mpsc;

use super::engine::SandboxEngine;
use super::error::{RunStep, SandboxError};
use crate::collect::{self, CollectLimits, CollectedOutputs};
use crate::spec::OUTPUT_MOUNT_PATH;

/// Streams the archive of `/output` from `container` into the collector, which runs on a
/// blocking thread and reads as the bytes arrive, so the archive is never held in memory twice.
pub(super) async fn download_and_collect<E: SandboxEngine>(
    engine: &E,
    run_id: &str,
    container: &str,
    limits: CollectLimits,
) -> Result<CollectedOutputs, SandboxError> {
    const CHANNEL_CHUNKS: usize = 16;
    let (chunk_sender, chunk_receiver) = mpsc::channel::<io::Result<Bytes>>(CHANNEL_CHUNKS);
    let archive_root = OUTPUT_MOUNT_PATH.trim_start_matches('/').to_string();
    let collect_task = tokio::task::spawn_blocking(move || {
        collect::collect_outputs(ChannelReader::new(chunk_receiver), &archive_root, &limits)
    });

    let mut archive_stream = engine.download_archive(container, OUTPUT_MOUNT_PATH);
    let mut download_error = None;
    while let Some(chunk) = archive_stream.next().await {
        match chunk {
            Ok(bytes) => {
                if chunk_sender.send(Ok(bytes)).await.is_err() {
                    // The collector stopped at a cap; the rest of the archive is not needed.
                    break;
                }
            }
            Err(error) => {
                let _ = chunk_sender
                    .send(Err(io::Error::other("the archive download failed")))
                    .await;
                download_error = Some(error);
                break;
            }
        }
    }
    drop(chunk_sender);
    drop(archive_stream);
    let collected = collect_task.await;

    if let Some(source) = download_error {
        return Err(SandboxError::at_step(run_id, RunStep::DownloadOutputs)(
            source,
        ));
    }
    match collected {
        Ok(Ok(outputs)) => Ok(outputs),
        Ok(Err(source)) => Err(SandboxError::Collect {
            run_id: run_id.to_string(),
            source,
        }),
        Err(join_error) => Err(SandboxError::CollectTask {
            run_id: run_id.to_string(),
            message: join_error.to_string(),
        }),
    }
}

/// A blocking [`Read`] over chunks sent from async code.
struct ChannelReader {
    chunk_receiver: mpsc::Receiver<io::Result<Bytes>>,
    current_chunk: Bytes,
}

impl ChannelReader {
    fn new(chunk_receiver: mpsc::Receiver<io::Result<Bytes>>) -> Self {
        ChannelReader {
            chunk_receiver,
            current_chunk: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        while self.current_chunk.is_empty() {
            match self.chunk_receiver.blocking_recv() {
                Some(Ok(chunk)) => self.current_chunk = chunk,
                Some(Err(error)) => return Err(error),
                None => return Ok(0),
            }
        }
        let n_bytes = buffer.len().min(self.current_chunk.len());
        buffer[..n_bytes].copy_from_slice(&self.current_chunk.split_to(n_bytes));
        Ok(n_bytes)
    }
}
