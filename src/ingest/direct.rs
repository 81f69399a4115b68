//! Publishing without RTMP: a WHIP session names its key in the signalling request and
//! hands over configurations and frames ([`Media`]) instead of FLV tags. Everything after
//! that (signed keys, the claim in the shared index, takeover, segmenter, store, grace
//! and ENDLIST, recordings and catalog rows) is the RTMP publish's own code.

use super::{Connection, IngestError, LogLevel, SharedIndex};
use crate::media::Media;
use crate::store::Now;

/// The stream id a direct publish uses internally (RTMP's first stream id).
const DIRECT_STREAM_ID: u32 = 1;

/// Why a publish was refused, for the signalling answer's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Invalid stream key: 400.
    BadKey,
    /// Missing or wrong signature: 403.
    Forbidden,
    /// Another publisher has the key and takeover is off: 409.
    Live,
    /// No room in the zone, or the zone is unavailable: 503.
    Unavailable,
    /// Anything else (storage): 500.
    Other,
}

impl Refusal {
    pub fn status(self) -> u16 {
        match self {
            Refusal::BadKey => 400,
            Refusal::Forbidden => 403,
            Refusal::Live => 409,
            Refusal::Unavailable => 503,
            Refusal::Other => 500,
        }
    }
}

impl Connection {
    /// Publish `key` for a publisher of kind `app` (e.g. "whip"); `query` carries the
    /// signed-key parameters (`exp=…&sig=…`) when `rtmp_live_secret` is set.
    pub fn publish_direct(
        &mut self,
        app: &str,
        key: &str,
        query: Option<&str>,
        now: Now,
        shared: &mut dyn SharedIndex,
    ) -> Result<(), (Refusal, IngestError)> {
        self.direct = true;
        self.app = Some(app.to_owned());
        if !crate::store::names::valid_key(key) {
            let shown: String = key.chars().take(80).collect();
            return Err((
                Refusal::BadKey,
                IngestError::Refused(format!(
                    "invalid stream key \"{}\" (allowed: [A-Za-z0-9_-]{{1,64}})",
                    shown.escape_debug()
                )),
            ));
        }
        if let Err(e) = self.cfg.publish_secrets.check(key, query, self.unix_s) {
            return Err((
                Refusal::Forbidden,
                IngestError::Refused(format!("publish \"{app}/{key}\" refused: {e}")),
            ));
        }
        if self.cfg.publish_callback {
            // The callback is driven by the RTMP connection; refusing is the safe answer
            // until WHIP publishes are held for it too.
            return Err((
                Refusal::Forbidden,
                IngestError::Refused(format!(
                    "publish \"{app}/{key}\" refused: rtmp_live_on_publish is set and is not \
                     applied to WHIP publishes"
                )),
            ));
        }
        self.refusal = None;
        self.publish(DIRECT_STREAM_ID, key.to_owned(), now, shared)
            .map_err(|e| (self.refusal.take().unwrap_or(Refusal::Other), e))
    }

    /// Configurations and frames of a direct publish, in order; written and listed like an
    /// RTMP publisher's. An error means: log it and end the session.
    pub fn feed_media(
        &mut self,
        media: Vec<Media>,
        now: Now,
        shared: &mut dyn SharedIndex,
    ) -> Result<(), IngestError> {
        if let Some(p) = self.publishing.as_mut() {
            let out = &mut self.outputs;
            for m in media {
                match m {
                    Media::Video(cfg) => p.segmenter.video_config(cfg, out),
                    Media::Audio(cfg) => p.segmenter.audio_config(cfg, out),
                    Media::Frame(f) => {
                        self.stats.frames += 1;
                        self.stats.bytes += f.data.len() as u64;
                        p.segmenter.push(f, now.wall_ms, out);
                    }
                }
            }
        }
        self.store(now.mono_ms, shared)
    }

    /// Which tracks a direct publish will send (from its SDP), so that the first segment
    /// waits for both.
    pub fn expect_tracks(&mut self, video: bool, audio: bool) {
        if let Some(p) = self.publishing.as_mut() {
            p.segmenter.expect_tracks(video, audio);
        }
    }

    /// A line for the log about the direct publish (e.g. from the WebRTC session).
    pub fn note(&mut self, level: LogLevel, msg: String) {
        self.say(level, msg);
    }
}
