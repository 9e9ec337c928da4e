//! The hub's routing rules as pure functions: which stop states a station's report or upload may
//! move, and what a job's overall state is. No I/O, no clock: the store applies the decisions.

use pht_api::v1::{JobState, ReportedStopState, StopState};
use pht_core::Digest;

/// What to do with a station's status report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportDecision {
    /// Move the stop to the reported state.
    Apply,
    /// The stop is already there (a retried report); answer as if applied.
    AlreadyApplied,
    /// Refuse with this reason (409).
    Refuse(String),
}

pub fn decide_report(current: StopState, reported: ReportedStopState) -> ReportDecision {
    let target = StopState::from(reported);
    if current == target {
        return ReportDecision::AlreadyApplied;
    }
    match current {
        _ if current.is_final() => ReportDecision::Refuse(format!(
            "the stop already ended as {}",
            state_name(current)
        )),
        StopState::Pending => ReportDecision::Refuse(
            "it is not this stop's turn yet: an earlier stop of the sequential route has not delivered"
                .into(),
        ),
        StopState::Withheld if reported == ReportedStopState::Running => ReportDecision::Refuse(
            "withheld outputs can only be released (upload the result) or refused (blocked)".into(),
        ),
        _ => ReportDecision::Apply,
    }
}

/// Whether a report ends a sequential route (later stops are skipped).
pub fn report_ends_route(reported: ReportedStopState) -> bool {
    matches!(
        reported,
        ReportedStopState::Denied | ReportedStopState::Failed | ReportedStopState::Blocked
    )
}

/// What to do with a result upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadDecision {
    Store,
    /// The same bundle is already stored: acknowledge again, change nothing.
    AlreadyStored,
    Refuse(String),
}

pub fn decide_upload(
    current: StopState,
    stored_result: Option<&Digest>,
    uploaded_result: &Digest,
) -> UploadDecision {
    match current {
        StopState::Done if stored_result == Some(uploaded_result) => UploadDecision::AlreadyStored,
        StopState::Done => UploadDecision::Refuse(format!(
            "a different result ({}) is already stored for this stop",
            stored_result.map(ToString::to_string).unwrap_or_default()
        )),
        _ if current.is_final() => UploadDecision::Refuse(format!(
            "the stop already ended as {}",
            state_name(current)
        )),
        StopState::Pending => UploadDecision::Refuse(
            "it is not this stop's turn yet: an earlier stop of the sequential route has not delivered"
                .into(),
        ),
        _ => UploadDecision::Store,
    }
}

/// What a job's overall state depends on, taken over all its stops: the store counts jobs by
/// this without reading their stops one by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JobProgress {
    pub cancelled: bool,
    /// Some stop is not final yet.
    pub any_unfinished: bool,
    /// Some stop is not `done` (unfinished, or ended without a result).
    pub any_not_done: bool,
}

impl JobProgress {
    pub fn of_stops(cancelled: bool, stops: &[StopState]) -> JobProgress {
        JobProgress {
            cancelled,
            any_unfinished: stops.iter().any(|stop| !stop.is_final()),
            any_not_done: stops.iter().any(|stop| *stop != StopState::Done),
        }
    }
}

/// A job's overall state from its progress.
pub fn job_state_of(progress: JobProgress) -> JobState {
    if progress.cancelled {
        JobState::Cancelled
    } else if progress.any_unfinished {
        JobState::Active
    } else if !progress.any_not_done {
        JobState::Completed
    } else {
        JobState::Incomplete
    }
}

/// A job's overall state from its stops.
pub fn job_state(cancelled: bool, stops: &[StopState]) -> JobState {
    job_state_of(JobProgress::of_stops(cancelled, stops))
}

/// The wire name of a job state (`active`, `completed`…).
pub fn job_state_name(state: JobState) -> &'static str {
    match state {
        JobState::Active => "active",
        JobState::Completed => "completed",
        JobState::Incomplete => "incomplete",
        JobState::Cancelled => "cancelled",
    }
}

pub const ALL_JOB_STATES: [JobState; 4] = [
    JobState::Active,
    JobState::Completed,
    JobState::Incomplete,
    JobState::Cancelled,
];

/// The wire name of a stop state (`ready`, `done`…), also its database value.
pub fn state_name(state: StopState) -> &'static str {
    match state {
        StopState::Pending => "pending",
        StopState::Ready => "ready",
        StopState::Leased => "leased",
        StopState::Running => "running",
        StopState::Withheld => "withheld",
        StopState::Done => "done",
        StopState::Denied => "denied",
        StopState::Failed => "failed",
        StopState::Blocked => "blocked",
        StopState::Skipped => "skipped",
        StopState::Expired => "expired",
        StopState::Cancelled => "cancelled",
    }
}

pub const ALL_STOP_STATES: [StopState; 12] = [
    StopState::Pending,
    StopState::Ready,
    StopState::Leased,
    StopState::Running,
    StopState::Withheld,
    StopState::Done,
    StopState::Denied,
    StopState::Failed,
    StopState::Blocked,
    StopState::Skipped,
    StopState::Expired,
    StopState::Cancelled,
];

pub fn state_from_name(name: &str) -> Option<StopState> {
    ALL_STOP_STATES
        .into_iter()
        .find(|state| state_name(*state) == name)
}

/// The states in which a stop can still change.
pub fn unfinished_stop_states() -> impl Iterator<Item = StopState> {
    ALL_STOP_STATES
        .into_iter()
        .filter(|state| !state.is_final())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_match_the_wire_format() {
        for state in ALL_STOP_STATES {
            assert_eq!(
                serde_json::to_value(state).unwrap(),
                serde_json::json!(state_name(state))
            );
            assert_eq!(state_from_name(state_name(state)), Some(state));
        }
    }

    #[test]
    fn job_state_names_match_the_wire_format() {
        for state in ALL_JOB_STATES {
            assert_eq!(
                serde_json::to_value(state).unwrap(),
                serde_json::json!(job_state_name(state))
            );
        }
    }

    #[test]
    fn report_on_an_ended_stop_is_refused_unless_it_repeats() {
        assert_eq!(
            decide_report(StopState::Denied, ReportedStopState::Denied),
            ReportDecision::AlreadyApplied
        );
        assert!(matches!(
            decide_report(StopState::Done, ReportedStopState::Failed),
            ReportDecision::Refuse(_)
        ));
        assert!(matches!(
            decide_report(StopState::Pending, ReportedStopState::Running),
            ReportDecision::Refuse(_)
        ));
        assert_eq!(
            decide_report(StopState::Leased, ReportedStopState::Running),
            ReportDecision::Apply
        );
        assert_eq!(
            decide_report(StopState::Withheld, ReportedStopState::Blocked),
            ReportDecision::Apply
        );
    }

    #[test]
    fn repeated_upload_of_the_same_bundle_is_acknowledged_and_a_different_one_refused() {
        let first = Digest::of(b"a");
        assert_eq!(
            decide_upload(StopState::Done, Some(&first), &first),
            UploadDecision::AlreadyStored
        );
        assert!(matches!(
            decide_upload(StopState::Done, Some(&first), &Digest::of(b"b")),
            UploadDecision::Refuse(_)
        ));
        assert_eq!(
            decide_upload(StopState::Withheld, None, &first),
            UploadDecision::Store
        );
        assert!(matches!(
            decide_upload(StopState::Expired, None, &first),
            UploadDecision::Refuse(_)
        ));
    }

    #[test]
    fn job_state_follows_its_stops() {
        use StopState::*;
        assert_eq!(job_state(false, &[Done, Running]), JobState::Active);
        assert_eq!(job_state(false, &[Done, Done]), JobState::Completed);
        assert_eq!(
            job_state(false, &[Done, Denied, Skipped]),
            JobState::Incomplete
        );
        assert_eq!(job_state(true, &[Done, Cancelled]), JobState::Cancelled);
    }
}
