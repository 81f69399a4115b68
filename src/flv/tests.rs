//! Tests over real FLV files made by ffmpeg (see tests/fixtures/flv/README) and
//! over hand-built bodies.

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;

use super::*;
use crate::codec::nal_units;
use crate::media::{AudioCodec, VideoCodec};

const TAG_AUDIO: u8 = 8;
const TAG_VIDEO: u8 = 9;

/// One FLV tag from a file.
struct Tag {
    kind: u8,
    timestamp: u32,
    body: Bytes,
}

/// A minimal FLV file reader: header, then (PreviousTagSize, tag) pairs.
fn read_flv(data: &[u8]) -> Vec<Tag> {
    assert_eq!(&data[..3], b"FLV", "not an FLV file");
    let header_len = u32::from_be_bytes(data[5..9].try_into().unwrap()) as usize;
    let mut pos = header_len + 4; // first PreviousTagSize (0)
    let mut tags = Vec::new();
    while pos + 11 <= data.len() {
        let kind = data[pos] & 0x1f;
        let size = u32::from_be_bytes([0, data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
        let timestamp =
            u32::from_be_bytes([data[pos + 7], data[pos + 4], data[pos + 5], data[pos + 6]]);
        let body = Bytes::copy_from_slice(&data[pos + 11..pos + 11 + size]);
        let prev =
            u32::from_be_bytes(data[pos + 11 + size..pos + 15 + size].try_into().unwrap()) as usize;
        assert_eq!(prev, size + 11, "PreviousTagSize mismatch");
        tags.push(Tag {
            kind,
            timestamp,
            body,
        });
        pos += 15 + size;
    }
    assert_eq!(pos, data.len(), "trailing bytes after the last tag");
    tags
}

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/flv")
        .join(name)
}

fn fixture(name: &str) -> Vec<Tag> {
    read_flv(&std::fs::read(fixture_path(name)).unwrap())
}

struct VideoFrame {
    dts: u32,
    cts: i32,
    keyframe: bool,
    data: Bytes,
}

#[derive(Default)]
struct Parsed {
    video_configs: Vec<VideoConfig>,
    frames: Vec<VideoFrame>,
    end_of_sequence: usize,
    video_skips: usize,
    audio_configs: Vec<AudioConfig>,
    audio_frames: Vec<Bytes>,
}

fn parse_file(tags: &[Tag]) -> Parsed {
    let mut p = Parsed::default();
    for tag in tags {
        match tag.kind {
            TAG_VIDEO => match parse_video(&tag.body).unwrap() {
                VideoTag::Config(c) => p.video_configs.push(c),
                VideoTag::Frame {
                    cts_ms,
                    keyframe,
                    data,
                } => p.frames.push(VideoFrame {
                    dts: tag.timestamp,
                    cts: cts_ms,
                    keyframe,
                    data,
                }),
                VideoTag::EndOfSequence => p.end_of_sequence += 1,
                VideoTag::Skip => p.video_skips += 1,
                VideoTag::BadFrame(why) => panic!("{why}"),
            },
            TAG_AUDIO => match parse_audio(&tag.body).unwrap() {
                AudioTag::Config(c) => p.audio_configs.push(c),
                AudioTag::Frame(f) => p.audio_frames.push(f),
                AudioTag::Skip => {}
            },
            _ => {}
        }
    }
    p
}

// ---------------------------------------------------------------- ffprobe helpers

fn ffprobe(args: &[&str]) -> Option<String> {
    match Command::new("ffprobe").args(args).output() {
        Ok(out) if out.status.success() => Some(String::from_utf8_lossy(&out.stdout).into_owned()),
        Ok(out) => panic!(
            "ffprobe {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => {
            eprintln!("skipping ffprobe cross-check: cannot run ffprobe ({e})");
            None
        }
    }
}

/// `key=value` lines of one `-show_entries stream=...` section.
fn stream_field(out: &str, key: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("ffprobe output lacks {key}: {out}"))
        .to_string()
}

/// Writes the parsed video as an Annex B elementary stream (parameter sets from the
/// record first), for ffprobe to judge what we extracted.
fn write_annex_b(p: &Parsed, name: &str) -> PathBuf {
    let config = &p.video_configs[0];
    let mut out = Vec::new();
    let params: Vec<Bytes> = match config.codec {
        VideoCodec::H264 => {
            let (_, sets) = avc::split_record(&config.record).unwrap();
            sets.sps.into_iter().chain(sets.pps).collect()
        }
        VideoCodec::H265 => {
            let (_, sets) = hevc::split_record(&config.record).unwrap();
            sets.vps
                .into_iter()
                .chain(sets.sps)
                .chain(sets.pps)
                .collect()
        }
    };
    for ps in params {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(&ps);
    }
    for f in &p.frames {
        for nal in nal_units(&f.data, config.nalu_length_size) {
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(nal.unwrap());
        }
    }
    let ext = match config.codec {
        VideoCodec::H264 => "h264",
        VideoCodec::H265 => "hevc",
    };
    let path =
        std::env::temp_dir().join(format!("vid-flv-test-{}-{name}.{ext}", std::process::id()));
    std::fs::write(&path, out).unwrap();
    path
}

/// ffprobe's view of an elementary stream.
struct Probed {
    profile: String,
    level: i64,
    width: u32,
    height: u32,
    /// Decoded frames, and how many of them are key frames.
    frames: usize,
    keyframes: usize,
    /// Decode-order indices of the packets ffprobe flags as key.
    key_packets: Vec<usize>,
}

fn probe_elementary(path: &Path) -> Option<Probed> {
    let p = path.to_str().unwrap();
    let stream = ffprobe(&[
        "-v",
        "error",
        "-select_streams",
        "v:0",
        "-show_entries",
        "stream=profile,level,width,height",
        "-of",
        "default=nw=1",
        p,
    ])?;
    let frames = ffprobe(&[
        "-v",
        "error",
        "-select_streams",
        "v:0",
        "-show_entries",
        "frame=key_frame",
        "-of",
        "csv=p=0",
        p,
    ])?;
    let flags: Vec<&str> = frames
        .lines()
        .map(|l| l.trim_end_matches(','))
        .filter(|l| !l.is_empty())
        .collect();
    let packets = ffprobe(&[
        "-v",
        "error",
        "-select_streams",
        "v:0",
        "-show_entries",
        "packet=flags",
        "-of",
        "csv=p=0",
        p,
    ])?;
    let key_packets = packets
        .lines()
        .filter(|l| !l.is_empty())
        .enumerate()
        .filter(|(_, l)| l.starts_with('K'))
        .map(|(i, _)| i)
        .collect();
    Some(Probed {
        profile: stream_field(&stream, "profile"),
        level: stream_field(&stream, "level").parse().unwrap(),
        width: stream_field(&stream, "width").parse().unwrap(),
        height: stream_field(&stream, "height").parse().unwrap(),
        frames: flags.len(),
        keyframes: flags.iter().filter(|f| f.starts_with('1')).count(),
        key_packets,
    })
}

fn key_indices(p: &Parsed) -> Vec<usize> {
    (0..p.frames.len())
        .filter(|&i| p.frames[i].keyframe)
        .collect()
}

fn h264_profile_name(profile_idc: u8) -> &'static str {
    match profile_idc {
        66 => "Constrained Baseline",
        77 => "Main",
        100 => "High",
        110 => "High 10",
        122 => "High 4:2:2",
        244 => "High 4:4:4 Predictive",
        _ => "?",
    }
}

/// Cross-checks a parsed H.264 FLV against ffprobe: the elementary stream we extracted
/// (profile, level, size, frame and key frame counts) and the per-packet
/// composition offsets of the FLV itself.
fn check_h264_with_ffprobe(p: &Parsed, name: &str) {
    let config = &p.video_configs[0];
    let es = write_annex_b(p, name);
    let probed = probe_elementary(&es);
    std::fs::remove_file(&es).ok();
    let Some(probed) = probed else {
        return;
    };
    assert_eq!(probed.profile, h264_profile_name(config.record[1]));
    assert_eq!(probed.level, config.record[3] as i64);
    assert_eq!((probed.width, probed.height), (config.width, config.height));
    assert_eq!(probed.frames, p.frames.len());
    assert_eq!(probed.keyframes, key_indices(p).len());
    assert_eq!(probed.key_packets, key_indices(p));

    // Per-packet pts - dts straight from the FLV, in decode order.
    let flv = fixture_path(name);
    let packets = ffprobe(&[
        "-v",
        "error",
        "-select_streams",
        "v:0",
        "-show_entries",
        "packet=pts,dts,flags",
        "-of",
        "csv=p=0",
        flv.to_str().unwrap(),
    ])
    .unwrap();
    let probed: Vec<(i64, bool)> = packets
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let v: Vec<&str> = l.split(',').collect();
            let pts: i64 = v[0].parse().unwrap();
            let dts: i64 = v[1].parse().unwrap();
            (pts - dts, v[2].starts_with('K'))
        })
        .collect();
    let ours: Vec<(i64, bool)> = p
        .frames
        .iter()
        .map(|f| (f.cts as i64, f.keyframe))
        .collect();
    assert_eq!(ours, probed);
}

// ---------------------------------------------------------------- fixtures

#[test]
fn h264_aac_from_debian_ffmpeg() {
    let name = "h264_aac_320x240.flv";
    let p = parse_file(&fixture(name));

    assert_eq!(p.video_configs.len(), 1);
    let v = &p.video_configs[0];
    assert_eq!(v.codec, VideoCodec::H264);
    // testsrc is RGB, so x264 picks 4:4:4 and the High 4:4:4 Predictive profile (244).
    assert_eq!(v.codec_string, "avc1.f4000d");
    assert_eq!((v.width, v.height), (320, 240));
    assert_eq!(v.nalu_length_size, 4);
    assert_eq!(v.frame_rate, Some(30.0));

    assert_eq!(p.frames.len(), 30);
    // -g 15 over 30 frames: two GOPs, each starting with an IDR.
    assert_eq!(key_indices(&p), vec![0, 15]);
    // -bf 2: B-frames give non-zero composition offsets.
    assert!(p.frames.iter().any(|f| f.cts != 0));
    assert!(p.frames.iter().all(|f| f.cts >= 0));
    assert!(p.frames.windows(2).all(|w| w[0].dts <= w[1].dts));
    assert_eq!(p.end_of_sequence, 1);

    assert_eq!(p.audio_configs.len(), 1);
    let a = &p.audio_configs[0];
    assert_eq!(a.codec, AudioCodec::Aac);
    assert_eq!(a.codec_string, "mp4a.40.2");
    assert_eq!(
        (a.object_type, a.sample_rate, a.channels, a.frame_samples),
        (2, 44100, 1, 1024)
    );
    assert_eq!(p.audio_frames.len(), 45);

    check_h264_with_ffprobe(&p, name);
    if let Some(out) = ffprobe(&[
        "-v",
        "error",
        "-select_streams",
        "a:0",
        "-count_packets",
        "-show_entries",
        "stream=sample_rate,channels,nb_read_packets,profile",
        "-of",
        "default=nw=1",
        fixture_path(name).to_str().unwrap(),
    ]) {
        assert_eq!(stream_field(&out, "sample_rate"), a.sample_rate.to_string());
        assert_eq!(stream_field(&out, "channels"), a.channels.to_string());
        assert_eq!(stream_field(&out, "profile"), "LC");
        assert_eq!(
            stream_field(&out, "nb_read_packets"),
            p.audio_frames.len().to_string()
        );
    }
}

#[test]
fn h264_high_profile_720p() {
    let name = "h264_high_1280x720.flv";
    let p = parse_file(&fixture(name));
    let v = &p.video_configs[0];
    assert_eq!(v.codec_string, "avc1.64001f");
    assert_eq!((v.width, v.height), (1280, 720));
    assert_eq!(v.frame_rate, Some(30.0));
    assert_eq!(p.frames.len(), 30);
    assert_eq!(p.frames.iter().filter(|f| f.keyframe).count(), 1);
    assert!(p.frames[0].keyframe);
    assert!(p.frames.iter().any(|f| f.cts != 0));
    assert!(p.audio_configs.is_empty());
    check_h264_with_ffprobe(&p, name);
}

#[test]
fn hevc_enhanced_rtmp_from_modern_ffmpeg() {
    let name = "hevc_aac_426x240.flv";
    let tags = fixture(name);
    // The file really uses the Enhanced RTMP header with FourCC hvc1.
    let first_video = tags.iter().find(|t| t.kind == TAG_VIDEO).unwrap();
    assert_ne!(first_video.body[0] & 0x80, 0, "IsExHeader not set");
    assert_eq!(&first_video.body[1..5], b"hvc1");

    let p = parse_file(&tags);
    assert_eq!(p.video_configs.len(), 1);
    let v = &p.video_configs[0];
    assert_eq!(v.codec, VideoCodec::H265);
    // Main profile, Main tier, level 2 (60), progressive-source and frame-only
    // constraint flags (0x90); ffprobe reports "Main" and level 60.
    assert_eq!(v.codec_string, "hvc1.1.6.L60.90");
    // 426 is coded as 432 with a conformance window.
    assert_eq!((v.width, v.height), (426, 240));
    assert_eq!(v.nalu_length_size, 4);
    assert_eq!(v.frame_rate, Some(30.0));

    assert_eq!(p.frames.len(), 30);
    // x265 uses open GOPs: the second IRAP is a CRA (POC 15) sent at decode index 13,
    // ahead of its two leading B pictures; ffprobe's packet flags agree.
    assert_eq!(key_indices(&p), vec![0, 13]);
    assert!(p.frames.iter().any(|f| f.cts != 0));

    let a = &p.audio_configs[0];
    assert_eq!(
        (a.sample_rate, a.channels, a.codec_string.as_str()),
        (44100, 1, "mp4a.40.2")
    );
    assert_eq!(p.audio_frames.len(), 45);

    // Debian's ffprobe 5.1 cannot read Enhanced RTMP FLV, but it can read the
    // elementary stream we extracted.
    let es = write_annex_b(&p, name);
    let probed = probe_elementary(&es);
    std::fs::remove_file(&es).ok();
    if let Some(probed) = probed {
        assert_eq!(probed.profile, "Main");
        assert_eq!(probed.level, 60);
        assert_eq!((probed.width, probed.height), (426, 240));
        assert_eq!(probed.frames, 30);
        assert_eq!(probed.keyframes, 2);
        assert_eq!(probed.key_packets, key_indices(&p));
    }
}

#[test]
fn hevc_sps_details() {
    let p = parse_file(&fixture("hevc_aac_426x240.flv"));
    let (_, sets) = hevc::split_record(&p.video_configs[0].record).unwrap();
    let sps = hevc::parse_sps(&sets.sps[0]).unwrap();
    assert_eq!(
        (
            sps.chroma_format_idc,
            sps.bit_depth_luma,
            sps.bit_depth_chroma
        ),
        (1, 8, 8)
    );
}

// ---------------------------------------------------------------- re-wrapping

/// Enhanced RTMP `avc1` and `mp4a` carry the same payloads as the legacy tags.
#[test]
fn enhanced_avc1_and_mp4a_match_legacy() {
    for tag in fixture("h264_aac_320x240.flv") {
        let b = &tag.body;
        let (legacy, enhanced) = match tag.kind {
            TAG_VIDEO => {
                let frame_type = b[0] >> 4;
                let mut ex = vec![0x80 | (frame_type << 4)];
                match b[1] {
                    0 => ex[0] |= PACKET_SEQUENCE_START,
                    1 => ex[0] |= PACKET_CODED_FRAMES,
                    _ => ex[0] |= PACKET_SEQUENCE_END,
                }
                ex.extend_from_slice(b"avc1");
                if b[1] == 1 {
                    ex.extend_from_slice(&b[2..5]);
                }
                ex.extend_from_slice(&b[5..]);
                (
                    format!("{:?}", parse_video(b).unwrap()),
                    format!("{:?}", parse_video(&Bytes::from(ex)).unwrap()),
                )
            }
            TAG_AUDIO => {
                let mut ex = vec![(SOUND_FORMAT_EX_HEADER << 4) | b[1]];
                ex.extend_from_slice(b"mp4a");
                ex.extend_from_slice(&b[2..]);
                (
                    format!("{:?}", parse_audio(b).unwrap()),
                    format!("{:?}", parse_audio(&Bytes::from(ex)).unwrap()),
                )
            }
            _ => continue,
        };
        // The record bytes are the same, so the configs compare equal too.
        assert_eq!(legacy, enhanced);
    }
}

#[test]
fn enhanced_coded_frames_x_and_mod_ex() {
    let p = fixture("hevc_aac_426x240.flv");
    let frame = p
        .iter()
        .filter(|t| t.kind == TAG_VIDEO)
        .find_map(|t| match parse_video(&t.body).unwrap() {
            VideoTag::Frame {
                data,
                keyframe: true,
                ..
            } => Some(data),
            _ => None,
        })
        .unwrap();
    // CodedFramesX, key frame type: cts is implied 0.
    let mut x = vec![0x80 | (1 << 4) | PACKET_CODED_FRAMES_X];
    x.extend_from_slice(b"hvc1");
    x.extend_from_slice(&frame);
    let expect = VideoTag::Frame {
        cts_ms: 0,
        keyframe: true,
        data: frame.clone(),
    };
    assert_eq!(parse_video(&Bytes::from(x)).unwrap(), expect);

    // The same behind a ModEx TimestampOffsetNano (3 bytes) and one with a 16-bit size.
    let mut m = vec![
        0x80 | (1 << 4) | PACKET_MODEX,
        2,
        0x01,
        0x02,
        0x03,
        PACKET_CODED_FRAMES_X,
    ];
    m.extend_from_slice(b"hvc1");
    m.extend_from_slice(&frame);
    assert_eq!(parse_video(&Bytes::from(m)).unwrap(), expect);
    let mut m = vec![0x80 | (2 << 4) | PACKET_MODEX, 0xff, 0x01, 0x00];
    m.extend_from_slice(&[0u8; 257]);
    m.push((1 << 4) | PACKET_CODED_FRAMES);
    m.extend_from_slice(b"hvc1");
    m.extend_from_slice(&[0xff, 0xff, 0xfe]); // cts -2
    m.extend_from_slice(&frame);
    assert_eq!(
        parse_video(&Bytes::from(m)).unwrap(),
        VideoTag::Frame {
            cts_ms: -2,
            keyframe: true,
            data: frame.clone()
        }
    );
    // ModEx size pointing past the end.
    assert_eq!(
        parse_video(&Bytes::from_static(&[0x97, 0x20, 0x00])),
        Err(FlvError::Truncated("video ModEx"))
    );
}

// ---------------------------------------------------------------- hand-built bodies

fn video(b: &'static [u8]) -> Result<VideoTag, FlvError> {
    parse_video(&Bytes::from_static(b))
}

fn audio(b: &'static [u8]) -> Result<AudioTag, FlvError> {
    parse_audio(&Bytes::from_static(b))
}

fn err_text<T: fmt::Debug>(r: Result<T, FlvError>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn unsupported_codecs_are_named() {
    assert_eq!(
        err_text(video(&[0x22, 0x00, 0x84])),
        "unsupported video codec id 2 (Sorenson H.263)"
    );
    assert_eq!(
        err_text(video(&[0x14, 0x00])),
        "unsupported video codec id 4 (On2 VP6)"
    );
    assert!(err_text(video(&[0x1c, 0x00, 0, 0, 0])).contains("HEVC"));
    assert_eq!(
        err_text(video(b"\x90av01\x81\x00\x0c\x00")),
        "unsupported video codec: AV1 (av01)"
    );
    assert_eq!(
        err_text(video(b"\x91vp09\x00\x01")),
        "unsupported video codec: VP9 (vp09)"
    );
    assert_eq!(
        err_text(video(b"\x90xyz\x01")),
        "unsupported video codec: unknown (xyz\\x01)"
    );
    assert_eq!(
        err_text(video(b"\x96\x00hvc1")),
        "unsupported video multitrack"
    );
    assert_eq!(
        err_text(video(b"\x95hvc1\x00")),
        "unsupported video packet type MPEG2TSSequenceStart"
    );
    assert_eq!(
        err_text(video(b"\x98hvc1")),
        "unsupported video packet type 8"
    );

    assert_eq!(
        err_text(audio(&[0x2f, 0xff, 0xfb])),
        "unsupported audio format 2 (MP3)"
    );
    assert_eq!(
        err_text(audio(&[0xbe, 0x00])),
        "unsupported audio format 11 (Speex)"
    );
    assert_eq!(
        err_text(audio(b"\x90Opus\x01\x02")),
        "unsupported audio codec: Opus (Opus)"
    );
    assert_eq!(
        err_text(audio(b"\x91.mp3\xff")),
        "unsupported audio codec: MP3 (.mp3)"
    );
    assert_eq!(
        err_text(audio(b"\x95\x00mp4a")),
        "unsupported audio multitrack"
    );
    // AAC Main inside a legacy AAC sequence header.
    assert_eq!(
        err_text(audio(&[0xaf, 0x00, 0x0a, 0x10])),
        "unsupported AAC object type 1 (AAC Main)"
    );
}

#[test]
fn skips_and_ends() {
    assert_eq!(video(&[]), Ok(VideoTag::Skip));
    // Legacy video info/command frame, with and without the command byte.
    assert_eq!(video(&[0x57, 0x00]), Ok(VideoTag::Skip));
    assert_eq!(video(&[0x52]), Ok(VideoTag::Skip));
    // Enhanced command frame (no FourCC follows).
    assert_eq!(video(&[0xd1, 0x01]), Ok(VideoTag::Skip));
    // Enhanced metadata (AMF colorInfo) ignores the frame type.
    assert_eq!(
        video(b"\xd4hvc1\x02\x00\x09colorInfo\x03\x00\x00\x09"),
        Ok(VideoTag::Skip)
    );
    // AVC end of sequence, legacy and enhanced.
    assert_eq!(video(&[0x17, 0x02, 0, 0, 0]), Ok(VideoTag::EndOfSequence));
    assert_eq!(video(b"\x92avc1"), Ok(VideoTag::EndOfSequence));
    // Empty AVC frame.
    assert_eq!(video(&[0x27, 0x01, 0, 0, 0]), Ok(VideoTag::Skip));

    assert_eq!(audio(&[]), Ok(AudioTag::Skip));
    assert_eq!(audio(&[0xaf, 0x01]), Ok(AudioTag::Skip));
    assert_eq!(audio(b"\x92mp4a"), Ok(AudioTag::Skip));
    assert_eq!(audio(b"\x94mp4a\x00\x02"), Ok(AudioTag::Skip));
    assert_eq!(
        audio(&[0xaf, 0x01, 0x21, 0x10]),
        Ok(AudioTag::Frame(Bytes::from_static(&[0x21, 0x10])))
    );
}

#[test]
fn keyframe_flag_is_verified_against_nal_units() {
    // FLV says key frame, the NAL unit is a non-IDR slice.
    assert_eq!(
        video(&[0x17, 0x01, 0, 0, 0x21, 0, 0, 0, 2, 0x41, 0x9a]),
        Ok(VideoTag::Frame {
            cts_ms: 33,
            keyframe: false,
            data: Bytes::from_static(&[0, 0, 0, 2, 0x41, 0x9a]),
        })
    );
    // FLV says inter frame, the NAL unit is an IDR slice; negative cts.
    assert_eq!(
        video(&[0x27, 0x01, 0xff, 0xff, 0xdf, 0, 0, 0, 2, 0x65, 0x88]),
        Ok(VideoTag::Frame {
            cts_ms: -33,
            keyframe: true,
            data: Bytes::from_static(&[0, 0, 0, 2, 0x65, 0x88]),
        })
    );
    // Lengths that do not add up (an overlong NAL unit), or a zero-length NAL unit:
    // the frame is dropped, not the stream.
    assert!(matches!(
        video(&[0x17, 0x01, 0, 0, 0, 0, 0, 0, 9, 0x65, 0x88]),
        Ok(VideoTag::BadFrame(_))
    ));
    assert!(matches!(
        video(&[0x17, 0x01, 0, 0, 0, 0, 0, 0, 2, 0x65, 0x88, 0, 0, 0, 0]),
        Ok(VideoTag::BadFrame(_))
    ));
}

#[test]
fn malformed_and_truncated_headers() {
    assert_eq!(
        video(&[0x17, 0x00, 0]),
        Err(FlvError::Truncated("AVC video tag header"))
    );
    assert_eq!(
        video(&[0x17, 0x05, 0, 0, 0]),
        Err(FlvError::Malformed("AVC packet type 5".into()))
    );
    assert_eq!(video(b"\x90hvc"), Err(FlvError::Truncated("video FourCC")));
    assert_eq!(
        video(b"\x91hvc1\x00"),
        Err(FlvError::Truncated("composition time offset"))
    );
    assert_eq!(video(b"\x90hvc1"), Err(FlvError::Truncated("hvcC header")));
    assert_eq!(audio(&[0xaf]), Err(FlvError::Truncated("AAC packet type")));
    assert_eq!(
        audio(&[0xaf, 0x07]),
        Err(FlvError::Malformed("AAC packet type 7".into()))
    );
    assert_eq!(audio(b"\x90mp4"), Err(FlvError::Truncated("audio FourCC")));
    assert_eq!(
        audio(&[0xaf, 0x00]),
        Err(FlvError::Truncated("audioObjectType"))
    );
}

// ---------------------------------------------------------------- robustness

/// Every prefix of every real tag body, and single-byte corruptions of the
/// headers and configuration records, must return (Ok or Err), never panic.
#[test]
fn truncation_and_corruption_never_panic() {
    for name in [
        "h264_aac_320x240.flv",
        "h264_high_1280x720.flv",
        "hevc_aac_426x240.flv",
    ] {
        for tag in fixture(name) {
            let parse = |b: Bytes| match tag.kind {
                TAG_VIDEO => {
                    let _ = parse_video(&b);
                }
                TAG_AUDIO => {
                    let _ = parse_audio(&b);
                }
                _ => {}
            };
            let len = tag.body.len();
            let prefixes: Vec<usize> = if len <= 512 {
                (0..len).collect()
            } else {
                (0..256).chain((256..len).step_by(97)).collect()
            };
            for n in prefixes {
                parse(tag.body.slice(..n));
            }
            // Corrupt each of the first 200 bytes (all of a config record).
            for i in 0..len.min(200) {
                for x in [0x01u8, 0x80, 0xff, 0x3c] {
                    let mut b = tag.body.to_vec();
                    b[i] ^= x;
                    parse(Bytes::from(b));
                }
            }
        }
    }
}

/// Random bodies behind every interesting first byte.
#[test]
fn garbage_never_panics() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let firsts: Vec<u8> = (0..=255).collect();
    for round in 0..40_000 {
        let len = (next() % 96) as usize;
        let mut b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if let Some(f) = b.first_mut() {
            *f = firsts[round % 256];
        }
        // Give some bodies a valid FourCC so the codec parsers see garbage too.
        if round % 3 == 0 && b.len() > 5 {
            let cc: &[u8; 4] = [b"hvc1", b"avc1", b"mp4a"][(round / 3) % 3];
            b[1..5].copy_from_slice(cc);
        }
        let body = Bytes::from(b);
        let _ = parse_video(&body);
        let _ = parse_audio(&body);
    }
}

#[test]
fn si24_sign_extension() {
    assert_eq!(si24(&[0, 0, 0]), 0);
    assert_eq!(si24(&[0x7f, 0xff, 0xff]), 0x7f_ffff);
    assert_eq!(si24(&[0x80, 0, 0]), -0x80_0000);
    assert_eq!(si24(&[0xff, 0xff, 0xff]), -1);
}

/// Random SPS payloads behind valid record headers reach the SPS parsers
/// (h264-reader for H.264, ours for H.265) and must not panic them.
#[test]
fn random_parameter_sets_never_panic() {
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let real_avc = parse_file(&fixture("h264_high_1280x720.flv")).video_configs[0].clone();
    let (_, avc_sets) = avc::split_record(&real_avc.record).unwrap();
    let real_hevc = parse_file(&fixture("hevc_aac_426x240.flv")).video_configs[0].clone();
    let (_, hevc_sets) = hevc::split_record(&real_hevc.record).unwrap();
    for round in 0..20_000 {
        let len = 2 + (next() % 64) as usize;
        let mut sps: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Half of the rounds: a real SPS with a few random bytes changed.
        if round % 2 == 0 {
            let real = if round % 4 == 0 {
                &avc_sets.sps[0]
            } else {
                &hevc_sets.sps[0]
            };
            sps = real.to_vec();
            for _ in 0..1 + next() % 3 {
                let i = (next() as usize) % sps.len();
                sps[i] = next() as u8;
            }
        }
        // H.264
        sps[0] = 0x67;
        let mut rec = vec![1, sps.get(1).copied().unwrap_or(0x64), 0, 0x1f, 0xff, 0xe1];
        rec.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        rec.extend_from_slice(&sps);
        rec.push(1);
        rec.extend_from_slice(&(avc_sets.pps[0].len() as u16).to_be_bytes());
        rec.extend_from_slice(&avc_sets.pps[0]);
        if let Ok(c) = avc::parse_config(&Bytes::from(rec)) {
            assert!(c.width >= 1 && c.width <= codec::MAX_DIMENSION);
            assert!(c.height >= 1 && c.height <= codec::MAX_DIMENSION);
        }
        // H.265
        sps[0] = 0x42;
        sps[1] = 0x01;
        let _ = hevc::parse_sps(&sps);
    }
}
