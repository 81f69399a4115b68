//! fMP4 / CMAF: init segment (`ftyp` + `moov`) and fragments (`moof` + `mdat`).
//!
//! Boxes follow ISO/IEC 14496-12 (ISO BMFF), 14496-14 (`esds`), 14496-15
//! (`avcC`, `hvcC`) and "Encapsulation of Opus in ISO Base Media File Format"
//! (`Opus`, `dOps`). Decoder configuration records are copied into the sample
//! entries byte for byte.

use bytes::Bytes;

use super::boxes::BoxWriter;
use crate::codec::opus;
use crate::media::{AudioCodec, AudioConfig, VideoCodec, VideoConfig};

pub const VIDEO_TRACK_ID: u32 = 1;
pub const AUDIO_TRACK_ID: u32 = 2;
/// Video media timescale; the audio timescale is the track's sample rate.
pub const VIDEO_TIMESCALE: u32 = 90_000;

/// Movie (`mvhd`) timescale. The movie duration is 0 (fragmented, live).
pub const MOVIE_TIMESCALE: u32 = 1000;

/// Largest whole fragment (`moof` + `mdat`) [`fragment`] writes. `trun`
/// data offsets are signed 32-bit offsets from the start of the `moof`, so
/// nothing beyond this can be addressed. Samples that would cross it are
/// left out (with every sample after them); real CMAF chunks are a few MB.
pub const MAX_FRAGMENT_SIZE: usize = i32::MAX as usize;

/// Largest AudioSpecificConfig written into `esds`; longer ones are cut.
/// (Real ones are 2–5 bytes, rarely a few dozen; the descriptor length field
/// could hold up to 2^28 − 1.)
pub const MAX_ASC_LEN: usize = 4096;

/// `sample_flags` of a sync sample: sample_depends_on = 2 (does not depend on others).
pub const SYNC_SAMPLE_FLAGS: u32 = 0x0200_0000;
/// `sample_flags` of a non-sync sample: sample_depends_on = 1 and sample_is_non_sync_sample.
pub const NON_SYNC_SAMPLE_FLAGS: u32 = 0x0101_0000;

/// `tfhd` flag: base data offset is the start of the enclosing `moof`.
const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;
/// `trun` flags: data-offset, sample-duration, sample-size, sample-flags,
/// sample-composition-time-offset present.
const TRUN_FLAGS: u32 = 0x00_0001 | 0x00_0100 | 0x00_0200 | 0x00_0400 | 0x00_0800;
/// Bytes of one `trun` sample entry with [`TRUN_FLAGS`].
const TRUN_ENTRY_SIZE: usize = 16;
/// Bytes of a `traf` without its `trun` entries: traf header (8) + tfhd (16)
/// + tfdt v1 (20) + trun header, sample count and data offset (20).
const TRAF_FIXED_SIZE: usize = 8 + 16 + 20 + 20;
/// `moof` header (8) + `mfhd` (16).
const MOOF_FIXED_SIZE: usize = 8 + 16;
/// `mdat` header with a 32-bit size.
const MDAT_HEADER_SIZE: usize = 8;

/// ISO 639-2/T "und", packed as in `mdhd`.
const LANGUAGE_UND: u16 = 0x55C4;
/// Identity transformation matrix of `mvhd` / `tkhd`.
const UNITY_MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

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

/// ftyp + moov for the tracks present (at least one). Video first when both.
///
/// With neither track the result is still a well-formed `ftyp` + `moov` (with
/// `mvhd` and an empty `mvex`), which no player will play.
pub fn init_segment(video: Option<&VideoConfig>, audio: Option<&AudioConfig>) -> Bytes {
    let record_len = video.map_or(0, |v| v.record.len()) + audio.map_or(0, |a| a.asc.len());
    let mut w = BoxWriter::with_capacity(1024 + record_len);
    write_ftyp(&mut w);
    w.boxed(b"moov", |w| {
        let next_track_id = match (video, audio) {
            (_, Some(_)) => AUDIO_TRACK_ID + 1,
            (Some(_), None) => VIDEO_TRACK_ID + 1,
            (None, None) => 1,
        };
        write_mvhd(w, next_track_id);
        if let Some(v) = video {
            write_video_trak(w, v);
        }
        if let Some(a) = audio {
            write_audio_trak(w, a);
        }
        w.boxed(b"mvex", |w| {
            if video.is_some() {
                write_trex(w, VIDEO_TRACK_ID);
            }
            if audio.is_some() {
                write_trex(w, AUDIO_TRACK_ID);
            }
        });
    });
    w.finish()
}

/// One CMAF chunk: moof (mfhd with `sequence_number`, one traf per non-empty run) followed by
/// one mdat holding the runs' sample data in order. Empty runs are skipped.
///
/// Each `trun` is version 1 (signed composition offsets) and its data offset
/// points at the run's first byte inside the `mdat` payload, counted from the
/// start of the `moof` (`tfhd` default-base-is-moof). A chunk is limited to
/// [`MAX_FRAGMENT_SIZE`]; samples past that are left out.
pub fn fragment(sequence_number: u32, runs: &[Run]) -> Bytes {
    fragment_with_limit(sequence_number, runs, MAX_FRAGMENT_SIZE)
}

fn fragment_with_limit(sequence_number: u32, runs: &[Run], limit: usize) -> Bytes {
    let runs = fit_runs(runs, limit);
    let payload: usize = runs
        .iter()
        .flat_map(|r| r.samples)
        .map(|s| s.data.len())
        .sum();
    let moof_size = MOOF_FIXED_SIZE
        + runs
            .iter()
            .map(|r| TRAF_FIXED_SIZE + TRUN_ENTRY_SIZE * r.samples.len())
            .sum::<usize>();

    let mut w = BoxWriter::with_capacity(moof_size + MDAT_HEADER_SIZE + payload);
    let mut data_offset_slots = Vec::with_capacity(runs.len());
    w.boxed(b"moof", |w| {
        w.full_box(b"mfhd", 0, 0, |w| w.u32(sequence_number));
        for run in &runs {
            write_traf(w, run, &mut data_offset_slots);
        }
    });
    debug_assert_eq!(w.position(), moof_size);

    // Now that the moof is complete, point each trun at its data.
    let mut offset = w.position() + MDAT_HEADER_SIZE;
    for (slot, run) in data_offset_slots.into_iter().zip(&runs) {
        // fit_runs keeps the whole fragment within `limit` <= i32::MAX.
        w.patch_u32(slot, u32::try_from(offset).unwrap_or(u32::MAX));
        offset += run.samples.iter().map(|s| s.data.len()).sum::<usize>();
    }

    w.boxed(b"mdat", |w| {
        for sample in runs.iter().flat_map(|r| r.samples) {
            w.bytes(&sample.data);
        }
    });
    w.finish()
}

/// The non-empty runs, cut so that the whole fragment stays within `limit`
/// bytes: once a sample does not fit, it and everything after it is dropped.
fn fit_runs<'a>(runs: &[Run<'a>], limit: usize) -> Vec<Run<'a>> {
    let mut used = MOOF_FIXED_SIZE + MDAT_HEADER_SIZE;
    let mut out = Vec::with_capacity(runs.len());
    for run in runs.iter().filter(|r| !r.samples.is_empty()) {
        let mut take = 0;
        let mut cost = TRAF_FIXED_SIZE;
        for sample in run.samples {
            let next = cost
                .saturating_add(TRUN_ENTRY_SIZE)
                .saturating_add(sample.data.len());
            if used.saturating_add(next) > limit {
                break;
            }
            cost = next;
            take += 1;
        }
        if take > 0 {
            used += cost;
            out.push(Run {
                samples: &run.samples[..take],
                ..*run
            });
        }
        if take < run.samples.len() {
            break;
        }
    }
    out
}

fn write_traf(w: &mut BoxWriter, run: &Run, data_offset_slots: &mut Vec<usize>) {
    w.boxed(b"traf", |w| {
        w.full_box(b"tfhd", 0, TFHD_DEFAULT_BASE_IS_MOOF, |w| {
            w.u32(run.track_id)
        });
        w.full_box(b"tfdt", 1, 0, |w| w.u64(run.base_decode_time));
        w.full_box(b"trun", 1, TRUN_FLAGS, |w| {
            // fit_runs bounds the sample count far below u32::MAX.
            w.u32(u32::try_from(run.samples.len()).unwrap_or(u32::MAX));
            data_offset_slots.push(w.position());
            w.i32(0);
            for s in run.samples {
                w.u32(s.duration);
                w.u32(u32::try_from(s.data.len()).unwrap_or(u32::MAX));
                w.u32(if s.keyframe {
                    SYNC_SAMPLE_FLAGS
                } else {
                    NON_SYNC_SAMPLE_FLAGS
                });
                w.i32(s.cts_offset);
            }
        });
    });
}

fn write_ftyp(w: &mut BoxWriter) {
    w.boxed(b"ftyp", |w| {
        w.bytes(b"iso6");
        w.u32(0);
        for brand in [b"iso6", b"cmfc", b"isom", b"mp41"] {
            w.bytes(brand);
        }
    });
}

fn write_matrix(w: &mut BoxWriter) {
    for v in UNITY_MATRIX {
        w.u32(v);
    }
}

fn write_mvhd(w: &mut BoxWriter, next_track_id: u32) {
    w.full_box(b"mvhd", 0, 0, |w| {
        w.u32(0); // creation_time
        w.u32(0); // modification_time
        w.u32(MOVIE_TIMESCALE);
        w.u32(0); // duration
        w.u32(0x0001_0000); // rate 1.0
        w.u16(0x0100); // volume 1.0
        w.zeros(2 + 8); // reserved
        write_matrix(w);
        w.zeros(24); // pre_defined
        w.u32(next_track_id);
    });
}

/// `tkhd` flags: track_enabled | track_in_movie.
const TKHD_FLAGS: u32 = 0x1 | 0x2;

fn write_tkhd(w: &mut BoxWriter, track_id: u32, volume: u16, width: u32, height: u32) {
    w.full_box(b"tkhd", 0, TKHD_FLAGS, |w| {
        w.u32(0); // creation_time
        w.u32(0); // modification_time
        w.u32(track_id);
        w.u32(0); // reserved
        w.u32(0); // duration
        w.zeros(8); // reserved
        w.u16(0); // layer
        w.u16(0); // alternate_group
        w.u16(volume);
        w.u16(0); // reserved
        write_matrix(w);
        w.u32(fixed_16_16(width));
        w.u32(fixed_16_16(height));
    });
}

/// An integer as 16.16 fixed point, saturating at 65535.
fn fixed_16_16(v: u32) -> u32 {
    v.min(0xFFFF) << 16
}

fn write_mdhd(w: &mut BoxWriter, timescale: u32) {
    w.full_box(b"mdhd", 0, 0, |w| {
        w.u32(0); // creation_time
        w.u32(0); // modification_time
        w.u32(timescale);
        w.u32(0); // duration
        w.u16(LANGUAGE_UND);
        w.u16(0); // pre_defined
    });
}

fn write_hdlr(w: &mut BoxWriter, handler: &[u8; 4], name: &[u8]) {
    w.full_box(b"hdlr", 0, 0, |w| {
        w.u32(0); // pre_defined
        w.bytes(handler);
        w.zeros(12); // reserved
        w.bytes(name);
        w.u8(0);
    });
}

fn write_dinf(w: &mut BoxWriter) {
    w.boxed(b"dinf", |w| {
        w.full_box(b"dref", 0, 0, |w| {
            w.u32(1);
            // flags 1: the media data is in the same file.
            w.full_box(b"url ", 0, 1, |_| {});
        });
    });
}

/// `stbl` with the one sample entry and the empty tables of a fragmented file.
fn write_stbl(w: &mut BoxWriter, sample_entry: impl FnOnce(&mut BoxWriter)) {
    w.boxed(b"stbl", |w| {
        w.full_box(b"stsd", 0, 0, |w| {
            w.u32(1);
            sample_entry(w);
        });
        w.full_box(b"stts", 0, 0, |w| w.u32(0));
        w.full_box(b"stsc", 0, 0, |w| w.u32(0));
        w.full_box(b"stsz", 0, 0, |w| {
            w.u32(0); // sample_size
            w.u32(0); // sample_count
        });
        w.full_box(b"stco", 0, 0, |w| w.u32(0));
    });
}

fn write_video_trak(w: &mut BoxWriter, v: &VideoConfig) {
    w.boxed(b"trak", |w| {
        write_tkhd(w, VIDEO_TRACK_ID, 0, v.width, v.height);
        w.boxed(b"mdia", |w| {
            write_mdhd(w, VIDEO_TIMESCALE);
            write_hdlr(w, b"vide", b"VideoHandler");
            w.boxed(b"minf", |w| {
                w.full_box(b"vmhd", 0, 1, |w| {
                    w.u16(0); // graphicsmode
                    w.zeros(6); // opcolor
                });
                write_dinf(w);
                write_stbl(w, |w| write_visual_sample_entry(w, v));
            });
        });
    });
}

fn write_visual_sample_entry(w: &mut BoxWriter, v: &VideoConfig) {
    let (entry, config) = match v.codec {
        VideoCodec::H264 => (b"avc1", b"avcC"),
        VideoCodec::H265 => (b"hvc1", b"hvcC"),
    };
    w.boxed(entry, |w| {
        w.zeros(6); // reserved
        w.u16(1); // data_reference_index
        w.u16(0); // pre_defined
        w.u16(0); // reserved
        w.zeros(12); // pre_defined
        w.u16(u16::try_from(v.width).unwrap_or(u16::MAX));
        w.u16(u16::try_from(v.height).unwrap_or(u16::MAX));
        w.u32(0x0048_0000); // horizresolution 72 dpi
        w.u32(0x0048_0000); // vertresolution 72 dpi
        w.u32(0); // reserved
        w.u16(1); // frame_count
        w.zeros(32); // compressorname
        w.u16(0x0018); // depth
        w.u16(0xFFFF); // pre_defined = -1
        w.boxed(config, |w| w.bytes(&v.record));
    });
}

fn write_audio_trak(w: &mut BoxWriter, a: &AudioConfig) {
    w.boxed(b"trak", |w| {
        write_tkhd(w, AUDIO_TRACK_ID, 0x0100, 0, 0);
        w.boxed(b"mdia", |w| {
            write_mdhd(w, a.sample_rate);
            write_hdlr(w, b"soun", b"SoundHandler");
            w.boxed(b"minf", |w| {
                w.full_box(b"smhd", 0, 0, |w| {
                    w.u16(0); // balance
                    w.u16(0); // reserved
                });
                write_dinf(w);
                write_stbl(w, |w| match a.codec {
                    AudioCodec::Aac => write_mp4a(w, a),
                    AudioCodec::Opus => write_opus(w, a),
                });
            });
        });
    });
}

fn write_mp4a(w: &mut BoxWriter, a: &AudioConfig) {
    w.boxed(b"mp4a", |w| {
        w.zeros(6); // reserved
        w.u16(1); // data_reference_index
        w.zeros(8); // reserved
        w.u16(u16::from(a.channels));
        w.u16(16); // samplesize
        w.u16(0); // pre_defined
        w.u16(0); // reserved
                  // 16.16 fixed point; rates above 65535 do not fit, and 0 is written
                  // then: the decoder takes the rate from the AudioSpecificConfig and
                  // the timing from the media timescale (which is the exact rate).
        w.u32(if a.sample_rate <= 0xFFFF {
            a.sample_rate << 16
        } else {
            0
        });
        w.full_box(b"esds", 0, 0, |w| w.bytes(&es_descriptor(&a.asc)));
    });
}

/// `Opus` sample entry with its `dOps` (Opus in ISO BMFF 4.3.1, 4.3.2): channelcount
/// = OutputChannelCount, samplesize 16, samplerate 48000 in 16.16. The `dOps`
/// payload is the config's `asc` when that is a family-0 payload for its channel
/// count, else one built for it (see [`opus::dops_for`]); its fields are big-endian,
/// unlike those of the Ogg `OpusHead`.
fn write_opus(w: &mut BoxWriter, a: &AudioConfig) {
    let dops = opus::dops_for(a);
    w.boxed(b"Opus", |w| {
        w.zeros(6); // reserved
        w.u16(1); // data_reference_index
        w.zeros(8); // reserved
        w.u16(u16::from(dops[1])); // channelcount = OutputChannelCount
        w.u16(16); // samplesize
        w.u16(0); // pre_defined
        w.u16(0); // reserved
        w.u32(opus::SAMPLE_RATE << 16);
        w.boxed(b"dOps", |w| w.bytes(&dops));
    });
}

/// ES_Descriptor (14496-1 7.2.6.5) for AAC with `asc` as DecoderSpecificInfo.
fn es_descriptor(asc: &[u8]) -> Vec<u8> {
    let asc = &asc[..asc.len().min(MAX_ASC_LEN)];
    let dsi = descriptor(0x05, asc);

    let mut dcd = Vec::with_capacity(13 + dsi.len());
    dcd.push(0x40); // objectTypeIndication: Audio ISO/IEC 14496-3
    dcd.push((0x05 << 2) | 0x01); // streamType audio, upStream 0, reserved 1
    dcd.extend_from_slice(&[0, 0, 0]); // bufferSizeDB
    dcd.extend_from_slice(&0u32.to_be_bytes()); // maxBitrate
    dcd.extend_from_slice(&0u32.to_be_bytes()); // avgBitrate (0: variable)
    dcd.extend_from_slice(&dsi);
    let dcd = descriptor(0x04, &dcd);

    let sl = descriptor(0x06, &[0x02]); // SLConfigDescriptor, predefined = MP4

    let mut es = Vec::with_capacity(3 + dcd.len() + sl.len());
    es.extend_from_slice(&0u16.to_be_bytes()); // ES_ID
    es.push(0); // no stream dependence, URL or OCR stream
    es.extend_from_slice(&dcd);
    es.extend_from_slice(&sl);
    descriptor(0x03, &es)
}

/// A descriptor: tag, expandable size (7 bits a byte, high bit = more), body.
/// Bodies here are bounded by [`MAX_ASC_LEN`] plus a few dozen bytes, far
/// below the 2^28 − 1 that four size bytes can carry.
fn descriptor(tag: u8, body: &[u8]) -> Vec<u8> {
    let len = body.len().min(0x0FFF_FFFF);
    let mut out = Vec::with_capacity(5 + len);
    out.push(tag);
    let mut shift = 21;
    while shift > 0 && len >> shift == 0 {
        shift -= 7;
    }
    while shift > 0 {
        out.push(0x80 | ((len >> shift) & 0x7F) as u8);
        shift -= 7;
    }
    out.push((len & 0x7F) as u8);
    out.extend_from_slice(&body[..len]);
    out
}

fn write_trex(w: &mut BoxWriter, track_id: u32) {
    w.full_box(b"trex", 0, 0, |w| {
        w.u32(track_id);
        w.u32(1); // default_sample_description_index
        w.u32(0); // default_sample_duration
        w.u32(0); // default_sample_size
        w.u32(0); // default_sample_flags
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::AudioCodec;
    use crate::mux::tests::{find, walk};

    fn be32(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn video(codec: VideoCodec) -> VideoConfig {
        VideoConfig {
            codec,
            record: Bytes::from_static(&[1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 2, 0x67, 0x64, 0xaa]),
            nalu_length_size: 4,
            width: 1280,
            height: 720,
            frame_rate: None,
            codec_string: "avc1.64001f".into(),
        }
    }

    fn audio(sample_rate: u32) -> AudioConfig {
        AudioConfig {
            codec: AudioCodec::Aac,
            asc: Bytes::from_static(&[0x12, 0x10]),
            object_type: 2,
            sample_rate,
            channels: 2,
            frame_samples: 1024,
            codec_string: "mp4a.40.2".into(),
        }
    }

    fn sample(len: usize, keyframe: bool, cts_offset: i32) -> Sample {
        Sample {
            duration: 3000,
            cts_offset,
            keyframe,
            data: Bytes::from(vec![len as u8; len]),
        }
    }

    #[test]
    fn init_segment_layout() {
        let v = video(VideoCodec::H264);
        let a = audio(48_000);
        let init = init_segment(Some(&v), Some(&a));
        let boxes = walk(&init);
        let top: Vec<_> = boxes
            .iter()
            .filter(|b| b.depth == 0)
            .map(|b| b.name())
            .collect();
        assert_eq!(top, ["ftyp", "moov"]);
        let ftyp = find(&boxes, b"ftyp")[0].payload(&init);
        assert_eq!(&ftyp[..4], b"iso6");
        assert!(ftyp[8..].chunks(4).any(|b| b == b"cmfc"));

        let moov: Vec<_> = boxes
            .iter()
            .filter(|b| b.depth == 1)
            .map(|b| b.name())
            .collect();
        assert_eq!(moov, ["mvhd", "trak", "trak", "mvex"]);
        let mvhd = find(&boxes, b"mvhd")[0].payload(&init);
        assert_eq!(be32(mvhd, 12), MOVIE_TIMESCALE);
        assert_eq!(be32(mvhd, mvhd.len() - 4), 3, "next_track_id");

        // Video first, then audio, with their ids, sizes and timescales.
        let tkhd = find(&boxes, b"tkhd");
        assert_eq!(
            be32(tkhd[0].payload(&init), 0) & 0xFF_FFFF,
            3,
            "enabled|in_movie"
        );
        assert_eq!(be32(tkhd[0].payload(&init), 12), VIDEO_TRACK_ID);
        assert_eq!(be32(tkhd[1].payload(&init), 12), AUDIO_TRACK_ID);
        let t0 = tkhd[0].payload(&init);
        assert_eq!(be32(t0, t0.len() - 8), 1280 << 16);
        assert_eq!(be32(t0, t0.len() - 4), 720 << 16);
        assert_eq!(&tkhd[1].payload(&init)[36..38], &[1, 0], "audio volume");
        let mdhd = find(&boxes, b"mdhd");
        assert_eq!(be32(mdhd[0].payload(&init), 12), VIDEO_TIMESCALE);
        assert_eq!(be32(mdhd[1].payload(&init), 12), 48_000);
        let hdlr = find(&boxes, b"hdlr");
        assert_eq!(&hdlr[0].payload(&init)[8..12], b"vide");
        assert_eq!(&hdlr[1].payload(&init)[8..12], b"soun");
        assert_eq!(find(&boxes, b"vmhd").len(), 1);
        assert_eq!(find(&boxes, b"smhd").len(), 1);
        assert_eq!(find(&boxes, b"url ").len(), 2);
        for kind in [b"stts", b"stsc", b"stco"] {
            for b in find(&boxes, kind) {
                assert_eq!(b.payload(&init), &[0; 8], "{}", b.name());
            }
        }

        // Sample entries carry the records as-is.
        let avc1 = find(&boxes, b"avc1")[0].payload(&init);
        assert_eq!(&avc1[24..28], &[5, 0, 2, 0xD0], "1280x720");
        assert_eq!(find(&boxes, b"avcC")[0].payload(&init), &v.record[..]);
        let mp4a = find(&boxes, b"mp4a")[0].payload(&init);
        assert_eq!(&mp4a[16..18], &[0, 2], "channels");
        assert_eq!(be32(mp4a, 24), 48_000 << 16);
        let esds = find(&boxes, b"esds")[0].payload(&init);
        assert_eq!(
            esds,
            &[
                0, 0, 0, 0, // version, flags
                0x03, 25, 0, 0, 0, // ES_Descriptor
                0x04, 17, 0x40, 0x15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // DecoderConfig
                0x05, 2, 0x12, 0x10, // DecoderSpecificInfo = ASC
                0x06, 1, 2, // SLConfig
            ][..]
        );

        let trex = find(&boxes, b"trex");
        assert_eq!(trex.len(), 2);
        assert_eq!(be32(trex[0].payload(&init), 4), VIDEO_TRACK_ID);
        assert_eq!(be32(trex[1].payload(&init), 4), AUDIO_TRACK_ID);
        assert_eq!(
            be32(trex[1].payload(&init), 8),
            1,
            "sample description index"
        );
    }

    #[test]
    fn init_segment_single_tracks() {
        let init = init_segment(Some(&video(VideoCodec::H265)), None);
        let boxes = walk(&init);
        assert_eq!(find(&boxes, b"trak").len(), 1);
        assert!(find(&boxes, b"avc1").is_empty());
        assert_eq!(find(&boxes, b"hvc1").len(), 1);
        assert_eq!(
            find(&boxes, b"hvcC")[0].payload(&init),
            &video(VideoCodec::H264).record[..]
        );
        let mvhd = find(&boxes, b"mvhd")[0].payload(&init);
        assert_eq!(be32(mvhd, mvhd.len() - 4), 2);

        let init = init_segment(None, Some(&audio(44_100)));
        let boxes = walk(&init);
        assert_eq!(find(&boxes, b"trak").len(), 1);
        assert_eq!(
            be32(find(&boxes, b"tkhd")[0].payload(&init), 12),
            AUDIO_TRACK_ID
        );
        assert_eq!(find(&boxes, b"trex").len(), 1);

        // Nothing at all is still well-formed.
        let init = init_segment(None, None);
        let boxes = walk(&init);
        assert!(find(&boxes, b"trak").is_empty());
        assert_eq!(find(&boxes, b"mvex").len(), 1);
    }

    #[test]
    fn opus_sample_entry() {
        let v = video(VideoCodec::H264);
        let a = opus::config(2, 312);
        let init = init_segment(Some(&v), Some(&a));
        let boxes = walk(&init);
        assert!(find(&boxes, b"mp4a").is_empty());
        assert!(find(&boxes, b"esds").is_empty());
        assert_eq!(be32(find(&boxes, b"mdhd")[1].payload(&init), 12), 48_000);
        let hdlr = find(&boxes, b"hdlr");
        assert_eq!(&hdlr[1].payload(&init)[8..12], b"soun");
        let stsd = find(&boxes, b"stsd");
        assert_eq!(be32(stsd[1].payload(&init), 4), 1, "one sample entry");

        // The whole sample entry, byte for byte: 8 + 28 + dOps (8 + 11).
        let entry = find(&boxes, b"Opus");
        assert_eq!(entry.len(), 1);
        assert_eq!(
            entry[0].depth, 6,
            "moov > trak > mdia > minf > stbl > stsd > Opus"
        );
        let bytes = &init[entry[0].start..entry[0].start + entry[0].size];
        assert_eq!(
            bytes,
            &[
                0, 0, 0, 55, b'O', b'p', b'u', b's', // size, type
                0, 0, 0, 0, 0, 0, 0, 1, // reserved, data_reference_index
                0, 0, 0, 0, 0, 0, 0, 0, // reserved
                0, 2, 0, 16, // channelcount, samplesize
                0, 0, 0, 0, // pre_defined, reserved
                0xBB, 0x80, 0, 0, // samplerate 48000 << 16
                0, 0, 0, 19, b'd', b'O', b'p', b's', // dOps: a Box, not a FullBox
                0, 2, // Version, OutputChannelCount
                0x01, 0x38, // PreSkip 312, big-endian
                0, 0, 0xBB, 0x80, // InputSampleRate 48000
                0, 0, // OutputGain
                0, // ChannelMappingFamily
            ][..]
        );
        assert_eq!(find(&boxes, b"dOps")[0].payload(&init), &a.asc[..]);

        // Mono; and a config without a dOps payload gets one for its channels.
        let mut mono = opus::config(1, 0);
        mono.asc = Bytes::new();
        let init = init_segment(None, Some(&mono));
        let boxes = walk(&init);
        let entry = find(&boxes, b"Opus")[0].payload(&init);
        assert_eq!(&entry[16..18], &[0, 1], "channelcount");
        assert_eq!(
            find(&boxes, b"dOps")[0].payload(&init),
            &[0, 1, 0, 0, 0, 0, 0xBB, 0x80, 0, 0, 0][..]
        );
    }

    #[test]
    fn out_of_range_header_fields_saturate() {
        let mut v = video(VideoCodec::H264);
        v.width = 70_000;
        let init = init_segment(Some(&v), Some(&audio(96_000 * 2)));
        let boxes = walk(&init);
        let t0 = find(&boxes, b"tkhd")[0].payload(&init);
        assert_eq!(be32(t0, t0.len() - 8), 0xFFFF << 16);
        let mp4a = find(&boxes, b"mp4a")[0].payload(&init);
        assert_eq!(be32(mp4a, 24), 0, "rate above 65535 is not representable");
        assert_eq!(
            be32(find(&boxes, b"mdhd")[0].payload(&init), 12),
            VIDEO_TIMESCALE
        );
        assert_eq!(be32(find(&boxes, b"mdhd")[1].payload(&init), 12), 192_000);
    }

    #[test]
    fn descriptor_sizes() {
        assert_eq!(descriptor(5, &[]), [5, 0]);
        assert_eq!(descriptor(5, &[9; 127])[..2], [5, 127]);
        assert_eq!(descriptor(5, &[9; 128])[..3], [5, 0x81, 0x00]);
        let d = descriptor(5, &[9; 16_384]);
        assert_eq!(d[..4], [5, 0x81, 0x80, 0x00]);
        assert_eq!(d.len(), 4 + 16_384);
        // Overlong ASCs are cut to MAX_ASC_LEN.
        let es = es_descriptor(&vec![7; MAX_ASC_LEN + 10]);
        assert_eq!(es.iter().filter(|&&b| b == 7).count(), MAX_ASC_LEN);
    }

    /// Checks one fragment: sizes, mfhd, and that each trun's data offset
    /// points at its samples inside the mdat. Returns (track ids, sample counts).
    fn check_fragment(frag: &[u8], seq: u32, runs: &[Run]) -> Vec<(u32, usize)> {
        let boxes = walk(frag);
        let top: Vec<_> = boxes
            .iter()
            .filter(|b| b.depth == 0)
            .map(|b| b.name())
            .collect();
        assert_eq!(top, ["moof", "mdat"]);
        let moof = find(&boxes, b"moof")[0];
        let mdat = find(&boxes, b"mdat")[0];
        assert_eq!(moof.size + mdat.size, frag.len());
        assert_eq!(be32(find(&boxes, b"mfhd")[0].payload(frag), 4), seq);

        let mut seen = Vec::new();
        let mut expected_offset = moof.size + 8;
        for traf in find(&boxes, b"traf") {
            let inside = |kind: &[u8; 4]| {
                boxes
                    .iter()
                    .find(|b| {
                        &b.kind == kind && b.start > traf.start && b.start < traf.start + traf.size
                    })
                    .unwrap()
                    .payload(frag)
            };
            let tfhd = inside(b"tfhd");
            assert_eq!(be32(tfhd, 0), TFHD_DEFAULT_BASE_IS_MOOF);
            let track_id = be32(tfhd, 4);
            let run = runs.iter().find(|r| r.track_id == track_id).unwrap();
            let tfdt = inside(b"tfdt");
            assert_eq!(tfdt[0], 1, "tfdt version");
            assert_eq!(
                u64::from_be_bytes(tfdt[4..12].try_into().unwrap()),
                run.base_decode_time
            );
            let trun = inside(b"trun");
            assert_eq!(
                be32(trun, 0),
                (1 << 24) | TRUN_FLAGS,
                "trun v1 with all fields"
            );
            let count = be32(trun, 4) as usize;
            let data_offset = be32(trun, 8) as i32 as usize;
            assert_eq!(data_offset, expected_offset);
            assert_eq!(trun.len(), 12 + 16 * count);
            let mut at = data_offset;
            for (i, s) in run.samples[..count].iter().enumerate() {
                let e = &trun[12 + 16 * i..];
                assert_eq!(be32(e, 0), s.duration);
                assert_eq!(be32(e, 4) as usize, s.data.len());
                let flags = if s.keyframe { 0x0200_0000 } else { 0x0101_0000 };
                assert_eq!(be32(e, 8), flags);
                assert_eq!(be32(e, 12) as i32, s.cts_offset);
                assert_eq!(&frag[at..at + s.data.len()], &s.data[..], "sample {i} data");
                at += s.data.len();
            }
            expected_offset = at;
            seen.push((track_id, count));
        }
        assert_eq!(
            expected_offset,
            frag.len(),
            "mdat holds exactly the samples"
        );
        seen
    }

    #[test]
    fn fragment_layout_and_data_offsets() {
        let video = [
            sample(100, true, 6000),
            sample(7, false, -3000),
            sample(50, false, 0),
        ];
        let audio = [sample(20, true, 0), sample(21, true, 0)];
        let runs = [
            Run {
                track_id: VIDEO_TRACK_ID,
                base_decode_time: 1 << 40,
                samples: &video,
            },
            Run {
                track_id: AUDIO_TRACK_ID,
                base_decode_time: 48_000,
                samples: &audio,
            },
        ];
        let frag = fragment(7, &runs);
        assert_eq!(check_fragment(&frag, 7, &runs), [(1, 3), (2, 2)]);
        assert_eq!(
            frag.len(),
            MOOF_FIXED_SIZE + 2 * TRAF_FIXED_SIZE + 5 * 16 + 8 + 198
        );
    }

    #[test]
    fn empty_runs_are_skipped() {
        let audio = [sample(20, true, 0)];
        let runs = [
            Run {
                track_id: VIDEO_TRACK_ID,
                base_decode_time: 0,
                samples: &[],
            },
            Run {
                track_id: AUDIO_TRACK_ID,
                base_decode_time: 0,
                samples: &audio,
            },
        ];
        let frag = fragment(1, &runs);
        assert_eq!(check_fragment(&frag, 1, &runs), [(2, 1)]);

        // No samples at all: an empty moof and mdat.
        let frag = fragment(2, &runs[..1]);
        assert_eq!(check_fragment(&frag, 2, &runs[..1]), []);
        assert_eq!(frag.len(), MOOF_FIXED_SIZE + 8);
    }

    #[test]
    fn fragment_is_cut_at_the_size_limit() {
        let video = [
            sample(100, true, 0),
            sample(100, false, 0),
            sample(100, false, 0),
        ];
        let audio = [sample(10, true, 0)];
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
        let one_video = MOOF_FIXED_SIZE + 8 + TRAF_FIXED_SIZE + 16 + 100;
        for (limit, expect) in [
            (one_video - 1, vec![]),
            (one_video, vec![(1, 1)]),
            (one_video + 116 + 99, vec![(1, 2)]),
            (one_video + 2 * 116, vec![(1, 3)]),
            (one_video + 2 * 116 + TRAF_FIXED_SIZE + 16 + 9, vec![(1, 3)]),
            (
                one_video + 2 * 116 + TRAF_FIXED_SIZE + 16 + 10,
                vec![(1, 3), (2, 1)],
            ),
        ] {
            let frag = fragment_with_limit(3, &runs, limit);
            assert!(
                frag.len() <= limit.max(MOOF_FIXED_SIZE + 8),
                "limit {limit}"
            );
            assert_eq!(check_fragment(&frag, 3, &runs), expect, "limit {limit}");
        }
        // Once a sample does not fit, later runs are dropped too.
        let frag = fragment_with_limit(3, &runs, one_video + 116 + 99);
        assert!(find(&walk(&frag), b"traf").len() == 1);
    }
}
