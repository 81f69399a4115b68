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
fn check_slack(r: &Run_, part_target_ms_cfg: u64, slack_us: u64) -> Vec<SegInfo> {
    let frags = r.rec.fragments.borrow();
    let mut segs = Vec::new();
    let mut cur_parts: Vec<(u64, bool, Bytes)> = Vec::new();
    let mut part_pdts: Vec<(i64, u64)> = Vec::new();
    let mut inits_seen = 0;
    let mut msn_expected: Option<u64> = None;
    let mut init_version = 0;
    let mut ts_msn: Option<u64> = None;
    // The advertised PART-TARGET (us): never below the configured one.
    let mut pt_adv = 0u64;
    assert!(
        matches!(r.out.first(), Some(Output::Init { .. })),
        "first output must be Init"
    );
    for o in &r.out {
        match o {
            Output::Init {
                version,
                part_target_ms,
                ..
            } => {
                assert!(*part_target_ms as u64 >= part_target_ms_cfg);
                pt_adv = pt_adv.max(*part_target_ms as u64 * 1000);
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
                segment_pdt_ms,
            } => {
                assert!(inits_seen > 0);
                if let Some(&(pdt, _)) = part_pdts.last().filter(|(_, m)| *m == *msn) {
                    assert_eq!(pdt, *segment_pdt_ms, "parts of one segment carry one PDT");
                }
                part_pdts.push((*segment_pdt_ms, *msn));
                if let Some(m) = msn_expected {
                    assert_eq!(*msn, m, "part of an unexpected segment");
                }
                msn_expected = Some(*msn);
                assert_eq!(*part as usize, cur_parts.len(), "part numbering");
                cur_parts.push((*duration_us, *independent, data.clone()));
            }
            Output::TsSegment { msn, .. } => {
                assert_eq!(
                    Some(*msn),
                    msn_expected,
                    "TS segment of the current segment"
                );
                assert!(ts_msn.replace(*msn).is_none(), "one TS segment per segment");
            }
            Output::Segment {
                msn,
                duration_us,
                bytes,
                parts,
                program_date_time_ms,
                discontinuity,
                init_version: iv,
                independent,
                ..
            } => {
                assert_eq!(Some(*msn), msn_expected);
                // EXTINF rounds to at most TARGETDURATION.
                let td = r.seg.target_duration_s() as u64;
                assert!(
                    *duration_us <= td * 1_000_000 + 499_000,
                    "segment {msn}: {duration_us} us > TD {td}"
                );
                assert_eq!(
                    part_pdts.last().map(|p| p.0),
                    Some(*program_date_time_ms),
                    "a segment carries the PDT its parts announced"
                );
                if let Some(m) = ts_msn.take() {
                    assert_eq!(m, *msn, "TS segment right before its segment");
                }
                assert_eq!(*parts as usize, cur_parts.len());
                assert_eq!(*iv, init_version);
                let concat: Vec<u8> = cur_parts.iter().flat_map(|p| p.2.iter().copied()).collect();
                assert_eq!(*bytes, concat.len() as u64, "segment = its parts");
                let sum: u64 = cur_parts.iter().map(|p| p.0).sum();
                assert_eq!(sum, *duration_us, "parts add up to the segment");
                // Fragment sequence numbers inside the segment, and its first sample.
                let seqs = fragment_seqs(&concat);
                let first = frags.iter().find(|f| f.seq == seqs[0]).unwrap();
                if let Some(vrun) = first.runs.iter().find(|r| r.track == VIDEO_TRACK_ID) {
                    if *independent {
                        assert!(vrun.samples[0].keyframe, "segment {msn} starts with an IDR");
                    }
                    assert_eq!(
                        cur_parts[0].1, vrun.samples[0].keyframe,
                        "first part of segment {msn}"
                    );
                } else {
                    assert!(*independent);
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
    // Part durations within [0.85, 1] x target except the last of each segment (and
    // parts cut early around timestamp gaps).
    let t = pt_adv;
    let st = r.seg.stats();
    let gaps = st.early_part_cuts + st.gaps_shortened + st.timestamp_resets + st.audio_reanchors;
    for s in &segs {
        for (i, (d, _)) in s.parts.iter().enumerate() {
            assert!(
                *d <= t + slack_us,
                "segment {} part {i}: {d} us > target",
                s.msn
            );
            if i + 1 < s.parts.len() && gaps == 0 {
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
        let now = 1_000_000 + f.dts_ms - 123_456;
        seg.push(f, now, &mut out);
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

fn segment_durations_and_independence(out: &[Output]) -> Vec<(u64, bool)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Segment {
                duration_us,
                independent,
                ..
            } => Some((*duration_us, *independent)),
            _ => None,
        })
        .collect()
}

#[test]
fn long_gop_is_cut_within_target_duration_and_returns_to_the_gop() {
    // 5 s GOP with 2 s segments (TD 2): cut without a keyframe at a part boundary where
    // one more part could pass TD + 0.499 s; the next keyframe starts a segment again.
    let frames = timeline(Some((30, 1)), 150, Some(44_100), 15, 0, false);
    let r = run(
        SegmenterConfig::default(),
        Some(vcfg(1)),
        Some(acfg(44_100)),
        frames,
    );
    check(&r, 200);
    let s = segment_durations_and_independence(&r.out);
    let gop = [(2_400_000, true), (2_400_000, false), (200_000, false)];
    assert_eq!(s, [gop, gop, gop].concat());
    assert_eq!(r.seg.stats().forced_cuts, 6);
    assert_eq!(r.seg.target_duration_s(), 2);

    // No keyframe for 70 s: every segment still within TD.
    let frames = timeline(Some((10, 1)), 10_000, None, 70, 0, false);
    let r = run(SegmenterConfig::default(), Some(vcfg(1)), None, frames);
    check(&r, 200);
    let s = segment_durations_and_independence(&r.out);
    assert!(s.len() >= 28, "{s:?}");
    assert!(s.iter().all(|(d, _)| *d <= 2_499_000), "{s:?}");
    assert!(s[0].1 && s[1..].iter().all(|(_, i)| !i));
}

#[test]
fn irregular_gop_keyframes_at_0_2_4_7_10() {
    // The x264 stream of the bug report: `-force_key_frames 0,2,4,7,10`, 30 fps.
    let mut frames = Vec::new();
    for i in 0..360u64 {
        let key = [0, 60, 120, 210, 300].contains(&i);
        frames.push(video(i, (i as f64 * 1000.0 / 30.0).round() as i64, 0, key));
    }
    let r = run(SegmenterConfig::default(), Some(vcfg(1)), None, frames);
    check(&r, 200);
    let s = segment_durations_and_independence(&r.out);
    assert_eq!(
        s,
        vec![
            (2_000_000, true),
            (2_000_000, true),
            (2_400_000, true),
            (600_000, false),
            (2_400_000, true),
            (600_000, false),
            (2_000_000, true),
        ]
    );
    // With a TARGETDURATION kept from an earlier publish of 1 s segments: 1.4 s at most.
    let mut frames = Vec::new();
    for i in 0..360u64 {
        let key = [0, 60, 120, 210, 300].contains(&i);
        frames.push(video(i, (i as f64 * 1000.0 / 30.0).round() as i64, 0, key));
    }
    let rec = RecMuxer::default();
    let mut seg = Segmenter::new(SegmenterConfig::default(), rec.clone(), 0, 1, false);
    seg.set_target_duration(1);
    let mut out = Vec::new();
    seg.video_config(vcfg(1), &mut out);
    for f in frames {
        seg.push(f, 0, &mut out);
    }
    seg.finish(&mut out);
    let r = Run_ { seg, rec, out };
    check(&r, 200);
    let s = segment_durations_and_independence(&r.out);
    assert!(s.iter().all(|(d, _)| *d <= 1_499_000), "{s:?}");
    assert_eq!(
        &s[..3],
        &[(1_400_000, true), (600_000, false), (1_400_000, true)]
    );
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
                ts: false,
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
    // can be both >= 170 and <= 200 ms every time: PART-TARGET is 0.201.
    let frames = flv_fixture(include_str!(
        "../../tests/fixtures/segmenter/flv_2997fps_gop60_bf3_aac48k.csv"
    ));
    let r = run(
        SegmenterConfig::default(),
        Some(VideoConfig {
            frame_rate: Some(29.97),
            ..vcfg(1)
        }),
        Some(acfg(48_000)),
        frames,
    );
    assert_eq!(r.seg.part_target_ms(), 201);
    let segs = check(&r, 200);
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

#[test]
fn timestamp_jumps_do_not_stretch_the_timeline() {
    // One video frame stamped 2 s back, and later a 3 s forward jump of both tracks:
    // neither may add seconds to the timeline or keep a segment open past its target.
    let mut frames = timeline(Some((30, 1)), 30, Some(44_100), 6, 0, false);
    for f in frames.iter_mut() {
        if f.kind == TrackKind::Video && f.dts_ms == 1_500 {
            f.dts_ms -= 2_000;
        }
        if f.dts_ms >= 4_000 {
            f.dts_ms += 3_000;
        }
    }
    let r = run(
        SegmenterConfig {
            segment_target_ms: 1_000,
            part_target_ms: 200,
            ..SegmenterConfig::default()
        },
        Some(vcfg(1)),
        Some(acfg(44_100)),
        frames,
    );
    // A rebased frame may leave one part a few ms long: pathological input.
    let segs = check_slack(&r, 200, 5_000);
    let total: u64 = segs.iter().map(|s| s.duration_us).sum();
    assert!(
        (5_800_000..6_300_000).contains(&total),
        "timeline stretched to {total} us"
    );
    assert!(
        segs.iter().all(|s| s.duration_us <= 1_100_000),
        "{:?}",
        segs.iter().map(|s| s.duration_us).collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------- MPEG-TS

use crate::mux::ts;

/// An avcC record that `split_record` accepts (one SPS, one PPS).
fn ts_vcfg() -> VideoConfig {
    VideoConfig {
        record: Bytes::from_static(&[
            1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0, 0x1f, 1, 0, 2, 0x68, 0xee,
        ]),
        ..vcfg(1)
    }
}

fn ts_cfg() -> SegmenterConfig {
    SegmenterConfig {
        ts: true,
        ..SegmenterConfig::default()
    }
}

/// Per TS segment: (msn, duration, PES count of the video PID, of the audio PID, first
/// video DTS); checks packets, that PAT and PMT open it, and that it sits right before
/// the segment of the same msn with the same duration.
fn ts_segments(out: &[Output]) -> Vec<(u64, u64, usize, usize, Option<u64>)> {
    let mut v = Vec::new();
    for (i, o) in out.iter().enumerate() {
        let Output::TsSegment {
            msn,
            duration_us,
            data,
        } = o
        else {
            continue;
        };
        match out.get(i + 1) {
            Some(Output::Segment {
                msn: m,
                duration_us: d,
                ..
            }) => assert_eq!((m, d), (msn, duration_us)),
            other => panic!("TS segment {msn} followed by {other:?}"),
        }
        assert_eq!(data.len() % ts::PACKET_SIZE, 0);
        let pid = |p: &[u8]| u16::from_be_bytes([p[1] & 0x1F, p[2]]);
        let pkts: Vec<&[u8]> = data.chunks(ts::PACKET_SIZE).collect();
        assert!(pkts.iter().all(|p| p[0] == ts::SYNC_BYTE));
        assert_eq!(pid(pkts[0]), ts::PAT_PID);
        assert_eq!(pid(pkts[1]), ts::PMT_PID);
        let starts = |want: u16| {
            pkts.iter()
                .filter(|p| pid(p) == want && p[1] & 0x40 != 0 && p[3] & 0x10 != 0)
                .count()
        };
        // DTS (or PTS) of the first video PES: after the adaptation field, at 9 + 5.
        let first_dts = pkts
            .iter()
            .find(|p| pid(p) == ts::VIDEO_PID && p[1] & 0x40 != 0)
            .map(|p| {
                let body = if p[3] & 0x20 != 0 {
                    5 + p[4] as usize
                } else {
                    4
                };
                let pes = &p[body..];
                let at = if pes[7] & 0x40 != 0 { 14 } else { 9 };
                let b = &pes[at..at + 5];
                ((b[0] as u64 >> 1) & 7) << 30
                    | (b[1] as u64) << 22
                    | (b[2] as u64 >> 1) << 15
                    | (b[3] as u64) << 7
                    | b[4] as u64 >> 1
            });
        v.push((
            *msn,
            *duration_us,
            starts(ts::VIDEO_PID),
            starts(ts::AUDIO_PID),
            first_dts,
        ));
    }
    v
}

/// Video and audio samples in each segment's fragments, by msn.
fn samples_per_segment(r: &Run_) -> Vec<(u64, usize, usize, u64)> {
    let frags = r.rec.fragments.borrow();
    let mut v = Vec::new();
    let mut data: Vec<u8> = Vec::new();
    for o in &r.out {
        if let Output::Part { data: d, .. } = o {
            data.extend_from_slice(d);
        }
        if let Output::Segment { msn, .. } = o {
            let (mut nv, mut na, mut base) = (0, 0, None);
            for seq in fragment_seqs(&std::mem::take(&mut data)) {
                let f = frags.iter().find(|f| f.seq == seq).unwrap();
                for run in &f.runs {
                    if run.track == VIDEO_TRACK_ID {
                        base.get_or_insert(run.base);
                        nv += run.samples.len();
                    } else {
                        na += run.samples.len();
                    }
                }
            }
            v.push((*msn, nv, na, base.unwrap_or(0)));
        }
    }
    v
}

#[test]
fn ts_segments_carry_the_same_samples_and_cuts() {
    let frames = timeline(Some((30, 1)), 30, Some(44_100), 10, 1_000, true);
    let r = run(ts_cfg(), Some(ts_vcfg()), Some(acfg(44_100)), frames);
    assert!(r.seg.ts_active());
    let segs = check(&r, 200);
    let ts = ts_segments(&r.out);
    assert_eq!(ts.len(), segs.len(), "one TS segment per segment");
    for ((msn, dur, v, a, dts), (m, nv, na, base)) in ts.iter().zip(samples_per_segment(&r)) {
        assert_eq!(*msn, m);
        assert_eq!((*v, *a), (nv, na), "segment {msn}: one PES per sample");
        assert_eq!(*dts, Some(base + ts::TIMESTAMP_OFFSET), "segment {msn}");
        assert!(*dur > 0);
    }
    assert_eq!(r.seg.ts_stats(), ts::TsStats::default());
}

#[test]
fn ts_off_hevc_and_bad_records_make_no_ts() {
    let frames = || timeline(Some((30, 1)), 30, Some(48_000), 4, 0, false);
    // Off (the default).
    let r = run(
        SegmenterConfig::default(),
        Some(ts_vcfg()),
        Some(acfg(48_000)),
        frames(),
    );
    assert!(!r.seg.ts_active());
    assert!(ts_segments(&r.out).is_empty());
    // HEVC: fMP4 only.
    let hevc = VideoConfig {
        codec: VideoCodec::H265,
        ..ts_vcfg()
    };
    let r = run(ts_cfg(), Some(hevc), Some(acfg(48_000)), frames());
    assert!(!r.seg.ts_active());
    assert!(ts_segments(&r.out).is_empty());
    assert_eq!(check(&r, 200).len(), 2, "fMP4 unaffected");
    // An avcC the TS writer cannot split.
    let r = run(ts_cfg(), Some(vcfg(1)), Some(acfg(48_000)), frames());
    assert!(ts_segments(&r.out).is_empty());
}

#[test]
fn ts_audio_only_then_video_joins() {
    let rec = RecMuxer::default();
    let mut seg = Segmenter::new(ts_cfg(), rec.clone(), 0, 1, false);
    let mut out = Vec::new();
    seg.expect_tracks(true, true);
    seg.audio_config(acfg(48_000), &mut out);
    let mut frames = timeline(Some((30, 1)), 30, Some(48_000), 8, 0, false);
    frames.retain(|f| f.kind == TrackKind::Audio || f.dts_ms >= 3_000);
    for f in frames {
        if f.kind == TrackKind::Video && seg.video_cfg.is_none() {
            seg.video_config(ts_vcfg(), &mut out);
        }
        seg.push(f, 0, &mut out);
    }
    seg.finish(&mut out);
    let r = Run_ { seg, rec, out };
    let segs = check(&r, 200);
    let ts = ts_segments(&r.out);
    assert_eq!(ts.len(), segs.len());
    let counts = samples_per_segment(&r);
    for (t, c) in ts.iter().zip(&counts) {
        assert_eq!((t.2, t.3), (c.1, c.2), "segment {}", t.0);
    }
    assert!(
        ts.iter().any(|t| t.2 == 0 && t.3 > 0),
        "audio-only TS segments"
    );
    assert!(ts.iter().any(|t| t.2 > 0), "A/V TS segments after the join");
}

#[test]
fn ts_stops_when_the_codec_changes_to_hevc() {
    let rec = RecMuxer::default();
    let mut seg = Segmenter::new(ts_cfg(), rec.clone(), 0, 1, false);
    let mut out = Vec::new();
    seg.video_config(ts_vcfg(), &mut out);
    seg.audio_config(acfg(48_000), &mut out);
    for f in timeline(Some((30, 1)), 30, Some(48_000), 8, 0, false) {
        if f.kind == TrackKind::Video && f.dts_ms >= 4_000 && f.keyframe {
            let hevc = VideoConfig {
                codec: VideoCodec::H265,
                ..ts_vcfg()
            };
            seg.video_config(hevc, &mut out);
        }
        seg.push(f, 0, &mut out);
    }
    seg.finish(&mut out);
    assert!(!seg.ts_active());
    let r = Run_ { seg, rec, out };
    let segs = check(&r, 200);
    let ts = ts_segments(&r.out);
    let with_ts: Vec<u64> = ts.iter().map(|t| t.0).collect();
    let h264: Vec<u64> = segs
        .iter()
        .filter(|s| s.init_version == 1)
        .map(|s| s.msn)
        .collect();
    assert_eq!(with_ts, h264);
    assert!(segs.len() > h264.len());
}

#[test]
fn part_target_at_common_frame_rates() {
    // (fps, advertised PART-TARGET for a 200 ms part target, frames per part)
    let rates: [((u64, u64), u32, usize); 8] = [
        ((24_000, 1_001), 209, 5),
        ((24, 1), 209, 5),
        ((25, 1), 200, 5),
        ((30_000, 1_001), 201, 6),
        ((30, 1), 200, 6),
        ((50, 1), 200, 10),
        ((60_000, 1_001), 201, 12),
        ((60, 1), 200, 12),
    ];
    for ((num, den), pt, n) in rates {
        let fps = num as f64 / den as f64;
        let gop = (2.0 * fps).round() as u64;
        for signalled in [Some(fps), Some((fps * 100.0).round() / 100.0)] {
            let frames = timeline(Some((num, den)), gop, Some(48_000), 12, 0, true);
            let r = run(
                SegmenterConfig::default(),
                Some(VideoConfig {
                    frame_rate: signalled,
                    ..vcfg(1)
                }),
                Some(acfg(48_000)),
                frames,
            );
            assert_eq!(r.seg.part_target_ms(), pt, "{fps} fps {signalled:?}");
            // check(): every part <= PART-TARGET, every part but a segment's last >= 85%.
            let segs = check(&r, 200);
            assert_eq!(r.seg.stats().early_part_cuts, 0, "{fps} fps");
            assert_eq!(r.seg.stats().forced_cuts, 0, "{fps} fps");
            let frags = r.rec.fragments.borrow();
            let full = frags
                .iter()
                .filter_map(|f| f.runs.iter().find(|r| r.track == VIDEO_TRACK_ID))
                .filter(|v| v.samples.len() == n)
                .count();
            assert!(
                full * 10 >= frags.len() * 8,
                "{fps} fps: {n} frames per part"
            );
            for s in &segs[..segs.len() - 1] {
                assert!(s.duration_us.abs_diff(2_000_000) <= 5_000, "{fps} fps");
            }
        }
    }
    // Audio-only: whole AAC frames.
    let r = run(
        SegmenterConfig::default(),
        None,
        Some(acfg(48_000)),
        timeline(None, 1, Some(48_000), 5, 0, false),
    );
    assert_eq!(r.seg.part_target_ms(), 214);
    check(&r, 200);
}

#[test]
fn timestamp_gaps_never_make_an_over_long_part() {
    // 30 fps with gaps of 150 ms, 400 ms and 900 ms (an `-stream_loop` wrap, a stall).
    for gap in [150i64, 400, 900] {
        for fps_known in [false, true] {
            let mut frames = Vec::new();
            for i in 0..300u64 {
                let mut dts = (i as f64 * 1000.0 / 30.0).round() as i64;
                if i >= 100 {
                    dts += gap;
                }
                frames.push(video(i, dts, 0, i % 60 == 0));
            }
            let r = run(
                SegmenterConfig::default(),
                Some(VideoConfig {
                    frame_rate: fps_known.then_some(30.0),
                    ..vcfg(1)
                }),
                None,
                frames,
            );
            // check(): no part over PART-TARGET, no segment over TD + 0.499 s.
            check(&r, 200);
            let st = r.seg.stats();
            assert!(st.early_part_cuts + st.gaps_shortened > 0, "gap {gap}");
            let (_, vs) = check_contiguous(&r, VIDEO_TRACK_ID);
            assert_eq!(vs.len(), 300);
        }
    }
}

fn hevc_cfg() -> VideoConfig {
    VideoConfig {
        codec: VideoCodec::H265,
        record: Bytes::from_static(&[1, 1, 0x60]),
        nalu_length_size: 4,
        width: 1280,
        height: 720,
        frame_rate: Some(30.0),
        codec_string: "hvc1.1.6.L93.B0".into(),
    }
}

fn hevc_frame(i: u64, dts_ms: i64, cts_ms: i32, nal_type: u8) -> Frame {
    let mut d = vec![0, 0, 0, 10, nal_type << 1, 1];
    d.extend_from_slice(&i.to_be_bytes());
    Frame {
        kind: TrackKind::Video,
        dts_ms,
        cts_ms,
        keyframe: matches!(nal_type, 16..=23),
        data: Bytes::from(d),
    }
}

#[test]
fn hevc_open_gop_cuts_at_every_cra() {
    // x265 defaults, -g 60 at 30 fps: IDR, then a CRA every 2 s that decodes two frames
    // before its presentation time, followed by its two RASL pictures.
    let ms = |i: u64| (i as f64 * 1000.0 / 30.0).round() as i64;
    let mut frames = Vec::new();
    for i in 0..360u64 {
        let (nal, pts_i) = if i == 0 {
            (19, i) // IDR_W_RADL
        } else if (i + 2) % 60 == 0 {
            (21, i + 2) // CRA shown at 2 s, 4 s, ...
        } else if (i + 1) % 60 == 0 || i % 60 == 0 {
            (8, i - 1) // RASL_N, shown before the CRA
        } else {
            (1, i) // TRAIL_R
        };
        frames.push(hevc_frame(i, ms(i), (ms(pts_i) - ms(i)) as i32, nal));
    }
    let r = run(SegmenterConfig::default(), Some(hevc_cfg()), None, frames);
    check(&r, 200);
    let s = segment_durations_and_independence(&r.out);
    assert_eq!(s.len(), 7, "{s:?}");
    // The first segment ends at the first CRA's decode time (1.933 s); then 2 s each.
    assert_eq!(s[0], (1_933_000, true));
    for (d, indep) in &s[1..6] {
        assert!(d.abs_diff(2_000_000) <= 1_000, "{s:?}");
        assert!(!indep, "a segment with RASL pictures is not independent");
    }
    assert_eq!(r.seg.stats().forced_cuts, 0);
    assert_eq!(r.seg.target_duration_s(), 2);
}

#[test]
fn pdt_stays_near_the_arrival_time_when_the_publisher_bursts() {
    // 20 s of media sent in 2 s (ten times real time), then real time.
    let frames = timeline(Some((30, 1)), 30, Some(48_000), 30, 0, false);
    let t0 = 1_780_000_000_000i64;
    let rec = RecMuxer::default();
    let mut seg = Segmenter::new(SegmenterConfig::default(), rec.clone(), 0, 1, false);
    let mut out = Vec::new();
    seg.video_config(vcfg(1), &mut out);
    seg.audio_config(acfg(48_000), &mut out);
    let arrival = |dts: i64| {
        if dts < 20_000 {
            t0 + dts / 10
        } else {
            t0 + 2_000 + (dts - 20_000)
        }
    };
    let mut firsts = Vec::new();
    for f in frames {
        let now = arrival(f.dts_ms);
        let before = out.len();
        let dts = f.dts_ms;
        seg.push(f, now, &mut out);
        for o in &out[before..] {
            if let Output::Part {
                part: 0,
                segment_pdt_ms,
                ..
            } = o
            {
                firsts.push((*segment_pdt_ms, now, dts));
            }
        }
    }
    seg.finish(&mut out);
    assert!(seg.stats().pdt_reanchors > 0);
    let pdts: Vec<i64> = out
        .iter()
        .filter_map(|o| match o {
            Output::Segment {
                program_date_time_ms,
                ..
            } => Some(*program_date_time_ms),
            _ => None,
        })
        .collect();
    assert!(pdts.windows(2).all(|w| w[1] > w[0]), "PDT increases");
    // Every segment is dated at most PDT_MAX_AHEAD_MS after the wall clock of the frame
    // that closed its first part (which arrives after the segment's first frame).
    for (pdt, now, dts) in &firsts {
        assert!(
            *pdt <= now + PDT_MAX_AHEAD_MS,
            "dts {dts}: pdt {pdt} now {now}"
        );
    }
    // After the burst, dates follow media time again (no further pull-back).
    let tail: Vec<i64> = pdts[pdts.len() - 4..].to_vec();
    assert!(tail.windows(2).all(|w| (w[1] - w[0] - 2_000).abs() <= 5));
}

#[test]
fn part_target_fits_an_inherited_target_duration() {
    // Found by fuzzing. A republish inherits TARGETDURATION 1 while the settings now ask
    // for 2048 ms parts and segments: parts and segments still fit TD + 0.499 s.
    let cfg = SegmenterConfig {
        segment_target_ms: 800,
        part_target_ms: 2_048,
        ts: false,
    };
    let rec = RecMuxer::default();
    let mut seg = Segmenter::new(cfg, rec.clone(), 0, 1, false);
    seg.set_target_duration(1);
    let mut out = Vec::new();
    seg.video_config(
        VideoConfig {
            frame_rate: Some(30.0),
            ..vcfg(1)
        },
        &mut out,
    );
    for f in timeline(Some((30, 1)), 90, None, 8, 0, false) {
        seg.push(f, 0, &mut out);
    }
    seg.finish(&mut out);
    assert_eq!(seg.part_target_ms(), 1_000);
    let r = Run_ { seg, rec, out };
    check(&r, 1_000);

    // Audio-only at 8 kHz (128 ms frames), same settings: 7 frames (896 ms) a part,
    // not 8 (1024 ms).
    let cfg = SegmenterConfig {
        segment_target_ms: 600,
        part_target_ms: 1_080,
        ts: false,
    };
    let rec = RecMuxer::default();
    let mut seg = Segmenter::new(cfg, rec.clone(), 0, 1, false);
    seg.set_target_duration(1);
    let mut out = Vec::new();
    seg.audio_config(acfg(8_000), &mut out);
    for f in timeline(None, 1, Some(8_000), 8, 0, false) {
        seg.push(f, 0, &mut out);
    }
    seg.finish(&mut out);
    assert_eq!(seg.part_target_ms(), 1_000);
    let r = Run_ { seg, rec, out };
    for o in &r.out {
        if let Output::Part { duration_us, .. } = o {
            assert!(*duration_us <= 1_000_000, "{duration_us}");
        }
    }
}

/// A fresh stream's first segment is cut at the first keyframe from half the segment
/// target; the rest follow the target. A GOP as long as the target gains nothing.
#[test]
fn fresh_stream_first_segment_is_short() {
    let go = |gop: u64, shorten: bool| {
        let rec = RecMuxer::default();
        let mut seg = Segmenter::new(SegmenterConfig::default(), rec.clone(), 0, 1, false);
        if shorten {
            seg.shorten_first_segment();
        }
        let mut out = Vec::new();
        seg.expect_tracks(true, true);
        seg.video_config(vcfg(1), &mut out);
        seg.audio_config(acfg(44_100), &mut out);
        for (n, f) in timeline(Some((30, 1)), gop, Some(44_100), 10, 1_000, false)
            .into_iter()
            .enumerate()
        {
            let now = 1_780_000_000_000 + f.dts_ms + (n as i64 % 3);
            seg.push(f, now, &mut out);
        }
        seg.finish(&mut out);
        let r = Run_ { seg, rec, out };
        check(&r, 200)
            .iter()
            .map(|s| s.duration_us)
            .collect::<Vec<_>>()
    };
    // 1 s GOP: 1 s, then 2 s segments.
    assert_eq!(
        go(30, true),
        [1_000_000, 2_000_000, 2_000_000, 2_000_000, 2_000_000, 1_000_000]
    );
    assert_eq!(go(30, false), [2_000_000; 5]);
    // 0.5 s GOP: cut at 1 s too.
    assert_eq!(go(15, true)[..2], [1_000_000, 2_000_000]);
    // 2 s GOP: the first keyframe after 1 s is at 2 s.
    assert_eq!(go(60, true), [2_000_000; 5]);
    // Once started, the call changes nothing (a republish keeps its cadence).
    let rec = RecMuxer::default();
    let mut seg = Segmenter::new(SegmenterConfig::default(), rec, 0, 1, true);
    let mut out = Vec::new();
    seg.expect_tracks(true, false);
    seg.video_config(vcfg(1), &mut out);
    for f in timeline(Some((30, 1)), 30, None, 1, 0, false) {
        let now = 1_780_000_000_000 + f.dts_ms;
        seg.push(f, now, &mut out);
    }
    seg.shorten_first_segment();
    assert!(!seg.short_first);
}

// ---------------------------------------------------------------- Opus

/// TOC bytes: 20 ms (CELT FB, stereo, one frame), 40 ms (two such frames, code 1),
/// 60 ms (SILK NB 60 ms, stereo, one frame), 10 ms (CELT FB 10 ms).
const OPUS_20: u8 = 0xFC;
const OPUS_40: u8 = 0xFD;
const OPUS_60: u8 = 0x1C;
const OPUS_10: u8 = 0xF4;

fn opus_ms(toc: u8) -> i64 {
    crate::codec::opus::packet_samples(&[toc, 0, 0]).unwrap() as i64 / 48
}

/// An Opus packet: the TOC byte, then the id (as [`ids`] reads it; 8 bytes, so that a
/// code 1 packet splits evenly).
fn opus_packet(i: u64, dts_ms: i64, toc: u8) -> Frame {
    let mut d = vec![toc];
    d.extend_from_slice(&i.to_be_bytes());
    Frame {
        kind: TrackKind::Audio,
        dts_ms,
        cts_ms: 0,
        keyframe: true,
        data: Bytes::from(d),
    }
}

/// Opus packets back to back from `t0` for at least `secs` seconds, cycling through
/// `tocs`, each stamped with its start (ms); also their durations in samples.
fn opus_timeline(tocs: &[u8], secs: i64, t0: i64) -> (Vec<Frame>, Vec<u32>) {
    let (mut frames, mut durs) = (Vec::new(), Vec::new());
    let mut ms = 0;
    for (i, &toc) in tocs.iter().cycle().enumerate() {
        if ms >= secs * 1_000 {
            break;
        }
        frames.push(opus_packet(i as u64, t0 + ms, toc));
        durs.push(opus_ms(toc) as u32 * 48);
        ms += opus_ms(toc);
    }
    (frames, durs)
}

/// Interleaves by dts, audio first on ties.
fn interleave(mut frames: Vec<Frame>) -> Vec<Frame> {
    frames.sort_by_key(|f| (f.dts_ms, f.kind == TrackKind::Video));
    frames
}

const MIXED: [u8; 7] = [
    OPUS_20, OPUS_20, OPUS_40, OPUS_20, OPUS_40, OPUS_40, OPUS_20,
];

#[test]
fn opus_sample_durations_follow_each_packet() {
    let (opus, durs) = opus_timeline(&MIXED, 6, 1_000);
    let n = opus.len() as u64;
    let mut frames = timeline(Some((30, 1)), 30, None, 6, 1_000, false);
    frames.extend(opus);
    let r = run(
        SegmenterConfig::default(),
        Some(vcfg(1)),
        Some(crate::codec::opus::config(2, 312)),
        interleave(frames),
    );
    check(&r, 200);
    let st = r.seg.stats();
    assert_eq!((st.audio_reanchors, st.audio_dropped_drift), (0, 0));
    // Every packet, in order, lasting what its TOC says; each fragment's audio run
    // starts (tfdt) where the previous one ended.
    let (end, aus) = check_contiguous(&r, AUDIO_TRACK_ID);
    assert_eq!(ids(&aus), (0..n).collect::<Vec<_>>());
    let got: Vec<u32> = aus.iter().map(|s| s.duration).collect();
    assert_eq!(got, durs);
    let frags = r.rec.fragments.borrow();
    let runs: Vec<&RecRun> = frags
        .iter()
        .flat_map(|f| &f.runs)
        .filter(|r| r.track == AUDIO_TRACK_ID)
        .collect();
    assert_eq!(runs[0].base, 0, "audio starts with the video");
    assert_eq!(end, durs.iter().map(|&d| d as u64).sum::<u64>());
    for w in runs.windows(2) {
        let sum: u64 = w[0].samples.iter().map(|s| s.duration as u64).sum();
        assert_eq!(
            w[1].base,
            w[0].base + sum,
            "tfdt = previous tfdt + trun durations"
        );
    }
    assert!(
        runs.iter().any(|r| {
            let d: Vec<u32> = r.samples.iter().map(|s| s.duration).collect();
            d.contains(&960) && d.contains(&1_920)
        }),
        "fragments mix 20 and 40 ms packets"
    );
    // Decode time follows the packets' timestamps: 48 samples a millisecond.
    assert_eq!(runs.last().unwrap().base % 48, 0);
}

#[test]
fn opus_audio_only_parts_stay_within_the_part_target() {
    // Packets of 10 to 60 ms: a packet that would end past PART-TARGET starts the
    // next part.
    let tocs = [
        OPUS_20, OPUS_60, OPUS_10, OPUS_40, OPUS_60, OPUS_60, OPUS_20,
    ];
    let (frames, durs) = opus_timeline(&tocs, 7, 0);
    let n = frames.len() as u64;
    let r = run(
        SegmenterConfig::default(),
        None,
        Some(crate::codec::opus::config(2, 0)),
        frames,
    );
    let segs = check(&r, 200);
    assert!(segs.len() >= 3);
    let Some(Output::Init { part_target_ms, .. }) = r.out.first() else {
        panic!("no init");
    };
    assert_eq!(*part_target_ms, 200, "ten 20 ms packets");
    assert!(r.seg.stats().early_part_cuts > 0);
    for s in &segs {
        assert!(s.parts.iter().all(|p| p.0 <= 200_000 && p.1));
    }
    let (end, aus) = check_contiguous(&r, AUDIO_TRACK_ID);
    assert_eq!(ids(&aus), (0..n).collect::<Vec<_>>());
    assert_eq!(
        aus.iter().map(|s| s.duration).collect::<Vec<_>>(),
        durs,
        "every packet its own duration"
    );
    assert_eq!(end, durs.iter().map(|&d| d as u64).sum::<u64>());
    let total_us: u64 = segs.iter().map(|s| s.duration_us).sum();
    assert_eq!(total_us, end * 1_000 / 48);
}

#[test]
fn opus_packets_longer_than_a_small_part_target() {
    // 120 ms packets (code 3, two 60 ms frames) with a 50 ms part target: PART-TARGET
    // becomes 120 ms so that a packet fits in a part.
    let mut frames = Vec::new();
    for i in 0..40u64 {
        let toc = if i % 3 == 0 { OPUS_20 } else { 0x1F };
        let mut f = opus_packet(i, 0, toc);
        let mut d = f.data.to_vec();
        d.insert(1, 2); // M = 2 (ignored by a code 0 packet's duration)
        f.data = Bytes::from(d);
        frames.push(f);
    }
    let mut ms = 0;
    for f in &mut frames {
        f.dts_ms = ms;
        ms += crate::codec::opus::packet_samples(&f.data).unwrap() as i64 / 48;
    }
    let cfg = SegmenterConfig {
        part_target_ms: 50,
        segment_target_ms: 1_000,
        ts: false,
    };
    let r = run(cfg, None, Some(crate::codec::opus::config(1, 0)), frames);
    let Some(Output::Init { part_target_ms, .. }) = r.out.first() else {
        panic!("no init");
    };
    assert_eq!(*part_target_ms, 120);
    check(&r, 50);
    let (end, aus) = check_contiguous(&r, AUDIO_TRACK_ID);
    assert_eq!(aus.len(), 40);
    assert_eq!(end, ms as u64 * 48);
}

#[test]
fn opus_gap_in_an_audio_only_stream() {
    // 400 ms without packets (DTX, packet loss): re-anchored, the segment ends where
    // the audio ends and the next one starts after the gap.
    let (mut frames, _) = opus_timeline(&[OPUS_20], 6, 0);
    frames.retain(|f| !(3_000..3_400).contains(&f.dts_ms));
    let r = run(
        SegmenterConfig::default(),
        None,
        Some(crate::codec::opus::config(2, 0)),
        frames,
    );
    assert_eq!(r.seg.stats().audio_reanchors, 1);
    // (Not `check`: the PDT steps over the gap.)
    let segs: Vec<(i64, u64)> = r
        .out
        .iter()
        .filter_map(|o| match o {
            Output::Segment {
                program_date_time_ms,
                duration_us,
                ..
            } => Some((*program_date_time_ms, *duration_us)),
            _ => None,
        })
        .collect();
    let pdt0 = segs[0].0;
    let i = segs
        .iter()
        .position(|(pdt, d)| pdt - pdt0 + (*d / 1_000) as i64 == 3_000)
        .expect("a segment ends where the audio stops");
    assert_eq!(segs[i + 1].0 - pdt0, 3_400, "the next starts after the gap");
    let frags = r.rec.fragments.borrow();
    let runs: Vec<&RecRun> = frags
        .iter()
        .flat_map(|f| &f.runs)
        .filter(|r| r.track == AUDIO_TRACK_ID)
        .collect();
    assert!(runs
        .iter()
        .all(|r| r.samples.iter().all(|s| s.duration == 960)));
    assert!(runs.iter().any(|r| r.base == 3_400 * 48), "after the gap");
}

#[test]
fn opus_with_ts_on_serves_fmp4_only() {
    let (opus, _) = opus_timeline(&MIXED, 5, 0);
    let mut frames = timeline(Some((30, 1)), 30, None, 5, 0, false);
    frames.extend(opus);
    // A sample rate other than 48 kHz in an Opus config is taken as 48 kHz.
    let mut opus_cfg = crate::codec::opus::config(2, 312);
    opus_cfg.sample_rate = 16_000;
    let r = run(
        ts_cfg(),
        Some(ts_vcfg()),
        Some(opus_cfg),
        interleave(frames),
    );
    assert!(!r.seg.ts_active());
    assert!(ts_segments(&r.out).is_empty(), "no TS segment");
    assert_eq!(r.seg.ts_stats(), ts::TsStats::default());
    let segs = check(&r, 200);
    assert!(segs.len() >= 2, "fMP4 segments");
    let Some(Output::Init { audio, .. }) = r.out.first() else {
        panic!("no init");
    };
    assert_eq!(audio.as_ref().unwrap().sample_rate, 48_000);
    let (_, aus) = check_contiguous(&r, AUDIO_TRACK_ID);
    assert!(!aus.is_empty());

    // The same with H.264 + AAC first, then Opus: TS stops at the new init section.
    let rec = RecMuxer::default();
    let mut seg = Segmenter::new(ts_cfg(), rec.clone(), 0, 1, false);
    let mut out = Vec::new();
    seg.video_config(ts_vcfg(), &mut out);
    seg.audio_config(acfg(48_000), &mut out);
    let mut switched = false;
    for f in timeline(Some((30, 1)), 30, Some(48_000), 8, 0, false) {
        if f.dts_ms >= 4_000 && !switched {
            seg.audio_config(crate::codec::opus::config(2, 312), &mut out);
            switched = true;
        }
        let f = if f.kind == TrackKind::Audio && switched {
            opus_packet(0, f.dts_ms, OPUS_20)
        } else {
            f
        };
        seg.push(f, 0, &mut out);
    }
    seg.finish(&mut out);
    assert!(!seg.ts_active());
    let r = Run_ { seg, rec, out };
    let segs = check(&r, 200);
    let with_ts: Vec<u64> = ts_segments(&r.out).iter().map(|t| t.0).collect();
    let aac: Vec<u64> = segs
        .iter()
        .filter(|s| s.init_version == 1)
        .map(|s| s.msn)
        .collect();
    assert_eq!(with_ts, aac);
    assert!(segs.len() > aac.len(), "fMP4 goes on with Opus");
}
