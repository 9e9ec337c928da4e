//! What the console needs from the run store without reading every record: the order runs were
//! recorded in, and which runs wait on someone.
//!
//! Owns two derived files under the state directory, both rebuilt from the run records when
//! missing or out of step (the records stay the truth):
//!
//! - `runs.index`: one fixed-width line per run, in the order the runs were first recorded, so
//!   a page of the run history is one seek and one read however long the history grows;
//! - `queues/<queue>/<run_id>`: an empty marker per run awaiting approval, running, or with
//!   outputs withheld for review, so the overview counts them from three small directories.
//!
//! Does not decide what a run's status means: [`Queue::of`] reads it off the record.

use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use crate::store::{OutputDecision, RunRecord, RunStatus};

/// Bytes per line of `runs.index`: the run id, padded with spaces, and a newline.
pub const INDEX_LINE: usize = 64;

/// A queue of runs that wait on someone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Queue {
    /// Waiting for an approver.
    AwaitingApproval,
    /// In the sandbox now.
    Running,
    /// Outputs withheld for a reviewer.
    Withheld,
}

impl Queue {
    pub const ALL: [Queue; 3] = [Queue::AwaitingApproval, Queue::Running, Queue::Withheld];

    /// The directory name under `queues/`.
    pub fn name(self) -> &'static str {
        match self {
            Queue::AwaitingApproval => "awaiting-approval",
            Queue::Running => "running",
            Queue::Withheld => "withheld",
        }
    }

    /// Whether `record` belongs in this queue.
    pub fn holds(self, record: &RunRecord) -> bool {
        match self {
            Queue::AwaitingApproval => record.status == RunStatus::AwaitingApproval,
            Queue::Running => record.status == RunStatus::Running,
            Queue::Withheld => record
                .output_decision
                .as_ref()
                .is_some_and(|decision| decision.decision == OutputDecision::Withheld),
        }
    }

    /// The queues `record` belongs in.
    pub fn of(record: &RunRecord) -> impl Iterator<Item = Queue> + '_ {
        Queue::ALL.into_iter().filter(|queue| queue.holds(record))
    }
}

/// The index files of one state directory.
#[derive(Debug, Clone)]
pub struct RunIndex {
    index_path: PathBuf,
    queues_dir: PathBuf,
}

impl RunIndex {
    pub fn in_state_dir(state_dir: &Path) -> RunIndex {
        RunIndex {
            index_path: state_dir.join("runs.index"),
            queues_dir: state_dir.join("queues"),
        }
    }

    fn marker(&self, queue: Queue, run_id: &str) -> PathBuf {
        self.queues_dir.join(queue.name()).join(run_id)
    }

    /// Adds a newly recorded run at the end of the history. One `write` of one line to a file
    /// opened for appending: station processes writing at once never interleave within a line.
    pub fn append(&self, run_id: &str) -> std::io::Result<()> {
        let line = index_line(run_id)?;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.index_path)?;
        file.write_all(&line)
    }

    /// Puts `record` in exactly the queues it belongs in.
    pub fn update_queues(&self, record: &RunRecord) -> std::io::Result<()> {
        for queue in Queue::ALL {
            let marker = self.marker(queue, &record.run_id);
            if queue.holds(record) {
                if !marker.exists() {
                    std::fs::create_dir_all(self.queues_dir.join(queue.name()))?;
                    std::fs::File::create(&marker)?;
                }
            } else {
                match std::fs::remove_file(&marker) {
                    Ok(()) => {}
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => return Err(error),
                }
            }
        }
        Ok(())
    }

    /// The run ids marked as in `queue` (unsorted; a caller checks each against its record).
    pub fn queued(&self, queue: Queue) -> std::io::Result<Vec<String>> {
        let dir = self.queues_dir.join(queue.name());
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        let mut ids = Vec::new();
        for entry in entries {
            ids.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(ids)
    }

    /// Removes a marker a record no longer backs.
    pub fn unqueue(&self, queue: Queue, run_id: &str) {
        let _ = std::fs::remove_file(self.marker(queue, run_id));
    }

    /// How many runs the index holds (0 when it does not exist yet).
    pub fn len(&self) -> std::io::Result<u64> {
        match std::fs::metadata(&self.index_path) {
            Ok(metadata) => Ok(metadata.len() / INDEX_LINE as u64),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(error) => Err(error),
        }
    }

    pub fn is_empty(&self) -> std::io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Run ids newest first: `limit` of them after skipping the `skip` newest. Reads only the
    /// lines asked for.
    pub fn newest(&self, skip: u64, limit: u64) -> std::io::Result<Vec<String>> {
        let total = self.len()?;
        if skip >= total || limit == 0 {
            return Ok(Vec::new());
        }
        let end = total - skip;
        let start = end.saturating_sub(limit);
        let mut file = std::fs::File::open(&self.index_path)?;
        file.seek(SeekFrom::Start(start * INDEX_LINE as u64))?;
        let mut bytes = vec![0u8; ((end - start) as usize) * INDEX_LINE];
        file.read_exact(&mut bytes)?;
        Ok(bytes
            .chunks(INDEX_LINE)
            .rev()
            .filter_map(|line| {
                let id = std::str::from_utf8(line).ok()?.trim_end();
                (!id.is_empty()).then(|| id.to_string())
            })
            .collect())
    }

    /// Writes both from scratch for `records` (oldest first): the index in that order, the
    /// queue markers for those that wait. Used when the files are missing or out of step.
    pub fn rebuild(&self, records: &[RunRecord]) -> std::io::Result<()> {
        let mut bytes = Vec::with_capacity(records.len() * INDEX_LINE);
        for record in records {
            match index_line(&record.run_id) {
                Ok(line) => bytes.extend_from_slice(&line),
                Err(error) => {
                    tracing::warn!(run_id = %record.run_id, %error, "run not indexed");
                }
            }
        }
        pht_fs::write_atomic(&self.index_path, &bytes)?;
        match std::fs::remove_dir_all(&self.queues_dir) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        for record in records {
            self.update_queues(record)?;
        }
        Ok(())
    }
}

fn index_line(run_id: &str) -> std::io::Result<Vec<u8>> {
    if run_id.len() >= INDEX_LINE || run_id.contains(['\n', ' ']) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "run ids longer than {} bytes are not indexed",
                INDEX_LINE - 1
            ),
        ));
    }
    let mut line = format!("{run_id:<width$}", width = INDEX_LINE - 1).into_bytes();
    line.push(b'\n');
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_come_newest_first_and_read_only_their_lines() {
        let dir = tempfile::tempdir().unwrap();
        let index = RunIndex::in_state_dir(dir.path());
        assert!(index.newest(0, 10).unwrap().is_empty());
        for n in 0..25 {
            index.append(&format!("run-{n:012}")).unwrap();
        }
        assert_eq!(index.len().unwrap(), 25);
        let first = index.newest(0, 10).unwrap();
        assert_eq!(first.first().unwrap(), "run-000000000024");
        assert_eq!(first.last().unwrap(), "run-000000000015");
        let last = index.newest(20, 10).unwrap();
        assert_eq!(last.len(), 5);
        assert_eq!(last.last().unwrap(), "run-000000000000");
        assert!(index.newest(25, 10).unwrap().is_empty());
    }

    #[test]
    fn a_run_id_too_long_for_a_line_is_refused_not_cut() {
        assert!(index_line(&"r".repeat(INDEX_LINE)).is_err());
        assert_eq!(index_line("run-1").unwrap().len(), INDEX_LINE);
    }
}
