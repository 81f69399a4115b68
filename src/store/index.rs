//! The per-stream index that lives in nginx shared memory.
//!
//! [`StreamIndex`] is plain old data: `#[repr(C)]`, integers and fixed arrays only, valid
//! when all bytes are zero (a free slot), the same layout in every process. The nginx
//! glue maps the zone as `&mut [StreamIndex]` and holds the zone lock around every call
//! that mutates it; readers copy a whole `StreamIndex` out (a snapshot) and render from
//! the copy without the lock.
//!
//! The writer should apply all outputs of one `Segmenter::push` under one lock, so that a
//! reader never sees a segment's last part without the segment that follows it.

use super::lifecycle::{Lifecycle, Now};
use crate::segmenter::Output;

mod torn;

pub const MAX_KEY_LEN: usize = 64;
pub const MAX_DIR_LEN: usize = 256;
/// Segments kept: the listed window plus the unlisted tail whose files must stay
/// available. The window is clamped to [`MAX_WINDOW`] so that the tail always fits.
pub const MAX_SEGMENTS: usize = 64;
/// Largest playlist window (segments listed).
pub const MAX_WINDOW: u32 = 30;
/// Parts of the last segments and of the segment being built.
pub const MAX_PARTS: usize = 512;
/// Longest RFC 6381 codec string stored per track.
pub const MAX_CODEC_LEN: usize = 48;
/// A live slot whose writer has not updated it for this long may be claimed again.
pub const CLAIM_STALE_MS: i64 = 10_000;

const STATE_FREE: u32 = 0;
const STATE_LIVE: u32 = 1;
const STATE_ENDED: u32 = 2;

/// Segment flag: EXT-X-DISCONTINUITY before this segment.
pub const SEG_DISCONTINUITY: u32 = 1;
/// Segment flag: no longer listed in the playlist (kept for availability).
pub const SEG_UNLISTED: u32 = 2;
/// Segment flag: has an MPEG-TS rendition (`{msn}.ts`).
pub const SEG_TS: u32 = 4;
/// Segment flag: not decodable on its own (cut without a keyframe, or holds pictures
/// that reference the previous segment): no EXT-X-INDEPENDENT-SEGMENTS while listed.
pub const SEG_DEPENDENT: u32 = 8;
/// Part flag: starts with a keyframe.
pub const PART_INDEPENDENT: u32 = 1;

const TRACK_VIDEO: u32 = 1;
const TRACK_AUDIO: u32 = 2;

/// One segment of the index.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentEntry {
    pub msn: u64,
    pub duration_us: u64,
    pub program_date_time_ms: i64,
    pub bytes: u64,
    /// Wall clock when the segment left the playlist (valid with [`SEG_UNLISTED`]).
    pub unlisted_ms: i64,
    pub parts: u32,
    pub init_version: u32,
    pub flags: u32,
    pub video_frames: u32,
}

impl SegmentEntry {
    pub const ZERO: SegmentEntry = SegmentEntry {
        msn: 0,
        duration_us: 0,
        program_date_time_ms: 0,
        bytes: 0,
        unlisted_ms: 0,
        parts: 0,
        init_version: 0,
        flags: 0,
        video_frames: 0,
    };

    pub fn discontinuity(&self) -> bool {
        self.flags & SEG_DISCONTINUITY != 0
    }

    pub fn listed(&self) -> bool {
        self.flags & SEG_UNLISTED == 0
    }

    /// `{msn}.ts` was written for this segment.
    pub fn has_ts(&self) -> bool {
        self.flags & SEG_TS != 0
    }

    /// Decodable without other segments (see [`SEG_DEPENDENT`]).
    pub fn independent(&self) -> bool {
        self.flags & SEG_DEPENDENT == 0
    }
}

/// One part of the index.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartEntry {
    pub msn: u64,
    pub part: u32,
    pub duration_us: u32,
    pub bytes: u32,
    pub flags: u32,
}

impl PartEntry {
    pub const ZERO: PartEntry = PartEntry {
        msn: 0,
        part: 0,
        duration_us: 0,
        bytes: 0,
        flags: 0,
    };

    pub fn independent(&self) -> bool {
        self.flags & PART_INDEPENDENT != 0
    }
}

/// Per-stream settings, fixed at claim time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamSettings {
    /// Segments listed in the playlist (default 12; clamped to 3..=[`MAX_WINDOW`]).
    pub window: u32,
    pub part_target_ms: u32,
    pub segment_target_ms: u32,
    /// Number a new stream's segments and init sections from the clock rather than from
    /// 0 and 1, so that media names never repeat across sessions of a key (caches keep
    /// media long). Off only where deterministic names help (tests).
    pub clock_numbering: bool,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            window: 12,
            part_target_ms: 200,
            segment_target_ms: 2_000,
            clock_numbering: true,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamState {
    Free,
    Live,
    Ended,
}

/// The index of one stream. All fields private; see the accessors.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct StreamIndex {
    key: [u8; MAX_KEY_LEN],
    dir: [u8; MAX_DIR_LEN],
    video_codec: [u8; MAX_CODEC_LEN],
    audio_codec: [u8; MAX_CODEC_LEN],
    key_len: u32,
    dir_len: u32,
    video_codec_len: u32,
    audio_codec_len: u32,

    state: u32,
    owner: u32,
    generation: u64,
    publish_id: u64,
    /// Wall clock (display only).
    claimed_ms: i64,
    /// Monotonic clock, like every other `_ms` instant below except PDTs.
    updated_ms: i64,
    building_pdt_ms: i64,
    ended_ms: i64,
    /// When the publisher left (valid while `gone` is 1).
    gone_ms: i64,

    window: u32,
    part_target_ms: u32,
    segment_target_ms: u32,
    /// Seconds; 0 until the first segment decides it.
    target_duration_s: u32,

    /// MSN of the segment being built (last complete + 1).
    next_msn: u64,
    /// MSN of the first listed segment.
    media_sequence: u64,
    discontinuity_sequence: u64,
    /// msn + 1 of the TS rendition written for the segment being built (0: none).
    pending_ts: u64,
    /// Its size.
    pending_ts_bytes: u64,

    init_version: u32,
    /// Inits applied since the claim (the second and later imply a discontinuity).
    publish_inits: u32,
    /// 1 when the segment being built starts with a discontinuity.
    pending_discontinuity: u32,
    tracks: u32,
    width: u32,
    height: u32,
    /// Frame rate signalled by the SPS, in 1/1000 fps (0 = not signalled).
    sps_frame_rate_milli: u32,
    /// Grace period after the publisher left, before EXT-X-ENDLIST.
    grace_ms: u32,

    total_bytes: u64,
    total_duration_us: u64,
    total_video_frames: u64,
    total_video_duration_us: u64,
    peak_bps: u64,
    /// Bytes of all TS renditions, and of the fMP4 segments they render.
    total_ts_bytes: u64,
    total_ts_fmp4_bytes: u64,

    seg_head: u32,
    seg_len: u32,
    listed: u32,
    part_head: u32,
    part_len: u32,
    /// 1 while live with its publisher gone (the grace period runs).
    gone: u32,
    segments: [SegmentEntry; MAX_SEGMENTS],
    parts: [PartEntry; MAX_PARTS],
}

impl Default for StreamIndex {
    fn default() -> Self {
        StreamIndex::ZERO
    }
}

impl std::fmt::Debug for StreamIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamIndex")
            .field("key", &self.key())
            .field("state", &self.state())
            .field("generation", &self.generation)
            .field("next_msn", &self.next_msn)
            .field("media_sequence", &self.media_sequence)
            .field("segments", &self.seg_len)
            .field("parts", &self.part_len)
            .finish()
    }
}

fn copy_str<const N: usize>(dst: &mut [u8; N], s: &str) -> u32 {
    let n = s.len().min(N);
    dst[..n].copy_from_slice(&s.as_bytes()[..n]);
    dst[n..].fill(0);
    n as u32
}

fn read_str(buf: &[u8], len: u32) -> &str {
    let n = (len as usize).min(buf.len());
    // Written from &str and never split mid-character (see copy_codec); a torn or
    // corrupt slot reads as empty rather than panicking.
    std::str::from_utf8(&buf[..n]).unwrap_or("")
}

impl StreamIndex {
    /// The free slot: all bytes zero.
    pub const ZERO: StreamIndex = StreamIndex {
        key: [0; MAX_KEY_LEN],
        dir: [0; MAX_DIR_LEN],
        video_codec: [0; MAX_CODEC_LEN],
        audio_codec: [0; MAX_CODEC_LEN],
        key_len: 0,
        dir_len: 0,
        video_codec_len: 0,
        audio_codec_len: 0,
        state: 0,
        owner: 0,
        generation: 0,
        publish_id: 0,
        claimed_ms: 0,
        updated_ms: 0,
        building_pdt_ms: 0,
        ended_ms: 0,
        gone_ms: 0,
        window: 0,
        part_target_ms: 0,
        segment_target_ms: 0,
        target_duration_s: 0,
        next_msn: 0,
        media_sequence: 0,
        discontinuity_sequence: 0,
        pending_ts: 0,
        pending_ts_bytes: 0,
        init_version: 0,
        publish_inits: 0,
        pending_discontinuity: 0,
        tracks: 0,
        width: 0,
        height: 0,
        sps_frame_rate_milli: 0,
        grace_ms: 0,
        total_bytes: 0,
        total_duration_us: 0,
        total_video_frames: 0,
        total_video_duration_us: 0,
        peak_bps: 0,
        total_ts_bytes: 0,
        total_ts_fmp4_bytes: 0,
        seg_head: 0,
        seg_len: 0,
        listed: 0,
        part_head: 0,
        part_len: 0,
        gone: 0,
        segments: [SegmentEntry::ZERO; MAX_SEGMENTS],
        parts: [PartEntry::ZERO; MAX_PARTS],
    };

    // ------------------------------------------------------------ identity & state

    pub fn key(&self) -> &str {
        read_str(&self.key, self.key_len)
    }

    pub fn dir(&self) -> &str {
        read_str(&self.dir, self.dir_len)
    }

    pub fn state(&self) -> StreamState {
        match self.state {
            STATE_LIVE => StreamState::Live,
            STATE_ENDED => StreamState::Ended,
            _ => StreamState::Free,
        }
    }

    /// Bumps on every change: cheap change detection for waiting requests.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Identifies one claim (publish); a writer must check it before applying outputs,
    /// since its slot may have been declared stale and claimed again.
    pub fn publish_id(&self) -> u64 {
        self.publish_id
    }

    /// True when `publish_id` still owns this live slot.
    pub fn is_writer(&self, publish_id: u64) -> bool {
        self.state == STATE_LIVE && self.publish_id == publish_id
    }

    /// The process that claimed the slot.
    pub fn owner(&self) -> u32 {
        self.owner
    }

    /// Live, but its publisher left: the grace period runs (no EXT-X-ENDLIST yet).
    pub fn publisher_gone(&self) -> bool {
        self.state == STATE_LIVE && self.gone != 0
    }

    /// When the publisher left (monotonic clock); meaningful if [`Self::publisher_gone`].
    pub fn gone_ms(&self) -> i64 {
        self.gone_ms
    }

    /// The grace period between the publisher leaving and EXT-X-ENDLIST.
    pub fn grace_ms(&self) -> u32 {
        self.grace_ms
    }

    /// When the current (or last) publish began (wall clock, for display).
    pub fn claimed_ms(&self) -> i64 {
        self.claimed_ms
    }

    pub fn updated_ms(&self) -> i64 {
        self.updated_ms
    }

    pub fn ended_ms(&self) -> i64 {
        self.ended_ms
    }

    pub fn settings(&self) -> StreamSettings {
        StreamSettings {
            window: self.window,
            part_target_ms: self.part_target_ms,
            segment_target_ms: self.segment_target_ms,
            clock_numbering: true,
        }
    }

    pub fn part_target_ms(&self) -> u32 {
        self.part_target_ms
    }

    /// EXT-X-TARGETDURATION in seconds: decided by the first segment; before it, the
    /// ceiling of the segment target (what the first segment will most likely give).
    pub fn target_duration(&self) -> u32 {
        if self.target_duration_s > 0 {
            self.target_duration_s
        } else {
            self.segment_target_ms.div_ceil(1_000).max(1)
        }
    }

    /// True once the first segment has decided the target duration.
    pub fn target_duration_decided(&self) -> bool {
        self.target_duration_s > 0
    }

    // ------------------------------------------------------------ segments & parts

    /// MSN of the segment being built.
    pub fn next_msn(&self) -> u64 {
        self.next_msn
    }

    /// MSN of the last complete segment.
    pub fn last_msn(&self) -> Option<u64> {
        if self.seg_len == 0 {
            None
        } else {
            self.next_msn.checked_sub(1)
        }
    }

    /// The last published part as (msn, part).
    pub fn last_part(&self) -> Option<(u64, u32)> {
        self.part_at(self.part_len.checked_sub(1)? as usize)
            .map(|p| (p.msn, p.part))
    }

    /// The part a preload hint names, and which a GET may wait for: the next part of the
    /// segment being built. None unless live with an init section.
    pub fn next_part(&self) -> Option<(u64, u32)> {
        if self.state != STATE_LIVE || self.init_version == 0 {
            return None;
        }
        let n = self.parts_of(self.next_msn).count() as u32;
        Some((self.next_msn, n))
    }

    pub fn media_sequence(&self) -> u64 {
        self.media_sequence
    }

    pub fn discontinuity_sequence(&self) -> u64 {
        self.discontinuity_sequence
    }

    /// Version of the newest init section (`init{v}.mp4`); 0 before the first.
    pub fn init_version(&self) -> u32 {
        self.init_version
    }

    /// EXT-X-PROGRAM-DATE-TIME of the segment being built (valid once it has a part).
    pub fn building_pdt_ms(&self) -> i64 {
        self.building_pdt_ms
    }

    /// The segment being built starts with a discontinuity.
    pub fn pending_discontinuity(&self) -> bool {
        self.pending_discontinuity != 0
    }

    fn seg_at(&self, i: usize) -> Option<&SegmentEntry> {
        if i >= self.seg_len as usize {
            return None;
        }
        Some(&self.segments[(self.seg_head as usize + i) % MAX_SEGMENTS])
    }

    fn part_at(&self, i: usize) -> Option<&PartEntry> {
        if i >= self.part_len as usize {
            return None;
        }
        Some(&self.parts[(self.part_head as usize + i) % MAX_PARTS])
    }

    /// All segments kept (listed and unlisted tail), oldest first.
    pub fn segments(&self) -> impl DoubleEndedIterator<Item = &SegmentEntry> + '_ {
        let n = (self.seg_len as usize).min(MAX_SEGMENTS);
        (0..n).filter_map(move |i| self.seg_at(i))
    }

    /// The segments the playlist lists, oldest first.
    pub fn listed_segments(&self) -> impl DoubleEndedIterator<Item = &SegmentEntry> + '_ {
        let n = (self.seg_len as usize).min(MAX_SEGMENTS);
        let listed = (self.listed as usize).min(n);
        (n - listed..n).filter_map(move |i| self.seg_at(i))
    }

    pub fn segment(&self, msn: u64) -> Option<&SegmentEntry> {
        let first = self.seg_at(0)?.msn;
        let i = msn.checked_sub(first)?;
        self.seg_at(usize::try_from(i).ok()?)
            .filter(|s| s.msn == msn)
    }

    /// MSN of the oldest segment kept.
    pub fn oldest_msn(&self) -> Option<u64> {
        self.seg_at(0).map(|s| s.msn)
    }

    /// All parts kept, oldest first.
    pub fn parts(&self) -> impl DoubleEndedIterator<Item = &PartEntry> + '_ {
        let n = (self.part_len as usize).min(MAX_PARTS);
        (0..n).filter_map(move |i| self.part_at(i))
    }

    /// The parts of segment `msn` that are kept, in order.
    pub fn parts_of(&self, msn: u64) -> impl Iterator<Item = &PartEntry> + '_ {
        self.parts().filter(move |p| p.msn == msn)
    }

    /// Where part `part` of segment `msn` lies in the segment's file: (offset, length).
    /// Parts are appended to the file in order, so the offset is the size of the ones
    /// before it.
    pub fn part_range(&self, msn: u64, part: u32) -> Option<(u64, u64)> {
        let mut offset = 0u64;
        for (i, p) in self.parts_of(msn).enumerate() {
            if p.part != i as u32 {
                return None; // earlier parts of this segment are no longer indexed
            }
            if p.part == part {
                return Some((offset, p.bytes as u64));
            }
            offset += p.bytes as u64;
        }
        None
    }

    pub fn part(&self, msn: u64, part: u32) -> Option<&PartEntry> {
        self.parts().rev().find(|p| p.msn == msn && p.part == part)
    }

    /// True when every part of segment `msn` is still in the index.
    pub fn has_all_parts(&self, msn: u64) -> bool {
        match self.segment(msn) {
            Some(s) => {
                s.parts > 0 && self.part(msn, 0).is_some() && self.part(msn, s.parts - 1).is_some()
            }
            None => false,
        }
    }

    /// The listed segments that have a TS rendition: the newest listed segments, back
    /// to the first one without (so that their msns are consecutive). Empty when the
    /// newest listed segment has none (e.g. an HEVC stream).
    pub fn ts_segments(&self) -> impl Iterator<Item = &SegmentEntry> + '_ {
        let listed = self.listed_segments().count();
        let with_ts = self
            .listed_segments()
            .rev()
            .take_while(|s| s.has_ts())
            .count();
        self.listed_segments().skip(listed - with_ts)
    }

    /// True when the TS playlist has something to list.
    pub fn has_ts(&self) -> bool {
        self.listed_segments()
            .next_back()
            .is_some_and(|s| s.has_ts())
    }

    /// Every listed segment is independent: EXT-X-INDEPENDENT-SEGMENTS holds.
    pub fn independent_segments(&self) -> bool {
        self.listed_segments().all(|s| s.independent())
    }

    /// Sum of the listed segments' durations.
    pub fn listed_duration_us(&self) -> u64 {
        self.listed_segments().map(|s| s.duration_us).sum()
    }

    /// How long a segment stays downloadable after it leaves the playlist (and how long
    /// an ended stream stays): the playlist duration, at least 3 × target duration.
    pub fn availability_ms(&self) -> i64 {
        let listed = (self.listed_duration_us() / 1_000) as i64;
        listed.max(3_000 * self.target_duration() as i64)
    }

    // ------------------------------------------------------------ media info

    pub fn has_video(&self) -> bool {
        self.tracks & TRACK_VIDEO != 0
    }

    pub fn has_audio(&self) -> bool {
        self.tracks & TRACK_AUDIO != 0
    }

    /// RFC 6381 codec string of the video track ("" if none or unknown).
    pub fn video_codec(&self) -> &str {
        read_str(&self.video_codec, self.video_codec_len)
    }

    pub fn audio_codec(&self) -> &str {
        read_str(&self.audio_codec, self.audio_codec_len)
    }

    pub fn resolution(&self) -> Option<(u32, u32)> {
        (self.has_video() && self.width > 0 && self.height > 0).then_some((self.width, self.height))
    }

    /// Frames per second: as signalled by the SPS, else measured over the video timeline.
    pub fn frame_rate(&self) -> Option<f64> {
        if !self.has_video() {
            return None;
        }
        if self.sps_frame_rate_milli > 0 {
            return Some(self.sps_frame_rate_milli as f64 / 1_000.0);
        }
        if self.total_video_duration_us == 0 || self.total_video_frames == 0 {
            return None;
        }
        Some(self.total_video_frames as f64 * 1e6 / self.total_video_duration_us as f64)
    }

    /// Peak segment bit rate (bits/s): the largest bit rate of any contiguous set of
    /// segments whose total duration is 0.5–1.5 × target duration. Computed when each
    /// segment is added, over the sets ending at it, so it is exact for the whole life
    /// of the slot. Where no such set ends at a segment (a single segment longer than
    /// 1.5 × TD), that segment's own bit rate counts instead. Before the first segment:
    /// an estimate from the parts so far.
    pub fn peak_bandwidth(&self) -> u64 {
        if self.peak_bps > 0 {
            self.peak_bps
        } else {
            self.parts_estimate()
        }
    }

    /// Average segment bit rate (bits/s) over all segments since the slot was claimed.
    pub fn average_bandwidth(&self) -> u64 {
        if self.total_duration_us > 0 {
            bps(self.total_bytes, self.total_duration_us)
        } else {
            self.parts_estimate()
        }
    }

    /// Size of the TS renditions relative to their fMP4 segments, in thousandths (at
    /// least 1000): scales the bit rates for a TS variant. 1000 before any TS segment.
    pub fn ts_size_permille(&self) -> u64 {
        if self.total_ts_fmp4_bytes == 0 {
            return 1_000;
        }
        let r = self.total_ts_bytes as u128 * 1_000 / self.total_ts_fmp4_bytes as u128;
        (r.min(u64::MAX as u128) as u64).max(1_000)
    }

    fn parts_estimate(&self) -> u64 {
        let (bytes, dur) = self.parts().fold((0u64, 0u64), |(b, d), p| {
            (b + p.bytes as u64, d + p.duration_us as u64)
        });
        if dur == 0 {
            0
        } else {
            bps(bytes, dur)
        }
    }

    // ------------------------------------------------------------ writer side

    /// Keeps a live slot fresh while the publisher is connected but idle.
    pub fn touch(&mut self, now_ms: i64) {
        if self.state == STATE_LIVE {
            self.updated_ms = now_ms;
            self.gone = 0;
        }
    }

    /// Applies one segmenter output. Ignored unless the slot is live.
    pub fn apply(&mut self, out: &Output, now_ms: i64) {
        if self.state != STATE_LIVE {
            return;
        }
        self.updated_ms = now_ms;
        // A writer declared gone (e.g. by a wrong liveness guess) that writes is back.
        self.gone = 0;
        self.generation = self.generation.wrapping_add(1);
        match out {
            Output::Init {
                version,
                video,
                audio,
                part_target_ms,
                ..
            } => {
                // Parts from here on last at most this long (never lowered: parts
                // already listed keep their durations).
                self.part_target_ms = self.part_target_ms.max(*part_target_ms);
                self.init_version = *version;
                self.publish_inits = self.publish_inits.saturating_add(1);
                if self.publish_inits > 1 {
                    self.pending_discontinuity = 1;
                }
                self.tracks = 0;
                self.video_codec_len = 0;
                self.audio_codec_len = 0;
                self.width = 0;
                self.height = 0;
                self.sps_frame_rate_milli = 0;
                if let Some(v) = video {
                    self.tracks |= TRACK_VIDEO;
                    if v.codec_string.len() <= MAX_CODEC_LEN {
                        self.video_codec_len = copy_str(&mut self.video_codec, &v.codec_string);
                    }
                    self.width = v.width;
                    self.height = v.height;
                    if let Some(fps) = v.frame_rate.filter(|f| (0.5..=1_000.0).contains(f)) {
                        self.sps_frame_rate_milli = (fps * 1_000.0).round() as u32;
                    }
                }
                if let Some(a) = audio {
                    self.tracks |= TRACK_AUDIO;
                    if a.codec_string.len() <= MAX_CODEC_LEN {
                        self.audio_codec_len = copy_str(&mut self.audio_codec, &a.codec_string);
                    }
                }
            }
            Output::Part {
                msn,
                part,
                duration_us,
                independent,
                data,
                segment_pdt_ms,
            } => {
                self.building_pdt_ms = *segment_pdt_ms;
                self.push_part(PartEntry {
                    msn: *msn,
                    part: *part,
                    duration_us: (*duration_us).min(u32::MAX as u64) as u32,
                    bytes: data.len().min(u32::MAX as usize) as u32,
                    flags: if *independent { PART_INDEPENDENT } else { 0 },
                });
            }
            Output::TsSegment { msn, data, .. } => {
                // Flags the segment of the same msn, which follows.
                self.pending_ts = msn.saturating_add(1);
                self.pending_ts_bytes = data.len() as u64;
            }
            Output::Segment {
                msn,
                duration_us,
                bytes,
                parts,
                program_date_time_ms,
                discontinuity,
                init_version,
                video_frames,
                independent,
            } => {
                let mut flags = 0;
                if *discontinuity {
                    flags |= SEG_DISCONTINUITY;
                }
                if !*independent {
                    flags |= SEG_DEPENDENT;
                }
                self.push_segment(
                    SegmentEntry {
                        msn: *msn,
                        duration_us: *duration_us,
                        program_date_time_ms: *program_date_time_ms,
                        bytes: *bytes,
                        unlisted_ms: 0,
                        parts: *parts,
                        init_version: *init_version,
                        flags,
                        video_frames: *video_frames,
                    },
                    now_ms,
                );
            }
        }
    }

    /// The stream ended (EXT-X-ENDLIST). Parts of an unfinished segment are dropped.
    pub fn end(&mut self, now_ms: i64) {
        if self.state != STATE_LIVE {
            return;
        }
        self.seal_unfinished(now_ms);
        self.state = STATE_ENDED;
        self.ended_ms = now_ms;
        self.updated_ms = now_ms;
        self.generation = self.generation.wrapping_add(1);
    }

    /// The publisher left (or died): the stream stays live, without EXT-X-ENDLIST, for
    /// its grace period; a republish continues it. Parts of an unfinished segment are
    /// dropped. Without a grace period the stream ends at once.
    pub fn disconnect(&mut self, now_ms: i64) {
        if self.state != STATE_LIVE || self.gone != 0 {
            return;
        }
        if self.grace_ms == 0 {
            self.end(now_ms);
            return;
        }
        self.gone = 1;
        self.gone_ms = now_ms;
        self.seal_unfinished(now_ms);
        self.generation = self.generation.wrapping_add(1);
    }

    /// A writer vanished mid-segment (its worker died, or the key was taken over): the
    /// parts of its unfinished segment that were listed become a complete, short segment
    /// (the segment file is those parts, appended), so that no name a player may already
    /// have fetched is ever reused with other media. Parts that cannot make a segment
    /// (not starting with an independent part 0) are dropped.
    fn seal_unfinished(&mut self, now_ms: i64) {
        let msn = self.next_msn;
        let (mut n, mut duration_us, mut bytes, mut first) = (0u32, 0u64, 0u64, None);
        for p in self.parts().filter(|p| p.msn == msn) {
            first.get_or_insert(*p);
            n += 1;
            duration_us += p.duration_us as u64;
            bytes += p.bytes as u64;
        }
        let starts_clean = first.is_some_and(|p| p.part == 0 && p.independent());
        if n > 0 && starts_clean && bytes > 0 {
            let flags = if self.pending_discontinuity != 0 {
                SEG_DISCONTINUITY
            } else {
                0
            };
            self.push_segment(
                SegmentEntry {
                    msn,
                    duration_us,
                    program_date_time_ms: self.building_pdt_ms,
                    bytes,
                    unlisted_ms: 0,
                    parts: n,
                    init_version: self.init_version,
                    flags,
                    video_frames: 0,
                },
                now_ms,
            );
        }
        self.drop_unfinished_parts();
    }

    /// Drops parts of segments that never completed (a writer that died mid-segment).
    fn drop_unfinished_parts(&mut self) {
        while self.part_len > 0 {
            let last = (self.part_head as usize + self.part_len as usize - 1) % MAX_PARTS;
            if self.parts[last].msn >= self.next_msn {
                self.parts[last] = PartEntry::ZERO;
                self.part_len -= 1;
            } else {
                break;
            }
        }
    }

    fn push_part(&mut self, p: PartEntry) {
        if self.part_len as usize >= MAX_PARTS {
            self.pop_part();
        }
        let i = (self.part_head as usize + self.part_len as usize) % MAX_PARTS;
        self.parts[i] = p;
        self.part_len += 1;
    }

    fn pop_part(&mut self) {
        if self.part_len == 0 {
            return;
        }
        self.parts[self.part_head as usize % MAX_PARTS] = PartEntry::ZERO;
        self.part_head = ((self.part_head as usize + 1) % MAX_PARTS) as u32;
        self.part_len -= 1;
    }

    fn pop_segment(&mut self) {
        if self.seg_len == 0 {
            return;
        }
        let head = self.seg_head as usize % MAX_SEGMENTS;
        if self.segments[head].listed() {
            // Only when the window is as large as the ring: it scrolls out right here.
            self.unlist_oldest(self.updated_ms);
        }
        self.segments[head] = SegmentEntry::ZERO;
        self.seg_head = ((head + 1) % MAX_SEGMENTS) as u32;
        self.seg_len -= 1;
    }

    fn unlist_oldest(&mut self, now_ms: i64) {
        if self.listed == 0 {
            return;
        }
        let i = self.seg_len as usize - self.listed as usize;
        let idx = (self.seg_head as usize + i) % MAX_SEGMENTS;
        let s = &mut self.segments[idx];
        s.flags |= SEG_UNLISTED;
        s.unlisted_ms = now_ms;
        let disc = s.discontinuity();
        let msn = s.msn;
        self.listed -= 1;
        self.media_sequence = msn + 1;
        if disc {
            self.discontinuity_sequence += 1;
        }
    }

    fn push_segment(&mut self, mut s: SegmentEntry, now_ms: i64) {
        if self.pending_ts != 0 && self.pending_ts == s.msn.wrapping_add(1) {
            s.flags |= SEG_TS;
            self.total_ts_bytes = self.total_ts_bytes.saturating_add(self.pending_ts_bytes);
            self.total_ts_fmp4_bytes = self.total_ts_fmp4_bytes.saturating_add(s.bytes);
        }
        self.pending_ts = 0;
        self.pending_ts_bytes = 0;
        if self.target_duration_s == 0 {
            let target = self.segment_target_ms.div_ceil(1_000).max(1);
            let first = ((s.duration_us + 500_000) / 1_000_000) as u32;
            self.target_duration_s = target.max(first).max(1);
        }
        if self.seg_len as usize >= MAX_SEGMENTS {
            self.pop_segment();
        }
        if self.listed == 0 {
            self.media_sequence = s.msn;
        }
        let i = (self.seg_head as usize + self.seg_len as usize) % MAX_SEGMENTS;
        self.segments[i] = s;
        self.seg_len += 1;
        self.listed += 1;
        self.next_msn = s.msn + 1;
        self.pending_discontinuity = 0;
        while self.listed > self.window.max(1) {
            self.unlist_oldest(now_ms);
        }
        // Stats.
        self.total_bytes += s.bytes;
        self.total_duration_us += s.duration_us;
        if self.has_video() && s.video_frames > 0 {
            self.total_video_frames += s.video_frames as u64;
            self.total_video_duration_us += s.duration_us;
        }
        self.update_peak();
        self.prune(now_ms);
    }

    fn update_peak(&mut self) {
        let td_us = self.target_duration() as u64 * 1_000_000;
        let (lo, hi) = (td_us / 2, td_us * 3 / 2);
        let mut bytes = 0u64;
        let mut dur = 0u64;
        let mut best = 0u64;
        for s in self.segments().rev() {
            bytes += s.bytes;
            dur += s.duration_us;
            if dur > hi {
                break;
            }
            if dur >= lo {
                best = best.max(bps(bytes, dur));
            }
        }
        if best == 0 {
            if let Some(s) = self.segments().next_back() {
                best = bps(s.bytes, s.duration_us);
            }
        }
        self.peak_bps = self.peak_bps.max(best);
    }

    /// Drops what no reader needs: unlisted segments past their availability, parts of
    /// segments no longer listed.
    fn prune(&mut self, now_ms: i64) {
        let avail = self.availability_ms();
        while let Some(s) = self.seg_at(0) {
            if !s.listed() && now_ms.saturating_sub(s.unlisted_ms) >= avail {
                self.pop_segment();
            } else {
                break;
            }
        }
        while let Some(p) = self.part_at(0) {
            if p.msn < self.media_sequence {
                self.pop_part();
            } else {
                break;
            }
        }
    }

    /// Housekeeping without new media (called by [`super::Table::sweep`]).
    pub fn expire(&mut self, now_ms: i64) {
        let before = (self.seg_len, self.part_len);
        self.prune(now_ms);
        if before != (self.seg_len, self.part_len) {
            self.generation = self.generation.wrapping_add(1);
        }
    }

    // ------------------------------------------------------------ claim support

    pub(crate) fn set_identity(&mut self, key: &str, dir: &str) {
        self.key_len = copy_str(&mut self.key, key);
        self.dir_len = copy_str(&mut self.dir, dir);
    }

    /// Turns the slot into a fresh live stream.
    pub(crate) fn init_fresh(
        &mut self,
        key: &str,
        dir: &str,
        settings: &StreamSettings,
        owner: u32,
        now: Now,
        first_msn: u64,
    ) {
        let generation = self.generation;
        let publish_id = self.publish_id;
        *self = StreamIndex::ZERO;
        self.next_msn = first_msn;
        self.media_sequence = first_msn;
        self.generation = generation.wrapping_add(1);
        self.publish_id = publish_id.wrapping_add(1);
        self.set_identity(key, dir);
        self.apply_settings(settings);
        self.state = STATE_LIVE;
        self.owner = owner;
        self.claimed_ms = now.wall_ms;
        self.updated_ms = now.mono_ms;
    }

    /// Reuses an ended (or abandoned) slot for a new publish of the same key.
    pub(crate) fn init_republish(
        &mut self,
        dir: &str,
        settings: &StreamSettings,
        owner: u32,
        now: Now,
    ) {
        if self.state == STATE_LIVE {
            self.seal_unfinished(now.mono_ms);
        }
        self.drop_unfinished_parts();
        self.dir_len = copy_str(&mut self.dir, dir);
        let td = self.target_duration_s;
        self.apply_settings(settings);
        self.target_duration_s = td;
        self.state = STATE_LIVE;
        self.owner = owner;
        self.claimed_ms = now.wall_ms;
        self.updated_ms = now.mono_ms;
        self.ended_ms = 0;
        self.gone = 0;
        self.gone_ms = 0;
        self.publish_inits = 0;
        self.pending_ts = 0;
        self.pending_discontinuity = u32::from(self.seg_len > 0 || self.next_msn > 0);
        self.publish_id = self.publish_id.wrapping_add(1);
        self.generation = self.generation.wrapping_add(1);
    }

    pub(crate) fn set_lifecycle(&mut self, l: &Lifecycle) {
        self.grace_ms = l.grace_ms;
    }

    fn apply_settings(&mut self, s: &StreamSettings) {
        self.window = s.window.clamp(3, MAX_WINDOW);
        self.part_target_ms = s.part_target_ms.max(1);
        self.segment_target_ms = s.segment_target_ms.max(self.part_target_ms);
    }

    pub(crate) fn is_free(&self) -> bool {
        self.state == STATE_FREE
    }

    pub(crate) fn free(&mut self) {
        let generation = self.generation;
        let publish_id = self.publish_id;
        *self = StreamIndex::ZERO;
        self.generation = generation.wrapping_add(1);
        self.publish_id = publish_id;
    }
}

fn bps(bytes: u64, dur_us: u64) -> u64 {
    if dur_us == 0 {
        return 0;
    }
    (bytes as u128 * 8 * 1_000_000 / dur_us as u128) as u64
}
