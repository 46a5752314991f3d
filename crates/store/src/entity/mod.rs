pub mod audit_event;
pub mod decision;
pub mod inventory_item;
pub mod policy;
pub mod policy_version;
pub mod run;
pub mod transcript;
