//! The hub's client library: the versioned wire types ([`v1`]), every request built as data
//! ([`requests`]), how a principal authenticates ([`auth`]) and a reqwest client that sends them
//! ([`client::HubClient`]).
//!
//! The station daemon and the `pht` CLI talk to the hub only through this crate. It holds no
//! business logic: what a station does with a work item, or what the hub allows, is decided
//! elsewhere.

pub mod auth;
pub mod client;
pub mod requests;
pub mod v1;

pub use auth::Credentials;
pub use client::{HubClient, HubClientError, HubResponse};
pub use requests::HubRequest;
