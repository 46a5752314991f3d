pub mod decision;
pub mod policy;
pub mod policy_version;
pub mod run;
