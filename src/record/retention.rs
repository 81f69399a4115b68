//! Retention of recordings: which expire (pure), and removing them in two steps.
//!
//! A recording expires when it ended longer ago than the keep time, or when the
//! recordings (oldest first) exceed the size budget. An expired recording first loses
//! its playlist (no new player can start it) and its catalog row; its media stay for
//! the playlist's duration (the availability rule: a player that fetched the playlist
//! just before may still play it to the end), then the folder goes. A live recording
//! never expires.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::{json_int, list_ids, list_keys, INFO, PLAYLIST};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Keep recordings that ended less than this long ago (0: no time limit).
    pub max_age_ms: i64,
    /// Keep at most this many bytes of finished recordings (0: no size limit).
    pub max_bytes: u64,
}

impl Policy {
    pub fn is_off(&self) -> bool {
        self.max_age_ms <= 0 && self.max_bytes == 0
    }
}

/// One recording as retention sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub id: String,
    /// None while live.
    pub ended_ms: Option<i64>,
    pub bytes: u64,
}

/// Indexes (into `entries`, sorted oldest first by the caller) of expired recordings.
pub fn expired(entries: &[Entry], policy: &Policy, now_ms: i64) -> Vec<usize> {
    let mut out = Vec::new();
    if policy.is_off() {
        return out;
    }
    let mut total: u64 = entries
        .iter()
        .filter(|e| e.ended_ms.is_some())
        .map(|e| e.bytes)
        .sum();
    for (i, e) in entries.iter().enumerate() {
        let Some(ended) = e.ended_ms else { continue };
        let too_old = policy.max_age_ms > 0 && now_ms - ended >= policy.max_age_ms;
        let too_big = policy.max_bytes > 0 && total > policy.max_bytes;
        if too_old || too_big {
            total -= e.bytes;
            out.push(i);
        }
    }
    out
}

/// Marks an expired recording as withdrawn (ms since the epoch, in its folder).
pub const WITHDRAWN: &str = ".withdrawn";

/// What one retention pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Recording ids (`key/id`) withdrawn now: their catalog rows must go.
    pub withdrawn: Vec<String>,
    /// Folders removed now.
    pub removed: Vec<PathBuf>,
}

/// Runs retention over `root` at wall-clock `now_ms` (blocking file I/O: run it off the
/// event loop).
pub fn run(root: &Path, policy: &Policy, now_ms: i64) -> io::Result<Pass> {
    let mut pass = Pass::default();
    let mut entries = Vec::new();
    for key in list_keys(root) {
        for id in list_ids(&root.join(&key)) {
            let dir = root.join(&key).join(&id);
            if let Ok(t) = fs::read_to_string(dir.join(WITHDRAWN)) {
                // Second step: the playlist's duration has passed since it was withdrawn.
                let at: i64 = t.trim().parse().unwrap_or(0);
                let info = fs::read_to_string(dir.join(INFO)).unwrap_or_default();
                let dur = json_int(&info, "duration_ms").unwrap_or(0);
                if now_ms - at >= dur {
                    match fs::remove_dir_all(&dir) {
                        Ok(()) => pass.removed.push(dir),
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
                continue;
            }
            let info = fs::read_to_string(dir.join(INFO)).unwrap_or_default();
            let ended_ms = json_int(&info, "ended_ms");
            let bytes = dir_bytes(&dir);
            entries.push(Entry {
                key: key.clone(),
                id,
                ended_ms,
                bytes,
            });
        }
    }
    entries.sort_by_key(|e| (e.ended_ms.unwrap_or(i64::MAX), super::id_order(&e.id)));
    for i in expired(&entries, policy, now_ms) {
        let e = &entries[i];
        let dir = root.join(&e.key).join(&e.id);
        super::write_atomic(&dir, WITHDRAWN, now_ms.to_string().as_bytes())?;
        match fs::remove_file(dir.join(PLAYLIST)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        pass.withdrawn.push(format!("{}/{}", e.key, e.id));
    }
    Ok(pass)
}

fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(id: &str, ended: Option<i64>, bytes: u64) -> Entry {
        Entry {
            key: "k".into(),
            id: id.into(),
            ended_ms: ended,
            bytes,
        }
    }

    #[test]
    fn by_age_and_size() {
        let list = [
            e("a", Some(1_000), 100),
            e("b", Some(5_000), 100),
            e("c", Some(9_000), 100),
            e("live", None, 1_000),
        ];
        let off = Policy::default();
        assert!(expired(&list, &off, 1_000_000).is_empty());
        let age = Policy {
            max_age_ms: 4_500,
            max_bytes: 0,
        };
        assert_eq!(expired(&list, &age, 10_000), vec![0, 1]);
        let size = Policy {
            max_age_ms: 0,
            max_bytes: 150,
        };
        // Live recordings neither expire nor count.
        assert_eq!(expired(&list, &size, 10_000), vec![0, 1]);
        let both = Policy {
            max_age_ms: 8_000,
            max_bytes: 250,
        };
        assert_eq!(expired(&list, &both, 10_000), vec![0]);
    }
}
