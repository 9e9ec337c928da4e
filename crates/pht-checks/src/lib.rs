//! Output checks: statistical disclosure control over what a train wrote to `/output`.
//!
//! Pure: takes collected file contents, the train's declared outputs, dataset row indexes and
//! thresholds, and returns a report. No Docker, no network, no file system.

mod config;

pub use config::CheckConfig;
