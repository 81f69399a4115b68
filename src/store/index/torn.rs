//! A torn or corrupt slot, for fuzzing the readers: every scalar of the index taken from
//! arbitrary bytes (plain safe code; the layout is all integers, so any value is legal).

use super::*;

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        let n = self.0.len().min(8);
        b[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        u64::from_le_bytes(b)
    }
    fn u32(&mut self) -> u32 {
        self.u64() as u32
    }
    fn i64(&mut self) -> i64 {
        self.u64() as i64
    }
    /// Small values most of the time (so that rings and counters interact).
    fn small(&mut self, max: u32) -> u32 {
        let v = self.u32();
        if v & 0x8000_0000 != 0 {
            v
        } else {
            v % (max + 1)
        }
    }
}

impl StreamIndex {
    /// Overwrites every field from `data` (missing bytes read as zero). Only for fuzzing
    /// and tests of the readers: a real slot is written by [`StreamIndex::apply`].
    #[doc(hidden)]
    pub fn fuzz_from_bytes(data: &[u8]) -> Box<StreamIndex> {
        let mut b = Bytes(data);
        let mut i = Box::new(StreamIndex::ZERO);
        i.key_len = copy_str(&mut i.key, "k");
        i.video_codec_len = b.small(MAX_CODEC_LEN as u32 + 4);
        i.audio_codec_len = b.small(MAX_CODEC_LEN as u32 + 4);
        for c in i
            .video_codec
            .iter_mut()
            .chain(i.audio_codec.iter_mut())
            .take(8)
        {
            *c = b.u64() as u8;
        }
        i.state = b.small(3);
        i.generation = b.u64();
        i.claimed_ms = b.i64();
        i.updated_ms = b.i64();
        i.building_pdt_ms = b.i64();
        i.ended_ms = b.i64();
        i.window = b.small(40);
        i.part_target_ms = b.small(6_000);
        i.segment_target_ms = b.small(70_000);
        i.target_duration_s = b.small(70);
        i.next_msn = b.u64();
        i.media_sequence = b.u64();
        i.discontinuity_sequence = b.u64();
        i.pending_ts = b.u64();
        i.init_version = b.small(5);
        i.pending_discontinuity = b.small(2);
        i.tracks = b.small(4);
        i.width = b.u32();
        i.height = b.u32();
        i.sps_frame_rate_milli = b.u32();
        i.total_bytes = b.u64();
        i.total_duration_us = b.u64();
        i.total_video_frames = b.u64();
        i.total_video_duration_us = b.u64();
        i.peak_bps = b.u64();
        i.seg_head = b.small(MAX_SEGMENTS as u32 + 2);
        i.seg_len = b.small(MAX_SEGMENTS as u32 + 2);
        i.listed = b.small(MAX_SEGMENTS as u32 + 2);
        i.part_head = b.small(MAX_PARTS as u32 + 2);
        i.part_len = b.small(MAX_PARTS as u32 + 2);
        let base = b.u64() % 1_000;
        let n = b.small(MAX_SEGMENTS as u32) as usize;
        for (k, s) in i.segments.iter_mut().enumerate().take(n) {
            s.msn = base
                .wrapping_add(k as u64)
                .wrapping_add(u64::from(b.small(1)));
            s.duration_us = b.small(10_000_000) as u64;
            s.program_date_time_ms = b.i64();
            s.bytes = b.small(1 << 20) as u64;
            s.unlisted_ms = b.i64();
            s.parts = b.small(20);
            s.init_version = b.small(5);
            s.flags = b.small(15);
            s.video_frames = b.small(100);
        }
        let n = b.small(MAX_PARTS as u32) as usize;
        let mut msn = base;
        let mut part = 0;
        for p in i.parts.iter_mut().take(n) {
            let step = b.small(3);
            if step == 1 {
                msn = msn.wrapping_add(1);
                part = 0;
            } else if step > 1 {
                part = b.small(30);
            }
            p.msn = msn;
            p.part = part;
            part = part.wrapping_add(1);
            p.duration_us = b.small(6_000_000);
            p.bytes = b.small(1 << 16);
            p.flags = b.small(3);
        }
        i
    }
}
