//! What the station asks the policy about one run: facts established before the policy is
//! consulted (who signed, which image, what the train declares, what the job carries).
//!
//! Plain data with public fields, built by the station from verification results. Nothing here
//! is trusted or checked; the policy decides. It does no verification itself: a signer name in a
//! request means the station already verified a signature with that signer's key.

use std::time::Duration;

use pht_core::Digest;

use crate::values::Runtime;

/// One run the station considers: a train image at a digest, under a job (or a local `exec`).
#[derive(Debug, Clone, PartialEq)]
pub struct RunRequest {
    /// The trusted signer whose key verified the train's signature; `None` when the train is
    /// unsigned or no trusted key verified it.
    pub train_signer: Option<String>,
    /// The trusted signer whose key verified the job envelope; `None` for a local operator exec.
    pub job_signer: Option<String>,
    /// The registry host the train is pulled from, e.g. `127.0.0.1:5000`.
    pub registry: String,
    /// The repository in that registry, e.g. `trains/cohort-stats`.
    pub repository: String,
    /// The manifest digest that will run (never a tag).
    pub manifest_digest: Digest,
    /// The `purpose` the train manifest declares.
    pub purpose: String,
    /// The datasets the train manifest declares.
    pub datasets: Vec<String>,
    /// What the train manifest asks for.
    pub resources: ResourceRequest,
    /// Whether the run asks for GPUs.
    pub gpu: bool,
    /// A specific runtime, if one is asked for; `None` takes the policy's.
    pub runtime: Option<Runtime>,
    /// Size of the job's parameters for this station, as written to `/input/params.json`.
    pub parameters_bytes: u64,
    /// The base image the train is built on, as verification established it; `None` for a
    /// train without one (a static binary `FROM scratch`).
    pub base: Option<BaseRequest>,
}

/// A train's base image: the station checked that the train's layers begin with this image's
/// layers before it asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseRequest {
    /// `registry/repository`, e.g. `127.0.0.1:5000/bases/python`.
    pub repository: String,
    /// The base's manifest digest.
    pub digest: Digest,
    /// The trusted base signer whose key verified the base's signature; `None` when no trusted
    /// base signer's key did (or the policy trusts none).
    pub signer: Option<String>,
}

/// The resources a train manifest asks for; each absent one is granted at the policy's ceiling.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ResourceRequest {
    pub cpus: Option<f64>,
    pub memory_bytes: Option<u64>,
    pub wall_clock: Option<Duration>,
}
