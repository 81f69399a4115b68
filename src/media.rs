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
    /// Opus (RFC 6716), carried in fMP4 only ("Encapsulation of Opus in ISO Base
    /// Media File Format"); see [`crate::codec::opus`].
    Opus,
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
///
/// For Opus ([`crate::codec::opus::config`] builds one):
/// - `asc` holds the payload of the `dOps` box (OpusSpecificBox, big-endian, 11 bytes
///   for channel mapping family 0), written into the sample entry as is; when empty
///   the muxer writes one for `channels` with PreSkip 0;
/// - `object_type` is 0 (no MPEG-4 audio object type);
/// - `sample_rate` is 48000: Opus timestamps and durations always count 48 kHz samples;
/// - `frame_samples` is the nominal packet duration in 48 kHz samples (960 = 20 ms).
///   Packets may differ from it: the segmenter reads each packet's duration from its
///   TOC byte and falls back to `frame_samples` only for a packet it cannot parse;
/// - `codec_string` is `opus`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioConfig {
    pub codec: AudioCodec,
    /// AAC: the AudioSpecificConfig bytes. Opus: the `dOps` payload (or empty).
    pub asc: Bytes,
    /// Audio object type (2 = AAC-LC, 5 = HE-AAC, ...); 0 for Opus.
    pub object_type: u8,
    pub sample_rate: u32,
    pub channels: u8,
    /// Samples per access unit (1024 for AAC-LC; nominally 960 for Opus).
    pub frame_samples: u32,
    /// RFC 6381 codec string, e.g. `mp4a.40.2`, or `opus`.
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
    /// Video: length-prefixed NAL units (AVCC/HVCC layout). Audio: one raw AAC frame, or
    /// one Opus packet.
    pub data: Bytes,
}

/// What a publisher hands to the segmenter, in order, when it is not an FLV stream
/// (WHIP: configurations come from in-band parameter sets and the SDP, not tags).
#[derive(Clone, Debug, PartialEq)]
pub enum Media {
    Video(VideoConfig),
    Audio(AudioConfig),
    Frame(Frame),
}
