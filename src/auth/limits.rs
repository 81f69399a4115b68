//! Ingest limits as pure arithmetic.
//!
//! [`RateCap`]: a publisher's bit rate cap (`rtmp_live_max_bitrate`), a token bucket
//! that holds [`BURST_SECONDS`] of the cap: short bursts (a keyframe, a catch-up after a
//! network hiccup) pass, a sustained rate above the cap empties it.

/// Seconds of the cap the bucket holds.
pub const BURST_SECONDS: u64 = 4;

#[derive(Clone, Debug)]
pub struct RateCap {
    bits_per_s: u64,
    /// Bits left in the bucket (may go below zero once, which is the verdict).
    tokens: i64,
    last_ms: i64,
}

impl RateCap {
    pub fn new(bits_per_s: u64, now_ms: i64) -> Self {
        RateCap {
            bits_per_s,
            tokens: (bits_per_s * BURST_SECONDS) as i64,
            last_ms: now_ms,
        }
    }

    pub fn bits_per_s(&self) -> u64 {
        self.bits_per_s
    }

    /// Counts `bytes` received at `now_ms` (a monotonic clock); false once the
    /// sustained rate is above the cap.
    pub fn add(&mut self, bytes: usize, now_ms: i64) -> bool {
        let elapsed = (now_ms - self.last_ms).max(0) as u64;
        self.last_ms = self.last_ms.max(now_ms);
        let cap = (self.bits_per_s * BURST_SECONDS) as i64;
        let refill = (self.bits_per_s.saturating_mul(elapsed) / 1000) as i64;
        self.tokens = (self.tokens.saturating_add(refill)).min(cap);
        self.tokens -= (bytes as i64).saturating_mul(8);
        self.tokens >= 0
    }
}

/// Parses a bit rate: a number of bits per second with an optional `k` (×1000) or `m`
/// (×1,000,000) suffix, e.g. `2500k`, `8m`. 0 means no cap.
pub fn parse_bitrate(s: &str) -> Option<u64> {
    let (num, mult) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1_000),
        b'm' | b'M' => (&s[..s.len() - 1], 1_000_000),
        _ => (s, 1),
    };
    if num.is_empty() || num.len() > 12 || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    num.parse::<u64>().ok()?.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bit_rates() {
        assert_eq!(parse_bitrate("8m"), Some(8_000_000));
        assert_eq!(parse_bitrate("2500k"), Some(2_500_000));
        assert_eq!(parse_bitrate("64000"), Some(64_000));
        assert_eq!(parse_bitrate("0"), Some(0));
        for bad in ["", "m", "1.5m", "-1", "8g", "1 m", "9999999999999"] {
            assert_eq!(parse_bitrate(bad), None, "{bad}");
        }
    }

    #[test]
    fn steady_rate_under_the_cap_passes() {
        // 1 Mbit/s cap, 900 kbit/s sent in 100 ms chunks for a minute.
        let mut r = RateCap::new(1_000_000, 0);
        for i in 1..=600 {
            assert!(r.add(900_000 / 8 / 10, i * 100), "at {i}");
        }
    }

    #[test]
    fn a_burst_passes_a_sustained_excess_does_not() {
        let mut r = RateCap::new(1_000_000, 0);
        // 3 s worth of the cap at once (a big keyframe burst): fine.
        assert!(r.add(3_000_000 / 8, 0));
        // Then back to normal: refills.
        let mut t = 0;
        for _ in 0..100 {
            t += 100;
            assert!(r.add(50_000 / 8, t));
        }
        // 2 Mbit/s sustained: refused within a few seconds, not at once.
        let mut refused_at = None;
        for i in 1..=200 {
            t += 100;
            if !r.add(2_000_000 / 8 / 10, t) {
                refused_at = Some(i);
                break;
            }
        }
        let i = refused_at.expect("refused");
        assert!((20..=60).contains(&i), "refused after {i} × 100 ms");
    }

    #[test]
    fn clock_going_backwards_does_not_refill() {
        let mut r = RateCap::new(8_000, 10_000);
        assert!(r.add(4_000, 10_000)); // the whole 4 s bucket
        assert!(!r.add(1, 5_000));
    }
}
