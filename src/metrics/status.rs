//! The status API: `hls_live_streams;` lists each stream as before and adds its
//! operating state from the metrics table.

use std::fmt::Write;

use super::StreamCounters;
use crate::playlist::{self, StreamSummary};

/// What the status adds to one stream's listing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StreamStatus {
    /// Ingest bit rate now (bits per second).
    pub ingest_bitrate: u64,
    /// Seconds since the last frame, if one was received.
    pub last_frame_age: Option<f64>,
    /// Estimated distinct playlist clients over the last target durations.
    pub viewers: u64,
    pub publisher_address: String,
    pub publisher_software: String,
    pub publishes: u64,
    pub reconnects: u64,
}

impl StreamStatus {
    pub fn of(c: &StreamCounters, now_ms: i64) -> StreamStatus {
        StreamStatus {
            ingest_bitrate: if c.live { c.ingest_bps(now_ms) } else { 0 },
            last_frame_age: c.last_frame_age_s(now_ms),
            viewers: c.viewers(now_ms),
            publisher_address: c.publisher_addr.as_str().to_owned(),
            publisher_software: c.publisher_software.as_str().to_owned(),
            publishes: c.publishes,
            reconnects: c.reconnects,
        }
    }
}

/// `{"streams":[...]}` as [`playlist::streams_json`] renders it, each stream with
/// `"state"` (`live` / `ended`) and a `"status"` object added.
pub fn status_json(list: Vec<(StreamSummary, StreamStatus)>) -> String {
    let mut list = list;
    list.sort_by(|a, b| a.0.key.cmp(&b.0.key));
    let mut o = String::from("{\"streams\":[");
    for (i, (summary, st)) in list.into_iter().enumerate() {
        let live = summary.live;
        let one = playlist::streams_json(&mut [summary]);
        // `{"streams":[{...}]}` → `{...` without its closing brace.
        let obj = one
            .strip_prefix("{\"streams\":[")
            .and_then(|s| s.strip_suffix("}]}"))
            .unwrap_or("{");
        if i > 0 {
            o.push(',');
        }
        o.push_str(obj);
        let _ = write!(
            o,
            ",\"state\":\"{}\",\"status\":{{\"ingest_bitrate\":{},\"last_frame_age\":{},\"viewers\":{},\"publisher\":{{\"address\":{},\"software\":{}}},\"publishes\":{},\"reconnects\":{}}}}}",
            if live { "live" } else { "ended" },
            st.ingest_bitrate,
            st.last_frame_age
                .map_or("null".to_owned(), |a| format!("{a:.3}")),
            st.viewers,
            json_string(&st.publisher_address),
            json_string(&st.publisher_software),
            st.publishes,
            st.reconnects,
        );
    }
    o.push_str("]}");
    o
}

/// A JSON string; control characters, quotes and backslashes escaped.
pub fn json_string(s: &str) -> String {
    if s.is_empty() {
        return "null".into();
    }
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}
