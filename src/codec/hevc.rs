//! H.265: `HEVCDecoderConfigurationRecord` (ISO/IEC 14496-15 8.3.3.1) and enough of
//! the SPS (ITU-T H.265 7.3.2.2) for picture size and VUI frame rate.

use bytes::Bytes;

use super::bits::{unescape_rbsp, BitReader};
use super::{
    check_dimensions, nal_units, read_param_set, sane_frame_rate, CodecError, MAX_PARAM_SETS,
    MAX_RECORD_LEN,
};
use crate::media::{VideoCodec, VideoConfig};

pub const NAL_VPS: u8 = 32;
pub const NAL_SPS: u8 = 33;
pub const NAL_PPS: u8 = 34;
/// IRAP pictures are NAL unit types 16..=23 (BLA, IDR, CRA and reserved IRAP types).
pub const NAL_IRAP_FIRST: u8 = 16;
pub const NAL_IRAP_LAST: u8 = 23;

/// Most NAL unit arrays accepted in an hvcC record.
pub const MAX_ARRAYS: usize = 16;
/// Most short-term reference picture sets in an SPS (H.265: 0..=64).
const MAX_ST_RPS: u32 = 64;
/// Most pictures in one short-term reference picture set (bounded by the DPB size).
const MAX_RPS_PICS: u32 = 16;

/// The NAL unit type of an H.265 NAL unit header's first byte.
pub fn nal_type(header: u8) -> u8 {
    (header >> 1) & 0x3f
}

/// The parameter sets carried in an hvcC record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParameterSets {
    pub vps: Vec<Bytes>,
    pub sps: Vec<Bytes>,
    pub pps: Vec<Bytes>,
    /// Other arrays (e.g. prefix SEI), kept as they are.
    pub other: Vec<Bytes>,
}

/// The fields of the fixed hvcC header that the codec string is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ptl {
    profile_space: u8,
    tier: bool,
    profile_idc: u8,
    compat: u32,
    constraints: [u8; 6],
    level_idc: u8,
}

/// Parses an `HEVCDecoderConfigurationRecord`: checks it, reads the first SPS for
/// picture size (after the conformance window) and VUI frame rate, and builds the
/// `hvc1.…` codec string (ISO/IEC 14496-15 Annex E) from the record's
/// profile/tier/level fields.
pub fn parse_config(record: &Bytes) -> Result<VideoConfig, CodecError> {
    let (length_size, ptl, sets) = split(record)?;
    let sps = parse_sps(&sets.sps[0])?;
    check_dimensions(sps.width, sps.height)?;
    Ok(VideoConfig {
        codec: VideoCodec::H265,
        record: record.clone(),
        nalu_length_size: length_size,
        width: sps.width,
        height: sps.height,
        frame_rate: sps.frame_rate.and_then(sane_frame_rate),
        codec_string: codec_string(&ptl),
    })
}

/// Checks the record's layout and returns its NAL unit length size and parameter
/// sets. At least one VPS, SPS and PPS are required (the `hvc1` sample entry carries
/// them out of band).
pub fn split_record(record: &[u8]) -> Result<(u8, ParameterSets), CodecError> {
    split(record).map(|(len, _, sets)| (len, sets))
}

fn split(record: &[u8]) -> Result<(u8, Ptl, ParameterSets), CodecError> {
    if record.len() > MAX_RECORD_LEN {
        return Err(CodecError::Malformed(format!(
            "hvcC: {} bytes (at most {MAX_RECORD_LEN})",
            record.len()
        )));
    }
    if record.len() < 23 {
        return Err(CodecError::Truncated("hvcC header"));
    }
    if record[0] != 1 {
        return Err(CodecError::Unsupported(format!(
            "hvcC configuration version {}",
            record[0]
        )));
    }
    let mut constraints = [0u8; 6];
    constraints.copy_from_slice(&record[6..12]);
    let ptl = Ptl {
        profile_space: record[1] >> 6,
        tier: record[1] & 0x20 != 0,
        profile_idc: record[1] & 0x1f,
        compat: u32::from_be_bytes([record[2], record[3], record[4], record[5]]),
        constraints,
        level_idc: record[12],
    };
    let length_size = (record[21] & 0x03) + 1;
    if length_size == 3 {
        return Err(CodecError::Malformed("hvcC: NAL unit length size 3".into()));
    }
    let num_arrays = record[22] as usize;
    if num_arrays > MAX_ARRAYS {
        return Err(CodecError::Malformed(format!(
            "hvcC: {num_arrays} arrays (at most {MAX_ARRAYS})"
        )));
    }
    let mut buf = &record[23..];
    let mut sets = ParameterSets::default();
    for _ in 0..num_arrays {
        if buf.len() < 3 {
            return Err(CodecError::Truncated("hvcC array header"));
        }
        let array_type = buf[0] & 0x3f;
        let count = u16::from_be_bytes([buf[1], buf[2]]) as usize;
        buf = &buf[3..];
        if count > MAX_PARAM_SETS {
            return Err(CodecError::Malformed(format!(
                "hvcC: {count} NAL units of type {array_type} (at most {MAX_PARAM_SETS})"
            )));
        }
        for _ in 0..count {
            let nal = read_param_set(&mut buf, "hvcC NAL unit")?;
            if nal.len() < 2 || nal_type(nal[0]) != array_type {
                return Err(CodecError::Malformed(format!(
                    "hvcC: array of type {array_type} holds a NAL unit of type {}",
                    nal_type(nal[0])
                )));
            }
            let nal = Bytes::copy_from_slice(nal);
            match array_type {
                NAL_VPS => sets.vps.push(nal),
                NAL_SPS => sets.sps.push(nal),
                NAL_PPS => sets.pps.push(nal),
                _ => sets.other.push(nal),
            }
        }
    }
    for (name, list) in [("VPS", &sets.vps), ("SPS", &sets.sps), ("PPS", &sets.pps)] {
        if list.is_empty() {
            return Err(CodecError::Malformed(format!("hvcC: no {name}")));
        }
        if list.len() > MAX_PARAM_SETS {
            return Err(CodecError::Malformed(format!(
                "hvcC: {} {name} (at most {MAX_PARAM_SETS})",
                list.len()
            )));
        }
    }
    Ok((length_size, ptl, sets))
}

/// `hvc1.[A-C]<profile>.<compat, bit-reversed hex>.<L|H><level>[.<constraint byte>]*`
/// with trailing zero constraint bytes dropped (ISO/IEC 14496-15 E.3).
fn codec_string(ptl: &Ptl) -> String {
    let space = match ptl.profile_space {
        1 => "A",
        2 => "B",
        3 => "C",
        _ => "",
    };
    let mut s = format!(
        "hvc1.{space}{}.{:X}.{}{}",
        ptl.profile_idc,
        ptl.compat.reverse_bits(),
        if ptl.tier { 'H' } else { 'L' },
        ptl.level_idc
    );
    let used = ptl
        .constraints
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i + 1);
    for b in &ptl.constraints[..used] {
        s.push_str(&format!(".{b:X}"));
    }
    s
}

/// What vid needs from an H.265 SPS.
#[derive(Clone, Debug, PartialEq)]
pub struct SpsInfo {
    /// Luma width and height after the conformance window.
    pub width: u32,
    pub height: u32,
    pub chroma_format_idc: u32,
    pub bit_depth_luma: u32,
    pub bit_depth_chroma: u32,
    /// `vui_time_scale / vui_num_units_in_tick` when the VUI signals timing (not
    /// bounded; callers judge plausibility).
    pub frame_rate: Option<f64>,
}

/// Parses an SPS NAL unit (with its two-byte header). Picture size is required;
/// the VUI timing is read on a best-effort basis and left `None` when anything
/// between the size and the VUI cannot be read.
pub fn parse_sps(nal: &[u8]) -> Result<SpsInfo, CodecError> {
    if nal.len() < 3 {
        return Err(CodecError::Truncated("H.265 SPS"));
    }
    if nal_type(nal[0]) != NAL_SPS {
        return Err(CodecError::Malformed(format!(
            "H.265 SPS has NAL unit type {}",
            nal_type(nal[0])
        )));
    }
    let rbsp = unescape_rbsp(&nal[2..]);
    let mut r = BitReader::new(&rbsp);
    r.skip(4, "sps_video_parameter_set_id")?;
    let max_sub_layers_minus1 = r.bits(3, "sps_max_sub_layers_minus1")?;
    if max_sub_layers_minus1 > 6 {
        return Err(CodecError::Malformed(format!(
            "sps_max_sub_layers_minus1 = {max_sub_layers_minus1}"
        )));
    }
    r.skip(1, "sps_temporal_id_nesting_flag")?;
    skip_profile_tier_level(&mut r, max_sub_layers_minus1)?;
    r.ue_max(15, "sps_seq_parameter_set_id")?;
    let chroma_format_idc = r.ue_max(3, "chroma_format_idc")?;
    let separate_colour_plane = chroma_format_idc == 3 && r.bit("separate_colour_plane_flag")?;
    let pic_width = r.ue("pic_width_in_luma_samples")?;
    let pic_height = r.ue("pic_height_in_luma_samples")?;
    let (sub_w, sub_h) = match (chroma_format_idc, separate_colour_plane) {
        (1, _) => (2, 2),
        (2, _) => (2, 1),
        _ => (1, 1),
    };
    let (mut width, mut height) = (pic_width as u64, pic_height as u64);
    if r.bit("conformance_window_flag")? {
        let left = r.ue("conf_win_left_offset")? as u64;
        let right = r.ue("conf_win_right_offset")? as u64;
        let top = r.ue("conf_win_top_offset")? as u64;
        let bottom = r.ue("conf_win_bottom_offset")? as u64;
        let crop_w = sub_w * (left + right);
        let crop_h = sub_h * (top + bottom);
        if crop_w >= width || crop_h >= height {
            return Err(CodecError::Malformed(format!(
                "H.265 SPS conformance window crops {pic_width}x{pic_height} to nothing"
            )));
        }
        width -= crop_w;
        height -= crop_h;
    }
    let bit_depth_luma = r.ue_max(8, "bit_depth_luma_minus8")? + 8;
    let bit_depth_chroma = r.ue_max(8, "bit_depth_chroma_minus8")? + 8;
    let frame_rate = read_vui_timing(&mut r, max_sub_layers_minus1).unwrap_or(None);
    Ok(SpsInfo {
        width: width.min(u32::MAX as u64) as u32,
        height: height.min(u32::MAX as u64) as u32,
        chroma_format_idc,
        bit_depth_luma,
        bit_depth_chroma,
        frame_rate,
    })
}

/// profile_tier_level(1, sps_max_sub_layers_minus1), H.265 7.3.3.
fn skip_profile_tier_level(
    r: &mut BitReader,
    max_sub_layers_minus1: u32,
) -> Result<(), CodecError> {
    // general profile space/tier/idc, compatibility and constraint flags (88 bits),
    // then general_level_idc.
    r.skip(88, "general_profile_tier")?;
    r.skip(8, "general_level_idc")?;
    let mut present = [(false, false); 8];
    for p in present.iter_mut().take(max_sub_layers_minus1 as usize) {
        *p = (
            r.bit("sub_layer_profile_present_flag")?,
            r.bit("sub_layer_level_present_flag")?,
        );
    }
    if max_sub_layers_minus1 > 0 {
        r.skip(
            2 * (8 - max_sub_layers_minus1 as usize),
            "reserved_zero_2bits",
        )?;
    }
    for &(profile, level) in present.iter().take(max_sub_layers_minus1 as usize) {
        if profile {
            r.skip(88, "sub_layer_profile")?;
        }
        if level {
            r.skip(8, "sub_layer_level_idc")?;
        }
    }
    Ok(())
}

/// Reads on from `log2_max_pic_order_cnt_lsb_minus4` to the VUI timing info.
fn read_vui_timing(
    r: &mut BitReader,
    max_sub_layers_minus1: u32,
) -> Result<Option<f64>, CodecError> {
    let log2_max_poc_lsb = r.ue_max(12, "log2_max_pic_order_cnt_lsb_minus4")? + 4;
    let ordering_all = r.bit("sps_sub_layer_ordering_info_present_flag")?;
    let first = if ordering_all {
        0
    } else {
        max_sub_layers_minus1
    };
    for _ in first..=max_sub_layers_minus1 {
        r.ue("sps_max_dec_pic_buffering_minus1")?;
        r.ue("sps_max_num_reorder_pics")?;
        r.ue("sps_max_latency_increase_plus1")?;
    }
    r.ue("log2_min_luma_coding_block_size_minus3")?;
    r.ue("log2_diff_max_min_luma_coding_block_size")?;
    r.ue("log2_min_luma_transform_block_size_minus2")?;
    r.ue("log2_diff_max_min_luma_transform_block_size")?;
    r.ue("max_transform_hierarchy_depth_inter")?;
    r.ue("max_transform_hierarchy_depth_intra")?;
    if r.bit("scaling_list_enabled_flag")? && r.bit("sps_scaling_list_data_present_flag")? {
        skip_scaling_list_data(r)?;
    }
    r.skip(2, "amp/sao flags")?;
    if r.bit("pcm_enabled_flag")? {
        r.skip(8, "pcm_sample_bit_depths")?;
        r.ue("log2_min_pcm_luma_coding_block_size_minus3")?;
        r.ue("log2_diff_max_min_pcm_luma_coding_block_size")?;
        r.skip(1, "pcm_loop_filter_disabled_flag")?;
    }
    let num_st_rps = r.ue_max(MAX_ST_RPS, "num_short_term_ref_pic_sets")?;
    let mut sets: Vec<(Vec<i64>, Vec<i64>)> = Vec::with_capacity(num_st_rps as usize);
    for idx in 0..num_st_rps as usize {
        let set = read_st_ref_pic_set(r, idx, &sets)?;
        sets.push(set);
    }
    if r.bit("long_term_ref_pics_present_flag")? {
        let n = r.ue_max(32, "num_long_term_ref_pics_sps")?;
        for _ in 0..n {
            r.skip(log2_max_poc_lsb as usize + 1, "lt_ref_pic_poc_lsb_sps")?;
        }
    }
    r.skip(2, "temporal_mvp/strong_intra_smoothing flags")?;
    if !r.bit("vui_parameters_present_flag")? {
        return Ok(None);
    }
    // vui_parameters(), H.265 E.2.1, up to the timing info.
    if r.bit("aspect_ratio_info_present_flag")? && r.bits(8, "aspect_ratio_idc")? == 255 {
        r.skip(32, "sar")?;
    }
    if r.bit("overscan_info_present_flag")? {
        r.skip(1, "overscan_appropriate_flag")?;
    }
    if r.bit("video_signal_type_present_flag")? {
        r.skip(4, "video_format/full_range")?;
        if r.bit("colour_description_present_flag")? {
            r.skip(24, "colour_description")?;
        }
    }
    if r.bit("chroma_loc_info_present_flag")? {
        r.ue("chroma_sample_loc_type_top_field")?;
        r.ue("chroma_sample_loc_type_bottom_field")?;
    }
    r.skip(3, "neutral_chroma/field_seq/frame_field_info flags")?;
    if r.bit("default_display_window_flag")? {
        for _ in 0..4 {
            r.ue("def_disp_win_offset")?;
        }
    }
    if !r.bit("vui_timing_info_present_flag")? {
        return Ok(None);
    }
    let num_units_in_tick = r.bits(32, "vui_num_units_in_tick")?;
    let time_scale = r.bits(32, "vui_time_scale")?;
    if num_units_in_tick == 0 || time_scale == 0 {
        return Ok(None);
    }
    Ok(Some(time_scale as f64 / num_units_in_tick as f64))
}

fn skip_scaling_list_data(r: &mut BitReader) -> Result<(), CodecError> {
    for size_id in 0..4u32 {
        let step = if size_id == 3 { 3 } else { 1 };
        for _ in (0..6).step_by(step) {
            if !r.bit("scaling_list_pred_mode_flag")? {
                r.ue("scaling_list_pred_matrix_id_delta")?;
            } else {
                let coef_num = 64.min(1 << (4 + (size_id << 1)));
                if size_id > 1 {
                    r.se("scaling_list_dc_coef_minus8")?;
                }
                for _ in 0..coef_num {
                    r.se("scaling_list_delta_coef")?;
                }
            }
        }
    }
    Ok(())
}

/// st_ref_pic_set(idx) in an SPS (H.265 7.3.7, 7.4.8): returns the negative and
/// positive POC deltas, which later sets may be predicted from.
fn read_st_ref_pic_set(
    r: &mut BitReader,
    idx: usize,
    sets: &[(Vec<i64>, Vec<i64>)],
) -> Result<(Vec<i64>, Vec<i64>), CodecError> {
    let inter = idx != 0 && r.bit("inter_ref_pic_set_prediction_flag")?;
    if !inter {
        let num_negative = r.ue_max(MAX_RPS_PICS, "num_negative_pics")?;
        let num_positive = r.ue_max(MAX_RPS_PICS, "num_positive_pics")?;
        let mut s0 = Vec::with_capacity(num_negative as usize);
        let mut poc = 0i64;
        for _ in 0..num_negative {
            poc -= r.ue("delta_poc_s0_minus1")? as i64 + 1;
            r.skip(1, "used_by_curr_pic_s0_flag")?;
            s0.push(poc);
        }
        let mut s1 = Vec::with_capacity(num_positive as usize);
        poc = 0;
        for _ in 0..num_positive {
            poc += r.ue("delta_poc_s1_minus1")? as i64 + 1;
            r.skip(1, "used_by_curr_pic_s1_flag")?;
            s1.push(poc);
        }
        return Ok((s0, s1));
    }
    // In an SPS, delta_idx_minus1 is absent (inferred 0): predict from the previous set.
    let (ref_s0, ref_s1) = &sets[idx - 1];
    let sign = r.bit("delta_rps_sign")?;
    let abs = r.ue("abs_delta_rps_minus1")? as i64 + 1;
    let delta_rps = if sign { -abs } else { abs };
    let num_delta = ref_s0.len() + ref_s1.len();
    let mut use_delta = Vec::with_capacity(num_delta + 1);
    for _ in 0..=num_delta {
        let used = r.bit("used_by_curr_pic_flag")?;
        use_delta.push(used || r.bit("use_delta_flag")?);
    }
    let n_neg = ref_s0.len();
    let mut s0 = Vec::new();
    for (j, d) in ref_s1.iter().enumerate().rev() {
        let dpoc = d + delta_rps;
        if dpoc < 0 && use_delta[n_neg + j] {
            s0.push(dpoc);
        }
    }
    if delta_rps < 0 && use_delta[num_delta] {
        s0.push(delta_rps);
    }
    for (j, d) in ref_s0.iter().enumerate() {
        let dpoc = d + delta_rps;
        if dpoc < 0 && use_delta[j] {
            s0.push(dpoc);
        }
    }
    let mut s1 = Vec::new();
    for (j, d) in ref_s0.iter().enumerate().rev() {
        let dpoc = d + delta_rps;
        if dpoc > 0 && use_delta[j] {
            s1.push(dpoc);
        }
    }
    if delta_rps > 0 && use_delta[num_delta] {
        s1.push(delta_rps);
    }
    for (j, d) in ref_s1.iter().enumerate() {
        let dpoc = d + delta_rps;
        if dpoc > 0 && use_delta[n_neg + j] {
            s1.push(dpoc);
        }
    }
    if s0.len() + s1.len() > MAX_RPS_PICS as usize {
        return Err(CodecError::Malformed(format!(
            "H.265 SPS: reference picture set {idx} has {} pictures",
            s0.len() + s1.len()
        )));
    }
    Ok((s0, s1))
}

/// True if the length-prefixed access unit contains an IRAP picture (NAL types 16..=23:
/// BLA, IDR, CRA). Stops at the first malformed length and judges by the NAL units
/// before it.
pub fn is_irap(nalus: &[u8], length_size: u8) -> bool {
    nal_units(nalus, length_size)
        .map_while(Result::ok)
        .any(|nal| {
            nal.first()
                .is_some_and(|&h| (NAL_IRAP_FIRST..=NAL_IRAP_LAST).contains(&nal_type(h)))
        })
}

/// True when the access unit holds a RASL picture (NAL unit types 8 and 9): a leading
/// picture of a CRA that references pictures before the CRA (open GOP), so it cannot be
/// decoded when decoding starts at that CRA.
pub fn is_rasl(nalus: &[u8], length_size: u8) -> bool {
    nal_units(nalus, length_size)
        .map_while(Result::ok)
        .any(|nal| nal.first().is_some_and(|&h| matches!(nal_type(h), 8 | 9)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rasl_pictures() {
        // RASL_N (8), RASL_R (9); RADL_N (6) and TRAIL_R (1) are not.
        assert!(is_rasl(&[0, 2, 8 << 1, 1], 2));
        assert!(is_rasl(&[0, 0, 0, 2, 0x4e, 0x01, 0, 0, 0, 2, 9 << 1, 1], 4));
        assert!(!is_rasl(&[0, 2, 6 << 1, 1], 2));
        assert!(!is_rasl(&[0, 2, 0x02, 1], 2));
        assert!(!is_rasl(&[], 4));
    }

    fn ptl(compat: u32, constraints: [u8; 6], level: u8, tier: bool) -> Ptl {
        Ptl {
            profile_space: 0,
            tier,
            profile_idc: 1,
            compat,
            constraints,
            level_idc: level,
        }
    }

    #[test]
    fn codec_strings_follow_annex_e() {
        // Main profile: compatibility flags 1 and 2 set → 0x60000000 → reversed 6.
        assert_eq!(
            codec_string(&ptl(0x6000_0000, [0xb0, 0, 0, 0, 0, 0], 93, false)),
            "hvc1.1.6.L93.B0"
        );
        assert_eq!(
            codec_string(&ptl(0x6000_0000, [0x90, 0, 0, 0, 0, 0], 60, false)),
            "hvc1.1.6.L60.90"
        );
        // High tier, a zero byte in the middle is kept, trailing ones dropped.
        assert_eq!(
            codec_string(&ptl(0x2000_0000, [0xb0, 0, 0x08, 0, 0, 0], 153, true)),
            "hvc1.1.4.H153.B0.0.8"
        );
        // No constraint bytes at all.
        let mut p = ptl(0x4000_0000, [0; 6], 120, false);
        p.profile_space = 2;
        p.profile_idc = 2;
        assert_eq!(codec_string(&p), "hvc1.B2.2.L120");
    }

    #[test]
    fn irap_detection() {
        // AUD (35), prefix SEI (39), CRA (21)
        let cra = [
            0, 0, 0, 3, 0x46, 0x01, 0x50, 0, 0, 0, 2, 0x4e, 0x01, 0, 0, 0, 2, 0x2a, 0x01,
        ];
        assert!(is_irap(&cra, 4));
        // IDR_W_RADL (19)
        assert!(is_irap(&[0, 2, 0x26, 0x01], 2));
        // TRAIL_R (1)
        assert!(!is_irap(&[0, 0, 0, 2, 0x02, 0x01], 4));
        assert!(!is_irap(&[0, 0, 1, 0, 0x26], 4));
    }

    #[test]
    fn rejects_records_without_sps() {
        let mut rec = vec![0u8; 23];
        rec[0] = 1;
        rec[21] = 0x03;
        assert_eq!(
            parse_config(&Bytes::from(rec.clone())),
            Err(CodecError::Malformed("hvcC: no VPS".into()))
        );
        rec[22] = 1;
        assert_eq!(
            parse_config(&Bytes::from(rec)),
            Err(CodecError::Truncated("hvcC array header"))
        );
    }
}
