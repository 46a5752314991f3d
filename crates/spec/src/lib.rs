//! switchyard's policy language and event envelope.
//!
//! This crate is pure: no IO, no tokio, nothing of ours as a dependency. It
//! parses and validates policies (spec v1) into findings and a deterministic
//! IR with a `spec_hash`, parses event envelopes with limits, implements the
//! selector grammar and the condition semantics, and fills placeholders.
//! Every other switchyard crate may use it.

pub mod canonical;
pub mod catalog;
pub mod condition;
pub mod diff;
pub mod duration;
pub mod event;
pub mod finding;
pub mod ir;
pub mod jsonpath;
pub mod metric_names;
pub mod placeholder;
pub mod pointer;
pub mod policy;
pub mod runtime;
pub mod selector;

pub use finding::{Finding, Severity};
pub use ir::PolicyIr;
pub use policy::{Compiled, Format};
