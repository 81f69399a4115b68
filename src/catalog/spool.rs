//! The spool: catalog events waiting for the database, one small file each.
//!
//! A worker writes `{ms:013}-{pid}-{seq:08}.ev` (under a temporary name, then renamed,
//! like media files; no fsync), so names sort in the order events happened; a writer
//! thread (of any worker) applies them in that order and deletes each once committed.
//! The files survive a reload, a worker restart or a database outage.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::Event;
use crate::record::{MediaInfo, Summary};

const MAGIC: &str = "vid-catalog-1";

/// Where one worker drops its events.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    pid: u32,
    seq: u64,
}

impl Spool {
    pub fn new(dir: &Path, pid: u32) -> Spool {
        Spool {
            dir: dir.to_path_buf(),
            pid,
            seq: 0,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes one event (creating the folder if needed); returns its file.
    pub fn put(&mut self, ev: &Event, wall_ms: i64) -> io::Result<PathBuf> {
        self.seq += 1;
        let name = format!("{:013}-{}-{:08}.ev", wall_ms.max(0), self.pid, self.seq);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let data = encode(ev);
        let write = |tmp: &Path| -> io::Result<()> {
            let mut f = fs::File::create(tmp)?;
            f.write_all(data.as_bytes())
        };
        if let Err(e) = write(&tmp) {
            if e.kind() != io::ErrorKind::NotFound {
                return Err(e);
            }
            fs::create_dir_all(&self.dir)?;
            write(&tmp)?;
        }
        let path = self.dir.join(&name);
        if let Err(e) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(path)
    }
}

/// Spooled event files, oldest first.
pub fn pending(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| !n.starts_with('.') && n.ends_with(".ev"))
            })
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    v.sort();
    Ok(v)
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '\t' => o.push_str("\\t"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            c => o.push(c),
        }
    }
    o
}

fn unesc(s: &str) -> Option<String> {
    let mut o = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            o.push(c);
            continue;
        }
        o.push(match it.next()? {
            '\\' => '\\',
            't' => '\t',
            'n' => '\n',
            'r' => '\r',
            _ => return None,
        });
    }
    Some(o)
}

/// One line: a magic word, the kind, then tab-separated fields.
pub fn encode(ev: &Event) -> String {
    match ev {
        Event::Withdraw { id } => format!("{MAGIC}\tW\t{}\n", esc(id)),
        Event::Session { origin, summary: s } => {
            let m = &s.media;
            let f: Vec<String> = vec![
                esc(origin),
                esc(&s.id),
                esc(&s.key),
                s.started_ms.to_string(),
                s.ended_ms.map(|e| e.to_string()).unwrap_or_default(),
                s.duration_ms.to_string(),
                s.bytes.to_string(),
                s.segments.to_string(),
                s.discontinuities.to_string(),
                esc(&s.path),
                esc(&s.url),
                esc(&m.video_codec),
                esc(&m.audio_codec),
                m.width.to_string(),
                m.height.to_string(),
                format!("{}", m.frame_rate),
                m.avg_bitrate.to_string(),
                m.peak_bitrate.to_string(),
            ];
            format!("{MAGIC}\tS\t{}\n", f.join("\t"))
        }
    }
}

pub fn decode(line: &str) -> Option<Event> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let mut f = line.split('\t');
    if f.next()? != MAGIC {
        return None;
    }
    let kind = f.next()?;
    let rest: Vec<&str> = f.collect();
    match (kind, rest.len()) {
        ("W", 1) => Some(Event::Withdraw {
            id: unesc(rest[0])?,
        }),
        ("S", 18) => {
            let n = |i: usize| rest[i].parse::<u64>().ok();
            Some(Event::Session {
                origin: unesc(rest[0])?,
                summary: Box::new(Summary {
                    id: unesc(rest[1])?,
                    key: unesc(rest[2])?,
                    started_ms: rest[3].parse().ok()?,
                    ended_ms: if rest[4].is_empty() {
                        None
                    } else {
                        Some(rest[4].parse().ok()?)
                    },
                    duration_ms: n(5)?,
                    bytes: n(6)?,
                    segments: n(7)?,
                    discontinuities: n(8)?,
                    path: unesc(rest[9])?,
                    url: unesc(rest[10])?,
                    media: MediaInfo {
                        video_codec: unesc(rest[11])?,
                        audio_codec: unesc(rest[12])?,
                        width: rest[13].parse().ok()?,
                        height: rest[14].parse().ok()?,
                        frame_rate: rest[15].parse().ok()?,
                        avg_bitrate: n(16)?,
                        peak_bitrate: n(17)?,
                    },
                }),
            })
        }
        _ => None,
    }
}
