//! The Docker boundary: every `bollard` call in the project lives in this crate.
//!
//! It builds, saves and loads images (`image`), turns a run specification into a container
//! specification and runs it sandboxed (`spec`, `sandbox`), and collects what the container wrote
//! (`collect`). It makes no policy decisions: the station decides what may run and with which
//! limits, and hands this crate a fully resolved [`RunSpec`].

pub mod collect;
mod connect;
pub mod host_output;
pub mod image;
pub mod image_lookup;
pub mod sandbox;
pub mod spec;

pub use collect::{CollectedFile, CollectedKind, CollectedOutputs};
pub use connect::{connect, ConnectError};
pub use connect::{connect_to_socket, DEFAULT_DOCKER_SOCKET};
pub use host_output::HostOutputs;
pub use sandbox::{DockerSandbox, RunOutcome, SandboxError};
pub use spec::{RunLimits, RunSpec, SpecError};
