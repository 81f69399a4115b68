//! The segmenter driven by structured input, with its invariants checked.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;

use crate::media::{AudioCodec, AudioConfig, Frame, TrackKind, VideoCodec, VideoConfig};
use crate::mux::fmp4::{Run, AUDIO_TRACK_ID, VIDEO_TRACK_ID};
use crate::segmenter::{Muxer, Output, Segmenter, SegmenterConfig, TD_SLACK_MS};

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
}

/// Decode-time checks per track: every run starts where the previous one of its track
/// ended or later (a re-anchored audio clock jumps forward), within one init section.
#[derive(Default)]
struct Timeline {
    video_end: Option<u64>,
    audio_end: Option<u64>,
}

#[derive(Clone, Default)]
struct CheckingMuxer {
    timeline: Rc<RefCell<Timeline>>,
}

impl Muxer for CheckingMuxer {
    fn init_segment(&self, _v: Option<&VideoConfig>, _a: Option<&AudioConfig>) -> Bytes {
        *self.timeline.borrow_mut() = Timeline::default();
        Bytes::from_static(b"init")
    }

    fn fragment(&self, sequence_number: u32, runs: &[Run]) -> Bytes {
        let mut tl = self.timeline.borrow_mut();
        let mut n = 0;
        for r in runs {
            assert!(!r.samples.is_empty(), "empty run");
            let end = match r.track_id {
                VIDEO_TRACK_ID => &mut tl.video_end,
                AUDIO_TRACK_ID => &mut tl.audio_end,
                t => panic!("track {t}"),
            };
            if let Some(e) = *end {
                assert!(
                    r.base_decode_time >= e,
                    "track {}: decode time {} before the previous run's end {e}",
                    r.track_id,
                    r.base_decode_time
                );
            }
            let dur: u64 = r.samples.iter().map(|s| s.duration as u64).sum();
            assert!(
                r.samples.iter().all(|s| s.duration > 0),
                "zero-length sample"
            );
            *end = Some(r.base_decode_time + dur);
            n += r.samples.len();
        }
        Bytes::from(format!("{sequence_number}:{n};"))
    }
}

const RATES: [u32; 6] = [44_100, 48_000, 8_000, 96_000, 22_050, 0];
const FPS: [Option<f64>; 8] = [
    None,
    Some(30.0),
    Some(29.97),
    Some(23.976),
    Some(60.0),
    Some(1.0),
    Some(12.5),
    Some(59.94),
];

/// Drives a segmenter with configurations and frames decoded from `data` and checks
/// its invariants on everything it produces.
pub fn segmenter(data: &[u8]) {
    let mut inp = Input(data);
    let cfg = SegmenterConfig {
        segment_target_ms: 500 + inp.u8() as u32 * 100,
        part_target_ms: 40 + inp.u8() as u32 * 8,
        ts: inp.u8() & 1 == 1,
    };
    let muxer = CheckingMuxer::default();
    let mut seg = Segmenter::new(cfg, muxer, 5, 1, false);
    let td = inp.u8() % 5;
    if td > 0 {
        seg.set_target_duration(td as u32);
    } else {
        // A fresh stream, as the ingest starts one.
        seg.shorten_first_segment();
    }
    let mut out = Vec::new();
    let mut checker = Checker::default();
    let mut vdts: i64 = inp.u16() as i64;
    let mut adts: i64 = vdts;
    let mut now: i64 = 1_700_000_000_000;
    let mut n = 0u64;
    while !inp.0.is_empty() {
        let op = inp.u8();
        match op % 10 {
            0 => {
                let codec = if inp.u8() & 1 == 0 {
                    VideoCodec::H264
                } else {
                    VideoCodec::H265
                };
                let fps = FPS[inp.u8() as usize % FPS.len()];
                seg.video_config(
                    VideoConfig {
                        codec,
                        record: Bytes::from(vec![1, inp.u8()]),
                        nalu_length_size: 4,
                        width: 64,
                        height: 48,
                        frame_rate: fps,
                        codec_string: "avc1.42c00a".into(),
                    },
                    &mut out,
                );
            }
            1 => {
                let rate = RATES[inp.u8() as usize % RATES.len()];
                let sel = inp.u8();
                let frame_samples = [1024u32, 2048, 960][sel as usize % 3];
                let asc = inp.u8();
                let cfg = if sel & 0x80 != 0 {
                    // Opus: packets of 2.5 to 120 ms (their TOC byte), any rate given
                    // is taken as 48 kHz.
                    AudioConfig {
                        sample_rate: rate,
                        frame_samples,
                        ..crate::codec::opus::config(asc & 3, u16::from(asc))
                    }
                } else {
                    AudioConfig {
                        codec: AudioCodec::Aac,
                        asc: Bytes::from(vec![0x12, asc]),
                        object_type: 2,
                        sample_rate: rate,
                        channels: 2,
                        frame_samples,
                        codec_string: "mp4a.40.2".into(),
                    }
                };
                seg.audio_config(cfg, &mut out);
            }
            2..=6 => {
                let b = inp.u8();
                let step = match b >> 6 {
                    0 | 1 => 33 + (b as i64 & 7) - 3,
                    2 => b as i64 & 0x3f,
                    _ => inp.u16() as i64 - 2_000,
                };
                vdts = vdts.saturating_add(step);
                let cts = (inp.u8() as i8) as i32 * 4;
                let nal = inp.u8();
                let keyframe = op & 0x80 != 0 || nal & 0x80 != 0;
                n += 1;
                let data = Bytes::from(vec![0, 0, 0, 3, (nal & 0x3f) << 1, 1, n as u8]);
                seg.push(
                    Frame {
                        kind: TrackKind::Video,
                        dts_ms: vdts,
                        cts_ms: cts,
                        keyframe,
                        data,
                    },
                    now,
                    &mut out,
                );
            }
            7 | 8 => {
                let b = inp.u8();
                let step = match b >> 6 {
                    0 | 1 => 21 + (b as i64 & 3),
                    2 => b as i64 & 0x3f,
                    _ => inp.u16() as i64 - 2_000,
                };
                adts = adts.saturating_add(step);
                n += 1;
                // As an Opus packet: any TOC byte (configuration, frame count code) from
                // the step byte; the second byte is a code 3 frame count.
                let toc = b.wrapping_mul(0x2F) ^ 0x21;
                seg.push(
                    Frame {
                        kind: TrackKind::Audio,
                        dts_ms: adts,
                        cts_ms: 0,
                        keyframe: true,
                        data: Bytes::from(vec![toc, n as u8]),
                    },
                    now,
                    &mut out,
                );
            }
            _ => {
                let b = inp.u8();
                if b & 0x80 != 0 {
                    seg.expect_tracks(b & 1 != 0, b & 2 != 0);
                }
                now += (inp.u16() as i64) - 1_000;
            }
        }
        now += 5;
        checker.check(&seg, &mut out);
    }
    seg.finish(&mut out);
    checker.check(&seg, &mut out);
}

#[derive(Default)]
struct Checker {
    part_target_ms: u64,
    parts: Vec<u64>,
    /// Bytes of the parts of the segment being built.
    part_bytes: u64,
    next_part: u32,
    msn: Option<u64>,
}

impl Checker {
    fn check(&mut self, seg: &Segmenter<CheckingMuxer>, out: &mut Vec<Output>) {
        let td_us = seg.target_duration_s() as u64 * 1_000_000 + TD_SLACK_MS * 1_000;
        for o in out.drain(..) {
            match o {
                Output::Init { part_target_ms, .. } => {
                    assert!(self.parts.is_empty(), "Init inside a segment");
                    assert!(part_target_ms as u64 >= self.part_target_ms);
                    self.part_target_ms = part_target_ms as u64;
                }
                Output::Part {
                    msn,
                    part,
                    duration_us,
                    data,
                    ..
                } => {
                    self.part_bytes += data.len() as u64;
                    assert!(self.part_target_ms > 0, "part before Init");
                    assert!(
                        duration_us <= self.part_target_ms * 1_000,
                        "part {msn}.{part}: {duration_us} us > PART-TARGET {} ms",
                        self.part_target_ms
                    );
                    if let Some(m) = self.msn {
                        assert_eq!(msn, m, "parts of one segment");
                    }
                    self.msn = Some(msn);
                    assert_eq!(part, self.next_part, "part numbering");
                    self.next_part += 1;
                    self.parts.push(duration_us);
                }
                Output::TsSegment { .. } => {}
                Output::Segment {
                    msn,
                    duration_us,
                    parts,
                    bytes,
                    ..
                } => {
                    assert_eq!(Some(msn), self.msn);
                    assert_eq!(bytes, self.part_bytes, "segment {msn} is its parts");
                    self.part_bytes = 0;
                    assert_eq!(parts as usize, self.parts.len());
                    assert_eq!(
                        self.parts.iter().sum::<u64>(),
                        duration_us,
                        "parts add up to segment {msn}"
                    );
                    assert!(
                        duration_us <= td_us,
                        "segment {msn}: EXTINF {duration_us} us > TD {}",
                        seg.target_duration_s()
                    );
                    self.parts.clear();
                    self.next_part = 0;
                    self.msn = Some(msn + 1);
                }
            }
        }
    }
}
