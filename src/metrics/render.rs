//! The Prometheus text exposition format (version 0.0.4) of a [`Table`].

use std::fmt::Write;

use super::{
    status_label, Kind, Refusal, StreamCounters, Table, ZoneSlots, MAX_STREAMS, OVERFLOW_LABEL,
    STATUS_SLOTS,
};

/// Content-Type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

struct Out {
    text: String,
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }
}

fn escape(v: &str) -> String {
    let mut o = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
    o
}

/// Render `t` at monotonic time `now_ms`; `zone`: the stream index zone's occupancy;
/// `workers`: worker processes (each gets a `vid_worker_held_requests` series).
pub fn render(t: &Table, now_ms: i64, zone: Option<ZoneSlots>, workers: usize) -> String {
    let mut o = Out {
        text: String::with_capacity(16 * 1024),
    };
    // Streams with an entry, sorted by key, then the overflow entry if it counted anything.
    let mut streams: Vec<(&str, &StreamCounters)> = t
        .streams
        .iter()
        .filter(|s| s.in_use())
        .map(|s| (s.key.as_str(), s))
        .collect();
    streams.sort_by(|a, b| a.0.cmp(b.0));
    if t.overflow != StreamCounters::ZERO {
        streams.push((OVERFLOW_LABEL, &t.overflow));
    }

    type Per = fn(&StreamCounters, i64) -> Option<String>;
    let per_stream: [(&str, &str, &str, Per); 11] = [
        (
            "vid_stream_live",
            "gauge",
            "1 while a publisher is connected, else 0.",
            |s, _| Some((s.live as u8).to_string()),
        ),
        (
            "vid_stream_ingest_bytes_total",
            "counter",
            "RTMP bytes received from the stream's publishers.",
            |s, _| Some(s.ingest_bytes.to_string()),
        ),
        (
            "vid_stream_ingest_frames_total",
            "counter",
            "Audio and video frames received from the stream's publishers.",
            |s, _| Some(s.ingest_frames.to_string()),
        ),
        (
            "vid_stream_ingest_bytes_per_second",
            "gauge",
            "Ingest rate over the last 4 whole seconds (x 8 for the bit rate).",
            |s, now| Some((s.ingest_bps(now) / 8).to_string()),
        ),
        (
            "vid_stream_segments_total",
            "counter",
            "Media segments produced.",
            |s, _| Some(s.segments.to_string()),
        ),
        (
            "vid_stream_parts_total",
            "counter",
            "LL-HLS parts produced.",
            |s, _| Some(s.parts.to_string()),
        ),
        (
            "vid_stream_last_frame_age_seconds",
            "gauge",
            "Time since the last frame was received (monotonic clock); grows while an encoder stalls.",
            |s, now| s.last_frame_age_s(now).map(|a| format!("{a:.3}")),
        ),
        (
            "vid_stream_publishes_total",
            "counter",
            "Publish sessions started.",
            |s, _| Some(s.publishes.to_string()),
        ),
        (
            "vid_stream_reconnects_total",
            "counter",
            "Publish sessions started within 30 s of the previous one's end.",
            |s, _| Some(s.reconnects.to_string()),
        ),
        (
            "vid_stream_held_requests",
            "gauge",
            "Blocking playlist and preload-hint requests held now.",
            |s, _| Some(s.held_now.to_string()),
        ),
        (
            "vid_stream_viewers",
            "gauge",
            "Estimated distinct playlist clients (address and User-Agent) over the last 3 target durations.",
            |s, now| Some(s.viewers(now).to_string()),
        ),
    ];
    for (name, kind, help, f) in per_stream {
        o.family(name, kind, help);
        for (key, s) in &streams {
            if let Some(v) = f(s, now_ms) {
                o.sample(name, &[("stream", key)], v);
            }
        }
    }

    o.family(
        "vid_http_requests_total",
        "counter",
        "Viewer requests answered, by stream and kind of resource.",
    );
    for (key, s) in &streams {
        for k in Kind::ALL {
            o.sample(
                "vid_http_requests_total",
                &[("stream", key), ("kind", k.label())],
                s.requests_of(k),
            );
        }
    }
    o.family(
        "vid_http_response_bytes_total",
        "counter",
        "Response body bytes sent to viewers.",
    );
    for (key, s) in &streams {
        o.sample(
            "vid_http_response_bytes_total",
            &[("stream", key)],
            s.bytes_served,
        );
    }
    o.family(
        "vid_http_error_responses_total",
        "counter",
        "Viewer requests answered with a 4xx or 5xx status.",
    );
    for (key, s) in &streams {
        for slot in 0..STATUS_SLOTS {
            if s.errors[slot] > 0 {
                o.sample(
                    "vid_http_error_responses_total",
                    &[("stream", key), ("status", &status_label(slot))],
                    s.errors[slot],
                );
            }
        }
    }

    o.family(
        "vid_rtmp_connections_total",
        "counter",
        "RTMP connections accepted.",
    );
    o.sample("vid_rtmp_connections_total", &[], t.origin.rtmp_connections);
    o.family(
        "vid_rtmp_refusals_total",
        "counter",
        "RTMP connections closed with an error, by reason.",
    );
    for r in Refusal::ALL {
        o.sample(
            "vid_rtmp_refusals_total",
            &[("reason", r.label())],
            t.origin.rtmp_refusals[r as usize],
        );
    }
    let w = &t.origin.whip;
    o.family(
        "vid_whip_sessions_total",
        "counter",
        "WHIP (WebRTC) offers answered: sessions started.",
    );
    o.sample("vid_whip_sessions_total", &[], w.answered);
    o.family(
        "vid_whip_refusals_total",
        "counter",
        "WHIP offers refused (malformed, unsupported, unauthorized, key live, no room).",
    );
    o.sample("vid_whip_refusals_total", &[], w.refused);
    o.family(
        "vid_whip_sessions_closed_total",
        "counter",
        "WHIP sessions ended, by reason.",
    );
    for (i, label) in crate::whip::Closed::LABELS.iter().enumerate() {
        o.sample(
            "vid_whip_sessions_closed_total",
            &[("reason", label)],
            w.closed[i],
        );
    }
    o.family(
        "vid_whip_sessions",
        "gauge",
        "WHIP sessions open, over all workers.",
    );
    o.sample(
        "vid_whip_sessions",
        &[],
        w.active_per_worker.iter().sum::<i64>().max(0),
    );
    o.family(
        "vid_whip_stray_datagrams_total",
        "counter",
        "UDP datagrams at the WHIP ports that belonged to no session (dropped).",
    );
    o.sample("vid_whip_stray_datagrams_total", &[], w.strays);
    if let Some(z) = zone {
        o.family(
            "vid_zone_slots",
            "gauge",
            "Stream slots of the index zone, by state.",
        );
        o.sample("vid_zone_slots", &[("state", "used")], z.used);
        o.sample("vid_zone_slots", &[("state", "free")], z.free);
    }
    o.family(
        "vid_render_cache_hits_total",
        "counter",
        "Media playlist requests answered from the per-worker rendering cache.",
    );
    o.sample("vid_render_cache_hits_total", &[], t.origin.render_hits);
    o.family(
        "vid_render_cache_lookups_total",
        "counter",
        "Media playlist renderings asked of the per-worker rendering cache.",
    );
    let lookups = t.origin.render_hits + t.origin.render_misses;
    o.sample("vid_render_cache_lookups_total", &[], lookups);
    o.family(
        "vid_render_cache_hit_ratio",
        "gauge",
        "Render cache hits / lookups since the zone was created.",
    );
    let ratio = if lookups == 0 {
        0.0
    } else {
        t.origin.render_hits as f64 / lookups as f64
    };
    o.sample("vid_render_cache_hit_ratio", &[], format!("{ratio:.4}"));
    o.family(
        "vid_worker_held_requests",
        "gauge",
        "Requests held now, by worker number.",
    );
    let workers = t
        .origin
        .held_per_worker
        .iter()
        .rposition(|&h| h != 0)
        .map_or(0, |i| i + 1)
        .max(workers.clamp(1, super::MAX_WORKERS));
    for (w, h) in t.origin.held_per_worker[..workers].iter().enumerate() {
        o.sample("vid_worker_held_requests", &[("worker", &w.to_string())], h);
    }
    o.family(
        "vid_metrics_stream_series_limit",
        "gauge",
        "Streams with series of their own; others are counted under stream=\"~other\".",
    );
    o.sample("vid_metrics_stream_series_limit", &[], MAX_STREAMS);
    o.text
}
