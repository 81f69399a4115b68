//! Segmenter tests on synthetic but realistic timelines, with a muxer that records the
//! runs it is given and encodes them so that segment bytes can be taken apart again.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::{BufMut, Bytes, BytesMut};

use super::*;
use crate::media::{AudioCodec, VideoCodec};

#[derive(Clone, Debug)]
struct RecSample {
    duration: u32,
    cts: i32,
    keyframe: bool,
    data: Bytes,
}

#[derive(Clone, Debug)]
struct RecRun {
    track: u32,
    base: u64,
    samples: Vec<RecSample>,
}

#[derive(Clone, Debug)]
struct RecFragment {
    seq: u32,
    runs: Vec<RecRun>,
}

#[derive(Clone, Default)]
struct RecMuxer {
    fragments: Rc<RefCell<Vec<RecFragment>>>,
    inits: Rc<RefCell<Vec<(bool, bool)>>>,
}

impl Muxer for RecMuxer {
    fn init_segment(&self, video: Option<&VideoConfig>, audio: Option<&AudioConfig>) -> Bytes {
        self.inits
            .borrow_mut()
            .push((video.is_some(), audio.is_some()));
        Bytes::from(format!("init {} {}", video.is_some(), audio.is_some()))
    }

    fn fragment(&self, sequence_number: u32, runs: &[Run]) -> Bytes {
        let rec = RecFragment {
            seq: sequence_number,
            runs: runs
                .iter()
                .map(|r| RecRun {
                    track: r.track_id,
                    base: r.base_decode_time,
                    samples: r
                        .samples
                        .iter()
                        .map(|s| RecSample {
                            duration: s.duration,
                            cts: s.cts_offset,
                            keyframe: s.keyframe,
                            data: s.data.clone(),
                        })
                        .collect(),
                })
                .collect(),
        };
        self.fragments.borrow_mut().push(rec);
        // "FRAG" seq len payload, payload = the sample bytes.
        let payload: Vec<u8> = runs
            .iter()
            .flat_map(|r| r.samples.iter().flat_map(|s| s.data.iter().copied()))
            .collect();
        let mut b = BytesMut::new();
        b.put_slice(b"FRAG");
        b.put_u32(sequence_number);
        b.put_u32(payload.len() as u32);
        b.put_slice(&payload);
        b.freeze()
    }
}

/// Splits segment bytes back into fragment sequence numbers.
fn fragment_seqs(mut data: &[u8]) -> Vec<u32> {
    let mut seqs = Vec::new();
    while !data.is_empty() {
        assert!(data.len() >= 12 && &data[..4] == b"FRAG", "not a fragment");
        let seq = u32::from_be_bytes(data[4..8].try_into().unwrap());
        let len = u32::from_be_bytes(data[8..12].try_into().unwrap()) as usize;
        seqs.push(seq);
        data = &data[12 + len..];
    }
    seqs
}

fn vcfg(tag: u8) -> VideoConfig {
    VideoConfig {
        codec: VideoCodec::H264,
        record: Bytes::from(vec![1, 0x64, 0, 0x1f, tag]),
        nalu_length_size: 4,
        width: 1280,
        height: 720,
        frame_rate: None,
        codec_string: "avc1.64001f".into(),
    }
}

fn acfg(rate: u32) -> AudioConfig {
    AudioConfig {
        codec: AudioCodec::Aac,
        asc: Bytes::from(vec![0x12, 0x10]),
        object_type: 2,
        sample_rate: rate,
        channels: 2,
        frame_samples: 1024,
        codec_string: "mp4a.40.2".into(),
    }
}

fn video(i: u64, dts_ms: i64, cts_ms: i32, keyframe: bool) -> Frame {
    let mut d = vec![b'V'];
    d.extend_from_slice(&i.to_be_bytes());
    Frame {
        kind: TrackKind::Video,
        dts_ms,
        cts_ms,
        keyframe,
        data: Bytes::from(d),
    }
}

fn audio(i: u64, dts_ms: i64) -> Frame {
    let mut d = vec![b'A'];
    d.extend_from_slice(&i.to_be_bytes());
    Frame {
        kind: TrackKind::Audio,
        dts_ms,
        cts_ms: 0,
        keyframe: true,
        data: Bytes::from(d),
    }
}

/// Frames of a stream: video at `fps` with a keyframe every `gop` frames, AAC
/// 1024-sample frames at `rate`, interleaved by dts, over `secs` seconds from `t0`.
fn timeline(
    fps: Option<(u64, u64)>,
    gop: u64,
    rate: Option<u32>,
    secs: u64,
    t0: i64,
    bframes: bool,
) -> Vec<Frame> {
    let mut v = Vec::new();
    if let Some((num, den)) = fps {
        let n = secs * num / den;
        for i in 0..n {
            let dts = t0 + ((i * 1000 * den) as f64 / num as f64).round() as i64;
            let cts = if bframes {
                [67, 133, 33, 33][(i % 4) as usize]
            } else {
                0
            };
            v.push(video(i, dts, cts, i % gop == 0));
        }
    }
    let mut a = Vec::new();
    if let Some(rate) = rate {
        let n = secs * rate as u64 / 1024;
        for k in 0..n {
            let dts = t0 + ((k * 1024 * 1000) as f64 / rate as f64).round() as i64;
            a.push(audio(k, dts));
        }
    }
    // Interleave by dts, audio first on ties (as muxers commonly do).
    let mut out = Vec::with_capacity(v.len() + a.len());
    let (mut i, mut j) = (0, 0);
    while i < v.len() || j < a.len() {
        if j < a.len() && (i >= v.len() || a[j].dts_ms <= v[i].dts_ms) {
            out.push(a[j].clone());
            j += 1;
        } else {
            out.push(v[i].clone());
            i += 1;
        }
    }
    out
}

struct Run_ {
    seg: Segmenter<RecMuxer>,
    rec: RecMuxer,
    out: Vec<Output>,
}

fn run(
    cfg: SegmenterConfig,
    video_cfg: Option<VideoConfig>,
    audio_cfg: Option<AudioConfig>,
    frames: Vec<Frame>,
) -> Run_ {
    let rec = RecMuxer::default();
    let mut seg = Segmenter::new(cfg, rec.clone(), 0, 1, false);
    let mut out = Vec::new();
    seg.expect_tracks(video_cfg.is_some(), audio_cfg.is_some());
    if let Some(v) = video_cfg {
        seg.video_config(v, &mut out);
    }
    if let Some(a) = audio_cfg {
        seg.audio_config(a, &mut out);
    }
    for (n, f) in frames.into_iter().enumerate() {
        let now = 1_780_000_000_000 + f.dts_ms + (n as i64 % 3);
        seg.push(f, now, &mut out);
    }
    seg.finish(&mut out);
    Run_ { seg, rec, out }
}

struct SegInfo {
    msn: u64,
    duration_us: u64,
    pdt: i64,
    parts: Vec<(u64, bool)>,
    discontinuity: bool,
    init_version: u32,
}

/// Checks the structural rules every stream must meet and returns the segments.
fn check(r: &Run_, part_target_ms: u64) -> Vec<SegInfo> {
    check_slack(r, part_target_ms, 0)
}

/// `check` allowing parts up to `slack_us` over the part target.
fn check_slack(r: &Run_, part_target_ms: u64, slack_us: u64) -> Vec<SegInfo> {
    let frags = r.rec.fragments.borrow();
    let mut segs = Vec::new();
    let mut cur_parts: Vec<(u64, bool, Bytes)> = Vec::new();
    let mut inits_seen = 0;
    let mut msn_expected: Option<u64> = None;
    let mut init_version = 0;
    assert!(
        matches!(r.out.first(), Some(Output::Init { .. })),
        "first output must be Init"
    );
    for o in &r.out {
        match o {
            Output::Init { version, .. } => {
                assert!(cur_parts.is_empty(), "Init in the middle of a segment");
                inits_seen += 1;
                init_version = *version;
            }
            Output::Part {
                msn,
                part,
                duration_us,
                independent,
                data,
            } => {
                assert!(inits_seen > 0);
                if let Some(m) = msn_expected {
                    assert_eq!(*msn, m, "part of an unexpected segment");
                }
                msn_expected = Some(*msn);
                assert_eq!(*part as usize, cur_parts.len(), "part numbering");
                cur_parts.push((*duration_us, *independent, data.clone()));
            }
            Output::Segment {
                msn,
                duration_us,
                data,
                parts,
                program_date_time_ms,
                discontinuity,
                init_version: iv,
                ..
            } => {
                assert_eq!(Some(*msn), msn_expected);
                assert_eq!(*parts as usize, cur_parts.len());
                assert_eq!(*iv, init_version);
                let concat: Vec<u8> = cur_parts.iter().flat_map(|p| p.2.iter().copied()).collect();
                assert_eq!(&data[..], &concat[..], "segment = concat of its parts");
                let sum: u64 = cur_parts.iter().map(|p| p.0).sum();
                assert_eq!(sum, *duration_us, "parts add up to the segment");
                // Fragment sequence numbers inside the segment, and its first sample.
                let seqs = fragment_seqs(data);
                let first = frags.iter().find(|f| f.seq == seqs[0]).unwrap();
                if let Some(vrun) = first.runs.iter().find(|r| r.track == VIDEO_TRACK_ID) {
                    assert!(vrun.samples[0].keyframe, "segment {msn} starts with an IDR");
                    assert!(cur_parts[0].1, "first part of a segment is independent");
                }
                segs.push(SegInfo {
                    msn: *msn,
                    duration_us: *duration_us,
                    pdt: *program_date_time_ms,
                    parts: cur_parts.iter().map(|p| (p.0, p.1)).collect(),
                    discontinuity: *discontinuity,
                    init_version: *iv,
                });
                cur_parts.clear();
                msn_expected = Some(msn + 1);
            }
        }
    }
    assert!(cur_parts.is_empty(), "parts left without a segment");
    // Part durations within [0.85, 1] x target except the last of each segment.
    let t = part_target_ms * 1000;
    for s in &segs {
        for (i, (d, _)) in s.parts.iter().enumerate() {
            assert!(
                *d <= t + slack_us,
                "segment {} part {i}: {d} us > target",
                s.msn
            );
            if i + 1 < s.parts.len() {
                assert!(
                    *d * 100 >= 85 * t,
                    "segment {} part {i}: {d} us < 0.85 x target",
                    s.msn
                );
            }
        }
    }
    // Fragment sequence numbers increase by one.
    for (i, f) in frags.iter().enumerate() {
        assert_eq!(f.seq, i as u32 + 1);
    }
    // PDT increases by each segment's duration (ms rounding aside).
    for w in segs.windows(2) {
        assert!(w[1].pdt > w[0].pdt, "PDT monotonic");
        let dt = (w[1].pdt - w[0].pdt) * 1000;
        assert!(
            (dt - w[0].duration_us as i64).abs() <= 5_000,
            "PDT step {dt} vs duration {}",
            w[0].duration_us
        );
    }
    segs
}

/// Decode times of one track are contiguous across all fragments.
fn check_contiguous(r: &Run_, track: u32) -> (u64, Vec<RecSample>) {
    let frags = r.rec.fragments.borrow();
    let mut next: Option<u64> = None;
    let mut all = Vec::new();
    for f in frags.iter() {
        for run in f.runs.iter().filter(|x| x.track == track) {
            if let Some(n) = next {
                assert_eq!(
                    run.base, n,
                    "track {track} decode time gap in fragment {}",
                    f.seq
                );
            }
            next = Some(run.base + run.samples.iter().map(|s| s.duration as u64).sum::<u64>());
            all.extend(run.samples.iter().cloned());
        }
    }
    (next.unwrap_or(0), all)
}

fn ids(samples: &[RecSample]) -> Vec<u64> {
    samples
        .iter()
        .map(|s| u64::from_be_bytes(s.data[1..9].try_into().unwrap()))
        .collect()
}

#[test]
fn video_30fps_gop1s_with_aac_44k() {
    let frames = timeline(Some((30, 1)), 30, Some(44_100), 10, 1_000, false);
    let r = run(
        SegmenterConfig::default(),
        Some(vcfg(1)),
        Some(acfg(44_100)),
        frames,
    );
    let segs = check(&r, 200);
    assert_eq!(segs.len(), 5);
    for s in &segs {
        assert_eq!(s.duration_us, 2_000_000);
        assert_eq!(s.parts.len(), 10);
        assert!(s.parts.iter().all(|p| p.0 == 200_000), "exact 200 ms parts");
        assert!(!s.discontinuity);
        assert_eq!(s.init_version, 1);
    }
    // Keyframes once a second: independent parts at 0 and 1 s of every segment.
    for s in &segs {
        let indep: Vec<usize> = (0..s.parts.len()).filter(|i| s.parts[*i].1).collect();
        assert_eq!(indep, vec![0, 5]);
    }
    let (vend, vs) = check_contiguous(&r, VIDEO_TRACK_ID);
    assert_eq!(
        ids(&vs),
        (0..300).collect::<Vec<_>>(),
        "every video frame once, in order"
    );
    assert_eq!(vend, 900_000);
    assert!(vs
        .iter()
        .all(|s| s.duration == 3_000 || s.duration == 2_970 || s.duration == 3_060));
    let (_, aus) = check_contiguous(&r, AUDIO_TRACK_ID);
    assert_eq!(ids(&aus), (0..(10 * 44_100 / 1024)).collect::<Vec<_>>());
    assert!(aus.iter().all(|s| s.duration == 1024));
    assert_eq!(r.seg.stats().audio_reanchors, 0);
    // Audio with dts before a part's cut lands in that part.
    let frags = r.rec.fragments.borrow();
    let mut audio_ms = Vec::new();
    for f in frags.iter() {
        let v = f.runs.iter().find(|r| r.track == VIDEO_TRACK_ID).unwrap();
        let v_end = v.base + v.samples.iter().map(|s| s.duration as u64).sum::<u64>();
        if let Some(a) = f.runs.iter().find(|r| r.track == AUDIO_TRACK_ID) {
            let a_start_ms = a.base * 1000 / 44_100;
            let a_last_ms = (a.base + 1024 * (a.samples.len() as u64 - 1)) * 1000 / 44_100;
            audio_ms.push(a_start_ms);
            assert!(a_last_ms <= v_end / 90 + 1);
            assert!(a_start_ms + 30 >= v.base / 90, "audio run far before video");
        }
    }
    // PDT anchored at the wall clock of the first keyframe (the second frame pushed,
    // whose arrival jitter in `run` is +1 ms).
    assert_eq!(segs[0].pdt, 1_780_000_000_000 + 1_000 + 1);
}

#[test]
fn video_25fps_only() {
    let frames = timeline(Some((25, 1)), 50, None, 9, 0, false);
    let r = run(SegmenterConfig::default(), Some(vcfg(1)), None, frames);
    let segs = check(&r, 200);
    assert_eq!(
        segs.iter().map(|s| s.duration_us).collect::<Vec<_>>(),
        vec![2_000_000, 2_000_000, 2_000_000, 2_000_000, 1_000_000]
    );
    assert!(segs[..4]
        .iter()
        .all(|s| s.parts.iter().all(|p| p.0 == 200_000)));
    assert_eq!(r.rec.inits.borrow().as_slice(), &[(true, false)]);
    let frags = r.rec.fragments.borrow();
    assert!(frags.iter().all(|f| f.runs.len() == 1));
}

#[test]
fn video_60fps_and_50fps_parts_within_bounds() {
    for fps in [50u64, 60] {
        let frames = timeline(Some((fps, 1)), fps, Some(48_000), 8, 5, false);
        let r = run(
            SegmenterConfig::default(),
            Some(vcfg(1)),
            Some(acfg(48_000)),
            frames,
        );
        let segs = check(&r, 200);
        assert_eq!(segs.len(), 4, "{fps} fps");
        assert!(
            segs[..3].iter().all(|s| s.duration_us == 2_000_000),
            "{fps} fps: {:?}",
            segs.iter().map(|s| s.duration_us).collect::<Vec<_>>()
        );
        let (_, vs) = check_contiguous(&r, VIDEO_TRACK_ID);
        assert_eq!(vs.len() as u64, 8 * fps);
        check_contiguous(&r, AUDIO_TRACK_ID);
    }
}

#[test]
fn audio_only_stream_is_audio_led() {
    for rate in [44_100u32, 48_000] {
        let frames = timeline(None, 1, Some(rate), 7, 0, false);
        let n = frames.len() as u64;
        let r = run(SegmenterConfig::default(), None, Some(acfg(rate)), frames);
        let segs = check(&r, 200);
        assert!(segs.len() >= 3);
        for s in &segs[..segs.len() - 1] {
            // Cut once elapsed + 50 ms >= 2 s: within one audio frame of that.
            assert!(s.duration_us >= 1_950_000 && s.duration_us < 1_950_000 + 23_300);
            assert!(s.parts.iter().all(|p| p.1), "audio parts are independent");
        }
        let (end, aus) = check_contiguous(&r, AUDIO_TRACK_ID);
        assert_eq!(ids(&aus), (0..n).collect::<Vec<_>>());
        assert_eq!(end, n * 1024);
        assert_eq!(r.rec.inits.borrow().as_slice(), &[(false, true)]);
    }
}

#[test]
fn bframe_composition_offsets_are_kept() {
    let frames = timeline(Some((30, 1)), 30, Some(44_100), 4, 0, true);
    let r = run(
        SegmenterConfig::default(),
        Some(vcfg(1)),
        Some(acfg(44_100)),
        frames,
    );
    check(&r, 200);
    let (_, vs) = check_contiguous(&r, VIDEO_TRACK_ID);
    for (i, s) in vs.iter().enumerate() {
        assert_eq!(s.cts, [67, 133, 33, 33][i % 4] * 90);
    }
}

#[test]
fn republish_continues_numbering_with_discontinuity() {
    let rec = RecMuxer::default();
    let mut seg = Segmenter::new(SegmenterConfig::default(), rec.clone(), 7, 3, true);
    let mut out = Vec::new();
    seg.video_config(vcfg(1), &mut out);
    seg.audio_config(acfg(44_100), &mut out);
    for f in timeline(Some((30, 1)), 30, Some(44_100), 5, 123_456, false) {
        seg.push(f, 1_000, &mut out);
    }
    seg.finish(&mut out);
    let r = Run_ { seg, rec, out };
    let segs = check(&r, 200);
    assert_eq!(segs[0].msn, 7);
    assert!(segs[0].discontinuity);
    assert!(segs[1..].iter().all(|s| !s.discontinuity));
    assert!(segs.iter().all(|s| s.init_version == 3));
    assert!(matches!(r.out[0], Output::Init { version: 3, .. }));
    // Decode times restart from zero for the new publish.
    let frags = r.rec.fragments.borrow();
    assert_eq!(frags[0].runs[0].base, 0);
}

#[test]
fn config_change_mid_stream_new_init_and_discontinuity() {
    let rec = RecMuxer::default();
    let mut seg = Segmenter::new(SegmenterConfig::default(), rec.clone(), 0, 1, false);
    let mut out = Vec::new();
    seg.video_config(vcfg(1), &mut out);
    seg.audio_config(acfg(44_100), &mut out);
    for f in timeline(Some((30, 1)), 30, Some(44_100), 8, 0, false) {
        if f.dts_ms == 2_500 && f.kind == TrackKind::Video {
            // Identical repeat: ignored.
            seg.video_config(vcfg(1), &mut out);
        }
        if f.dts_ms == 4_500 && f.kind == TrackKind::Video {
            seg.video_config(vcfg(2), &mut out);
        }
        seg.push(f, 0, &mut out);
    }
    seg.finish(&mut out);
    let r = Run_ { seg, rec, out };
    let segs = check(&r, 200);
    let inits: Vec<u32> = r
        .out
        .iter()
        .filter_map(|o| match o {
            Output::Init { version, .. } => Some(*version),
            _ => None,
        })
        .collect();
    assert_eq!(inits, vec![1, 2]);
    let d: Vec<(u64, bool, u32)> = segs
        .iter()
        .map(|s| (s.duration_us, s.discontinuity, s.init_version))
        .collect();
    assert_eq!(
        d,
        vec![
            (2_000_000, false, 1),
            (2_000_000, false, 1),
            (1_000_000, false, 1),
            (2_000_000, true, 2),
            (1_000_000, false, 2)
        ]
    );
    // The Init comes right after the segment it ends.
    let pos = r
        .out
        .iter()
        .position(|o| matches!(o, Output::Init { version: 2, .. }))
        .unwrap();
    assert!(matches!(r.out[pos - 1], Output::Segment { msn: 2, .. }));
    check_contiguous(&r, VIDEO_TRACK_ID);
}

#[test]
fn long_gop_makes_long_segments_and_60s_forces_a_cut() {
    // 5 s GOP: segments follow the GOP; parts stay on the grid.
    let frames = timeline(Some((30, 1)), 150, Some(44_100), 15, 0, false);
    let r = run(
        SegmenterConfig::default(),
        Some(vcfg(1)),
        Some(acfg(44_100)),
        frames,
    );
    let segs = check(&r, 200);
    assert_eq!(
        segs.iter().map(|s| s.duration_us).collect::<Vec<_>>(),
        vec![5_000_000; 3]
    );
    assert_eq!(r.seg.stats().forced_cuts, 0);

    // No keyframe for 70 s: cut at 60 s anyway (memory bound), counted.
    let frames = timeline(Some((10, 1)), 10_000, None, 70, 0, false);
    let rec = RecMuxer::default();
    let mut seg = Segmenter::new(SegmenterConfig::default(), rec.clone(), 0, 1, false);
    let mut out = Vec::new();
    seg.video_config(vcfg(1), &mut out);
    for f in frames {
        seg.push(f, 0, &mut out);
    }
    seg.finish(&mut out);
    assert_eq!(seg.stats().forced_cuts, 1);
    let durs: Vec<u64> = out
        .iter()
        .filter_map(|o| match o {
            Output::Segment { duration_us, .. } => Some(*duration_us),
            _ => None,
        })
        .collect();
    assert_eq!(durs, vec![60_100_000, 9_900_000]);
}

#[test]
fn start_drops_leading_non_keyframes_and_early_audio() {
    let mut frames = vec![audio(900, 0), video(900, 10, 0, false), audio(901, 23)];
    frames.extend(timeline(Some((30, 1)), 30, Some(44_100), 3, 40, false));
    let r = run(
        SegmenterConfig::default(),
        Some(vcfg(1)),
        Some(acfg(44_100)),
        frames,
    );
    check(&r, 200);
    let (_, vs) = check_contiguous(&r, VIDEO_TRACK_ID);
    assert_eq!(ids(&vs)[0], 0);
    let (_, aus) = check_contiguous(&r, AUDIO_TRACK_ID);
    assert!(ids(&aus).iter().all(|i| *i < 900));
    assert!(r.seg.stats().dropped_frames >= 3);
}

#[test]
fn waits_for_announced_audio_then_goes_without_it() {
    // Audio config arrives 0.5 s in: the init has both tracks.
    let rec = RecMuxer::default();
    let mut seg = Segmenter::new(SegmenterConfig::default(), rec.clone(), 0, 1, false);
    let mut out = Vec::new();
    seg.expect_tracks(true, true);
    seg.video_config(vcfg(1), &mut out);
    for f in timeline(Some((30, 1)), 30, Some(44_100), 3, 0, false) {
        if f.dts_ms >= 500 && seg.audio_cfg.is_none() {
            seg.audio_config(acfg(44_100), &mut out);
        }
        seg.push(f, 0, &mut out);
    }
    seg.finish(&mut out);
    assert_eq!(rec.inits.borrow().as_slice(), &[(true, true)]);
    let r = Run_ { seg, rec, out };
    let segs = check(&r, 200);
    assert_eq!(segs[0].duration_us, 2_000_000, "buffered video kept");
    let (_, vs) = check_contiguous(&r, VIDEO_TRACK_ID);
    assert_eq!(vs.len(), 90);

    // Audio config never comes: start video-only after 1 s; when it comes later, a new
    // init with both tracks at the next keyframe.
    let rec = RecMuxer::default();
    let mut seg = Segmenter::new(SegmenterConfig::default(), rec.clone(), 0, 1, false);
    let mut out = Vec::new();
    seg.expect_tracks(true, true);
    seg.video_config(vcfg(1), &mut out);
    let mut started_at = None;
    for f in timeline(Some((30, 1)), 30, Some(44_100), 6, 0, false) {
        if f.dts_ms >= 2_500 && seg.audio_cfg.is_none() {
            seg.audio_config(acfg(44_100), &mut out);
        }
        let dts = f.dts_ms;
        seg.push(f, 0, &mut out);
        if started_at.is_none() && !out.is_empty() {
            started_at = Some(dts);
        }
    }
    seg.finish(&mut out);
    assert!(started_at.unwrap() >= 1_000 && started_at.unwrap() < 1_100);
    assert_eq!(
        rec.inits.borrow().as_slice(),
        &[(true, false), (true, true)]
    );
    let r = Run_ { seg, rec, out };
    let segs = check(&r, 200);
    let d: Vec<(u64, bool)> = segs
        .iter()
        .map(|s| (s.duration_us, s.discontinuity))
        .collect();
    assert_eq!(
        d,
        vec![
            (2_000_000, false),
            (1_000_000, false),
            (2_000_000, true),
            (1_000_000, false)
        ]
    );
}

#[test]
fn audio_only_when_video_never_comes() {
    let rec = RecMuxer::default();
    let mut seg = Segmenter::new(SegmenterConfig::default(), rec.clone(), 0, 1, false);
    let mut out = Vec::new();
    seg.expect_tracks(true, true);
    seg.audio_config(acfg(48_000), &mut out);
    for f in timeline(None, 1, Some(48_000), 4, 0, false) {
        seg.push(f, 0, &mut out);
    }
    seg.finish(&mut out);
    assert_eq!(rec.inits.borrow().as_slice(), &[(false, true)]);
    let r = Run_ { seg, rec, out };
    check(&r, 200);
    let (_, aus) = check_contiguous(&r, AUDIO_TRACK_ID);
    assert_eq!(aus.len(), 4 * 48_000 / 1024, "buffered audio kept");
}

#[test]
fn audio_gap_reanchors_and_bad_timestamps_never_panic() {
    let mut frames = timeline(Some((30, 1)), 30, Some(44_100), 6, 0, false);
    // Remove 0.5 s of audio around 2 s: a gap.
    frames.retain(|f| !(f.kind == TrackKind::Audio && f.dts_ms > 2_000 && f.dts_ms < 2_500));
    let r = run(
        SegmenterConfig::default(),
        Some(vcfg(1)),
        Some(acfg(44_100)),
        frames,
    );
    check(&r, 200);
    assert_eq!(r.seg.stats().audio_reanchors, 1);
    let frags = r.rec.fragments.borrow();
    // After the gap the audio decode time follows the RTMP timestamps again.
    let late = frags
        .iter()
        .flat_map(|f| f.runs.iter())
        .rfind(|r| r.track == AUDIO_TRACK_ID)
        .unwrap();
    let last_ms = (late.base + 1024 * (late.samples.len() as u64 - 1)) * 1000 / 44_100;
    assert!((5_900..6_000).contains(&last_ms), "{last_ms}");
    drop(frags);

    // Backwards, duplicate, negative and huge timestamps.
    let mut frames = Vec::new();
    let dts = [
        0i64,
        33,
        33,
        20,
        67,
        -5_000,
        100,
        133,
        i64::MAX / 4,
        200,
        5_000_000,
        5_000_033,
        0,
    ];
    for (i, d) in dts.iter().enumerate() {
        frames.push(video(i as u64, *d, -3, i == 0 || i == 9));
        frames.push(audio(i as u64, *d));
    }
    frames.push(audio(99, i64::MIN / 2));
    let r = run(
        SegmenterConfig::default(),
        Some(vcfg(1)),
        Some(acfg(44_100)),
        frames,
    );
    let (_, vs) = check_contiguous(&r, VIDEO_TRACK_ID);
    assert_eq!(vs.len(), dts.len());
    assert!(vs.iter().all(|s| s.duration > 0 && s.duration < 1_000_000));
    assert!(r.seg.stats().timestamp_resets >= 2);
}

#[test]
fn finish_with_a_single_frame_and_without_frames() {
    let rec = RecMuxer::default();
    let mut seg = Segmenter::new(SegmenterConfig::default(), rec.clone(), 0, 1, false);
    let mut out = Vec::new();
    seg.video_config(vcfg(1), &mut out);
    seg.push(video(0, 0, 0, true), 0, &mut out);
    seg.finish(&mut out);
    assert_eq!(out.len(), 3);
    assert!(matches!(
        out[2],
        Output::Segment {
            duration_us: 33_333,
            ..
        }
    ));

    let mut seg = Segmenter::new(SegmenterConfig::default(), RecMuxer::default(), 0, 1, false);
    let mut out = Vec::new();
    seg.finish(&mut out);
    assert!(out.is_empty());
}

#[test]
fn audio_queue_bounded_when_video_stalls() {
    let mut frames = timeline(Some((30, 1)), 30, Some(44_100), 1, 0, false);
    // Then 30 s of audio only.
    for k in 0..(30 * 44_100 / 1024) {
        frames.push(audio(10_000 + k, 1_000 + k as i64 * 1024 * 1000 / 44_100));
    }
    let rec = RecMuxer::default();
    let mut seg = Segmenter::new(SegmenterConfig::default(), rec.clone(), 0, 1, false);
    let mut out = Vec::new();
    seg.video_config(vcfg(1), &mut out);
    seg.audio_config(acfg(44_100), &mut out);
    for f in frames {
        seg.push(f, 0, &mut out);
        assert!(seg.audio_q.len() < 600);
    }
    assert!(seg.stats().audio_dropped_queue > 0);
}

#[test]
fn other_part_targets() {
    for (part, seg_ms) in [(100u32, 1_000u32), (333, 4_000), (1_000, 6_000)] {
        let frames = timeline(Some((30, 1)), 60, Some(48_000), 12, 0, false);
        let r = run(
            SegmenterConfig {
                segment_target_ms: seg_ms,
                part_target_ms: part,
            },
            Some(vcfg(1)),
            Some(acfg(48_000)),
            frames,
        );
        check(&r, part as u64);
    }
}

/// Frames of an ffprobe packet dump of a real FLV file (see tests/fixtures/segmenter).
fn flv_fixture(csv: &str) -> Vec<Frame> {
    let mut frames = Vec::new();
    let (mut v, mut a) = (0u64, 0u64);
    for line in csv.lines().filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split(',').collect();
        let pts: i64 = f[1].parse().unwrap();
        let dts: i64 = f[2].parse().unwrap();
        let size: usize = f[3].parse().unwrap();
        let key = f[4].starts_with('K');
        let (kind, i) = if f[0] == "video" {
            v += 1;
            (TrackKind::Video, v - 1)
        } else {
            a += 1;
            (TrackKind::Audio, a - 1)
        };
        let mut data = vec![if kind == TrackKind::Video { b'V' } else { b'A' }];
        data.extend_from_slice(&i.to_be_bytes());
        data.resize(size.max(9), 0);
        frames.push(Frame {
            kind,
            dts_ms: dts,
            cts_ms: (pts - dts) as i32,
            keyframe: kind == TrackKind::Audio || key,
            data: Bytes::from(data),
        });
    }
    frames
}

#[test]
fn real_flv_timeline_30fps_bframes() {
    let frames = flv_fixture(include_str!(
        "../../tests/fixtures/segmenter/flv_30fps_gop30_bf2_aac44k.csv"
    ));
    let nv = frames.iter().filter(|f| f.kind == TrackKind::Video).count();
    let na = frames.len() - nv;
    let cts: Vec<i32> = frames
        .iter()
        .filter(|f| f.kind == TrackKind::Video)
        .map(|f| f.cts_ms * 90)
        .collect();
    let r = run(
        SegmenterConfig::default(),
        Some(vcfg(1)),
        Some(acfg(44_100)),
        frames,
    );
    let segs = check(&r, 200);
    assert_eq!(
        segs.iter().map(|s| s.duration_us).collect::<Vec<_>>(),
        vec![2_000_000; 3]
    );
    let (_, vs) = check_contiguous(&r, VIDEO_TRACK_ID);
    assert_eq!(ids(&vs), (0..nv as u64).collect::<Vec<_>>());
    assert_eq!(vs.iter().map(|s| s.cts).collect::<Vec<_>>(), cts);
    let (_, aus) = check_contiguous(&r, AUDIO_TRACK_ID);
    assert_eq!(
        aus.len(),
        na,
        "AAC starts after the first keyframe: nothing dropped"
    );
    assert_eq!(r.seg.stats().audio_reanchors, 0);
}

#[test]
fn real_flv_timeline_2997fps() {
    // NTSC rates in ms: 6 frames are 200 or 201 ms, 5 frames 166/167 ms, so no part
    // can be both >= 170 and <= 200 ms every time; parts reach 201 ms.
    let frames = flv_fixture(include_str!(
        "../../tests/fixtures/segmenter/flv_2997fps_gop60_bf3_aac48k.csv"
    ));
    let r = run(
        SegmenterConfig::default(),
        Some(vcfg(1)),
        Some(acfg(48_000)),
        frames,
    );
    let segs = check_slack(&r, 200, 1_000);
    assert_eq!(segs.len(), 3);
    assert!(segs[..2]
        .iter()
        .all(|s| s.duration_us.abs_diff(2_002_000) <= 1_000));
    check_contiguous(&r, VIDEO_TRACK_ID);
    check_contiguous(&r, AUDIO_TRACK_ID);
}

#[test]
fn audio_only_start_then_video_joins() {
    let rec = RecMuxer::default();
    let mut seg = Segmenter::new(SegmenterConfig::default(), rec.clone(), 0, 1, false);
    let mut out = Vec::new();
    seg.expect_tracks(true, true);
    seg.audio_config(acfg(48_000), &mut out);
    let mut frames = timeline(Some((30, 1)), 30, Some(48_000), 8, 0, false);
    // Video only from 3 s on.
    frames.retain(|f| f.kind == TrackKind::Audio || f.dts_ms >= 3_000);
    for f in frames {
        if f.kind == TrackKind::Video && seg.video_cfg.is_none() {
            seg.video_config(vcfg(1), &mut out);
        }
        seg.push(f, 0, &mut out);
    }
    seg.finish(&mut out);
    assert_eq!(
        rec.inits.borrow().as_slice(),
        &[(false, true), (true, true)]
    );
    let r = Run_ { seg, rec, out };
    let segs = check(&r, 200);
    let first_video = segs.iter().position(|s| s.init_version == 2).unwrap();
    assert!(segs[first_video].discontinuity);
    assert!(segs[..first_video].iter().all(|s| s.init_version == 1));
    // Video starts at its first keyframe's time on the same clock (or where the last
    // audio-only segment ended, if later: the segments do not overlap).
    let frags = r.rec.fragments.borrow();
    let v = frags
        .iter()
        .flat_map(|f| f.runs.iter())
        .find(|r| r.track == VIDEO_TRACK_ID)
        .unwrap();
    assert!(v.base >= 3_000 * 90 && v.base < 3_024 * 90, "{}", v.base);
    drop(frags);
    check_contiguous(&r, AUDIO_TRACK_ID);
    check_contiguous(&r, VIDEO_TRACK_ID);
}
