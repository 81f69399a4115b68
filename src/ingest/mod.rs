//! One publishing connection end to end: RTMP session → FLV → segmenter → store.
//!
//! [`Connection`] is sans-IO like the stages it strings together: the nginx glue feeds
//! it the bytes it reads, sends what [`Connection::output`] holds, and hands it access to
//! the shared index ([`SharedIndex`]). Media is written here before the index lists it
//! (a part appended to its segment's file, init sections and TS segments whole), so a
//! listed part or segment is always complete on disk.

use std::fmt;
use std::path::PathBuf;

use bytes::Bytes;

use crate::flv::{self, AudioTag, VideoTag};
use crate::media::{AudioConfig, Frame, TrackKind, VideoConfig};
use crate::mux::fmp4;
use crate::record::session::{media_of, wall_ms, SessionLog};
use crate::record::{RecordConfig, Summary};
use crate::rtmp::{self, amf0, Event, Session, SessionConfig};
use crate::segmenter::{Muxer, Output, Segmenter, SegmenterConfig};
use crate::store::files::StreamDir;
use crate::store::names;
use crate::store::{ClaimError, Lifecycle, Now, StreamIndex, StreamSettings, Table};

mod direct;
mod gate;
#[cfg(test)]
mod testutil;
pub use direct::{Direct, Refusal};
pub use gate::CallbackAsk;

/// Access to the shared table of stream indexes; the implementation holds the lock for
/// the duration of `f`. Returns false if the table is unavailable.
pub trait SharedIndex {
    fn with_table(&mut self, f: &mut dyn FnMut(&mut Table)) -> bool;
}

#[derive(Clone, Debug)]
pub struct IngestConfig {
    /// Folder under which each stream gets `{root}/{key}/`.
    pub root: PathBuf,
    pub segment_target_ms: u32,
    pub part_target_ms: u32,
    /// Segments listed in the live playlist.
    pub window: u32,
    pub max_message_size: usize,
    /// Identifies the writer (the worker's pid) in the index.
    pub owner: u32,
    /// Also write MPEG-TS segments (H.264/AAC streams only).
    pub ts: bool,
    /// Grace period after a lost connection and takeover policy.
    pub lifecycle: Lifecycle,
    /// `rtmp_live_secret`: publish keys must be signed with one of these (none: unsigned).
    pub publish_secrets: crate::auth::publish::Secrets,
    /// `rtmp_live_on_publish`: a publish waits for the callback ([`gate`]).
    pub publish_callback: bool,
    /// Record every publish session (`hls_live_record`).
    pub record: Option<RecordConfig>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Warn,
    Notice,
    Info,
}

#[derive(Debug)]
pub enum IngestError {
    Rtmp(rtmp::RtmpError),
    Media(flv::FlvError),
    Refused(String),
    Io(std::io::Error),
}

impl fmt::Display for IngestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IngestError::Rtmp(e) => write!(f, "{e}"),
            IngestError::Media(e) => write!(f, "{e}"),
            IngestError::Refused(why) => write!(f, "{why}"),
            IngestError::Io(e) => write!(f, "storage error: {e}"),
        }
    }
}

/// The fMP4 muxer as the segmenter sees it.
pub struct Fmp4;

impl Muxer for Fmp4 {
    fn init_segment(&self, video: Option<&VideoConfig>, audio: Option<&AudioConfig>) -> Bytes {
        fmp4::init_segment(video, audio)
    }
    fn fragment(&self, sequence_number: u32, runs: &[fmp4::Run]) -> Bytes {
        fmp4::fragment(sequence_number, runs)
    }
}

struct Publishing {
    stream_id: u32,
    key: String,
    /// Our slot in the shared table and the id that proves we are still its writer.
    slot: usize,
    publish_id: u64,
    segmenter: Segmenter<Fmp4>,
    dir: StreamDir,
    next_sweep_ms: i64,
    /// Video frames dropped as malformed (logged once per publish).
    bad_frames: u64,
    /// The session's catalog rows and recording.
    session: SessionLog,
}

/// How often a publisher deletes its own files that left the playlist.
const SWEEP_INTERVAL_MS: i64 = 1000;

pub struct Connection {
    cfg: IngestConfig,
    rtmp: Session,
    app: Option<String>,
    publishing: Option<Publishing>,
    events: Vec<Event>,
    outputs: Vec<Output>,
    log: Vec<(LogLevel, String)>,
    /// Wall-clock Unix seconds, for the expiry of signed keys ([`Connection::set_unix_time`]).
    unix_s: u64,
    /// A publish waiting for the publish callback.
    gate: crate::auth::gate::Gate,
    sessions: Vec<Summary>,
    /// Counted since the last [`Connection::take_stats`], for the stream `stats_key`.
    stats: crate::metrics::IngestDelta,
    stats_key: Option<String>,
    flash_ver: Option<String>,
    /// A publish without RTMP ([`Connection::publish_direct`]): nothing is sent back.
    direct: bool,
    /// Why the last publish was refused (for a direct publish's answer).
    refusal: Option<Refusal>,
}

impl Connection {
    pub fn new(cfg: IngestConfig) -> Self {
        let callback = cfg.publish_callback;
        let rtmp = Session::new(SessionConfig {
            max_message_size: cfg.max_message_size,
            ..SessionConfig::default()
        });
        Connection {
            cfg,
            rtmp,
            app: None,
            publishing: None,
            events: Vec::new(),
            outputs: Vec::new(),
            log: Vec::new(),
            unix_s: 0,
            gate: crate::auth::gate::Gate::new(callback),
            sessions: Vec::new(),
            stats: Default::default(),
            stats_key: None,
            flash_ver: None,
            direct: false,
            refusal: None,
        }
    }

    /// The wall-clock time (Unix seconds) against which signed keys expire.
    pub fn set_unix_time(&mut self, unix_s: u64) {
        self.unix_s = unix_s;
    }

    /// Catalog rows (publish sessions, recordings) produced since the last call.
    pub fn take_sessions(&mut self) -> Vec<Summary> {
        std::mem::take(&mut self.sessions)
    }

    /// What was counted since the last call, and for which stream (None: nothing to say).
    pub fn take_stats(&mut self) -> Option<(String, crate::metrics::IngestDelta)> {
        let key = self.stats_key.clone()?;
        let d = std::mem::take(&mut self.stats);
        (!d.is_empty()).then_some((key, d))
    }

    /// The publisher's software, as its RTMP `connect` named it (`flashVer`).
    pub fn publisher_software(&self) -> Option<&str> {
        self.flash_ver.as_deref()
    }

    /// Bytes waiting to be sent to the publisher.
    pub fn output(&self) -> &[u8] {
        self.rtmp.output()
    }

    pub fn consume_output(&mut self, n: usize) {
        self.rtmp.consume_output(n)
    }

    /// Log lines produced since the last call, for the caller's logger.
    pub fn take_log(&mut self) -> Vec<(LogLevel, String)> {
        std::mem::take(&mut self.log)
    }

    /// The stream key being published, if any.
    pub fn key(&self) -> Option<&str> {
        self.publishing.as_ref().map(|p| p.key.as_str())
    }

    /// Feed bytes read from the publisher. An error means: log it and close. `now_ms`
    /// serves as both the wall and the monotonic clock; see [`Self::feed_at`].
    pub fn feed(
        &mut self,
        data: &[u8],
        now_ms: i64,
        shared: &mut dyn SharedIndex,
    ) -> Result<(), IngestError> {
        self.feed_at(data, Now::same(now_ms), shared)
    }

    /// Feed bytes read from the publisher at `now` (wall clock for PROGRAM-DATE-TIME,
    /// monotonic clock for everything the index times). An error means: log it and close.
    pub fn feed_at(
        &mut self,
        data: &[u8],
        now: Now,
        shared: &mut dyn SharedIndex,
    ) -> Result<(), IngestError> {
        self.stats.bytes += data.len() as u64;
        let mut events = std::mem::take(&mut self.events);
        let fed = self.rtmp.feed(data, &mut events).map_err(IngestError::Rtmp);
        let mut result = Ok(());
        for ev in events.drain(..) {
            result = self.event(ev, now, shared);
            if result.is_err() {
                break;
            }
        }
        self.events = events;
        // Whatever was cut before an error is still published.
        let stored = self.store(now.mono_ms, shared);
        fed?;
        result?;
        stored
    }

    /// The connection is gone: if it was publishing, its stream stays live for the grace
    /// period (a reconnect continues it), then ends (EXT-X-ENDLIST).
    pub fn close(&mut self, now_ms: i64, shared: &mut dyn SharedIndex) {
        self.close_at(Now::same(now_ms), shared)
    }

    /// [`Self::close`] at `now`.
    pub fn close_at(&mut self, now: Now, shared: &mut dyn SharedIndex) {
        if let Err(e) = self.unpublish(now.mono_ms, shared, false) {
            self.say(LogLevel::Error, format!("finishing stream: {e}"));
        }
    }

    /// The server closes the connection on purpose (a limit was exceeded): the stream ends
    /// at once (EXT-X-ENDLIST), without waiting for a republish.
    pub fn end_at(&mut self, now: Now, shared: &mut dyn SharedIndex) {
        if let Err(e) = self.unpublish(now.mono_ms, shared, true) {
            self.say(LogLevel::Error, format!("finishing stream: {e}"));
        }
    }

    /// Periodic check while the connection is idle: an error (log it and close) if this
    /// publisher's key was taken over by another publisher.
    pub fn check_owner(&mut self, shared: &mut dyn SharedIndex) -> Result<(), IngestError> {
        let Some(p) = self.publishing.as_ref() else {
            return Ok(());
        };
        let (slot, id) = (p.slot, p.publish_id);
        let mut ours = true;
        let available = shared.with_table(&mut |t| {
            ours = t.slot_mut(slot).is_some_and(|i| i.is_writer(id));
        });
        if available && ours {
            return Ok(());
        }
        let err = lost_error(
            &self.publishing.as_ref().expect("publishing").key,
            available,
        );
        self.drop_publish();
        Err(err)
    }

    /// The publish is no longer this connection's (taken over, or the zone is gone): its
    /// session and recording end here; the stream itself belongs to someone else.
    fn drop_publish(&mut self) {
        if let Some(mut p) = self.publishing.take() {
            if let Err(e) = p.session.finish(wall_ms()) {
                self.say(LogLevel::Error, e);
            }
            self.sessions.extend(p.session.take_updates());
        }
    }

    fn say(&mut self, level: LogLevel, msg: String) {
        self.log.push((level, msg));
    }

    fn event(
        &mut self,
        ev: Event,
        now: Now,
        shared: &mut dyn SharedIndex,
    ) -> Result<(), IngestError> {
        let now_ms = now.mono_ms;
        match ev {
            Event::Connect { app, flash_ver, .. } => {
                self.flash_ver = flash_ver;
                self.say(LogLevel::Info, format!("connect app \"{app}\""));
                self.app = Some(app);
                Ok(())
            }
            Event::Publish {
                stream_id,
                name,
                query,
                ..
            } => self.on_publish(stream_id, name, query, now, shared),
            Event::Metadata { stream_id, values } => {
                if let Some(p) = self
                    .publishing
                    .as_mut()
                    .filter(|p| p.stream_id == stream_id)
                {
                    let has = |k: &str| {
                        values.iter().any(|(n, v)| {
                            n == k && !matches!(v, amf0::Value::Null | amf0::Value::Undefined)
                        })
                    };
                    p.segmenter
                        .expect_tracks(has("videocodecid"), has("audiocodecid"));
                }
                Ok(())
            }
            Event::Video {
                stream_id,
                timestamp_ms,
                data,
            } => self.media(stream_id, TrackKind::Video, timestamp_ms, data, now.wall_ms),
            Event::Audio {
                stream_id,
                timestamp_ms,
                data,
            } => self.media(stream_id, TrackKind::Audio, timestamp_ms, data, now.wall_ms),
            Event::Unpublish { stream_id } => {
                if self
                    .publishing
                    .as_ref()
                    .is_some_and(|p| p.stream_id == stream_id)
                {
                    // The encoder said it is done: the stream ends at once.
                    self.unpublish(now_ms, shared, true)?;
                }
                Ok(())
            }
        }
    }

    fn publish(
        &mut self,
        stream_id: u32,
        name: String,
        now: Now,
        shared: &mut dyn SharedIndex,
    ) -> Result<(), IngestError> {
        let now_ms = now.mono_ms;
        let refuse = |this: &mut Self, why: String| {
            if !this.direct {
                this.rtmp
                    .reject_publish(stream_id, "NetStream.Publish.BadName", &why);
            }
            Err(IngestError::Refused(why))
        };
        if self.publishing.is_some() {
            return refuse(self, "already publishing on this connection".into());
        }
        if !names::valid_key(&name) {
            let shown: String = name.chars().take(80).collect();
            return refuse(
                self,
                format!(
                    "invalid stream key \"{}\" (allowed: [A-Za-z0-9_-]{{1,64}})",
                    shown.escape_debug()
                ),
            );
        }
        let dir = self.cfg.root.join(&name);
        let dir_str = dir.to_string_lossy().into_owned();
        let settings = StreamSettings {
            window: self.cfg.window,
            part_target_ms: self.cfg.part_target_ms,
            segment_target_ms: self.cfg.segment_target_ms,
            clock_numbering: true,
        };
        let owner = self.cfg.owner;
        let life = self.cfg.lifecycle;
        let mut claimed = None;
        let ok = shared.with_table(&mut |t| {
            claimed = Some(t.claim_with(&name, &dir_str, &settings, owner, now, &life))
        });
        let claim = match claimed {
            Some(Ok(c)) => c,
            Some(Err(ClaimError::AlreadyLive)) => {
                self.refusal = Some(Refusal::Live);
                return refuse(
                    self,
                    format!("stream \"{name}\" is already being published"),
                );
            }
            Some(Err(ClaimError::Full)) => {
                self.refusal = Some(Refusal::Unavailable);
                return refuse(self, "no room for another stream in the zone".into());
            }
            Some(Err(e)) => return refuse(self, format!("stream \"{name}\" refused: {e}")),
            None => {
                debug_assert!(!ok);
                self.refusal = Some(Refusal::Unavailable);
                return refuse(self, "stream index unavailable".into());
            }
        };
        let store = match StreamDir::create(&dir) {
            Ok(d) => d,
            Err(e) => {
                end_stream(shared, claim.slot, claim.publish_id, now_ms);
                return refuse(self, format!("cannot create \"{dir_str}\": {e}"));
            }
        };
        let mut segmenter = Segmenter::new(
            SegmenterConfig {
                segment_target_ms: self.cfg.segment_target_ms,
                part_target_ms: self.cfg.part_target_ms,
                ts: self.cfg.ts,
            },
            Fmp4,
            claim.first_msn,
            claim.first_init_version,
            claim.discontinuity,
        );
        // A republish keeps the playlist, so its TARGETDURATION binds the new segments.
        let mut td = 0;
        shared.with_table(&mut |t| {
            if let Some(i) = t.slot(claim.slot).filter(|i| i.target_duration_decided()) {
                td = i.target_duration();
            }
        });
        segmenter.set_target_duration(td);
        if !claim.discontinuity {
            segmenter.shorten_first_segment();
        }
        if !self.direct {
            self.rtmp.accept_publish(stream_id);
        }
        (self.stats.published, self.stats.segment_target_ms) = (true, self.cfg.segment_target_ms);
        self.stats_key = Some(name.clone());
        let app = self.app.clone().unwrap_or_default();
        if let Some(pid) = claim.took_over {
            self.say(
                LogLevel::Notice,
                format!("publish \"{app}/{name}\" takes the stream over from a connected publisher (worker {pid})"),
            );
        }
        self.say(
            LogLevel::Notice,
            format!(
                "publish \"{app}/{name}\" started{}",
                if claim.discontinuity {
                    " (continues the previous stream with a discontinuity)"
                } else {
                    ""
                }
            ),
        );
        let (mut session, rec_err) = SessionLog::start(
            self.cfg.record.as_ref(),
            &name,
            claim.discontinuity.then_some(claim.first_msn),
            wall_ms(),
        );
        if let Some(e) = rec_err {
            self.say(LogLevel::Error, e);
        }
        self.sessions.extend(session.take_updates());
        self.publishing = Some(Publishing {
            stream_id,
            key: name,
            slot: claim.slot,
            publish_id: claim.publish_id,
            segmenter,
            dir: store,
            next_sweep_ms: now_ms + SWEEP_INTERVAL_MS,
            bad_frames: 0,
            session,
        });
        Ok(())
    }

    fn media(
        &mut self,
        stream_id: u32,
        kind: TrackKind,
        ts: i64,
        data: Bytes,
        now_ms: i64,
    ) -> Result<(), IngestError> {
        let Some(p) = self
            .publishing
            .as_mut()
            .filter(|p| p.stream_id == stream_id)
        else {
            return Ok(());
        };
        self.stats.frames += 1;
        let out = &mut self.outputs;
        match kind {
            TrackKind::Video => match flv::parse_video(&data).map_err(IngestError::Media)? {
                VideoTag::Config(cfg) => p.segmenter.video_config(cfg, out),
                VideoTag::Frame {
                    cts_ms,
                    keyframe,
                    data,
                } => p.segmenter.push(
                    Frame {
                        kind,
                        dts_ms: ts,
                        cts_ms,
                        keyframe,
                        data,
                    },
                    now_ms,
                    out,
                ),
                VideoTag::EndOfSequence | VideoTag::Skip => {}
                VideoTag::BadFrame(why) => {
                    p.bad_frames += 1;
                    if p.bad_frames == 1 {
                        let msg = format!(
                            "publish \"{}\": dropped a {why} (further bad frames of this \
                             publish are dropped silently)",
                            p.key
                        );
                        self.log.push((LogLevel::Warn, msg));
                    }
                }
            },
            TrackKind::Audio => match flv::parse_audio(&data).map_err(IngestError::Media)? {
                AudioTag::Config(cfg) => p.segmenter.audio_config(cfg, out),
                AudioTag::Frame(data) => p.segmenter.push(
                    Frame {
                        kind,
                        dts_ms: ts,
                        cts_ms: 0,
                        keyframe: true,
                        data,
                    },
                    now_ms,
                    out,
                ),
                AudioTag::Skip => {}
            },
        }
        Ok(())
    }

    /// Finish the current segment; then end the stream (`end`) or start its grace period.
    fn unpublish(
        &mut self,
        now_ms: i64,
        shared: &mut dyn SharedIndex,
        end: bool,
    ) -> Result<(), IngestError> {
        let Some(p) = self.publishing.as_mut() else {
            return Ok(());
        };
        p.segmenter.finish(&mut self.outputs);
        let stored = self.store(now_ms, shared);
        // Taken over meanwhile: `store` dropped the publish (and finished its session).
        let Some(mut p) = self.publishing.take() else {
            return stored;
        };
        if let Err(e) = p.session.finish(wall_ms()) {
            self.say(LogLevel::Error, e);
        }
        self.sessions.extend(p.session.take_updates());
        let key = p.key;
        self.stats.unpublished = true;
        let app = self.app.clone().unwrap_or_default();
        let grace = self.cfg.lifecycle.grace_ms;
        if end || grace == 0 {
            end_stream(shared, p.slot, p.publish_id, now_ms);
            self.say(LogLevel::Notice, format!("publish \"{app}/{key}\" ended"));
        } else {
            disconnect_stream(shared, p.slot, p.publish_id, now_ms);
            self.say(
                LogLevel::Notice,
                format!(
                    "publish \"{app}/{key}\" ended (connection lost); the stream stays live for {grace}ms awaiting a republish"
                ),
            );
        }
        stored
    }

    /// Write what the segmenter produced to disk, then list it in the index.
    fn store(&mut self, now_ms: i64, shared: &mut dyn SharedIndex) -> Result<(), IngestError> {
        let Some(p) = self.publishing.as_mut() else {
            self.outputs.clear();
            return Ok(());
        };
        if self.outputs.is_empty() && now_ms < p.next_sweep_ms {
            return Ok(());
        }
        // Still the writer? After a takeover the old writer must not touch the files (its
        // unfinished segment was sealed as it was).
        let (slot, id) = (p.slot, p.publish_id);
        let mut ours = true;
        let checked = !self.outputs.is_empty();
        let available = checked
            && shared.with_table(&mut |t| {
                ours = t.slot_mut(slot).is_some_and(|i| i.is_writer(id));
            });
        if checked && !(available && ours) {
            let err = lost_error(&p.key, available);
            self.outputs.clear();
            self.publishing = None;
            return Err(err);
        }
        let mut written = 0;
        let mut result = Ok(());
        for out in &self.outputs {
            if let Err(e) = p.dir.write(out) {
                result = Err(IngestError::Io(e));
                break;
            }
            written += 1;
            if let Err(e) = p.session.output(p.dir.path(), out) {
                self.log.push((LogLevel::Error, e));
            }
        }
        let outputs = &self.outputs[..written];
        self.stats.add_outputs(outputs);
        let key = &p.key;
        let (slot, id) = (p.slot, p.publish_id);
        let sweep = now_ms >= p.next_sweep_ms;
        let mut snapshot: Option<Box<StreamIndex>> = None;
        let mut lost = false;
        let want_media =
            p.session.needs_media() && outputs.iter().any(|o| matches!(o, Output::Segment { .. }));
        let mut media = None;
        // All outputs of one read go in under one lock: a reader never sees a segment's
        // last part without the segment.
        let available = shared.with_table(&mut |t| {
            let Some(i) = t.slot_mut(slot).filter(|i| i.is_writer(id)) else {
                lost = true;
                return;
            };
            {
                for out in outputs {
                    i.apply(out, now_ms);
                }
                if sweep {
                    snapshot = Some(Box::new(*i));
                }
                if want_media {
                    media = Some(media_of(i));
                }
            }
        });
        self.outputs.clear();
        if let Some(m) = media {
            p.session.set_media(m);
        }
        self.sessions.extend(p.session.take_updates());
        if lost || !available {
            let err = lost_error(key, available);
            self.drop_publish();
            return Err(err);
        }
        if let Some(idx) = snapshot {
            p.next_sweep_ms = now_ms + SWEEP_INTERVAL_MS;
            if let Err(e) = p.dir.sweep(&idx, now_ms) {
                self.log.push((
                    LogLevel::Warn,
                    format!("removing old media of \"{key}\": {e}"),
                ));
            }
        }
        result
    }
}

fn lost_error(key: &str, available: bool) -> IngestError {
    IngestError::Refused(if available {
        format!("stream \"{key}\" was taken over by another publisher")
    } else {
        format!("stream \"{key}\": its zone is gone (a reload replaced it); the publisher may reconnect")
    })
}

/// Start our stream's grace period (no EXT-X-ENDLIST yet), if we are still its writer.
fn disconnect_stream(shared: &mut dyn SharedIndex, slot: usize, publish_id: u64, now_ms: i64) {
    shared.with_table(&mut |t| {
        if let Some(i) = t.slot_mut(slot).filter(|i| i.is_writer(publish_id)) {
            i.disconnect(now_ms);
        }
    });
}

/// Mark our stream ended (EXT-X-ENDLIST), if we are still its writer.
fn end_stream(shared: &mut dyn SharedIndex, slot: usize, publish_id: u64, now_ms: i64) {
    shared.with_table(&mut |t| {
        if let Some(i) = t.slot_mut(slot).filter(|i| i.is_writer(publish_id)) {
            i.end(now_ms);
        }
    });
}

#[cfg(test)]
mod tests;
