//! WHIP ingest (RFC 9725): one WebRTC publisher, sans-IO like `rtmp/`.
//!
//! [`Peer`] answers the publisher's SDP offer, then takes UDP datagrams and time and gives
//! back datagrams to send and [`Media`] for the segmenter: H.264 access units
//! (depacketized from FU-A/STAP-A, reordered by the jitter buffer, converted to
//! length-prefixed samples with an `avcC` from the in-band SPS/PPS: [`h264`]) and Opus
//! packets, on one millisecond timeline with lip sync from RTCP sender reports
//! ([`clock`]). ICE-lite, DTLS-SRTP, RTP/RTCP, NACK and the jitter buffer are `str0m`'s,
//! a sans-IO WebRTC stack: it fits vid's rule that protocol state machines take bytes
//! and time and do no I/O, so the nginx glue drives it from the worker's event loop.
//!
//! Keyframes: browsers send an IDR picture only when asked, so a [`Peer`] asks (RTCP
//! PLI) when the segment being cut reaches its target, again if the keyframe does not
//! come, and after a gap in the video packets (loss the NACKs could not repair).

pub mod clock;
pub mod h264;

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use str0m::change::SdpOffer;
use str0m::format::Codec;
use str0m::media::{KeyframeRequestKind, MediaData, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};

use crate::codec::opus;
pub use crate::media::Media;
use crate::media::{AudioConfig, Frame, TrackKind};

/// Largest UDP datagram taken (WebRTC packets stay below the path MTU, ~1200 bytes).
pub const MAX_DATAGRAM: usize = 2048;
/// Largest SDP offer taken (a browser's offer is 4–8 KB).
pub const MAX_OFFER: usize = 64 * 1024;
/// A video access unit larger than this is dropped (a 1080p IDR is a few hundred KB).
const MAX_ACCESS_UNIT: usize = 4 * 1024 * 1024;

#[derive(Clone, Copy, Debug)]
pub struct PeerConfig {
    /// The stream's segment target: a keyframe is requested at this cadence.
    pub segment_target_ms: u32,
    /// ICE + DTLS must complete within this after the answer.
    pub handshake_timeout_ms: u64,
    /// No media for this long ends the session (as `rtmp_live_timeout` does for RTMP).
    pub idle_timeout_ms: u64,
}

/// Why an offer was refused; [`OfferError::status`] is the HTTP status to answer.
#[derive(Debug, PartialEq, Eq)]
pub enum OfferError {
    /// Not SDP, or SDP str0m cannot accept.
    Malformed(String),
    /// Neither H.264 video nor Opus audio offered.
    Unsupported(String),
}

impl OfferError {
    pub fn status(&self) -> u16 {
        match self {
            OfferError::Malformed(_) => 400,
            OfferError::Unsupported(_) => 406,
        }
    }
}

impl fmt::Display for OfferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OfferError::Malformed(why) => write!(f, "malformed SDP offer: {why}"),
            OfferError::Unsupported(why) => write!(f, "unsupported offer: {why}"),
        }
    }
}

/// Counters of one session, for logs and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// Datagrams that were neither STUN, DTLS, RTP nor RTCP, or not for this session.
    pub garbage: u64,
    pub video_frames: u64,
    pub audio_frames: u64,
    /// Access units dropped (no parameter sets yet, oversized, bad parameter sets).
    pub dropped_frames: u64,
    pub keyframe_requests: u64,
    /// Gaps in the video packets the jitter buffer could not close.
    pub video_gaps: u64,
}

/// Why a session is over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Closed {
    HandshakeTimeout,
    Idle,
    /// ICE lost the publisher (consent expired): the stream waits for a republish.
    Disconnected,
    /// The publisher closed the session (DTLS close_notify, or DELETE).
    Ended,
    Failed(String),
}

impl Closed {
    /// Metric labels of the reasons, by [`Closed::index`].
    pub const LABELS: [&'static str; crate::metrics::WHIP_CLOSE_REASONS] = [
        "handshake_timeout",
        "idle",
        "disconnected",
        "ended",
        "failed",
    ];

    pub fn index(&self) -> usize {
        match self {
            Closed::HandshakeTimeout => 0,
            Closed::Idle => 1,
            Closed::Disconnected => 2,
            Closed::Ended => 3,
            Closed::Failed(_) => 4,
        }
    }
}

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Closed::HandshakeTimeout => write!(f, "ICE/DTLS handshake did not complete in time"),
            Closed::Idle => write!(f, "no media received, timed out"),
            Closed::Disconnected => write!(f, "peer disconnected"),
            Closed::Ended => write!(f, "ended by the publisher"),
            Closed::Failed(why) => write!(f, "WebRTC error: {why}"),
        }
    }
}

struct KeyframeClock {
    /// Time (ms) of the keyframe that started the current segment.
    cut_ms: Option<i64>,
    /// Time (ms) at which the keyframe for the next cut was requested, if it was.
    asked_ms: Option<i64>,
    /// Last request (monotonic) after a gap, to space them.
    last_gap_request: Option<Instant>,
    first_done: bool,
}

/// One WHIP session.
pub struct Peer {
    rtc: Rtc,
    local: SocketAddr,
    cfg: PeerConfig,
    started: Instant,
    last_media: Instant,
    connected: bool,
    video_mid: Option<Mid>,
    audio_mid: Option<Mid>,
    depack: h264::Depacketized,
    timeline: clock::Timeline,
    audio_config: Option<AudioConfig>,
    keyframes: KeyframeClock,
    next_timeout: Instant,
    transmits: Vec<(SocketAddr, Vec<u8>)>,
    media: Vec<Media>,
    closed: Option<Closed>,
    stats: PeerStats,
    /// A warning for the log (the first dropped frame), taken by [`Peer::take_warning`].
    warning: Option<String>,
}

/// Whether `sdp` offers a codec vid takes: H.264 video or Opus audio (`a=rtpmap`).
fn offered_codecs(sdp: &str) -> (bool, bool) {
    let mut h264 = false;
    let mut opus = false;
    for line in sdp.lines() {
        if let Some(rest) = line.trim().strip_prefix("a=rtpmap:") {
            let enc = rest.split_whitespace().nth(1).unwrap_or("");
            let name = enc.split('/').next().unwrap_or("");
            h264 |= name.eq_ignore_ascii_case("H264");
            opus |= name.eq_ignore_ascii_case("opus");
        }
    }
    (h264, opus)
}

/// The media sections of an answer that receive H.264 video and Opus audio: their mids.
/// A rejected section (port 0) or one without the codec does not count.
fn answered_tracks(answer: &str) -> (Option<Mid>, Option<Mid>) {
    let (mut video, mut audio) = (None, None);
    let mut sections: Vec<(&str, bool, Option<&str>, bool)> = Vec::new();
    for line in answer.lines() {
        let line = line.trim();
        if let Some(m) = line.strip_prefix("m=") {
            let mut f = m.split_whitespace();
            let kind = f.next().unwrap_or("");
            let open = f.next().is_some_and(|port| port != "0");
            sections.push((kind, open, None, false));
        } else if let Some(cur) = sections.last_mut() {
            if let Some(mid) = line.strip_prefix("a=mid:") {
                cur.2 = Some(mid);
            } else if let Some(rest) = line.strip_prefix("a=rtpmap:") {
                let name = rest.split_whitespace().nth(1).unwrap_or("");
                let name = name.split('/').next().unwrap_or("");
                cur.3 |= (cur.0 == "video" && name.eq_ignore_ascii_case("H264"))
                    || (cur.0 == "audio" && name.eq_ignore_ascii_case("opus"));
            } else if line == "a=inactive" || line == "a=sendonly" {
                cur.1 = false;
            }
        }
    }
    for (kind, open, mid, codec) in sections {
        let (Some(mid), true, true) = (mid, open, codec) else {
            continue;
        };
        match kind {
            "video" if video.is_none() => video = Some(Mid::from(mid)),
            "audio" if audio.is_none() => audio = Some(Mid::from(mid)),
            _ => {}
        }
    }
    (video, audio)
}

fn ms_between(earlier: Instant, later: Instant) -> i64 {
    later.saturating_duration_since(earlier).as_millis() as i64
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer")
            .field("local", &self.local)
            .field("connected", &self.connected)
            .field("closed", &self.closed)
            .field("stats", &self.stats)
            .finish()
    }
}

impl Peer {
    /// Answers `offer` for a session whose media arrives at `local` (the UDP socket of
    /// this worker, advertised as the one ICE host candidate).
    pub fn accept(
        offer: &str,
        local: SocketAddr,
        now: Instant,
        cfg: PeerConfig,
    ) -> Result<(Peer, String), OfferError> {
        if offer.len() > MAX_OFFER {
            return Err(OfferError::Malformed("larger than 64 KiB".into()));
        }
        if !offer.trim_start().starts_with("v=0") {
            return Err(OfferError::Malformed("does not start with \"v=0\"".into()));
        }
        let (h264, has_opus) = offered_codecs(offer);
        if !h264 && !has_opus {
            return Err(OfferError::Unsupported(
                "neither H.264 video nor Opus audio offered".into(),
            ));
        }
        let sdp =
            SdpOffer::from_sdp_string(offer).map_err(|e| OfferError::Malformed(e.to_string()))?;
        let mut rtc = RtcConfig::new()
            .set_ice_lite(true)
            .clear_codecs()
            .enable_h264(true)
            .enable_opus(true, false)
            .build(now);
        let candidate =
            Candidate::host(local, "udp").map_err(|e| OfferError::Malformed(e.to_string()))?;
        rtc.add_local_candidate(candidate);
        let answer = rtc
            .sdp_api()
            .accept_offer(sdp)
            .map_err(|e| OfferError::Malformed(e.to_string()))?;
        let mut peer = Peer {
            rtc,
            local,
            cfg,
            started: now,
            last_media: now,
            connected: false,
            video_mid: None,
            audio_mid: None,
            depack: h264::Depacketized::new(),
            timeline: clock::Timeline::new(),
            audio_config: None,
            keyframes: KeyframeClock {
                cut_ms: None,
                asked_ms: None,
                last_gap_request: None,
                first_done: false,
            },
            next_timeout: now,
            transmits: Vec::new(),
            media: Vec::new(),
            closed: None,
            stats: PeerStats::default(),
            warning: None,
        };
        let answer = answer.to_sdp_string();
        (peer.video_mid, peer.audio_mid) = answered_tracks(&answer);
        peer.drain(now);
        if peer.video_mid.is_none() && peer.audio_mid.is_none() {
            return Err(OfferError::Unsupported(
                "no media section the publisher sends with H.264 or Opus".into(),
            ));
        }
        Ok((peer, answer))
    }

    /// Whether a datagram from `source` belongs to this session (its ICE credentials, or
    /// the address ICE nominated).
    pub fn accepts(&self, now: Instant, source: SocketAddr, data: &[u8]) -> bool {
        self.input(now, source, data)
            .is_some_and(|input| self.rtc.accepts(&input))
    }

    /// `data` from `source` as str0m's input; None if it is no STUN, DTLS, RTP or RTCP.
    fn input<'a>(&self, now: Instant, source: SocketAddr, data: &'a [u8]) -> Option<Input<'a>> {
        let contents = data.try_into().ok()?;
        Some(Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.local,
                contents,
            },
        ))
    }

    /// A datagram for this session (see [`Self::accepts`]). Garbage is counted and dropped.
    pub fn receive(&mut self, now: Instant, source: SocketAddr, data: &[u8]) {
        if self.closed.is_some() {
            return;
        }
        let Some(input) = self
            .input(now, source, data)
            .filter(|_| data.len() <= MAX_DATAGRAM)
        else {
            self.stats.garbage += 1;
            return;
        };
        if let Err(e) = self.rtc.handle_input(input) {
            // A packet str0m refuses (bad SRTP auth, a broken DTLS record) is dropped; the
            // session goes on unless str0m itself closed it.
            self.stats.garbage += 1;
            if !self.rtc.is_alive() {
                self.closed = Some(Closed::Failed(e.to_string()));
                return;
            }
        }
        self.drain(now);
    }

    /// The answer goes out only now (it waited for the publish callback): the handshake
    /// time counts from here.
    pub fn answer_sent(&mut self, now: Instant) {
        if !self.connected {
            self.started = now;
            self.last_media = now;
        }
    }

    /// Time passed: retransmissions, RTCP, keyframe requests, timeouts.
    pub fn timeout(&mut self, now: Instant) {
        if self.closed.is_some() {
            return;
        }
        if !self.connected && ms_between(self.started, now) >= self.cfg.handshake_timeout_ms as i64
        {
            self.close(Closed::HandshakeTimeout);
            return;
        }
        if self.connected && ms_between(self.last_media, now) >= self.cfg.idle_timeout_ms as i64 {
            self.close(Closed::Idle);
            return;
        }
        if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
            self.close(Closed::Failed(e.to_string()));
            return;
        }
        self.drain(now);
    }

    /// When [`Self::timeout`] wants to run next.
    pub fn next_timeout(&self) -> Instant {
        let limit = if self.connected {
            self.last_media + Duration::from_millis(self.cfg.idle_timeout_ms)
        } else {
            self.started + Duration::from_millis(self.cfg.handshake_timeout_ms)
        };
        self.next_timeout.min(limit)
    }

    /// Datagrams to send: (destination, bytes).
    pub fn take_transmits(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        std::mem::take(&mut self.transmits)
    }

    /// Media for the segmenter, in order.
    pub fn take_media(&mut self) -> Vec<Media> {
        std::mem::take(&mut self.media)
    }

    pub fn take_warning(&mut self) -> Option<String> {
        self.warning.take()
    }

    /// Set once the session is over; it then takes nothing more.
    pub fn closed(&self) -> Option<&Closed> {
        self.closed.as_ref()
    }

    /// Whether the session sends video and audio (from the answered SDP).
    pub fn tracks(&self) -> (bool, bool) {
        (self.video_mid.is_some(), self.audio_mid.is_some())
    }

    /// ICE and DTLS are done (media may flow).
    pub fn connected(&self) -> bool {
        self.connected
    }

    pub fn stats(&self) -> PeerStats {
        self.stats
    }

    /// Ends the session (the publisher sent DELETE, or the server is closing it).
    pub fn close(&mut self, why: Closed) {
        if self.closed.is_none() {
            self.rtc.disconnect();
            self.closed = Some(why);
        }
    }

    /// Drains str0m's output after a mutation, as its API requires.
    fn drain(&mut self, now: Instant) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.next_timeout = t.max(now);
                    return;
                }
                Ok(Output::Transmit(t)) => {
                    self.transmits.push((t.destination, t.contents.to_vec()));
                }
                Ok(Output::Event(e)) => self.event(e, now),
                Err(e) => {
                    self.closed = Some(Closed::Failed(e.to_string()));
                    return;
                }
            }
        }
    }

    fn event(&mut self, e: Event, now: Instant) {
        match e {
            Event::Connected => {
                self.connected = true;
                self.last_media = now;
                self.request_keyframe(now);
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.closed.get_or_insert(Closed::Disconnected);
            }
            // DTLS close_notify: the publisher closed its peer connection on purpose.
            Event::Closed => {
                self.closed.get_or_insert(Closed::Ended);
            }
            Event::MediaData(d) => self.media_data(d, now),
            _ => {}
        }
    }

    fn media_data(&mut self, d: MediaData, now: Instant) {
        self.last_media = now;
        let arrival = ms_between(self.started, d.network_time);
        let rate = d.time.denom();
        let rtp = d.time.numer();
        if let Some(si) = d.last_sender_info {
            let ntp_ms = si
                .ntp_time
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as i64;
            let report = clock::Report {
                ntp_ms,
                rtp: si.rtp_time.numer(),
            };
            if Some(d.mid) == self.video_mid {
                self.timeline.video_report(report, si.rtp_time.denom());
            } else if Some(d.mid) == self.audio_mid {
                self.timeline.audio_report(report, si.rtp_time.denom());
            }
        }
        match d.params.spec().codec {
            Codec::H264 if Some(d.mid) == self.video_mid => {
                let t = self.timeline.video(rtp, rate, arrival);
                if !d.contiguous {
                    self.stats.video_gaps += 1;
                    let spaced = self
                        .keyframes
                        .last_gap_request
                        .is_none_or(|at| now.saturating_duration_since(at) >= GAP_REQUEST_SPACING);
                    if spaced {
                        self.keyframes.last_gap_request = Some(now);
                        self.request_keyframe(now);
                    }
                }
                self.video(&d.data, t, now);
            }
            Codec::Opus if Some(d.mid) == self.audio_mid => {
                let t = self.timeline.audio(rtp, rate, arrival);
                self.audio(&d.data, t);
            }
            _ => {}
        }
    }

    fn video(&mut self, annex_b: &[u8], t: i64, now: Instant) {
        if annex_b.len() > MAX_ACCESS_UNIT {
            self.drop_frame("video access unit larger than 4 MiB".into());
            return;
        }
        let au = match self.depack.access_unit(annex_b) {
            Ok(au) => au,
            Err(h264::Dropped::NoParameterSets) => {
                // Waiting for the first IDR with SPS/PPS: ask for it.
                self.stats.dropped_frames += 1;
                if self
                    .keyframes
                    .asked_ms
                    .is_none_or(|at| t - at >= KEYFRAME_RETRY_MS)
                {
                    self.keyframes.asked_ms = Some(t);
                    self.request_keyframe(now);
                }
                return;
            }
            Err(h264::Dropped::Empty) => return,
            Err(h264::Dropped::BadParameterSets(why)) => {
                self.drop_frame(format!("video frame with bad parameter sets ({why})"));
                return;
            }
        };
        if let Some(cfg) = au.config {
            self.media.push(Media::Video(cfg));
        }
        self.keyframe_cadence(au.keyframe, t, now);
        self.stats.video_frames += 1;
        self.media.push(Media::Frame(Frame {
            kind: TrackKind::Video,
            dts_ms: t,
            cts_ms: 0,
            keyframe: au.keyframe,
            data: au.data,
        }));
    }

    /// Mirrors the segmenter's cut rule to ask for the keyframe of the next cut in time.
    fn keyframe_cadence(&mut self, keyframe: bool, t: i64, now: Instant) {
        let target = self.cfg.segment_target_ms as i64;
        let k = &mut self.keyframes;
        // The first segment of a stream is cut at half the target.
        let this_target = if k.first_done { target } else { target / 2 };
        match k.cut_ms {
            None if keyframe => {
                k.cut_ms = Some(t);
                k.asked_ms = None;
            }
            Some(cut) if keyframe && t - cut + CUT_SLACK_MS >= this_target => {
                k.cut_ms = Some(t);
                k.asked_ms = None;
                k.first_done = true;
            }
            // Due: ask, and ask again if the keyframe does not come.
            Some(cut)
                if t - cut + CUT_SLACK_MS >= this_target
                    && k.asked_ms.is_none_or(|at| t - at >= KEYFRAME_RETRY_MS) =>
            {
                k.asked_ms = Some(t);
                self.request_keyframe(now);
            }
            _ => {}
        }
    }

    fn audio(&mut self, packet: &[u8], t: i64) {
        if packet.is_empty() {
            return;
        }
        if self.audio_config.is_none() {
            // TOC byte: the stereo flag (RFC 6716 §3.1).
            let channels = if packet[0] & 0x04 != 0 { 2 } else { 1 };
            let cfg = opus::config(channels, 0);
            self.audio_config = Some(cfg.clone());
            self.media.push(Media::Audio(cfg));
        }
        self.stats.audio_frames += 1;
        self.media.push(Media::Frame(Frame {
            kind: TrackKind::Audio,
            dts_ms: t,
            cts_ms: 0,
            keyframe: true,
            data: Bytes::copy_from_slice(packet),
        }));
    }

    fn drop_frame(&mut self, why: String) {
        self.stats.dropped_frames += 1;
        if self.stats.dropped_frames == 1 {
            self.warning = Some(format!(
                "dropped a {why} (further dropped frames of this session are not logged)"
            ));
        }
    }

    fn request_keyframe(&mut self, _now: Instant) {
        let Some(mid) = self.video_mid else {
            return;
        };
        let Some(mut w) = self.rtc.writer(mid) else {
            return;
        };
        let kind = if w.is_request_keyframe_possible(KeyframeRequestKind::Pli) {
            KeyframeRequestKind::Pli
        } else if w.is_request_keyframe_possible(KeyframeRequestKind::Fir) {
            KeyframeRequestKind::Fir
        } else {
            return;
        };
        if w.request_keyframe(None, kind).is_ok() {
            self.stats.keyframe_requests += 1;
        }
    }
}

/// The worker that holds session `id` (`w{worker}-{32 hex digits}`), if `id` has that form.
pub fn session_worker(id: &str) -> Option<u16> {
    let (n, hex) = id.strip_prefix('w')?.split_once('-')?;
    let well_formed = !n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit())
        && hex.len() == 32
        && hex.bytes().all(|b| b.is_ascii_hexdigit());
    if well_formed {
        n.parse().ok()
    } else {
        None
    }
}

/// The part of a signalling URI below its location: `KEY` or `KEY/SESSION`. `prefix` is
/// the location's name; when `uri` does not start with it (a regex location), the end of
/// the URI counts: its last segment, or its last two when the last is a session id.
pub fn signalling_path(uri: &[u8], prefix: &[u8]) -> String {
    let rest = uri.strip_prefix(prefix).unwrap_or_else(|| {
        let mut parts = uri.rsplitn(3, |&b| b == b'/');
        let last = parts.next().unwrap_or(b"");
        let is_session = std::str::from_utf8(last).is_ok_and(|l| session_worker(l).is_some());
        match parts.next() {
            Some(key) if is_session => &uri[uri.len() - last.len() - 1 - key.len()..],
            _ => last,
        }
    });
    String::from_utf8_lossy(rest)
        .trim_start_matches('/')
        .to_owned()
}

/// A keyframe counts for a cut this much before the target (the segmenter's rule).
const CUT_SLACK_MS: i64 = 50;
/// A keyframe asked for and not received is asked for again after this (media time).
const KEYFRAME_RETRY_MS: i64 = 500;
/// Keyframe requests after packet loss are at least this far apart.
const GAP_REQUEST_SPACING: Duration = Duration::from_millis(300);

#[cfg(test)]
mod tests;
