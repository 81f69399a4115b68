//! fMP4 / CMAF: init segment (`ftyp` + `moov`) and fragments (`moof` + `mdat`).

use bytes::Bytes;

pub const VIDEO_TRACK_ID: u32 = 1;
pub const AUDIO_TRACK_ID: u32 = 2;
/// Video media timescale; the audio timescale is the track's sample rate.
pub const VIDEO_TIMESCALE: u32 = 90_000;

/// One sample of a track run, in the track's timescale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    pub duration: u32,
    /// PTS − DTS in the track's timescale.
    pub cts_offset: i32,
    pub keyframe: bool,
    pub data: Bytes,
}

/// The samples of one track inside one fragment.
#[derive(Clone, Copy, Debug)]
pub struct Run<'a> {
    pub track_id: u32,
    pub base_decode_time: u64,
    pub samples: &'a [Sample],
}
