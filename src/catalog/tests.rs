use std::fs;
use std::path::PathBuf;

use super::spool::{decode, encode, pending, Spool};
use super::sqlite::Sqlite;
use super::writer::{drain, migrate, Backend};
use super::*;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vid-cat-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn session(id: &str, segments: u64, ended: Option<i64>) -> Event {
    Event::Session {
        origin: "host\tone".into(),
        summary: Box::new(Summary {
            id: id.into(),
            key: id.split('/').next().unwrap().into(),
            started_ms: 1_764_000_000_000,
            ended_ms: ended,
            duration_ms: segments * 2000,
            bytes: segments * 1000,
            segments,
            discontinuities: 0,
            path: "/var/rec/x\\y".into(),
            url: "/recordings/x/index.m3u8".into(),
            media: MediaInfo {
                video_codec: if segments > 0 {
                    "avc1.64001f".into()
                } else {
                    String::new()
                },
                audio_codec: if segments > 0 {
                    "mp4a.40.2".into()
                } else {
                    String::new()
                },
                width: 1280,
                height: 720,
                frame_rate: 29.97,
                avg_bitrate: 2_000_000,
                peak_bitrate: 2_500_000,
            },
        }),
    }
}

#[test]
fn spool_round_trip() {
    for ev in [
        session("cam/20251124T160000Z", 3, Some(1_764_000_060_000)),
        session("cam/20251124T160000Z", 0, None),
        Event::Withdraw {
            id: "a/b\nc".into(),
        },
    ] {
        let line = encode(&ev);
        assert_eq!(line.matches('\n').count(), 1);
        assert_eq!(decode(&line), Some(ev));
    }
    assert_eq!(decode("garbage"), None);
    assert_eq!(decode("vid-catalog-1\tS\t1\t2"), None);
    assert_eq!(decode("vid-catalog-1\tW\ta\\q"), None);
}

#[test]
fn targets() {
    assert_eq!(
        parse_target("/x/c.db"),
        Ok(Target::Sqlite("/x/c.db".into()))
    );
    assert_eq!(
        parse_target("sqlite:/x/c.db"),
        Ok(Target::Sqlite("/x/c.db".into()))
    );
    assert_eq!(
        parse_target("postgresql://u@h/db"),
        Ok(Target::Postgres("postgresql://u@h/db".into()))
    );
    assert_eq!(
        parse_target("postgresql:host=/tmp dbname=vid"),
        Ok(Target::Postgres("host=/tmp dbname=vid".into()))
    );
    assert!(parse_target("mysql://x").is_err());
    assert!(parse_target("sqlite:").is_err());
}

#[test]
fn sql_text() {
    let s = upsert_session_sql();
    assert!(s.starts_with("INSERT INTO sessions (id, key, origin,"));
    assert!(s.contains("$22)"));
    assert!(!s.contains("$23"));
    assert!(s.contains("ON CONFLICT (id) DO UPDATE SET key = excluded.key,"));
    assert!(s.ends_with("WHERE sessions.rev <= excluded.rev"));
    let st = statements(&session("k/1", 1, None));
    assert_eq!(st.len(), 2);
    assert_eq!(st[0].1.len(), 22);
    assert_eq!(st[1].1.len(), 10);
    // No media yet: the stream's row is left alone.
    assert_eq!(statements(&session("k/1", 0, None)).len(), 1);
}

fn count(c: &rusqlite::Connection, sql: &str) -> i64 {
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn sqlite_spool_to_rows() {
    let d = tmp("sqlite");
    let db = d.join("catalog.sqlite");
    let spool_dir = d.join("spool");
    let mut spool = Spool::new(&spool_dir, 7);
    let t = 1_764_000_000_000;
    spool.put(&session("cam/A", 0, None), t).unwrap();
    spool.put(&session("cam/A", 5, None), t + 1).unwrap();
    spool
        .put(&session("cam/A", 9, Some(t + 20_000)), t + 2)
        .unwrap();
    spool
        .put(&session("dog/B", 2, Some(t + 5_000)), t + 3)
        .unwrap();
    fs::write(spool_dir.join("0000000000001-1-00000001.ev"), "nonsense").unwrap();
    assert_eq!(pending(&spool_dir).unwrap().len(), 5);

    let mut b = Sqlite::open(db.to_str().unwrap(), std::time::Duration::from_millis(50)).unwrap();
    migrate(&mut b, t).unwrap();
    migrate(&mut b, t).unwrap(); // idempotent
    let mut logged = Vec::new();
    assert_eq!(
        drain(&spool_dir, &mut b, 2, &mut |m| logged.push(m)).unwrap(),
        4
    );
    assert_eq!(logged.len(), 1, "the unreadable file is reported");
    assert!(pending(&spool_dir).unwrap().is_empty());

    let c = rusqlite::Connection::open(&db).unwrap();
    assert_eq!(count(&c, "SELECT MAX(version) FROM vid_schema"), 1);
    assert_eq!(count(&c, "SELECT COUNT(*) FROM sessions"), 2);
    assert_eq!(
        count(&c, "SELECT segments FROM sessions WHERE id = 'cam/A'"),
        9
    );
    assert_eq!(
        count(&c, "SELECT ended_ms FROM sessions WHERE id = 'cam/A'"),
        t + 20_000
    );
    assert_eq!(count(&c, "SELECT COUNT(*) FROM recordings"), 2);
    assert_eq!(count(&c, "SELECT COUNT(*) FROM streams"), 2);
    assert_eq!(
        count(&c, "SELECT height FROM streams WHERE key = 'cam'"),
        720
    );
    let ended: String = c
        .query_row(
            "SELECT ended_at FROM sessions WHERE id = 'cam/A'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(ended, "2025-11-24T16:00:20.000Z");

    // A late replay of an older state does not regress the row.
    b.transaction(&statements(&session("cam/A", 5, None)))
        .unwrap();
    assert_eq!(
        count(&c, "SELECT segments FROM sessions WHERE id = 'cam/A'"),
        9
    );
    assert_eq!(
        count(&c, "SELECT COUNT(*) FROM sessions WHERE ended_ms IS NULL"),
        0
    );

    // Withdrawn recordings lose their row.
    spool
        .put(&Event::Withdraw { id: "dog/B".into() }, t + 4)
        .unwrap();
    assert_eq!(drain(&spool_dir, &mut b, 64, &mut |_| {}).unwrap(), 1);
    assert_eq!(count(&c, "SELECT COUNT(*) FROM sessions"), 1);
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn locked_sqlite_keeps_spool() {
    let d = tmp("locked");
    let db = d.join("c.sqlite");
    let spool_dir = d.join("spool");
    let mut b = Sqlite::open(db.to_str().unwrap(), std::time::Duration::from_millis(20)).unwrap();
    migrate(&mut b, 0).unwrap();
    let mut spool = Spool::new(&spool_dir, 1);
    spool.put(&session("cam/A", 1, None), 1).unwrap();
    let locker = rusqlite::Connection::open(&db).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    assert!(drain(&spool_dir, &mut b, 64, &mut |_| {}).is_err());
    assert_eq!(pending(&spool_dir).unwrap().len(), 1, "kept for later");
    locker.execute_batch("COMMIT").unwrap();
    assert_eq!(drain(&spool_dir, &mut b, 64, &mut |_| {}).unwrap(), 1);
    assert_eq!(count(&locker, "SELECT COUNT(*) FROM sessions"), 1);
    let _ = fs::remove_dir_all(&d);
}
