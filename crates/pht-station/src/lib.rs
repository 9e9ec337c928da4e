//! The station: everything that happens next to the data.
//!
//! A train reference comes in (from an operator's `exec`, or a job from the hub); the station
//! verifies it, asks its policy, waits for approval where needed, pulls by digest, runs it
//! sandboxed, collects its outputs, and records every step in a hash-chained audit log. It has no
//! HTTP server: it only ever connects outbound.

pub mod audit;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod keys;
pub mod outputs;
pub mod params;
pub mod station;
pub mod store;

pub use config::StationConfig;
pub use engine::{DockerEngine, Engine, EngineError};
pub use station::{GivenParameters, Station, StationError, Submission};
pub use store::{RunRecord, RunStatus};
