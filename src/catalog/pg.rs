//! The PostgreSQL catalog: the same schema, for several origins sharing one catalog.

use std::time::Duration;

use postgres::types::ToSql;
use postgres::{Client, NoTls};

use super::writer::Backend;
use super::{Statement, Value};

pub struct Postgres {
    client: Client,
}

fn err(e: postgres::Error) -> String {
    e.to_string()
}

impl Postgres {
    /// Connects (plain TCP or a unix socket; no TLS) with a bounded connect time.
    pub fn connect(conninfo: &str, timeout: Duration) -> Result<Postgres, String> {
        let mut cfg: postgres::Config = conninfo.parse().map_err(err)?;
        cfg.connect_timeout(timeout);
        cfg.application_name("vid");
        let client = cfg.connect(NoTls).map_err(err)?;
        Ok(Postgres { client })
    }
}

fn boxed(v: &Value) -> Box<dyn ToSql + Sync> {
    match v {
        Value::Text(s) => Box::new(s.clone()),
        Value::Int(i) => Box::new(*i),
        Value::Real(f) => Box::new(*f),
        Value::OptText(s) => Box::new(s.clone()),
        Value::OptInt(i) => Box::new(*i),
    }
}

impl Backend for Postgres {
    fn batch(&mut self, sql: &str) -> Result<(), String> {
        self.client.batch_execute(sql).map_err(err)
    }

    fn version(&mut self) -> Result<i64, String> {
        let row = self
            .client
            .query_one(super::SCHEMA_VERSION, &[])
            .map_err(err)?;
        row.try_get(0).map_err(err)
    }

    fn migration(&mut self, version: i64, sql: &str, at: &str) -> Result<(), String> {
        let mut tx = self.client.transaction().map_err(err)?;
        tx.batch_execute(sql).map_err(err)?;
        tx.execute(super::SCHEMA_RECORD, &[&version, &at])
            .map_err(err)?;
        tx.commit().map_err(err)
    }

    fn transaction(&mut self, stmts: &[Statement]) -> Result<(), String> {
        let mut tx = self.client.transaction().map_err(err)?;
        for (sql, params) in stmts {
            let st = tx.prepare(sql).map_err(err)?;
            let owned: Vec<Box<dyn ToSql + Sync>> = params.iter().map(boxed).collect();
            let refs: Vec<&(dyn ToSql + Sync)> = owned.iter().map(|b| b.as_ref()).collect();
            tx.execute(&st, &refs).map_err(err)?;
        }
        tx.commit().map_err(err)
    }
}
