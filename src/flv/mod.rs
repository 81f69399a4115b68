//! FLV audio/video tag bodies (legacy and Enhanced RTMP) to codec configurations and frames.
//!
//! References: Adobe FLV spec v10.1 (VIDEODATA/AUDIODATA), Enhanced RTMP v1/v2
//! (ExVideoTagHeader/ExAudioTagHeader: IsExHeader, PacketType, FourCC, ModEx).
//! The functions are stateless: each call looks at one RTMP message body.

use std::fmt;

use bytes::Bytes;

use crate::codec::{self, aac, avc, hevc, CodecError};
use crate::media::{AudioConfig, VideoConfig};

#[cfg(test)]
mod tests;

/// What one video message body carries.
#[derive(Clone, Debug, PartialEq)]
pub enum VideoTag {
    /// Sequence start: AVC sequence header or Enhanced RTMP SequenceStart.
    Config(VideoConfig),
    /// One access unit.
    Frame {
        /// Composition time offset (PTS − DTS) in milliseconds.
        cts_ms: i32,
        /// The access unit really holds an IDR (H.264) or IRAP (H.265) picture,
        /// found by walking its NAL units (the FLV frame type is not trusted).
        keyframe: bool,
        /// Length-prefixed NAL units, exactly as received.
        data: Bytes,
    },
    EndOfSequence,
    /// Nothing to do: video info/command frame, empty payload, metadata.
    Skip,
    /// An access unit whose NAL units cannot be walked (a zero-length or overlong NAL
    /// unit): drop this frame, keep the stream. The text says what is wrong.
    BadFrame(String),
}

/// What one audio message body carries.
#[derive(Clone, Debug, PartialEq)]
pub enum AudioTag {
    Config(AudioConfig),
    /// One raw AAC access unit.
    Frame(Bytes),
    Skip,
}

/// Why a tag body was rejected. `Display` gives one line, e.g.
/// `unsupported video codec: AV1 (av01)` or `unsupported audio format 2 (MP3)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlvError {
    /// The body ended inside the named structure.
    Truncated(&'static str),
    /// A codec or feature vid does not carry; the text names it.
    Unsupported(String),
    /// Broken syntax or a value outside the sanity bounds.
    Malformed(String),
}

impl fmt::Display for FlvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlvError::Truncated(what) => write!(f, "truncated {what}"),
            FlvError::Unsupported(what) => write!(f, "unsupported {what}"),
            FlvError::Malformed(what) => write!(f, "malformed {what}"),
        }
    }
}

impl std::error::Error for FlvError {}

impl From<CodecError> for FlvError {
    fn from(e: CodecError) -> Self {
        match e {
            CodecError::Truncated(what) => FlvError::Truncated(what),
            CodecError::Unsupported(what) => FlvError::Unsupported(what),
            CodecError::Malformed(what) => FlvError::Malformed(what),
        }
    }
}

/// Legacy VideoCodecId of AVC.
const CODEC_ID_AVC: u8 = 7;
/// VideoFrameType of a video info / command frame.
const FRAME_TYPE_COMMAND: u8 = 5;

// Enhanced RTMP VideoPacketType / AudioPacketType values.
const PACKET_SEQUENCE_START: u8 = 0;
const PACKET_CODED_FRAMES: u8 = 1;
const PACKET_SEQUENCE_END: u8 = 2;
const PACKET_CODED_FRAMES_X: u8 = 3;
const PACKET_METADATA: u8 = 4;
const PACKET_MPEG2TS_SEQUENCE_START: u8 = 5;
const PACKET_MULTITRACK: u8 = 6;
const PACKET_MODEX: u8 = 7;
const AUDIO_PACKET_MULTICHANNEL_CONFIG: u8 = 4;
const AUDIO_PACKET_MULTITRACK: u8 = 5;

/// Legacy SoundFormat of AAC and of the Enhanced RTMP ExHeader.
const SOUND_FORMAT_EX_HEADER: u8 = 9;
const SOUND_FORMAT_AAC: u8 = 10;

#[derive(Clone, Copy, PartialEq, Eq)]
enum VideoCodecKind {
    Avc,
    Hevc,
}

/// Parses one FLV VIDEODATA body (RTMP message type 9).
///
/// Frames are checked to split exactly into length-prefixed NAL units. Since this
/// function has no state, the length size is found from the data itself (4, then
/// 2, then 1 byte: the first that fits exactly); encoders use 4 in practice.
pub fn parse_video(body: &Bytes) -> Result<VideoTag, FlvError> {
    let Some(&first) = body.first() else {
        return Ok(VideoTag::Skip);
    };
    if first & 0x80 != 0 {
        return parse_ex_video(body);
    }
    let frame_type = first >> 4;
    let codec_id = first & 0x0f;
    if frame_type == FRAME_TYPE_COMMAND {
        return Ok(VideoTag::Skip);
    }
    if codec_id != CODEC_ID_AVC {
        return Err(FlvError::Unsupported(format!(
            "video codec id {codec_id} ({})",
            legacy_video_codec_name(codec_id)
        )));
    }
    if body.len() < 5 {
        return Err(FlvError::Truncated("AVC video tag header"));
    }
    let cts = si24(&body[2..5]);
    let payload = body.slice(5..);
    match body[1] {
        0 => Ok(VideoTag::Config(avc::parse_config(&payload)?)),
        1 => frame(VideoCodecKind::Avc, cts, payload),
        2 => Ok(VideoTag::EndOfSequence),
        t => Err(FlvError::Malformed(format!("AVC packet type {t}"))),
    }
}

fn parse_ex_video(body: &Bytes) -> Result<VideoTag, FlvError> {
    let frame_type = (body[0] >> 4) & 0x07;
    let mut packet_type = body[0] & 0x0f;
    let mut pos = 1;
    // ModEx: modifiers that precede the real packet type. Each costs at least two
    // bytes, so the loop is bounded by the body length.
    while packet_type == PACKET_MODEX {
        pos = skip_mod_ex(body, pos, "video ModEx")?;
        let b = *body
            .get(pos)
            .ok_or(FlvError::Truncated("video ModEx type"))?;
        packet_type = b & 0x0f;
        pos += 1;
    }
    if packet_type != PACKET_METADATA && frame_type == FRAME_TYPE_COMMAND {
        return Ok(VideoTag::Skip);
    }
    if packet_type == PACKET_MULTITRACK {
        return Err(FlvError::Unsupported("video multitrack".into()));
    }
    let fourcc: [u8; 4] = body
        .get(pos..pos + 4)
        .and_then(|s| s.try_into().ok())
        .ok_or(FlvError::Truncated("video FourCC"))?;
    pos += 4;
    let kind = match &fourcc {
        b"avc1" => VideoCodecKind::Avc,
        b"hvc1" => VideoCodecKind::Hevc,
        other => {
            return Err(FlvError::Unsupported(format!(
                "video codec: {} ({})",
                video_fourcc_name(other),
                fourcc_text(other)
            )))
        }
    };
    match packet_type {
        PACKET_SEQUENCE_START => {
            let record = body.slice(pos..);
            Ok(VideoTag::Config(match kind {
                VideoCodecKind::Avc => avc::parse_config(&record)?,
                VideoCodecKind::Hevc => hevc::parse_config(&record)?,
            }))
        }
        PACKET_CODED_FRAMES => {
            let cts = body
                .get(pos..pos + 3)
                .map(si24)
                .ok_or(FlvError::Truncated("composition time offset"))?;
            frame(kind, cts, body.slice(pos + 3..))
        }
        PACKET_CODED_FRAMES_X => frame(kind, 0, body.slice(pos..)),
        PACKET_SEQUENCE_END => Ok(VideoTag::EndOfSequence),
        PACKET_METADATA => Ok(VideoTag::Skip),
        PACKET_MPEG2TS_SEQUENCE_START => Err(FlvError::Unsupported(
            "video packet type MPEG2TSSequenceStart".into(),
        )),
        t => Err(FlvError::Unsupported(format!("video packet type {t}"))),
    }
}

fn frame(kind: VideoCodecKind, cts_ms: i32, data: Bytes) -> Result<VideoTag, FlvError> {
    if data.is_empty() {
        return Ok(VideoTag::Skip);
    }
    let Some(length_size) = codec::detect_length_size(&data) else {
        return Ok(VideoTag::BadFrame(format!(
            "video frame: {} bytes do not split into length-prefixed NAL units \
             (a zero-length or overlong NAL unit)",
            data.len()
        )));
    };
    let keyframe = match kind {
        VideoCodecKind::Avc => avc::is_idr(&data, length_size),
        VideoCodecKind::Hevc => hevc::is_irap(&data, length_size),
    };
    Ok(VideoTag::Frame {
        cts_ms,
        keyframe,
        data,
    })
}

/// Parses one FLV AUDIODATA body (RTMP message type 8).
pub fn parse_audio(body: &Bytes) -> Result<AudioTag, FlvError> {
    let Some(&first) = body.first() else {
        // An empty audio message is the legacy "silence" signal.
        return Ok(AudioTag::Skip);
    };
    let format = first >> 4;
    match format {
        SOUND_FORMAT_AAC => {
            let packet_type = *body.get(1).ok_or(FlvError::Truncated("AAC packet type"))?;
            aac_packet(packet_type, body.slice(2..))
        }
        SOUND_FORMAT_EX_HEADER => parse_ex_audio(body),
        f => Err(FlvError::Unsupported(format!(
            "audio format {f} ({})",
            legacy_audio_format_name(f)
        ))),
    }
}

fn aac_packet(packet_type: u8, payload: Bytes) -> Result<AudioTag, FlvError> {
    match packet_type {
        0 => Ok(AudioTag::Config(aac::parse_asc(&payload)?)),
        1 if payload.is_empty() => Ok(AudioTag::Skip),
        1 => Ok(AudioTag::Frame(payload)),
        t => Err(FlvError::Malformed(format!("AAC packet type {t}"))),
    }
}

fn parse_ex_audio(body: &Bytes) -> Result<AudioTag, FlvError> {
    let mut packet_type = body[0] & 0x0f;
    let mut pos = 1;
    while packet_type == PACKET_MODEX {
        pos = skip_mod_ex(body, pos, "audio ModEx")?;
        let b = *body
            .get(pos)
            .ok_or(FlvError::Truncated("audio ModEx type"))?;
        packet_type = b & 0x0f;
        pos += 1;
    }
    if packet_type == AUDIO_PACKET_MULTITRACK {
        return Err(FlvError::Unsupported("audio multitrack".into()));
    }
    let fourcc: [u8; 4] = body
        .get(pos..pos + 4)
        .and_then(|s| s.try_into().ok())
        .ok_or(FlvError::Truncated("audio FourCC"))?;
    pos += 4;
    if &fourcc != b"mp4a" {
        return Err(FlvError::Unsupported(format!(
            "audio codec: {} ({})",
            audio_fourcc_name(&fourcc),
            fourcc_text(&fourcc)
        )));
    }
    match packet_type {
        PACKET_SEQUENCE_START => aac_packet(0, body.slice(pos..)),
        PACKET_CODED_FRAMES => aac_packet(1, body.slice(pos..)),
        PACKET_SEQUENCE_END | AUDIO_PACKET_MULTICHANNEL_CONFIG => Ok(AudioTag::Skip),
        t => Err(FlvError::Unsupported(format!("audio packet type {t}"))),
    }
}

/// Skips one ModEx block (UI8 size − 1, or UI16 size − 1 after 0xff) starting at
/// `pos`; returns the position of the byte holding ModExType and the next packet type.
fn skip_mod_ex(body: &[u8], mut pos: usize, what: &'static str) -> Result<usize, FlvError> {
    let mut size = *body.get(pos).ok_or(FlvError::Truncated(what))? as usize + 1;
    pos += 1;
    if size == 256 {
        let b = body.get(pos..pos + 2).ok_or(FlvError::Truncated(what))?;
        size = u16::from_be_bytes([b[0], b[1]]) as usize + 1;
        pos += 2;
    }
    if body.len() < pos + size {
        return Err(FlvError::Truncated(what));
    }
    Ok(pos + size)
}

/// Signed 24-bit big-endian integer (FLV SI24).
fn si24(b: &[u8]) -> i32 {
    let v = ((b[0] as i32) << 16) | ((b[1] as i32) << 8) | b[2] as i32;
    (v << 8) >> 8
}

fn fourcc_text(fourcc: &[u8; 4]) -> String {
    fourcc
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                (b as char).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect()
}

fn video_fourcc_name(fourcc: &[u8; 4]) -> &'static str {
    match fourcc {
        b"av01" => "AV1",
        b"vp09" => "VP9",
        b"vp08" => "VP8",
        b"vvc1" => "VVC",
        _ => "unknown",
    }
}

fn audio_fourcc_name(fourcc: &[u8; 4]) -> &'static str {
    match fourcc {
        b"Opus" => "Opus",
        b"fLaC" => "FLAC",
        b"ac-3" => "AC-3",
        b"ec-3" => "E-AC-3",
        b".mp3" => "MP3",
        _ => "unknown",
    }
}

fn legacy_video_codec_name(id: u8) -> &'static str {
    match id {
        2 => "Sorenson H.263",
        3 => "Screen video",
        4 => "On2 VP6",
        5 => "On2 VP6 with alpha",
        6 => "Screen video v2",
        7 => "AVC",
        12 => "HEVC, non-standard; use Enhanced RTMP hvc1",
        13 => "AV1, non-standard",
        _ => "reserved",
    }
}

fn legacy_audio_format_name(format: u8) -> &'static str {
    match format {
        0 => "Linear PCM, platform endian",
        1 => "ADPCM",
        2 => "MP3",
        3 => "Linear PCM, little endian",
        4 => "Nellymoser 16 kHz mono",
        5 => "Nellymoser 8 kHz mono",
        6 => "Nellymoser",
        7 => "G.711 A-law",
        8 => "G.711 mu-law",
        10 => "AAC",
        11 => "Speex",
        14 => "MP3 8 kHz",
        15 => "Device-specific sound",
        _ => "reserved",
    }
}
