//! AAC: `AudioSpecificConfig` (ISO/IEC 14496-3 1.6.2.1).

use bytes::Bytes;

use super::bits::BitReader;
use super::CodecError;
use crate::media::{AudioCodec, AudioConfig};

/// Largest AudioSpecificConfig accepted.
pub const MAX_ASC_LEN: usize = 256;

pub const AOT_AAC_LC: u8 = 2;
pub const AOT_SBR: u8 = 5;
pub const AOT_PS: u8 = 29;

const SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// Parses an AudioSpecificConfig.
///
/// Accepted: AAC-LC (object type 2) and HE-AAC v1/v2 with explicit hierarchical
/// signalling (object type 5 or 29 around an AAC-LC core).
///
/// * `object_type` and the codec string (`mp4a.40.<aot>`) carry the signalled type:
///   2, 5 or 29.
/// * `sample_rate` is the sampling frequency of the AAC core, the one that
///   `frame_samples` refers to: one access unit lasts `frame_samples / sample_rate`
///   seconds. For HE-AAC the decoder's SBR output runs at twice that rate (the
///   extension sampling frequency) with 2048 output samples per access unit; a muxer
///   that wants the output rate in its sample entry must double both numbers.
/// * `frame_samples` is 1024, or 960 when the GASpecificConfig `frameLengthFlag` is set.
/// * `channels` comes from `channelConfiguration`, or from the program config element
///   when that is 0. For HE-AAC v2 (PS) it is the signalled (mono) core layout.
pub fn parse_asc(asc: &Bytes) -> Result<AudioConfig, CodecError> {
    if asc.len() > MAX_ASC_LEN {
        return Err(CodecError::Malformed(format!(
            "AudioSpecificConfig: {} bytes (at most {MAX_ASC_LEN})",
            asc.len()
        )));
    }
    let mut r = BitReader::new(asc);
    let signalled = object_type(&mut r)?;
    let sf_index = r.bits(4, "samplingFrequencyIndex")?;
    let sample_rate = sample_rate(&mut r, sf_index)?;
    let channel_config = r.bits(4, "channelConfiguration")?;
    let mut core = signalled;
    if signalled == AOT_SBR || signalled == AOT_PS {
        let ext_index = r.bits(4, "extensionSamplingFrequencyIndex")?;
        let _extension_rate = self::sample_rate(&mut r, ext_index)?;
        core = object_type(&mut r)?;
    }
    if core != AOT_AAC_LC {
        return Err(if signalled == core {
            CodecError::Unsupported(format!("AAC object type {core} ({})", aot_name(core)))
        } else {
            CodecError::Unsupported(format!(
                "AAC object type {signalled} around core object type {core} ({})",
                aot_name(core)
            ))
        });
    }
    // GASpecificConfig
    let frame_length_960 = r.bit("frameLengthFlag")?;
    if r.bit("dependsOnCoreCoder")? {
        r.skip(14, "coreCoderDelay")?;
    }
    let _extension_flag = r.bit("extensionFlag")?;
    let channels = match channel_config {
        0 => pce_channels(&mut r)?,
        1..=6 => channel_config as u8,
        7 | 12 | 14 => 8,
        11 => 7,
        n => {
            return Err(CodecError::Unsupported(format!(
                "AAC channel configuration {n}"
            )))
        }
    };
    if channels == 0 {
        return Err(CodecError::Malformed(
            "AAC program config element: no channels".into(),
        ));
    }
    if sample_rate == 0 || sample_rate > 96000 {
        return Err(CodecError::Malformed(format!(
            "AAC sampling frequency {sample_rate}"
        )));
    }
    Ok(AudioConfig {
        codec: AudioCodec::Aac,
        asc: asc.clone(),
        object_type: signalled,
        sample_rate,
        channels,
        frame_samples: if frame_length_960 { 960 } else { 1024 },
        codec_string: format!("mp4a.40.{signalled}"),
    })
}

fn object_type(r: &mut BitReader) -> Result<u8, CodecError> {
    let aot = r.bits(5, "audioObjectType")?;
    if aot == 31 {
        return Ok((32 + r.bits(6, "audioObjectTypeExt")?) as u8);
    }
    Ok(aot as u8)
}

fn sample_rate(r: &mut BitReader, index: u32) -> Result<u32, CodecError> {
    match index {
        15 => r.bits(24, "samplingFrequency"),
        i if (i as usize) < SAMPLE_RATES.len() => Ok(SAMPLE_RATES[i as usize]),
        i => Err(CodecError::Malformed(format!(
            "AAC sampling frequency index {i}"
        ))),
    }
}

/// Channel count of a program_config_element (ISO/IEC 14496-3 4.4.1.1).
fn pce_channels(r: &mut BitReader) -> Result<u8, CodecError> {
    r.skip(4 + 2 + 4, "PCE tag/object type/sampling index")?;
    let front = r.bits(4, "num_front_channel_elements")?;
    let side = r.bits(4, "num_side_channel_elements")?;
    let back = r.bits(4, "num_back_channel_elements")?;
    let lfe = r.bits(2, "num_lfe_channel_elements")?;
    r.skip(3 + 4, "num_assoc_data/valid_cc_elements")?;
    for what in ["mono_mixdown", "stereo_mixdown"] {
        if r.bit(what)? {
            r.skip(4, what)?;
        }
    }
    if r.bit("matrix_mixdown_idx_present")? {
        r.skip(3, "matrix_mixdown_idx")?;
    }
    let mut channels = lfe;
    for _ in 0..front + side + back {
        channels += if r.bit("is_cpe")? { 2 } else { 1 };
        r.skip(4, "element_tag_select")?;
    }
    // 15 + 15 + 15 elements of up to 2 channels, plus 3 LFE: at most 93.
    Ok(channels as u8)
}

fn aot_name(aot: u8) -> &'static str {
    match aot {
        1 => "AAC Main",
        2 => "AAC LC",
        3 => "AAC SSR",
        4 => "AAC LTP",
        5 => "SBR",
        6 => "AAC Scalable",
        17 => "ER AAC LC",
        23 => "ER AAC LD",
        29 => "PS",
        39 => "ER AAC ELD",
        42 => "USAC",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(b: &'static [u8]) -> Result<AudioConfig, CodecError> {
        parse_asc(&Bytes::from_static(b))
    }

    #[test]
    fn aac_lc() {
        // 00010 0100 0010 000: LC, 44.1 kHz, stereo
        let c = parse(&[0x12, 0x10]).unwrap();
        assert_eq!(
            (c.object_type, c.sample_rate, c.channels, c.frame_samples),
            (2, 44100, 2, 1024)
        );
        assert_eq!(c.codec_string, "mp4a.40.2");
        // LC, 48 kHz, mono, frameLengthFlag = 1 → 960
        let c = parse(&[0x11, 0x8c]).unwrap();
        assert_eq!(
            (c.sample_rate, c.channels, c.frame_samples),
            (48000, 1, 960)
        );
        // Explicit frequency (index 15) of 44100.
        let c = parse(&[0x17, 0x80, 0x56, 0x22, 0x10]).unwrap();
        assert_eq!((c.sample_rate, c.channels), (44100, 2));
    }

    #[test]
    fn he_aac_explicit_signalling() {
        // 00101 0111 0010 0100 00010 000: SBR, core 22050 Hz stereo, ext 44100, core LC
        let c = parse(&[0x2b, 0x92, 0x08, 0x00]).unwrap();
        assert_eq!(c.object_type, 5);
        assert_eq!(c.codec_string, "mp4a.40.5");
        assert_eq!(
            (c.sample_rate, c.channels, c.frame_samples),
            (22050, 2, 1024)
        );
        // 11101 0111 0001 0100 00010 000: PS, core mono
        let c = parse(&[0xeb, 0x8a, 0x08, 0x00]).unwrap();
        assert_eq!(c.codec_string, "mp4a.40.29");
        assert_eq!((c.sample_rate, c.channels), (22050, 1));
    }

    #[test]
    fn program_config_element() {
        // LC, 48 kHz, channelConfiguration 0, GASpecificConfig 000, then a PCE with
        // one front CPE, one front SCE, one back CPE and one LFE: 5.1.
        // tag 0000, object 01, sf 0011, front 0010, side 0000, back 0001, lfe 01,
        // assoc 000, cc 0000, mixdown flags 000,
        // front: 1 0000 (CPE) 0 0001 (SCE), back: 1 0001 (CPE), lfe tag 0000
        let bits = "00010 0011 0000 000 0000 01 0011 0010 0000 0001 01 000 0000 000 10000 00001 10001 0000";
        let bits: String = bits.chars().filter(|c| !c.is_whitespace()).collect();
        let mut bytes = Vec::new();
        for chunk in bits.as_bytes().chunks(8) {
            let mut s = String::from_utf8(chunk.to_vec()).unwrap();
            while s.len() < 8 {
                s.push('0');
            }
            bytes.push(u8::from_str_radix(&s, 2).unwrap());
        }
        let c = parse_asc(&Bytes::from(bytes)).unwrap();
        assert_eq!((c.sample_rate, c.channels), (48000, 6));
    }

    #[test]
    fn errors() {
        assert_eq!(parse(&[]), Err(CodecError::Truncated("audioObjectType")));
        assert_eq!(
            parse(&[0x12]),
            Err(CodecError::Truncated("samplingFrequencyIndex"))
        );
        assert_eq!(
            parse(&[0x12, 0x00]),
            Err(CodecError::Truncated("PCE tag/object type/sampling index"))
        );
        // sampling index 13 (reserved)
        assert!(matches!(
            parse(&[0x16, 0x90]),
            Err(CodecError::Malformed(_))
        ));
        // AAC Main (1)
        assert_eq!(
            parse(&[0x0a, 0x10]),
            Err(CodecError::Unsupported(
                "AAC object type 1 (AAC Main)".into()
            ))
        );
        // USAC via escape: 11111 001010 ...
        assert!(matches!(
            parse(&[0xf9, 0x48, 0x80]),
            Err(CodecError::Unsupported(_))
        ));
        // channel configuration 9 (reserved)
        assert!(matches!(
            parse(&[0x12, 0x48]),
            Err(CodecError::Unsupported(_))
        ));
        for len in 0..=MAX_ASC_LEN + 1 {
            let _ = parse_asc(&Bytes::from(vec![0xff; len]));
        }
    }
}
