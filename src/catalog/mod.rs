//! The catalog: publish sessions and recordings in SQL (SQLite or PostgreSQL).
//!
//! Nothing here runs on an nginx event loop. The worker turns what happens into
//! [`Event`]s and drops each into the spool (`spool::Spool::put`: one small file, written
//! and renamed like a media file); its writer thread ([`writer::run`]) applies the spooled
//! events in order, in batches, to the database and deletes their files once committed.
//! A slow, locked or absent database only delays rows: the spool keeps them across a
//! reload, a worker restart or a crash, and any worker's writer finishes what another
//! left (rows are upserts keyed by id, so applying one twice is harmless).
//!
//! The SQL text and the migrations are the same for both databases.

pub mod pg;
pub mod spool;
pub mod sqlite;
pub mod writer;

use crate::playlist::time::format_pdt;
use crate::record::{MediaInfo, Summary};

/// Something the catalog records.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A publish session started, progressed or ended (an upsert of its row; also of its
    /// stream's row once the media are known).
    Session {
        origin: String,
        summary: Box<Summary>,
    },
    /// A recording expired: its row goes (its files go by retention).
    Withdraw { id: String },
}

/// A value bound to a statement parameter.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Text(String),
    Int(i64),
    Real(f64),
    OptText(Option<String>),
    OptInt(Option<i64>),
}

/// Versioned migrations: (version, SQL). Applied in order, each in a transaction with
/// its row in `vid_schema`; never edited once shipped (add a new version instead).
pub const MIGRATIONS: &[(i64, &str)] = &[(
    1,
    "CREATE TABLE streams (
    key TEXT PRIMARY KEY,
    video_codec TEXT NOT NULL DEFAULT '',
    audio_codec TEXT NOT NULL DEFAULT '',
    width BIGINT NOT NULL DEFAULT 0,
    height BIGINT NOT NULL DEFAULT 0,
    frame_rate DOUBLE PRECISION NOT NULL DEFAULT 0,
    avg_bitrate BIGINT NOT NULL DEFAULT 0,
    peak_bitrate BIGINT NOT NULL DEFAULT 0,
    last_session TEXT NOT NULL DEFAULT '',
    updated_at TEXT NOT NULL DEFAULT ''
);
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    origin TEXT NOT NULL DEFAULT '',
    started_at TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    ended_at TEXT,
    ended_ms BIGINT,
    duration_ms BIGINT NOT NULL DEFAULT 0,
    bytes BIGINT NOT NULL DEFAULT 0,
    segments BIGINT NOT NULL DEFAULT 0,
    discontinuities BIGINT NOT NULL DEFAULT 0,
    recorded BIGINT NOT NULL DEFAULT 0,
    path TEXT NOT NULL DEFAULT '',
    url TEXT NOT NULL DEFAULT '',
    video_codec TEXT NOT NULL DEFAULT '',
    audio_codec TEXT NOT NULL DEFAULT '',
    width BIGINT NOT NULL DEFAULT 0,
    height BIGINT NOT NULL DEFAULT 0,
    frame_rate DOUBLE PRECISION NOT NULL DEFAULT 0,
    avg_bitrate BIGINT NOT NULL DEFAULT 0,
    peak_bitrate BIGINT NOT NULL DEFAULT 0,
    rev BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX sessions_key_started ON sessions (key, started_ms);
CREATE INDEX sessions_started ON sessions (started_ms);
CREATE VIEW recordings AS SELECT * FROM sessions WHERE recorded = 1;
",
)];

/// Creates the migrations table (both databases accept it as is).
pub const SCHEMA_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS vid_schema (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)";
pub const SCHEMA_VERSION: &str = "SELECT COALESCE(MAX(version), 0) FROM vid_schema";
pub const SCHEMA_RECORD: &str = "INSERT INTO vid_schema (version, applied_at) VALUES ($1, $2)";

const SESSION_COLUMNS: &[&str] = &[
    "id",
    "key",
    "origin",
    "started_at",
    "started_ms",
    "ended_at",
    "ended_ms",
    "duration_ms",
    "bytes",
    "segments",
    "discontinuities",
    "recorded",
    "path",
    "url",
    "video_codec",
    "audio_codec",
    "width",
    "height",
    "frame_rate",
    "avg_bitrate",
    "peak_bitrate",
    "rev",
];

const STREAM_COLUMNS: &[&str] = &[
    "key",
    "video_codec",
    "audio_codec",
    "width",
    "height",
    "frame_rate",
    "avg_bitrate",
    "peak_bitrate",
    "last_session",
    "updated_at",
];

/// `INSERT … VALUES ($1…) ON CONFLICT (pk) DO UPDATE SET c = excluded.c …`
/// `guard`: a condition on the stored row for the update to happen.
fn upsert(table: &str, cols: &[&str], guard: &str) -> String {
    let params: Vec<String> = (1..=cols.len()).map(|i| format!("${i}")).collect();
    let sets: Vec<String> = cols[1..]
        .iter()
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    format!(
        "INSERT INTO {table} ({}) VALUES ({}) ON CONFLICT ({}) DO UPDATE SET {}{guard}",
        cols.join(", "),
        params.join(", "),
        cols[0],
        sets.join(", ")
    )
}

/// A session's row only moves forward: an event applied late (by another worker's
/// writer, or replayed) never overwrites a newer one.
pub fn upsert_session_sql() -> String {
    upsert(
        "sessions",
        SESSION_COLUMNS,
        " WHERE sessions.rev <= excluded.rev",
    )
}

pub fn upsert_stream_sql() -> String {
    upsert("streams", STREAM_COLUMNS, "")
}

/// Orders the states of one session: more segments, then ended.
pub fn revision(s: &Summary) -> i64 {
    (s.segments.min(i64::MAX as u64 / 4) as i64) * 2 + i64::from(s.ended_ms.is_some())
}

pub const DELETE_SESSION: &str = "DELETE FROM sessions WHERE id = $1";

/// One statement of an event: SQL and its parameters.
pub type Statement = (String, Vec<Value>);

fn media_values(m: &MediaInfo) -> Vec<Value> {
    vec![
        Value::Text(m.video_codec.clone()),
        Value::Text(m.audio_codec.clone()),
        Value::Int(m.width as i64),
        Value::Int(m.height as i64),
        Value::Real(if m.frame_rate.is_finite() {
            m.frame_rate
        } else {
            0.0
        }),
        Value::Int(m.avg_bitrate.min(i64::MAX as u64) as i64),
        Value::Int(m.peak_bitrate.min(i64::MAX as u64) as i64),
    ]
}

/// The statements that apply an event, in order.
pub fn statements(ev: &Event) -> Vec<Statement> {
    match ev {
        Event::Withdraw { id } => vec![(DELETE_SESSION.into(), vec![Value::Text(id.clone())])],
        Event::Session { origin, summary: s } => {
            let int = |v: u64| Value::Int(v.min(i64::MAX as u64) as i64);
            let mut v = vec![
                Value::Text(s.id.clone()),
                Value::Text(s.key.clone()),
                Value::Text(origin.clone()),
                Value::Text(format_pdt(s.started_ms)),
                Value::Int(s.started_ms),
                Value::OptText(s.ended_ms.map(format_pdt)),
                Value::OptInt(s.ended_ms),
                int(s.duration_ms),
                int(s.bytes),
                int(s.segments),
                int(s.discontinuities),
                Value::Int(i64::from(!s.path.is_empty())),
                Value::Text(s.path.clone()),
                Value::Text(s.url.clone()),
            ];
            v.extend(media_values(&s.media));
            v.push(Value::Int(revision(s)));
            let mut out = vec![(upsert_session_sql(), v)];
            if !s.media.video_codec.is_empty() || !s.media.audio_codec.is_empty() {
                let mut w = vec![Value::Text(s.key.clone())];
                w.extend(media_values(&s.media));
                w.push(Value::Text(s.id.clone()));
                w.push(Value::Text(format_pdt(s.ended_ms.unwrap_or(s.started_ms))));
                out.push((upsert_stream_sql(), w));
            }
            out
        }
    }
}

/// Which database a connection string selects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Sqlite(String),
    Postgres(String),
}

/// `sqlite:PATH`, `postgresql://…` / `postgres://…` (or libpq `key=value` pairs after
/// `postgresql:`); a bare path is SQLite.
pub fn parse_target(s: &str) -> Result<Target, String> {
    if s.starts_with("postgresql://") || s.starts_with("postgres://") {
        return Ok(Target::Postgres(s.to_string()));
    }
    if let Some(rest) = s.strip_prefix("postgresql:") {
        if rest.is_empty() {
            return Err("empty PostgreSQL connection string".into());
        }
        return Ok(Target::Postgres(rest.to_string()));
    }
    let path = s.strip_prefix("sqlite:").unwrap_or(s);
    if path.is_empty() {
        return Err("empty SQLite path".into());
    }
    if path.contains("://") {
        return Err(format!("unknown catalog database \"{s}\""));
    }
    Ok(Target::Sqlite(path.to_string()))
}

#[cfg(test)]
mod tests;
