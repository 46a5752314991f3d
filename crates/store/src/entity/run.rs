use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "runs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub decision_id: Uuid,
    pub policy_id: Uuid,
    pub host: String,
    pub target_type: String,
    pub target_id: String,
    pub driver: Option<String>,
    pub capability: String,
    pub verb: String,
    pub params: Json,
    pub idempotency_key: Option<String>,
    pub status: String,
    pub severity: Option<String>,
    pub reason: Option<String>,
    pub effects: Option<Json>,
    pub output: Option<String>,
    pub attempt: i32,
    pub count: i64,
    pub queued_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub inverse_of: Option<Uuid>,
    pub deadline_at_ms: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
