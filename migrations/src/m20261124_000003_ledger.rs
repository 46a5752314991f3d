//! The execution ledger: decisions and their runs.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("decisions")
                    .col(uuid("id").primary_key())
                    .col(uuid("policy_id"))
                    .col(string("policy_name"))
                    .col(big_integer("policy_version"))
                    .col(string("event_id"))
                    .col(string("event_kind"))
                    .col(string("correlation_id"))
                    .col(big_integer("decided_at_ms"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("runs")
                    .col(uuid("id").primary_key())
                    .col(uuid("decision_id"))
                    .col(uuid("policy_id"))
                    .col(string("host"))
                    .col(string("target_type"))
                    .col(string("target_id"))
                    .col(string_null("driver"))
                    .col(string("capability"))
                    .col(string("verb"))
                    .col(json_binary("params"))
                    .col(string_null("idempotency_key"))
                    .col(string("status"))
                    .col(string_null("severity"))
                    .col(string_null("reason"))
                    .col(json_binary_null("effects"))
                    .col(text_null("output"))
                    .col(integer("attempt"))
                    .col(big_integer("count"))
                    .col(big_integer("queued_at_ms"))
                    .col(big_integer_null("started_at_ms"))
                    .col(big_integer_null("finished_at_ms"))
                    .col(uuid_null("inverse_of"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("runs_decision")
                            .from("runs", "decision_id")
                            .to("decisions", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Queries page newest first by (queued_at, id), filtered by these columns.
        for (name, cols) in [
            ("runs_queued", vec!["queued_at_ms", "id"]),
            ("runs_policy", vec!["policy_id", "queued_at_ms"]),
            ("runs_host", vec!["host", "queued_at_ms"]),
            ("runs_status", vec!["status", "queued_at_ms"]),
            ("runs_decision", vec!["decision_id"]),
            ("decisions_event", vec!["event_id"]),
        ] {
            let table = if name.starts_with("decisions") {
                "decisions"
            } else {
                "runs"
            };
            let mut idx = Index::create();
            idx.name(name).table(table);
            for c in cols {
                idx.col(c);
            }
            manager.create_index(idx.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("runs").to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table("decisions").to_owned())
            .await
    }
}
