//! The ledger as the database holds it, read with plain SQL (the tests read
//! what is durable, not what a running serve believes).

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use std::collections::BTreeMap;

/// A run as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The run id, lowercase hex without dashes.
    pub id: String,
    pub event_id: String,
    pub host: String,
    pub verb: String,
    pub status: String,
    pub reason: Option<String>,
    pub attempt: i32,
}

/// A connection to serve's database.
#[derive(Debug)]
pub struct Ledger {
    db: DatabaseConnection,
}

impl Ledger {
    pub async fn connect(url: &str) -> Ledger {
        let db = Database::connect(url).await.expect("open the ledger");
        Ledger { db }
    }

    fn sqlite(&self) -> bool {
        self.db.get_database_backend() == DbBackend::Sqlite
    }

    async fn count(&self, sql: &str) -> i64 {
        match self
            .db
            .query_one_raw(Statement::from_string(self.db.get_database_backend(), sql))
            .await
        {
            Ok(Some(row)) => row.try_get_by_index::<i64>(0).unwrap_or(0),
            // The schema may not exist yet (serve not started).
            _ => 0,
        }
    }

    /// Deliveries decided (inbox rows).
    pub async fn inbox(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM inbox").await
    }

    /// Runs still `queued` or `running`.
    pub async fn open_runs(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM runs WHERE status IN ('queued', 'running')")
            .await
    }

    /// Distinct event ids with a decision.
    pub async fn decided_events(&self) -> Vec<String> {
        let rows = self
            .db
            .query_all_raw(Statement::from_string(
                self.db.get_database_backend(),
                "SELECT DISTINCT event_id FROM decisions",
            ))
            .await
            .expect("read decisions");
        rows.iter()
            .map(|r| r.try_get_by_index::<String>(0).expect("event_id"))
            .collect()
    }

    /// Runs by status.
    pub async fn statuses(&self) -> BTreeMap<String, i64> {
        let rows = self
            .db
            .query_all_raw(Statement::from_string(
                self.db.get_database_backend(),
                "SELECT status, COUNT(*) FROM runs GROUP BY status",
            ))
            .await
            .expect("read runs");
        rows.iter()
            .map(|r| {
                (
                    r.try_get_by_index::<String>(0).expect("status"),
                    r.try_get_by_index::<i64>(1).expect("count"),
                )
            })
            .collect()
    }

    /// Every run with its event.
    pub async fn runs(&self) -> Vec<Run> {
        let id = if self.sqlite() {
            "lower(hex(r.id))"
        } else {
            "replace(r.id::text, '-', '')"
        };
        let sql = format!(
            "SELECT {id}, d.event_id, r.host, r.verb, r.status, r.reason, r.attempt \
             FROM runs r JOIN decisions d ON d.id = r.decision_id"
        );
        let rows = self
            .db
            .query_all_raw(Statement::from_string(self.db.get_database_backend(), sql))
            .await
            .expect("read runs");
        rows.iter()
            .map(|r| Run {
                id: r.try_get_by_index(0).expect("id"),
                event_id: r.try_get_by_index(1).expect("event_id"),
                host: r.try_get_by_index(2).expect("host"),
                verb: r.try_get_by_index(3).expect("verb"),
                status: r.try_get_by_index(4).expect("status"),
                reason: r.try_get_by_index(5).expect("reason"),
                attempt: r.try_get_by_index(6).expect("attempt"),
            })
            .collect()
    }

    /// SQLite's `PRAGMA integrity_check` (`ok` when the file is sound).
    pub async fn integrity_check(&self) -> String {
        let row = self
            .db
            .query_one_raw(Statement::from_string(
                DbBackend::Sqlite,
                "PRAGMA integrity_check",
            ))
            .await
            .expect("integrity_check")
            .expect("a row");
        row.try_get_by_index::<String>(0).expect("text")
    }
}
