//! The writer thread's loop: spool → database, retention, reconnects. Plain blocking
//! code; it runs on a thread of its own, never on an event loop.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::spool::{decode, pending, Spool};
use super::{statements, Event, Statement, Target, MIGRATIONS, SCHEMA_TABLE};
use crate::playlist::time::format_pdt;
use crate::record::retention::{self, Policy};

/// A database the writer can use.
pub trait Backend {
    fn batch(&mut self, sql: &str) -> Result<(), String>;
    fn version(&mut self) -> Result<i64, String>;
    /// Runs migration `version` and records it, in one transaction.
    fn migration(&mut self, version: i64, sql: &str, at: &str) -> Result<(), String>;
    /// Runs the statements in one transaction.
    fn transaction(&mut self, stmts: &[Statement]) -> Result<(), String>;
}

/// Brings the schema to the latest version.
pub fn migrate(b: &mut dyn Backend, wall_ms: i64) -> Result<(), String> {
    b.batch(SCHEMA_TABLE)?;
    let have = b.version()?;
    for (v, sql) in MIGRATIONS {
        if *v > have {
            b.migration(*v, sql, &format_pdt(wall_ms))
                .map_err(|e| format!("migration {v}: {e}"))?;
        }
    }
    Ok(())
}

/// Opens the database a target names.
pub fn open(target: &Target) -> Result<Box<dyn Backend>, String> {
    Ok(match target {
        Target::Sqlite(path) => Box::new(super::sqlite::Sqlite::open(
            path,
            Duration::from_millis(200),
        )?),
        Target::Postgres(conninfo) => Box::new(super::pg::Postgres::connect(
            conninfo,
            Duration::from_secs(3),
        )?),
    })
}

/// Applies spooled events, oldest first, `batch` per transaction; deletes each file once
/// committed. Returns how many were applied; stops at the first database error.
/// Unreadable files are set aside (renamed `.bad`) with a log line.
pub fn drain(
    dir: &Path,
    backend: &mut dyn Backend,
    batch: usize,
    log: &mut dyn FnMut(String),
) -> Result<usize, String> {
    let files = pending(dir).map_err(|e| format!("reading spool {}: {e}", dir.display()))?;
    let mut total = 0;
    for chunk in files.chunks(batch.max(1)) {
        let mut stmts = Vec::new();
        let mut done: Vec<&PathBuf> = Vec::new();
        for f in chunk {
            match fs::read_to_string(f) {
                Ok(t) => match decode(&t) {
                    Some(ev) => {
                        stmts.extend(statements(&ev));
                        done.push(f);
                    }
                    None => {
                        log(format!("catalog: unreadable spool file {}", f.display()));
                        let _ = fs::rename(f, f.with_extension("bad"));
                    }
                },
                // Another worker's writer applied it meanwhile.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("reading {}: {e}", f.display())),
            }
        }
        if !stmts.is_empty() {
            backend.transaction(&stmts)?;
        }
        for f in &done {
            let _ = fs::remove_file(f);
        }
        total += done.len();
    }
    Ok(total)
}

/// How often an idle writer looks at the spool anyway.
const RESCAN: Duration = Duration::from_secs(2);

pub enum Msg {
    /// Events were spooled.
    Wake,
    /// The worker exits: one last try, then return.
    Stop,
}

pub struct WriterConfig {
    pub target: Target,
    pub spool_dir: PathBuf,
    /// Recording folders and their retention (empty: this writer runs no retention).
    pub retention: Vec<(PathBuf, Policy)>,
    pub retention_interval: Duration,
    /// Identifies this writer's withdraw events in the spool.
    pub pid: u32,
    /// How long to wait before trying a failed database again.
    pub retry: Duration,
    pub batch: usize,
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The writer thread's body: applies the spool whenever woken (and every `retry` while
/// something failed), runs retention, and returns on [`Msg::Stop`] or when the sender
/// is gone. `log(error, line)` reports.
pub fn run(cfg: WriterConfig, rx: Receiver<Msg>, log: &mut dyn FnMut(bool, String)) {
    let mut backend: Option<Box<dyn Backend>> = None;
    let mut failing: Option<String> = None;
    let mut spool = Spool::new(&cfg.spool_dir, cfg.pid);
    let mut next_retention = Instant::now();
    let mut stop = false;
    let mut dirty = true; // the spool may hold events from before we started
    loop {
        if !cfg.retention.is_empty() && Instant::now() >= next_retention {
            next_retention = Instant::now() + cfg.retention_interval;
            for (root, policy) in &cfg.retention {
                match retention::run(root, policy, wall_ms()) {
                    Ok(pass) => {
                        for id in pass.withdrawn {
                            log(false, format!("retention: recording \"{id}\" expired"));
                            if let Err(e) = spool.put(&Event::Withdraw { id }, wall_ms()) {
                                log(true, format!("catalog: spooling: {e}"));
                            }
                            dirty = true;
                        }
                        for dir in pass.removed {
                            log(false, format!("retention: removed {}", dir.display()));
                        }
                    }
                    Err(e) => log(true, format!("retention in {}: {e}", root.display())),
                }
            }
        }
        if dirty {
            let result = (|| {
                if backend.is_none() {
                    let mut b = open(&cfg.target)?;
                    migrate(b.as_mut(), wall_ms())?;
                    backend = Some(b);
                }
                let b = backend.as_mut().expect("backend");
                drain(&cfg.spool_dir, b.as_mut(), cfg.batch, &mut |m| log(true, m))
            })();
            match result {
                Ok(_) => {
                    dirty = false;
                    if failing.take().is_some() {
                        log(
                            false,
                            "catalog: database reachable again, spool applied".into(),
                        );
                    }
                }
                Err(e) => {
                    backend = None;
                    if failing.as_deref() != Some(e.as_str()) {
                        log(true, format!("catalog: {e} (rows stay spooled, retrying)"));
                        failing = Some(e);
                    }
                }
            }
        }
        if stop {
            return;
        }
        // Idle, the spool is still looked at now and then: a worker that exited (reload,
        // crash) may have left rows its own writer had no time to apply.
        let wait = if dirty {
            cfg.retry
        } else if cfg.retention.is_empty() {
            RESCAN
        } else {
            next_retention
                .saturating_duration_since(Instant::now())
                .min(RESCAN)
        };
        match rx.recv_timeout(wait) {
            Ok(Msg::Wake) => dirty = true,
            Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => {
                stop = true;
                dirty = true;
            }
            Err(RecvTimeoutError::Timeout) => dirty = true,
        }
        // Coalesce a burst of wake-ups.
        while let Ok(m) = rx.try_recv() {
            if matches!(m, Msg::Stop) {
                stop = true;
            }
            dirty = true;
        }
    }
}
