//! The SQLite catalog (embedded, bundled with the module).

use std::time::Duration;

use rusqlite::types::Value as SqlValue;
use rusqlite::Connection;

use super::writer::Backend;
use super::{Statement, Value};

pub struct Sqlite {
    conn: Connection,
}

fn err(e: rusqlite::Error) -> String {
    e.to_string()
}

fn value(v: &Value) -> SqlValue {
    match v {
        Value::Text(s) => SqlValue::Text(s.clone()),
        Value::Int(i) => SqlValue::Integer(*i),
        Value::Real(f) => SqlValue::Real(*f),
        Value::OptText(s) => s.clone().map_or(SqlValue::Null, SqlValue::Text),
        Value::OptInt(i) => i.map_or(SqlValue::Null, SqlValue::Integer),
    }
}

impl Sqlite {
    /// Opens (creating) the database file. A lock held by someone else makes calls fail
    /// after `busy` (the writer retries later); WAL lets readers (`sqlite3`) in meanwhile.
    pub fn open(path: &str, busy: Duration) -> Result<Sqlite, String> {
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(busy).map_err(err)?;
        conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
            .map_err(err)?;
        conn.execute_batch("PRAGMA synchronous=NORMAL")
            .map_err(err)?;
        Ok(Sqlite { conn })
    }
}

impl Backend for Sqlite {
    fn batch(&mut self, sql: &str) -> Result<(), String> {
        self.conn.execute_batch(sql).map_err(err)
    }

    fn version(&mut self) -> Result<i64, String> {
        self.conn
            .query_row(super::SCHEMA_VERSION, [], |r| r.get(0))
            .map_err(err)
    }

    fn migration(&mut self, version: i64, sql: &str, at: &str) -> Result<(), String> {
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute_batch(sql).map_err(err)?;
        tx.execute(super::SCHEMA_RECORD, rusqlite::params![version, at])
            .map_err(err)?;
        tx.commit().map_err(err)
    }

    fn transaction(&mut self, stmts: &[Statement]) -> Result<(), String> {
        let tx = self.conn.transaction().map_err(err)?;
        for (sql, params) in stmts {
            let mut st = tx.prepare_cached(sql).map_err(err)?;
            st.execute(rusqlite::params_from_iter(params.iter().map(value)))
                .map_err(err)?;
        }
        tx.commit().map_err(err)
    }
}
