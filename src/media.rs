//! The vocabulary shared by every stage of the media core.

use bytes::Bytes;

/// Video codecs vid carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoCodec {
    H264,
    H265,
}

/// Audio codecs vid carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AudioCodec {
    Aac,
}

/// Decoder configuration of a video track, taken from the FLV sequence header.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoConfig {
    pub codec: VideoCodec,
    /// The decoder configuration record exactly as carried in FLV
    /// (`AVCDecoderConfigurationRecord` for H.264, `HEVCDecoderConfigurationRecord` for H.265).
    pub record: Bytes,
    /// Size of the NAL unit length prefix in frames (1, 2 or 4).
    pub nalu_length_size: u8,
    pub width: u32,
    pub height: u32,
    /// Frames per second when the SPS signals it (VUI timing info).
    pub frame_rate: Option<f64>,
    /// RFC 6381 codec string, e.g. `avc1.64001f` or `hvc1.1.6.L93.B0`.
    pub codec_string: String,
}

/// Decoder configuration of an audio track.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioConfig {
    pub codec: AudioCodec,
    /// AAC AudioSpecificConfig bytes.
    pub asc: Bytes,
    /// Audio object type (2 = AAC-LC, 5 = HE-AAC, ...).
    pub object_type: u8,
    pub sample_rate: u32,
    pub channels: u8,
    /// Samples per access unit (1024 for AAC-LC).
    pub frame_samples: u32,
    /// RFC 6381 codec string, e.g. `mp4a.40.2`.
    pub codec_string: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrackKind {
    Video,
    Audio,
}

/// One access unit as it arrives from the publisher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub kind: TrackKind,
    /// Decode timestamp in milliseconds (RTMP time base, unwrapped to 64 bits).
    pub dts_ms: i64,
    /// Composition time offset in milliseconds (PTS − DTS), 0 for audio.
    pub cts_ms: i32,
    /// Video: an IDR / IRAP picture. Audio: always true.
    pub keyframe: bool,
    /// Video: length-prefixed NAL units (AVCC/HVCC layout). Audio: one raw AAC frame.
    pub data: Bytes,
}
