//! Inventory items discovered by drivers, audit events, dry-run transcripts.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("inventory_items")
                    .col(string("host"))
                    .col(string("item_type"))
                    .col(string("item_id"))
                    .col(string_null("name"))
                    .col(json_binary("labels"))
                    .col(json_binary_null("state"))
                    .col(big_integer("refreshed_at_ms"))
                    .col(boolean("partial"))
                    .primary_key(Index::create().col("host").col("item_type").col("item_id"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("inventory_items_name")
                    .table("inventory_items")
                    .col("name")
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("audit_events")
                    .col(uuid("id").primary_key())
                    .col(big_integer("at_ms"))
                    .col(string("subject"))
                    .col(string("action"))
                    .col(string("target"))
                    .col(string("correlation_id"))
                    .col(json_binary("detail"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("audit_events_at")
                    .table("audit_events")
                    .col("at_ms")
                    .col("id")
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("dry_run_transcripts")
                    .col(uuid("id").primary_key())
                    .col(uuid("policy_id"))
                    .col(big_integer("created_at_ms"))
                    .col(json_binary("transcript"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for t in ["dry_run_transcripts", "audit_events", "inventory_items"] {
            manager
                .drop_table(Table::drop().table(t).to_owned())
                .await?;
        }
        Ok(())
    }
}
