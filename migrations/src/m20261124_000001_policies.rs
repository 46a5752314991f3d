//! Policies and their version history.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("policies")
                    .col(uuid("id").primary_key())
                    .col(string("name"))
                    .col(big_integer("version_int"))
                    .col(boolean("enabled"))
                    .col(integer("priority"))
                    .col(string("spec_hash"))
                    .col(json_binary("ir"))
                    .col(text("source"))
                    .col(string("format"))
                    .col(string("managed_by"))
                    .col(json_binary_null("last_validation"))
                    .col(json_binary_null("last_dry_run"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .col(timestamp_with_time_zone_null("archived_at"))
                    .to_owned(),
            )
            .await?;
        for (name, col) in [
            ("policies_name", "name"),
            ("policies_spec_hash", "spec_hash"),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table("policies")
                        .col(col)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table("policy_versions")
                    .col(uuid("policy_id"))
                    .col(big_integer("version_int"))
                    .col(string("spec_hash"))
                    .col(json_binary("ir"))
                    .col(text("source"))
                    .col(string("format"))
                    .col(string("author"))
                    .col(text("comment"))
                    .col(string("checksum"))
                    .col(timestamp_with_time_zone("created_at"))
                    .primary_key(Index::create().col("policy_id").col("version_int"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("policy_versions_policy")
                            .from("policy_versions", "policy_id")
                            .to("policies", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("policy_versions").to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table("policies").to_owned())
            .await
    }
}
