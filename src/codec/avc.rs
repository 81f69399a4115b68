//! H.264: `AVCDecoderConfigurationRecord` (ISO/IEC 14496-15 5.3.3.1) and the SPS
//! (parsed with `h264-reader`).

use bytes::Bytes;
use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::rbsp::{BitReader, ByteReader};

use super::{
    check_dimensions, nal_units, read_param_set, sane_frame_rate, CodecError, MAX_PARAM_SETS,
    MAX_RECORD_LEN,
};
use crate::media::{VideoCodec, VideoConfig};

/// NAL unit type of an IDR slice.
pub const NAL_IDR: u8 = 5;
/// NAL unit type of a sequence parameter set.
pub const NAL_SPS: u8 = 7;
/// NAL unit type of a picture parameter set.
pub const NAL_PPS: u8 = 8;

/// The parameter sets carried in an avcC record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParameterSets {
    pub sps: Vec<Bytes>,
    pub pps: Vec<Bytes>,
}

/// Parses an `AVCDecoderConfigurationRecord`: checks it, reads the first SPS for
/// picture size and frame rate, and builds the `avc1.PPCCLL` codec string from the
/// record's profile, compatibility and level bytes.
pub fn parse_config(record: &Bytes) -> Result<VideoConfig, CodecError> {
    let (length_size, sets) = split_record(record)?;
    let sps_nal = &sets.sps[0];
    let sps = parse_sps(sps_nal)?;
    let (width, height) = sps
        .pixel_dimensions()
        .map_err(|e| CodecError::Malformed(format!("H.264 SPS picture size: {e:?}")))?;
    check_dimensions(width, height)?;
    Ok(VideoConfig {
        codec: VideoCodec::H264,
        record: record.clone(),
        nalu_length_size: length_size,
        width,
        height,
        frame_rate: sps.fps().and_then(sane_frame_rate),
        codec_string: format!("avc1.{:02x}{:02x}{:02x}", record[1], record[2], record[3]),
    })
}

/// Checks the record's layout and returns its NAL unit length size and parameter sets.
/// At least one SPS and one PPS are required (the `avc1` sample entry carries them
/// out of band).
pub fn split_record(record: &[u8]) -> Result<(u8, ParameterSets), CodecError> {
    if record.len() > MAX_RECORD_LEN {
        return Err(CodecError::Malformed(format!(
            "avcC: {} bytes (at most {MAX_RECORD_LEN})",
            record.len()
        )));
    }
    if record.len() < 7 {
        return Err(CodecError::Truncated("avcC header"));
    }
    if record[0] != 1 {
        return Err(CodecError::Unsupported(format!(
            "avcC configuration version {}",
            record[0]
        )));
    }
    let length_size = (record[4] & 0x03) + 1;
    if length_size == 3 {
        return Err(CodecError::Malformed("avcC: NAL unit length size 3".into()));
    }
    let num_sps = (record[5] & 0x1f) as usize;
    if num_sps == 0 {
        return Err(CodecError::Malformed("avcC: no SPS".into()));
    }
    let mut buf = &record[6..];
    let mut sets = ParameterSets::default();
    for _ in 0..num_sps {
        let sps = read_param_set(&mut buf, "avcC SPS")?;
        if sps[0] & 0x1f != NAL_SPS {
            return Err(CodecError::Malformed(format!(
                "avcC: SPS entry has NAL unit type {}",
                sps[0] & 0x1f
            )));
        }
        sets.sps.push(Bytes::copy_from_slice(sps));
    }
    let Some((&num_pps, rest)) = buf.split_first() else {
        return Err(CodecError::Truncated("avcC PPS count"));
    };
    buf = rest;
    let num_pps = num_pps as usize;
    if num_pps == 0 {
        return Err(CodecError::Malformed("avcC: no PPS".into()));
    }
    if num_pps > MAX_PARAM_SETS {
        return Err(CodecError::Malformed(format!(
            "avcC: {num_pps} PPS (at most {MAX_PARAM_SETS})"
        )));
    }
    for _ in 0..num_pps {
        let pps = read_param_set(&mut buf, "avcC PPS")?;
        if pps[0] & 0x1f != NAL_PPS {
            return Err(CodecError::Malformed(format!(
                "avcC: PPS entry has NAL unit type {}",
                pps[0] & 0x1f
            )));
        }
        sets.pps.push(Bytes::copy_from_slice(pps));
    }
    // The High-profile extension (chroma format, bit depths, SPS extensions) may
    // follow; it is optional in practice and not needed here.
    Ok((length_size, sets))
}

fn parse_sps(nal: &[u8]) -> Result<SeqParameterSet, CodecError> {
    SeqParameterSet::from_bits(BitReader::new(ByteReader::skipping_h264_header(nal)))
        .map_err(|e| CodecError::Malformed(format!("H.264 SPS: {e:?}")))
}

/// True if the length-prefixed access unit contains an IDR slice (NAL type 5).
/// Stops at the first malformed length and judges by the NAL units before it.
pub fn is_idr(nalus: &[u8], length_size: u8) -> bool {
    nal_units(nalus, length_size)
        .map_while(Result::ok)
        .any(|nal| nal.first().is_some_and(|h| h & 0x1f == NAL_IDR))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal avcC around one SPS and one PPS.
    fn record(sps: &[u8], pps: &[u8]) -> Vec<u8> {
        let mut r = vec![1, sps[1], sps[2], sps[3], 0xff, 0xe1];
        r.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        r.extend_from_slice(sps);
        r.push(1);
        r.extend_from_slice(&(pps.len() as u16).to_be_bytes());
        r.extend_from_slice(pps);
        r
    }

    #[test]
    fn rejects_records_without_parameter_sets() {
        let no_sps = Bytes::from_static(&[1, 0x42, 0xc0, 0x1e, 0xff, 0xe0, 0x00]);
        assert_eq!(
            parse_config(&no_sps),
            Err(CodecError::Malformed("avcC: no SPS".into()))
        );
        assert!(matches!(
            parse_config(&Bytes::from_static(&[1, 0x42])),
            Err(CodecError::Truncated(_))
        ));
        // SPS length pointing past the end.
        let r = Bytes::from_static(&[1, 0x42, 0xc0, 0x1e, 0xff, 0xe1, 0x00, 0x20, 0x67, 0x42]);
        assert_eq!(parse_config(&r), Err(CodecError::Truncated("avcC SPS")));
        // Entry that is not an SPS.
        let r = Bytes::from(record(&[0x68, 0x42, 0xc0, 0x1e], &[0x68, 0xce]));
        assert!(matches!(parse_config(&r), Err(CodecError::Malformed(_))));
    }

    #[test]
    fn idr_detection_walks_all_nal_units() {
        // AUD, SEI, IDR slice
        let au = [
            0, 0, 0, 2, 0x09, 0xf0, 0, 0, 0, 2, 0x06, 0x05, 0, 0, 0, 2, 0x65, 0x88,
        ];
        assert!(is_idr(&au, 4));
        // Non-IDR slice only.
        assert!(!is_idr(&[0, 0, 0, 2, 0x41, 0x9a], 4));
        // An IDR type byte that is not at the start of a NAL unit does not count.
        assert!(!is_idr(&[0, 0, 0, 3, 0x41, 0x65, 0x65], 4));
        // Truncated length: no panic, no IDR.
        assert!(!is_idr(&[0, 0, 0, 9, 0x65], 4));
        assert!(!is_idr(&[], 4));
        assert!(!is_idr(&au, 3));
    }
}
