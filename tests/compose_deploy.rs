//! Placeholder replaced by the compose deployment test (being written).
