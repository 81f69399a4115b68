//! H.264 access units as WebRTC delivers them (Annex B, parameter sets in-band) turned
//! into what the segmenter takes: length-prefixed samples and an `avcC` decoder
//! configuration built from the latest SPS/PPS.

use bytes::Bytes;

use crate::codec::avc;
use crate::media::VideoConfig;

/// Parameter sets larger than this are refused (an SPS is tens of bytes).
const MAX_PARAMETER_SET: usize = 1024;

/// NAL unit types (ITU-T H.264 Table 7-1) handled here.
const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_AUD: u8 = 9;

/// One access unit, ready for the segmenter.
#[derive(Debug, PartialEq)]
pub struct AccessUnit {
    /// 4-byte length-prefixed NAL units, parameter sets and delimiters removed.
    pub data: Bytes,
    pub keyframe: bool,
    /// A new decoder configuration, when this access unit's parameter sets differ from
    /// the previous ones.
    pub config: Option<VideoConfig>,
}

/// Why an access unit was dropped.
#[derive(Debug, PartialEq, Eq)]
pub enum Dropped {
    /// No SPS/PPS seen yet: the decoder could not start here.
    NoParameterSets,
    /// Nothing but parameter sets or delimiters.
    Empty,
    /// A parameter set the codec layer refused.
    BadParameterSets(String),
}

/// The parameter sets of the stream so far.
#[derive(Default)]
pub struct Depacketized {
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
    /// The configuration last handed out.
    current: Option<(Vec<u8>, Vec<u8>)>,
}

/// NAL units of an Annex B byte stream (start codes of 3 or 4 bytes), found lazily: one
/// pass over the bytes, nothing allocated.
pub fn annex_b_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    /// The index just past the first start code at or after `from`.
    fn next_start(data: &[u8], from: usize) -> Option<usize> {
        let mut i = from;
        while i + 3 <= data.len() {
            if data[i + 2] > 1 {
                i += 3; // no start code can end at i + 2 or begin before i + 3
            } else if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
                return Some(i + 3);
            } else {
                i += 1;
            }
        }
        None
    }
    let mut start = next_start(data, 0);
    std::iter::from_fn(move || loop {
        let s = start?;
        let next = next_start(data, s);
        start = next;
        let mut end = next.map_or(data.len(), |n| n - 3);
        // Trailing zeros belong to the next 4-byte start code (or are padding).
        while end > s && data[end - 1] == 0 {
            end -= 1;
        }
        if end > s {
            return Some(&data[s..end]);
        }
    })
}

impl Depacketized {
    pub fn new() -> Self {
        Self::default()
    }

    /// Converts one Annex B access unit.
    pub fn access_unit(&mut self, annex_b: &[u8]) -> Result<AccessUnit, Dropped> {
        let mut out = Vec::with_capacity(annex_b.len() + 16);
        let mut keyframe = false;
        for nal in annex_b_units(annex_b) {
            match nal[0] & 0x1f {
                NAL_SPS if nal.len() <= MAX_PARAMETER_SET => keep(&mut self.sps, nal),
                NAL_PPS if nal.len() <= MAX_PARAMETER_SET => keep(&mut self.pps, nal),
                NAL_SPS | NAL_PPS | NAL_AUD => {}
                t => {
                    keyframe |= t == NAL_IDR;
                    out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                    out.extend_from_slice(nal);
                }
            }
        }
        let (Some(sps), Some(pps)) = (&self.sps, &self.pps) else {
            return Err(Dropped::NoParameterSets);
        };
        if out.is_empty() {
            return Err(Dropped::Empty);
        }
        let mut config = None;
        let unchanged = self
            .current
            .as_ref()
            .is_some_and(|(s, p)| s == sps && p == pps);
        if !unchanged {
            if !keyframe {
                // New parameter sets take effect at the next IDR picture.
                if self.current.is_none() {
                    return Err(Dropped::NoParameterSets);
                }
            } else {
                let record = avcc_record(sps, pps);
                let cfg = avc::parse_config(&record)
                    .map_err(|e| Dropped::BadParameterSets(e.to_string()))?;
                self.current = Some((sps.clone(), pps.clone()));
                config = Some(cfg);
            }
        }
        Ok(AccessUnit {
            data: Bytes::from(out),
            keyframe,
            config,
        })
    }
}

/// Stores a parameter set, copying it only when it differs from the one kept (they are
/// repeated before every IDR picture).
fn keep(slot: &mut Option<Vec<u8>>, nal: &[u8]) {
    if slot.as_deref() != Some(nal) {
        *slot = Some(nal.to_vec());
    }
}

/// An `AVCDecoderConfigurationRecord` (ISO/IEC 14496-15 5.3.3.1) with one SPS and one PPS.
pub fn avcc_record(sps: &[u8], pps: &[u8]) -> Bytes {
    let mut r = Vec::with_capacity(11 + sps.len() + pps.len());
    r.push(1);
    r.push(sps.get(1).copied().unwrap_or(0)); // profile_idc
    r.push(sps.get(2).copied().unwrap_or(0)); // constraint flags
    r.push(sps.get(3).copied().unwrap_or(0)); // level_idc
    r.push(0xFC | 3); // lengthSizeMinusOne = 3
    r.push(0xE0 | 1);
    r.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    r.extend_from_slice(sps);
    r.push(1);
    r.extend_from_slice(&(pps.len() as u16).to_be_bytes());
    r.extend_from_slice(pps);
    Bytes::from(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPS/PPS of an x264 constrained-baseline 320x240 stream.
    const SPS: &[u8] = &[
        0x67, 0x42, 0xc0, 0x0d, 0xd9, 0x01, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10,
        0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0xa4, 0x80,
    ];
    const PPS: &[u8] = &[0x68, 0xcb, 0x83, 0xcb, 0x20];

    fn annex_b(units: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for (i, u) in units.iter().enumerate() {
            v.extend_from_slice(if i % 2 == 0 {
                &[0, 0, 0, 1]
            } else {
                &[0, 0, 1]
            });
            v.extend_from_slice(u);
        }
        v
    }

    #[test]
    fn splits_three_and_four_byte_start_codes() {
        let data = annex_b(&[&[0x09, 0xf0], &[0x65, 1, 2, 0], &[0x41, 3]]);
        let units: Vec<_> = annex_b_units(&data).collect();
        assert_eq!(
            units,
            vec![&[0x09, 0xf0][..], &[0x65, 1, 2][..], &[0x41, 3][..]]
        );
        assert_eq!(annex_b_units(&[]).count(), 0);
        assert_eq!(annex_b_units(&[0, 0, 1]).count(), 0);
        assert_eq!(annex_b_units(&[1, 2, 3]).count(), 0);
    }

    /// The plain reading: every start code, units between them without trailing zeros.
    fn reference_units(data: &[u8]) -> Vec<&[u8]> {
        let starts: Vec<usize> = (0..data.len().saturating_sub(2))
            .filter(|&i| data[i..i + 3] == [0, 0, 1])
            .map(|i| i + 3)
            .collect();
        let mut out = Vec::new();
        for (n, &s) in starts.iter().enumerate() {
            let mut end = starts.get(n + 1).map_or(data.len(), |&next| next - 3);
            while end > s && data[end - 1] == 0 {
                end -= 1;
            }
            if end > s {
                out.push(&data[s..end]);
            }
        }
        out
    }

    #[test]
    fn the_scan_finds_what_the_plain_reading_finds() {
        // Bytes drawn mostly from {0, 1, 2, 0xff} so that start codes, runs of zeros and
        // near misses are frequent.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for len in 0..400 {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    [0, 0, 0, 1, 2, 0xff, 0x65, 0][(x % 8) as usize]
                })
                .collect();
            let ours: Vec<&[u8]> = annex_b_units(&data).collect();
            assert_eq!(ours, reference_units(&data), "{data:?}");
        }
    }

    #[test]
    fn keyframe_with_parameter_sets_gives_config_and_length_prefixed_sample() {
        let mut d = Depacketized::new();
        assert_eq!(
            d.access_unit(&annex_b(&[&[0x41, 9]])),
            Err(Dropped::NoParameterSets)
        );
        let au = d
            .access_unit(&annex_b(&[&[0x09, 0xf0], SPS, PPS, &[0x65, 0x88, 0x84]]))
            .unwrap();
        assert!(au.keyframe);
        assert_eq!(&au.data[..], &[0, 0, 0, 3, 0x65, 0x88, 0x84]);
        let cfg = au.config.expect("config");
        assert_eq!((cfg.width, cfg.height), (320, 240));
        assert_eq!(cfg.codec_string, "avc1.42c00d");
        // The same parameter sets again: no new configuration.
        let au = d.access_unit(&annex_b(&[SPS, PPS, &[0x65, 1]])).unwrap();
        assert!(au.config.is_none());
        let au = d.access_unit(&annex_b(&[&[0x41, 7, 7]])).unwrap();
        assert!(!au.keyframe && au.config.is_none());
        assert_eq!(&au.data[..], &[0, 0, 0, 3, 0x41, 7, 7]);
        assert_eq!(d.access_unit(&annex_b(&[SPS, PPS])), Err(Dropped::Empty));
    }

    #[test]
    fn garbage_parameter_sets_are_refused_not_panicked_on() {
        let mut d = Depacketized::new();
        let r = d.access_unit(&annex_b(&[&[0x67, 0xff], &[0x68], &[0x65, 1]]));
        assert!(matches!(r, Err(Dropped::BadParameterSets(_))), "{r:?}");
        // An oversized SPS is not taken: the earlier (bad) one still stands.
        let huge = vec![0x67; 5000];
        let r = d.access_unit(&annex_b(&[&huge, PPS, &[0x65, 1]]));
        assert!(matches!(r, Err(Dropped::BadParameterSets(_))), "{r:?}");
        // Good ones recover the stream.
        assert!(d.access_unit(&annex_b(&[SPS, PPS, &[0x65, 1]])).is_ok());
    }
}
