//! Recordings: every publish session of a key kept as a self-contained folder.
//!
//! `{root}/{key}/{id}/` holds hard links to the session's finished segments
//! (`{msn}.m4s`) and the init sections they use (`init{v}.mp4`), an `index.m3u8` (EVENT
//! while live, VOD once finished) and `info.json` (what a listing or the catalog shows).
//! Hard links cost no copy and make the live sweeper harmless: removing the live name
//! leaves the recording's name. `{id}` is the session's UTC start,
//! `YYYYMMDDTHHMMSSZ` (with `-2`, `-3`… should two start within a second), so folder
//! names sort by time. Every file is written under a temporary name and renamed.
//!
//! A broadcast that continues after a short interruption keeps its recording:
//! [`Recording::resume`] reopens an unfinished one from its playlist and the next
//! segment is preceded by a DISCONTINUITY.

pub mod listing;
pub mod playlist;
pub mod retention;
pub mod session;

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::playlist::time::{civil_from_days, format_pdt};
use crate::segmenter::Output;
use crate::store::names::{self, MediaFile};
pub use playlist::{Kind, RecSegment};

/// Where recordings go and how they are addressed over HTTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordConfig {
    /// `{root}/{key}/{id}/`; must be on the file system of the live media (hard links).
    pub root: PathBuf,
    /// URL path under which a web server serves `root` (e.g. `/recordings`).
    pub url_prefix: String,
}

/// What the stream carries, for listings and the catalog.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MediaInfo {
    pub video_codec: String,
    pub audio_codec: String,
    pub width: u32,
    pub height: u32,
    pub frame_rate: f64,
    pub avg_bitrate: u64,
    pub peak_bitrate: u64,
}

/// A recording's totals.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    pub id: String,
    pub key: String,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    pub duration_ms: u64,
    pub bytes: u64,
    pub segments: u64,
    pub discontinuities: u64,
    pub path: String,
    pub url: String,
    pub media: MediaInfo,
}

pub const PLAYLIST: &str = "index.m3u8";
pub const INFO: &str = "info.json";
/// At most this many segments between a recording's last one and the first of the
/// publish that continues it ([`Recording::latest_continuable`]).
const MAX_CONTINUE_MSN_GAP: u64 = 2;

/// One recording being written.
#[derive(Debug)]
pub struct Recording {
    key: String,
    id: String,
    dir: PathBuf,
    url: String,
    segments: Vec<RecSegment>,
    linked_inits: BTreeSet<u32>,
    started_ms: i64,
    bytes: u64,
    media: MediaInfo,
    next_discontinuity: bool,
    finished: bool,
}

/// `20261201T110357Z` for Unix milliseconds (UTC).
pub fn stamp(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000) / 1000;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// A recording folder name as [`stamp`] makes it (with an optional `-N` suffix); nothing
/// else is ever taken for one.
pub fn valid_id(id: &str) -> bool {
    let (base, n) = id.split_once('-').unwrap_or((id, "1"));
    base.len() == 16
        && base.as_bytes()[8] == b'T'
        && base.ends_with('Z')
        && base[..8].bytes().all(|b| b.is_ascii_digit())
        && base[9..15].bytes().all(|b| b.is_ascii_digit())
        && !n.is_empty()
        && n.len() <= 4
        && n.bytes().all(|b| b.is_ascii_digit())
}

/// The start time (Unix ms, second precision) encoded in a recording id.
pub fn id_start_ms(id: &str) -> Option<i64> {
    if !valid_id(id) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| id[r].parse::<i64>().ok();
    let days = playlist::days_from_civil(n(0..4)?, n(4..6)? as u32, n(6..8)? as u32);
    Some(days * 86_400_000 + (n(9..11)? * 3600 + n(11..13)? * 60 + n(13..15)?) * 1000)
}

impl Recording {
    /// Starts a new recording of `key` at wall-clock `wall_ms`.
    pub fn start(cfg: &RecordConfig, key: &str, wall_ms: i64) -> io::Result<Recording> {
        if !names::valid_key(key) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "invalid key"));
        }
        let parent = cfg.root.join(key);
        fs::create_dir_all(&parent)?;
        let base = stamp(wall_ms);
        let mut n = 1;
        let (id, dir) = loop {
            let id = if n == 1 {
                base.clone()
            } else {
                format!("{base}-{n}")
            };
            let dir = parent.join(&id);
            match fs::create_dir(&dir) {
                Ok(()) => break (id, dir),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 999 => n += 1,
                Err(e) => return Err(e),
            }
        };
        set_mode(&dir, 0o755);
        let rec = Recording {
            key: key.to_string(),
            url: format!(
                "{}/{key}/{id}/{PLAYLIST}",
                cfg.url_prefix.trim_end_matches('/')
            ),
            id,
            dir,
            segments: Vec::new(),
            linked_inits: BTreeSet::new(),
            started_ms: wall_ms,
            bytes: 0,
            media: MediaInfo::default(),
            next_discontinuity: false,
            finished: false,
        };
        rec.write_files()?;
        Ok(rec)
    }

    /// The newest recording of `key` that has not finished, if any (to [`resume`]).
    ///
    /// [`resume`]: Recording::resume
    pub fn latest_unfinished(cfg: &RecordConfig, key: &str) -> Option<String> {
        let ids = list_ids(&cfg.root.join(key));
        let id = ids.last()?;
        let text = fs::read_to_string(cfg.root.join(key).join(id).join(PLAYLIST)).ok()?;
        let (_, ended) = playlist::parse(&text)?;
        (!ended).then(|| id.clone())
    }

    /// The recording to continue when `key` is republished within its reconnect grace and
    /// the live stream goes on at `next_msn`: the newest one, finished or not, if its last
    /// segment is one of the few just before `next_msn` (the segment a vanished writer was
    /// building is sealed by the index, not recorded). Decided by the media sequence, not
    /// by clocks: an older recording of the key can never match.
    pub fn latest_continuable(cfg: &RecordConfig, key: &str, next_msn: u64) -> Option<String> {
        let ids = list_ids(&cfg.root.join(key));
        let id = ids.last()?;
        let text = fs::read_to_string(cfg.root.join(key).join(id).join(PLAYLIST)).ok()?;
        let (segments, _) = playlist::parse(&text)?;
        let last = segments.last()?.msn;
        (last < next_msn && next_msn - last <= MAX_CONTINUE_MSN_GAP).then(|| id.clone())
    }

    /// Reopens unfinished recording `id` of `key` to continue it: the next segment is
    /// preceded by a DISCONTINUITY.
    pub fn resume(cfg: &RecordConfig, key: &str, id: &str) -> io::Result<Recording> {
        Self::reopen(cfg, key, id, false)
    }

    /// [`Recording::resume`], also for a finished recording (`reopen_finished`): its VOD
    /// playlist becomes an EVENT playlist again at once (a broadcast interrupted by a lost
    /// connection and republished within the grace period stays one recording).
    pub fn reopen(
        cfg: &RecordConfig,
        key: &str,
        id: &str,
        reopen_finished: bool,
    ) -> io::Result<Recording> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        if !names::valid_key(key) || !valid_id(id) {
            return Err(bad("invalid recording name"));
        }
        let dir = cfg.root.join(key).join(id);
        let text = fs::read_to_string(dir.join(PLAYLIST))?;
        let (segments, ended) = playlist::parse(&text).ok_or_else(|| bad("unreadable playlist"))?;
        if ended && !reopen_finished {
            return Err(bad("recording already finished"));
        }
        let mut bytes = 0;
        let mut linked_inits = BTreeSet::new();
        for s in &segments {
            bytes += fs::metadata(dir.join(MediaFile::Segment { msn: s.msn }.name()))
                .map(|m| m.len())
                .unwrap_or(0);
            linked_inits.insert(s.init_version);
        }
        let info = fs::read_to_string(dir.join(INFO)).unwrap_or_default();
        let started_ms = json_int(&info, "started_ms")
            .or_else(|| id_start_ms(id))
            .unwrap_or(0);
        let rec = Recording {
            key: key.to_string(),
            url: format!(
                "{}/{key}/{id}/{PLAYLIST}",
                cfg.url_prefix.trim_end_matches('/')
            ),
            id: id.to_string(),
            dir,
            next_discontinuity: !segments.is_empty(),
            segments,
            linked_inits,
            started_ms,
            bytes,
            media: MediaInfo::default(),
            finished: false,
        };
        if ended {
            rec.write_files()?;
        }
        Ok(rec)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn segments(&self) -> &[RecSegment] {
        &self.segments
    }

    pub fn set_media(&mut self, media: MediaInfo) {
        self.media = media;
    }

    /// Keeps a finished segment: hard-links it (and its init section, once) from the live
    /// folder `live`, where the store has just completed it, and rewrites the EVENT
    /// playlist. Returns true if a segment was added. Anything but a segment is ignored.
    pub fn on_output(&mut self, live: &Path, out: &Output) -> io::Result<bool> {
        let Output::Segment {
            msn,
            duration_us,
            bytes,
            program_date_time_ms,
            discontinuity,
            init_version,
            independent,
            ..
        } = out
        else {
            return Ok(false);
        };
        if self.finished {
            return Ok(false);
        }
        if !self.linked_inits.contains(init_version) {
            let name = MediaFile::Init {
                version: *init_version,
            }
            .name();
            link(&live.join(&name), &self.dir.join(&name))?;
            self.linked_inits.insert(*init_version);
        }
        let name = MediaFile::Segment { msn: *msn }.name();
        link(&live.join(&name), &self.dir.join(&name))?;
        self.segments.push(RecSegment {
            msn: *msn,
            duration_us: *duration_us,
            init_version: *init_version,
            discontinuity: (*discontinuity || self.next_discontinuity) && !self.segments.is_empty(),
            pdt_ms: *program_date_time_ms,
            independent: *independent,
        });
        self.next_discontinuity = false;
        self.bytes += *bytes;
        write_atomic(
            &self.dir,
            PLAYLIST,
            playlist::render(&self.segments, Kind::Event).as_bytes(),
        )?;
        if self.segments.len() == 1 {
            // The first segment dates the recording and knows the media.
            write_atomic(&self.dir, INFO, self.info_json(None).as_bytes())?;
        }
        Ok(true)
    }

    /// Ends the recording: the VOD playlist replaces the EVENT one.
    pub fn finish(&mut self, wall_ms: i64) -> io::Result<Summary> {
        self.finished = true;
        write_atomic(
            &self.dir,
            PLAYLIST,
            playlist::render(&self.segments, Kind::Vod).as_bytes(),
        )?;
        write_atomic(&self.dir, INFO, self.info_json(Some(wall_ms)).as_bytes())?;
        Ok(self.summary(Some(wall_ms)))
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    pub fn summary(&self, ended_ms: Option<i64>) -> Summary {
        Summary {
            id: format!("{}/{}", self.key, self.id),
            key: self.key.clone(),
            started_ms: self.started_ms,
            ended_ms,
            duration_ms: self.segments.iter().map(|s| s.duration_us).sum::<u64>() / 1000,
            bytes: self.bytes,
            segments: self.segments.len() as u64,
            discontinuities: self.segments.iter().filter(|s| s.discontinuity).count() as u64,
            path: self.dir.to_string_lossy().into_owned(),
            url: self.url.clone(),
            media: self.media.clone(),
        }
    }

    fn write_files(&self) -> io::Result<()> {
        write_atomic(
            &self.dir,
            PLAYLIST,
            playlist::render(&self.segments, Kind::Event).as_bytes(),
        )?;
        write_atomic(&self.dir, INFO, self.info_json(None).as_bytes())
    }

    fn info_json(&self, ended_ms: Option<i64>) -> String {
        summary_json(&self.summary(ended_ms))
    }
}

/// A summary as one JSON object (the `info.json` of a recording and an API entry).
pub fn summary_json(s: &Summary) -> String {
    let m = &s.media;
    let fr = if m.frame_rate.is_finite() {
        m.frame_rate
    } else {
        0.0
    };
    format!(
        "{{\"id\":{},\"key\":{},\"started\":{},\"started_ms\":{},\"ended\":{},\"ended_ms\":{},\
         \"duration_ms\":{},\"bytes\":{},\"segments\":{},\"discontinuities\":{},\"url\":{},\
         \"video_codec\":{},\"audio_codec\":{},\"width\":{},\"height\":{},\"frame_rate\":{:.3},\
         \"avg_bitrate\":{},\"peak_bitrate\":{}}}",
        json_str(&s.id),
        json_str(&s.key),
        json_str(&format_pdt(s.started_ms)),
        s.started_ms,
        s.ended_ms
            .map(|e| json_str(&format_pdt(e)))
            .unwrap_or_else(|| "null".into()),
        s.ended_ms
            .map(|e| e.to_string())
            .unwrap_or_else(|| "null".into()),
        s.duration_ms,
        s.bytes,
        s.segments,
        s.discontinuities,
        json_str(&s.url),
        json_str(&m.video_codec),
        json_str(&m.audio_codec),
        m.width,
        m.height,
        fr,
        m.avg_bitrate,
        m.peak_bitrate,
    )
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// An integer member of a flat JSON object we wrote (`"name":123`).
pub fn json_int(text: &str, name: &str) -> Option<i64> {
    let at = text.find(&format!("\"{name}\":"))? + name.len() + 3;
    let rest = &text[at..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '-'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Recording ids in `dir` (a key's folder), oldest first.
pub fn list_ids(dir: &Path) -> Vec<String> {
    let mut ids: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| valid_id(n))
                .collect()
        })
        .unwrap_or_default();
    ids.sort_by_key(|a| id_order(a));
    ids
}

/// Keys with recordings under `root`, sorted.
pub fn list_keys(root: &Path) -> Vec<String> {
    let mut keys: Vec<String> = fs::read_dir(root)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| names::valid_key(n))
                .collect()
        })
        .unwrap_or_default();
    keys.sort();
    keys
}

/// Sort key of an id: its time, then its `-N` suffix as a number.
pub fn id_order(id: &str) -> (String, u32) {
    let (base, n) = id.split_once('-').unwrap_or((id, "1"));
    (base.to_string(), n.parse().unwrap_or(0))
}

fn link(src: &Path, dst: &Path) -> io::Result<()> {
    match fs::hard_link(src, dst) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) if e.raw_os_error() == Some(18) => Err(io::Error::new(
            e.kind(),
            "recordings must be on the file system of the live media (hard links)",
        )),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("linking {}: {e}", src.display()),
        )),
        Ok(()) => Ok(()),
    }
}

fn set_mode(path: &Path, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode));
    }
}

/// Writes `dir/name` under a temporary name and renames it into place (no fsync).
pub fn write_atomic(dir: &Path, name: &str, data: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let r = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
        drop(f);
        set_mode(&tmp, 0o644);
        fs::rename(&tmp, dir.join(name))
    })();
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r
}

#[cfg(test)]
mod tests;
