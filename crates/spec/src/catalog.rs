//! The seam between policy validation and the installed drivers.
//!
//! `spec` knows nothing about plugin.yaml; the `plugin` crate implements
//! [`DriverCatalog`] over its registry, and validation calls it for each action
//! so that unknown drivers, capabilities and verbs, and params that break a
//! verb's `params_schema`, become findings with pointers into the policy.

use crate::finding::Finding;
use crate::ir::{ActionIr, PolicyIr};
use crate::pointer::Pointer;

/// What validation needs to know about installed drivers.
pub trait DriverCatalog {
    /// Check one action; `at` points at the action in the submitted document
    /// (`/actions/0`). Push any findings (codes `driver.*`, `capability.*`, `verb.*`).
    fn check_action(
        &self,
        policy: &PolicyIr,
        action: &ActionIr,
        at: &Pointer,
        findings: &mut Vec<Finding>,
    );
}
