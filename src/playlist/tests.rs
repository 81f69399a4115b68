//! Playlist rules from LL-HLS-CHECKLIST.md, each checked on parsed output of streams
//! that went through the real segmenter and index.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};

use super::*;
use crate::media::{AudioCodec, AudioConfig, Frame, TrackKind, VideoCodec, VideoConfig};
use crate::mux::fmp4::Run;
use crate::segmenter::{Muxer, Output, Segmenter, SegmenterConfig};
use crate::store::{StreamSettings, Table};

// ------------------------------------------------------------------ a small parser

#[derive(Debug, Default, Clone)]
struct Part {
    duration: f64,
    uri: String,
    independent: bool,
}

#[derive(Debug, Default, Clone)]
struct Seg {
    discontinuity: bool,
    map: Option<String>,
    pdt: Option<String>,
    parts: Vec<Part>,
    /// Order of tags seen before the first EXT-X-PART, by name.
    before_parts: Vec<String>,
    after_first_part: Vec<String>,
    extinf: f64,
    uri: String,
}

#[derive(Debug, Default)]
struct Parsed {
    version: Option<u32>,
    target_duration: Option<u64>,
    media_sequence: Option<u64>,
    discontinuity_sequence: Option<u64>,
    independent_segments: bool,
    server_control: HashMap<String, String>,
    part_target: Option<f64>,
    skipped: Option<u64>,
    segments: Vec<Seg>,
    /// The segment being built (parts without EXTINF yet).
    partial: Seg,
    preload_hint: Option<HashMap<String, String>>,
    endlist: bool,
    stream_inf: Vec<(HashMap<String, String>, String)>,
    all_tags: Vec<String>,
}

fn attrs(s: &str) -> HashMap<String, String> {
    let mut m = HashMap::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (k, r) = rest.split_once('=').expect("attribute without =");
        let (v, r) = if let Some(r) = r.strip_prefix('"') {
            let end = r.find('"').expect("unterminated quoted string");
            (r[..end].to_string(), &r[end + 1..])
        } else {
            match r.find(',') {
                Some(i) => (r[..i].to_string(), &r[i..]),
                None => (r.to_string(), ""),
            }
        };
        assert!(
            k.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-'),
            "attribute name {k:?}"
        );
        assert!(
            m.insert(k.to_string(), v).is_none(),
            "repeated attribute {k}"
        );
        rest = r.strip_prefix(',').unwrap_or(r);
        assert!(
            r.is_empty() || r.starts_with(','),
            "junk after attribute: {r:?}"
        );
    }
    m
}

fn parse(text: &str) -> Parsed {
    assert!(text.starts_with("#EXTM3U\n"), "starts with #EXTM3U");
    assert!(text.ends_with('\n'));
    assert!(!text.contains('\r'), "LF line endings only");
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "no control characters"
    );
    assert!(!text.contains("_HLS_"), "no _HLS_ parameter in output");
    let mut p = Parsed::default();
    let mut cur = Seg::default();
    let mut pending_extinf: Option<f64> = None;
    let mut pending_stream_inf: Option<HashMap<String, String>> = None;
    for line in text.lines().skip(1) {
        assert!(!line.is_empty(), "no blank lines in what we emit");
        assert_eq!(line.trim(), line, "no stray whitespace: {line:?}");
        if !line.starts_with('#') {
            if let Some(si) = pending_stream_inf.take() {
                p.stream_inf.push((si, line.to_string()));
                continue;
            }
            cur.extinf = pending_extinf.take().expect("URI without EXTINF");
            cur.uri = line.to_string();
            p.segments.push(std::mem::take(&mut cur));
            continue;
        }
        assert!(line.starts_with("#EXT"), "only tags, no comments: {line}");
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        p.all_tags.push(name.to_string());
        if !cur.parts.is_empty() && name != "#EXT-X-PART" {
            cur.after_first_part.push(name.to_string());
        }
        match name {
            "#EXT-X-VERSION" => p.version = Some(value.parse().unwrap()),
            "#EXT-X-TARGETDURATION" => p.target_duration = Some(value.parse().unwrap()),
            "#EXT-X-MEDIA-SEQUENCE" => p.media_sequence = Some(value.parse().unwrap()),
            "#EXT-X-DISCONTINUITY-SEQUENCE" => {
                p.discontinuity_sequence = Some(value.parse().unwrap())
            }
            "#EXT-X-INDEPENDENT-SEGMENTS" => p.independent_segments = true,
            "#EXT-X-SERVER-CONTROL" => p.server_control = attrs(value),
            "#EXT-X-PART-INF" => p.part_target = Some(attrs(value)["PART-TARGET"].parse().unwrap()),
            "#EXT-X-SKIP" => p.skipped = Some(attrs(value)["SKIPPED-SEGMENTS"].parse().unwrap()),
            "#EXT-X-DISCONTINUITY" => {
                cur.discontinuity = true;
                cur.before_parts.push(name.into());
            }
            "#EXT-X-MAP" => {
                cur.map = Some(attrs(value)["URI"].clone());
                cur.before_parts.push(name.into());
            }
            "#EXT-X-PROGRAM-DATE-TIME" => {
                cur.pdt = Some(value.to_string());
                cur.before_parts.push(name.into());
            }
            "#EXT-X-PART" => {
                let a = attrs(value);
                cur.parts.push(Part {
                    duration: a["DURATION"].parse().unwrap(),
                    uri: a["URI"].clone(),
                    independent: a.get("INDEPENDENT").map(|v| v == "YES").unwrap_or(false),
                });
            }
            "#EXTINF" => {
                let v = value.strip_suffix(',').expect("EXTINF ends with a comma");
                pending_extinf = Some(v.parse().unwrap());
            }
            "#EXT-X-PRELOAD-HINT" => p.preload_hint = Some(attrs(value)),
            "#EXT-X-ENDLIST" => p.endlist = true,
            "#EXT-X-STREAM-INF" => pending_stream_inf = Some(attrs(value)),
            other => panic!("unexpected tag {other}"),
        }
    }
    assert!(pending_extinf.is_none());
    p.partial = cur;
    p
}

fn is_pdt(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 24
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

// ------------------------------------------------------------------ a stream

struct SizeMuxer;

impl Muxer for SizeMuxer {
    fn init_segment(&self, _: Option<&VideoConfig>, _: Option<&AudioConfig>) -> Bytes {
        Bytes::from_static(b"init")
    }
    fn fragment(&self, seq: u32, runs: &[Run]) -> Bytes {
        let mut b = BytesMut::new();
        b.extend_from_slice(&seq.to_be_bytes());
        for r in runs {
            for s in r.samples {
                b.extend_from_slice(&s.data);
            }
        }
        b.freeze()
    }
}

/// An avcC record (one SPS, one PPS) that differs by `tag`.
fn vcfg(tag: u8) -> VideoConfig {
    VideoConfig {
        codec: VideoCodec::H264,
        record: Bytes::from(vec![
            1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0, tag, 1, 0, 2, 0x68, 0xee,
        ]),
        nalu_length_size: 4,
        width: 1280,
        height: 720,
        frame_rate: None,
        codec_string: "avc1.64001f".into(),
    }
}

fn acfg() -> AudioConfig {
    AudioConfig {
        codec: AudioCodec::Aac,
        asc: Bytes::from_static(&[0x12, 0x10]),
        object_type: 2,
        sample_rate: 48_000,
        channels: 2,
        frame_samples: 1024,
        codec_string: "mp4a.40.2".into(),
    }
}

const EPOCH: i64 = 1_795_759_275_123;

/// A publisher (30 fps, keyframe every `gop_ms`, AAC 48 kHz) feeding a segmenter whose
/// outputs go into slot 0 of a table, as the ingest does.
struct Sim {
    slots: Vec<StreamIndex>,
    seg: Segmenter<SizeMuxer>,
    frame: u64,
    audio: u64,
    /// Stream time (ms) of the next video frame.
    t0: i64,
    gop_ms: i64,
    now: i64,
    publish_id: u64,
    settings: StreamSettings,
    ts: bool,
}

impl Sim {
    fn new(settings: StreamSettings, gop_ms: i64) -> Sim {
        Sim::new_with(settings, gop_ms, false)
    }

    /// `ts`: the segmenter also writes MPEG-TS segments.
    fn new_with(settings: StreamSettings, gop_ms: i64, ts: bool) -> Sim {
        // Numbering from 0 keeps the expected names readable.
        let settings = StreamSettings {
            clock_numbering: false,
            ..settings
        };
        let mut slots = vec![StreamIndex::ZERO; 2];
        let c = Table::new(&mut slots)
            .claim("cam", "/tmp/cam", &settings, 1, EPOCH)
            .unwrap();
        let mut sim = Sim {
            seg: Segmenter::new(
                SegmenterConfig {
                    segment_target_ms: settings.segment_target_ms,
                    part_target_ms: settings.part_target_ms,
                    ts,
                },
                SizeMuxer,
                c.first_msn,
                c.first_init_version,
                c.discontinuity,
            ),
            slots,
            frame: 0,
            audio: 0,
            t0: 0,
            gop_ms,
            now: EPOCH,
            publish_id: c.publish_id,
            settings,
            ts,
        };
        let mut out = Vec::new();
        sim.seg.expect_tracks(true, true);
        sim.seg.video_config(vcfg(1), &mut out);
        sim.seg.audio_config(acfg(), &mut out);
        sim.apply(out);
        sim
    }

    fn idx(&self) -> &StreamIndex {
        &self.slots[0]
    }

    fn apply(&mut self, out: Vec<Output>) {
        let idx = &mut self.slots[0];
        assert!(idx.is_writer(self.publish_id));
        for o in &out {
            idx.apply(o, self.now);
        }
    }

    /// Feeds media until stream time `ms` (exclusive).
    fn run_until(&mut self, ms: i64) {
        loop {
            let v_ms = self.t0 + (self.frame as f64 * 1000.0 / 30.0).round() as i64;
            let a_ms = (self.audio as f64 * 1024.0 * 1000.0 / 48_000.0).round() as i64;
            if v_ms.min(a_ms) >= ms {
                break;
            }
            let mut out = Vec::new();
            if a_ms <= v_ms {
                self.now = EPOCH + a_ms;
                self.seg.push(
                    Frame {
                        kind: TrackKind::Audio,
                        dts_ms: a_ms,
                        cts_ms: 0,
                        keyframe: true,
                        data: Bytes::from(vec![1u8; 300]),
                    },
                    self.now,
                    &mut out,
                );
                self.audio += 1;
            } else {
                self.now = EPOCH + v_ms;
                let key = self.frame.is_multiple_of(self.gop_ms as u64 * 30 / 1000);
                self.seg.push(
                    Frame {
                        kind: TrackKind::Video,
                        dts_ms: v_ms,
                        cts_ms: 0,
                        keyframe: key,
                        data: Bytes::from(vec![2u8; if key { 20_000 } else { 4_000 }]),
                    },
                    self.now,
                    &mut out,
                );
                self.frame += 1;
            }
            self.apply(out);
        }
    }

    fn finish(&mut self) {
        let mut out = Vec::new();
        self.seg.finish(&mut out);
        self.apply(out);
        self.slots[0].end(self.now);
    }

    /// The same key published again (republish): a new segmenter continues the slot.
    fn republish(&mut self) {
        self.now += 3_000;
        let c = Table::new(&mut self.slots)
            .claim("cam", "/tmp/cam", &self.settings, 2, self.now)
            .unwrap();
        assert!(c.discontinuity);
        self.publish_id = c.publish_id;
        self.seg = Segmenter::new(
            SegmenterConfig {
                segment_target_ms: self.settings.segment_target_ms,
                part_target_ms: self.settings.part_target_ms,
                ts: self.ts,
            },
            SizeMuxer,
            c.first_msn,
            c.first_init_version,
            c.discontinuity,
        );
        let mut out = Vec::new();
        self.seg.video_config(vcfg(1), &mut out);
        self.seg.audio_config(acfg(), &mut out);
        self.apply(out);
        // The new publisher's clock starts elsewhere.
        self.frame = 0;
        self.audio = 0;
        self.t0 = 0;
    }

    fn render(&self, req: MediaRequest, ll: bool) -> (String, Parsed) {
        let text = media_playlist(
            self.idx(),
            &req,
            &RenderOptions {
                low_latency: ll,
                ..Default::default()
            },
        );
        let parsed = parse(&text);
        (text, parsed)
    }
}

fn ll() -> MediaRequest {
    MediaRequest::default()
}

fn td_of(p: &Parsed) -> f64 {
    p.target_duration.unwrap() as f64
}

/// Rules every media playlist we render must meet.
fn common_rules(p: &Parsed, text: &str, ll: bool) {
    assert!(p.stream_inf.is_empty(), "media playlist, not multivariant");
    assert!(
        !text.contains("#EXT-X-PLAYLIST-TYPE"),
        "live: no PLAYLIST-TYPE"
    );
    let td = td_of(p);
    // INDEPENDENT-SEGMENTS unless a listed segment is not (its first part, when listed,
    // is then not INDEPENDENT=YES).
    let dependent = p
        .segments
        .iter()
        .any(|s| s.parts.first().is_some_and(|p| !p.independent));
    assert!(p.independent_segments || dependent, "INDEPENDENT-SEGMENTS");
    if dependent {
        assert!(
            !p.independent_segments,
            "INDEPENDENT-SEGMENTS with a dependent segment"
        );
    }
    assert!(p.version.unwrap() >= 6, "EXT-X-MAP needs VERSION 6");
    assert_eq!(
        p.version.unwrap(),
        if p.skipped.is_some() { 9 } else { 6 },
        "no higher VERSION than needed"
    );
    let first = p.segments.first().or(if p.partial.parts.is_empty() {
        None
    } else {
        Some(&p.partial)
    });
    if let Some(f) = first {
        assert!(f.map.is_some(), "EXT-X-MAP before the first segment");
    }
    for s in &p.segments {
        assert!(
            s.extinf.round() <= td,
            "EXTINF {} rounds above TD {td}",
            s.extinf
        );
        assert!(s.extinf <= td + 0.5, "Apple 7.7");
        assert!(is_pdt(s.pdt.as_deref().unwrap()), "PDT on every segment");
        assert!(
            s.uri.ends_with(".m4s") && !s.uri.contains('/'),
            "relative URI"
        );
        assert!(s.after_first_part.is_empty() || s.after_first_part == ["#EXTINF"]);
    }
    // PDT increases with EXTINF (within one timeline).
    for w in p.segments.windows(2) {
        if !w[1].discontinuity {
            let a = w[0].pdt.as_deref().unwrap();
            let b = w[1].pdt.as_deref().unwrap();
            assert!(b > a, "PDT increasing");
        }
    }
    if !ll {
        for t in [
            "#EXT-X-PART",
            "#EXT-X-PART-INF",
            "#EXT-X-SERVER-CONTROL",
            "#EXT-X-PRELOAD-HINT",
            "#EXT-X-SKIP",
        ] {
            assert!(
                !p.all_tags.iter().any(|x| x == t),
                "plain playlist has no {t}"
            );
        }
        return;
    }
    let pt = p.part_target.expect("PART-INF whenever parts are present");
    let sc = &p.server_control;
    assert_eq!(sc["CAN-BLOCK-RELOAD"], "YES");
    let phb: f64 = sc["PART-HOLD-BACK"].parse().unwrap();
    assert!(phb >= 3.0 * pt - 1e-9, "PART-HOLD-BACK >= 3 x PART-TARGET");
    let hb: f64 = sc["HOLD-BACK"].parse().unwrap();
    assert!(hb >= 3.0 * td, "HOLD-BACK >= 3 x TD");
    let csu: f64 = sc["CAN-SKIP-UNTIL"].parse().unwrap();
    assert!(csu >= 6.0 * td, "CAN-SKIP-UNTIL >= 6 x TD");
    assert!(!sc.contains_key("CAN-SKIP-DATERANGES"));
    let all_segs: Vec<&Seg> = p
        .segments
        .iter()
        .chain(std::iter::once(&p.partial))
        .collect();
    for (si, s) in all_segs.iter().enumerate() {
        let complete = si < p.segments.len();
        for (i, part) in s.parts.iter().enumerate() {
            assert!(part.duration <= pt + 1e-9, "part DURATION <= PART-TARGET");
            let last_of_segment = complete && i + 1 == s.parts.len();
            if !part.independent && !last_of_segment {
                assert!(
                    part.duration >= 0.85 * pt - 1e-9,
                    "part {} too short",
                    part.uri
                );
            }
        }
        if complete && !s.parts.is_empty() {
            let sum: f64 = s.parts.iter().map(|x| x.duration).sum();
            assert!((sum - s.extinf).abs() < 0.002 * s.parts.len() as f64);
            assert!(
                s.parts[0].independent || !p.independent_segments,
                "segments start with an IDR part"
            );
            assert_eq!(
                s.parts[0].uri,
                format!("{}.0.m4s", s.uri.trim_end_matches(".m4s"))
            );
        }
    }
    if p.endlist {
        assert!(p.preload_hint.is_none(), "no preload hint after ENDLIST");
    } else {
        let h = p.preload_hint.as_ref().expect("preload hint while live");
        assert_eq!(h["TYPE"], "PART");
    }
}

// ------------------------------------------------------------------ tests

#[test]
fn live_low_latency_playlist_rules() {
    let mut sim = Sim::new(StreamSettings::default(), 1_000);
    sim.run_until(30_100);
    let (text, p) = sim.render(ll(), true);
    common_rules(&p, &text, true);
    assert_eq!(p.target_duration, Some(2));
    assert_eq!(p.segments.len(), 12, "window");
    assert_eq!(p.media_sequence, Some(3));
    assert_eq!(p.discontinuity_sequence, None);
    let total: f64 = p.segments.iter().map(|s| s.extinf).sum();
    assert!(total >= 3.0 * td_of(&p), "at least 3 x TD of segments");
    assert!(p.segments.len() >= 6, "Apple 8.11");
    // Parts only for segments that start within 3 x TD of the live edge: the last 3 here.
    let with_parts: Vec<usize> = (0..p.segments.len())
        .filter(|i| !p.segments[*i].parts.is_empty())
        .collect();
    assert_eq!(with_parts, vec![9, 10, 11]);
    assert_eq!(
        p.partial.parts.len(),
        0,
        "30.1 s: the part at 30.0 s is still open"
    );
    assert_eq!(p.preload_hint.as_ref().unwrap()["URI"], "15.0.m4s");
    // Parts are 200 ms; IDR parts independent.
    let s = &p.segments[11];
    assert_eq!(s.parts.len(), 10);
    assert!(s.parts.iter().all(|x| (x.duration - 0.2).abs() < 1e-9));
    let indep: Vec<bool> = s.parts.iter().map(|x| x.independent).collect();
    assert_eq!(indep, (0..10).map(|i| i == 0 || i == 5).collect::<Vec<_>>());
    // Tag order before the first part: MAP/PDT, then parts, then EXTINF.
    assert_eq!(
        p.segments[0].before_parts,
        ["#EXT-X-MAP", "#EXT-X-PROGRAM-DATE-TIME"]
    );
    assert_eq!(
        p.segments[0].pdt.as_deref(),
        Some("2026-11-27T06:01:21.123Z")
    );

    // Mid-segment: the parts of the segment being built, hint for the next one.
    sim.run_until(30_700);
    let (text, p) = sim.render(ll(), true);
    common_rules(&p, &text, true);
    assert_eq!(p.partial.parts.len(), 3);
    assert_eq!(p.partial.parts[0].uri, "15.0.m4s");
    assert!(p.partial.parts[0].independent);
    assert_eq!(p.partial.before_parts, ["#EXT-X-PROGRAM-DATE-TIME"]);
    assert_eq!(p.partial.pdt.as_deref(), Some("2026-11-27T06:01:45.123Z"));
    let hint = p.preload_hint.as_ref().unwrap()["URI"].clone();
    assert_eq!(hint, "15.3.m4s");
    assert_eq!(sim.idx().next_part(), Some((15, 3)));
    // The hinted URI is the next EXT-X-PART.
    sim.run_until(30_900);
    let (_, p2) = sim.render(ll(), true);
    assert_eq!(p2.partial.parts[3].uri, hint);
    // Updates only append and remove from the head.
    sim.run_until(36_100);
    let (_, p3) = sim.render(ll(), true);
    let shift = (p3.media_sequence.unwrap() - p2.media_sequence.unwrap()) as usize;
    assert_eq!(shift, 3);
    for (a, b) in p2.segments[shift..].iter().zip(&p3.segments) {
        assert_eq!(
            (a.uri.as_str(), a.extinf, &a.pdt),
            (b.uri.as_str(), b.extinf, &b.pdt)
        );
    }
}

#[test]
fn plain_playlist_has_no_low_latency_tags() {
    let mut sim = Sim::new(StreamSettings::default(), 1_000);
    sim.run_until(9_100);
    let (text, p) = sim.render(ll(), false);
    common_rules(&p, &text, false);
    assert_eq!(p.segments.len(), 4);
    // _HLS_skip is ignored without CAN-SKIP-UNTIL.
    let (text2, _) = sim.render(
        MediaRequest {
            skip: Skip::Yes,
            ..ll()
        },
        false,
    );
    assert_eq!(text, text2);
}

#[test]
fn endlist_and_republish_discontinuity() {
    let mut sim = Sim::new(StreamSettings::default(), 1_000);
    sim.run_until(8_000);
    sim.finish();
    let (text, p) = sim.render(ll(), true);
    common_rules(&p, &text, true);
    assert!(p.endlist);
    assert!(p.partial.parts.is_empty());
    assert_eq!(p.segments.len(), 4);
    assert_eq!(
        blocking_state(
            sim.idx(),
            &MediaRequest {
                msn: Some(99),
                part: Some(3),
                skip: Skip::No
            }
        ),
        Blocking::Ready,
        "ignored after ENDLIST"
    );
    let (text_skip, _) = sim.render(
        MediaRequest {
            skip: Skip::Yes,
            ..ll()
        },
        true,
    );
    assert_eq!(text, text_skip, "_HLS_skip ignored after ENDLIST");

    sim.republish();
    sim.run_until(500);
    let (text, p) = sim.render(ll(), true);
    common_rules(&p, &text, true);
    assert!(!p.endlist);
    // The segment being built starts a new timeline, with a new init section, and is
    // dated at once (its PDT will not change when it completes).
    assert_eq!(
        p.partial.before_parts,
        [
            "#EXT-X-DISCONTINUITY",
            "#EXT-X-MAP",
            "#EXT-X-PROGRAM-DATE-TIME"
        ]
    );
    assert_eq!(p.partial.map.as_deref(), Some("init2.mp4"));
    assert_eq!(p.discontinuity_sequence, Some(0));
    assert_eq!(p.partial.parts[0].uri, "4.0.m4s");
    sim.run_until(4_000);
    let (text, p) = sim.render(ll(), true);
    common_rules(&p, &text, true);
    let s4 = &p.segments[4];
    assert_eq!(s4.uri, "4.m4s");
    assert_eq!(
        s4.before_parts,
        [
            "#EXT-X-DISCONTINUITY",
            "#EXT-X-MAP",
            "#EXT-X-PROGRAM-DATE-TIME"
        ]
    );
    assert_eq!(s4.map.as_deref(), Some("init2.mp4"));
    assert!(p.segments[..4].iter().all(|s| !s.discontinuity));
    // When the discontinuity scrolls out, DISCONTINUITY-SEQUENCE counts it.
    sim.run_until(40_000);
    let (text, p) = sim.render(ll(), true);
    common_rules(&p, &text, true);
    assert_eq!(p.discontinuity_sequence, Some(1));
    assert!(p.segments.iter().all(|s| !s.discontinuity));
    assert_eq!(p.segments[0].map.as_deref(), Some("init2.mp4"));
}

#[test]
fn config_change_adds_map_and_discontinuity() {
    let mut sim = Sim::new(StreamSettings::default(), 1_000);
    sim.run_until(4_500);
    let mut out = Vec::new();
    sim.seg.video_config(vcfg(9), &mut out);
    sim.apply(out);
    sim.run_until(8_100);
    let (text, p) = sim.render(ll(), true);
    common_rules(&p, &text, true);
    // Segments 0-2, 2-4, 4-5 (cut at the first keyframe after the change), 5-7 s.
    let maps: Vec<(Option<&str>, bool)> = p
        .segments
        .iter()
        .map(|s| (s.map.as_deref(), s.discontinuity))
        .collect();
    assert_eq!(
        maps,
        vec![
            (Some("init1.mp4"), false),
            (None, false),
            (None, false),
            (Some("init2.mp4"), true),
        ]
    );
    assert_eq!(p.discontinuity_sequence, Some(0));
}

#[test]
fn delta_updates_skip_old_segments() {
    let mut sim = Sim::new(
        StreamSettings {
            window: 20,
            ..StreamSettings::default()
        },
        1_000,
    );
    sim.run_until(40_100);
    let (full_text, full) = sim.render(ll(), true);
    common_rules(&full, &full_text, true);
    assert_eq!(full.segments.len(), 20);
    for skip in [Skip::Yes, Skip::V2] {
        let (text, p) = sim.render(MediaRequest { skip, ..ll() }, true);
        common_rules(&p, &text, true);
        // 20 segments of 2 s; CAN-SKIP-UNTIL 12 s: segments ending >= 12 s before the end.
        assert_eq!(p.skipped, Some(14));
        assert_eq!(p.version, Some(9));
        assert_eq!(p.segments.len(), 6);
        assert_eq!(p.media_sequence, full.media_sequence);
        assert_eq!(p.segments[0].uri, full.segments[14].uri);
        assert!(
            p.segments[0].map.is_some(),
            "MAP for the first segment after the skip"
        );
        let remaining: f64 = p.segments.iter().map(|s| s.extinf).sum();
        assert!(
            remaining >= 6.0 * td_of(&p) - 1e-9,
            "nothing within CAN-SKIP-UNTIL skipped"
        );
        // EXT-X-SKIP comes before the first remaining segment's tags.
        let skip_at = text.find("#EXT-X-SKIP").unwrap();
        assert!(skip_at < text.find("#EXTINF").unwrap());
    }
    // A short playlist has nothing to skip: no EXT-X-SKIP, VERSION 6.
    let mut sim = Sim::new(StreamSettings::default(), 1_000);
    sim.run_until(10_100);
    let (_, p) = sim.render(
        MediaRequest {
            skip: Skip::Yes,
            ..ll()
        },
        true,
    );
    assert_eq!(p.skipped, None);
    assert_eq!(p.version, Some(6));
}

#[test]
fn long_gop_target_duration_and_parts() {
    // 3 s GOP with a 2 s target: TD stays 2, every EXTINF rounds to <= TD: segments of
    // 2.4 s cut without a keyframe, then 0.6 s up to the next keyframe, and no
    // EXT-X-INDEPENDENT-SEGMENTS.
    let mut sim = Sim::new(StreamSettings::default(), 3_000);
    sim.run_until(20_000);
    let (text, p) = sim.render(ll(), true);
    common_rules(&p, &text, true);
    assert_eq!(p.target_duration, Some(2));
    assert!(p.segments.iter().all(|s| s.extinf.round() <= 2.0));
    assert!(p.segments.iter().any(|s| (s.extinf - 2.4).abs() < 1e-9));
    assert!(!p.independent_segments);
    // Parts over the last 9 s of the edge.
    assert!(p.segments.iter().rev().take(2).all(|s| !s.parts.is_empty()));
}

#[test]
fn start_of_stream_playlist() {
    let mut sim = Sim::new(StreamSettings::default(), 1_000);
    // Nothing published: a valid playlist with no segments and no hint.
    let (text, p) = sim.render(ll(), true);
    common_rules_no_hint(&p, &text);
    sim.run_until(700);
    let (text, p) = sim.render(ll(), true);
    common_rules(&p, &text, true);
    assert!(p.segments.is_empty());
    assert_eq!(p.partial.parts.len(), 3);
    assert_eq!(p.partial.map.as_deref(), Some("init1.mp4"));
    assert_eq!(p.target_duration, Some(2));
    assert_eq!(p.media_sequence, Some(0));
}

fn common_rules_no_hint(p: &Parsed, text: &str) {
    assert!(p.segments.is_empty() && p.partial.parts.is_empty());
    assert!(p.preload_hint.is_none());
    assert!(text.contains("#EXT-X-TARGETDURATION:2\n"));
}

#[test]
fn query_parsing() {
    assert_eq!(parse_query("").unwrap(), MediaRequest::default());
    assert_eq!(
        parse_query("_HLS_msn=12&_HLS_part=3&_HLS_skip=YES").unwrap(),
        MediaRequest {
            msn: Some(12),
            part: Some(3),
            skip: Skip::Yes
        }
    );
    assert_eq!(
        parse_query("?_HLS_skip=v2&foo=bar&x").unwrap().skip,
        Skip::V2
    );
    for bad in [
        "_HLS_part=1",
        "_HLS_msn=",
        "_HLS_msn=-1",
        "_HLS_msn=+1",
        "_HLS_msn=1x",
        "_HLS_msn=99999999999999999999999",
        "_HLS_msn=1&_HLS_part=4294967296",
        "_HLS_msn=1&_HLS_msn=2",
        "_HLS_skip=yes",
        "_HLS_skip=NO",
    ] {
        assert!(parse_query(bad).is_err(), "{bad}");
    }
    // What CDNs send (signed tokens, cache-busters) is accepted; only absurd lengths,
    // beyond what nginx lets through by default, are not.
    let token = format!("token={}&_HLS_msn=7", "a".repeat(6_000));
    assert_eq!(parse_query(&token).unwrap().msn, Some(7));
    assert!(parse_query(&"a".repeat(70_000)).is_err());
    assert!(parse_query("_HLS_msn=3").unwrap().is_blocking());
}

#[test]
fn blocking_reload_decisions() {
    let mut sim = Sim::new(StreamSettings::default(), 1_000);
    sim.run_until(10_700);
    let idx = sim.idx();
    assert_eq!(idx.next_msn(), 5);
    assert_eq!(idx.parts_of(5).count(), 3);
    let q = |msn: u64, part: Option<u32>| {
        blocking_state(
            idx,
            &MediaRequest {
                msn: Some(msn),
                part,
                skip: Skip::No,
            },
        )
    };
    assert_eq!(
        blocking_state(idx, &MediaRequest::default()),
        Blocking::Ready
    );
    assert_eq!(
        q(0, None),
        Blocking::Ready,
        "scrolled or old: whole playlist now"
    );
    assert_eq!(q(4, None), Blocking::Ready);
    assert_eq!(q(5, None), Blocking::Wait);
    assert_eq!(q(6, None), Blocking::Wait, "last + 2");
    assert!(
        matches!(q(7, None), Blocking::BadRequest(_)),
        "beyond last + 2"
    );
    assert_eq!(q(5, Some(2)), Blocking::Ready);
    assert_eq!(q(5, Some(3)), Blocking::Wait);
    assert_eq!(q(4, Some(9)), Blocking::Ready);
    // Past the last part of 4 = part 0 of 5, which exists.
    assert_eq!(q(4, Some(10)), Blocking::Ready);
    // Advance part limit: 3 / 0.2 s = 15 parts ahead.
    assert_eq!(advance_part_limit(200), 15);
    assert_eq!(advance_part_limit(1_000), 3);
    assert_eq!(q(5, Some(17)), Blocking::Wait);
    assert!(matches!(q(5, Some(18)), Blocking::BadRequest(_)));
    assert_eq!(q(6, Some(7)), Blocking::Wait);
    assert!(matches!(q(6, Some(8)), Blocking::BadRequest(_)));

    // At the segment boundary: segment 5 done, no part of 6 yet.
    sim.run_until(12_000 - 1);
    let mut sim2 = sim;
    sim2.run_until(12_010);
    let idx = sim2.idx();
    assert_eq!(idx.next_msn(), 6);
    let r = |msn: u64, part: Option<u32>| {
        blocking_state(
            idx,
            &MediaRequest {
                msn: Some(msn),
                part,
                skip: Skip::No,
            },
        )
    };
    assert_eq!(r(5, Some(10)), Blocking::Wait, "part 0 of 6 not yet there");
    assert_eq!(r(5, None), Blocking::Ready);
}

#[test]
fn cache_lifetimes() {
    let mut sim = Sim::new(StreamSettings::default(), 1_000);
    sim.run_until(4_100);
    assert_eq!(max_age(sim.idx(), true), 12);
    assert_eq!(max_age(sim.idx(), false), 1);
    assert_eq!(max_age_error(sim.idx(), true), 8);
    assert_eq!(max_age_error(sim.idx(), false), 2);
}

#[test]
fn multivariant_rules() {
    let mut sim = Sim::new(StreamSettings::default(), 1_000);
    sim.run_until(12_100);
    let text = multivariant_playlist(sim.idx(), "index.m3u8");
    let p = parse(&text);
    assert!(p.segments.is_empty(), "never both kinds");
    assert!(p.independent_segments);
    assert!(!p
        .all_tags
        .iter()
        .any(|t| t == "#EXT-X-TARGETDURATION" || t == "#EXTINF"));
    assert_eq!(p.stream_inf.len(), 1);
    let (a, uri) = &p.stream_inf[0];
    assert_eq!(uri, "index.m3u8");
    assert_eq!(a["CODECS"], "avc1.64001f,mp4a.40.2");
    assert_eq!(a["RESOLUTION"], "1280x720");
    assert_eq!(a["FRAME-RATE"], "30.000");
    let bw: u64 = a["BANDWIDTH"].parse().unwrap();
    let avg: u64 = a["AVERAGE-BANDWIDTH"].parse().unwrap();
    // Per second: one 20 kB keyframe and 29 x 4 kB video frames, 46.875 x 300 B of
    // audio, 5 fragments with a 4-byte header.
    let expect = (((20_000 + 29 * 4_000) as f64 + 46.875 * 300.0 + 20.0) * 8.0) as u64;
    assert!(avg.abs_diff(expect) < expect / 50, "avg {avg} vs {expect}");
    assert!(bw >= avg);
    assert!(
        bw.abs_diff(expect) < expect / 50,
        "steady stream: peak close to average"
    );

    // Audio-only: no RESOLUTION / FRAME-RATE, CODECS has the audio codec only.
    let mut slots = vec![StreamIndex::ZERO];
    let c = Table::new(&mut slots)
        .claim("a", "/tmp/a", &StreamSettings::default(), 1, 0)
        .unwrap();
    let mut seg = Segmenter::new(
        SegmenterConfig::default(),
        SizeMuxer,
        c.first_msn,
        c.first_init_version,
        false,
    );
    let mut out = Vec::new();
    seg.audio_config(acfg(), &mut out);
    for k in 0..300i64 {
        seg.push(
            Frame {
                kind: TrackKind::Audio,
                dts_ms: k * 1024 * 1000 / 48_000,
                cts_ms: 0,
                keyframe: true,
                data: Bytes::from(vec![0u8; 200]),
            },
            k,
            &mut out,
        );
    }
    for o in &out {
        slots[0].apply(o, 0);
    }
    let text = multivariant_playlist(&slots[0], "index.m3u8");
    let p = parse(&text);
    let (a, _) = &p.stream_inf[0];
    assert_eq!(a["CODECS"], "mp4a.40.2");
    assert!(!a.contains_key("RESOLUTION") && !a.contains_key("FRAME-RATE"));
}

#[test]
fn opus_stream_is_listed_with_its_codec_and_without_ts() {
    // Audio-only Opus (20 ms packets) with TS asked for: CODECS "opus", fMP4 only.
    let mut slots = vec![StreamIndex::ZERO];
    let c = Table::new(&mut slots)
        .claim("o", "/tmp/o", &StreamSettings::default(), 1, 0)
        .unwrap();
    let cfg = SegmenterConfig {
        ts: true,
        ..SegmenterConfig::default()
    };
    let mut seg = Segmenter::new(cfg, SizeMuxer, c.first_msn, c.first_init_version, false);
    let mut out = Vec::new();
    seg.audio_config(crate::codec::opus::config(2, 312), &mut out);
    for k in 0..300i64 {
        let mut packet = vec![0u8; 100];
        packet[0] = 0xFC; // CELT FB 20 ms, stereo, one frame
        seg.push(
            Frame {
                kind: TrackKind::Audio,
                dts_ms: k * 20,
                cts_ms: 0,
                keyframe: true,
                data: Bytes::from(packet),
            },
            k,
            &mut out,
        );
    }
    for o in &out {
        slots[0].apply(o, 0);
    }
    let idx = &slots[0];
    assert_eq!(idx.audio_codec(), "opus");
    assert_eq!(idx.part_target_ms(), 200);
    assert!(idx.segments().count() >= 2);
    assert!(!idx.has_ts());
    let p = parse(&multivariant_playlist(idx, "index.m3u8"));
    let (a, _) = &p.stream_inf[0];
    assert_eq!(a["CODECS"], "opus");
}

#[test]
fn decimals_are_three_digits() {
    assert_eq!(secs3(2_000_000), "2.000");
    assert_eq!(secs3(200_000), "0.200");
    assert_eq!(secs3(33_333), "0.033");
    assert_eq!(secs3(1_999_600), "2.000");
    assert_eq!(secs3(0), "0.000");
}

// ------------------------------------------------------------------ MPEG-TS playlist

fn render_ts(idx: &StreamIndex) -> (String, Parsed) {
    let opts = RenderOptions {
        low_latency: true,
        format: Format::Ts,
    };
    let text = media_playlist(idx, &ll(), &opts);
    assert_eq!(text, ts_playlist(idx));
    let parsed = parse(&text);
    (text, parsed)
}

/// Rules of the TS playlist: VERSION 3, no MAP, no LL-HLS tags, `.ts` URIs, PDT on
/// every segment.
fn ts_rules(p: &Parsed, text: &str) {
    assert_eq!(p.version, Some(3));
    assert!(p.independent_segments);
    for tag in [
        "#EXT-X-MAP",
        "#EXT-X-PART",
        "#EXT-X-PART-INF",
        "#EXT-X-SERVER-CONTROL",
        "#EXT-X-PRELOAD-HINT",
        "#EXT-X-SKIP",
        "#EXT-X-RENDITION-REPORT",
    ] {
        assert!(!p.all_tags.iter().any(|t| t == tag), "{tag} in\n{text}");
    }
    assert!(p.partial.parts.is_empty());
    for s in &p.segments {
        assert!(s.uri.ends_with(".ts") && !s.uri.contains('/'), "{}", s.uri);
        assert!(is_pdt(s.pdt.as_deref().unwrap()));
        assert!(s.extinf.round() <= td_of(p));
    }
}

/// The TS playlist lists the same segments as the plain fMP4 one, with the same
/// MEDIA-SEQUENCE, DISCONTINUITY-SEQUENCE, TARGETDURATION, discontinuities, PDT and
/// EXTINF.
fn same_as_fmp4(sim: &Sim) -> Parsed {
    let (_, fmp4) = sim.render(ll(), false);
    let (text, ts) = render_ts(sim.idx());
    ts_rules(&ts, &text);
    assert_eq!(ts.target_duration, fmp4.target_duration);
    assert_eq!(ts.media_sequence, fmp4.media_sequence);
    assert_eq!(ts.discontinuity_sequence, fmp4.discontinuity_sequence);
    assert_eq!(ts.endlist, fmp4.endlist);
    assert_eq!(ts.segments.len(), fmp4.segments.len());
    for (t, f) in ts.segments.iter().zip(&fmp4.segments) {
        assert_eq!(t.uri.replace(".ts", ".m4s"), f.uri);
        assert_eq!(t.extinf, f.extinf);
        assert_eq!(t.pdt, f.pdt);
        assert_eq!(t.discontinuity, f.discontinuity);
    }
    ts
}

#[test]
fn ts_playlist_mirrors_the_fmp4_playlist() {
    let mut sim = Sim::new_with(StreamSettings::default(), 1_000, true);
    assert!(!sim.idx().has_ts(), "nothing before the first segment");
    sim.run_until(30_000);
    assert!(sim.idx().has_ts());
    let p = same_as_fmp4(&sim);
    assert_eq!(p.segments.len(), 12);
    assert!(p.media_sequence.unwrap() > 0);
    // Republish: a discontinuity, which scrolls out into DISCONTINUITY-SEQUENCE.
    sim.finish();
    let p = same_as_fmp4(&sim);
    assert!(p.endlist);
    sim.republish();
    sim.run_until(6_000);
    let p = same_as_fmp4(&sim);
    assert!(p.segments.iter().any(|s| s.discontinuity));
    sim.run_until(40_000);
    let p = same_as_fmp4(&sim);
    assert_eq!(p.discontinuity_sequence, Some(1));
    sim.finish();
    assert!(same_as_fmp4(&sim).endlist);
}

#[test]
fn ts_playlist_lists_only_the_segments_with_ts() {
    // Without TS in the segmenter: nothing to list.
    let mut sim = Sim::new(StreamSettings::default(), 1_000);
    sim.run_until(10_000);
    assert!(!sim.idx().has_ts());
    assert!(sim.idx().ts_segments().next().is_none());

    // H.264, then HEVC (no TS), then H.264 again.
    let mut sim = Sim::new_with(StreamSettings::default(), 1_000, true);
    sim.run_until(8_000);
    let hevc = VideoConfig {
        codec: VideoCodec::H265,
        ..vcfg(2)
    };
    let mut out = Vec::new();
    sim.seg.video_config(hevc, &mut out);
    sim.apply(out);
    sim.run_until(14_000);
    assert!(!sim.idx().has_ts(), "the newest segment is HEVC");
    let mut out = Vec::new();
    sim.seg.video_config(vcfg(3), &mut out);
    sim.apply(out);
    sim.run_until(20_000);
    assert!(sim.idx().has_ts());
    let (text, ts) = render_ts(sim.idx());
    ts_rules(&ts, &text);
    let (_, fmp4) = sim.render(ll(), false);
    let with_ts: Vec<u64> = sim.idx().ts_segments().map(|s| s.msn).collect();
    assert!(!with_ts.is_empty() && with_ts.len() < fmp4.segments.len());
    assert_eq!(ts.media_sequence, Some(with_ts[0]));
    let uris: Vec<String> = ts.segments.iter().map(|s| s.uri.clone()).collect();
    assert_eq!(
        uris,
        with_ts
            .iter()
            .map(|m| format!("{m}.ts"))
            .collect::<Vec<_>>()
    );
    // The first TS segment after the HEVC run starts a new timeline; the discontinuity
    // before the HEVC run is counted as removed.
    assert!(ts.segments[0].discontinuity);
    let skipped_disc = fmp4
        .segments
        .iter()
        .take_while(|s| s.uri != format!("{}.m4s", with_ts[0]))
        .filter(|s| s.discontinuity)
        .count() as u64;
    assert_eq!(skipped_disc, 1);
    assert_eq!(
        ts.discontinuity_sequence,
        Some(fmp4.discontinuity_sequence.unwrap_or(0) + skipped_disc)
    );
}

#[test]
fn held_request_decisions() {
    use super::held::{error_max_age, judge, Held, Verdict};
    let mut sim = Sim::new(StreamSettings::default(), 1_000);
    sim.run_until(10_700);
    let idx = sim.idx();
    assert_eq!((idx.next_msn(), idx.parts_of(5).count()), (5, 3));
    let req = |msn: u64, part: Option<u32>| MediaRequest {
        msn: Some(msn),
        part,
        skip: Skip::No,
    };
    let (now, deadline) = (1_000, 7_000);
    // Playlists: ready once what they wait for exists, waiting before, 503 after the limit.
    let r = req(5, Some(2));
    assert_eq!(
        judge(Some(idx), Held::Playlist(&r), now, deadline),
        Verdict::Ready
    );
    let r = req(5, Some(3));
    assert_eq!(
        judge(Some(idx), Held::Playlist(&r), now, deadline),
        Verdict::Wait
    );
    assert_eq!(
        judge(Some(idx), Held::Playlist(&r), deadline, deadline),
        Verdict::TimedOut
    );
    // A ready answer is not turned into a 503 by a late look.
    let r = req(4, None);
    assert_eq!(
        judge(Some(idx), Held::Playlist(&r), deadline + 1, deadline),
        Verdict::Ready
    );
    // Parts: the hinted one waits; one that exists is ready; any other is gone.
    let hinted = Held::Part { msn: 5, part: 3 };
    assert_eq!(judge(Some(idx), hinted, now, deadline), Verdict::Wait);
    assert_eq!(
        judge(Some(idx), Held::Part { msn: 5, part: 1 }, now, deadline),
        Verdict::Ready
    );
    assert_eq!(
        judge(Some(idx), Held::Part { msn: 5, part: 4 }, now, deadline),
        Verdict::Gone
    );
    assert_eq!(
        judge(Some(idx), hinted, deadline, deadline),
        Verdict::TimedOut
    );
    // A stream no longer in the zone: gone, with the lifetime of an unknown stream.
    assert_eq!(judge(None, hinted, now, deadline), Verdict::Gone);
    assert_eq!(error_max_age(None, hinted, Verdict::Gone), 1);
    // Lifetimes come from the request's own stream (TD 2 here): blocking playlist 404
    // 4 × TD, 503 and part errors 1 × TD.
    let r = req(5, Some(3));
    assert_eq!(
        error_max_age(Some(idx), Held::Playlist(&r), Verdict::Gone),
        8
    );
    assert_eq!(
        error_max_age(Some(idx), Held::Playlist(&r), Verdict::TimedOut),
        2
    );
    assert_eq!(error_max_age(Some(idx), hinted, Verdict::Gone), 2);

    // The hinted part arrives: ready. The segment closes with fewer parts than a
    // request's part number: that part is gone.
    let mut sim = sim;
    sim.run_until(11_000);
    let idx = sim.idx();
    assert_eq!(judge(Some(idx), hinted, now, deadline), Verdict::Ready);
    let late = Held::Part { msn: 5, part: 12 };
    sim.run_until(12_010);
    assert_eq!(judge(Some(sim.idx()), late, now, deadline), Verdict::Gone);

    // The stream ends: a held playlist is answered (with ENDLIST), a held part is gone.
    let r = req(7, None);
    assert_eq!(
        judge(Some(sim.idx()), Held::Playlist(&r), now, deadline),
        Verdict::Wait
    );
    sim.finish();
    assert_eq!(
        judge(Some(sim.idx()), Held::Playlist(&r), now, deadline),
        Verdict::Ready
    );
    let next = Held::Part { msn: 6, part: 5 };
    assert_eq!(judge(Some(sim.idx()), next, now, deadline), Verdict::Gone);
}

#[test]
fn held_playlist_before_the_target_duration_is_decided() {
    use super::held::{judge, Held, Verdict};
    let settings = StreamSettings {
        clock_numbering: false,
        ..StreamSettings::default()
    };
    let mut slots = vec![StreamIndex::ZERO; 1];
    Table::new(&mut slots)
        .claim("cam", "/tmp/cam", &settings, 1, EPOCH)
        .unwrap();
    let idx = &slots[0];
    let r = MediaRequest {
        msn: Some(0),
        part: Some(0),
        skip: Skip::No,
    };
    assert!(!idx.target_duration_decided());
    // Live with nothing to render yet: wait; ended that way: gone.
    assert_eq!(judge(Some(idx), Held::Playlist(&r), 0, 10), Verdict::Wait);
    slots[0].end(EPOCH);
    assert_eq!(
        judge(Some(&slots[0]), Held::Playlist(&r), 0, 10),
        Verdict::Gone
    );
}

#[test]
fn media_request_availability() {
    use super::serving::{media_avail, media_content_type, media_path, Avail, TS_MIME};
    use crate::store::names::MediaFile;
    let mut sim = Sim::new(StreamSettings::default(), 1_000);
    sim.run_until(10_700);
    let idx = sim.idx();
    // Segments 0..=4 listed, segment 5 under way with parts 0..=2, part 3 hinted.
    assert_eq!((idx.next_msn(), idx.parts_of(5).count()), (5, 3));
    let part = |msn, part| MediaFile::Part { msn, part };
    let range = idx.part_range(5, 1).unwrap();
    assert_eq!(media_avail(idx, part(5, 1), true), Avail::Range(range));
    assert_eq!(media_avail(idx, part(5, 1), false), Avail::Range(range));
    // The hinted part is held only where the hint is advertised.
    assert_eq!(media_avail(idx, part(5, 3), true), Avail::Hinted);
    assert_eq!(media_avail(idx, part(5, 3), false), Avail::No);
    assert_eq!(media_avail(idx, part(5, 4), true), Avail::No);
    assert_eq!(media_avail(idx, part(6, 0), true), Avail::No);
    // The file of the segment being built exists, but it is not a segment yet.
    assert_eq!(
        media_avail(idx, MediaFile::Segment { msn: 5 }, true),
        Avail::No
    );
    assert_eq!(
        media_avail(idx, MediaFile::Segment { msn: 4 }, true),
        Avail::Whole
    );
    let init = MediaFile::Init { version: 1 };
    assert_eq!(media_avail(idx, init, true), Avail::Whole);
    // A part lives in its segment's file.
    assert_eq!(media_path("/d/cam", part(5, 1)), "/d/cam/5.m4s");
    assert_eq!(media_path("/d/cam", init), "/d/cam/init1.mp4");
    let ts = MediaFile::TsSegment { msn: 4 };
    assert_eq!(media_path("/d/cam", ts), "/d/cam/4.ts");
    assert_eq!(media_content_type(ts, true), TS_MIME);
    assert_eq!(media_content_type(ts, false), TS_MIME);
    assert_eq!(media_content_type(part(5, 1), true), "video/mp4");
    assert_eq!(media_content_type(init, false), "audio/mp4");
    // Held at most 3 × TD (TD 2 s here).
    assert_eq!(super::serving::hold_limit_ms(idx), 6_000);
}

#[test]
fn variant_groups() {
    use super::serving::{variant_base, variant_keys};
    let suffixes = ["_720", "_480", "_1080p_720"];
    assert_eq!(variant_base(&suffixes, "demo_720"), Some("demo"));
    assert_eq!(variant_base(&suffixes, "demo"), None);
    // The suffix alone is no variant of an empty base.
    assert_eq!(variant_base(&suffixes, "_720"), None);
    // The longest suffix wins.
    assert_eq!(variant_base(&suffixes, "x_1080p_720"), Some("x"));
    assert_eq!(
        variant_keys(&suffixes, "demo_480"),
        ["demo_720", "demo_480", "demo_1080p_720"]
    );
    assert_eq!(
        variant_keys(&suffixes, "demo"),
        ["demo_720", "demo_480", "demo_1080p_720"]
    );
    assert!(variant_keys(&[], "demo").is_empty());
    // Keys that would not be valid are left out (`.` is not a key character).
    assert_eq!(variant_keys(&["_hd", ".x"], "cam"), ["cam_hd"]);
}

#[test]
fn multivariant_grouping_and_uris() {
    use super::serving::{group_playlist, offers, pick_variants, variant_uris};
    let group: Vec<String> = ["demo_720", "demo_480"].map(String::from).to_vec();
    let live = ["demo_480", "demo", "solo"];
    let lookup = |k: &str| live.contains(&k).then_some(());
    // The group's renditions that exist, in group order.
    let picked = pick_variants(&group, "demo_720", lookup);
    assert_eq!(picked, [("demo_480".to_owned(), ())]);
    let keys: Vec<&str> = picked.iter().map(|(k, _)| k.as_str()).collect();
    // Another rendition than the one asked for: named by its folder.
    assert_eq!(variant_uris(&keys, "demo_720"), ["../demo_480/index.m3u8"]);
    assert_eq!(variant_uris(&["demo_480"], "demo_480"), ["index.m3u8"]);
    assert_eq!(
        variant_uris(&["demo_720", "demo_480"], "demo_720"),
        ["../demo_720/index.m3u8", "../demo_480/index.m3u8"]
    );
    // No rendition of the group: the key alone, if it exists; else nothing (404).
    let none: Vec<String> = ["x_720", "x_480"].map(String::from).to_vec();
    assert_eq!(
        pick_variants(&none, "solo", lookup),
        [("solo".to_owned(), ())]
    );
    assert!(pick_variants(&none, "gone", lookup).is_empty());
    assert_eq!(
        pick_variants(&[], "solo", lookup),
        [("solo".to_owned(), ())]
    );

    // Only streams with a playlist of the location's format are offered.
    let mut sim = Sim::new(StreamSettings::default(), 1_000);
    assert!(!offers(sim.idx(), Format::Fmp4));
    sim.run_until(12_100);
    assert!(offers(sim.idx(), Format::Fmp4));
    assert!(!offers(sim.idx(), Format::Ts));
    let mut ts = Sim::new_with(StreamSettings::default(), 1_000, true);
    ts.run_until(12_100);
    assert!(offers(ts.idx(), Format::Ts));

    // The playlist: one STREAM-INF per rendition, the shortest lifetime of them all.
    let single = [("cam".to_owned(), sim.idx())];
    let (text, max_age) = group_playlist(&single, "cam", Format::Fmp4);
    assert_eq!(text, multivariant_playlist(sim.idx(), "index.m3u8"));
    assert_eq!(max_age, super::max_age(sim.idx(), false));
    let two = [("a".to_owned(), sim.idx()), ("b".to_owned(), ts.idx())];
    let (text, _) = group_playlist(&two, "a", Format::Fmp4);
    let p = parse(&text);
    let uris: Vec<&str> = p.stream_inf.iter().map(|(_, u)| u.as_str()).collect();
    assert_eq!(uris, ["../a/index.m3u8", "../b/index.m3u8"]);
}
