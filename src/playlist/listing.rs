//! The list of live streams as JSON, for the player page and for monitoring.

use std::fmt::Write;

use super::time::format_pdt;
use crate::store::{StreamIndex, StreamState};

/// What the listing shows of one stream; small enough to copy out under the zone lock.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamSummary {
    pub key: String,
    pub live: bool,
    pub video_codec: String,
    pub audio_codec: String,
    pub resolution: Option<(u32, u32)>,
    pub frame_rate: Option<f64>,
    pub bandwidth: u64,
    pub average_bandwidth: u64,
    pub started_ms: i64,
    pub target_duration: u32,
    pub part_target_ms: u32,
}

impl StreamSummary {
    /// None for free slots and streams with nothing listed yet.
    pub fn of(idx: &StreamIndex) -> Option<StreamSummary> {
        let live = match idx.state() {
            StreamState::Free => return None,
            StreamState::Live => true,
            StreamState::Ended => false,
        };
        if !idx.target_duration_decided() {
            return None;
        }
        Some(StreamSummary {
            key: idx.key().to_owned(),
            live,
            video_codec: idx.video_codec().to_owned(),
            audio_codec: idx.audio_codec().to_owned(),
            resolution: idx.resolution(),
            frame_rate: idx.frame_rate(),
            bandwidth: idx.peak_bandwidth(),
            average_bandwidth: idx.average_bandwidth(),
            started_ms: idx.claimed_ms(),
            target_duration: idx.target_duration(),
            part_target_ms: idx.part_target_ms(),
        })
    }
}

/// `{"streams":[{...}, ...]}`, sorted by key. Keys and codec strings are from a
/// restricted alphabet (`[A-Za-z0-9_.-]`), so they need no escaping; this is checked.
pub fn streams_json(streams: &mut [StreamSummary]) -> String {
    streams.sort_by(|a, b| a.key.cmp(&b.key));
    let mut o = String::from("{\"streams\":[");
    for (i, s) in streams.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let _ = write!(
            o,
            "{{\"key\":{},\"live\":{},\"codecs\":{},\"video_codec\":{},\"audio_codec\":{},",
            string(&s.key),
            s.live,
            string(
                &[s.video_codec.as_str(), s.audio_codec.as_str()]
                    .iter()
                    .filter(|c| !c.is_empty())
                    .copied()
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            opt_string(&s.video_codec),
            opt_string(&s.audio_codec),
        );
        match s.resolution {
            Some((w, h)) => {
                let _ = write!(o, "\"width\":{w},\"height\":{h},");
            }
            None => o.push_str("\"width\":null,\"height\":null,"),
        }
        match s.frame_rate {
            Some(f) if f.is_finite() => {
                let _ = write!(o, "\"frame_rate\":{f:.3},");
            }
            _ => o.push_str("\"frame_rate\":null,"),
        }
        let _ = write!(
            o,
            "\"bandwidth\":{},\"average_bandwidth\":{},\"started\":{},\"target_duration\":{},\"part_target\":{:.3}}}",
            s.bandwidth,
            s.average_bandwidth,
            string(&format_pdt(s.started_ms)),
            s.target_duration,
            s.part_target_ms as f64 / 1000.0,
        );
    }
    o.push_str("]}");
    o
}

fn string(s: &str) -> String {
    // Only characters that never need JSON escaping pass; anything else is dropped.
    let clean: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "_.,:+-".contains(*c))
        .collect();
    format!("\"{clean}\"")
}

fn opt_string(s: &str) -> String {
    if s.is_empty() {
        "null".into()
    } else {
        string(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(key: &str) -> StreamSummary {
        StreamSummary {
            key: key.into(),
            live: true,
            video_codec: "avc1.64001f".into(),
            audio_codec: "mp4a.40.2".into(),
            resolution: Some((1280, 720)),
            frame_rate: Some(30.0),
            bandwidth: 3_200_000,
            average_bandwidth: 3_000_000,
            started_ms: 1_795_000_000_000,
            target_duration: 2,
            part_target_ms: 200,
        }
    }

    #[test]
    fn renders_sorted_valid_json() {
        let mut v = vec![summary("b"), summary("a")];
        v[1].audio_codec.clear();
        v[1].resolution = None;
        let j = streams_json(&mut v);
        assert!(j.starts_with("{\"streams\":[{\"key\":\"a\""), "{j}");
        assert!(j.contains(
            "\"codecs\":\"avc1.64001f\",\"video_codec\":\"avc1.64001f\",\"audio_codec\":null"
        ));
        assert!(j.contains("\"width\":null"));
        assert!(j.contains("\"codecs\":\"avc1.64001f,mp4a.40.2\""));
        assert!(j.contains("\"part_target\":0.200"));
        assert!(j.contains("\"started\":\"2026-"), "{j}");
        // Balanced braces and brackets, no stray quotes.
        assert_eq!(j.matches('{').count(), j.matches('}').count());
        assert_eq!(j.matches('"').count() % 2, 0);
        assert_eq!(streams_json(&mut []), "{\"streams\":[]}");
    }

    #[test]
    fn strings_cannot_break_out() {
        assert_eq!(string("a\"b\\c\n"), "\"abc\"");
    }
}
