//! Coordination state: the inbox of delivery identities, and window claims
//! (suppression, idempotency, ALL-group correlation). Times are epoch
//! milliseconds so that both backends compare them the same way.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("inbox")
                    .col(string("delivery_key").primary_key())
                    .col(string("event_id"))
                    .col(big_integer("received_at_ms"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("window_claims")
                    .col(string("kind"))
                    .col(string("claim_key"))
                    .col(string("holder"))
                    .col(big_integer("claimed_at_ms"))
                    .col(big_integer("expires_at_ms"))
                    .primary_key(Index::create().col("kind").col("claim_key"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("window_claims_expiry")
                    .table("window_claims")
                    .col("expires_at_ms")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("window_claims").to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table("inbox").to_owned())
            .await
    }
}
