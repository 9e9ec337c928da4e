//! `pht submit`, `pht status` and `pht results JOB`: the researcher's side of the hub.
//!
//! Glue only: the job payload, its checks and its signature are `pht_core::job`, the hub's wire
//! types and transport are `pht-api`, and opening a sealed bundle is `pht_core::seal` (through the
//! reading and writing helpers of `commands::results`). This module turns what the user typed
//! into a job, asks the hub, and prints what it answered. It decides nothing about a job the hub
//! or a station decides; the only judgements made here are the researcher's own: which station
//! key a bundle must verify under, and that the bundle names this job and that station.
//!
//! One command a file: `submit`, `status` and `job_results` (`pht results JOB`), with
//! `arguments` for the value parsers clap calls. This file holds what they share: the hub
//! login and how a hub error becomes an exit code.

mod arguments;
mod job_results;
mod status;
mod submit;
#[cfg(test)]
mod tests;

pub use arguments::{
    parse_duration_argument, parse_parameter_argument, parse_station_key_argument,
    parse_station_parameter_argument, ParameterArgument, StationKeyArgument,
    StationParameterArgument,
};
pub use job_results::{results, JobResultsRequest};
pub use status::status;
pub use submit::{submit, SubmitRequest};

use std::path::PathBuf;

use pht_api::{Credentials, HubClient, HubClientError};
use pht_core::SigningKey;

use crate::exit::{CommandResult, Failure, FailureKind};

/// Where the hub is and who is asking: `--hub`, `--researcher` and `--key`, resolved.
#[derive(Debug, Clone)]
pub struct HubLogin {
    pub hub_url: String,
    pub researcher_id: String,
    /// The researcher's private signing key: it signs every request and every job envelope.
    pub key_path: PathBuf,
}

impl HubLogin {
    fn connect(&self, key: SigningKey) -> CommandResult<HubClient> {
        HubClient::new(
            &self.hub_url,
            Credentials::Researcher {
                researcher_id: self.researcher_id.clone(),
                key,
            },
        )
        .map_err(hub_failure)
    }
}

/// A hub that could not be asked is the user's input (a bad URL or key); everything else the
/// hub did or said is "unavailable" (exit 4), including a refusal by the hub, whose message
/// names the reason.
fn hub_failure(error: HubClientError) -> Failure {
    let kind = match &error {
        HubClientError::BaseUrl { .. } | HubClientError::Sign { .. } => FailureKind::Input,
        _ => FailureKind::Unavailable,
    };
    Failure {
        kind,
        error: error.into(),
    }
}
