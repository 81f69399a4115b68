//! Tests that mux real encoder output (FLV fixtures made with ffmpeg) and check
//! the result with ffprobe/ffmpeg (fMP4 and MPEG-TS), plus a tiny box walker for
//! layout tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;

use super::fmp4::{
    fragment, init_segment, Run, Sample, AUDIO_TRACK_ID, VIDEO_TIMESCALE, VIDEO_TRACK_ID,
};
use super::ts::{self, TsWriter};
use crate::media::{AudioCodec, AudioConfig, VideoCodec, VideoConfig};

// ---------------------------------------------------------------- box walker

/// One box found by [`walk`]: type, offset of its header, total size, depth.
#[derive(Clone, Debug)]
pub(super) struct BoxInfo {
    pub kind: [u8; 4],
    pub start: usize,
    pub size: usize,
    pub header: usize,
    pub depth: usize,
}

impl BoxInfo {
    pub fn payload<'a>(&self, data: &'a [u8]) -> &'a [u8] {
        &data[self.start + self.header..self.start + self.size]
    }
    pub fn name(&self) -> &str {
        std::str::from_utf8(&self.kind).unwrap()
    }
}

const CONTAINERS: &[&[u8; 4]] = &[
    b"moov", b"trak", b"mdia", b"minf", b"dinf", b"stbl", b"mvex", b"moof", b"traf",
];

/// Walks every box in `data` (descending into the usual containers and into
/// `stsd`, `dref` and the sample entries) and asserts that each level's
/// sizes add up exactly to its parent.
pub(super) fn walk(data: &[u8]) -> Vec<BoxInfo> {
    let mut out = Vec::new();
    walk_level(data, 0, data.len(), 0, &mut out);
    out
}

fn walk_level(data: &[u8], mut pos: usize, end: usize, depth: usize, out: &mut Vec<BoxInfo>) {
    while pos < end {
        assert!(end - pos >= 8, "truncated box header at {pos}");
        let mut size = u32::from_be_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        let kind: [u8; 4] = data[pos + 4..pos + 8].try_into().unwrap();
        let mut header = 8;
        if size == 1 {
            size = u64::from_be_bytes(data[pos + 8..pos + 16].try_into().unwrap()) as usize;
            header = 16;
        }
        assert!(
            size >= header && pos + size <= end,
            "box {kind:?} at {pos} overruns its parent"
        );
        out.push(BoxInfo {
            kind,
            start: pos,
            size,
            header,
            depth,
        });
        let body = pos + header;
        let children = match &kind {
            k if CONTAINERS.contains(&k) => Some(body),
            b"stsd" | b"dref" => Some(body + 8),
            b"avc1" | b"hvc1" => Some(body + 78),
            b"mp4a" | b"Opus" => Some(body + 28),
            _ => None,
        };
        if let Some(first) = children {
            walk_level(data, first, pos + size, depth + 1, out);
        }
        pos += size;
    }
}

pub(super) fn find<'a>(boxes: &'a [BoxInfo], kind: &[u8; 4]) -> Vec<&'a BoxInfo> {
    boxes.iter().filter(|b| &b.kind == kind).collect()
}

// ---------------------------------------------------------------- FLV reader

#[derive(Clone, Debug)]
struct FlvVideo {
    dts_ms: i64,
    cts_ms: i32,
    keyframe: bool,
    data: Bytes,
}

#[derive(Debug, Default)]
struct Flv {
    video_record: Option<Bytes>,
    asc: Option<Bytes>,
    video: Vec<FlvVideo>,
    /// (dts in ms, raw AAC frame)
    audio: Vec<(i64, Bytes)>,
}

fn si24(b: &[u8]) -> i32 {
    ((b[0] as i32) << 24 | (b[1] as i32) << 16 | (b[2] as i32) << 8) >> 8
}

/// Reads an FLV file: legacy AVC (codec 7), Enhanced RTMP (`hvc1`) and AAC.
fn read_flv(file: &Bytes) -> Flv {
    assert_eq!(&file[..3], b"FLV");
    let mut flv = Flv::default();
    let mut pos = u32::from_be_bytes(file[5..9].try_into().unwrap()) as usize + 4;
    while pos + 11 <= file.len() {
        let tag_type = file[pos];
        let size = u32::from_be_bytes([0, file[pos + 1], file[pos + 2], file[pos + 3]]) as usize;
        let ts = i64::from(u32::from_be_bytes([
            file[pos + 7],
            file[pos + 4],
            file[pos + 5],
            file[pos + 6],
        ]));
        let body = file.slice(pos + 11..pos + 11 + size);
        pos += 11 + size + 4;
        match tag_type {
            8 if body[0] >> 4 == 10 => match body[1] {
                0 => flv.asc = Some(body.slice(2..)),
                _ => flv.audio.push((ts, body.slice(2..))),
            },
            9 if body[0] & 0x80 != 0 => {
                // Enhanced RTMP: frame type, packet type, FourCC.
                let frame_type = (body[0] >> 4) & 7;
                assert_eq!(&body[1..5], b"hvc1");
                let (cts_ms, data) = match body[0] & 0x0F {
                    0 => {
                        flv.video_record = Some(body.slice(5..));
                        continue;
                    }
                    1 => (si24(&body[5..8]), body.slice(8..)),
                    3 => (0, body.slice(5..)),
                    _ => continue, // sequence end, metadata
                };
                flv.video.push(FlvVideo {
                    dts_ms: ts,
                    cts_ms,
                    keyframe: frame_type == 1,
                    data,
                });
            }
            9 => {
                assert_eq!(body[0] & 0x0F, 7, "not AVC");
                match body[1] {
                    0 => flv.video_record = Some(body.slice(5..)),
                    1 => flv.video.push(FlvVideo {
                        dts_ms: ts,
                        cts_ms: si24(&body[2..5]),
                        keyframe: body[0] >> 4 == 1,
                        data: body.slice(5..),
                    }),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    flv
}

fn fixture(name: &str) -> Bytes {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/mux")
        .join(name);
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

// ---------------------------------------------------------------- muxing

const SAMPLE_RATE: u32 = 44_100;
const AAC_FRAME: u32 = 1024;
const VIDEO_FRAMES_PER_FRAGMENT: usize = 6;
const AUDIO_FRAMES_PER_FRAGMENT: usize = 9;

fn video_config(codec: VideoCodec, record: Bytes) -> VideoConfig {
    VideoConfig {
        codec,
        record,
        nalu_length_size: 4,
        width: 320,
        height: 240,
        frame_rate: Some(30.0),
        codec_string: match codec {
            VideoCodec::H264 => "avc1.64000d".into(),
            VideoCodec::H265 => "hvc1.1.6.L60.90".into(),
        },
    }
}

fn audio_config(asc: Bytes) -> AudioConfig {
    AudioConfig {
        codec: AudioCodec::Aac,
        asc,
        object_type: 2,
        sample_rate: SAMPLE_RATE,
        channels: 1,
        frame_samples: AAC_FRAME,
        codec_string: "mp4a.40.2".into(),
    }
}

/// What was muxed, to compare with what ffprobe reads back.
#[derive(Debug, Default)]
struct Muxed {
    file: Vec<u8>,
    video_frames: usize,
    audio_frames: usize,
    /// (pts, dts) of each video sample in 90 kHz, decode order.
    video_times: Vec<(i64, i64)>,
    fragments: usize,
}

fn video_samples(frames: &[FlvVideo]) -> Vec<Sample> {
    let mut last = VIDEO_TIMESCALE / 30;
    frames
        .iter()
        .enumerate()
        .map(|(i, f)| {
            if let Some(next) = frames.get(i + 1) {
                last = ((next.dts_ms - f.dts_ms) * 90) as u32;
            }
            Sample {
                duration: last,
                cts_offset: f.cts_ms * 90,
                keyframe: f.keyframe,
                data: f.data.clone(),
            }
        })
        .collect()
}

fn audio_samples(frames: &[(i64, Bytes)]) -> Vec<Sample> {
    frames
        .iter()
        .map(|(_, data)| Sample {
            duration: AAC_FRAME,
            cts_offset: 0,
            keyframe: true,
            data: data.clone(),
        })
        .collect()
}

/// Init + fragments of ~6 video frames with the audio frames of the same time
/// span (or 9 audio frames per fragment without video).
fn mux(flv: &Flv, codec: VideoCodec, with_video: bool, with_audio: bool) -> Muxed {
    let video_cfg = with_video.then(|| video_config(codec, flv.video_record.clone().unwrap()));
    let audio_cfg = with_audio.then(|| audio_config(flv.asc.clone().unwrap()));
    let mut m = Muxed::default();
    m.file
        .extend_from_slice(&init_segment(video_cfg.as_ref(), audio_cfg.as_ref()));

    let video = if with_video {
        video_samples(&flv.video)
    } else {
        vec![]
    };
    let audio = if with_audio {
        audio_samples(&flv.audio)
    } else {
        vec![]
    };
    let mut v = 0;
    let mut a = 0;
    let mut seq = 1;
    while v < video.len() || a < audio.len() {
        let v_end = (v + VIDEO_FRAMES_PER_FRAGMENT).min(video.len());
        let a_end = if !with_audio {
            a
        } else if !with_video {
            (a + AUDIO_FRAMES_PER_FRAGMENT).min(audio.len())
        } else if v_end < video.len() {
            let until_ms = flv.video[v_end].dts_ms;
            a + flv.audio[a..]
                .iter()
                .take_while(|(ts, _)| *ts < until_ms)
                .count()
        } else {
            audio.len()
        };
        let runs = [
            Run {
                track_id: VIDEO_TRACK_ID,
                base_decode_time: flv.video.get(v).map_or(0, |f| f.dts_ms as u64 * 90),
                samples: &video[v..v_end],
            },
            Run {
                track_id: AUDIO_TRACK_ID,
                base_decode_time: a as u64 * u64::from(AAC_FRAME),
                samples: &audio[a..a_end],
            },
        ];
        m.file.extend_from_slice(&fragment(seq, &runs));
        for f in &flv.video[v..v_end] {
            m.video_times
                .push(((f.dts_ms + f.cts_ms as i64) * 90, f.dts_ms * 90));
        }
        seq += 1;
        m.fragments += 1;
        v = v_end;
        a = a_end;
    }
    m.video_frames = video.len();
    m.audio_frames = audio.len();
    m
}

// ---------------------------------------------------------------- ffprobe

fn have_ffprobe() -> bool {
    let ok = Command::new("ffprobe").arg("-version").output().is_ok()
        && Command::new("ffmpeg").arg("-version").output().is_ok();
    if !ok {
        eprintln!("skipping: ffprobe/ffmpeg not found on PATH");
    }
    ok
}

/// A file in the temporary folder, removed when dropped (also when a check fails).
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, data: &[u8]) -> Self {
        let path = std::env::temp_dir().join(format!("vid-mux-{}-{name}", std::process::id()));
        std::fs::write(&path, data).unwrap();
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        std::fs::remove_file(&self.0).ok();
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `ffprobe -of compact` lines of one section kind, as key/value maps.
fn probe_sections(path: &Path, entries: &str, extra: &[&str]) -> Vec<Vec<(String, String)>> {
    let out = run(Command::new("ffprobe")
        .args(["-v", "error"])
        .args(extra)
        .args(["-show_entries", entries, "-of", "compact"])
        .arg(path));
    out.lines()
        .map(|line| {
            line.split('|')
                .skip(1)
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

fn get<'a>(section: &'a [(String, String)], key: &str) -> &'a str {
    section
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key} in {section:?}"))
}

/// The checks every muxed file must pass; `video` is (codec_name, codec_tag).
fn check_with_ffprobe(name: &str, m: &Muxed, video: Option<(&str, &str)>, audio: bool) {
    let file = TempFile::new(name, &m.file);
    let path = file.0.as_path();

    // Decoding the whole file reports nothing at all.
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let noise =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        noise.trim().is_empty(),
        "ffmpeg decode of {name} reported: {noise}"
    );

    let streams = probe_sections(
        path,
        "stream=codec_type,codec_name,codec_tag_string,width,height,sample_rate,channels,nb_read_frames",
        &["-count_frames"],
    );
    assert_eq!(
        streams.len(),
        usize::from(video.is_some()) + usize::from(audio),
        "{streams:?}"
    );
    let mut streams = streams.iter();
    if let Some((codec, tag)) = video {
        let s = streams.next().unwrap();
        assert_eq!(get(s, "codec_type"), "video");
        assert_eq!(get(s, "codec_name"), codec);
        assert_eq!(get(s, "codec_tag_string"), tag);
        assert_eq!(get(s, "width"), "320");
        assert_eq!(get(s, "height"), "240");
        assert_eq!(get(s, "nb_read_frames"), m.video_frames.to_string());
    }
    if audio {
        let s = streams.next().unwrap();
        assert_eq!(get(s, "codec_type"), "audio");
        assert_eq!(get(s, "codec_name"), "aac");
        assert_eq!(get(s, "codec_tag_string"), "mp4a");
        assert_eq!(get(s, "sample_rate"), SAMPLE_RATE.to_string());
        assert_eq!(get(s, "channels"), "1");
        assert_eq!(get(s, "nb_read_frames"), m.audio_frames.to_string());
    }

    let format = probe_sections(path, "format=duration", &[]);
    let duration: f64 = get(&format[0], "duration").parse().unwrap();
    assert!((duration - 2.0).abs() < 0.1, "duration {duration}");

    if video.is_some() {
        // Every video packet comes back with the timestamps it was muxed with
        // (90 kHz), in decode order: B-frame reordering intact.
        let packets = probe_sections(path, "packet=pts,dts", &["-select_streams", "v"]);
        let read: Vec<(i64, i64)> = packets
            .iter()
            .map(|p| {
                (
                    get(p, "pts").parse().unwrap(),
                    get(p, "dts").parse().unwrap(),
                )
            })
            .collect();
        assert_eq!(read, m.video_times);
        assert!(read[0].0 >= 0, "first video pts {}", read[0].0);
        assert!(
            read.windows(2).any(|w| w[1].0 < w[0].0),
            "no reordered frames: the fixture should have B-frames"
        );
    }
}

// ---------------------------------------------------------------- tests

#[test]
fn flv_fixture_reads() {
    let flv = read_flv(&fixture("h264_aac.flv"));
    assert_eq!(flv.video.len(), 60);
    assert_eq!(flv.audio.len(), 88);
    assert!(flv.video[0].keyframe && flv.video[0].cts_ms > 0);
    assert_eq!(flv.video_record.as_ref().unwrap()[0], 1);
    let flv = read_flv(&fixture("hevc_aac.flv"));
    assert_eq!(flv.video.len(), 60);
    assert_eq!(flv.video_record.as_ref().unwrap()[0], 1);
}

#[test]
fn h264_aac_plays() {
    let flv = read_flv(&fixture("h264_aac.flv"));
    let m = mux(&flv, VideoCodec::H264, true, true);
    assert_eq!(m.fragments, 10);
    if have_ffprobe() {
        check_with_ffprobe("h264_aac.mp4", &m, Some(("h264", "avc1")), true);
    }
}

#[test]
fn hevc_aac_plays() {
    let flv = read_flv(&fixture("hevc_aac.flv"));
    let m = mux(&flv, VideoCodec::H265, true, true);
    if have_ffprobe() {
        check_with_ffprobe("hevc_aac.mp4", &m, Some(("hevc", "hvc1")), true);
    }
}

#[test]
fn h264_video_only_plays() {
    let flv = read_flv(&fixture("h264_aac.flv"));
    let m = mux(&flv, VideoCodec::H264, true, false);
    if have_ffprobe() {
        check_with_ffprobe("h264_only.mp4", &m, Some(("h264", "avc1")), false);
    }
}

#[test]
fn hevc_video_only_plays() {
    let flv = read_flv(&fixture("hevc_aac.flv"));
    let m = mux(&flv, VideoCodec::H265, true, false);
    if have_ffprobe() {
        check_with_ffprobe("hevc_only.mp4", &m, Some(("hevc", "hvc1")), false);
    }
}

#[test]
fn audio_only_plays() {
    let flv = read_flv(&fixture("h264_aac.flv"));
    let m = mux(&flv, VideoCodec::H264, false, true);
    assert_eq!(m.fragments, 10);
    if have_ffprobe() {
        check_with_ffprobe("aac_only.mp4", &m, None, true);
    }
}

// ---------------------------------------------------------------- MPEG-TS

/// The fixture as MPEG-TS: the same fragments as [`mux`] (≈ 6 video frames each with
/// the audio of the same span) fed to one [`TsWriter`], a new segment (PAT + PMT) at
/// every fragment that starts with a keyframe (or every 5 fragments without video).
fn mux_ts(flv: &Flv, with_video: bool, with_audio: bool) -> Muxed {
    let video_cfg =
        with_video.then(|| video_config(VideoCodec::H264, flv.video_record.clone().unwrap()));
    let audio_cfg = with_audio.then(|| audio_config(flv.asc.clone().unwrap()));
    let mut w = TsWriter::new();
    w.configure(video_cfg.as_ref(), audio_cfg.as_ref()).unwrap();
    let video = if with_video {
        video_samples(&flv.video)
    } else {
        vec![]
    };
    let audio = if with_audio {
        audio_samples(&flv.audio)
    } else {
        vec![]
    };
    let mut m = Muxed::default();
    let (mut v, mut a) = (0, 0);
    while v < video.len() || a < audio.len() {
        let v_end = (v + VIDEO_FRAMES_PER_FRAGMENT).min(video.len());
        let a_end = if !with_audio {
            a
        } else if !with_video {
            (a + AUDIO_FRAMES_PER_FRAGMENT).min(audio.len())
        } else if v_end < video.len() {
            let until_ms = flv.video[v_end].dts_ms;
            a + flv.audio[a..]
                .iter()
                .take_while(|(ts, _)| *ts < until_ms)
                .count()
        } else {
            audio.len()
        };
        let segment_start = if with_video {
            video.get(v).is_some_and(|s| s.keyframe)
        } else {
            m.fragments % 5 == 0
        };
        if segment_start {
            w.begin_segment(&mut m.file);
        }
        let runs = [
            Run {
                track_id: VIDEO_TRACK_ID,
                base_decode_time: flv.video.get(v).map_or(0, |f| f.dts_ms as u64 * 90),
                samples: &video[v..v_end],
            },
            Run {
                track_id: AUDIO_TRACK_ID,
                base_decode_time: a as u64 * u64::from(AAC_FRAME),
                samples: &audio[a..a_end],
            },
        ];
        w.write_runs(&runs, &mut m.file);
        for f in &flv.video[v..v_end] {
            m.video_times
                .push(((f.dts_ms + f.cts_ms as i64) * 90, f.dts_ms * 90));
        }
        m.fragments += 1;
        v = v_end;
        a = a_end;
    }
    m.video_frames = video.len();
    m.audio_frames = audio.len();
    m
}

/// What ffmpeg/ffprobe read back from a TS: silent decode, the streams, frame counts,
/// duration and every video timestamp (plus the muxer's fixed offset).
fn check_ts_with_ffprobe(name: &str, m: &Muxed, video: bool, audio: bool) {
    let file = TempFile::new(name, &m.file);
    let path = file.0.as_path();
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let noise =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        noise.trim().is_empty(),
        "ffmpeg decode of {name} reported: {noise}"
    );

    let format = probe_sections(path, "format=format_name,duration", &[]);
    assert_eq!(get(&format[0], "format_name"), "mpegts");
    let duration: f64 = get(&format[0], "duration").parse().unwrap();
    assert!((duration - 2.0).abs() < 0.1, "duration {duration}");

    let streams = probe_sections(
        path,
        "stream=codec_type,codec_name,width,height,sample_rate,channels,nb_read_frames,id",
        &["-count_frames"],
    );
    // TS streams are listed twice: in the program and on their own.
    let mut unique: Vec<Vec<(String, String)>> = Vec::new();
    for s in streams.into_iter().filter(|s| !s.is_empty()) {
        if !unique.contains(&s) {
            unique.push(s);
        }
    }
    let streams = unique;
    assert_eq!(
        streams.len(),
        usize::from(video) + usize::from(audio),
        "{streams:?}"
    );
    let mut streams = streams.iter();
    if video {
        let s = streams.next().unwrap();
        assert_eq!(get(s, "codec_type"), "video");
        assert_eq!(get(s, "codec_name"), "h264");
        assert_eq!(get(s, "id"), format!("{:#x}", ts::VIDEO_PID));
        assert_eq!(get(s, "width"), "320");
        assert_eq!(get(s, "height"), "240");
        assert_eq!(get(s, "nb_read_frames"), m.video_frames.to_string());
    }
    if audio {
        let s = streams.next().unwrap();
        assert_eq!(get(s, "codec_type"), "audio");
        assert_eq!(get(s, "codec_name"), "aac");
        assert_eq!(get(s, "id"), format!("{:#x}", ts::AUDIO_PID));
        assert_eq!(get(s, "sample_rate"), SAMPLE_RATE.to_string());
        assert_eq!(get(s, "channels"), "1");
        assert_eq!(get(s, "nb_read_frames"), m.audio_frames.to_string());
    }

    if video {
        let packets: Vec<_> =
            probe_sections(path, "packet=pts,dts,flags", &["-select_streams", "v"])
                .into_iter()
                .filter(|p| !p.is_empty())
                .collect();
        let read: Vec<(i64, i64)> = packets
            .iter()
            .map(|p| {
                (
                    get(p, "pts").parse().unwrap(),
                    get(p, "dts").parse().unwrap(),
                )
            })
            .collect();
        let off = ts::TIMESTAMP_OFFSET as i64;
        let want: Vec<(i64, i64)> = m
            .video_times
            .iter()
            .map(|(p, d)| (p + off, d + off))
            .collect();
        assert_eq!(read, want);
        assert!(
            read.windows(2).any(|w| w[1].0 < w[0].0),
            "no reordered frames: the fixture should have B-frames"
        );
        let keys = packets.iter().filter(|p| get(p, "flags").starts_with('K'));
        assert_eq!(keys.count(), 2, "two GOPs, both IDRs flagged");
    }
}

#[test]
fn ts_h264_aac_plays() {
    let flv = read_flv(&fixture("h264_aac.flv"));
    let m = mux_ts(&flv, true, true);
    assert_eq!(m.file.len() % ts::PACKET_SIZE, 0);
    if have_ffprobe() {
        check_ts_with_ffprobe("h264_aac.ts", &m, true, true);
    }
}

#[test]
fn ts_h264_only_plays() {
    let flv = read_flv(&fixture("h264_aac.flv"));
    let m = mux_ts(&flv, true, false);
    if have_ffprobe() {
        check_ts_with_ffprobe("h264_only.ts", &m, true, false);
    }
}

#[test]
fn ts_audio_only_plays() {
    let flv = read_flv(&fixture("h264_aac.flv"));
    let m = mux_ts(&flv, false, true);
    if have_ffprobe() {
        check_ts_with_ffprobe("aac_only.ts", &m, false, true);
    }
}

// ---------------------------------------------------------------- Opus

/// The packets of an Ogg Opus file (RFC 7845), headers included: `OpusHead`,
/// `OpusTags`, then one audio packet per entry.
fn read_ogg_packets(file: &[u8]) -> Vec<Bytes> {
    let mut packets = Vec::new();
    let mut packet = Vec::new();
    let mut pos = 0;
    while pos < file.len() {
        assert_eq!(&file[pos..pos + 4], b"OggS", "page at {pos}");
        let segments = file[pos + 26] as usize;
        let lacing = &file[pos + 27..pos + 27 + segments];
        let mut body = pos + 27 + segments;
        for &len in lacing {
            packet.extend_from_slice(&file[body..body + len as usize]);
            body += len as usize;
            if len < 255 {
                packets.push(Bytes::from(std::mem::take(&mut packet)));
            }
        }
        pos = body;
    }
    packets
}

/// Audio packets and pre-skip of an Ogg Opus fixture.
fn opus_fixture(name: &str) -> (Vec<Bytes>, u16) {
    let mut packets = read_ogg_packets(&fixture(name));
    assert_eq!(&packets[0][..8], b"OpusHead");
    assert_eq!(&packets[1][..8], b"OpusTags");
    // OpusHead is little-endian (dOps is big-endian).
    let pre_skip = u16::from_le_bytes([packets[0][10], packets[0][11]]);
    packets.drain(..2);
    (packets, pre_skip)
}

fn opus_samples(packets: &[Bytes]) -> Vec<Sample> {
    packets
        .iter()
        .map(|p| Sample {
            duration: crate::codec::opus::packet_samples(p).unwrap(),
            cts_offset: 0,
            keyframe: true,
            data: p.clone(),
        })
        .collect()
}

#[test]
fn opus_fixture_reads() {
    let (p20, pre_skip) = opus_fixture("opus_20ms.ogg");
    assert_eq!(pre_skip, 312);
    assert_eq!(p20.len(), 7);
    assert!(opus_samples(&p20).iter().all(|s| s.duration == 960));
    let (p40, _) = opus_fixture("opus_40ms.ogg");
    assert_eq!(p40.len(), 4);
    assert!(opus_samples(&p40).iter().all(|s| s.duration == 1_920));
}

/// Opus in fMP4: an init segment and two fragments, the first with 20 ms packets,
/// the second with 40 ms ones (two encodings of the same sine, stereo), read back
/// by ffprobe with every packet where it was put.
#[test]
fn opus_plays() {
    let (p20, pre_skip) = opus_fixture("opus_20ms.ogg");
    let (p40, _) = opus_fixture("opus_40ms.ogg");
    let cfg = crate::codec::opus::config(2, pre_skip);
    let (s20, s40) = (opus_samples(&p20), opus_samples(&p40));
    let mut file = init_segment(None, Some(&cfg)).to_vec();
    let mut base = 0u64;
    let mut times = Vec::new();
    for (seq, samples) in [(1, &s20), (2, &s40)] {
        file.extend_from_slice(&fragment(
            seq,
            &[Run {
                track_id: AUDIO_TRACK_ID,
                base_decode_time: base,
                samples,
            }],
        ));
        for s in samples.iter() {
            times.push(base);
            base += s.duration as u64;
        }
    }
    assert_eq!(base, 7 * 960 + 4 * 1_920);
    if !have_ffprobe() {
        return;
    }
    let f = TempFile::new("opus.mp4", &file);
    let path = f.0.as_path();

    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let noise =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(noise.trim().is_empty(), "ffmpeg decode reported: {noise}");

    let streams = probe_sections(
        path,
        "stream=codec_type,codec_name,codec_tag_string,sample_rate,channels,time_base,duration_ts,nb_read_frames",
        &["-count_frames"],
    );
    assert_eq!(streams.len(), 1, "{streams:?}");
    let s = &streams[0];
    assert_eq!(get(s, "codec_type"), "audio");
    assert_eq!(get(s, "codec_name"), "opus");
    assert_eq!(get(s, "codec_tag_string"), "Opus");
    assert_eq!(get(s, "sample_rate"), "48000");
    assert_eq!(get(s, "channels"), "2");
    assert_eq!(get(s, "time_base"), "1/48000");
    assert_eq!(get(s, "nb_read_frames"), "11");
    assert_eq!(
        get(s, "duration_ts"),
        base.to_string(),
        "the sum of the durations"
    );

    // ffmpeg turns dOps into an OpusHead (little-endian): version 1, 2 channels,
    // pre-skip 312 (0x0138), 48000 Hz. A byte-order slip would show here.
    let extradata = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_data",
            "-show_entries",
            "stream=extradata",
        ])
        .args(["-of", "json"])
        .arg(path));
    assert!(
        extradata.contains("4f70 7573 4865 6164 0102 3801 80bb 0000"),
        "{extradata}"
    );

    // Every packet at its decode time (48 kHz): 20 ms steps, then 40 ms ones.
    let packets = probe_sections(path, "packet=dts", &[]);
    let read: Vec<u64> = packets
        .iter()
        .map(|p| get(p, "dts").parse().unwrap())
        .collect();
    assert_eq!(read, times);
}

/// H.264 and Opus side by side in one fragment: both tracks found.
#[test]
fn h264_opus_probes() {
    let flv = read_flv(&fixture("h264_aac.flv"));
    let video_cfg = video_config(VideoCodec::H264, flv.video_record.clone().unwrap());
    let (packets, pre_skip) = opus_fixture("opus_20ms.ogg");
    let audio_cfg = crate::codec::opus::config(2, pre_skip);
    let video = video_samples(&flv.video[..6]);
    let audio = opus_samples(&packets);
    let mut file = init_segment(Some(&video_cfg), Some(&audio_cfg)).to_vec();
    file.extend_from_slice(&fragment(
        1,
        &[
            Run {
                track_id: VIDEO_TRACK_ID,
                base_decode_time: 0,
                samples: &video,
            },
            Run {
                track_id: AUDIO_TRACK_ID,
                base_decode_time: 0,
                samples: &audio,
            },
        ],
    ));
    if !have_ffprobe() {
        return;
    }
    let f = TempFile::new("h264_opus.mp4", &file);
    let streams = probe_sections(
        &f.0,
        "stream=codec_type,codec_name,sample_rate,channels,nb_read_frames",
        &["-count_frames"],
    );
    assert_eq!(streams.len(), 2, "{streams:?}");
    assert_eq!(get(&streams[0], "codec_name"), "h264");
    assert_eq!(get(&streams[0], "nb_read_frames"), "6");
    assert_eq!(get(&streams[1], "codec_name"), "opus");
    assert_eq!(get(&streams[1], "sample_rate"), "48000");
    assert_eq!(get(&streams[1], "channels"), "2");
    assert_eq!(get(&streams[1], "nb_read_frames"), "7");
}
