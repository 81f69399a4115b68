//! Publishing without RTMP: a WHIP session names its key in the signalling request and
//! hands over configurations and frames ([`Media`]) instead of FLV tags. Everything after
//! that (signed keys, the claim in the shared index, takeover, segmenter, store, grace
//! and ENDLIST, recordings and catalog rows) is the RTMP publish's own code.

use super::{Connection, IngestError, LogLevel, SharedIndex};
use crate::auth::callback::Decision;
use crate::auth::gate::Hold;
use crate::media::Media;
use crate::store::Now;

/// The stream id a direct publish uses internally (RTMP's first stream id).
const DIRECT_STREAM_ID: u32 = 1;

/// What became of a direct publish that was not refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direct {
    /// Live now.
    Live,
    /// Waiting for the publish callback's answer.
    Held,
}

/// Why a publish was refused, for the signalling answer's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Invalid stream key: 400.
    BadKey,
    /// Missing or wrong signature: 403.
    Forbidden,
    /// Another publisher has the key and takeover is off: 409.
    Live,
    /// No room in the zone, the zone unavailable, or the publish callback unreachable: 503.
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
    /// signed-key parameters (`exp=…&sig=…`) when `rtmp_live_secret` is set. With a
    /// publish callback the publish is held: the glue asks the callback
    /// ([`Connection::callback_request`]) and hands the answer to
    /// [`Connection::resolve_direct`].
    pub fn publish_direct(
        &mut self,
        app: &str,
        key: &str,
        query: Option<&str>,
        now: Now,
        shared: &mut dyn SharedIndex,
    ) -> Result<Direct, (Refusal, IngestError)> {
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
        if self.gate.hold(DIRECT_STREAM_ID, key, query) == Hold::Wait {
            return Ok(Direct::Held);
        }
        self.refusal = None;
        self.publish(DIRECT_STREAM_ID, key.to_owned(), now, shared)
            .map(|()| Direct::Live)
            .map_err(|e| (self.refusal.take().unwrap_or(Refusal::Other), e))
    }

    /// The publish callback's answer for a held direct publish: live (under the key the
    /// callback chose), or refused with the status to answer: 403 when the service said
    /// no, 503 when it could not be asked.
    pub fn resolve_direct(
        &mut self,
        d: Decision,
        now: Now,
        shared: &mut dyn SharedIndex,
    ) -> Result<(), (Refusal, IngestError)> {
        let refused = match d {
            Decision::Deny(_) => Some(Refusal::Forbidden),
            Decision::Unreachable(_) => Some(Refusal::Unavailable),
            Decision::Allow | Decision::Rename(_) => None,
        };
        if !self.publish_pending() {
            return Err((
                Refusal::Other,
                IngestError::Refused("no publish waits for the callback".into()),
            ));
        }
        self.refusal = None;
        self.resolve_publish(d, now, shared).map_err(|e| {
            let r = refused.or(self.refusal.take()).unwrap_or(Refusal::Other);
            (r, e)
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::publish::{signed_key, Secrets};
    use crate::ingest::testutil::Slots;

    fn conn(name: &str, callback: bool, secrets: Secrets) -> (Connection, std::path::PathBuf) {
        crate::ingest::testutil::conn("direct", name, callback, secrets)
    }

    #[test]
    fn without_a_callback_a_direct_publish_is_live_or_refused_with_its_status() {
        let (mut c, root) = conn("plain", false, Secrets::default());
        let mut idx = Slots::new(4);
        let r = c.publish_direct("whip", "demo", None, Now::same(0), &mut idx);
        assert_eq!(r.unwrap(), Direct::Live);
        assert_eq!(c.key(), Some("demo"));
        assert!(idx.has("demo") && root.join("demo").is_dir());
        // The key is live: a second publisher is refused with 409.
        let (mut c2, _) = conn("plain", false, Secrets::default());
        let (refusal, _) = c2
            .publish_direct("whip", "demo", None, Now::same(1), &mut idx)
            .unwrap_err();
        assert_eq!(refusal.status(), 409);
        let (refusal, _) = c2
            .publish_direct("whip", "no/pe", None, Now::same(1), &mut idx)
            .unwrap_err();
        assert_eq!(refusal.status(), 400);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_held_direct_publish_claims_nothing_until_the_callback_allows_or_renames() {
        let (mut c, root) = conn("held", true, Secrets::default());
        let mut idx = Slots::new(4);
        let r = c.publish_direct("whip", "secret", Some("pass=1"), Now::same(0), &mut idx);
        assert_eq!(r.unwrap(), Direct::Held);
        assert!(c.publish_pending() && c.key().is_none());
        assert!(!idx.has("secret") && !root.join("secret").exists());
        let ask = c.callback_request().unwrap();
        assert_eq!(
            (ask.app.as_str(), ask.name.as_str(), ask.query.as_deref()),
            ("whip", "secret", Some("pass=1"))
        );
        c.resolve_direct(Decision::Rename("public".into()), Now::same(5), &mut idx)
            .unwrap();
        assert_eq!(c.key(), Some("public"));
        assert!(idx.has("public") && !idx.has("secret"));
        // No second answer for the same publish.
        let (r, _) = c
            .resolve_direct(Decision::Allow, Now::same(6), &mut idx)
            .unwrap_err();
        assert_eq!(r, Refusal::Other);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_held_direct_publish_refused_by_the_callback_gets_403_or_503() {
        let mut idx = Slots::new(4);
        for (d, status) in [
            (Decision::Deny("publish callback answered 403".into()), 403),
            (
                Decision::Unreachable("publish callback: timed out".into()),
                503,
            ),
        ] {
            let (mut c, root) = conn("refused", true, Secrets::default());
            c.publish_direct("whip", "demo", None, Now::same(0), &mut idx)
                .unwrap();
            let (r, e) = c
                .resolve_direct(d.clone(), Now::same(5), &mut idx)
                .unwrap_err();
            assert_eq!(r.status(), status);
            assert_eq!(
                e.to_string(),
                format!("publish \"whip/demo\" refused: {}", d.refusal().unwrap())
            );
            assert!(!idx.has("demo") && !root.join("demo").exists());
            assert!(!c.publish_pending());
        }
        // Allowed, but the key is live by now (another publisher got it meanwhile): 409.
        let (mut live, root) = conn("refused", false, Secrets::default());
        let (mut c, _) = conn("refused", true, Secrets::default());
        c.publish_direct("whip", "demo", None, Now::same(0), &mut idx)
            .unwrap();
        live.publish_direct("whip", "demo", None, Now::same(1), &mut idx)
            .unwrap();
        let (r, _) = c
            .resolve_direct(Decision::Allow, Now::same(2), &mut idx)
            .unwrap_err();
        assert_eq!(r.status(), 409);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn signed_keys_are_checked_before_a_direct_publish_is_held() {
        let secret = b"a secret of enough length".to_vec();
        let mut idx = Slots::new(4);
        let (mut c, _) = conn("signed", true, Secrets(vec![secret.clone()]));
        c.set_unix_time(1_000);
        let (r, _) = c
            .publish_direct(
                "whip",
                "demo",
                Some("exp=999&sig=AAAAAAAAAAAAAAAAAAAAAA"),
                Now::same(0),
                &mut idx,
            )
            .unwrap_err();
        assert_eq!(r.status(), 403);
        assert!(!c.publish_pending());
        let signed = signed_key("demo", 2_000, &secret);
        let query = signed.split_once('?').unwrap().1;
        let got = c.publish_direct("whip", "demo", Some(query), Now::same(0), &mut idx);
        assert_eq!(got.unwrap(), Direct::Held);
    }
}
