//! MPEG-2 transport stream (ISO/IEC 13818-1) for legacy HLS players: H.264 + AAC.
//!
//! The writer takes the same [`Run`]s the fMP4 muxer gets (track ids and timescales
//! of [`super::fmp4`]: video in 90 kHz, audio in the sample rate of its
//! [`AudioConfig`]) and turns each sample into one PES packet:
//!
//! - one program (number 1): PAT on PID 0, PMT on [`PMT_PID`], video (stream type
//!   0x1B, H.264) on [`VIDEO_PID`], audio (0x0F, AAC in ADTS) on [`AUDIO_PID`];
//! - PAT + PMT at the start of every segment ([`TsWriter::begin_segment`]);
//! - video access units converted from length-prefixed NAL units (AVCC) to Annex B,
//!   an access unit delimiter first, SPS + PPS from the `avcC` record in front of
//!   every IDR (unless the access unit carries its own SPS);
//! - every AAC frame behind an ADTS header built from the [`AudioConfig`];
//! - PTS/DTS in 90 kHz: decode time + [`TIMESTAMP_OFFSET`] (so that PTS stays positive
//!   with B-frames), modulo 2^33; DTS written only when it differs from PTS;
//! - PCR on the video PID (the audio PID for audio-only programs), [`PCR_LEAD`] before
//!   the DTS of the PES it comes with: in the first packet of every PES on the PCR PID,
//!   and as an adaptation-field-only packet before a PES of the other PID when the last
//!   PCR is [`PCR_MAX_INTERVAL`] or more behind (so at least every 100 ms of media
//!   while samples arrive at least every 30 ms);
//! - the last packet of each PES is filled up with adaptation-field stuffing;
//! - continuity counters per PID continue across segments, the PMT version changes
//!   when the program's streams change.
//!
//! HEVC is not carried (Apple requires fMP4 for it), nor is Opus (no ADTS, and HLS
//! players expect it in fMP4): [`TsWriter::configure`] refuses both.

use bytes::Bytes;

use super::fmp4::{Run, AUDIO_TRACK_ID, VIDEO_TIMESCALE, VIDEO_TRACK_ID};
use crate::codec::{avc, nal_units};
use crate::media::{AudioCodec, AudioConfig, VideoCodec, VideoConfig};

pub const PACKET_SIZE: usize = 188;
pub const SYNC_BYTE: u8 = 0x47;
pub const PAT_PID: u16 = 0x0000;
pub const PMT_PID: u16 = 0x1000;
pub const VIDEO_PID: u16 = 0x0100;
pub const AUDIO_PID: u16 = 0x0101;
pub const PROGRAM_NUMBER: u16 = 1;
pub const TRANSPORT_STREAM_ID: u16 = 1;
pub const STREAM_TYPE_H264: u8 = 0x1B;
pub const STREAM_TYPE_AAC_ADTS: u8 = 0x0F;
pub const STREAM_ID_VIDEO: u8 = 0xE0;
pub const STREAM_ID_AUDIO: u8 = 0xC0;

/// Added to every decode/presentation time (90 kHz): 1.4 s, as many muxers do, so that
/// presentation times before the first decode time (negative composition offsets)
/// stay positive.
pub const TIMESTAMP_OFFSET: u64 = 126_000;
/// PCR runs this far (90 kHz) behind the DTS of the PES it is sent with: 0.7 s of
/// decoder buffering.
pub const PCR_LEAD: u64 = 63_000;
/// A PCR-only packet is inserted when the last PCR is this far (90 kHz) behind the
/// media being written: 70 ms, so that with AAC frames (at most 23 ms apart from
/// 44.1 kHz up) PCRs stay within the 100 ms the standard asks for.
pub const PCR_MAX_INTERVAL: u64 = 6_300;
/// Timestamps are 33 bits.
const TIMESTAMP_MASK: u64 = (1 << 33) - 1;

/// Largest AAC frame carried: the ADTS frame length field is 13 bits and includes the
/// 7-byte header. Longer frames are dropped (and counted).
pub const MAX_ADTS_PAYLOAD: usize = 8191 - ADTS_HEADER_LEN;
pub const ADTS_HEADER_LEN: usize = 7;
/// Largest PES packet length that the 16-bit field can carry; longer (video) PES are
/// written with length 0 (unbounded), which the standard allows for video only.
const MAX_PES_LENGTH: usize = 0xFFFF;

/// ADTS sampling_frequency_index values (ISO/IEC 14496-3 Table 1.18).
const ADTS_SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

const ANNEX_B_START: [u8; 4] = [0, 0, 0, 1];
/// Access unit delimiter, primary_pic_type 7 (any slice type).
const AUD_NAL: [u8; 2] = [0x09, 0xF0];
const NAL_AUD: u8 = 9;

/// Why a configuration cannot be carried in TS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TsError {
    /// HEVC (fMP4 only) or an unusable avcC record.
    Video(String),
    /// Opus (fMP4 only) or an AAC configuration ADTS cannot signal.
    Audio(String),
    /// Neither track.
    NoTracks,
}

impl std::fmt::Display for TsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TsError::Video(why) => write!(f, "no MPEG-TS for this video: {why}"),
            TsError::Audio(why) => write!(f, "no MPEG-TS for this audio: {why}"),
            TsError::NoTracks => write!(f, "no MPEG-TS without tracks"),
        }
    }
}

impl std::error::Error for TsError {}

#[derive(Clone, Debug, PartialEq, Eq)]
struct VideoTrack {
    /// SPS and PPS from the record, each behind a start code.
    param_sets: Vec<u8>,
    nalu_length_size: u8,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct AudioTrack {
    /// ADTS profile (object type − 1).
    profile: u8,
    sf_index: u8,
    channel_config: u8,
    sample_rate: u32,
}

/// Counters of what could not be written; they only grow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TsStats {
    /// AAC frames longer than [`MAX_ADTS_PAYLOAD`].
    pub dropped_audio: u64,
    /// Samples of a track the writer is not configured for.
    pub dropped_samples: u64,
}

/// The TS writer of one stream: tracks, continuity counters, PMT version, PCR clock.
#[derive(Debug, Default)]
pub struct TsWriter {
    video: Option<VideoTrack>,
    audio: Option<AudioTrack>,
    configured: bool,
    pmt_version: u8,
    cc_pat: u8,
    cc_pmt: u8,
    cc_video: u8,
    cc_audio: u8,
    /// Last PCR written (90 kHz base, before the 33-bit mask); None: one is due.
    last_pcr: Option<u64>,
    stats: TsStats,
}

/// Can these tracks be carried in TS? (H.264 and/or AAC that ADTS can signal; not
/// HEVC, not Opus.)
pub fn supported(video: Option<&VideoConfig>, audio: Option<&AudioConfig>) -> Result<(), TsError> {
    if video.is_none() && audio.is_none() {
        return Err(TsError::NoTracks);
    }
    if let Some(v) = video {
        video_track(v)?;
    }
    if let Some(a) = audio {
        audio_track(a)?;
    }
    Ok(())
}

fn video_track(v: &VideoConfig) -> Result<VideoTrack, TsError> {
    if v.codec != VideoCodec::H264 {
        return Err(TsError::Video(format!(
            "{:?} is carried in fMP4 only",
            v.codec
        )));
    }
    let (length_size, sets) =
        avc::split_record(&v.record).map_err(|e| TsError::Video(e.to_string()))?;
    let mut param_sets = Vec::new();
    for ps in sets.sps.iter().chain(&sets.pps) {
        param_sets.extend_from_slice(&ANNEX_B_START);
        param_sets.extend_from_slice(ps);
    }
    Ok(VideoTrack {
        param_sets,
        nalu_length_size: length_size,
    })
}

fn audio_track(a: &AudioConfig) -> Result<AudioTrack, TsError> {
    match a.codec {
        AudioCodec::Aac => {}
        AudioCodec::Opus => {
            return Err(TsError::Audio("Opus is carried in fMP4 only".into()));
        }
    }
    // HE-AAC (5, 29) is signalled as its AAC-LC core at the core rate; decoders find the
    // SBR/PS data in the frames (implicit signalling).
    let profile = match a.object_type {
        1..=4 => a.object_type - 1,
        5 | 29 => 1,
        n => return Err(TsError::Audio(format!("AAC object type {n}"))),
    };
    if a.frame_samples != 1024 {
        return Err(TsError::Audio(format!(
            "{} samples per frame (ADTS has 1024)",
            a.frame_samples
        )));
    }
    let sf_index = ADTS_SAMPLE_RATES
        .iter()
        .position(|&r| r == a.sample_rate)
        .ok_or_else(|| TsError::Audio(format!("sampling frequency {}", a.sample_rate)))?
        as u8;
    let channel_config = match a.channels {
        1..=6 => a.channels,
        8 => 7,
        n => return Err(TsError::Audio(format!("{n} channels"))),
    };
    Ok(AudioTrack {
        profile,
        sf_index,
        channel_config,
        sample_rate: a.sample_rate,
    })
}

/// The 7-byte ADTS header (no CRC) of an AAC frame of `payload_len` bytes;
/// `payload_len` must be at most [`MAX_ADTS_PAYLOAD`].
fn adts_header(a: &AudioTrack, payload_len: usize) -> [u8; ADTS_HEADER_LEN] {
    let len = (payload_len + ADTS_HEADER_LEN).min(0x1FFF) as u32;
    [
        0xFF,
        0xF1, // syncword, MPEG-4, layer 0, protection_absent
        (a.profile & 3) << 6 | (a.sf_index & 0xF) << 2 | (a.channel_config >> 2) & 1,
        (a.channel_config & 3) << 6 | (len >> 11) as u8 & 3,
        (len >> 3) as u8,
        ((len & 7) as u8) << 5 | 0x1F, // buffer fullness 0x7FF (variable rate)...
        0xFC,                          // ...and one raw data block
    ]
}

/// CRC-32/MPEG-2 (polynomial 0x04C11DB7, initial value all ones, no reflection, no
/// final xor) over a PSI section.
pub fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= (b as u32) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// What goes into a packet's adaptation field besides stuffing.
#[derive(Clone, Copy, Debug, Default)]
struct Adaptation {
    random_access: bool,
    /// PCR base in 90 kHz (the extension is written as 0).
    pcr: Option<u64>,
}

impl Adaptation {
    /// Bytes of the adaptation field (length byte included) these flags need.
    fn min_len(&self) -> usize {
        if self.random_access || self.pcr.is_some() {
            2 + if self.pcr.is_some() { 6 } else { 0 }
        } else {
            0
        }
    }
}

/// Writes one packet with as much of `payload` as fits; the rest of the packet is
/// adaptation-field stuffing. Returns the payload bytes used. `cc` is incremented only
/// when the packet carries payload.
fn write_packet(
    out: &mut Vec<u8>,
    pid: u16,
    start: bool,
    cc: &mut u8,
    af: Adaptation,
    payload: &[u8],
) -> usize {
    let room = PACKET_SIZE - 4;
    let take = payload.len().min(room - af.min_len());
    let af_len = room - take;
    let control = match (af_len > 0, take > 0) {
        (false, _) => 0x10,
        (true, true) => 0x30,
        (true, false) => 0x20,
    };
    let counter = if take > 0 {
        let c = *cc;
        *cc = (*cc + 1) & 0x0F;
        c
    } else {
        // Packets without payload repeat the last counter.
        cc.wrapping_sub(1) & 0x0F
    };
    let at = out.len();
    out.push(SYNC_BYTE);
    out.push(u8::from(start) << 6 | (pid >> 8) as u8 & 0x1F);
    out.push(pid as u8);
    out.push(control | counter);
    if af_len == 1 {
        out.push(0);
    } else if af_len > 1 {
        out.push((af_len - 1) as u8);
        out.push(u8::from(af.random_access) << 6 | u8::from(af.pcr.is_some()) << 4);
        if let Some(base) = af.pcr {
            let base = base & TIMESTAMP_MASK;
            out.push((base >> 25) as u8);
            out.push((base >> 17) as u8);
            out.push((base >> 9) as u8);
            out.push((base >> 1) as u8);
            out.push(((base & 1) as u8) << 7 | 0x7E); // reserved, extension high bit 0
            out.push(0); // extension
        }
        out.resize(at + 4 + af_len, 0xFF);
    }
    out.extend_from_slice(&payload[..take]);
    debug_assert_eq!(out.len() - at, PACKET_SIZE);
    take
}

/// A PTS or DTS field: 4-bit prefix, 33 bits with marker bits.
fn push_timestamp(out: &mut Vec<u8>, prefix: u8, t: u64) {
    let t = t & TIMESTAMP_MASK;
    out.push(prefix << 4 | ((t >> 29) as u8 & 0x0E) | 1);
    out.push((t >> 22) as u8);
    out.push(((t >> 14) as u8 & 0xFE) | 1);
    out.push((t >> 7) as u8);
    out.push(((t << 1) as u8 & 0xFE) | 1);
}

/// PES header for a payload of `payload_len` bytes.
fn pes_header(stream_id: u8, pts: u64, dts: u64, payload_len: usize) -> Vec<u8> {
    let with_dts = pts != dts;
    let header_data = if with_dts { 10 } else { 5 };
    let mut h = Vec::with_capacity(9 + header_data);
    h.extend_from_slice(&[0, 0, 1, stream_id]);
    let len = 3 + header_data + payload_len;
    let len = if len > MAX_PES_LENGTH { 0 } else { len as u16 };
    h.extend_from_slice(&len.to_be_bytes());
    h.push(0x84); // '10', not scrambled, data_alignment_indicator
    h.push(if with_dts { 0xC0 } else { 0x80 });
    h.push(header_data as u8);
    push_timestamp(&mut h, if with_dts { 3 } else { 2 }, pts);
    if with_dts {
        push_timestamp(&mut h, 1, dts);
    }
    h
}

/// One sample about to be written, on the 90 kHz clock.
struct Pending<'a> {
    dts: u64,
    pts: u64,
    keyframe: bool,
    video: bool,
    data: &'a Bytes,
}

impl TsWriter {
    pub fn new() -> Self {
        TsWriter::default()
    }

    pub fn stats(&self) -> TsStats {
        self.stats
    }

    /// True once [`TsWriter::configure`] succeeded for the current tracks.
    pub fn is_configured(&self) -> bool {
        self.configured
    }

    /// Sets the program's tracks (at the start and on every new init section). When
    /// they cannot be carried the writer is left unconfigured and writes nothing until
    /// the next successful call. A change of streams bumps the PMT version.
    pub fn configure(
        &mut self,
        video: Option<&VideoConfig>,
        audio: Option<&AudioConfig>,
    ) -> Result<(), TsError> {
        self.configured = false;
        supported(video, audio)?;
        let v = video.map(video_track).transpose()?;
        let a = audio.map(audio_track).transpose()?;
        let streams_changed = v.is_some() != self.video.is_some()
            || a.is_some() != self.audio.is_some()
            || a != self.audio;
        if streams_changed && (self.video.is_some() || self.audio.is_some()) {
            self.pmt_version = (self.pmt_version + 1) & 0x1F;
        }
        self.video = v;
        self.audio = a;
        self.configured = true;
        self.last_pcr = None;
        Ok(())
    }

    fn pcr_pid(&self) -> u16 {
        if self.video.is_some() {
            VIDEO_PID
        } else {
            AUDIO_PID
        }
    }

    /// Starts a segment: PAT and PMT; the next PES carries a PCR.
    pub fn begin_segment(&mut self, out: &mut Vec<u8>) {
        if !self.configured {
            return;
        }
        let pat = self.pat_section();
        write_psi(out, PAT_PID, &mut self.cc_pat, &pat);
        let pmt = self.pmt_section();
        write_psi(out, PMT_PID, &mut self.cc_pmt, &pmt);
        self.last_pcr = None;
    }

    fn pat_section(&self) -> Vec<u8> {
        let mut s = Vec::with_capacity(16);
        s.push(0x00); // table_id: program_association_section
        s.extend_from_slice(&[0, 0]); // section length, below
        s.extend_from_slice(&TRANSPORT_STREAM_ID.to_be_bytes());
        s.push(0xC1); // reserved, version 0, current_next_indicator
        s.extend_from_slice(&[0, 0]); // section_number, last_section_number
        s.extend_from_slice(&PROGRAM_NUMBER.to_be_bytes());
        s.extend_from_slice(&(0xE000 | PMT_PID).to_be_bytes());
        finish_section(s)
    }

    fn pmt_section(&self) -> Vec<u8> {
        let mut s = Vec::with_capacity(32);
        s.push(0x02); // table_id: TS_program_map_section
        s.extend_from_slice(&[0, 0]);
        s.extend_from_slice(&PROGRAM_NUMBER.to_be_bytes());
        s.push(0xC1 | (self.pmt_version & 0x1F) << 1);
        s.extend_from_slice(&[0, 0]);
        s.extend_from_slice(&(0xE000 | self.pcr_pid()).to_be_bytes());
        s.extend_from_slice(&0xF000u16.to_be_bytes()); // program_info_length 0
        if self.video.is_some() {
            s.push(STREAM_TYPE_H264);
            s.extend_from_slice(&(0xE000 | VIDEO_PID).to_be_bytes());
            s.extend_from_slice(&0xF000u16.to_be_bytes());
        }
        if self.audio.is_some() {
            s.push(STREAM_TYPE_AAC_ADTS);
            s.extend_from_slice(&(0xE000 | AUDIO_PID).to_be_bytes());
            s.extend_from_slice(&0xF000u16.to_be_bytes());
        }
        finish_section(s)
    }

    /// Writes the samples of `runs` (fMP4 track ids; video in 90 kHz, audio in its
    /// sample rate) as PES packets, interleaved by decode time (video first on ties).
    pub fn write_runs(&mut self, runs: &[Run], out: &mut Vec<u8>) {
        if !self.configured {
            return;
        }
        let mut pending: Vec<Pending> = Vec::new();
        for run in runs {
            let video = match run.track_id {
                VIDEO_TRACK_ID if self.video.is_some() => true,
                AUDIO_TRACK_ID if self.audio.is_some() => false,
                _ => {
                    self.stats.dropped_samples += run.samples.len() as u64;
                    continue;
                }
            };
            let rate = if video {
                VIDEO_TIMESCALE as u64
            } else {
                self.audio.as_ref().map_or(48_000, |a| a.sample_rate as u64)
            };
            let mut t = run.base_decode_time;
            for s in run.samples {
                let dts = to_90k(t, rate);
                let pts = if video {
                    dts.saturating_add_signed(s.cts_offset as i64)
                        .max(dts.saturating_sub(TIMESTAMP_OFFSET))
                } else {
                    dts
                };
                pending.push(Pending {
                    dts,
                    pts,
                    keyframe: s.keyframe,
                    video,
                    data: &s.data,
                });
                t = t.saturating_add(s.duration as u64);
            }
        }
        // Stable: samples of one track stay in order.
        pending.sort_by_key(|p| (p.dts, !p.video));
        for p in &pending {
            self.write_pes(p, out);
        }
    }

    fn write_pes(&mut self, p: &Pending, out: &mut Vec<u8>) {
        let mut payload = Vec::new();
        let (pid, stream_id) = if p.video {
            let Some(v) = &self.video else { return };
            annex_b_access_unit(v, p.data, p.keyframe, &mut payload);
            (VIDEO_PID, STREAM_ID_VIDEO)
        } else {
            let Some(a) = &self.audio else { return };
            if p.data.len() > MAX_ADTS_PAYLOAD {
                self.stats.dropped_audio += 1;
                return;
            }
            payload.reserve(ADTS_HEADER_LEN + p.data.len());
            payload.extend_from_slice(&adts_header(a, p.data.len()));
            payload.extend_from_slice(p.data);
            (AUDIO_PID, STREAM_ID_AUDIO)
        };
        let pcr_pid = self.pcr_pid();
        // The PCR this PES would carry; never backwards.
        let pcr_now = p
            .dts
            .wrapping_add(TIMESTAMP_OFFSET - PCR_LEAD)
            .max(self.last_pcr.unwrap_or(0));
        let pcr_due = self
            .last_pcr
            .is_none_or(|last| pcr_now >= last.saturating_add(PCR_MAX_INTERVAL));
        let mut af = Adaptation {
            random_access: p.keyframe && (p.video || self.video.is_none()),
            pcr: None,
        };
        if pid == pcr_pid {
            af.pcr = Some(pcr_now);
            self.last_pcr = Some(pcr_now);
        } else if pcr_due {
            let cc = if pcr_pid == VIDEO_PID {
                &mut self.cc_video
            } else {
                &mut self.cc_audio
            };
            let only = Adaptation {
                random_access: false,
                pcr: Some(pcr_now),
            };
            write_packet(out, pcr_pid, false, cc, only, &[]);
            self.last_pcr = Some(pcr_now);
        }

        let header = pes_header(
            stream_id,
            p.pts.wrapping_add(TIMESTAMP_OFFSET),
            p.dts.wrapping_add(TIMESTAMP_OFFSET),
            payload.len(),
        );
        let cc = if p.video {
            &mut self.cc_video
        } else {
            &mut self.cc_audio
        };
        // The PES header and the start of the payload go in the first packet.
        let mut first = header;
        let first_room = PACKET_SIZE - 4 - af.min_len();
        let head = (first_room.saturating_sub(first.len())).min(payload.len());
        first.extend_from_slice(&payload[..head]);
        let used = write_packet(out, pid, true, cc, af, &first);
        debug_assert_eq!(used, first.len());
        let mut rest = &payload[head..];
        while !rest.is_empty() {
            let n = write_packet(out, pid, false, cc, Adaptation::default(), rest);
            rest = &rest[n..];
        }
    }
}

/// Decode time `t` in `rate` units, in 90 kHz.
fn to_90k(t: u64, rate: u64) -> u64 {
    if rate == VIDEO_TIMESCALE as u64 {
        return t;
    }
    (t as u128 * VIDEO_TIMESCALE as u128 / rate.max(1) as u128).min(u64::MAX as u128) as u64
}

/// Fills in section_length and appends the CRC.
fn finish_section(mut s: Vec<u8>) -> Vec<u8> {
    // Sections here are a few dozen bytes: far below the 1021 bytes allowed.
    let len = (s.len() - 3 + 4) as u16;
    s[1] = 0xB0 | (len >> 8) as u8 & 0x0F; // section_syntax_indicator, '0', reserved
    s[2] = len as u8;
    let crc = crc32_mpeg2(&s);
    s.extend_from_slice(&crc.to_be_bytes());
    s
}

/// One PSI packet: pointer_field 0, the section, 0xFF filler.
fn write_psi(out: &mut Vec<u8>, pid: u16, cc: &mut u8, section: &[u8]) {
    let at = out.len();
    out.push(SYNC_BYTE);
    out.push(0x40 | (pid >> 8) as u8 & 0x1F);
    out.push(pid as u8);
    out.push(0x10 | *cc);
    *cc = (*cc + 1) & 0x0F;
    out.push(0); // pointer_field
    out.extend_from_slice(section);
    out.resize(at + PACKET_SIZE, 0xFF);
}

/// An H.264 access unit in Annex B: AUD, the record's SPS/PPS before an IDR (unless the
/// access unit has its own SPS), then its NAL units (AUDs dropped). A malformed length
/// ends the access unit at the last whole NAL unit.
fn annex_b_access_unit(v: &VideoTrack, au: &[u8], keyframe: bool, out: &mut Vec<u8>) {
    let nals = || {
        nal_units(au, v.nalu_length_size)
            .map_while(Result::ok)
            .filter(|n| !n.is_empty())
    };
    let mut has_sps = false;
    let mut has_idr = false;
    let mut count = 0usize;
    for n in nals() {
        match n[0] & 0x1F {
            avc::NAL_SPS => has_sps = true,
            avc::NAL_IDR => has_idr = true,
            _ => {}
        }
        count += 1;
    }
    out.reserve(au.len() + 6 + 4 * count + v.param_sets.len());
    out.extend_from_slice(&ANNEX_B_START);
    out.extend_from_slice(&AUD_NAL);
    if (keyframe || has_idr) && !has_sps {
        out.extend_from_slice(&v.param_sets);
    }
    for n in nals() {
        if n[0] & 0x1F == NAL_AUD {
            continue;
        }
        out.extend_from_slice(&ANNEX_B_START);
        out.extend_from_slice(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mux::fmp4::Sample;

    /// avcC with one (fake but well-typed) SPS and PPS.
    pub(crate) fn avc_config() -> VideoConfig {
        VideoConfig {
            codec: VideoCodec::H264,
            record: Bytes::from_static(&[
                1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0, 0x1f, 1, 0, 2, 0x68, 0xee,
            ]),
            nalu_length_size: 4,
            width: 1280,
            height: 720,
            frame_rate: None,
            codec_string: "avc1.64001f".into(),
        }
    }

    pub(crate) fn aac_config(sample_rate: u32, channels: u8) -> AudioConfig {
        AudioConfig {
            codec: AudioCodec::Aac,
            asc: Bytes::from_static(&[0x12, 0x10]),
            object_type: 2,
            sample_rate,
            channels,
            frame_samples: 1024,
            codec_string: "mp4a.40.2".into(),
        }
    }

    /// A parsed TS packet.
    #[derive(Debug)]
    struct Packet<'a> {
        pid: u16,
        start: bool,
        cc: u8,
        has_payload: bool,
        af: &'a [u8],
        payload: &'a [u8],
    }

    impl Packet<'_> {
        fn pcr(&self) -> Option<u64> {
            (self.af.len() >= 7 && self.af[0] & 0x10 != 0).then(|| {
                let b = &self.af[1..7];
                (b[0] as u64) << 25
                    | (b[1] as u64) << 17
                    | (b[2] as u64) << 9
                    | (b[3] as u64) << 1
                    | (b[4] as u64) >> 7
            })
        }
        fn random_access(&self) -> bool {
            !self.af.is_empty() && self.af[0] & 0x40 != 0
        }
    }

    fn packets(ts: &[u8]) -> Vec<Packet<'_>> {
        assert_eq!(ts.len() % PACKET_SIZE, 0, "whole packets only");
        ts.chunks(PACKET_SIZE)
            .map(|p| {
                assert_eq!(p.len(), PACKET_SIZE);
                assert_eq!(p[0], SYNC_BYTE, "sync byte");
                assert_eq!(p[1] & 0x80, 0, "transport_error_indicator");
                assert_eq!(p[3] & 0xC0, 0, "not scrambled");
                let control = (p[3] >> 4) & 3;
                assert_ne!(control, 0, "reserved adaptation_field_control");
                let (af, body) = if control & 2 != 0 {
                    let len = p[4] as usize;
                    assert!(len <= 183);
                    (&p[5..5 + len], &p[5 + len..])
                } else {
                    (&p[4..4], &p[4..])
                };
                if control == 2 {
                    assert_eq!(
                        af.len(),
                        183,
                        "adaptation field fills a payload-less packet"
                    );
                }
                Packet {
                    pid: u16::from_be_bytes([p[1] & 0x1F, p[2]]),
                    start: p[1] & 0x40 != 0,
                    cc: p[3] & 0x0F,
                    has_payload: control & 1 != 0,
                    af,
                    payload: if control & 1 != 0 { body } else { &[] },
                }
            })
            .collect()
    }

    /// Continuity per PID: +1 for payload packets, same value for payload-less ones.
    fn check_continuity(pkts: &[Packet], last: &mut std::collections::HashMap<u16, u8>) {
        for p in pkts {
            if let Some(&prev) = last.get(&p.pid) {
                let want = if p.has_payload { (prev + 1) & 15 } else { prev };
                assert_eq!(p.cc, want, "continuity of PID {:#x}", p.pid);
            }
            last.insert(p.pid, p.cc);
        }
    }

    /// The PES packets of `pid`, reassembled.
    fn pes_of(pkts: &[Packet], pid: u16) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = Vec::new();
        for p in pkts.iter().filter(|p| p.pid == pid && p.has_payload) {
            if p.start {
                out.push(Vec::new());
            }
            out.last_mut()
                .expect("payload before a start")
                .extend_from_slice(p.payload);
        }
        out
    }

    fn read_timestamp(b: &[u8], prefix: u8) -> u64 {
        assert_eq!(b[0] >> 4, prefix);
        assert_eq!(b[0] & 1, 1);
        assert_eq!(b[2] & 1, 1);
        assert_eq!(b[4] & 1, 1);
        ((b[0] as u64 >> 1) & 7) << 30
            | (b[1] as u64) << 22
            | (b[2] as u64 >> 1) << 15
            | (b[3] as u64) << 7
            | b[4] as u64 >> 1
    }

    /// (stream_id, pts, dts, payload) of one PES, checking its header fields.
    fn parse_pes(pes: &[u8]) -> (u8, u64, u64, &[u8]) {
        assert_eq!(&pes[..3], &[0, 0, 1]);
        let len = u16::from_be_bytes([pes[4], pes[5]]) as usize;
        if len != 0 {
            assert_eq!(len, pes.len() - 6, "PES_packet_length");
        } else {
            assert_eq!(pes[3], STREAM_ID_VIDEO, "unbounded PES is video only");
        }
        assert_eq!(pes[6], 0x84);
        let hlen = pes[8] as usize;
        let (pts, dts) = match pes[7] {
            0x80 => {
                assert_eq!(hlen, 5);
                let t = read_timestamp(&pes[9..], 2);
                (t, t)
            }
            0xC0 => {
                assert_eq!(hlen, 10);
                (read_timestamp(&pes[9..], 3), read_timestamp(&pes[14..], 1))
            }
            f => panic!("PES flags {f:#x}"),
        };
        (pes[3], pts, dts, &pes[9 + hlen..])
    }

    fn psi_section(p: &Packet) -> Vec<u8> {
        assert!(p.start);
        assert_eq!(p.payload[0], 0, "pointer_field");
        let s = &p.payload[1..];
        assert_eq!(s[1] & 0xF0, 0xB0);
        let len = ((s[1] as usize & 0x0F) << 8) | s[2] as usize;
        let section = &s[..3 + len];
        assert!(s[3 + len..].iter().all(|&b| b == 0xFF), "filler");
        section.to_vec()
    }

    fn sample(data: &[u8], duration: u32, cts: i32, keyframe: bool) -> Sample {
        Sample {
            duration,
            cts_offset: cts,
            keyframe,
            data: Bytes::copy_from_slice(data),
        }
    }

    /// AVCC access unit from NAL units.
    fn avcc(nals: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for n in nals {
            v.extend_from_slice(&(n.len() as u32).to_be_bytes());
            v.extend_from_slice(n);
        }
        v
    }

    #[test]
    fn crc32_mpeg2_known_values() {
        assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_E6E7);
        assert_eq!(crc32_mpeg2(b""), 0xFFFF_FFFF);
        // A section with its CRC appended has a CRC of zero.
        let s = finish_section(vec![0x00, 0, 0, 0, 1, 0xC1, 0, 0, 0, 1, 0xF0, 0]);
        assert_eq!(crc32_mpeg2(&s), 0);
    }

    #[test]
    fn pat_and_pmt() {
        let mut w = TsWriter::new();
        w.configure(Some(&avc_config()), Some(&aac_config(48_000, 2)))
            .unwrap();
        let mut out = Vec::new();
        w.begin_segment(&mut out);
        let pkts = packets(&out);
        assert_eq!(pkts.len(), 2);
        assert_eq!((pkts[0].pid, pkts[1].pid), (PAT_PID, PMT_PID));

        let pat = psi_section(&pkts[0]);
        assert_eq!(crc32_mpeg2(&pat), 0, "PAT CRC");
        assert_eq!(pat[0], 0);
        assert_eq!(&pat[3..5], &TRANSPORT_STREAM_ID.to_be_bytes());
        assert_eq!(pat[5], 0xC1, "version 0, current");
        assert_eq!(&pat[8..10], &PROGRAM_NUMBER.to_be_bytes());
        assert_eq!(u16::from_be_bytes([pat[10], pat[11]]) & 0x1FFF, PMT_PID);
        assert_eq!(pat.len(), 16);

        let pmt = psi_section(&pkts[1]);
        assert_eq!(crc32_mpeg2(&pmt), 0, "PMT CRC");
        assert_eq!(pmt[0], 2);
        assert_eq!((pmt[5] >> 1) & 0x1F, 0, "PMT version");
        assert_eq!(
            u16::from_be_bytes([pmt[8], pmt[9]]) & 0x1FFF,
            VIDEO_PID,
            "PCR PID"
        );
        assert_eq!(u16::from_be_bytes([pmt[10], pmt[11]]) & 0x0FFF, 0);
        let es = &pmt[12..pmt.len() - 4];
        assert_eq!(
            es,
            &[
                STREAM_TYPE_H264,
                0xE1,
                0x00,
                0xF0,
                0,
                STREAM_TYPE_AAC_ADTS,
                0xE1,
                0x01,
                0xF0,
                0
            ]
        );

        // Audio only: the audio PID carries the PCR; the new program is a new version.
        w.configure(None, Some(&aac_config(44_100, 1))).unwrap();
        let mut out2 = Vec::new();
        w.begin_segment(&mut out2);
        let pkts2 = packets(&out2);
        let pmt = psi_section(&pkts2[1]);
        assert_eq!(crc32_mpeg2(&pmt), 0);
        assert_eq!((pmt[5] >> 1) & 0x1F, 1, "PMT version bumped");
        assert_eq!(u16::from_be_bytes([pmt[8], pmt[9]]) & 0x1FFF, AUDIO_PID);
        assert_eq!(
            &pmt[12..pmt.len() - 4],
            &[STREAM_TYPE_AAC_ADTS, 0xE1, 0x01, 0xF0, 0]
        );
        // Counters continue across segments.
        let mut cc = Default::default();
        check_continuity(&pkts, &mut cc);
        check_continuity(&pkts2, &mut cc);
        // Same tracks again: same version.
        w.configure(None, Some(&aac_config(44_100, 1))).unwrap();
        let mut out3 = Vec::new();
        w.begin_segment(&mut out3);
        assert_eq!((psi_section(&packets(&out3)[1])[5] >> 1) & 0x1F, 1);
    }

    #[test]
    fn unsupported_configurations() {
        let mut hevc = avc_config();
        hevc.codec = VideoCodec::H265;
        assert!(matches!(
            supported(Some(&hevc), None),
            Err(TsError::Video(_))
        ));
        let mut w = TsWriter::new();
        assert!(w
            .configure(Some(&hevc), Some(&aac_config(48_000, 2)))
            .is_err());
        assert!(!w.is_configured());
        // Writes nothing when unconfigured.
        let mut out = Vec::new();
        w.begin_segment(&mut out);
        let s = [sample(&[1, 2, 3], 1024, 0, true)];
        w.write_runs(
            &[Run {
                track_id: AUDIO_TRACK_ID,
                base_decode_time: 0,
                samples: &s,
            }],
            &mut out,
        );
        assert!(out.is_empty());

        assert_eq!(supported(None, None), Err(TsError::NoTracks));
        assert!(supported(None, Some(&aac_config(44_100, 2))).is_ok());
        assert!(
            supported(None, Some(&aac_config(44_000, 2))).is_err(),
            "rate"
        );
        assert!(
            supported(None, Some(&aac_config(48_000, 7))).is_err(),
            "7.0"
        );
        assert!(supported(None, Some(&aac_config(48_000, 8))).is_ok(), "7.1");
        let mut a = aac_config(48_000, 2);
        a.frame_samples = 960;
        assert!(supported(None, Some(&a)).is_err());
        let mut bad = avc_config();
        bad.record = Bytes::from_static(&[1, 0x64]);
        assert!(supported(Some(&bad), None).is_err());
    }

    #[test]
    fn opus_is_refused() {
        let opus = crate::codec::opus::config(2, 312);
        for video in [None, Some(avc_config())] {
            let err = supported(video.as_ref(), Some(&opus)).unwrap_err();
            assert_eq!(err, TsError::Audio("Opus is carried in fMP4 only".into()));
            assert_eq!(
                err.to_string(),
                "no MPEG-TS for this audio: Opus is carried in fMP4 only"
            );
        }
        // A configured writer that is given Opus stops writing.
        let mut w = TsWriter::new();
        w.configure(Some(&avc_config()), Some(&aac_config(48_000, 2)))
            .unwrap();
        assert!(w.configure(Some(&avc_config()), Some(&opus)).is_err());
        assert!(!w.is_configured());
        let mut out = Vec::new();
        w.begin_segment(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn adts_header_fields() {
        let a = audio_track(&aac_config(44_100, 2)).unwrap();
        let h = adts_header(&a, 300);
        assert_eq!(h[0], 0xFF);
        assert_eq!(h[1] & 0xF0, 0xF0, "syncword");
        assert_eq!(h[1] & 0x08, 0, "MPEG-4");
        assert_eq!(h[1] & 0x06, 0, "layer");
        assert_eq!(h[1] & 0x01, 1, "no CRC");
        assert_eq!(h[2] >> 6, 1, "profile AAC-LC");
        assert_eq!((h[2] >> 2) & 0xF, 4, "44.1 kHz index");
        let channels = (h[2] & 1) << 2 | h[3] >> 6;
        assert_eq!(channels, 2);
        let len = ((h[3] as usize & 3) << 11) | (h[4] as usize) << 3 | (h[5] as usize) >> 5;
        assert_eq!(len, 307);
        assert_eq!(
            ((h[5] as u16 & 0x1F) << 6) | (h[6] as u16 >> 2),
            0x7FF,
            "fullness"
        );
        assert_eq!(h[6] & 3, 0, "one raw data block");

        // HE-AAC: its AAC-LC core; 7.1 is channel configuration 7; the largest frame.
        let mut he = aac_config(24_000, 8);
        he.object_type = 5;
        let a = audio_track(&he).unwrap();
        let h = adts_header(&a, MAX_ADTS_PAYLOAD);
        assert_eq!(h[2] >> 6, 1);
        assert_eq!((h[2] >> 2) & 0xF, 6, "24 kHz index");
        assert_eq!((h[2] & 1) << 2 | h[3] >> 6, 7);
        let len = ((h[3] as usize & 3) << 11) | (h[4] as usize) << 3 | (h[5] as usize) >> 5;
        assert_eq!(len, 8191);
    }

    #[test]
    fn packets_pes_and_timestamps() {
        let mut w = TsWriter::new();
        w.configure(Some(&avc_config()), Some(&aac_config(48_000, 2)))
            .unwrap();
        // An IDR with SEI (and a stray AUD), a big P frame that spans packets, a B frame
        // with a negative composition offset.
        let idr = avcc(&[&[0x09, 0x10], &[0x06, 1, 2], &[0x65, 0x88, 0x84]]);
        let big_p: Vec<u8> = avcc(&[&[0x41; 1000]]);
        let b = avcc(&[&[0x01, 0x9e]]);
        let video = [
            sample(&idr, 3000, 6000, true),
            sample(&big_p, 3000, 6000, false),
            sample(&b, 3000, -3000, false),
        ];
        let audio = [
            sample(&[0x21; 200], 1024, 0, true),
            sample(&[0x22; 9000], 1024, 0, true), // too long for ADTS: dropped
            sample(&[0x23; 10], 1024, 0, true),
        ];
        let base_v = 900_000; // 10 s
        let base_a = 480_000; // 10 s at 48 kHz
        let runs = [
            Run {
                track_id: VIDEO_TRACK_ID,
                base_decode_time: base_v,
                samples: &video,
            },
            Run {
                track_id: AUDIO_TRACK_ID,
                base_decode_time: base_a,
                samples: &audio,
            },
        ];
        let mut out = Vec::new();
        w.begin_segment(&mut out);
        w.write_runs(&runs, &mut out);
        assert_eq!(w.stats().dropped_audio, 1);
        let pkts = packets(&out);
        check_continuity(&pkts, &mut Default::default());
        assert_eq!(pkts[0].pid, PAT_PID);
        assert_eq!(pkts[1].pid, PMT_PID);

        // Video: interleaved by decode time, video first at equal times.
        let order: Vec<u16> = pkts
            .iter()
            .filter(|p| p.start && (p.pid == VIDEO_PID || p.pid == AUDIO_PID))
            .map(|p| p.pid)
            .collect();
        // dts: v 10.000, a 10.000, (a 10.040 dropped), v 10.033, a 10.080, v 10.067.
        assert_eq!(
            order,
            [VIDEO_PID, AUDIO_PID, VIDEO_PID, AUDIO_PID, VIDEO_PID]
        );

        let vpes = pes_of(&pkts, VIDEO_PID);
        assert_eq!(vpes.len(), 3);
        let off = TIMESTAMP_OFFSET;
        let (sid, pts, dts, es) = parse_pes(&vpes[0]);
        assert_eq!(sid, STREAM_ID_VIDEO);
        assert_eq!((pts, dts), (base_v + 6000 + off, base_v + off));
        // AUD, SPS, PPS from the record, SEI, IDR; the stray AUD is gone.
        let mut want = vec![0, 0, 0, 1, 0x09, 0xF0];
        want.extend_from_slice(&[0, 0, 0, 1, 0x67, 0x64, 0, 0x1f]);
        want.extend_from_slice(&[0, 0, 0, 1, 0x68, 0xee]);
        want.extend_from_slice(&[0, 0, 0, 1, 0x06, 1, 2]);
        want.extend_from_slice(&[0, 0, 0, 1, 0x65, 0x88, 0x84]);
        assert_eq!(es, &want[..]);
        let (_, pts, dts, es) = parse_pes(&vpes[1]);
        assert_eq!((pts, dts), (base_v + 9000 + off, base_v + 3000 + off));
        assert_eq!(
            &es[..10],
            &[0, 0, 0, 1, 0x09, 0xF0, 0, 0, 0, 1],
            "no SPS/PPS"
        );
        assert_eq!(es.len(), 6 + 4 + 1000);
        let (_, pts, dts, _) = parse_pes(&vpes[2]);
        assert_eq!((pts, dts), (base_v + 3000 + off, base_v + 6000 + off));

        let apes = pes_of(&pkts, AUDIO_PID);
        assert_eq!(apes.len(), 2);
        let (sid, pts, dts, es) = parse_pes(&apes[0]);
        assert_eq!(sid, STREAM_ID_AUDIO);
        assert_eq!(
            (pts, dts),
            (900_000 + off, 900_000 + off),
            "48 kHz in 90 kHz"
        );
        assert_eq!(es.len(), 7 + 200);
        assert_eq!(&es[..2], &[0xFF, 0xF1]);
        let (_, pts, _, es) = parse_pes(&apes[1]);
        assert_eq!(
            pts,
            900_000 + 2 * 1920 + off,
            "dropped frame keeps its time slot"
        );
        assert_eq!(&es[7..], &[0x23; 10]);

        // PCR on the first packet of every video PES, behind its DTS; random access on
        // the IDR only.
        let starts: Vec<&Packet> = pkts
            .iter()
            .filter(|p| p.pid == VIDEO_PID && p.start)
            .collect();
        assert_eq!(starts[0].pcr(), Some(base_v + off - PCR_LEAD));
        assert!(starts[0].random_access());
        assert_eq!(starts[1].pcr(), Some(base_v + 3000 + off - PCR_LEAD));
        assert!(!starts[1].random_access());
        assert!(pkts
            .iter()
            .filter(|p| p.pid == AUDIO_PID)
            .all(|p| p.pcr().is_none()));
    }

    #[test]
    fn pcr_only_packets_fill_video_gaps() {
        let mut w = TsWriter::new();
        w.configure(Some(&avc_config()), Some(&aac_config(48_000, 2)))
            .unwrap();
        // One video frame, then 1 s of audio alone (video stalled).
        let video = [sample(&avcc(&[&[0x65, 1]]), 3000, 0, true)];
        let audio: Vec<Sample> = (0..47).map(|_| sample(&[1; 50], 1024, 0, true)).collect();
        let runs = [
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
        ];
        let mut out = Vec::new();
        w.begin_segment(&mut out);
        w.write_runs(&runs, &mut out);
        let pkts = packets(&out);
        check_continuity(&pkts, &mut Default::default());
        let pcrs: Vec<u64> = pkts.iter().filter_map(|p| p.pcr()).collect();
        assert!(pkts.iter().all(|p| p.pcr().is_none() || p.pid == VIDEO_PID));
        assert!(
            pcrs.windows(2).all(|w| w[1] > w[0] && w[1] - w[0] <= 9_000),
            "{pcrs:?}"
        );
        assert!(*pcrs.last().unwrap() + PCR_LEAD >= 46 * 1920 + TIMESTAMP_OFFSET - 9_000);
        // PCR-only packets: no payload, counter unchanged (checked above).
        assert!(pkts.iter().any(|p| p.pid == VIDEO_PID && !p.has_payload));
    }

    #[test]
    fn audio_only_program() {
        let mut w = TsWriter::new();
        w.configure(None, Some(&aac_config(44_100, 1))).unwrap();
        let audio: Vec<Sample> = (0..5).map(|i| sample(&[i; 180], 1024, 0, true)).collect();
        let mut out = Vec::new();
        w.begin_segment(&mut out);
        w.write_runs(
            &[Run {
                track_id: AUDIO_TRACK_ID,
                base_decode_time: 44_100,
                samples: &audio,
            }],
            &mut out,
        );
        let pkts = packets(&out);
        let starts: Vec<&Packet> = pkts
            .iter()
            .filter(|p| p.start && p.pid == AUDIO_PID)
            .collect();
        assert_eq!(starts.len(), 5);
        for (i, p) in starts.iter().enumerate() {
            let dts = 90_000 + (i as u64 * 1024 * 90_000) / 44_100;
            assert_eq!(p.pcr(), Some(dts + TIMESTAMP_OFFSET - PCR_LEAD));
            assert!(p.random_access());
        }
        // A 180-byte frame + ADTS + PES header does not fit one packet: two each.
        assert_eq!(pkts.len(), 2 + 10);
        // Video samples without a video track are not written.
        let v = [sample(&avcc(&[&[0x65, 1]]), 3000, 0, true)];
        let mut out = Vec::new();
        w.write_runs(
            &[Run {
                track_id: VIDEO_TRACK_ID,
                base_decode_time: 0,
                samples: &v,
            }],
            &mut out,
        );
        assert!(out.is_empty());
        assert_eq!(w.stats().dropped_samples, 1);
    }

    #[test]
    fn stuffing_sizes() {
        // Payload lengths around the packet boundaries: every packet is 188 bytes and
        // the PES comes back whole.
        for len in [
            0usize, 1, 150, 155, 156, 157, 170, 182, 183, 184, 340, 341, 1000,
        ] {
            let mut w = TsWriter::new();
            w.configure(None, Some(&aac_config(48_000, 2))).unwrap();
            let s = [sample(&vec![0xAB; len], 1024, 0, true)];
            let mut out = Vec::new();
            w.write_runs(
                &[Run {
                    track_id: AUDIO_TRACK_ID,
                    base_decode_time: 0,
                    samples: &s,
                }],
                &mut out,
            );
            let pkts = packets(&out);
            check_continuity(&pkts, &mut Default::default());
            let pes = pes_of(&pkts, AUDIO_PID);
            assert_eq!(pes.len(), 1, "len {len}");
            let (_, _, _, es) = parse_pes(&pes[0]);
            assert_eq!(es.len(), 7 + len, "len {len}");
            assert!(es[7..].iter().all(|&b| b == 0xAB));
        }
    }

    #[test]
    fn malformed_access_units_do_not_panic() {
        let v = video_track(&avc_config()).unwrap();
        let mut out = Vec::new();
        // Length past the end: the whole NAL units before it are kept.
        let mut au = avcc(&[&[0x41, 1, 2]]);
        au.extend_from_slice(&[0, 0, 0, 50, 0x41]);
        annex_b_access_unit(&v, &au, false, &mut out);
        assert_eq!(out, [0, 0, 0, 1, 0x09, 0xF0, 0, 0, 0, 1, 0x41, 1, 2]);
        out.clear();
        annex_b_access_unit(&v, &[], true, &mut out);
        assert_eq!(&out[..6], &[0, 0, 0, 1, 0x09, 0xF0]);
        // In-band SPS: the record's are not added.
        out.clear();
        annex_b_access_unit(
            &v,
            &avcc(&[&[0x67, 9], &[0x68, 9], &[0x65, 9]]),
            true,
            &mut out,
        );
        assert_eq!(
            out,
            [
                0, 0, 0, 1, 0x09, 0xF0, 0, 0, 0, 1, 0x67, 9, 0, 0, 0, 1, 0x68, 9, 0, 0, 0, 1, 0x65,
                9
            ]
        );
        // Timestamps wrap at 33 bits instead of overflowing.
        let mut w = TsWriter::new();
        w.configure(Some(&avc_config()), None).unwrap();
        let s = [sample(&avcc(&[&[0x65, 1]]), u32::MAX, i32::MIN, true)];
        let mut out = Vec::new();
        w.write_runs(
            &[Run {
                track_id: VIDEO_TRACK_ID,
                base_decode_time: u64::MAX / 2,
                samples: &s,
            }],
            &mut out,
        );
        let pkts = packets(&out);
        let (_, pts, dts, _) = parse_pes(&pes_of(&pkts, VIDEO_PID)[0]);
        assert_eq!(dts, (u64::MAX / 2 + TIMESTAMP_OFFSET) & TIMESTAMP_MASK);
        assert_eq!(
            pts,
            (u64::MAX / 2) & TIMESTAMP_MASK,
            "PTS clamped at DTS − offset"
        );
    }
}
