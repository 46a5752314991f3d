use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "decisions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub policy_id: Uuid,
    pub policy_name: String,
    pub policy_version: i64,
    pub event_id: String,
    pub event_kind: String,
    pub correlation_id: String,
    pub decided_at_ms: i64,
    /// JSON array of event ids (ALL groups).
    pub correlated_event_ids: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
