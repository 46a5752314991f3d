//! The engine writer's own SQLite connection.
//!
//! On SQLite every statement through the pool is a round trip to the
//! driver's worker thread: the arguments are copied into the driver's
//! buffer, handed over a channel, bound, and every returned row comes back
//! over the channel one by one, each hand-over waking the other thread. The
//! group-commit path runs a handful of multi-row statements per batch with
//! tens of values per event; in a profile of the end-to-end benchmark's
//! queued scenario that hand-over was about 18% of all the CPU used while
//! deciding (switchyard's and nats-server's), and each statement's two
//! thread wake-ups added to every decision's latency.
//!
//! So [`Store::write_batch`](crate::Store::write_batch) and its siblings run
//! on a connection of their own, called directly from the writer's thread.
//! While a batch runs it holds the pool's only connection, so the store's
//! other writes (the lease, policies, inventory, audit) and this connection
//! never write at once — exactly as when everything shared one connection —
//! and a read-then-write transaction on the pool never meets a commit it did
//! not see. PostgreSQL goes through the pool as before ([`Tx::Orm`]).
//!
//! Handing the pool's connection back is itself a round trip: the pool pings
//! it on the driver's thread before another caller may have it. So while the
//! writer has more batches waiting, [`WriteTxn::commit`] keeps the connection
//! for the next one instead, for at most [`GATE_HOLD`] before it lets the
//! store's other writers have a turn; [`Lite::release_gate`] hands it back
//! when the writer runs out of work.

use sea_orm::sqlx::pool::PoolConnection;
use sea_orm::sqlx::sqlite::{Sqlite, SqliteConnectOptions};
use sea_orm::{
    DatabaseBackend, DatabaseConnection, DatabaseTransaction, DbErr, QueryResult, RuntimeErr,
    Statement, TransactionTrait, TryGetable, Value,
};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::types::{ToSqlOutput, Value as LiteValue, ValueRef};

/// How long the write path may keep the pool's connection across batches
/// before the store's other writers (lease renewal, policies, the API) get a
/// turn: they wait at most this long plus one batch.
pub(crate) const GATE_HOLD: Duration = Duration::from_millis(10);

/// The writer's connection.
pub(crate) struct Lite {
    conn: Mutex<rusqlite::Connection>,
    /// The pool's connection, kept between batches (see [`WriteTxn::commit`]).
    gate: Mutex<Option<Gate>>,
}

/// The pool's connection while the write path holds it, and since when.
pub(crate) struct Gate {
    _conn: PoolConnection<Sqlite>,
    since: Instant,
}

impl std::fmt::Debug for Lite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lite")
    }
}

/// How an error of the writer's connection begins when SQLite refused the
/// data itself (a constraint, a value too big, a type mismatch, a value that
/// does not bind): see [`crate::Error::is_refused_data`].
pub(crate) const REFUSED: &str = "sqlite refused the data: ";

fn db_err(e: rusqlite::Error) -> DbErr {
    use rusqlite::ErrorCode as C;
    let refused = match &e {
        rusqlite::Error::SqliteFailure(f, _) => {
            matches!(f.code, C::ConstraintViolation | C::TooBig | C::TypeMismatch)
        }
        rusqlite::Error::ToSqlConversionFailure(_) => true,
        _ => false,
    };
    match refused {
        true => DbErr::Query(RuntimeErr::Internal(format!("{REFUSED}{e}"))),
        false => DbErr::Query(RuntimeErr::Internal(format!("sqlite: {e}"))),
    }
}

impl Lite {
    /// Open the file the pool at `url` uses, with the pool's settings
    /// ([`crate::SQLITE_PRAGMAS`]). `None` for an in-memory database, which a
    /// second connection would not share, and for a read-only one.
    pub(crate) fn open(url: &str) -> Result<Option<Lite>, DbErr> {
        if url.contains(":memory:") || url.contains("mode=memory") || url.contains("mode=ro") {
            return Ok(None);
        }
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| DbErr::Conn(RuntimeErr::Internal(e.to_string())))?;
        let conn = rusqlite::Connection::open(opts.get_filename()).map_err(db_err)?;
        conn.busy_timeout(crate::SQLITE_BUSY_TIMEOUT)
            .map_err(db_err)?;
        conn.set_prepared_statement_cache_capacity(crate::STATEMENT_CACHE);
        let lite = Lite {
            conn: Mutex::new(conn),
            gate: Mutex::new(None),
        };
        for (key, value) in crate::SQLITE_PRAGMAS {
            lite.run(&format!("PRAGMA {key} = {value}"))?;
        }
        Ok(Some(lite))
    }

    /// Hand the pool's connection back if the write path kept it. Called
    /// (on a Tokio runtime: the pool returns it on a task) when the writer
    /// has nothing more to write.
    pub(crate) fn release_gate(&self) {
        drop(self.kept_gate());
    }

    fn kept_gate(&self) -> Option<Gate> {
        self.gate.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<T, DbErr> {
        // A panic while the lock was held cannot leave a transaction open:
        // unwinding drops the [`WriteTxn`], which rolls it back.
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn).map_err(db_err)
    }

    fn rows(&self, stmt: &Statement) -> Result<Vec<Row>, DbErr> {
        self.with(|conn| {
            let mut st = conn.prepare_cached(&stmt.sql)?;
            let names: Arc<[String]> = st.column_names().into_iter().map(String::from).collect();
            let width = names.len();
            let values = stmt.values.as_ref().map(|v| v.0.as_slice()).unwrap_or(&[]);
            let mut rows = st.query(rusqlite::params_from_iter(values.iter().map(Bind)))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                let cells = (0..width)
                    .map(|i| row.get::<_, LiteValue>(i))
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                out.push(Row::Lite {
                    names: Arc::clone(&names),
                    cells,
                });
            }
            Ok(out)
        })
    }

    /// Begin a write transaction. One left open (a failed rollback) is
    /// rolled back first, so a stray transaction cannot fail every batch after it.
    fn begin(&self) -> Result<(), DbErr> {
        let stray = self.with(|conn| Ok(!conn.is_autocommit()))?;
        if stray {
            tracing::warn!("the writer's connection had a transaction open; rolling it back");
            self.run("ROLLBACK")?;
        }
        self.run("BEGIN IMMEDIATE")
    }

    /// Run `sql` (no arguments, rows ignored).
    pub(crate) fn run(&self, sql: &str) -> Result<(), DbErr> {
        self.with(|conn| {
            let mut st = conn.prepare_cached(sql)?;
            let mut rows = st.query([])?;
            while rows.next()?.is_some() {}
            Ok(())
        })
    }
}

/// A sea-query value bound as sqlx binds it on SQLite, so rows written here
/// read back through the pool alike: UUIDs as 16-byte blobs, JSON as text.
struct Bind<'a>(&'a Value);

impl rusqlite::ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        let int =
            |v: Option<i64>| ToSqlOutput::Owned(v.map_or(LiteValue::Null, LiteValue::Integer));
        Ok(match self.0 {
            Value::Bool(v) => int(v.map(i64::from)),
            Value::TinyInt(v) => int(v.map(i64::from)),
            Value::SmallInt(v) => int(v.map(i64::from)),
            Value::Int(v) => int(v.map(i64::from)),
            Value::BigInt(v) => int(*v),
            Value::TinyUnsigned(v) => int(v.map(i64::from)),
            Value::SmallUnsigned(v) => int(v.map(i64::from)),
            Value::Unsigned(v) => int(v.map(i64::from)),
            Value::BigUnsigned(v) => match v {
                Some(u) => {
                    int(Some(i64::try_from(*u).map_err(|e| {
                        rusqlite::Error::ToSqlConversionFailure(Box::new(e))
                    })?))
                }
                None => ToSqlOutput::Owned(LiteValue::Null),
            },
            Value::Float(v) => {
                ToSqlOutput::Owned(v.map_or(LiteValue::Null, |f| LiteValue::Real(f64::from(f))))
            }
            Value::Double(v) => ToSqlOutput::Owned(v.map_or(LiteValue::Null, LiteValue::Real)),
            Value::String(v) => match v {
                Some(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
                None => ToSqlOutput::Owned(LiteValue::Null),
            },
            Value::Char(v) => {
                ToSqlOutput::Owned(v.map_or(LiteValue::Null, |c| LiteValue::Text(c.to_string())))
            }
            Value::Bytes(v) => match v {
                Some(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
                None => ToSqlOutput::Owned(LiteValue::Null),
            },
            Value::Uuid(v) => match v {
                Some(u) => ToSqlOutput::Borrowed(ValueRef::Blob(u.as_bytes())),
                None => ToSqlOutput::Owned(LiteValue::Null),
            },
            Value::Json(v) => match v {
                Some(j) => ToSqlOutput::Owned(LiteValue::Text(
                    serde_json::to_string(j)
                        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?,
                )),
                None => ToSqlOutput::Owned(LiteValue::Null),
            },
            other => {
                return Err(rusqlite::Error::ToSqlConversionFailure(
                    format!("the writer's connection does not bind {other:?}").into(),
                ));
            }
        })
    }
}

/// One result row, from either connection.
#[derive(Debug)]
pub(crate) enum Row {
    Orm(QueryResult),
    Lite {
        names: Arc<[String]>,
        cells: Vec<LiteValue>,
    },
}

/// A column type the write path reads back.
pub(crate) trait Cell: TryGetable + Sized {
    fn from_lite(v: &LiteValue) -> Option<Self>;
}

impl Cell for String {
    fn from_lite(v: &LiteValue) -> Option<Self> {
        match v {
            LiteValue::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl Cell for i64 {
    fn from_lite(v: &LiteValue) -> Option<Self> {
        match v {
            LiteValue::Integer(i) => Some(*i),
            _ => None,
        }
    }
}

impl Cell for uuid::Uuid {
    fn from_lite(v: &LiteValue) -> Option<Self> {
        match v {
            LiteValue::Blob(b) => uuid::Uuid::from_slice(b).ok(),
            LiteValue::Text(s) => uuid::Uuid::parse_str(s).ok(),
            _ => None,
        }
    }
}

impl Row {
    /// Column `col` as `T` (`pre` as in [`QueryResult::try_get`]).
    pub(crate) fn try_get<T: Cell>(&self, pre: &str, col: &str) -> Result<T, DbErr> {
        match self {
            Row::Orm(r) => r.try_get(pre, col),
            Row::Lite { names, cells } => {
                let i = names
                    .iter()
                    .position(|n| n == col)
                    .ok_or_else(|| DbErr::Type(format!("no column `{col}` in the row")))?;
                T::from_lite(&cells[i]).ok_or_else(|| {
                    DbErr::Type(format!(
                        "column `{col}` holds {:?}, not a {}",
                        cells[i].data_type(),
                        std::any::type_name::<T>()
                    ))
                })
            }
        }
    }
}

/// Where the write path's statements go: a pool transaction, or the
/// writer's connection inside the transaction [`WriteTxn`] began on it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Tx<'a> {
    Orm(&'a DatabaseTransaction),
    Lite(&'a Lite),
}

impl Tx<'_> {
    pub(crate) fn get_database_backend(&self) -> DatabaseBackend {
        match self {
            Tx::Orm(t) => sea_orm::ConnectionTrait::get_database_backend(*t),
            Tx::Lite(_) => DatabaseBackend::Sqlite,
        }
    }

    pub(crate) async fn execute_raw(&self, stmt: Statement) -> Result<(), DbErr> {
        match self {
            Tx::Orm(t) => sea_orm::ConnectionTrait::execute_raw(*t, stmt)
                .await
                .map(drop),
            Tx::Lite(l) => l.rows(&stmt).map(drop),
        }
    }

    pub(crate) async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<Row>, DbErr> {
        match self {
            Tx::Orm(t) => Ok(sea_orm::ConnectionTrait::query_all_raw(*t, stmt)
                .await?
                .into_iter()
                .map(Row::Orm)
                .collect()),
            Tx::Lite(l) => l.rows(&stmt),
        }
    }

    pub(crate) async fn query_one_raw(&self, stmt: Statement) -> Result<Option<Row>, DbErr> {
        match self {
            Tx::Orm(t) => Ok(sea_orm::ConnectionTrait::query_one_raw(*t, stmt)
                .await?
                .map(Row::Orm)),
            Tx::Lite(l) => Ok(l.rows(&stmt)?.into_iter().next()),
        }
    }
}

/// A write transaction of the engine's write path.
pub(crate) enum WriteTxn<'a> {
    /// `None` once committed.
    Orm(Option<DatabaseTransaction>),
    Lite {
        lite: &'a Lite,
        /// The pool's connection, held so nothing else writes meanwhile.
        gate: Option<Gate>,
        open: bool,
    },
}

impl<'a> WriteTxn<'a> {
    /// Begin on the writer's connection when there is one, else on the pool.
    pub(crate) async fn begin(
        db: &DatabaseConnection,
        lite: Option<&'a Lite>,
    ) -> Result<WriteTxn<'a>, DbErr> {
        let Some(lite) = lite else {
            return Ok(WriteTxn::Orm(Some(db.begin().await?)));
        };
        let gate = match lite.kept_gate() {
            Some(gate) => gate,
            None => Gate {
                _conn: db
                    .get_sqlite_connection_pool()
                    .acquire()
                    .await
                    .map_err(|e| DbErr::Conn(RuntimeErr::SqlxError(Arc::new(e))))?,
                since: Instant::now(),
            },
        };
        lite.begin()?;
        Ok(WriteTxn::Lite {
            lite,
            gate: Some(gate),
            open: true,
        })
    }

    pub(crate) fn tx(&self) -> Result<Tx<'_>, DbErr> {
        match self {
            WriteTxn::Orm(Some(t)) => Ok(Tx::Orm(t)),
            WriteTxn::Orm(None) => Err(DbErr::Custom("the transaction is committed".into())),
            WriteTxn::Lite { lite, .. } => Ok(Tx::Lite(lite)),
        }
    }

    /// Commit. `more` is asked after the commit whether another batch is
    /// already waiting: then the pool's connection is kept for it (up to
    /// [`GATE_HOLD`] in all), else handed back.
    pub(crate) async fn commit(mut self, more: &(dyn Fn() -> bool + Sync)) -> Result<(), DbErr> {
        match &mut self {
            WriteTxn::Orm(t) => match t.take() {
                Some(t) => t.commit().await,
                None => Err(DbErr::Custom("the transaction is committed".into())),
            },
            WriteTxn::Lite { lite, open, gate } => {
                lite.run("COMMIT")?;
                *open = false;
                if let Some(g) = gate.take()
                    && g.since.elapsed() < GATE_HOLD
                    && more()
                {
                    *lite.gate.lock().unwrap_or_else(|p| p.into_inner()) = Some(g);
                }
                Ok(())
            }
        }
    }
}

impl Drop for WriteTxn<'_> {
    fn drop(&mut self) {
        if let WriteTxn::Lite {
            lite, open: true, ..
        } = self
            && let Err(e) = lite.run("ROLLBACK")
        {
            tracing::warn!(error = %e, "rolling back the writer's transaction failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Store;
    use chrono::Utc;
    use sea_orm::{ConnectionTrait, DatabaseBackend, Statement, TransactionTrait};
    use std::time::Duration;

    /// A store on a fresh file, and the engine lease on it.
    async fn leased() -> (tempfile::TempDir, Store, crate::Lease) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
        let store = Store::open(&url).await.unwrap();
        let lease = store
            .acquire_lease("engine-a", Duration::from_secs(3600))
            .await
            .unwrap()
            .unwrap();
        (dir, store, lease)
    }

    /// A pool transaction that read before it writes must not meet a commit
    /// of the writer's connection in between (SQLite would refuse its write):
    /// the write path waits for the pool's connection.
    #[tokio::test]
    async fn the_write_path_waits_for_a_pool_transaction() {
        let (_dir, store, lease) = leased().await;
        assert!(
            store.lite.is_some(),
            "a file database gets the writer's connection"
        );

        let txn = store.db.begin().await.unwrap();
        let sql = |s: &str| Statement::from_string(DatabaseBackend::Sqlite, s);
        txn.query_all_raw(sql("SELECT count(*) FROM inbox"))
            .await
            .unwrap();

        let writer = {
            let store = store.clone();
            let lease = lease.clone();
            tokio::spawn(async move { store.transition_many(&lease, &[]).await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !writer.is_finished(),
            "the write path ran inside a pool transaction"
        );

        txn.execute_raw(sql(
            "INSERT INTO inbox (delivery_key, event_id, received_at_ms) VALUES ('S|1', 'e1', 0)",
        ))
        .await
        .expect("the pool transaction writes after its read");
        txn.commit().await.unwrap();
        writer.await.unwrap().expect("the write path ran after it");
    }

    /// The write path keeps the pool's connection for a next batch only
    /// while one is waiting, for at most [`super::GATE_HOLD`], and hands it
    /// back when asked.
    #[tokio::test]
    async fn the_pools_connection_is_kept_only_for_a_waiting_batch() {
        let (_dir, store, lease) = leased().await;
        let sql = || Statement::from_string(DatabaseBackend::Sqlite, "SELECT count(*) FROM runs");
        let pool_free = async || {
            tokio::time::timeout(Duration::from_millis(300), store.db.query_one_raw(sql()))
                .await
                .is_ok()
        };
        let write = async |more: bool| {
            store
                .write_batch(&lease, Utc::now(), &[], &[], &mut |_| true, &|| more)
                .await
                .unwrap();
        };

        write(false).await;
        assert!(pool_free().await, "nothing waits: the connection goes back");

        write(true).await;
        write(true).await;
        assert!(
            !pool_free().await,
            "a batch waits: the connection is kept for it, and again within the hold time"
        );
        store.release_write_gate();
        assert!(pool_free().await, "handed back when the writer is idle");

        write(true).await;
        tokio::time::sleep(super::GATE_HOLD * 2).await;
        write(true).await;
        assert!(
            pool_free().await,
            "held longer than the hold time: the others get a turn"
        );
    }

    #[tokio::test]
    async fn a_transaction_left_open_does_not_block_the_next() {
        let (_dir, store, lease) = leased().await;
        let lite = store.lite.as_deref().unwrap();
        lite.run("BEGIN").unwrap();
        store
            .transition_many(&lease, &[])
            .await
            .expect("the stray transaction is rolled back first");
        assert!(lite.with(|c| Ok(c.is_autocommit())).unwrap());
    }

    /// Both connections that write run with the same settings.
    #[tokio::test]
    async fn the_writer_connection_has_the_pools_settings() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
        let store = Store::open(&url).await.unwrap();
        let lite = store.lite.as_deref().unwrap();
        for (key, _) in crate::SQLITE_PRAGMAS {
            let sql = format!("PRAGMA {key}");
            let pool = store
                .db
                .query_one_raw(Statement::from_string(DatabaseBackend::Sqlite, sql.clone()))
                .await
                .unwrap()
                .unwrap();
            let pool = match pool.try_get_by_index::<i64>(0) {
                Ok(n) => n.to_string(),
                Err(_) => pool.try_get_by_index::<String>(0).unwrap(),
            };
            let own = lite
                .with(|c| c.query_row(&sql, [], |r| r.get::<_, rusqlite::types::Value>(0)))
                .unwrap();
            let own = match own {
                rusqlite::types::Value::Integer(n) => n.to_string(),
                rusqlite::types::Value::Text(t) => t,
                other => panic!("{key}: {other:?}"),
            };
            assert_eq!(own, pool, "PRAGMA {key}");
        }
    }

    #[tokio::test]
    async fn an_in_memory_database_stays_on_the_pool() {
        let store = Store::open("sqlite::memory:").await.unwrap();
        assert!(store.lite.is_none());
    }
}
