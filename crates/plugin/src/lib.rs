//! Driver plugins: the `plugin.yaml` manifest, the registry of installed
//! drivers (which checks policies against them), the adapter protocol, the
//! supervisor that runs adapters, and the SDK for adapters written in Rust.

pub mod check;
pub mod manifest;
mod procs;
pub mod protocol;
pub mod registry;
pub mod sdk;
pub mod secrets;
pub mod supervisor;

pub use manifest::Manifest;
pub use registry::Registry;
pub use supervisor::{AdapterSpec, CallError, HostSpec, Supervisor, SupervisorOptions};
