//! Opus (RFC 6716): the track configuration and packet durations.
//!
//! Opus arrives as bare packets (WebRTC/WHIP ingest, RFC 7587): there is no
//! decoder configuration record on the wire. [`config`] builds the
//! [`AudioConfig`] of a stream, with the payload of the ISO BMFF `dOps` box
//! ("Encapsulation of Opus in ISO Base Media File Format", 4.3.2) in
//! [`AudioConfig::asc`]; [`packet_samples`] reads a packet's duration from its
//! TOC byte and frame count (RFC 6716 §3.1–3.2).
//!
//! Opus always runs on a 48 kHz clock, whatever the bandwidth coded: the
//! config's sample rate is 48000 and durations are counted in 48 kHz samples.
//! Only channel mapping family 0 (mono or stereo, one Opus stream) is carried.

use bytes::Bytes;

use crate::media::{AudioCodec, AudioConfig};

/// The Opus clock rate: timestamps, durations and the media timescale.
pub const SAMPLE_RATE: u32 = 48_000;
/// Nominal packet duration in samples (20 ms), the WebRTC default.
pub const FRAME_SAMPLES: u32 = 960;
/// Longest packet allowed (120 ms, RFC 6716 §3.2.5), in samples.
pub const MAX_PACKET_SAMPLES: u32 = 5_760;
/// Bytes of a `dOps` payload with channel mapping family 0.
pub const DOPS_LEN: usize = 11;

/// The configuration of an Opus track with `channels` output channels (1 or 2,
/// channel mapping family 0; other values are clamped into that range) whose
/// decoder discards `pre_skip` samples (at 48 kHz) at the start.
///
/// `asc` holds the `dOps` payload: Version 0, OutputChannelCount, PreSkip,
/// InputSampleRate 48000, OutputGain 0, ChannelMappingFamily 0, all big-endian.
/// `object_type` is 0, `frame_samples` 960 (20 ms, the nominal packet; the
/// segmenter reads every packet's own duration), `codec_string` `opus`.
///
/// RFC 7587 signals every Opus stream as `opus/48000/2`: with channel mapping
/// family 0 a decoder can produce either layout from mono or stereo packets, so
/// 2 is right unless the sender is known to be mono.
pub fn config(channels: u8, pre_skip: u16) -> AudioConfig {
    let channels = channels.clamp(1, 2);
    AudioConfig {
        codec: AudioCodec::Opus,
        asc: Bytes::copy_from_slice(&dops_payload(channels, pre_skip)),
        object_type: 0,
        sample_rate: SAMPLE_RATE,
        channels,
        frame_samples: FRAME_SAMPLES,
        codec_string: "opus".into(),
    }
}

/// The `dOps` payload (OpusSpecificBox without its box header) for channel
/// mapping family 0. Fields are big-endian, unlike the Ogg `OpusHead`.
pub(crate) fn dops_payload(channels: u8, pre_skip: u16) -> [u8; DOPS_LEN] {
    let mut d = [0u8; DOPS_LEN];
    d[0] = 0; // Version
    d[1] = channels; // OutputChannelCount
    d[2..4].copy_from_slice(&pre_skip.to_be_bytes()); // PreSkip
    d[4..8].copy_from_slice(&SAMPLE_RATE.to_be_bytes()); // InputSampleRate
    d[8..10].copy_from_slice(&0i16.to_be_bytes()); // OutputGain
    d[10] = 0; // ChannelMappingFamily
    d
}

/// The `dOps` payload to write for `a`: its `asc` when that is a family-0 payload
/// (version 0, 11 bytes) for `a.channels`, else one built for `a.channels`
/// (clamped to 1..=2) that keeps the PreSkip of `asc` when it has one.
pub(crate) fn dops_for(a: &AudioConfig) -> [u8; DOPS_LEN] {
    let channels = a.channels.clamp(1, 2);
    if let Ok(d) = <[u8; DOPS_LEN]>::try_from(&a.asc[..]) {
        if d[0] == 0 && d[1] == channels && d[10] == 0 {
            return d;
        }
    }
    let pre_skip = match a.asc.get(2..4) {
        Some(b) => u16::from_be_bytes([b[0], b[1]]),
        None => 0,
    };
    dops_payload(channels, pre_skip)
}

/// Samples (at 48 kHz) of one Opus packet, from its TOC byte and frame count
/// code (RFC 6716 §3.1–3.2):
///
/// - the configuration (TOC bits 7–3) gives the frame size: SILK-only 10, 20,
///   40 or 60 ms, Hybrid 10 or 20 ms, CELT-only 2.5, 5, 10 or 20 ms;
/// - code 0 is one frame, codes 1 and 2 two frames, code 3 the count M in the
///   second byte (bits 5–0).
///
/// `None` for a packet that breaks the framing rules that concern its length in
/// time or its header: empty (R1), code 1 with an odd payload (R3), code 2
/// without its length byte (R4), code 3 without its count byte, with M = 0 (R5)
/// or lasting more than 120 ms (R5). The frame lengths inside codes 2 and 3 are
/// not walked: a decoder checks them.
pub fn packet_samples(packet: &[u8]) -> Option<u32> {
    let &toc = packet.first()?;
    let frame = frame_samples(toc >> 3);
    let frames = match toc & 0x3 {
        0 => 1,
        1 => {
            if !(packet.len() - 1).is_multiple_of(2) {
                return None;
            }
            2
        }
        2 => {
            if packet.len() < 2 {
                return None;
            }
            2
        }
        _ => {
            let m = u32::from(packet.get(1)? & 0x3F);
            if m == 0 {
                return None;
            }
            m
        }
    };
    let total = frame * frames;
    (total <= MAX_PACKET_SAMPLES).then_some(total)
}

/// Frame size in 48 kHz samples of TOC configuration `config` (0..=31), RFC 6716
/// Table 2.
fn frame_samples(config: u8) -> u32 {
    match config {
        // SILK-only (NB, MB, WB): 10, 20, 40, 60 ms.
        0..=11 => [480, 960, 1_920, 2_880][usize::from(config % 4)],
        // Hybrid (SWB, FB): 10, 20 ms.
        12..=15 => [480, 960][usize::from(config % 2)],
        // CELT-only (NB, WB, SWB, FB): 2.5, 5, 10, 20 ms.
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TOC byte: configuration, stereo flag, frame count code.
    fn toc(config: u8, stereo: bool, code: u8) -> u8 {
        config << 3 | u8::from(stereo) << 2 | code
    }

    #[test]
    fn config_is_48k_family_0() {
        let a = config(2, 312);
        assert_eq!(a.codec, AudioCodec::Opus);
        assert_eq!(a.sample_rate, 48_000);
        assert_eq!(a.channels, 2);
        assert_eq!(a.frame_samples, 960);
        assert_eq!(a.object_type, 0);
        assert_eq!(a.codec_string, "opus");
        // Version 0, 2 channels, PreSkip 312, 48000 Hz, gain 0, family 0: big-endian.
        assert_eq!(
            &a.asc[..],
            &[0, 2, 0x01, 0x38, 0, 0, 0xBB, 0x80, 0, 0, 0][..]
        );
        assert_eq!(dops_for(&a), a.asc[..]);

        let mono = config(1, 0);
        assert_eq!(mono.channels, 1);
        assert_eq!(&mono.asc[..], &[0, 1, 0, 0, 0, 0, 0xBB, 0x80, 0, 0, 0][..]);
        // Family 0 carries one or two channels only.
        assert_eq!(config(0, 0).channels, 1);
        assert_eq!(config(6, 0).channels, 2);
        assert_eq!(config(6, 0).asc[1], 2);
    }

    #[test]
    fn dops_for_repairs_what_it_cannot_write_as_is() {
        let mut a = config(2, 312);
        // Empty: built for the channels, PreSkip 0.
        a.asc = Bytes::new();
        assert_eq!(dops_for(&a), dops_payload(2, 0));
        // Channel count disagreeing with the config: rebuilt, PreSkip kept.
        a.asc = Bytes::copy_from_slice(&dops_payload(1, 312));
        assert_eq!(dops_for(&a), dops_payload(2, 312));
        // Another family or version, or another length: rebuilt.
        let mut d = dops_payload(2, 100);
        d[10] = 1;
        a.asc = Bytes::copy_from_slice(&d);
        assert_eq!(dops_for(&a), dops_payload(2, 100));
        a.asc = Bytes::from_static(&[1]);
        assert_eq!(dops_for(&a), dops_payload(2, 0));
        a.channels = 0;
        assert_eq!(dops_for(&a), dops_payload(1, 0));
    }

    #[test]
    fn frame_sizes_of_every_configuration() {
        let ms = |c: u8| packet_samples(&[toc(c, false, 0)]).unwrap() as f64 / 48.0;
        for c in 0..12 {
            assert_eq!(ms(c), [10.0, 20.0, 40.0, 60.0][c as usize % 4], "SILK {c}");
        }
        for c in 12..16 {
            assert_eq!(ms(c), [10.0, 20.0][c as usize % 2], "Hybrid {c}");
        }
        for c in 16..32 {
            assert_eq!(ms(c), [2.5, 5.0, 10.0, 20.0][c as usize % 4], "CELT {c}");
        }
        // The stereo flag does not change the duration.
        assert_eq!(packet_samples(&[0xF8, 0xFF]), Some(960));
        assert_eq!(packet_samples(&[0xFC, 0xFF]), Some(960));
    }

    #[test]
    fn frame_count_codes() {
        // Code 0: one frame (a TOC alone is a valid, empty frame: DTX/PLC).
        assert_eq!(packet_samples(&[toc(1, false, 0)]), Some(960));
        // Code 1: two frames of equal size; the payload splits in two halves.
        assert_eq!(packet_samples(&[toc(1, false, 1)]), Some(1_920));
        assert_eq!(packet_samples(&[toc(1, false, 1), 7, 7]), Some(1_920));
        assert_eq!(packet_samples(&[toc(1, false, 1), 7]), None, "odd payload");
        // Code 2: two frames, the first one's length in the next byte.
        assert_eq!(packet_samples(&[toc(3, true, 2), 1, 9, 9]), Some(5_760));
        assert_eq!(packet_samples(&[toc(3, true, 2)]), None, "no length byte");
        // Code 3: M frames.
        assert_eq!(packet_samples(&[toc(18, false, 3), 3]), Some(3 * 480));
        assert_eq!(
            packet_samples(&[toc(31, false, 3), 0x80 | 0x40 | 6, 0]),
            Some(6 * 960),
            "VBR and padding flags are not part of M"
        );
        assert_eq!(
            packet_samples(&[toc(16, false, 3), 48]),
            Some(48 * 120),
            "48 frames of 2.5 ms"
        );
    }

    #[test]
    fn invalid_packets() {
        assert_eq!(packet_samples(&[]), None, "empty");
        assert_eq!(packet_samples(&[toc(1, false, 3)]), None, "no count byte");
        assert_eq!(packet_samples(&[toc(1, false, 3), 0]), None, "M = 0");
        // More than 120 ms.
        assert_eq!(packet_samples(&[toc(1, false, 3), 7]), None, "7 × 20 ms");
        assert_eq!(packet_samples(&[toc(3, false, 3), 3]), None, "3 × 60 ms");
        assert_eq!(
            packet_samples(&[toc(16, false, 3), 49]),
            None,
            "49 × 2.5 ms"
        );
        assert_eq!(
            packet_samples(&[toc(3, false, 3), 2]),
            Some(5_760),
            "120 ms"
        );
        assert_eq!(packet_samples(&[toc(3, false, 3), 63]), None);
    }
}
