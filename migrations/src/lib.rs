//! The database schema, one migration per file (sea-orm names a migration
//! after its file). Migrations are applied by `switchyard db migrate` and at
//! the start of `switchyard serve`; each has a `down` so an upgrade can be
//! rolled back.

use sea_orm_migration::prelude::*;

mod m20261124_000001_policies;
mod m20261124_000002_claims;
mod m20261124_000003_ledger;
mod m20261124_000004_lease;
mod m20261124_000005_inventory_audit;
mod m20261124_000006_correlated_events;
mod m20261204_000007_run_deadline;
mod m20261204_000008_prune_indexes;

/// Every migration, in order.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_policies::Migration),
            Box::new(m20261124_000002_claims::Migration),
            Box::new(m20261124_000003_ledger::Migration),
            Box::new(m20261124_000004_lease::Migration),
            Box::new(m20261124_000005_inventory_audit::Migration),
            Box::new(m20261124_000006_correlated_events::Migration),
            Box::new(m20261204_000007_run_deadline::Migration),
            Box::new(m20261204_000008_prune_indexes::Migration),
        ]
    }
}
