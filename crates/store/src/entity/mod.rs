//! sea-orm entities: the tables as rows. Only this crate sees them.

pub mod policy;
pub mod policy_version;
