//! Decisions of `ALL` trigger groups list the other events that completed
//! the group (a JSON array of event ids; null for single-event decisions).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("decisions")
                    .add_column(text_null("correlated_event_ids"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("decisions")
                    .drop_column("correlated_event_ids")
                    .to_owned(),
            )
            .await
    }
}
