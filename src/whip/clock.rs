//! RTP time → the segmenter's millisecond timeline, with audio/video sync.
//!
//! Each track's RTP clock starts at a random value. Until sender reports arrive, a track
//! is anchored where its first packet arrived (both tracks of a WebRTC publisher start
//! within milliseconds of each other). Once both tracks have a sender report (the sender's
//! wall clock for one of its RTP instants), audio is re-anchored so that samples the
//! sender captured at the same instant get the same time: RFC 3550 §6.4.1 lip sync.
//! Video stays where it is: its timeline is what the segments are cut on.

/// One track's mapping, `time_ms = (rtp - rtp0) * 1000 / rate + base_ms`.
#[derive(Clone, Copy, Debug)]
struct Anchor {
    rtp0: u64,
    rate: u32,
    base_ms: i64,
}

impl Anchor {
    fn ms(&self, rtp: u64) -> i64 {
        let d = rtp as i128 - self.rtp0 as i128;
        self.base_ms + (d * 1000 / self.rate as i128) as i64
    }
}

/// A sender report: the sender's wall clock (ms, any epoch) at an RTP time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    pub ntp_ms: i64,
    pub rtp: u64,
}

#[derive(Default)]
pub struct Timeline {
    video: Option<Anchor>,
    audio: Option<Anchor>,
    video_sr: Option<(Report, u32)>,
    audio_sr: Option<(Report, u32)>,
    synced: bool,
}

/// An audio re-anchoring larger than this is a broken report, not drift: ignored.
const MAX_SYNC_SHIFT_MS: i64 = 2000;

impl Timeline {
    pub fn new() -> Self {
        Self::default()
    }

    /// Time (ms) of a video RTP timestamp (extended to 64 bits) arriving at `arrival_ms`
    /// (any monotonic clock shared with audio).
    pub fn video(&mut self, rtp: u64, rate: u32, arrival_ms: i64) -> i64 {
        self.video
            .get_or_insert(Anchor {
                rtp0: rtp,
                rate: rate.max(1),
                base_ms: arrival_ms,
            })
            .ms(rtp)
    }

    /// Time (ms) of an audio RTP timestamp; see [`Self::video`].
    pub fn audio(&mut self, rtp: u64, rate: u32, arrival_ms: i64) -> i64 {
        self.audio
            .get_or_insert(Anchor {
                rtp0: rtp,
                rate: rate.max(1),
                base_ms: arrival_ms,
            })
            .ms(rtp)
    }

    /// The latest sender report of the video track.
    pub fn video_report(&mut self, r: Report, rate: u32) {
        self.video_sr = Some((r, rate.max(1)));
        self.sync();
    }

    /// The latest sender report of the audio track.
    pub fn audio_report(&mut self, r: Report, rate: u32) {
        self.audio_sr = Some((r, rate.max(1)));
        self.sync();
    }

    /// Whether audio has been aligned to video by sender reports.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// Once both tracks are anchored and reported: move audio's base so that the sender
    /// instant of its report maps to the time video gives the same sender instant.
    fn sync(&mut self) {
        if self.synced {
            return;
        }
        let (Some(v), Some(a), Some((vr, _)), Some((ar, _))) = (
            self.video,
            self.audio.as_mut(),
            self.video_sr,
            self.audio_sr,
        ) else {
            return;
        };
        // Video's time at the audio report's sender instant.
        let v_at_audio_sr = v.ms(vr.rtp) + (ar.ntp_ms - vr.ntp_ms);
        let shift = v_at_audio_sr - a.ms(ar.rtp);
        if shift.abs() <= MAX_SYNC_SHIFT_MS {
            a.base_ms += shift;
        }
        self.synced = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_start_at_their_arrival_and_advance_by_their_clock() {
        let mut t = Timeline::new();
        assert_eq!(t.video(1_000_000, 90_000, 500), 500);
        assert_eq!(t.video(1_000_000 + 90_000, 90_000, 999), 1500);
        assert_eq!(t.audio(7, 48_000, 510), 510);
        assert_eq!(t.audio(7 + 960, 48_000, 0), 530);
        // Out of order (before the anchor) gives an earlier time, not a wrap.
        assert_eq!(t.video(1_000_000 - 9000, 90_000, 0), 400);
    }

    #[test]
    fn sender_reports_align_audio_to_video() {
        let mut t = Timeline::new();
        // Video RTP 0 and audio RTP 0 were both captured at sender instant 10_000 ms, but
        // audio's first packet arrived 80 ms later (encoder delay, jitter).
        assert_eq!(t.video(0, 90_000, 1000), 1000);
        assert_eq!(t.audio(0, 48_000, 1080), 1080);
        t.video_report(
            Report {
                ntp_ms: 11_000,
                rtp: 90_000,
            },
            90_000,
        );
        assert!(!t.synced());
        t.audio_report(
            Report {
                ntp_ms: 10_500,
                rtp: 24_000,
            },
            48_000,
        );
        assert!(t.synced());
        // Audio captured at sender instant 10_000 + 1 s maps onto video's 1 s.
        assert_eq!(t.audio(48_000, 48_000, 0), 2000);
        assert_eq!(t.video(90_000, 90_000, 0), 2000);
    }

    #[test]
    fn absurd_reports_are_ignored() {
        let mut t = Timeline::new();
        t.video(0, 90_000, 0);
        t.audio(0, 48_000, 0);
        t.video_report(Report { ntp_ms: 0, rtp: 0 }, 90_000);
        t.audio_report(
            Report {
                ntp_ms: 1_000_000,
                rtp: 0,
            },
            48_000,
        );
        assert_eq!(t.audio(48_000, 48_000, 0), 1000);
    }
}
