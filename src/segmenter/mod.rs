//! One timeline per stream: cuts segments at IDRs and parts on a fixed grid.
//!
//! The segmenter takes codec configurations and access units in arrival order and
//! produces, in this order: an [`Output::Init`] before any part that uses it, then
//! [`Output::Part`]s, each [`Output::Segment`] right after its last part.
//!
//! MPEG-TS (`SegmenterConfig::ts`): while the tracks of the current init section can be
//! carried in TS (H.264 and/or AAC; not HEVC, not Opus), every segment is also written
//! as one TS file from exactly the same samples and cut points, and
//! [`Output::TsSegment`] comes right *before* the [`Output::Segment`] of the same msn (so
//! a store that lists the segment already has its TS file). There are no TS parts. With
//! HEVC or Opus the stream is served in fMP4 only.
//!
//! Timeline
//! - Video decode time is in 90 kHz, taken from the RTMP dts (ms) relative to the first
//!   frame of the stream; the composition offset is `cts_ms * 90`. A video sample lasts
//!   until the next video frame's dts, so the newest video frame is held until its
//!   successor arrives (at [`Segmenter::finish`] it gets the previous duration).
//! - Audio decode time counts `frame_samples` per frame in `sample_rate` units, anchored
//!   at the first audio frame's dts. When the count drifts more than
//!   [`AUDIO_DRIFT_FRAMES`] frames ahead of the RTMP timestamps (a gap in the audio) it is
//!   re-anchored forward; when it drifts as far behind, the frame is dropped. Both are
//!   counted in [`SegmenterStats`]. Opus packets vary in duration (2.5 to 120 ms): each
//!   counts the samples its TOC byte announces ([`crate::codec::opus::packet_samples`];
//!   `frame_samples` when it cannot be read), always at 48 kHz, and the drift tolerance
//!   is that many frames of the nominal or the packet's duration, whichever is longer.
//! - Timestamps of the leading track (video, or audio for audio-only streams) that jump
//!   back by more than [`BACKWARD_RESET_MS`] or forward by more than [`FORWARD_RESET_MS`]
//!   are treated as a reset of the publisher's clock: the timeline continues right after
//!   the previous frame. Smaller backward steps are clamped. Nothing here panics on odd
//!   timestamps.
//!
//! Part target. The advertised PART-TARGET ([`Segmenter::part_target_ms`], carried by
//! every [`Output::Init`]) is the configured part target rounded up to a whole number of
//! frames of the leading track: `n = ceil(part_target / frame)` frames, PART-TARGET =
//! `ceil(n × frame)` in ms (200 ms: 0.200 at 25/30/50/60 fps, 0.201 at 29.97/59.94,
//! 0.209 at 23.976/24, 0.214 for 48 kHz AAC). The frame duration comes from the SPS
//! (snapped to the common rates) or the AAC frame; without it PART-TARGET is the
//! configured value. Parts are cut every `n` frames and never exceed PART-TARGET: when
//! the next frame shows that the held frame would end past it (jitter, a timestamp gap),
//! the part is cut before the held frame; a gap longer than the part target after the
//! first frame of a part is shortened (the timeline continues, as for a clock reset).
//! Audio-led, an Opus packet longer than the nominal frame that would end past
//! PART-TARGET starts the next part, and PART-TARGET is at least 120 ms (the longest
//! packet) so that one packet always fits.
//!
//! Segments (video-led; audio-led for audio-only streams): a new segment starts at a
//! keyframe (H.264 IDR, H.265 IRAP including CRA) once `elapsed + 50 ms ≥
//! min(segment_target, TARGETDURATION)` (half that, at least a part target, for a
//! fresh stream's first segment: players need one segment before they start), where `elapsed` is the larger of the decode-time
//! and presentation-time distance from the segment's first frame (a CRA of an open GOP
//! decodes before its leading pictures), or at the first keyframe after a codec
//! configuration change (new `Init`, discontinuity). EXT-X-TARGETDURATION (`TD`:
//! [`Segmenter::set_target_duration`], else the segment target rounded up to seconds)
//! is a hard limit: every segment lasts at most `TD + 0.499 s`, so its EXTINF rounds to
//! at most TD (RFC 8216 §4.3.3.1). At a part boundary where one more part could pass
//! that limit the segment is cut without a keyframe (an irregular or long GOP): such a
//! segment is marked not independent ([`Output::Segment::independent`]) and the next
//! keyframe starts a segment whatever its length, so that cuts return to the GOP.
//! H.265 segments holding RASL pictures (open GOP: they reference the previous GOP)
//! are not independent either; the playlist leaves out EXT-X-INDEPENDENT-SEGMENTS
//! while it lists such a segment.
//!
//! Program date time: the first frame's wall clock plus media time, pulled back so that
//! a segment is never dated more than [`PDT_MAX_AHEAD_MS`] after the arrival of its
//! first frame (a publisher sending faster than real time).

use std::collections::VecDeque;

use bytes::Bytes;

use crate::codec::opus;
use crate::media::{AudioCodec, AudioConfig, Frame, TrackKind, VideoCodec, VideoConfig};
use crate::mux::fmp4::{Run, Sample, AUDIO_TRACK_ID, VIDEO_TIMESCALE, VIDEO_TRACK_ID};
use crate::mux::ts::{TsStats, TsWriter};

#[cfg(test)]
mod tests;

/// Writes the fMP4 boxes. The implementation that calls `crate::mux::fmp4` lives with
/// the integration; tests use a recording implementation.
pub trait Muxer {
    fn init_segment(&self, video: Option<&VideoConfig>, audio: Option<&AudioConfig>) -> Bytes;
    fn fragment(&self, sequence_number: u32, runs: &[Run]) -> Bytes;
}

/// How long to wait (media time) for a track announced by onMetaData whose
/// configuration has not arrived yet before starting without it.
pub const START_WAIT_MS: i64 = 1_000;
/// A segment is cut at the next frame (keyframe or not) once it holds this much media...
pub const MAX_SEGMENT_MEDIA_MS: i64 = 60_000;
/// ...or this many bytes: the current segment's bytes are held until it closes (its
/// TS rendition, when on, is held too: the same samples plus a few percent).
pub const MAX_SEGMENT_BYTES: usize = 64 << 20;
/// Bytes buffered before the stream starts (waiting for an announced track).
pub const MAX_START_BYTES: usize = 16 << 20;
/// Audio waiting for video to cut a part (video stalled): older audio is dropped.
pub const MAX_AUDIO_QUEUE_MS: i64 = 10_000;
/// Leading-track timestamps going back more than this are a clock reset.
pub const BACKWARD_RESET_MS: i64 = 1_000;
/// Leading-track timestamps jumping forward more than this are a clock reset.
pub const FORWARD_RESET_MS: i64 = 1_000;
/// Audio drift (in frames) against the RTMP timestamps tolerated before re-anchoring.
pub const AUDIO_DRIFT_FRAMES: i64 = 2;
/// Part target bounds (ms) accepted by [`SegmenterConfig`]; values outside are clamped.
pub const PART_TARGET_RANGE_MS: (u32, u32) = (50, 5_000);
/// Segment target upper bound (ms); the lower bound is the part target.
pub const MAX_SEGMENT_TARGET_MS: u32 = 30_000;

/// Video sample duration used when nothing better is known (one frame at 30 fps).
const DEFAULT_VIDEO_TICKS: u64 = 3_000;
/// A segment may last this much longer than TARGETDURATION (EXTINF rounds down to TD).
pub const TD_SLACK_MS: u64 = 499;
/// Largest distance of a segment's PROGRAM-DATE-TIME ahead of the wall clock at the
/// arrival of its first frame.
pub const PDT_MAX_AHEAD_MS: i64 = 500;
/// Frame rates a signalled rate within 0.5% of is snapped to.
const COMMON_FPS: [f64; 10] = [
    24_000.0 / 1_001.0,
    24.0,
    25.0,
    30_000.0 / 1_001.0,
    30.0,
    48.0,
    50.0,
    60_000.0 / 1_001.0,
    60.0,
    120.0,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmenterConfig {
    /// Segment target duration in ms (default 2000).
    pub segment_target_ms: u32,
    /// Part target duration in ms (default 200).
    pub part_target_ms: u32,
    /// Also write each segment as MPEG-TS when the codecs allow it (default off).
    pub ts: bool,
}

impl Default for SegmenterConfig {
    fn default() -> Self {
        SegmenterConfig {
            segment_target_ms: 2_000,
            part_target_ms: 200,
            ts: false,
        }
    }
}

impl SegmenterConfig {
    /// The configuration with both targets clamped to the supported ranges.
    pub fn sanitized(self) -> Self {
        let part = self
            .part_target_ms
            .clamp(PART_TARGET_RANGE_MS.0, PART_TARGET_RANGE_MS.1);
        let seg = self.segment_target_ms.clamp(part, MAX_SEGMENT_TARGET_MS);
        SegmenterConfig {
            segment_target_ms: seg,
            part_target_ms: part,
            ts: self.ts,
        }
    }
}

/// What the segmenter produces.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// A new initialization section (`init{version}.mp4`).
    Init {
        version: u32,
        data: Bytes,
        video: Option<VideoConfig>,
        audio: Option<AudioConfig>,
        /// The advertised PART-TARGET (ms) for parts from here on; every part lasts at
        /// most this long.
        part_target_ms: u32,
    },
    /// Part `part` (0-based) of segment `msn`: one fragment.
    Part {
        msn: u64,
        part: u32,
        duration_us: u64,
        independent: bool,
        data: Bytes,
        /// EXT-X-PROGRAM-DATE-TIME of the segment this part belongs to (the same value
        /// its `Segment` will carry), so the segment being built can be dated at once.
        segment_pdt_ms: i64,
    },
    /// A complete segment, right after its last part.
    Segment {
        msn: u64,
        duration_us: u64,
        /// Size in bytes: exactly the sum of its parts' sizes (the segment is its parts,
        /// in order; the store has them already).
        bytes: u64,
        parts: u32,
        program_date_time_ms: i64,
        discontinuity: bool,
        init_version: u32,
        /// Number of video samples in the segment (0 for audio-only); lets the index
        /// measure the frame rate when the SPS does not signal it.
        video_frames: u32,
        /// Decodable without any other segment: starts with a keyframe and holds no
        /// RASL picture.
        independent: bool,
    },
    /// Segment `msn` as MPEG-TS (`{msn}.ts`), right before its [`Output::Segment`]: the
    /// same samples, the same duration.
    TsSegment {
        msn: u64,
        duration_us: u64,
        data: Bytes,
    },
}

/// Counters worth logging; they only grow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmenterStats {
    /// Audio timeline re-anchored forward on a gap.
    pub audio_reanchors: u64,
    /// Audio frames dropped because their timestamps lag the sample count.
    pub audio_dropped_drift: u64,
    /// Audio dropped while waiting for video (queue bound).
    pub audio_dropped_queue: u64,
    /// Frames dropped before the stream started or without a usable configuration.
    pub dropped_frames: u64,
    /// Segments cut without a keyframe (TARGETDURATION limit, or memory bounds).
    pub forced_cuts: u64,
    /// Parts cut one frame early because the next frame arrived late (jitter, gaps).
    pub early_part_cuts: u64,
    /// Timestamp gaps longer than the part target shortened.
    pub gaps_shortened: u64,
    /// Times the program date time was pulled back to the wall clock.
    pub pdt_reanchors: u64,
    /// Clock resets of the leading track.
    pub timestamp_resets: u64,
    /// Small backward steps clamped.
    pub clamped_timestamps: u64,
}

#[derive(Debug)]
struct Held {
    t: u64,
    cts: i32,
    keyframe: bool,
    data: Bytes,
}

#[derive(Debug)]
struct QueuedAudio {
    /// Stream time in ms (RTMP clock, relative to the origin) for part assignment.
    ms: i64,
    /// Decode time in sample-rate units.
    t: u64,
    /// Duration in sample-rate units: `frame_samples`, or an Opus packet's own.
    dur: u64,
    data: Bytes,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Leader {
    Video,
    Audio,
}

/// The segmenter of one stream (one publish).
pub struct Segmenter<M: Muxer> {
    cfg: SegmenterConfig,
    muxer: M,

    next_msn: u64,
    next_init_version: u32,
    init_version: u32,
    fragment_seq: u32,
    next_segment_discontinuity: bool,
    /// See [`Segmenter::shorten_first_segment`].
    short_first: bool,

    expect_video: bool,
    expect_audio: bool,
    video_cfg: Option<VideoConfig>,
    audio_cfg: Option<AudioConfig>,

    // Before the start.
    started: bool,
    finished: bool,
    pre: Vec<(Frame, i64)>,
    pre_bytes: usize,
    pre_has_key: bool,

    // Tracks of the current init section.
    init_video: Option<VideoConfig>,
    init_audio: Option<AudioConfig>,
    leader: Leader,

    // Timeline.
    offset_ms: i64,
    origin_ms: i64,
    pdt_anchor_ms: i64,
    last_leader_ms: Option<i64>,
    last_leader_step_ms: i64,
    last_video_t: Option<u64>,
    last_video_dur: u64,
    audio_next: Option<u64>,
    /// Wall clock of the frame being processed.
    now_ms: i64,
    /// TARGETDURATION (s) the segments must respect.
    td_s: u32,
    /// Advertised part target (ms) and the cut threshold (leader ticks, 0: none known).
    pt_adv_ms: u32,
    part_cut_ticks: u64,

    // Current part.
    held: Option<Held>,
    part_video: Vec<Sample>,
    part_video_base: u64,
    part_bytes: usize,
    audio_q: VecDeque<QueuedAudio>,
    part_start: u64,
    part_independent: bool,
    part_index: u32,

    // Current segment (leader timescale).
    seg_start: u64,
    /// Parts cut in the segment being built.
    seg_parts: u32,
    seg_bytes: usize,
    seg_discontinuity: bool,
    seg_pdt_ms: i64,
    seg_video_frames: u32,
    seg_start_pts: i64,
    seg_independent: bool,
    /// The last segment was cut without a keyframe: cut at the next keyframe.
    resync: bool,
    force_cut: bool,

    // MPEG-TS rendition of the current segment (when `ts_on`).
    ts: TsWriter,
    ts_on: bool,
    ts_buf: Vec<u8>,

    stats: SegmenterStats,
}

impl<M: Muxer> Segmenter<M> {
    /// `first_msn` / `first_init_version` come from the index (numbering continues on
    /// republish); `discontinuity`: the first segment carries EXT-X-DISCONTINUITY.
    pub fn new(
        cfg: SegmenterConfig,
        muxer: M,
        first_msn: u64,
        first_init_version: u32,
        discontinuity: bool,
    ) -> Self {
        Segmenter {
            cfg: cfg.sanitized(),
            muxer,
            next_msn: first_msn,
            next_init_version: first_init_version,
            init_version: first_init_version,
            fragment_seq: 1,
            next_segment_discontinuity: discontinuity,
            short_first: false,
            expect_video: false,
            expect_audio: false,
            video_cfg: None,
            audio_cfg: None,
            started: false,
            finished: false,
            pre: Vec::new(),
            pre_bytes: 0,
            pre_has_key: false,
            init_video: None,
            init_audio: None,
            leader: Leader::Video,
            offset_ms: 0,
            origin_ms: 0,
            pdt_anchor_ms: 0,
            last_leader_ms: None,
            last_leader_step_ms: 0,
            last_video_t: None,
            last_video_dur: 0,
            audio_next: None,
            now_ms: 0,
            td_s: 0,
            pt_adv_ms: 0,
            part_cut_ticks: 0,
            held: None,
            part_video: Vec::new(),
            part_video_base: 0,
            part_bytes: 0,
            audio_q: VecDeque::new(),
            part_start: 0,
            part_independent: true,
            part_index: 0,
            seg_start: 0,
            seg_parts: 0,
            seg_bytes: 0,
            seg_discontinuity: false,
            seg_pdt_ms: 0,
            seg_video_frames: 0,
            seg_start_pts: 0,
            seg_independent: true,
            resync: false,
            force_cut: false,
            ts: TsWriter::new(),
            ts_on: false,
            ts_buf: Vec::new(),
            stats: SegmenterStats::default(),
        }
    }

    pub fn config(&self) -> SegmenterConfig {
        self.cfg
    }

    /// The EXT-X-TARGETDURATION already decided for this stream's playlist (a
    /// republish keeps it). Without it: the segment target rounded up to seconds.
    pub fn set_target_duration(&mut self, td_s: u32) {
        if td_s > 0 {
            self.td_s = td_s.min(MAX_SEGMENT_TARGET_MS.div_ceil(1_000));
        }
    }

    /// Cut the first segment at half the segment target (at least one part target),
    /// at the first keyframe from there: a fresh stream's playlist, which players need
    /// before they can start, comes that much sooner. For the first publish of a key,
    /// not for a republish (its playlist exists).
    pub fn shorten_first_segment(&mut self) {
        self.short_first = !self.started;
    }

    /// EXT-X-TARGETDURATION (s) every segment respects.
    pub fn target_duration_s(&self) -> u32 {
        if self.td_s > 0 {
            self.td_s
        } else {
            self.cfg.segment_target_ms.div_ceil(1_000).max(1)
        }
    }

    /// The advertised PART-TARGET (ms): the configured one until the stream starts.
    pub fn part_target_ms(&self) -> u32 {
        if self.pt_adv_ms > 0 {
            self.pt_adv_ms
        } else {
            self.cfg.part_target_ms
        }
    }

    pub fn stats(&self) -> SegmenterStats {
        self.stats
    }

    /// True while segments are also written as MPEG-TS (TS enabled and the current
    /// tracks can be carried).
    pub fn ts_active(&self) -> bool {
        self.ts_on
    }

    /// What the TS writer had to leave out.
    pub fn ts_stats(&self) -> TsStats {
        self.ts.stats()
    }

    /// The muxer (e.g. to inspect a recording muxer in tests).
    pub fn muxer(&self) -> &M {
        &self.muxer
    }

    /// Tracks announced by onMetaData. Only meaningful before the stream starts.
    pub fn expect_tracks(&mut self, video: bool, audio: bool) {
        if !self.started {
            self.expect_video = video;
            self.expect_audio = audio;
        }
    }

    pub fn video_config(&mut self, cfg: VideoConfig, out: &mut Vec<Output>) {
        if self.finished || self.video_cfg.as_ref() == Some(&cfg) {
            return;
        }
        self.video_cfg = Some(cfg);
        if !self.started {
            self.try_start(false, out);
        }
    }

    /// The audio track's configuration. An Opus config is taken at 48 kHz whatever its
    /// `sample_rate` says (RFC 7587: Opus runs on a 48 kHz clock, and packet durations
    /// are counted in 48 kHz samples).
    pub fn audio_config(&mut self, mut cfg: AudioConfig, out: &mut Vec<Output>) {
        if cfg.codec == AudioCodec::Opus {
            cfg.sample_rate = opus::SAMPLE_RATE;
        }
        if self.finished || self.audio_cfg.as_ref() == Some(&cfg) {
            return;
        }
        if cfg.sample_rate == 0 {
            // Unusable: no timeline can be built on it.
            return;
        }
        self.audio_cfg = Some(cfg);
        if !self.started {
            self.try_start(false, out);
        }
    }

    /// `now_ms`: wall clock (ms since the Unix epoch) when the frame arrived; the first
    /// frame anchors the program date time.
    pub fn push(&mut self, frame: Frame, now_ms: i64, out: &mut Vec<Output>) {
        if self.finished {
            self.stats.dropped_frames += 1;
            return;
        }
        self.now_ms = now_ms;
        if !self.started {
            self.pre_start(frame, now_ms, out);
            return;
        }
        self.process(frame, out);
    }

    /// End of stream: flush what is pending as the last part and last segment.
    pub fn finish(&mut self, out: &mut Vec<Output>) {
        if self.finished {
            return;
        }
        if !self.started {
            self.try_start(true, out);
        }
        if self.started {
            let end = match self.leader {
                Leader::Video => match self.held.take() {
                    Some(h) => {
                        let mut dur = if self.last_video_dur > 0 {
                            self.last_video_dur
                        } else {
                            self.default_video_ticks()
                        };
                        // The last frame's duration is a guess: keep the part within
                        // the part target and the segment within its limit.
                        let target = self.pt_adv_ticks();
                        let elapsed = h.t.saturating_sub(self.part_start);
                        if elapsed < target && elapsed + dur > target {
                            dur = target - elapsed;
                        }
                        let seg_left = self
                            .max_segment_ticks()
                            .saturating_sub(h.t.saturating_sub(self.seg_start));
                        dur = dur.min(seg_left).max(1);
                        self.append_video(h, dur);
                        self.last_video_t.unwrap_or(0) + dur
                    }
                    None => self.part_start,
                },
                Leader::Audio => self.audio_next.unwrap_or(self.part_start),
            };
            self.close_part(end, false, out);
            self.close_segment(end, out);
        }
        self.finished = true;
    }

    // ---------------------------------------------------------------- start

    fn pre_start(&mut self, f: Frame, now_ms: i64, out: &mut Vec<Output>) {
        match f.kind {
            TrackKind::Video => {
                if self.video_cfg.is_none() || (!self.pre_has_key && !f.keyframe) {
                    self.stats.dropped_frames += 1;
                    return;
                }
                if !self.pre_has_key {
                    // Audio before the first video keyframe is dropped.
                    let before = self.pre.len();
                    self.pre
                        .retain(|(p, _)| p.kind == TrackKind::Video || p.dts_ms >= f.dts_ms);
                    self.stats.dropped_frames += (before - self.pre.len()) as u64;
                    self.pre_bytes = self.pre.iter().map(|(p, _)| p.data.len()).sum();
                    self.pre_has_key = true;
                }
            }
            TrackKind::Audio => {
                if self.audio_cfg.is_none() {
                    self.stats.dropped_frames += 1;
                    return;
                }
                if !self.pre_has_key && self.video_cfg.is_some() {
                    // Waiting for the first video keyframe: keep only the latest audio,
                    // which may share its timestamp.
                    let before = self.pre.len();
                    self.pre
                        .retain(|(p, _)| f.dts_ms.saturating_sub(p.dts_ms) <= START_WAIT_MS);
                    self.stats.dropped_frames += (before - self.pre.len()) as u64;
                    self.pre_bytes = self.pre.iter().map(|(p, _)| p.data.len()).sum();
                }
            }
        }
        self.pre_bytes += f.data.len();
        self.pre.push((f, now_ms));
        self.try_start(false, out);
    }

    fn try_start(&mut self, force: bool, out: &mut Vec<Output>) {
        if self.started || self.pre.is_empty() {
            return;
        }
        let first = self.pre.first().map(|(f, _)| f.dts_ms).unwrap_or(0);
        let last = self.pre.last().map(|(f, _)| f.dts_ms).unwrap_or(0);
        let waited = last.saturating_sub(first) >= START_WAIT_MS
            || self.pre_bytes >= MAX_START_BYTES
            || force;
        let (video, audio) = if self.pre_has_key {
            let ready = self.audio_cfg.is_some() || !self.expect_audio || waited;
            if !ready {
                return;
            }
            (self.video_cfg.clone(), self.audio_cfg.clone())
        } else {
            let ready = self.video_cfg.is_none() && (!self.expect_video || waited);
            if !ready || self.audio_cfg.is_none() {
                return;
            }
            (None, self.audio_cfg.clone())
        };
        if video.is_none() && audio.is_none() {
            return;
        }
        let pre = std::mem::take(&mut self.pre);
        self.pre_bytes = 0;
        let (lead_frame, lead_now) = pre
            .iter()
            .find(|(f, _)| match video {
                Some(_) => f.kind == TrackKind::Video,
                None => f.kind == TrackKind::Audio,
            })
            .map(|(f, n)| (f.dts_ms, *n))
            .unwrap_or((first, pre[0].1));
        self.started = true;
        self.origin_ms = lead_frame;
        self.offset_ms = 0;
        self.pdt_anchor_ms = lead_now;
        self.emit_init(video, audio, out);
        self.seg_discontinuity = self.next_segment_discontinuity;
        self.open_segment(0, true);
        for (f, _) in pre {
            self.process(f, out);
        }
    }

    fn emit_init(
        &mut self,
        video: Option<VideoConfig>,
        audio: Option<AudioConfig>,
        out: &mut Vec<Output>,
    ) {
        let version = self.next_init_version;
        self.next_init_version = self.next_init_version.wrapping_add(1);
        self.init_version = version;
        let data = self.muxer.init_segment(video.as_ref(), audio.as_ref());
        self.ts_on = self.cfg.ts && self.ts.configure(video.as_ref(), audio.as_ref()).is_ok();
        let audio_changed = self
            .init_audio
            .as_ref()
            .map(|a| (a.codec, a.sample_rate, a.frame_samples))
            != audio
                .as_ref()
                .map(|a| (a.codec, a.sample_rate, a.frame_samples));
        if audio_changed {
            // A new audio clock: re-anchor at the next audio frame.
            self.audio_next = None;
            self.stats.audio_dropped_queue += self.audio_q.len() as u64;
            self.audio_q.clear();
        }
        self.leader = if video.is_some() {
            Leader::Video
        } else {
            Leader::Audio
        };
        self.init_video = video.clone();
        self.init_audio = audio.clone();
        self.plan_parts();
        out.push(Output::Init {
            version,
            data,
            video,
            audio,
            part_target_ms: self.pt_adv_ms,
        });
    }

    /// Decides the advertised part target and the part cut threshold from the frame
    /// duration of the leading track (see the module documentation).
    fn plan_parts(&mut self) {
        let ts = self.leader_timescale() as f64;
        let frame_ticks = match self.leader {
            Leader::Video => self
                .init_video
                .as_ref()
                .and_then(|v| v.frame_rate)
                .filter(|f| (1.0..=1_000.0).contains(f))
                .map(|f| {
                    let f = COMMON_FPS
                        .iter()
                        .copied()
                        .filter(|c| (f / c - 1.0).abs() < 0.005)
                        .min_by(|a, b| (f - a).abs().total_cmp(&(f - b).abs()))
                        .unwrap_or(f);
                    ts / f
                }),
            Leader::Audio => Some(self.audio_frame_samples() as f64),
        };
        // A part never exceeds the segment target, nor the TARGETDURATION a republish
        // inherited (the part target of the new settings may not fit it).
        let seg_ms = self
            .cfg
            .segment_target_ms
            .min(self.target_duration_s().saturating_mul(1_000));
        let mut part_cfg = self.cfg.part_target_ms;
        if self.leader == Leader::Audio && self.audio_is_opus() {
            // A part holds at least one packet, and an Opus packet lasts up to 120 ms.
            part_cfg = part_cfg.max(opus::MAX_PACKET_SAMPLES * 1_000 / opus::SAMPLE_RATE);
        }
        let part_cfg = part_cfg.min(seg_ms);
        let cfg_ms = part_cfg as f64;
        let (pt_ms, cut) = match frame_ticks {
            Some(fd) => {
                let fd_ms = fd * 1_000.0 / ts;
                let n = (cfg_ms / fd_ms - 1e-3).ceil().max(1.0);
                let pt = ((n * fd_ms - 1e-3).ceil() as u32).max(part_cfg);
                if pt <= seg_ms || n <= 1.0 {
                    (pt, ((n - 0.5) * fd).max(1.0) as u64)
                } else {
                    // Rounding up would pass the segment target: round down instead.
                    let n = (seg_ms as f64 / fd_ms + 1e-9).floor().max(1.0);
                    (seg_ms, ((n - 0.5) * fd).max(1.0) as u64)
                }
            }
            None => (part_cfg, 0),
        };
        // The advertised target only grows within a publish (parts already listed).
        self.pt_adv_ms = self.pt_adv_ms.max(pt_ms);
        self.part_cut_ticks = cut;
    }

    /// The advertised part target in leader ticks.
    fn pt_adv_ticks(&self) -> u64 {
        self.part_target_ms() as u64 * self.leader_timescale() / 1_000
    }

    /// Longest segment allowed: TARGETDURATION + [`TD_SLACK_MS`], in leader ticks.
    fn max_segment_ticks(&self) -> u64 {
        (self.target_duration_s() as u64 * 1_000 + TD_SLACK_MS) * self.leader_timescale() / 1_000
    }

    // ---------------------------------------------------------------- timeline

    fn leader_timescale(&self) -> u64 {
        match self.leader {
            Leader::Video => VIDEO_TIMESCALE as u64,
            Leader::Audio => self.audio_rate(),
        }
    }

    fn audio_rate(&self) -> u64 {
        self.init_audio
            .as_ref()
            .map(|a| a.sample_rate as u64)
            .filter(|r| *r > 0)
            .unwrap_or(48_000)
    }

    fn audio_frame_samples(&self) -> u64 {
        self.init_audio
            .as_ref()
            .map(|a| a.frame_samples as u64)
            .filter(|n| *n > 0)
            .unwrap_or(1_024)
    }

    fn audio_is_opus(&self) -> bool {
        self.init_audio
            .as_ref()
            .is_some_and(|a| a.codec == AudioCodec::Opus)
    }

    /// Duration of one audio frame of the current init section in sample-rate units:
    /// an Opus packet's own (from its TOC byte), else `frame_samples`.
    fn audio_frame_duration(&self, data: &[u8]) -> u64 {
        if self.audio_is_opus() {
            if let Some(n) = opus::packet_samples(data) {
                return u64::from(n);
            }
        }
        self.audio_frame_samples()
    }

    fn default_video_ticks(&self) -> u64 {
        match self.init_video.as_ref().and_then(|v| v.frame_rate) {
            Some(fps) if (1.0..=1_000.0).contains(&fps) => {
                (VIDEO_TIMESCALE as f64 / fps).round() as u64
            }
            _ => DEFAULT_VIDEO_TICKS,
        }
    }

    /// Stream time (ms since the origin) of a raw RTMP dts.
    fn stream_ms(&self, raw: i64) -> i64 {
        raw.saturating_add(self.offset_ms)
            .saturating_sub(self.origin_ms)
    }

    /// Stream time of a frame of the leading track, with clock-reset handling.
    fn leader_ms(&mut self, raw: i64) -> i64 {
        let mut ms = self.stream_ms(raw);
        if let Some(last) = self.last_leader_ms {
            let jump = ms.saturating_sub(last);
            if !(-BACKWARD_RESET_MS..=FORWARD_RESET_MS).contains(&jump) {
                let target = last + self.last_leader_step_ms.max(1);
                self.offset_ms = self.offset_ms.saturating_add(target.saturating_sub(ms));
                ms = target;
                self.stats.timestamp_resets += 1;
            }
            if ms > last {
                self.last_leader_step_ms = (ms - last).min(FORWARD_RESET_MS);
            }
            self.last_leader_ms = Some(ms.max(last));
        } else {
            self.last_leader_ms = Some(ms);
        }
        ms
    }

    fn ticks_to_us(&self, ticks: u64) -> u64 {
        let ts = self.leader_timescale();
        ((ticks as u128 * 1_000_000 + ts as u128 / 2) / ts as u128) as u64
    }

    fn ticks_to_ms(&self, ticks: u64) -> i64 {
        let ts = self.leader_timescale();
        (ticks as u128 * 1_000 / ts as u128) as i64
    }

    // ---------------------------------------------------------------- frames

    fn process(&mut self, f: Frame, out: &mut Vec<Output>) {
        match f.kind {
            TrackKind::Video => self.video_frame(f, out),
            TrackKind::Audio => self.audio_frame(f, out),
        }
    }

    fn config_changed(&self) -> bool {
        self.init_video != self.video_cfg || self.init_audio != self.audio_cfg
    }

    fn video_frame(&mut self, f: Frame, out: &mut Vec<Output>) {
        if self.leader == Leader::Audio {
            // Audio-only so far: video can only join at a keyframe with a new init.
            if f.keyframe && self.video_cfg.is_some() {
                let end = self.audio_next.unwrap_or(self.part_start);
                self.close_part(end, true, out);
                self.close_segment(end, out);
                let end_ms = self.ticks_to_ms(end);
                let (v, a) = (self.video_cfg.clone(), self.audio_cfg.clone());
                self.emit_init(v, a, out);
                // Continue the timeline in 90 kHz from where the audio left off.
                self.last_leader_ms = Some(end_ms);
                self.last_leader_step_ms = 0;
                let ms = self.leader_ms(f.dts_ms).max(end_ms);
                let t = (ms as u64) * 90;
                self.seg_discontinuity = true;
                self.open_segment(t, true);
                self.last_video_t = Some(t);
                self.held = Some(Held {
                    t,
                    cts: f.cts_ms.saturating_mul(90),
                    keyframe: true,
                    data: f.data,
                });
            } else {
                self.stats.dropped_frames += 1;
            }
            return;
        }
        let mut ms = self.leader_ms(f.dts_ms);
        let mut t = (ms.max(0) as u64).saturating_mul(90);
        if let Some(last) = self.last_video_t {
            if t <= last {
                // Decode times must increase: one tick after the previous frame.
                t = last + 1;
                self.stats.clamped_timestamps += 1;
            }
        }
        let pt = self.pt_adv_ticks();
        if let Some(h) = self.held.take() {
            let first_of_part = self.part_video.is_empty() && h.t == self.part_start;
            if !first_of_part && t.saturating_sub(self.part_start) > pt {
                // The held frame would end past the part target: it starts the next part.
                self.stats.early_part_cuts += 1;
                self.part_boundary(h.t, h.keyframe, out);
            }
            if t - h.t > pt && pt > 0 {
                // A gap longer than a part after the first frame of a part: shorten it.
                let dur = match self.last_video_dur {
                    d if d > 0 && d <= pt => d,
                    _ => self.default_video_ticks().min(pt),
                };
                let dur = dur.min(pt.saturating_sub(90)).max(1);
                let new_ms = (h.t + dur).div_ceil(90) as i64;
                if new_ms < ms && new_ms * 90 > h.t as i64 {
                    self.offset_ms = self.offset_ms.saturating_sub(ms - new_ms);
                    self.last_leader_ms = Some(new_ms);
                    ms = new_ms;
                    t = new_ms as u64 * 90;
                    self.stats.gaps_shortened += 1;
                }
            }
            let dur = t - h.t;
            self.last_video_dur = dur;
            self.append_video(h, dur);
        }
        let _ = ms;
        let seg_elapsed = t.saturating_sub(self.seg_start);
        let pts = t as i64 + i64::from(f.cts_ms.saturating_mul(90));
        let pts_elapsed = pts.saturating_sub(self.seg_start_pts).max(0) as u64;
        let part_elapsed = t.saturating_sub(self.part_start);
        let dirty = self.config_changed();
        let key_cut =
            f.keyframe && (self.resync || dirty || self.segment_due(seg_elapsed.max(pts_elapsed)));
        if key_cut || self.force_cut {
            if !f.keyframe {
                self.stats.forced_cuts += 1;
            }
            self.force_cut = false;
            self.close_part(t, true, out);
            self.close_segment(t, out);
            if dirty && f.keyframe {
                let (v, a) = (self.video_cfg.clone(), self.audio_cfg.clone());
                self.emit_init(v, a, out);
                self.seg_discontinuity = true;
            }
            self.open_segment(t, f.keyframe);
        } else if self.part_due(part_elapsed) {
            self.part_boundary(t, f.keyframe, out);
        }
        if self.seg_start == t {
            self.seg_start_pts = pts;
        }
        self.last_video_t = Some(t);
        self.held = Some(Held {
            t,
            cts: f.cts_ms.saturating_mul(90),
            keyframe: f.keyframe,
            data: f.data,
        });
        self.check_bounds(t);
    }

    /// Closes the current part at `t` and opens the next one there; when one more part
    /// could take the segment past its limit, the segment is cut here too (without a
    /// keyframe if `keyframe` is false).
    fn part_boundary(&mut self, t: u64, keyframe: bool, out: &mut Vec<Output>) {
        let video_cut = self.leader == Leader::Video;
        self.close_part(t, video_cut, out);
        let elapsed = t.saturating_sub(self.seg_start);
        if elapsed + self.pt_adv_ticks() > self.max_segment_ticks() {
            if !keyframe {
                self.stats.forced_cuts += 1;
            }
            self.close_segment(t, out);
            self.open_segment(t, keyframe);
        } else {
            self.open_part(t, keyframe);
        }
    }

    fn audio_frame(&mut self, f: Frame, out: &mut Vec<Output>) {
        if self.init_audio.is_none() {
            self.stats.dropped_frames += 1;
            return;
        }
        let rate = self.audio_rate() as i64;
        let fs = self.audio_frame_samples() as i64;
        let mut dur = self.audio_frame_duration(&f.data);
        let ms = if self.leader == Leader::Audio {
            self.leader_ms(f.dts_ms)
        } else {
            self.stream_ms(f.dts_ms)
        };
        let mut reanchored_from = None;
        let t = match self.audio_next {
            None => {
                if ms < 0 {
                    // Before the stream's first video keyframe.
                    self.stats.dropped_frames += 1;
                    return;
                }
                (ms as i128 * rate as i128 / 1_000) as u64
            }
            Some(next) => {
                let expected_ms = (next as i128 * 1_000 / rate as i128) as i64;
                let frame_ms = (fs.max(dur as i64) * 1_000 / rate).max(1);
                let drift = ms.saturating_sub(expected_ms);
                if drift > AUDIO_DRIFT_FRAMES * frame_ms {
                    self.stats.audio_reanchors += 1;
                    reanchored_from = Some(next);
                    ((ms as i128 * rate as i128 / 1_000) as u64).max(next)
                } else if drift < -AUDIO_DRIFT_FRAMES * frame_ms {
                    self.stats.audio_dropped_drift += 1;
                    return;
                } else {
                    next
                }
            }
        };
        self.audio_next = Some(t + dur);
        if self.leader == Leader::Audio {
            if let Some(end) = reanchored_from.filter(|e| t > *e) {
                // A gap in an audio-only stream: the segment ends where its audio
                // ends, the next starts after the gap (no part or segment spans it).
                self.close_part(end, false, out);
                self.close_segment(end, out);
                self.open_segment(t, true);
            }
            let seg_elapsed = t.saturating_sub(self.seg_start);
            let part_elapsed = t.saturating_sub(self.part_start);
            let dirty = self.config_changed() && self.video_cfg.is_none();
            if self.segment_due(seg_elapsed) || dirty || self.force_cut {
                self.force_cut = false;
                self.close_part(t, false, out);
                self.close_segment(t, out);
                if dirty {
                    let a = self.audio_cfg.clone();
                    self.emit_init(None, a, out);
                    self.seg_discontinuity = true;
                    if self.audio_next.is_none() {
                        // New audio clock: restart it at this frame.
                        let t = (ms.max(0) as i128 * self.audio_rate() as i128 / 1_000) as u64;
                        dur = self.audio_frame_duration(&f.data);
                        self.audio_next = Some(t + dur);
                        self.open_segment(t, true);
                        self.queue_audio(ms, t, dur, f.data);
                        return;
                    }
                }
                self.open_segment(t, true);
            } else if self.part_due(part_elapsed) {
                self.part_boundary(t, true, out);
            } else if t > self.part_start && part_elapsed + dur > self.pt_adv_ticks() {
                // A packet longer than the nominal frame (Opus) would end past the part
                // target: it starts the next part. (Never with fixed-size frames: the
                // part is due first.)
                self.stats.early_part_cuts += 1;
                self.part_boundary(t, true, out);
            }
            self.queue_audio(ms, t, dur, f.data);
            self.check_bounds(t);
        } else {
            self.queue_audio(ms, t, dur, f.data);
            // Video stalled: keep the audio queue bounded.
            while let (Some(a), Some(b)) = (self.audio_q.front(), self.audio_q.back()) {
                if b.ms - a.ms <= MAX_AUDIO_QUEUE_MS {
                    break;
                }
                if let Some(a) = self.audio_q.pop_front() {
                    self.part_bytes = self.part_bytes.saturating_sub(a.data.len());
                }
                self.stats.audio_dropped_queue += 1;
            }
        }
    }

    fn queue_audio(&mut self, ms: i64, t: u64, dur: u64, data: Bytes) {
        self.part_bytes += data.len();
        self.audio_q.push_back(QueuedAudio { ms, t, dur, data });
    }

    fn append_video(&mut self, h: Held, dur: u64) {
        if self.part_video.is_empty() {
            self.part_video_base = h.t;
        }
        self.part_bytes += h.data.len();
        if let Some(v) = self
            .init_video
            .as_ref()
            .filter(|v| v.codec == VideoCodec::H265)
        {
            if crate::codec::hevc::is_rasl(&h.data, v.nalu_length_size) {
                // Leading pictures that reference the previous GOP.
                self.seg_independent = false;
            }
        }
        self.part_video.push(Sample {
            duration: dur.min(u32::MAX as u64) as u32,
            cts_offset: h.cts,
            keyframe: h.keyframe,
            data: h.data,
        });
        self.seg_video_frames = self.seg_video_frames.saturating_add(1);
    }

    fn segment_due(&self, elapsed_ticks: u64) -> bool {
        let ts = self.leader_timescale() as u128;
        let mut target = self
            .cfg
            .segment_target_ms
            .min(self.target_duration_s().saturating_mul(1_000));
        if self.short_first {
            target = (target / 2).max(self.cfg.part_target_ms).min(target);
        }
        elapsed_ticks as u128 * 1_000 + 50 * ts >= target as u128 * ts
    }

    /// The part that started `elapsed_ticks` before the current frame has its frames:
    /// `n` frames when the frame duration is known, else the frame would end past the
    /// part target.
    fn part_due(&self, elapsed_ticks: u64) -> bool {
        if self.part_cut_ticks > 0 {
            elapsed_ticks >= self.part_cut_ticks
        } else {
            elapsed_ticks + self.last_video_dur / 2 >= self.pt_adv_ticks()
        }
    }

    fn check_bounds(&mut self, t: u64) {
        let elapsed_ms = self.ticks_to_ms(t.saturating_sub(self.seg_start));
        if elapsed_ms >= MAX_SEGMENT_MEDIA_MS
            || self.seg_bytes + self.part_bytes >= MAX_SEGMENT_BYTES
        {
            self.force_cut = true;
        }
    }

    // ---------------------------------------------------------------- cutting

    fn open_segment(&mut self, t: u64, independent: bool) {
        self.seg_start = t;
        self.seg_start_pts = t as i64;
        self.seg_independent = independent;
        self.resync = !independent;
        self.seg_parts = 0;
        self.seg_bytes = 0;
        self.seg_video_frames = 0;
        let media_ms = self.ticks_to_ms(t);
        self.seg_pdt_ms = self.pdt_anchor_ms.saturating_add(media_ms);
        let limit = self.now_ms.saturating_add(PDT_MAX_AHEAD_MS);
        if self.now_ms > 0 && self.seg_pdt_ms > limit {
            // Media arrives faster than real time: keep the date near the arrival.
            self.pdt_anchor_ms = limit.saturating_sub(media_ms);
            self.seg_pdt_ms = limit;
            self.stats.pdt_reanchors += 1;
        }
        self.part_index = 0;
        if self.ts_on {
            self.ts_buf.clear();
            self.ts.begin_segment(&mut self.ts_buf);
        }
        self.open_part(t, independent);
    }

    fn open_part(&mut self, t: u64, independent: bool) {
        self.part_start = t;
        self.part_independent = independent;
    }

    /// Closes the current part at leader time `end`. Video-led: audio with dts before the
    /// cut goes in; audio-led (`all_audio` or audio leader): all queued audio.
    fn close_part(&mut self, end: u64, video_cut: bool, out: &mut Vec<Output>) {
        let video = std::mem::take(&mut self.part_video);
        let take_audio = if self.leader == Leader::Video && video_cut {
            let cut_ms = (end / 90) as i64 + i64::from(!end.is_multiple_of(90));
            self.audio_q.iter().take_while(|a| a.ms < cut_ms).count()
        } else {
            self.audio_q.len()
        };
        let queued: Vec<QueuedAudio> = self.audio_q.drain(..take_audio).collect();
        let next_t = self.audio_q.front().map(|a| a.t);
        let mut audio = Vec::with_capacity(queued.len());
        for (i, a) in queued.iter().enumerate() {
            let following = queued.get(i + 1).map(|n| n.t).or(next_t);
            let dur = match following {
                Some(n) if n > a.t => n - a.t,
                _ => a.dur,
            };
            audio.push(Sample {
                duration: dur.min(u32::MAX as u64) as u32,
                cts_offset: 0,
                keyframe: true,
                data: a.data.clone(),
            });
        }
        self.part_bytes = self.audio_q.iter().map(|a| a.data.len()).sum();
        if video.is_empty() && audio.is_empty() {
            return;
        }
        let mut runs = Vec::with_capacity(2);
        if !video.is_empty() {
            runs.push(Run {
                track_id: VIDEO_TRACK_ID,
                base_decode_time: self.part_video_base,
                samples: &video,
            });
        }
        if !audio.is_empty() {
            runs.push(Run {
                track_id: AUDIO_TRACK_ID,
                base_decode_time: queued[0].t,
                samples: &audio,
            });
        }
        let data = self.muxer.fragment(self.fragment_seq, &runs);
        if self.ts_on {
            self.ts.write_runs(&runs, &mut self.ts_buf);
        }
        self.fragment_seq = self.fragment_seq.wrapping_add(1).max(1);
        // Durations from the segment start so that parts add up to the segment exactly.
        let end = end.max(self.part_start);
        let duration_us = self.ticks_to_us(end - self.seg_start)
            - self.ticks_to_us(self.part_start - self.seg_start);
        self.seg_bytes += data.len();
        self.seg_parts += 1;
        out.push(Output::Part {
            msn: self.next_msn,
            part: self.part_index,
            duration_us,
            independent: self.part_independent,
            data,
            segment_pdt_ms: self.seg_pdt_ms,
        });
        self.part_index += 1;
    }

    fn close_segment(&mut self, end: u64, out: &mut Vec<Output>) {
        if self.seg_parts == 0 {
            return;
        }
        self.short_first = false;
        self.seg_parts = 0;
        let duration_us = self.ticks_to_us(end.max(self.seg_start) - self.seg_start);
        if self.ts_on {
            out.push(Output::TsSegment {
                msn: self.next_msn,
                duration_us,
                data: Bytes::from(std::mem::take(&mut self.ts_buf)),
            });
        }
        out.push(Output::Segment {
            msn: self.next_msn,
            duration_us,
            bytes: self.seg_bytes as u64,
            parts: self.part_index,
            program_date_time_ms: self.seg_pdt_ms,
            discontinuity: self.seg_discontinuity,
            init_version: self.init_version,
            video_frames: self.seg_video_frames,
            independent: self.seg_independent,
        });
        self.next_msn += 1;
        self.part_index = 0;
        self.seg_bytes = 0;
        self.seg_discontinuity = false;
    }
}
