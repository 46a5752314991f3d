//! The engine lease: one active engine per database; its epoch grows with every takeover.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("engine_lease")
                    .col(string("name").primary_key())
                    .col(string("holder"))
                    .col(big_integer("epoch"))
                    .col(big_integer("expires_at_ms"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("engine_lease").to_owned())
            .await
    }
}
