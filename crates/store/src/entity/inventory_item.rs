use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "inventory_items")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub host: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub item_type: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub item_id: String,
    pub name: Option<String>,
    pub labels: Json,
    pub state: Option<Json>,
    pub refreshed_at_ms: i64,
    pub partial: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
