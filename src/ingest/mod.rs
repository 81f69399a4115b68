//! One publishing connection end to end: RTMP session → FLV → segmenter → store.
//!
//! [`Connection`] is sans-IO like the stages it strings together: the nginx glue feeds
//! it the bytes it reads, sends what [`Connection::output`] holds, and hands it access to
//! the shared index ([`SharedIndex`]). Media files are written here (atomically) before
//! the index lists them, so a listed part or segment is always complete on disk.

use std::fmt;
use std::path::PathBuf;

use bytes::Bytes;

use crate::flv::{self, AudioTag, VideoTag};
use crate::media::{AudioConfig, Frame, TrackKind, VideoConfig};
use crate::mux::fmp4;
use crate::rtmp::{self, amf0, Event, Session, SessionConfig};
use crate::segmenter::{Muxer, Output, Segmenter, SegmenterConfig};
use crate::store::files::StreamDir;
use crate::store::names;
use crate::store::{ClaimError, StreamIndex, StreamSettings, Table};

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
    /// Counted since the last [`Connection::take_stats`], for the stream `stats_key`.
    stats: crate::metrics::IngestDelta,
    stats_key: Option<String>,
    flash_ver: Option<String>,
}

impl Connection {
    pub fn new(cfg: IngestConfig) -> Self {
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
            stats: Default::default(),
            stats_key: None,
            flash_ver: None,
        }
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

    /// Feed bytes read from the publisher. An error means: log it and close.
    pub fn feed(
        &mut self,
        data: &[u8],
        now_ms: i64,
        shared: &mut dyn SharedIndex,
    ) -> Result<(), IngestError> {
        self.stats.bytes += data.len() as u64;
        let mut events = std::mem::take(&mut self.events);
        let fed = self.rtmp.feed(data, &mut events).map_err(IngestError::Rtmp);
        let mut result = Ok(());
        for ev in events.drain(..) {
            result = self.event(ev, now_ms, shared);
            if result.is_err() {
                break;
            }
        }
        self.events = events;
        // Whatever was cut before an error is still published.
        let stored = self.store(now_ms, shared);
        fed?;
        result?;
        stored
    }

    /// The connection is gone: end the stream (EXT-X-ENDLIST) if it was publishing.
    pub fn close(&mut self, now_ms: i64, shared: &mut dyn SharedIndex) {
        if let Err(e) = self.unpublish(now_ms, shared) {
            self.say(LogLevel::Error, format!("finishing stream: {e}"));
        }
    }

    fn say(&mut self, level: LogLevel, msg: String) {
        self.log.push((level, msg));
    }

    fn event(
        &mut self,
        ev: Event,
        now_ms: i64,
        shared: &mut dyn SharedIndex,
    ) -> Result<(), IngestError> {
        match ev {
            Event::Connect { app, flash_ver, .. } => {
                self.flash_ver = flash_ver;
                self.say(LogLevel::Info, format!("connect app \"{app}\""));
                self.app = Some(app);
                Ok(())
            }
            Event::Publish {
                stream_id, name, ..
            } => self.publish(stream_id, name, now_ms, shared),
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
            } => self.media(stream_id, TrackKind::Video, timestamp_ms, data, now_ms),
            Event::Audio {
                stream_id,
                timestamp_ms,
                data,
            } => self.media(stream_id, TrackKind::Audio, timestamp_ms, data, now_ms),
            Event::Unpublish { stream_id } => {
                if self
                    .publishing
                    .as_ref()
                    .is_some_and(|p| p.stream_id == stream_id)
                {
                    self.unpublish(now_ms, shared)?;
                }
                Ok(())
            }
        }
    }

    fn publish(
        &mut self,
        stream_id: u32,
        name: String,
        now_ms: i64,
        shared: &mut dyn SharedIndex,
    ) -> Result<(), IngestError> {
        let refuse = |this: &mut Self, why: String| {
            this.rtmp
                .reject_publish(stream_id, "NetStream.Publish.BadName", &why);
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
        let mut claimed = None;
        let ok = shared.with_table(&mut |t| {
            claimed = Some(t.claim(&name, &dir_str, &settings, owner, now_ms))
        });
        let claim = match claimed {
            Some(Ok(c)) => c,
            Some(Err(ClaimError::AlreadyLive)) => {
                return refuse(
                    self,
                    format!("stream \"{name}\" is already being published"),
                )
            }
            Some(Err(ClaimError::Full)) => {
                return refuse(self, "no room for another stream in the zone".into())
            }
            Some(Err(e)) => return refuse(self, format!("stream \"{name}\" refused: {e}")),
            None => {
                debug_assert!(!ok);
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
        let segmenter = Segmenter::new(
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
        self.rtmp.accept_publish(stream_id);
        (self.stats.published, self.stats.segment_target_ms) = (true, self.cfg.segment_target_ms);
        self.stats_key = Some(name.clone());
        let app = self.app.clone().unwrap_or_default();
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
        self.publishing = Some(Publishing {
            stream_id,
            key: name,
            slot: claim.slot,
            publish_id: claim.publish_id,
            segmenter,
            dir: store,
            next_sweep_ms: now_ms + SWEEP_INTERVAL_MS,
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

    fn unpublish(&mut self, now_ms: i64, shared: &mut dyn SharedIndex) -> Result<(), IngestError> {
        let Some(p) = self.publishing.as_mut() else {
            return Ok(());
        };
        p.segmenter.finish(&mut self.outputs);
        let stored = self.store(now_ms, shared);
        let p = self.publishing.take().expect("publishing");
        let key = p.key;
        end_stream(shared, p.slot, p.publish_id, now_ms);
        self.stats.unpublished = true;
        let app = self.app.clone().unwrap_or_default();
        self.say(LogLevel::Notice, format!("publish \"{app}/{key}\" ended"));
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
        let mut written = 0;
        let mut result = Ok(());
        for out in &self.outputs {
            if let Err(e) = p.dir.write(out) {
                result = Err(IngestError::Io(e));
                break;
            }
            written += 1;
        }
        let outputs = &self.outputs[..written];
        self.stats.add_outputs(outputs);
        let key = &p.key;
        let (slot, id) = (p.slot, p.publish_id);
        let sweep = now_ms >= p.next_sweep_ms;
        let mut snapshot: Option<Box<StreamIndex>> = None;
        let mut lost = false;
        // All outputs of one read go in under one lock: a reader never sees a segment's
        // last part without the segment.
        shared.with_table(&mut |t| {
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
            }
        });
        self.outputs.clear();
        if lost {
            return Err(IngestError::Refused(format!(
                "stream \"{key}\" was taken over by another publisher"
            )));
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

/// Mark our stream ended (EXT-X-ENDLIST), if we are still its writer.
fn end_stream(shared: &mut dyn SharedIndex, slot: usize, publish_id: u64, now_ms: i64) {
    shared.with_table(&mut |t| {
        if let Some(i) = t.slot_mut(slot).filter(|i| i.is_writer(publish_id)) {
            i.end(now_ms);
        }
    });
}
