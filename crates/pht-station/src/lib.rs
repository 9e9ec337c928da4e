//! The station: everything that happens next to the data.
//!
//! A train reference comes in (from an operator's `exec`, or a job from the hub); the station
//! verifies it, asks its policy, waits for approval where needed, pulls by digest, runs it
//! sandboxed, collects and checks its outputs, releases and seals what may leave, and delivers
//! it, recording every step in a hash-chained audit log. The stages live in `pipeline/`, one
//! file each. It has no HTTP server: it only ever connects outbound.

pub mod audit;
pub mod config;
pub mod console;
pub mod daemon;
pub mod datasets;
pub mod doctor;
pub mod engine;
pub mod error;
pub mod hub_link;
pub mod keys;
pub mod ledger;
pub mod metrics;
pub mod operators;
pub mod params;
pub mod pipeline;
pub mod readiness;
pub mod run_index;
pub mod space;
pub mod station;
pub mod store;
pub mod trust;

pub use config::StationConfig;
pub use engine::{DockerEngine, Engine, EngineError};
pub use error::StationError;
pub use pipeline::{GivenParameters, Submission};
pub use station::Station;
pub use store::{RunRecord, RunStatus};
