//! One publish session as the catalog and the recording see it: counts what the
//! segmenter produced, keeps the recording (if any), and queues the catalog updates
//! (at the start, once the media are known, at the end). Ingest calls it in three places.

use std::path::Path;

use super::{stamp, MediaInfo, RecordConfig, Recording, Summary};
use crate::segmenter::Output;
use crate::store::StreamIndex;

#[derive(Debug)]
pub struct SessionLog {
    recording: Option<Recording>,
    summary: Summary,
    media_known: bool,
    updates: Vec<Summary>,
}

/// The wall clock (catalog timestamps and recording names only).
pub fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What the index knows of the stream's media.
pub fn media_of(idx: &StreamIndex) -> MediaInfo {
    let (width, height) = idx.resolution().unwrap_or((0, 0));
    MediaInfo {
        video_codec: idx.video_codec().to_string(),
        audio_codec: idx.audio_codec().to_string(),
        width,
        height,
        frame_rate: idx.frame_rate().unwrap_or(0.0),
        avg_bitrate: idx.average_bandwidth(),
        peak_bitrate: idx.peak_bandwidth(),
    }
}

impl SessionLog {
    /// A new session of `key`; with `record`, a new recording — or, if the publish
    /// `continues` the live stream at that media sequence number (a republish within the
    /// reconnect grace), the key's latest recording goes on with a discontinuity (reopened
    /// if the lost connection had finished it). A recording that cannot be made is reported in the error
    /// and the session goes on unrecorded.
    pub fn start(
        record: Option<&RecordConfig>,
        key: &str,
        continues: Option<u64>,
        wall_ms: i64,
    ) -> (SessionLog, Option<String>) {
        let mut err = None;
        let recording = record.and_then(|cfg| {
            let resumed = continues
                .and_then(|msn| Recording::latest_continuable(cfg, key, msn))
                .and_then(|id| Recording::reopen(cfg, key, &id, true).ok());
            match resumed
                .map(Ok)
                .unwrap_or_else(|| Recording::start(cfg, key, wall_ms))
            {
                Ok(r) => Some(r),
                Err(e) => {
                    err = Some(format!(
                        "cannot record \"{key}\" in \"{}\": {e}",
                        cfg.root.display()
                    ));
                    None
                }
            }
        });
        let summary = match &recording {
            Some(r) => r.summary(None),
            None => Summary {
                id: format!("{key}/{}", stamp(wall_ms)),
                key: key.to_string(),
                started_ms: wall_ms,
                ..Summary::default()
            },
        };
        let log = SessionLog {
            recording,
            updates: vec![summary.clone()],
            summary,
            media_known: false,
        };
        (log, err)
    }

    pub fn id(&self) -> &str {
        &self.summary.id
    }

    pub fn recording(&self) -> Option<&Recording> {
        self.recording.as_ref()
    }

    /// True until the media are known (ask the index after a segment).
    pub fn needs_media(&self) -> bool {
        !self.media_known
    }

    pub fn set_media(&mut self, media: MediaInfo) {
        if let Some(r) = &mut self.recording {
            r.set_media(media.clone());
        }
        self.summary.media = media;
        if !self.media_known {
            self.media_known = true;
            self.updates.push(self.current());
        }
    }

    /// One output the store has just written into `live`. A recording error stops the
    /// recording (the live stream goes on) and is returned once.
    pub fn output(&mut self, live: &Path, out: &Output) -> Result<(), String> {
        if let Output::Segment {
            duration_us, bytes, ..
        } = out
        {
            self.summary.segments += 1;
            self.summary.bytes += bytes;
            self.summary.duration_ms += duration_us / 1000;
        }
        if let Some(r) = &mut self.recording {
            if let Err(e) = r.on_output(live, out) {
                let dir = r.dir().display().to_string();
                self.recording = None;
                return Err(format!("recording into \"{dir}\" stopped: {e}"));
            }
        }
        Ok(())
    }

    fn current(&self) -> Summary {
        match &self.recording {
            Some(r) => Summary {
                media: self.summary.media.clone(),
                ..r.summary(None)
            },
            None => self.summary.clone(),
        }
    }

    /// The session ended: the recording gets its VOD playlist; the final row is queued.
    pub fn finish(&mut self, wall_ms: i64) -> Result<(), String> {
        let mut result = Ok(());
        let mut s = self.current();
        if let Some(r) = &mut self.recording {
            match r.finish(wall_ms) {
                Ok(done) => {
                    s = Summary {
                        media: self.summary.media.clone(),
                        ..done
                    }
                }
                Err(e) => result = Err(format!("finishing recording: {e}")),
            }
        }
        s.ended_ms = Some(wall_ms);
        self.updates.push(s);
        result
    }

    /// Catalog rows to write since the last call.
    pub fn take_updates(&mut self) -> Vec<Summary> {
        std::mem::take(&mut self.updates)
    }
}
